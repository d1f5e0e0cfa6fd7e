"""Where the driver's time goes in W2 (5,000 trivial batches through raymanager).

cProfile of the driver, steady state only (Ray start-up, pool creation and two
warm-up calls are outside the profile)::

    python benchmarks/profile_w2.py --loops 5

Sampling with py-spy (``pip install py-spy``), then a summary of the samples
taken inside the timed loop only::

    py-spy record --idle --format raw --rate 500 -o /tmp/w2.txt -- \\
        python benchmarks/profile_w2.py --loops 10 --no-cprofile
    python benchmarks/profile_w2.py --summarize /tmp/w2.txt

The actors' side, sampled by py-spy attached to each actor's PID during the
timed loop (files ``worker-<pid>.txt`` in the folder; summarize each with
``--summarize FILE --all``)::

    python benchmarks/profile_w2.py --loops 10 --no-cprofile --pyspy-workers /tmp/w2

With ``--idle`` the samples cover wall time, including time blocked in
``ray.wait`` / ``ray.put``'s copy threads; without it only CPU time.
The summary lists functions by *self* samples (time spent in the function
itself) and by *inclusive* samples (in it or anything it called).
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from workloads import BenchActor, make_data

LOOP_FUNCTION = "timed_loop"


def timed_loop(manager: object, pool: object, data: object, config: object, loops: int) -> float:
    """process_in_parallel ``loops`` times; the function py-spy samples are filtered on."""
    t0 = time.perf_counter()
    for _ in range(loops):
        manager.process_in_parallel(pool, data, config)  # type: ignore[attr-defined]
    return (time.perf_counter() - t0) / loops


def start_worker_samplers(pids: list[int | None], folder: Path) -> list[subprocess.Popen[bytes]]:
    """Attach ``py-spy record`` to each actor process (ours: PIDs from pool.pids())."""
    exe = shutil.which("py-spy")
    if exe is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    samplers = []
    for pid in pids:
        if pid is None:
            continue
        out = folder / f"worker-{pid}.txt"
        samplers.append(subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "500",
             "--nonblocking", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    time.sleep(1.0)  # let py-spy attach before the timed loop
    return samplers


def stop_worker_samplers(samplers: list[subprocess.Popen[bytes]]) -> None:
    """Stop the py-spy processes we started (SIGINT makes them write their file)."""
    for sampler in samplers:
        sampler.send_signal(signal.SIGINT)
    for sampler in samplers:
        try:
            sampler.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sampler.kill()


def trace_one_call(manager: Any, pool: Any, data: Any, config: Any) -> None:
    """One more call with raymanager's private dispatch methods wrapped: a timeline.

    Relies on ``raymanager.pool.dispatch.Run._send`` / ``call_done`` (internal, may change): it
    says so and returns when they are gone. Prints the ``ray.put`` time, every
    remote call (actor slot, batches, submit and result times) and how long
    each actor had no call running.
    """
    import ray

    from raymanager.pool import dispatch

    run_class = getattr(dispatch, "Run", None)
    if run_class is None or not all(hasattr(run_class, n) for n in ("_send", "call_done")):
        print("trace: raymanager.pool.dispatch.Run._send/call_done not found; skipped")
        return
    events: list[tuple[str, float, int, int, int]] = []
    t0 = time.perf_counter()
    original = (run_class._send, run_class.call_done, ray.put)

    def submit(self: Any, slot: Any, group: Any) -> None:
        events.append(("submit", time.perf_counter() - t0, slot.index, group.first, group.count))
        original[0](self, slot, group)

    def accept(self: Any, call: Any, report: Any) -> None:
        events.append(("result", time.perf_counter() - t0, call.slot.index, call.group.first,
                       len(report.results)))
        original[1](self, call, report)

    def put(value: Any, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        ref = original[2](value, *args, **kwargs)
        events.append(("put", began - t0, -1, int(getattr(value, "nbytes", 0)),
                       round(1e6 * (time.perf_counter() - began))))
        return ref

    run_class._send, run_class.call_done, ray.put = submit, accept, put
    try:
        t0 = time.perf_counter()
        manager.process_in_parallel(pool, data, config)
        wall = time.perf_counter() - t0
    finally:
        run_class._send, run_class.call_done, ray.put = original
    print(f"\n== one traced call: {wall * 1e3:.1f} ms ==")
    calls = [e for e in events if e[0] == "submit"]
    print(f"{len(calls)} remote calls; batches per call in order: {[e[4] for e in calls]}")
    for kind, at, _slot, first, count in events:
        if kind == "put":
            print(f"ray.put of {first / 2**20:.0f} MiB: {count / 1e3:.1f} ms, at {at * 1e3:.1f} ms")
    for kind, at, slot, first, count in events:
        if kind != "put":
            last = first + count - 1
            print(f"{at * 1e3:8.1f} ms  {kind:6s} actor {slot}  batches {first}..{last}")


def profile(
    loops: int, use_cprofile: bool, top: int, workers: Path | None = None, trace: bool = False
) -> None:
    """Start Ray, warm a pool of 2, then time (and cProfile) the W2 calls."""
    from raymanager import BatchConfig, RayConfig, RayManager

    data = make_data(5000 * 128, seed=2)
    config = BatchConfig(batch_size=128, num_parallel=2)
    with RayManager(RayConfig(num_cpus=2)) as manager:
        pool = manager.create_actor_pool(BenchActor, {}, num_actors=2)
        for _ in range(2):
            manager.process_in_parallel(pool, data, config)
        samplers = start_worker_samplers(pool.pids(), workers) if workers else []
        profiler = cProfile.Profile() if use_cprofile else None
        try:
            if profiler is not None:
                profiler.enable()
            per_call = timed_loop(manager, pool, data, config, loops)
            if profiler is not None:
                profiler.disable()
        finally:
            stop_worker_samplers(samplers)
        if trace:
            trace_one_call(manager, pool, data, config)
    print(f"W2 through raymanager: {per_call:.3f} s per call, "
          f"{1e6 * per_call / 5000:.0f} µs per batch (over {loops} calls"
          f"{', under cProfile' if profiler else ''})")
    if profiler is not None:
        stats = pstats.Stats(profiler).strip_dirs()
        print("\n== by own time (tottime) ==")
        stats.sort_stats("tottime").print_stats(top)
        print("== by cumulative time ==")
        stats.sort_stats("cumulative").print_stats(top)


def _function(frame: str) -> str:
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({path.rsplit('/', 1)[-1]})" if path else name


def summarize(path: Path, top: int, only_loop: bool = True) -> None:
    """Self and inclusive sample counts per function (inside ``timed_loop`` only, by default)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        # "func (file.py:line)" -> "func (file.py)": one entry per function.
        names = [_function(frame) for frame in stack.split(";")]
        if only_loop and not any(name.startswith(LOOP_FUNCTION) for name in names):
            continue
        count = int(count_text)
        total += count
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        print("no samples: was the profile recorded with --format raw?")
        return
    print(f"{total} samples" + (f" inside {LOOP_FUNCTION}" if only_loop else ""))
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"\n== top {top} by {title} samples ==")
        for name, count in counter.most_common(top):
            print(f"{100 * count / total:6.1f}%  {name}")


def main() -> None:
    """Parse the command line and profile, or summarize a py-spy file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=5, help="timed calls of 5,000 batches")
    parser.add_argument("--no-cprofile", action="store_true", help="time only (for py-spy)")
    parser.add_argument("--top", type=int, default=25, help="functions to list")
    parser.add_argument("--summarize", type=Path, help="summarize a py-spy --format raw file")
    parser.add_argument("--all", action="store_true",
                        help="with --summarize: every sample, not only those in timed_loop")
    parser.add_argument("--trace", action="store_true",
                        help="after the loop, one call with a timeline of its remote calls")
    parser.add_argument("--pyspy-workers", type=Path, default=None,
                        help="folder for py-spy profiles of the two actor processes")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize, args.top, only_loop=not args.all)
    else:
        profile(args.loops, not args.no_cprofile, args.top, args.pyspy_workers, args.trace)


if __name__ == "__main__":
    sys.exit(main())
