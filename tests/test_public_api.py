"""The public names: sorted, complete, and pinned so a change is deliberate."""

from __future__ import annotations

import raymanager

EXPECTED = [
    "ActorPool",
    "ActorStartError",
    "BatchConfig",
    "BatchError",
    "BatchTimeoutError",
    "BroadcastError",
    "CheckpointError",
    "EvaluationActor",
    "JournalError",
    "ManagerShutdownError",
    "PoolBrokenError",
    "PoolBusyError",
    "PoolState",
    "RayActor",
    "RayConfig",
    "RayManager",
    "RayManagerError",
    "RayStartError",
    "RemoteTraceback",
    "ResourceUnavailableError",
    "RunFileError",
    "RunLockedError",
    "TrainingActor",
    "WorkerDiedError",
]


def test_all_is_sorted_and_pinned() -> None:
    assert raymanager.__all__ == sorted(raymanager.__all__)
    assert raymanager.__all__ == EXPECTED


def test_every_public_name_exists() -> None:
    for name in raymanager.__all__:
        assert getattr(raymanager, name) is not None


def test_error_tree() -> None:
    from raymanager import errors

    assert issubclass(errors.BatchTimeoutError, errors.BatchError)
    assert issubclass(errors.WorkerDiedError, errors.BatchError)
    assert issubclass(errors.ActorStartError, errors.PoolBrokenError)
    assert issubclass(errors.ResourceUnavailableError, errors.PoolBrokenError)
    assert issubclass(errors.CheckpointError, ValueError)  # as it was before the tree
    assert issubclass(errors.RunFileError, OSError)  # errno and filename of the failure
    for name in errors.__all__:
        cls = getattr(errors, name)
        if name != "RemoteTraceback":
            assert issubclass(cls, errors.RayManagerError), name


def test_layering_no_ray_below_pool() -> None:
    """actors/, agents/, envs, config, errors, batching never import ray."""
    import pathlib
    import re

    root = pathlib.Path(raymanager.__file__).parent
    pure = [root / "config.py", root / "errors.py", root / "batching.py", root / "envs.py",
            root / "rows.py", root / "mapped_file.py", root / "pool_arguments.py"]
    pure += list((root / "actors").glob("*.py")) + list((root / "agents").glob("*.py"))
    for path in pure:
        if path.exists():
            text = path.read_text()
            assert not re.search(r"^\s*(import ray(\s|\.|$)|from ray(\s|\.))", text, re.M), path


def test_importing_the_package_leaves_heavy_modules_for_later() -> None:
    """Every Ray worker imports raymanager: gymnasium, rich and the driver's
    machinery load only when a name that needs them is used."""
    import subprocess
    import sys

    code = (
        "import sys, raymanager, raymanager.actors.base, raymanager.pool.host\n"
        "heavy = ['gymnasium', 'rich', 'raymanager.manager', 'raymanager.actors.training']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
        "from raymanager import TrainingActor, RayManager\n"
        "from raymanager.actors import merge_evaluations\n"
        "print(TrainingActor.__module__, RayManager.__module__, merge_evaluations.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == ""
    assert out[1].split() == ["raymanager.actors.training", "raymanager.manager",
                              "raymanager.actors.evaluation"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="NoSuchThing"):
        raymanager.NoSuchThing  # noqa: B018
