"""What every experiment tracker does, and what a run tells it.

A tracker (MLflow, Weights & Biases) mirrors a run's record elsewhere: its
params once, one set of metrics per round (the round is the step), its files
at the end. ``metrics.csv`` stays the record: a tracker is a copy, and a copy
that fails never stops the run (see :class:`~raymanager.tracking.Trackers`).

    >>> flat_params({"env_kwargs": {"max_episode_steps": 200}, "hidden": [64, 64], "lr": None})
    {'env_kwargs.max_episode_steps': '200', 'hidden': '[64, 64]', 'lr': 'None'}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["RunSpec", "Tracker", "flat_params"]


@dataclass(frozen=True)
class RunSpec:
    """What a tracker needs to open (or reopen) the tracker run of a training run.

    ``store_dir``: where a tracker without a server of the user's keeps its
    files (the run's ``output_dir``); ``saved``: this tracker's part of
    ``trackers.json`` when the run is resumed (its run id), else None;
    ``parent``: the sweep's part for this tracker (MLflow: the parent run; W&B:
    the group), else None.
    """

    name: str
    run_dir: Path
    store_dir: Path
    params: Mapping[str, Any]
    saved: Mapping[str, Any] | None = None
    parent: Mapping[str, Any] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


class Tracker(Protocol):
    """One tracker run. Every method may raise: :class:`Trackers` turns that into a warning.

    ``state()`` is plain data (str, int, float) that reopens the same tracker
    run on resume: ``trackers.json`` keeps it, never a pickle.
    """

    name: str

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_artifact(self, path: Path, folder: str | None = None) -> None: ...

    def finish(self, status: str) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def where(self) -> list[str]: ...


def flat_params(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Options as flat text params: nested mappings become ``a.b`` keys, lists JSON.

    Every tracker shows params as text; ``None`` stays visible as ``"None"``
    rather than disappearing, so "the agent's default" is never a blank.
    """
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flat_params(value, f"{name}."))
        elif isinstance(value, (list, tuple, Mapping)):
            flat[name] = json.dumps(list(value) if isinstance(value, tuple) else value)
        else:
            flat[name] = str(value)
    return flat
