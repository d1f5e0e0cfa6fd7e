"""Evaluation: a policy's weights on seeded episodes, run by a pool of EvaluationActors.

    >>> evaluate_checkpoint("runs/CartPole-v1-seed0", episodes=100)["return_mean"]  # doctest: +SKIP
    500.0
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from raymanager.actors.evaluation import EvaluationActor, merge_evaluations
from raymanager.agents.base import round_seeds
from raymanager.config import RayConfig
from raymanager.manager import RayManager
from raymanager.pool import ActorPool
from raymanager.rundir import Checkpoint, load_checkpoint
from raymanager.training.options import TrainConfig
from raymanager.training.plan import TrainPlan, plan_run

__all__ = ["EVAL_SEED_OFFSET", "evaluate_checkpoint", "evaluate_weights", "plan_evaluation",
           "without_episode_lists"]

#: Evaluation episodes use seeds from a range training seeds never reach.
EVAL_SEED_OFFSET = 1_000_000_000


def evaluate_weights(
    manager: RayManager, pool: ActorPool, weights: Mapping[str, np.ndarray], plan: TrainPlan,
    round_index: int,
) -> dict[str, Any]:
    """Evaluate ``weights`` on the plan's ``eval_episodes`` episodes, one batch per actor.

    Each evaluation gets fresh episodes, seeded from the run's seed and the
    round, from a seed range training never uses.

    >>> evaluate_weights(manager, eval_pool, weights, plan, round_index=4)  # doctest: +SKIP
    {'return_mean': 500.0, ...}
    """
    manager.broadcast(pool, "set_weights", (weights,), replay_on_restart=True)
    seeds = EVAL_SEED_OFFSET + round_seeds(plan.seed, round_index, plan.eval_episodes)
    return merge_evaluations(manager.process_in_parallel(pool, seeds, plan.eval_batch))


def without_episode_lists(evaluation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An evaluation without its per-episode lists, for state.json.

    >>> without_episode_lists({"return_mean": 1.0, "returns": [1.0]})
    {'return_mean': 1.0}
    """
    if evaluation is None:
        return None
    return {k: v for k, v in evaluation.items() if k not in ("returns", "lengths")}


def plan_evaluation(
    path: str | os.PathLike[str], episodes: int = 100, *, num_actors: int = 2,
    seed: int | None = None,
) -> tuple[Checkpoint, TrainPlan]:
    """A checkpoint and the plan of its evaluation, checked before any Ray starts.

    A missing or corrupt checkpoint, a bad count or an environment that cannot
    be built raises here (FileNotFoundError, CheckpointError, ValueError).

    >>> checkpoint, plan = plan_evaluation("runs/CartPole-v1-seed0", 10)   # doctest: +SKIP
    >>> plan.eval_episodes                                                # doctest: +SKIP
    10
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    checkpoint = load_checkpoint(path)
    config = TrainConfig.from_mapping(checkpoint.config)
    plan = plan_run(dataclasses.replace(
        config, eval_episodes=episodes, num_eval_actors=num_actors,
        seed=config.seed if seed is None else seed))
    return checkpoint, plan


def evaluate_checkpoint(
    path: str | os.PathLike[str], episodes: int = 100, *, num_actors: int = 2,
    address: str | None = None, seed: int | None = None,
) -> dict[str, Any]:
    """Evaluate a saved checkpoint on ``episodes`` seeded episodes in parallel.

    >>> evaluate_checkpoint("runs/CartPole-v1-seed0", episodes=100)["return_mean"]  # doctest: +SKIP
    500.0
    """
    checkpoint, plan = plan_evaluation(path, episodes, num_actors=num_actors, seed=seed)
    with RayManager(RayConfig(address=address)) as manager:
        pool = manager.create_actor_pool(EvaluationActor, dict(plan.agent_config), num_actors)
        return evaluate_weights(manager, pool, checkpoint.weights, plan, checkpoint.round + 1)
