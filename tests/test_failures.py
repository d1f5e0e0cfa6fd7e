"""The failure model, done for real: processes killed by PID, exits, hangs, exceptions."""

from __future__ import annotations

import logging
import os
import re
import signal
from pathlib import Path

import numpy as np
import psutil
import pytest
from actors_for_tests import Square

from raymanager import (
    BatchConfig,
    BatchError,
    BatchTimeoutError,
    ManagerShutdownError,
    PoolState,
    RayManager,
    RemoteTraceback,
    WorkerDiedError,
)

N = 400
BATCH = 10
EXPECTED = [[v * v for v in range(i, min(i + BATCH, N))] for i in range(0, N, BATCH)]


def test_sigkill_actors_by_pid_mid_run_loses_nothing(
    manager: RayManager, caplog: pytest.LogCaptureFixture
) -> None:
    pool = manager.create_actor_pool(Square, {"sleep_s": 0.004}, num_actors=2)
    first_pids = list(pool.pids())
    data = np.arange(10_000)
    results = []
    killed = []
    with caplog.at_level(logging.WARNING, logger="raymanager"):
        stream = manager.imap(pool, data, BatchConfig(batch_size=BATCH))
        for i, result in enumerate(stream):
            results.append(result)
            if i in (20, 300, 600):  # mid-run: the pool holds work well past i
                pids = pool.pids()  # alternate slots; a slot still starting has None
                victim = pids[len(killed) % 2] or next(p for p in pids if p is not None)
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
    assert len(killed) == 3
    expected = [[v * v for v in range(i, i + BATCH)] for i in range(0, len(data), BATCH)]
    assert results == expected  # every batch exactly once, in order
    assert pool.restarts == 3
    assert set(pool.pids()).isdisjoint(first_pids)
    assert caplog.text.count("replacing actor Square#") == 3


def test_worker_exit_inside_a_batch_is_retried_once(manager: RayManager, tmp_path: Path) -> None:
    config = {"exit_once_on": [50, 120, 390], "marks": str(tmp_path)}
    pool = manager.create_actor_pool(Square, config, num_actors=2)
    results = manager.process_in_parallel(pool, np.arange(N), BatchConfig(batch_size=BATCH))
    assert results == EXPECTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exit-120", "exit-390", "exit-50"]
    assert pool.restarts == 3


def test_self_sigkill_counts_as_a_dead_worker(manager: RayManager, tmp_path: Path) -> None:
    pool = manager.create_actor_pool(
        Square, {"sigkill_self_on": [0], "marks": str(tmp_path)}, num_actors=1
    )
    assert manager.process_in_parallel(pool, np.arange(30), BatchConfig(batch_size=BATCH)) == [
        r for r in EXPECTED[:3]
    ]


def test_a_batch_that_always_kills_its_worker_gives_up(
    manager: RayManager, caplog: pytest.LogCaptureFixture
) -> None:
    pool = manager.create_actor_pool(Square, {"exit_always_on": [70]}, num_actors=2)
    with caplog.at_level(logging.WARNING, logger="raymanager"), pytest.raises(
        WorkerDiedError, match="batch 7"
    ) as info:
        config = BatchConfig(batch_size=BATCH, max_retries=2)
        manager.process_in_parallel(pool, np.arange(N), config)
    assert info.value.index == 7 and info.value.attempts == 3
    assert "retrying batch 7 (attempt 3 of 3)" in caplog.text
    # The pool recovers for the next call.
    assert manager.process_in_parallel(pool, [3], BatchConfig()) == [[9]]


def test_continue_policy_reports_dead_batch_in_place(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {"exit_always_on": [70]}, num_actors=2)
    results = manager.process_in_parallel(
        pool, np.arange(N), BatchConfig(batch_size=BATCH, max_retries=1, on_error="continue")
    )
    assert isinstance(results[7], WorkerDiedError)
    assert results[:7] + results[8:] == EXPECTED[:7] + EXPECTED[8:]


def test_user_exception_stops_with_batch_error(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {"raise_on": [130], "sleep_s": 0.005}, num_actors=2)
    with pytest.raises(BatchError, match="batch 13 raised ValueError") as info:
        manager.process_in_parallel(pool, np.arange(N), BatchConfig(batch_size=BATCH))
    error = info.value
    assert error.index == 13 and error.actor.startswith("Square#")
    assert isinstance(error.__cause__, ValueError)
    assert "bad batch starting at 130" in str(error.__cause__)
    remote = error.__cause__.__cause__
    assert isinstance(remote, RemoteTraceback) and "process_batch" in remote.tb
    # No retries for a user error, and the pool is still usable.
    assert pool.restarts == 0
    assert manager.process_in_parallel(pool, [1, 2], BatchConfig()) == [[1, 4]]


def test_user_exception_with_continue_policy(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {"raise_on": [0, 130]}, num_actors=2)
    results = manager.process_in_parallel(
        pool, np.arange(N), BatchConfig(batch_size=BATCH, on_error="continue")
    )
    assert len(results) == len(EXPECTED)
    assert [i for i, r in enumerate(results) if isinstance(r, BatchError)] == [0, 13]
    assert isinstance(results[13].__cause__, ValueError)
    assert [r for i, r in enumerate(results) if i not in (0, 13)] == [
        r for i, r in enumerate(EXPECTED) if i not in (0, 13)
    ]


def test_stuck_batch_is_killed_replaced_and_retried(
    manager: RayManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pool = manager.create_actor_pool(
        Square, {"hang_once_on": [40], "marks": str(tmp_path)}, num_actors=2
    )
    with caplog.at_level(logging.WARNING, logger="raymanager"):
        results = manager.process_in_parallel(
            pool, np.arange(100), BatchConfig(batch_size=BATCH, timeout_s=1.0)
        )
    assert results == EXPECTED[:10]
    assert pool.restarts == 1
    # The hang is found on the call that ran batch 4: alone, or in a group
    # (which is then re-run one batch per call, nobody charged).
    hung = re.search(r"(batch 4|a batch of (\d+)\.\.(\d+)) ran past timeout_s=1", caplog.text)
    assert hung is not None
    if hung[2] is not None:
        assert int(hung[2]) <= 4 <= int(hung[3])


def test_batch_that_always_hangs_raises_timeout(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {"hang_always_on": [20]}, num_actors=2)
    with pytest.raises(BatchTimeoutError, match="batch 2 timed out") as info:
        manager.process_in_parallel(
            pool, np.arange(60), BatchConfig(batch_size=BATCH, timeout_s=0.5, max_retries=1)
        )
    assert info.value.attempts == 2
    assert pool.state is PoolState.RUNNING


def test_broadcast_state_is_replayed_into_replacements(manager: RayManager) -> None:
    from actors_for_tests import Echo

    pool = manager.create_actor_pool(Echo, {}, num_actors=2)
    pool.broadcast("set_state", args=({"round": 7},), replay_on_restart=True)
    os.kill(pool.pids()[0], signal.SIGKILL)
    # The next broadcast finds the dead actor, replaces it, and the new one
    # already holds the replayed state.
    states = pool.broadcast("get_state")
    assert states == [{"round": 7}, {"round": 7}]
    assert pool.restarts == 1


def test_ctrl_c_during_processing_stops_the_run_keeps_the_pool_and_leaves_no_ray(
        tmp_path: Path) -> None:
    """SIGINT to a real driver process mid-run: the run stops, the pool stays
    usable; after the driver's shutdown, actors and Ray are gone."""
    import subprocess
    import sys

    script = tmp_path / "driver.py"
    script.write_text(
        "import sys, time, numpy as np\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from actors_for_tests import Square\n"
        "from raymanager import BatchConfig, RayConfig, RayManager, PoolState\n"
        "manager = RayManager(RayConfig(num_cpus=2))\n"
        "pool = manager.create_actor_pool(Square, {'sleep_s': 0.05}, num_actors=2)\n"
        "print('PIDS', *pool.pids(), flush=True)\n"
        "try:\n"
        "    for i, _ in enumerate(manager.imap(pool, np.arange(100_000),\n"
        "                                       BatchConfig(batch_size=10))):\n"
        "        if i == 0:\n"
        "            print('MIDRUN', flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    print('STATE', pool.state.value, flush=True)\n"
        "    again = manager.process_in_parallel(pool, [3], BatchConfig(batch_size=1))\n"
        "    print('AGAIN', again, flush=True)\n"
        "    manager.shutdown()\n"
        "    print('CLEAN', flush=True)\n"
    )
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("PIDS"), process.stderr.read() if process.stderr else ""
    actor_pids = [int(p) for p in line.split()[1:]]
    children = psutil.Process(process.pid).children(recursive=True)
    assert process.stdout.readline().startswith("MIDRUN")  # a result is out: mid-run
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert "STATE running" in out and "AGAIN [[9]]" in out and "CLEAN" in out, err[-3000:]
    assert process.returncode == 0
    _, alive = psutil.wait_procs(children, timeout=30)
    assert [p.pid for p in alive] == []
    assert not any(psutil.pid_exists(pid) for pid in actor_pids)


def test_ctrl_c_in_the_loop_body_stops_the_run_and_keeps_the_pool(manager: RayManager) -> None:
    """The same outcome as Ctrl-C inside next(): the run ends, the pool runs on."""
    pool = manager.create_actor_pool(Square, {"sleep_s": 0.01}, num_actors=2)
    with pytest.raises(KeyboardInterrupt):
        for i, _ in enumerate(manager.imap(pool, range(1000), BatchConfig(batch_size=1))):
            if i == 5:
                raise KeyboardInterrupt
    assert pool.state.value == "running"
    assert all(pid is not None for pid in pool.pids())
    assert manager.process_in_parallel(pool, [4], BatchConfig(batch_size=1)) == [[16]]


def test_a_worker_death_says_how_the_process_ended(manager: RayManager) -> None:
    # Ray reports an exit type and detail, not the code of os._exit (it sees
    # only a broken connection): the error carries what Ray knows.
    pool = manager.create_actor_pool(Square, {"exit_always_on": [2]}, num_actors=1)
    with pytest.raises(WorkerDiedError) as caught:
        manager.process_in_parallel(pool, [1, 2, 3], BatchConfig(batch_size=1, max_retries=0))
    assert "its worker process died (SYSTEM_ERROR" in str(caught.value)


def test_errors_say_what_to_do_next(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {}, num_actors=1)
    with pytest.raises(ValueError, match=r"got 0$"):
        pool.resize(0)
    manager.shutdown()
    with pytest.raises(ManagerShutdownError, match="create a new RayManager"):
        pool.submit([1])
