"""A training run in the experiment trackers: what it logs there, and when.

Params: the run's resolved options (every option with the value used, the
agent's config among them); metrics: each ``metrics.csv`` row under
TensorBoard's names (``train/…``, ``eval/…``), the round as the step; files, at
the end: the learning curve, the final checkpoint and ``config.yaml``.

    >>> from raymanager.training import TrainConfig, plan_run
    >>> params = run_params(plan_run(TrainConfig(seed=2)))
    >>> params["seed"], params["agent_config"]["agent"]
    (2, 'es')
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raymanager.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVE_FILE,
    METRICS_FILE,
    complete_lines,
    tensorboard_scalars,
)
from raymanager.tracking import STATE_FILE, RunSpec, Trackers
from raymanager.training.plan import TrainPlan

__all__ = ["finish_trackers", "run_params", "start_trackers"]


def run_params(plan: TrainPlan) -> dict[str, Any]:
    """The params of a run: its resolved options and the config its actors were built from."""
    options = dataclasses.asdict(plan.config)
    options.pop("trackers", None)  # where it is logged, not what was trained
    return {**options, "agent_config": dict(plan.agent_config)}


def start_trackers(plan: TrainPlan, run_dir: Path, *, resumed: bool,
                   parents: Mapping[str, Mapping[str, Any]] | None) -> Trackers | None:
    """The run's trackers (None without ``--tracker``), opening in the background.

    A run without its own tracker server keeps the tracker's files beside it:
    the store is the run directory's parent (``output_dir``).
    """
    if not resumed:  # a run that replaced another (--overwrite) must not reopen its runs
        (run_dir / STATE_FILE).unlink(missing_ok=True)
    if not plan.config.trackers:
        return None
    spec = RunSpec(name=run_dir.name, run_dir=run_dir, store_dir=run_dir.parent,
                   params=run_params(plan),
                   tags={"raymanager.run_dir": str(run_dir.resolve()),
                         "raymanager.env": plan.config.env})
    backfill = _logged_rounds(run_dir) if resumed else []
    return Trackers.start(plan.config.trackers, spec, resumed=resumed, parents=parents,
                          backfill=backfill)


def _logged_rounds(run_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """The rows of ``metrics.csv`` (up to the checkpoint's round by now), as tracker steps."""
    try:
        rows = list(csv.DictReader(complete_lines(run_dir / METRICS_FILE)))
    except (OSError, ValueError):  # unreadable: the trackers get no earlier rounds
        return []
    return [(int(row["round"]), tensorboard_scalars(row)) for row in rows
            if row.get("round", "").isdigit()]


def finish_trackers(trackers: Trackers | None, run_dir: Path, status: str, *,
                    drawn: bool) -> list[str]:
    """Send the run's files, end the tracker runs; the lines that say where they are."""
    if trackers is None:
        return []
    if drawn:
        trackers.log_artifact(run_dir / CURVE_FILE)
    trackers.log_artifact(run_dir / CHECKPOINT_DIR)
    trackers.log_artifact(run_dir / CONFIG_FILE)
    return trackers.finish(status)
