"""The journal file's format, and the checks that refuse a file at open.

A journal is one SQLite database marked as ours (``application_id``) and
versioned (``user_version`` = :data:`FORMAT`), with the tables of
:data:`SCHEMA`. :func:`check_header` refuses a file that is no SQLite
database, :func:`check_own` tells one of ours from an empty database and
refuses another program's database or another format, and
:func:`check_or_create` checks a journal's input fingerprint or makes an
empty database a journal; the ``*_message`` functions word every other
refusal (a folder, an older journal, another input, a file in use).

Imports ``errors`` and the standard library only (no ray).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from raymanager.errors import JournalError

__all__ = [
    "APPLICATION_ID",
    "FORMAT",
    "SCHEMA",
    "SQLITE_HEADER",
    "check_header",
    "check_or_create",
    "check_own",
    "folder_message",
    "open_message",
    "other_input_message",
]

#: The journal's format: 2 is one SQLite file; 1 was a folder of .npz files.
FORMAT = 2
#: SQLite's application_id of a raymanager journal ("RMJL"): another program's
#: database at the path is refused, never changed.
APPLICATION_ID = 0x524D4A4C
#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"
SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # input: blake2b of the batch's input rows (NULL: the input's content is
    # in the fingerprint); structure: the result as JSON; arrays: its numpy
    # arrays as consecutive .npy records (NULL: none).
    "CREATE TABLE batches (idx INTEGER PRIMARY KEY, input BLOB, structure TEXT NOT NULL, "
    "arrays BLOB)",
)


def check_header(where: Path) -> None:
    """JournalError unless the file at ``where`` starts as an SQLite database does."""
    with open(where, "rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise JournalError(
                f"{where} is not a raymanager journal (not an SQLite database); "
                "pass a journal path of its own"
            )


def check_or_create(connection: sqlite3.Connection, where: Path,
                    expected: dict[str, Any]) -> None:
    """In an open transaction: check our journal's fingerprint against ``expected``,
    or make an empty database a journal for it (schema, fingerprint, marks)."""
    if check_own(connection, where):
        found = json.loads(connection.execute(
            "SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()[0])
        if found != expected:
            raise JournalError(other_input_message(where, found, expected))
        return
    for statement in SCHEMA:
        connection.execute(statement)
    connection.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("fingerprint", json.dumps(expected)),
        ("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
    ])
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute(f"PRAGMA user_version = {FORMAT}")


def check_own(connection: sqlite3.Connection, where: Path) -> bool:
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


def folder_message(where: Path) -> str:
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


def other_input_message(where: Path, found: dict[str, Any], expected: dict[str, Any]) -> str:
    names = {"kind": "the input's type", "rows": "the number of rows",
             "batch_size": "the batch size", "shape": "the array's dtype and shape (or the "
             "mapping's columns)", "content": "the array's content"}
    differ = [f"{names.get(key, key)} ({found.get(key)!r}, now {expected.get(key)!r})"
              for key in sorted(set(found) | set(expected)) if found.get(key) != expected.get(key)]
    return (
        f"the journal at {where} was made for other data or another batch config: "
        f"{'; '.join(differ)}. Use a new journal path, or remove this one to start over"
    )


def open_message(where: Path, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return (f"the journal at {where} is in use by another run (in this process or "
                "another): a journal records one run at a time")
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return f"cannot use the journal at {where}: {text}"
