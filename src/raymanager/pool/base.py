"""What every layer of a pool shares: its state, its lock, and its slots.

A pool is built in layers, each in a module of its own, each a subclass of
the one below: :class:`PoolBase` (state and lock), ``lifecycle.ActorLifecycle``
(starting, replacing and retiring actors), ``calls.CallBook`` (the calls in
flight and the runs sharing the actors), and the public facade
``actor_pool.ActorPool``. The internal modules (runs, broadcasts,
submissions, stats) take a ``CallBook``, never the public class.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from raymanager.actors.base import RayActor
from raymanager.engine.run import RunCore
from raymanager.engine.slots import Call, Slot
from raymanager.errors import ManagerShutdownError, PoolBrokenError
from raymanager.pool import placement as placing
from raymanager.pool.observe import Throughput

__all__ = ["ActiveRun", "PoolBase", "PoolState"]

logger = logging.getLogger("raymanager")


class ActiveRun(Protocol):
    """What the pool needs of a run iterating over it (``dispatch.Run``)."""

    core: RunCore

    def collect(self, call: Call, outcome: Any) -> None:
        """Take ``call``'s finished ``outcome`` (a ``calls.Outcome``, got outside the lock)."""


class PoolState(enum.Enum):
    """Lifecycle of a pool, as in ``concurrent.futures`` executors."""

    RUNNING = "running"
    BROKEN = "broken"
    SHUT_DOWN = "shut down"


class PoolBase:
    """A pool's shared state; see the module docstring. Set up by ``ActorPool``."""

    actor_class: type[RayActor[Any, Any]]
    actor_config: dict[str, Any]
    min_actors: int
    max_actors: int
    idle_timeout_s: float
    pool_id: str
    max_concurrency: int
    max_batches_per_actor: int | None
    recycled: int
    restarts: int
    #: Restarts by the loss's kind ("died", "timed out", ...): the pool's metrics.
    restarts_by_kind: collections.Counter[str]
    retries: int
    batches_done: int
    rows_finished: int  # rows of the runs that ended on this pool
    created: float
    _next_index: int
    _next_grow_check: float
    _next_drain_check: float
    _next_node_check: float
    _draining: set[str]
    _options: dict[str, Any]
    _placement: str
    _remote_class: Any
    _start_timeout_s: float
    _state: PoolState
    _manager_shut_down: bool
    _lock: threading.RLock
    _ray_calls_done: threading.Condition
    _ray_calls: int
    _runs: list[ActiveRun]
    _broadcasts: dict[str, Any]
    _suspects: placing.SuspectNodes
    _close_timeout_s: float
    _has_close: bool
    _closing: list[tuple[Any, Any, float]]
    _salvaging: Slot | None
    _throughput: Throughput
    _slots: list[Slot]
    #: Warm spare actors (SPARE slots), outside the count; see engine/slots.py.
    _spares: list[Slot]
    spare_actors: int
    promoted: int
    _spare_starts: int
    _spares_owed: int  # spares to start once the pool is idle

    @property
    def state(self) -> PoolState:
        return self._state

    @property
    def actor_name(self) -> str:
        return self.actor_class.__name__

    @property
    def num_actors(self) -> int:
        """Actors the pool has now (starting, running or draining)."""
        return len(self._slots)

    @property
    def slots(self) -> list[Slot]:
        """The slots themselves; read them under :meth:`locked`."""
        return self._slots

    @property
    def spares(self) -> list[Slot]:
        """The pool's warm spare actors (state SPARE), outside its count."""
        return self._spares

    def locked(self) -> threading.RLock:
        """The lock under which every slot and call changes."""
        return self._lock

    def check_usable(self) -> None:
        """Raise if the pool was shut down or is broken."""
        if self._state is PoolState.SHUT_DOWN:
            if self._manager_shut_down:
                raise ManagerShutdownError(
                    f"the RayManager of this pool of {self.actor_name} was shut down; "
                    "create a new RayManager, then a new pool"
                )
            raise ManagerShutdownError(
                f"this pool of {self.actor_name} was shut down; create a new pool"
            )
        if self._state is PoolState.BROKEN:
            raise PoolBrokenError(
                f"this pool of {self.actor_name} is broken (its actors cannot be kept alive); "
                "create a new pool"
            )

    def break_pool(self) -> None:
        """Mark the pool broken: no actor can be kept alive."""
        with self._lock:
            if self._state is PoolState.RUNNING:
                self._state = PoolState.BROKEN

    def wait_for_ray_calls(self, timeout: float) -> bool:
        """Wait until no thread is inside a blocking Ray call for this pool.

        The manager calls it after :meth:`shutdown` and before ``ray.shutdown()``:
        Ray must not be torn down under a thread waiting in ``ray.wait``.
        """
        with self._ray_calls_done:
            return self._ray_calls_done.wait_for(lambda: self._ray_calls == 0, timeout)

    @contextlib.contextmanager
    def ray_call(self) -> Iterator[None]:
        """Mark a blocking Ray call made outside the lock (see wait_for_ray_calls)."""
        with self._lock:
            self.check_usable()
            self._ray_calls += 1
        try:
            yield
        finally:
            with self._lock:
                self._ray_calls -= 1
                self._ray_calls_done.notify_all()
