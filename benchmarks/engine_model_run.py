"""The engine model's big run: many seeded random schedules through the simulator.

Run from the repository root (one process; ``nice`` it on a shared machine)::

    nice -n 10 python benchmarks/engine_model_run.py --schedules 1000000
    python benchmarks/engine_model_run.py --schedules 1000000 --resume   # go on from the JSON
    python benchmarks/engine_model_run.py --schedules 2000 --out /tmp/m.json  # a quick look

Schedule ``i`` is ``engine_schedules.seeded_schedule(SEED, i)`` (``tests/``),
drawn from the same ranges as CI's (another stream: CI runs seed ``"ci"``), and
run through :func:`raymanager.engine.simulator.simulate`, which judges the engine
by its own records (see ``docs/development.md``). The report **counts** the
schedules that really ran (a counter in the loop, not the setting), their wall
and CPU time, the actor deaths they simulated by cause, and each
counter-example, shrunk by ``engine_schedules.shrink`` (each becomes a test in
``tests/test_engine_model.py``). It is rewritten every ``--every`` schedules,
so a run stopped early still reports what it counted; ``--resume`` goes on from
the index after the last one counted and adds to the counts.

Writes ``docs/results/engine-model-run.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from machine import describe

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the schedules live with the tests

from engine_schedules import run_schedule, seeded_schedule, shrink  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "results" / "engine-model-run.json"
#: Counter-examples kept in the report (each is also counted).
KEEP = 20


def _fresh(seed: str) -> dict[str, Any]:
    return {
        "kind": "engine_model_run",
        "seed": seed,
        "first_index": 0,
        "next_index": 0,
        "schedules_run": 0,
        "wall_s": 0.0,
        "cpu_s": 0.0,
        "counter_examples_found": 0,
        "counter_examples": [],
        "deaths_by_cause": {},
        "tries_charged": 0,
        "invocations": [],
    }


def _write(report: dict[str, Any], out: Path) -> None:
    ran = report["schedules_run"]
    report["cpu_ms_per_schedule"] = round(1000 * report["cpu_s"] / ran, 3) if ran else None
    report["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    tmp.replace(out)  # a reader never sees half a report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=1_000_000,
                        help="run schedules up to this index (counted from 0)")
    parser.add_argument("--seed", default="big", help="the schedule stream")
    parser.add_argument("--resume", action="store_true",
                        help="go on from --out's next_index, adding to its counts")
    parser.add_argument("--every", type=int, default=5000, help="rewrite the JSON this often")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(args_list)
    logging.getLogger("raymanager").setLevel(logging.ERROR)  # retries log a warning each

    report = _fresh(args.seed)
    if args.resume and args.out.exists():
        report = json.loads(args.out.read_text())
        if report.get("seed") != args.seed:
            raise SystemExit(f"{args.out} holds seed {report.get('seed')!r}, not {args.seed!r}")
    niceness = os.nice(0)
    command = shlex.join([*(["nice", "-n", str(niceness)] if niceness else []),
                          "python", "benchmarks/engine_model_run.py", *args_list])
    report["command"] = command
    report["machine"] = describe(packages=("hypothesis",))
    # Each invocation names its commit: a resumed run may judge a later engine.
    report["invocations"].append({"command": command, "from_index": report["next_index"],
                                  "git": report["machine"].get("git"),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    deaths: Counter[str] = Counter(report["deaths_by_cause"])
    index = report["next_index"]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    base_wall, base_cpu = report["wall_s"], report["cpu_s"]

    def flush() -> None:
        report["next_index"] = index
        report["wall_s"] = round(base_wall + time.perf_counter() - wall0, 3)
        report["cpu_s"] = round(base_cpu + time.process_time() - cpu0, 3)
        report["deaths_by_cause"] = dict(sorted(deaths.items()))
        report["invocations"][-1]["to_index"] = index
        _write(report, args.out)

    try:
        while index < args.schedules:
            schedule = seeded_schedule(args.seed, index)
            try:
                outcome = run_schedule(schedule)
            except Exception as error:  # a counter-example: the engine's or the simulator's
                report["counter_examples_found"] += 1
                if len(report["counter_examples"]) < KEEP:
                    small, text = shrink(schedule)
                    report["counter_examples"].append({
                        "index": index, "error": f"{type(error).__name__}: {error}",
                        "shrunk_error": text, "shrunk": small, "drawn": schedule,
                        "traceback": traceback.format_exc(limit=4)})
                    print(f"schedule {index}: {text}\n  shrunk: {small}", flush=True)
            else:
                deaths.update(outcome.deaths)
                report["tries_charged"] += outcome.charges
            # Counted here, once the schedule really ran (a counter-example counts too).
            report["schedules_run"] += 1
            index += 1
            if index % args.every == 0:
                flush()
                print(f"{report['schedules_run']:,} schedules, {report['wall_s']:.0f} s, "
                      f"{report['counter_examples_found']} counter-examples", flush=True)
    finally:
        flush()
    print(f"{report['schedules_run']:,} schedules counted in {report['wall_s']:.0f} s wall "
          f"({report['cpu_ms_per_schedule']} ms CPU each): "
          f"{report['counter_examples_found']} counter-examples; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
