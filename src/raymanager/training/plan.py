"""Options resolved once, at the edge, into a frozen :class:`TrainPlan`.

A run (or a sweep of many) reads its options once: the environment is built
once to learn its spaces and threshold, the agent and the round options are
chosen, both batch configs are cut, and nothing Optional is left. The loop,
the live display and evaluation take the plan, never the raw options.

    >>> plan = plan_run(TrainConfig(seed=1))
    >>> plan.agent, plan.seeds_per_round, plan.target, plan.eval_batch.batch_size
    ('es', 128, 475.0, 50)
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from raymanager.agents.base import validate_agent_config
from raymanager.config import BatchConfig
from raymanager.envs import EnvFacts, env_facts
from raymanager.training.options import (
    ROUND_DEFAULT_KEYS,
    TrainConfig,
    default_agent,
    round_defaults,
)

__all__ = ["TrainPlan", "plan_run"]


@dataclass(frozen=True)
class TrainPlan:
    """Everything a training run needs, resolved: no option is left at "default".

    Build it with :func:`plan_run`. ``config`` is the options with every None
    that has a default filled in: what ``config.yaml`` records and a resumed
    run compares against.
    """

    config: TrainConfig
    env: EnvFacts
    #: "es", "ars" or a custom factory's import path.
    agent: str
    #: What every TrainingActor and EvaluationActor is built from (read-only).
    agent_config: Mapping[str, Any]
    seeds_per_round: int
    train_batch: BatchConfig
    eval_every: int
    eval_episodes: int
    eval_batch: BatchConfig
    target: float
    max_rounds: int
    max_seconds: float | None

    @property
    def seed(self) -> int:
        """The run's seed (weights, training seeds and evaluation seeds)."""
        return self.config.seed


def plan_run(config: TrainConfig) -> TrainPlan:
    """Resolve ``config`` into a plan, checking the environment and agent on the way.

    Builds the environment once (a wrong id raises ValueError with close
    matches, before Ray starts). The target return becomes the environment's
    threshold unless the config sets one; the ES agent's learning rate and
    noise scale become its defaults (a custom agent's defaults are its own
    business: they stay None).

    >>> plan_run(TrainConfig(env="Pendulum-v1", target_return=-200)).config.seeds_per_round
    16
    >>> plan_run(TrainConfig(env="CartPol-v1"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: config['env'] = 'CartPol-v1' is not a gymnasium environment: ...
    """
    config = copy.deepcopy(config)  # the plan never shares a mutable dict with the caller
    facts = env_facts({"env": config.env, "env_kwargs": config.env_kwargs})
    agent = config.agent or default_agent(facts.continuous_actions)
    values: dict[str, Any] = {"agent": agent}
    defaults = round_defaults(config.env, agent)
    for key in ROUND_DEFAULT_KEYS:
        if getattr(config, key) is None:
            values[key] = defaults[key]
    if config.target_return is not None:
        values["target_return"] = float(config.target_return)
    elif facts.reward_threshold is not None:
        values["target_return"] = facts.reward_threshold
    else:
        raise ValueError(
            f"{config.env} has no reward threshold; set target_return to say when it is solved"
        )
    resolved = dataclasses.replace(config, **values)
    agent_config = resolved.agent_config()
    validate_agent_config(agent_config)  # bad agent keys fail here, not in a worker
    if agent == "es":
        from raymanager.agents.es import ESConfig

        settings = ESConfig.from_mapping(agent_config)
        resolved = dataclasses.replace(resolved, learning_rate=settings.learning_rate,
                                       noise_std=settings.noise_std)
        agent_config = resolved.agent_config()
    return _plan_of(resolved, facts, agent_config)


def _plan_of(config: TrainConfig, facts: EnvFacts, agent_config: dict[str, Any]) -> TrainPlan:
    # Every Optional below was filled by plan_run; the checks make that a
    # type fact instead of an assert.
    seeds, batch, chunk = config.seeds_per_round, config.batch_size, config.chunk_size
    eval_every, episodes = config.eval_every, config.eval_episodes
    if (seeds is None or batch is None or chunk is None or eval_every is None
            or episodes is None or config.target_return is None or config.agent is None):
        raise AssertionError(f"an option is unresolved: {config}")  # pragma: no cover
    per_eval_actor = math.ceil(episodes / config.num_eval_actors)
    return TrainPlan(
        config=config,
        env=facts,
        agent=config.agent,
        agent_config=MappingProxyType(agent_config),
        seeds_per_round=seeds,
        train_batch=BatchConfig(batch_size=batch, num_parallel=config.num_actors,
                                chunk_size=chunk),
        eval_every=eval_every,
        eval_episodes=episodes,
        # One batch per evaluation actor: an evaluation is one wide vector env each.
        eval_batch=BatchConfig(batch_size=per_eval_actor, num_parallel=config.num_eval_actors,
                               chunk_size=per_eval_actor),
        target=config.target_return,
        max_rounds=config.max_rounds,
        max_seconds=config.max_seconds,
    )
