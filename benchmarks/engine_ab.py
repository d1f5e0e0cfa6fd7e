"""Two engines side by side, in turns: is this checkout's engine slower than another's?

    git worktree add /tmp/engine-old <commit>
    python benchmarks/engine_ab.py --engines old=/tmp/engine-old/src new=src --turns 3

Each turn runs every engine once, in a fresh process (``PYTHONPATH`` picks the
engine's sources; the order alternates between turns), on the same rows:

- W1: 400 batches of 128 rows, ~10 ms of numpy work each (calibrated once, in
  the parent), on 2 actors: wall seconds;
- W2: 5,000 batches of 128 rows of trivial work on 2 actors: µs per batch;
- 64 sleep-bound actors (20 ms batches): throughput against the ideal.

Absolute times on a shared machine drift; the ratios between engines of the
same turn do not drift with it. The medians over the turns and each engine's
ratio to the first are printed and written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import describe

HERE = Path(__file__).resolve().parent


def _calibrate_reps(target_s: float = 0.01) -> int:
    """Rounds of matmul+tanh that take ``target_s`` on one 128-row batch here."""
    from workloads import make_data, process

    batch = make_data(128)
    process(batch, 10)
    began = time.perf_counter()
    for _ in range(20):
        process(batch, 10)
    per_rep = (time.perf_counter() - began) / 200
    return max(1, round(target_s / per_rep))


def child(reps: int) -> dict[str, Any]:
    """One engine's figures (run in a process whose PYTHONPATH picks the engine)."""
    import driver_scaling
    from workloads import BenchActor, make_data

    import raymanager
    from raymanager import BatchConfig, RayConfig, RayManager

    out: dict[str, Any] = {"raymanager": str(Path(raymanager.__file__).parent)}
    with RayManager(RayConfig(num_cpus=2)) as manager:
        pool = manager.create_actor_pool(BenchActor, {"reps": reps}, num_actors=2)
        config = BatchConfig(batch_size=128, num_parallel=2)
        w1 = make_data(400 * 128, seed=1)
        w2 = make_data(5000 * 128, seed=2)
        manager.process_in_parallel(pool, w1[: 20 * 128], config)  # warm-up
        began = time.perf_counter()
        results = manager.process_in_parallel(pool, w1, config)
        out["w1_s"] = time.perf_counter() - began
        assert len(results) == 400
        pool.broadcast("set_reps", args=(0,), replay_on_restart=True)
        manager.process_in_parallel(pool, w2[: 500 * 128], config)  # warm-up
        began = time.perf_counter()
        results = manager.process_in_parallel(pool, w2, config)
        out["w2_us_per_batch"] = 1e6 * (time.perf_counter() - began) / 5000
        assert len(results) == 5000
        pool.shutdown()
        row = driver_scaling.measure(manager, 64, 0.02, 3.0)
        assert row["check"] == "ok"
        out["actors64_of_ideal"] = row["of_ideal"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=[],
                        help="NAME=SRC_DIR pairs; the first is the reference")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "engine_ab.json"))
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(args.child)), flush=True)
        return 0
    engines = [tuple(pair.split("=", 1)) for pair in args.engines]
    if len(engines) < 2:
        parser.error("give at least two NAME=SRC_DIR engines")
    reps = _calibrate_reps()
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in engines}
    for turn in range(args.turns):
        order = engines if turn % 2 == 0 else list(reversed(engines))
        for name, src in order:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                [str(Path(src).resolve()), str(HERE)]))
            done = subprocess.run([sys.executable, __file__, "--child", str(reps)], env=env,
                                  capture_output=True, text=True, check=True)
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            row = json.loads(line[len("RESULT "):])
            rows[name].append(row)
            print(f"turn {turn + 1} {name}: " + json.dumps(row), flush=True)
    metrics = ("w1_s", "w2_us_per_batch", "actors64_of_ideal")
    reference = engines[0][0]
    summary: dict[str, Any] = {}
    for name, _ in engines:
        summary[name] = {m: statistics.median(r[m] for r in rows[name]) for m in metrics}
        # Ratio per turn (same turn, same machine state), then the median of those.
        summary[name]["ratio_to_" + reference] = {
            m: statistics.median(r[m] / ref[m] for r, ref in zip(rows[name], rows[reference],
                                                                  strict=True))
            for m in metrics
        }
    report = {
        "kind": "engine_ab",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": describe(),
        "w1_reps": reps,
        "turns": rows,
        "summary": summary,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, _ in engines:
        print(name, json.dumps(summary[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
