"""Actors a pool runs: the abstract RayActor and the built-in ones (no ray import).

The built-in actors load on first use: a worker that runs a user's actor
never imports gymnasium.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raymanager._lazy import lazy_attributes
from raymanager.actors.base import RayActor

if TYPE_CHECKING:
    from raymanager.actors.evaluation import EvaluationActor, merge_evaluations
    from raymanager.actors.training import TrainingActor

__all__ = ["EvaluationActor", "RayActor", "TrainingActor", "merge_evaluations"]

__getattr__, __dir__ = lazy_attributes(__name__, {
    "EvaluationActor": "raymanager.actors.evaluation",
    "merge_evaluations": "raymanager.actors.evaluation",
    "TrainingActor": "raymanager.actors.training",
})
