"""Writes that survive a crash and a power loss: one helper for every file we promise.

:func:`write_atomically` replaces a file as a whole: the new content goes to a
temporary file in the same folder, is flushed and ``fsync``-ed, renamed over
the target (``os.replace``: atomic on POSIX), and the folder is ``fsync``-ed so
that the rename itself is on disk. A crash or a power loss at any moment
leaves either the old file or the new one, never an empty or half-written one
(without the two ``fsync`` calls, a file system such as ext4 may commit the
rename before the data, and a reboot then finds an empty file). A failed
write (a full disk) removes its temporary file.

:func:`append_durably` adds text at the end of a file in one write, then
``fsync``-s it: a line of ``metrics.csv`` that was written survives a reboot.

Every ``OSError`` raised here names the file it was about (``filename``), so
an error message such as ``No space left on device: runs/x/metrics.csv``
says where.

    >>> write_atomically(tmp_path / "state.json", b'{"round": 3}')      # doctest: +SKIP
    >>> append_durably(tmp_path / "metrics.csv", "3,0.5\\n")              # doctest: +SKIP

This module imports nothing of ours.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["append_durably", "fsync_directory", "named", "write_atomically"]


def named(error: OSError, path: str | os.PathLike[str]) -> OSError:
    """``error`` with ``filename`` set to ``path`` when it names no file (same errno, same class).

    A failed ``write()`` on an open file raises an ``OSError`` without a file
    name; the caller knows which file it was.

    >>> str(named(OSError(28, "No space left on device"), "runs/x/metrics.csv"))
    "[Errno 28] No space left on device: 'runs/x/metrics.csv'"
    """
    if error.filename is not None:
        return error
    return OSError(error.errno, error.strerror or str(error) or type(error).__name__,
                   os.fspath(path))


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make the entries of folder ``path`` (a file created or renamed in it) durable.

    >>> fsync_directory(tmp_path)                                        # doctest: +SKIP
    """
    if os.name != "posix":  # pragma: no cover - folders cannot be opened for fsync there
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    target: str | os.PathLike[str],
    content: bytes | str | Callable[[IO[Any]], object],
    *,
    binary: bool = True,
) -> None:
    """Replace ``target`` with ``content`` (bytes, text, or a function that writes to a file).

    The function form gets the open temporary file (``binary`` says whether
    it is opened in binary or in text mode, UTF-8). Whatever happens, the
    target is the old file or the new one; an ``OSError`` names ``target``.

    >>> write_atomically("run/config.yaml", "seed: 0\\n")                # doctest: +SKIP
    >>> write_atomically("run/weights.npz", lambda f: np.savez(f, w=w))  # doctest: +SKIP
    """
    path = Path(target)
    if isinstance(content, str):
        text = content
        content, binary = (lambda handle: handle.write(text)), False
    elif isinstance(content, (bytes, bytearray, memoryview)):
        payload = bytes(content)
        content, binary = (lambda handle: handle.write(payload)), True
    tmp: str | None = None
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed or removed below
            "wb" if binary else "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
            delete=False, encoding=None if binary else "utf-8",
        )
        tmp = handle.name
        with handle:
            content(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_directory(path.parent)
    except OSError as error:
        if error.filename == os.fspath(path):
            raise
        # Not the temporary file's name, nor none: the file the caller asked for.
        raise OSError(error.errno, error.strerror or str(error) or type(error).__name__,
                      os.fspath(path)) from error
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def append_durably(target: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` to ``target`` in one write and ``fsync`` it (UTF-8).

    One write: an interrupt never leaves half of it; the ``fsync``: a line
    that was appended survives a power loss.

    >>> append_durably("run/metrics.csv", "4,0.25\\n")                    # doctest: +SKIP
    """
    try:
        with open(target, "a", newline="", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        renamed = named(error, target)
        if renamed is error:
            raise
        raise renamed from error
