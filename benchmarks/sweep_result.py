"""Record a sweep of ``raymanager train`` runs as a results JSON for docs/results.md.

    python benchmarks/sweep_result.py sweeps/lr \
        --command "raymanager sweep --seeds 0,1,2 --learning-rate 0.01,0.02 ..." \
        --out docs/results/sweep-cartpole-lr.json
    python benchmarks/results_page.py

Run it on the machine that ran the sweep, right after: the JSON records this
machine beside the sweep's summary (:mod:`raymanager.sweep.summary`: every
run and the medians over seeds per group), per run an equivalent
``raymanager train`` command rebuilt from its ``config.yaml``, and per run its
evaluations (round, seconds, env steps, episodes, mean return), from which the
results page draws the median curve over seeds and its band. The varying
options are those whose values differ between runs unless ``--varying``
names them. The date is when the last run wrote its last row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from machine import describe

from raymanager.cli_flags import option_flags
from raymanager.sweep.summary import (
    RunRecord,
    run_dirs_of,
    summarize,
    summary_to_json,
    varying_options,
)

#: Options of where and how a run ran, not what it trained: left out of its command.
NOT_IN_COMMAND = ("output_dir", "run_name", "address", "num_cpus", "progress")


def train_flags(config: dict[str, Any]) -> list[tuple[str, ...]]:
    """The ``raymanager train`` arguments that give a run's ``config.yaml``, one tuple
    per option (so that the options every run shares can be told apart).

    >>> train_flags({"env": "CartPole-v1", "env_kwargs": {}, "seed": 0, "address": None,
    ...              "overlap_eval": True, "trackers": []})
    [('--env', 'CartPole-v1'), ('--env-kwargs', '{}'), ('--seed', '0'), ('--overlap-eval',)]
    """
    groups = []
    for key, value in config.items():
        if key in NOT_IN_COMMAND:
            continue
        arguments = tuple(option_flags({key: value}))
        if arguments:  # None (the option's default) or no trackers: nothing to say
            groups.append(arguments)
    return groups


def evaluations(record: RunRecord) -> dict[str, list[Any]]:
    """A run's evaluations as columns (``round``, ``seconds``, ``env_steps``,
    ``episodes``, ``eval_return_mean``): the points of its learning curve, compact.

    >>> from raymanager.sweep.summary import EvalPoint
    >>> evaluations(RunRecord("a", Path("a"), "reached",
    ...                       evaluations=(EvalPoint(2, 7.5, 2000, 20, 480.5),)))["seconds"]
    [7.5]
    """
    points = record.evaluations
    return {"round": [e.round for e in points], "seconds": [e.seconds for e in points],
            "env_steps": [e.env_steps for e in points],
            "episodes": [e.episodes for e in points],
            "eval_return_mean": [e.value for e in points]}


def _command(flags: Sequence[tuple[str, ...]]) -> str:
    return shlex.join(argument for group in flags for argument in group)


def sweep_result(sweep_dir: Path, command: str, varying: Sequence[str] | None = None,
                 note: str | None = None) -> dict[str, Any]:
    """The JSON of a sweep: date, command, machine, each run's command, and its summary.

    >>> sweep_result(Path("sweeps/lr"), "raymanager sweep ...")["kind"]  # doctest: +SKIP
    'sweep'
    """
    run_dirs = run_dirs_of(sweep_dir)
    if not run_dirs:
        raise ValueError(f"{sweep_dir} holds no run directory under runs/")
    names = tuple(varying) if varying is not None else varying_options(run_dirs)
    records = summarize(sweep_dir, run_dirs, names)
    summary = summary_to_json(records)
    # summary_to_json keeps the medians; the page's curves need each run's points.
    for run, record in zip(summary["runs"], records.runs, strict=True):
        run["evaluations"] = evaluations(record)
    flags: dict[str, list[tuple[str, ...]]] = {}
    for run_dir in run_dirs:
        config_file = run_dir / "config.yaml"
        if config_file.is_file():
            flags[run_dir.name] = train_flags(yaml.safe_load(config_file.read_text("utf-8")))
    # The flags every run shares are shown once; each run adds its own.
    common = [pair for pair in next(iter(flags.values()), [])
              if all(pair in run_flags for run_flags in flags.values())]
    for run in summary["runs"]:
        own = [pair for pair in flags.get(run["run"], []) if pair not in common]
        run["options_command"] = _command(own)
        # In config.yaml's order, as a person would read the run's options.
        run["command"] = (f"raymanager train {_command(flags[run['run']])}"
                          if run["run"] in flags else None)
    metrics = [d / "metrics.csv" for d in run_dirs if (d / "metrics.csv").is_file()]
    last = max((m.stat().st_mtime for m in metrics), default=None)
    date = ("not recorded" if last is None else datetime.datetime.fromtimestamp(
        last, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {
        "kind": "sweep",
        "date": date,
        "command": command,
        "note": note,
        "machine": describe(("ray", "numpy", "gymnasium", "mujoco")),
        "common_command": f"raymanager train {_command(common)}".rstrip(),
        **summary,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (runs under runs/)")
    parser.add_argument("--command", required=True, help="the command that ran the sweep")
    parser.add_argument("--varying", default=None,
                        help="comma-separated options that vary (default: those that differ)")
    parser.add_argument("--note", default=None, help="conditions of the sweep, in a sentence")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    varying = None if args.varying is None else [n for n in args.varying.split(",") if n]
    result = sweep_result(args.sweep_dir, args.command, varying, args.note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
