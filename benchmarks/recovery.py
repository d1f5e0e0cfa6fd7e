"""What one SIGKILL costs W1, with and without a warm spare, in pairs and in turns.

    python benchmarks/recovery.py [--turns 5] [--out PATH]

Two pools of 2 ``BenchActor`` on one private Ray: one plain, one with
``spare_actors=1``. Each turn runs ``benchmarks/run.py``'s fault-tolerance
pair on each pool, in rotating order: W1 (400 batches of ~10 ms) without a
kill, then W1 with one of the pool's actors SIGKILLed by PID a quarter of the
way in. A pair's ratio is the killed run's wall over its clean twin's, so the
machine's drift between turns cancels; the report gives the median over turns
per pool, when the replacement was ready after the kill, and what a spare
costs in memory (its process's USS and PSS, from ``/proc`` through psutil).
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import machine  # noqa: E402
import psutil  # noqa: E402
from run import RayManagerVariant, Workload, calibrate_reps, fault_tolerance  # noqa: E402
from workloads import make_data, process  # noqa: E402


def spare_memory(pool: Any) -> dict[str, int]:
    """USS and PSS bytes of each ready spare's process (what it alone holds, and its share)."""
    pool.stats()  # polls the spares
    out: dict[str, int] = {"uss": 0, "pss": 0, "rss": 0}
    for spare in pool.spares:
        if spare.pid is None:
            continue
        info = psutil.Process(spare.pid).memory_full_info()
        for key in out:
            out[key] += int(getattr(info, key))
    return out


def wait_for_spares(pool: Any, timeout_s: float = 60.0) -> None:
    """Until every spare the pool keeps is ready again (none to wait for without spares)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pool.stats()["spares_ready"] >= pool.spare_actors:
            return
        time.sleep(0.05)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    from raymanager import RayConfig, RayManager

    reps, _ = calibrate_reps()
    data = make_data(400 * 128, seed=1)
    workload = Workload("W1", data, 128, reps, "400 batches of 128x64 float32, ~10 ms each")
    reference = [process(data[i : i + 128], reps) for i in range(0, len(data), 128)]
    report: dict[str, Any] = {
        **machine.report_header("recovery", __file__),
        "settings": {"turns": args.turns, "reps": reps, "workers": 2},
    }
    with RayManager(RayConfig(num_cpus=2)) as manager:
        pools = {"no spare": RayManagerVariant(manager),
                 "spare_actors=1": RayManagerVariant(manager, spare_actors=1)}
        report["spare_memory_bytes"] = spare_memory(pools["spare_actors=1"].pool)
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in pools}
        names = list(pools)
        for turn in range(args.turns):
            for name in names[turn % 2:] + names[:turn % 2]:
                rows[name] += fault_tolerance(pools[name], workload, 1, reference)["runs"]
                # The promoted spare's successor starts once the pool is idle:
                # let it be up before the next pair, so its start is in no timing.
                wait_for_spares(pools[name].pool)
    report["pools"] = {}
    for name, runs in rows.items():
        good = [r for r in runs if "wall_s" in r]

        def median(key: str, good: list[dict[str, Any]] = good) -> float | None:
            values = [r[key] for r in good if r.get(key) is not None]
            return statistics.median(values) if values else None

        checks = {r.get("check", "error") for r in runs}
        report["pools"][name] = {
            "median_ratio": median("ratio"),
            "ratios": [round(r["ratio"], 3) for r in good],
            "median_ready_after_s": median("ready_after_s"),
            "median_wall_s": median("wall_s"),
            "median_no_fault_wall_s": median("no_fault_wall_s"),
            "check": "ok" if checks == {"ok"} else sorted(c for c in checks if c != "ok")[0],
            "runs": runs,
        }
    report["machine"]["load_average_end"] = list(os.getloadavg())
    memory = report["spare_memory_bytes"]
    for name, pool in report["pools"].items():
        print(f"{name:<16} killed / clean {pool['median_ratio']:.3f} (pairs {pool['ratios']}); "
              f"ready {pool['median_ready_after_s']:.2f} s after the kill; {pool['check']}")
    print(f"a spare holds {memory['uss'] / 2**20:.0f} MiB of its own (USS), "
          f"PSS {memory['pss'] / 2**20:.0f} MiB, RSS {memory['rss'] / 2**20:.0f} MiB")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"wrote {args.out}")
    failed = any(pool["check"] != "ok" for pool in report["pools"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
