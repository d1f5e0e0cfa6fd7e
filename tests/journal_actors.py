"""Actors for the journal tests. A module of its own so Ray workers can import it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from raymanager import RayActor


class Total(RayActor[Any, int]):
    """The sum of a batch's values; with ``marks`` it leaves a file
    ``<run>-<first value>`` there for each batch it runs."""

    def process_batch(self, batch: Any) -> int:
        values = np.asarray(batch).reshape(-1)
        marks = self.config.get("marks")
        if marks:
            Path(marks, f"{self.config['run']}-{int(values[0])}").touch()
        time.sleep(float(self.config.get("sleep_s", 0.0)))
        return int(values.sum())
