"""The work every benchmark variant runs, importable by all worker kinds.

One function, :func:`process`, does the per-batch work for every variant
(serial loop, ``multiprocessing``, mpire, Ray tasks, Ray actors, Ray Data and
raymanager), so the variants differ only in how batches reach it:

- ``reps == 0``: trivial work, the float64 sum of the batch (W2, W3);
- ``reps > 0``: ``reps`` rounds of ``x = tanh(x @ MATRIX)`` on the batch, then
  the sum (W1; ``reps`` is calibrated so one batch takes ~10 ms serially).

Nothing here imports Ray at module level: ``multiprocessing`` and mpire
workers import this module too.

    >>> batch = np.ones((4, 64), np.float32)
    >>> process(batch, 0)
    256.0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from raymanager import RayActor

__all__ = [
    "COLUMNS",
    "MATRIX",
    "BenchActor",
    "PlainWorker",
    "data_batch",
    "make_data",
    "mpire_range",
    "process",
]

#: Columns of every benchmark array (float32, so one 128-row batch is 32 KiB).
COLUMNS = 64

#: The fixed 64x64 matrix of W1's matmul, scaled so tanh stays off saturation.
MATRIX = (np.random.default_rng(1234).standard_normal((COLUMNS, COLUMNS)) / 8.0).astype(
    np.float32
)


def process(batch: np.ndarray, reps: int) -> float:
    """The per-batch work: ``reps`` rounds of matmul + tanh, then the float64 sum."""
    x = batch
    for _ in range(reps):
        x = np.tanh(x @ MATRIX)
    return float(x.sum(dtype=np.float64))


def make_data(num_rows: int, seed: int = 0) -> np.ndarray:
    """A ``num_rows x 64`` float32 array of uniform [0, 1) values, filled in 64 MiB pieces."""
    rng = np.random.default_rng(seed)
    data = np.empty((num_rows, COLUMNS), dtype=np.float32)
    step = (64 * 2**20) // (COLUMNS * 4)
    for start in range(0, num_rows, step):
        stop = min(start + step, num_rows)
        rng.random((stop - start, COLUMNS), dtype=np.float32, out=data[start:stop])
    return data


def mpire_range(shared: np.ndarray, start: int, stop: int, reps: int) -> float:
    """mpire task: one batch read from the fork-shared array (zero-copy)."""
    return process(shared[start:stop], reps)


def data_batch(batch: Mapping[str, np.ndarray], reps: int) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: one output row per input batch."""
    return {"result": np.array([process(batch["data"], reps)], dtype=np.float64)}


class BenchActor(RayActor[np.ndarray, float]):
    """raymanager actor: :func:`process` with the ``reps`` set by :meth:`set_reps`."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.reps = int(self.config.get("reps", 0))

    def set_reps(self, reps: int) -> int:
        """Switch the workload (broadcast with ``replay_on_restart=True``)."""
        self.reps = reps
        return os.getpid()

    def process_batch(self, batch: np.ndarray) -> float:
        return process(batch, self.reps)


class PlainWorker:
    """Plain class for ``ray.remote``: the actor of the ``ray.util.ActorPool`` variant."""

    def process(self, batch: np.ndarray, reps: int) -> float:
        """One batch of work."""
        return process(batch, reps)

    def ping(self) -> int:
        """Answer once the actor is up."""
        return os.getpid()


def _thread_times() -> dict[int, tuple[str, float, float]]:
    """Each thread of this process: tid -> (name, seconds on a CPU, seconds waiting for one).

    From ``/proc/self/task/*/schedstat`` (nanoseconds, exact), not the 10 ms
    ticks of ``stat``: a worker's helper threads wake for microseconds at a time.
    """
    times: dict[int, tuple[str, float, float]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as handle:
                name = handle.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as handle:
                on_cpu, waiting, _ = handle.read().split()
        except OSError:  # the thread ended while we looked
            continue
        times[int(tid)] = (name, int(on_cpu) / 1e9, int(waiting) / 1e9)
    return times


def _switches(tid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of one thread of this process."""
    counts: dict[str, int] = {}
    with open(f"/proc/self/task/{tid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key.endswith("ctxt_switches"):
                counts[key] = int(value)
    return counts["voluntary_ctxt_switches"], counts["nonvoluntary_ctxt_switches"]


_DATA: dict[tuple[int, int], np.ndarray] = {}


def timed_loop(num_batches: int, reps: int, seed: int) -> dict[str, Any]:
    """The same W1 batches, looped where this runs: in a Ray actor or in a forked process.

    Returns the loop's wall and CPU seconds, the executing thread's context
    switches, every thread's CPU by name, the process's niceness and thread
    count, and what BLAS/OpenMP pools threadpoolctl sees, plus the results'
    sum so both sides can be checked against each other.
    """
    import threading
    import time

    key = (num_batches, seed)
    if key not in _DATA:  # made once per worker, outside every timing
        _DATA.clear()
        _DATA[key] = make_data(num_batches * 128, seed=seed)
    data = _DATA[key]
    tid = threading.get_native_id()
    process(data[:128], reps)  # warm: BLAS, tanh's code paths
    times_before = _thread_times()
    vol_before, invol_before = _switches(tid)
    cpu_before = time.thread_time()
    start = time.perf_counter()
    total = 0.0
    for i in range(num_batches):
        total += process(data[i * 128 : (i + 1) * 128], reps)
    wall = time.perf_counter() - start
    cpu = time.thread_time() - cpu_before
    vol_after, invol_after = _switches(tid)
    times_after = _thread_times()
    others: dict[str, float] = {}  # every other thread's CPU in the loop, by name
    for thread, (name, on_cpu, _) in times_after.items():
        spent = on_cpu - times_before.get(thread, (name, 0.0, 0.0))[1]
        if thread != tid and spent > 0:
            others[name] = others.get(name, 0.0) + spent
    waited = times_after[tid][2] - times_before[tid][2]
    try:
        from threadpoolctl import threadpool_info

        pools = [f"{p['internal_api']}:{p['num_threads']}" for p in threadpool_info()]
    except ImportError:
        pools = []
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "voluntary_switches": vol_after - vol_before,
        "involuntary_switches": invol_after - invol_before,
        "run_queue_wait_s": waited,
        "other_threads_cpu_s": sum(others.values()),
        "other_threads": dict(sorted(others.items())),
        "threads": len(os.listdir("/proc/self/task")),
        "niceness": os.getpriority(os.PRIO_PROCESS, 0),
        "blas_pools": pools,
        "pid": os.getpid(),
        "total": total,
    }


class GapWorker:
    """Plain class for ``ray.remote``: runs :func:`timed_loop` inside a Ray actor."""

    def ping(self) -> int:
        """Answer once the actor is up."""
        return os.getpid()

    def loop(self, num_batches: int, reps: int, seed: int) -> dict[str, Any]:
        """:func:`timed_loop` in this actor."""
        return timed_loop(num_batches, reps, seed)
