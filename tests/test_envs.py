"""raymanager.envs: config checks, per-episode seeding, rollouts (plain Python, no Ray)."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.vector import SyncVectorEnv

from raymanager.envs import (
    DEFAULT_ENV,
    EnvSettings,
    env_settings,
    env_spaces,
    make_env,
    validate_env_config,
)
from raymanager.episodes import make_vector_env, run_episodes


def always_left(observations: np.ndarray) -> np.ndarray:
    return np.zeros(len(observations), dtype=np.int64)


def pole_angle(observations: np.ndarray) -> np.ndarray:
    """Push towards the side the pole leans: survives 25-60 steps, so lengths vary."""
    return (observations[:, 2] > 0).astype(np.int64)


def balancer(observations: np.ndarray) -> np.ndarray:
    """A linear policy that holds CartPole up for the whole episode."""
    return (observations[:, 2] + 0.3 * observations[:, 3] > 0).astype(np.int64)


# -- config ----------------------------------------------------------------------------


def test_settings_defaults() -> None:
    assert env_settings({}) == EnvSettings(DEFAULT_ENV, {}, None)
    assert env_settings({"env_kwargs": None}).env_kwargs == {}


@pytest.mark.parametrize(
    ("config", "error", "key"),
    [
        ({"env": 3}, TypeError, "config['env']"),
        ({"env": ""}, TypeError, "config['env']"),
        ({"env_kwargs": [("a", 1)]}, TypeError, "config['env_kwargs']"),
        ({"env_kwargs": {1: 2}}, TypeError, "config['env_kwargs']"),
        ({"max_episode_steps": 0}, ValueError, "config['max_episode_steps']"),
        ({"max_episode_steps": True}, ValueError, "config['max_episode_steps']"),
        ({"max_episode_steps": 2.5}, ValueError, "config['max_episode_steps']"),
    ],
)
def test_settings_reject_wrong_types(config: dict[str, Any], error: type, key: str) -> None:
    with pytest.raises(error, match=key.replace("[", r"\[").replace("]", r"\]")):
        env_settings(config)


def test_validate_unknown_env_names_key_and_value() -> None:
    with pytest.raises(ValueError, match=r"config\['env'\] = 'CartPol-v1'.*CartPole") as info:
        validate_env_config({"env": "CartPol-v1"})
    assert isinstance(info.value.__cause__, gymnasium.error.Error)


def test_validate_missing_module_names_key_and_value() -> None:
    with pytest.raises(ValueError, match=r"config\['env'\] = 'no_such_module:Foo-v0'.*installed"):
        validate_env_config({"env": "no_such_module:Foo-v0"})


def test_validate_bad_kwargs_names_key_and_value() -> None:
    with pytest.raises(ValueError, match=r"config\['env_kwargs'\] = \{'gravity': 3\}.*CartPole"):
        validate_env_config({"env": "CartPole-v1", "env_kwargs": {"gravity": 3}})


def test_validate_returns_spaces_of_a_good_config() -> None:
    observation_space, action_space = validate_env_config({"env": "CartPole-v1"})
    assert observation_space.shape == (4,)
    assert action_space == gymnasium.spaces.Discrete(2)
    assert env_spaces({}) == (observation_space, action_space)


def test_make_env_applies_time_limit_and_kwargs() -> None:
    env = make_env({"max_episode_steps": 7, "env_kwargs": {"sutton_barto_reward": True}})
    try:
        assert env.spec is not None and env.spec.max_episode_steps == 7
        env.reset(seed=0)
        _, reward, *_ = env.step(0)
        assert reward == 0.0  # Sutton-Barto reward: 0 until failure
    finally:
        env.close()


# -- vector envs and per-episode seeding ------------------------------------------------


def test_cartpole_vector_env_starts_where_single_env_starts() -> None:
    seeds = [0, 1, 2, 12345, 2**31 - 2]
    env = make_vector_env({}, num_envs=len(seeds))
    observations, _ = env.reset(seed=list(seeds))  # type: ignore[arg-type]
    for index, seed in enumerate(seeds):
        single, _ = gymnasium.make("CartPole-v1").reset(seed=seed)
        np.testing.assert_array_equal(observations[index], single)


def test_cartpole_vector_env_uses_numpy_vectorisation_and_others_sync() -> None:
    assert not isinstance(make_vector_env({}, 2), SyncVectorEnv)
    assert isinstance(make_vector_env({"env": "Acrobot-v1"}, 2), SyncVectorEnv)


@pytest.mark.parametrize("policy", [always_left, pole_angle, balancer])
def test_fast_cartpole_rollouts_equal_gymnasium_single_envs(policy: Any) -> None:
    seeds = list(range(40))
    fast = run_episodes(make_vector_env({}, len(seeds)), policy, seeds)
    reference_env = SyncVectorEnv([lambda: gymnasium.make("CartPole-v1")] * len(seeds))
    reference = run_episodes(reference_env, policy, seeds)
    np.testing.assert_array_equal(fast.returns, reference.returns)
    np.testing.assert_array_equal(fast.lengths, reference.lengths)


@pytest.mark.parametrize("config", [{}, {"env": "Acrobot-v1", "max_episode_steps": 30}])
def test_episode_depends_only_on_its_seed(config: dict[str, Any]) -> None:
    policy = pole_angle if not config else always_left
    together = run_episodes(make_vector_env(config, 4), policy, [10, 11, 12, 13])
    shuffled = run_episodes(make_vector_env(config, 4), policy, [13, 12, 11, 10])
    alone = run_episodes(make_vector_env(config, 1), policy, [12])
    np.testing.assert_array_equal(together.returns, shuffled.returns[::-1])
    assert together.returns[2] == alone.returns[0]
    assert together.lengths[2] == alone.lengths[0]


def test_each_episode_counts_once_despite_autoreset() -> None:
    # Episodes of very different lengths in one vector env: the short ones must
    # not collect reward from the episodes that auto-reset starts after them.
    env = make_vector_env({}, 40)
    mixed = run_episodes(env, pole_angle, range(40))
    assert mixed.lengths.min() < mixed.lengths.max()
    np.testing.assert_array_equal(mixed.returns, mixed.lengths)  # CartPole: 1 per step
    assert mixed.env_steps == int(mixed.lengths.sum())


def test_time_limit_truncates_once() -> None:
    limited = run_episodes(make_vector_env({"max_episode_steps": 25}, 3), balancer, [1, 2, 3])
    np.testing.assert_array_equal(limited.lengths, [25, 25, 25])
    np.testing.assert_array_equal(limited.returns, [25.0, 25.0, 25.0])


def test_balancer_solves_default_cartpole() -> None:
    outcome = run_episodes(make_vector_env({}, 10), balancer, range(10))
    np.testing.assert_array_equal(outcome.returns, np.full(10, 500.0))


def test_max_steps_guard_stops_rollout() -> None:
    outcome = run_episodes(make_vector_env({}, 2), balancer, [1, 2], max_steps=5)
    np.testing.assert_array_equal(outcome.lengths, [5, 5])


def test_run_episodes_needs_one_seed_per_env() -> None:
    with pytest.raises(ValueError, match="one seed per sub-environment"):
        run_episodes(make_vector_env({}, 3), always_left, [1, 2])


def test_make_vector_env_rejects_bad_sizes() -> None:
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="num_envs"):
            make_vector_env({}, bad)  # type: ignore[arg-type]


def test_cartpole_reset_with_wrong_number_of_seeds() -> None:
    env = make_vector_env({}, 3)
    with pytest.raises(ValueError, match="3 int seeds"):
        env.reset(seed=[1, 2])  # type: ignore[arg-type]
    observations, _ = env.reset(seed=5)  # one int still works as in gymnasium
    assert observations.shape == (3, 4)
