"""What a pool is doing: per-actor counters, throughput, and the pools on a cluster.

Our Ray actors are named ``raymanager/<pool>/<class>/<slot>.<generation>``, so
any driver connected to the cluster can list the pools alive on it
(:func:`list_pools`, ``raymanager info --address``).
"""

from __future__ import annotations

import collections
import time
from typing import Any, Protocol

import ray

from raymanager.engine.slots import Slot

__all__ = [
    "ACTOR_NAME_PREFIX",
    "THROUGHPUT_WINDOW_S",
    "Throughput",
    "list_pools",
    "parse_actor_name",
    "pool_stats",
]

#: Ray actor names of our actors start with this: raymanager/<pool>/<class>/<slot>.<gen>.
ACTOR_NAME_PREFIX = "raymanager/"
#: Seconds of finished batches that stats()["batches_per_s"] averages over.
THROUGHPUT_WINDOW_S = 60.0


class Counted(Protocol):
    """What :func:`pool_stats` reads of a pool."""

    @property
    def created(self) -> float: ...

    @property
    def restarts(self) -> int: ...

    @property
    def recycled(self) -> int: ...

    @property
    def retries(self) -> int: ...

    @property
    def promoted(self) -> int: ...


    @property
    def slots(self) -> list[Slot]: ...

    @property
    def spares(self) -> list[Slot]: ...

    def queued_batches(self) -> int: ...


class Throughput:
    """Batches finished over the last THROUGHPUT_WINDOW_S seconds."""

    def __init__(self) -> None:
        self._finished: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, batches: int) -> None:
        now = time.monotonic()
        self._finished.append((now, batches))
        while self._finished and self._finished[0][0] < now - THROUGHPUT_WINDOW_S:
            self._finished.popleft()

    def per_second(self, age: float) -> float:
        now = time.monotonic()
        recent = sum(n for t, n in self._finished if t >= now - THROUGHPUT_WINDOW_S)
        return recent / max(min(THROUGHPUT_WINDOW_S, age), 1e-9)


def pool_stats(pool: Counted, throughput: Throughput) -> dict[str, Any]:
    """``pool.stats()`` (lock held).

    ``actors``: one dict per slot (``pid``, ``node_id``, ``state``, ``batches``
    finished, ``busy_fraction`` of the pool's lifetime spent in
    ``process_batch``, ``restarts``). Pool-wide: ``restarts``, ``recycled``,
    ``retries`` (tries charged to batches), ``in_flight_calls``,
    ``queued_batches`` (waiting for an actor, in all runs on the pool),
    ``batches_per_s`` over the last minute; ``spares_ready`` (warm spare
    actors, ``spare_actors``) and ``promoted`` (spares that took a slot's place).
    """
    age = max(time.monotonic() - pool.created, 1e-9)
    return {
        "actors": [
            {
                "slot": slot.index,
                "pid": slot.pid,
                "node_id": slot.node_id,
                "state": slot.state.value,
                "batches": slot.batches,
                "busy_fraction": min(1.0, slot.busy_s / age),
                "restarts": slot.restarts,
            }
            for slot in pool.slots
        ],
        "restarts": pool.restarts,
        "recycled": pool.recycled,
        "retries": pool.retries,
        "in_flight_calls": sum(len(slot.calls) for slot in pool.slots),
        "queued_batches": pool.queued_batches(),
        "batches_per_s": throughput.per_second(age),
        "spares_ready": sum(1 for spare in pool.spares if spare.pid is not None),
        "promoted": pool.promoted,
    }


def parse_actor_name(name: str) -> tuple[str, str] | None:
    """``(pool id, actor class)`` of one of our actors' Ray names; None for another's.

    >>> parse_actor_name("raymanager/3f2a9c1d/TrainingActor/0.1")
    ('3f2a9c1d', 'TrainingActor')
    >>> parse_actor_name("someone-else") is None
    True
    """
    if not name.startswith(ACTOR_NAME_PREFIX):
        return None
    pool_id, class_name, _ = name[len(ACTOR_NAME_PREFIX):].split("/", 2)
    return pool_id, class_name


def list_pools() -> list[dict[str, Any]]:
    """The pools of every raymanager on this Ray cluster, from its named actors.

    One dict per pool: ``pool`` (id), ``actor_class``, ``actors`` alive,
    ``namespace``. Works from any driver connected to the cluster.

    Example::

        >>> list_pools()   # doctest: +SKIP
        [{'pool': '3f2a9c1d', 'actor_class': 'TrainingActor', 'actors': 4, 'namespace': ...}]
    """
    found: dict[tuple[str, str, str], int] = {}
    for entry in ray.util.list_named_actors(all_namespaces=True):
        name = entry["name"] if isinstance(entry, dict) else str(entry)
        parsed = parse_actor_name(name)
        if parsed is None:
            continue
        pool_id, class_name = parsed
        namespace = entry.get("namespace", "") if isinstance(entry, dict) else ""
        key = (pool_id, class_name, namespace)
        found[key] = found.get(key, 0) + 1
    return [
        {"pool": pool_id, "actor_class": class_name, "actors": count, "namespace": namespace}
        for (pool_id, class_name, namespace), count in sorted(found.items())
    ]
