"""Env steps/s of ES training: one process without Ray, and Ray pools of 1 and 2 actors.

All three run the same rounds from the same seeds, so they compute the same
weights and step the same environments (checked); only the wall time
differs. Ray start-up and pool creation are excluded; the broadcast of the
weights each round is included.

    python benchmarks/train_scaling.py [--rounds 15] [--out benchmarks/results/train_scaling.json]

The issue's measure of scaling reads the CLI's own metrics.csv of two runs
that differ only in ``--num-actors``: env steps/s between the end of round 2
and the last round (start-up and the final evaluation left out)::

    raymanager train --env HalfCheetah-v5 --num-actors 1 --max-rounds 12 \
        --target-return 1e9 --run-name scale1 --no-progress
    raymanager train --env HalfCheetah-v5 --num-actors 2 --max-rounds 12 \
        --target-return 1e9 --run-name scale2 --no-progress
    python benchmarks/train_scaling.py --metrics runs/scale1 runs/scale2

Two runs minutes apart also measure the machine's drift between them; the
same rounds on 1 and 2 actors in turn, in one process, do not::

    python benchmarks/train_scaling.py --interleaved HalfCheetah-v5 --rounds 12
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from es_single_process import run_single_process

from raymanager import BatchConfig, RayConfig, RayManager, TrainingActor
from raymanager.agents import make_agent, round_seeds
from raymanager.rounds import run_round

SEEDS_PER_ROUND = 128
BATCH_SIZE = 64
CHUNK_SIZE = 64


def ray_rounds(manager: RayManager, num_actors: int, rounds: int) -> dict[str, Any]:
    """The training half of `raymanager train` (its run_round), timed after the pool is up."""
    pool = manager.create_actor_pool(TrainingActor, {}, num_actors=num_actors)
    batch = BatchConfig(batch_size=BATCH_SIZE, num_parallel=num_actors, chunk_size=CHUNK_SIZE)
    learner = make_agent({})
    weights = learner.get_weights()
    steps = 0
    began = time.perf_counter()
    for round_index in range(rounds):
        step = run_round(manager, pool, weights, round_seeds(0, round_index, SEEDS_PER_ROUND),
                         batch, learner)
        weights = step.weights
        steps += int(step.metrics["env_steps"])
    seconds = time.perf_counter() - began
    pool.shutdown()
    return {"env_steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "final_w_sum": float(np.sum(weights["W"]))}


def interleaved(env: str, rounds: int, seed: int = 0) -> dict[str, Any]:
    """Rounds of ``raymanager train``'s defaults for ``env``, each run twice in turn:
    on a pool of 1 training actor and on a pool of 2, from the same weights.

    Both pools compute the same next weights (checked), so each round is the
    same work twice; taking them in turn puts any drift in the machine's speed
    (seen here: the same rounds 15-20 % slower from one run to the next) on
    both alike. Training rounds only: the CLI's evaluation is left out.
    """
    from raymanager.training import TrainConfig, resolved_config

    config = resolved_config(TrainConfig(env=env, seed=seed))
    assert config.batch_size and config.chunk_size and config.seeds_per_round
    agent_config = config.agent_config()
    seconds = {1: 0.0, 2: 0.0}
    steps = 0
    with RayManager(RayConfig(num_cpus=2)) as manager:
        pools = {n: manager.create_actor_pool(TrainingActor, agent_config, n) for n in (1, 2)}
        learner = make_agent(agent_config)
        weights = pools[1].broadcast("get_weights")[0]
        for round_index in range(rounds):
            seeds = round_seeds(config.seed, round_index, config.seeds_per_round)
            steps_of: dict[int, Any] = {}
            for n in ((1, 2) if round_index % 2 == 0 else (2, 1)):
                batch = BatchConfig(batch_size=config.batch_size, num_parallel=n,
                                    chunk_size=config.chunk_size)
                began = time.perf_counter()
                steps_of[n] = run_round(manager, pools[n], weights, seeds, batch, learner)
                if round_index >= 2:  # as the CLI measure: start-up rounds left out
                    seconds[n] += time.perf_counter() - began
            same = all(np.array_equal(steps_of[1].weights[k], steps_of[2].weights[k])
                       for k in steps_of[1].weights)
            if not same:
                raise SystemExit(f"round {round_index}: 1 and 2 actors computed different weights")
            if round_index >= 2:
                steps += int(steps_of[1].metrics["env_steps"])
            weights = steps_of[1].weights
    return {"env": env, "rounds": rounds - 2, "env_steps": steps,
            "seconds_1_actor": seconds[1], "seconds_2_actors": seconds[2],
            "ratio": seconds[1] / seconds[2]}


def steps_per_second(run_dir: str | Path, from_round: int = 2) -> dict[str, float]:
    """Training env steps/s of a CLI run between the end of ``from_round`` and its last round."""
    with open(Path(run_dir) / "metrics.csv", newline="") as handle:
        rows = {int(row["round"]): row for row in csv.DictReader(handle)}
    first, last = rows[from_round], rows[max(rows)]
    steps = int(last["env_steps"]) - int(first["env_steps"])
    seconds = float(last["seconds"]) - float(first["seconds"])
    return {"rounds": float(max(rows) - from_round), "env_steps": float(steps),
            "seconds": seconds, "steps_per_s": steps / seconds}


def compare_runs(one: str, two: str) -> None:
    """Print the 2-actor / 1-actor ratio of two CLI runs."""
    a, b = steps_per_second(one), steps_per_second(two)
    for name, row in ((one, a), (two, b)):
        print(f"{name}: rounds 2..{2 + int(row['rounds'])}, {row['env_steps']:,.0f} env steps "
              f"in {row['seconds']:.1f} s = {row['steps_per_s']:,.0f} steps/s")
    print(f"ratio (second / first): {b['steps_per_s'] / a['steps_per_s']:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default="benchmarks/results/train_scaling.json")
    parser.add_argument("--metrics", nargs=2, metavar=("RUN_1_ACTOR", "RUN_2_ACTORS"),
                        help="only compare two CLI run directories (see the docstring)")
    parser.add_argument("--interleaved", metavar="ENV",
                        help="only time ENV's training rounds on 1 and 2 actors in turn")
    args = parser.parse_args()
    if args.metrics:
        compare_runs(*args.metrics)
        return
    if args.interleaved:
        row = interleaved(args.interleaved, args.rounds)
        print(json.dumps(row))
        print(f"{row['env']}: {row['rounds']} rounds, {row['env_steps']:,} env steps each way: "
              f"1 actor {row['seconds_1_actor']:.1f} s, 2 actors {row['seconds_2_actors']:.1f} s, "
              f"ratio {row['ratio']:.3f}x")
        return

    single = run_single_process({}, rounds=args.rounds, seeds_per_round=SEEDS_PER_ROUND,
                                batch_size=BATCH_SIZE, chunk_size=CHUNK_SIZE,
                                eval_every=10**9, target_return=None)
    rows: dict[str, dict[str, Any]] = {
        "single process, no Ray": {
            "env_steps": single["train_env_steps"], "seconds": single["seconds"],
            "steps_per_s": single["train_env_steps"] / single["seconds"]},
    }
    with RayManager(RayConfig(num_cpus=2)) as manager:
        for actors in (1, 2):
            rows[f"Ray pool, {actors} actor(s)"] = ray_rounds(manager, actors, args.rounds)
    baseline = rows["single process, no Ray"]["steps_per_s"]
    same_steps = len({row["env_steps"] for row in rows.values()}) == 1
    print(f"{'variant':28} {'env steps':>10} {'seconds':>8} {'steps/s':>10} {'vs single':>9}")
    for name, row in rows.items():
        row["ratio_vs_single"] = row["steps_per_s"] / baseline
        print(f"{name:28} {row['env_steps']:>10,} {row['seconds']:>8.2f} "
              f"{row['steps_per_s']:>10,.0f} {row['ratio_vs_single']:>8.2f}x")
    print(f"same env steps in every variant: {same_steps}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rounds": args.rounds, "same_env_steps": same_steps,
                               "machine": platform.processor() or platform.machine(),
                               "results": rows}, indent=2))


if __name__ == "__main__":
    main()
