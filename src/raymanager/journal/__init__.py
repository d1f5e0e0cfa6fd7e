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

The package has one module per job, none importing ray:

- ``fingerprints``: what identifies an input, and the hash of a batch's rows;
- ``codec``: a result as JSON plus ``.npy`` records, and back;
- ``file_format``: the SQLite file's schema and marks, and the refusals at open;
- ``store``: :class:`Journal`, the file opened, written, replayed and closed.
"""

from __future__ import annotations

from raymanager.errors import JournalError
from raymanager.journal.file_format import FORMAT
from raymanager.journal.fingerprints import HASH_WHOLE_BYTES, fingerprint, input_digest
from raymanager.journal.store import (
    COMMIT_COST_SHARE,
    COMMIT_MAX_BATCHES,
    COMMIT_MAX_BYTES,
    COMMIT_SECONDS,
    NOT_RECORDED,
    READ_PAGE_BYTES,
    READ_PAGE_ROWS,
    Journal,
)

__all__ = [
    "COMMIT_COST_SHARE",
    "COMMIT_MAX_BATCHES",
    "COMMIT_MAX_BYTES",
    "COMMIT_SECONDS",
    "FORMAT",
    "HASH_WHOLE_BYTES",
    "NOT_RECORDED",
    "READ_PAGE_BYTES",
    "READ_PAGE_ROWS",
    "Journal",
    "JournalError",
    "fingerprint",
    "input_digest",
]
