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
        result: dict[str, Any] = {"squares": [int(v) ** 2 for v in batch], "pid": os.getpid()}
        if self.config.get("big"):
            # Over Ray's 100 KiB inline limit: the result lives in this node's store.
            result["ballast"] = np.zeros(200 * 1024, dtype=np.uint8)
        marks = self.config.get("marks")
        if marks:
            open(os.path.join(marks, f"{os.getpid()}-{int(batch[0])}"), "w").close()
        return result

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
        # Three times what the actors need to pass the removal by a second: the
        # victim is sure to hold a call when its node goes (with less, its last
        # calls could end first and the loss be seen only after the run, which
        # flaked on a loaded 2-core machine).
        data = np.arange(9000)
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
        healed = wait_healed(pool)
        fresh = manager.create_actor_pool(Where, {}, num_actors=3)  # right after the loss
        fresh_nodes = [w["node"] for w in fresh.broadcast("where")]
        return {
            "healed_nodes": healed,
            "victim": victim.node_id,
            "fresh_pool_nodes": fresh_nodes,
            "graceful": graceful,
            "batches": len(results),
            "correct": squares == [int(v) ** 2 for v in data],
            "restarts": pool.restarts,
            "detect_s": None if recovered_at is None else recovered_at - removed_at,
            "wall_s": wall,
            "nodes_after": sorted({w["node"] for w in pool.broadcast("where")} - {victim.node_id}),
        }
    return body


def wait_healed(pool: Any, within_s: float = 90.0) -> list[str]:
    """The nodes of the pool's actors once every slot has a running actor again."""
    deadline = time.monotonic() + within_s
    while None in pool.pids() and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the pool's own state, not waiting for luck
    return [w["node"] for w in pool.broadcast("where")]


def lost_result(cluster: Cluster, manager: RayManager) -> dict[str, Any]:
    """A finished result lives only on a node removed before the driver fetched it."""
    import tempfile

    marks = tempfile.mkdtemp()
    pool = manager.create_actor_pool(Where, {"big": True, "marks": marks}, num_actors=3)
    where = pool.broadcast("where")
    pids = pool.pids()
    victim = next(n for n in cluster.worker_nodes if n.node_id in [w["node"] for w in where])
    victim_pid = pids[[w["node"] for w in where].index(victim.node_id)]
    data = np.arange(60)
    results: list[dict[str, Any]] = []
    stream = manager.imap(pool, data, BatchConfig(batch_size=1, num_parallel=3))
    for i, result in enumerate(stream):
        results.append(result)
        if i == 2:
            # Wait until the victim has finished a batch the driver has not fetched.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not any(
                name.startswith(f"{victim_pid}-") and int(name.split("-")[1]) > i
                for name in os.listdir(marks)
            ):
                time.sleep(0.01)
            cluster.remove_node(victim, allow_graceful=False)
    squares = [v for r in results for v in r["squares"]]
    return {"batches": len(results), "correct": squares == [int(v) ** 2 for v in data],
            "restarts": pool.restarts}


def elastic_join(cluster: Cluster, manager: RayManager) -> dict[str, Any]:
    """A pool of 1 to 3 one-CPU actors on a 1-CPU cluster; a 2-CPU node joins mid-run."""
    pool = manager.create_actor_pool(Where, {"sleep_s": 0.02}, num_actors=(1, 3), num_cpus=1)
    data = np.arange(600)
    results = []
    joined_at = None
    times = []
    for i, result in enumerate(manager.imap(pool, data, BatchConfig(batch_size=1))):
        results.append(result)
        times.append(time.monotonic())
        if i == 50:
            node = cluster.add_node(num_cpus=2)
            joined_at = i
    nodes = [w["node"] for w in pool.broadcast("where")]
    assert joined_at is not None
    before = 50 / (times[50] - times[0])
    after = 200 / (times[-1] - times[-201])
    return {
        "correct": [v for r in results for v in r["squares"]] == [int(v) ** 2 for v in data],
        "actors": pool.num_actors,
        "new_node_used": node.node_id in nodes,
        "rate_before": before,
        "rate_after": after,
    }


def drained(cluster: Cluster, manager: RayManager) -> dict[str, Any]:
    """A node is drained for preemption mid-run, then removed: no try is charged."""
    import ray
    from ray.core.generated import autoscaler_pb2

    pool = manager.create_actor_pool(Where, {"sleep_s": 0.01}, num_actors=2)
    nodes = [w["node"] for w in pool.broadcast("where")]
    victim = next(n for n in cluster.worker_nodes if n.node_id in nodes)
    victim_pid = pool.pids()[nodes.index(victim.node_id)]
    data = np.arange(400)
    results: list[dict[str, Any]] = []
    after_drain: list[int] = []
    drained_at = None
    seen_at: int | None = None  # results handed out when the pool first showed the drain
    for i, result in enumerate(manager.imap(pool, data, BatchConfig(batch_size=1,
                                                                    max_retries=0))):
        results.append(result)
        if drained_at is not None and seen_at is None and not any(
                a["pid"] == victim_pid and a["state"] == "ready"
                for a in pool.stats()["actors"]):
            seen_at = len(after_drain)
        if i == 30:
            gcs = ray._raylet.GcsClient(address=cluster.address)
            accepted, why = gcs.drain_node(
                victim.node_id,
                autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"),
                "spot preemption (test)", 0)
            assert accepted, why
            drained_at = time.monotonic()
        if drained_at is not None:
            after_drain.append(result["pid"])
            if time.monotonic() - drained_at > 3.0 and len(after_drain) > 100 and i < 300:
                cluster.remove_node(victim, allow_graceful=False)
                drained_at = float("inf")
    squares = [v for r in results for v in r["squares"]]
    # Once the pool has seen the drain, the victim only finishes the calls it
    # already held (at most two, of about 0.2 s of work each: ~20 batches of
    # 10 ms), handed out in order between the other actor's: well after that,
    # none of its results may come.
    late = after_drain[(seen_at if seen_at is not None else len(after_drain)) + 100:]
    return {"correct": squares == [int(v) ** 2 for v in data], "retries": pool.retries,
            "victim_pid_late": late.count(victim_pid), "late": len(late),
            "drain_seen_after": seen_at}


def gpus(cluster: Cluster, manager: RayManager) -> dict[str, Any]:
    whole = manager.create_actor_pool(Where, {}, num_actors=2, num_gpus=1)
    whole_where = whole.broadcast("where")
    whole.shutdown()
    half = manager.create_actor_pool(Where, {}, num_actors=4, num_gpus=0.5)
    half_where = half.broadcast("where")
    return {"whole": whole_where, "half": half_where}


def sweep(cluster: Cluster, manager: RayManager) -> dict[str, Any]:
    """Two seeds of a sweep on two 2-CPU nodes: one run per 2 CPUs, so both at once."""
    import tempfile

    from raymanager.sweep import SweepSpec, run_sweep
    from raymanager.training import TrainConfig

    with tempfile.TemporaryDirectory() as folder:
        base = TrainConfig(address=cluster.address, max_rounds=6, eval_every=1, eval_episodes=4,
                           seeds_per_round=16, batch_size=8, chunk_size=8, target_return=1e9,
                           progress=False, output_dir=folder, run_name="s")
        result = run_sweep(SweepSpec(base, seeds=(0, 1)))
        summary_rows = (result.sweep_dir / "summary.csv").read_text().splitlines()
    return {
        "nodes": len(cluster.list_all_nodes()),
        "runs_at_once": result.runs_at_once,
        "states": [run.state for run in result.runs],
        "run_nodes": [list(run.summary.nodes) if run.summary else [] for run in result.runs],
        "spans": [(run.started_s, run.ended_s) for run in result.runs],
        "summary_rows": len(summary_rows) - 1,
    }


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = {
    "spread": lambda: with_cluster(
        [{"num_cpus": 1}, {"num_cpus": 1}, {"num_cpus": 1}], spread),
    "node_loss_graceful": lambda: with_cluster(
        [{"num_cpus": 1}, {"num_cpus": 1}, {"num_cpus": 1}], node_loss(True)),
    "node_loss_forced": lambda: with_cluster(
        [{"num_cpus": 1}, {"num_cpus": 1}, {"num_cpus": 1}], node_loss(False)),
    "lost_result": lambda: with_cluster(
        [{"num_cpus": 1}, {"num_cpus": 1}, {"num_cpus": 1}], lost_result),
    "elastic_join": lambda: with_cluster([{"num_cpus": 1}], elastic_join),
    "drained": lambda: with_cluster([{"num_cpus": 1}, {"num_cpus": 1}], drained),
    "gpus": lambda: with_cluster([{"num_cpus": 2, "num_gpus": 2}], gpus),
    "sweep": lambda: with_cluster([{"num_cpus": 2}, {"num_cpus": 2}], sweep),
}

if __name__ == "__main__":
    print("RESULT " + json.dumps(SCENARIOS[sys.argv[1]]()), flush=True)
