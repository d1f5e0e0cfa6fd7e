"""Starting, replacing and retiring a pool's actors (the Ray side of a slot's lifecycle).

See ``engine/slots.py`` for the lifecycle itself. Every method runs with the
pool's lock held.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raymanager.engine.slots import Loss, LossKind, Slot, SlotState
from raymanager.engine.wire import Failure
from raymanager.errors import PoolBrokenError, first_line
from raymanager.pool import placement as placing
from raymanager.pool.base import PoolState
from raymanager.pool.observe import ACTOR_NAME_PREFIX
from raymanager.pool.ray_errors import (
    FailureKind,
    classify,
    is_node_death,
)
from raymanager.pool.retiring import close_then_kill
from raymanager.pool.spares import SpareKeeper
from raymanager.pool.start_errors import not_started_error, start_error

__all__ = ["GIVE_UP_AFTER", "ActorLifecycle"]

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



class ActorLifecycle(SpareKeeper):
    """Starts, replaces and retires the actors of a pool's slots."""

    def _new_slot(self) -> Slot:
        slot = Slot(self._next_index, idle_since=time.monotonic())
        self._next_index += 1
        self._slots.append(slot)
        return slot

    def grow(self) -> bool:
        """Start one more actor if below ``max_actors`` and the cluster has room (lock held).

        Called by a run whose work waits for an actor.
        """
        if self._state is not PoolState.RUNNING or len(self._slots) >= self.max_actors:
            return False
        if any(slot.state is SlotState.STARTING for slot in self._slots):
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

    def _spawn(self, slot: Slot) -> None:
        """Start a new generation of ``slot`` (lock held). Not waited for.

        A ready spare's actor becomes that generation when there is one: no
        process starts, and a new spare starts in its place.
        """
        spare = next((candidate for candidate in self._spares if candidate.pid is not None), None)
        if spare is not None:
            self._promote(spare, slot)
            return
        options = dict(self._options)
        if self._placement == "spread":
            requested = placing.requested_resources(self._options)
            others = (other.planned_node for other in self._slots if other is not slot)
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
                pending = {slot.ready_ref: slot for slot in self._slots
                           if slot.state is SlotState.STARTING}
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
        self._poll_spares(now)
        self.start_owed_spares()
        drained = [slot for slot in self._slots
                   if slot.state is SlotState.DRAINING and not slot.calls]
        for slot in drained:
            if slot.evacuating:  # its node goes away: start its successor elsewhere
                slot.evacuating = False
                self._retire_handle(slot)
                self._spawn(slot)
            else:
                self._remove(slot)
        self._shrink_idle(now)
        starting = {slot.ready_ref: slot for slot in self._slots
                    if slot.state is SlotState.STARTING}
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
        slow = [slot for slot in self._slots if slot.state is SlotState.STARTING
                and now - slot.spawned_at > NODE_CHECK_AFTER_S]
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
            f"#{slot.index}: {slot.last_start_error.splitlines()[0]}"
            for slot in self._slots if slot.last_start_error
        )
        return PoolBrokenError(
            f"no actor of this pool of {self.actor_name} can be kept alive: every slot failed "
            f"to start {GIVE_UP_AFTER} times in a row ({last})"
        )
