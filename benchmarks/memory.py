"""Peak memory of the driver and every process it started, shared pages counted once.

Method (Linux only):

- Every ~20 ms a thread reads ``/proc/<pid>/smaps_rollup`` of the driver and
  all its descendants (Ray's gcs_server, raylet and workers are descendants of
  a driver that started Ray; so are ``multiprocessing`` and mpire workers).
- Per process it takes ``Pss_Anon + Pss_File``: the proportional set size,
  where a page mapped by *n* processes counts 1/n in each, so over the
  process tree every page counts once (e.g. a forked child's copy-on-write
  view of the parent's array).
- Shared memory (``Pss_Shmem``, which is Ray's object store in ``/dev/shm``)
  is left out of that sum and counted once from Ray's own figure of bytes in
  use in the object store (sampled every ~50 ms over gRPC), because the store's
  tmpfs pages stay resident after their objects are freed: a page-based count
  would charge a run for what an earlier run left, and a later run nothing for
  reusing it. Without Ray the tree's ``Pss_Shmem`` is counted instead.

The same total without ``Pss_File`` is kept too (``extra_copies``): a
memory-mapped file's pages are the OS page cache, shared and reclaimable, not
a copy the call made, and they count in ``Pss_File`` only.

The result is the peak of that total during a call, and the same total just
before the call (the data already held by the driver, idle workers, Ray's own
processes), so ``peak - before`` is what the call itself needed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil

__all__ = ["MemoryPeak", "measure_peak", "tree_pss"]

SAMPLE_S = 0.02
STORE_SAMPLE_S = 0.05
TREE_REFRESH_S = 0.2


def _rollup3(pid: int) -> tuple[int, int, int]:
    """(Pss_Anon, Pss_File, Pss_Shmem) of one process in bytes; zeros when gone."""
    anon = file = shmem = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss_Anon:"):
                    anon = int(line.split()[1]) * 1024
                elif line.startswith("Pss_File:"):
                    file = int(line.split()[1]) * 1024
                elif line.startswith("Pss_Shmem:"):
                    shmem = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0, 0
    return anon, file, shmem


def _rollup(pid: int) -> tuple[int, int]:
    """(Pss_Anon + Pss_File, Pss_Shmem) of one process in bytes; (0, 0) when gone."""
    anon, file, shmem = _rollup3(pid)
    return anon + file, shmem


def _tree() -> list[int]:
    me = psutil.Process()
    pids = [me.pid]
    with contextlib.suppress(psutil.Error):
        pids += [child.pid for child in me.children(recursive=True)]
    return pids


def tree_pss() -> tuple[int, int]:
    """(sum of Pss_Anon + Pss_File, sum of Pss_Shmem) over the driver and its descendants."""
    total = shmem = 0
    for pid in _tree():
        a, s = _rollup(pid)
        total += a
        shmem += s
    return total, shmem


@dataclass
class MemoryPeak:
    """What :func:`measure_peak` found, in bytes."""

    before: int = 0
    peak: int = 0
    samples: int = 0
    seconds: float = 0.0
    store_before: int = 0
    store_peak: int = 0
    method: str = ""
    #: The same totals without Pss_File: anonymous memory and the store only,
    #: i.e. copies. A memory-mapped file's pages are the OS page cache, shared
    #: and reclaimable, and count in Pss_File only.
    before_copies: int = 0
    peak_copies: int = 0

    @property
    def extra(self) -> int:
        """Peak minus the total just before the call: what the call needed."""
        return self.peak - self.before

    @property
    def extra_copies(self) -> int:
        """Like :attr:`extra`, without file-backed pages: the copies the call made."""
        return self.peak_copies - self.before_copies


@contextlib.contextmanager
def measure_peak(store_used: Callable[[], int] | None = None) -> Iterator[MemoryPeak]:
    """Sample the tree's memory in a thread while the ``with`` body runs.

    ``store_used`` returns the bytes in use in Ray's object store (None when
    Ray is not running: then the tree's shared memory is counted by PSS).
    """
    result = MemoryPeak(method="pss_anon+file + store_used" if store_used else "pss")
    stop = threading.Event()
    pids = _tree()
    store = store_used() if store_used else 0

    def total(pid_list: list[int], store_bytes: int) -> tuple[int, int]:
        anon = file = shm = 0
        for pid in pid_list:
            a, f, s = _rollup3(pid)
            anon += a
            file += f
            shm += s
        copies = anon + (store_bytes if store_used else shm)
        return copies + file, copies

    result.before, result.before_copies = total(pids, store)
    result.peak, result.peak_copies = result.before, result.before_copies
    result.store_before = result.store_peak = store
    began = time.monotonic()

    def sample() -> None:
        nonlocal pids, store
        next_tree = next_store = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_tree:
                pids, next_tree = _tree(), now + TREE_REFRESH_S
            if store_used and now >= next_store:
                with contextlib.suppress(Exception):
                    store = store_used()
                next_store = now + STORE_SAMPLE_S
                result.store_peak = max(result.store_peak, store)
            value, copies = total(pids, store)
            result.peak = max(result.peak, value)
            result.peak_copies = max(result.peak_copies, copies)
            result.samples += 1
            stop.wait(SAMPLE_S)

    thread = threading.Thread(target=sample, name="memory-sampler", daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result.seconds = time.monotonic() - began
