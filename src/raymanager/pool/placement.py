"""Where a pool's actors go: resource checks and spreading over live nodes.

Ray's own ``SPREAD`` strategy is best effort: with actors that reserve no
CPU it often puts a whole pool on one node. ``placement="spread"`` therefore
picks the node itself (the live node holding the fewest of the pool's actors)
and pins the actor there with hard node affinity. Ray keeps listing a node
that was removed by force as alive for ~15 s, so nodes where an actor of ours
just died with its node are avoided for a while (:class:`SuspectNodes`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import ray

from raymanager.errors import ResourceUnavailableError
from raymanager.ray_internals import (
    alive_nodes,
    autoscaler_may_add_nodes,
    draining_node_ids,
    free_resources_per_node,
)

__all__ = [
    "ACTOR_PROCESS_MIN_BYTES",
    "SuspectNodes",
    "check_capacity",
    "check_feasible",
    "draining_nodes",
    "feasible_nodes",
    "has_room",
    "largest_node_resources",
    "live_node_ids",
    "requested_resources",
    "spread_target",
]

#: Seconds a node where an actor died with its node is not chosen again.
SUSPECT_SECONDS = 60.0
#: Memory of its own that an actor process needs at the least, whatever it
#: reserves: a Ray worker holding a bare RayActor measured 59 MiB USS (Ray
#: 2.60, Linux); a floor under it, so that a pool refused for memory surely
#: could not fit.
ACTOR_PROCESS_MIN_BYTES = 48 * 1024 * 1024


def requested_resources(options: Mapping[str, Any]) -> dict[str, float]:
    """Resources one actor reserves, in Ray's names, from its Ray options.

    >>> requested_resources({"num_cpus": 1, "num_gpus": 0})
    {'CPU': 1.0}
    """
    requested: dict[str, float] = {}
    if options.get("num_cpus"):
        requested["CPU"] = float(options["num_cpus"])
    if options.get("num_gpus"):
        requested["GPU"] = float(options["num_gpus"])
    if options.get("memory"):
        requested["memory"] = float(options["memory"])
    for name, amount in (options.get("resources") or {}).items():
        requested[name] = float(amount)
    return requested


def live_node_ids() -> set[str]:
    """IDs of the nodes Ray currently lists as alive."""
    return {str(node["NodeID"]) for node in alive_nodes()}


def largest_node_resources() -> dict[str, float]:
    """The largest amount of each resource on any one live node."""
    largest: dict[str, float] = {}
    for node in alive_nodes():
        for name, amount in node.get("Resources", {}).items():
            if name.startswith("node:") or name.endswith("_group"):
                continue
            largest[name] = max(largest.get(name, 0.0), float(amount))
    return largest


def feasible_nodes(requested: Mapping[str, float]) -> list[str]:
    """IDs of the live nodes whose total resources could host one actor, sorted."""
    nodes = []
    for node in alive_nodes():
        total = node.get("Resources", {})
        if all(float(total.get(name, 0.0)) >= amount for name, amount in requested.items()):
            nodes.append(str(node["NodeID"]))
    return sorted(nodes)


def check_feasible(options: Mapping[str, Any], actor_name: str) -> None:
    """Fail at once when no node of the cluster could ever host one actor."""
    requested = requested_resources(options)
    if not requested:
        return
    largest = largest_node_resources()
    missing = {name: amount for name, amount in requested.items()
               if largest.get(name, 0.0) < amount}
    if missing:
        raise ResourceUnavailableError(
            f"each {actor_name} asks for {requested}, but no node of this Ray cluster has that "
            f"much of {sorted(missing)}: the largest node offers "
            f"{ {k: largest.get(k, 0.0) for k in requested} }",
            requested=requested,
            available=largest,
        )


def total_resources() -> dict[str, float]:
    """Every resource of the live nodes, summed over the cluster."""
    total: dict[str, float] = {}
    for node in alive_nodes():
        for name, amount in node.get("Resources", {}).items():
            if name.startswith("node:") or name.endswith("_group"):
                continue
            total[name] = total.get(name, 0.0) + float(amount)
    return total


def check_capacity(options: Mapping[str, Any], count: int, max_actors: int,
                   actor_name: str) -> None:
    """Refuse at once a pool whose ``count`` actors could never all run on this cluster.

    Its actors together ask for more of a resource than all the live nodes
    have (each actor is a worker process of at least ACTOR_PROCESS_MIN_BYTES
    of memory, even one that reserves nothing), and no autoscaler could add
    nodes. Where an autoscaler may, nothing is refused here: the start waits
    for it up to ``actor_start_timeout_s``.
    """
    each = requested_resources(options)
    each["memory"] = max(each.get("memory", 0.0), float(ACTOR_PROCESS_MIN_BYTES))
    total = total_resources()
    short = {name: count * amount for name, amount in each.items()
             if count * amount > total.get(name, 0.0)}
    if not short:
        return
    try:
        if autoscaler_may_add_nodes():
            return
    except Exception:  # an internal API that moved: an autoscaler may exist, let it try
        return
    asked = ", ".join(f"{_amount(name, amount)}" for name, amount in sorted(short.items()))
    has = ", ".join(f"{_amount(name, total.get(name, 0.0))}" for name in sorted(short))
    per_process = (" (each actor is a worker process of at least "
                   f"{ACTOR_PROCESS_MIN_BYTES >> 20} MiB)") if "memory" in short else ""
    raise ResourceUnavailableError(
        f"{count} actors of {actor_name} need {asked} together{per_process}, but this Ray "
        f"cluster has {has} in all and no autoscaler to add nodes; ask for fewer actors, "
        f"or make the pool elastic, num_actors=(1, {max_actors}): it grows while the "
        "cluster has room",
        requested=each,
        available=total,
    )


def _amount(name: str, amount: float) -> str:
    if name in ("memory", "object_store_memory"):
        return f"{amount / 2**30:.1f} GiB of {name}"
    return f"{amount:g} {name}"


def has_room(requested: Mapping[str, float]) -> bool:
    """Whether the cluster has the resources for one more actor free now."""
    if not requested:
        return True  # an actor that reserves nothing always fits
    free = ray.available_resources()  # type: ignore[no-untyped-call]
    return all(float(free.get(name, 0.0)) >= amount for name, amount in requested.items())


class SuspectNodes:
    """Nodes recently seen to die, which Ray may still list as alive."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def add(self, node_id: str | None) -> None:
        if node_id is not None:
            self._until[node_id] = time.monotonic() + SUSPECT_SECONDS

    def current(self) -> set[str]:
        now = time.monotonic()
        self._until = {node: until for node, until in self._until.items() if until > now}
        return set(self._until)


def draining_nodes() -> set[str]:
    """Nodes Ray is draining (spot preemption, autoscaler scale-down, ``ray drain-node``)."""
    try:
        return draining_node_ids()
    except Exception:  # an internal API that moved: no drain awareness, losses still recover
        return set()


def nodes_with_room(requested: Mapping[str, float]) -> set[str] | None:
    """Nodes whose free resources fit one actor now (None: Ray cannot say)."""
    try:
        free = free_resources_per_node()
    except Exception:  # an internal API that moved: place by totals only
        return None
    return {
        str(node) for node, amounts in free.items()
        if all(float(amounts.get(name, 0.0)) >= amount for name, amount in requested.items())
    }


def spread_target(
    requested: Mapping[str, float], planned: Iterable[str | None], avoid: set[str]
) -> str | None:
    """The live node that can host an actor and holds fewest of ``planned``.

    None when fewer than two nodes qualify: then Ray places the actor itself.
    Nodes in ``avoid`` are used only when no other node qualifies. An actor
    that reserves resources goes to a node with room for it now when there
    is one: pinned to a full node, it would wait there while others idle.
    """
    nodes = feasible_nodes(requested)
    if requested:
        roomy = nodes_with_room(requested)
        if roomy is not None and roomy & set(nodes):
            nodes = [node for node in nodes if node in roomy]
    healthy = [node for node in nodes if node not in avoid]
    if healthy:
        nodes = healthy
    if len(nodes) < 2:
        # One candidate left: pin to it when we had to avoid others, so the
        # actor does not land on a node that is dying.
        return nodes[0] if nodes and healthy and avoid else None
    load = dict.fromkeys(nodes, 0)
    for node in planned:
        if node in load:
            load[node] += 1
    return min(nodes, key=lambda node: (load[node], nodes.index(node)))
