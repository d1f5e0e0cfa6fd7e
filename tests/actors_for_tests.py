"""Actors used by the tests. A module of its own so Ray workers can import it.

Failures are driven by the batch's first value and by marker files in a
directory from the config, so a failure happens once (or always) no matter
which actor process runs the batch.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from raymanager import RayActor


def first_value(batch: Any) -> int:
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    return int(np.asarray(batch).reshape(-1)[0])


class Echo(RayActor[Any, dict[str, Any]]):
    """Returns what it saw of each batch: enough to check cutting and transport."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.calls = 0
        self.state: Any = None

    def process_batch(self, batch: Any) -> dict[str, Any]:
        self.calls += 1
        delay = self.config.get("sleep_s", 0.0)
        if delay:
            time.sleep(delay)
        info: dict[str, Any] = {"pid": os.getpid(), "type": type(batch).__name__,
                                "chunk_size": self.chunk_size, "t": time.time()}
        if isinstance(batch, np.ndarray):
            info["rows"] = batch.tolist()
            info["writeable"] = bool(batch.flags.writeable)
            info["owns_data"] = bool(batch.flags.owndata)
        elif isinstance(batch, dict):
            info["rows"] = {k: np.asarray(v).tolist() for k, v in batch.items()}
            info["writeable"] = any(
                bool(v.flags.writeable) for v in batch.values() if isinstance(v, np.ndarray)
            )
        else:
            info["rows"] = list(batch)
        info["chunks"] = [len(chunk) for chunk in self.iter_chunks(batch)] if not isinstance(
            batch, dict) else None
        return info

    def call_count(self) -> int:
        return self.calls

    def set_state(self, value: Any) -> int:
        self.state = value
        return os.getpid()

    def get_state(self) -> Any:
        return self.state

    def pid(self) -> int:
        return os.getpid()


class Square(RayActor[Any, list[int]]):
    """Squares each value; sleeps sleep_s per batch. Fails on demand (see module doc)."""

    def process_batch(self, batch: Any) -> list[int]:
        values = np.asarray(batch)
        first = int(values.reshape(-1)[0])
        marks = Path(self.config.get("marks", "/nonexistent"))
        if first in self.config.get("raise_on", ()):
            raise ValueError(f"bad batch starting at {first}")
        if first in self.config.get("exit_once_on", ()) and _first_time(marks, f"exit-{first}"):
            os._exit(1)
        if first in self.config.get("exit_always_on", ()):
            os._exit(1)
        if first in self.config.get("sigkill_self_on", ()) and _first_time(marks, f"kill-{first}"):
            os.kill(os.getpid(), signal.SIGKILL)
        if first in self.config.get("hang_once_on", ()) and _first_time(marks, f"hang-{first}"):
            time.sleep(3600)
        if first in self.config.get("hang_always_on", ()):
            time.sleep(3600)
        delay = self.config.get("sleep_s", 0.0)
        if delay:
            time.sleep(delay)
        return [int(v) ** 2 for v in values.reshape(-1)]

    def pid(self) -> int:
        return os.getpid()


def _first_time(marks: Path, name: str) -> bool:
    try:
        fd = os.open(marks / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


class FailingConstructor(RayActor[Any, Any]):
    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        raise RuntimeError("constructor refuses: missing model file")

    def process_batch(self, batch: Any) -> Any:  # pragma: no cover - never built
        return batch


class PickyConfig(RayActor[Any, Any]):
    """Checks its config in the driver (validate_config)."""

    @classmethod
    def validate_config(cls, config: Any) -> None:
        if "scale" not in config:
            raise ValueError("PickyConfig needs config['scale']")

    def process_batch(self, batch: Any) -> Any:
        return [v * self.config["scale"] for v in batch]


class Niceness(RayActor[Any, int]):
    """Answers its process's niceness (RayConfig.worker_niceness)."""

    def niceness(self) -> int:
        return os.getpriority(os.PRIO_PROCESS, 0)

    def process_batch(self, batch: Any) -> int:
        return self.niceness()
