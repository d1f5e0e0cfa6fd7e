"""ActorPool: the one owner of a pool's actors and of every call in flight on them.

Data flow::

    run (dispatch.Run) ---submit()---> Slot.calls ---Ray---> ActorHost.run
    broadcast          ---submit()-/                         ActorHost.call
            ^                                                     |
            +---- call_done / call_lost <--- collect() / lose() <-+

Runs and broadcasts never replace an actor themselves: they report a failed
call to the pool (:meth:`ActorPool.lose`), which replaces the actor once per
generation and tells each owner of a call on it whether that call was the
one executing (it alone may be charged) or was only queued. Every change of
a slot happens under the pool's lock, so a broadcast or a ``shutdown()``
from another thread, or between two ``next()`` of a suspended run, sees and
leaves consistent state. No actor is started once the pool stopped running.

Users get a pool from :meth:`RayManager.create_actor_pool`::

    pool = manager.create_actor_pool(MyActor, {"scale": 2}, num_actors=2)
    pool.broadcast("set_weights", args=(weights,), replay_on_restart=True)
"""

from __future__ import annotations

import collections
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
from raymanager.engine.slot_board import SlotList
from raymanager.engine.slots import SlotState
from raymanager.errors import ManagerShutdownError
from raymanager.pool import placement as placing
from raymanager.pool.base import PoolState
from raymanager.pool.broadcast import Broadcast
from raymanager.pool.calls import CallBook
from raymanager.pool.host import host_class
from raymanager.pool.metrics import MetricsPublisher, metrics_enabled
from raymanager.pool.observe import Throughput, pool_stats
from raymanager.pool.retiring import close_then_kill
from raymanager.pool.submit import Submissions

__all__ = ["ActorPool", "PoolState"]

logger = logging.getLogger("raymanager")


class ActorPool(CallBook):
    """A fixed-size pool of actors of one class, with health and replacement.

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
        self.min_actors, self.max_actors = (
            num_actors if isinstance(num_actors, tuple) else (num_actors, num_actors)
        )
        self.idle_timeout_s = idle_timeout_s
        self._next_index = 0
        self.pool_id = uuid.uuid4().hex[:8]
        self._next_grow_check = 0.0
        self._next_drain_check = 0.0
        self._draining = set()
        self._options = dict(actor_options)
        self._placement = placement
        #: Calls one actor runs at once: > 1 for async or thread-safe process_batch.
        self.max_concurrency = max_concurrency
        # Always said, never left to Ray: Ray runs up to 1,000 calls at once on
        # an actor with async methods unless told otherwise, and a call queued
        # ahead would then run beside the one before it.
        self._options["max_concurrency"] = max_concurrency
        self._remote_class = ray.remote(host_class(actor_class))
        self._start_timeout_s = start_timeout_s
        self._state = PoolState.RUNNING
        self._manager_shut_down = False
        self._lock = threading.RLock()
        self._ray_calls_done = threading.Condition(self._lock)
        self._ray_calls = 0  # threads inside a blocking Ray call on our behalf
        #: Runs iterating over this pool now, oldest first: they share its actors.
        self._runs = []
        self._broadcasts = {}  # method -> payload ref, replayed
        self._suspects = placing.SuspectNodes()
        self._next_node_check = 0.0
        self.max_batches_per_actor = max_batches_per_actor
        self._close_timeout_s = close_timeout_s
        # Only actors that override close() get a close call before they go.
        self._has_close = actor_class.close is not RayActor.close
        self._closing = []  # (handle, close ref, kill at)
        self.recycled = 0
        self._salvaging = None  # a slot whose finished calls lose() hands out
        self.restarts = 0
        self.restarts_by_kind = collections.Counter()
        self.batches_done = 0
        self.rows_finished = 0
        self.retries = 0  # batch tries charged after a worker died or timed out
        self.created = time.monotonic()
        self._throughput = Throughput()
        self._slots = SlotList()  # indexed: a run picks a free slot in O(log n)
        self._spares = []
        self.spare_actors = spare_actors
        self.promoted = 0  # spares that took a slot's place
        self._spare_starts = 0
        self._spares_owed = 0
        self._submissions = Submissions(self)
        self._metrics: MetricsPublisher | None = None
        try:
            with self._lock:
                for _ in range(self.min_actors):
                    self._spawn(self._new_slot())
                # Started with the pool's own actors, while nothing else runs:
                # a spare's start never takes a core from the work.
                for _ in range(spare_actors):
                    self._start_spare()
            self._wait_started()
            self._wait_spares()
            # Ray's metrics system (dashboards, Prometheus): see pool/metrics.py.
            self._metrics = MetricsPublisher(self) if metrics_enabled() else None
        except BaseException:
            self.shutdown()
            raise

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
            self.check_usable()
            self.min_actors, self.max_actors = low, high
            live = [slot for slot in self._slots if slot.state is not SlotState.DRAINING]
            for _ in range(low - len(live)):
                self._spawn(self._new_slot())
            excess = len(live) - high
            # Idle and not-yet-running actors go first, busy ones drain.
            by_load = sorted(live, key=lambda slot: (len(slot.calls),
                                                     slot.state is SlotState.READY))
            for slot in by_load[:max(0, excess)]:
                self._drain(slot)

    def pids(self) -> list[int | None]:
        """PIDs of the pool's actor processes, in slot order (None: none running)."""
        with self._lock:
            self.poll()
            return [slot.pid for slot in self._slots]

    def node_ids(self) -> list[str | None]:
        """The Ray node each actor runs on, in slot order (None: none running)."""
        with self._lock:
            self.poll()
            return [slot.node_id for slot in self._slots]

    def stats(self) -> dict[str, Any]:
        """What the pool is doing, per actor and pool-wide (see :func:`observe.pool_stats`).

        Example::

            >>> pool.stats()["actors"][0]["busy_fraction"]   # doctest: +SKIP
            0.93
        """
        with self._lock:
            self.poll()
            return pool_stats(self, self._throughput)

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
            if self._state is PoolState.SHUT_DOWN:
                return
            self._state = PoolState.SHUT_DOWN
            self._manager_shut_down = by_manager
            for slot in self._slots:
                self._retire_handle(slot)
                slot.state = SlotState.RETIRED
                slot.calls.clear()
                slot.ready_ref = None
            self._retire_spares()
            self._broadcasts.clear()
            self._submissions.fail_all(ManagerShutdownError(
                f"this pool of {self.actor_name} was shut down before the item ran"))
            closing, self._closing = self._closing, []
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
            self.check_usable()
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
        with self._lock:
            self.check_usable()
            payload_ref = ray.put((tuple(args), dict(kwargs or {})))
            if replay_on_restart:
                self._broadcasts[method] = payload_ref
            job = Broadcast(self, method, payload_ref, max_retries)
            for slot in self._slots:
                job.send(slot)
        return job.wait()
