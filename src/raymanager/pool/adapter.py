"""The Ray adapter of one pool's core: its lock, its Ray actors, and what its owners share.

A pool is composed, not layered: :class:`PoolAdapter` holds the pure
:class:`~raymanager.engine.pool.PoolCore` (every decision), the
:class:`~raymanager.pool.actors.RayActors` that performs the core's commands
on Ray, and the one lock under which both change. Runs
(``pool/dispatch.py``), broadcasts and submissions take a ``PoolAdapter``;
users get the facade ``ActorPool``, which holds one.

What it adds to the core is what needs Ray or a clock: the time given to
each event, ``ray.get`` of finished calls outside the lock
(:func:`get_outcome`), the mapping of Ray's exceptions to the core's events
(:meth:`PoolAdapter.settle`, :meth:`PoolAdapter.lose_after_error`), and the
polls of what Ray knows (starts, spares, drains, dead nodes).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import ray

from raymanager.actors.base import RayActor
from raymanager.engine import policy
from raymanager.engine.pool import PoolCore, RunOwner
from raymanager.engine.slots import Call, CallOwner, Loss, LossKind, Slot, SlotState
from raymanager.pool import placement as placing
from raymanager.pool.actors import RayActors
from raymanager.pool.observe import Throughput
from raymanager.pool.ray_errors import (
    FailureKind,
    classify,
    death_detail,
    is_node_death,
    is_out_of_memory,
    is_preempted,
    user_cause,
)
from raymanager.pool.retiring import salvage
from raymanager.pool.start_errors import not_started_error

__all__ = ["LOST", "Outcome", "PoolAdapter", "get_outcome", "wait_for"]

logger = logging.getLogger("raymanager")


@dataclass(frozen=True)
class Outcome:
    """What ``ray.get`` of a finished call gave: its value, or the error it raised."""

    value: Any = None
    error: BaseException | None = None


def get_outcome(ref: Any) -> Outcome:
    """``ray.get`` a finished call's reference, outside the pool's lock.

    The reply is deserialized here, in the thread that waited for it, so a
    big result never holds up the other users of the pool; what the
    outcome means is decided under the lock (:meth:`PoolAdapter.settle`).
    """
    try:
        return Outcome(ray.get(ref))
    except Exception as exc:
        return Outcome(error=exc)


def wait_for(pool: PoolAdapter, calls: Mapping[Any, Call], starts: list[Any],
             timeout: float) -> list[tuple[Call, Outcome]]:
    """Wait up to ``timeout`` for one of ``calls`` (by ref) to finish or one of
    ``starts`` to answer; the finished calls with their outcomes.

    The one Ray wait of every owner (runs, broadcasts, submissions), called
    with the lock released: the replies are deserialized here, in the
    owner's thread. With many refs, one scan takes every call finished by
    then, not one scan per result.
    """
    refs = [*calls, *starts]
    with pool.ray_call():
        if not refs:  # no call, no start: look again shortly
            time.sleep(min(timeout, IDLE_WAIT_S))
            return []
        ready: list[Any] = []
        if len(refs) > policy.SCAN_ALL_FROM:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        return [(calls[ref], get_outcome(ref)) for ref in ready if ref in calls]


#: Longest nap of an owner with nothing to wait for (every slot backing off).
IDLE_WAIT_S = 0.05

#: What :meth:`PoolAdapter.settle` returns for a call whose actor was lost: the
#: pool has told the call's owner (``call_lost``) already.
LOST = object()


class PoolAdapter:
    """One pool's core, Ray actors and lock; see the module docstring."""

    def __init__(self, core: PoolCore, actors: RayActors, lock: threading.RLock) -> None:
        self.core = core
        self.actors = actors
        self.lock = lock
        self.created = time.monotonic()
        self.throughput = Throughput()
        self._ray_calls_done = threading.Condition(lock)
        self._ray_calls = 0  # threads inside a blocking Ray call on our behalf

    # ----------------------------------------------------------------- views

    @property
    def actor_class(self) -> type[RayActor[Any, Any]]:
        return self.actors.actor_class

    @property
    def actor_name(self) -> str:
        return self.core.actor_name

    @property
    def max_concurrency(self) -> int:
        return self.core.max_concurrency

    @property
    def max_actors(self) -> int:
        return self.core.max_actors

    @property
    def slots(self) -> list[Slot]:
        """The slots themselves; read them under :meth:`locked`."""
        return self.core.slots

    def locked(self) -> threading.RLock:
        """The lock under which every slot and call changes."""
        return self.lock

    def runs(self) -> list[RunOwner]:
        """The runs sharing this pool now, oldest first (lock held)."""
        return list(self.core.runs)

    def queued_batches(self) -> int:
        with self.lock:
            return self.core.queued_batches()

    # ----------------------------------------------------------------- health

    def check_usable(self) -> None:
        self.core.check_usable()

    def check_alive(self) -> None:
        self.core.check_alive()

    def wait_for_ray_calls(self, timeout: float) -> bool:
        """Wait until no thread is inside a blocking Ray call for this pool.

        The manager calls it after ``shutdown()`` and before ``ray.shutdown()``:
        Ray must not be torn down under a thread waiting in ``ray.wait``.
        """
        with self._ray_calls_done:
            return self._ray_calls_done.wait_for(lambda: self._ray_calls == 0, timeout)

    @contextlib.contextmanager
    def ray_call(self) -> Iterator[None]:
        """Mark a blocking Ray call made outside the lock (see wait_for_ray_calls)."""
        with self.lock:
            self.core.check_usable()
            self._ray_calls += 1
        try:
            yield
        finally:
            with self.lock:
                self._ray_calls -= 1
                self._ray_calls_done.notify_all()

    # ----------------------------------------------------------------- the lifecycle

    def poll(self) -> None:
        """Tell the core what Ray and the clock say, without blocking (lock held):
        closes that ended, drains, spares and starts that answered, dead nodes."""
        core, actors = self.core, self.actors
        if not core.running:
            return
        actors.finish_closing(wait=False)
        now = time.monotonic()
        actors.check_drains(core, now)
        actors.poll_spares(core, now)
        core.tick(now)
        if actors.poll_starts(core, now):
            actors.check_slow_starts(core, now)

    def wait_started(self, timeout_s: float) -> None:
        """Wait for the first generation of every slot (pool creation; lock not held)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                now = time.monotonic()
                for slot in list(self.core.slots.in_state(SlotState.BACKOFF)):
                    self.core.spawn(slot, now)  # lost while starting (its node): retry at once
                if not any(True for _ in self.core.starting()):
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                with self.lock:
                    pending = list(self.core.starting())
                raise not_started_error(self.actor_name, len(self.core.slots),
                                        self.actors.options, timeout_s, pending)
            with self.lock:
                refs = {slot.ready_ref: slot for slot in self.core.starting()
                        if slot.ready_ref is not None}
            done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=min(left, 1.0))
            with self.lock:
                for ref in done:
                    self.actors.answered(self.core, refs[ref], ref, time.monotonic(),
                                         initial=True)

    def wait_spares(self, timeout_s: float) -> None:
        """Give the spares started with the pool the start timeout to be ready
        (lock not held). One that is not ready stays a spare in the making."""
        with self.lock:
            refs = [spare.ready_ref for spare in self.core.spares if spare.ready_ref is not None]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
        with self.lock:
            self.actors.poll_spares(self.core, time.monotonic())

    def grow(self) -> bool:
        """Start one more actor if below ``max_actors`` and the cluster has room (lock held)."""
        now = time.monotonic()
        if not self.core.may_grow(now):
            return False
        if not placing.has_room(placing.requested_resources(self.actors.options)):
            return False
        self.core.grow(now)
        return True

    # ----------------------------------------------------------------- calls

    def register_call(self, slot: Slot, owner: CallOwner, ref: Any, **fields: Any) -> Call:
        """Register a call just sent to ``slot`` (lock held)."""
        return self.core.register_call(slot, owner, ref, **fields)

    def finished(self, call: Call) -> None:
        """Forget a call whose outcome its owner has taken (lock held)."""
        self.core.finished(call, time.monotonic())

    def record(self, call: Call, batches: int, seconds: float) -> None:
        """Count finished batches of a call (lock held)."""
        self.core.record(call, batches, seconds)
        self.throughput.add(batches)

    def count_retry(self) -> None:
        self.core.count_retry()

    def batches_left(self, slot: Slot) -> int | None:
        return self.core.batches_left(slot)

    def fair_share(self, run: RunOwner) -> int:
        return self.core.fair_share(run)

    def add_run(self, run: RunOwner) -> None:
        with self.lock:
            self.core.add_run(run)

    def remove_run(self, run: RunOwner) -> None:
        with self.lock:
            self.core.remove_run(run, time.monotonic())

    def settle(self, call: Call, outcome: Outcome) -> tuple[Any, BaseException | None]:
        """Settle a finished call with its :func:`get_outcome` (lock held).

        ``(value, None)`` when it returned; ``(None, cause)`` when it ran but
        its reply could not reach the driver (the user's exception: it does
        not unpickle, say); ``(LOST, None)`` when its actor is gone, which the
        pool replaces, telling every owner of a call on it.
        """
        exc = outcome.error
        if exc is not None:
            if classify(exc) is FailureKind.CALL_FAILED:
                self.finished(call)
                return None, user_cause(exc)
            self.lose_after_error(call, exc)
            return LOST, None
        self.finished(call)
        return outcome.value, None

    def lose(self, slot: Slot, generation: int, loss: Loss, *, node_died: bool = False) -> None:
        """The actor of ``slot`` (that generation) is gone or must go (lock held);
        calls that finished before it went are salvaged (see ``PoolCore.lose``)."""
        if node_died and slot.generation == generation:
            self.actors.suspects.add(slot.node_id or slot.planned_node)
        self.core.lose(slot, generation, loss, time.monotonic(), salvage)

    def lose_after_error(self, call: Call, exc: BaseException) -> None:
        """``call`` failed because its actor is gone (lock held)."""
        slot = call.slot
        if classify(exc) is FailureKind.START_FAILED:
            self.core.start_failed(slot, call.generation, "its constructor raised",
                                   time.monotonic())
            return
        oom = is_out_of_memory(exc)
        preempted = (is_preempted(exc) or slot.evacuating
                     or slot.node_id in self.core.draining)
        kind = (LossKind.PREEMPTED if preempted
                else LossKind.OUT_OF_MEMORY if oom else LossKind.DIED)
        reason = (
            "its node was drained (preempted)" if preempted
            else "its worker was killed for using too much memory" if oom
            else f"its worker process died ({death_detail(exc)})"
        )
        self.lose(slot, call.generation, Loss(kind, reason, self.core.label(slot)),
                  node_died=is_node_death(exc))
