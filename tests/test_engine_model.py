"""The engine's promises over thousands of simulated schedules (no Ray).

Hypothesis draws a schedule: how many batches and actors, how long each batch
takes, which batches raise, kill their worker or hang (and for how many
tries), random SIGKILLs, ``on_error``, ``max_retries``, ``timeout_s``,
``max_concurrency``, ``num_parallel``, ordered or not, lists, iterators or
generators, a consumer that may stop early, a second run sharing the actors
(the consumer pulls from both in a random interleaving), and elastic pools. The simulator
(:mod:`raymanager.engine.simulator`) drives the real :class:`RunCore` through
it and checks progress, exactly-once delivery, order, blame and bounds at every
step; any broken promise is shrunk to a small counter-example (by hypothesis,
or by ``engine_schedules.shrink`` for the seeded loop).

CI runs ``RAYMANAGER_SCHEDULES`` seeded schedules (10,000 by default) plus
``RAYMANAGER_HYPOTHESIS_SCHEDULES`` drawn by hypothesis (1,500), each test
counting the schedules it really ran. The big run::

    nice -n 10 python benchmarks/engine_model_run.py --schedules 1000000
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from engine_schedules import (  # noqa: F401 (quiet_engine: autouse)
    DURATIONS,
    fails,
    quiet_engine,
    retry_then_raise,
    run_schedule,
    schedules,
    seeded_schedule,
    shrink,
)
from hypothesis import HealthCheck, given, settings

from raymanager import WorkerDiedError
from raymanager.batching import make_source
from raymanager.config import BatchConfig
from raymanager.engine.run import Read, RunCore, Send
from raymanager.engine.run_io import read_input
from raymanager.engine.simulator import Violation, simulate
from raymanager.engine.slots import Call, Loss, LossKind, Slot, SlotState
from raymanager.engine.wire import Report

#: Schedules of the seeded loop (plain ``random``, about 1.5 ms of CPU each).
SCHEDULES = int(os.environ.get("RAYMANAGER_SCHEDULES", "10000"))
#: Schedules hypothesis draws besides (about 5 ms each: it also explores the
#: ranges' edges and shrinks what it finds by itself).
HYPOTHESIS_SCHEDULES = int(os.environ.get("RAYMANAGER_HYPOTHESIS_SCHEDULES", "1500"))
#: The seeded loop's stream: CI runs schedules 0..SCHEDULES-1 of it; the big
#: run (benchmarks/engine_model_run.py) runs another stream.
CI_SEED = "ci"



def test_every_hypothesis_schedule_keeps_the_engine_promises() -> None:
    ran = 0

    @settings(max_examples=HYPOTHESIS_SCHEDULES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(schedules())
    def check(schedule: dict[str, Any]) -> None:
        nonlocal ran
        ran += 1
        run_schedule(schedule)

    check()
    # Counted, not inferred from the setting: hypothesis may stop early.
    print(f"hypothesis: {ran} schedules")
    assert ran >= HYPOTHESIS_SCHEDULES


def test_every_seeded_schedule_keeps_the_engine_promises() -> None:
    ran = 0
    began = time.process_time()
    for index in range(SCHEDULES):
        schedule = seeded_schedule(CI_SEED, index)
        error = fails(schedule)
        if error is not None:
            small, text = shrink(schedule)
            pytest.fail(f"schedule {index} of seed {CI_SEED!r}: {text}\n"
                        f"  shrunk: {small}\n  drawn: {schedule}")
        ran += 1
    seconds = time.process_time() - began
    print(f"seeded: {ran} schedules, {1000 * seconds / max(1, ran):.2f} ms CPU each")
    assert ran == SCHEDULES


# ----------------------------------------------------------------- shrunk counter-examples


def test_unordered_run_of_many_timed_batches_ends() -> None:
    """The engine v2 hang, as the simulator finds it: an unordered run of 200
    timed one-row batches stopped reading after 64 and waited forever."""
    out = simulate(num_batches=200, num_actors=2, ordered=False,
                   batch_seconds=lambda i: 0.002)
    assert sorted(out.results) == list(range(200))


def test_a_batch_that_kills_every_worker_is_the_only_one_charged() -> None:
    out = simulate(num_batches=40, num_actors=2, kill_at={13: 99}, on_error="continue",
                   max_retries=2)
    assert isinstance(out.results[13], Exception)
    assert out.results[13].attempts == 3  # type: ignore[attr-defined]
    assert all(out.results[i] == i for i in range(40) if i != 13)


def test_a_hang_is_found_by_its_timeout_and_retried() -> None:
    out = simulate(num_batches=30, num_actors=2, hang_at={7: 1}, timeout_s=0.5)
    assert out.results == {i: i for i in range(30)}
    assert out.restarts == 1


def test_tries_used_by_retried_raises_and_by_a_loss_add_up() -> None:
    """Found by the big run (a shrunk counter-example of the simulator's own
    blame check): two raises retried by the callback and one SIGKILL use the
    batch's three tries between them."""
    out = simulate(num_batches=2, num_actors=2, num_parallel=1, raise_at={0: 2},
                   external_kills=1, on_error=retry_then_raise, max_retries=2,
                   batch_seconds=DURATIONS["long"], start_delay=0.0, ordered=False)
    assert isinstance(out.raised, WorkerDiedError)
    assert (out.raised.index, out.raised.attempts) == (0, 3)


def test_a_batch_running_beside_a_hung_one_is_not_charged() -> None:
    """With max_concurrency=2 an actor runs two calls at once; when one hangs
    past timeout_s the actor is replaced, and only the hung batch is charged
    (engine v2 charged the batch beside it too)."""
    out = simulate(num_batches=6, num_actors=1, max_concurrency=2, hang_at={2: 1},
                   timeout_s=0.5, max_retries=0, on_error="continue",
                   batch_seconds=lambda i: 0.3)
    assert isinstance(out.results[2], Exception)
    assert all(out.results[i] == i for i in range(6) if i != 2)


def test_a_stopped_run_leaves_the_shared_actors_to_the_other() -> None:
    """Found by the simulator with two runs: the first stops after one result
    while its calls still fill the one actor; the other must get the actor
    once those calls end (the adapter waits for them, then frees the slot)."""
    out = simulate(num_batches=5, num_actors=1, max_concurrency=2, ordered=False,
                   stop_after=1, runs=2, start_delay=0.0, batch_seconds=lambda i: 1e-5)
    assert len(out.results) >= 1 and len(out.others[0].results) >= 1


def test_a_hung_call_of_a_suspended_run_times_out_for_the_other() -> None:
    """Each waiting run keeps every run's clocks: a hang in one run's call is
    found by its timeout even while only the other run is being pulled."""
    out = simulate(num_batches=20, num_actors=1, hang_at={3: 1}, timeout_s=0.5, runs=2,
                   ordered=False)
    assert out.results == {i: i for i in range(20)}
    assert out.others[0].results == {i: i for i in range(20)}


def test_a_hang_on_an_actor_drained_by_a_resize_times_out() -> None:
    """Found by the simulator once its schedules resized the pool (engine v4,
    shrunk): a resize drains busy actors; a call queued on one that reaches the
    head and hangs never had its clock started (only ready actors' were), so
    the run waited for it for ever."""
    out = run_schedule({
        "num_batches": 19, "num_actors": 4, "num_parallel": 4, "seed": 49587,
        "source": "list", "durations": "uneven", "raise_at": {}, "kill_at": {},
        "hang_at": {13: 1}, "external_kills": 0, "drains": 0, "spares": 2,
        "max_batches_per_actor": None, "on_error": "raise", "max_retries": 0,
        "timeout_s": 0.05, "max_concurrency": 1, "ordered": True, "stop_after": None,
        "start_delay": 0.0, "runs": 1, "max_actors": 4, "failed_starts": 0, "resizes": 1,
        "interrupt": False}, max_steps=2_000)
    assert out.results == {i: i for i in range(19)}  # it hung in a group: re-run, uncharged


def test_an_expiry_of_a_call_lost_in_the_same_turn_is_no_news() -> None:
    """Found by the big run (engine v4), a false alarm of the simulator's own
    timeout check: two overdue calls on one draining actor expire in one turn;
    the first's loss retires the slot (a resize drained it) and loses the other
    call too; the second expiry is then stale, which the pool ignores. The
    simulator judged it as a kill of an actor for a call that had not begun."""
    out = run_schedule({
        "num_batches": 107, "num_actors": 4, "num_parallel": 2, "seed": 34133,
        "source": "list", "durations": "long", "raise_at": {},
        "kill_at": {34: 5, 16: 2, 26: 1}, "hang_at": {}, "external_kills": 1, "drains": 0,
        "spares": 1, "max_batches_per_actor": None, "on_error": "continue", "max_retries": 3,
        "timeout_s": 0.05, "max_concurrency": 2, "ordered": False, "stop_after": None,
        "start_delay": 0.0, "runs": 2, "max_actors": 4, "failed_starts": 0, "resizes": 2,
        "interrupt": False})
    assert sorted(out.results) == list(range(107))


def test_a_pool_whose_only_actor_s_node_drains_is_not_broken() -> None:
    """Found once the simulator hosted the one loop (which checks the pool's
    health every turn): a one-actor pool whose node was drained while its call
    hung was reported broken; a draining actor now counts as alive."""
    out = simulate(num_batches=1, num_actors=1, hang_at={0: 1}, timeout_s=0.5, drains=1,
                   start_delay=0.0, on_error="continue", max_retries=0, seed=0)
    assert list(out.results) == [0]


def test_a_run_grows_an_elastic_pool_to_its_max() -> None:
    """Found by a real-Ray cluster test, now in the simulator: a run alone
    grows an elastic pool (its fair share counts the pool's size to be)."""
    out = simulate(num_batches=300, num_actors=1, max_actors=3,
                   batch_seconds=lambda i: 0.01)
    assert out.results == {i: i for i in range(300)}
    assert out.actors == 3


def test_a_wide_pool_s_tail_queues_ahead_and_keeps_every_promise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """64 actors on 40 ms batches: near the end the tail rule queues a call
    behind a running one (a depth the far-from-tail rule would not give), and
    a kill, a raise and a hang among the last batches are still charged to
    their own batch only, each result delivered once, in order."""
    from raymanager.engine import policy

    tail_depths: list[int] = []
    decide = policy.queue_depth

    def spy(**kwargs: Any) -> int:
        depth = decide(**kwargs)
        remaining, width, size = kwargs["remaining"], kwargs["width"], kwargs["size"]
        if remaining is not None and remaining < policy.QUEUE_AHEAD_CALLS_LEFT * width * size:
            tail_depths.append(depth)
        return depth

    monkeypatch.setattr(policy, "queue_depth", spy)
    out = simulate(num_batches=3000, num_actors=64, batch_seconds=lambda i: 0.04,
                   kill_at={2950: 1}, raise_at={2970: 1}, hang_at={2990: 1},
                   timeout_s=2.0, on_error="continue", max_retries=2)
    assert 2 in tail_depths
    assert out.order == list(range(3000))
    assert all(out.results[i] == i for i in range(3000) if i != 2970)
    assert isinstance(out.results[2970], Exception)


def test_a_group_retried_whole_fits_the_actor_s_batches_left() -> None:
    """Found by the simulator once it recycled actors (shrunk by hand to the
    engine alone): a group re-queued whole, because its actor's node was
    drained, was sent whole to an actor with room for fewer batches, past
    ``max_batches_per_actor``."""
    core = RunCore(make_source(list(range(40)), 1), BatchConfig(batch_size=1, num_parallel=1),
                   width=1, max_concurrency=1, actor_name="T")
    slot = Slot(index=0, state=SlotState.READY)

    source = core.source

    def send(now: float, room: int | None = None) -> Call:
        command = core.next_send([slot], now, lambda s: room)
        while isinstance(command, Read):  # the adapter reads the input, outside the core
            core.taken(read_input(source, command, journal=None))
            command = core.next_send([slot], now, lambda s: room)
        assert isinstance(command, Send)
        call = Call(None, slot, slot.generation, None, group=command.group,  # type: ignore[arg-type]
                    started=command.started, expected=command.expected)
        core.sent(call)
        return call

    first = send(0.0)
    core.returned(first, Report([0], 0.001))  # a timed batch: the next call carries a group
    group = send(0.001)
    assert group.group is not None and group.group.count > 3
    core.lost(group, True, True, Loss(LossKind.PREEMPTED, "drained", "T#0"))
    retried = send(0.002, room=3)
    assert retried.group is not None and retried.group.count <= 3


def test_a_drained_and_killed_run_never_sends_an_actor_past_its_max_batches() -> None:
    """The simulator's own counter-example for the test above (schedule 658 of
    a check run, shrunk): hangs, SIGKILLs and a drain re-queue groups whole,
    and with ``max_batches_per_actor=4`` an actor was sent 1 + 4 batches."""
    run_schedule({
        "num_batches": 24, "num_actors": 3, "num_parallel": 2, "seed": 48504,
        "source": "generator", "durations": "instant", "raise_at": {}, "kill_at": {},
        "hang_at": {3: 4, 20: 1}, "external_kills": 3, "drains": 1, "spares": 0,
        "max_batches_per_actor": 4, "on_error": "raise", "max_retries": 1, "timeout_s": 2.0,
        "max_concurrency": 1, "ordered": False, "stop_after": None, "start_delay": 0.0,
        "runs": 1, "max_actors": 3})


def test_the_read_ahead_before_the_first_result_is_small() -> None:
    # Calls grow from one batch by doubling: a slow generator is not read far
    # ahead of its first result.
    out = simulate(num_batches=100_000, num_actors=2, source="generator",
                   batch_seconds=lambda i: 1e-6, stop_after=1)
    assert out.calls <= 8


def test_the_simulator_catches_a_broken_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks can fail: an engine that drops a result is caught."""
    from raymanager.engine.run import RunCore

    original = RunCore._done

    def drop_batch_5(self: RunCore, index: int, value: Any, **kw: Any) -> None:
        if index != 5:
            original(self, index, value, **kw)

    monkeypatch.setattr(RunCore, "_done", drop_batch_5)
    with pytest.raises((Violation, RuntimeError)):
        simulate(num_batches=20, num_actors=2)
