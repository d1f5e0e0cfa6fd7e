"""Chaos: thousands of batches while a seeded killer SIGKILLs the pool's workers.

A seeded killer picks a random live actor process of the pool at random
points of the run and kills it by PID, the way the OOM killer or a lost node would.
Every run must still yield every batch's result exactly once, in input order,
and right, with the default ``on_error="raise"``: a single lost batch would
raise, so nothing here needs ``on_error="continue"``.

The same run without kills is timed too; the slowdown ratio and the kills
survived are printed (``pytest -s``), and written as JSON to the file named by
``RAYMANAGER_CHAOS_RESULTS`` when that is set (never into the repository).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chaos_actors import ChaosWork, SharedWork
from killer import MAX_KILLS, Killer, is_live_ray_worker

from raymanager import ActorPool, BatchConfig, BatchError, PoolState, RayManager

SEED = 1234
NUM_BATCHES = 3000
BATCH = 4
WORK_S = 0.001
MIN_KILLS = 5
#: A kill charges at most one call with a try, so with this many retries no
#: batch can run out of tries, whichever calls the killer happens to hit.
MAX_RETRIES = MAX_KILLS
RESULTS_ENV = "RAYMANAGER_CHAOS_RESULTS"


def _timed_run(
    manager: RayManager, pool: ActorPool, data: Any, config: BatchConfig
) -> tuple[list[Any], float]:
    began = time.perf_counter()
    results = list(manager.imap(pool, data, config))
    return results, time.perf_counter() - began


def _chaos_run(
    manager: RayManager, pool: ActorPool, data: Any, config: BatchConfig, seed: int
) -> tuple[list[Any], float, Killer]:
    killer = Killer(pool, seed, -(-len(data) // config.batch_size))
    began = time.perf_counter()
    results = []
    for result in manager.imap(pool, data, config):
        results.append(result)
        killer.maybe_kill(len(results))
    return results, time.perf_counter() - began, killer


def _check_pool_after_chaos(manager: RayManager, pool: ActorPool, killer: Killer) -> None:
    # An actor killed after its last batch of the run is only found dead by
    # the next call on the pool: a broadcast, which replaces it.
    pids = manager.broadcast(pool, "pid")
    assert pool.state is PoolState.RUNNING
    assert pids == pool.pids()
    assert all(is_live_ray_worker(pid) for pid in pids)
    assert set(pids).isdisjoint(killer.killed)


def _record(name: str, numbers: dict[str, Any]) -> None:
    print(f"\nchaos[{name}]: " + ", ".join(f"{k}={v}" for k, v in numbers.items()))
    target = os.environ.get(RESULTS_ENV)
    if not target:
        return
    results_file = Path(target)
    try:
        recorded = json.loads(results_file.read_text())
    except (OSError, ValueError):
        recorded = {}
    recorded[name] = numbers
    results_file.write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n")


pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.timeout(120)
def test_random_sigkills_lose_no_batch(manager: RayManager) -> None:
    pool = manager.create_actor_pool(ChaosWork, {"work_s": WORK_S}, num_actors=3)
    data = np.arange(NUM_BATCHES * BATCH)  # small: travels inline, a group at a time
    expected = [
        (i, BATCH, int(data[i : i + BATCH].sum())) for i in range(0, len(data), BATCH)
    ]
    config = BatchConfig(batch_size=BATCH, num_parallel=3, max_retries=MAX_RETRIES)

    calm, calm_s = _timed_run(manager, pool, data, config)
    assert calm == expected
    assert pool.restarts == 0

    results, chaos_s, killer = _chaos_run(manager, pool, data, config, SEED)

    assert not any(isinstance(r, BatchError) for r in results)
    assert len(results) == NUM_BATCHES
    assert results == expected  # every batch exactly once, in order, right
    assert len(killer.killed) >= MIN_KILLS, f"only {len(killer.killed)} kills landed"
    _check_pool_after_chaos(manager, pool, killer)
    # Every kill was seen and replaced once; nothing else was replaced.
    assert pool.restarts == len(killer.killed)
    _record("sigkill", {
        "batches": NUM_BATCHES, "actors": 3, "work_s_per_batch": WORK_S,
        "kills_survived": len(killer.killed), "restarts": pool.restarts,
        "seconds_without_kills": round(calm_s, 3), "seconds_with_kills": round(chaos_s, 3),
        "slowdown": round(chaos_s / calm_s, 2),
    })


@pytest.mark.timeout(120)
def test_random_sigkills_with_timeout_and_shared_array(manager: RayManager) -> None:
    pool = manager.create_actor_pool(SharedWork, {"work_s": WORK_S}, num_actors=2)
    batch = 64
    # 2,000 batches of 64 rows x 2 int64 columns: 2 MiB, shared through the
    # object store once and read as zero-copy slices in the actors.
    data = np.arange(2000 * batch * 2, dtype=np.int64).reshape(-1, 2)
    assert data.nbytes >= 1024 * 1024
    expected = [
        (int(data[i, 0]), batch, int(data[i : i + batch].sum()), False, False)
        for i in range(0, len(data), batch)
    ]
    config = BatchConfig(
        batch_size=batch, num_parallel=2, timeout_s=5.0, max_retries=MAX_RETRIES
    )

    calm, calm_s = _timed_run(manager, pool, data, config)
    assert calm == expected
    assert pool.restarts == 0

    results, chaos_s, killer = _chaos_run(manager, pool, data, config, SEED + 1)

    assert not any(isinstance(r, BatchError) for r in results)
    assert results == expected  # in order, right, and every batch a read-only view
    assert len(killer.killed) >= MIN_KILLS, f"only {len(killer.killed)} kills landed"
    _check_pool_after_chaos(manager, pool, killer)
    # A batch that overran timeout_s on a starved machine also costs a restart.
    assert pool.restarts >= len(killer.killed)
    _record("sigkill_timeout_shared", {
        "batches": len(expected), "actors": 2, "work_s_per_batch": WORK_S,
        "shared_bytes": int(data.nbytes), "timeout_s": config.timeout_s,
        "kills_survived": len(killer.killed), "restarts": pool.restarts,
        "seconds_without_kills": round(calm_s, 3), "seconds_with_kills": round(chaos_s, 3),
        "slowdown": round(chaos_s / calm_s, 2),
    })
