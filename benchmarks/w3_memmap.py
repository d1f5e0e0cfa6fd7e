"""W3 with a file-backed array: shared by path versus the same array in RAM.

    python benchmarks/w3_memmap.py [--gib 2]

Writes a float32 array of 64 columns (2 GiB by default) to a temporary .npy
file, then runs W3's work (128 batches, ``batch.sum()``) on 2 actors over
``np.load(path, mmap_mode="r")`` (workers map the file by path) and over the
same array loaded into RAM. Reports the wall time and the extra memory of the
call (``benchmarks/memory.py``: PSS of every process plus the object store in
use), median of 3 for the memmap. Results are checked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from memory import measure_peak
from workloads import BenchActor

from raymanager import BatchConfig, RayConfig, RayManager


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="size of the array in GiB")
    args = parser.parse_args()
    rows = int(args.gib * 2**30) // (64 * 4)
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "w3.npy")
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, 64))
    step = max(1, rows // 16)
    for start in range(0, rows, step):
        array[start:start + step] = np.float32(1.0)
    array.flush()
    del array
    expected = [float(64 * n) for n in np.diff([*range(0, rows, rows // 128), rows])]
    out: dict[str, dict[str, float]] = {}
    try:
        with RayManager(RayConfig(num_cpus=2, object_store_memory=3 * 2**30)) as manager:
            pool = manager.create_actor_pool(BenchActor, {}, num_actors=2)
            config = BatchConfig(batch_size=rows // 128, num_parallel=2)
            mapped = np.load(path, mmap_mode="r")

            def store_used() -> int:
                return manager.object_store_stats()["used"]

            manager.process_in_parallel(pool, mapped, config)  # warm-up: page cache, maps
            walls, extras = [], []
            for _ in range(3):
                with measure_peak(store_used) as peak:
                    began = time.perf_counter()
                    results = manager.process_in_parallel(pool, mapped, config)
                    walls.append(time.perf_counter() - began)
                extras.append(peak.extra / 2**30)
                assert results[:len(expected)] == expected[:len(results)]
            out["memmap"] = {"wall_s": sorted(walls)[1], "extra_gib": sorted(extras)[1]}
            in_ram = np.array(mapped)
            with measure_peak(store_used) as peak:
                began = time.perf_counter()
                results = manager.process_in_parallel(pool, in_ram, config)
                out["in_ram"] = {"wall_s": time.perf_counter() - began,
                                 "extra_gib": peak.extra / 2**30}
            assert results[:len(expected)] == expected[:len(results)]
    finally:
        os.unlink(path)
        os.rmdir(folder)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
