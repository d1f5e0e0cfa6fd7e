"""A pool that cannot start says so, at once (docs/pools.md, Resources and placement).

A fixed pool whose actors together ask for more than the whole cluster has,
with no autoscaler that could add nodes, is refused before any actor is
created; an elastic pool of the same size starts; where an autoscaler may
add nodes, the start waits for it up to ``start_timeout_s`` as documented.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from actors_for_tests import Square

from raymanager import ActorStartError, BatchConfig, RayManager, ResourceUnavailableError
from raymanager.ray_internals import actor_table

RAYMANAGER = str(Path(sys.executable).parent / "raymanager")


def test_a_fixed_pool_asking_more_cpus_than_the_cluster_has_is_refused_at_once(
        manager: RayManager) -> None:
    actors_before = len(actor_table())
    began = time.monotonic()
    with pytest.raises(ResourceUnavailableError) as refused:
        manager.create_actor_pool(Square, {}, num_actors=1000, num_cpus=1, start_timeout_s=20)
    assert time.monotonic() - began < 5
    message = str(refused.value)
    assert "1000 actors of Square need 1000 CPU" in message
    assert "this Ray cluster has 2 CPU" in message and "no autoscaler" in message
    assert "num_actors=(1, 1000)" in message
    assert refused.value.requested["CPU"] == 1 and refused.value.available["CPU"] == 2
    assert len(actor_table()) == actors_before  # refused before any actor was created


def test_a_pool_of_actors_that_reserve_nothing_is_refused_when_their_processes_cannot_fit(
        manager: RayManager) -> None:
    # Each actor is a worker process of its own, whatever it reserves: 100,000
    # of them need terabytes. Refused before a single one is started.
    actors_before = len(actor_table())
    with pytest.raises(ResourceUnavailableError, match=r"worker process of at least \d+ MiB"):
        manager.create_actor_pool(Square, {}, num_actors=100_000)
    assert len(actor_table()) == actors_before


def test_an_elastic_pool_of_that_size_still_works(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {}, num_actors=(1, 1000), num_cpus=1)
    results = manager.process_in_parallel(pool, list(range(8)), BatchConfig(batch_size=2))
    assert results == [[0, 1], [4, 9], [16, 25], [36, 49]]
    assert 1 <= len(pool.pids()) <= 2  # grown only where the cluster had room


@pytest.fixture
def autoscaler_config(ray_session: RayManager) -> Iterator[None]:
    """The cluster config an autoscaler publishes in the GCS: one node group that can grow."""
    from ray._raylet import GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, GCS_AUTOSCALER_STATE_NAMESPACE
    from ray.core.generated import autoscaler_pb2
    from ray.experimental import internal_kv

    config = autoscaler_pb2.ClusterConfig()
    group = config.node_group_configs.add()
    group.name, group.min_count, group.max_count = "workers", 0, 10
    group.resources["CPU"] = 2
    key, namespace = GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, GCS_AUTOSCALER_STATE_NAMESPACE
    internal_kv._internal_kv_put(key, config.SerializeToString(), namespace=namespace)
    try:
        yield
    finally:
        internal_kv._internal_kv_del(key, namespace=namespace)


def test_where_an_autoscaler_may_add_nodes_the_start_timeout_fires(
        manager: RayManager, autoscaler_config: None) -> None:
    from raymanager.ray_internals import autoscaler_may_add_nodes

    assert autoscaler_may_add_nodes()
    began = time.monotonic()
    # The start timeout fires (no refusal up front): for the actor that cannot be placed,
    # or, on a loaded machine, first for the placed ones still constructing.
    with pytest.raises((ResourceUnavailableError, ActorStartError), match="within 3 s"):
        manager.create_actor_pool(Square, {}, num_actors=3, num_cpus=1, start_timeout_s=3)
    # Fires at 3 s; the bound only says it did not hang (a loaded CI machine is slow).
    assert 3 <= time.monotonic() - began < 60
    assert ray.is_initialized()


@pytest.mark.slow
def test_the_cli_refuses_a_training_pool_too_large_for_the_machine(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [RAYMANAGER, "train", "--num-actors", "1000", "--num-cpus", "2", "--no-progress",
         "--output-dir", "runs", "--run-name", "huge"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        # Still starting actors (as before this check): stop it and its Ray cleanly.
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        pytest.fail(f"no refusal within 60 s: {err[-2000:]}")
    assert process.returncode == 2, err[-3000:]
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "1000 actors of TrainingActor" in lines[0] and "num_actors=(1, 1000)" in lines[0]
    assert not (tmp_path / "runs" / "huge").exists()  # nothing written for a run never started
