"""Actors a pool runs: the abstract RayActor and the built-in ones (no ray import).

The built-in actors load on first use: a worker that runs a user's actor
never imports gymnasium.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from raymanager.actors.base import RayActor

if TYPE_CHECKING:
    from raymanager.actors.evaluation import EvaluationActor, merge_evaluations
    from raymanager.actors.training import TrainingActor

__all__ = ["EvaluationActor", "RayActor", "TrainingActor", "merge_evaluations"]

_LAZY = {
    "EvaluationActor": "raymanager.actors.evaluation",
    "merge_evaluations": "raymanager.actors.evaluation",
    "TrainingActor": "raymanager.actors.training",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raymanager.actors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
