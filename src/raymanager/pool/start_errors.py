"""The errors a pool raises when its actors do not start, with what to check.

A constructor that raises is an :class:`ActorStartError` with the
constructor's own exception as ``__cause__``. A pool that does not start in
time is told apart by what Ray knows: actors that were placed and given a
process are still constructing (an ``ActorStartError`` saying so), actors
never placed are waiting for resources (``ResourceUnavailableError``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from raymanager.engine.slots import Slot
from raymanager.engine.wire import Failure
from raymanager.errors import (
    ActorStartError,
    PoolBrokenError,
    RemoteTraceback,
    ResourceUnavailableError,
)
from raymanager.pool.placement import largest_node_resources, requested_resources
from raymanager.ray_internals import actor_table_entry

__all__ = ["not_started_error", "start_error"]

logger = logging.getLogger("raymanager")


def start_error(actor_name: str, actor_config: Mapping[str, Any], failure: Failure
            ) -> ActorStartError:
    """The constructor's own exception as ``__cause__``, even when it is falsy."""
    error = ActorStartError(
        f"{actor_name}({actor_config!r}) raised "
        f"{failure.type_name} in its constructor",
        actor_class=actor_name,
    )
    cause = failure.exception if failure.exception is not None else RemoteTraceback(
        failure.traceback
    )
    cause.__cause__ = RemoteTraceback(failure.traceback)
    error.__cause__ = cause
    return error

def not_started_error(
    actor_name: str, num_actors: int, options: Mapping[str, Any], timeout_s: float,
    pending: list[Slot],
) -> PoolBrokenError:
    """Placed but still constructing (ActorStartError), or never placed (resources)."""
    requested = requested_resources(options)
    available = largest_node_resources()
    waiting = ", ".join(f"#{slot.index}" for slot in pending)
    created = _created_in_a_process(pending)
    if created:
        # The processes exist and run the constructor: resources are not the issue.
        return ActorStartError(
            f"{len(created)} of {num_actors} actors of {actor_name} ({waiting}) "
            f"were placed and their processes started, but their constructors had not "
            f"finished within {timeout_s:g} s; raise actor_start_timeout_s "
            "(RayConfig) or start_timeout_s (create_actor_pool) if they are slow on purpose",
            actor_class=actor_name,
        )
    return ResourceUnavailableError(
        f"{len(pending)} of {num_actors} actors of {actor_name} ({waiting}) were "
        f"not placed within {timeout_s:g} s; each asks for "
        f"{requested or 'no resources'}, the largest node has {available}, and other "
        "work may hold it",
        requested=requested,
        available=available,
    )


def _created_in_a_process(slots: list[Slot]) -> list[Slot]:
    """The slots whose actor Ray placed and gave a process (constructor running)."""
    try:
        placed = []
        for slot in slots:
            info = actor_table_entry(slot.handle) or {}
            pid = info.get("Pid") or info.get("pid")
            address = info.get("Address") or {}
            if pid or address.get("WorkerID", "").strip("0"):
                placed.append(slot)
        return placed
    except Exception:  # an internal API that moved: fall back to the general message
        logger.debug("actor table unavailable", exc_info=True)
        return []
