"""ActorPool: the one owner of a pool's actors and of every call in flight on them.

The facade over three parts, composed (no inheritance)::

    ActorPool ── PoolAdapter ─┬─ PoolCore   (engine/pool.py: every decision, pure)
                              ├─ RayActors  (pool/actors.py: the core's commands, on Ray)
                              └─ the lock   (every slot and call changes under it)
    runs (dispatch.Run), broadcasts, submissions ──> PoolAdapter

Runs and broadcasts never replace an actor themselves: they report a failed
call to the adapter, whose core replaces the actor once per generation and
tells each owner of a call on it whether that call was the one executing (it
alone may be charged) or was only queued. Every change of a slot happens
under the pool's lock, so a broadcast or a ``shutdown()`` from another
thread, or between two ``next()`` of a suspended run, sees and leaves
consistent state. No actor is started once the pool stopped running.

Users get a pool from :meth:`RayManager.create_actor_pool`::

    pool = manager.create_actor_pool(MyActor, {"scale": 2}, num_actors=2)
    pool.broadcast("set_weights", args=(weights,), replay_on_restart=True)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import ray

from raymanager.actors.base import RayActor
from raymanager.config import check_int, check_pool_size
from raymanager.engine.pool import PoolCore, PoolState
from raymanager.engine.slots import Slot
from raymanager.errors import ManagerShutdownError
from raymanager.pool.actors import RayActors
from raymanager.pool.adapter import PoolAdapter
from raymanager.pool.broadcast import Broadcast
from raymanager.pool.metrics import MetricsPublisher, metrics_enabled
from raymanager.pool.observe import pool_stats
from raymanager.pool.retiring import close_then_kill
from raymanager.pool.submit import Submissions

__all__ = ["ActorPool", "PoolState"]

logger = logging.getLogger("raymanager")


class ActorPool:
    """A pool of actors of one class, with health and replacement.

    Made by :meth:`RayManager.create_actor_pool`; use it through the
    manager's ``process_in_parallel`` / ``imap`` / ``broadcast`` or directly.

    Example::

        with RayManager() as manager:
            pool = manager.create_actor_pool(MyActor, {}, num_actors=2)
            answers = pool.broadcast("describe")   # one answer per actor
    """

    def __init__(
        self,
        actor_class: type[RayActor[Any, Any]],
        actor_config: Mapping[str, Any],
        num_actors: int | tuple[int, int],
        *,
        actor_options: Mapping[str, Any],
        start_timeout_s: float,
        placement: str = "spread",
        max_batches_per_actor: int | None = None,
        close_timeout_s: float = 10.0,
        idle_timeout_s: float = 60.0,
        max_concurrency: int = 1,
        spare_actors: int = 0,
    ) -> None:
        self.actor_class = actor_class
        self.actor_config = dict(actor_config)
        self.pool_id = uuid.uuid4().hex[:8]
        self.spare_actors = spare_actors
        self.max_batches_per_actor = max_batches_per_actor
        options = dict(actor_options)
        # Always said, never left to Ray: Ray runs up to 1,000 calls at once on
        # an actor with async methods unless told otherwise, and a call queued
        # ahead would then run beside the one before it.
        options["max_concurrency"] = max_concurrency
        actors = RayActors(actor_class, actor_config, pool_id=self.pool_id, options=options,
                           placement=placement, start_timeout_s=start_timeout_s,
                           close_timeout_s=close_timeout_s)
        self._start_timeout_s = start_timeout_s
        self._lock = threading.RLock()
        self._metrics: MetricsPublisher | None = None
        with self._lock:
            core = PoolCore(
                actors, actor_name=actor_class.__name__,
                num_actors=num_actors if isinstance(num_actors, tuple)
                else (num_actors, num_actors),
                max_concurrency=max_concurrency,
                max_batches_per_actor=max_batches_per_actor,
                idle_timeout_s=idle_timeout_s, spare_actors=spare_actors)
            actors.core = core
        #: What runs, broadcasts and submissions of this pool share.
        self.adapter = PoolAdapter(core, actors, self._lock)
        self._submissions = Submissions(self.adapter)
        try:
            with self._lock:
                core.open(time.monotonic())
            self.adapter.wait_started(start_timeout_s)
            self.adapter.wait_spares(start_timeout_s)
            # Ray's metrics system (dashboards, Prometheus): see pool/metrics.py.
            self._metrics = MetricsPublisher(self) if metrics_enabled() else None
        except BaseException:
            self.shutdown()
            raise

    # ----------------------------------------------------------------- views

    @property
    def core(self) -> PoolCore:
        return self.adapter.core

    @property
    def state(self) -> PoolState:
        return self.core.state

    @property
    def actor_name(self) -> str:
        return self.actor_class.__name__

    @property
    def num_actors(self) -> int:
        """Actors the pool has now (starting, running or draining)."""
        return len(self.core.slots)

    @property
    def min_actors(self) -> int:
        return self.core.min_actors

    @property
    def max_actors(self) -> int:
        return self.core.max_actors

    @property
    def max_concurrency(self) -> int:
        return self.core.max_concurrency

    @property
    def idle_timeout_s(self) -> float:
        return self.core.idle_timeout_s

    @property
    def slots(self) -> list[Slot]:
        """The slots themselves; read them under :meth:`locked`."""
        return self.core.slots

    @property
    def spares(self) -> list[Slot]:
        """The pool's warm spare actors (state SPARE), outside its count."""
        return self.core.spares

    @property
    def restarts(self) -> int:
        return self.core.restarts

    @property
    def recycled(self) -> int:
        return self.core.recycled

    @property
    def retries(self) -> int:
        return self.core.retries

    @property
    def promoted(self) -> int:
        return self.core.promoted

    @property
    def batches_done(self) -> int:
        return self.core.batches_done

    @property
    def rows_finished(self) -> int:
        return self.core.rows_finished

    @property
    def restarts_by_kind(self) -> dict[str, int]:
        return dict(self.core.restarts_by_kind)

    def runs(self) -> list[Any]:
        """The runs sharing this pool now, oldest first."""
        return self.adapter.runs()

    @property
    def created(self) -> float:
        return self.adapter.created

    def locked(self) -> threading.RLock:
        """The lock under which every slot and call changes."""
        return self._lock

    def check_usable(self) -> None:
        """Raise if the pool was shut down or is broken."""
        self.core.check_usable()

    def wait_for_ray_calls(self, timeout: float) -> bool:
        """See :meth:`PoolAdapter.wait_for_ray_calls` (the manager's shutdown)."""
        return self.adapter.wait_for_ray_calls(timeout)

    def queued_batches(self) -> int:
        """Batches the runs on this pool have waiting for an actor."""
        return self.adapter.queued_batches()

    def resize(self, num_actors: int | tuple[int, int]) -> None:
        """Set the pool's size (or its ``(min, max)`` range), also during a run.

        Growing starts actors at once; shrinking retires idle actors at once
        and busy ones once their calls are done (DRAINING: no new work), so
        nothing is lost.

        Example::

            >>> pool.resize(8)          # doctest: +SKIP
            >>> pool.resize((0, 8))     # elastic: grow with work, shrink when idle
        """
        low, high = check_pool_size(
            *(num_actors if isinstance(num_actors, tuple) else (num_actors, num_actors)))
        with self._lock:
            self.core.resize(low, high, time.monotonic())

    def pids(self) -> list[int | None]:
        """PIDs of the pool's actor processes, in slot order (None: none running)."""
        with self._lock:
            self.adapter.poll()
            return [slot.pid for slot in self.core.slots]

    def node_ids(self) -> list[str | None]:
        """The Ray node each actor runs on, in slot order (None: none running)."""
        with self._lock:
            self.adapter.poll()
            return [slot.node_id for slot in self.core.slots]

    def stats(self) -> dict[str, Any]:
        """What the pool is doing, per actor and pool-wide (see :func:`observe.pool_stats`).

        Example::

            >>> pool.stats()["actors"][0]["busy_fraction"]   # doctest: +SKIP
            0.93
        """
        with self._lock:
            self.adapter.poll()
            return pool_stats(self, self.adapter.throughput)

    def shutdown(self, *, by_manager: bool = False) -> None:
        """Kill every actor of the pool. Safe to call twice, from any thread.

        A run or broadcast in progress ends with ManagerShutdownError at its
        next step; no actor is started afterwards. ``by_manager``: its
        manager is shutting down (errors then say so).
        """
        publisher, self._metrics = self._metrics, None
        if publisher is not None:  # its last counts, while the actors and Ray are up
            publisher.stop()
        with self._lock:
            if not self.core.shutdown(by_manager=by_manager):
                return
            self._submissions.fail_all(ManagerShutdownError(
                f"this pool of {self.actor_name} was shut down before the item ran"))
            closing, self.adapter.actors.closing = self.adapter.actors.closing, []
        # Outside the lock: a run in another thread must see the shutdown now.
        close_then_kill(closing, self.actor_name, wait=True)

    def submit(self, batch: Any, *, max_retries: int = 3) -> Future[Any]:
        """Process one batch on some actor; a ``concurrent.futures.Future`` of its result.

        Shares the actors with runs and broadcasts. A call lost with its actor
        is sent again (up to ``max_retries`` tries charged to it); an exception
        from ``process_batch`` is the future's :class:`~raymanager.BatchError`;
        a shutdown fails pending futures with ``ManagerShutdownError``.

        Example::

            >>> futures = [pool.submit(np.arange(8)) for _ in range(4)]   # doctest: +SKIP
            >>> [f.result() for f in concurrent.futures.as_completed(futures)]
        """
        max_retries = check_int("max_retries", max_retries, minimum=0)
        with self._lock:
            self.core.check_usable()
            return self._submissions.submit(batch, max_retries)

    def broadcast(
        self,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        replay_on_restart: bool = False,
        max_retries: int = 3,
    ) -> list[Any]:
        """Call ``method(*args, **kwargs)`` on every actor; return each answer.

        The arguments are put in the object store once and every actor reads
        the same copy (numpy arrays zero-copy), so broadcasting weights to N
        actors costs one serialization, not N. With ``replay_on_restart`` the
        call is remembered and replayed into any actor that replaces a dead
        one, before it gets work (the last call per method name is kept).

        Safe while a run of the pool is suspended or going on in another
        thread: calls on an actor run in the order they were sent. A slot
        with no live actor (its start keeps failing) answers None.

        Example::

            pool.broadcast("set_weights", args=(weights,), replay_on_restart=True)
        """
        if not isinstance(method, str) or not hasattr(self.actor_class, method):
            raise AttributeError(f"{self.actor_name} has no method {method!r} to broadcast")
        self.core.check_usable()
        # Serialized outside the lock: big weights never hold up the pool's other users.
        payload_ref = ray.put((tuple(args), dict(kwargs or {})))
        with self._lock:
            self.core.check_usable()
            if replay_on_restart:
                self.core.remember(method, payload_ref)
            job = Broadcast(self.adapter, method, payload_ref, max_retries)
            for slot in self.core.slots:
                job.send(slot)
        return job.wait()
