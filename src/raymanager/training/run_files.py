"""The run directory: its files, their names, and the rules for making and resuming one.

A run directory holds ``config.yaml`` (the resolved options), ``metrics.csv``
(one row per round), ``tensorboard/`` (the same rows as TensorBoard events),
``checkpoint/`` and ``learning_curve.png``.

    >>> new_run_dir(TrainConfig(output_dir="runs"))                 # doctest: +SKIP
    PosixPath('runs/CartPole-v1-seed0-20261204-101500')
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import logging
import os
import shlex
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from raymanager.durable import append_durably
from raymanager.run_lock import DirectoryLock
from raymanager.training.checkpoint import (
    CHECKPOINT_DIR,
    Checkpoint,
    cannot_write,
    save_checkpoint,
    write_file,
)
from raymanager.training.options import TrainConfig, check_resumable

__all__ = [
    "CONFIG_FILE",
    "CURVE_FILE",
    "METRICS_FILE",
    "METRIC_COLUMNS",
    "RUN_FILES",
    "TENSORBOARD_DIR",
    "RunFiles",
    "claim_new_run_dir",
    "new_run_dir",
    "read_run_config",
    "remove_run_files",
    "resume_config",
    "tensorboard_scalars",
]

logger = logging.getLogger("raymanager")

METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.yaml"
CURVE_FILE = "learning_curve.png"
TENSORBOARD_DIR = "tensorboard"

METRIC_COLUMNS = [
    "round", "seconds", "env_steps", "train_env_steps", "fitness_mean", "fitness_max",
    "loss", "eval_return_mean", "eval_return_std", "eval_return_min", "eval_return_max",
    "eval_length_mean", "eval_episodes", "restarts",
    # Training episodes (cumulative and this round) compare with "episodes to
    # threshold"; bytes: batch results to the driver + the weights broadcast.
    "episodes", "train_episodes", "batches", "result_bytes", "broadcast_bytes",
    "bytes_per_round",
]



#: The files of a run directory that ``overwrite`` replaces.
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR, CURVE_FILE, TENSORBOARD_DIR)


def tensorboard_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """A metrics row as TensorBoard scalars: ``eval_*`` under ``eval/``, the rest ``train/``.

    The round is the step, so it is not a scalar itself; empty cells are left out.

    >>> tensorboard_scalars({"round": 3, "loss": 0.5, "eval_return_mean": 200.0,
    ...                      "eval_episodes": None})
    {'train/loss': 0.5, 'eval/return_mean': 200.0}
    """
    scalars: dict[str, float] = {}
    for key, value in row.items():
        if key == "round" or value is None or value == "":
            continue
        if key.startswith("eval_"):
            scalars[f"eval/{key[len('eval_'):]}"] = float(value)
        else:
            scalars[f"train/{key}"] = float(value)
    return scalars


def read_run_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The options a run directory was trained with (its ``config.yaml``)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is corrupt: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} is corrupt: expected a mapping of options")
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
    output = Path(config.output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"cannot create the output directory ({error.strerror})",
                      str(output)) from None
    if config.run_name is None:  # a fresh name: the first that does not exist
        base = f"{config.env}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        for number in itertools.count(1):
            run_dir = output / (base if number == 1 else f"{base}-{number}")
            try:
                run_dir.mkdir()  # atomic: of two runs racing for a name, one gets it
            except FileExistsError:
                continue
            return DirectoryLock(run_dir).acquire()
    run_dir = output / str(config.run_name)
    run_dir.mkdir(exist_ok=True)
    lock = DirectoryLock(run_dir).acquire()  # a live run in it is refused, overwrite or not
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        lock.release()
        raise FileExistsError(
            f"run directory {run_dir} already holds a run ({', '.join(existing)}); continue it "
            f"with `raymanager train --resume {shlex.quote(str(run_dir))}`, or add --overwrite "
            f"to replace it"
        )
    remove_run_files(run_dir, remove_dir=False)
    return lock


def remove_run_files(run_dir: Path, *, remove_dir: bool = True,
                     lock: DirectoryLock | None = None) -> None:
    """Remove what a run writes in ``run_dir`` (and the folder, if that empties it).

    ``lock``, the directory's lock held by the caller, is released, and its
    file removed with the folder.
    """
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if lock is not None:
        lock.release(remove_file=remove_dir)
    if remove_dir:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty: never the user's own files


class RunFiles:
    """The run directory: config, metrics rows (CSV and TensorBoard), checkpoint and curve.

    ``metrics.csv`` and the checkpoint always agree: a row is written before
    the checkpoint of its round, and rows past the checkpoint's round (a run
    killed between the two) are dropped when the run is resumed or stopped.
    """

    def __init__(self, run_dir: Path, config: TrainConfig, resumed_round: int | None) -> None:
        self.run_dir = run_dir
        text = yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
        write_file(run_dir / CONFIG_FILE, text)
        self.metrics_path = run_dir / METRICS_FILE
        if resumed_round is None or not self.metrics_path.exists():
            self._rewrite([])
        else:
            self.keep_rounds_up_to(resumed_round)
        from tensorboardX import SummaryWriter

        # On resume, purge_step tells TensorBoard to drop the earlier file's events
        # past the checkpoint's round, as keep_rounds_up_to drops those CSV rows.
        self.events = SummaryWriter(
            str(run_dir / TENSORBOARD_DIR),
            purge_step=None if resumed_round is None else resumed_round + 1)

    def _rewrite(self, rows: list[list[str]]) -> None:
        def write(handle: Any) -> None:
            writer = csv.writer(handle)
            writer.writerow(METRIC_COLUMNS)
            writer.writerows(rows)

        write_file(self.metrics_path, write, binary=False)

    def keep_rounds_up_to(self, last_round: int) -> None:
        """Drop the rows of rounds after ``last_round`` (the checkpoint's round)."""
        with open(self.metrics_path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [row for row in reader if row]
        if header != METRIC_COLUMNS:
            raise ValueError(f"{self.metrics_path} is corrupt: unexpected header {header}")
        kept = [row for row in rows if row[0].isdigit() and int(row[0]) <= last_round]
        if len(kept) != len(rows):
            logger.warning("%s: dropped %d row(s) after round %d, the checkpoint's round",
                           self.metrics_path, len(rows) - len(kept), last_round)
            self._rewrite(kept)

    def append(self, row: Mapping[str, Any]) -> None:
        line = io.StringIO()
        csv.writer(line).writerow([_cell(row.get(column)) for column in METRIC_COLUMNS])
        try:
            # One write (Ctrl-C never leaves half a row), fsynced: a row survives a reboot.
            append_durably(self.metrics_path, line.getvalue())
        except OSError as error:
            raise cannot_write(error, self.metrics_path) from error
        step = int(row["round"])
        for tag, value in tensorboard_scalars(
                {column: row.get(column) for column in METRIC_COLUMNS}).items():
            self.events.add_scalar(tag, value, step)
        self.events.flush()

    def close(self) -> None:
        self.events.close()

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT_DIR, checkpoint)

    def plot(self, target: float) -> None:
        from raymanager.plotting import plot_learning_curve

        plot_learning_curve(self.metrics_path, self.run_dir / CURVE_FILE, target=target)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
