"""Start-up and shutdown cost of a fresh process: RayManager vs bare Ray.

Run by ``run.py`` in a new interpreter per measurement, so nothing is warm
but the OS page cache; prints one JSON line::

    python benchmarks/startup.py raymanager
    python benchmarks/startup.py bare
    python benchmarks/startup.py bare_loopback

``ready_s`` runs from before ``RayManager()`` / ``ray.init`` (imports done)
to two actors that answered a call; ``shutdown_s`` is ``manager.shutdown()`` /
``ray.shutdown()``.
"""

from __future__ import annotations

import json
import sys
import time

import ray
from workloads import BenchActor, PlainWorker

from raymanager import RayConfig, RayManager

#: ray.init arguments of the bare variant: what a Ray user would write.
BARE_INIT = {"address": "local", "num_cpus": 2, "include_dashboard": False}


def measure_raymanager() -> dict[str, float]:
    """RayManager(RayConfig(num_cpus=2)) to a ready pool of 2, then shutdown()."""
    config = RayConfig(num_cpus=2)
    t0 = time.perf_counter()
    manager = RayManager(config)
    try:
        t1 = time.perf_counter()
        pool = manager.create_actor_pool(BenchActor, {}, num_actors=2)
        assert all(pid is not None for pid in pool.pids())
        t2 = time.perf_counter()
    finally:
        t_shut = time.perf_counter()
        manager.shutdown()
        t3 = time.perf_counter()
    return {"init_s": t1 - t0, "ready_s": t2 - t0, "shutdown_s": t3 - t_shut}


def measure_bare(loopback: bool = False) -> dict[str, float]:
    """ray.init + two actors that answered ping, then ray.shutdown().

    ``loopback=True`` adds ``_node_ip_address="127.0.0.1"``, as RayManager's
    private Ray does: Ray then skips resolving the machine's address, which
    saves ~1 s of ``ray.init`` here (the raylet registers sooner).
    """
    t0 = time.perf_counter()
    ray.init(**BARE_INIT, **({"_node_ip_address": "127.0.0.1"} if loopback else {}))
    try:
        t1 = time.perf_counter()
        remote = ray.remote(PlainWorker).options(num_cpus=0)
        actors = [remote.remote() for _ in range(2)]
        ray.get([actor.ping.remote() for actor in actors])
        t2 = time.perf_counter()
    finally:
        t_shut = time.perf_counter()
        ray.shutdown()
        t3 = time.perf_counter()
    return {"init_s": t1 - t0, "ready_s": t2 - t0, "shutdown_s": t3 - t_shut}


def main() -> None:
    """Measure the kind named on the command line and print JSON."""
    kind = sys.argv[1] if len(sys.argv) > 1 else "raymanager"
    if kind == "raymanager":
        result = measure_raymanager()
    elif kind == "bare":
        result = measure_bare()
    elif kind == "bare_loopback":
        result = measure_bare(loopback=True)
    else:
        raise SystemExit(
            f"usage: startup.py raymanager|bare|bare_loopback, got {kind!r}")
    print(json.dumps({"kind": kind, **result}))


if __name__ == "__main__":
    main()
