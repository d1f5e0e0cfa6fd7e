"""Multi-node scenarios on a real ``ray.cluster_utils.Cluster`` on this machine.

Each scenario runs in its own process (``python cluster_scenarios.py NAME``),
because a Cluster needs a Ray of its own and the test session already has one.
It prints one JSON line with what it measured; tests/test_cluster.py asserts.
Every scenario shuts its manager and its cluster down, also on failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from ray.cluster_utils import Cluster

from raymanager import BatchConfig, RayActor, RayConfig, RayManager


class Where(RayActor[Any, dict[str, Any]]):
    """Squares its batch and says which node and devices it ran on."""

    def process_batch(self, batch: Any) -> dict[str, Any]:
        time.sleep(self.config.get("sleep_s", 0.0))
        return {"squares": [int(v) ** 2 for v in batch], "pid": os.getpid()}

    def where(self) -> dict[str, Any]:
        import ray

        return {
            "node": ray.get_runtime_context().get_node_id(),
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        }


def with_cluster(nodes: list[dict[str, Any]], body: Callable[[Cluster, RayManager], dict[str, Any]]
                 ) -> dict[str, Any]:
    cluster = Cluster(initialize_head=True, head_node_args=nodes[0])
    manager = None
    try:
        for args in nodes[1:]:
            cluster.add_node(**args)
        cluster.wait_for_nodes()
        manager = RayManager(RayConfig(address=cluster.address))
        return body(cluster, manager)
    finally:
        if manager is not None:
            manager.shutdown()
        import ray

        ray.shutdown()
        cluster.shutdown()


def spread(cluster: Cluster, manager: RayManager) -> dict[str, Any]:
    pool = manager.create_actor_pool(Where, {}, num_actors=6)
    spread_nodes = [w["node"] for w in pool.broadcast("where")]
    packed = manager.create_actor_pool(Where, {}, num_actors=6, placement="pack")
    pack_nodes = [w["node"] for w in packed.broadcast("where")]
    results = manager.process_in_parallel(pool, np.arange(600), BatchConfig(batch_size=10,
                                                                            num_parallel=6))
    return {
        "nodes": len(cluster.list_all_nodes()),
        "spread_nodes": spread_nodes,
        "pack_nodes": pack_nodes,
        "correct": [v for r in results for v in r["squares"]] == [i * i for i in range(600)],
        "pids_used": len({r["pid"] for r in results}),
    }


def node_loss(graceful: bool) -> Callable[[Cluster, RayManager], dict[str, Any]]:
    def body(cluster: Cluster, manager: RayManager) -> dict[str, Any]:
        pool = manager.create_actor_pool(Where, {"sleep_s": 0.01}, num_actors=3)
        nodes = [w["node"] for w in pool.broadcast("where")]
        victim = next(n for n in cluster.worker_nodes if n.node_id in nodes)
        data = np.arange(3000)
        results: list[dict[str, Any]] = []
        removed_at = recovered_at = None
        started = time.monotonic()
        for i, result in enumerate(manager.imap(pool, data, BatchConfig(batch_size=10,
                                                                       num_parallel=3))):
            results.append(result)
            if i == 40:
                removed_at = time.monotonic()
                cluster.remove_node(victim, allow_graceful=graceful)
            if removed_at is not None and recovered_at is None and pool.restarts > 0:
                recovered_at = time.monotonic()
        wall = time.monotonic() - started
        squares = [v for r in results for v in r["squares"]]
        return {
            "graceful": graceful,
            "batches": len(results),
            "correct": squares == [int(v) ** 2 for v in data],
            "restarts": pool.restarts,
            "detect_s": None if recovered_at is None else recovered_at - removed_at,
            "wall_s": wall,
            "nodes_after": sorted({w["node"] for w in pool.broadcast("where")} - {victim.node_id}),
        }
    return body


def gpus(cluster: Cluster, manager: RayManager) -> dict[str, Any]:
    whole = manager.create_actor_pool(Where, {}, num_actors=2, num_gpus=1)
    whole_where = whole.broadcast("where")
    whole.shutdown()
    half = manager.create_actor_pool(Where, {}, num_actors=4, num_gpus=0.5)
    half_where = half.broadcast("where")
    return {"whole": whole_where, "half": half_where}


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = {
    "spread": lambda: with_cluster(
        [{"num_cpus": 1}, {"num_cpus": 1}, {"num_cpus": 1}], spread),
    "node_loss_graceful": lambda: with_cluster(
        [{"num_cpus": 1}, {"num_cpus": 1}, {"num_cpus": 1}], node_loss(True)),
    "node_loss_forced": lambda: with_cluster(
        [{"num_cpus": 1}, {"num_cpus": 1}, {"num_cpus": 1}], node_loss(False)),
    "gpus": lambda: with_cluster([{"num_cpus": 2, "num_gpus": 2}], gpus),
}

if __name__ == "__main__":
    print("RESULT " + json.dumps(SCENARIOS[sys.argv[1]]()), flush=True)
