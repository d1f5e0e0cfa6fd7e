"""MLflow: one MLflow run per training run; a sweep is a parent run with a child per run.

The store is the user's ``MLFLOW_TRACKING_URI`` when set (a server, a
database), else a local SQLite store beside the runs: ``OUTPUT_DIR/mlflow.db``,
with the files under ``OUTPUT_DIR/mlartifacts/`` (MLflow 3 keeps its plain-file
store for old data only). Everything goes through an explicit
``MlflowClient`` and run id, never MLflow's process-wide "active run": runs of
a sweep log from several threads at once.

    >>> tracker = open_run(RunSpec("seed0", run_dir, store_dir, params))   # doctest: +SKIP
    >>> tracker.log_metrics({"train/loss": 0.5}, step=1)                   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import shlex
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from raymanager.tracking.base import RunSpec, flat_params

__all__ = ["ARTIFACTS_DIR", "DEFAULT_EXPERIMENT", "STORE_FILE", "MlflowParent", "MlflowRun",
           "open_parent", "open_run", "tracking_uri"]

STORE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
DEFAULT_EXPERIMENT = "raymanager"
#: MLflow's limits per log_batch call.
_PARAMS_PER_BATCH = 100
_PARENT_TAG = "mlflow.parentRunId"


def tracking_uri(store_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the local SQLite store in ``store_dir``.

    >>> tracking_uri(Path("/runs"))          # doctest: +SKIP
    'sqlite:////runs/mlflow.db'
    """
    return os.environ.get("MLFLOW_TRACKING_URI") or (
        f"sqlite:///{(store_dir / STORE_FILE).resolve()}")


def _without_secrets(uri: str) -> str:
    """``uri`` without a user:password part, for trackers.json and the final lines."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _experiment_id(client: MlflowClient, uri: str, store_dir: Path) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    # In our own store the files go beside it, not into ./mlruns of wherever
    # the command ran (MLflow's default for a database store).
    location = ((store_dir / ARTIFACTS_DIR).resolve().as_uri()
                if uri.startswith("sqlite:") and not os.environ.get("MLFLOW_TRACKING_URI")
                else None)
    return str(client.create_experiment(name, artifact_location=location))


class MlflowRun:
    """One MLflow run: params, metrics, files (a :class:`~raymanager.tracking.Tracker`)."""

    name = "mlflow"

    def __init__(self, client: MlflowClient, uri: str, experiment_id: str, run_id: str) -> None:
        self.client, self.uri = client, uri
        self.experiment_id, self.run_id = experiment_id, run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(key, value) for key, value in flat_params(params).items()]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + _PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(key, float(value), now, step) for key, value in metrics.items()])

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path),
                                      f"{folder}/{path.name}" if folder else path.name)
        else:
            self.client.log_artifact(self.run_id, str(path), folder)

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)

    def state(self) -> dict[str, Any]:
        return {"tracking_uri": _without_secrets(self.uri), "experiment_id": self.experiment_id,
                "run_id": self.run_id}

    def where(self) -> list[str]:
        return _where(self.uri, self.experiment_id, self.run_id, "run")


class MlflowParent(MlflowRun):
    """A sweep's parent run: its runs are its children (``mlflow.parentRunId``)."""

    def child_context(self) -> dict[str, Any]:
        """What each run of the sweep needs to open its child run (plain data)."""
        return {"tracking_uri": self.uri, "experiment_id": self.experiment_id,
                "run_id": self.run_id}

    def where(self) -> list[str]:
        return _where(self.uri, self.experiment_id, self.run_id, "parent run")


def _where(uri: str, experiment_id: str, run_id: str, what: str) -> list[str]:
    shown = _without_secrets(uri)
    if uri.startswith("sqlite:"):
        return [f"MLflow:         {what} {run_id} in {shown}",
                f"MLflow UI:      mlflow ui --backend-store-uri {shlex.quote(shown)}"
                f"  (pip install mlflow)"]
    if uri.startswith(("http:", "https:")):
        return [f"MLflow:         {shown.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"]
    return [f"MLflow:         {what} {run_id} in {shown}"]


def _open(spec: RunSpec, cls: type[MlflowRun]) -> MlflowRun:
    saved, parent = spec.saved or {}, spec.parent or {}
    uri = (os.environ.get("MLFLOW_TRACKING_URI") or saved.get("tracking_uri")
           or parent.get("tracking_uri") or tracking_uri(spec.store_dir))
    if uri.startswith("sqlite:") and not os.environ.get("MLFLOW_TRACKING_URI"):
        spec.store_dir.mkdir(parents=True, exist_ok=True)
        # Our own store: its creation ("Creating initial MLflow database tables")
        # is not news for the user's terminal.
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=uri)
    if saved.get("run_id"):
        run = client.get_run(str(saved["run_id"]))  # raises when the store lost it
        client.update_run(run.info.run_id, status="RUNNING")
        return cls(client, uri, str(run.info.experiment_id), str(run.info.run_id))
    experiment = str(parent.get("experiment_id") or _experiment_id(client, uri, spec.store_dir))
    tags = dict(spec.tags)
    if parent.get("run_id"):
        tags[_PARENT_TAG] = str(parent["run_id"])
    run = client.create_run(experiment, run_name=spec.name, tags=tags)
    return cls(client, uri, experiment, str(run.info.run_id))


def open_run(spec: RunSpec) -> MlflowRun:
    """Create the MLflow run of a training run, or reopen the one ``spec.saved`` names."""
    return _open(spec, MlflowRun)


def open_parent(spec: RunSpec) -> MlflowParent:
    """Create (or reopen) a sweep's parent run; its params are the sweep's."""
    parent = _open(spec, MlflowParent)
    assert isinstance(parent, MlflowParent)
    if spec.saved is None:
        parent.log_params(spec.params)
    return parent
