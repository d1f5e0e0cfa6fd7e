"""Training with each evaluation beside the next round against evaluations between rounds.

    python benchmarks/eval_overlap.py [--env CartPole-v1] [--rounds 8] [--turns 4] [--out PATH]

``raymanager train``'s own loop (``raymanager.training.train``) with the
environment's default options, a target no run reaches, and ``--rounds``
rounds, run with ``overlap_eval`` on and off in turns on one private Ray
(the order alternates per turn). Each run's time is read from its
``metrics.csv`` as the CLI writes it: from the end of round 1 to the end of
the last round, so Ray's start-up and the pools' start are left out. The
figure is the overlapped run's time over the barrier run's in the same turn,
the median over turns; both runs' rows are checked equal but for the clock.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import machine

from raymanager import RayConfig, RayManager
from raymanager.training import TrainConfig, train


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        **machine.report_header("eval_overlap", __file__, ("ray", "numpy", "gymnasium")),
        "settings": {"env": args.env, "rounds": args.rounds, "turns": args.turns},
        "turns": [],
    }
    with tempfile.TemporaryDirectory() as folder, RayManager(RayConfig(num_cpus=2)) as manager:
        for turn in range(args.turns):
            seconds: dict[str, float] = {}
            curves: dict[str, list[dict[str, str]]] = {}
            for overlap in ((True, False) if turn % 2 == 0 else (False, True)):
                name = "overlapped" if overlap else "barrier"
                config = TrainConfig(env=args.env, max_rounds=args.rounds, target_return=1e9,
                                     max_seconds=None, progress=False, overlap_eval=overlap,
                                     output_dir=folder, run_name=f"{name}-{turn}")
                summary = train(config, manager=manager)
                rows = _rows(summary.run_dir)
                seconds[name] = float(rows[-1]["seconds"]) - float(rows[0]["seconds"])
                curves[name] = [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
            if curves["overlapped"] != curves["barrier"]:
                raise SystemExit(f"turn {turn}: the two runs' rows differ")
            ratio = seconds["overlapped"] / seconds["barrier"]
            report["turns"].append({**seconds, "ratio": ratio})
            print(f"turn {turn + 1}: overlapped {seconds['overlapped']:.2f} s, barrier "
                  f"{seconds['barrier']:.2f} s, ratio {ratio:.3f}", flush=True)
    ratios = [t["ratio"] for t in report["turns"]]
    report["median_ratio"] = statistics.median(ratios)
    report["evaluated_rounds"] = sum(1 for r in curves["barrier"] if r.get("eval_return_mean"))
    print(f"{args.env}: overlapped / barrier {report['median_ratio']:.3f} (median of "
          f"{len(ratios)} turns)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
