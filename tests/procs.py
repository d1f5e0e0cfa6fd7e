"""Process checks shared by the tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import psutil


def still_running(pids: Iterable[int | None], wait_s: float = 15.0) -> list[int]:
    """The PIDs still running after waiting up to ``wait_s`` for them to exit.

    ``ray.kill`` ends a process asynchronously, so a check right after a
    shutdown waits for the exits instead of sleeping a guessed time.
    """
    procs = []
    for pid in pids:
        if pid is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.append(psutil.Process(pid))
    _, running = psutil.wait_procs(procs, timeout=wait_s)
    return [p.pid for p in running if p.status() != psutil.STATUS_ZOMBIE]
