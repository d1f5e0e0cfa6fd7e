"""Actors a pool runs: the abstract RayActor and the built-in ones (no ray import)."""

from raymanager.actors.base import RayActor

__all__ = ["RayActor"]
