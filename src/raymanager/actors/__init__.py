"""Actors a pool runs: the abstract RayActor and the built-in ones (no ray import)."""

from raymanager.actors.base import RayActor
from raymanager.actors.evaluation import EvaluationActor, merge_evaluations
from raymanager.actors.training import TrainingActor

__all__ = ["EvaluationActor", "RayActor", "TrainingActor", "merge_evaluations"]
