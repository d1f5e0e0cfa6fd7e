"""The pool layer: actors, their lifecycle, and runs of batches over them.

- :mod:`~raymanager.pool.host`: the worker side (one user actor per Ray actor).
- :mod:`~raymanager.engine.slots`: the state of each actor place and each call in flight.
- :mod:`~raymanager.pool.actor_pool`: :class:`ActorPool`, the one owner of both.
- :mod:`~raymanager.pool.dispatch`: one run of batches through a pool.
- :mod:`~raymanager.pool.placement`: resource checks and spreading over nodes.
- :mod:`~raymanager.pool.ray_errors`: the one mapping from Ray's errors to ours.
"""

from raymanager.pool.actor_pool import ActorPool, PoolState
from raymanager.pool.dispatch import TIMED_OUT, Deadline, ProgressCallback, Run
from raymanager.pool.observe import list_pools
from raymanager.pool.placement import check_feasible
from raymanager.pool.retiring import check_size

__all__ = [
    "TIMED_OUT",
    "ActorPool",
    "Deadline",
    "PoolState",
    "ProgressCallback",
    "Run",
    "check_feasible",
    "check_size",
    "list_pools",
]
