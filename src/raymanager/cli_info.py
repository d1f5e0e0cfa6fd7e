"""``raymanager info``: the Ray resources raymanager sees, and its pools on each node.

    raymanager info                     # a private local Ray
    raymanager info --address auto      # a running cluster and its raymanager pools

Each command of the CLI is a *prepare* step that checks its input before Ray
starts, returning the command itself (a :data:`Run`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from raymanager.config import RayConfig

__all__ = ["Run", "add_info_parser", "pools_by_node"]

#: What a command's prepare step returns: the command itself, once its input is checked.
Run = Callable[[], int]


def add_info_parser(commands: Any) -> None:
    """Add ``info`` to the ``raymanager`` subcommands (``commands`` from add_subparsers)."""
    info = commands.add_parser("info", help="show the Ray resources raymanager sees",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    info.add_argument("--address", default=None,
                      help="Ray cluster to join (none: a private local Ray)")
    info.set_defaults(prepare=_prepare_info)


def _prepare_info(args: argparse.Namespace) -> Run:
    config = RayConfig(address=args.address)
    return lambda: _info(config)


def _info(config: RayConfig) -> int:
    import ray

    from raymanager import RayManager
    from raymanager.pool import list_pools
    from raymanager.ray_internals import alive_nodes

    with RayManager(config) as manager:
        resources = manager.cluster_resources()
        store = manager.object_store_stats()
        nodes = alive_nodes()
        table = Table(title="Ray resources seen by raymanager", show_header=False)
        where = f"joined {config.address}" if config.address else "private local"
        table.add_row("Ray", f"{ray.__version__} ({where})")
        table.add_row("nodes", str(len(nodes)))
        table.add_row("CPUs", f"{resources.get('CPU', 0):g}")
        table.add_row("GPUs", f"{resources.get('GPU', 0):g}")
        table.add_row("memory", _gib(resources.get("memory", 0)))
        used = "unknown" if store["used"] < 0 else _gib(store["used"])
        table.add_row("object store", f"{used} used of {_gib(store['total'])}")
        custom = {k: v for k, v in resources.items()
                  if k not in ("CPU", "GPU", "memory", "object_store_memory")}
        if custom:
            table.add_row("other", ", ".join(f"{k}={v:g}" for k, v in sorted(custom.items())))
        pools = list_pools()
        if pools:
            for pool in pools:
                table.add_row(f"pool {pool['pool']}",
                              f"{pool['actors']} x {pool['actor_class']} alive")
            for node_id, node in sorted(pools_by_node().items(),
                                        key=lambda item: item[1]["address"]):
                on_node = ", ".join(f"pool {key}: {count}"
                                    for key, count in sorted(node["pools"].items()))
                table.add_row(f"node {node['address']} ({node_id[:8]})",
                              on_node or "no raymanager actors")
        elif config.address:
            table.add_row("pools", "none: no raymanager pool has live actors on this cluster")
        else:
            # A private local Ray is this command's own: no other program's pools are in it.
            table.add_row("pools", "none in this private Ray; use --address to see a cluster's")
        Console().print(table)
    return 0


def pools_by_node() -> dict[str, dict[str, Any]]:
    """Per live node of the connected Ray: its address and our actors on it, by pool.

    ``{node_id: {"address": "10.0.0.5", "pools": {"<pool>/<class>": actors}}}``.
    Read from Ray's actor table (:func:`raymanager.ray_internals.actor_table`:
    the public state API needs the dashboard, which raymanager leaves off);
    where that is not available, nodes are listed without pools.

    >>> pools_by_node()   # doctest: +SKIP
    {'11e06672...': {'address': '127.0.0.1', 'pools': {'92554b9e/TrainingActor': 2}}}
    """
    from raymanager.pool.observe import parse_actor_name
    from raymanager.ray_internals import actor_table, alive_nodes

    nodes: dict[str, dict[str, Any]] = {
        str(node["NodeID"]): {"address": str(node.get("NodeManagerAddress", "?")), "pools": {}}
        for node in alive_nodes()
    }
    try:
        actors = actor_table()
    except Exception:  # a Ray without this private table: nodes only
        return nodes
    for actor in actors:
        parsed = parse_actor_name(str(actor.get("Name") or ""))
        if actor.get("State") != "ALIVE" or parsed is None:
            continue
        node_id = str((actor.get("Address") or {}).get("NodeID", ""))
        if node_id in nodes:
            key = "/".join(parsed)
            nodes[node_id]["pools"][key] = nodes[node_id]["pools"].get(key, 0) + 1
    return nodes


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB"
