"""The same batches in a Ray actor and in a forked process, in turns: where the gap goes.

    python benchmarks/actor_gap.py [--rounds 40] [--batches 50] [--out PATH]

Each worker (two by default, one per core) loops over the same W1 batches
(``workloads.timed_loop``: ~10 ms of matmul + tanh each) inside one call, so
no dispatch is measured: only how fast the same Python and numpy code runs in
a Ray actor's process against a process forked from a plain Python process.

Every variant lives at once, each in a process of its own (a *server*): the
forked pool's, and one driver per Ray configuration, each with its own private
Ray and two idle actors. The run then goes round after round; in each round
every variant runs one short slice (``--batches`` per worker, ~0.5 s) in a
rotating order. This machine's speed drifts by 20-40 % within a minute (a
first version that ran each variant for a few seconds in turn saw the forked
pool alone vary from 0.95x to 1.39x of itself), so a variant's figure is its
wall over the forked pool's wall *in the same round*, the median over rounds.
All variants run beside the same idle Rays, so their background load is the
same too.

Variants (``VARIANTS``): ``fork``; ``ray defaults`` (raymanager's: Ray's
own worker niceness, 15); ``ray nice 0``; ``ray nice 0 + bookkeeping off``
(metrics, event stats, task events and the timeline off: the variant the W1
table once found *slower*); ``ray nice 0 + fewer threads`` (one gRPC and one
server-call thread per worker, no Python GC manager thread); and for
``--work w1`` raymanager's own knobs: calls of 0.1 s or 0.3 s of work instead
of the default, and the array put into the object store once, outside the
timing.

Per variant it also records what explains a difference: each worker's CPU
seconds in the loop (its thread's own, from ``schedstat``), the seconds that
thread waited for a CPU, its voluntary and involuntary context switches, the
CPU of the worker's *other* threads by name, its niceness, thread count and
BLAS pools (threadpoolctl), and the CPU of the server's driver and Ray's
daemons during the slice.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per process, as benchmarks/run.py: set before numpy loads.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import cpu  # noqa: E402
import machine  # noqa: E402
import numpy  # noqa: E402
from workloads import BenchActor, GapWorker, make_data, process, timed_loop  # noqa: E402

#: Ray's own switches for its bookkeeping.
BOOKKEEPING_OFF = {
    "enable_metrics_collection": False,
    "event_stats": False,
    "task_events_report_interval_ms": 0,
    "enable_timeline": False,
}
#: Fewer threads in each worker process.
FEWER_THREADS = {
    "core_worker_num_server_call_thread": 1,
    "worker_num_grpc_internal_threads": 1,
    "start_python_gc_manager_thread": False,
}
#: Variant name -> Ray ``_system_config`` (None: the forked pool, no Ray).
VARIANTS: dict[str, dict[str, Any] | None] = {
    "fork": None,
    "ray defaults": {},  # raymanager's: worker niceness 15 (Ray's own), 0.2 s calls
    "ray nice 0": {"worker_niceness": 0},
    "ray nice 0 + bookkeeping off": {"worker_niceness": 0, **BOOKKEEPING_OFF},
    "ray nice 0 + fewer threads": {"worker_niceness": 0, **FEWER_THREADS},
    # W1 only: raymanager's own knobs (see split_config).
    "ray, 0.1 s calls": {"raymanager.engine.policy.TARGET_CALL_SECONDS": 0.1},
    "ray, 0.3 s calls": {"raymanager.engine.policy.TARGET_CALL_SECONDS": 0.3},
    "ray, data put once": {"bench.put_once": True},
}


#: The variants a plain ``--work loop`` run compares (the rest change only dispatch).
LOOP_VARIANTS = [name for name, config in VARIANTS.items()
                 if config is None or not any("." in key for key in config)]


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A variant's Ray ``_system_config``, and its own settings: keys with a dot.

    ``module.NAME`` keys set a module constant of raymanager in the server
    (an engine policy's, say); ``bench.put_once`` puts W1's array into the
    object store once, outside the timing, as a user with many passes would.
    """
    ray_config = {k: v for k, v in config.items() if "." not in k}
    ours = {k: v for k, v in config.items() if "." in k}
    for key, value in ours.items():
        module, _, attribute = key.rpartition(".")
        if module != "bench":
            setattr(importlib.import_module(module), attribute, value)
    return ray_config, ours


# --------------------------------------------------------------------------- servers


def _pid(_: int) -> int:
    time.sleep(0.2)  # so each of the pool's processes takes one
    return os.getpid()


def serve_w1(name: str, workers: int, batches: int, reps: int) -> None:
    """W1 through each variant's dispatch: ``Pool.imap`` or ``process_in_parallel``."""
    config = VARIANTS[name]
    data = make_data(batches * 128, seed=1)
    run: Callable[[], list[float]]
    close: Callable[[], None]
    if config is None:
        pool = multiprocessing.get_context("fork").Pool(workers)
        chunk = max(1, batches // (4 * workers))  # as benchmarks/run.py (Pool.map's own pick)
        rows = [data[i : i + 128] for i in range(0, len(data), 128)]

        def run() -> list[float]:
            return list(pool.imap(functools.partial(process, reps=reps), rows, chunksize=chunk))

        def close() -> None:
            pool.close()
            pool.join()
    else:
        import ray

        from raymanager import BatchConfig, RayConfig, RayManager

        ray_config, ours = split_config(config)
        manager = RayManager(RayConfig(num_cpus=workers,
                                       init_kwargs={"_system_config": ray_config}))
        actors = manager.create_actor_pool(BenchActor, {"reps": reps}, num_actors=workers)
        batch_config = BatchConfig(batch_size=128, num_parallel=workers)
        source: Any = ray.put(data) if ours.get("bench.put_once") else data

        def run() -> list[float]:
            return list(manager.process_in_parallel(actors, source, batch_config))

        close = manager.shutdown
    run()
    print(json.dumps({"ready": name}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        before = cpu.snapshot()
        start = time.perf_counter()
        results = run()
        wall = time.perf_counter() - start
        tree = cpu.spent(before, cpu.snapshot())
        print(json.dumps({"wall_s": wall, "totals": results, "tree": tree}), flush=True)
    close()


def serve(name: str, workers: int, batches: int, reps: int) -> None:
    """One variant's server: set up, then answer each "run" line with one slice's JSON."""
    config = VARIANTS[name]
    run: Callable[[], list[dict[str, Any]]]
    close: Callable[[], None]
    if config is None:
        # This process never starts Ray, so plain fork is safe here.
        pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"))
        list(pool.map(_pid, range(workers)))

        def run() -> list[dict[str, Any]]:
            futures = [pool.submit(timed_loop, batches, reps, seed) for seed in range(workers)]
            return [f.result() for f in futures]

        close = pool.shutdown
    else:
        import ray

        from raymanager import RayConfig, RayManager

        ray_config, _ = split_config(config)
        manager = RayManager(RayConfig(num_cpus=workers,
                                       init_kwargs={"_system_config": ray_config}))
        remote = ray.remote(num_cpus=0)(GapWorker)
        actors = [remote.remote() for _ in range(workers)]
        ray.get([a.ping.remote() for a in actors])

        def run() -> list[dict[str, Any]]:
            calls = [a.loop.remote(batches, reps, seed) for seed, a in enumerate(actors)]
            return list(ray.get(calls))

        close = manager.shutdown
    run()  # the first slice makes each worker's data and warms it: not reported
    print(json.dumps({"ready": name}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        before = cpu.snapshot()
        results = run()
        tree = cpu.spent(before, cpu.snapshot())
        print(json.dumps({"results": results, "tree": tree}), flush=True)
    close()


class Server:
    """The coordinator's handle on one variant's server process."""

    def __init__(self, name: str, work: str, workers: int, batches: int, reps: int) -> None:
        self.name = name
        command = [sys.executable, __file__, "--serve", name, "--work", work, "--workers",
                   str(workers), "--batches", str(batches), "--reps", str(reps)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)

    def answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise SystemExit(f"{self.name}: its server exited ({self.process.wait()})")
            if line.startswith("{"):  # anything else is a library's print, not ours
                reply: dict[str, Any] = json.loads(line)
                return reply

    def slice(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return self.answer()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()  # our own child, by its handle


# --------------------------------------------------------------------------- report


def w1_row_of(reply: dict[str, Any]) -> dict[str, Any]:
    """One W1 slice of one variant: its wall and where the CPU went."""
    tree = reply["tree"]
    return {"wall_s": reply["wall_s"], "totals": reply["totals"],
            "driver_cpu_s": tree["driver"], "ray_daemons_cpu_s": tree["ray_daemons"],
            "workers_cpu_s": tree["workers"]}


def summarize_w1(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of one variant's W1 figures; speed is the pool's wall over its."""
    speeds = sorted(r["speed"] for r in rows)
    quarter = len(speeds) // 4
    return {
        "variant": name,
        "speed_vs_pool": statistics.median(speeds),
        "speed_quartiles": [speeds[quarter], speeds[-1 - quarter]],
        **{key: statistics.median(r[key] for r in rows)
           for key in ("wall_s", "driver_cpu_s", "ray_daemons_cpu_s", "workers_cpu_s")},
    }


def row_of(reply: dict[str, Any]) -> dict[str, Any]:
    """One slice of one variant: the slowest worker's wall, means of the rest."""
    results, tree = reply["results"], reply["tree"]

    def mean(key: str) -> float:
        return statistics.mean(r[key] for r in results)

    others: dict[str, float] = {}
    for result in results:
        for thread, seconds in result["other_threads"].items():
            others[thread] = others.get(thread, 0.0) + seconds / len(results)
    return {
        "wall_s": max(r["wall_s"] for r in results),
        "cpu_s": mean("cpu_s"),
        "run_queue_wait_s": mean("run_queue_wait_s"),
        "voluntary_switches": mean("voluntary_switches"),
        "involuntary_switches": mean("involuntary_switches"),
        "other_threads_cpu_s": mean("other_threads_cpu_s"),
        "other_threads": others,
        "driver_cpu_s": tree["driver"],
        "ray_daemons_cpu_s": tree["ray_daemons"],
        "niceness": results[0]["niceness"],
        "threads": results[0]["threads"],
        "blas_pools": results[0]["blas_pools"],
        "totals": sorted(r["total"] for r in results),
    }


def summarize(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of one variant's figures (per slice)."""
    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    threads: dict[str, float] = {}
    for row in rows:
        for thread, seconds in row["other_threads"].items():
            threads[thread] = threads.get(thread, 0.0) + seconds / len(rows)
    ratios = sorted(r["ratio"] for r in rows)
    quarter = len(ratios) // 4
    return {
        "variant": name,
        "ratio_to_fork": med("ratio"),
        "ratio_quartiles": [ratios[quarter], ratios[-1 - quarter]],
        "cpu_ratio_to_fork": med("cpu_ratio"),
        "wall_s": med("wall_s"),
        "cpu_per_worker_s": med("cpu_s"),
        "run_queue_wait_s": med("run_queue_wait_s"),
        "voluntary_switches": med("voluntary_switches"),
        "involuntary_switches": med("involuntary_switches"),
        "other_threads_cpu_s": med("other_threads_cpu_s"),
        "other_threads": dict(sorted(threads.items(), key=lambda kv: -kv[1])[:8]),
        "driver_cpu_s": med("driver_cpu_s"),
        "ray_daemons_cpu_s": med("ray_daemons_cpu_s"),
        "niceness": rows[0]["niceness"],
        "threads": rows[0]["threads"],
        "blas_pools": rows[0]["blas_pools"],
    }


def calibrate(target_s: float = 0.010) -> int:
    """Rounds of matmul + tanh that make one batch take ``target_s`` here."""
    best = min(timed_loop(10, 100, seed=99)["cpu_s"] for _ in range(5))
    return max(1, round(target_s / (best / (10 * 100))))


def measure(work: str, names: Sequence[str], rounds: int, batches: int,
            workers: int) -> dict[str, Any]:
    """Run ``names`` (``fork`` among them) in interleaved rounds; the report without its header.

    ``work`` is ``loop`` (the batches looped inside one call per worker) or
    ``w1`` (dispatched batch by batch). ``benchmarks/run.py`` calls this for
    its in-actor row.
    """
    if "fork" not in names or any(n not in VARIANTS for n in names):
        raise ValueError(f"variants must be among {list(VARIANTS)} and include 'fork'")
    reps = calibrate()
    report: dict[str, Any] = {"settings": {"work": work, "rounds": rounds, "batches": batches,
                                           "workers": workers, "reps": reps,
                                           "variants": list(names)}}
    print(f"{workers} workers x {batches} batches of ~10 ms ({reps} reps) per "
          f"slice, {rounds} rounds", flush=True)
    servers = {}
    try:
        for name in names:  # one at a time: Ray's start is the heaviest thing here
            servers[name] = Server(name, work, workers, batches, reps)
            servers[name].answer()
        rows: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for number in range(rounds):
            order = list(names[number % len(names):]) + list(names[:number % len(names)])
            for name in order:
                reply = servers[name].slice()
                rows[name].append(w1_row_of(reply) if work == "w1" else row_of(reply))
            fork = rows["fork"][-1]
            if work == "w1":
                for name in names:
                    if not numpy.allclose(rows[name][-1]["totals"], fork["totals"], rtol=1e-5):
                        raise SystemExit(f"{name}: results differ from the forked pool's")
                    rows[name][-1]["speed"] = fork["wall_s"] / rows[name][-1]["wall_s"]
                continue
            for name in names:
                row = rows[name][-1]
                if row["totals"] != fork["totals"]:
                    raise SystemExit(f"{name}: results differ from the forked pool's")
                row["ratio"] = row["wall_s"] / fork["wall_s"]
                row["cpu_ratio"] = row["cpu_s"] / fork["cpu_s"]
    finally:
        for server in servers.values():
            server.close()
    summarize_one = summarize_w1 if work == "w1" else summarize
    report["variants"] = [summarize_one(n, rows[n]) for n in names]
    return report


def print_report(report: dict[str, Any]) -> None:
    """One line per variant."""
    for row in report["variants"]:
        if report["settings"]["work"] == "w1":
            low, high = row["speed_quartiles"]
            print(f"{row['variant']:<30} speed vs Pool {row['speed_vs_pool']:.3f} "
                  f"({low:.3f}-{high:.3f})  wall {row['wall_s']:.3f} s  driver "
                  f"{row['driver_cpu_s'] * 1e3:.0f} ms  daemons "
                  f"{row['ray_daemons_cpu_s'] * 1e3:.0f} ms  workers {row['workers_cpu_s']:.2f} s")
            continue
        low, high = row["ratio_quartiles"]
        print(f"{row['variant']:<30} wall {row['ratio_to_fork']:.3f} ({low:.3f}-{high:.3f})  "
              f"cpu {row['cpu_ratio_to_fork']:.3f}  waited {row['run_queue_wait_s'] * 1e3:.1f} ms"
              f"  invol. {row['involuntary_switches']:.0f}  other threads "
              f"{row['other_threads_cpu_s'] * 1e3:.1f} ms  driver "
              f"{row['driver_cpu_s'] * 1e3:.0f} ms  daemons "
              f"{row['ray_daemons_cpu_s'] * 1e3:.0f} ms")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--batches", type=int, default=50, help="batches per worker per slice")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", choices=("loop", "w1"), default="loop",
                        help="loop: the batches looped inside one call per worker; w1: the "
                             "batches dispatched one by one (Pool.imap / process_in_parallel)")
    parser.add_argument("--variants", default="|".join(LOOP_VARIANTS),
                        help="'|'-separated list of: " + ", ".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        (serve_w1 if args.work == "w1" else serve)(args.serve, args.workers, args.batches,
                                                   args.reps)
        return 0
    names = [n.strip() for n in args.variants.split("|")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or "fork" not in names:
        parser.error(f"unknown variants {unknown}; 'fork' (the reference) must be one")
    report: dict[str, Any] = {
        **machine.report_header("actor_gap", __file__, ("ray", "numpy", "threadpoolctl")),
    }
    report.update(measure(args.work, names, args.rounds, args.batches, args.workers))
    report["machine"]["load_average_end"] = list(os.getloadavg())
    print_report(report)
    write(report, args.out)
    return 0


def write(report: dict[str, Any], out: Path | None) -> None:
    """Write the report's JSON to ``out``, when given."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
