"""The ``raymanager`` command as a new user meets it, run through the installed command.

Most tests here fail before Ray starts (a mistake is found first); the few that train
share tiny budgets. Those that start Ray are marked slow (CI runs them too).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raymanager.training import load_checkpoint

RAYMANAGER = str(Path(sys.executable).parent / "raymanager")
TINY = ["--seeds-per-round", "8", "--batch-size", "4", "--chunk-size", "4",
        "--eval-every", "1", "--eval-episodes", "6", "--target-return", "1e9", "--num-cpus", "2",
        "--no-progress"]


def run(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAYMANAGER, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def rounds(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [int(row["round"]) for row in csv.DictReader(handle)]


def assert_user_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    assert "error:" in done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


# --------------------------------------------------------------------------- no Ray needed


def test_help_shows_each_default(tmp_path: Path) -> None:
    text = run("train", "--help", cwd=tmp_path).stdout
    for shown in ("(default: CartPole-v1)", "(default: 1000)", "(default: 600.0)",
                  "(default: 2)", "(default: runs)", "(default: on)"):
        assert shown in " ".join(text.split()), shown
    text = run("evaluate", "--help", cwd=tmp_path).stdout
    assert "(default: 100)" in " ".join(text.split())


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of 2 rounds; shared by the tests below (one Ray start)."""
    root = tmp_path_factory.mktemp("cli")
    done = run("train", *TINY, "--max-rounds", "2", "--output-dir", "runs", "--run-name", "run",
               cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs" / "run"


def test_user_mistakes_are_one_error_line_and_exit_2(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    files = {
        "tag.yaml": f'seed: !!python/object/apply:os.system ["touch {marker}"]\n',
        "malformed.yaml": "seed: [1, 2\n",
        "list.yaml": "- 1\n- 2\n",
        "typo.yaml": "learnig_rate: 0.1\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cases: list[tuple[list[str], tuple[str, ...]]] = [
        (["train", "--config", "tag.yaml"], ("tag.yaml", "!!python", "refused")),
        (["train", "--config", "malformed.yaml"], ("malformed.yaml", "line 2")),
        (["train", "--config", "list.yaml"], ("mapping",)),
        (["train", "--config", "typo.yaml"], ("learnig_rate",)),
        (["train", "--config", "missing.yaml"], ("missing.yaml",)),
        (["train", "--env", "CartPol-v1"], ("CartPol-v1", "Did you mean", "CartPole")),
        (["train", "--env", "NoSuchEnv-v0"], ("NoSuchEnv-v0", "not a gymnasium environment")),
        (["train", "--env-kwargs", "{bad"], ("--env-kwargs", "not a YAML mapping")),
        (["train", "--env-kwargs", "[1]"], ("--env-kwargs", "mapping")),
        (["train", "--agent-kwargs", "{learnig_rate: 1}"], ("learnig_rate", "learning_rate")),
        (["train", "--num-actors", "0"], ("num_actors",)),
        (["train", "--num-actors", "two"], ("--num-actors", "two")),
        (["train", "--max-seconds", "-1"], ("max_seconds",)),
        (["evaluate", "nowhere"], ("no checkpoint at nowhere",)),
        (["train", "--resume", "nowhere"], ("nowhere",)),
    ]
    # Each case is a fresh process that fails before Ray starts: run them side by side.
    processes = [
        subprocess.Popen([RAYMANAGER, *args,
                          "--no-progress" if args[0] == "train" else "--episodes=1"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args, _ in cases
    ]
    for process, (args, words) in zip(processes, cases, strict=True):
        out, err = process.communicate(timeout=240)
        assert_user_error(subprocess.CompletedProcess(args, process.returncode, out, err), *words)
    assert not marker.exists(), "a YAML tag ran code"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_unwritable_output_directory(tmp_path: Path) -> None:
    if os.getuid() == 0:  # root writes through file modes: use a file system that refuses
        target, words = "/proc/raymanager-runs", ("cannot create the output directory",)
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        target, words = str(locked), ("Permission denied", "locked")
    done = run("train", *TINY, "--output-dir", target, cwd=tmp_path)
    assert_user_error(done, *words)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "objects"])
def test_corrupt_checkpoint_says_corrupt_never_allow_pickle(tmp_path: Path, damage: str) -> None:
    import numpy as np

    from raymanager.training import Checkpoint, save_checkpoint

    folder = tmp_path / "run" / "checkpoint"
    save_checkpoint(folder, Checkpoint({"W": np.ones((4, 2))}, 1, 10, 1.0,
                                       {"env": "CartPole-v1"}))
    weights = folder / "weights.npz"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:200])
    elif damage == "garbage":
        weights.write_bytes(b"\x80\x04garbage that looks like a pickle")
    else:
        np.savez(weights, W=np.array([object()], dtype=object))
    done = run("evaluate", str(tmp_path / "run"), "--episodes", "2", cwd=tmp_path)
    assert_user_error(done, "weights.npz", "corrupt")
    assert "allow_pickle" not in done.stderr


def test_no_cluster_at_the_address_fails_fast(tmp_path: Path) -> None:
    """`info --address 127.0.0.1:1` used to print Ray warnings for 615 s."""
    for command in (["info"], ["train", "--no-progress"]):
        started = time.monotonic()
        done = run(*command, "--address", "127.0.0.1:1", cwd=tmp_path, timeout=120)
        seconds = time.monotonic() - started
        assert_user_error(done, "no Ray cluster at 127.0.0.1:1")
        print(f"{command[0]} --address 127.0.0.1:1 failed in {seconds:.1f} s")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()), \
        "a run that never started leaves no run directory"


# --------------------------------------------------------------------------- training


@pytest.mark.slow
def test_existing_run_is_refused_resume_keeps_its_budget_overwrite_replaces(
    saved_run: Path,
) -> None:
    root = saved_run.parent.parent
    assert rounds(saved_run) == [1, 2]
    checkpoint_before = (saved_run / "checkpoint" / "weights.npz").read_bytes()
    # The same --run-name again: refused, nothing touched, no Ray started.
    done = run("train", *TINY, "--output-dir", "runs", "--run-name", "run", cwd=root)
    assert_user_error(done, "already holds a run", f"--resume {Path('runs') / 'run'}",
                      "--overwrite")
    assert rounds(saved_run) == [1, 2]
    assert (saved_run / "checkpoint" / "weights.npz").read_bytes() == checkpoint_before

    # config.yaml holds the values used, not "default" placeholders.
    config = yaml.safe_load((saved_run / "config.yaml").read_text())
    assert config["learning_rate"] == 0.3 and config["noise_std"] == 0.1
    assert config["target_return"] == 1e9 and config["max_rounds"] == 2

    # --resume alone keeps the run's own budget (2 rounds: nothing left to do).
    done = run("train", "--resume", str(saved_run), cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "up to round 2" in done.stderr and rounds(saved_run) == [1, 2]
    # A new budget is taken, and the run's other options stay.
    done = run("train", "--resume", str(saved_run), "--max-rounds", "3", "--no-progress",
               cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert rounds(saved_run) == [1, 2, 3] and load_checkpoint(saved_run).round == 3
    config = yaml.safe_load((saved_run / "config.yaml").read_text())
    assert config["max_rounds"] == 3 and config["seeds_per_round"] == 8
    # Options that would change what the weights mean are refused.
    done = run("train", "--resume", str(saved_run), "--seed", "5", cwd=root)
    assert_user_error(done, "seed", "run: 0", "now: 5")


@pytest.mark.slow
def test_overwrite_replaces_a_run(saved_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "runs" / "again"
    copy.mkdir(parents=True)
    for name in ("config.yaml", "metrics.csv"):
        (copy / name).write_bytes((saved_run / name).read_bytes())
    (copy / "notes.txt").write_text("the user's own file")
    done = run("train", *TINY, "--max-rounds", "1", "--output-dir", "runs", "--run-name",
               "again", "--overwrite", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert rounds(copy) == [1] and load_checkpoint(copy).round == 1
    assert (copy / "notes.txt").read_text() == "the user's own file"


@pytest.mark.slow
def test_two_runs_started_in_the_same_second_get_their_own_directories(tmp_path: Path) -> None:
    command = [RAYMANAGER, "train", *TINY, "--max-rounds", "1", "--num-actors", "1",
               "--num-eval-actors", "1", "--seed", "0"]
    first = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    for process in (first, second):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    run_dirs = sorted((tmp_path / "runs").iterdir())
    assert len(run_dirs) == 2, run_dirs
    for run_dir in run_dirs:
        assert rounds(run_dir) == [1], run_dir


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_stopped_run_keeps_checkpoint_and_metrics_in_agreement(
    tmp_path: Path, stop: signal.Signals, status: int
) -> None:
    """The signal lands mostly in an evaluation (it dominates each round here)."""
    import psutil

    command = [RAYMANAGER, "train", "--seeds-per-round", "4", "--batch-size", "2",
               "--chunk-size", "2", "--eval-episodes", "100", "--target-return", "1e9",
               "--max-rounds", "1000", "--num-cpus", "2", "--no-progress",
               "--output-dir", "runs", "--run-name", "stopped"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "runs" / "stopped"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if (run_dir / "metrics.csv").exists() and len(rounds(run_dir)) >= 2:
            break
        time.sleep(0.1)
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(stop)
    _, err = process.communicate(timeout=120)
    assert process.returncode == status, err[-3000:]
    # Ray's crash handler used to print this and abort (status 134) on SIGTERM.
    assert "SIGTERM received" not in err and "Traceback" not in err, err[-3000:]
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    written = rounds(run_dir)
    assert written == list(range(1, state["round"] + 1)), (written, state["round"])
    _, alive = psutil.wait_procs(children, timeout=30)
    assert [p.pid for p in alive if p.is_running() and p.status() != "zombie"] == []
    if stop != signal.SIGINT:
        return
    done = run("train", "--resume", str(run_dir), "--max-rounds", str(state["round"] + 1),
               "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert rounds(run_dir) == list(range(1, state["round"] + 2))


def test_an_internal_error_shows_its_traceback_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug is not the user's mistake: its traceback is shown, not one tidy line."""
    from raymanager.cli import BUG, main
    from raymanager.training import run_files

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("an internal call broke")  # the type a user's mistake also raises

    monkeypatch.setattr(run_files.RunFiles, "__init__", broken)
    status = main(["train", "--no-progress", "--output-dir", str(tmp_path), "--max-rounds", "1"])
    err = capsys.readouterr().err
    assert status == BUG == 1
    assert "Traceback" in err and "ValueError: an internal call broke" in err
    assert "internal error" in err and "please report it" in err
    assert not any(line.startswith("error:") for line in err.splitlines())  # no tidy line
    assert not any(tmp_path.iterdir())  # the run that never started left no folder
    # A mistake in the options is still one line and exit status 2, before anything runs.
    assert main(["train", "--no-progress", "--num-actors", "0"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1 and "num_actors" in err
