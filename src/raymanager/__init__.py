"""raymanager: run ML training and evaluation in parallel on pools of Ray actors.

    >>> from raymanager import RayConfig, BatchConfig, RayManager
    >>> BatchConfig().batch_size
    128
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raymanager._lazy import lazy_attributes
from raymanager.actors.base import RayActor
from raymanager.config import BatchConfig, RayConfig
from raymanager.errors import (
    ActorStartError,
    BatchError,
    BatchTimeoutError,
    BroadcastError,
    CheckpointError,
    JournalError,
    ManagerShutdownError,
    PoolBrokenError,
    PoolBusyError,
    RayManagerError,
    RayStartError,
    RemoteTraceback,
    ResourceUnavailableError,
    RunFileError,
    RunLockedError,
    WorkerDiedError,
)

if TYPE_CHECKING:
    from raymanager.actors.evaluation import EvaluationActor
    from raymanager.actors.training import TrainingActor
    from raymanager.manager import RayManager
    from raymanager.pool import ActorPool, PoolState

#: Names imported on first use: their modules bring in gymnasium, rich and
#: Ray's driver-side machinery, which a Ray worker running an actor never
#: needs: a worker starts faster, so a replacement actor joins sooner.
__getattr__, __dir__ = lazy_attributes(__name__, {
    "EvaluationActor": "raymanager.actors.evaluation",
    "TrainingActor": "raymanager.actors.training",
    "RayManager": "raymanager.manager",
    "ActorPool": "raymanager.pool",
    "PoolState": "raymanager.pool",
})

__all__ = [
    "ActorPool",
    "ActorStartError",
    "BatchConfig",
    "BatchError",
    "BatchTimeoutError",
    "BroadcastError",
    "CheckpointError",
    "EvaluationActor",
    "JournalError",
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
    "RunFileError",
    "RunLockedError",
    "TrainingActor",
    "WorkerDiedError",
]
