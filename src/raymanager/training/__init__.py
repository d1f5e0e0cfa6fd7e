"""The main job: train an agent with a pool of training actors, evaluate it with another.

One module a job:

- :mod:`~raymanager.training.options`: :class:`TrainConfig`, every option of
  ``raymanager train``, and the defaults per environment and agent;
- :mod:`~raymanager.training.plan`: :func:`plan_run` resolves the options once
  into a frozen :class:`TrainPlan` (the environment is built once, nothing is
  left at "default");
- :mod:`~raymanager.training.loop`: :func:`train`, the rounds;
- :mod:`~raymanager.training.evaluation`: evaluation on a pool, and of a checkpoint;
- :mod:`~raymanager.training.run_files`: the run directory as training writes it (its
  files, formats, checkpoints and lock are defined in :mod:`raymanager.rundir`).

Options left at None take the defaults of the environment and agent
(:func:`round_defaults`): ES with 128 seeds per round on CartPole-v1; ARS with
the paper's V2-t settings on the MuJoCo tasks (10 evaluation episodes).

    >>> from raymanager.training import TrainConfig, train        # doctest: +SKIP
    >>> summary = train(TrainConfig(max_rounds=5, output_dir="runs"))  # doctest: +SKIP

Only the public API of raymanager is used here (see docs/development.md, "Layers").
"""

from __future__ import annotations

from raymanager.errors import CheckpointError, RunFileError
from raymanager.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVE_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    RUN_FILES,
    TENSORBOARD_DIR,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
    tensorboard_scalars,
)
from raymanager.training.evaluation import EVAL_SEED_OFFSET, evaluate_checkpoint, plan_evaluation
from raymanager.training.loop import ProgressHook, TrainSummary, train
from raymanager.training.options import (
    RESUMABLE_OPTIONS,
    TrainConfig,
    default_agent_for,
    round_defaults,
)
from raymanager.training.plan import TrainPlan, plan_run
from raymanager.training.run_files import new_run_dir, read_run_config, resume_config

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CURVE_FILE",
    "EVAL_SEED_OFFSET",
    "METRICS_FILE",
    "METRIC_COLUMNS",
    "RESUMABLE_OPTIONS",
    "RUN_FILES",
    "TENSORBOARD_DIR",
    "Checkpoint",
    "CheckpointError",
    "ProgressHook",
    "RunFileError",
    "TrainConfig",
    "TrainPlan",
    "TrainSummary",
    "default_agent_for",
    "evaluate_checkpoint",
    "load_checkpoint",
    "new_run_dir",
    "plan_evaluation",
    "plan_run",
    "read_run_config",
    "resolved_config",
    "resume_config",
    "round_defaults",
    "save_checkpoint",
    "tensorboard_scalars",
    "train",
]


def resolved_config(config: TrainConfig) -> TrainConfig:
    """``config`` with the values used where it says "default": ``plan_run(config).config``.

    Kept for callers of the first releases; new code takes the whole plan.

    >>> resolved_config(TrainConfig()).target_return
    475.0
    """
    return plan_run(config).config
