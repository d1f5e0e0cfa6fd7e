"""Agents: the factory, the built-in ES agent, weight averaging (plain Python, no Ray)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raymanager.agents import (
    Agent,
    EvolutionStrategies,
    average_weights,
    make_agent,
    resolve_agent_factory,
    round_seeds,
    validate_agent_config,
)
from raymanager.agents.es import ESConfig, centered_ranks, perturbation
from raymanager.episodes import make_vector_env, run_episodes


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def without_seconds(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if key != "seconds"}


# -- the factory ------------------------------------------------------------------------


def test_default_agent_is_es_with_all_defaults() -> None:
    agent = make_agent({"learning_rate": 0.001})
    assert isinstance(agent, EvolutionStrategies)
    assert isinstance(agent, Agent)
    assert agent.settings == ESConfig(learning_rate=0.001)


def test_unknown_agent_name() -> None:
    with pytest.raises(ValueError, match=r"config\['agent'\] = 'ppo' is neither a built-in"):
        make_agent({"agent": "ppo"})


def test_agent_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match=r"config\['agent'\] must be a str"):
        resolve_agent_factory(42)


def test_import_path_to_missing_module() -> None:
    with pytest.raises(ValueError, match=r"'no_such_pkg\.mod:Agent'.*cannot import module"):
        make_agent({"agent": "no_such_pkg.mod:Agent"})


def test_import_path_to_missing_attribute() -> None:
    with pytest.raises(ValueError, match=r"module 'raymanager.agents.es' has no 'Nope'"):
        make_agent({"agent": "raymanager.agents.es:Nope"})


def test_import_path_to_something_not_callable() -> None:
    with pytest.raises(ValueError, match=r"'math:pi'.*not callable"):
        make_agent({"agent": "math:pi"})


def test_factory_that_returns_no_agent() -> None:
    # collections.OrderedDict(config) returns a dict: no train/act/... methods.
    with pytest.raises(ValueError, match=r"returned a OrderedDict, which is not an Agent.*train"):
        make_agent({"agent": "collections:OrderedDict"})


def test_import_path_to_user_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_agents.py").write_text(
        textwrap.dedent(
            """
            from raymanager.agents.es import EvolutionStrategies

            class Wrapper:
                @staticmethod
                def build(config):
                    return EvolutionStrategies({"seed": config["seed"]})

            def checked(config):
                return Wrapper.build(config)

            def _validate(config):
                if config.get("seed") == 13:
                    raise ValueError("config['seed'] = 13 is unlucky")

            checked.validate_config = _validate
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    agent = make_agent({"agent": "my_agents:Wrapper.build", "seed": 4})
    assert_same_weights(agent.get_weights(), EvolutionStrategies({"seed": 4}).get_weights())
    validate_agent_config({"agent": "my_agents:checked", "seed": 1})
    with pytest.raises(ValueError, match="unlucky"):
        validate_agent_config({"agent": "my_agents:checked", "seed": 13})


# -- ES config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ({"learnig_rate": 0.1}, ValueError, r"'learnig_rate'.*did you mean 'learning_rate'"),
        ({"learning_rate": 0}, ValueError, r"config\['learning_rate'\] must be .* > 0"),
        ({"learning_rate": "fast"}, TypeError, r"config\['learning_rate'\] must be a number"),
        ({"noise_std": float("nan")}, ValueError, r"config\['noise_std'\]"),
        ({"noise_std": True}, TypeError, r"config\['noise_std'\]"),
        ({"seed": -1}, ValueError, r"config\['seed'\] must be >= 0, got -1"),
        ({"seed": 1.5}, TypeError, r"config\['seed'\] must be an int"),
        ({"hidden_size": -3}, ValueError, r"config\['hidden_size'\]"),
        ({"l2": -0.1}, ValueError, r"config\['l2'\]"),
        ({"env": "CartPol-v1"}, ValueError, r"config\['env'\] = 'CartPol-v1'"),
        ({"env_kwargs": {"nope": 1}}, ValueError, r"config\['env_kwargs'\]"),
        ({"env": "FrozenLake-v1"}, ValueError, "needs a Box observation space"),
    ],
)
def test_es_config_errors_name_key_and_value(
    config: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        validate_agent_config(config)


def test_es_config_defaults_are_documented_values() -> None:
    settings = ESConfig.from_mapping({})
    assert (settings.learning_rate, settings.noise_std, settings.l2) == (0.3, 0.1, 0.1)
    assert (settings.seed, settings.hidden_size) == (0, 0)


# -- ES building blocks ------------------------------------------------------------------


def test_centered_ranks_range_ties_and_order() -> None:
    values = np.array([3.0, 500.0, 500.0, 10.0, 500.0])
    # Ranks 0..4 scaled to [-0.5, 0.5]; the three 500s share the mean of ranks 2, 3, 4.
    np.testing.assert_array_equal(centered_ranks(values), [-0.5, 0.25, 0.25, -0.25, 0.25])
    assert centered_ranks(np.array([2.0, 1.0])).tolist() == [0.5, -0.5]
    np.testing.assert_array_equal(centered_ranks(np.full(6, 7.0)), np.zeros(6))
    np.testing.assert_array_equal(centered_ranks(np.array([1.0])), np.zeros(1))


def test_perturbation_is_default_rng_of_the_seed() -> None:
    eps, episode_seed = perturbation(99, 10)
    np.testing.assert_array_equal(eps, np.random.default_rng(99).standard_normal(10))
    assert perturbation(99, 10)[1] == episode_seed
    assert 0 <= episode_seed < 2**31


def test_round_seeds() -> None:
    first = round_seeds(3, 0, 64)
    assert first.dtype == np.int64 and first.shape == (64,) and (first >= 0).all()
    np.testing.assert_array_equal(first, round_seeds(3, 0, 64))
    assert len(set(first) & set(round_seeds(3, 1, 64))) == 0
    assert len(set(first) & set(round_seeds(4, 0, 64))) == 0
    assert round_seeds(0, 0, 0).shape == (0,)
    with pytest.raises(ValueError, match="round_index"):
        round_seeds(0, -1, 4)
    with pytest.raises(ValueError, match="count"):
        round_seeds(0, 0, -4)


# -- the ES agent -----------------------------------------------------------------------


def test_same_config_gives_identical_initial_weights() -> None:
    a, b = EvolutionStrategies({"seed": 7}), EvolutionStrategies({"seed": 7})
    assert_same_weights(a.get_weights(), b.get_weights())
    other = EvolutionStrategies({"seed": 8}).get_weights()
    assert not np.array_equal(a.get_weights()["W"], other["W"])


def test_weights_layout_linear_and_hidden() -> None:
    linear = EvolutionStrategies({}).get_weights()
    assert {k: v.shape for k, v in linear.items()} == {
        "W": (4, 2), "b": (2,), "adam.m.W": (4, 2), "adam.m.b": (2,),
        "adam.v.W": (4, 2), "adam.v.b": (2,), "adam.t": (),
    }  # fmt: skip
    hidden = EvolutionStrategies({"hidden_size": 8}).get_weights()
    assert hidden["W1"].shape == (4, 8) and hidden["W2"].shape == (8, 2)
    assert "adam.v.b2" in hidden


def test_weights_round_trip_and_copy() -> None:
    source = EvolutionStrategies({"seed": 1})
    source.train(np.arange(8), chunk_size=8)
    weights = source.get_weights()
    target = EvolutionStrategies({"seed": 2})
    target.set_weights(weights)
    assert_same_weights(target.get_weights(), weights)
    observations = np.random.default_rng(0).standard_normal((50, 4))
    np.testing.assert_array_equal(target.act(observations), source.act(observations))
    weights["W"] += 100.0  # neither agent may share memory with the mapping
    assert not np.array_equal(target.get_weights()["W"], weights["W"])
    target.get_weights()["W"][:] = 0.0
    assert_same_weights(target.get_weights(), source.get_weights())


def test_set_weights_accepts_read_only_arrays() -> None:
    weights = EvolutionStrategies({"seed": 3}).get_weights()
    for array in weights.values():
        array.setflags(write=False)  # as from Ray's object store
    agent = EvolutionStrategies({})
    agent.set_weights(weights)
    assert all(np.array_equal(agent.get_weights()[k], weights[k]) for k in weights)
    agent.train(np.arange(4), chunk_size=4)  # must not write into the read-only arrays
    assert all(not array.flags.writeable for array in weights.values())


def test_set_weights_rejects_mismatches() -> None:
    agent = EvolutionStrategies({})
    good = agent.get_weights()
    with pytest.raises(ValueError, match="unknown weight keys"):
        agent.set_weights({**good, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"weights\['W'\] has shape \(2, 4\)"):
        agent.set_weights({**good, "W": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="lack 'b'"):
        agent.set_weights({"W": good["W"]})
    with pytest.raises(ValueError, match="part of Adam's state"):
        agent.set_weights({k: v for k, v in good.items() if k != "adam.t"})
    with pytest.raises(ValueError, match="non-finite"):
        agent.set_weights({**good, "W": np.full((4, 2), np.nan)})
    assert_same_weights(agent.get_weights(), good)  # failed calls change nothing


def test_policy_only_weights_reset_adam() -> None:
    agent = EvolutionStrategies({})
    agent.train(np.arange(4), chunk_size=4)
    assert float(agent.get_weights()["adam.t"]) == 1.0
    agent.set_weights({"W": np.ones((4, 2)), "b": np.zeros(2)})
    weights = agent.get_weights()
    assert float(weights["adam.t"]) == 0.0 and not weights["adam.m.W"].any()


def test_train_is_reproducible() -> None:
    seeds = np.arange(100, 116)
    a, b = EvolutionStrategies({"seed": 5}), EvolutionStrategies({"seed": 5})
    metrics_a, metrics_b = a.train(seeds, chunk_size=16), b.train(seeds, chunk_size=16)
    assert without_seconds(metrics_a) == without_seconds(metrics_b)
    assert_same_weights(a.get_weights(), b.get_weights())


@pytest.mark.parametrize("chunk_size", [1, 5, 64])
def test_chunking_does_not_change_the_step(chunk_size: int) -> None:
    seeds = round_seeds(0, 0, 24)
    whole, chunked = EvolutionStrategies({}), EvolutionStrategies({})
    expected = whole.train(seeds, chunk_size=24)
    got = chunked.train(seeds, chunk_size=chunk_size)
    assert without_seconds(got) == without_seconds(expected)
    assert_same_weights(chunked.get_weights(), whole.get_weights())


def test_train_metrics() -> None:
    agent = EvolutionStrategies({"max_episode_steps": 50})
    metrics = agent.train(np.arange(10), chunk_size=4)
    assert metrics["rows"] == 10 and metrics["episodes"] == 20
    assert metrics["fitness_min"] <= metrics["fitness_mean"] <= metrics["fitness_max"] <= 50
    assert metrics["loss"] == -metrics["fitness_mean"]
    assert metrics["env_steps"] == metrics["fitness_mean"] * 20  # CartPole: 1 per step
    assert metrics["seconds"] > 0 and metrics["update_norm"] > 0
    assert all(isinstance(value, float) for value in metrics.values())


def test_train_takes_one_adam_step() -> None:
    agent = EvolutionStrategies({"learning_rate": 0.01})
    before = agent.get_weights()
    agent.train(np.arange(6), chunk_size=6)
    after = agent.get_weights()
    assert float(after["adam.t"]) == 1.0
    # Adam's first step moves every coordinate with a gradient by about lr.
    moved = np.abs(after["W"] - before["W"])
    assert moved.max() == pytest.approx(0.01, rel=0.05)


@pytest.mark.parametrize(
    ("batch", "error", "message"),
    [
        (np.array([1.0, 2.0]), TypeError, "integer seeds"),
        (np.array([3, -1]), ValueError, "seeds must be >= 0"),
        (np.array([], dtype=np.int64), ValueError, "empty"),
        (np.zeros((2, 2), dtype=np.int64), ValueError, "1-D"),
    ],
)
def test_train_rejects_bad_seeds(batch: np.ndarray, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        EvolutionStrategies({}).train(batch, chunk_size=4)


def test_es_improves_cartpole_fitness() -> None:
    agent = EvolutionStrategies({"seed": 0})
    fitness = [agent.train(round_seeds(0, step, 128), 128)["fitness_mean"] for step in range(6)]
    assert np.mean(fitness[-2:]) > 2 * fitness[0], fitness


def test_act_is_deterministic_and_typed() -> None:
    agent = EvolutionStrategies({"seed": 2})
    observations = np.random.default_rng(1).standard_normal((16, 4)).astype(np.float32)
    actions = agent.act(observations)
    assert actions.dtype == np.int64 and actions.shape == (16,)
    assert set(actions.tolist()) <= {0, 1}
    np.testing.assert_array_equal(actions, agent.act(observations))


def test_box_action_space_pendulum() -> None:
    agent = EvolutionStrategies({"env": "Pendulum-v1", "max_episode_steps": 10, "hidden_size": 4})
    actions = agent.act(np.ones((3, 3), dtype=np.float32))
    assert actions.shape == (3, 1) and actions.dtype == np.float32
    assert (np.abs(actions) <= 2.0).all()
    metrics = agent.train(np.arange(4), chunk_size=2)
    assert metrics["env_steps"] == 80 and metrics["fitness_mean"] < 0


def test_policy_rows_do_not_depend_on_batch_size() -> None:
    agent = EvolutionStrategies({"hidden_size": 3, "seed": 4})
    env = make_vector_env({}, 6)
    together = run_episodes(env, agent.act, range(6)).returns
    single = [run_episodes(make_vector_env({}, 1), agent.act, [s]).returns[0] for s in range(6)]
    np.testing.assert_array_equal(together, single)


# -- average_weights --------------------------------------------------------------------


def test_average_weights_plain_and_weighted() -> None:
    a = {"w": np.array([0.0, 4.0]), "t": np.array(2.0)}
    b = {"w": np.array([2.0, 8.0]), "t": np.array(4.0)}
    mean = average_weights([a, b])
    np.testing.assert_array_equal(mean["w"], [1.0, 6.0])
    assert float(mean["t"]) == 3.0
    weighted = average_weights([a, b], counts=[1, 3])
    np.testing.assert_array_equal(weighted["w"], [1.5, 7.0])
    np.testing.assert_array_equal(a["w"], [0.0, 4.0])  # inputs untouched
    np.testing.assert_array_equal(average_weights([a])["w"], a["w"])


def test_average_weights_dtypes() -> None:
    half = average_weights([{"x": np.ones(2, np.float32)}, {"x": np.zeros(2, np.float32)}])
    assert half["x"].dtype == np.float32 and half["x"].tolist() == [0.5, 0.5]
    ints = average_weights([{"x": np.array([1])}, {"x": np.array([2])}])
    assert ints["x"].dtype == np.float64 and ints["x"].tolist() == [1.5]


def test_average_of_identical_weights_is_identity() -> None:
    weights = EvolutionStrategies({"seed": 9}).get_weights()
    averaged = average_weights([weights, weights, weights])
    for key, value in weights.items():
        np.testing.assert_allclose(averaged[key], value, rtol=1e-15, atol=0)


@pytest.mark.parametrize(
    ("weights", "counts", "message"),
    [
        ([], None, "at least one"),
        ([{"a": np.zeros(1)}, {"b": np.zeros(1)}], None, r"weights\[1\] has keys \['b'\]"),
        ([{"a": np.zeros(1)}, {"a": np.zeros(2)}], None, "differ in shape"),
        ([{"a": np.zeros(1)}], [1, 2], "one entry per weights mapping"),
        ([{"a": np.zeros(1)}, {"a": np.zeros(1)}], [0, 0], "not all 0"),
        ([{"a": np.zeros(1)}, {"a": np.zeros(1)}], [1, -1], ">= 0"),
    ],
)
def test_average_weights_errors(
    weights: list[dict[str, np.ndarray]], counts: list[int] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        average_weights(weights, counts)
