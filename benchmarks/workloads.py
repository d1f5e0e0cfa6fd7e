"""The work every benchmark variant runs, importable by all worker kinds.

One function, :func:`process`, does the per-batch work for every variant
(serial loop, ``multiprocessing``, mpire, Ray tasks, Ray actors, Ray Data and
raymanager), so the variants differ only in how batches reach it:

- ``reps == 0``: trivial work, the float64 sum of the batch (W2, W3);
- ``reps > 0``: ``reps`` rounds of ``x = tanh(x @ MATRIX)`` on the batch, then
  the sum (W1; ``reps`` is calibrated so one batch takes ~10 ms serially).

Nothing here imports Ray at module level: ``multiprocessing`` and mpire
workers import this module too.

    >>> batch = np.ones((4, 64), np.float32)
    >>> process(batch, 0)
    256.0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from raymanager import RayActor

__all__ = [
    "COLUMNS",
    "MATRIX",
    "BenchActor",
    "PlainWorker",
    "data_batch",
    "make_data",
    "mpire_range",
    "process",
]

#: Columns of every benchmark array (float32, so one 128-row batch is 32 KiB).
COLUMNS = 64

#: The fixed 64x64 matrix of W1's matmul, scaled so tanh stays off saturation.
MATRIX = (np.random.default_rng(1234).standard_normal((COLUMNS, COLUMNS)) / 8.0).astype(
    np.float32
)


def process(batch: np.ndarray, reps: int) -> float:
    """The per-batch work: ``reps`` rounds of matmul + tanh, then the float64 sum."""
    x = batch
    for _ in range(reps):
        x = np.tanh(x @ MATRIX)
    return float(x.sum(dtype=np.float64))


def make_data(num_rows: int, seed: int = 0) -> np.ndarray:
    """A ``num_rows x 64`` float32 array of uniform [0, 1) values, filled in 64 MiB pieces."""
    rng = np.random.default_rng(seed)
    data = np.empty((num_rows, COLUMNS), dtype=np.float32)
    step = (64 * 2**20) // (COLUMNS * 4)
    for start in range(0, num_rows, step):
        stop = min(start + step, num_rows)
        rng.random((stop - start, COLUMNS), dtype=np.float32, out=data[start:stop])
    return data


def mpire_range(shared: np.ndarray, start: int, stop: int, reps: int) -> float:
    """mpire task: one batch read from the fork-shared array (zero-copy)."""
    return process(shared[start:stop], reps)


def data_batch(batch: Mapping[str, np.ndarray], reps: int) -> dict[str, np.ndarray]:
    """Ray Data ``map_batches`` function: one output row per input batch."""
    return {"result": np.array([process(batch["data"], reps)], dtype=np.float64)}


class BenchActor(RayActor[np.ndarray, float]):
    """raymanager actor: :func:`process` with the ``reps`` set by :meth:`set_reps`."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.reps = int(self.config.get("reps", 0))

    def set_reps(self, reps: int) -> int:
        """Switch the workload (broadcast with ``replay_on_restart=True``)."""
        self.reps = reps
        return os.getpid()

    def process_batch(self, batch: np.ndarray) -> float:
        return process(batch, self.reps)


class PlainWorker:
    """Plain class for ``ray.remote``: the actor of the ``ray.util.ActorPool`` variant."""

    def process(self, batch: np.ndarray, reps: int) -> float:
        """One batch of work."""
        return process(batch, reps)

    def ping(self) -> int:
        """Answer once the actor is up."""
        return os.getpid()
