"""Experiment trackers, read back through the trackers' own readers, with no network.

MLflow: a local SQLite store read with ``MlflowClient`` (params, metrics per
round, files, a sweep's parent and children, resume continuing the same run).
W&B: offline runs read with W&B's own reader of ``.wandb`` files (its
``DataStore`` and protobuf records): the history rows per round, the config,
the files. A tracker that raises gives one WARNING and the run finishes.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raymanager import RayManager
from raymanager.cli import build_parser
from raymanager.cli_flags import given_options
from raymanager.sweep import SweepSpec, run_sweep
from raymanager.sweep.command import sweep_spec_of
from raymanager.tracking import RunSpec, Trackers, check_trackers
from raymanager.tracking import trackers as trackers_module
from raymanager.training import TrainConfig, resume_config, train

mlflow = pytest.importorskip("mlflow")
wandb = pytest.importorskip("wandb")

TINY = {"seeds_per_round": 8, "batch_size": 4, "chunk_size": 4, "eval_episodes": 4,
        "target_return": 1e9, "progress": False}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Local stores and offline runs only; nothing of the user's (login, home) is read."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_API_KEY",
                 "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow 3 reports usage otherwise
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def client(store: Path) -> Any:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{store.resolve()}")


def history(mlflow_client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in mlflow_client.get_metric_history(run_id, key))


def artifact_paths(mlflow_client: Any, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for info in mlflow_client.list_artifacts(run_id, path):
        found |= artifact_paths(mlflow_client, run_id, info.path) if info.is_dir else {info.path}
    return found


def test_mlflow_run_has_the_plan_every_round_and_the_files_and_resume_continues_it(
    ray_session: RayManager, tmp_path: Path,
) -> None:
    summary = train(TrainConfig(**TINY, max_rounds=2, output_dir=str(tmp_path), run_name="r",
                                trackers=["mlflow"]))
    run_dir = tmp_path / "r"
    state = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    assert state["logged_through"] == 2
    assert any("mlflow ui --backend-store-uri" in line for line in summary.tracking)
    store = client(tmp_path / "mlflow.db")
    run = store.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    params = run.data.params
    # The resolved plan: ES's real learning rate, not "None"; the round options filled in.
    assert params["env"] == "CartPole-v1" and params["agent"] == "es"
    assert params["policy"] == "linear" and params["seed"] == "0"
    assert float(params["learning_rate"]) > 0 and params["seeds_per_round"] == "8"
    assert params["agent_config.agent"] == "es" and "trackers" not in params
    csv_rows = rows(run_dir)
    for key, column in (("train/fitness_mean", "fitness_mean"),
                        ("eval/return_mean", "eval_return_mean"),
                        ("train/env_steps", "env_steps"), ("train/restarts", "restarts")):
        logged = history(store, run.info.run_id, key)
        assert [step for step, _ in logged] == [int(r["round"]) for r in csv_rows], key
        assert [value for _, value in logged] == pytest.approx(
            [float(r[column]) for r in csv_rows], rel=1e-5), key
    assert {"learning_curve.png", "config.yaml", "checkpoint/weights.npz",
            "checkpoint/state.json"} <= artifact_paths(store, run.info.run_id)

    # --resume continues the same MLflow run, and no round is logged twice
    # (round 2 was logged already; a rolled-back round would be too).
    state_file = run_dir / "trackers.json"
    saved = json.loads(state_file.read_text())
    saved["mlflow"]["logged_through"] = 3  # as if round 3 was logged, then rolled back
    state_file.write_text(json.dumps(saved))
    train(resume_config(run_dir, {"max_rounds": 4}), resume=run_dir)
    runs = store.search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    steps = [step for step, _ in history(store, run.info.run_id, "train/fitness_mean")]
    assert steps == [1, 2, 4]  # 3 was there already: never twice
    assert json.loads(state_file.read_text())["mlflow"]["logged_through"] == 4
    assert store.get_run(run.info.run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_a_sweep_is_one_parent_run_with_a_child_per_run_and_resumes_into_them(
    ray_session: RayManager, tmp_path: Path,
) -> None:
    base = TrainConfig(**TINY, max_rounds=1, output_dir=str(tmp_path), run_name="s",
                       trackers=["mlflow"])
    result = run_sweep(SweepSpec(base, seeds=(0, 1), grid={"learning_rate": (0.1, 0.2)}))
    assert [run.state for run in result.runs] == ["budget"] * 4
    assert any("parent run" in line for line in result.tracking)
    store = client(tmp_path / "mlflow.db")
    experiment = store.get_experiment_by_name("raymanager").experiment_id

    def runs() -> tuple[Any, list[Any]]:
        found = store.search_runs([experiment])
        parents = [r for r in found if "mlflow.parentRunId" not in r.data.tags]
        assert len(parents) == 1
        return parents[0], [r for r in found if r not in parents]

    parent, children = runs()
    assert parent.info.run_name == "s" and parent.data.params["grid.learning_rate"] == "[0.1, 0.2]"
    assert parent.data.params["seeds"] == "[0, 1]"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert sorted((r.data.params["learning_rate"], r.data.params["seed"]) for r in children) == [
        ("0.1", "0"), ("0.1", "1"), ("0.2", "0"), ("0.2", "1")]
    assert all(history(store, r.info.run_id, "eval/return_mean")[0][0] == 1 for r in children)

    run_sweep(resume=tmp_path / "s", changes={"max_rounds": 2})
    parent_again, children_again = runs()
    assert parent_again.info.run_id == parent.info.run_id
    assert {r.info.run_id for r in children_again} == {r.info.run_id for r in children}
    for child in children_again:
        steps = [step for step, _ in history(store, child.info.run_id, "train/fitness_mean")]
        assert steps == [1, 2]


def wandb_records(run_file: Path) -> Iterator[Any]:
    """The records of an offline ``run-*.wandb`` file, through W&B's own reader."""
    from wandb.proto import wandb_internal_pb2
    from wandb.sdk.internal import datastore

    store = datastore.DataStore()
    store.open_for_scan(str(run_file))
    while (data := store.scan_data()) is not None:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        yield record


def wandb_history(run_file: Path) -> list[dict[str, Any]]:
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json)
             for item in record.history.item}
            for record in wandb_records(run_file) if record.WhichOneof("record_type") == "history"]


def test_wandb_offline_run_has_a_history_row_per_round_the_config_and_the_files(
    ray_session: RayManager, tmp_path: Path,
) -> None:
    summary = train(TrainConfig(**TINY, max_rounds=2, output_dir=str(tmp_path), run_name="w",
                                trackers=["wandb"]))
    run_dir = tmp_path / "w"
    run_id = json.loads((run_dir / "trackers.json").read_text())["wandb"]["run_id"]
    [offline] = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert any(line.startswith("W&B upload:") and "wandb sync" in line and str(offline) in line
               for line in summary.tracking)
    history_rows = wandb_history(offline / f"run-{run_id}.wandb")
    csv_rows = rows(run_dir)
    assert [row["_step"] for row in history_rows] == [1, 2]
    assert [row["eval/return_mean"] for row in history_rows] == pytest.approx(
        [float(r["eval_return_mean"]) for r in csv_rows], rel=1e-5)
    assert [row["train/fitness_mean"] for row in history_rows] == pytest.approx(
        [float(r["fitness_mean"]) for r in csv_rows], rel=1e-5)
    # The config: in the run record, and in config records sent after it.
    config = {item.key: json.loads(item.value_json)
              for record in wandb_records(offline / f"run-{run_id}.wandb")
              if record.WhichOneof("record_type") in ("run", "config")
              for item in (record.run.config.update if record.HasField("run")
                           else record.config.update)}
    assert config["env"] == "CartPole-v1" and config["seeds_per_round"] == 8
    saved = {path.relative_to(offline / "files").as_posix()
             for path in (offline / "files").rglob("*") if path.is_file()}
    assert {"learning_curve.png", "config.yaml", "checkpoint/weights.npz"} <= saved

    # Resumed: the same W&B run id, and only the new round in the new offline file.
    train(resume_config(run_dir, {"max_rounds": 3}), resume=run_dir)
    offline_runs = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline_runs) == 2
    [newer] = [path for path in offline_runs if path != offline]
    assert [row["_step"] for row in wandb_history(newer / f"run-{run_id}.wandb")] == [3]


def test_a_tracker_that_raises_on_log_gives_one_warning_and_the_run_finishes(
    ray_session: RayManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from raymanager.tracking.mlflow_tracker import MlflowRun

    calls: list[int] = []

    def server_down(self: MlflowRun, metrics: Any, step: int) -> None:
        calls.append(step)
        raise ConnectionError("API request to http://127.0.0.1:5000 failed: connection refused")

    monkeypatch.setattr(MlflowRun, "log_metrics", server_down)
    with caplog.at_level(logging.WARNING, logger="raymanager"):
        summary = train(TrainConfig(**TINY, max_rounds=3, output_dir=str(tmp_path),
                                    run_name="x", trackers=["mlflow"]))
    assert summary.rounds == 3 and not summary.interrupted
    assert [r["round"] for r in rows(tmp_path / "x")] == ["1", "2", "3"]
    warnings = [r.getMessage() for r in caplog.records if "tracker" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "tracker mlflow failed to log metrics (ConnectionError" in warnings[0]
    assert "metrics.csv stays the record" in warnings[0]
    assert calls == [1]  # dropped after its first failure: no retry per round
    assert summary.tracking == ()


class _Recorder:
    """A tracker that records what it is told; ``fail_on`` raises there."""

    name = "mlflow"

    def __init__(self, spec: RunSpec, log: list[Any], fail_on: str | None) -> None:
        self.spec, self.log, self.fail_on = spec, log, fail_on

    def _note(self, what: str, *args: Any) -> None:
        if what == self.fail_on:
            raise RuntimeError(f"{what} refused")
        self.log.append((what, *args))

    def log_params(self, params: Any) -> None:
        self._note("params", dict(params))

    def log_metrics(self, metrics: Any, step: int) -> None:
        self._note("metrics", step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self._note("artifact", path.name)

    def finish(self, status: str) -> None:
        self._note("finish", status)

    def state(self) -> dict[str, Any]:
        return {"run_id": "abc"}

    def where(self) -> list[str]:
        return ["recorded"]


def _recording(monkeypatch: pytest.MonkeyPatch, fail_on: str | None = None) -> list[Any]:
    log: list[Any] = []

    class Backend:
        @staticmethod
        def open_run(spec: RunSpec) -> _Recorder:
            log.append(("open", spec.saved))
            return _Recorder(spec, log, fail_on)

    monkeypatch.setattr(trackers_module, "backend", lambda name: Backend)
    return log


def test_trackers_skip_logged_rounds_on_resume_and_keep_plain_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _recording(monkeypatch)
    spec = RunSpec("r", tmp_path, tmp_path, {"seed": 1})
    trackers = Trackers.start(["mlflow"], spec)
    for step in (1, 2, 3):
        trackers.log_metrics({"train/loss": 0.5}, step)
    (tmp_path / "curve.png").write_bytes(b"png")
    trackers.log_artifact(tmp_path / "curve.png")
    trackers.log_artifact(tmp_path / "missing.png")  # a curve that could not be drawn
    assert trackers.finish("FINISHED") == ["recorded"]
    assert log == [("open", None), ("params", {"seed": 1}), ("metrics", 1), ("metrics", 2),
                   ("metrics", 3), ("artifact", "curve.png"), ("finish", "FINISHED")]
    assert json.loads((tmp_path / "trackers.json").read_text()) == {
        "mlflow": {"run_id": "abc", "logged_through": 3, "status": "FINISHED"}}

    log.clear()
    resumed = Trackers.start(["mlflow"], spec, resumed=True)
    for step in (3, 4):
        resumed.log_metrics({"train/loss": 0.5}, step)
    resumed.finish("KILLED")
    # Reopened from trackers.json, no params again, round 3 not twice.
    assert log == [("open", {"run_id": "abc", "logged_through": 3, "status": "FINISHED"}),
                   ("metrics", 4),
                   ("finish", "KILLED")]


@pytest.mark.parametrize("fail_on", ["params", "metrics", "finish"])
def test_a_failing_tracker_is_one_warning_then_silent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    fail_on: str,
) -> None:
    _recording(monkeypatch, fail_on)
    with caplog.at_level(logging.WARNING, logger="raymanager"):
        trackers = Trackers.start(["mlflow"], RunSpec("r", tmp_path, tmp_path, {}))
        for step in (1, 2, 3):
            trackers.log_metrics({"train/loss": 0.5}, step)
        assert trackers.finish("FINISHED") == []
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert f"{fail_on} refused" in caplog.records[0].getMessage()


def test_tracker_flags_repeat_and_are_never_a_sweep_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "--tracker", "mlflow", "--tracker", "wandb"])
    assert TrainConfig.from_mapping(given_options(args)).trackers == ["mlflow", "wandb"]
    sweep = sweep_spec_of(parser.parse_args(
        ["sweep", "--tracker", "mlflow", "--tracker", "wandb", "--learning-rate", "0.1,0.2"]))
    assert sweep.base.trackers == ["mlflow", "wandb"] and list(sweep.grid) == ["learning_rate"]
    with pytest.raises(ValueError, match="unknown tracker 'neptune'"):
        TrainConfig(trackers=["neptune"])
    monkeypatch.setattr(trackers_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install 'raymanager\[wandb\]'"):
        check_trackers(["wandb"])


def test_a_tracker_added_on_resume_gets_the_earlier_rounds_and_a_later_video(
    ray_session: RayManager, tmp_path: Path,
) -> None:
    pytest.importorskip("pygame")
    from raymanager.video import record_video

    train(TrainConfig(**TINY, max_rounds=2, output_dir=str(tmp_path), run_name="v"))
    run_dir = tmp_path / "v"
    assert not (run_dir / "trackers.json").exists()
    train(resume_config(run_dir, {"max_rounds": 3, "trackers": ["mlflow"]}), resume=run_dir)
    state = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    store = client(tmp_path / "mlflow.db")
    logged = history(store, state["run_id"], "train/fitness_mean")
    assert [step for step, _ in logged] == [1, 2, 3]  # 1 and 2 from metrics.csv
    assert [value for _, value in logged] == pytest.approx(
        [float(r["fitness_mean"]) for r in rows(run_dir)], rel=1e-5)

    video = record_video(run_dir, tmp_path / "policy.gif")
    assert any("MLflow" in line for line in video.tracking)
    assert "videos/policy.gif" in artifact_paths(store, state["run_id"])
    assert store.get_run(state["run_id"]).info.status == "FINISHED"
    assert len(store.search_runs([store.get_run(state["run_id"]).info.experiment_id])) == 1


def test_a_tracker_new_to_a_resumed_run_is_backfilled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _recording(monkeypatch)
    spec = RunSpec("r", tmp_path, tmp_path, {"seed": 1})
    earlier = [(1, {"train/loss": 1.0}), (2, {"train/loss": 0.5})]
    trackers = Trackers.start(["mlflow"], spec, resumed=True, backfill=earlier)
    trackers.log_metrics({"train/loss": 0.25}, 2)  # already backfilled: not twice
    trackers.log_metrics({"train/loss": 0.25}, 3)
    trackers.finish("FINISHED")
    assert [entry for entry in log if entry[0] in ("open", "metrics")] == [
        ("open", None), ("metrics", 1), ("metrics", 2), ("metrics", 3)]
    assert json.loads((tmp_path / "trackers.json").read_text())["mlflow"] == {
        "run_id": "abc", "logged_through": 3, "status": "FINISHED"}


def test_a_sweep_on_wandb_is_a_group_and_says_how_to_upload_its_offline_runs(
    tmp_path: Path,
) -> None:
    from raymanager.tracking import SweepTrackers

    sweep_dir = tmp_path / "my sweep"
    sweep_dir.mkdir()
    parents = SweepTrackers.for_sweep(["wandb"], sweep_dir, {"seeds": [0, 1]}, resumed=False)
    assert parents.children() == {"wandb": {"group": "my sweep"}}
    assert json.loads((sweep_dir / "trackers.json").read_text()) == {
        "wandb": {"group": "my sweep"}}
    lines = parents.finish("FINISHED")
    assert f"wandb sync '{sweep_dir}/runs'/*/wandb/offline-run-*" in lines[-1]


def test_a_new_run_in_a_reused_directory_never_reopens_the_old_runs_tracker_runs(
    tmp_path: Path,
) -> None:
    from raymanager.training import plan_run
    from raymanager.training.tracked import start_trackers

    (tmp_path / "trackers.json").write_text(json.dumps({"mlflow": {"run_id": "old"}}))
    assert start_trackers(plan_run(TrainConfig()), tmp_path, resumed=True, parents=None) is None
    assert (tmp_path / "trackers.json").exists()  # a resumed run keeps them
    assert start_trackers(plan_run(TrainConfig()), tmp_path, resumed=False, parents=None) is None
    assert not (tmp_path / "trackers.json").exists()  # --overwrite: a new run, new ids
