"""``raymanager sweep`` on a real Ray: seeds and a grid on one Ray, resumable, summarized.

The multi-node sweep is in test_cluster.py (a Cluster needs a Ray of its own).
"""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from raymanager import RayManager
from raymanager.cli import main
from raymanager.sweep import SweepSpec, read_sweep_spec, run_sweep
from raymanager.training import TrainConfig, load_checkpoint, train

#: Small CartPole runs: rounds of ~0.1 s, a target no run reaches.
TINY = {"seeds_per_round": 16, "batch_size": 8, "chunk_size": 8, "eval_episodes": 4,
        "target_return": 1e9, "progress": False}


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_sweep_of_three_seeds_writes_what_train_writes_and_a_summary(
    ray_session: RayManager, tmp_path: Path,
) -> None:
    base = TrainConfig(**TINY, max_rounds=2, output_dir=str(tmp_path), run_name="s")
    result = run_sweep(SweepSpec(base, seeds=(0, 1, 2)))
    sweep_dir = tmp_path / "s"
    assert result.sweep_dir == sweep_dir and not result.interrupted
    assert [run.name for run in result.runs] == ["seed0", "seed1", "seed2"]
    assert [run.state for run in result.runs] == ["budget"] * 3
    assert result.runs_at_once == 1  # the session's Ray has 2 CPUs, each run 2 actors
    for seed, run in enumerate(result.runs):
        assert [r["round"] for r in rows(run.run_dir)] == ["1", "2"]
        assert yaml.safe_load((run.run_dir / "config.yaml").read_text())["seed"] == seed
        assert (run.run_dir / "learning_curve.png").exists()
    # A sweep's run is exactly the run `train` makes with the same options.
    alone = train(TrainConfig(**TINY, max_rounds=2, seed=1, output_dir=str(tmp_path / "alone"),
                              run_name="seed1"))
    swept = load_checkpoint(sweep_dir / "runs" / "seed1").weights
    for name, array in load_checkpoint(alone.run_dir).weights.items():
        np.testing.assert_array_equal(array, swept[name], err_msg=name)
    seed0 = load_checkpoint(sweep_dir / "runs" / "seed0").weights
    assert not np.array_equal(swept["W"], seed0["W"])
    with open(sweep_dir / "summary.csv", newline="", encoding="utf-8") as handle:
        summary = list(csv.DictReader(handle))
    assert [(r["run"], r["seed"], r["rounds"], r["reached"]) for r in summary] == [
        (f"seed{s}", str(s), "2", "false") for s in range(3)]
    assert "| CartPole-v1 |" in (sweep_dir / "summary.md").read_text()
    assert (sweep_dir / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_sweep_spec(sweep_dir) == SweepSpec(base, seeds=(0, 1, 2))
    with pytest.raises(FileExistsError, match="--resume"):
        run_sweep(SweepSpec(base, seeds=(0,)))  # never a second sweep in the same folder


def test_a_grid_gives_a_run_per_point_and_seed() -> None:
    spec = SweepSpec(TrainConfig(**TINY), seeds=(3, 4),
                     grid={"learning_rate": [0.1, 0.3], "policy": ["linear", "8x8"]})
    runs = spec.runs()
    assert len(runs) == 8
    assert runs[0].name == "learning_rate0.1-policylinear-seed3"
    assert runs[-1].name == "learning_rate0.3-policy8x8-seed4"
    assert (runs[-1].config.learning_rate, runs[-1].config.policy, runs[-1].config.seed) == (
        0.3, "8x8", 4)
    assert spec.varying == ("learning_rate", "policy")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seeds": ()}, "seeds must be one or more"),
    ({"seeds": (1, 1)}, "differ"),
    ({"grid": {"seed": [1, 2]}}, "cannot vary 'seed'"),
    ({"grid": {"output_dir": ["a", "b"]}}, "cannot vary"),
    ({"grid": {"learnin_rate": [0.1]}}, "not an option"),
    ({"grid": {"learning_rate": [0.1, 0.1]}}, "distinct"),
    ({"grid": {"num_actors": [0, 1]}}, "num_actors must be an int >= 1"),
    ({"parallel": 0}, "parallel must be"),
])
def test_bad_sweeps_are_refused_before_anything_runs(kwargs: dict[str, object],
                                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SweepSpec(TrainConfig(), **kwargs)  # type: ignore[arg-type]


def test_ctrl_c_stops_a_sweep_and_resume_finishes_it(ray_session: RayManager,
                                                     tmp_path: Path) -> None:
    """SIGINT to a real `raymanager sweep` mid-way; `--resume` then finishes every run,
    leaving the run that had finished as it was."""
    command = [sys.executable, "-m", "raymanager", "sweep", "--seeds", "0,1,2",
               "--output-dir", str(tmp_path), "--run-name", "s", "--max-rounds", "12",
               "--eval-every", "1", "--num-cpus", "2", "--parallel", "1",
               *[f"--{key.replace('_', '-')}={value}" for key, value in TINY.items()
                 if key != "progress"]]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "s" / "runs"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # until seed0 is done and seed1 has begun
        if (runs / "seed1" / "metrics.csv").exists() and len(rows(runs / "seed1")) >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "resume" in out + err
    finished = (runs / "seed0" / "metrics.csv").read_bytes()
    assert len(rows(runs / "seed0")) == 12
    stopped_at = load_checkpoint(runs / "seed1").round
    assert 1 <= stopped_at < 12
    assert not (runs / "seed2" / "metrics.csv").exists()  # never started
    assert main(["sweep", "--resume", str(tmp_path / "s")]) == 0
    assert (runs / "seed0" / "metrics.csv").read_bytes() == finished  # finished stays finished
    for seed in range(3):
        assert [int(r["round"]) for r in rows(runs / f"seed{seed}")] == list(range(1, 13))
        assert load_checkpoint(runs / f"seed{seed}").round == 12
    with open(tmp_path / "s" / "summary.csv", newline="", encoding="utf-8") as handle:
        assert [r["state"] for r in csv.DictReader(handle)] == ["budget"] * 3


def test_resume_may_change_budgets_only(tmp_path: Path) -> None:
    base = TrainConfig(**TINY, output_dir=str(tmp_path), run_name="s")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.yaml").write_text(
        yaml.safe_dump(SweepSpec(base, seeds=(0,)).to_mapping()))
    with pytest.raises(ValueError, match="may change only"):
        run_sweep(resume=tmp_path / "s", changes={"learning_rate": 0.5})
    assert main(["sweep", "--resume", str(tmp_path / "s"), "--seeds", "1"]) == 2
