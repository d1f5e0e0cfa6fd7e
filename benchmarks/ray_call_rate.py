"""How many actor calls one driver sends per second on Ray, and its CPU per call.

    python benchmarks/ray_call_rate.py [--actors 8] [--seconds 3] [--out PATH]

The scale model (``engine_scale.py``) charges every call the driver's own
cost of making it on Ray. Two ways of calling, each for ``--seconds``:

- ``burst``: Ray's own microbenchmark ``1_n_actor_calls_async`` (one driver,
  ``n`` actors, calls submitted 1,000 at a time round-robin, then
  ``ray.get``); Ray reports about 8,000 calls/s on its benchmark machines;
- ``loop``: the engine's pattern (``pool/dispatch.py``): every actor kept
  with two calls, one ``ray.wait`` scan for all finished calls, their
  results fetched, a new call sent for each.

The methods do nothing, so the figures are the calls' cost alone. For each:
calls per second (wall) and the driver process's CPU per call
(``time.process_time``, Ray's threads in the driver included). On a machine
whose cores the actors and Ray's daemons share with the driver, the wall
rate is lower than the driver's CPU alone allows; the driver's CPU per call
is what one driver pays per call wherever the actors run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import ray

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ray_call_rate.json"


@ray.remote(num_cpus=0)
class Echo:
    def call(self, x: Any) -> Any:
        return x


def burst(actors: list[Any], seconds: float) -> tuple[int, float, float]:
    """Ray's 1_n_actor_calls_async: 1,000 calls at a time, round-robin, then get."""
    calls = 0
    cpu, wall = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall < seconds:
        ray.get([actors[i % len(actors)].call.remote(i) for i in range(1000)])
        calls += 1000
    return calls, time.perf_counter() - wall, time.process_time() - cpu


def loop(actors: list[Any], seconds: float) -> tuple[int, float, float]:
    """The engine's loop: two calls per actor, one wait scan, a new call per result."""
    owner: dict[Any, Any] = {}
    for actor in actors:
        for k in range(2):
            owner[actor.call.remote(k)] = actor
    calls = 0
    cpu, wall = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall < seconds:
        refs = list(owner)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            ready, _ = ray.wait(refs, num_returns=1)
        ray.get(ready)
        for ref in ready:
            actor = owner.pop(ref)
            owner[actor.call.remote(calls)] = actor
            calls += 1
    elapsed, spent = time.perf_counter() - wall, time.process_time() - cpu
    ray.get(list(owner))
    return calls, elapsed, spent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(args_list)
    load_start = [round(x, 2) for x in os.getloadavg()]
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
             _node_ip_address="127.0.0.1")
    try:
        actors = [Echo.remote() for _ in range(args.actors)]  # type: ignore[attr-defined]
        ray.get([actor.call.remote(0) for actor in actors])
        burst(actors, 0.5)  # warm-up
        rows = {}
        for name, how in (("burst", burst), ("loop", loop)):
            calls, wall, cpu = how(actors, args.seconds)
            rows[name] = {"calls": calls, "wall_s": round(wall, 3),
                          "calls_per_s": round(calls / wall, 1),
                          "driver_cpu_us_per_call": round(1e6 * cpu / calls, 1),
                          "wall_us_per_call": round(1e6 * wall / calls, 1)}
            print(f"{name}: {rows[name]}", flush=True)
    finally:
        ray.shutdown()
    result = {
        "benchmark": "ray_call_rate",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/ray_call_rate.py", *args_list]),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "load_average_start": load_start,
                    "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "ray": ray.__version__,
        "settings": {"actors": args.actors, "seconds": args.seconds},
        "reference": "Ray's 1_n_actor_calls_async: about 8,000 calls/s from one driver",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
