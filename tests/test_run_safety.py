"""A user's files are sacred: one writer per run directory, names that stay in their
folder, printed commands that paste, and documented flags that are accepted.

The lock is checked with real processes: a holder in another process (a real
``raymanager train``, or a small script), SIGKILLed by the PID this test started.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from raymanager import RayActor, RayManager, RunLockedError
from raymanager.cli import build_parser
from raymanager.rundir import LOCK_FILE, DirectoryLock
from raymanager.sweep.command import sweep_spec_of
from raymanager.training import TrainConfig, new_run_dir

RAYMANAGER = str(Path(sys.executable).parent / "raymanager")
TINY = ["--seeds-per-round", "8", "--batch-size", "4", "--chunk-size", "4",
        "--eval-every", "1", "--eval-episodes", "6", "--target-return", "1e9", "--num-cpus", "2",
        "--no-progress"]

#: A process that takes a directory's lock, says so, and holds it until killed.
HOLDER = """
import sys, time
from raymanager.rundir import DirectoryLock
DirectoryLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def run(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RAYMANAGER, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def one_error_line(done: subprocess.CompletedProcess[str], *words: str) -> str:
    """The error line of a refused command (exit 2, no traceback); checks ``words`` in it."""
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    said = " ".join(done.stderr.split())
    assert said.count("error:") == 1, said
    for word in words:
        assert word in said, (word, said)
    return said


def rounds(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [int(row["round"]) for row in csv.DictReader(handle)]


def kill_tree(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process this test started, and the processes it started (its Ray)."""
    children = psutil.Process(process.pid).children(recursive=True)
    process.kill()
    process.wait(timeout=30)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(children, timeout=30)


def start_holder(directory: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


# --------------------------------------------------------------------------- the lock


def test_one_lock_at_a_time_even_within_one_process(tmp_path: Path) -> None:
    first = DirectoryLock(tmp_path).acquire()
    with pytest.raises(RunLockedError) as refused:
        DirectoryLock(tmp_path).acquire()
    assert refused.value.pid == os.getpid()
    assert str(os.getpid()) in str(refused.value) and str(tmp_path) in str(refused.value)
    first.release()
    first.release()  # idempotent
    with DirectoryLock(tmp_path) as again:
        assert again.held
    assert not again.held


def test_a_sigkilled_holder_leaves_no_lock_behind(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(RunLockedError) as refused:
            DirectoryLock(tmp_path).acquire()
        assert refused.value.pid == holder.pid
        assert f"process {holder.pid}" in str(refused.value)
    finally:
        holder.kill()  # SIGKILL: no cleanup code of the holder runs
        holder.wait(timeout=30)
    assert (tmp_path / LOCK_FILE).exists()  # the file stays behind, unlocked
    with DirectoryLock(tmp_path) as lock:
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and lock.held


def test_a_lock_released_with_its_file_removed_is_not_shared(tmp_path: Path) -> None:
    """A holder that removes its directory's lock file: a lock taken after that is a new one."""
    first = DirectoryLock(tmp_path).acquire()
    stale = os.open(tmp_path / LOCK_FILE, os.O_RDWR)  # opened before the removal
    first.release(remove_file=True)
    second = DirectoryLock(tmp_path).acquire()
    third = DirectoryLock(tmp_path)
    with pytest.raises(RunLockedError):
        third.acquire()
    os.close(stale)
    second.release()


def test_a_new_run_into_a_live_run_directory_is_refused_overwrite_or_not(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "live"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text("the live run's rows\n")
    holder = start_holder(run_dir)
    try:
        config = TrainConfig(output_dir=str(tmp_path / "runs"), run_name="live")
        for overwrite in (False, True):
            with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
                new_run_dir(config, overwrite=overwrite)
        done = run("train", *TINY, "--output-dir", "runs", "--run-name", "live", "--overwrite",
                   cwd=tmp_path)
        one_error_line(done, "in use", f"process {holder.pid}")
        assert (run_dir / "metrics.csv").read_text() == "the live run's rows\n"
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_live_sweep_directory_is_refused(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    (sweep_dir / "runs").mkdir(parents=True)
    (sweep_dir / "sweep.yaml").write_text(
        "base: {max_rounds: 1}\nseeds: [0]\ngrid: {}\nparallel: null\n")
    holder = start_holder(sweep_dir)
    try:
        done = run("sweep", "--resume", str(sweep_dir), cwd=tmp_path)
        one_error_line(done, "in use", f"process {holder.pid}", "sweep")
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.mark.slow
def test_resume_of_a_run_another_process_trains_is_refused_then_works_once_it_is_killed(
    tmp_path: Path,
) -> None:
    """The issue's race: a second process resuming a live run used to interleave its rows."""
    live = subprocess.Popen(
        [RAYMANAGER, "train", *TINY, "--max-rounds", "400", "--num-actors", "1",
         "--num-eval-actors", "1", "--output-dir", "out", "--run-name", "r"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "out" / "r"
    try:
        deadline = time.monotonic() + 180
        while not (run_dir / "checkpoint" / "state.json").exists():
            assert live.poll() is None and time.monotonic() < deadline, live.stderr
            time.sleep(0.1)
        refused = run("train", "--resume", str(run_dir), "--no-progress", cwd=tmp_path)
        one_error_line(refused, str(run_dir), "in use", f"process {live.pid}", "train")
        assert live.poll() is None  # the live run goes on, untouched
    finally:
        kill_tree(live)
    before = rounds(run_dir)
    assert before == list(range(1, len(before) + 1)), before
    done = run("train", "--resume", str(run_dir), "--max-rounds", str(len(before) + 2),
               "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert rounds(run_dir) == list(range(1, len(before) + 3))  # one writer: no interleaving


# --------------------------------------------------------------------------- names and flags


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "/tmp/abs"])
def test_a_run_name_cannot_leave_the_output_folder(tmp_path: Path, name: str) -> None:
    (tmp_path / "out").mkdir()
    for command in ("train", "sweep"):
        done = run(command, "--output-dir", "out/a", "--run-name", name, "--no-progress",
                   cwd=tmp_path)
        one_error_line(done, "run_name", "plain folder name")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out"]  # nothing written anywhere
    with pytest.raises(ValueError, match="plain folder name"):
        TrainConfig(run_name=name)


def test_a_sweep_of_an_unknown_env_is_one_error_before_ray_starts(tmp_path: Path) -> None:
    started = time.monotonic()
    done = run("sweep", "--env", "NoSuchEnv-v0", "--seeds", "0,1", "--no-progress", cwd=tmp_path)
    one_error_line(done, "NoSuchEnv-v0", "not a gymnasium environment")
    assert "failed" not in done.stdout + done.stderr  # not one failure per run
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert time.monotonic() - started < 60  # no Ray was started for it


def test_a_sweep_of_a_bad_grid_point_is_refused_before_ray_starts(tmp_path: Path) -> None:
    done = run("sweep", "--env", "CartPole-v1,NoSuchEnv-v0", "--seeds", "0", cwd=tmp_path)
    one_error_line(done, "NoSuchEnv-v0")


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings}


def test_sweep_accepts_every_train_flag() -> None:
    """The sweeps page says every train flag works in a sweep: the parsers agree."""
    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction)).choices
    missing = _flags(commands["train"]) - _flags(commands["sweep"])
    # --seed becomes --seeds; --overwrite has no meaning for a sweep (it never replaces one).
    assert missing == {"--seed", "--overwrite"}, missing
    args = build_parser().parse_args(["sweep", "--no-progress", "--max-rounds", "2"])
    assert sweep_spec_of(args).base.progress is False


def test_help_never_shows_a_bare_none_default(tmp_path: Path) -> None:
    for command in ("train", "sweep"):
        text = " ".join(run(command, "--help", cwd=tmp_path).stdout.split())
        assert "(default: none)" not in text, command
        assert "(default: es 128; ars per task, 32 on HalfCheetah-v5)" in text
        assert "(default: es 64; ars per task, 2 on HalfCheetah-v5)" in text


def test_a_class_without_process_batch_is_refused_by_name(manager: RayManager) -> None:
    class Forgetful(RayActor[list[int], int]):  # type: ignore[abstract]
        def process(self, batch: list[int]) -> int:
            return len(batch)

    with pytest.raises(TypeError, match=r"Forgetful does not implement process_batch"):
        manager.create_actor_pool(Forgetful, {}, num_actors=1)


@pytest.mark.slow
def test_printed_commands_paste_with_spaces_in_paths(tmp_path: Path) -> None:
    done = run("train", *TINY, "--max-rounds", "1", "--num-actors", "1", "--num-eval-actors",
               "1", "--output-dir", "my runs", "--run-name", "it's a run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if "tensorboard --logdir" in line)
    words = shlex.split(line.split(":", 1)[1].split("(pip install")[0])
    assert words[:2] == ["tensorboard", "--logdir"]
    assert (tmp_path / words[2]).is_dir() and words[2] == "my runs/it's a run/tensorboard"
    # A run name that exists already: the message's resume command pastes too.
    again = run("train", *TINY, "--max-rounds", "1", "--output-dir", "my runs", "--run-name",
                "it's a run", cwd=tmp_path)
    said = one_error_line(again, "already holds a run")
    command = said.split("`")[1]
    assert shlex.split(command) == ["raymanager", "train", "--resume", "my runs/it's a run"]


def test_the_sweep_resume_command_pastes() -> None:
    from raymanager.rundir import resume_command

    command = resume_command("sweep", Path("my sweeps") / "it's one")
    assert shlex.split(command) == ["raymanager", "sweep", "--resume", "my sweeps/it's one"]


def test_sigterm_of_a_holder_also_frees_the_lock(tmp_path: Path) -> None:
    holder = start_holder(tmp_path)
    holder.send_signal(signal.SIGTERM)
    holder.wait(timeout=30)
    with DirectoryLock(tmp_path):
        pass


def test_a_video_of_a_live_run_leaves_its_tracker_files_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """evaluate --video writes into a run directory only to add the video to the run's
    tracker runs: under the run's lock, so never into a run another process trains."""
    import dataclasses

    from raymanager.agents import make_agent
    from raymanager.rundir import TRACKERS_FILE, Checkpoint, save_checkpoint
    from raymanager.training import plan_run
    from raymanager.video import record_video

    plan = plan_run(TrainConfig())
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir / "checkpoint",
                    Checkpoint(make_agent(dict(plan.agent_config)).get_weights(), 0, 0, 0.0,
                               dataclasses.asdict(plan.config)))
    trackers = '{"mlflow": {"run_id": "abc", "status": "FINISHED"}}\n'
    (run_dir / TRACKERS_FILE).write_text(trackers)
    holder = start_holder(run_dir)
    try:
        with caplog.at_level("WARNING", logger="raymanager"):
            result = record_video(run_dir, tmp_path / "policy.gif")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert result.frames > 0 and (tmp_path / "policy.gif").exists()  # the video is made
    assert result.tracking == []
    assert (run_dir / TRACKERS_FILE).read_text() == trackers  # the live run's file untouched
    assert "not added to the run's tracker runs" in caplog.text
    assert f"process {holder.pid}" in caplog.text
