"""The ARS agent without Ray (Pendulum-v1: continuous actions, no extra needed) and on a pool."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from raymanager import BatchConfig, RayManager, TrainingActor
from raymanager.agents import ARS, combine_round, make_agent, round_seeds
from raymanager.agents.ars import ARSConfig, ars_preset, merge_moments
from raymanager.rounds import message_bytes, run_round

CONFIG: dict[str, Any] = {"agent": "ars", "env": "Pendulum-v1", "max_episode_steps": 30}


def same(a: dict[str, Any], b: dict[str, Any], skip: tuple[str, ...] = ("seconds",)) -> bool:
    keys = set(a) - set(skip)
    return keys == set(b) - set(skip) and all(np.array_equal(a[k], b[k]) for k in keys)


def test_presets_are_the_papers_v2t_settings() -> None:
    cheetah = ars_preset("HalfCheetah-v5")
    assert (cheetah["learning_rate"], cheetah["directions"], cheetah["top_directions"],
            cheetah["noise_std"]) == (0.02, 32, 4, 0.03)
    hopper = ARSConfig.from_mapping({"env": "Hopper-v5"})
    assert (hopper.learning_rate, hopper.top_directions, hopper.noise_std) == (0.01, 4, 0.025)
    assert hopper.reward_shift == 1.0  # the survival bonus is removed in training
    assert ARSConfig.from_mapping({"env": "Hopper-v5", "noise_std": 0.1}).noise_std == 0.1


@pytest.mark.parametrize(("key", "value", "error"), [
    ("top_directions", 0, ValueError), ("learning_rate", -1.0, ValueError),
    ("noise_std", "x", TypeError), ("normalize_observations", 1, TypeError),
    ("reward_shift", float("nan"), ValueError), ("hidden_size", 8, ValueError),
])
def test_bad_config_is_a_clear_error(key: str, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=key):
        ARS.validate_config({**CONFIG, key: value})


def test_discrete_actions_are_refused_at_validation() -> None:
    with pytest.raises(ValueError, match="Box action space"):
        ARS.validate_config({"env": "CartPole-v1"})


def test_rollout_sends_scalars_and_moments_not_weights() -> None:
    agent = ARS(CONFIG)
    result = agent.rollout(np.arange(5), chunk_size=5)
    assert result["plus_returns"].shape == result["minus_returns"].shape == (5,)
    assert np.isfinite(result["plus_returns"]).all()
    # 10 episodes of 30 steps, each observation counted once.
    assert result["obs_count"] == 300.0 and result["env_steps"] == 300.0
    assert result["obs_mean"].shape == result["obs_m2"].shape == (3,)
    assert not any(isinstance(v, dict) for v in result.values())


def test_rollout_depends_on_seeds_and_weights_only() -> None:
    batch = round_seeds(0, 0, 6)
    results = []
    for chunk_size in (1, 4, 6):
        agent = ARS(CONFIG)
        agent.rollout(np.arange(50, 53), 3)  # leaves no trace
        results.append(agent.rollout(batch, chunk_size))
    for result in results[1:]:
        np.testing.assert_array_equal(result["plus_returns"], results[0]["plus_returns"])
        np.testing.assert_array_equal(result["minus_returns"], results[0]["minus_returns"])
        # Chunks only change the order of the moment merges (rounding, not values).
        np.testing.assert_allclose(result["obs_mean"], results[0]["obs_mean"], rtol=1e-12)
        assert result["obs_count"] == results[0]["obs_count"]


def test_step_is_the_papers_formula() -> None:
    agent = ARS({**CONFIG, "top_directions": 2, "learning_rate": 0.5})
    seeds = np.array([11, 12, 13])
    plus, minus = np.array([1.0, 5.0, 0.0]), np.array([2.0, 1.0, 4.0])
    fake = {"seeds": seeds, "plus_returns": plus, "minus_returns": minus, "env_steps": 0.0,
            "obs_count": 0.0, "obs_mean": np.zeros(3), "obs_m2": np.zeros(3)}
    agent.apply_rollouts([fake])
    # Top 2 by max(r+, r-): seed 12 (5) and seed 13 (4).
    sigma = np.std([5.0, 0.0, 1.0, 4.0])
    expected = 0.5 / (2 * sigma) * (
        (5.0 - 1.0) * np.random.default_rng(12).standard_normal((1, 3))
        + (0.0 - 4.0) * np.random.default_rng(13).standard_normal((1, 3)))
    np.testing.assert_allclose(agent.get_weights()["M"], expected, rtol=1e-12)


def test_merge_moments_matches_numpy_in_any_split() -> None:
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(101, 4))
    for cuts in ([50], [1, 2, 99], [100]):
        moments: tuple[float, np.ndarray, np.ndarray] = (0.0, np.zeros(4), np.zeros(4))
        for part in np.split(data, cuts):
            mean = part.mean(axis=0)
            moments = merge_moments(moments, (float(len(part)), mean,
                                              ((part - mean) ** 2).sum(axis=0)))
        count, mean, m2 = moments
        assert count == 101
        np.testing.assert_allclose(mean, data.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(m2 / count, data.var(axis=0), rtol=1e-12)


def test_a_round_over_batches_is_one_round_over_all_seeds() -> None:
    seeds = round_seeds(1, 0, 8)
    worker, alone = ARS(CONFIG), ARS(CONFIG)
    results = [worker.rollout(seeds[:3], 3), worker.rollout(seeds[3:], 5)]
    split = combine_round(results, worker.get_weights(), ARS(CONFIG)).weights
    alone.train(seeds, 8)
    together = alone.get_weights()
    np.testing.assert_array_equal(split["M"], together["M"])
    assert float(split["obs.count"]) == float(together["obs.count"]) == 480.0
    np.testing.assert_allclose(split["obs.mean"], together["obs.mean"], rtol=1e-12)
    np.testing.assert_allclose(split["obs.m2"], together["obs.m2"], rtol=1e-12)


def test_normalisation_uses_the_round_statistics() -> None:
    agent = ARS(CONFIG)
    observation = np.array([[1.0, 0.0, 2.0]])
    agent.set_weights({"M": np.ones((1, 3)), "obs.count": np.array(4.0),
                       "obs.mean": np.array([1.0, 0.0, 0.0]),
                       "obs.m2": np.array([4.0, 4.0, 16.0])})
    # (x - mean) / std = [0, 0, 1]; clipped to Pendulum's torque bound of 2.
    assert agent.act(observation).tolist() == [[1.0]]
    agent.set_weights({"M": 3 * np.ones((1, 3))})  # M alone: statistics reset
    assert agent.act(observation).tolist() == [[2.0]]
    assert float(agent.get_weights()["obs.count"]) == 0.0


def test_set_weights_rejects_mismatches() -> None:
    agent = ARS(CONFIG)
    good = agent.get_weights()
    for bad, words in (({**good, "W": np.zeros(1)}, "unknown"),
                       ({**good, "M": np.zeros((2, 3))}, "shape"),
                       ({"M": good["M"], "obs.count": good["obs.count"]}, "part of"),
                       ({**good, "obs.m2": -np.ones(3)}, ">= 0")):
        with pytest.raises(ValueError, match=words):
            agent.set_weights(bad)


def test_training_actor_result_size_does_not_grow_with_the_policy() -> None:
    # ES with a hidden layer 100x the parameters sends the same bytes per batch.
    small = TrainingActor({"env": "Pendulum-v1", "max_episode_steps": 5})
    large = TrainingActor({"env": "Pendulum-v1", "max_episode_steps": 5, "hidden_size": 256})
    sizes = [message_bytes({k: v for k, v in actor.process_batch(np.arange(4)).items()
                            if k != "seconds"}) for actor in (small, large)]
    assert sizes[0] == sizes[1]
    assert message_bytes(large.get_weights()) > 10 * sizes[1]


def test_one_or_two_actors_give_identical_weights(manager: RayManager) -> None:
    """Same seed, 1 vs 2 actors, 2 rounds through real pools: bit-identical weights."""
    finals = []
    for actors in (1, 2):
        pool = manager.create_actor_pool(TrainingActor, CONFIG, num_actors=actors)
        learner = make_agent(CONFIG)
        weights = learner.get_weights()
        for round_index in range(2):
            step = run_round(manager, pool, weights, round_seeds(0, round_index, 8),
                             BatchConfig(batch_size=2, num_parallel=actors, chunk_size=2),
                             learner)
            weights = step.weights
            assert step.batches == 4 and step.metrics["episodes"] == 16.0
        finals.append(weights)
        pool.shutdown()
    assert same(finals[0], finals[1])
    assert float(finals[0]["obs.count"]) == 2 * 16 * 30
