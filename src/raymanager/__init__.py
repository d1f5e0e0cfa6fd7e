"""raymanager: run ML training and evaluation in parallel on pools of Ray actors.

    >>> from raymanager import RayConfig, BatchConfig, RayManager
    >>> BatchConfig().batch_size
    128
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from raymanager.actors.base import RayActor
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

if TYPE_CHECKING:
    from raymanager.actors.evaluation import EvaluationActor
    from raymanager.actors.training import TrainingActor
    from raymanager.manager import RayManager
    from raymanager.pool import ActorPool, PoolState

#: Names imported on first use. Every Ray worker imports this package to run
#: its actor, and the modules behind these names bring in gymnasium, rich and
#: Ray's driver-side machinery: loading them lazily takes ~0.2 s of CPU off
#: each worker's start (a replacement actor joins sooner).
_LAZY = {
    "EvaluationActor": "raymanager.actors.evaluation",
    "TrainingActor": "raymanager.actors.training",
    "RayManager": "raymanager.manager",
    "ActorPool": "raymanager.pool",
    "PoolState": "raymanager.pool",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raymanager' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
