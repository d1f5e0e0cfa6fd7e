"""The run directory without Ray: names, atomic writes, metrics/checkpoint agreement,
resumed options, resolved config, and the live display's 80-column line."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from raymanager import RayManager, RunFileError
from raymanager.progress import LiveDisplay, format_duration
from raymanager.rundir import LOCK_FILE
from raymanager.training import (
    METRIC_COLUMNS,
    Checkpoint,
    TrainConfig,
    load_checkpoint,
    new_run_dir,
    resolved_config,
    resume_config,
    save_checkpoint,
)
from raymanager.training.run_files import RunFiles


def test_runs_started_in_the_same_second_get_their_own_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("time.strftime", lambda _format: "20261126-101500")
    config = TrainConfig(output_dir=str(tmp_path), seed=0)
    first, second, third = (new_run_dir(config) for _ in range(3))
    assert [p.name for p in (first, second, third)] == [
        "CartPole-v1-seed0-20261126-101500",
        "CartPole-v1-seed0-20261126-101500-2",
        "CartPole-v1-seed0-20261126-101500-3",
    ]


def test_an_existing_run_name_is_refused_unless_overwrite(tmp_path: Path) -> None:
    config = TrainConfig(output_dir=str(tmp_path), run_name="mine")
    run_dir = new_run_dir(config)
    assert new_run_dir(config) == run_dir  # an empty folder holds no run: fine
    (run_dir / "metrics.csv").write_text("round\n1\n")
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"already holds a run.*--resume.*--overwrite"):
        new_run_dir(config)
    assert (run_dir / "metrics.csv").read_text() == "round\n1\n"
    assert new_run_dir(config, overwrite=True) == run_dir
    assert not (run_dir / "metrics.csv").exists()
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_a_full_disk_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "checkpoint"
    good = Checkpoint({"W": np.ones(3)}, 1, 10, 1.0, {"env": "CartPole-v1"})
    save_checkpoint(folder, good)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(RunFileError, match="No space left") as info:
        save_checkpoint(folder, Checkpoint({"W": np.zeros(3)}, 2, 20, 2.0, {}))
    assert info.value.filename == str(folder / "weights.npz")  # the file, by name
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # old one whole
    assert load_checkpoint(folder).round == 1


def full_disk(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_metrics_rows_are_fsynced_and_a_full_disk_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = TrainConfig(output_dir=str(tmp_path), run_name="r", target_return=10)
    files = RunFiles(new_run_dir(config), config, None)
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files.append({"round": 1, "seconds": 1.0})
    # The row is on disk when append returns (TensorBoard's events may sync too).
    assert synced.count(str(files.metrics_path)) == 1
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(RunFileError, match="No space left") as info:
        files.append({"round": 2, "seconds": 2.0})
    assert info.value.filename == str(files.metrics_path)


def test_a_run_that_cannot_write_its_first_file_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Started on a full disk: one error line naming the file, and no empty run folder
    (the next run would get a -2 suffix)."""
    from raymanager.cli import main

    monkeypatch.setattr(os, "fsync", full_disk)  # config.yaml is the first file, before Ray
    status = main(["train", "--max-rounds", "1", "--no-progress", "--output-dir",
                   str(tmp_path)])
    assert status == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: No space left on device: "), err
    assert lines[0].endswith("config.yaml") and str(tmp_path) in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_full_disk_in_the_cli_is_an_error_line(
    ray_session: RayManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from raymanager.cli import main

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    status = main(["train", "--seeds-per-round", "4", "--batch-size", "2", "--chunk-size", "2",
                   "--eval-episodes", "2", "--max-rounds", "1", "--no-progress",
                   "--output-dir", str(tmp_path), "--run-name", "full"])
    assert status == 2
    err = capsys.readouterr().err
    assert "error:" in err and "No space left on device" in err and "Traceback" not in err
    assert str(tmp_path / "full" / "checkpoint" / "weights.npz") in " ".join(err.split())
    assert [p.name for p in (tmp_path / "full" / "checkpoint").iterdir()] == []


def test_a_curve_that_cannot_be_drawn_is_one_warning_and_exit_3(
    ray_session: RayManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import matplotlib.figure

    from raymanager.cli import INCOMPLETE, main

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    status = main(["train", "--seeds-per-round", "4", "--batch-size", "2", "--chunk-size", "2",
                   "--eval-episodes", "2", "--max-rounds", "1", "--no-progress",
                   "--output-dir", str(tmp_path), "--run-name", "curve"])
    assert status == INCOMPLETE == 3
    # The CLI prints log lines through its console (above the progress line).
    captured = capsys.readouterr()
    output = captured.out + captured.err
    warnings = [line for line in output.splitlines() if "WARNING" in line and "curve" in line]
    assert len(warnings) == 1 and "Traceback" not in output  # one line, no traceback
    assert "No space left on device" in warnings[0]
    run_dir = tmp_path / "curve"
    assert sorted(p.name for p in run_dir.iterdir()) == [
        LOCK_FILE, "checkpoint", "config.yaml", "metrics.csv", "tensorboard"]  # no partial PNG
    assert load_checkpoint(run_dir).round == 1


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def test_resume_drops_rows_after_the_checkpoint(tmp_path: Path) -> None:
    """A run killed between its row and its checkpoint: resume rolls metrics back."""
    config = TrainConfig(output_dir=str(tmp_path), run_name="r", target_return=10)
    run_dir = new_run_dir(config)
    files = RunFiles(run_dir, config, None)
    for index in (1, 2, 3):
        files.append({"round": index, "seconds": float(index)})
    assert len(_rows(files.metrics_path)) == 3
    RunFiles(run_dir, config, resumed_round=2)
    assert [row.split(",")[0] for row in _rows(files.metrics_path)] == ["1", "2"]
    assert files.metrics_path.read_text().splitlines()[0] == ",".join(METRIC_COLUMNS)


def test_resume_config_keeps_the_runs_options(tmp_path: Path) -> None:
    config = resolved_config(TrainConfig(output_dir=str(tmp_path), run_name="r", max_rounds=7,
                                         max_seconds=30, seeds_per_round=8))
    run_dir = new_run_dir(config)
    RunFiles(run_dir, config, None)
    assert resume_config(run_dir).max_rounds == 7
    assert resume_config(run_dir).max_seconds == 30
    resumed = resume_config(run_dir, {"max_rounds": 9, "num_actors": 1})
    assert (resumed.max_rounds, resumed.num_actors, resumed.seeds_per_round) == (9, 1, 8)
    with pytest.raises(ValueError, match=r"seeds_per_round \(run: 8, now: 16\)"):
        resume_config(run_dir, {"seeds_per_round": 16})


def test_config_yaml_holds_the_values_used() -> None:
    config = resolved_config(TrainConfig())
    assert config.target_return == 475.0
    assert (config.learning_rate, config.noise_std) == (0.3, 0.1)
    assert resolved_config(TrainConfig(learning_rate=0.05)).learning_rate == 0.05


def _render(rows: list[dict[str, object]]) -> str:
    console = Console(width=80, record=True, file=io.StringIO(), force_terminal=False)
    display = LiveDisplay(TrainConfig(), console)
    display.start()
    for row in rows:
        display(row)
    display.stop()
    return console.export_text()


ROW = {"target": 475.0, "max_rounds": 300, "max_seconds": 600.0}


def test_live_display_fits_80_columns_and_says_what_it_knows() -> None:
    text = _render([])
    assert "starting Ray and 2+2 actors" in text
    assert "starting..." in text
    rows = [
        {**ROW, "round": 1, "seconds": 6.0, "training_seconds": 1.0,
         "training_env_steps": 53_200, "eval_return_mean": 212.34},
        {**ROW, "round": 2, "seconds": 7.0, "training_seconds": 2.0,
         "training_env_steps": 106_400},
    ]
    lines = _render(rows).splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    last = lines[-1]
    for part in ("round 2/300", "0:00:", "53.2k steps/s", "eval 212.3/475", "≤4m58s left"):
        assert part in last, (part, last)


def test_no_time_left_before_two_rounds() -> None:
    row = {**ROW, "round": 1, "seconds": 6.0, "training_seconds": 1.0,
           "training_env_steps": 1000}
    assert "left" not in _render([row]).splitlines()[-1]


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.4, 45, 586.2, 3725)] == ["0s", "45s", "9m46s",
                                                                    "1h02m"]


def test_a_run_builds_its_environment_once_in_the_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plan, both pools' config checks and the driver's agent share one build."""
    import gymnasium

    from raymanager import EvaluationActor, TrainingActor
    from raymanager.agents import make_agent
    from raymanager.training import plan_run

    built: list[str] = []
    real_make = gymnasium.make

    def counting_make(env_id: str, *args: object, **kwargs: object) -> object:
        built.append(env_id)
        return real_make(env_id, *args, **kwargs)

    monkeypatch.setattr(gymnasium, "make", counting_make)
    # Settings no other test uses, so no earlier build of this process counts.
    config = TrainConfig(env_kwargs={"max_episode_steps": 173}, seed=5)
    plan = plan_run(config)
    TrainingActor.validate_config(dict(plan.agent_config))
    EvaluationActor.validate_config(dict(plan.agent_config))
    make_agent(dict(plan.agent_config))
    assert plan.env.max_episode_steps == 173
    assert built == ["CartPole-v1"]
    # Other settings are another environment: built once more.
    plan_run(TrainConfig(env_kwargs={"max_episode_steps": 174}))
    assert built == ["CartPole-v1", "CartPole-v1"]
