"""Cost of one environment step of each MuJoCo task, relative to HalfCheetah-v5, in turns.

    python benchmarks/mujoco_step_cost.py --turns 5 --seconds 1

Steps every task with a zero-mean linear policy's actions (random, as ARS's first
rounds are), one task after another in rotating order, so that a busy machine slows
every task alike; prints per task the median microseconds per step and the ratio to
HalfCheetah. With a pool's measured HalfCheetah steps per second, the ratio bounds
another task's throughput on the same machine: what the ARS note's "episodes needed x
cost per step" estimate uses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gymnasium
import numpy as np

TASKS = ("HalfCheetah-v5", "Swimmer-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5")


def step_cost_us(env_id: str, seconds: float, seed: int) -> float:
    env = gymnasium.make(env_id)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    env.reset(seed=seed)
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        _, _, terminated, truncated, _ = env.step(rng.uniform(low, high) * 0.1)
        steps += 1
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - started
    env.close()
    return elapsed / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    costs: dict[str, list[float]] = {task: [] for task in TASKS}
    for turn in range(args.turns):
        order = TASKS[turn % len(TASKS):] + TASKS[:turn % len(TASKS)]
        for task in order:
            costs[task].append(step_cost_us(task, args.seconds, turn))
    base = statistics.median(costs["HalfCheetah-v5"])
    report = {task: {"us_per_step": round(statistics.median(values), 1),
                     "ratio_to_halfcheetah": round(statistics.median(values) / base, 2)}
              for task, values in costs.items()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
