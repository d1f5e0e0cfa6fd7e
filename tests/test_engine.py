"""The engine's promises where two things happen at once, and per-batch accounting.

Each test pins one defect found by porting peer pools' test suites and known
failure modes to raymanager (see docs/failure-model.md).
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import ray
from engine_actors import FalsyConstructor, FlakyStart, Misbehave, RowsSeen, Unpickles
from procs import still_running

from raymanager import (
    ActorPool,
    ActorStartError,
    BatchConfig,
    BatchError,
    BatchTimeoutError,
    BroadcastError,
    ManagerShutdownError,
    PoolBrokenError,
    RayManager,
    RayManagerError,
    WorkerDiedError,
)

TESTS = Path(__file__).parent


def doubled(values: range | list[int]) -> list[list[int]]:
    return [[2 * v] for v in values]


alive = still_running


# ----------------------------------------------------------------- shutdown during a run


def test_pool_shutdown_from_another_thread_ends_the_run(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": 0.01}, num_actors=2)
    pids = pool.pids()
    started = threading.Event()
    outcome: list[BaseException] = []

    def consume() -> None:
        try:
            for i, _ in enumerate(manager.imap(pool, range(5000), BatchConfig(batch_size=1))):
                if i == 5:
                    started.set()
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=consume)
    worker.start()
    assert started.wait(60)
    pool.shutdown()
    worker.join(10)
    assert not worker.is_alive(), "the run did not end after shutdown"
    assert len(outcome) == 1 and isinstance(outcome[0], ManagerShutdownError)
    assert pool.restarts == 0  # no replacement started for a pool that shut down
    assert not alive(pids)


def test_manager_shutdown_between_two_next_calls(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {}, num_actors=2)
    pids = pool.pids()
    stream = manager.imap(pool, range(100), BatchConfig(batch_size=1))
    assert next(stream) == [0]
    manager.shutdown()
    with pytest.raises(ManagerShutdownError):
        next(stream)
    assert pool.restarts == 0
    assert not alive(pids)


OWNING_MANAGER_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    sys.path.insert(0, {tests!r})
    from engine_actors import Misbehave
    from raymanager import BatchConfig, ManagerShutdownError, RayConfig, RayManager

    # 1. the owning manager shuts down (and stops Ray) between two next() calls
    manager = RayManager(RayConfig(num_cpus=2))
    pool = manager.create_actor_pool(Misbehave, {{}}, num_actors=2)
    stream = manager.imap(pool, range(100), BatchConfig(batch_size=1))
    next(stream)
    manager.shutdown()
    try:
        next(stream)
    except ManagerShutdownError:
        print("between: ManagerShutdownError")
    del stream

    # 2. it shuts down from another thread while a run waits on Ray
    manager = RayManager(RayConfig(num_cpus=2))
    pool = manager.create_actor_pool(Misbehave, {{"sleep_s": 0.01}}, num_actors=2)
    started, seen = threading.Event(), []
    def consume():
        try:
            for i, _ in enumerate(manager.imap(pool, range(10000), BatchConfig(batch_size=1))):
                if i == 3:
                    started.set()
        except BaseException as exc:
            seen.append(type(exc).__name__)
    worker = threading.Thread(target=consume)
    worker.start()
    started.wait(60)
    manager.shutdown()
    worker.join(20)
    print("thread:", seen, "alive" if worker.is_alive() else "ended")
    """
)


@pytest.mark.slow
def test_owning_manager_shutdown_during_a_run(tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(OWNING_MANAGER_SCRIPT.format(tests=str(TESTS)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "between: ManagerShutdownError" in done.stdout
    assert "thread: ['ManagerShutdownError'] ended" in done.stdout


# ----------------------------------------------------------------- broadcast during a run


def test_broadcast_while_imap_is_suspended_after_a_death(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {}, num_actors=2)
    results = []
    answers = None
    for i, result in enumerate(manager.imap(pool, range(200), BatchConfig(batch_size=1))):
        results.append(result)
        if i == 10:
            os.kill(pool.pids()[0], signal.SIGKILL)  # type: ignore[arg-type]
            answers = pool.broadcast("echo", ("hello",))
    assert results == doubled(range(200))
    assert answers == ["hello", "hello"]
    assert pool.restarts == 1  # one death, one replacement: the run did not replace it again


def test_broadcast_from_another_thread_during_a_run(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": 0.002}, num_actors=2)
    answers: list[object] = []
    started = threading.Event()

    def broadcast_when_started() -> None:
        started.wait(60)
        for _ in range(5):
            answers.append(pool.broadcast("echo", (7,)))

    helper = threading.Thread(target=broadcast_when_started)
    helper.start()
    results = []
    for i, result in enumerate(manager.imap(pool, range(600), BatchConfig(batch_size=1))):
        results.append(result)
        if i == 3:
            started.set()
    helper.join(60)
    assert results == doubled(range(600))
    assert answers == [[7, 7]] * 5


def test_broadcast_error_is_ours_with_the_cause(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {}, num_actors=2)
    with pytest.raises(BroadcastError, match="'fail' raised ValueError") as info:
        pool.broadcast("fail")
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.method == "fail"
    assert manager.process_in_parallel(pool, [1, 2], BatchConfig(batch_size=1)) == [[2], [4]]


# ----------------------------------------------------------------- per-batch accounting


def test_a_death_is_charged_to_its_batch_alone(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"exit_on": [50]}, num_actors=2)
    config = BatchConfig(batch_size=1, max_retries=0, on_error="continue")
    results = manager.process_in_parallel(pool, list(range(60)), config)
    failed = [i for i, r in enumerate(results) if isinstance(r, BatchError)]
    assert failed == [50]
    assert isinstance(results[50], WorkerDiedError) and results[50].index == 50
    assert [r for i, r in enumerate(results) if i != 50] == doubled(
        [v for v in range(60) if v != 50]
    )
    with pytest.raises(WorkerDiedError) as info:
        manager.process_in_parallel(pool, list(range(60)), BatchConfig(batch_size=1,
                                                                        max_retries=0))
    assert info.value.index == 50


def test_innocent_batches_are_not_charged_a_retry(
    manager: RayManager, caplog: pytest.LogCaptureFixture
) -> None:
    pool = manager.create_actor_pool(Misbehave, {"exit_on": [50]}, num_actors=2)
    with caplog.at_level(logging.WARNING, logger="raymanager"), pytest.raises(
        WorkerDiedError
    ) as info:
        manager.process_in_parallel(pool, list(range(60)), BatchConfig(batch_size=1,
                                                                        max_retries=2))
    assert info.value.index == 50 and info.value.attempts == 3
    retried = {line.split("retrying batch ")[1].split()[0]
               for line in caplog.text.splitlines() if "retrying batch " in line}
    assert retried == {"50"}


def test_timeout_is_per_batch_and_names_the_batch(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"hang_on": [50]}, num_actors=2)
    config = BatchConfig(batch_size=1, timeout_s=1.0, max_retries=0, on_error="continue")
    results = manager.process_in_parallel(pool, list(range(60)), config)
    failed = [i for i, r in enumerate(results) if isinstance(r, BatchError)]
    assert failed == [50]
    assert isinstance(results[50], BatchTimeoutError)
    assert isinstance(results[50], TimeoutError)  # as with concurrent.futures
    with pytest.raises(TimeoutError):
        manager.process_in_parallel(pool, list(range(60)), BatchConfig(
            batch_size=1, timeout_s=1.0, max_retries=0))


def test_an_unpicklable_result_fails_its_batch_alone(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"unpicklable_on": [1500]}, num_actors=2)
    data = list(range(2000))
    results = manager.process_in_parallel(
        pool, data, BatchConfig(batch_size=1, on_error="continue")
    )
    failed = [i for i, r in enumerate(results) if isinstance(r, BatchError)]
    assert failed == [1500]
    assert "lock" in repr(results[1500].__cause__).lower()
    assert [r for i, r in enumerate(results) if i != 1500] == doubled(
        [v for v in data if v != 1500]
    )
    with pytest.raises(BatchError) as info:
        manager.process_in_parallel(pool, data, BatchConfig(batch_size=1))
    assert info.value.index == 1500


def test_a_result_that_does_not_unpickle_is_a_batch_error(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Unpickles, {"bad": 7}, num_actors=2)
    results = manager.process_in_parallel(
        pool, list(range(20)), BatchConfig(batch_size=1, on_error="continue")
    )
    assert [i for i, r in enumerate(results) if isinstance(r, RayManagerError)] == [7]
    assert results[:7] == list(range(7))


def test_keyboard_interrupt_and_sys_exit_in_a_batch_are_that_batch_s_error(
    manager: RayManager,
) -> None:
    pool = manager.create_actor_pool(
        Misbehave, {"interrupt_on": [4], "sys_exit_on": [7]}, num_actors=2
    )
    results = manager.process_in_parallel(
        pool, list(range(10)), BatchConfig(batch_size=1, on_error="continue")
    )
    assert [i for i, r in enumerate(results) if isinstance(r, BatchError)] == [4, 7]
    assert isinstance(results[4].__cause__, KeyboardInterrupt)
    assert isinstance(results[7].__cause__, SystemExit) and results[7].__cause__.code == 3
    assert results[7].attempts == 1 and pool.restarts == 0  # the user's decision: no retry


def test_ray_ending_the_worker_inside_a_batch_is_a_death_not_that_batch_s_error(
    manager: RayManager, tmp_path: Path
) -> None:
    # A drained node's raylet SIGTERMs its workers; Ray's handler raises
    # SystemExit inside whatever batch is running. Unlike a user's sys.exit(),
    # that batch did nothing wrong: it must run again on a replacement.
    pool = manager.create_actor_pool(
        Misbehave, {"sigterm_once_on": [5], "sigterm_marker": str(tmp_path / "sent")},
        num_actors=2,
    )
    results = manager.process_in_parallel(pool, list(range(10)), BatchConfig(batch_size=1))
    assert (tmp_path / "sent").exists()
    assert results == [[2 * i] for i in range(10)]
    assert pool.restarts == 1


def test_ray_s_exits_are_raised_again_by_the_host_and_a_user_s_are_kept() -> None:
    from raymanager.pool.host import capture

    ray_exit = SystemExit(1)
    ray_exit.ray_terminate_msg = "The process receives a SIGTERM."  # type: ignore[attr-defined]
    for exc in (ray_exit, ray.exceptions.AsyncioActorExit()):
        with pytest.raises(type(exc)):
            capture(exc)
    assert capture(SystemExit(3)).type_name == "SystemExit"


# ----------------------------------------------------------------- delivery


def test_ordered_imap_raises_at_the_failing_position(manager: RayManager) -> None:
    pool = manager.create_actor_pool(
        Misbehave, {"sleep_on": {"0": 1.0}, "sys_exit_on": [1]}, num_actors=2
    )
    stream = manager.imap(pool, range(4), BatchConfig(batch_size=1))
    assert next(stream) == [0]  # batch 0 is slower than batch 1's failure
    with pytest.raises(BatchError) as info:
        next(stream)
    assert info.value.index == 1


def test_a_slow_batch_does_not_hold_up_fast_ones(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_on": {"0": 3.0}}, num_actors=2)
    order = [i for i, _ in manager.imap_unordered(pool, range(40), BatchConfig(batch_size=1))]
    assert sorted(order) == list(range(40))
    assert order[-1] == 0  # nothing was queued behind the slow batch


def _most_calls_in_flight(manager: RayManager, pool: ActorPool, data: Any) -> tuple[int, list[Any]]:
    """Iterate an ordered run and read the pool between two next() calls."""
    most, results = 0, []
    for result in manager.imap(pool, data, BatchConfig(batch_size=1)):
        results.append(result)
        most = max(most, pool.stats()["in_flight_calls"])
    return most, results


def test_long_batches_queue_a_second_call_only_far_from_the_tail(manager: RayManager) -> None:
    # 40 ms batches, longer than QUEUE_AHEAD_MAX_BATCH_S: with a known length,
    # a second call waits on each actor while plenty is left (it hides the
    # driver's reaction time); a stream of unknown length never queues one.
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": 0.04}, num_actors=2)
    most, results = _most_calls_in_flight(manager, pool, list(range(60)))
    assert results == [[2 * i] for i in range(60)]
    assert most == 4
    most, results = _most_calls_in_flight(manager, pool, iter(range(60)))
    assert results == [[2 * i] for i in range(60)]
    assert most <= 2


def test_results_are_not_kept_once_handed_over(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"big_result": True}, num_actors=2)
    for result in manager.imap(pool, range(6), BatchConfig(batch_size=1)):
        ref = weakref.ref(result)
        del result
        gc.collect()
        assert ref() is None
    for pair in manager.imap_unordered(pool, range(6), BatchConfig(batch_size=1)):
        ref = weakref.ref(pair[1])
        del pair
        gc.collect()
        assert ref() is None


def test_imap_checks_its_arguments_when_called(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {}, num_actors=1)
    with pytest.raises(TypeError):
        manager.imap(pool, range(4), batch_config="big")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        manager.imap_unordered(pool, "text")
    first = manager.imap(pool, range(4), BatchConfig(batch_size=1))
    assert manager.process_in_parallel(pool, [3], BatchConfig()) == [[6]]  # shared
    first.close()
    pool.shutdown()
    with pytest.raises(ManagerShutdownError):
        manager.imap(pool, np.zeros((100_000, 8)))  # refused before the array is put


# ----------------------------------------------------------------- starts


def test_start_error_cause_is_the_constructor_exception_even_if_falsy(
    manager: RayManager,
) -> None:
    with pytest.raises(ActorStartError) as info:
        manager.create_actor_pool(FalsyConstructor, {}, num_actors=1)
    assert type(info.value.__cause__).__name__ == "Falsy"


def test_a_replacement_that_fails_to_start_once_is_retried(
    manager: RayManager, tmp_path: Path
) -> None:
    armed = tmp_path / "armed"
    pool = manager.create_actor_pool(
        FlakyStart, {"armed": str(armed), "once": True, "sleep_s": 0.01}, num_actors=2
    )
    results = []
    for i, result in enumerate(manager.imap(pool, range(300), BatchConfig(batch_size=1))):
        results.append(result)
        if i == 5:
            armed.touch()
            os.kill(pool.pids()[0], signal.SIGKILL)  # type: ignore[arg-type]
    assert results == doubled(range(300))
    # The run may end on the surviving actor before the replacement's process
    # is even up (a loaded machine): wait, bounded, for both slots to run.
    deadline = time.monotonic() + 60
    while None in pool.pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert None not in pool.pids()
    assert not armed.exists()  # one replacement start failed, and was retried
    assert manager.process_in_parallel(pool, [1], BatchConfig()) == [[2]]


@pytest.mark.slow
def test_a_pool_whose_replacements_never_start_fails_clearly(
    manager: RayManager, tmp_path: Path
) -> None:
    armed = tmp_path / "armed"
    pool = manager.create_actor_pool(
        FlakyStart, {"armed": str(armed), "sleep_s": 0.01}, num_actors=1
    )
    armed.touch()
    with pytest.raises(PoolBrokenError, match="no actor of this pool"):
        for i, _ in enumerate(manager.imap(pool, range(10_000), BatchConfig(batch_size=1))):
            if i == 2:
                os.kill(pool.pids()[0], signal.SIGKILL)  # type: ignore[arg-type]
    with pytest.raises(PoolBrokenError):
        manager.process_in_parallel(pool, [1], BatchConfig())


# ----------------------------------------------------------------- data


def test_a_dataframe_is_cut_by_rows(manager: RayManager) -> None:
    pool = manager.create_actor_pool(RowsSeen, {}, num_actors=2)
    frame = pd.DataFrame({"x": range(10), "y": range(10, 20)}, index=range(100, 110))
    results = manager.process_in_parallel(pool, frame, BatchConfig(batch_size=4))
    assert results == [("DataFrame", [0, 1, 2, 3]), ("DataFrame", [4, 5, 6, 7]),
                       ("DataFrame", [8, 9])]
    series = manager.process_in_parallel(pool, frame["y"], BatchConfig(batch_size=6))
    assert series == [("Series", [10, 11, 12, 13, 14, 15]), ("Series", [16, 17, 18, 19])]
    table = manager.process_in_parallel(pool, pa.table({"x": list(range(5))}),
                                        BatchConfig(batch_size=2))
    assert table == [("Table", [0, 1]), ("Table", [2, 3]), ("Table", [4])]

