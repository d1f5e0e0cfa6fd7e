"""MLP policies (``hidden_sizes``) of the built-in agents, ES and ARS, without a training run.

Exact properties only: layouts and weight names, the seed's initial weights,
bounded and row-independent actions, set/get round trips and their errors, one
step's determinism, a checkpoint's resume bit for bit, and batch results whose
bytes do not grow with the policy. Pendulum-v1 (3 observations, 1 torque in
[-2, 2]) with short episodes keeps every test well under a second.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raymanager import BatchConfig, RayManager, TrainingActor
from raymanager.agents import (
    ARS,
    EvolutionStrategies,
    combine_round,
    make_agent,
    round_seeds,
    validate_agent_config,
)
from raymanager.agents.es import ESConfig
from raymanager.agents.mlp import MAX_HIDDEN_LAYERS, MAX_LAYER_UNITS, check_hidden_sizes
from raymanager.episodes import make_vector_env, run_episodes
from raymanager.rounds import message_bytes, run_round

PENDULUM: dict[str, Any] = {"env": "Pendulum-v1", "max_episode_steps": 10}
ES_MLP: dict[str, Any] = {**PENDULUM, "agent": "es", "hidden_sizes": [64, 64], "seed": 3}
ARS_MLP: dict[str, Any] = {**PENDULUM, "agent": "ars", "hidden_sizes": [64, 64], "seed": 3}
MLPS = pytest.mark.parametrize("config", [ES_MLP, ARS_MLP], ids=["es", "ars"])


def policy_arrays(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The policy's own arrays: not Adam's state (ES) nor the observation statistics (ARS)."""
    return {k: v for k, v in weights.items() if not k.startswith(("adam.", "obs."))}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def shapes(weights: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {key: value.shape for key, value in policy_arrays(weights).items()}


# -- the key ----------------------------------------------------------------------------


@pytest.mark.parametrize("agent", ["es", "ars"])
@pytest.mark.parametrize(("value", "error", "message"), [
    ("64,64", TypeError, r"config\['hidden_sizes'\] must be a list of ints"),
    (64, TypeError, r"config\['hidden_sizes'\] must be a list of ints"),
    (None, TypeError, r"config\['hidden_sizes'\] must be a list of ints"),
    ([64, 0], ValueError, r"config\['hidden_sizes'\]\[1\] must be >= 1, got 0"),
    ([-8], ValueError, r"config\['hidden_sizes'\]\[0\] must be >= 1"),
    ([True], TypeError, r"config\['hidden_sizes'\]\[0\] must be an int, got True"),
    ([64.0], TypeError, r"config\['hidden_sizes'\]\[0\] must be an int, got 64.0"),
    (["64"], TypeError, r"config\['hidden_sizes'\]\[0\] must be an int"),
    ([MAX_LAYER_UNITS + 1], ValueError, rf"\[0\] must be <= {MAX_LAYER_UNITS} units"),
    ([8] * (MAX_HIDDEN_LAYERS + 1), ValueError,
     rf"has {MAX_HIDDEN_LAYERS + 1} hidden layers, at most {MAX_HIDDEN_LAYERS}"),
])
def test_bad_hidden_sizes_are_refused_by_name(
    agent: str, value: Any, error: type[Exception], message: str,
) -> None:
    with pytest.raises(error, match=message):
        validate_agent_config({**PENDULUM, "agent": agent, "hidden_sizes": value})


def test_good_hidden_sizes_are_a_tuple() -> None:
    assert check_hidden_sizes([]) == ()
    assert check_hidden_sizes((64, np.int64(32))) == (64, 32)
    assert check_hidden_sizes([MAX_LAYER_UNITS] * MAX_HIDDEN_LAYERS) == (
        (MAX_LAYER_UNITS,) * MAX_HIDDEN_LAYERS)
    for agent in ("es", "ars"):
        validate_agent_config({**PENDULUM, "agent": agent, "hidden_sizes": [64, 64]})
        validate_agent_config({**PENDULUM, "agent": agent, "hidden_sizes": []})


def test_es_hidden_size_is_hidden_sizes_of_one_layer() -> None:
    old = EvolutionStrategies({"hidden_size": 8, "seed": 5})
    new = EvolutionStrategies({"hidden_sizes": [8], "seed": 5})
    assert old.settings.hidden_sizes == new.settings.hidden_sizes == (8,)
    assert old.settings.hidden_size == 8  # the key as given, for code that reads it
    assert_same(old.get_weights(), new.get_weights())
    old.train(np.arange(2), chunk_size=2)
    new.set_weights(old.get_weights())  # a checkpoint of hidden_size 8 loads as is
    assert_same(old.get_weights(), new.get_weights())
    assert ESConfig.from_mapping({"hidden_size": 8}) == ESConfig(hidden_size=8)
    with pytest.raises(ValueError, match="disagree"):
        ESConfig(hidden_size=8, hidden_sizes=(16,))
    # Both keys, in agreement: accepted.
    for agree in ({"hidden_size": 8, "hidden_sizes": [8]}, {"hidden_size": 0, "hidden_sizes": []}):
        validate_agent_config(agree)


@pytest.mark.parametrize("both", [
    {"hidden_size": 8, "hidden_sizes": [16]},
    {"hidden_size": 8, "hidden_sizes": [8, 8]},
    {"hidden_size": 0, "hidden_sizes": [8]},
    {"hidden_size": 8, "hidden_sizes": []},
])
def test_es_hidden_size_and_hidden_sizes_must_agree(both: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"config\['hidden_size'\].*config\['hidden_sizes'\]"):
        validate_agent_config(both)


def test_ars_still_refuses_hidden_size() -> None:
    with pytest.raises(ValueError, match=r"'hidden_size'.*did you mean 'hidden_sizes'"):
        ARS.validate_config({**PENDULUM, "hidden_size": 8})


# -- layouts and initial weights ---------------------------------------------------------


def test_es_layouts_keep_their_weight_names() -> None:
    linear = EvolutionStrategies(PENDULUM)
    assert shapes(linear.get_weights()) == {"W": (3, 1), "b": (1,)}
    one = EvolutionStrategies({**PENDULUM, "hidden_size": 8}).get_weights()
    assert shapes(one) == {"W1": (3, 8), "b1": (8,), "W2": (8, 1), "b2": (1,)}
    deep = EvolutionStrategies(ES_MLP)
    weights = deep.get_weights()
    assert shapes(weights) == {"W1": (3, 64), "b1": (64,), "W2": (64, 64), "b2": (64,),
                               "W3": (64, 1), "b3": (1,)}
    assert deep.num_params == 3 * 64 + 64 + 64 * 64 + 64 + 64 + 1 == sum(
        v.size for v in policy_arrays(weights).values())
    assert {f"adam.{m}.{n}" for m in "mv" for n in shapes(weights)} | {"adam.t"} == (
        set(weights) - set(shapes(weights)))


def test_ars_linear_layout_is_the_papers() -> None:
    agent = ARS(PENDULUM)
    weights = agent.get_weights()
    assert sorted(weights) == ["M", "obs.count", "obs.m2", "obs.mean"]
    assert weights["M"].shape == (1, 3) and not weights["M"].any()
    assert agent.num_params == 3


def test_ars_mlp_layout_and_initial_weights() -> None:
    agent = ARS(ARS_MLP)
    weights = agent.get_weights()
    assert shapes(weights) == {"W1": (3, 64), "b1": (64,), "W2": (64, 64), "b2": (64,),
                               "W3": (64, 1), "b3": (1,)}
    assert sorted(set(weights) - set(shapes(weights))) == ["obs.count", "obs.m2", "obs.mean"]
    assert agent.num_params == sum(v.size for v in policy_arrays(weights).values()) == 4481
    # Hidden layers: N(0, 1) / sqrt(fan_in) drawn in layer order from the seed;
    # biases and the output layer at 0, so the first actions are 0, as the linear policy's.
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(weights["W1"], rng.standard_normal((3, 64)) / math.sqrt(3))
    np.testing.assert_array_equal(weights["W2"], rng.standard_normal((64, 64)) / 8.0)
    for zero in ("b1", "b2", "W3", "b3"):
        assert not weights[zero].any(), zero
    assert not agent.act(np.random.default_rng(0).standard_normal((5, 3))).any()
    assert_same(weights, ARS(ARS_MLP).get_weights())
    other = ARS({**ARS_MLP, "seed": 4}).get_weights()
    assert not np.array_equal(other["W1"], weights["W1"])


# -- acting --------------------------------------------------------------------------------


def random_policy(agent: ARS | EvolutionStrategies, scale: float) -> None:
    """Give ``agent`` large random policy weights (keeping its other state)."""
    weights = agent.get_weights()
    rng = np.random.default_rng(11)
    for key, value in policy_arrays(weights).items():
        weights[key] = scale * rng.standard_normal(value.shape)
    agent.set_weights(weights)


@MLPS
def test_mlp_actions_are_bounded_typed_deterministic_and_row_by_row(
    config: dict[str, Any],
) -> None:
    agent = make_agent(config)
    assert isinstance(agent, (ARS, EvolutionStrategies))
    random_policy(agent, scale=5.0)
    observations = 10 * np.random.default_rng(1).standard_normal((64, 3)).astype(np.float32)
    actions = agent.act(observations)
    assert actions.shape == (64, 1) and actions.dtype == np.float32
    assert (np.abs(actions) <= 2.0).all() and np.ptp(actions) > 0
    np.testing.assert_array_equal(actions, agent.act(observations))
    single = np.concatenate([agent.act(observations[i : i + 1]) for i in range(64)])
    np.testing.assert_array_equal(actions, single)


def test_es_deep_policy_rows_do_not_depend_on_batch_size() -> None:
    agent = EvolutionStrategies({"hidden_sizes": [16, 8, 4], "seed": 4})
    together = run_episodes(make_vector_env({}, 4), agent.act, range(4)).returns
    single = [run_episodes(make_vector_env({}, 1), agent.act, [s]).returns[0] for s in range(4)]
    np.testing.assert_array_equal(together, single)


# -- weights ---------------------------------------------------------------------------------


@MLPS
def test_mlp_weights_round_trip(config: dict[str, Any]) -> None:
    source = make_agent(config)
    source.train(np.arange(3), chunk_size=3)
    weights = source.get_weights()
    target = make_agent({**config, "seed": 9})
    target.set_weights(weights)
    assert_same(target.get_weights(), weights)
    observations = np.random.default_rng(2).standard_normal((20, 3))
    np.testing.assert_array_equal(target.act(observations), source.act(observations))
    weights["W2"] += 1.0  # no memory shared with the mapping
    assert not np.array_equal(target.get_weights()["W2"], weights["W2"])


@MLPS
def test_mlp_set_weights_names_the_bad_array(config: dict[str, Any]) -> None:
    agent = make_agent(config)
    good = agent.get_weights()
    linear = make_agent({**config, "hidden_sizes": []}).get_weights()
    for bad, message in (
        ({**good, "W2": np.zeros((64, 32))}, r"weights\['W2'\] has shape \(64, 32\), "
                                             r"expected \(64, 64\)"),
        ({**good, "b3": np.full(1, np.inf)}, r"weights\['b3'\] has non-finite"),
        ({k: v for k, v in good.items() if k != "b3"}, "weights lack 'b3'"),
        # A linear checkpoint into an MLP agent: its names say which layout it is.
        (linear, r"unknown weight keys \[.*\].*for hidden_sizes \[64, 64\]"),
    ):
        with pytest.raises(ValueError, match=message):
            agent.set_weights(bad)
    assert_same(agent.get_weights(), good)  # failed calls change nothing


# -- training ------------------------------------------------------------------------------


@MLPS
def test_one_step_moves_every_layer_and_is_reproducible(config: dict[str, Any]) -> None:
    seeds = round_seeds(0, 0, 4)
    a, b, chunked = make_agent(config), make_agent(config), make_agent(config)
    before = a.get_weights()
    metrics = [agent.train(seeds, chunk_size=size) for agent, size in ((a, 4), (b, 4),
                                                                       (chunked, 1))]
    for step in metrics:
        del step["seconds"]
    assert metrics[0] == metrics[1] == metrics[2] and metrics[0]["update_norm"] > 0
    after = a.get_weights()
    assert_same(after, b.get_weights())
    # Chunks change only the order of ARS's merges of observation moments (rounding).
    assert_same(policy_arrays(after), policy_arrays(chunked.get_weights()))
    for key in policy_arrays(before):
        assert not np.array_equal(before[key], after[key]), key


def run_rounds(config: dict[str, Any], weights: dict[str, np.ndarray] | None,
               rounds: range) -> dict[str, np.ndarray]:
    """Rounds as a pool runs them: two workers' batches, combined in the driver."""
    learner, workers = make_agent(config), [make_agent(config), make_agent(config)]
    weights = learner.get_weights() if weights is None else weights
    for round_index in rounds:
        seeds = round_seeds(0, round_index, 6)
        results = []
        for worker, batch in zip(workers, (seeds[:2], seeds[2:]), strict=True):
            worker.set_weights(weights)
            results.append(worker.rollout(batch, 2))  # type: ignore[attr-defined]
        weights = combine_round(results, weights, learner).weights
    return weights


@MLPS
def test_two_rounds_plus_one_resumed_equal_three_rounds(
    config: dict[str, Any], tmp_path: Path,
) -> None:
    straight = run_rounds(config, None, range(3))
    # What a checkpoint holds: weights.npz, read back without pickle.
    # numpy's stubs take savez's **kwds for its allow_pickle flag (as in training.py).
    np.savez(tmp_path / "weights.npz",
             **run_rounds(config, None, range(2)))  # type: ignore[arg-type]
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as archive:
        saved = {key: archive[key] for key in archive.files}
    resumed = run_rounds(config, saved, range(2, 3))
    assert_same(straight, resumed)


def test_batch_result_bytes_do_not_grow_with_an_ars_mlp() -> None:
    linear = TrainingActor({**PENDULUM, "agent": "ars", "max_episode_steps": 5})
    mlp = TrainingActor({**ARS_MLP, "max_episode_steps": 5})
    sizes = [message_bytes({k: v for k, v in actor.process_batch(np.arange(4)).items()
                            if k != "seconds"}) for actor in (linear, mlp)]
    assert sizes[0] == sizes[1]
    assert message_bytes(mlp.get_weights()) > 10 * sizes[1]


def test_one_or_two_actors_give_identical_ars_mlp_weights(manager: RayManager) -> None:
    """Same seed, 1 vs 2 actors, 2 rounds through real pools: bit-identical MLP weights."""
    config = {**ARS_MLP, "hidden_sizes": [16, 16]}
    finals = []
    for actors in (1, 2):
        pool = manager.create_actor_pool(TrainingActor, config, num_actors=actors)
        learner = make_agent(config)
        weights = learner.get_weights()
        for round_index in range(2):
            weights = run_round(manager, pool, weights, round_seeds(0, round_index, 8),
                                BatchConfig(batch_size=2, num_parallel=actors, chunk_size=2),
                                learner).weights
        finals.append(weights)
        pool.shutdown()
    assert_same(finals[0], finals[1])
    assert not np.array_equal(finals[0]["W3"], np.zeros((16, 1)))
