"""One training round on a pool: broadcast the weights, process the seeds, combine.

This is the round ``raymanager train`` runs, written once for the CLI, the
benchmarks, the tests and the examples::

    manager.broadcast(pool, "set_weights", (weights,))   # put once, every actor
    results = manager.process_in_parallel(pool, seeds, batch_config)
    update = combine_round(results, weights, learner)    # batch order: deterministic

Batches go to whichever actor is free (the pool's dynamic dispatch), so many
small batches keep both actors busy until the end of the round; the results
come back in batch order, so the next weights do not depend on which actor ran
what, nor on how many actors there are.

    >>> with RayManager() as manager:                                   # doctest: +SKIP
    ...     pool = manager.create_actor_pool(TrainingActor, config, num_actors=2)
    ...     learner = make_agent(config)
    ...     weights = learner.get_weights()
    ...     for index in range(10):
    ...         step = run_round(manager, pool, weights, round_seeds(0, index, 32),
    ...                          BatchConfig(batch_size=4, num_parallel=2), learner)
    ...         weights = step.weights
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raymanager.agents.base import Agent, combine_round
from raymanager.config import BatchConfig
from raymanager.manager import RayManager
from raymanager.pool import ActorPool

__all__ = ["RoundResult", "message_bytes", "run_round"]


@dataclass
class RoundResult:
    """The next weights, the round's metrics, and what travelled over the wire.

    ``result_bytes`` is the serialized size of every batch result (actors to
    driver), ``broadcast_bytes`` the size of the weights put into the object
    store once for the round (driver to actors).
    """

    weights: dict[str, np.ndarray]
    metrics: dict[str, float]
    batches: int
    result_bytes: int
    broadcast_bytes: int

    @property
    def result_bytes_per_batch(self) -> float:
        """Mean serialized size of one batch's result."""
        return self.result_bytes / max(self.batches, 1)


def message_bytes(value: Any) -> int:
    """Serialized size of ``value`` as Ray sends it (pickle protocol 5, in memory only).

    >>> message_bytes({"x": 1.0}) < 100
    True
    """
    return len(pickle.dumps(value, protocol=5))


def run_round(
    manager: RayManager,
    pool: ActorPool,
    weights: Mapping[str, np.ndarray],
    seeds: Sequence[int] | np.ndarray,
    batch_config: BatchConfig,
    learner: Agent | None = None,
) -> RoundResult:
    """One round: broadcast ``weights``, run ``seeds`` in batches, combine in batch order.

    ``learner`` is an agent built in the driver from the pool's config; it
    takes the step from rollout results (agents with ``apply_rollouts``).
    Agents without it send their weights, which are averaged.
    """
    round_weights = {key: np.asarray(value) for key, value in weights.items()}
    # replay_on_restart: an actor that replaces a dead one gets the weights too.
    manager.broadcast(pool, "set_weights", (round_weights,), replay_on_restart=True)
    results = manager.process_in_parallel(pool, np.asarray(seeds), batch_config)
    update = combine_round(results, round_weights, learner)
    return RoundResult(
        weights=update.weights,
        metrics=update.metrics,
        batches=len(results),
        result_bytes=sum(message_bytes(result) for result in results),
        broadcast_bytes=message_bytes(round_weights),
    )
