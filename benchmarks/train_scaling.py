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
same rounds on 1 and 2 actors in turn, in one process, do not. The same
rounds on forked ``multiprocessing`` pools of 1 and 2 processes, in the same
turns, give the machine's own ceiling for two processes stepping that
environment, which the pool's ratio is read against::

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

import cpu
import numpy as np
from es_single_process import run_single_process
from machine import report_header

from raymanager import BatchConfig, RayConfig, RayManager, TrainingActor
from raymanager.agents import combine_round, make_agent, round_seeds
from raymanager.rounds import run_round

DEFAULT_OUT = "benchmarks/results/train_scaling.json"
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


_FORKED_ACTOR: TrainingActor | None = None


def _forked_init(agent_config: dict[str, Any], chunk_size: int) -> None:
    """multiprocessing initializer: one TrainingActor per forked process (no Ray)."""
    global _FORKED_ACTOR
    _FORKED_ACTOR = TrainingActor(agent_config)
    _FORKED_ACTOR.chunk_size = chunk_size


def _forked_batch(task: tuple[dict[str, np.ndarray], np.ndarray]) -> dict[str, Any]:
    """One batch of seeds from the round's weights, as the pool's actors run it."""
    assert _FORKED_ACTOR is not None
    weights, seeds = task
    _FORKED_ACTOR.set_weights(weights)
    return _FORKED_ACTOR.process_batch(seeds)


def interleaved(env: str, rounds: int, seed: int = 0) -> dict[str, Any]:
    """Rounds of ``raymanager train``'s defaults for ``env``, each run four times in turn:
    on raymanager pools of 1 and 2 training actors, and, as the machine's own
    ceiling, on forked ``multiprocessing`` pools of 1 and 2 processes (no Ray,
    no broadcast: the weights travel with each batch).

    All four compute the same next weights (checked), so each round is the
    same work four times; taking them in turn, in an order that rotates each
    round, puts any drift in the machine's speed (seen here: the same rounds
    15-20 % slower from one run to the next) on all alike. The ceiling's
    ratio is what two processes stepping these environments get on this
    machine at all; the pool's ratio over it is what raymanager keeps of it.
    Training rounds only: the CLI's evaluation is left out.
    """
    import multiprocessing

    from raymanager.training import TrainConfig, resolved_config

    config = resolved_config(TrainConfig(env=env, seed=seed))
    assert config.batch_size and config.chunk_size and config.seeds_per_round
    agent_config = config.agent_config()
    kinds = [("raymanager", 1), ("raymanager", 2), ("multiprocessing", 1), ("multiprocessing", 2)]
    per_round: dict[tuple[str, int], list[float]] = {kind: [] for kind in kinds}
    cpu_spent = {kind: dict.fromkeys(cpu.ROLES, 0.0) for kind in kinds}
    steps = 0
    # Forked before Ray starts: forking a process that runs Ray's threads is unsafe.
    forked = {n: multiprocessing.get_context("fork").Pool(
        n, initializer=_forked_init, initargs=(agent_config, config.chunk_size)) for n in (1, 2)}
    try:
        with RayManager(RayConfig(num_cpus=2)) as manager:
            pools = {n: manager.create_actor_pool(TrainingActor, agent_config, n) for n in (1, 2)}
            learner = make_agent(agent_config)
            weights = pools[1].broadcast("get_weights")[0]
            for round_index in range(rounds):
                seeds = np.asarray(round_seeds(config.seed, round_index, config.seeds_per_round))
                step_of: dict[tuple[str, int], Any] = {}
                shift = round_index % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:
                    name, n = kind
                    cpu_before = cpu.snapshot()
                    began = time.perf_counter()
                    if name == "raymanager":
                        batch = BatchConfig(batch_size=config.batch_size, num_parallel=n,
                                            chunk_size=config.chunk_size)
                        step_of[kind] = run_round(manager, pools[n], weights, seeds, batch,
                                                  learner)
                    else:
                        tasks = [(weights, seeds[i:i + config.batch_size])
                                 for i in range(0, len(seeds), config.batch_size)]
                        results = forked[n].map(_forked_batch, tasks, chunksize=1)
                        step_of[kind] = combine_round(results, weights, learner)
                    elapsed = time.perf_counter() - began
                    if round_index >= 2:  # as the CLI measure: start-up rounds left out
                        per_round[kind].append(elapsed)
                        for role, value in cpu.spent(cpu_before, cpu.snapshot()).items():
                            cpu_spent[kind][role] += value
                first = step_of[kinds[0]].weights
                for kind, step in step_of.items():
                    if not all(np.array_equal(first[k], step.weights[k]) for k in first):
                        raise SystemExit(f"round {round_index}: {kind} computed other weights")
                if round_index >= 2:
                    steps += int(step_of[kinds[0]].metrics["env_steps"])
                weights = first
    finally:
        for pool in forked.values():
            pool.terminate()
    seconds = {kind: sum(times) for kind, times in per_round.items()}
    pool_ratio = seconds["raymanager", 1] / seconds["raymanager", 2]
    ceiling = seconds["multiprocessing", 1] / seconds["multiprocessing", 2]
    return {"env": env, "rounds": rounds - 2, "env_steps": steps,
            "seconds": {f"{name} {n}": value for (name, n), value in seconds.items()},
            "round_seconds": {f"{name} {n}": [round(t, 3) for t in times]
                              for (name, n), times in per_round.items()},
            "cpu_seconds": {f"{name} {n}": value for (name, n), value in cpu_spent.items()},
            "ratio": pool_ratio, "ceiling_ratio": ceiling, "of_ceiling": pool_ratio / ceiling}


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
    parser.add_argument("--out", default=DEFAULT_OUT)
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
        if args.out != DEFAULT_OUT:  # a report the results page renders
            report = {**report_header("train_scaling", __file__,
                                      ("ray", "numpy", "gymnasium")), **row}
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        times = ", ".join(f"{kind} {value:.1f} s" for kind, value in row["seconds"].items())
        print(f"{row['env']}: {row['rounds']} rounds, {row['env_steps']:,} env steps each way: "
              f"{times}; raymanager 2/1 actors {row['ratio']:.3f}x, multiprocessing 2/1 "
              f"processes {row['ceiling_ratio']:.3f}x: the pool keeps {row['of_ceiling']:.1%} "
              f"of the machine's own scaling")
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
