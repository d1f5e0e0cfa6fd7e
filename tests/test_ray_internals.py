"""Ray's private APIs that raymanager uses are still where it reaches them.

Each entry of ``raymanager.ray_internals.PRIVATE_APIS`` is imported and
looked up here, and called as the shim calls it where it is a function: a
Ray release that moves or changes one fails here, naming the API, instead of
degrading quietly at run time (most callers fall back when one is missing).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path

import grpc
import pytest
import ray

from raymanager import RayManager, ray_internals
from raymanager.ray_internals import PRIVATE_APIS, PrivateApi

SOURCE = Path(__file__).parent.parent / "src" / "raymanager"


def _lookup(api: PrivateApi) -> object:
    try:
        found: object = importlib.import_module(api.module)
    except ImportError as error:
        pytest.fail(f"Ray {ray.__version__} has no module {api.module} ({error}); "
                    f"raymanager.ray_internals uses {api.module}.{api.attribute}")
    for part in api.attribute.split("."):
        if not hasattr(found, part):
            pytest.fail(f"Ray {ray.__version__} has no {api.module}.{api.attribute} "
                        f"(used by raymanager.ray_internals)")
        found = getattr(found, part)
    return found


@pytest.mark.parametrize("api", PRIVATE_APIS, ids=lambda a: f"{a.module}.{a.attribute}")
def test_each_private_api_is_still_there_and_takes_its_arguments(api: PrivateApi) -> None:
    found = _lookup(api)
    if api.args is None:
        return
    assert callable(found), f"{api.module}.{api.attribute} is no longer callable"
    try:
        inspect.signature(found).bind(*api.args)
    except TypeError as error:
        pytest.fail(f"Ray {ray.__version__}'s {api.module}.{api.attribute} no longer takes "
                    f"the arguments {api.args} raymanager.ray_internals passes: {error}")
    except ValueError:  # a builtin without a signature: found is all we can check
        pass


def test_the_auth_banner_logger_is_the_one_ray_logs_to() -> None:
    module = importlib.import_module(ray_internals.AUTH_BANNER_LOGGER)
    assert isinstance(module.logger, logging.Logger)
    assert module.logger.name == ray_internals.AUTH_BANNER_LOGGER


def test_the_shim_answers_on_a_running_ray(ray_session: RayManager) -> None:
    # Called for real: the shape of what each returns is what callers read.
    nodes = ray_internals.alive_nodes()
    assert nodes and all(node["Alive"] and node["NodeID"] for node in nodes)
    assert ray_internals.object_store_bytes_used() >= 0
    assert isinstance(ray_internals.draining_node_ids(), set)
    free = ray_internals.free_resources_per_node()
    assert {node["NodeID"] for node in nodes} >= set(free)
    assert all(isinstance(entry, dict) for entry in ray_internals.actor_table())
    gcs = ray.get_runtime_context().gcs_address
    assert ray_internals.bootstrap_address(gcs) == gcs
    try:
        ray_internals.ask_gcs_cluster_id(gcs, 10.0)
    except grpc.RpcError as error:  # a GCS that wants its token answers so
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_an_actors_table_entry_says_where_it_runs(ray_session: RayManager) -> None:
    @ray.remote(num_cpus=0)
    class Probe:
        def pid(self) -> int:
            import os

            return os.getpid()

    probe = Probe.remote()  # type: ignore[attr-defined]
    try:
        pid = ray.get(probe.pid.remote(), timeout=60)
        entry = ray_internals.actor_table_entry(probe)
        assert entry is not None
        assert (entry.get("Pid") or entry.get("pid")) == pid
        # What pools_by_node reads (start_errors reads the pid, or else a WorkerID).
        assert entry["State"] == "ALIVE" and "Name" in entry
        assert entry["Address"]["NodeID"] in {n["NodeID"] for n in ray_internals.alive_nodes()}
    finally:
        ray.kill(probe)


def test_no_module_but_the_shim_reaches_rays_private_apis() -> None:
    reaching = sorted(
        str(path.relative_to(SOURCE)) for path in SOURCE.rglob("*.py")
        if path.name != "ray_internals.py"
        and any(mark in path.read_text()
                for mark in ("ray._private", "ray.core.generated", "._actor_id"))
    )
    assert reaching == []
