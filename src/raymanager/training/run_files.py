"""A training run's directory, as the training loop writes it and a resume reads it.

The directory itself (its files' names, formats and lock) is defined in
:mod:`raymanager.rundir`; this module adds what needs the run's options: the
fresh name ``{env}-seed{seed}-{date}-{time}``, ``config.yaml`` read back into a
:class:`TrainConfig`, and :class:`RunFiles`, the writer the loop holds.

    >>> new_run_dir(TrainConfig(output_dir="runs"))                 # doctest: +SKIP
    PosixPath('runs/CartPole-v1-seed0-20261204-101500')
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raymanager.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVE_FILE,
    METRICS_FILE,
    TENSORBOARD_DIR,
    Checkpoint,
    DirectoryLock,
    RunDirError,
    append_metrics_row,
    claim_run_dir,
    keep_rounds_up_to,
    read_directory_file,
    save_checkpoint,
    tensorboard_scalars,
    write_mapping,
    write_metrics,
)
from raymanager.training.options import TrainConfig, check_resumable

__all__ = [
    "RunFiles",
    "claim_new_run_dir",
    "new_run_dir",
    "read_run_config",
    "resume_config",
]

logger = logging.getLogger("raymanager")


def read_run_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The options a run directory was trained with (its ``config.yaml``)."""
    values = read_directory_file(run_dir, CONFIG_FILE, "run")
    return TrainConfig.from_mapping(values)


def resume_config(
    run_dir: str | os.PathLike[str], changes: Mapping[str, Any] | None = None
) -> TrainConfig:
    """The run's own options, with ``changes`` to its budgets or resources.

    Everything not in ``changes`` stays as the run had it, its budgets
    included; changing an option outside :data:`RESUMABLE_OPTIONS` raises
    ValueError naming it.

    >>> resume_config("runs/CartPole-v1-seed0-20261126-101500",
    ...               {"max_rounds": 50}).max_rounds                 # doctest: +SKIP
    50
    """
    saved = read_run_config(run_dir)
    changes = dict(changes or {})
    check_resumable(saved, TrainConfig.from_mapping({**dataclasses.asdict(saved), **changes}),
                     run_dir)
    return dataclasses.replace(saved, **changes)


def new_run_dir(config: TrainConfig, *, overwrite: bool = False) -> Path:
    """Create the run directory of a new run; never share or silently reuse one.

    Without ``run_name`` the name is ``{env}-seed{seed}-{date}-{time}``, with
    ``-2``, ``-3`` ... added when that exists already (two runs started in the
    same second each get their own). An explicit ``run_name`` that holds a run
    raises FileExistsError (continue it with ``resume``), unless ``overwrite``;
    one that another process is writing raises RunLockedError, ``overwrite`` or
    not. The directory's lock is released on return: :func:`claim_new_run_dir`
    keeps it.
    """
    lock = claim_new_run_dir(config, overwrite=overwrite)
    lock.release()
    return lock.directory


def claim_new_run_dir(config: TrainConfig, *, overwrite: bool = False) -> DirectoryLock:
    """:func:`new_run_dir`, returning the directory's lock held (release it when done)."""
    fresh = f"{config.env}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    return claim_run_dir(config.output_dir, config.run_name, fresh_name=fresh,
                         overwrite=overwrite)


class RunFiles:
    """The run directory: config, metrics rows (CSV and TensorBoard), checkpoint and curve.

    ``metrics.csv`` and the checkpoint always agree: a row is written before
    the checkpoint of its round, and rows past the checkpoint's round (a run
    killed between the two) are dropped when the run is resumed or stopped.
    """

    def __init__(self, run_dir: Path, config: TrainConfig, resumed_round: int | None) -> None:
        self.run_dir = run_dir
        write_mapping(run_dir / CONFIG_FILE, dataclasses.asdict(config))
        self.metrics_path = run_dir / METRICS_FILE
        if resumed_round is None or not self.metrics_path.exists():
            write_metrics(self.metrics_path)
        else:
            self.keep_rounds_up_to(resumed_round)
        from tensorboardX import SummaryWriter

        # On resume, purge_step tells TensorBoard to drop the earlier file's events
        # past the checkpoint's round, as keep_rounds_up_to drops those CSV rows.
        self.events = SummaryWriter(
            str(run_dir / TENSORBOARD_DIR),
            purge_step=None if resumed_round is None else resumed_round + 1)

    def keep_rounds_up_to(self, last_round: int) -> None:
        """Drop the rows of rounds after ``last_round`` (the checkpoint's round)."""
        try:
            dropped = keep_rounds_up_to(self.metrics_path, last_round)
        except RunDirError as error:
            raise ValueError(f"{self.metrics_path} is {error.reason}") from None
        if dropped:
            logger.warning("%s: dropped %d row(s) after round %d, the checkpoint's round",
                           self.metrics_path, dropped, last_round)

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one round's row to metrics.csv (fsynced) and to TensorBoard."""
        append_metrics_row(self.metrics_path, row)
        step = int(row["round"])
        for tag, value in tensorboard_scalars(row).items():
            self.events.add_scalar(tag, value, step)
        self.events.flush()

    def close(self) -> None:
        self.events.close()

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT_DIR, checkpoint)

    def plot(self, target: float) -> None:
        from raymanager.plotting import plot_learning_curve

        plot_learning_curve(self.metrics_path, self.run_dir / CURVE_FILE, target=target)
