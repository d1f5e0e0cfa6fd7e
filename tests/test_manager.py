"""RayManager on a real local Ray: cutting, order, data types, transport, lifecycle."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import psutil
import pytest
import ray
from actors_for_tests import Echo, FailingConstructor, PickyConfig, Square

from raymanager import (
    ActorStartError,
    BatchConfig,
    ManagerShutdownError,
    RayConfig,
    RayManager,
    ResourceUnavailableError,
)


def flat(results: list[dict[str, Any]]) -> list[Any]:
    return [row for r in results for row in r["rows"]]


def test_order_and_batch_boundaries(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Echo, {}, num_actors=2)
    results = manager.process_in_parallel(pool, np.arange(1000), BatchConfig(batch_size=128))
    assert len(results) == 8
    assert [len(r["rows"]) for r in results] == [128] * 7 + [104]
    assert flat(results) == list(range(1000))


def test_many_small_batches_keep_order(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {}, num_actors=2)
    data = np.arange(20_000)
    results = manager.process_in_parallel(pool, data, BatchConfig(batch_size=7))
    assert len(results) == -(-20_000 // 7)
    assert [v for r in results for v in r] == (data**2).tolist()


@pytest.mark.parametrize(
    "data",
    [
        list(range(50)),
        tuple(range(50)),
        range(50),
        np.arange(50),
        np.arange(200_000),  # large: shared through the object store
        (i for i in range(50)),
        iter(list(range(50))),
    ],
    ids=["list", "tuple", "range", "small-array", "large-array", "generator", "iterator"],
)
def test_every_accepted_data_type(manager: RayManager, data: Any) -> None:
    pool = manager.create_actor_pool(Echo, {}, num_actors=2)
    results = manager.process_in_parallel(pool, data, BatchConfig(batch_size=16))
    n = 200_000 if isinstance(data, np.ndarray) and len(data) > 50 else 50
    assert len(results) == -(-n // 16)
    assert flat(results) == list(range(n))


def test_mapping_of_columns(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Echo, {}, num_actors=2)
    for size in (10, 100_000):  # inline and shared
        data = {"x": np.arange(size), "y": np.arange(size) * 2.0}
        results = manager.process_in_parallel(pool, data, BatchConfig(batch_size=4096))
        assert [r["type"] for r in results] == ["dict"] * len(results)
        xs = [x for r in results for x in r["rows"]["x"]]
        ys = [y for r in results for y in r["rows"]["y"]]
        assert xs == list(range(size)) and ys == [2.0 * i for i in range(size)]
    with pytest.raises(ValueError, match="differ in length"):
        manager.process_in_parallel(pool, {"x": np.arange(3), "y": np.arange(4)})


def test_empty_input_calls_no_actor(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Echo, {}, num_actors=2)
    for empty in ([], np.zeros((0, 4)), iter([]), {"x": np.zeros(0)}):
        assert manager.process_in_parallel(pool, empty) == []
    assert pool.broadcast("call_count") == [0, 0]


def test_batches_are_read_only_zero_copy_views(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Echo, {}, num_actors=2)
    big = np.arange(300_000, dtype=np.int64)  # 2.4 MB: goes to the object store once
    results = manager.process_in_parallel(pool, big, BatchConfig(batch_size=100_000))
    assert all(r["writeable"] is False for r in results)
    # A view of the stored array, not a private copy per batch.
    assert all(r["owns_data"] is False for r in results)
    small = manager.process_in_parallel(pool, np.arange(10), BatchConfig(batch_size=5))
    assert all(r["writeable"] is False for r in small)


def test_chunk_size_reaches_the_actor(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Echo, {}, num_actors=1)
    results = manager.process_in_parallel(
        pool, np.arange(100), BatchConfig(batch_size=50, chunk_size=20)
    )
    assert [r["chunk_size"] for r in results] == [20, 20]
    assert results[0]["chunks"] == [20, 20, 10]


def test_num_parallel_limits_busy_actors(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Echo, {"sleep_s": 0.02}, num_actors=3)
    def pids_used(rows: int, num_parallel: int) -> int:
        config = BatchConfig(batch_size=2, num_parallel=num_parallel)
        return len({r["pid"] for r in manager.process_in_parallel(pool, np.arange(rows), config)})

    assert pids_used(40, 1) == 1
    assert pids_used(40, 2) == 2
    assert pids_used(60, 8) == 3  # more than the pool has: all of it


def test_imap_streams_and_unordered_gives_indices(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {}, num_actors=2)
    stream = manager.imap(pool, (i for i in range(100)), BatchConfig(batch_size=10))
    assert next(stream) == [i * i for i in range(10)]
    assert len(list(stream)) == 9
    pairs = dict(manager.imap_unordered(pool, np.arange(100), BatchConfig(batch_size=10)))
    assert sorted(pairs) == list(range(10))
    assert pairs[3] == [i * i for i in range(30, 40)]


def test_closing_a_stream_early_leaves_the_pool_usable(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {"sleep_s": 0.01}, num_actors=2)
    stream = manager.imap(pool, np.arange(2000), BatchConfig(batch_size=10))
    next(stream)
    stream.close()
    assert manager.process_in_parallel(pool, [1, 2, 3], BatchConfig(batch_size=2)) == [[1, 4], [9]]


def test_results_that_arrived_together_are_handed_out_one_by_one(manager: RayManager) -> None:
    """A call's results arrive together (one hand-over per call): the stream still
    yields them one at a time, in order, and a close() drops the rest."""
    pool = manager.create_actor_pool(Square, {}, num_actors=1)
    stream = manager.imap(pool, list(range(200)), BatchConfig(batch_size=1, num_parallel=1))
    # Calls grow from one batch by doubling: within a few results, one call
    # has brought several at once.
    first = [next(stream)]
    while not stream._ready and len(first) < 20:
        first.append(next(stream))
    assert first == [[i * i] for i in range(len(first))]
    assert len(stream._ready) > 0  # the rest of that call waits in the stream
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    assert manager.process_in_parallel(pool, [5], BatchConfig(batch_size=1)) == [[25]]


def test_a_second_run_starts_while_the_first_is_suspended(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {"sleep_s": 0.01}, num_actors=1)
    stream = manager.imap(pool, np.arange(100), BatchConfig(batch_size=10))
    assert next(stream) == [v * v for v in range(10)]
    # As with multiprocessing.Pool: the suspended iterator does not lock the pool.
    assert manager.process_in_parallel(pool, [2, 3], BatchConfig(batch_size=1)) == [[4], [9]]
    rest = list(stream)
    assert rest == [[v * v for v in range(i, i + 10)] for i in range(10, 100, 10)]


def test_two_imaps_interleaved_by_the_consumer_both_complete(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {"sleep_s": 0.005}, num_actors=2)
    first = manager.imap(pool, range(0, 300), BatchConfig(batch_size=3))
    second = manager.imap_unordered(pool, range(1000, 1300), BatchConfig(batch_size=3))
    got_first, got_second = [], {}
    for a, (index, b) in zip(first, second, strict=True):
        got_first.append(a)
        got_second[index] = b
    got_first.extend(first)
    got_second.update(second)
    assert got_first == [[v * v for v in range(i, i + 3)] for i in range(0, 300, 3)]
    assert got_second == {k: [v * v for v in range(1000 + 3 * k, 1003 + 3 * k)]
                          for k in range(100)}
    assert pool.stats()["queued_batches"] == 0


def test_broadcast_puts_arguments_once_and_answers_per_actor(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Echo, {}, num_actors=3)
    weights = {"w": np.arange(1000.0)}
    pids = manager.broadcast(pool, "set_state", (weights,))
    assert sorted(pids) == sorted(pool.pids())
    states = pool.broadcast("get_state")
    assert all(np.array_equal(s["w"], weights["w"]) for s in states)
    with pytest.raises(AttributeError, match="no method"):
        pool.broadcast("no_such_method")


def test_config_errors_at_pool_creation(manager: RayManager) -> None:
    with pytest.raises(TypeError, match="RayActor"):
        manager.create_actor_pool(dict, {}, num_actors=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_actors"):
        manager.create_actor_pool(Echo, {}, num_actors=0)
    with pytest.raises(TypeError, match="mapping"):
        manager.create_actor_pool(Echo, [1], num_actors=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale"):
        manager.create_actor_pool(PickyConfig, {}, num_actors=1)
    pool = manager.create_actor_pool(PickyConfig, {"scale": 3}, num_actors=1)
    assert manager.process_in_parallel(pool, [1, 2]) == [[3, 6]]
    with pytest.raises(TypeError, match="BatchConfig"):
        manager.process_in_parallel(pool, [1], {"batch_size": 1})  # type: ignore[arg-type]


def test_constructor_error_fails_pool_creation_at_once(manager: RayManager) -> None:
    with pytest.raises(ActorStartError, match="FailingConstructor") as info:
        manager.create_actor_pool(FailingConstructor, {}, num_actors=2)
    cause = info.value.__cause__
    assert isinstance(cause, RuntimeError) and "missing model file" in str(cause)
    assert "Traceback" in str(cause.__cause__)


def test_impossible_resources_fail_fast_with_what_exists(manager: RayManager) -> None:
    with pytest.raises(ResourceUnavailableError, match="CPU") as info:
        manager.create_actor_pool(Echo, {}, num_actors=1, num_cpus=4)
    assert info.value.requested == {"CPU": 4.0}
    assert info.value.available["CPU"] == 2.0
    with pytest.raises(ResourceUnavailableError, match="TPU"):
        manager.create_actor_pool(Echo, {}, num_actors=1, resources={"TPU": 1})


def test_asked_resources_are_reserved(manager: RayManager) -> None:
    before = ray.available_resources().get("CPU", 0)
    pool = manager.create_actor_pool(Echo, {}, num_actors=2, num_cpus=0.5)
    assert ray.available_resources().get("CPU", 0) == pytest.approx(before - 1.0)
    pool.shutdown()


def test_default_pools_reserve_no_cpu(manager: RayManager) -> None:
    # Four actors per pool, two pools, on a 2-CPU Ray: only possible because
    # actors reserve no CPU by default.
    a = manager.create_actor_pool(Square, {}, num_actors=4)
    b = manager.create_actor_pool(Echo, {}, num_actors=4)
    assert manager.process_in_parallel(a, [2]) == [[4]]
    assert len(manager.process_in_parallel(b, [2])) == 1


def test_shutdown_kills_actors_and_is_idempotent(ray_session: RayManager) -> None:
    manager = RayManager()
    pool = manager.create_actor_pool(Echo, {}, num_actors=2)
    pids = pool.pids()
    assert all(pid is not None and psutil.pid_exists(pid) for pid in pids)
    manager.shutdown()
    manager.shutdown()
    _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if p and psutil.pid_exists(p)],
                                    timeout=10)
    assert not alive
    with pytest.raises(ManagerShutdownError):
        manager.process_in_parallel(pool, [1])
    with pytest.raises(ManagerShutdownError):
        manager.create_actor_pool(Echo, {}, num_actors=1)
    with pytest.raises(ManagerShutdownError):
        pool.broadcast("pid")
    assert ray.is_initialized()  # a joined manager leaves the session's Ray alone


def test_context_manager_shuts_down_when_body_raises(ray_session: RayManager) -> None:
    with pytest.raises(KeyError), RayManager() as manager:
        pool = manager.create_actor_pool(Echo, {}, num_actors=1)
        pid = pool.pids()[0]
        raise KeyError("boom")
    assert pid is not None
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(pid).wait(timeout=10)
        psutil.Process(pid)


def test_progress_bar_runs(manager: RayManager, capsys: pytest.CaptureFixture[str]) -> None:
    pool = manager.create_actor_pool(Square, {}, num_actors=2)
    results = manager.process_in_parallel(pool, np.arange(100), BatchConfig(batch_size=10),
                                          progress=True)
    assert len(results) == 10
    err = capsys.readouterr().err
    assert "10/10" in err and "rows/s" in err


def test_object_store_stats(manager: RayManager) -> None:
    stats = manager.object_store_stats()
    assert stats["total"] >= 75 * 1024 * 1024
    ref = ray.put(np.zeros(20 * 1024 * 1024, dtype=np.uint8))
    assert manager.object_store_stats()["used"] >= 20 * 1024 * 1024
    del ref


def test_seed_usage_example_runs_as_written(ray_session: RayManager) -> None:
    from raymanager import TrainingActor

    data = np.arange(512)
    ray_config = RayConfig(num_cpus=4)
    manager = RayManager(ray_config)
    actor_pool = manager.create_actor_pool(TrainingActor, {"learning_rate": 0.001}, num_actors=4)
    batch_config = BatchConfig(batch_size=128)
    results = manager.process_in_parallel(actor_pool, data, batch_config)
    manager.shutdown()
    assert len(results) == 4
    assert all(r["rows"] == 128 and r["env_steps"] > 0 for r in results)


def test_private_local_ray_and_shutdown_leaves_no_process() -> None:
    """A manager that starts Ray stops it: run in a child so the session Ray is untouched."""
    import subprocess
    import sys

    code = (
        "import psutil, os\n"
        "from raymanager import RayManager, RayConfig\n"
        "m = RayManager(RayConfig(num_cpus=1))\n"
        "assert m.owns_ray\n"
        "kids = psutil.Process().children(recursive=True)\n"
        "m.shutdown(); m.shutdown()\n"
        "gone, alive = psutil.wait_procs(kids, timeout=20)\n"
        "print('ALIVE', [p.pid for p in alive])\n"
    )
    env = dict(os.environ, RAY_ADDRESS="127.0.0.1:1")  # must be ignored: private Ray
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ALIVE []" in out.stdout
    assert "Token authentication is enabled" not in out.stderr


def test_join_logs_when_config_is_ignored(ray_session: RayManager,
                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="raymanager"):
        RayManager(RayConfig(num_cpus=8)).shutdown()
    assert "already running" in caplog.text
