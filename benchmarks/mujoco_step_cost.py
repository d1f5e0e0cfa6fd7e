"""Cost of one environment step of each MuJoCo task, relative to HalfCheetah-v5, in turns.

    python benchmarks/mujoco_step_cost.py --turns 5 --seconds 1 \
        --out docs/results/mujoco-step-cost.json
    python benchmarks/results_page.py

Steps every task with a zero-mean linear policy's actions (random, as ARS's first
rounds are), one task after another in rotating order, so that a busy machine slows
every task alike; prints per task the median microseconds per step and the ratio to
HalfCheetah. The results page multiplies a step's cost by the episodes the ARS paper
needed (1,000 steps each) to bound the time to each task's threshold from below on
this machine's cores: stepping alone, with no policy, no normalisation and no Ray.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from machine import describe

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


def measure(turns: int, seconds: float) -> dict[str, dict[str, Any]]:
    """Per task: the median µs per step over ``turns``, its ratio to HalfCheetah's, each turn."""
    costs: dict[str, list[float]] = {task: [] for task in TASKS}
    for turn in range(turns):
        order = TASKS[turn % len(TASKS):] + TASKS[:turn % len(TASKS)]
        for task in order:
            costs[task].append(step_cost_us(task, seconds, turn))
    base = statistics.median(costs["HalfCheetah-v5"])
    return {task: {"us_per_step": round(statistics.median(values), 1),
                   "ratio_to_halfcheetah": round(statistics.median(values) / base, 2),
                   "turns_us": [round(v, 1) for v in values]}
            for task, values in costs.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None, help="write the report here (JSON)")
    args = parser.parse_args(argv)
    machine = describe(("ray", "numpy", "gymnasium", "mujoco"))
    report = {
        "kind": "mujoco_step_cost",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": shlex.join(["python", "benchmarks/mujoco_step_cost.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine,
        "turns": args.turns,
        "seconds_per_task": args.seconds,
        "tasks": measure(args.turns, args.seconds),
    }
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
