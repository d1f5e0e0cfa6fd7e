"""Experiment trackers for training runs and sweeps: MLflow and Weights & Biases.

- :mod:`~raymanager.tracking.base`: the :class:`Tracker` protocol, :class:`RunSpec`;
- :mod:`~raymanager.tracking.trackers`: :class:`Trackers`, one run's trackers on a
  background thread, failures made warnings, ``trackers.json`` for resume;
- :mod:`~raymanager.tracking.sweeps`: :class:`SweepTrackers`, a sweep's parent runs;
- :mod:`~raymanager.tracking.mlflow_tracker`, :mod:`~raymanager.tracking.wandb_tracker`:
  one module per tracker, imported only when asked for (``--tracker mlflow``).

    >>> from raymanager.tracking import TRACKER_NAMES
    >>> TRACKER_NAMES
    ('mlflow', 'wandb')
"""

from __future__ import annotations

from raymanager.tracking.base import RunSpec, Tracker, flat_params
from raymanager.tracking.sweeps import SweepTrackers
from raymanager.tracking.trackers import BACKENDS, STATE_FILE, Trackers, check_trackers

#: What ``--tracker`` accepts.
TRACKER_NAMES = tuple(BACKENDS)

__all__ = ["STATE_FILE", "TRACKER_NAMES", "RunSpec", "SweepTrackers", "Tracker", "Trackers",
           "check_trackers", "flat_params"]
