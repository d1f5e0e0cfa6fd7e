"""Record a finished ``raymanager train`` run as a results JSON for docs/results.md.

    raymanager train --env HalfCheetah-v5 --seed 1 --max-seconds 240 --run-name cheetah
    python benchmarks/training_result.py runs/cheetah \
        --command "raymanager train --env HalfCheetah-v5 --seed 1 --max-seconds 240" \
        --out docs/results/train-halfcheetah-seed1.json
    python benchmarks/results_page.py

Run it on the machine that trained, right after: the JSON records this
machine (platform, CPU model and count, library versions) beside the run's
options (config.yaml) and every row of its metrics.csv. The date is when the
run wrote its last row.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from machine import describe


def _number(text: str) -> float | int | None:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def machine() -> dict[str, Any]:
    """This machine: what a reader needs to weigh a wall time."""
    return describe(("ray", "numpy", "gymnasium", "mujoco"))


def training_result(run_dir: Path, command: str, note: str | None = None) -> dict[str, Any]:
    """The JSON of one run: date, command, machine, options and metrics rows.

    >>> training_result(Path("runs/cheetah"), "raymanager train ...")["kind"]  # doctest: +SKIP
    'training'
    """
    metrics = run_dir / "metrics.csv"
    with open(metrics, newline="", encoding="utf-8") as handle:
        rows = [{key: _number(value) for key, value in row.items()}
                for row in csv.DictReader(handle)]
    if not rows:
        raise ValueError(f"{metrics} has no rounds")
    finished = datetime.datetime.fromtimestamp(metrics.stat().st_mtime, datetime.timezone.utc)
    return {
        "kind": "training",
        "date": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "note": note,
        "machine": machine(),
        "config": yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")),
        "rows": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the run directory of raymanager train")
    parser.add_argument("--command", required=True, help="the command that made the run")
    parser.add_argument("--note", default=None, help="conditions of the run, in a sentence")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    result = training_result(args.run_dir, args.command, args.note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
