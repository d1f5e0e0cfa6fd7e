"""Features users of other pools reach for: futures, waiting with a timeout, an error
callback, and statistics (real Ray, the session's local instance)."""

from __future__ import annotations

import collections
import concurrent.futures
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from engine_actors import AsyncIO, Closing, Misbehave, ThreadSafe

from raymanager import (
    BatchConfig,
    BatchError,
    ManagerShutdownError,
    RayManager,
)
from raymanager.pool import list_pools
from raymanager.progress import BatchProgress


def test_submit_returns_futures_that_work_with_as_completed(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {}, num_actors=2)
    futures = [pool.submit([v]) for v in range(20)]
    done = {f.result() [0] // 2 for f in concurrent.futures.as_completed(futures, timeout=60)}
    assert done == set(range(20))
    assert [f.result() for f in futures] == [[2 * v] for v in range(20)]


def test_a_submitted_item_that_raises_is_its_future_s_batch_error(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sys_exit_on": [3]}, num_actors=2)
    good, bad = pool.submit([1]), pool.submit([3])
    assert good.result(timeout=60) == [2]
    error = bad.exception(timeout=60)
    assert isinstance(error, BatchError) and isinstance(error.__cause__, SystemExit)


def test_a_submitted_item_survives_its_worker_s_death(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_on": {"5": 2.0}}, num_actors=1)
    future = pool.submit([5])
    deadline = time.monotonic() + 30
    while not future.running() and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the future's own state
    os.kill(pool.pids()[0], signal.SIGKILL)  # type: ignore[arg-type]
    assert future.result(timeout=60) == [10]
    assert pool.restarts == 1


def test_submissions_and_a_run_share_the_pool(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": 0.002}, num_actors=2)
    futures = [pool.submit([v]) for v in range(50)]
    results = manager.process_in_parallel(pool, range(200), BatchConfig(batch_size=1))
    assert results == [[2 * v] for v in range(200)]
    assert [f.result(timeout=60) for f in futures] == [[2 * v] for v in range(50)]


def test_shutdown_fails_pending_futures(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": 0.5}, num_actors=1)
    futures = [pool.submit([v]) for v in range(10)]
    pool.shutdown()
    errors = [f.exception(timeout=30) for f in futures]
    assert all(isinstance(e, ManagerShutdownError) for e in errors[1:])


def test_next_with_a_timeout_raises_and_the_run_goes_on(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_on": {"1": 2.0}}, num_actors=1)
    stream = manager.imap(pool, range(3), BatchConfig(batch_size=1))
    assert stream.next(timeout=30) == [0]
    with pytest.raises(TimeoutError):
        stream.next(timeout=0.1)  # batch 1 takes 2 s
    assert pool.restarts == 0  # nothing was killed
    assert list(stream) == [[2], [4]]


def test_on_error_callback_decides_per_batch(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sys_exit_on": [2, 5]}, num_actors=2)
    seen: list[int] = []

    def decide(error: BatchError) -> str:
        seen.append(error.index)
        return "continue" if error.index == 2 else "retry"

    config = BatchConfig(batch_size=1, on_error=decide, max_retries=2)  # type: ignore[arg-type]
    with pytest.raises(BatchError) as info:
        manager.process_in_parallel(pool, range(8), config)
    assert info.value.index == 5 and info.value.attempts == 3  # retried twice, then raised
    assert seen.count(2) == 1 and seen.count(5) == 3


def test_stats_count_batches_restarts_and_retries(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"exit_on": [7]}, num_actors=2)
    results = manager.process_in_parallel(
        pool, range(20), BatchConfig(batch_size=1, max_retries=1, on_error="continue"))
    assert isinstance(results[7], BatchError)
    stats = pool.stats()
    assert sum(a["batches"] for a in stats["actors"]) >= 19
    assert stats["restarts"] == sum(a["restarts"] for a in stats["actors"]) >= 2
    assert stats["retries"] >= 1
    assert stats["in_flight_calls"] == 0 and stats["queued_batches"] == 0
    assert stats["batches_per_s"] > 0
    assert all(0.0 <= a["busy_fraction"] <= 1.0 for a in stats["actors"])


def test_actors_are_recycled_after_max_batches_and_closed(
    manager: RayManager, tmp_path: Path
) -> None:
    pool = manager.create_actor_pool(Closing, {"marks": str(tmp_path)}, num_actors=2,
                                     max_batches_per_actor=5)
    results = manager.process_in_parallel(pool, range(40), BatchConfig(batch_size=1))
    assert [value for _, value in results] == [2 * v for v in range(40)]
    per_pid = collections.Counter(pid for pid, _ in results)
    assert max(per_pid.values()) <= 5 and len(per_pid) >= 8
    assert pool.stats()["recycled"] >= 6 and pool.restarts == 0
    last = [p for p in pool.pids() if p is not None]
    pool.shutdown()
    closed = {int(p.name.split("-")[1]) for p in tmp_path.iterdir()}
    assert set(per_pid) - set(last) <= closed  # every recycled actor was closed
    assert set(last) <= closed  # and so were the last ones, at shutdown


def wait_for(predicate: Callable[[], bool], within_s: float = 30.0) -> bool:
    """Poll the pool's own state (each look lets the pool advance) until true."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_an_elastic_pool_grows_from_zero_and_shrinks_when_idle(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": 0.01}, num_actors=(0, 2),
                                     idle_timeout_s=1.0)
    assert pool.num_actors == 0
    results = manager.process_in_parallel(pool, range(100), BatchConfig(batch_size=1))
    assert results == [[2 * v] for v in range(100)]
    assert 1 <= pool.num_actors <= 2
    assert wait_for(lambda: pool.stats()["actors"] == [])  # idle: back to zero
    assert manager.process_in_parallel(pool, [4], BatchConfig()) == [[8]]


def test_resize_during_a_run_loses_nothing(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": 0.005}, num_actors=2)
    results = []
    for i, result in enumerate(manager.imap(pool, range(300), BatchConfig(batch_size=1))):
        results.append(result)
        if i == 10:
            pool.resize(4)
        if i == 100:
            pool.resize(1)
    assert results == [[2 * v] for v in range(300)]
    assert wait_for(lambda: pool.num_actors == 1 and None not in pool.pids())
    assert pool.restarts == 0


def test_pools_are_listed_from_any_driver_of_the_cluster(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {}, num_actors=3)
    listed = [p for p in list_pools() if p["pool"] == pool.pool_id]
    assert listed and listed[0]["actor_class"] == "Misbehave" and listed[0]["actors"] == 3
    pool.shutdown()
    assert wait_for(lambda: not [p for p in list_pools() if p["pool"] == pool.pool_id])


def test_progress_shows_restarts_and_retries_as_they_happen() -> None:
    shown = BatchProgress(10, 10, health=lambda: (1, 2))
    shown.update(3, 3)
    assert shown._progress.tasks[0].fields["health"] == "restarts 1 retries 2"
    quiet = BatchProgress(10, 10, health=lambda: (0, 0))
    quiet.update(3, 3)
    assert quiet._progress.tasks[0].fields["health"] == ""


def test_async_actors_keep_several_batches_in_flight(manager: RayManager) -> None:
    pool = manager.create_actor_pool(AsyncIO, {"wait_s": 0.2}, num_actors=1, max_concurrency=4)
    results = manager.process_in_parallel(pool, range(12), BatchConfig(batch_size=1))
    assert [value for value, _ in results] == [2 * v for v in range(12)]
    assert max(seen for _, seen in results) >= 2  # batches overlapped in one actor
    stream = manager.imap(pool, range(4), BatchConfig(batch_size=1))
    assert [value for value, _ in stream] == [0, 2, 4, 6]


def test_submissions_grow_an_elastic_pool_from_zero(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {}, num_actors=(0, 2))
    futures = [pool.submit([v]) for v in range(6)]
    assert [f.result(timeout=60) for f in futures] == [[2 * v] for v in range(6)]
    assert 1 <= pool.num_actors <= 2


def test_thread_safe_actors_run_batches_side_by_side(manager: RayManager) -> None:
    pool = manager.create_actor_pool(ThreadSafe, {"wait_s": 0.2}, num_actors=1,
                                     max_concurrency=3)
    results = manager.process_in_parallel(pool, range(9), BatchConfig(batch_size=1))
    assert [value for value, _ in results] == [2 * v for v in range(9)]
    assert max(seen for _, seen in results) >= 2


def test_a_run_grows_an_elastic_pool_to_its_max(manager: RayManager) -> None:
    # A run alone may use the pool's whole size to be, not only the actors it
    # has: its fair share leaves room to grow.
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": 0.01}, num_actors=(1, 3))
    results = manager.process_in_parallel(pool, range(300), BatchConfig(batch_size=1))
    assert results == [[2 * v] for v in range(300)]
    assert pool.num_actors == 3
