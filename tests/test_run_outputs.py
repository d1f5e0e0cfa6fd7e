"""What a training run leaves for its user beside metrics.csv: TensorBoard events with
the same metrics, the lines that say where to look, and a video of the policy."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import pytest
from PIL import Image, ImageSequence
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from raymanager import RayActor, RayManager
from raymanager.agents import make_agent
from raymanager.cli import main
from raymanager.training import (
    Checkpoint,
    TrainConfig,
    plan_run,
    save_checkpoint,
    tensorboard_scalars,
)
from raymanager.video import VideoError, record_video

TINY = [
    "--seeds-per-round", "8", "--batch-size", "4", "--chunk-size", "4",
    "--eval-every", "2", "--eval-episodes", "4", "--no-progress",
]


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def test_tensorboard_events_hold_the_metrics_csv(ray_session: RayManager, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", *TINY, "--max-rounds", "2", "--output-dir", str(tmp_path),
                 "--run-name", "run"]) == 0
    out = capsys.readouterr().out
    assert f"learning curve: {run_dir / 'learning_curve.png'}" in out
    assert f"tensorboard --logdir {run_dir / 'tensorboard'}" in out
    assert main(["train", "--resume", str(run_dir), "--max-rounds", "3", "--no-progress"]) == 0

    with open(run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    scalars = _scalars(run_dir)
    assert {"train/fitness_mean", "train/env_steps", "eval/return_mean"} <= set(scalars)
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for tag, value in tensorboard_scalars(row).items():
            expected.setdefault(tag, []).append((int(row["round"]), value))
    assert set(scalars) == set(expected)
    for tag, points in expected.items():
        assert [step for step, _ in scalars[tag]] == [step for step, _ in points], tag
        for (_, got), (_, want) in zip(scalars[tag], points, strict=True):
            assert math.isclose(got, want, rel_tol=1e-5), tag  # float32 in the events
    # Evaluations every 2 rounds, and the last round: eval/ at rounds 2 and 3 only.
    assert [step for step, _ in scalars["eval/return_mean"]] == [2, 3]


def _checkpoint(tmp_path: Path, **options: object) -> Path:
    """A run directory whose checkpoint holds an agent's initial weights (no Ray needed)."""
    plan = plan_run(TrainConfig(**options))  # type: ignore[arg-type]
    weights = make_agent(dict(plan.agent_config)).get_weights()
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir / "checkpoint",
                    Checkpoint(weights, 0, 0, 0.0, dataclasses.asdict(plan.config)))
    return run_dir


def test_video_of_cartpole_episodes(tmp_path: Path) -> None:
    run_dir = _checkpoint(tmp_path)
    result = record_video(run_dir, tmp_path / "policy.gif", episodes=2)
    # One frame at each reset and one per step.
    assert result.frames == sum(result.lengths) + 2
    assert len(result.returns) == 2 and all(r > 0 for r in result.returns)
    with Image.open(result.path) as gif:
        assert gif.size == (600, 400)
        # Pillow merges identical consecutive frames into one longer frame: count time.
        total_ms = sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif))
        stored = gif.n_frames
    assert total_ms == result.frames * round(1000 / 50)  # CartPole renders at 50 fps
    # What the file holds is said, not only what was rendered.
    assert result.stored_frames == stored and result.seconds == result.frames / 50
    done = subprocess.run(
        [sys.executable, "-m", "raymanager", "evaluate", str(run_dir), "--video",
         str(tmp_path / "one.gif")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Image.open(tmp_path / "one.gif") as gif:
        held = gif.n_frames
        seconds = sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif)) / 1000
    said = " ".join(done.stdout.split())
    assert f"({seconds:.1f} s, " in said, said
    # Every frame kept ("N frames;"), or said to be merged.
    assert (f" {held} frames;" in said
            or f"{held} stored: identical consecutive frames merged" in said), said

    env = {**os.environ, "SDL_VIDEODRIVER": "dummy"}
    done = subprocess.run(
        [sys.executable, "-m", "raymanager", "evaluate", str(run_dir), "--video",
         str(tmp_path / "policy.mp4")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "policy.mp4"))
    assert f"{frames} frames; 1 episode(s)" in done.stdout


def test_video_refuses_other_formats(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in \.gif or \.mp4"):
        record_video(_checkpoint(tmp_path), tmp_path / "policy.avi")


def test_mujoco_video_renders_or_says_what_to_install(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    run_dir = _checkpoint(tmp_path, env="HalfCheetah-v5",
                          agent_kwargs={"max_episode_steps": 5})
    try:
        result = record_video(run_dir, tmp_path / "cheetah.gif")
    except VideoError as error:  # no EGL / OSMesa on this machine
        assert "apt-get install" in str(error)
    else:
        assert result.frames == 6
        with Image.open(result.path) as gif:
            assert gif.size == (480, 480)


def test_log_lines_never_land_on_the_live_progress_line() -> None:
    import io
    import logging
    import re

    from rich.console import Console

    from raymanager.cli import _ConsoleHandler
    from raymanager.progress import LiveDisplay

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80)
    display = LiveDisplay(plan_run(TrainConfig()).config, console)
    handler = _ConsoleHandler(console)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("raymanager.test_live_line")
    log.addHandler(handler)
    log.propagate = False
    display.start()
    try:
        display({"round": 1, "max_rounds": 1000, "training_seconds": 1.0,
                 "training_env_steps": 100, "seconds": 1.0, "target": 475.0,
                 "eval_return_mean": 20.0, "max_seconds": 600.0})
        log.warning("replacing actor Echo#0")
    finally:
        display.stop()
        log.removeHandler(handler)
    # rich returns to the start of the live line and clears it before the message.
    out = buffer.getvalue()
    assert re.search(r"[\r\n](\x1b\[[0-9;?]*[A-Za-z])*WARNING raymanager.test_live_line: "
                     r"replacing actor Echo#0\n", out), repr(out)



class Echo(RayActor):
    def process_batch(self, batch: object) -> object:
        return batch


def test_info_shows_which_node_each_pools_actors_are_on(manager: RayManager) -> None:
    import ray

    from raymanager.cli_info import pools_by_node

    pool = manager.create_actor_pool(Echo, {}, num_actors=2)
    nodes = pools_by_node()
    assert set(nodes) == {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    on_nodes = {key: count for node in nodes.values() for key, count in node["pools"].items()}
    assert on_nodes.get(f"{pool.pool_id}/Echo") == 2
    assert all(node["address"] == "127.0.0.1" for node in nodes.values())
