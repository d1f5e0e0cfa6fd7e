"""Cut input data into batches, and batches into groups that travel in one call.

A *batch* is ``batch_size`` consecutive rows (the last may be smaller); the
pool calls ``process_batch`` once per batch. A *group* is a run of consecutive
batches sent to one actor in one remote call, so that small batches do not each
pay a remote call's cost.

Numpy arrays and mappings of numpy arrays larger than ``SHARE_MIN_BYTES`` are
*shared*: the driver puts them in the object store once and a group is only a
row range; the worker slices read-only zero-copy views out of the stored array.
Everything else travels *inline*: a group carries its own rows.

Any other iterable is read lazily, one group at a time, so a generator of any
length is never held whole by the driver.

    >>> source = make_source([1, 2, 3, 4, 5], batch_size=2)
    >>> source.num_batches
    3
    >>> group = source.take(2)
    >>> (group.first, group.count, group.rows)
    (0, 2, [1, 2, 3, 4])

How rows are sliced and sized is :mod:`raymanager.rows`; a memory-mapped
file shared by its path is :mod:`raymanager.mapped_file` (both re-exported
here). Imports those two and numpy; no ray: the pool decides how a shared
source reaches the workers.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raymanager.mapped_file import MappedFile, MappedFileUnavailable, mapped_file
from raymanager.rows import is_array_like, rows_nbytes, slice_rows, table_kind

__all__ = [
    "SHARE_MIN_BYTES",
    "BatchSource",
    "Group",
    "MappedFile",
    "MappedFileUnavailable",
    "make_source",
    "mapped_file",
    "slice_rows",
]

#: Arrays at least this big go to the object store once instead of inline.
#: Below it, pickling a group's rows into the call is cheaper than resolving
#: an object reference in the worker (chosen with benchmarks/run.py, W2 and W3).
SHARE_MIN_BYTES = 512 * 1024


@dataclass
class Group:
    """Consecutive batches ``first .. first + count - 1`` sent in one call.

    ``rows`` holds the group's rows when they travel inline, and is None for a
    shared source, where ``row_start:row_stop`` of the shared data is used.
    ``attempts`` counts earlier tries that failed for lack of a healthy worker.
    ``suspect`` marks a batch re-run after a failure that could not be pinned
    on one batch: it runs alone on its actor, so that a repeat can be.
    """

    first: int
    count: int
    row_start: int
    row_stop: int
    rows: Any = None
    nbytes: int = 0
    attempts: int = 0
    suspect: bool = False

    @property
    def num_rows(self) -> int:
        return self.row_stop - self.row_start

    def cut(self, count: int, batch_size: int) -> tuple[Group, Group]:
        """The first ``count`` batches and the rest, as two groups (``0 < count < self.count``).

        >>> head, rest = Group(0, 3, 0, 5, [1, 2, 3, 4, 5], 40).cut(1, batch_size=2)
        >>> (head.rows, rest.first, rest.rows)
        ([1, 2], 1, [3, 4, 5])
        """
        assert 0 < count < self.count
        cut_at = min(count * batch_size, self.num_rows)
        parts = []
        for first, n, lo, hi in ((self.first, count, 0, cut_at),
                                 (self.first + count, self.count - count, cut_at, self.num_rows)):
            rows = None if self.rows is None else slice_rows(self.rows, lo, hi)
            parts.append(Group(first, n, self.row_start + lo, self.row_start + hi, rows,
                               rows_nbytes(rows), self.attempts, self.suspect))
        return parts[0], parts[1]

    def split(self, batch_size: int) -> list[Group]:
        """One group per batch, for retries: a bad batch must not sink its neighbours."""
        if self.count == 1:
            return [self]
        parts = []
        for k in range(self.count):
            lo = k * batch_size
            hi = min(lo + batch_size, self.num_rows)
            rows = None if self.rows is None else slice_rows(self.rows, lo, hi)
            parts.append(
                Group(
                    first=self.first + k,
                    count=1,
                    row_start=self.row_start + lo,
                    row_stop=self.row_start + hi,
                    rows=rows,
                    nbytes=rows_nbytes(rows),
                    attempts=self.attempts,
                    suspect=self.suspect,
                )
            )
        return parts


class BatchSource:
    """Data cut into batches, handed out group by group with :meth:`take`.

    ``shared`` is the array (or mapping of arrays) to put in the object store
    once, or None when groups carry their rows inline. ``num_batches`` and
    ``num_rows`` are None for a lazy iterable until it is exhausted.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        num_rows: int | None,
        shared: Any = None,
        inline: Any = None,
        iterator: Iterator[Any] | None = None,
        mapped: MappedFile | None = None,
    ) -> None:
        self.batch_size = batch_size
        self.num_rows = num_rows
        self.shared = shared
        #: The file behind a shared memory-mapped array: workers map it by path.
        self.mapped = mapped
        self._inline = inline
        self._iterator = iterator
        self._next_batch = 0
        self._next_row = 0
        self._bytes_taken = 0
        #: Hashes of the input rows of batches taken and not yet claimed by
        #: :meth:`pop_digest` (kept only after :meth:`keep_digests`).
        self._digests: dict[int, bytes] = {}
        self._digest: Callable[[Any], bytes] | None = None

    def keep_digests(self, digest: Callable[[Any], bytes]) -> None:
        """Hash each batch's rows with ``digest`` as they are taken (for a journal).

        Every batch is hashed when its group is taken, whether it is then run
        or read back from a journal, so a lazy source's rows are hashed as
        they are read and never kept.

        >>> source = make_source([1, 2, 3], batch_size=2)
        >>> source.keep_digests(lambda rows: repr(rows).encode())
        >>> _ = source.take(2)
        >>> source.pop_digest(1)
        b'[3]'
        """
        self._digest = digest

    def pop_digest(self, index: int) -> bytes | None:
        """The hash of batch ``index``'s rows, once (None: not hashed, or already popped)."""
        return self._digests.pop(index, None)

    def _hash_batches(self, group: Group) -> None:
        assert self._digest is not None
        rows = group.rows
        if rows is None:  # shared: the rows are a range of the stored data
            rows = slice_rows(self.shared, group.row_start, group.row_stop)
        if group.count == 1:
            self._digests[group.first] = self._digest(rows)
            return
        for k in range(group.count):
            lo = k * self.batch_size
            hi = min(lo + self.batch_size, group.num_rows)
            self._digests[group.first + k] = self._digest(slice_rows(rows, lo, hi))

    @property
    def batch_nbytes(self) -> int | None:
        """Bytes of one batch of inline data: exact for arrays, else the mean so far.

        None for shared data (already in the object store) and before the
        first group of a lazy source.
        """
        if self.shared is not None:
            return None
        if isinstance(self._inline, (np.ndarray, Mapping)) and self.num_rows:
            return max(1, rows_nbytes(self._inline) * self.batch_size // self.num_rows)
        if self._next_batch == 0:
            return None
        return max(1, self._bytes_taken // self._next_batch)

    @property
    def num_batches(self) -> int | None:
        if self.num_rows is None:
            return None
        return math.ceil(self.num_rows / self.batch_size)

    @property
    def batches_taken(self) -> int:
        return self._next_batch

    @property
    def exhausted(self) -> bool:
        total = self.num_batches
        return total is not None and self._next_batch >= total

    def remaining_batches(self) -> int | None:
        total = self.num_batches
        return None if total is None else total - self._next_batch

    def take(self, count: int) -> Group | None:
        """The next ``count`` batches (fewer at the end) as a group; None when done."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if self._iterator is not None:
            return self._take_lazy(count)
        remaining = self.remaining_batches()
        assert remaining is not None and self.num_rows is not None
        if remaining <= 0:
            return None
        count = min(count, remaining)
        start = self._next_row
        stop = min(start + count * self.batch_size, self.num_rows)
        rows = None if self.shared is not None else slice_rows(self._inline, start, stop)
        group = Group(self._next_batch, count, start, stop, rows, rows_nbytes(rows))
        if self._digest is not None:
            self._hash_batches(group)
        self._bytes_taken += group.nbytes
        self._next_batch += count
        self._next_row = stop
        return group

    def _take_lazy(self, count: int) -> Group | None:
        assert self._iterator is not None
        rows = list(itertools.islice(self._iterator, count * self.batch_size))
        if not rows:
            self._finish_lazy()
            return None
        count = math.ceil(len(rows) / self.batch_size)
        start = self._next_row
        group = Group(self._next_batch, count, start, start + len(rows), rows, rows_nbytes(rows))
        if self._digest is not None:
            self._hash_batches(group)
        self._bytes_taken += group.nbytes
        self._next_batch += count
        self._next_row += len(rows)
        if len(rows) < count * self.batch_size:
            self._finish_lazy()
        return group

    def _finish_lazy(self) -> None:
        self.num_rows = self._next_row
        self._iterator = None

    def is_empty(self) -> bool:
        """True when there is no row at all (peeks one item of a lazy iterable)."""
        if self._iterator is None:
            return self.num_rows == 0
        try:
            first = next(self._iterator)
        except StopIteration:
            self._finish_lazy()
            return True
        self._iterator = itertools.chain([first], self._iterator)
        return False


def _column_length(key: object, column: object) -> int:
    try:
        return len(column)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"column {key!r} of the data mapping has no length "
            f"(got {type(column).__name__}); columns must be arrays or sequences"
        ) from None


def make_source(
    data: Any,
    batch_size: int,
    *,
    share_min_bytes: int = SHARE_MIN_BYTES,
    share_max_bytes: int | None = None,
) -> BatchSource:
    """Wrap ``data`` as a :class:`BatchSource` cut into ``batch_size``-row batches.

    Accepted: a numpy array (cut along axis 0), a sequence (list, tuple, range;
    a batch is a slice of the same type), a pandas DataFrame or Series or a
    pyarrow Table (a batch is a row slice of the same type), an array of
    another library with ``__array__`` and ``shape`` (torch, jax: a slice), a
    mapping of equal-length columns (a batch is a dict of column slices), or
    any other iterable (read lazily; a batch is a list). Strings and bytes are
    refused: cutting text into characters is almost always a mistake.

    Arrays from ``share_min_bytes`` up to ``share_max_bytes`` (None: no limit)
    are shared; a larger one travels inline, a bounded window at a time, so
    an array bigger than the object store never has to fit in it at once.

    >>> make_source(np.zeros((10, 3)), batch_size=4).num_batches
    3
    """
    if isinstance(data, np.ndarray):
        if data.ndim == 0:
            raise TypeError("a 0-d numpy array has no first axis to cut into batches")
        mapped = mapped_file(data)
        if mapped is not None:
            # Any size: the file is shared by its path, never copied.
            return BatchSource(batch_size=batch_size, num_rows=len(data), shared=data,
                               mapped=mapped)
        if _shareable(data.nbytes, share_min_bytes, share_max_bytes) and not data.dtype.hasobject:
            return BatchSource(batch_size=batch_size, num_rows=len(data), shared=data)
        return BatchSource(batch_size=batch_size, num_rows=len(data), inline=data)
    if isinstance(data, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"data of type {type(data).__name__} is not cut into batches; "
            "pass a list of strings, an array or an iterable of rows"
        )
    if table_kind(data) is not None:
        # pandas DataFrame / Series, pyarrow Table / RecordBatch: batches are
        # row slices of the same type (a DataFrame iterates its column names,
        # which is never what a user means by its rows).
        return BatchSource(batch_size=batch_size, num_rows=len(data), inline=data)
    if isinstance(data, Mapping):
        return _mapping_source(data, batch_size, share_min_bytes, share_max_bytes)
    if isinstance(data, Sequence) and _sliceable(data):
        return BatchSource(batch_size=batch_size, num_rows=len(data), inline=data)
    if is_array_like(data):
        # torch / jax / cupy arrays and the like: row slices of the same type.
        return BatchSource(batch_size=batch_size, num_rows=len(data), inline=data)
    if type(data).__module__.startswith(("pandas", "pyarrow", "polars", "scipy")):
        raise TypeError(
            f"data of type {type(data).__module__}.{type(data).__name__} is not cut into "
            "batches: pass a pandas DataFrame or Series, a pyarrow Table, a numpy array "
            "(e.g. its .to_numpy()), or an iterable of rows"
        )
    if isinstance(data, Iterable):
        return BatchSource(batch_size=batch_size, num_rows=None, iterator=iter(data))
    raise TypeError(
        f"data must be a numpy array, a sequence, a mapping of columns or an iterable, "
        f"got {type(data).__name__}"
    )


def _sliceable(data: Sequence[Any]) -> bool:
    # Some sequences (collections.deque) cannot be sliced: read them lazily.
    try:
        data[0:0]
    except TypeError:
        return False
    return True


def _shareable(nbytes: int, share_min_bytes: int, share_max_bytes: int | None) -> bool:
    return nbytes >= share_min_bytes and (share_max_bytes is None or nbytes <= share_max_bytes)


def _mapping_source(
    data: Mapping[Any, Any], batch_size: int, share_min_bytes: int, share_max_bytes: int | None
) -> BatchSource:
    lengths = {key: _column_length(key, column) for key, column in data.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of the data mapping differ in length: {lengths}")
    for key, column in data.items():
        if isinstance(column, np.ndarray) and column.ndim == 0:
            raise TypeError(f"column {key!r} of the data mapping is a 0-d array")
        if isinstance(column, (str, bytes)):
            raise TypeError(f"column {key!r} of the data mapping is a {type(column).__name__}")
    rows = next(iter(lengths.values()), 0)
    columns = dict(data)
    all_arrays = all(
        isinstance(c, np.ndarray) and not c.dtype.hasobject for c in columns.values()
    )
    size = sum(int(c.nbytes) for c in columns.values() if isinstance(c, np.ndarray))
    if columns and all_arrays and _shareable(size, share_min_bytes, share_max_bytes):
        return BatchSource(batch_size=batch_size, num_rows=rows, shared=columns)
    return BatchSource(batch_size=batch_size, num_rows=rows, inline=columns)
