"""The journal's store: one SQLite file of finished batches, committed in groups.

:class:`Journal` opens (or creates) the file and refuses one made for another
input, in another format or by another program; records results, committed in
groups; reads them back page by page while a run resumes; and closes. Its
durability and format are described in :mod:`raymanager.journal`.

Imports ``codec``, ``fingerprints`` and ``file_format`` (its siblings), ``durable``, ``errors``
and the engine's ``NOT_RECORDED``; no ray.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from raymanager.durable import fsync_directory
from raymanager.engine.run import NOT_RECORDED as _NOT_RECORDED
from raymanager.errors import JournalError
from raymanager.journal.codec import decode_result, encode_result
from raymanager.journal.file_format import (
    check_header,
    check_or_create,
    check_own,
    folder_message,
    open_message,
)
from raymanager.journal.fingerprints import DigestOf, no_digest

__all__ = [
    "COMMIT_COST_SHARE",
    "COMMIT_MAX_BATCHES",
    "COMMIT_MAX_BYTES",
    "COMMIT_SECONDS",
        "NOT_RECORDED",
    "Journal",
]

#: Results are committed at most this often (see :mod:`raymanager.journal`): the
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

#: What :meth:`Journal.replay` returns for a batch the journal does not hold
#: (defined by the engine, which reads it).
NOT_RECORDED = _NOT_RECORDED


class Journal:
    """The finished batches of one run, in one SQLite file; open with :meth:`open`.

    ``write`` records a result (committed in groups), ``replay`` reads one
    back while a run resumes (in index order, streamed), ``close`` commits
    what waits and closes the file. Safe to call from several threads.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection,
                 digest_of: DigestOf = no_digest) -> None:
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
        (see :func:`~raymanager.journal.fingerprint`), is in an older format, is not a journal,
        is in use by another run, or cannot be created.

        >>> expected = fingerprint(data, 128, len(data))
        >>> journal = Journal.open("run.journal", expected)   # doctest: +SKIP
        """
        where = Path(path)
        if where.is_dir():
            raise JournalError(folder_message(where))
        fresh = not where.exists() or where.stat().st_size == 0
        if not fresh:
            check_header(where)
        try:
            connection = sqlite3.connect(where, timeout=0, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open the journal at {where}: {exc}") from None
        try:
            # Exclusive: one run at a time, and no -shm file next to the journal.
            connection.execute("PRAGMA locking_mode=EXCLUSIVE")
            if not fresh:
                check_own(connection, where)  # before anything changes another's database
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("BEGIN IMMEDIATE")
            check_or_create(connection, where, expected)
            connection.execute("COMMIT")
            recorded = connection.execute("SELECT EXISTS (SELECT 1 FROM batches)").fetchone()[0]
            if fresh:
                fsync_directory(where.parent)  # the new file's name survives a power loss
        except JournalError:
            connection.close()
            raise
        except (sqlite3.Error, OSError, ValueError, TypeError) as exc:
            connection.close()
            raise JournalError(open_message(where, exc)) from None
        journal = cls(where, connection, digest_of or no_digest)
        journal._more = bool(recorded)  # nothing to replay in a new journal
        return journal

    # ------------------------------------------------------------------ writing

    def write(self, index: int, result: Any) -> None:
        """Record batch ``index``'s result; JournalError if it cannot be stored or written.

        The result is encoded now (a type that cannot be stored is refused
        at once) and committed with its group.

        >>> journal.write(3, {"loss": 0.25, "weights": np.zeros(4)})    # doctest: +SKIP
        """
        try:
            structure, blob = encode_result(result)
        except TypeError as exc:
            raise JournalError(
                f"batch {index}'s result cannot be kept in the journal at {self.path}: {exc}. "
                "A journal stores numpy arrays, numbers, strings, None, and lists, tuples and "
                "string-keyed dicts of them (never pickles)"
            ) from None
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
        return self._result_of(row)

    def replayed(self) -> bool:
        """Whether a batch was replayed since the last call (a run then goes on at once).

        >>> journal.replayed()                                          # doctest: +SKIP
        False
        """
        # Under the lock: a replay() in another thread between the read and
        # the reset would otherwise be lost, and its run would wait for nothing.
        with self._lock:
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

    def _result_of(self, row: tuple[int, bytes | None, str, bytes | None]) -> Any:
        """The result a recorded row holds; JournalError naming the batch if it is corrupt."""
        index, _, structure, blob = row
        try:
            return decode_result(structure, blob)
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
