"""Does the driver keep up as the pool grows? Sleep-bound batches on 2 to 64 actors.

    python benchmarks/driver_scaling.py [--actors 2 8 32 64] [--batch-s 0.02]

Each batch sleeps ``batch_s`` (no CPU), so many actors fit on 2 cores and the
ideal throughput is ``actors / batch_s`` batches per second. For each pool size
the run is sized to ~4 s of ideal work; the script reports throughput against
the ideal, how long a batch really took and how busy the actors were, the
driver's CPU seconds per batch (``time.process_time`` of the
driver process), and the cores kept busy by the driver, Ray's daemons and the
worker processes (``cpu.py``). Results are checked.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import cpu as cpu_by_role

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--actors", type=int, nargs="+", default=[2, 8, 32, 64])
    parser.add_argument("--batch-s", type=float, default=0.02)
    parser.add_argument("--seconds", type=float, default=4.0, help="ideal seconds per run")
    args = parser.parse_args()
    with RayManager(RayConfig(num_cpus=2)) as manager:
        for actors in args.actors:
            row = measure(manager, actors, args.batch_s, args.seconds)
            print(json.dumps(row), flush=True)
            if row["check"] != "ok":
                raise SystemExit(row["check"])


if __name__ == "__main__":
    main()
