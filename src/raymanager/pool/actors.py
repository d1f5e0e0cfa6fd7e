"""The Ray side of a slot's lifecycle: the commands of the pool's core, performed on Ray.

:class:`~raymanager.engine.pool.PoolCore` decides; :class:`RayActors` does:
it creates a slot's actor (spread over the nodes, named so ``raymanager
info`` lists it), replays remembered broadcasts into it and asks it ready(),
hands a spare's actor to a slot, and closes or kills actors. It also reads
what only Ray knows and reports it to the core as events: which starts
answered (:meth:`RayActors.poll_starts`), which nodes are draining or dead.
Every method runs with the pool's lock held and never blocks, unless it says
otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raymanager.actors.base import RayActor
from raymanager.engine.pool import PoolCore, PoolState
from raymanager.engine.slots import Slot, SlotState
from raymanager.errors import first_line
from raymanager.pool import placement as placing
from raymanager.pool.host import host_class
from raymanager.pool.observe import ACTOR_NAME_PREFIX
from raymanager.pool.ray_errors import FailureKind, classify, is_node_death
from raymanager.pool.retiring import close_then_kill
from raymanager.pool.start_errors import start_error

__all__ = ["RayActors"]

logger = logging.getLogger("raymanager")

#: A replacement still starting after this long has its planned node checked.
NODE_CHECK_AFTER_S = 5.0
#: Seconds between two looks at the nodes Ray is draining.
DRAIN_CHECK_S = 1.0


class RayActors:
    """Starts, promotes, closes and kills a pool's Ray actors (the core's :class:`Actors`)."""

    def __init__(
        self,
        actor_class: type[RayActor[Any, Any]],
        actor_config: Mapping[str, Any],
        *,
        pool_id: str,
        options: Mapping[str, Any],
        placement: str,
        start_timeout_s: float,
        close_timeout_s: float,
    ) -> None:
        self.actor_class = actor_class
        self.actor_config = dict(actor_config)
        self.actor_name = actor_class.__name__
        self.pool_id = pool_id
        self.options = dict(options)
        self.placement = placement
        self.start_timeout_s = start_timeout_s
        self.close_timeout_s = close_timeout_s
        self.remote_class = ray.remote(host_class(actor_class))
        # Only actors that override close() get a close call before they go.
        self.has_close = actor_class.close is not RayActor.close
        self.closing: list[tuple[Any, Any, float]] = []  # (handle, close ref, kill at)
        self.suspects = placing.SuspectNodes()
        self.core: PoolCore | None = None  # set once the core exists (it starts actors)
        self.next_drain_check = 0.0
        self.next_node_check = 0.0

    # ----------------------------------------------------------------- the commands

    def start(self, slot: Slot) -> None:
        options = dict(self.options)
        if self.placement == "spread" and self.core is not None:
            requested = placing.requested_resources(self.options)
            others = (other.planned_node for other in self.core.slots if other is not slot)
            node = placing.spread_target(requested, others, self.suspects.current())
            slot.planned_node = node
            if node is not None:
                # Hard affinity: soft affinity was measured to leave a node
                # empty just like SPREAD. A node that dies before the actor is
                # placed fails the start, and the retry goes elsewhere.
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        self._create(slot, options, f"{slot.index}.{slot.generation}")

    def start_spare(self, spare: Slot) -> None:
        self._create(spare, dict(self.options), f"spare.{spare.generation}")

    def _create(self, slot: Slot, options: dict[str, Any], name: str) -> None:
        """Create ``slot``'s actor, replay ``slot.replays`` into it, ask it ready()."""
        # A name that lists the actor as ours (raymanager info), unique per generation.
        options["name"] = f"{ACTOR_NAME_PREFIX}{self.pool_id}/{self.actor_name}/{name}"
        slot.handle = self.remote_class.options(**options).remote(
            self.actor_class, self.actor_config)
        for method, payload_ref in slot.replays.items():
            slot.handle.replay.remote(method, payload_ref)
        slot.ready_ref = slot.handle.ready.remote()

    def promote(self, spare: Slot, slot: Slot) -> None:
        slot.handle = spare.handle
        for method, payload_ref in slot.replays.items():
            if spare.replays.get(method) is not payload_ref:  # broadcast after it started
                slot.handle.replay.remote(method, payload_ref)
        # Answers at once (the actor is up) with every replay's answer.
        slot.ready_ref = slot.handle.ready.remote()

    def close(self, slot: Slot) -> None:
        if self.has_close and slot.handle is not None and slot.pid is not None:
            close_ref = slot.handle.close.remote()
            self.closing.append((slot.handle, close_ref,
                                 time.monotonic() + self.close_timeout_s))
        else:
            self.kill(slot)

    def kill(self, slot: Slot) -> None:
        # Already dead, or Ray already shut down: nothing left to kill.
        with contextlib.suppress(Exception):
            if slot.handle is not None:
                ray.kill(slot.handle, no_restart=True)

    # ----------------------------------------------------------------- what Ray says

    def poll_starts(self, core: PoolCore, now: float, *, timeout: float = 0.0,
                    initial: bool = False) -> list[Slot]:
        """Report the starts that answered ready() to the core; the slots still starting.

        With ``timeout`` > 0 it blocks (call it without the lock held).
        ``initial``: the pool's first starts, where a constructor's error is
        raised to the user rather than retried.
        """
        starting = {slot.ready_ref: slot for slot in core.starting()
                    if slot.ready_ref is not None}
        if not starting:
            return []
        done, _ = ray.wait(list(starting), num_returns=len(starting), timeout=timeout)
        for ref in done:
            self.answered(core, starting.pop(ref), ref, now, initial=initial)
        return list(starting.values())

    def answered(self, core: PoolCore, slot: Slot, ref: Any, now: float, *,
                 initial: bool = False) -> None:
        """``slot``'s ready() answered: READY, or a failed start."""
        if slot.ready_ref is not ref or slot.state is not SlotState.STARTING:
            return  # an older generation's answer
        try:
            pid, node_id, failure, answers = ray.get(ref)
        except Exception as exc:
            if classify(exc) is not FailureKind.LOST:
                raise
            if is_node_death(exc):
                self.suspects.add(slot.planned_node)
            core.start_failed(slot, slot.generation, f"it died while starting: {first_line(exc)}",
                              now)
            return
        if failure is not None:
            if initial:
                core.state = PoolState.BROKEN
                raise start_error(self.actor_name, self.actor_config, failure)
            core.start_failed(slot, slot.generation,
                              f"its constructor raised {failure.type_name}", now,
                              failure.traceback)
            return
        core.ready(slot, pid=pid, node_id=node_id, answers=answers)

    def poll_spares(self, core: PoolCore, now: float, timeout: float = 0.0) -> None:
        """Report the spares that answered ready() (or failed to) to the core."""
        starting = {spare.ready_ref: spare for spare in core.spares
                    if spare.ready_ref is not None}
        if not starting:
            return
        done, _ = ray.wait(list(starting), num_returns=len(starting), timeout=timeout)
        for ref in done:
            spare = starting[ref]
            try:
                pid, node_id, failure, answers = ray.get(ref)
            except Exception as exc:
                if classify(exc) is not FailureKind.LOST:
                    raise
                failure = first_line(exc)
            if failure is None:
                core.spare_ready(spare, pid=pid, node_id=node_id, answers=answers)
            else:
                core.spare_failed(spare, now)

    def check_drains(self, core: PoolCore, now: float) -> None:
        """Tell the core which nodes Ray drains (once per DRAIN_CHECK_S)."""
        if now < self.next_drain_check:
            return
        self.next_drain_check = now + DRAIN_CHECK_S
        draining = placing.draining_nodes()
        for node in draining:
            self.suspects.add(node)  # place nothing new there
        core.nodes_draining(draining)

    def check_slow_starts(self, core: PoolCore, now: float) -> None:
        """Fail the starts whose planned node died, or that ran past the start timeout."""
        slow = [slot for slot in core.starting() if now - slot.spawned_at > NODE_CHECK_AFTER_S]
        if not slow or now < self.next_node_check:
            return
        self.next_node_check = now + 1.0
        alive = placing.live_node_ids()
        for slot in slow:
            if slot.planned_node is not None and slot.planned_node not in alive:
                self.suspects.add(slot.planned_node)
                core.start_failed(slot, slot.generation,
                                  f"its node {slot.planned_node[:8]} died before it started", now)
            elif now - slot.spawned_at > self.start_timeout_s:
                core.start_failed(slot, slot.generation,
                                  f"it did not start within {self.start_timeout_s:g} s", now)

    def finish_closing(self, *, wait: bool) -> None:
        """Kill the retired actors whose close() returned or ran out of time
        (all of them, after waiting, with ``wait``: call it without the lock)."""
        closing, self.closing = self.closing, []
        self.closing = close_then_kill(closing, self.actor_name, wait=wait) + self.closing
