"""TrainingActor and EvaluationActor called directly, as a pool would (plain Python, no Ray)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from raymanager.actors import EvaluationActor, RayActor, TrainingActor, merge_evaluations
from raymanager.actors.evaluation import summarize_episodes
from raymanager.agents import combine_round, make_agent, round_seeds

TRAINING_KEYS = {
    "fitness_mean", "fitness_max", "fitness_min", "episodes", "env_steps", "rows", "seconds",
    "loss", "seeds", "plus_returns", "minus_returns",
}  # fmt: skip
ARRAY_KEYS = {"seeds", "plus_returns", "minus_returns"}
EVALUATION_KEYS = {
    "return_mean", "return_std", "return_min", "return_max", "length_mean", "episodes",
    "env_steps", "seconds", "returns", "lengths",
}  # fmt: skip


def assert_same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def without_seconds(result: dict[str, Any]) -> dict[str, Any]:
    """A result with its arrays as lists (comparable with ==) and without timings."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in result.items() if k != "seconds"}


def stepped(config: dict[str, Any], results: list[dict[str, Any]],
            weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The driver's step from a round's results, as `raymanager train` takes it."""
    return combine_round(results, weights, make_agent(config)).weights


def read_only(array: np.ndarray) -> np.ndarray:
    """What a batch looks like inside a Ray worker: a read-only view."""
    view: np.ndarray = array.view()
    view.setflags(write=False)
    return view


def balancing_weights() -> dict[str, np.ndarray]:
    """Policy weights that keep CartPole up: push towards theta + 0.3 * theta_dot."""
    weights = {"W": np.zeros((4, 2)), "b": np.zeros(2)}
    weights["W"][2, 1], weights["W"][3, 1] = 1.0, 0.3
    return weights


# -- TrainingActor ----------------------------------------------------------------------


def test_training_actor_with_the_seed_config() -> None:
    actor = TrainingActor({"learning_rate": 0.001})
    assert isinstance(actor, RayActor)
    result = actor.process_batch(np.arange(8))
    assert set(result) >= TRAINING_KEYS
    assert result["rows"] == 8.0 and result["episodes"] == 16.0
    # Scalars on the wire: the seeds and their returns, never weights.
    assert "weights" not in result and result["plus_returns"].shape == (8,)
    np.testing.assert_array_equal(result["seeds"], np.arange(8))
    assert all(isinstance(result[key], float) for key in TRAINING_KEYS - ARRAY_KEYS)
    weights = stepped({"learning_rate": 0.001}, [result], actor.get_weights())
    assert float(weights["adam.t"]) == 1.0


def test_training_actor_defaults_to_no_config() -> None:
    assert TrainingActor().config == {}
    assert TrainingActor(None).process_batch([1, 2])["rows"] == 2.0


def test_every_batch_starts_from_the_round_weights() -> None:
    actor = TrainingActor({"seed": 1})
    first = actor.process_batch(np.arange(10))
    actor.process_batch(np.arange(50, 60))  # must leave no trace
    again = actor.process_batch(np.arange(10))
    assert without_seconds(first) == without_seconds(again)


def test_result_does_not_depend_on_the_actor() -> None:
    config = {"seed": 2, "noise_std": 0.05}
    busy, fresh = TrainingActor(config), TrainingActor(config)
    busy.process_batch(np.arange(30, 40))
    busy.chunk_size = 3
    batch = round_seeds(2, 0, 12)
    assert without_seconds(busy.process_batch(batch)) == without_seconds(fresh.process_batch(batch))


def test_chunk_size_does_not_change_the_result() -> None:
    batch = np.arange(20)
    results = []
    for chunk_size in (1, 7, 20, 32):
        actor = TrainingActor({})
        actor.chunk_size = chunk_size
        results.append(actor.process_batch(batch))
    for result in results[1:]:
        assert without_seconds(result) == without_seconds(results[0])


def test_list_and_read_only_array_batches_agree() -> None:
    actor = TrainingActor({})
    as_array = actor.process_batch(read_only(np.arange(100, 112)))
    as_list = actor.process_batch(list(range(100, 112)))
    assert without_seconds(as_array) == without_seconds(as_list)


def test_set_and_get_weights() -> None:
    trained = TrainingActor({"seed": 3})
    source = stepped({"seed": 3}, [trained.process_batch(np.arange(6))], trained.get_weights())
    actor = TrainingActor({"seed": 4})
    actor.set_weights({k: read_only(v) for k, v in source.items()})
    assert_same_weights(actor.get_weights(), source)
    actor.process_batch(np.arange(6))
    assert_same_weights(actor.get_weights(), source)  # batches leave the round weights alone
    actor.get_weights()["W"][:] = 42.0  # a copy
    assert_same_weights(actor.get_weights(), source)


def test_set_weights_that_do_not_fit_fail_at_once() -> None:
    actor = TrainingActor({})
    before = actor.get_weights()
    with pytest.raises(ValueError, match="shape"):
        actor.set_weights({**before, "W": np.zeros(3)})
    with pytest.raises(TypeError, match="mapping"):
        actor.set_weights([1, 2])  # type: ignore[arg-type]
    assert_same_weights(actor.get_weights(), before)


def test_a_round_split_over_actors_is_one_step_over_all_its_seeds() -> None:
    # Two actors share a round: the driver's step from both results is the
    # step one agent takes over all the seeds, and a new round starts from it.
    config = {"seed": 0}
    actors = [TrainingActor(config), TrainingActor(config)]
    seeds = round_seeds(0, 0, 16)
    results = [actors[0].process_batch(seeds[:8]), actors[1].process_batch(seeds[8:])]
    weights = stepped(config, results, actors[0].get_weights())
    alone = make_agent(config)
    alone.train(seeds, 16)
    assert_same_weights(weights, alone.get_weights())
    assert float(weights["adam.t"]) == 1.0
    for actor in actors:
        actor.set_weights(weights)
    assert_same_weights(actors[0].get_weights(), actors[1].get_weights())


def test_mapping_batch_is_rejected() -> None:
    with pytest.raises(TypeError, match="mapping with columns"):
        TrainingActor({}).process_batch({"seed": [1, 2]})


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ({"agent": "nope"}, ValueError, r"config\['agent'\] = 'nope'"),
        ({"agent": "nowhere.mod:Agent"}, ValueError, r"config\['agent'\] = 'nowhere.mod:Agent'"),
        ({"env": "NoSuchEnv-v0"}, ValueError, r"config\['env'\] = 'NoSuchEnv-v0'"),
        ({"env_kwargs": {"wind": 2}}, ValueError, r"config\['env_kwargs'\] = \{'wind': 2\}"),
        ({"learning_rate": -1}, ValueError, r"config\['learning_rate'\].*-1"),
        ({"lr": 0.1}, ValueError, r"config key 'lr' is not used"),
    ],
)
def test_training_validate_config(config: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        TrainingActor.validate_config(config)


def test_training_validate_config_accepts_good_configs() -> None:
    TrainingActor.validate_config({"learning_rate": 0.001})
    TrainingActor.validate_config({"env": "CartPole-v0", "hidden_size": 4, "seed": 3})
    with pytest.raises(TypeError, match="one config mapping"):
        TrainingActor.validate_config([("a", 1)])  # type: ignore[arg-type]


# -- EvaluationActor --------------------------------------------------------------------


def test_evaluation_result_keys_and_values() -> None:
    actor = EvaluationActor({"max_episode_steps": 100})
    actor.set_weights(balancing_weights())
    result = actor.process_batch(np.arange(5))
    assert set(result) == EVALUATION_KEYS
    assert result["returns"] == [100.0] * 5 and result["lengths"] == [100] * 5
    assert (result["return_mean"], result["return_std"], result["episodes"]) == (100.0, 0.0, 5)
    assert result["env_steps"] == 500 and result["length_mean"] == 100.0


def test_evaluation_is_reproducible_and_chunk_independent() -> None:
    config = {"seed": 6}
    seeds = np.arange(1000, 1020)
    reference = EvaluationActor(config).process_batch(seeds)
    chunked = EvaluationActor(config)
    chunked.chunk_size = 3
    assert chunked.process_batch(read_only(seeds))["returns"] == reference["returns"]
    assert chunked.process_batch(list(seeds))["returns"] == reference["returns"]
    # order follows the seeds
    reversed_run = EvaluationActor(config).process_batch(seeds[::-1])
    assert reversed_run["returns"] == reference["returns"][::-1]


def test_evaluation_uses_the_weights_it_was_given() -> None:
    actor = EvaluationActor({})
    untrained = actor.process_batch(np.arange(10))["return_mean"]
    actor.set_weights(balancing_weights())
    assert actor.process_batch(np.arange(10))["return_mean"] == 500.0 > untrained
    np.testing.assert_array_equal(actor.get_weights()["W"], balancing_weights()["W"])


def test_evaluation_accepts_training_results() -> None:
    trainer = TrainingActor({"seed": 1})
    weights = stepped({"seed": 1}, [trainer.process_batch(np.arange(4))], trainer.get_weights())
    actor = EvaluationActor({"seed": 1})
    actor.set_weights({k: read_only(v) for k, v in weights.items()})
    assert actor.process_batch([1, 2])["episodes"] == 2


def test_merge_equals_one_evaluation_of_all_episodes() -> None:
    actor = EvaluationActor({"seed": 3})
    actor.chunk_size = 4
    seeds = np.arange(30)
    whole = actor.process_batch(seeds)
    parts = [actor.process_batch(seeds[i : i + 7]) for i in range(0, 30, 7)]
    merged = merge_evaluations(parts)
    assert without_seconds(merged) == without_seconds(whole)
    assert merged["seconds"] == pytest.approx(sum(part["seconds"] for part in parts))


def test_merge_and_summarize_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        merge_evaluations([])
    with pytest.raises(ValueError, match="per-episode 'returns'"):
        merge_evaluations([{"return_mean": 3.0}])
    with pytest.raises(ValueError, match="one length per return"):
        summarize_episodes([1.0, 2.0], [1])


@pytest.mark.parametrize(
    ("batch", "error", "message"),
    [
        ([0.5, 1.5], TypeError, "integers"),
        ([-2], ValueError, ">= 0"),
        ([], ValueError, "non-empty"),
        ({"seed": [1]}, TypeError, "mapping"),
    ],
)
def test_evaluation_rejects_bad_batches(batch: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        EvaluationActor({}).process_batch(batch)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"env": "NoSuchEnv-v0"}, r"config\['env'\] = 'NoSuchEnv-v0'"),
        ({"env_kwargs": {"x": 1}}, r"config\['env_kwargs'\]"),
        ({"agent": "nope"}, r"config\['agent'\] = 'nope'"),
    ],
)
def test_evaluation_validate_config(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EvaluationActor.validate_config(config)
    EvaluationActor.validate_config({"env": "CartPole-v1"})


# -- the job, in one process --------------------------------------------------------------


def test_training_rounds_solve_cartpole() -> None:
    """The driver's loop (broadcast, batches on 2 actors, average, evaluate) solves CartPole."""
    config = {"seed": 0}
    trainers = [TrainingActor(config), TrainingActor(config)]
    evaluator = EvaluationActor(config)
    evaluator.chunk_size = 100
    weights = trainers[0].get_weights()
    history = []
    for round_index in range(15):
        for actor in trainers:
            actor.set_weights(weights)
            actor.chunk_size = 64
        seeds = round_seeds(0, round_index, 128)
        results = [trainers[0].process_batch(seeds[:64]), trainers[1].process_batch(seeds[64:])]
        weights = stepped(config, results, weights)
        evaluator.set_weights(weights)
        history.append(evaluator.process_batch(np.arange(10**9, 10**9 + 100))["return_mean"])
        if history[-1] >= 475:
            break
    assert history[-1] >= 475, history
