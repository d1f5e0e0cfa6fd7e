"""EvaluationActor: runs episodes with given weights, ``chunk_size`` at a time.

The data of an evaluation are episode seeds. Each episode's start depends only
on its seed (see :func:`raymanager.episodes.run_episodes`) and the policy is
deterministic, so the same seeds and weights give the same returns whatever the
batching, the chunking or the actor. Results carry every episode's return and
length, so :func:`merge_evaluations` can summarise, say, 100 episodes split
over several batches exactly.

    >>> actor = EvaluationActor({"env": "CartPole-v1"})
    >>> result = actor.process_batch(list(range(4)))
    >>> result["episodes"], len(result["returns"])
    (4, 4)

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv

from raymanager.actors.base import RayActor
from raymanager.agents.base import Agent, make_agent, validate_agent_config
from raymanager.envs import validate_env_config
from raymanager.episodes import VectorEnvCache, run_episodes

__all__ = ["EvaluationActor", "merge_evaluations", "summarize_episodes"]


def summarize_episodes(
    returns: Sequence[float] | np.ndarray,
    lengths: Sequence[int] | np.ndarray,
    seconds: float = 0.0,
) -> dict[str, Any]:
    """The evaluation summary of per-episode returns and lengths.

    >>> summary = summarize_episodes([10.0, 20.0], [10, 20])
    >>> summary["return_mean"], summary["return_std"], summary["env_steps"]
    (15.0, 5.0, 30)
    """
    returns_array = np.asarray(returns, dtype=np.float64).reshape(-1)
    lengths_array = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if returns_array.size == 0 or returns_array.size != lengths_array.size:
        raise ValueError(
            f"need one length per return and at least one episode, got {returns_array.size} "
            f"returns and {lengths_array.size} lengths"
        )
    return {
        "return_mean": float(returns_array.mean()),
        "return_std": float(returns_array.std()),
        "return_min": float(returns_array.min()),
        "return_max": float(returns_array.max()),
        "length_mean": float(lengths_array.mean()),
        "episodes": int(returns_array.size),
        "env_steps": int(lengths_array.sum()),
        "seconds": float(seconds),
        "returns": [float(value) for value in returns_array],
        "lengths": [int(value) for value in lengths_array],
    }


def merge_evaluations(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One summary of several :meth:`EvaluationActor.process_batch` results.

    Episodes are pooled, so the statistics are exactly those of one evaluation
    over all of them; ``seconds`` is the sum of the actors' time.

    >>> a = summarize_episodes([10.0], [10], seconds=1.0)
    >>> b = summarize_episodes([30.0], [30], seconds=2.0)
    >>> merged = merge_evaluations([a, b])
    >>> merged["return_mean"], merged["episodes"], merged["seconds"]
    (20.0, 2, 3.0)
    """
    if len(results) == 0:
        raise ValueError("merge_evaluations needs at least one evaluation result, got none")
    returns: list[float] = []
    lengths: list[int] = []
    for index, result in enumerate(results):
        if "returns" not in result or "lengths" not in result:
            raise ValueError(
                f"results[{index}] has no per-episode 'returns' and 'lengths'; "
                "is it an EvaluationActor result?"
            )
        returns.extend(result["returns"])
        lengths.extend(result["lengths"])
    seconds = sum(float(result.get("seconds", 0.0)) for result in results)
    return summarize_episodes(returns, lengths, seconds)


class EvaluationActor(RayActor[Any, dict[str, Any]]):
    """Evaluates a policy: one episode per seed of the batch.

    ``env_config`` holds the environment keys (``env``, ``env_kwargs``,
    ``max_episode_steps``, see :mod:`raymanager.envs`) and the agent keys (the
    same config as the :class:`~raymanager.actors.TrainingActor` it evaluates;
    ``agent`` defaults to ``"es"``). Until :meth:`set_weights` is called it
    evaluates the agent's initial weights.

    :meth:`process_batch` returns ``return_mean``, ``return_std``,
    ``return_min``, ``return_max``, ``length_mean``, ``episodes``,
    ``env_steps``, ``seconds``, and the per-episode ``returns`` and ``lengths``.

    >>> a, b = EvaluationActor({}), EvaluationActor({})
    >>> a.chunk_size = 2
    >>> a.process_batch([5, 6, 7])["returns"] == b.process_batch([5, 6, 7])["returns"]
    True
    """

    def __init__(self, env_config: Mapping[str, Any] | None = None) -> None:
        super().__init__(env_config)
        self.agent: Agent = make_agent(self.config)
        # One vector env per number of episodes run at once; at most two are in use
        # (full chunks and the last, shorter one).
        self._envs = VectorEnvCache(self.config)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        """Check the environment and agent of ``config`` in the driver (clear errors).

        >>> EvaluationActor.validate_config({"env": "NoSuchEnv-v0"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: config['env'] = 'NoSuchEnv-v0' is not a gymnasium environment: ...
        """
        if not isinstance(config, Mapping):
            raise TypeError(
                f"EvaluationActor takes one config mapping, got {type(config).__name__}"
            )
        validate_env_config(config)
        validate_agent_config(config)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Evaluate ``weights`` from now on (as from ``TrainingActor``'s results)."""
        if not isinstance(weights, Mapping):
            raise TypeError(
                f"weights must be a mapping of names to arrays, got {type(weights).__name__}"
            )
        self.agent.set_weights({key: np.array(value, copy=True) for key, value in weights.items()})

    def get_weights(self) -> dict[str, np.ndarray]:
        """A copy of the weights being evaluated."""
        return self.agent.get_weights()

    def process_batch(self, batch: Any) -> dict[str, Any]:
        """Run one episode per seed in ``batch``, ``self.chunk_size`` episodes at once."""
        started = time.perf_counter()
        seeds = _episode_seeds(batch)
        returns: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        for chunk in self.iter_chunks(seeds):
            outcome = run_episodes(self._env(len(chunk)), self.agent.act, chunk)
            returns.append(outcome.returns)
            lengths.append(outcome.lengths)
        return summarize_episodes(
            np.concatenate(returns), np.concatenate(lengths), time.perf_counter() - started
        )

    def close(self) -> None:
        """Close the vector environments this actor opened."""
        self._envs.close()

    def _env(self, num_envs: int) -> VectorEnv[Any, Any, Any]:
        return self._envs.get(num_envs)


def _episode_seeds(batch: Any) -> np.ndarray:
    if isinstance(batch, Mapping):
        raise TypeError(
            f"EvaluationActor takes a batch of episode seeds, got a mapping with columns "
            f"{sorted(batch)}"
        )
    seeds = np.asarray(batch)
    if seeds.ndim != 1 or seeds.size == 0:
        raise ValueError(f"a batch of episode seeds must be 1-D and non-empty, got {seeds.shape}")
    if not np.issubdtype(seeds.dtype, np.integer):
        raise TypeError(f"episode seeds must be integers, got dtype {seeds.dtype}")
    if (seeds < 0).any():
        raise ValueError(f"episode seeds must be >= 0, got {int(seeds.min())}")
    return seeds.astype(np.int64, copy=False)
