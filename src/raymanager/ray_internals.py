"""Every use of Ray's private APIs, behind one shim; and Ray's list of live nodes.

raymanager reaches into Ray's private modules only here. Each use, and why
there is no public API for it (checked on Ray 2.60.0; ``tests/
test_ray_internals.py`` fails naming the API when a Ray release moves one):

- ``ray._private.state.actors(actor_id)`` and ``ActorHandle._actor_id``: the
  GCS actor table, to tell an actor that was placed and whose constructor
  runs from one still waiting for resources (:func:`actor_table_entry`), and
  which node each of our actors is on (:func:`actor_table`). The public state
  API (``ray.util.state``) needs the dashboard, which raymanager leaves off.
- ``ray._private.state.state.get_draining_nodes()``: nodes Ray is draining
  (spot preemption, scale-down), so no new actor goes there.
- ``ray._private.state.state.get_cluster_config()``: the autoscaler's node
  groups (None without an autoscaler), to tell whether nodes may still be
  added before refusing a pool too large for the cluster
  (:func:`autoscaler_may_add_nodes`; Ray Data asks the same).
- ``ray._private.state.state.available_resources_per_node()``: free
  resources per node, to pin a spread actor where it can start now.
- ``ray._private.internal_api.get_state_from_address`` and
  ``get_memory_info_reply``: the object store's bytes in use (``ray memory``
  reads the same; no public API reports it), for ``object_store_stats()``
  and the benchmarks' memory sampler (:func:`object_store_usage_reader`).
- ``ray._private.services.canonicalize_bootstrap_address``: the host:port
  ``ray.init`` will connect to, so a missing cluster is reported before
  ``ray.init`` hangs on it.
- ``ray.core.generated.gcs_service_pb2(_grpc)``: Ray's generated gRPC code,
  for one ``GetClusterId`` call that tells a Ray cluster's GCS from nothing
  (or something else) at an address, in seconds instead of ``ray.init``'s
  minutes of retries (:func:`ask_gcs_cluster_id`).
- ``ray._private.utils.get_dashboard_dependency_error``: whether the
  dashboard's packages are installed, to say so before ``ray.init`` fails.
- ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``: the driver's copy of
  Ray's single-machine flag, off while a private Ray starts so that it serves
  on loopback only.
- ``ray._private.worker.print_to_stdstream``: the driver's printer of worker
  notices, wrapped to keep them off the terminal (``log_to_driver=False``).
- the logger ``ray._private.authentication.authentication_token_setup``:
  its "token authentication is enabled" notice is filtered out.

The private modules are imported when used, not here: callers that can do
without one (drains, free resources, the actor table, the store's use) catch
the error and carry on, so a Ray that moved an API degrades instead of
failing to import raymanager.

Imports ray and the standard library only (nothing of ours). Only this
module, ``pool/``, ``manager`` (with ``startup``), ``cli`` and ``security``
import ray (``tests/test_layers.py``).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray

__all__ = [
    "AUTH_BANNER_LOGGER",
    "PRIVATE_APIS",
    "PrivateApi",
    "actor_table",
    "actor_table_entry",
    "alive_nodes",
    "ask_gcs_cluster_id",
    "autoscaler_may_add_nodes",
    "bootstrap_address",
    "cluster_mode_off",
    "dashboard_dependency_error",
    "draining_node_ids",
    "free_resources_per_node",
    "object_store_bytes_used",
    "object_store_usage_reader",
    "worker_notice_printer",
]

#: Ray's logger of the "token authentication is enabled" notice.
AUTH_BANNER_LOGGER = "ray._private.authentication.authentication_token_setup"


@dataclass(frozen=True)
class PrivateApi:
    """One private name of Ray used here: ``module.attribute`` (dotted), called with ``args``."""

    module: str
    attribute: str
    #: Positional arguments it is called with here (None: not called, or read).
    args: tuple[str, ...] | None = None


#: Every private name used by this module, for the test that checks a Ray release.
PRIVATE_APIS = (
    PrivateApi("ray._private.state", "actors", ("actor_id",)),
    PrivateApi("ray.actor", "ActorHandle._actor_id"),
    PrivateApi("ray._private.state", "state.get_draining_nodes", ()),
    PrivateApi("ray._private.state", "state.get_cluster_config", ()),
    PrivateApi("ray._private.state", "state.available_resources_per_node", ()),
    PrivateApi("ray._private.internal_api", "get_state_from_address", ("address",)),
    PrivateApi("ray._private.internal_api", "get_memory_info_reply", ("state",)),
    PrivateApi("ray._private.services", "canonicalize_bootstrap_address", ("address",)),
    PrivateApi("ray.core.generated.gcs_service_pb2_grpc", "NodeInfoGcsServiceStub", ("channel",)),
    PrivateApi("ray.core.generated.gcs_service_pb2", "GetClusterIdRequest", ()),
    PrivateApi("ray._private.utils", "get_dashboard_dependency_error", ()),
    PrivateApi("ray._private.ray_constants", "ENABLE_RAY_CLUSTER"),
    PrivateApi("ray._private.worker", "print_to_stdstream", ("data", "ignore_prefix")),
    PrivateApi(AUTH_BANNER_LOGGER, "logger"),
)


def _module(name: str) -> Any:
    return importlib.import_module(name)


def alive_nodes() -> list[dict[str, Any]]:
    """The nodes Ray lists as alive, as ``ray.nodes()`` describes them (public API).

    >>> [node["NodeID"] for node in alive_nodes()]   # doctest: +SKIP
    ['11e06672...']
    """
    return [node for node in ray.nodes() if node.get("Alive")]  # type: ignore[no-untyped-call]


def actor_table_entry(handle: Any) -> dict[str, Any] | None:
    """The GCS actor table's entry of ``handle``'s actor (None: not there yet)."""
    entry = _module("ray._private.state").actors(handle._actor_id.hex())
    return dict(entry) if entry else None


def actor_table() -> list[dict[str, Any]]:
    """Every entry of the GCS actor table (the cluster's actors, live or dead)."""
    return [dict(entry) for entry in _module("ray._private.state").actors().values()]


def draining_node_ids() -> set[str]:
    """IDs of the nodes Ray is draining."""
    return {str(node) for node in _module("ray._private.state").state.get_draining_nodes()}


def autoscaler_may_add_nodes() -> bool:
    """Whether an autoscaler may add nodes: one of its node groups can grow.

    Read from the cluster config the autoscaler publishes in the GCS (none on
    a Ray started by ``ray.init`` or ``ray start`` alone).
    """
    config = _module("ray._private.state").state.get_cluster_config()
    if config is None:
        return False
    return any(group.max_count == -1 or group.max_count > group.min_count
               for group in config.node_group_configs
               if group.resources and group.max_count != 0)


def free_resources_per_node() -> dict[str, dict[str, float]]:
    """Free resources now, per node ID."""
    free = _module("ray._private.state").state.available_resources_per_node()
    return {str(node): dict(amounts) for node, amounts in free.items()}


def object_store_bytes_used() -> int:
    """Bytes in use in the object store, summed over the cluster's nodes."""
    return object_store_usage_reader()()


def object_store_usage_reader() -> Callable[[], int]:
    """A function that reads the object store's bytes in use, connected once.

    For repeated reads (a benchmark's sampler): each call costs one gRPC
    round trip, not a new connection to the GCS.
    """
    internal = _module("ray._private.internal_api")
    state = internal.get_state_from_address(ray.get_runtime_context().gcs_address)

    def bytes_used() -> int:
        reply = internal.get_memory_info_reply(state)
        return int(reply.store_stats.object_store_bytes_used)

    return bytes_used


def bootstrap_address(address: str) -> str | None:
    """The host:port ``ray.init(address=...)`` connects to; None where it would start a Ray.

    ConnectionError or ValueError for an address Ray cannot resolve.
    """
    target = _module("ray._private.services").canonicalize_bootstrap_address(address)
    return None if target is None else str(target)


def ask_gcs_cluster_id(target: str, timeout_s: float) -> None:
    """One ``GetClusterId`` call to the GCS at ``target`` (host:port).

    Returns when a GCS answers; ``grpc.RpcError`` when the call fails (its
    code says why), ImportError where grpc or Ray's generated code is missing.
    """
    import grpc

    services = _module("ray.core.generated.gcs_service_pb2")
    stubs = _module("ray.core.generated.gcs_service_pb2_grpc")
    with grpc.insecure_channel(target) as channel:
        stub = stubs.NodeInfoGcsServiceStub(channel)
        stub.GetClusterId(services.GetClusterIdRequest(), timeout=timeout_s)


def dashboard_dependency_error() -> ImportError | None:
    """The import error of a missing dashboard package (None: all installed)."""
    error: ImportError | None = _module("ray._private.utils").get_dashboard_dependency_error()
    return error


@contextlib.contextmanager
def cluster_mode_off() -> Iterator[None]:
    """Turn the driver's copy of Ray's cluster-mode flag off, restored afterwards."""
    constants = _module("ray._private.ray_constants")
    before = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = before


def worker_notice_printer(
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]], *, marker: str
) -> None:
    """Replace the driver's printer of worker notices by ``wrap(printer)``, once.

    A printer that has the attribute ``marker`` was wrapped already: left as it is.
    """
    worker = _module("ray._private.worker")
    current: Callable[..., Any] = worker.print_to_stdstream
    if getattr(current, marker, None) is None:
        worker.print_to_stdstream = wrap(current)
