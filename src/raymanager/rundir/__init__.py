"""The run directory and the sweep directory, defined once: their files' names
(:mod:`~raymanager.rundir.layout`), formats, reading and writing
(:mod:`~raymanager.rundir.files`, :mod:`~raymanager.rundir.checkpoint`), making
one (:mod:`~raymanager.rundir.create`) and its one-writer lock
(:mod:`~raymanager.rundir.lock`).

Training writes through it, the sweep and its summary read through it, and so
does the results page. It deals in plain data (mappings, rows, arrays), not in
options: :class:`~raymanager.training.TrainConfig` and the sweep's spec are
built from what it reads, one floor up. It imports only
:mod:`raymanager.durable` and :mod:`raymanager.errors` of ours.

    >>> from raymanager.rundir import CONFIG_FILE, METRICS_FILE
    >>> CONFIG_FILE, METRICS_FILE
    ('config.yaml', 'metrics.csv')
"""

from __future__ import annotations

from raymanager.rundir.checkpoint import (
    Checkpoint,
    checkpoint_exists,
    checkpoint_seconds,
    load_checkpoint,
    save_checkpoint,
)
from raymanager.rundir.create import (
    claim_run_dir,
    claim_sweep_dir,
    remove_run_files,
    resume_command,
)
from raymanager.rundir.files import (
    RunDirError,
    append_metrics_row,
    cannot_write,
    complete_lines,
    keep_rounds_up_to,
    metrics_line,
    read_directory_file,
    read_mapping,
    tensorboard_scalars,
    write_file,
    write_mapping,
    write_metrics,
)
from raymanager.rundir.layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    CURVE_FILE,
    LOCK_FILE,
    METRIC_COLUMNS,
    METRICS_FILE,
    RUN_FILES,
    RUNS_DIR,
    SPEC_FILE,
    STATE_FILE,
    SUMMARY_CSV,
    SUMMARY_MD,
    SUMMARY_PNG,
    TENSORBOARD_DIR,
    TRACKERS_FILE,
    WEIGHTS_FILE,
)
from raymanager.rundir.lock import DirectoryLock

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
    "Checkpoint",
    "DirectoryLock",
    "RunDirError",
    "append_metrics_row",
    "cannot_write",
    "checkpoint_exists",
    "checkpoint_seconds",
    "claim_run_dir",
    "claim_sweep_dir",
    "complete_lines",
    "keep_rounds_up_to",
    "load_checkpoint",
    "metrics_line",
    "read_directory_file",
    "read_mapping",
    "remove_run_files",
    "resume_command",
    "save_checkpoint",
    "tensorboard_scalars",
    "write_file",
    "write_mapping",
    "write_metrics",
]
