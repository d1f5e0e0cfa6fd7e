"""Pool metrics on vs off, in turns in one run: does publishing cost W2 anything per batch?

    python benchmarks/pool_metrics_ab.py --turns 16

One private Ray (2 CPUs). Each turn creates a pool of 2 actors with Ray
metrics publishing on (``RAYMANAGER_POOL_METRICS=1``, the default) and one
with it off, in alternating order, and times W2 on each: 40,000 batches
(``--batches``) of 128 rows of trivial work, the driver's cost per batch in µs
(after a warm-up of 500 batches; untimed turns for ``--warmup-s`` first). The
ratio on/off is taken per turn, so the machine's drift falls on both sides
alike; the median ratio and the figures per turn are printed and
written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from machine import report_header
from workloads import BenchActor, make_data

from raymanager import BatchConfig, RayConfig, RayManager

HERE = Path(__file__).resolve().parent


def w2_us_per_batch(manager: RayManager, metrics_on: bool, batches: int) -> float:
    """W2 on a fresh pool with metrics publishing on or off: µs per batch."""
    os.environ["RAYMANAGER_POOL_METRICS"] = "1" if metrics_on else "0"
    pool = manager.create_actor_pool(BenchActor, {"reps": 0}, num_actors=2)
    try:
        config = BatchConfig(batch_size=128, num_parallel=2)
        data = make_data(batches * 128, seed=2)
        manager.process_in_parallel(pool, data[: 500 * 128], config)  # warm-up
        began = time.perf_counter()
        results = manager.process_in_parallel(pool, data, config)
        seconds = time.perf_counter() - began
        assert len(results) == batches
        assert (pool._metrics is not None) is metrics_on  # the switch did what it says
    finally:
        pool.shutdown()
    return 1e6 * seconds / batches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--batches", type=int, default=40000)
    parser.add_argument("--warmup-s", type=float, default=20.0)
    parser.add_argument("--out", default=str(HERE / "results" / "pool_metrics_ab.json"))
    args = parser.parse_args()
    turns: list[dict[str, Any]] = []
    with RayManager(RayConfig(num_cpus=2)) as manager:
        # Untimed turns for --warmup-s: a fresh Ray's own agents take CPU for their
        # first seconds, and the first long W2 run of a process is slower whichever
        # pool runs it (seen 2-4x; the metrics agent's and the driver's CPU time over
        # such a run are the same with publishing on and off).
        began = time.monotonic()
        while time.monotonic() - began < args.warmup_s:
            for metrics_on in (True, False):
                w2_us_per_batch(manager, metrics_on, args.batches)
        for turn in range(args.turns):
            order = (True, False) if turn % 2 == 0 else (False, True)
            row: dict[str, Any] = {}
            for metrics_on in order:
                row["on" if metrics_on else "off"] = w2_us_per_batch(manager, metrics_on,
                                                                     args.batches)
            row["ratio"] = row["on"] / row["off"]
            turns.append(row)
            print(f"turn {turn + 1}: on {row['on']:.1f} µs, off {row['off']:.1f} µs, "
                  f"on/off {row['ratio']:.3f}", flush=True)
    summary = {"on_us_median": statistics.median(t["on"] for t in turns),
               "off_us_median": statistics.median(t["off"] for t in turns),
               "ratio_median": statistics.median(t["ratio"] for t in turns),
               "ratio_min": min(t["ratio"] for t in turns),
               "ratio_max": max(t["ratio"] for t in turns)}
    report = {**report_header("pool_metrics_ab", __file__), "turns": turns, "summary": summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
