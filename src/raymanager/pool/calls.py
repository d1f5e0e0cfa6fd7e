"""The calls in flight on a pool's actors, and the runs that share them.

Runs, broadcasts and submissions never replace an actor themselves: they
report a failed call here (:meth:`CallBook.lose`), which replaces the actor
once per generation and tells each owner of a call on it whether that call
was the one executing (it alone may be charged) or was only queued.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from raymanager.engine import policy
from raymanager.engine.slots import Call, CallOwner, Loss, LossKind, Slot, SlotState
from raymanager.pool.base import ActiveRun, PoolState
from raymanager.pool.lifecycle import ActorLifecycle
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

__all__ = ["LOST", "CallBook", "Outcome", "get_outcome"]

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
    outcome means is decided under the lock (:meth:`CallBook.settle`).
    """
    try:
        return Outcome(ray.get(ref))
    except Exception as exc:
        return Outcome(error=exc)


#: What :meth:`CallBook.settle` returns for a call whose actor was lost: the
#: pool has told the call's owner (``call_lost``) already.
LOST = object()


class CallBook(ActorLifecycle):
    """Registers, settles and loses calls; counts them; shares actors between runs."""

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

    def check_alive(self) -> None:
        """Raise if the pool is unusable, breaking it first when no actor can be kept alive."""
        self.check_usable()
        if not self.alive_or_hopeful():
            error = self.no_actor_error()
            self.break_pool()
            raise error

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
        self.restarts_by_kind[loss.kind.value] += 1
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

    def record(self, call: Call, batches: int, seconds: float) -> None:
        """Count finished batches of a call (lock held): stats and recycling."""
        slot = call.slot
        slot.batches += batches
        slot.busy_s += seconds
        self.batches_done += batches
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

    def add_run(self, run: ActiveRun) -> None:
        """A run starts on this pool; it shares the actors with the others."""
        with self._lock:
            self.check_usable()
            self._runs.append(run)

    def remove_run(self, run: ActiveRun) -> None:
        with self._lock:
            if run in self._runs:
                self._runs.remove(run)
                self.rows_finished += run.core.rows_done  # kept for the pool's metrics
            self.start_owed_spares()  # the pool may be idle now

    def queued_batches(self) -> int:
        """Batches the runs on this pool have waiting for an actor."""
        with self._lock:
            return sum(run.core.queued_batches() for run in self._runs)

    def runs(self) -> list[ActiveRun]:
        """The runs sharing this pool now, oldest first (lock held)."""
        return list(self._runs)

    def fair_share(self, run: ActiveRun) -> int:
        """Actors ``run`` may keep busy (see :func:`raymanager.engine.policy.fair_share`)."""
        others = sum(1 for other in self._runs if other is not run and other.core.calls)
        return policy.fair_share(len(self._slots), self.max_actors, others)
