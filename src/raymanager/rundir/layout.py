"""The names of every file in a run directory and a sweep directory, written once.

A run directory (``raymanager train``; one per run of a sweep)::

    RUN_DIR/
      config.yaml          the options, every value resolved     (CONFIG_FILE)
      metrics.csv          one row per round, METRIC_COLUMNS      (METRICS_FILE)
      tensorboard/         the same rows as TensorBoard events    (TENSORBOARD_DIR)
      checkpoint/          weights.npz + state.json               (CHECKPOINT_DIR)
      learning_curve.png   the evaluation curve                   (CURVE_FILE)
      trackers.json        its MLflow / W&B run ids (--tracker)   (TRACKERS_FILE)
      .raymanager.lock     who writes it now (see rundir.lock)    (LOCK_FILE)

A sweep directory (``raymanager sweep``)::

    SWEEP_DIR/
      sweep.yaml           the sweep's options, seeds and grid    (SPEC_FILE)
      runs/NAME/           one run directory per run              (RUNS_DIR)
      summary.csv, summary.md, summary.png                        (SUMMARY_*)
      trackers.json        the sweep's parent tracker runs        (TRACKERS_FILE)
      .raymanager.lock

This module imports nothing.

    >>> RUN_FILES[:3]
    ('config.yaml', 'metrics.csv', 'checkpoint')
"""

from __future__ import annotations

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "CURVE_FILE",
    "LOCK_FILE",
    "METRICS_FILE",
    "METRIC_COLUMNS",
    "RUNS_DIR",
    "RUN_FILES",
    "SPEC_FILE",
    "STATE_FILE",
    "SUMMARY_CSV",
    "SUMMARY_MD",
    "SUMMARY_PNG",
    "TENSORBOARD_DIR",
    "TRACKERS_FILE",
    "WEIGHTS_FILE",
]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
CURVE_FILE = "learning_curve.png"
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_DIR = "checkpoint"
#: Inside CHECKPOINT_DIR.
STATE_FILE = "state.json"
WEIGHTS_FILE = "weights.npz"
LOCK_FILE = ".raymanager.lock"
TRACKERS_FILE = "trackers.json"

#: The files of a run directory that ``--overwrite`` replaces (never the user's own).
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR, CURVE_FILE, TENSORBOARD_DIR,
             TRACKERS_FILE)

#: metrics.csv's columns, in order.
METRIC_COLUMNS = (
    "round", "seconds", "env_steps", "train_env_steps", "fitness_mean", "fitness_max",
    "loss", "eval_return_mean", "eval_return_std", "eval_return_min", "eval_return_max",
    "eval_length_mean", "eval_episodes", "restarts",
    # Training episodes (cumulative and this round) compare with "episodes to
    # threshold"; bytes: batch results to the driver + the weights broadcast.
    "episodes", "train_episodes", "batches", "result_bytes", "broadcast_bytes",
    "bytes_per_round",
)

SPEC_FILE = "sweep.yaml"
RUNS_DIR = "runs"
SUMMARY_CSV, SUMMARY_MD, SUMMARY_PNG = "summary.csv", "summary.md", "summary.png"
