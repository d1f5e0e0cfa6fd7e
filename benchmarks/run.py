"""raymanager benchmark suite: one command, one Ray, every variant checked.

    python benchmarks/run.py [--quick] [--out benchmarks/results/latest.json]

Workloads (all float32 arrays of 64 columns, cut into row batches):

- W1: 400 batches of 128 rows, ~10 ms of numpy work each (calibrated):
  speedup of each 2-worker variant over the serial loop.
- W2: 5,000 batches of 128 rows, trivial work (the batch sum): cost per batch.
- W3: a 2 GiB array (256 MiB with --quick) in 128 batches, trivial work:
  wall time and peak memory of the driver plus all its worker processes
  (method in memory.py and README.md).

Variants: serial loop, multiprocessing.Pool(2), mpire WorkerPool(2),
ray.util.ActorPool with 2 actors, Ray tasks, Ray Data map_batches and
raymanager process_in_parallel: on the array (put into the object store
inside the timing), on an ObjectRef put once beforehand (W1, W2: the
counterpart of mpire's fork-shared array) and on a memory-mapped .npy file
(W3). Plus: start-up and shutdown cost in fresh processes, the core ratio
(process_in_parallel vs ActorPool.map on 1,000 trivial batches), W1 with a
worker SIGKILLed mid-run, and driver scaling (sleep-bound batches on pools
of 2 to 64 actors, see driver_scaling.py).

Every variant's results are compared with the serial loop's; a mismatch is
reported as FAIL, never as a time. Medians over ``--repeats`` timed runs after
one warm-up run; Ray's start-up and pool creation are outside the timings.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per process, set before numpy loads and inherited by
# every worker (Ray sets the same in its workers): 2 workers then use 2 cores,
# and the serial loop is the 1-core baseline. OPENBLAS_CORETYPE is left as is.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import actor_gap  # noqa: E402
import cpu  # noqa: E402
import driver_scaling  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from machine import describe  # noqa: E402
from memory import MemoryPeak, measure_peak  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from workloads import (  # noqa: E402
    BenchActor,
    PlainWorker,
    data_batch,
    make_data,
    mpire_range,
    process,
)

HERE = Path(__file__).resolve().parent
WORKERS = 2
#: Results must match the serial loop's to this relative tolerance; batch sums
#: of different batches differ by far more (~1e-2), so a misplaced batch fails.
RTOL = 1e-5
#: Workloads from this size on wait for Ray's object store to drain before each run.
SETTLE_MIN_BYTES = 256 * 2**20

console = Console(stderr=False)
log = Console(stderr=True)


# --------------------------------------------------------------------------- model


@dataclass
class Workload:
    """An array cut into ``batch_size``-row batches, with ``reps`` of work per batch."""

    name: str
    data: np.ndarray
    batch_size: int
    reps: int
    description: str

    @property
    def num_batches(self) -> int:
        return -(-len(self.data) // self.batch_size)

    def batches(self) -> list[np.ndarray]:
        size = self.batch_size
        return [self.data[i : i + size] for i in range(0, len(self.data), size)]

    def ranges(self) -> list[tuple[int, int]]:
        n = len(self.data)
        return [(i, min(i + self.batch_size, n)) for i in range(0, n, self.batch_size)]


@dataclass
class Measurement:
    """Timings of one variant on one workload, and whether its results were right."""

    variant: str
    workload: str
    times: list[float] = field(default_factory=list)
    warmup: float | None = None
    check: str = "not run"
    error: str | None = None
    memory: dict[str, Any] | None = None
    cpu: list[dict[str, float]] = field(default_factory=list)  # per timed run, by role
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    def as_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "workload": self.workload,
            "median_s": self.median,
            "times_s": self.times,
            "warmup_s": self.warmup,
            "check": self.check,
            "error": self.error,
            "memory": self.memory,
            "cpu_s": self.cpu,
            "median_cpu_s": {
                role: statistics.median(run[role] for run in self.cpu) for role in cpu.ROLES
            } if self.cpu else None,
            # The median of each run's driver + daemons, not a sum of two medians.
            "median_around_work_s": statistics.median(
                run["driver"] + run["ray_daemons"] for run in self.cpu
            ) if self.cpu else None,
            **self.extra,
        }


class Variant:
    """How one library runs a workload: ``prepare`` (untimed), ``run`` (timed), ``close``."""

    name = "variant"
    uses_ray = False
    #: Seconds to wait after each run of this variant before the next variant
    #: starts: work it leaves behind (Ray Data's executor winding down, idle
    #: task workers) must not fall on whichever variant comes next.
    cooldown_s = 0.0

    def prepare(self, workload: Workload) -> None:
        """Pools, actors, warm state: outside the timings."""

    def run(self, workload: Workload) -> list[float]:
        raise NotImplementedError

    def finish(self, workload: Workload) -> None:
        """Release what ``prepare`` made for this workload."""

    def close(self) -> None:
        """Release what lives across workloads."""


def chunksize(workload: Workload, byte_cap: int = 4 * 2**20) -> int:
    """multiprocessing's map heuristic (n / 4 workers), capped at ~4 MiB of pickled rows."""
    batch_bytes = workload.batch_size * workload.data.shape[1] * workload.data.itemsize
    return max(1, min(workload.num_batches // (4 * WORKERS), byte_cap // batch_bytes))


# --------------------------------------------------------------------------- variants


class Serial(Variant):
    name = "serial"

    def run(self, workload: Workload) -> list[float]:
        return [process(batch, workload.reps) for batch in workload.batches()]


class MultiprocessingPool(Variant):
    """``multiprocessing.Pool(2).imap`` over the batches (pickled to the workers)."""

    name = "multiprocessing.Pool"

    def __init__(self) -> None:
        # fork: started before Ray exists in this process (fork after Ray's
        # threads start is unsafe); workers import numpy once, not per call.
        self.pool = multiprocessing.get_context("fork").Pool(WORKERS)

    def run(self, workload: Workload) -> list[float]:
        func = functools.partial(process, reps=workload.reps)
        return list(self.pool.imap(func, workload.batches(), chunksize=chunksize(workload)))

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


class Mpire(Variant):
    """mpire ``WorkerPool(2)``: the array as a fork-shared object, batches as row ranges.

    One pool per workload, each forked by :meth:`fork_all` before Ray starts
    (forking a process that runs Ray's threads is unsafe) and kept alive, so
    mpire runs interleaved with the Ray variants in the same rounds.
    """

    name = "mpire"

    def __init__(self) -> None:
        self.pools: dict[str, Any] = {}

    def fork_all(self, workloads: Sequence[Workload]) -> None:
        from mpire import WorkerPool

        for workload in workloads:
            pool = WorkerPool(
                n_jobs=WORKERS, shared_objects=workload.data, start_method="fork",
                keep_alive=True,
            )
            # Start the workers now (keep_alive keeps them for the timed runs).
            pool.map(mpire_range, [(0, 1, 0)] * WORKERS, chunk_size=1)
            self.pools[workload.name] = pool

    def prepare(self, workload: Workload) -> None:
        if workload.name not in self.pools:
            raise RuntimeError(f"mpire's pool for {workload.name} was not forked before Ray")

    def run(self, workload: Workload) -> list[float]:
        args = [(start, stop, workload.reps) for start, stop in workload.ranges()]
        chunk = max(1, workload.num_batches // (4 * WORKERS))
        pool = self.pools[workload.name]
        return list(pool.map(mpire_range, args, iterable_len=len(args), chunk_size=chunk))

    def finish(self, workload: Workload) -> None:
        pool = self.pools.pop(workload.name, None)
        if pool is not None:
            pool.terminate()

    def close(self) -> None:
        for name in list(self.pools):
            self.pools.pop(name).terminate()


class RayManagerVariant(Variant):
    """raymanager ``process_in_parallel`` on a pool of 2 (the pool is made once)."""

    name = "raymanager"
    uses_ray = True

    def __init__(self, manager: Any, spare_actors: int = 0) -> None:
        self.manager = manager
        self.pool = manager.create_actor_pool(BenchActor, {}, num_actors=WORKERS,
                                              spare_actors=spare_actors)

    def prepare(self, workload: Workload) -> None:
        # Replayed into any replacement actor, so a killed worker's batches
        # re-run with the same work (checked in the fault-tolerance row).
        self.manager.broadcast(self.pool, "set_reps", (workload.reps,), replay_on_restart=True)

    def run(self, workload: Workload) -> list[float]:
        from raymanager import BatchConfig

        config = BatchConfig(batch_size=workload.batch_size, num_parallel=WORKERS)
        return list(self.manager.process_in_parallel(self.pool, workload.data, config))


class RayManagerObjectRef(RayManagerVariant):
    """raymanager over an ObjectRef of the array, put once in ``prepare`` (untimed).

    The counterpart of mpire's ``shared_objects``, which also shares the
    array when the pool is made: a user who runs several passes over one
    array puts it once. Runs on W1 and W2 (W3's memory is measured on the
    plain and memmap variants, which count their copy)."""

    name = "raymanager (ObjectRef)"

    def __init__(self, manager: Any, pool: Any) -> None:
        self.manager = manager
        self.pool = pool  # the plain raymanager variant's pool: no second pair of actors
        self.ref: Any = None

    def prepare(self, workload: Workload) -> None:
        import ray

        super().prepare(workload)
        self.ref = ray.put(workload.data)

    def run(self, workload: Workload) -> list[float]:
        from raymanager import BatchConfig

        config = BatchConfig(batch_size=workload.batch_size, num_parallel=WORKERS)
        return list(self.manager.process_in_parallel(self.pool, self.ref, config))

    def finish(self, workload: Workload) -> None:
        self.ref = None


class RayManagerMemmap(RayManagerVariant):
    """raymanager over the same array saved to a .npy file and opened with
    ``np.load(..., mmap_mode="r")``: the actors map the file by path (issue 12,
    item 1). Runs on W3 only; the file is written in ``prepare`` (untimed)."""

    name = "raymanager (memmap)"

    def __init__(self, manager: Any, pool: Any) -> None:
        self.manager = manager
        self.pool = pool  # the plain raymanager variant's pool: no second pair of actors
        self.folder: str | None = None
        self.mapped: np.ndarray | None = None

    def prepare(self, workload: Workload) -> None:
        super().prepare(workload)
        self.folder = tempfile.mkdtemp(prefix="raymanager-w3-")
        path = os.path.join(self.folder, "w3.npy")
        np.save(path, workload.data)
        self.mapped = np.load(path, mmap_mode="r")

    def run(self, workload: Workload) -> list[float]:
        from raymanager import BatchConfig

        config = BatchConfig(batch_size=workload.batch_size, num_parallel=WORKERS)
        return list(self.manager.process_in_parallel(self.pool, self.mapped, config))

    def finish(self, workload: Workload) -> None:
        self.mapped = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


class RayActorPool(Variant):
    """``ray.util.ActorPool(2 actors).map`` over the batches (numpy arrays as arguments)."""

    name = "ray ActorPool.map"
    uses_ray = True

    def __init__(self) -> None:
        import ray

        remote = ray.remote(PlainWorker).options(num_cpus=0)  # as raymanager's actors
        self.actors = [remote.remote() for _ in range(WORKERS)]
        ray.get([actor.ping.remote() for actor in self.actors])

    def run(self, workload: Workload) -> list[float]:
        from ray.util import ActorPool

        reps = workload.reps
        pool = ActorPool(self.actors)
        return list(pool.map(lambda actor, batch: actor.process.remote(batch, reps),
                             workload.batches()))

    def close(self) -> None:
        import ray

        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)


class RayTasks(Variant):
    """One Ray task (num_cpus=1, so 2 run at once) per batch, all submitted, one ray.get."""

    name = "ray tasks"
    uses_ray = True
    cooldown_s = 1.0

    def __init__(self) -> None:
        import ray

        self.task = ray.remote(num_cpus=1)(process)

    def run(self, workload: Workload) -> list[float]:
        import ray

        refs = [self.task.remote(batch, workload.reps) for batch in workload.batches()]
        return list(ray.get(refs))


class RayData(Variant):
    """Ray Data: ``from_numpy`` (16 blocks on batch boundaries) + ``map_batches``, in order."""

    name = "ray data"
    uses_ray = True
    cooldown_s = 2.0

    def __init__(self) -> None:
        import ray.data

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        with contextlib.suppress(AttributeError):
            context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)

    def run(self, workload: Workload) -> list[float]:
        import ray.data

        per_block = -(-workload.num_batches // 16) * workload.batch_size
        blocks = [workload.data[i : i + per_block] for i in range(0, len(workload.data), per_block)]
        dataset = ray.data.from_numpy(blocks).map_batches(
            data_batch,
            fn_kwargs={"reps": workload.reps},
            batch_size=workload.batch_size,
            batch_format="numpy",
        )
        return [float(row["result"]) for row in dataset.take_all()]


# --------------------------------------------------------------------------- measuring


def check(results: Sequence[float], reference: Sequence[float]) -> str:
    """"ok", or why the results differ from the serial loop's."""
    if len(results) != len(reference):
        return f"FAIL: {len(results)} results, expected {len(reference)}"
    got = np.asarray(results, dtype=np.float64)
    want = np.asarray(reference, dtype=np.float64)
    if not np.allclose(got, want, rtol=RTOL, atol=1e-6):
        bad = int(np.flatnonzero(~np.isclose(got, want, rtol=RTOL, atol=1e-6))[0])
        return f"FAIL: batch {bad} is {got[bad]!r}, expected {want[bad]!r}"
    return "ok"


def settle(store_used: Callable[[], int] | None, timeout_s: float = 6.0) -> None:
    """Collect garbage and wait until Ray has freed what earlier runs dropped.

    Ray frees objects asynchronously (~0.5-1 s after the last reference goes),
    so without this a run's "before" would still count the previous run's data.
    Waits until the store's use has not changed over three polls (0.75 s).
    """
    gc.collect()
    if store_used is None:
        return
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(Exception):
        last, steady = store_used(), 0
        while steady < 3 and time.monotonic() < deadline:
            time.sleep(0.25)
            now = store_used()
            steady = steady + 1 if now == last else 0
            last = now


def measure_workload(
    variants: Sequence[Variant],
    workload: Workload,
    repeats: int,
    reference: list[float] | None,
    *,
    memory: bool = False,
    store_used: Callable[[], int] | None = None,
) -> tuple[list[Measurement], list[float] | None]:
    """Run every variant on one workload: warm-up, then ``repeats`` interleaved rounds.

    The warm-up run of each variant is untimed; with ``memory`` it is the run
    whose peak memory is sampled, so the sampler never slows a timed run.
    Rounds rotate the variants' order, so load from elsewhere on the machine
    falls on all of them alike. Returns the measurements and the first
    variant's warm-up results (the reference when ``reference`` is None).
    """
    rows = {v.name: Measurement(v.name, workload.name) for v in variants}
    load = os.getloadavg()[0]  # the machine's 1-minute load when this block began
    for row in rows.values():
        row.extra["load_average_1m"] = load
    verdicts: dict[str, set[str]] = {v.name: set() for v in variants}
    live: list[Variant] = []

    def fail(variant: Variant, exc: Exception) -> None:
        rows[variant.name].error = f"{type(exc).__name__}: {exc}"
        rows[variant.name].check = "error"
        log.print(f"  {workload.name} {variant.name}: [red]{rows[variant.name].error}[/red]")

    for variant in variants:
        try:
            variant.prepare(workload)
        except Exception as exc:  # one broken variant must not sink the suite
            fail(variant, exc)
            continue
        live.append(variant)
    try:
        for variant in list(live):
            log.print(f"  {workload.name} {variant.name} warm-up ...", end="")
            try:
                if memory:
                    settle(store_used if variant.uses_ray else None)
                    with measure_peak(store_used if variant.uses_ray else None) as peak:
                        t0 = time.perf_counter()
                        out = variant.run(workload)
                        rows[variant.name].warmup = time.perf_counter() - t0
                    rows[variant.name].memory = memory_json(peak)
                else:
                    t0 = time.perf_counter()
                    out = variant.run(workload)
                    rows[variant.name].warmup = time.perf_counter() - t0
            except Exception as exc:
                log.print("")
                fail(variant, exc)
                live.remove(variant)
                continue
            if reference is None:
                reference = out
            verdicts[variant.name].add(check(out, reference))
            log.print(f" {rows[variant.name].warmup:.3f} s")
            time.sleep(variant.cooldown_s)
        for round_index in range(repeats):
            shift = round_index % max(1, len(live))
            for variant in live[shift:] + live[:shift]:
                if rows[variant.name].error is not None:
                    continue
                # Start each run from a drained object store: another variant's
                # last objects (Ray frees them ~1 s late; Ray Data's only at
                # garbage collection) must not make this run spill.
                big = workload.data.nbytes >= SETTLE_MIN_BYTES
                settle(store_used if variant.uses_ray and big else None)
                try:
                    cpu_before = cpu.snapshot()
                    t0 = time.perf_counter()
                    out = variant.run(workload)
                    rows[variant.name].times.append(time.perf_counter() - t0)
                    rows[variant.name].cpu.append(cpu.spent(cpu_before, cpu.snapshot()))
                except Exception as exc:
                    fail(variant, exc)
                    continue
                finally:
                    time.sleep(variant.cooldown_s)
                verdicts[variant.name].add(check(out, reference))
    finally:
        for variant in live:
            with contextlib.suppress(Exception):
                variant.finish(workload)
    for variant in variants:
        row = rows[variant.name]
        if row.error is None:
            bad = sorted(v for v in verdicts[variant.name] if v != "ok")
            row.check = bad[0] if bad else "ok"
        log.print(f"  {workload.name} {variant.name}: median {fmt(row.median)} s, {row.check}")
    return list(rows.values()), reference


def memory_json(peak: MemoryPeak) -> dict[str, Any]:
    return {
        "before_bytes": peak.before,
        "peak_bytes": peak.peak,
        "extra_bytes": peak.extra,
        "extra_copies_bytes": peak.extra_copies,
        "store_before_bytes": peak.store_before,
        "store_peak_bytes": peak.store_peak,
        "samples": peak.samples,
        "mean_sample_interval_s": peak.seconds / max(1, peak.samples),
        "method": peak.method,
    }


def make_store_used() -> Callable[[], int]:
    """Bytes in use in Ray's object store, read over gRPC (~8 ms a call)."""
    from raymanager.ray_internals import object_store_usage_reader

    return object_store_usage_reader()


def calibrate_reps(target_s: float = 0.010) -> tuple[int, float]:
    """Rounds of matmul + tanh that make one 128x64 batch take ``target_s`` here."""
    batch = make_data(128, seed=99)
    process(batch, 10)
    samples = []
    for _ in range(7):
        t0 = time.perf_counter()
        process(batch, 100)
        samples.append((time.perf_counter() - t0) / 100)
    # The fastest sample is the least disturbed by other load on the machine.
    per_rep = min(samples)
    reps = max(1, round(target_s / per_rep))
    return reps, per_rep


# --------------------------------------------------------------------------- extra rows


def core_ratio(
    rm: RayManagerVariant,
    ap: RayActorPool,
    workload: Workload,
    repeats: int,
    reference: list[float],
) -> dict[str, Any]:
    """process_in_parallel vs ActorPool.map on the same batches, runs interleaved."""
    log.print(f"  core ratio on {workload.num_batches} trivial batches ...", end="")
    rm.prepare(workload)
    times: dict[str, list[float]] = {"raymanager": [], "ActorPool.map": []}
    verdicts = set()
    for i in range(repeats + 1):
        for name, variant in (("raymanager", rm), ("ActorPool.map", ap)):
            t0 = time.perf_counter()
            out = variant.run(workload)
            elapsed = time.perf_counter() - t0
            verdicts.add(check(out, reference))
            if i > 0:
                times[name].append(elapsed)
    rm_s = statistics.median(times["raymanager"])
    ap_s = statistics.median(times["ActorPool.map"])
    bad = sorted(v for v in verdicts if v != "ok")
    log.print(f" {rm_s:.3f} s vs {ap_s:.3f} s")
    return {
        "batches": workload.num_batches,
        "raymanager_s": rm_s,
        "actorpool_s": ap_s,
        "ratio_raymanager_over_actorpool": rm_s / ap_s,
        "times_s": times,
        "check": bad[0] if bad else "ok",
    }


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def captured_warnings() -> Iterator[_Captured]:
    """Keep raymanager's retry warnings for the JSON instead of the terminal."""
    logger = logging.getLogger("raymanager")
    handler = _Captured()
    old = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = old


def is_our_descendant(pid: int) -> bool:
    """True when ``pid`` is a process this driver started (directly or through Ray)."""
    try:
        return any(child.pid == pid for child in psutil.Process().children(recursive=True))
    except psutil.Error:
        return False


def _watch_replacement(
    pool: Any, victim: int, killed: list[float], done: threading.Event, timeline: dict[str, float]
) -> None:
    """Poll ``pool.stats()`` every 20 ms: when the kill was noticed, when the replacement was READY.

    A thread of the benchmark's own (the pool is thread-safe); times are
    perf_counter seconds, turned into "after the kill" by the caller.
    """
    while not done.wait(0.02):
        if not killed:
            continue
        actors = pool.stats()["actors"]
        victim_listed = any(a["pid"] == victim for a in actors)
        if "noticed" not in timeline and not victim_listed:
            timeline["noticed"] = time.perf_counter()
        if "noticed" in timeline and all(
            a["state"] == "ready" and a["pid"] not in (None, victim) for a in actors
        ):
            timeline["ready"] = time.perf_counter()
            return


def fault_tolerance(
    rm: RayManagerVariant,
    workload: Workload,
    repeats: int,
    reference: list[float],
    kill_fraction: float = 0.25,
) -> dict[str, Any]:
    """W1 through raymanager while one worker is SIGKILLed by PID mid-run.

    Each killed run is paired with a run without a kill just before it, on
    the same pool: this machine's speed drifts by 20-40 % within minutes, so
    a ratio against a W1 median taken minutes earlier measures the drift as
    much as the recovery. The kill falls ``kill_fraction`` of the way into
    the paired run's time. A watcher thread records when the pool noticed
    the death and when the replacement was READY, so the cost splits into
    what the replacement's start-up bounds and what it does not.
    """
    log.print(f"  fault tolerance: kill a worker {kill_fraction:.0%} into W1, {repeats} pairs ...",
              end="")
    rows: list[dict[str, Any]] = []
    for _ in range(repeats):
        rm.prepare(workload)  # broadcast: also waits for any replacement to be up
        t0 = time.perf_counter()
        clean = check(rm.run(workload), reference)
        no_fault = time.perf_counter() - t0
        pids = rm.pool.pids()
        victim = pids[0]
        if victim is None or not is_our_descendant(victim):
            rows.append({"error": f"no live pool worker to kill (pids {pids})"})
            continue
        killed: list[float] = []

        def kill(pid: int = victim, at: list[float] = killed) -> None:
            at.append(time.perf_counter())
            os.kill(pid, signal.SIGKILL)

        restarts = rm.pool.restarts
        timeline: dict[str, float] = {}
        done = threading.Event()
        watcher = threading.Thread(target=_watch_replacement,
                                   args=(rm.pool, victim, killed, done, timeline), daemon=True)
        timer = threading.Timer(kill_fraction * no_fault, kill)
        with captured_warnings() as warnings:
            watcher.start()
            t0 = time.perf_counter()
            timer.start()
            try:
                out = rm.run(workload)
            finally:
                timer.cancel()
            wall = time.perf_counter() - t0
            rm.prepare(workload)  # the replacement is up before the watcher stops
            done.set()
            watcher.join()
        at = killed[0] if killed else None
        rows.append({
            "wall_s": wall,
            "no_fault_wall_s": no_fault,
            "ratio": wall / no_fault,
            "killed_pid": victim,
            "killed_at_s": (at - t0) if at is not None else None,
            "kill_happened_mid_run": at is not None and at - t0 < wall,
            "noticed_after_s": (timeline["noticed"] - at)
            if at is not None and "noticed" in timeline else None,
            "ready_after_s": (timeline["ready"] - at)
            if at is not None and "ready" in timeline else None,
            "restarts": rm.pool.restarts - restarts,
            "warnings": warnings.messages,
            "check": check(out, reference) if clean == "ok" else f"no-fault run: {clean}",
        })
    good = [r for r in rows if "wall_s" in r]

    def median_of(key: str) -> float | None:
        values = [r[key] for r in good if r.get(key) is not None]
        return statistics.median(values) if values else None

    checks = {r.get("check", "error") for r in rows}
    summary: dict[str, Any] = {
        "median_wall_s": median_of("wall_s"),
        "median_no_fault_wall_s": median_of("no_fault_wall_s"),
        "median_ratio": median_of("ratio"),
        "median_ready_after_s": median_of("ready_after_s"),
        "check": "ok" if checks == {"ok"} else sorted(c for c in checks if c != "ok")[0],
        "runs": rows,
    }
    ratio = summary["median_ratio"]
    log.print(f" {fmt(ratio, '.2f', 'x')} (pairs {[round(r['ratio'], 2) for r in good]}), "
              f"replacement ready {fmt(summary['median_ready_after_s'], '.2f', ' s')} "
              f"after the kill, {summary['check']}")
    return summary


def startup_costs(repeats: int, kinds: Sequence[str]) -> dict[str, Any]:
    """Each kind of start-up measured in fresh interpreters, kinds interleaved."""
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    env = dict(os.environ)
    # benchmarks/ on PYTHONPATH: every kind's workers import workloads.py from
    # there (Ray's workers inherit the driver's environment).
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    for _ in range(repeats):
        for kind in kinds:
            log.print(f"  start-up {kind} ...", end="")
            proc = subprocess.run(
                [sys.executable, str(HERE / "startup.py"), kind],
                capture_output=True, text=True, timeout=300, env=env, check=False,
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                runs[kind].append({"error": proc.stderr[-2000:]})  # type: ignore[dict-item]
                log.print(" error")
                continue
            row = json.loads(lines[-1])
            runs[kind].append(row)
            log.print(f" ready {row['ready_s']:.2f} s, shutdown {row['shutdown_s']:.2f} s")
    summary: dict[str, Any] = {"runs": runs}
    for kind, rows in runs.items():
        good = [r for r in rows if "error" not in r]
        summary[kind] = {
            key: statistics.median(r[key] for r in good) if good else None
            for key in ("init_s", "ready_s", "shutdown_s")
        }
        # Ray's own start-up waits in 1 s steps (it polls for the raylet every
        # second), so single runs land ~1 s apart: the fastest run, and the
        # part after ray.init (the pool), compare kinds better than medians.
        summary[kind]["min_ready_s"] = min((r["ready_s"] for r in good), default=None)
        summary[kind]["pool_s"] = (
            statistics.median(r["ready_s"] - r["init_s"] for r in good) if good else None)
    return summary


# --------------------------------------------------------------------------- machine info


def machine_info() -> dict[str, Any]:
    import mpire  # noqa: F401  (imported to prove it is installed)

    return {
        **describe(("ray", "numpy", "mpire")),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "ram_bytes": psutil.virtual_memory().total,
        "thread_env": {k: os.environ.get(k) for k in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")},
    }


# --------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".3f", unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def gib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**30:.2f}"


def print_cpu(name: str, rows: list[dict[str, Any]]) -> None:
    """Median CPU per timed run by role: the overhead around the work (see cpu.py)."""
    measured = [r for r in rows if r.get("median_cpu_s")]
    if not measured:
        return
    table = Table(title=f"{name}: CPU per run (medians, core-seconds; see cpu.py)",
                  title_justify="left")
    for column in ("variant", "driver", "Ray daemons", "workers", "around the work"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in measured:
        c = r["median_cpu_s"]
        table.add_row(r["variant"], f"{c['driver']:.3f}", f"{c['ray_daemons']:.3f}",
                      f"{c['workers']:.3f}", f"{r['median_around_work_s']:.3f}")
    console.print(table)


def print_report(report: dict[str, Any]) -> None:
    workloads = report["workloads"]
    for name, info in workloads.items():
        rows = info["variants"]
        serial = next((r["median_s"] for r in rows if r["variant"] == "serial"), None)
        rm = next((r["median_s"] for r in rows if r["variant"] == "raymanager"), None)
        table = Table(title=f"{name}: {info['description']}", title_justify="left")
        table.add_column("variant")
        table.add_column("median s", justify="right")
        table.add_column("min-max s", justify="right")
        table.add_column("µs/batch", justify="right")
        table.add_column("speedup vs serial", justify="right")
        table.add_column("÷ raymanager", justify="right")
        if name == "W3":
            table.add_column("peak GiB", justify="right")
            table.add_column("extra GiB", justify="right")
            table.add_column("of it copies", justify="right")
        table.add_column("check")
        for r in rows:
            med = r["median_s"]
            cells = [
                r["variant"],
                fmt(med),
                f"{min(r['times_s']):.3f}-{max(r['times_s']):.3f}" if r["times_s"] else "-",
                fmt(None if med is None else 1e6 * med / info["batches"], ".0f"),
                fmt(None if not (med and serial) else serial / med, ".2f", "x"),
                fmt(None if not (med and rm) else med / rm, ".2f"),
            ]
            if name == "W3":
                mem = r.get("memory") or {}
                cells += [gib(mem.get("peak_bytes")), gib(mem.get("extra_bytes")),
                          gib(mem.get("extra_copies_bytes"))]
            cells.append(r["check"] if r["error"] is None else f"error: {r['error'][:60]}")
            table.add_row(*cells)
        console.print(table)
        print_cpu(name, rows)

    table = Table(title="Other rows", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("note")
    core = report.get("core_ratio")
    if core:
        table.add_row(
            f"process_in_parallel / ActorPool.map, {core['batches']} trivial batches",
            f"{core['ratio_raymanager_over_actorpool']:.2f}",
            f"{core['raymanager_s']:.3f} s vs {core['actorpool_s']:.3f} s; {core['check']}",
        )
    for key, label in (("fault_tolerance", "W1 raymanager, one worker SIGKILLed mid-run"),
                       ("fault_tolerance_spare", "the same, on a pool with spare_actors=1")):
        fault = report.get(key)
        if not fault:
            continue
        restarts = [r.get("restarts") for r in fault["runs"]]
        table.add_row(
            label,
            fmt(fault["median_ratio"], ".2f", "x"),
            f"{fmt(fault['median_wall_s'], '.3f', ' s')} against "
            f"{fmt(fault['median_no_fault_wall_s'], '.3f', ' s')} without the kill (medians of "
            f"pairs); replacement ready {fmt(fault['median_ready_after_s'], '.2f', ' s')} after "
            f"the kill; restarts {restarts}; {fault['check']}",
        )
    for row in report.get("driver_scaling", []):
        table.add_row(
            f"driver scaling: {row['actors']} actors, 20 ms sleep batches",
            f"{row['of_ideal']:.2f} of ideal",
            f"batches took {row['mean_batch_ms']:.1f} ms, actors busy {row['busy_fraction']:.2f}; "
            f"{row['driver_cpu_us_per_batch']:.0f} µs driver CPU per batch; cores busy: "
            f"driver {row['cores_busy']['driver']:.2f}, Ray daemons "
            f"{row['cores_busy']['ray_daemons']:.2f}, workers {row['cores_busy']['workers']:.2f}; "
            f"{row['check']}",
        )
    startup = report.get("startup")
    if startup:
        for kind in startup["runs"]:
            s = startup[kind]
            table.add_row(
                f"start-up to 2 ready actors: {kind}",
                fmt(s["ready_s"], ".2f", " s"),
                f"fastest {fmt(s.get('min_ready_s'), '.2f', ' s')}, "
                f"init {fmt(s['init_s'], '.2f', ' s')}, "
                f"actors after init {fmt(s.get('pool_s'), '.2f', ' s')}, "
                f"shutdown() {fmt(s['shutdown_s'], '.2f', ' s')}",
            )
    console.print(table)
    machine = report["machine"]
    console.print(
        f"{machine['cpu_model']}, {machine['cpus_usable']} CPUs, "
        f"{machine['ram_bytes'] / 2**30:.0f} GiB; Python {machine['python']}, "
        f"Ray {machine['ray']}, numpy {machine['numpy']}; load average "
        f"{machine['load_average_start'][0]:.1f} at start, "
        f"{report['load_average_end'][0]:.1f} at end; total {report['total_s']:.0f} s"
    )


# --------------------------------------------------------------------------- main


def _paired_ratio(report: dict[str, Any], workload: str, over: str, under: str) -> float | None:
    """Median over rounds of ``over``'s time / ``under``'s time in the same round."""
    variants = {v["variant"]: v for v in report.get("workloads", {}).get(workload, {}).get(
        "variants", [])}
    if over not in variants or under not in variants:
        return None
    pairs = list(zip(variants[over]["times_s"], variants[under]["times_s"], strict=False))
    return statistics.median(a / b for a, b in pairs) if pairs else None


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The Ray tax's rows against their targets, from this run's own measurements.

    Each row: what, the value, the target, whether it is met (None: not
    measured in this run, with where it is measured instead).
    """
    rows: list[dict[str, Any]] = []

    def add(what: str, value: float | None, target: float, at_least: bool,
            elsewhere: str = "") -> None:
        met = None if value is None else (value >= target if at_least else value <= target)
        rows.append({"what": what, "value": value, "target": f"{'>=' if at_least else '<='} "
                     f"{target:g}", "met": met, "elsewhere": elsewhere})

    add("W1 speed, raymanager / multiprocessing.Pool (median of paired rounds)",
        _paired_ratio(report, "W1", "multiprocessing.Pool", "raymanager"), 1.00, True)
    gap = {v["variant"]: v for v in report.get("actor_gap", {}).get("variants", [])}
    add("same batches in an actor / in a forked process (wall, interleaved slices)",
        gap.get("ray defaults", {}).get("ratio_to_fork"), 1.02, False)
    add("training 2 vs 1 actors / forked ceiling", None, 0.98, True,
        "benchmarks/train_scaling.py --interleaved HalfCheetah-v5")
    add("W1 with one SIGKILL / without, spare_actors=1 (paired)",
        report.get("fault_tolerance_spare", {}).get("median_ratio"), 1.10, False)
    big = [r for r in report.get("driver_scaling", []) if r["actors"] == 64]
    add("64 sleep-bound actors, of ideal", big[0]["of_ideal"] if big else None, 0.90, True,
        "a full run (not --quick)")
    return rows


def print_targets(rows: list[dict[str, Any]]) -> None:
    table = Table(title="Targets")
    for column in ("row", "value", "target", "met"):
        table.add_column(column)
    for row in rows:
        met = "-" if row["met"] is None else ("yes" if row["met"] else "no")
        value = row["elsewhere"] if row["value"] is None else f"{row['value']:.3f}"
        table.add_row(row["what"], value, row["target"], met)
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats and a 256 MiB W3 (about 3 minutes)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json",
                        help="where to write the JSON results")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per variant after the warm-up "
                             "(default 5, W3 at most 3; --quick 1)")
    parser.add_argument("--skip-startup", action="store_true",
                        help="leave out the fresh-process start-up measurements")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    # W3 moves 2 GiB per run through each variant: 3 timed runs keep the full
    # suite near 12 minutes on 2 cores.
    w3_repeats = min(repeats, 3)
    began = time.perf_counter()

    report: dict[str, Any] = {
        # What docs/results.md cites: when, on what, and how to run it again.
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join(["python", "benchmarks/run.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "settings": {"quick": args.quick, "repeats": repeats, "w3_repeats": w3_repeats,
                     "workers": WORKERS},
    }
    if not args.skip_startup:
        # First, while the machine is quiet: the driver-scaling rows leave 64
        # exiting processes behind, and start-up is the row most hurt by load.
        log.print("[bold]Start-up in fresh processes[/bold]")
        kinds = ["raymanager", "bare", "bare_loopback"]
        report["startup"] = startup_costs(1 if args.quick else 5, kinds)
    # The same batches in an actor and in a forked process, interleaved in
    # slices (actor_gap.py); its own Rays run in subprocesses and are gone
    # before this suite's Ray starts.
    log.print("[bold]In an actor against in a forked process[/bold]")
    report["actor_gap"] = actor_gap.measure("loop", ["fork", "ray defaults"],
                                            rounds=8 if args.quick else 20, batches=50,
                                            workers=WORKERS)
    reps, per_rep = calibrate_reps()
    report["settings"]["w1_reps"] = reps
    report["settings"]["w1_seconds_per_rep"] = per_rep
    log.print(f"W1 calibration: {reps} rounds of matmul+tanh ≈ {reps * per_rep * 1e3:.1f} ms/batch")

    w3_bytes = (256 if args.quick else 2048) * 2**20
    w3_rows = w3_bytes // (64 * 4)
    workloads = [
        Workload("W1", make_data(400 * 128, seed=1), 128, reps,
                 f"400 batches of 128x64 float32, ~10 ms work each ({reps} matmul+tanh)"),
        Workload("W2", make_data(5000 * 128, seed=2), 128, 0,
                 "5,000 batches of 128x64 float32, trivial work (sum)"),
        Workload("W3", make_data(w3_rows, seed=3), w3_rows // 128, 0,
                 f"{w3_bytes / 2**30:g} GiB float32 in 128 batches, trivial work (sum)"),
    ]
    core_workload = Workload("core", make_data(1000 * 128, seed=4), 128, 0,
                             "1,000 batches of 128x64 float32, trivial work")
    results: dict[str, list[Measurement]] = {w.name: [] for w in workloads}
    references: dict[str, list[float]] = {}

    # -- Every variant runs in one phase, interleaved round by round, so a
    # drift in the machine's speed (seen here: 25 % within minutes) falls on
    # all of them alike. The pools that fork (multiprocessing, mpire) fork
    # before Ray starts: forking a process that runs Ray's threads is unsafe.
    plain: list[Variant] = [Serial(), MultiprocessingPool()]
    try:
        import mpire  # noqa: F401

        forked = Mpire()
        forked.fork_all(workloads)
        plain.append(forked)
    except ImportError:
        log.print("  mpire not installed: skipped")
    core_reference = Serial().run(core_workload)

    from raymanager import RayConfig, RayManager

    manager = RayManager(RayConfig(num_cpus=WORKERS))
    ray_variants: list[Variant] = []
    try:
        store_used = make_store_used()
        report["object_store_bytes"] = manager.object_store_stats()["total"]
        rm = RayManagerVariant(manager)
        ap = RayActorPool()
        ray_variants = [rm, ap, RayTasks()]
        try:
            ray_variants.append(RayData())
        except Exception as exc:  # ray[data] missing: skip that variant only
            log.print(f"  Ray Data unavailable ({exc}): skipped")
        memmap = RayManagerMemmap(manager, rm.pool)
        by_ref = RayManagerObjectRef(manager, rm.pool)
        for workload in workloads:
            n = w3_repeats if workload.name == "W3" else repeats
            # The serial loop first: its warm-up results are the reference.
            variants = [*plain, *ray_variants, memmap if workload.name == "W3" else by_ref]
            rows, reference = measure_workload(variants, workload, n, None,
                                               memory=workload.name == "W3",
                                               store_used=store_used)
            results[workload.name] += rows
            assert reference is not None
            references[workload.name] = reference
        report["core_ratio"] = core_ratio(rm, ap, core_workload, repeats, core_reference)
        report["fault_tolerance"] = fault_tolerance(
            rm, workloads[0], 1 if args.quick else 3, references["W1"]
        )
        # The same pairs on a pool with one warm spare: the death costs the
        # lost work, not a process start.
        spare = RayManagerVariant(manager, spare_actors=1)
        try:
            report["fault_tolerance_spare"] = fault_tolerance(
                spare, workloads[0], 1 if args.quick else 3, references["W1"]
            )
        finally:
            spare.pool.shutdown()
        log.print("  driver scaling (sleep-bound 20 ms batches) ...")
        report["driver_scaling"] = []
        for actors in ([2, 8, 32] if args.quick else [2, 8, 32, 64]):
            row = driver_scaling.measure(manager, actors)
            log.print(f"    {actors} actors: {row['of_ideal']:.2f} of ideal, "
                      f"{row['driver_cpu_us_per_batch']:.0f} µs driver CPU per batch, "
                      f"{row['check']}")
            report["driver_scaling"].append(row)
    finally:
        for variant in [*plain, *ray_variants]:
            with contextlib.suppress(Exception):
                variant.close()
        t0 = time.perf_counter()
        manager.shutdown()
        report["suite_shutdown_s"] = time.perf_counter() - t0

    report["workloads"] = {
        w.name: {
            "description": w.description,
            "batches": w.num_batches,
            "batch_size": w.batch_size,
            "bytes": int(w.data.nbytes),
            "variants": [m.as_json() for m in results[w.name]],
        }
        for w in workloads
    }
    report["load_average_end"] = os.getloadavg()
    report["total_s"] = time.perf_counter() - began
    report["targets"] = targets(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_report(report)
    print_targets(report["targets"])
    console.print(f"JSON: {args.out}")
    failed = [m for ms in results.values() for m in ms if m.check != "ok"]
    failed += [r for r in report.get("driver_scaling", []) if r["check"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
