"""One writer at a time for a run or sweep directory: a lock that dies with its holder.

``raymanager train`` (new or ``--resume``), ``raymanager sweep`` and their Python
functions hold a directory's lock for as long as they write into it; a second
process that opens the same directory gets :class:`~raymanager.errors.RunLockedError`
at once, naming the process that holds it, instead of interleaving its rows with
the first one's.

The lock is an advisory ``flock`` on the file ``.raymanager.lock`` in the
directory, not the file's existence: the kernel releases it when its process
ends, however it ends (SIGKILL, a crash, a reboot), so a dead run never leaves
its directory locked. The file stays behind, harmless, holding the last holder's
record (pid, host, command, start time) as JSON, which is read for the error
message only. A hand-written ``flock`` rather than the ``filelock`` package:
``filelock`` truncates the lock file on every attempt, so the holder's record,
which the error message is made of, could not live in it.

    >>> with DirectoryLock(Path("runs/r")):      # doctest: +SKIP
    ...     ...                                  # write the run's files
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import types
from pathlib import Path
from typing import Any

from raymanager.errors import RunLockedError
from raymanager.rundir.layout import LOCK_FILE

__all__ = ["DirectoryLock"]


class DirectoryLock:
    """The exclusive lock of one directory, held from :meth:`acquire` to :meth:`release`.

    ``what`` names the directory in the error (``"run"``, ``"sweep"``).
    Two locks of the same directory exclude each other within one process
    too (each opens the file anew), so two threads of a sweep cannot write one
    run either.

        >>> lock = DirectoryLock(Path("runs/r")).acquire()   # doctest: +SKIP
        >>> lock.release()                                   # doctest: +SKIP
    """

    def __init__(self, directory: str | os.PathLike[str], *, what: str = "run") -> None:
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.directory / LOCK_FILE

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> DirectoryLock:
        """Take the lock, or raise RunLockedError naming its holder (never waits).

        The directory must exist (FileNotFoundError otherwise).
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is held by this lock already")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                record = _read_record(fd)
                os.close(fd)
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise self._locked_error(record) from None
            # The holder that removed its directory (a run that failed to start)
            # unlinks the file before releasing it: a lock taken on that unlinked
            # file guards nothing, so open the path again.
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        self._fd = fd
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  # The program's name, not its path: the message stays one readable line.
                  "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                  "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        with contextlib.suppress(OSError):  # the record only serves the error message
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        return self

    def release(self, *, remove_file: bool = False) -> None:
        """Let the lock go (idempotent); ``remove_file`` also deletes the lock file,
        for a holder about to remove its directory."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if remove_file:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(fd)  # closing the last descriptor releases the flock

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: types.TracebackType | None) -> None:
        self.release()

    def _locked_error(self, record: dict[str, Any]) -> RunLockedError:
        pid = record.get("pid") if isinstance(record.get("pid"), int) else None
        host = record.get("host") if isinstance(record.get("host"), str) else None
        command = record.get("command") if isinstance(record.get("command"), str) else None
        if pid is None:
            holder = "another process"
        else:
            where = "" if host in (None, socket.gethostname()) else f" on host {host}"
            since = f", since {record['since']}" if isinstance(record.get("since"), str) else ""
            holder = f"process {pid}{where}{since}" + (f" ({command})" if command else "")
        return RunLockedError(
            f"{self.directory} is in use: {holder} is writing this {self.what}; one process "
            f"at a time writes a {self.what} directory. Wait for it to end or stop it (its "
            f"lock ends with it, even if it is killed)",
            path=str(self.directory), pid=pid, host=host, command=command)


def _read_record(fd: int) -> dict[str, Any]:
    """The holder's record in the lock file, or {} (none yet, or not ours)."""
    try:
        value = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
