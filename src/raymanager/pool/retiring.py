"""Small pieces of an actor's end: salvaging finished calls, close-then-kill, sizes.

``close_then_kill`` gives retired actors that override ``RayActor.close`` the
time to run it, then kills them; ``salvage`` takes the result of a call that
finished before its actor was lost.
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import time
from typing import Any

import ray

from raymanager.engine.slots import Call

__all__ = ["check_size", "close_then_kill", "first_line", "salvage"]

logger = logging.getLogger("raymanager")


def salvage(call: Call) -> tuple[bool, Any]:
    """(True, result) when ``call`` finished before its actor was lost."""
    ready, _ = ray.wait([call.ref], timeout=0)
    if not ready:
        return False, None
    try:
        return True, ray.get(call.ref)
    except Exception:
        return False, None


def check_size(low: int, high: int) -> None:
    """A pool's size range: ``0 <= min <= max``, ``max >= 1``."""
    for name, value in (("min", low), ("max", high)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"num_actors {name} must be an int >= 0, got {value!r}")
    if high < 1 or low > high:
        got = repr(low) if low == high else f"({low!r}, {high!r})"
        raise ValueError(
            f"num_actors must be an int >= 1 or a (min, max) pair with 0 <= min <= max "
            f"and max >= 1, got {got}"
        )


def close_then_kill(
    closing: list[tuple[Any, Any, float]], actor_name: str, *, wait: bool
) -> list[tuple[Any, Any, float]]:
    """Kill retired actors whose close() returned or ran out of time; the rest stay.

    With ``wait``, wait for every close() up to its time limit, then kill all.
    """
    if not closing:
        return []
    refs = [ref for _, ref, _ in closing]
    if wait:
        timeout = max(0.0, max(at for _, _, at in closing) - time.monotonic())
        with contextlib.suppress(Exception):
            ray.wait(refs, num_returns=len(refs), timeout=timeout)
    done_refs: set[Any] = set()
    with contextlib.suppress(Exception):  # Ray already shut down: kill all
        done_refs = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
    now = time.monotonic()
    keep = []
    for handle, ref, kill_at in closing:
        if ref in done_refs or now >= kill_at or wait:
            if ref not in done_refs:
                logger.warning("an actor of %s did not close() in time: killed", actor_name)
            with contextlib.suppress(Exception):
                ray.kill(handle, no_restart=True)
        else:
            keep.append((handle, ref, kill_at))
    return keep


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
