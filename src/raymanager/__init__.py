"""raymanager: run ML training and evaluation in parallel on pools of Ray actors.

    >>> from raymanager import RayConfig, BatchConfig, RayManager
    >>> BatchConfig().batch_size
    128
"""

from raymanager.actors.base import RayActor
from raymanager.actors.evaluation import EvaluationActor
from raymanager.actors.training import TrainingActor
from raymanager.config import BatchConfig, RayConfig
from raymanager.errors import (
    ActorStartError,
    BatchError,
    BatchTimeoutError,
    BroadcastError,
    ManagerShutdownError,
    PoolBrokenError,
    PoolBusyError,
    RayManagerError,
    RayStartError,
    RemoteTraceback,
    ResourceUnavailableError,
    WorkerDiedError,
)
from raymanager.manager import RayManager
from raymanager.pool import ActorPool, PoolState

__all__ = [
    "ActorPool",
    "ActorStartError",
    "BatchConfig",
    "BatchError",
    "BatchTimeoutError",
    "BroadcastError",
    "EvaluationActor",
    "ManagerShutdownError",
    "PoolBrokenError",
    "PoolBusyError",
    "PoolState",
    "RayActor",
    "RayConfig",
    "RayManager",
    "RayManagerError",
    "RayStartError",
    "RemoteTraceback",
    "ResourceUnavailableError",
    "TrainingActor",
    "WorkerDiedError",
]
