"""The pool layer: actors, their lifecycle, and runs of batches over them.

- :mod:`~raymanager.pool.host`: the worker side (one user actor per Ray actor).
- :mod:`~raymanager.engine.slots`: the state of each actor place and each call in flight.
- :mod:`~raymanager.pool.actor_pool`: :class:`ActorPool`, the one owner of both.
- :mod:`~raymanager.pool.dispatch`: one run of batches through a pool.
- :mod:`~raymanager.pool.placement`: resource checks and spreading over nodes.
- :mod:`~raymanager.pool.ray_errors`: the one mapping from Ray's errors to ours.
"""

from raymanager.config import check_pool_size as check_size  # where it was before
from raymanager.pool.actor_pool import ActorPool, PoolState
from raymanager.pool.dispatch import STARTED, TIMED_OUT, ProgressCallback, Run
from raymanager.pool.observe import list_pools
from raymanager.pool.placement import check_capacity, check_feasible

__all__ = [
    "STARTED",
    "TIMED_OUT",
    "ActorPool",
    "PoolState",
    "ProgressCallback",
    "Run",
    "check_capacity",
    "check_feasible",
    "check_size",
    "list_pools",
]
