"""Ctrl-C during a run keeps the pool warm (docs/failure-model.md).

The interrupt is the real one: ``_thread.interrupt_main()`` from a timer
thread raises KeyboardInterrupt in the main thread wherever it is (inside
``ray.wait`` of the run, most of the time), exactly as Ctrl-C at a terminal
does. Each run is long enough (seconds) that the interrupt always lands
inside it.
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from interrupt_actors import Slow, SlowAsync

from raymanager import BatchConfig, RayManager
from raymanager.engine import policy
from raymanager.engine.slots import Call, Slot

pytestmark = pytest.mark.slow


@contextmanager
def interrupted_after(*seconds: float) -> Iterator[None]:
    """A Ctrl-C at each of ``seconds`` into the block, which must raise it."""
    timers = [threading.Timer(after, _thread.interrupt_main) for after in seconds]
    for timer in timers:
        timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()


def test_the_grace_is_what_is_left_of_the_longest_actor_queue_twice_bounded() -> None:
    a, b = Slot(0), Slot(1)
    running = Call("r", a, 1, None, started=10.0, expected=0.2)  # 0.1 s left at 10.1
    queued = Call("q", a, 1, None, expected=0.2)                 # runs after it
    other = Call("o", b, 1, None, started=10.0, expected=0.1)
    assert policy.interrupt_grace([running, queued, other], now=10.1) == pytest.approx(0.6)
    assert policy.interrupt_grace([other], now=10.1) == policy.MIN_INTERRUPT_GRACE_S
    untimed = Call("u", b, 1, None)  # nobody knows how long it takes
    assert policy.interrupt_grace([running, untimed], now=10.1) == policy.MAX_INTERRUPT_GRACE_S
    long = Call("l", b, 1, None, started=10.0, expected=30.0)
    assert policy.interrupt_grace([long], now=10.1) == policy.MAX_INTERRUPT_GRACE_S
    assert policy.interrupt_grace([], now=0.0) == policy.MIN_INTERRUPT_GRACE_S


def test_ctrl_c_lets_short_calls_finish_and_replaces_no_actor(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Slow, {"sleep_s": 0.1}, num_actors=2)
    pids = pool.pids()
    began = time.monotonic()
    with interrupted_after(1.0):
        manager.process_in_parallel(pool, list(range(200)), BatchConfig(batch_size=1))
    # The calls in flight ended within the grace: back to the user soon after.
    assert time.monotonic() - began < 1.0 + 2.5
    assert pool.stats()["restarts"] == 0
    assert pool.pids() == pids  # the same warm actors ...
    assert manager.process_in_parallel(pool, [3, 4], BatchConfig(batch_size=1)) == [6, 8]
    assert pool.pids() == pids  # ... serve the next run
    assert pool.stats()["restarts"] == 0


def test_ctrl_c_replaces_only_the_actor_whose_call_overruns_the_grace(
        manager: RayManager) -> None:
    pool = manager.create_actor_pool(Slow, {"sleep_s": 0.1, "hang_on": [0]}, num_actors=2)
    pids = pool.pids()
    with interrupted_after(1.0):
        manager.process_in_parallel(pool, list(range(200)), BatchConfig(batch_size=1))
    assert pool.stats()["restarts"] == 1
    after = pool.pids()
    assert sum(old != new for old, new in zip(pids, after, strict=True)) == 1
    assert manager.process_in_parallel(pool, [3, 4], BatchConfig(batch_size=1)) == [6, 8]


def test_a_second_ctrl_c_during_the_grace_replaces_at_once(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Slow, {"sleep_s": 0.1, "hang_on": [0]}, num_actors=2)
    began = time.monotonic()
    # The hung call is the run's first (untimed): its grace is the longest,
    # policy.MAX_INTERRUPT_GRACE_S (2 s); the second Ctrl-C comes 0.5 s into it.
    with interrupted_after(1.0, 1.5):
        manager.process_in_parallel(pool, list(range(200)), BatchConfig(batch_size=1))
    assert time.monotonic() - began < 1.0 + 1.5
    assert pool.stats()["restarts"] == 1
    assert manager.process_in_parallel(pool, [3, 4], BatchConfig(batch_size=1)) == [6, 8]


def test_ctrl_c_cancels_an_async_actors_calls_through_ray(manager: RayManager) -> None:
    # Every call waits an hour: only a cancel can end them within the grace.
    pool = manager.create_actor_pool(SlowAsync, {"sleep_s": 0.1, "hang_on": list(range(100))},
                                     num_actors=2, max_concurrency=2)
    pids = pool.pids()
    with interrupted_after(1.0):
        manager.process_in_parallel(pool, list(range(100)), BatchConfig(batch_size=1))
    assert pool.stats()["restarts"] == 0
    assert pool.pids() == pids
    assert manager.process_in_parallel(pool, [200, 201], BatchConfig(batch_size=1)) == [400, 402]
