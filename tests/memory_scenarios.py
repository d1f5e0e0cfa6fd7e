"""Memory scenarios, each in its own process with a small object store.

``python memory_scenarios.py NAME`` prints one ``RESULT {json}`` line; see
tests/test_memory.py. Peak memory is sampled with psutil every 10 ms.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import psutil

from raymanager import BatchConfig, RayActor, RayConfig, RayManager

STORE = 100 * 1024 * 1024


class RowSum(RayActor[Any, float]):
    def process_batch(self, batch: Any) -> float:
        return float(np.asarray(batch, dtype=np.float64).sum())


class PeakRSS:
    """Peak resident memory of this process, sampled in a thread."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def generator_10m() -> dict[str, Any]:
    rows = 10_000_000

    def numbers() -> Iterator[int]:
        yield from range(rows)

    with RayManager(RayConfig(num_cpus=2, object_store_memory=STORE)) as manager:
        pool = manager.create_actor_pool(RowSum, {}, num_actors=2)
        started = time.monotonic()
        with PeakRSS() as peak:
            total = 0.0
            batches = 0
            for value in manager.imap(pool, numbers(), BatchConfig(batch_size=1000)):
                total += value
                batches += 1
        return {"rows": rows, "batches": batches, "correct": total == rows * (rows - 1) / 2,
                "driver_peak_growth_mb": peak.growth_mb, "wall_s": time.monotonic() - started}


def array_larger_than_store() -> dict[str, Any]:
    data = np.ones((3 * STORE // 8 // 64, 64))  # 3x the object store, float64
    with RayManager(RayConfig(num_cpus=2, object_store_memory=STORE)) as manager:
        pool = manager.create_actor_pool(RowSum, {}, num_actors=2)
        started = time.monotonic()
        with PeakRSS() as peak:
            results = manager.process_in_parallel(
                pool, data, BatchConfig(batch_size=4096, max_inflight_bytes=32 * 2**20))
        stats = manager.object_store_stats()
        return {"array_mb": data.nbytes / 2**20, "store_mb": STORE / 2**20,
                "batches": len(results), "expected_batches": -(-len(data) // 4096),
                "correct": sum(results) == float(data.size),
                "driver_peak_growth_mb": peak.growth_mb, "wall_s": time.monotonic() - started,
                "store_used_after": stats["used"]}


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = {
    "generator_10m": generator_10m,
    "array_larger_than_store": array_larger_than_store,
}

if __name__ == "__main__":
    print("RESULT " + json.dumps(SCENARIOS[sys.argv[1]]()), flush=True)
