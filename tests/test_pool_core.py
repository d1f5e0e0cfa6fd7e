"""The pool's core (``engine/pool.py``) and the slots' lifecycle table, called directly.

No Ray and no simulator: a recording :class:`Actors` plays the world, and each
test drives the core with events and a ``now`` of its own. The simulator
checks the same core over thousands of schedules (``test_engine_model.py``);
these pin single behaviours down, each with the exact commands it gives.
"""

from __future__ import annotations

from typing import Any

import pytest

from raymanager.engine.pool import BACKOFF_BASE_S, PoolCore, PoolState
from raymanager.engine.slots import (
    TRANSITIONS,
    Call,
    LifecycleError,
    Loss,
    LossKind,
    Slot,
    SlotEvent,
    SlotState,
)
from raymanager.errors import ManagerShutdownError


class Recorder:
    """The world of these tests: it records each command the core gives."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []

    def start(self, slot: Slot) -> None:
        self.log.append(("start", slot.index))

    def start_spare(self, spare: Slot) -> None:
        self.log.append(("start_spare", spare.generation))

    def promote(self, spare: Slot, slot: Slot) -> None:
        self.log.append(("promote", slot.index))

    def close(self, slot: Slot) -> None:
        self.log.append(("close", slot.index))

    def kill(self, slot: Slot) -> None:
        self.log.append(("kill", slot.index))


class Owner:
    """A call's owner: what the core told it."""

    def __init__(self) -> None:
        self.lost: list[tuple[bool, bool, LossKind]] = []

    def call_done(self, call: Call, value: Any) -> None:
        raise AssertionError("nothing is salvaged here")

    def call_lost(self, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        self.lost.append((running, alone, loss.kind))


def _pool(n: int = 2, **options: Any) -> tuple[PoolCore, Recorder]:
    world = Recorder()
    core = PoolCore(world, actor_name="T", num_actors=(n, n), **options)
    core.open(now=0.0)
    for slot in core.slots:
        core.ready(slot, pid=100 + slot.index, node_id=f"n{slot.index}", answers={})
    return core, world


def _died(slot: Slot) -> Loss:
    return Loss(LossKind.DIED, "it died", f"T#{slot.index}")


def test_an_event_the_state_does_not_allow_names_the_slot_the_state_and_the_event() -> None:
    slot = Slot(index=3)
    with pytest.raises(LifecycleError, match="slot 3 is starting: event DRAIN"):
        slot.move(SlotEvent.DRAIN)
    slot.move(SlotEvent.READY)
    with pytest.raises(LifecycleError, match="slot 3: ready -> backoff"):
        slot.state = SlotState.BACKOFF  # not through the table: refused all the same
    slot.move(SlotEvent.RETIRE)
    for event in SlotEvent:
        with pytest.raises(LifecycleError):
            slot.move(event)  # retired is final


def test_every_state_but_retired_can_retire_and_every_state_is_reachable() -> None:
    reachable = {SlotState.STARTING, SlotState.SPARE}  # where slots are born
    for (_, _), target in TRANSITIONS.items():
        reachable.add(target)
    assert reachable == set(SlotState)
    assert {state for (state, event) in TRANSITIONS if event is SlotEvent.RETIRE} == (
        set(SlotState) - {SlotState.RETIRED})


def test_a_lost_actor_is_killed_then_started_again_and_its_calls_owners_told_once() -> None:
    core, world = _pool(1)
    slot = core.slots[0]
    owner = Owner()
    first = core.register_call(slot, owner, "a")
    core.register_call(slot, owner, "b")
    world.log.clear()
    core.lose(slot, first.generation, _died(slot), now=1.0)
    core.lose(slot, first.generation, _died(slot), now=1.0)  # the same death, seen again
    assert world.log == [("kill", 0), ("start", 0)]
    assert owner.lost == [(True, False, LossKind.DIED), (False, False, LossKind.DIED)]
    assert (slot.state, slot.generation, core.restarts) == (SlotState.STARTING, 2, 1)


def test_a_failed_start_backs_off_doubling_and_starts_again_when_its_time_comes() -> None:
    core, _world = _pool(1)
    slot = core.slots[0]
    core.lose(slot, slot.generation, _died(slot), now=0.0)
    core.start_failed(slot, slot.generation, "no", now=10.0)
    assert (slot.state, slot.retry_at) == (SlotState.BACKOFF, 10.0 + BACKOFF_BASE_S)
    core.tick(10.0 + BACKOFF_BASE_S / 2)
    assert slot.state is SlotState.BACKOFF
    core.tick(10.0 + BACKOFF_BASE_S)
    assert slot.state is SlotState.STARTING
    core.start_failed(slot, slot.generation, "no", now=20.0)
    assert slot.retry_at == 20.0 + 2 * BACKOFF_BASE_S
    core.start_failed(slot, slot.generation - 1, "old news", now=30.0)  # ignored
    assert slot.start_failures == 2


def test_an_actor_sent_its_max_is_recycled_once_idle_whoever_got_its_results() -> None:
    core, world = _pool(1, max_batches_per_actor=3)
    slot = core.slots[0]
    call = core.register_call(slot, Owner(), "a")
    slot.sent_to_generation = 3  # what a run's core counts as it sends
    world.log.clear()
    core.finished(call, now=5.0)  # nothing recorded: its run had stopped
    assert world.log == [("close", 0), ("start", 0)]
    assert (core.recycled, slot.generation) == (1, 2)


def test_a_warm_spare_takes_a_lost_actors_place_and_is_started_again_once_idle() -> None:
    core, world = _pool(2, spare_actors=1)
    spare = core.spares[0]
    core.spare_ready(spare, pid=7, node_id="s", answers={})
    slot, other = core.slots
    call = core.register_call(slot, Owner(), "a")
    busy = core.register_call(other, Owner(), "b")
    world.log.clear()
    core.lose(slot, call.generation, _died(slot), now=1.0)
    assert world.log == [("kill", 0), ("promote", 0)]
    assert core.spares == [] and core.promoted == 1
    core.tick(2.0)
    assert world.log[-1] == ("promote", 0)  # a call in flight: its successor waits
    core.finished(busy, now=3.0)
    core.tick(3.0)  # no run, no call: the owed spare starts
    assert world.log[-1] == ("start_spare", 2)


def test_a_pool_whose_only_actor_drains_while_busy_is_alive_and_moves_it() -> None:
    core, world = _pool(1)
    slot = core.slots[0]
    call = core.register_call(slot, Owner(), "a")
    core.nodes_draining({"n0"})
    assert slot.state is SlotState.DRAINING and slot.evacuating
    core.check_alive()  # was PoolBrokenError before the core counted draining actors
    world.log.clear()
    core.finished(call, now=1.0)
    core.tick(1.0)
    assert world.log == [("close", 0), ("start", 0)]
    assert slot.state is SlotState.STARTING


def test_shrinking_drains_the_busy_and_retires_the_idle_and_shutdown_retires_all() -> None:
    core, world = _pool(3)
    idle, busy, kept = core.slots
    for slot in (busy, kept):
        core.register_call(slot, Owner(), "a")
    world.log.clear()
    core.resize(1, 1, now=1.0)
    assert world.log == [("close", 0)]  # the idle one goes at once, the busy one drains
    assert [slot.index for slot in core.slots] == [1, 2]
    assert (idle.state, busy.state, kept.state) == (SlotState.RETIRED, SlotState.DRAINING,
                                                    SlotState.READY)
    assert core.shutdown() and not core.shutdown()
    assert core.state is PoolState.SHUT_DOWN
    assert {slot.state for slot in (busy, kept)} == {SlotState.RETIRED}
    with pytest.raises(ManagerShutdownError):
        core.check_usable()


def test_a_call_is_never_registered_on_a_slot_that_is_not_ready_or_starting() -> None:
    core, _ = _pool(1)
    slot = core.slots[0]
    core.register_call(slot, Owner(), "a")
    slot.move(SlotEvent.DRAIN)
    with pytest.raises(AssertionError, match="while draining"):
        core.register_call(slot, Owner(), "b")
