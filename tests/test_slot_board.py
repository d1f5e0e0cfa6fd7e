"""The indexed slot list: a run's decision picks what a scan of every slot
picks, without looking at every slot."""

from __future__ import annotations

import math
import random
from typing import Any

from raymanager.batching import make_source
from raymanager.config import BatchConfig
from raymanager.engine import policy
from raymanager.engine.run import Read, RunCore, Send
from raymanager.engine.run_io import read_input
from raymanager.engine.slot_board import SlotList
from raymanager.engine.slots import TRANSITIONS, Call, Slot, SlotEvent, SlotState


class _Owner:
    def call_done(self, call: Call, value: Any) -> None: ...

    def call_lost(self, call: Call, running: bool, alone: bool, loss: Any) -> None: ...


def _core(width: int, batches: int = 1_000, timeout_s: float | None = None) -> RunCore:
    config = BatchConfig(batch_size=1, num_parallel=width, timeout_s=timeout_s)
    return RunCore(make_source(list(range(batches)), 1), config, width=width,
                   max_concurrency=1, actor_name="T")


def _next_send(core: RunCore, slots: list[Slot], now: float) -> Any:
    """``core.next_send``, reading the input it asks for first (as the adapter does)."""
    while True:
        command = core.next_send(slots, now)
        if not isinstance(command, Read):
            return command
        core.taken(read_input(core.source, command, journal=None))


def _queue(slot: Slot, started: float | None = 0.0, expected: float | None = 0.01) -> Call:
    call = Call(None, slot, slot.generation, _Owner(), started=started, expected=expected)
    slot.calls.append(call)
    return call


def test_the_index_picks_what_a_scan_picks() -> None:
    """Random slot states and calls, changed in place as the pool changes them:
    the indexed pick is the scan's pick (fewest calls, first in order)."""
    rng = random.Random(7)
    for _ in range(60):
        n = rng.randint(1, 40)
        plain = [Slot(index=i) for i in range(n)]
        indexed = SlotList(Slot(index=i) for i in range(n))
        pairs = list(zip(plain, indexed, strict=True))
        for _ in range(rng.randint(0, 4 * n)):
            a, b = rng.choice(pairs)
            move = rng.random()
            if move < 0.3:
                # A random event its state allows (a retired slot stays so).
                events = [event for (state, event) in TRANSITIONS
                          if state is a.state and event is not SlotEvent.RETIRE]
                if events:
                    event = rng.choice(events)
                    a.move(event)
                    b.move(event)
            elif move < 0.65 and len(a.calls) < 2:
                expected = rng.choice([0.01, 0.01, None])
                _queue(a, expected=expected)
                _queue(b, expected=expected)
            elif a.calls:
                a.calls.popleft()
                b.calls.popleft()
        depth = rng.choice([1, 2])
        now = rng.choice([0.0, 1.0])
        left = {i for i in range(n) if rng.random() < 0.1}

        def batches_left(slot: Slot, left: set[int] = left) -> int | None:
            return 0 if slot.index in left else None

        for width in (n, max(1, n // 2)):
            picks = [_core(width)._free_slot(slots, depth, now, batches_left, width)
                     for slots in (plain, indexed)]
            assert (None if picks[0] is None else picks[0].index) == (
                None if picks[1] is None else picks[1].index)


class _NoScan(SlotList):
    """A slot list that may not be walked: a decision must read its index."""

    walking_allowed = True

    def __iter__(self) -> Any:
        assert self.walking_allowed, "a decision walked every slot"
        return super().__iter__()


def test_a_decision_on_10000_actors_does_not_look_at_every_slot() -> None:
    # Fails on an engine that scans the slots per decision (next_send walked
    # them all, and a round of n sends cost O(n^2)).
    slots = _NoScan(Slot(index=i, state=SlotState.READY) for i in range(10_000))
    core = _core(10_000, batches=100_000)
    slots.walking_allowed = False
    sends = 0
    while True:
        command = _next_send(core, slots, 0.0)
        if not isinstance(command, Send):
            break
        call = Call(None, command.slot, command.slot.generation, _Owner(),
                    group=command.group, started=command.started, expected=command.expected)
        command.slot.calls.append(call)
        core.sent(call)
        sends += 1
    assert sends == 10_000  # one untimed call per actor, each picked from the index
    assert core.wait_timeout(0.0, slots) == policy.POLL_SECONDS
    core.start_clocks(0.0)
    assert core.expired(0.0) == []


def test_deadlines_come_from_a_heap_and_fire_exactly() -> None:
    slots = SlotList(Slot(index=i, state=SlotState.READY) for i in range(3))
    core = _core(3, timeout_s=1.0)
    calls = []
    for began in (0.0, 0.01):  # untimed calls, inside the probes' window
        command = _next_send(core, slots, began)
        assert isinstance(command, Send)
        call = Call(None, command.slot, command.slot.generation, _Owner(),
                    group=command.group, started=command.started, expected=command.expected)
        command.slot.calls.append(call)
        core.sent(call)
        calls.append(call)
    assert core.wait_timeout(0.6, slots) == 0.4
    assert core.expired(0.99) == []
    due = core.expired(1.0)
    assert [expire.call for expire in due] == [calls[0]]


def test_a_queued_call_starts_its_clock_when_the_call_before_it_ends() -> None:
    slots = SlotList([Slot(index=0, state=SlotState.READY)])
    core = _core(1)
    core.seconds_per_batch = 0.001  # timed: a second call may queue
    first = _queue(slots[0])
    second = Call(None, slots[0], 0, _Owner(), group=make_source([1], 1).take(1),
                  expected=0.01)
    slots[0].calls.append(second)
    core.sent(second)
    core.start_clocks(1.0)
    assert second.started is None
    slots[0].calls.remove(first)
    core.start_clocks(2.0)
    assert second.started == 2.0


def test_a_wide_pools_tail_calls_last_the_drivers_turn() -> None:
    # 1,000 actors, 10 ms batches, 100 batches each left: a call shorter than
    # the driver takes to serve every actor once would leave actors waiting
    # for the driver. Not even an even share (100): the driver takes 2 s to
    # send 1,000 calls of 1 s each, so fewer, longer calls end sooner; the
    # tail's makespan (calls left x driver cost + one call) is least at
    # sqrt(remaining x driver cost / batch) batches.
    size = policy.group_size(seconds_per_batch=0.01, width=1000, remaining=100_000,
                             timeout_s=None, batch_nbytes=None, max_inflight_bytes=1 << 30,
                             largest_returned=1)
    assert size == math.ceil(math.sqrt(100_000 * policy.DRIVER_SECONDS_PER_CALL / 0.01))
    assert size > 100
    # Few actors: unchanged, half of an even share.
    assert policy.group_size(seconds_per_batch=0.01, width=2, remaining=20, timeout_s=None,
                             batch_nbytes=None, max_inflight_bytes=1 << 30,
                             largest_returned=1) == 5


def test_probes_wait_a_moment_for_the_first_batchs_time() -> None:
    # A wide pool: untimed one-batch calls go out for PROBE_SEND_SECONDS, then
    # the run waits (up to PROBE_HOLD_SECONDS) for a batch's time before it
    # sends the rest, instead of a round of probes to every actor.
    slots = SlotList(Slot(index=i, state=SlotState.READY) for i in range(100))
    core = _core(100)
    now = 0.0
    sent = 0
    while True:
        command = _next_send(core, slots, now)
        if not isinstance(command, Send):
            break
        call = Call(None, command.slot, command.slot.generation, _Owner(),
                    group=command.group, started=command.started, expected=command.expected)
        command.slot.calls.append(call)
        core.sent(call)
        sent += 1
        now += 0.001  # the driver's time per call
    assert 50 <= sent <= 51  # 50 ms of calls, then the hold
    held_until = policy.PROBE_SEND_SECONDS + policy.PROBE_HOLD_SECONDS
    assert abs(core.wait_timeout(now, slots) - (held_until - now)) < 1e-9
    assert isinstance(_next_send(core, slots, held_until), Send)  # the hold is over
