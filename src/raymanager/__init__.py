"""raymanager: run ML training and evaluation in parallel on pools of Ray actors."""

from raymanager.actors.base import RayActor
from raymanager.config import BatchConfig, RayConfig

__all__ = ["BatchConfig", "RayActor", "RayConfig"]
