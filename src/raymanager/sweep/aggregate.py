"""A sweep's runs grouped (env + the varying options' values), with medians over seeds
and the median evaluation curve with its band.

The medians ``*_to_target`` are over all the seeds, a seed that never reached the
target counting as never (None when half of them or more never did): a median
over only the seeds that got there would flatter a group in which most fail.

This module imports :mod:`raymanager.sweep.records` of ours, and numpy.

    >>> summary = summarize("sweeps/lr", varying=("learning_rate",))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from raymanager.sweep.records import (
    RunDirError,
    RunRecord,
    canonical,
    check_varying,
    option_text,
    read_run,
    run_dirs_of,
)

__all__ = ["Curve", "GroupSummary", "Summary", "XAxis", "group_curve", "summarize"]

XAxis = Literal["env_steps", "seconds"]
FloatArray = npt.NDArray[np.float64]


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
        return " ".join([self.env, *(f"{k}={option_text(v)}" for k, v in self.options)])


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
    names = check_varying(varying)
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
            key = (record.env, *(canonical(value) for _, value in record.options))
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


