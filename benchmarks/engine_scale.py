"""The engine's own cost at 1,000 and 10,000 actors, measured on its simulator.

    python benchmarks/engine_scale.py [--actors 1000 10000] [--batch-ms 10 100]
        [--batches-per-actor 20] [--max-batches 50000] [--work-s S]
        [--ray-call-us US] [--quick] [--out PATH]

One driver makes every decision of a run: which actor gets the next call, how
many batches it carries, what came back, what to hand out. This machine cannot
run 1,000 real actors, but the decisions are made by a pure core
(:class:`raymanager.engine.run.RunCore`) that the simulator
(:mod:`raymanager.engine.simulator`) drives with simulated actors under a
virtual clock, through the same loop as the Ray adapter. So the core's CPU per
batch, measured here, is the driver's cost of steering a pool of that size,
without Ray's own per-call cost (submit, wait, get), which
``driver_scaling.py`` measures on real actors.

For each pool size and batch duration, one run of ``actors x batches-per-actor``
one-row batches that each take ``batch-ms`` of virtual time, at most
``max-batches`` in all: the largest pools get fewer batches per actor (each
row of the JSON says how many), since the core's cost per decision grows with
the pool, and 10,000 actors with as many batches each as 1,000 get take too
long on a small machine. Calls carry more batches when each actor has more
to do, so compare rows per decision and per call first; per batch, only at
equal batches per actor. Measured:

- the whole simulated driver loop: CPU seconds (``time.process_time``) and wall;
- inside the core: every public ``RunCore`` method is wrapped (in this script,
  the engine is not edited) with a ``time.process_time`` accumulator; nested
  calls count once, in the outermost. The wrapper's own cost (the clock reads)
  is calibrated on a method that does nothing and taken out: the part inside
  the timed span from the core, the rest from what is left of the loop's
  CPU, which is the simulator's own bookkeeping (its event queue, its actors,
  its checks);
- per batch and per decision (one ``next_send`` call), and per method;
- the most batches per second one driver can steer: batches over the core's
  CPU seconds, against the simulated cluster's ideal, ``actors / batch
  seconds``. A ratio under 1 means one driver's core alone cannot keep such a
  pool busy.

With ``--work-s S`` each run instead gives every actor ``S`` seconds of
batches and is the *scale model* of one driver steering the pool: the
simulator charges each call the driver sends
``driver_seconds_per_call = ray_call_us + core_us_per_call`` of virtual time
(``simulate(driver_seconds_per_call=...)``: the driver is one serial
resource; the actors go on meanwhile). ``ray_call_us`` is the driver's CPU
per call that ``benchmarks/ray_call_rate.py`` measured on Ray in the engine's
loop (``docs/results/ray-call-rate.json``, or ``--ray-call-us``);
``core_us_per_call`` is the core's CPU per call measured on the same
configuration in a first, uncharged pass. The actors are ready at time 0
(their start-up is not the driver's cost), and ``of_ideal`` is the ideal
time (``batches x batch seconds / actors``) over the simulated time.

Results go to ``benchmarks/results/engine_scale.json`` (or ``--out``) and a
table is printed. ``--quick`` runs small pools, for a smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import itertools
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymanager.engine.run import RunCore
from raymanager.engine.simulator import simulate

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "engine_scale.json"
RAY_CALL_RATE = Path(__file__).resolve().parent.parent / "docs" / "results" / "ray-call-rate.json"

#: The public methods of RunCore a driver calls; those the class lacks are skipped.
CORE_METHODS = (
    "next_send", "sent", "returned", "lost", "undeliverable", "inline_instead",
    "expired", "start_clocks", "wait_timeout", "deliverable", "pop_ready",
    "finished", "check_stall", "check_complete", "calls_in_flight", "owns",
    "queued_batches", "group_size", "close", "clear",
)


class CoreTimer:
    """CPU time inside RunCore's public methods, per method (outermost calls only)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.depth = 0

    def wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        self.seconds[name] = 0.0
        self.calls[name] = 0
        clock = time.process_time

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return method(*args, **kwargs)
            self.depth = 1
            began = clock()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] += clock() - began
                self.calls[name] += 1
                self.depth = 0

        return timed

    @contextmanager
    def installed(self, cls: type = RunCore) -> Iterator[CoreTimer]:
        """Wrap ``cls``'s public methods for the duration of the block."""
        originals = {name: cls.__dict__[name] for name in CORE_METHODS if name in cls.__dict__}
        try:
            for name, method in originals.items():
                setattr(cls, name, self.wrap(name, method))
            yield self
        finally:
            for name, method in originals.items():
                setattr(cls, name, method)


@dataclass(frozen=True)
class Overhead:
    """What one wrapped call adds: inside the timed span, and in all (calibrated)."""

    inside_s: float  # counted as core time by the wrapper, though it is the clock's
    total_s: float  # the whole cost of the wrapper, the clock reads included

    @property
    def outside_s(self) -> float:
        return max(0.0, self.total_s - self.inside_s)


def calibrate(loops: int = 200_000) -> Overhead:
    """The wrapper's own cost per call, on a method that does nothing (best of 3)."""

    class Probe:
        def work(self) -> int:
            return 1

    probe = Probe()
    plain = probe.work
    inside = total = float("inf")
    for _ in range(3):
        timer = CoreTimer()
        wrapped = functools.partial(timer.wrap("work", Probe.work), probe)
        began = time.process_time()
        for _ in range(loops):
            plain()
        middle = time.process_time()
        for _ in range(loops):
            wrapped()
        end = time.process_time()
        total = min(total, ((end - middle) - (middle - began)) / loops)
        inside = min(inside, timer.seconds["work"] / loops)
    return Overhead(inside_s=max(0.0, inside), total_s=max(0.0, total, inside))


def measure(actors: int, batch_ms: float, batches_per_actor: int,
            overhead: Overhead, driver_seconds_per_call: float | None = None
            ) -> dict[str, Any]:
    """One simulated run of ``actors`` actors: the core's and the simulator's CPU.

    With ``driver_seconds_per_call``, the scale model's run: actors ready at
    time 0, each call charged that long of the driver's (virtual) time.
    """
    batches = actors * batches_per_actor
    batch_s = batch_ms / 1000
    timer = CoreTimer()
    model = driver_seconds_per_call is not None
    options: dict[str, Any] = (
        {"driver_seconds_per_call": driver_seconds_per_call, "start_delay": 0.0}
        if model else {})
    gc.collect()
    with timer.installed():
        cpu, wall = time.process_time(), time.perf_counter()
        outcome = simulate(num_batches=batches, num_actors=actors,
                           batch_seconds=lambda index: batch_s, **options)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if len(outcome.results) != batches:
        raise RuntimeError(f"{len(outcome.results)} of {batches} results")
    wrapped_calls = sum(timer.calls.values())
    timed = sum(timer.seconds.values())
    core_cpu = max(0.0, timed - overhead.inside_s * wrapped_calls)
    wrappers = overhead.total_s * wrapped_calls
    sim_cpu = max(0.0, cpu - timed - overhead.outside_s * wrapped_calls)
    decisions = outcome.decisions
    ideal = actors / batch_s
    steer = batches / core_cpu if core_cpu > 0 else float("inf")

    def method_cpu(name: str) -> float:
        return max(0.0, timer.seconds[name] - overhead.inside_s * timer.calls[name])

    by_method = {
        name: {"calls": timer.calls[name],
               "cpu_s": round(method_cpu(name), 4),
               "us_per_call": round(1e6 * method_cpu(name) / timer.calls[name], 2)}
        for name in sorted(timer.seconds, key=lambda n: -timer.seconds[n])
        if timer.calls[name]
    }
    ideal_s = batches * batch_s / actors
    model_fields: dict[str, Any] = {}
    if model:
        assert driver_seconds_per_call is not None
        model_fields = {
            "driver_us_per_call_charged": round(1e6 * driver_seconds_per_call, 2),
            "ideal_seconds": round(ideal_s, 3),
            "of_ideal": round(ideal_s / outcome.virtual_seconds, 4),
            "driver_busy_fraction": round(
                outcome.calls * driver_seconds_per_call / outcome.virtual_seconds, 4),
        }
    return {
        "actors": actors,
        "batch_ms": batch_ms,
        **model_fields,
        "batches": batches,
        "batches_per_actor": batches_per_actor,
        "calls": outcome.calls,
        "mean_batches_per_call": round(batches / outcome.calls, 2),
        "calls_per_actor": round(outcome.calls / actors, 2),
        "decisions": decisions,
        "steps": outcome.steps,
        "virtual_seconds": round(outcome.virtual_seconds, 3),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "cpu_over_wall": round(cpu / wall, 3) if wall > 0 else None,
        "core_cpu_s": round(core_cpu, 3),
        "simulator_cpu_s": round(sim_cpu, 3),
        "wrapper_overhead_cpu_s": round(wrappers, 3),
        "wrapped_calls": wrapped_calls,
        # Per batch: the whole loop (wrappers included), the core, the simulator.
        "driver_cpu_us_per_batch": round(1e6 * cpu / batches, 2),
        "core_us_per_batch": round(1e6 * core_cpu / batches, 2),
        "simulator_us_per_batch": round(1e6 * sim_cpu / batches, 2),
        # Per decision (one next_send call): the whole core, and next_send alone.
        "core_us_per_decision": round(1e6 * core_cpu / decisions, 2),
        "next_send_us_per_call": by_method.get("next_send", {}).get("us_per_call", 0.0),
        # Per step of the loop (one wake-up: clocks, timeouts, fill, wait) and per call.
        "core_us_per_step": round(1e6 * core_cpu / outcome.steps, 2),
        "core_us_per_call": round(1e6 * core_cpu / outcome.calls, 2),
        "max_batches_per_s_core": round(steer, 1),
        "max_batches_per_s_driver_loop": round(batches / max(cpu - wrappers, 1e-9), 1),
        "ideal_batches_per_s": round(ideal, 1),
        "core_over_ideal": round(steer / ideal, 4),
        "one_driver_keeps_up": steer >= ideal,
        "by_method": by_method,
    }


def growth(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """How the core's cost per decision grows with the pool, per batch duration."""
    out = []
    for batch_ms in sorted({row["batch_ms"] for row in rows}):
        same = sorted((r for r in rows if r["batch_ms"] == batch_ms), key=lambda r: r["actors"])
        for small, large in itertools.pairwise(same):
            out.append({
                "batch_ms": batch_ms,
                "from_actors": small["actors"],
                "to_actors": large["actors"],
                "actors_x": round(large["actors"] / small["actors"], 2),
                "batches_per_actor": [small["batches_per_actor"], large["batches_per_actor"]],
                "core_us_per_decision_x": round(
                    large["core_us_per_decision"] / small["core_us_per_decision"], 2),
                "next_send_us_per_call_x": round(
                    large["next_send_us_per_call"] / max(small["next_send_us_per_call"], 1e-9),
                    2),
                "core_us_per_step_x": round(
                    large["core_us_per_step"] / small["core_us_per_step"], 2),
                "core_us_per_call_x": round(
                    large["core_us_per_call"] / small["core_us_per_call"], 2),
                "core_us_per_batch_x": round(
                    large["core_us_per_batch"] / small["core_us_per_batch"], 2),
            })
    return out


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = ("actors", "batch ms", "b/actor", "batches", "calls", "decisions", "loop us/b",
            "core us/b", "sim us/b", "core us/dec", "next_send us", "max b/s (core)",
            "ideal b/s", "ratio", "of ideal (model)")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        lines.append(" | ".join(str(v) for v in (
            r["actors"], r["batch_ms"], r["batches_per_actor"], r["batches"], r["calls"],
            r["decisions"],
            r["driver_cpu_us_per_batch"], r["core_us_per_batch"], r["simulator_us_per_batch"],
            r["core_us_per_decision"], r["next_send_us_per_call"],
            f"{r['max_batches_per_s_core']:,.0f}", f"{r['ideal_batches_per_s']:,.0f}",
            r["core_over_ideal"], r.get("of_ideal", "-"))))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, nargs="+", default=None,
                        help="pool sizes (default: 1000 10000; --quick: 20 100)")
    parser.add_argument("--batch-ms", type=float, nargs="+", default=[10.0, 100.0],
                        help="virtual seconds each batch takes, in ms")
    parser.add_argument("--batches-per-actor", type=int, default=None,
                        help="one-row batches per actor (default: 20; --quick: 5)")
    parser.add_argument("--max-batches", type=int, default=50_000,
                        help="at most this many batches per run (fewer per actor in the "
                             "largest pools; default 50,000)")
    parser.add_argument("--work-s", type=float, default=None,
                        help="the scale model: seconds of batches per actor, each call "
                             "charged the driver's cost on Ray (overrides "
                             "--batches-per-actor and --max-batches)")
    parser.add_argument("--ray-call-us", type=float, default=None,
                        help="the driver's CPU per call on Ray, in us (default: the loop "
                             "row of docs/results/ray-call-rate.json)")
    parser.add_argument("--quick", action="store_true", help="small pools, for a smoke test")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(args_list)
    actors = args.actors or ([20, 100] if args.quick else [1000, 10000])
    per_actor = args.batches_per_actor or (5 if args.quick else 20)

    load_start = _loadavg()
    overhead = calibrate(20_000 if args.quick else 200_000)
    ray_call_us: float | None = None
    if args.work_s is not None:
        ray_call_us = args.ray_call_us if args.ray_call_us is not None else _ray_call_us()
    rows = []
    for n in actors:
        for batch_ms in args.batch_ms:
            if args.work_s is None:
                row = measure(n, batch_ms, max(1, min(per_actor, args.max_batches // n)),
                              overhead)
            else:
                assert ray_call_us is not None
                each = max(1, round(args.work_s * 1000 / batch_ms))
                # First pass, uncharged: the core's CPU per call at this size.
                first = measure(n, batch_ms, each, overhead, driver_seconds_per_call=0.0)
                charge = (ray_call_us + first["core_us_per_call"]) / 1e6
                row = measure(n, batch_ms, each, overhead, driver_seconds_per_call=charge)
                row["of_ideal_uncharged"] = first["of_ideal"]
            rows.append(row)
            print(f"# {n} actors, {batch_ms:g} ms: {row['cpu_s']} CPU s, "
                  f"{row['core_cpu_s']} in the core"
                  + (f", {row['of_ideal']} of ideal" if "of_ideal" in row else ""), flush=True)
    growth_rows = growth(rows)
    machine: dict[str, Any] = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                               "load_average_start": load_start}
    result: dict[str, Any] = {
        "benchmark": "engine_scale",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/engine_scale.py", *args_list]),
        "machine": machine,
        "python": sys.version.split()[0],
        "engine": _engine_version(),
        "settings": {"actors": actors, "batch_ms": args.batch_ms,
                     "batches_per_actor": per_actor, "max_batches": args.max_batches,
                     "quick": args.quick, "work_s": args.work_s,
                     "ray_call_us": ray_call_us,
                     "simulate": "simulate(num_batches=actors*batches_per_actor, "
                                 "num_actors=actors, batch_seconds=const), other defaults"},
        "wrapper_us_per_call": {"inside": round(1e6 * overhead.inside_s, 3),
                                "total": round(1e6 * overhead.total_s, 3)},
        "rows": rows,
        "growth": growth_rows,
    }
    machine["load_average_end"] = _loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    for g in growth_rows:
        print(f"{g['batch_ms']:g} ms: {g['from_actors']} -> {g['to_actors']} actors "
              f"(x{g['actors_x']}): core us/decision x{g['core_us_per_decision_x']}, "
              f"next_send x{g['next_send_us_per_call_x']}, "
              f"core us/step x{g['core_us_per_step_x']}, "
              f"core us/batch x{g['core_us_per_batch_x']}")
    print(f"wrote {args.out}")
    return result


def _engine_version() -> dict[str, Any]:
    """The commit measured, and whether the engine's files differ from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None,
            "engine_modified": bool(git("status", "--porcelain", "--", "src/raymanager/engine"))}


def _ray_call_us() -> float:
    """The driver's CPU per call on Ray in the engine's loop, as ray_call_rate.py measured it."""
    data = json.loads(RAY_CALL_RATE.read_text())
    return float(data["rows"]["loop"]["driver_cpu_us_per_call"])


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


if __name__ == "__main__":
    main()
