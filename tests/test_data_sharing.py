"""Big arrays without a second copy: files shared by path, objects already in the store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import ray
from engine_actors import WhereFrom

from raymanager import BatchConfig, RayManager
from raymanager.batching import MappedFile, MappedFileUnavailable, mapped_file


def saved(tmp_path: Path, rows: int = 1000) -> tuple[Path, np.ndarray]:
    values = np.arange(rows * 4, dtype=np.float64).reshape(rows, 4)
    path = tmp_path / "data.npy"
    np.save(path, values)
    return path, values


def expected_sums(values: np.ndarray, batch_size: int) -> list[float]:
    return [float(values[i:i + batch_size].sum()) for i in range(0, len(values), batch_size)]


def test_a_memory_mapped_array_is_mapped_by_the_actors(
    manager: RayManager, tmp_path: Path
) -> None:
    path, values = saved(tmp_path)
    mapped = np.load(path, mmap_mode="r")
    pool = manager.create_actor_pool(WhereFrom, {}, num_actors=2)
    results = manager.process_in_parallel(pool, mapped, BatchConfig(batch_size=100))
    assert [total for total, _ in results] == expected_sums(values, 100)
    assert {where for _, where in results} == {str(path)}  # each actor mapped the file


def test_a_worker_that_cannot_map_the_file_gets_the_rows_inline(
    manager: RayManager, tmp_path: Path
) -> None:
    path, values = saved(tmp_path)
    mapped = np.load(path, mmap_mode="r")
    pool = manager.create_actor_pool(WhereFrom, {}, num_actors=2)
    stream = manager.imap(pool, mapped, BatchConfig(batch_size=100))
    status = os.stat(path)
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))  # "another file"
    results = list(stream)
    assert [total for total, _ in results] == expected_sums(values, 100)
    assert {where for _, where in results} == {None}  # nobody mapped it: rows came inline


def test_only_a_whole_file_mapping_is_shared_by_path(tmp_path: Path) -> None:
    path, _ = saved(tmp_path)
    mapped = np.load(path, mmap_mode="r")
    described = mapped_file(mapped)
    assert described is not None and described.path == str(path)
    assert mapped_file(mapped[10:20]) is None  # a view: shared by value
    assert mapped_file(np.zeros(3)) is None
    assert np.array_equal(described.open(), mapped)
    gone = MappedFile(str(tmp_path / "missing.npy"), "<f8", (3,), 0, False, 24, 0)
    with pytest.raises(MappedFileUnavailable):
        gone.open()


def test_an_object_already_in_the_store_is_not_put_again(
    manager: RayManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = np.arange(4000, dtype=np.float64).reshape(1000, 4)
    ref = ray.put(values)
    pool = manager.create_actor_pool(WhereFrom, {}, num_actors=2)
    puts: list[object] = []
    real_put = ray.put

    def counting_put(value: object, *args: object, **kwargs: object) -> object:
        puts.append(value)  # a spy: the real put still runs
        return real_put(value, *args, **kwargs)

    monkeypatch.setattr(ray, "put", counting_put)
    for _ in range(2):  # several passes over one stored array
        results = manager.process_in_parallel(pool, ref, BatchConfig(batch_size=250))
        assert [total for total, _ in results] == expected_sums(values, 250)
    assert not [p for p in puts if isinstance(p, np.ndarray)]  # the array was not put again
    with pytest.raises(TypeError, match="ObjectRef"):
        manager.process_in_parallel(pool, ray.put("text"), BatchConfig())
