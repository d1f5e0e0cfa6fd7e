"""Actors for the chaos and fuzz tests. A module of its own so Ray workers can import it.

Both are deterministic in their input, so a batch re-run on a replacement
actor gives the same answer, and the driver can compute every expected result.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from raymanager import RayActor
from raymanager.actors.base import num_rows


class ChaosWork(RayActor[Any, tuple[int, int, int]]):
    """Works ``work_s`` per batch (sleeping: 2 cores are shared with the driver).

    Returns ``(first value, rows, sum of values)`` of a 1-d integer batch: enough
    to tell a lost, duplicated, reordered or mis-cut batch from a good one.
    """

    def process_batch(self, batch: Any) -> tuple[int, int, int]:
        values = np.asarray(batch)
        time.sleep(float(self.config.get("work_s", 0.001)))
        return int(values[0]), len(values), int(values.sum())

    def pid(self) -> int:
        return os.getpid()


class SharedWork(RayActor[Any, tuple[int, int, int, bool, bool]]):
    """Like :class:`ChaosWork` for a shared (object store) array.

    Also reports ``writeable`` and ``owndata`` of the batch: a zero-copy slice
    of the stored array is read-only and does not own its memory.
    """

    def process_batch(self, batch: Any) -> tuple[int, int, int, bool, bool]:
        time.sleep(float(self.config.get("work_s", 0.001)))
        assert isinstance(batch, np.ndarray)
        return (
            int(batch[0, 0]),
            len(batch),
            int(batch.sum()),
            bool(batch.flags.writeable),
            bool(batch.flags.owndata),
        )

    def pid(self) -> int:
        return os.getpid()


class RowCounter(RayActor[Any, dict[str, Any]]):
    """Counts the rows of any batch; says what type it got and where."""

    def process_batch(self, batch: Any) -> dict[str, Any]:
        return {"rows": num_rows(batch), "type": type(batch).__name__, "pid": os.getpid()}



class UnevenWork(RayActor[Any, int]):
    """Sleeps 0-4 ms per batch, a duration fixed by the batch's first value, and
    returns 3 x that value; raises ``ValueError`` for values in ``raise_at``.

    Uneven, timed batches: what ``imap_unordered`` hung on in engine v2.
    """

    def process_batch(self, batch: Any) -> int:
        value = int(np.asarray(batch).ravel()[0])
        if value in self.config.get("raise_at", ()):
            raise ValueError(f"bad row {value}")
        time.sleep((value * 7919 % 5) / 1000)
        return 3 * value

    def pid(self) -> int:
        return os.getpid()
