"""A user-defined agent, plugged into raymanager by import path.

``CrossEntropyAgent`` is the cross-entropy method over a linear policy: it keeps
a Gaussian (``mean``, ``std``) over the policy's weights; a training batch of
integer seeds draws one candidate per seed, runs one episode with each, and
refits the Gaussian to the best ``elite_fraction`` of them. It satisfies
:class:`raymanager.agents.Agent` (``train``, ``act``, ``get_weights``,
``set_weights``), so the built-in actors run it unchanged; its weights are
``{"mean": ..., "std": ...}``, so averaging the results of a round's batches
averages the two Gaussians.

Name it in the actor config as ``"module:Factory"``. The module must be
importable in the driver and in every worker: here, run from the repository
root with ``PYTHONPATH=examples`` (local Ray workers inherit the driver's
environment; on a cluster, ship it with a Ray ``runtime_env``). The config is
trusted: naming a module runs its code.

    PYTHONPATH=examples python examples/custom_agent.py

Without Ray, the same agent through a TrainingActor::

    >>> from raymanager.actors import TrainingActor
    >>> actor = TrainingActor({"agent": "custom_agent:CrossEntropyAgent", "seed": 1})
    >>> result = actor.process_batch(list(range(20)))
    >>> sorted(result["weights"])
    ['mean', 'std']

Config keys (besides ``agent``): ``env``, ``env_kwargs``, ``max_episode_steps``
(see :mod:`raymanager.envs`), ``seed`` (initial mean), ``learning_rate``
(how far one step moves the Gaussian towards the elite's; 1.0 = all the way),
``elite_fraction``, ``init_std``, ``min_std`` (floor that keeps exploring).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from raymanager.envs import env_spaces
from raymanager.episodes import make_vector_env, run_episodes

DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.7,
    "elite_fraction": 0.2,
    "init_std": 1.0,
    "min_std": 0.05,
    "seed": 0,
}


class CrossEntropyAgent:
    """Cross-entropy method over a linear argmax policy (discrete actions only).

    >>> agent = CrossEntropyAgent({"seed": 0})
    >>> agent.act(np.zeros((3, 4))).shape
    (3,)
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.validate_config(config)
        self.config = {**DEFAULTS, **config}
        observation_space, action_space = env_spaces(self.config)
        assert isinstance(observation_space, spaces.Box)
        assert isinstance(action_space, spaces.Discrete)
        self.shape = (int(np.prod(observation_space.shape)) + 1, int(action_space.n))
        rng = np.random.default_rng(int(self.config["seed"]))
        self.mean = rng.standard_normal(self.shape) * 0.1
        self.std = np.full(self.shape, float(self.config["init_std"]))

    @staticmethod
    def validate_config(config: Mapping[str, Any]) -> None:
        """Called by raymanager in the driver before workers start (optional hook)."""
        for key in ("learning_rate", "elite_fraction", "init_std", "min_std"):
            value = config.get(key, DEFAULTS[key])
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"config[{key!r}] must be a number > 0, got {value!r}")
        if config.get("elite_fraction", DEFAULTS["elite_fraction"]) > 1:
            raise ValueError("config['elite_fraction'] must be <= 1")
        observation_space, action_space = env_spaces({**DEFAULTS, **config})
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(
                f"CrossEntropyAgent needs a Box observation space, got {observation_space}"
            )
        if not isinstance(action_space, spaces.Discrete):
            raise ValueError(f"CrossEntropyAgent needs a Discrete action space, got {action_space}")

    def train(self, batch_of_seeds: np.ndarray, chunk_size: int) -> dict[str, float]:
        """Draw one candidate per seed, run one episode each, refit to the elite."""
        seeds = np.asarray(batch_of_seeds, dtype=np.int64)
        candidates = np.empty((len(seeds), *self.shape))
        episode_seeds = np.empty(len(seeds), dtype=np.int64)
        for index, seed in enumerate(seeds):
            rng = np.random.default_rng(int(seed))
            candidates[index] = self.mean + self.std * rng.standard_normal(self.shape)
            episode_seeds[index] = rng.integers(0, 2**31 - 1)
        returns = np.empty(len(seeds))
        env_steps = 0
        for start in range(0, len(seeds), chunk_size):
            stop = min(start + chunk_size, len(seeds))
            env = make_vector_env(self.config, stop - start)
            policy = functools.partial(_linear_actions, candidates[start:stop])
            outcome = run_episodes(env, policy, episode_seeds[start:stop])
            env.close()
            returns[start:stop] = outcome.returns
            env_steps += outcome.env_steps
        elite_count = max(2, round(len(seeds) * float(self.config["elite_fraction"])))
        # Stable sort on the negated returns: ties keep seed order, so results repeat.
        elite = candidates[np.argsort(-returns, kind="stable")[:elite_count]]
        rate = min(1.0, float(self.config["learning_rate"]))
        self.mean = (1 - rate) * self.mean + rate * elite.mean(axis=0)
        new_std = np.maximum(elite.std(axis=0), float(self.config["min_std"]))
        self.std = (1 - rate) * self.std + rate * new_std
        return {
            "fitness_mean": float(returns.mean()),
            "fitness_max": float(returns.max()),
            "fitness_min": float(returns.min()),
            "loss": -float(returns.mean()),
            "episodes": float(len(seeds)),
            "env_steps": float(env_steps),
        }

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Greedy actions of the mean policy."""
        return _linear_actions(self.mean[None], observations)

    def get_weights(self) -> dict[str, np.ndarray]:
        """The Gaussian over the policy's weights."""
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load ``{"mean": ..., "std": ...}`` as from :meth:`get_weights`."""
        mean = np.array(weights["mean"], dtype=np.float64)
        std = np.array(weights["std"], dtype=np.float64)
        if mean.shape != self.shape or std.shape != self.shape:
            raise ValueError(f"weights must have shape {self.shape}, got {mean.shape}, {std.shape}")
        self.mean, self.std = mean, std


def _linear_actions(weights: np.ndarray, observations: np.ndarray) -> np.ndarray:
    """argmax of [obs, 1] @ W, with one W per row (or one W for all rows)."""
    x = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    logits = (x[:, :, None] * weights).sum(axis=1)
    actions: np.ndarray = np.argmax(logits, axis=1)
    return actions


def main() -> None:
    """Train CrossEntropyAgent on CartPole-v1 with two Ray workers."""
    from raymanager import BatchConfig, RayConfig, RayManager
    from raymanager.actors import EvaluationActor, TrainingActor, merge_evaluations
    from raymanager.agents import round_seeds
    from raymanager.rounds import run_round

    config = {"agent": "custom_agent:CrossEntropyAgent", "env": "CartPole-v1", "seed": 0}
    with RayManager(RayConfig(num_cpus=2)) as manager:
        trainers = manager.create_actor_pool(TrainingActor, config, num_actors=2)
        evaluators = manager.create_actor_pool(EvaluationActor, config, num_actors=2)
        weights = manager.broadcast(trainers, "get_weights")[0]
        for round_index in range(30):
            # Broadcast, run the seeds in batches, average the batches' weights
            # (this agent sends weights back; ES and ARS send only returns).
            step = run_round(manager, trainers, weights, round_seeds(0, round_index, 100),
                             BatchConfig(batch_size=50, num_parallel=2))
            weights = step.weights
            manager.broadcast(evaluators, "set_weights", (weights,), replay_on_restart=True)
            episodes = np.arange(10**9, 10**9 + 100)
            evaluation = merge_evaluations(
                manager.process_in_parallel(
                    evaluators, episodes, BatchConfig(batch_size=50, num_parallel=2)
                )
            )
            print(f"round {round_index + 1}: mean return {evaluation['return_mean']:.1f}")
            if evaluation["return_mean"] >= 475:
                break


if __name__ == "__main__":
    main()
