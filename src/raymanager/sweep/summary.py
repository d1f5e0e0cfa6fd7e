"""The summary of a sweep: what its runs reached, per run and as medians over seeds.

A sweep keeps one ``raymanager train`` run directory per run (``config.yaml``,
``metrics.csv``, ``checkpoint/state.json``). This module reads them, files
only, no Ray, and writes three files into the sweep directory, each replaced
atomically (:func:`raymanager.durable.write_atomically`):

``summary.csv``
    one row per run: ``run, env, seed, <each varying option>, target, reached,
    seconds_to_target, episodes_to_target, env_steps_to_target, best_eval,
    final_eval, rounds, seconds, env_steps, episodes, state``.
``summary.md``
    a table of medians over the seeds of each group (a group is the env plus
    the values of the varying options): the results table "task, threshold,
    seeds reaching it, median time and episodes to it, best return".
``summary.png``
    per group, the median evaluation curve over seeds with a band, against
    environment steps and against wall-clock seconds.

It is safe to call while runs are still writing: a ``metrics.csv`` whose last
line is not complete yet (no newline) is read without that line, and a run
with no rows yet is ``"pending"``.

    >>> summary = summarize("sweeps/lr", varying=("learning_rate",))   # doctest: +SKIP
    >>> write_summary(summary)                                          # doctest: +SKIP

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

Errors: :func:`read_run` raises :class:`RunDirError` (a ``ValueError``) that
names the file when a file is there but unreadable: a YAML error, a header
without the needed columns, a complete line that is not numbers. Missing
files are not errors: a run the sweep has not started yet has none.
:func:`summarize` turns a :class:`RunDirError` into a record in state
``"corrupt"`` carrying the message (listed under the table of ``summary.md``,
left out of the medians), so that one bad run does not stop the live summary
of the others. A wrong ``varying`` (an option no ``config.yaml`` has) is the
caller's mistake and raises ``ValueError`` from both.

This module imports only :mod:`raymanager.durable` of ours (and numpy, yaml,
matplotlib when drawing), so that it can move as a whole.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from raymanager.durable import write_atomically

__all__ = [
    "CSV_COLUMNS",
    "MD_COLUMNS",
    "STATES",
    "Curve",
    "EvalPoint",
    "GroupSummary",
    "RunDirError",
    "RunRecord",
    "Summary",
    "group_curve",
    "median_table",
    "plot_summary",
    "read_run",
    "run_dirs_of",
    "summarize",
    "summary_csv",
    "summary_markdown",
    "summary_to_json",
    "varying_options",
    "write_summary",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
STATE_FILE = Path("checkpoint") / "state.json"
RUNS_DIR = "runs"
SUMMARY_CSV, SUMMARY_MD, SUMMARY_PNG = "summary.csv", "summary.md", "summary.png"

#: The states of a run, from not started to done (see the module's docstring).
STATES = ("pending", "unfinished", "reached", "budget", "corrupt")

#: metrics.csv columns the summary reads; ``episodes`` is optional (older runs lack it).
_NEEDED_COLUMNS = ("round", "seconds", "env_steps", "eval_return_mean")

#: Options that never vary a run's result: where and how it ran, not what.
_NOT_OPTIONS = frozenset({"seed", "env", "run_name", "output_dir", "progress", "address",
                          "num_cpus"})

XAxis = Literal["env_steps", "seconds"]
FloatArray = npt.NDArray[np.float64]


class RunDirError(ValueError):
    """A file of a run directory is there but cannot be read; ``path`` names it.

    >>> str(RunDirError("runs/a/metrics.csv", "line 3: not a number"))
    'runs/a/metrics.csv: line 3: not a number'
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = Path(path)


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


@dataclass(frozen=True)
class GroupSummary:
    """The runs of one group (env + varying options' values) and their medians.

    The medians ``*_to_target`` are over all the runs, one that never reached the
    target counting as never (None when half of them or more never did);
    ``median_best_eval`` and ``median_final_eval`` over the runs with at least one
    evaluation. Pending runs count in ``seeds``.
    """

    env: str
    options: tuple[tuple[str, Any], ...]
    targets: tuple[float, ...]
    runs: tuple[RunRecord, ...]
    seeds: int
    reached: int
    finished: int
    median_seconds_to_target: float | None
    median_episodes_to_target: float | None
    median_env_steps_to_target: float | None
    median_best_eval: float | None
    median_final_eval: float | None

    @property
    def label(self) -> str:
        """``env`` and ``name=value`` of each varying option, e.g. ``CartPole-v1 lr=0.01``."""
        return " ".join([self.env, *(f"{k}={_text(v)}" for k, v in self.options)])


@dataclass(frozen=True)
class Summary:
    """Every run of a sweep and the groups they form, in the order runs were given."""

    sweep_dir: Path
    varying: tuple[str, ...]
    runs: tuple[RunRecord, ...]
    groups: tuple[GroupSummary, ...]


@dataclass(frozen=True)
class Curve:
    """The median evaluation curve of a group's seeds and its band, on a common x grid.

    ``band`` says what ``low``/``high`` are: ``"min-max"`` with fewer than 4
    seeds, ``"25-75 %"`` (percentiles) with 4 or more. ``count`` is how many
    seeds each point is over.
    """

    x: FloatArray
    median: FloatArray
    low: FloatArray
    high: FloatArray
    count: npt.NDArray[np.int64]
    seeds: int
    band: str


def _read_config(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise RunDirError(path, f"not valid YAML ({error})") from None
    if not isinstance(values, dict):
        raise RunDirError(path, "expected a mapping of options")
    return values


def _complete_lines(path: Path) -> list[str]:
    """The file's lines up to its last newline: a row being appended is not read yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as error:
        raise RunDirError(path, f"not UTF-8 text ({error})") from None
    # The trainer appends a row in one write, but a reader can still see part of it
    # (or a crash can leave it): what follows the last newline is not a row yet.
    return text[: text.rfind("\n") + 1].splitlines()


def _number(path: Path, line: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise RunDirError(path, f"line {line}: {column} is not a number: {cell!r}") from None
    if math.isnan(value):
        raise RunDirError(path, f"line {line}: {column} is NaN")
    return value


def _metric_rows(path: Path) -> list[dict[str, str]]:
    lines = _complete_lines(path)
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


def _state_seconds(path: Path) -> float | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as error:  # json.JSONDecodeError is a ValueError
        raise RunDirError(path, f"not valid JSON ({error})") from None
    seconds = state.get("seconds") if isinstance(state, dict) else None
    return float(seconds) if isinstance(seconds, (int, float)) else None


def read_run(run_dir: str | os.PathLike[str], varying: Sequence[str] = ()) -> RunRecord:
    """Read one run directory into a :class:`RunRecord` (see the module for the states).

    Raises :class:`RunDirError` naming the file if one is unreadable, and
    ValueError if the run's ``config.yaml`` has no option named in ``varying``.

    >>> read_run("runs/a", ("learning_rate",)).best_eval                # doctest: +SKIP
    55.71
    """
    path = Path(run_dir)
    varying = _check_varying(varying)
    config = _read_config(path / CONFIG_FILE)
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
    elif _budget_spent(config, rounds, path / STATE_FILE):
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


def _budget_spent(config: dict[str, Any], rounds: int, state_file: Path) -> bool:
    max_rounds = config.get("max_rounds")
    if isinstance(max_rounds, int) and rounds >= max_rounds:
        return True
    max_seconds = config.get("max_seconds")
    if not isinstance(max_seconds, (int, float)):
        return False
    # The checkpoint is saved after the time check that ends a run: its seconds
    # pass max_seconds exactly when the run stopped for time.
    seconds = _state_seconds(state_file)
    return seconds is not None and seconds >= max_seconds


def _check_varying(varying: Sequence[str]) -> tuple[str, ...]:
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
    configs = [c for c in (_read_config(Path(d) / CONFIG_FILE) for d in run_dirs)
               if c is not None]
    names = list(dict.fromkeys(key for config in configs for key in config))
    return tuple(name for name in names if name not in _NOT_OPTIONS
                 and len({_key(config.get(name)) for config in configs}) > 1)


def _key(value: Any) -> str:
    # YAML values may be mappings (agent_kwargs): a canonical text groups equal ones.
    return json.dumps(value, sort_keys=True, default=str)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return "" if value is None else str(value)


def _median(values: Iterable[float | int | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return float(np.median(present)) if present else None


def _median_to_target(values: Iterable[float | int | None]) -> float | None:
    """The median over every seed, a seed that never reached the target counting as
    never (+inf): None when half of them or more never reached it.

    A median over only the seeds that got there would flatter a group in which
    most seeds fail: one fast seed of three would be "the median".

    >>> _median_to_target([20.0, 36.0, None]), _median_to_target([20.0, None, None])
    (36.0, None)
    """
    times = [math.inf if v is None else float(v) for v in values]
    if not times:
        return None
    middle = float(np.median(times))
    return None if math.isinf(middle) or math.isnan(middle) else middle


def run_dirs_of(sweep_dir: str | os.PathLike[str]) -> list[Path]:
    """The run directories under ``sweep_dir/runs``, by name."""
    runs = Path(sweep_dir) / RUNS_DIR
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


def summarize(
    sweep_dir: str | os.PathLike[str],
    run_dirs: Iterable[str | os.PathLike[str]] | None = None,
    varying: Sequence[str] = (),
) -> Summary:
    """Read the runs of a sweep and group them (env + ``varying`` values) for medians.

    ``run_dirs`` defaults to every folder under ``sweep_dir/runs``, by name.
    Groups come in the order their first run was given. A run that cannot
    be read becomes a ``"corrupt"`` record, in no group; pending runs
    without a ``config.yaml`` are in no group either (their env is unknown).

    >>> summary = summarize("sweeps/lr", varying=("learning_rate",))  # doctest: +SKIP
    >>> [(g.label, f"{g.reached}/{g.seeds}") for g in summary.groups]  # doctest: +SKIP
    [('CartPole-v1 learning_rate=0.01', '2/3'), ('CartPole-v1 learning_rate=0.02', '3/3')]
    """
    sweep = Path(sweep_dir)
    names = _check_varying(varying)
    paths = run_dirs_of(sweep) if run_dirs is None else [Path(d) for d in run_dirs]
    records = []
    for path in paths:
        try:
            records.append(read_run(path, names))
        except RunDirError as error:
            records.append(RunRecord(path.name, path, "corrupt", error=str(error)))
    grouped: dict[tuple[str, ...], list[RunRecord]] = {}
    for record in records:
        if record.env is not None:
            key = (record.env, *(_key(value) for _, value in record.options))
            grouped.setdefault(key, []).append(record)
    groups = tuple(_group(runs) for runs in grouped.values())
    return Summary(sweep, names, tuple(records), groups)


def _group(runs: list[RunRecord]) -> GroupSummary:
    first = runs[0]
    assert first.env is not None
    return GroupSummary(
        env=first.env, options=first.options,
        targets=tuple(dict.fromkeys(r.target for r in runs if r.target is not None)),
        runs=tuple(runs), seeds=len(runs), reached=sum(r.reached for r in runs),
        finished=sum(r.finished for r in runs),
        median_seconds_to_target=_median_to_target(r.seconds_to_target for r in runs),
        median_episodes_to_target=_median_to_target(r.episodes_to_target for r in runs),
        median_env_steps_to_target=_median_to_target(r.env_steps_to_target for r in runs),
        median_best_eval=_median(r.best_eval for r in runs),
        median_final_eval=_median(r.final_eval for r in runs),
    )


def group_curve(runs: Sequence[RunRecord], x: XAxis = "env_steps") -> Curve:
    """The median eval curve of ``runs`` (one group's seeds) against ``x``, with its band.

    Seeds evaluate at different x, so each seed's curve is interpolated
    linearly (``numpy.interp``) onto the union of all seeds' x values, from its
    first evaluation to its last. A run that reached the target stopped
    because it is done: beyond its last point it counts as holding its last
    value. Any other run (still running, or out of budget) counts only up to
    its last point, so near the ends a point may be over fewer seeds
    (``count``). The band is min-max with fewer than 4 seeds, 25-75 % with 4
    or more (``numpy.percentile``, linear).

    >>> curve = group_curve(summary.groups[0].runs, "seconds")       # doctest: +SKIP
    >>> curve.band, curve.seeds                                      # doctest: +SKIP
    ('min-max', 3)
    """
    series = [(np.array([float(getattr(e, x)) for e in r.evaluations]),
               np.array([e.value for e in r.evaluations]), r.state == "reached")
              for r in runs if r.evaluations]
    band = "25-75 %" if len(series) >= 4 else "min-max"
    if not series:
        empty = np.zeros(0)
        return Curve(empty, empty, empty, empty, np.zeros(0, dtype=np.int64), 0, band)
    grid = np.unique(np.concatenate([xs for xs, _, _ in series]))
    values = np.full((len(series), grid.size), np.nan)
    for i, (xs, ys, held) in enumerate(series):
        # Cumulative x never decreases; sorting keeps interp's contract if a clock did.
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
        inside = (grid >= xs[0]) & (held | (grid <= xs[-1]))
        # Past xs[-1], np.interp returns ys[-1]: the hold of a run that reached the target.
        values[i, inside] = np.interp(grid[inside], xs, ys)
    # Every grid point is some seed's own point: no column is all NaN.
    if band == "min-max":
        low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    else:
        low, high = np.nanpercentile(values, [25.0, 75.0], axis=0)
    count = np.sum(~np.isnan(values), axis=0).astype(np.int64)
    return Curve(grid, np.nanmedian(values, axis=0), low, high, count, len(series), band)


#: summary.csv's columns; the varying options' names go after ``seed``.
CSV_COLUMNS = ("run", "env", "seed", "target", "reached", "seconds_to_target",
               "episodes_to_target", "env_steps_to_target", "best_eval", "final_eval",
               "rounds", "seconds", "env_steps", "episodes", "state")


def summary_csv(summary: Summary) -> str:
    """``summary.csv``'s text: a header (:data:`CSV_COLUMNS`, varying options after seed),
    then one row per run; empty cells are unknown (None).

    >>> summary_csv(summary).splitlines()[0]                         # doctest: +SKIP
    'run,env,seed,learning_rate,target,reached,seconds_to_target,...'
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS[:3], *summary.varying, *CSV_COLUMNS[3:]])
    for r in summary.runs:
        options = dict(r.options)
        writer.writerow([_text(v) for v in (
            r.name, r.env, r.seed, *(options.get(name) for name in summary.varying),
            r.target, "true" if r.reached else "false", r.seconds_to_target,
            r.episodes_to_target, r.env_steps_to_target, r.best_eval, r.final_eval,
            r.rounds, r.seconds, r.env_steps, r.episodes, r.state)])
    return out.getvalue()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}}"


def _count(value: float | None) -> str:
    # A median of two counts can end in .5; say so rather than round it away.
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


#: The median table's header, the varying options' names after ``task``.
MD_COLUMNS = ("task", "threshold", "seeds", "seeds reaching it", "median seconds to it ¹",
              "median episodes to it ¹", "median best eval return", "median final eval return")


def median_table(summary: Summary) -> list[str]:
    """The markdown lines of the median table, one row per group."""
    header = [MD_COLUMNS[0], *summary.varying, *MD_COLUMNS[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in summary.groups:
        cells = [g.env, *(_text(v) or "-" for _, v in g.options),
                 ", ".join(f"{t:g}" for t in g.targets) or "-", str(g.seeds),
                 f"{g.reached}/{g.seeds}", _fmt(g.median_seconds_to_target, ".1f"),
                 _count(g.median_episodes_to_target), _fmt(g.median_best_eval, ".1f"),
                 _fmt(g.median_final_eval, ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_markdown(summary: Summary) -> str:
    """``summary.md``'s text: run counts, the median table per group, and its notes.

    >>> print(summary_markdown(summary))                             # doctest: +SKIP
    # Sweep lr
    ...
    | task | learning_rate | threshold | seeds | seeds reaching it | ...
    """
    states = {s: sum(r.state == s for r in summary.runs) for s in STATES}
    counts = ", ".join(f"{n} {s}" for s, n in states.items() if n)
    lines = [
        f"# Sweep {summary.sweep_dir.name}",
        "",
        f"{len(summary.runs)} runs: {counts or 'none yet'}. Medians are over the seeds of "
        "each group; an unfinished run counts with what it has written so far.",
        "",
        *median_table(summary),
        "",
        "¹ Median over all the seeds, a seed that never reached the threshold (the first "
        "evaluation whose mean return is at least it) counting as never; - where half "
        "of them or more never did. Seconds are wall time since the run "
        "started, Ray's start-up included; episodes are training episodes.",
    ]
    corrupt = [r for r in summary.runs if r.state == "corrupt"]
    if corrupt:
        lines += ["", "Runs left out, unreadable:", ""]
        lines += [f"- `{r.name}`: {r.error}" for r in corrupt]
    return "\n".join(lines) + "\n"


def plot_summary(summary: Summary, out_png: str | os.PathLike[str]) -> Path:
    """Draw ``summary.png``: each group's median eval curve and band, against env steps
    (left) and wall-clock seconds (right), each target as a dashed line.

    The legend says what each band is (see :func:`group_curve`).

    >>> plot_summary(summary, "sweeps/lr/summary.png")               # doctest: +SKIP
    PosixPath('sweeps/lr/summary.png')
    """
    # A Figure of its own, not pyplot's global state: a sweep's runs draw
    # their curves from other threads meanwhile, and pyplot is not thread-safe.
    import matplotlib
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.5), dpi=110)
    axes_row = figure.subplots(1, 2, sharey=True)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    axes_x: tuple[tuple[Any, XAxis, str], ...] = (
        (axes_row[0], "env_steps", "environment steps"),
        (axes_row[1], "seconds", "wall-clock seconds since the run started"))
    for axes, x, xlabel in axes_x:
        for i, group in enumerate(summary.groups):
            curve = group_curve(group.runs, x)
            if not curve.seeds:
                continue
            color = colors[i % len(colors)]
            axes.fill_between(curve.x, curve.low, curve.high, color=color, alpha=0.2,
                              linewidth=0, label=f"{group.label}: {curve.band} of seeds")
            axes.plot(curve.x, curve.median, color=color,
                      label=f"{group.label}: median of {curve.seeds} seed(s)")
        targets = dict.fromkeys(t for g in summary.groups for t in g.targets)
        for target in targets:
            axes.axhline(target, color="black", linestyle="--", linewidth=1,
                         label=f"target {target:g}")
        axes.set_xlabel(xlabel)
        axes.grid(alpha=0.3)
    axes_row[0].set_ylabel("evaluation return (mean over episodes)")
    if any(g.runs and any(r.evaluations for r in g.runs) for g in summary.groups):
        axes_row[0].legend(loc="lower right", fontsize="small")
    else:
        axes_row[0].text(0.5, 0.5, "no evaluation yet", transform=axes_row[0].transAxes,
                         ha="center")
    figure.suptitle(f"sweep {summary.sweep_dir.name}: median over seeds; band min-max "
                    "(< 4 seeds) or 25-75 % (>= 4)")
    figure.tight_layout()
    out = Path(out_png)
    write_atomically(out, lambda handle: figure.savefig(handle, format="png"))
    return out


def write_summary(summary: Summary, out_dir: str | os.PathLike[str] | None = None,
                  ) -> tuple[Path, Path, Path]:
    """Write ``summary.csv``, ``summary.md`` and ``summary.png``, each atomically.

    They go into ``out_dir``, by default the sweep directory; call it again
    whenever a run writes more: each file is replaced whole.

    >>> write_summary(summarize("sweeps/lr", varying=("learning_rate",)))  # doctest: +SKIP
    (PosixPath('sweeps/lr/summary.csv'), PosixPath('sweeps/lr/summary.md'), ...)
    """
    folder = Path(summary.sweep_dir if out_dir is None else out_dir)
    csv_path, md_path = folder / SUMMARY_CSV, folder / SUMMARY_MD
    write_atomically(csv_path, summary_csv(summary))
    write_atomically(md_path, summary_markdown(summary))
    return csv_path, md_path, plot_summary(summary, folder / SUMMARY_PNG)


def summary_to_json(summary: Summary) -> dict[str, Any]:
    """The summary as JSON-ready data: the varying options, each run, each group's medians.

    ``benchmarks/sweep_result.py`` adds the date, machine and commands.

    >>> json.dumps(summary_to_json(summary))                         # doctest: +SKIP
    '{"sweep": "lr", "varying": ["learning_rate"], "runs": [...], "groups": [...]}'
    """
    def run(r: RunRecord) -> dict[str, Any]:
        return {"run": r.name, "env": r.env, "seed": r.seed, "options": dict(r.options),
                "target": r.target, "state": r.state, "reached": r.reached,
                "seconds_to_target": r.seconds_to_target,
                "episodes_to_target": r.episodes_to_target,
                "env_steps_to_target": r.env_steps_to_target, "best_eval": r.best_eval,
                "final_eval": r.final_eval, "rounds": r.rounds, "seconds": r.seconds,
                "env_steps": r.env_steps, "episodes": r.episodes, "error": r.error}

    def group(g: GroupSummary) -> dict[str, Any]:
        return {"env": g.env, "options": dict(g.options), "targets": list(g.targets),
                "runs": [r.name for r in g.runs], "seeds": g.seeds, "reached": g.reached,
                "finished": g.finished,
                "median_seconds_to_target": g.median_seconds_to_target,
                "median_episodes_to_target": g.median_episodes_to_target,
                "median_env_steps_to_target": g.median_env_steps_to_target,
                "median_best_eval": g.median_best_eval,
                "median_final_eval": g.median_final_eval}

    return {"sweep": summary.sweep_dir.name, "varying": list(summary.varying),
            "runs": [run(r) for r in summary.runs], "groups": [group(g) for g in summary.groups]}
