"""Memory: bounded driver memory for endless inputs, arrays bigger than the object store,
and the object store report and warning."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
import ray
import scenarios
from actors_for_tests import Square

from raymanager import RayConfig, RayManager


def run_scenario(name: str) -> dict[str, Any]:
    return scenarios.run_scenario("memory_scenarios.py", name)


def test_generator_of_ten_million_rows_runs_in_bounded_driver_memory() -> None:
    result = run_scenario("generator_10m")
    assert result["batches"] == 10_000 and result["correct"]
    # Holding the 10M ints at once would take ~360 MB (a list plus int objects).
    assert result["driver_peak_growth_mb"] < 200


def test_array_three_times_the_object_store_completes() -> None:
    result = run_scenario("array_larger_than_store")
    assert result["array_mb"] == 3 * result["store_mb"]
    assert result["batches"] == result["expected_batches"] and result["correct"]


def test_object_store_warning_above_threshold(ray_session: RayManager,
                                              caplog: pytest.LogCaptureFixture) -> None:
    manager = RayManager(RayConfig(object_store_warn_fraction=0.05))
    try:
        pool = manager.create_actor_pool(Square, {}, num_actors=1)
        ballast = ray.put(np.zeros(60 * 2**20, dtype=np.uint8))  # 60 MB of a 300 MB store
        with caplog.at_level(logging.WARNING, logger="raymanager"):
            manager.process_in_parallel(pool, [1, 2, 3])
        assert "object store is" in caplog.text and "full" in caplog.text
        stats = manager.object_store_stats()
        assert stats["used"] >= 60 * 2**20 and stats["total"] >= stats["used"]
        del ballast
    finally:
        manager.shutdown()
