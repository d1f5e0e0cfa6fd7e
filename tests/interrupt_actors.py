"""Actors of tests/test_interrupt.py (a module of its own, so Ray workers can import it)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from raymanager import RayActor


def _first(batch: Any) -> int:
    return int(np.asarray(batch).reshape(-1)[0])


class Slow(RayActor[Any, int]):
    """Sleeps ``sleep_s`` per batch; a batch starting at a value in ``hang_on`` sleeps an hour."""

    def process_batch(self, batch: Any) -> int:
        first = _first(batch)
        time.sleep(3600.0 if first in self.config.get("hang_on", ()) else self.config["sleep_s"])
        return 2 * first


class SlowAsync(RayActor[Any, int]):
    """``async def`` twin of :class:`Slow`: waits as I/O would."""

    async def process_batch(self, batch: Any) -> int:  # type: ignore[override]
        first = _first(batch)
        await asyncio.sleep(3600.0 if first in self.config.get("hang_on", ()) else
                            self.config["sleep_s"])
        return 2 * first
