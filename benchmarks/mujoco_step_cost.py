"""What one environment step of each MuJoCo task costs, from raw physics to training, in turns.

    python benchmarks/mujoco_step_cost.py --turns 3 --steps 20000 \
        --out docs/results/mujoco-step-cost.json
    python benchmarks/results_page.py

Per task, microseconds per environment step on one core, each column measured once
per turn, the tasks in rotating order, so that a busy machine slows every column alike:

``physics``
    ``mujoco.mj_step(model, data, nstep=frame_skip)`` on the environment's own model and
    data, replaying the actions of the ``gymnasium`` column from the same starts: the
    same states, stepped by MuJoCo alone. The final state of both passes is compared,
    so the two columns provably stepped the same trajectories.
``physics_post``
    the same plus ``mujoco.mj_rnePostConstraint``, which gymnasium's MuJoCo
    environments also call after every step (for their contact forces).
``gymnasium``
    ``env.step`` of the environment as ``gymnasium.make`` builds it (its wrappers
    included), on trajectories of ARS's first-round policies (``theta = 0`` plus a
    random direction of the task's noise), resets excluded.
``rollout``
    :meth:`raymanager.agents.ars.ARS.rollout` in this process, at the batch and
    chunk sizes ``raymanager train`` uses for the task: what a training actor does per
    step (gymnasium, the policies' actions, the observation statistics).
``evaluation``
    :func:`raymanager.episodes.run_episodes` with the agent's own policy, the
    evaluation batch of ``raymanager train`` (what an evaluation actor does).
``training``
    a real ``raymanager train`` run of ``--train-rounds`` rounds (default options:
    two training and two evaluation actors): wall seconds from the end of its first
    round to the end of its last, times the machine's cores, per training env step.
    Ray's start-up and the first round are excluded; the evaluations are not.

The ratios on the results page are ``physics`` over each column: 1.0 would be a step
that costs nothing but MuJoCo's.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium
import mujoco
import numpy as np
from machine import describe

from raymanager.agents.ars import ARS
from raymanager.episodes import VectorEnvCache, run_episodes
from raymanager.training.options import round_defaults

TASKS = ("HalfCheetah-v5", "Swimmer-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5")
#: The tasks issue targets name; training and rollouts are measured on these by default.
TRAIN_TASKS = ("HalfCheetah-v5", "Walker2d-v5", "Ant-v5")
COLUMNS = ("physics", "physics_post", "gymnasium", "rollout", "evaluation", "training")


def _first_round_episodes(env_id: str, steps: int, seed: int) -> list[dict[str, Any]]:
    """Episodes of ARS's first-round policies, ``steps`` env steps in all (untimed):
    each episode's reset seed, start state and actions."""
    env = gymnasium.make(env_id)
    inner = env.unwrapped
    noise = float(ARS({"env": env_id}).settings.noise_std)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    episodes, total = [], 0
    while total < steps:
        reset_seed = int(rng.integers(2**31))
        observation, _ = env.reset(seed=reset_seed)
        start = (inner.data.qpos.copy(), inner.data.qvel.copy())  # type: ignore[attr-defined]
        policy = noise * rng.standard_normal((low.size, observation.size))
        actions = []
        done = False
        while not done and total < steps:
            action = np.clip(policy @ observation, low, high)
            observation, _, terminated, truncated, _ = env.step(action)
            actions.append(action)
            total += 1
            done = terminated or truncated
        episodes.append({"seed": reset_seed, "start": start, "actions": np.array(actions)})
    env.close()
    return episodes


def step_columns(env_id: str, steps: int, seed: int) -> dict[str, float]:
    """µs per step of ``gymnasium``, ``physics`` and ``physics_post`` on the same trajectories."""
    episodes = _first_round_episodes(env_id, steps, seed)
    env = gymnasium.make(env_id)
    inner: Any = env.unwrapped
    model, data, frame_skip = inner.model, inner.data, inner.frame_skip
    spent = {"gymnasium": 0.0, "physics": 0.0, "physics_post": 0.0}
    final: dict[str, np.ndarray] = {}
    for episode in episodes:
        env.reset(seed=episode["seed"])
        started = time.perf_counter()
        for action in episode["actions"]:
            env.step(action)
        spent["gymnasium"] += time.perf_counter() - started
    final["gymnasium"] = data.qpos.copy()
    for column in ("physics", "physics_post"):
        post = column == "physics_post"
        for episode in episodes:
            # What MujocoEnv.set_state does at a reset, then MuJoCo alone.
            mujoco.mj_resetData(model, data)
            data.qpos[:], data.qvel[:] = episode["start"]
            mujoco.mj_forward(model, data)
            started = time.perf_counter()
            for action in episode["actions"]:
                data.ctrl[:] = action
                mujoco.mj_step(model, data, nstep=frame_skip)
                if post:
                    mujoco.mj_rnePostConstraint(model, data)
            spent[column] += time.perf_counter() - started
        final[column] = data.qpos.copy()
    env.close()
    for column in ("physics", "physics_post"):
        if not np.array_equal(final[column], final["gymnasium"]):
            raise AssertionError(f"{env_id}: the {column} pass left gymnasium's trajectories")
    count = sum(len(e["actions"]) for e in episodes)
    return {column: seconds / count * 1e6 for column, seconds in spent.items()}


def rollout_column(env_id: str, seconds: float, seed: int) -> float:
    """µs per env step of a training actor's ARS rollouts at ``raymanager train``'s sizes."""
    sizes = round_defaults(env_id, "ars")
    agent = ARS({"env": env_id})
    batch, chunk = sizes["batch_size"], sizes["chunk_size"]
    agent.rollout(np.arange(batch), chunk)  # builds the vector env
    steps, spent, next_seed = 0.0, 0.0, seed * 1_000_000
    while spent < seconds:
        started = time.perf_counter()
        result = agent.rollout(np.arange(next_seed, next_seed + batch), chunk)
        spent += time.perf_counter() - started
        steps += result["env_steps"]
        next_seed += batch
    agent.close()
    return spent / steps * 1e6


def evaluation_column(env_id: str, seconds: float, seed: int) -> float:
    """µs per env step of an evaluation actor's batch (``eval_episodes`` over 2 actors)."""
    per_actor = -(-round_defaults(env_id, "ars")["eval_episodes"] // 2)
    agent = ARS({"env": env_id})
    envs = VectorEnvCache({"env": env_id})
    steps, spent, next_seed = 0, 0.0, seed * 1_000_000
    while spent < seconds:
        seeds = np.arange(next_seed, next_seed + per_actor)
        started = time.perf_counter()
        steps += run_episodes(envs.get(per_actor), agent.act, seeds).env_steps
        spent += time.perf_counter() - started
        next_seed += per_actor
    envs.close()
    return spent / steps * 1e6


def training_column(env_id: str, rounds: int, seed: int) -> float:
    """µs per training env step per core of a real ``raymanager train`` run (round 1 excluded)."""
    with tempfile.TemporaryDirectory(prefix="step-cost-") as folder:
        command = [sys.executable, "-m", "raymanager", "train", "--env", env_id,
                   "--max-rounds", str(rounds), "--seed", str(seed), "--no-progress",
                   "--output-dir", folder, "--run-name", "run"]
        subprocess.run(command, check=True, capture_output=True)
        with open(Path(folder) / "run" / "metrics.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    later = rows[1:]
    wall = float(rows[-1]["seconds"]) - float(rows[0]["seconds"])
    steps = sum(float(row["train_env_steps"]) for row in later)
    return wall * (os.cpu_count() or 1) / steps * 1e6


def measure(tasks: tuple[str, ...], train_tasks: tuple[str, ...], turns: int, steps: int,
            seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    """Per task and column: the median µs per step over ``turns``, and each turn's."""
    turns_us: dict[str, dict[str, list[float]]] = {
        task: {column: [] for column in COLUMNS} for task in tasks}
    for turn in range(turns):
        order = tasks[turn % len(tasks):] + tasks[:turn % len(tasks)]
        for task in order:
            row = step_columns(task, steps, turn)
            if task in train_tasks:
                row["rollout"] = rollout_column(task, seconds, turn)
                row["evaluation"] = evaluation_column(task, seconds, turn)
                row["training"] = training_column(task, rounds, turn)
            for column, value in row.items():
                turns_us[task][column].append(value)
            print(f"turn {turn} {task}: " + ", ".join(f"{c} {v:.1f}" for c, v in row.items()),
                  file=sys.stderr, flush=True)
    base = statistics.median(turns_us["HalfCheetah-v5"]["gymnasium"])
    report: dict[str, dict[str, Any]] = {}
    for task, columns in turns_us.items():
        medians = {c: round(statistics.median(v), 1) for c, v in columns.items() if v}
        report[task] = {
            "us_per_step": medians["gymnasium"],  # gymnasium's env.step, as before
            "ratio_to_halfcheetah": round(medians["gymnasium"] / base, 2),
            "columns_us": medians,
            "physics_ratio": {c: round(medians["physics"] / v, 2) for c, v in medians.items()},
            "turns_us": {c: [round(x, 1) for x in v] for c, v in columns.items() if v},
        }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20_000,
                        help="env steps per task and turn for the physics and gymnasium columns")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="seconds per task and turn for the rollout and evaluation columns")
    parser.add_argument("--train-rounds", type=int, default=6)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--train-tasks", default=",".join(TRAIN_TASKS),
                        help="tasks that also get the rollout, evaluation and training columns")
    parser.add_argument("--out", type=Path, default=None, help="write the report here (JSON)")
    args = parser.parse_args(argv)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    train_tasks = tuple(t for t in args.train_tasks.split(",") if t in tasks)
    if "HalfCheetah-v5" not in tasks:
        parser.error("--tasks must include HalfCheetah-v5 (the ratios' base)")
    machine = describe(("ray", "numpy", "gymnasium", "mujoco"))
    report = {
        "kind": "mujoco_step_cost",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": shlex.join(["python", "benchmarks/mujoco_step_cost.py",
                               *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine,
        "turns": args.turns,
        "steps_per_task": args.steps,
        "seconds_per_task": args.seconds,
        "train_rounds": args.train_rounds,
        "tasks": measure(tasks, train_tasks, args.turns, args.steps, args.seconds,
                         args.train_rounds),
    }
    report["machine"]["load_average_end"] = list(os.getloadavg())
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    main()
