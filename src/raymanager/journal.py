"""Durable runs: a journal of finished batches, so a stopped run resumes where it was.

``process_in_parallel(pool, data, config, journal=PATH)`` records each batch's
result in ``PATH`` as it arrives; the same call after a driver crash, a reboot
or Ctrl-C reads the recorded results back instead of running those batches
again, and returns the same results.

**Storage.** ``PATH`` is one SQLite database (the standard library's
``sqlite3``), format :data:`FORMAT`: a row per finished batch, keyed by the
batch index, holding the result's structure as JSON and its numpy arrays as
``.npy`` records (``allow_pickle=False`` both ways: a journal never holds a
pickle, and reading one never runs code). Stored are numpy arrays (not of
objects), numpy scalars, numbers, strings, None, and lists, tuples and
string-keyed dicts of them; anything else is refused with a
:class:`JournalError` at the first batch that returns it.

**Durability.** The database runs in WAL mode with ``synchronous=FULL``, in
exclusive locking mode (one run at a time; no ``-shm`` file, so a journal is
one file, plus ``PATH-wal`` while it is open). Results are committed in
groups: a commit when :data:`COMMIT_SECONDS` have passed since the last one
(longer on a disk whose commits are slow, see :data:`COMMIT_COST_SHARE`),
when :data:`COMMIT_MAX_BATCHES` results or :data:`COMMIT_MAX_BYTES` wait, and
when the run ends or stops. With ``FULL`` each commit is ``fsync``-ed to the
WAL before it returns, so a committed group survives a driver crash, a
SIGKILL and a power loss alike; a crash loses at most the group not yet
committed, whose batches run again on resume (``NORMAL`` would make a commit
survive a crash but not a power loss; the fsync per group costs little, as
groups are at least :data:`COMMIT_SECONDS` apart).

**No stale results.** A journal is refused at open when it was made for
another input (kind, number of rows, batch size; an array's dtype and shape,
and its content where it is cheap to hash whole: numpy arrays up to
:data:`HASH_WHOLE_BYTES`). Every other input (sequences, generators, tables,
larger arrays) is checked batch by batch: each recorded batch carries a hash
of its input rows (:func:`input_digest`), and on resume every recorded batch
still has its rows read and hashed; the first that differs raises
:class:`JournalError` naming that batch.

**Older journals.** Format 1 (raymanager before this one: a folder of
``.npz`` files with a ``meta.json``) is refused with a message naming its
format: it holds no input hashes, so its results could not be checked.

    >>> with Journal.open(tmp_path / "run.journal", {"rows": 10}) as journal:  # doctest: +SKIP
    ...     journal.write(0, {"loss": np.float32(0.5), "ids": [1, 2]})

No ray import here.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import importlib
import io
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Set
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from raymanager.durable import fsync_directory
from raymanager.engine.run import NOT_RECORDED as _NOT_RECORDED
from raymanager.errors import JournalError

__all__ = [
    "COMMIT_COST_SHARE",
    "COMMIT_MAX_BATCHES",
    "COMMIT_MAX_BYTES",
    "COMMIT_SECONDS",
    "FORMAT",
    "NOT_RECORDED",
    "Journal",
    "JournalError",
    "fingerprint",
    "input_digest",
]

#: The journal's format: 2 is one SQLite file; 1 was a folder of .npz files.
FORMAT = 2
#: SQLite's application_id of a raymanager journal ("RMJL"): another program's
#: database at the path is refused, never changed.
APPLICATION_ID = 0x524D4A4C
#: Results are committed at most this often (see the module docstring): the
#: longest a finished result waits for its commit while results keep coming.
COMMIT_SECONDS = 0.05
#: Commits take at most this share of the driver's time: on a disk where a
#: commit (its fsync) is slow, commits are spaced out to match.
COMMIT_COST_SHARE = 0.05
#: A commit also when this many results, or this many bytes of them, wait:
#: bounds the memory of the group being built.
COMMIT_MAX_BATCHES = 10_000
COMMIT_MAX_BYTES = 64 * 1024 * 1024
#: Recorded results are read back in pages of about this many bytes (and at
#: most READ_PAGE_ROWS rows): a resume streams the journal in bounded memory.
READ_PAGE_BYTES = 8 * 1024 * 1024
READ_PAGE_ROWS = 1024
#: Arrays up to this size are hashed whole for the fingerprint; the content
#: of larger ones is checked batch by batch.
HASH_WHOLE_BYTES = 64 * 1024 * 1024

_SQLITE_HEADER = b"SQLite format 3\x00"
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # input: blake2b of the batch's input rows (NULL: the input's content is
    # in the fingerprint); structure: the result as JSON; arrays: its numpy
    # arrays as consecutive .npy records (NULL: none).
    "CREATE TABLE batches (idx INTEGER PRIMARY KEY, input BLOB, structure TEXT NOT NULL, "
    "arrays BLOB)",
)


#: What :meth:`Journal.replay` returns for a batch the journal does not hold
#: (defined by the engine, which reads it).
NOT_RECORDED = _NOT_RECORDED

DigestOf = Callable[[int], "bytes | None"]


def _no_digest(index: int) -> bytes | None:
    return None


def fingerprint(data: Any, batch_size: int, num_rows: int | None) -> dict[str, Any]:
    """What identifies a run's input at open: kind, size, batch size, and content where cheap.

    ``content`` is a hash of a numpy array (or a mapping of numpy arrays) of
    up to :data:`HASH_WHOLE_BYTES` in all; None for every other input, whose
    content is checked batch by batch instead (see :func:`input_digest`).

    >>> fingerprint(np.zeros(4), 2, 4)["content"] is not None
    True
    >>> fingerprint([1, 2, 3], 2, 3)["content"] is None
    True
    """
    content: str | None = None
    shape: Any = None
    if isinstance(data, np.ndarray):
        shape = [data.dtype.str, list(data.shape)]
        if not data.dtype.hasobject and data.nbytes <= HASH_WHOLE_BYTES:
            digest = hashlib.blake2b(digest_size=16)
            _feed_array(digest, data)
            content = digest.hexdigest()
    elif isinstance(data, Mapping):
        columns = list(data.items())
        shape = sorted(str(key) for key in data)
        arrays = [c for _, c in columns if isinstance(c, np.ndarray) and not c.dtype.hasobject]
        if len(arrays) == len(columns) and sum(a.nbytes for a in arrays) <= HASH_WHOLE_BYTES:
            digest = hashlib.blake2b(digest_size=16)
            for key, column in sorted(columns, key=lambda item: str(item[0])):
                digest.update(str(key).encode())
                _feed_array(digest, column)
            content = digest.hexdigest()
    return {"kind": type(data).__name__, "rows": num_rows, "batch_size": batch_size,
            "shape": shape, "content": content}


def input_digest(rows: Any) -> bytes:
    """A 16-byte blake2b hash of one batch's input rows, the same in every process.

    Arrays are hashed by dtype, shape and bytes; numbers and strings by
    value and type; lists, tuples, dicts and sets by their items; pandas
    and pyarrow tables by their columns and values; another object by its
    ``__dict__``, or by a ``__repr__`` of its own. An object whose content
    cannot be seen (only the default ``<X object at 0x...>`` repr) raises
    TypeError: its hash would differ in every process.

    >>> input_digest([1, 2]) == input_digest([1, 2]) != input_digest([1, 3])
    True
    """
    digest = hashlib.blake2b(digest_size=16)
    try:
        _feed(digest, rows)
    except RecursionError:
        raise TypeError("rows nested too deeply (or a cycle)") from None
    return digest.digest()


_PLAIN = (int, float, str, bool, type(None))
#: ``<X object at 0x...>``: an address, different in every process.
_DEFAULT_REPR: Any = object.__repr__


def _feed_array(digest: Any, array: np.ndarray) -> None:
    digest.update(f"A{array.dtype.str}{array.shape}".encode())
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.size:
        digest.update(flat.view(np.uint8))


def _feed(digest: Any, value: Any) -> None:
    kind = type(value)
    if kind in _PLAIN:
        text = repr(value).encode()
        digest.update(b"%s%d:" % (kind.__name__[:2].encode(), len(text)))
        digest.update(text)
    elif kind in (list, tuple):
        digest.update(b"%c%d[" % (kind.__name__[0].encode()[0], len(value)))
        if all(type(item) in _PLAIN for item in value):
            # repr of numbers, strings, bools and None is exact and unambiguous
            # (strings are quoted and escaped): one C call for the whole batch.
            digest.update(repr(value).encode())
        else:
            for item in value:
                _feed(digest, item)
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            digest.update(f"O{value.shape}".encode())
            for item in value.reshape(-1):
                _feed(digest, item)
        else:
            _feed_array(digest, value)
    elif isinstance(value, np.generic):
        _feed_array(digest, np.asarray(value))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        digest.update(b"b%d:" % len(data))
        digest.update(data)
    elif isinstance(value, range):
        digest.update(repr(value).encode())
    elif isinstance(value, Mapping):
        digest.update(b"M%d{" % len(value))
        for key, item in sorted(value.items(), key=lambda pair: repr(pair[0])):
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, Set):
        parts = sorted(input_digest(item) for item in value)
        digest.update(b"S%d{" % len(parts))
        for part in parts:
            digest.update(part)
    else:
        _feed_other(digest, value)


def _feed_other(digest: Any, value: Any) -> None:
    kind = type(value)
    module = kind.__module__
    digest.update(f"{module}.{kind.__qualname__}:".encode())
    if module.startswith("pandas.") and hasattr(value, "iloc"):
        pandas = importlib.import_module("pandas")  # already loaded: the value is pandas'

        columns = value.columns if hasattr(value, "columns") else [value.name]  # a Series
        digest.update(repr((list(columns), value.dtypes)).encode())
        hashed = pandas.util.hash_pandas_object(value, index=True).to_numpy()
        digest.update(np.ascontiguousarray(hashed).view(np.uint8))
    elif module.startswith("pyarrow") and hasattr(value, "to_pydict"):
        digest.update(str(value.schema).encode())
        _feed(digest, value.to_pydict())
    elif hasattr(value, "__array__") and hasattr(value, "shape"):
        _feed_array(digest, np.asarray(value))  # torch, jax, ... tensors
    elif dataclasses.is_dataclass(value) or (
        hasattr(value, "__dict__") and kind.__repr__ is _DEFAULT_REPR
    ):
        _feed(digest, vars(value))
    elif kind.__repr__ is not _DEFAULT_REPR:
        digest.update(repr(value).encode())
    else:
        raise TypeError(
            f"a {module}.{kind.__qualname__}, whose content cannot be seen (no __dict__, "
            "only the default repr)"
        )


class Journal:
    """The finished batches of one run, in one SQLite file; open with :meth:`open`.

    ``write`` records a result (committed in groups), ``replay`` reads one
    back while a run resumes (in index order, streamed), ``close`` commits
    what waits and closes the file. Safe to call from several threads.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection,
                 digest_of: DigestOf = _no_digest) -> None:
        self.path = path
        self._connection = connection
        #: The hash of batch ``index``'s input rows (None: not checked per batch).
        self.digest_of = digest_of
        self._lock = threading.Lock()
        self._pending: list[tuple[int, bytes | None, str, bytes | None]] = []
        self._pending_bytes = 0
        self._committed_at = time.monotonic()
        self._interval = COMMIT_SECONDS
        self._page: collections.deque[tuple[int, bytes | None, str, bytes | None]] = (
            collections.deque())
        self._read_from = 0
        self._page_rows = 1  # then sized from the records read (READ_PAGE_BYTES)
        self._more = True
        self._replayed = False
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        expected: dict[str, Any],
        *,
        digest_of: DigestOf | None = None,
    ) -> Journal:
        """Open (or create) the journal at ``path`` for an input with this fingerprint.

        JournalError, naming the path, when it was made for another input
        (see :func:`fingerprint`), is in an older format, is not a journal,
        is in use by another run, or cannot be created.

        >>> expected = fingerprint(data, 128, len(data))
        >>> journal = Journal.open("run.journal", expected)   # doctest: +SKIP
        """
        where = Path(path)
        if where.is_dir():
            raise JournalError(_folder_message(where))
        fresh = not where.exists() or where.stat().st_size == 0
        if not fresh:
            with open(where, "rb") as handle:
                if handle.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                    raise JournalError(
                        f"{where} is not a raymanager journal (not an SQLite database); "
                        "pass a journal path of its own"
                    )
        try:
            connection = sqlite3.connect(where, timeout=0, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal at {where}: {exc}") from None
        try:
            # Exclusive: one run at a time, and no -shm file next to the journal.
            connection.execute("PRAGMA locking_mode=EXCLUSIVE")
            if not fresh:
                _check_own(connection, where)  # before anything changes another's database
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("BEGIN IMMEDIATE")
            if _check_own(connection, where):
                found = json.loads(connection.execute(
                    "SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()[0])
                if found != expected:
                    raise JournalError(_other_input_message(where, found, expected))
            else:
                for statement in _SCHEMA:
                    connection.execute(statement)
                connection.executemany("INSERT INTO meta VALUES (?, ?)", [
                    ("fingerprint", json.dumps(expected)),
                    ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
                ])
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                connection.execute(f"PRAGMA user_version = {FORMAT}")
            connection.execute("COMMIT")
            recorded = connection.execute("SELECT EXISTS (SELECT 1 FROM batches)").fetchone()[0]
            if fresh:
                fsync_directory(where.parent)  # the new file's name survives a power loss
        except JournalError:
            connection.close()
            raise
        except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
            connection.close()
            raise JournalError(_open_message(where, exc)) from None
        journal = cls(where, connection, digest_of or _no_digest)
        journal._more = bool(recorded)  # nothing to replay in a new journal
        return journal

    # ------------------------------------------------------------------ writing

    def write(self, index: int, result: Any) -> None:
        """Record batch ``index``'s result; JournalError if it cannot be stored or written.

        The result is encoded now (a type that cannot be stored is refused
        at once) and committed with its group.

        >>> journal.write(3, {"loss": 0.25, "weights": np.zeros(4)})    # doctest: +SKIP
        """
        arrays: list[np.ndarray] = []
        try:
            structure = json.dumps(_encode(result, arrays), separators=(",", ":"))
        except TypeError as exc:
            raise JournalError(
                f"batch {index}'s result cannot be kept in the journal at {self.path}: {exc}. "
                "A journal stores numpy arrays, numbers, strings, None, and lists, tuples and "
                "string-keyed dicts of them (never pickles)"
            ) from None
        blob: bytes | None = None
        if arrays:
            buffer = io.BytesIO()
            for array in arrays:
                np.lib.format.write_array(buffer, array, allow_pickle=False)
            blob = buffer.getvalue()
        row = (index, self.digest_of(index), structure, blob)
        with self._lock:
            self._check_open()
            self._pending.append(row)
            self._pending_bytes += len(structure) + (len(blob) if blob else 0)
            if (time.monotonic() - self._committed_at >= self._interval
                    or len(self._pending) >= COMMIT_MAX_BATCHES
                    or self._pending_bytes >= COMMIT_MAX_BYTES):
                self._commit()

    def commit(self) -> None:
        """Commit the results waiting for their group now (``close`` does too).

        >>> journal.commit()                                            # doctest: +SKIP
        """
        with self._lock:
            self._check_open()
            self._commit()

    def _commit(self) -> None:
        started = time.monotonic()
        if self._pending:
            try:
                self._connection.execute("BEGIN")
                self._connection.executemany(
                    "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?)", self._pending)
                self._connection.execute("COMMIT")
            except sqlite3.Error as exc:
                lost = len(self._pending)
                self._pending.clear()
                self._pending_bytes = 0
                with contextlib.suppress(sqlite3.Error):
                    self._connection.execute("ROLLBACK")
                raise JournalError(
                    f"cannot write the journal at {self.path}: {exc} (the last {lost} "
                    "result(s) are not recorded: they run again on resume)"
                ) from None
            self._pending.clear()
            self._pending_bytes = 0
        now = time.monotonic()
        self._committed_at = now
        self._interval = max(COMMIT_SECONDS, (now - started) / COMMIT_COST_SHARE)

    # ------------------------------------------------------------------ reading

    @property
    def resuming(self) -> bool:
        """Whether recorded batches may still lie ahead of those replayed so far."""
        return bool(self._page) or self._more

    def replay(self, index: int) -> Any:
        """Batch ``index``'s recorded result, or :data:`NOT_RECORDED`.

        Called in increasing ``index`` order while a run resumes: records are
        read from the file page by page, so memory stays bounded. Before the
        result is handed back, the batch's input rows (hashed as they were
        read, see ``digest_of``) are compared with those recorded: a
        difference raises JournalError naming the batch.

        >>> journal.replay(0)                                           # doctest: +SKIP
        {'loss': 0.5}
        """
        with self._lock:
            self._check_open()
            row = self._recorded(index)
            if row is None:
                return NOT_RECORDED
            digest = self.digest_of(index)
            if row[1] is not None and digest is not None and row[1] != digest:
                raise JournalError(
                    f"batch {index}'s input rows differ from those recorded in the journal at "
                    f"{self.path}: its recorded result would be stale, so the run stops here. "
                    "Use a new journal path for the new input, or remove this one to start over"
                )
            self._replayed = True
        return self._decode(row)

    def replayed(self) -> bool:
        """Whether a batch was replayed since the last call (a run then goes on at once).

        >>> journal.replayed()                                          # doctest: +SKIP
        False
        """
        replayed, self._replayed = self._replayed, False
        return replayed

    def _recorded(self, index: int) -> tuple[int, bytes | None, str, bytes | None] | None:
        while True:
            if not self._page:
                if not self._more:
                    return None
                self._fetch()
                continue
            recorded = self._page[0][0]
            if recorded > index:
                return None
            row = self._page.popleft()
            if recorded == index:
                return row

    def _fetch(self) -> None:
        try:
            rows = self._connection.execute(
                "SELECT idx, input, structure, arrays FROM batches WHERE idx >= ? "
                "ORDER BY idx LIMIT ?", (self._read_from, self._page_rows)).fetchall()
        except sqlite3.Error as exc:
            raise JournalError(f"cannot read the journal at {self.path}: {exc}") from None
        self._more = len(rows) == self._page_rows
        if rows:
            self._read_from = rows[-1][0] + 1
            size = sum(len(r[2]) + (len(r[3]) if r[3] else 0) for r in rows) // len(rows)
            self._page_rows = max(1, min(READ_PAGE_ROWS, READ_PAGE_BYTES // max(1, size)))
        self._page.extend(rows)

    def _decode(self, row: tuple[int, bytes | None, str, bytes | None]) -> Any:
        index, _, structure, blob = row
        try:
            arrays: list[np.ndarray] = []
            if blob is not None:
                stream = io.BytesIO(blob)
                while stream.tell() < len(blob):
                    arrays.append(np.lib.format.read_array(stream, allow_pickle=False))
            return _decode(json.loads(structure), arrays)
        except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:
            # Not numpy's text: it suggests allow_pickle, which we never do.
            raise JournalError(
                f"the journal's record of batch {index} in {self.path} is corrupt (not a "
                f"readable record: {type(exc).__name__}); remove {self.path} to start over"
            ) from None

    def indices(self) -> Iterator[int]:
        """The indices of the committed batches, in order (streamed).

        >>> list(journal.indices())                                     # doctest: +SKIP
        [0, 1, 2]
        """
        after = -1
        while True:
            with self._lock:
                self._check_open()
                page = [r[0] for r in self._connection.execute(
                    "SELECT idx FROM batches WHERE idx > ? ORDER BY idx LIMIT 4096", (after,))]
            yield from page
            if len(page) < 4096:
                return
            after = page[-1]

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Commit what waits and close the file (idempotent); JournalError if the commit fails.

        >>> journal.close()                                             # doctest: +SKIP
        """
        with self._lock:
            if self._closed:
                return
            try:
                self._commit()
            finally:
                self._closed = True
                self._page.clear()
                with contextlib.suppress(sqlite3.Error):
                    self._connection.close()

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"the journal at {self.path} is closed")

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _check_own(connection: sqlite3.Connection, where: Path) -> bool:
    """True for one of our journals, False for an empty database; else JournalError."""
    application = connection.execute("PRAGMA application_id").fetchone()[0]
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if application == 0 and version == 0 and tables == 0:
        return False
    if application != APPLICATION_ID:
        raise JournalError(
            f"{where} is an SQLite database of another program, not a raymanager journal; "
            "pass a journal path of its own"
        )
    if version != FORMAT:
        raise JournalError(
            f"the journal at {where} is in format {version}, and this raymanager reads "
            f"format {FORMAT} only: finish that run with the raymanager that wrote it, or "
            "remove the file to start over"
        )
    return True


def _folder_message(where: Path) -> str:
    meta = where / "meta.json"
    if meta.is_file():
        try:
            version = json.loads(meta.read_text()).get("version", 1)
        except (OSError, ValueError, AttributeError):
            version = 1
        return (
            f"the journal at {where} is in format {version} (a folder of .npz files, from an "
            f"older raymanager); this raymanager reads format {FORMAT} only (one SQLite file), "
            "since the old format holds no hash of each batch's input to check it against: "
            "finish that run with the raymanager that wrote it, or remove the folder to start "
            "over"
        )
    return (
        f"the journal path {where} is a folder; journal= names a file (one SQLite database), "
        f"e.g. {where / 'run.journal'}"
    )


def _other_input_message(where: Path, found: dict[str, Any], expected: dict[str, Any]) -> str:
    names = {"kind": "the input's type", "rows": "the number of rows",
             "batch_size": "the batch size", "shape": "the array's dtype and shape (or the "
             "mapping's columns)", "content": "the array's content"}
    differ = [f"{names.get(key, key)} ({found.get(key)!r}, now {expected.get(key)!r})"
              for key in sorted(set(found) | set(expected)) if found.get(key) != expected.get(key)]
    return (
        f"the journal at {where} was made for other data or another batch config: "
        f"{'; '.join(differ)}. Use a new journal path, or remove this one to start over"
    )


def _open_message(where: Path, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return (f"the journal at {where} is in use by another run (in this process or "
                "another): a journal records one run at a time")
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return f"cannot use the journal at {where}: {text}"


def _encode(value: Any, arrays: list[np.ndarray]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("a numpy array of Python objects")
        arrays.append(value)
        return {"__ndarray__": len(arrays) - 1}
    if isinstance(value, np.generic):
        if isinstance(value, np.object_):
            raise TypeError("a numpy object scalar")
        arrays.append(np.asarray(value))
        return {"__scalar__": len(arrays) - 1}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a dict with keys that are not strings")
        if any(k.startswith("__") and k.endswith("__") for k in value):
            return {"__dict__": {k: _encode(v, arrays) for k, v in value.items()}}
        return {k: _encode(v, arrays) for k, v in value.items()}
    raise TypeError(f"a {type(value).__module__}.{type(value).__qualname__}")


def _decode(value: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return arrays[value["__ndarray__"]]
        if "__scalar__" in value:
            return arrays[value["__scalar__"]][()]
        if "__tuple__" in value:
            return tuple(_decode(v, arrays) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
        return {k: _decode(v, arrays) for k, v in value.items()}
    return value
