"""Sharing a memory-mapped array by its file's path instead of its bytes.

A whole-file ``np.memmap`` (or ``np.load(..., mmap_mode="r")``) is described
by a :class:`MappedFile`: workers on a machine that sees the same file map it
themselves (zero copy, nothing in the object store), and one that does not
raises :class:`MappedFileUnavailable` and gets its rows inline.

Imports numpy only (nothing of ours, no ray).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MappedFile", "MappedFileUnavailable", "mapped_file"]


class MappedFileUnavailable(Exception):
    """A worker cannot map the driver's file (another machine, or the file changed)."""


@dataclass(frozen=True)
class MappedFile:
    """A read-only numpy array backed by a whole file, shared by its path.

    Workers on a machine that sees the same file map it themselves: zero
    copy, nothing in the object store. The size and modification time tell a
    worker whether it sees the very file the driver mapped.
    """

    path: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    fortran_order: bool
    file_size: int
    mtime_ns: int

    def open(self) -> np.ndarray:
        """Map the file read-only; MappedFileUnavailable if it is not the driver's file."""
        try:
            status = os.stat(self.path)
        except OSError as exc:
            raise MappedFileUnavailable(f"{self.path}: {exc}") from None
        if status.st_size != self.file_size or status.st_mtime_ns != self.mtime_ns:
            raise MappedFileUnavailable(f"{self.path} is not the file the driver mapped")
        return np.memmap(self.path, dtype=np.dtype(self.dtype), mode="r", offset=self.offset,
                         shape=self.shape, order="F" if self.fortran_order else "C")


def mapped_file(data: Any) -> MappedFile | None:
    """The file behind ``data`` when it is a whole-file ``np.memmap`` (or ``np.load(...,
    mmap_mode="r")``), else None. A slice of a memmap keeps the file's name but
    not where it starts, so only the mapping itself is shared by path.
    """
    if not isinstance(data, np.memmap) or data.filename is None:
        return None
    if not isinstance(data.base, mmap.mmap) or data.dtype.hasobject:
        return None  # a view into the mapping, or objects: share it by value
    if not (data.flags.c_contiguous or data.flags.f_contiguous):
        return None
    status = os.stat(data.filename)
    return MappedFile(
        path=os.fspath(data.filename), dtype=data.dtype.str, shape=tuple(data.shape),
        offset=int(data.offset), fortran_order=bool(data.flags.f_contiguous
                                                     and not data.flags.c_contiguous),
        file_size=status.st_size, mtime_ns=status.st_mtime_ns,
    )
