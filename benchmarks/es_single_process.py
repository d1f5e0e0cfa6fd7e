"""The ES training job in one process, without Ray: a baseline and a tuning tool.

It runs exactly what the Ray job runs, minus Ray: every round the weights are
broadcast to ``num_actors`` :class:`~raymanager.actors.TrainingActor` instances,
the round's seeds are cut into batches of ``batch_size`` and handed round-robin
to them, the driver's step combines the results (``combine_round``, as in
``raymanager.rounds.run_round``), and every ``eval_every`` rounds an
:class:`~raymanager.actors.EvaluationActor` runs ``eval_episodes`` episodes.
Since a batch's result does not depend on the actor that ran it, the Ray job
with the same arguments computes the same weights, round for round; the
difference in wall time is Ray's overhead and parallelism.

    python benchmarks/es_single_process.py --seeds 0 1 2
    python benchmarks/es_single_process.py --seeds 0 --batch-size 4 --seeds-per-round 32 \
        --config '{"agent": "ars", "env": "HalfCheetah-v5"}' --eval-every 2 \
        --eval-episodes 10 --target-return 3430 --history

or from a benchmark::

    from es_single_process import run_single_process
    stats = run_single_process({}, rounds=50, seeds_per_round=128, batch_size=64)
    stats["env_steps"] / stats["seconds"]   # env steps per second, one core

No Ray is imported here.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from raymanager.actors import EvaluationActor, TrainingActor, merge_evaluations
from raymanager.agents import combine_round, make_agent, round_seeds
from raymanager.agents.es import TUNED_BATCH_SIZE, TUNED_SEEDS_PER_ROUND

#: Seeds (perturbations, each run with + and - noise) per training round.
DEFAULT_SEEDS_PER_ROUND = TUNED_SEEDS_PER_ROUND
#: Seeds per training batch: one batch per worker per round with 2 workers.
DEFAULT_BATCH_SIZE = TUNED_BATCH_SIZE
#: Evaluation seeds start here, far from anything round_seeds is likely to reuse.
EVAL_SEED_OFFSET = 1_000_000_000


def run_single_process(
    config: Mapping[str, Any],
    rounds: int,
    seeds_per_round: int = DEFAULT_SEEDS_PER_ROUND,
    batch_size: int = DEFAULT_BATCH_SIZE,
    *,
    chunk_size: int = 32,
    num_actors: int = 2,
    eval_every: int = 1,
    eval_episodes: int = 100,
    target_return: float | None = 475.0,
) -> dict[str, Any]:
    """Train for at most ``rounds`` rounds; stop early once an evaluation reaches the target.

    Returns ``solved``, ``rounds`` (rounds run), ``train_env_steps``,
    ``eval_env_steps``, ``env_steps`` (both), ``seconds``, ``final_eval``
    (the last merged evaluation, without per-episode lists) and ``history``
    (per round: fitness_mean and, when evaluated, return_mean).
    """
    started = time.perf_counter()
    trainers = [TrainingActor(config) for _ in range(num_actors)]
    evaluator = EvaluationActor(config)
    for actor in (*trainers, evaluator):
        actor.chunk_size = chunk_size
    weights = trainers[0].get_weights()
    learner = make_agent(config)
    seed = int(config.get("seed", 0))
    eval_seeds = np.arange(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + eval_episodes)
    train_steps = eval_steps = 0
    history: list[dict[str, float]] = []
    final_eval: dict[str, Any] = {}
    solved = False
    round_index = 0
    for round_index in range(rounds):
        for actor in trainers:
            actor.set_weights(weights)
        seeds = round_seeds(seed, round_index, seeds_per_round)
        batches = [seeds[i : i + batch_size] for i in range(0, len(seeds), batch_size)]
        results = [trainers[i % num_actors].process_batch(b) for i, b in enumerate(batches)]
        weights = combine_round(results, weights, learner).weights
        train_steps += int(sum(r["env_steps"] for r in results))
        episodes = sum(r["episodes"] for r in results)
        entry = {
            "round": float(round_index),
            "fitness_mean": sum(r["fitness_mean"] * r["episodes"] for r in results) / episodes,
        }
        if (round_index + 1) % eval_every == 0 or round_index == rounds - 1:
            evaluator.set_weights(weights)
            evaluation = merge_evaluations([evaluator.process_batch(eval_seeds)])
            eval_steps += evaluation["env_steps"]
            entry["return_mean"] = evaluation["return_mean"]
            final_eval = {k: v for k, v in evaluation.items() if k not in ("returns", "lengths")}
            if target_return is not None and evaluation["return_mean"] >= target_return:
                solved = True
        history.append(entry)
        if solved:
            break
    return {
        "solved": solved,
        "rounds": round_index + 1,
        "train_env_steps": train_steps,
        "eval_env_steps": eval_steps,
        "env_steps": train_steps + eval_steps,
        "seconds": time.perf_counter() - started,
        "final_eval": final_eval,
        "history": history,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="config seeds")
    parser.add_argument("--rounds", type=int, default=100, help="maximum rounds")
    parser.add_argument("--seeds-per-round", type=int, default=DEFAULT_SEEDS_PER_ROUND)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--target-return", type=float, default=475.0)
    parser.add_argument("--config", type=json.loads, default={}, help="JSON agent config")
    parser.add_argument("--history", action="store_true", help="print every round")
    args = parser.parse_args()
    for seed in args.seeds:
        stats = run_single_process(
            {**args.config, "seed": seed},
            args.rounds,
            args.seeds_per_round,
            args.batch_size,
            chunk_size=args.chunk_size,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            target_return=args.target_return,
        )
        if args.history:
            for entry in stats["history"]:
                print(entry)
        print(
            f"seed={seed} solved={stats['solved']} rounds={stats['rounds']} "
            f"seconds={stats['seconds']:.2f} train_steps={stats['train_env_steps']} "
            f"eval_steps={stats['eval_env_steps']} "
            f"steps/s={stats['env_steps'] / stats['seconds']:.0f} "
            f"eval_return={stats['final_eval'].get('return_mean')}"
        )


if __name__ == "__main__":
    main()
