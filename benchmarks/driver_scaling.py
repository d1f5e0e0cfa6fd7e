"""Does the driver keep up as the pool grows? Sleep-bound batches on 2 to 64 actors.

    python benchmarks/driver_scaling.py [--actors 2 8 32 64] [--batch-s 0.02]
                                        [--turns 1] [--out PATH]

Each batch sleeps ``batch_s`` (no CPU), so many actors fit on 2 cores and the
ideal throughput is ``actors / batch_s`` batches per second. For each pool size
the run is sized to ~4 s of ideal work; the script reports throughput against
the ideal, how long a batch really took and how busy the actors were, the
driver's CPU seconds per batch (``time.process_time`` of the
driver process), and the cores kept busy by the driver, Ray's daemons and the
worker processes (``cpu.py``). Results are checked. With ``--turns N`` every
pool size is measured N times, the sizes in rotating order each turn, and the
report (``--out``, rendered by ``results_page.py``) gives the median per size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import cpu as cpu_by_role
import machine

from raymanager import BatchConfig, RayActor, RayConfig, RayManager


class Sleeper(RayActor[Any, tuple[int, float]]):
    def process_batch(self, batch: Any) -> tuple[int, float]:
        began = time.perf_counter()
        time.sleep(float(self.config["batch_s"]))
        # How long the sleep took: with many processes on few cores the OS
        # wakes a sleeper late, which no dispatcher can win back.
        return int(batch[0]), time.perf_counter() - began


def measure(manager: RayManager, actors: int, batch_s: float = 0.02,
            seconds: float = 4.0) -> dict[str, Any]:
    """One pool of ``actors`` sleepers: throughput against the ideal, driver CPU per batch."""
    pool = manager.create_actor_pool(Sleeper, {"batch_s": batch_s}, num_actors=actors)
    try:
        config = BatchConfig(batch_size=1, num_parallel=actors)
        batches = int(seconds * actors / batch_s)
        manager.process_in_parallel(pool, range(actors * 4), config)  # warm-up
        by_role = cpu_by_role.snapshot()
        cpu, wall = time.process_time(), time.perf_counter()
        results = manager.process_in_parallel(pool, range(batches), config)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        spent = cpu_by_role.spent(by_role, cpu_by_role.snapshot())
    finally:
        pool.shutdown()
    ideal = actors / batch_s
    slept = sum(seconds for _, seconds in results)
    return {"actors": actors, "batches": batches, "wall_s": round(wall, 3),
            "of_ideal": round(batches / wall / ideal, 3),
            # The loss split in two: batches that took longer than batch_s
            # (late wake-ups), and actors waiting between calls (dispatch).
            "mean_batch_ms": round(1e3 * slept / batches, 2),
            "busy_fraction": round(slept / (actors * wall), 3),
            "driver_cpu_us_per_batch": round(1e6 * cpu / batches, 1),
            # Cores kept busy during the run, by role: the actors only sleep in
            # process_batch, so their CPU is all Ray's per-call cost and ours.
            "cores_busy": {role: round(seconds / wall, 3) for role, seconds in spent.items()},
            "check": "ok" if [index for index, _ in results] == list(range(batches))
            else "FAIL: results out of order"}


def summarize(runs: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per pool size, the medians over its turns of :func:`measure`'s rows."""

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(row[key] for row in rows))

    return [{"actors": actors,
             "median_of_ideal": median(rows, "of_ideal"),
             "of_ideal": [row["of_ideal"] for row in rows],
             "median_busy_fraction": median(rows, "busy_fraction"),
             "median_batch_ms": median(rows, "mean_batch_ms"),
             "median_driver_cpu_us_per_batch": median(rows, "driver_cpu_us_per_batch"),
             "check": "ok" if all(row["check"] == "ok" for row in rows) else "FAIL"}
            for actors, rows in runs.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, nargs="+", default=[2, 8, 32, 64])
    parser.add_argument("--batch-s", type=float, default=0.02)
    parser.add_argument("--seconds", type=float, default=4.0, help="ideal seconds per run")
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        **machine.report_header("driver_scaling", __file__),
        "settings": {"batch_s": args.batch_s, "seconds": args.seconds, "turns": args.turns},
    }
    runs: dict[int, list[dict[str, Any]]] = {actors: [] for actors in args.actors}
    with RayManager(RayConfig(num_cpus=2)) as manager:
        for turn in range(args.turns):
            shift = turn % len(args.actors)
            for actors in args.actors[shift:] + args.actors[:shift]:
                row = measure(manager, actors, args.batch_s, args.seconds)
                print(json.dumps(row), flush=True)
                runs[actors].append(row)
                if row["check"] != "ok":
                    raise SystemExit(row["check"])
    report["machine"]["load_average_end"] = list(os.getloadavg())
    report["sizes"] = summarize(runs)
    for size in report["sizes"]:
        print(f"{size['actors']:>3} actors: {size['median_of_ideal']:.3f} of ideal "
              f"(turns {size['of_ideal']})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
