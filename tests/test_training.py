"""The main job end to end with a tiny budget: train, resume, evaluate, files, errors."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml

from raymanager import RayManager
from raymanager.cli import main
from raymanager.training import (
    Checkpoint,
    CheckpointError,
    TrainConfig,
    load_checkpoint,
    plan_run,
    resume_config,
    save_checkpoint,
    train,
)

TINY = [
    "--seeds-per-round", "8", "--batch-size", "4", "--chunk-size", "4",
    "--eval-every", "1", "--eval-episodes", "6", "--no-progress",
]


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_cli_train_resume_evaluate(ray_session: RayManager, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    status = main(["train", *TINY, "--max-rounds", "2", "--output-dir", str(tmp_path),
                   "--run-name", "run"])
    assert status == 0
    for name in ("config.yaml", "metrics.csv", "learning_curve.png",
                 "checkpoint/weights.npz", "checkpoint/state.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["seeds_per_round"] == 8 and config["env"] == "CartPole-v1"
    first = rows(run_dir)
    assert [r["round"] for r in first] == ["1", "2"]
    assert all(float(r["eval_return_mean"]) > 0 and r["eval_episodes"] == "6" for r in first)
    assert int(first[-1]["env_steps"]) > int(first[0]["env_steps"]) > 0
    state = json.loads((run_dir / "checkpoint/state.json").read_text())
    assert state["round"] == 2

    assert main(["train", "--resume", str(run_dir), "--max-rounds", "3", "--no-progress"]) == 0
    resumed = rows(run_dir)
    assert [r["round"] for r in resumed] == ["1", "2", "3"]
    assert load_checkpoint(run_dir).round == 3

    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--episodes", "10"]) == 0
    out = capsys.readouterr().out
    assert "return mean" in out and "10" in out


def test_same_seed_same_learning_curve(ray_session: RayManager, tmp_path: Path) -> None:
    curves = []
    for name, actors in (("a", 2), ("b", 2), ("c", 1)):
        config = TrainConfig(seeds_per_round=8, batch_size=4, chunk_size=4, eval_every=2,
                             eval_episodes=4, max_rounds=2, progress=False, num_actors=actors,
                             output_dir=str(tmp_path), run_name=name)
        train(config)
        curves.append([(r["fitness_mean"], r["eval_return_mean"]) for r in rows(tmp_path / name)])
    assert curves[0] == curves[1]
    # Results never depend on which actor ran a batch, so not on the actor count either.
    assert curves[0] == curves[2]


def test_an_overlapped_evaluation_changes_no_row_and_no_weight(ray_session: RayManager,
                                                             tmp_path: Path) -> None:
    """Each evaluation beside the next round's training (the default) against a barrier:
    the same rows but for the clock, the same checkpoint; and a target met at an evaluation
    ends the run at that round both ways (the round trained beside it is dropped)."""
    base: dict[str, Any] = dict(seeds_per_round=8, batch_size=4, chunk_size=4, eval_every=1,
                                eval_episodes=6, max_rounds=4, target_return=1e9,
                                progress=False, output_dir=str(tmp_path))

    def without_clock(run: str) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows(tmp_path / run)]

    for overlap in (True, False):
        summary = train(TrainConfig(**base, overlap_eval=overlap, run_name=f"all-{overlap}"))
        assert summary.rounds == 4 and not summary.solved
        seconds = [float(r["seconds"]) for r in rows(tmp_path / f"all-{overlap}")]
        assert seconds == sorted(seconds)
    assert without_clock("all-True") == without_clock("all-False")
    assert len(without_clock("all-True")) == 4
    overlapped, barrier = load_checkpoint(tmp_path / "all-True"), load_checkpoint(
        tmp_path / "all-False")
    assert overlapped.round == barrier.round == 4
    for key in barrier.weights:
        np.testing.assert_array_equal(overlapped.weights[key], barrier.weights[key])

    # The first round after round 1 to beat every earlier evaluation sets the target:
    # the run meets it there, and the round trained beside that evaluation is dropped.
    returns = [float(r["eval_return_mean"]) for r in rows(tmp_path / "all-False")]
    met = next(i for i in range(1, 4) if returns[i] > max(returns[:i])) + 1
    # Between that evaluation and the best before it (metrics.csv rounds its numbers).
    target = (returns[met - 1] + max(returns[:met - 1])) / 2
    for overlap in (True, False):
        summary = train(TrainConfig(**{**base, "target_return": target},
                                    overlap_eval=overlap, run_name=f"met-{overlap}"))
        assert summary.solved and summary.rounds == met
        assert load_checkpoint(tmp_path / f"met-{overlap}").round == met
    assert without_clock("met-True") == without_clock("met-False") == without_clock(
        "all-False")[:met]


def test_ars_actor_count_and_resume_change_nothing(ray_session: RayManager,
                                                   tmp_path: Path) -> None:
    """ARS, same seed: 3 rounds on 2 actors == 2 rounds on 1 actor, then resumed for 1 more.

    The resumed run must restore the observation statistics (not only M) to
    land on the same weights.
    """
    base: dict[str, Any] = dict(
        env="Pendulum-v1", agent_kwargs={"max_episode_steps": 30}, seeds_per_round=8,
        batch_size=2, eval_every=1, eval_episodes=4, target_return=1e9, progress=False,
        output_dir=str(tmp_path))
    train(TrainConfig(**base, max_rounds=3, num_actors=2, run_name="straight"))
    train(TrainConfig(**base, max_rounds=2, num_actors=1, run_name="resumed"))
    assert float(load_checkpoint(tmp_path / "resumed").weights["obs.count"]) == 2 * 16 * 30
    train(resume_config(tmp_path / "resumed", {"max_rounds": 3}), resume=tmp_path / "resumed")
    straight, resumed = load_checkpoint(tmp_path / "straight"), load_checkpoint(
        tmp_path / "resumed")
    assert straight.config["agent"] == "ars"
    assert sorted(straight.weights) == ["M", "obs.count", "obs.m2", "obs.mean"]
    for key in straight.weights:
        np.testing.assert_array_equal(straight.weights[key], resumed.weights[key], err_msg=key)
    assert straight.episodes == resumed.episodes == 3 * 16
    assert [r["episodes"] for r in rows(tmp_path / "resumed")] == ["16", "32", "48"]


def test_round_defaults_follow_env_and_agent() -> None:
    cartpole = plan_run(TrainConfig()).config
    assert (cartpole.agent, cartpole.seeds_per_round, cartpole.batch_size,
            cartpole.eval_episodes) == ("es", 128, 64, 100)
    # Pendulum declares no reward threshold: a plan needs a target.
    pendulum = plan_run(TrainConfig(env="Pendulum-v1", target_return=-200)).config
    assert pendulum.agent == "ars" and pendulum.eval_episodes == 10
    assert plan_run(TrainConfig(env="Pendulum-v1", agent="es",
                                target_return=-200)).seeds_per_round == 128
    assert plan_run(TrainConfig(env="Pendulum-v1", batch_size=3,
                                target_return=-200)).train_batch.batch_size == 3


def test_checkpoint_round_trip_without_pickle(tmp_path: Path) -> None:
    weights = {"W": np.arange(6.0).reshape(2, 3), "adam.t": np.array(4.0)}
    saved = Checkpoint(weights, round=7, env_steps=1234, seconds=5.5,
                       config={"env": "CartPole-v1"}, last_eval={"return_mean": 10.0})
    save_checkpoint(tmp_path / "ckpt", saved)
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.round == 7 and loaded.env_steps == 1234 and loaded.config == saved.config
    assert loaded.weights.keys() == weights.keys()
    assert all(np.array_equal(loaded.weights[k], weights[k]) for k in weights)
    # An object array would need pickle to load: the loader refuses it.
    np.savez(tmp_path / "ckpt" / "weights.npz", W=np.array([object()], dtype=object))
    with pytest.raises(CheckpointError, match=r"corrupt.*holds Python objects") as info:
        load_checkpoint(tmp_path / "ckpt")
    assert "allow_pickle" not in str(info.value)  # never advise loading code from a file
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing")


def test_bad_options_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_actors: 2\nlearnig_rate: 0.1\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "learnig_rate" in capsys.readouterr().err
    assert main(["train", "--num-actors", "0", "--no-progress"]) == 2
    assert "num_actors" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--num-actors", "two"])


def test_bad_env_and_agent_fail_at_pool_creation(ray_session: RayManager, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for flags, words in ((["--env", "CartPol-v1"], "CartPol-v1"),
                         (["--agent", "nowhere.module:Factory"], "nowhere.module")):
        status = main(["train", *TINY, "--max-rounds", "1", "--output-dir", str(tmp_path),
                       "--target-return", "10", *flags])
        assert status == 2
        assert words in capsys.readouterr().err


def test_yaml_config_and_flags_override(tmp_path: Path) -> None:
    from raymanager.cli import _train_config, build_parser

    path = tmp_path / "run.yaml"
    path.write_text("num_actors: 3\nseed: 5\nenv_kwargs: {sutton_barto_reward: true}\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--seed", "9"])
    config = _train_config(args)
    assert (config.num_actors, config.seed) == (3, 9)
    assert config.env_kwargs == {"sutton_barto_reward": True}


def test_ctrl_c_saves_checkpoint_and_leaves_no_ray(tmp_path: Path) -> None:
    """SIGINT to a real `raymanager train` process: checkpoint saved, Ray gone, exit 130."""
    command = [sys.executable, "-m", "raymanager", "train", "--no-progress",
               "--output-dir", str(tmp_path), "--run-name", "sigint", "--max-rounds", "100000",
               "--target-return", "1e9", "--eval-every", "1", "--eval-episodes", "4",
               "--num-cpus", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "sigint" / "metrics.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)  # watching the run's own metrics file
    else:
        process.send_signal(signal.SIGINT)  # stops it and its Ray cleanly
        _, err = process.communicate(timeout=120)
        raise AssertionError(f"no two rounds finished within 120 s: {err[-2000:]}")
    children = psutil.Process(process.pid).children(recursive=True)
    assert children, "Ray should be running under the training process"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "interrupted" in out
    checkpoint = load_checkpoint(tmp_path / "sigint")
    assert checkpoint.round >= 2
    _, alive = psutil.wait_procs(children, timeout=30)
    assert [p.pid for p in alive if p.is_running() and p.status() != "zombie"] == []


def test_episode_length_is_capped_from_env_kwargs(ray_session: RayManager, tmp_path: Path) -> None:
    """`env_kwargs: {max_episode_steps: N}` caps every episode (gymnasium.make's own
    keyword; it failed with 'multiple values for keyword argument' before)."""
    status = main(["train", *TINY, "--max-rounds", "1", "--output-dir", str(tmp_path),
                   "--run-name", "short", "--env-kwargs", "{max_episode_steps: 10}"])
    assert status == 0
    [row] = rows(tmp_path / "short")
    assert 0 < float(row["eval_return_mean"]) <= 10.0  # CartPole: 1 per step, 10 steps at most
    assert float(row["fitness_max"]) <= 10.0
