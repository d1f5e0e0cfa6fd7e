"""examples/custom_agent.py plugged in by import path, through the built-in actors (no Ray)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raymanager.actors import EvaluationActor, TrainingActor
from raymanager.agents import Agent, combine_round, make_agent, round_seeds

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIG: dict[str, Any] = {"agent": "custom_agent:CrossEntropyAgent", "seed": 0}


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # What PYTHONPATH=examples does for the driver and its Ray workers.
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield


def test_import_path_builds_the_example_agent() -> None:
    agent = make_agent(CONFIG)
    assert isinstance(agent, Agent)
    assert type(agent).__name__ == "CrossEntropyAgent"
    assert sorted(agent.get_weights()) == ["mean", "std"]


def test_validate_config_runs_the_examples_own_checks() -> None:
    TrainingActor.validate_config(CONFIG)
    with pytest.raises(ValueError, match=r"config\['elite_fraction'\] must be a number > 0"):
        TrainingActor.validate_config({**CONFIG, "elite_fraction": 0})
    with pytest.raises(ValueError, match="Discrete action space"):
        TrainingActor.validate_config({**CONFIG, "env": "Pendulum-v1"})
    with pytest.raises(ValueError, match=r"config\['env'\] = 'NoSuchEnv-v0'"):
        TrainingActor.validate_config({**CONFIG, "env": "NoSuchEnv-v0"})
    with pytest.raises(ValueError, match="has no 'Missing'"):
        TrainingActor.validate_config({**CONFIG, "agent": "custom_agent:Missing"})


def test_training_actor_runs_it_reproducibly() -> None:
    batch = round_seeds(0, 0, 20)
    first, second = TrainingActor(CONFIG), TrainingActor(CONFIG)
    second.chunk_size = 3
    a, b = first.process_batch(batch), second.process_batch(list(batch))
    assert a["rows"] == 20.0 and a["episodes"] == 20.0
    for key in ("mean", "std"):
        np.testing.assert_array_equal(a["weights"][key], b["weights"][key])


def test_rounds_through_the_actors_improve_the_policy() -> None:
    trainers = [TrainingActor(CONFIG), TrainingActor(CONFIG)]
    evaluator = EvaluationActor(CONFIG)
    eval_seeds = np.arange(10**9, 10**9 + 50)
    initial = evaluator.process_batch(eval_seeds)["return_mean"]
    weights = trainers[0].get_weights()
    for round_index in range(6):
        for actor in trainers:
            actor.set_weights(weights)
        seeds = round_seeds(0, round_index, 100)
        results = [trainers[0].process_batch(seeds[:50]), trainers[1].process_batch(seeds[50:])]
        weights = combine_round(results, weights).weights
    evaluator.set_weights(weights)
    final = evaluator.process_batch(eval_seeds)["return_mean"]
    assert final > max(200.0, 3 * initial), (initial, final)
