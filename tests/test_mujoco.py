"""MuJoCo smoke test: a few ARS rounds on HalfCheetah-v5 through the real CLI job and pools.

Skipped only when the ``mujoco`` package is missing; ``pip install -e ".[test]"``
installs it (as CI does). Episodes are cut to 20 steps to keep this short.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from raymanager import BatchConfig, RayManager, TrainingActor
from raymanager.agents import make_agent, round_seeds
from raymanager.rounds import run_round
from raymanager.training import METRIC_COLUMNS, TrainConfig, load_checkpoint, train

SHORT = {"max_episode_steps": 20}


def test_halfcheetah_trains_with_defaults(ray_session: RayManager, tmp_path: Path) -> None:
    config = TrainConfig(env="HalfCheetah-v5", agent_kwargs=SHORT, max_rounds=2, eval_every=1,
                         progress=False, output_dir=str(tmp_path), run_name="cheetah")
    summary = train(config)
    assert summary.rounds == 2
    with open(tmp_path / "cheetah" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == METRIC_COLUMNS
    for row in rows:
        # The paper's V2-t settings: 32 directions, 64 episodes of 20 steps per round.
        assert (row["train_episodes"], row["train_env_steps"], row["batches"]) == (
            "64", "1280", "16")
        assert math.isfinite(float(row["fitness_mean"]))
        assert math.isfinite(float(row["eval_return_mean"])) and row["eval_episodes"] == "10"
        assert int(row["bytes_per_round"]) == int(row["result_bytes"]) + int(
            row["broadcast_bytes"])
    assert [int(r["episodes"]) for r in rows] == [64, 128]
    checkpoint = load_checkpoint(tmp_path / "cheetah")
    assert checkpoint.config["agent"] == "ars"  # the default for continuous actions
    assert checkpoint.weights["M"].shape == (6, 17)
    assert float(checkpoint.weights["obs.count"]) == 2 * 64 * 20


def test_bytes_per_batch_do_not_grow_with_the_policy(manager: RayManager) -> None:
    """ES on HalfCheetah, linear (108 parameters) vs a 256-unit hidden layer (6,150)."""
    per_batch, broadcast = [], []
    for hidden in (0, 256):
        config = {"agent": "es", "env": "HalfCheetah-v5", "hidden_size": hidden, **SHORT}
        pool = manager.create_actor_pool(TrainingActor, config, num_actors=2)
        learner = make_agent(config)
        step = run_round(manager, pool, learner.get_weights(), round_seeds(0, 0, 8),
                         BatchConfig(batch_size=2, num_parallel=2, chunk_size=2), learner)
        assert np.isfinite(step.metrics["fitness_mean"])
        per_batch.append(step.result_bytes_per_batch)
        broadcast.append(step.broadcast_bytes)
        pool.shutdown()
    assert per_batch[0] == per_batch[1]
    assert broadcast[1] > 20 * broadcast[0]
    assert per_batch[1] < broadcast[1] / 50


def test_the_step_cost_benchmark_steps_physics_on_gymnasium_s_own_trajectories(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # benchmarks/mujoco_step_cost.py's physics column replays gymnasium's actions from the
    # same starts with mj_step alone, and checks it ends in the same state; a replay that
    # skipped frames (a wrong frame_skip) must be caught by that check.
    import sys

    import mujoco

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    import mujoco_step_cost

    costs = mujoco_step_cost.step_columns("Hopper-v5", 300, seed=0)
    assert set(costs) == {"gymnasium", "physics", "physics_post"}
    assert all(value > 0 for value in costs.values())

    class OneFrameShort:  # the benchmark's view of mujoco only; gymnasium keeps the real one
        def __getattr__(self, name: str) -> object:
            return getattr(mujoco, name)

        @staticmethod
        def mj_step(model: object, data: object, nstep: int = 1) -> None:
            mujoco.mj_step(model, data, nstep=nstep - 1)

    monkeypatch.setattr(mujoco_step_cost, "mujoco", OneFrameShort())
    with pytest.raises(AssertionError, match="trajectories"):
        mujoco_step_cost.step_columns("Hopper-v5", 300, seed=0)
