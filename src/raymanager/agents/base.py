"""The Agent protocol, the agent factory, and weight averaging.

An agent is what a :class:`~raymanager.actors.TrainingActor` trains and an
:class:`~raymanager.actors.EvaluationActor` runs. It is chosen by the config key
``agent``:

* a built-in name: ``"es"`` (evolution strategies, see
  :mod:`raymanager.agents.es`; the default) or ``"ars"`` (Augmented Random
  Search, see :mod:`raymanager.agents.ars`; for continuous actions);
* an import path ``"package.module:Factory"``, where ``Factory(config)``
  returns an object that satisfies :class:`Agent`. ``Factory`` may be a class
  or any callable; ``"package.module:Outer.factory"`` reaches attributes.

The config is *trusted*: an import path imports and runs that module's code
in the driver (to check it) and in every worker, so never build a config from
input you do not control.

    >>> agent = make_agent({"agent": "es", "seed": 3})
    >>> isinstance(agent, Agent)
    True
    >>> sorted(agent.get_weights())[:2]
    ['W', 'adam.m.W']

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "BUILTIN_AGENTS",
    "DEFAULT_AGENT",
    "Agent",
    "AgentFactory",
    "RolloutAgent",
    "RoundUpdate",
    "Weights",
    "average_weights",
    "combine_round",
    "make_agent",
    "resolve_agent_factory",
    "round_seeds",
    "validate_agent_config",
]

#: Weights of an agent: named numpy arrays (for ES: the policy and Adam's state).
Weights = dict[str, np.ndarray]

#: Agent used when the config has no ``agent`` key.
DEFAULT_AGENT = "es"

#: Built-in agent names and the import path of their factory.
BUILTIN_AGENTS: Mapping[str, str] = {
    "es": "raymanager.agents.es:EvolutionStrategies",
    "ars": "raymanager.agents.ars:ARS",
}


@runtime_checkable
class Agent(Protocol):
    """What the built-in actors need of an agent.

    ``train`` takes one update step from the agent's current weights over one
    batch of training data (for the built-in agent, a batch of integer seeds),
    working through it ``chunk_size`` rows at a time to bound memory, and
    returns metrics. ``act`` must be deterministic so evaluations are
    reproducible. Weights are named numpy arrays, so a driver can average
    them across workers with :func:`average_weights`.
    """

    def train(self, batch_of_seeds: np.ndarray, chunk_size: int) -> dict[str, float]:
        """One update step over ``batch_of_seeds``; returns metrics (name -> number)."""
        ...

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations (first axis: environment)."""
        ...

    def get_weights(self) -> dict[str, np.ndarray]:
        """A copy of all state the next ``train`` step starts from."""
        ...

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Replace the agent's state with ``weights`` (as from ``get_weights``)."""
        ...


@runtime_checkable
class RolloutAgent(Agent, Protocol):
    """An agent whose update step splits into worker rollouts and one driver step.

    ``rollout`` runs a batch's episodes and returns scalars (per seed: its
    returns; plus whatever small statistics the step needs), never weights;
    ``apply_rollouts`` takes the results of all of a round's batches, in batch
    order, and takes the round's step. The built-in actors and
    :func:`combine_round` use this split when an agent has it, so the bytes
    sent back per batch do not grow with the policy.
    """

    def rollout(self, batch_of_seeds: np.ndarray, chunk_size: int) -> dict[str, Any]:
        """Episodes of one batch from the current weights; scalars and statistics only."""
        ...

    def apply_rollouts(self, results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """One step from the current weights given a round's rollout results."""
        ...


#: Anything that builds an agent from a config mapping.
AgentFactory = Callable[[Mapping[str, Any]], Agent]


def resolve_agent_factory(name: object) -> AgentFactory:
    """The factory for the config value ``agent``: a built-in name or an import path.

    Imports the module of an import path (trusted configuration: it runs that
    module's code).

    >>> resolve_agent_factory("es").__name__
    'EvolutionStrategies'
    >>> resolve_agent_factory("ppo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: config['agent'] = 'ppo' is neither a built-in agent (ars, es) nor an import path ...
    """
    if not isinstance(name, str):
        raise TypeError(
            f"config['agent'] must be a str (a built-in agent name or "
            f"'package.module:Factory'), got {name!r}"
        )
    path = BUILTIN_AGENTS.get(name, name)
    module_name, sep, attribute_path = path.partition(":")
    if not sep or not module_name or not attribute_path:
        raise ValueError(
            f"config['agent'] = {name!r} is neither a built-in agent "
            f"({', '.join(sorted(BUILTIN_AGENTS))}) nor an import path 'package.module:Factory'"
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"config['agent'] = {name!r}: cannot import module {module_name!r}: {error}"
        ) from error
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError as error:
            raise ValueError(
                f"config['agent'] = {name!r}: module {module_name!r} has no {attribute_path!r}"
            ) from error
    if not callable(target):
        raise ValueError(
            f"config['agent'] = {name!r}: {attribute_path!r} is not callable "
            f"(expected a factory taking a config mapping), got {type(target).__name__}"
        )
    factory: AgentFactory = target
    return factory


def make_agent(config: Mapping[str, Any]) -> Agent:
    """Build the agent named by ``config["agent"]`` (default ``"es"``) from ``config``.

    The whole config is passed to the factory, so an agent reads its own keys.

    >>> agent = make_agent({"learning_rate": 0.001})
    >>> agent.act(np.zeros((2, 4), dtype=np.float32)).shape
    (2,)
    """
    name = config.get("agent", DEFAULT_AGENT)
    factory = resolve_agent_factory(name)
    agent = factory(config)
    if not isinstance(agent, Agent):
        missing = [
            method
            for method in ("train", "act", "get_weights", "set_weights")
            if not callable(getattr(agent, method, None))
        ]
        raise ValueError(
            f"config['agent'] = {name!r} returned a {type(agent).__name__}, which is not an "
            f"Agent: it lacks {', '.join(missing)}"
        )
    return agent


def validate_agent_config(config: Mapping[str, Any]) -> None:
    """Check ``config["agent"]`` in the driver, before any worker builds the agent.

    Resolves (and so imports) the factory; if the factory has a
    ``validate_config(config)`` attribute, calls it too, so that an agent can
    reject its own bad keys with a clear message. Building the agent itself is
    left to the workers.

    >>> validate_agent_config({"agent": "es", "noise_std": -1.0})
    Traceback (most recent call last):
    ...
    ValueError: config['noise_std'] must be a finite number > 0, got -1.0
    """
    factory = resolve_agent_factory(config.get("agent", DEFAULT_AGENT))
    validate = getattr(factory, "validate_config", None)
    if callable(validate):
        validate(config)


def average_weights(
    weights: Sequence[Mapping[str, np.ndarray]],
    counts: Sequence[float] | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Average several weight mappings key by key, optionally weighted by ``counts``.

    A driver combines the results of one round with this: every batch took one
    step from the same round weights, so the average of the updated weights is
    the step over the whole round (exactly so for SGD; for Adam, whose state is
    part of the weights, a close approximation). ``counts`` (e.g. rows per
    batch) weight the mean. All mappings must have the same keys and shapes.
    Floating arrays keep their dtype; integer arrays become float64.

    >>> a = {"w": np.array([0.0, 2.0])}
    >>> b = {"w": np.array([2.0, 4.0])}
    >>> average_weights([a, b])["w"]
    array([1., 3.])
    >>> average_weights([a, b], counts=[3, 1])["w"]
    array([0.5, 2.5])
    """
    if len(weights) == 0:
        raise ValueError("average_weights needs at least one weights mapping, got none")
    keys = set(weights[0])
    for index, mapping in enumerate(weights[1:], start=1):
        if set(mapping) != keys:
            raise ValueError(
                f"weights[{index}] has keys {sorted(mapping)}, weights[0] has {sorted(keys)}"
            )
    if counts is None:
        factors = np.full(len(weights), 1.0 / len(weights))
    else:
        count_array = np.asarray(counts, dtype=np.float64)
        if count_array.shape != (len(weights),):
            raise ValueError(
                f"counts must have one entry per weights mapping ({len(weights)}), got {counts!r}"
            )
        if (count_array < 0).any() or not np.isfinite(count_array).all() or count_array.sum() <= 0:
            raise ValueError(f"counts must be finite, >= 0 and not all 0, got {counts!r}")
        factors = count_array / count_array.sum()
    averaged: dict[str, np.ndarray] = {}
    for key in weights[0]:
        arrays = [np.asarray(mapping[key]) for mapping in weights]
        shapes = {array.shape for array in arrays}
        if len(shapes) > 1:
            raise ValueError(f"weights[{key!r}] differ in shape: {sorted(shapes)}")
        dtype = arrays[0].dtype if np.issubdtype(arrays[0].dtype, np.floating) else np.float64
        total = np.zeros(arrays[0].shape, dtype=np.float64)
        # Summed in input order, so the result does not depend on anything but the inputs.
        for factor, array in zip(factors, arrays, strict=True):
            total += factor * array
        averaged[key] = total.astype(dtype, copy=False)
    return averaged


@dataclass
class RoundUpdate:
    """What one training round produced: the next weights and the round's totals."""

    weights: dict[str, np.ndarray]
    metrics: dict[str, float]


def combine_round(
    results: Sequence[Mapping[str, Any]],
    round_weights: Mapping[str, np.ndarray],
    learner: Agent | None = None,
) -> RoundUpdate:
    """The next weights from a round's batch results (in batch order), and the round's metrics.

    Results with ``weights`` (agents that only have ``train``) are averaged,
    weighted by their ``rows``; rollout results (:class:`RolloutAgent`) go
    through ``learner.apply_rollouts`` from ``round_weights``. Either way the
    outcome depends only on the results and their order, not on which worker
    made them. ``metrics`` sums ``env_steps``, ``episodes`` and ``rows`` and
    gives ``fitness_mean`` (per episode), ``fitness_max`` and ``loss``.

    >>> from raymanager.agents.es import EvolutionStrategies
    >>> learner = EvolutionStrategies({})
    >>> start = learner.get_weights()
    >>> update = combine_round([learner.rollout(np.arange(4), 4)], start, learner)
    >>> update.metrics["episodes"], bool((update.weights["W"] != start["W"]).any())
    (8.0, True)
    """
    if len(results) == 0:
        raise ValueError("combine_round needs the results of at least one batch, got none")
    episodes = [float(r.get("episodes", r.get("rows", 1.0))) for r in results]
    total_episodes = sum(episodes)
    metrics = {
        "env_steps": float(sum(float(r["env_steps"]) for r in results)),
        "episodes": total_episodes,
        "rows": float(sum(float(r["rows"]) for r in results)),
        "fitness_mean": float(sum(float(r["fitness_mean"]) * n
                                  for r, n in zip(results, episodes, strict=True))
                              / max(total_episodes, 1.0)),
        "fitness_max": float(max(float(r["fitness_max"]) for r in results)),
        "loss": float(np.mean([float(r.get("loss", -float(r["fitness_mean"])))
                               for r in results])),
    }
    if all("weights" in r for r in results):
        weights = average_weights([r["weights"] for r in results],
                                  counts=[float(r["rows"]) for r in results])
        return RoundUpdate(weights, metrics)
    if learner is None or not isinstance(learner, RolloutAgent):
        raise ValueError(
            "these results carry no weights (rollout results): combine_round needs a learner "
            "with apply_rollouts, e.g. make_agent(config) in the driver")
    learner.set_weights(round_weights)
    step = learner.apply_rollouts(results)
    metrics.update({k: float(v) for k, v in step.items() if k not in metrics})
    return RoundUpdate(learner.get_weights(), metrics)


def round_seeds(seed: int, round_index: int, count: int) -> np.ndarray:
    """``count`` non-negative int64 seeds (below 2**31) for training round ``round_index``.

    Reproducible from ``(seed, round_index)``; drawn independently for every
    round and every ``seed``, so repeats are as rare as random 31-bit
    collisions. The data a driver feeds a pool of
    :class:`~raymanager.actors.TrainingActor` each round.

    >>> round_seeds(0, 1, 3).tolist() == round_seeds(0, 1, 3).tolist()
    True
    >>> bool((round_seeds(0, 1, 3) != round_seeds(0, 2, 3)).all())
    True
    """
    for name, value, minimum in (("seed", seed, 0), ("round_index", round_index, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be an int >= 0, got {count!r}")
    rng = np.random.default_rng([int(seed), int(round_index)])
    return rng.integers(0, 2**31 - 1, size=int(count), dtype=np.int64)
