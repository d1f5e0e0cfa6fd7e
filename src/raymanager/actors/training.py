"""TrainingActor: one agent update step per batch, always from the round's weights.

A driver trains in rounds: it broadcasts weights with :meth:`TrainingActor.set_weights`,
hands the round's data (for the built-in agents: integer seeds) to the pool in
batches, and combines the results with :func:`raymanager.agents.combine_round`
(:func:`raymanager.rounds.run_round` does all three). Each
:meth:`~TrainingActor.process_batch` restores the round weights first, so a
result depends only on its batch and the round weights, never on which actor
ran it or what that actor ran before; a batch re-run after a worker died gives
the same answer.

For an agent with a ``rollout`` method (:class:`~raymanager.agents.RolloutAgent`:
the built-in ``"es"`` and ``"ars"``) a result holds the batch's seeds and
returns, not weights: its size does not grow with the policy. Other agents
return their updated ``weights``, which the driver averages.

    >>> actor = TrainingActor({"learning_rate": 0.001})
    >>> actor.chunk_size = 8
    >>> result = actor.process_batch(np.arange(16))
    >>> result["rows"], result["plus_returns"].shape, "weights" in result
    (16.0, (16,), False)

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from raymanager.actors.base import RayActor
from raymanager.agents.base import (
    BUILTIN_AGENTS,
    DEFAULT_AGENT,
    Agent,
    RolloutAgent,
    make_agent,
    validate_agent_config,
)
from raymanager.envs import ENV_CONFIG_KEYS, validate_env_config

__all__ = ["TrainingActor"]


def _copy_weights(weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Arrays that arrive through Ray's object store are read-only views of shared
    # memory; keep private, writable copies.
    if not isinstance(weights, Mapping):
        raise TypeError(
            f"weights must be a mapping of names to arrays, got {type(weights).__name__}"
        )
    return {str(key): np.array(value, copy=True) for key, value in weights.items()}


class TrainingActor(RayActor[Any, dict[str, Any]]):
    """Trains the agent of ``agent_config``: one update step per batch.

    ``agent_config`` names the agent (key ``agent``, default ``"es"``; see
    :mod:`raymanager.agents`) and holds its hyperparameters and environment
    keys (see :mod:`raymanager.agents.es` for the defaults). All keys are
    optional: ``TrainingActor({"learning_rate": 0.001})`` works.

    :meth:`process_batch` returns the agent's metrics (``fitness_mean``,
    ``fitness_max``, ``loss``, ``episodes``, ``env_steps``, ...) plus ``rows``
    (rows in the batch) and ``seconds`` (time in this call); for a
    :class:`~raymanager.agents.RolloutAgent` also its rollout (``seeds``,
    ``plus_returns``, ...), otherwise ``weights`` (the updated weights).

    >>> a, b = TrainingActor({"seed": 5}), TrainingActor({"seed": 5})
    >>> all(np.array_equal(a.get_weights()[k], b.get_weights()[k]) for k in a.get_weights())
    True
    """

    def __init__(self, agent_config: Mapping[str, Any] | None = None) -> None:
        super().__init__(agent_config)
        self.agent: Agent = make_agent(self.config)
        self._round_weights = _copy_weights(self.agent.get_weights())

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        """Check the agent and environment of ``config`` in the driver.

        Raises ``ValueError``/``TypeError`` naming the key and the value, e.g.
        for an unknown agent, an import path that does not import, an unknown
        environment id or keywords the environment rejects.

        >>> TrainingActor.validate_config({"agent": "nope"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: config['agent'] = 'nope' is neither a built-in agent (ars, es) nor ...
        """
        if not isinstance(config, Mapping):
            raise TypeError(f"TrainingActor takes one config mapping, got {type(config).__name__}")
        # Built-in agents check their environment themselves; a user's agent may
        # not, so check the environment keys it was given first, before its own
        # validate_config hook can trip over a bad environment less clearly.
        if config.get("agent", DEFAULT_AGENT) not in BUILTIN_AGENTS and any(
            key in config for key in ENV_CONFIG_KEYS
        ):
            validate_env_config(config)
        validate_agent_config(config)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Set the round weights: the weights every following batch starts from.

        The agent loads them at once, so weights that do not fit it fail here,
        not in the next batch.
        """
        copied = _copy_weights(weights)
        self.agent.set_weights(copied)
        self._round_weights = copied

    def get_weights(self) -> dict[str, np.ndarray]:
        """A copy of the round weights (a batch's result does not change them)."""
        return _copy_weights(self._round_weights)

    def process_batch(self, batch: Any) -> dict[str, Any]:
        """One update step over ``batch`` from the round weights; metrics and new weights.

        ``batch`` is a 1-D numpy array or a list of training rows (for ES:
        non-negative integer seeds); the agent works through it
        ``self.chunk_size`` rows at a time.
        """
        started = time.perf_counter()
        if isinstance(batch, Mapping):
            raise TypeError(
                "TrainingActor takes a batch of rows (an array or a list), "
                f"got a mapping with columns {sorted(batch)}"
            )
        rows = np.asarray(batch)
        self.agent.set_weights(self._round_weights)
        result: dict[str, Any]
        if isinstance(self.agent, RolloutAgent):
            result = dict(self.agent.rollout(rows, self.chunk_size))
        else:
            metrics = self.agent.train(rows, self.chunk_size)
            result = {key: float(value) for key, value in metrics.items()}
            result["weights"] = self.agent.get_weights()
        result["rows"] = float(len(rows))
        result["seconds"] = time.perf_counter() - started
        return result
