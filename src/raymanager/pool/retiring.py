"""Small pieces of an actor's end: salvaging finished calls, close-then-kill.

``close_then_kill`` gives retired actors that override ``RayActor.close`` the
time to run it, then kills them; ``salvage`` takes the result of a call that
finished before its actor was lost.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import ray

from raymanager.engine.slots import Call

__all__ = ["close_then_kill", "salvage"]

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
