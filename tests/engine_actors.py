"""Actors for the engine tests. A module of its own so Ray workers can import it.

Each misbehaves on the batch whose first value is named in its config, so the
driver knows which batch is the culprit whatever actor runs it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from raymanager import RayActor


def _first(batch: Any) -> int:
    return int(np.asarray(batch).reshape(-1)[0])


class Misbehave(RayActor[Any, Any]):
    """Doubles each value; on the batch starting at a configured value it instead
    exits the process, hangs, returns an unpicklable object, raises
    KeyboardInterrupt or calls sys.exit. ``sleep_on`` maps a first value to
    seconds to sleep; ``big_result`` returns a 200 KiB array per batch.
    ``sigterm_once_on`` sends SIGTERM to its own process on that batch, once
    (while the file ``sigterm_marker`` does not exist), as a drained node's
    raylet does: Ray's handler then raises SystemExit inside the batch.
    """

    def process_batch(self, batch: Any) -> Any:
        first = _first(batch)
        config = self.config
        if first in config.get("exit_on", ()):
            os._exit(1)
        if first in config.get("hang_on", ()):
            time.sleep(3600)
        if first in config.get("unpicklable_on", ()):
            return threading.Lock()
        if first in config.get("interrupt_on", ()):
            raise KeyboardInterrupt
        if first in config.get("sys_exit_on", ()):
            sys.exit(3)
        marker = config.get("sigterm_marker")
        if first in config.get("sigterm_once_on", ()) and not Path(marker).exists():
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGTERM)  # our own actor's process
            time.sleep(5)  # the handler raises in here
        delay = config.get("sleep_on", {}).get(str(first), config.get("sleep_s", 0.0))
        if delay:
            time.sleep(delay)
        if config.get("big_result"):
            return np.full(200 * 1024 // 8, first, dtype=np.int64)
        return [2 * int(v) for v in np.asarray(batch).reshape(-1)]

    def pid(self) -> int:
        return os.getpid()

    def echo(self, value: Any) -> Any:
        return value

    def fail(self) -> None:
        raise ValueError("broadcast method refuses")


class Falsy(Exception):
    """An exception that is falsy, as some libraries' exceptions are."""

    def __bool__(self) -> bool:
        return False


class FalsyConstructor(RayActor[Any, Any]):
    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        raise Falsy("falsy but real")

    def process_batch(self, batch: Any) -> Any:  # pragma: no cover - never built
        return batch


class FlakyStart(RayActor[Any, Any]):
    """Fails to construct while the file ``armed`` exists; with ``once`` it
    removes the file as it fails, so exactly one start fails."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        armed = Path(self.config["armed"])
        if armed.exists():
            if self.config.get("once"):
                armed.unlink(missing_ok=True)
            raise RuntimeError("device not free yet")

    def process_batch(self, batch: Any) -> Any:
        time.sleep(float(self.config.get("sleep_s", 0.0)))
        return [2 * int(v) for v in np.asarray(batch).reshape(-1)]

    def pid(self) -> int:
        return os.getpid()


class Unpickles(RayActor[Any, Any]):
    """Returns, for batch ``bad``, an object that pickles but fails to unpickle."""

    def process_batch(self, batch: Any) -> Any:
        first = _first(batch)
        if first == self.config.get("bad"):
            return BreaksOnLoad()
        return first


def _refuse() -> None:
    raise RuntimeError("this object cannot be rebuilt")


class BreaksOnLoad:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


class RowsSeen(RayActor[Any, tuple[str, list[int]]]):
    """Says what type of batch it got and the first column's values."""

    def process_batch(self, batch: Any) -> tuple[str, list[int]]:
        kind = type(batch).__name__
        if kind == "Table":
            return kind, batch.column(0).to_pylist()
        if kind == "DataFrame":
            return kind, [int(v) for v in batch.iloc[:, 0]]
        return kind, [int(v) for v in batch]


class Closing(RayActor[Any, tuple[int, int]]):
    """Returns (pid, 2 * value); ``close()`` leaves a file ``closed-<pid>`` in ``marks``."""

    def process_batch(self, batch: Any) -> tuple[int, int]:
        return os.getpid(), 2 * _first(batch)

    def close(self) -> None:
        Path(self.config["marks"], f"closed-{os.getpid()}").touch()


class AsyncIO(RayActor[Any, tuple[int, int]]):
    """``async def process_batch``: waits ``wait_s`` as I/O would; returns
    (2 * value, how many batches this actor had in flight when it started)."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.in_flight = 0

    async def process_batch(self, batch: Any) -> tuple[int, int]:  # type: ignore[override]
        import asyncio

        self.in_flight += 1
        seen = self.in_flight
        await asyncio.sleep(float(self.config.get("wait_s", 0.1)))
        self.in_flight -= 1
        return 2 * _first(batch), seen


class Recorded(RayActor[Any, dict[str, Any]]):
    """Leaves a file ``<run>-<value>`` in ``marks`` for each batch it runs; returns a
    result of every kind a journal stores."""

    def process_batch(self, batch: Any) -> dict[str, Any]:
        value = _first(batch)
        Path(self.config["marks"], f"{self.config['run']}-{value}").touch()
        time.sleep(float(self.config.get("sleep_s", 0.0)))
        return {"value": value, "squares": np.asarray(batch) ** 2, "pair": (value, "x"),
                "scalar": np.float32(value) / 2, "none": None}


class ThreadSafe(RayActor[Any, tuple[int, int]]):
    """A thread-safe sync ``process_batch`` (its counter under a lock); returns
    (2 * value, batches in flight in this actor when it started)."""

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.lock = threading.Lock()
        self.in_flight = 0

    def process_batch(self, batch: Any) -> tuple[int, int]:
        with self.lock:
            self.in_flight += 1
            seen = self.in_flight
        time.sleep(float(self.config.get("wait_s", 0.1)))
        with self.lock:
            self.in_flight -= 1
        return 2 * _first(batch), seen


class WhereFrom(RayActor[Any, tuple[float, str | None]]):
    """Returns (sum of the batch, the file it is mapped from, or None)."""

    def process_batch(self, batch: Any) -> tuple[float, str | None]:
        return float(np.asarray(batch).sum()), getattr(batch, "filename", None)
