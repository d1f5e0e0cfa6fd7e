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

import contextlib
import enum
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from typing import Any, Protocol

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raymanager.actors.base import RayActor
from raymanager.engine.slots import Call, CallOwner, Loss, LossKind, Slot, SlotState
from raymanager.engine.wire import Failure
from raymanager.errors import (
    ManagerShutdownError,
    PoolBrokenError,
)
from raymanager.pool import placement as placing
from raymanager.pool.broadcast import Broadcast
from raymanager.pool.host import host_class
from raymanager.pool.observe import ACTOR_NAME_PREFIX, Throughput, pool_stats
from raymanager.pool.ray_errors import (
    FailureKind,
    classify,
    death_detail,
    is_node_death,
    is_out_of_memory,
    is_preempted,
)
from raymanager.pool.retiring import check_size, close_then_kill, first_line, salvage
from raymanager.pool.start_errors import not_started_error, start_error
from raymanager.pool.submit import Submissions

__all__ = ["ActorPool", "PoolState"]

logger = logging.getLogger("raymanager")

#: First wait before a failed replacement start is tried again; doubles per failure.
BACKOFF_BASE_S = 0.5
#: Longest wait between two tries to start a slot's actor.
BACKOFF_MAX_S = 30.0
#: Consecutive failed starts after which a slot no longer counts as alive (it
#: is still retried every BACKOFF_MAX_S, so the pool heals when it can).
GIVE_UP_AFTER = 5
#: A replacement still starting after this long has its planned node checked.
NODE_CHECK_AFTER_S = 5.0
#: Seconds between two looks at the nodes Ray is draining.
DRAIN_CHECK_S = 1.0
#: Seconds between two looks at the cluster's free resources when growing.
GROW_CHECK_S = 0.5


class ActiveRun(Protocol):
    """What the pool needs of a run iterating over it (``dispatch.Run``)."""

    def queued_batches(self) -> int: ...

    def busy(self) -> bool: ...

    def calls_in_flight(self) -> list[Call]: ...

    def collect(self, call: Call) -> None: ...


class PoolState(enum.Enum):
    """Lifecycle of a pool, as in ``concurrent.futures`` executors."""

    RUNNING = "running"
    BROKEN = "broken"
    SHUT_DOWN = "shut down"


class ActorPool:
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
        self._draining: set[str] = set()
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
        self._runs: list[ActiveRun] = []
        self._broadcasts: dict[str, Any] = {}  # method -> payload ref, replayed
        self._suspects = placing.SuspectNodes()
        self._next_node_check = 0.0
        self.max_batches_per_actor = max_batches_per_actor
        self._close_timeout_s = close_timeout_s
        # Only actors that override close() get a close call before they go.
        self._has_close = actor_class.close is not RayActor.close
        self._closing: list[tuple[Any, Any, float]] = []  # (handle, close ref, kill at)
        self.recycled = 0
        self._salvaging: Slot | None = None  # a slot whose finished calls lose() hands out
        self.restarts = 0
        self.retries = 0  # batch tries charged after a worker died or timed out
        self.created = time.monotonic()
        self._throughput = Throughput()
        self._slots: list[Slot] = []
        self._submissions = Submissions(self)
        try:
            with self._lock:
                for _ in range(self.min_actors):
                    self._spawn(self._new_slot())
            self._wait_started()
        except BaseException:
            self.shutdown()
            raise

    # ----------------------------------------------------------------- views

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

    def _new_slot(self) -> Slot:
        slot = Slot(self._next_index, idle_since=time.monotonic())
        self._next_index += 1
        self._slots.append(slot)
        return slot

    # ----------------------------------------------------------------- size

    def resize(self, num_actors: int | tuple[int, int]) -> None:
        """Set the pool's size (or its ``(min, max)`` range), also during a run.

        Growing starts actors at once; shrinking retires idle actors at once
        and busy ones once their calls are done (DRAINING: no new work), so
        nothing is lost.

        Example::

            >>> pool.resize(8)          # doctest: +SKIP
            >>> pool.resize((0, 8))     # elastic: grow with work, shrink when idle
        """
        low, high = num_actors if isinstance(num_actors, tuple) else (num_actors, num_actors)
        check_size(low, high)
        with self._lock:
            self.check_usable()
            self.min_actors, self.max_actors = low, high
            live = [s for s in self._slots if s.state is not SlotState.DRAINING]
            for _ in range(low - len(live)):
                self._spawn(self._new_slot())
            excess = len(live) - high
            # Idle and not-yet-running actors go first, busy ones drain.
            for slot in sorted(live, key=lambda s: (len(s.calls), s.state is SlotState.READY))[
                    :max(0, excess)]:
                self._drain(slot)

    def grow(self) -> bool:
        """Start one more actor if below ``max_actors`` and the cluster has room (lock held).

        Called by a run whose work waits for an actor.
        """
        if self._state is not PoolState.RUNNING or len(self._slots) >= self.max_actors:
            return False
        if any(s.state is SlotState.STARTING for s in self._slots):
            return False  # one start at a time: starts are slow, demand may pass
        now = time.monotonic()
        if now < self._next_grow_check:
            return False
        self._next_grow_check = now + GROW_CHECK_S
        if not placing.has_room(placing.requested_resources(self._options)):
            return False
        self._spawn(self._new_slot())
        return True

    def _drain(self, slot: Slot) -> None:
        """No new work for ``slot``; retire it now if idle (lock held)."""
        if slot.calls and slot.state is SlotState.READY:
            slot.state = SlotState.DRAINING
        else:
            self._remove(slot)

    def _remove(self, slot: Slot) -> None:
        self._retire_handle(slot)
        slot.state = SlotState.RETIRED
        if slot in self._slots:
            self._slots.remove(slot)

    def _shrink_idle(self, now: float) -> None:
        if len(self._slots) <= self.min_actors:
            return
        for slot in list(self._slots):
            if (slot.state is SlotState.READY and not slot.calls
                    and now - slot.idle_since > self.idle_timeout_s
                    and len(self._slots) > self.min_actors):
                logger.info("retiring actor %s: idle for %.0f s", slot.label(self.actor_name),
                            now - slot.idle_since)
                self._remove(slot)

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

    @property
    def slots(self) -> list[Slot]:
        """The slots themselves; read them under :meth:`locked`."""
        return self._slots

    def locked(self) -> threading.RLock:
        """The lock under which every slot and call changes."""
        return self._lock

    def record(self, call: Call, batches: int, seconds: float) -> None:
        """Count finished batches of a call (lock held): stats and recycling."""
        slot = call.slot
        slot.batches += batches
        slot.busy_s += seconds
        if call.generation == slot.generation:
            slot.done_by_generation += batches
            limit = self.max_batches_per_actor
            if (limit is not None and slot.done_by_generation >= limit and not slot.calls
                    and slot.state is SlotState.READY and self._state is PoolState.RUNNING
                    and slot is not self._salvaging):
                self._recycle(slot)
        self._throughput.add(batches)

    def count_retry(self) -> None:
        """A batch was charged a try (lock held): for :meth:`stats`."""
        self.retries += 1

    def batches_left(self, slot: Slot) -> int | None:
        """How many more batches ``slot``'s actor may be sent (None: no limit)."""
        if self.max_batches_per_actor is None:
            return None
        return max(0, self.max_batches_per_actor - slot.sent_to_generation)

    def _recycle(self, slot: Slot) -> None:
        """Retire a healthy actor that did its max_batches_per_actor (lock held)."""
        logger.info("recycling actor %s after %d batches (max_batches_per_actor)",
                    slot.label(self.actor_name), slot.done_by_generation)
        self.recycled += 1
        self._retire_handle(slot)
        self._spawn(slot)

    def _retire_handle(self, slot: Slot) -> None:
        """Let a live actor close(), then kill it; never blocks (lock held)."""
        if self._has_close and slot.state is SlotState.READY:
            close_ref = slot.handle.close.remote()
            self._closing.append((slot.handle, close_ref,
                                  time.monotonic() + self._close_timeout_s))
        else:
            self._kill(slot)

    def stats(self) -> dict[str, Any]:
        """What the pool is doing, per actor and pool-wide (see :func:`observe.pool_stats`).

        Example::

            >>> pool.stats()["actors"][0]["busy_fraction"]   # doctest: +SKIP
            0.93
        """
        with self._lock:
            self.poll()
            return pool_stats(self, self._throughput)

    # ----------------------------------------------------------------- lifecycle

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

    def shutdown(self, *, by_manager: bool = False) -> None:
        """Kill every actor of the pool. Safe to call twice, from any thread.

        A run or broadcast in progress ends with ManagerShutdownError at its
        next step; no actor is started afterwards. ``by_manager``: its
        manager is shutting down (errors then say so).
        """
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
            self._broadcasts.clear()
            self._submissions.fail_all(ManagerShutdownError(
                f"this pool of {self.actor_name} was shut down before the item ran"))
            closing, self._closing = self._closing, []
        # Outside the lock: a run in another thread must see the shutdown now.
        close_then_kill(closing, self.actor_name, wait=True)

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

    def add_run(self, run: ActiveRun) -> None:
        """A run starts on this pool; it shares the actors with the others."""
        with self._lock:
            self.check_usable()
            self._runs.append(run)

    def remove_run(self, run: ActiveRun) -> None:
        with self._lock:
            if run in self._runs:
                self._runs.remove(run)

    def queued_batches(self) -> int:
        """Batches the runs on this pool have waiting for an actor."""
        with self._lock:
            return sum(run.queued_batches() for run in self._runs)

    def fair_share(self, run: ActiveRun) -> int:
        """Actors ``run`` may keep busy: all of them while no other run has
        calls in flight, else an equal share of the pool with those that have
        (a run left suspended in a variable soon has none, and takes no share)."""
        others = sum(1 for other in self._runs if other is not run and other.busy())
        return max(1, -(-len(self._slots) // (others + 1)))

    def other_runs_calls(self, run: ActiveRun) -> list[Call]:
        """The calls in flight of the other runs: ``run`` collects them too
        while it waits, so a suspended run never keeps actors from it."""
        return [call for other in self._runs if other is not run
                for call in other.calls_in_flight()]

    def break_pool(self) -> None:
        """Mark the pool broken: no actor can be kept alive."""
        with self._lock:
            if self._state is PoolState.RUNNING:
                self._state = PoolState.BROKEN

    # ----------------------------------------------------------------- actors

    def _spawn(self, slot: Slot) -> None:
        """Start a new generation of ``slot`` (lock held). Not waited for."""
        options = dict(self._options)
        if self._placement == "spread":
            requested = placing.requested_resources(self._options)
            others = (s.planned_node for s in self._slots if s is not slot)
            node = placing.spread_target(requested, others, self._suspects.current())
            slot.planned_node = node
            if node is not None:
                # Hard affinity: soft affinity was measured to leave a node
                # empty just like SPREAD. A node that dies before the actor is
                # placed fails the start, and the retry goes elsewhere.
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        slot.generation += 1
        # A name that lists the actor as ours (raymanager info), unique per generation.
        options["name"] = f"{ACTOR_NAME_PREFIX}{self.pool_id}/{self.actor_name}/" \
                          f"{slot.index}.{slot.generation}"
        slot.handle = self._remote_class.options(**options).remote(
            self.actor_class, self.actor_config
        )
        slot.state = SlotState.STARTING
        slot.pid = slot.node_id = None
        slot.spawned_at = time.monotonic()
        slot.sent_to_generation = slot.done_by_generation = 0
        slot.calls.clear()
        # A fresh actor starts from its config; bring it to the state the
        # others were given by broadcasts marked replay_on_restart, before
        # ready() answers and before it gets any work.
        slot.replays = dict(self._broadcasts)
        slot.replay_answers = {}
        for method, payload_ref in slot.replays.items():
            slot.handle.replay.remote(method, payload_ref)
        slot.ready_ref = slot.handle.ready.remote()

    @staticmethod
    def _kill(slot: Slot) -> None:
        # Already dead, or Ray already shut down: nothing left to kill.
        with contextlib.suppress(Exception):
            if slot.handle is not None:
                ray.kill(slot.handle, no_restart=True)

    def _wait_started(self) -> None:
        """Wait for the first generation of every slot (pool creation)."""
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            with self._lock:
                pending = {s.ready_ref: s for s in self._slots if s.state is SlotState.STARTING}
                for slot in self._slots:
                    if slot.state is SlotState.BACKOFF:
                        self._spawn(slot)  # lost while starting (say, its node): retry at once
                        pending[slot.ready_ref] = slot
            if not pending:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise not_started_error(self.actor_name, self.num_actors, self._options,
                                        self._start_timeout_s, list(pending.values()))
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=min(left, 1.0))
            with self._lock:
                for ref in done:
                    self._on_ready(pending[ref], ref, initial=True)

    def poll(self) -> None:
        """Advance starting and backing-off slots without blocking (lock held).

        Takes note of replacements that answered ready(), restarts slots whose
        back-off has passed, and gives up on starts that hang on a dead node.
        """
        if self._state is not PoolState.RUNNING:
            return
        self._closing = close_then_kill(self._closing, self.actor_name, wait=False)
        now = time.monotonic()
        self._check_drains(now)
        for slot in [s for s in self._slots if s.state is SlotState.DRAINING and not s.calls]:
            if slot.evacuating:  # its node goes away: start its successor elsewhere
                slot.evacuating = False
                self._retire_handle(slot)
                self._spawn(slot)
            else:
                self._remove(slot)
        self._shrink_idle(now)
        starting = {s.ready_ref: s for s in self._slots if s.state is SlotState.STARTING}
        if starting:
            done, _ = ray.wait(list(starting), num_returns=len(starting), timeout=0)
            for ref in done:
                self._on_ready(starting[ref], ref)
            self._check_slow_starts(now)
        for slot in self._slots:
            if slot.state is SlotState.BACKOFF and now >= slot.retry_at:
                self._spawn(slot)

    def _check_drains(self, now: float) -> None:
        """Actors on a node Ray drains get no new work, and move once idle."""
        if now < self._next_drain_check:
            return
        self._next_drain_check = now + DRAIN_CHECK_S
        self._draining = placing.draining_nodes()
        for node in self._draining:
            self._suspects.add(node)  # place nothing new there
        for slot in self._slots:
            if slot.state is SlotState.READY and slot.node_id in self._draining:
                logger.warning("actor %s: its node is being drained; it takes no new work",
                               slot.label(self.actor_name))
                slot.state = SlotState.DRAINING
                slot.evacuating = True

    def _check_slow_starts(self, now: float) -> None:
        slow = [s for s in self._slots if s.state is SlotState.STARTING
                and now - s.spawned_at > NODE_CHECK_AFTER_S]
        if not slow or now < self._next_node_check:
            return
        self._next_node_check = now + 1.0
        alive = placing.live_node_ids()
        for slot in slow:
            if slot.planned_node is not None and slot.planned_node not in alive:
                self._suspects.add(slot.planned_node)
                self._start_failed(slot, f"its node {slot.planned_node[:8]} died before it started")
            elif now - slot.spawned_at > self._start_timeout_s:
                self._start_failed(
                    slot, f"it did not start within {self._start_timeout_s:g} s"
                )

    def _on_ready(self, slot: Slot, ref: Any, *, initial: bool = False) -> None:
        """A slot's ready() answered (lock held): READY, or a failed start."""
        if slot.ready_ref is not ref or slot.state is not SlotState.STARTING:
            return  # an older generation's answer
        try:
            pid, node_id, failure, answers = ray.get(ref)
        except Exception as exc:
            if classify(exc) is not FailureKind.LOST:
                raise
            if is_node_death(exc):
                self._suspects.add(slot.planned_node)
            self._start_failed(slot, f"it died while starting: {first_line(exc)}")
            return
        if failure is not None:
            if initial:
                self._state = PoolState.BROKEN
                raise start_error(self.actor_name, self.actor_config, failure)
            self._start_failed(slot, f"its constructor raised {failure.type_name}", failure)
            return
        slot.state = SlotState.READY
        slot.pid, slot.node_id = pid, node_id
        slot.replay_answers = answers
        slot.start_failures = 0
        slot.ready_ref = None

    def _start_failed(self, slot: Slot, reason: str, failure: Failure | None = None) -> None:
        """A start of ``slot`` failed (lock held): back off, then try again."""
        self._kill(slot)
        slot.start_failures += 1
        wait = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (slot.start_failures - 1))
        slot.state = SlotState.BACKOFF
        slot.retry_at = time.monotonic() + wait
        slot.last_start_error = reason if failure is None else f"{reason}:\n{failure.traceback}"
        slot.ready_ref = None
        logger.warning(
            "actor %s#%d could not start (%s); try %d, next in %.1f s",
            self.actor_name, slot.index, reason, slot.start_failures + 1, wait,
        )
        label = slot.label(self.actor_name)
        lost = list(slot.calls)
        slot.calls.clear()
        for call in lost:  # broadcasts sent to it while it was starting
            call.owner.call_lost(call, False, False, Loss(LossKind.DIED, reason, label))

    def alive_or_hopeful(self) -> bool:
        """True while some slot runs, starts, or has not failed to start too often,
        or the pool may still grow."""
        if len(self._slots) < self.max_actors:
            return True
        return any(
            slot.state in (SlotState.READY, SlotState.STARTING)
            or (slot.state is SlotState.BACKOFF and slot.start_failures < GIVE_UP_AFTER)
            for slot in self._slots
        )

    def no_actor_error(self) -> PoolBrokenError:
        last = "; ".join(
            f"#{s.index}: {s.last_start_error.splitlines()[0]}"
            for s in self._slots if s.last_start_error
        )
        return PoolBrokenError(
            f"no actor of this pool of {self.actor_name} can be kept alive: every slot failed "
            f"to start {GIVE_UP_AFTER} times in a row ({last})"
        )

    # ----------------------------------------------------------------- calls

    def register_call(self, slot: Slot, owner: CallOwner, ref: Any, **fields: Any) -> Call:
        """Register a call just sent to ``slot`` (lock held)."""
        call = Call(ref, slot, slot.generation, owner, **fields)
        slot.calls.append(call)
        return call

    def finished(self, call: Call) -> None:
        """Forget a call whose outcome its owner has taken (lock held)."""
        if call.generation == call.slot.generation:
            with contextlib.suppress(ValueError):
                call.slot.calls.remove(call)
            if not call.slot.calls:
                call.slot.idle_since = time.monotonic()

    def lose(self, slot: Slot, generation: int, loss: Loss, *, node_died: bool = False) -> None:
        """The actor of ``slot`` (that generation) is gone or must go (lock held).

        Once per generation: calls that finished before it died are salvaged
        (their owners get the results), the actor is killed and a new one
        started (unless the pool stopped running), and each owner of a lost
        call is told whether that call was the one executing.
        """
        if slot.generation != generation or slot.state is SlotState.RETIRED:
            return
        calls = list(slot.calls)
        slot.calls.clear()
        lost: list[Call] = []
        self._salvaging = slot
        try:
            for call in calls:
                finished, value = salvage(call)
                if finished:
                    call.owner.call_done(call, value)
                else:
                    lost.append(call)
        finally:
            self._salvaging = None
        if node_died:
            self._suspects.add(slot.node_id or slot.planned_node)
        self._kill(slot)
        self.restarts += 1
        slot.restarts += 1
        logger.warning("replacing actor %s: %s", loss.actor, loss.reason)
        if self._state is PoolState.RUNNING and (
                slot.state is not SlotState.DRAINING or slot.evacuating):
            slot.evacuating = False
            self._spawn(slot)
        else:
            slot.state = SlotState.RETIRED
            if slot in self._slots:
                self._slots.remove(slot)
        concurrent = self.max_concurrency > 1
        for position, call in enumerate(lost):
            # Ray runs an actor's calls in order: the first unfinished one ran
            # (with max_concurrency > 1, any of them may have).
            call.owner.call_lost(call, position == 0 or concurrent, len(lost) == 1, loss)

    def lose_after_error(self, call: Call, exc: BaseException) -> None:
        """``call`` failed because its actor is gone (lock held)."""
        slot = call.slot
        if classify(exc) is FailureKind.START_FAILED:
            self._start_failed(slot, "its constructor raised")
            return
        oom = is_out_of_memory(exc)
        preempted = is_preempted(exc) or slot.evacuating or slot.node_id in self._draining
        kind = (LossKind.PREEMPTED if preempted
                else LossKind.OUT_OF_MEMORY if oom else LossKind.DIED)
        reason = (
            "its node was drained (preempted)" if preempted
            else "its worker was killed for using too much memory" if oom
            else f"its worker process died ({death_detail(exc)})"
        )
        self.lose(slot, call.generation, Loss(kind, reason, slot.label(self.actor_name)),
                  node_died=is_node_death(exc))

    # ----------------------------------------------------------------- single items

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
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        with self._lock:
            self.check_usable()
            return self._submissions.submit(batch, max_retries)

    # ----------------------------------------------------------------- broadcast

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




