"""The one helper for durable writes: atomic, fsynced (file and folder), and errors
that name the file."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from raymanager.durable import append_durably, named, write_atomically


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What os.fsync was called on, in order: "file" or "folder"."""
    calls: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        calls.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return calls


def test_an_atomic_write_fsyncs_the_file_then_its_folder(tmp_path: Path,
                                                         fsynced: list[str]) -> None:
    target = tmp_path / "state.json"
    write_atomically(target, b"one")
    assert fsynced == ["file", "folder"]  # data before the rename, the rename after it
    write_atomically(target, "two")
    write_atomically(target, lambda handle: handle.write(b"three"))
    assert target.read_bytes() == b"three"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_file_and_names_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "weights.npz"
    write_atomically(target, b"old")

    def full(fd: int) -> None:  # ext4 reports a full disk at fsync with delayed allocation
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left") as info:
        write_atomically(target, b"new")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.npz"]  # no temporary file


def test_a_write_into_a_missing_folder_names_the_target_not_a_temporary(
    tmp_path: Path
) -> None:
    target = tmp_path / "gone" / "config.yaml"
    with pytest.raises(FileNotFoundError) as info:
        write_atomically(target, "seed: 0\n")
    assert info.value.filename == str(target)


def test_an_append_is_one_write_fsynced(tmp_path: Path, fsynced: list[str]) -> None:
    target = tmp_path / "metrics.csv"
    append_durably(target, "round\n")
    append_durably(target, "1\n")
    assert target.read_text() == "round\n1\n" and fsynced == ["file", "file"]


def test_an_append_on_a_full_disk_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as info:
        append_durably(tmp_path / "metrics.csv", "1\n")
    assert info.value.filename == str(tmp_path / "metrics.csv")


def test_named_keeps_a_name_and_the_class() -> None:
    assert named(OSError(errno.EACCES, "denied", "a"), "b").filename == "a"
    renamed = named(OSError(errno.EACCES, "Permission denied"), "b")
    assert isinstance(renamed, PermissionError) and renamed.filename == "b"
