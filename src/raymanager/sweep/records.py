"""One run directory read as a :class:`RunRecord`: files only, no Ray.

A run's ``state`` is one of :data:`STATES`:

- ``"pending"``: no metrics row yet (or not even a ``config.yaml``);
- ``"unfinished"``: rows, but neither the target nor the budget reached: the
  run is still going, or was stopped early (Ctrl-C, a crash); its files
  alone cannot tell which;
- ``"reached"``: an evaluation reached the target (training stops there);
- ``"budget"``: it ran its ``max_rounds``, or its ``max_seconds`` (known from
  ``checkpoint/state.json``, saved when the run stopped: the last metrics row
  is written a moment before the time check that ends the run);
- ``"corrupt"``: a file could not be read (see :class:`RunDirError`).

It is safe to call while runs are still writing: a ``metrics.csv`` whose last
line is not complete yet (no newline) is read without that line, and a run
with no rows yet is ``"pending"``. :func:`read_run` raises :class:`RunDirError`
(a ``ValueError``) naming a file that is there but unreadable; missing files
are not errors. The files' names and formats are :mod:`raymanager.rundir`'s.

This module imports :mod:`raymanager.rundir` of ours.

    >>> record_values(RunRecord("seed0", Path("runs/seed0"), "pending"))["run"]
    'seed0'
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymanager.rundir import (
    CONFIG_FILE,
    METRICS_FILE,
    RUNS_DIR,
    RunDirError,
    checkpoint_seconds,
    complete_lines,
    read_mapping,
)

__all__ = [
    "RECORD_COLUMNS",
    "STATES",
    "EvalPoint",
    "RunDirError",
    "RunRecord",
    "canonical",
    "check_varying",
    "option_text",
    "read_run",
    "record_values",
    "run_dirs_of",
    "varying_options",
]

#: The states of a run, from not started to done (see the module's docstring).
STATES = ("pending", "unfinished", "reached", "budget", "corrupt")

#: metrics.csv columns the summary reads; ``episodes`` is optional (older runs lack it).
_NEEDED_COLUMNS = ("round", "seconds", "env_steps", "eval_return_mean")

#: Options that never vary a run's result: where and how it ran, not what.
_NOT_OPTIONS = frozenset({"seed", "env", "run_name", "output_dir", "progress", "address",
                          "num_cpus"})


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation of a run: where it was taken and its mean return."""

    round: int
    seconds: float
    env_steps: int
    episodes: int | None
    value: float


@dataclass(frozen=True)
class RunRecord:
    """What one run directory says, read by :func:`read_run`.

    ``options`` holds the varying options' values in the order asked for.
    The ``*_to_target`` fields come from the first evaluation whose mean
    return is at least ``target``; None when none is.

    >>> record = read_run("sweeps/lr/runs/lr0.01-seed0", ("learning_rate",))  # doctest: +SKIP
    >>> record.state, record.reached, record.option("learning_rate")  # doctest: +SKIP
    ('reached', True, 0.01)
    """

    name: str
    path: Path
    state: str
    env: str | None = None
    seed: int | None = None
    options: tuple[tuple[str, Any], ...] = ()
    target: float | None = None
    seconds_to_target: float | None = None
    episodes_to_target: int | None = None
    env_steps_to_target: int | None = None
    best_eval: float | None = None
    final_eval: float | None = None
    rounds: int = 0
    seconds: float = 0.0
    env_steps: int = 0
    episodes: int | None = None
    evaluations: tuple[EvalPoint, ...] = ()
    #: Why the run is ``"corrupt"``; None otherwise.
    error: str | None = None

    @property
    def reached(self) -> bool:
        """Whether an evaluation reached the target."""
        return self.seconds_to_target is not None

    @property
    def finished(self) -> bool:
        """Whether the run is done: it reached its target or spent its budget."""
        return self.state in ("reached", "budget")

    def option(self, name: str) -> Any:
        """The value of varying option ``name`` (KeyError if it is not one)."""
        for key, value in self.options:
            if key == name:
                return value
        raise KeyError(name)


def record_values(record: RunRecord) -> dict[str, Any]:
    """A record's values as summary.csv and the sweep's JSON show them, in column order
    (the varying options, :attr:`RunRecord.options`, are shown after ``seed``).

    The one list of a record's shown fields: :data:`RECORD_COLUMNS` and both
    files are derived from it.
    """
    return {"run": record.name, "env": record.env, "seed": record.seed,
            "target": record.target, "reached": record.reached,
            "seconds_to_target": record.seconds_to_target,
            "episodes_to_target": record.episodes_to_target,
            "env_steps_to_target": record.env_steps_to_target,
            "best_eval": record.best_eval, "final_eval": record.final_eval,
            "rounds": record.rounds, "seconds": record.seconds, "env_steps": record.env_steps,
            "episodes": record.episodes, "state": record.state}


#: summary.csv's columns; the varying options' names go after ``seed``.
RECORD_COLUMNS = tuple(record_values(RunRecord("", Path(), "pending")))


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise RunDirError(path, f"line {line}: {column} is not a number: {cell!r}") from None
    if math.isnan(value):
        raise RunDirError(path, f"line {line}: {column} is NaN")
    return value


def _metric_rows(path: Path) -> list[dict[str, str]]:
    lines = complete_lines(path)
    if not lines:
        return []
    reader = csv.reader(lines)
    header = next(reader)
    missing = [column for column in _NEEDED_COLUMNS if column not in header]
    if missing:
        raise RunDirError(path, f"not a metrics file: no column {', '.join(missing)}")
    rows = []
    for number, cells in enumerate(reader, start=2):
        if not cells:
            continue
        if len(cells) != len(header):
            raise RunDirError(path, f"line {number}: {len(cells)} cells, the header has "
                                    f"{len(header)}")
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def read_run(run_dir: str | os.PathLike[str], varying: Sequence[str] = ()) -> RunRecord:
    """Read one run directory into a :class:`RunRecord` (see the module for the states).

    Raises :class:`RunDirError` naming the file if one is unreadable, and
    ValueError if the run's ``config.yaml`` has no option named in ``varying``.

    >>> read_run("runs/a", ("learning_rate",)).best_eval                # doctest: +SKIP
    55.71
    """
    path = Path(run_dir)
    varying = check_varying(varying)
    config = read_mapping(path / CONFIG_FILE, missing_ok=True)
    metrics = path / METRICS_FILE
    rows = _metric_rows(metrics)
    if config is None:
        if rows:
            raise RunDirError(path / CONFIG_FILE, "missing, but metrics.csv has rows")
        return RunRecord(path.name, path, "pending")
    absent = [name for name in varying if name not in config]
    if absent:
        raise ValueError(f"{path / CONFIG_FILE} has no option {', '.join(absent)}: "
                         f"the varying options must be keys of config.yaml")
    target = config.get("target_return")
    seed = config.get("seed")
    base = RunRecord(
        name=path.name, path=path, state="pending",
        env=None if config.get("env") is None else str(config["env"]),
        seed=seed if isinstance(seed, int) else None,
        options=tuple((name, config[name]) for name in varying),
        target=None if target is None else float(target),
    )
    if not rows:
        return base

    def cell(row: dict[str, str], column: str, line: int) -> float:
        return _number(metrics, line, column, row[column])

    evaluations = []
    for line, row in enumerate(rows, start=2):
        if row["eval_return_mean"] == "":
            continue
        episodes = row.get("episodes") or None
        evaluations.append(EvalPoint(
            round=int(cell(row, "round", line)), seconds=cell(row, "seconds", line),
            env_steps=int(cell(row, "env_steps", line)),
            episodes=None if episodes is None else int(cell(row, "episodes", line)),
            value=cell(row, "eval_return_mean", line)))
    last_line = len(rows) + 1
    last = rows[-1]
    rounds = int(cell(last, "round", last_line))
    episodes_cell = last.get("episodes") or None
    hit = next((e for e in evaluations if base.target is not None and e.value >= base.target),
               None)
    if hit is not None:
        state = "reached"
    elif _budget_spent(config, rounds, path):
        state = "budget"
    else:
        state = "unfinished"
    return RunRecord(
        name=base.name, path=path, state=state, env=base.env, seed=base.seed,
        options=base.options, target=base.target,
        seconds_to_target=None if hit is None else hit.seconds,
        episodes_to_target=None if hit is None else hit.episodes,
        env_steps_to_target=None if hit is None else hit.env_steps,
        best_eval=max((e.value for e in evaluations), default=None),
        final_eval=evaluations[-1].value if evaluations else None,
        rounds=rounds, seconds=cell(last, "seconds", last_line),
        env_steps=int(cell(last, "env_steps", last_line)),
        episodes=None if episodes_cell is None else int(cell(last, "episodes", last_line)),
        evaluations=tuple(evaluations),
    )


def _budget_spent(config: dict[str, Any], rounds: int, run_dir: Path) -> bool:
    max_rounds = config.get("max_rounds")
    if isinstance(max_rounds, int) and rounds >= max_rounds:
        return True
    max_seconds = config.get("max_seconds")
    if not isinstance(max_seconds, (int, float)):
        return False
    # The checkpoint is saved after the time check that ends a run: its seconds
    # pass max_seconds exactly when the run stopped for time.
    seconds = checkpoint_seconds(run_dir)
    return seconds is not None and seconds >= max_seconds


def check_varying(varying: Sequence[str]) -> tuple[str, ...]:
    """The varying options as a tuple, env left out (always part of a group); "seed"
    refused (the medians are over the seeds)."""
    if isinstance(varying, str):  # ("learning_rate") is a string, not a tuple
        varying = (varying,)
    if "seed" in varying:
        raise ValueError("seed cannot be a varying option: the medians are over the seeds")
    # The env is always part of a group (and a column of its own).
    return tuple(dict.fromkeys(name for name in varying if name != "env"))


def varying_options(run_dirs: Iterable[str | os.PathLike[str]]) -> tuple[str, ...]:
    """The ``config.yaml`` options whose values differ between runs (seed and env excepted).

    Runs without a config yet are skipped; options where runs ran (output_dir,
    address, ...) are never varying.

    >>> varying_options(Path("sweeps/lr/runs").iterdir())            # doctest: +SKIP
    ('learning_rate',)
    """
    configs = [c for c in (read_mapping(Path(d) / CONFIG_FILE, missing_ok=True)
                           for d in run_dirs) if c is not None]
    names = list(dict.fromkeys(key for config in configs for key in config))
    return tuple(name for name in names if name not in _NOT_OPTIONS
                 and len({canonical(config.get(name)) for config in configs}) > 1)


def canonical(value: Any) -> str:
    """A canonical text of an option's value, so that equal values (mappings too) group."""
    return json.dumps(value, sort_keys=True, default=str)


def option_text(value: Any) -> str:
    """An option's value as a cell or a label: JSON for mappings and lists, '' for None.

    >>> option_text({"b": 1, "a": [2]}), option_text(None), option_text(True)
    ('{"a":[2],"b":1}', '', 'true')
    """
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if isinstance(value, bool):  # as YAML and CSV readers spell it
        return "true" if value else "false"
    return "" if value is None else str(value)


def run_dirs_of(sweep_dir: str | os.PathLike[str]) -> list[Path]:
    """The run directories under ``sweep_dir/runs``, by name."""
    runs = Path(sweep_dir) / RUNS_DIR
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
