"""The summary of a sweep, from run directories written by hand (its input files) and one
written by a real training run; and the sweep's section of the results page."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from raymanager import RayManager
from raymanager.sweep.summary import (
    CSV_COLUMNS,
    RunDirError,
    group_curve,
    read_run,
    summarize,
    summary_csv,
    summary_markdown,
    summary_to_json,
    varying_options,
    write_summary,
)

ROOT = Path(__file__).resolve().parent.parent
HEADER = ("round,seconds,env_steps,train_env_steps,fitness_mean,fitness_max,loss,"
          "eval_return_mean,eval_return_std,eval_return_min,eval_return_max,eval_length_mean,"
          "eval_episodes,restarts,episodes,train_episodes,batches,result_bytes,broadcast_bytes,"
          "bytes_per_round")
#: (round, seconds, env_steps, episodes, eval_return_mean or None)
Row = tuple[int, float, int, int, "float | None"]


def line(row: Row) -> str:
    number, seconds, steps, episodes, value = row
    evals = ["", "", "", "", "", ""] if value is None else [str(value), "1.0", "0", "9", "5",
                                                             "4"]
    cells = [str(number), str(seconds), str(steps), "10", "1.5", "3", "-1.5", *evals, "0",
             str(episodes), "8", "2", "100", "50", "150"]
    return ",".join(cells) + "\n"


def make_run(sweep: Path, name: str, rows: Sequence[Row], *, seed: int = 0,
             learning_rate: float = 0.01, target: float = 100.0, max_rounds: int = 50,
             env: str = "CartPole-v1", tail: str = "") -> Path:
    run = sweep / "runs" / name
    run.mkdir(parents=True)
    config = {"env": env, "env_kwargs": {}, "agent": "es", "agent_kwargs": {}, "seed": seed,
              "num_actors": 2, "learning_rate": learning_rate, "noise_std": 0.1,
              "target_return": target, "max_rounds": max_rounds, "max_seconds": 600.0,
              "output_dir": str(sweep / "runs"), "run_name": name, "progress": False}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run / "metrics.csv").write_text(HEADER + "\n" + "".join(line(r) for r in rows) + tail)
    return run


def three_seeds(sweep: Path, learning_rate: float = 0.01, prefix: str = "") -> None:
    # Seed 0 reaches 100 at round 2 (20 s, 200 episodes); seed 1 at round 3 (36 s, 420
    # episodes); seed 2 never (best 80, still running).
    make_run(sweep, f"{prefix}s0", [(1, 10.0, 1000, 100, 50.0), (2, 20.0, 2000, 200, 110.0)],
             seed=0, learning_rate=learning_rate)
    make_run(sweep, f"{prefix}s1", [(1, 12.0, 1100, 140, 40.0), (2, 24.0, 2200, 280, 90.0),
                                    (3, 36.0, 3300, 420, 150.0)],
             seed=1, learning_rate=learning_rate)
    make_run(sweep, f"{prefix}s2", [(1, 11.0, 900, 120, 30.0), (2, 22.0, 1800, 240, None),
                                    (3, 33.0, 2700, 360, 80.0), (4, 44.0, 3600, 480, 70.0)],
             seed=2, learning_rate=learning_rate)


def test_a_run_that_reaches_the_target_and_one_that_does_not(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    reached = read_run(tmp_path / "runs" / "s1", ("learning_rate",))
    assert reached.state == "reached" and reached.reached and reached.finished
    assert (reached.seconds_to_target, reached.episodes_to_target,
            reached.env_steps_to_target) == (36.0, 420, 3300)
    assert (reached.best_eval, reached.final_eval) == (150.0, 150.0)
    assert (reached.rounds, reached.seconds, reached.env_steps, reached.episodes) == (
        3, 36.0, 3300, 420)
    assert reached.option("learning_rate") == 0.01 and reached.seed == 1
    assert reached.env == "CartPole-v1" and reached.target == 100.0

    running = read_run(tmp_path / "runs" / "s2")
    assert running.state == "unfinished" and not running.reached and not running.finished
    assert running.seconds_to_target is None and running.episodes_to_target is None
    assert (running.best_eval, running.final_eval, running.rounds) == (80.0, 70.0, 4)
    assert [e.round for e in running.evaluations] == [1, 3, 4]  # round 2 had no evaluation


def test_a_spent_budget_is_finished_by_rounds_or_by_the_checkpoint_seconds(
        tmp_path: Path) -> None:
    by_rounds = make_run(tmp_path, "r", [(1, 5.0, 100, 10, 1.0), (2, 9.0, 200, 20, 2.0)],
                         max_rounds=2)
    assert read_run(by_rounds).state == "budget"
    by_time = make_run(tmp_path, "t", [(1, 599.0, 100, 10, 1.0)])
    assert read_run(by_time).state == "unfinished"  # the row is written before the time check
    (by_time / "checkpoint").mkdir()
    (by_time / "checkpoint" / "state.json").write_text(json.dumps({"round": 1,
                                                                   "seconds": 600.2}))
    assert read_run(by_time).state == "budget"


def test_medians_over_three_seeds(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    summary = summarize(tmp_path, varying=("learning_rate",))
    [group] = summary.groups
    assert (group.env, group.options, group.targets) == (
        "CartPole-v1", (("learning_rate", 0.01),), (100.0,))
    assert (group.seeds, group.reached, group.finished) == (3, 2, 2)
    # Over all three, the third seed counting as never: the middle of (20, 36, never) ...
    assert group.median_seconds_to_target == 36.0
    assert group.median_episodes_to_target == 420.0
    assert group.median_env_steps_to_target == 3300.0
    # Over all three: best 110, 150, 80 -> 110; final 110, 150, 70 -> 110.
    assert group.median_best_eval == 110.0 and group.median_final_eval == 110.0

    curve = group_curve(group.runs, "env_steps")
    assert curve.band == "min-max" and curve.seeds == 3
    assert curve.x.tolist() == [900, 1000, 1100, 2000, 2200, 2700, 3300, 3600]
    # At 2000: s0 110 (its own point), s1 40 + (90 - 40) * 900 / 1100, s2 30 + 50 * 1100/1800.
    s1, s2 = 40 + 50 * 900 / 1100, 30 + 50 * 1100 / 1800
    at = curve.x.tolist().index(2000)
    assert curve.median[at] == pytest.approx(sorted([110.0, s1, s2])[1])
    assert (curve.low[at], curve.high[at]) == (pytest.approx(min(s1, s2)), 110.0)
    # Past 2000 seed 0 is done (reached): held at 110. At 3600 seed 1 is held at 150 and
    # seed 2 is at its last point (70): three seeds still.
    assert curve.count.tolist() == [1, 2, 3, 3, 3, 3, 3, 3]
    assert curve.median[-1] == 110.0 and (curve.low[-1], curve.high[-1]) == (70.0, 150.0)


def test_an_unfinished_run_counts_only_up_to_its_last_point(tmp_path: Path) -> None:
    make_run(tmp_path, "a", [(1, 1.0, 100, 10, 10.0), (2, 2.0, 200, 20, 20.0)])
    make_run(tmp_path, "b", [(1, 1.0, 100, 10, 30.0), (2, 2.0, 200, 20, 40.0),
                             (3, 3.0, 300, 30, 50.0)])
    curve = group_curve(summarize(tmp_path).groups[0].runs, "seconds")
    assert curve.x.tolist() == [1.0, 2.0, 3.0] and curve.count.tolist() == [2, 2, 1]
    assert curve.median.tolist() == [20.0, 30.0, 50.0]


def test_four_seeds_give_a_25_to_75_percent_band(tmp_path: Path) -> None:
    for seed, final in enumerate((10.0, 20.0, 30.0, 40.0)):
        make_run(tmp_path, f"s{seed}", [(1, 5.0, 1000, 10, 0.0), (2, 9.0, 2000, 20, final)],
                 seed=seed)
    [group] = summarize(tmp_path).groups
    curve = group_curve(group.runs, "env_steps")
    assert curve.band == "25-75 %" and curve.seeds == 4
    # numpy's linear percentiles of 10, 20, 30, 40: 17.5 and 32.5; median 25.
    assert curve.median.tolist() == [0.0, 25.0]
    assert curve.low.tolist() == [0.0, 17.5] and curve.high.tolist() == [0.0, 32.5]
    assert group.median_final_eval == 25.0


def test_an_incomplete_last_line_is_not_read_yet(tmp_path: Path) -> None:
    rows: list[Row] = [(1, 5.0, 1000, 10, 50.0), (2, 9.0, 2000, 20, 60.0)]
    run = make_run(tmp_path, "a", rows, tail=line((3, 13.0, 3000, 30, 500.0))[:9])
    record = read_run(run)
    assert (record.rounds, record.final_eval, record.state) == (2, 60.0, "unfinished")
    # The row, once complete, counts.
    with open(run / "metrics.csv", "w") as handle:
        handle.write(HEADER + "\n" + "".join(line(r) for r in rows)
                     + line((3, 13.0, 3000, 30, 500.0)))
    assert read_run(run).state == "reached"
    # A header being written is no row either.
    (run / "metrics.csv").write_text(HEADER[:30])
    assert read_run(run).state == "pending"


def test_pending_runs(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    make_run(tmp_path, "s3", [], seed=3)             # a config and a header: no row yet
    (tmp_path / "runs" / "s4").mkdir()               # started by the sweep, nothing written
    summary = summarize(tmp_path, varying=("learning_rate",))
    states = {r.name: r.state for r in summary.runs}
    assert states == {"s0": "reached", "s1": "reached", "s2": "unfinished", "s3": "pending",
                      "s4": "pending"}
    [group] = summary.groups  # s4 has no config: no env, in no group
    assert (group.seeds, group.reached) == (4, 2)
    assert group.median_best_eval == 110.0  # the pending run has no evaluation to count
    assert "5 runs: 2 pending, 1 unfinished, 2 reached." in summary_markdown(summary)


def test_two_groups_by_learning_rate(tmp_path: Path) -> None:
    three_seeds(tmp_path, 0.01, prefix="a")
    make_run(tmp_path, "b0", [(1, 3.0, 500, 50, 120.0)], seed=0, learning_rate=0.02)
    make_run(tmp_path, "b1", [(1, 4.0, 600, 60, 90.0), (2, 7.0, 1200, 110, 101.0)], seed=1,
             learning_rate=0.02)
    assert varying_options((tmp_path / "runs").iterdir()) == ("learning_rate",)
    summary = summarize(tmp_path, varying=("learning_rate",))
    assert [(g.label, g.reached, g.seeds) for g in summary.groups] == [
        ("CartPole-v1 learning_rate=0.01", 2, 3), ("CartPole-v1 learning_rate=0.02", 2, 2)]
    fast = summary.groups[1]
    assert (fast.median_seconds_to_target, fast.median_episodes_to_target) == (5.0, 80.0)
    table = summary_markdown(summary)
    assert "| CartPole-v1 | 0.01 | 100 | 3 | 2/3 | 36.0 | 420 | 110.0 | 110.0 |" in table
    assert "| CartPole-v1 | 0.02 | 100 | 2 | 2/2 | 5.0 | 80 | 110.5 | 110.5 |" in table


def test_the_csv_columns(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    text = summary_csv(summarize(tmp_path, varying=("learning_rate",)))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == (
        "run,env,seed,learning_rate,target,reached,seconds_to_target,episodes_to_target,"
        "env_steps_to_target,best_eval,final_eval,rounds,seconds,env_steps,episodes,state")
    assert list(rows[0]) == ["run", "env", "seed", "learning_rate", *CSV_COLUMNS[3:]]
    assert rows[1] == {"run": "s1", "env": "CartPole-v1", "seed": "1", "learning_rate": "0.01",
                       "target": "100.0", "reached": "true", "seconds_to_target": "36.0",
                       "episodes_to_target": "420", "env_steps_to_target": "3300",
                       "best_eval": "150.0", "final_eval": "150.0", "rounds": "3",
                       "seconds": "36.0", "env_steps": "3300", "episodes": "420",
                       "state": "reached"}
    assert rows[2]["reached"] == "false" and rows[2]["seconds_to_target"] == ""


def test_the_markdown_table(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    text = summary_markdown(summarize(tmp_path))  # no varying option: the env alone
    assert ("| task | threshold | seeds | seeds reaching it | median seconds to it ¹ | "
            "median episodes to it ¹ | median best eval return | median final eval return |\n"
            "|---|---|---|---|---|---|---|---|\n"
            "| CartPole-v1 | 100 | 3 | 2/3 | 36.0 | 420 | 110.0 | 110.0 |\n") in text
    assert "¹ Median over all the seeds, a seed that never reached the threshold" in text


def test_write_summary_writes_three_files_and_a_png(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    csv_path, md_path, png_path = write_summary(summarize(tmp_path, varying=("learning_rate",)))
    assert [p.name for p in (csv_path, md_path, png_path)] == [
        "summary.csv", "summary.md", "summary.png"]
    assert all(p.parent == tmp_path for p in (csv_path, md_path, png_path))
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert md_path.read_text(encoding="utf-8").startswith(f"# Sweep {tmp_path.name}\n")
    # Again, as a live sweep does: each file replaced, no temporary file left.
    write_summary(summarize(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "runs", "summary.csv", "summary.md", "summary.png"]


def test_a_sweep_with_no_evaluation_yet_still_draws(tmp_path: Path) -> None:
    make_run(tmp_path, "a", [])
    png = write_summary(summarize(tmp_path))[2]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreadable_files_name_their_path(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    bad_yaml = tmp_path / "runs" / "s0" / "config.yaml"
    bad_yaml.write_text("env: [CartPole\n")
    with pytest.raises(RunDirError, match=r"s0/config\.yaml: not valid YAML") as raised:
        read_run(bad_yaml.parent)
    assert raised.value.path == bad_yaml
    bad_cell = tmp_path / "runs" / "s1" / "metrics.csv"
    bad_cell.write_text(HEADER + "\n" + line((1, 5.0, 100, 10, 1.0)).replace("5.0", "five"))
    with pytest.raises(RunDirError, match=r"s1/metrics\.csv: line 2: seconds is not a number"):
        read_run(bad_cell.parent)
    # The summary goes on without them, and says so.
    summary = summarize(tmp_path)
    assert [r.state for r in summary.runs] == ["corrupt", "corrupt", "unfinished"]
    assert summary.groups[0].seeds == 1
    text = summary_markdown(summary)
    assert "Runs left out, unreadable:" in text and f"- `s0`: {bad_yaml}: not valid" in text


def test_a_wrong_varying_option_is_the_callers_mistake(tmp_path: Path) -> None:
    three_seeds(tmp_path)
    with pytest.raises(ValueError, match="has no option learnin_rate"):
        summarize(tmp_path, varying=("learnin_rate",))
    with pytest.raises(ValueError, match="seed cannot be a varying option"):
        summarize(tmp_path, varying=("seed",))
    assert summarize(tmp_path, varying=("env", "learning_rate")).varying == ("learning_rate",)


def test_the_summary_is_files_only() -> None:
    """No Ray, no gymnasium, and matplotlib only once a picture is drawn."""
    code = ("import sys, raymanager.sweep.summary\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'ray', 'gymnasium', 'matplotlib', 'rich'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "[]"


def _benchmark_module(name: str) -> Any:
    # As tests/test_docs.py loads them: the scripts import their siblings (machine.py).
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results_section(sweep: Path, command: str) -> tuple[dict[str, Any], str]:
    result = _benchmark_module("sweep_result").sweep_result(sweep, command, note="a test")
    # What --out writes and results_page reads back: it must survive JSON.
    result = json.loads(json.dumps(result))
    return result, _benchmark_module("results_page").render_report("sweep-test", result)


def test_a_sweep_becomes_a_results_section(tmp_path: Path) -> None:
    three_seeds(tmp_path, 0.01, prefix="a")
    make_run(tmp_path, "b0", [(1, 3.0, 500, 50, 120.0)], seed=0, learning_rate=0.02)
    result, section = _results_section(tmp_path, "raymanager sweep --seeds 0,1,2")
    assert result["kind"] == "sweep" and result["varying"] == ["learning_rate"]
    assert result["machine"]["cpu_count"] and result["date"].endswith("Z")
    assert result["runs"][0]["command"].startswith("raymanager train --env CartPole-v1 ")
    assert "--learning-rate 0.01 " in result["runs"][0]["command"]
    assert "--output-dir" not in result["runs"][0]["command"]
    assert "--seed" not in result["common_command"]
    assert "- **command**: `raymanager sweep --seeds 0,1,2`" in section
    assert "| `as1` | `--seed 1 --learning-rate 0.01` | reached |" in section
    assert "| CartPole-v1 | 0.01 | 100 | 3 | 2/3 | 36.0 | 420 | 110.0 | 110.0 |" in section
    assert "| CartPole-v1 | 0.02 | 100 | 1 | 1/1 | 3.0 | 50 | 120.0 | 120.0 |" in section


def test_a_sweep_of_a_paper_task_makes_the_ars_table(tmp_path: Path) -> None:
    # Two Swimmer seeds reach 325 (60 s / 400 episodes, 120 s / 900), the third never: the
    # median counts it as never, so it is the slower seed's.
    for seed, rows in enumerate([[(1, 60.0, 40_000, 400, 330.0)],
                                 [(1, 60.0, 40_000, 400, 200.0), (2, 120.0, 90_000, 900, 340.0)],
                                 [(1, 60.0, 40_000, 400, 40.0), (2, 120.0, 90_000, 900, 45.0)]]):
        make_run(tmp_path, f"w{seed}", rows, seed=seed, env="Swimmer-v5", target=325.0)
    pages = _benchmark_module("results_page")
    result = json.loads(json.dumps(_benchmark_module("sweep_result").sweep_result(
        tmp_path, "raymanager sweep --env Swimmer-v5")))
    table = pages.ars_table([result])
    assert table[:3] == [
        "| task | threshold | seeds reaching it | median time to it ¹ | median episodes to it ¹ "
        "| paper's episodes ² | median best return |",
        "|---|---|---|---|---|---|---|",
        "| Swimmer-v5 | 325 | 2/3 | 2.0 min | 900 | 427 | 330 |"]
    # A grid (here over the learning rate) is not the paper's setting: no row.
    three_seeds(tmp_path / "grid", 0.01)
    make_run(tmp_path / "grid", "x", [(1, 5.0, 10, 1, 1.0)], learning_rate=0.02,
             env="Swimmer-v5")
    grid = _benchmark_module("sweep_result").sweep_result(tmp_path / "grid", "raymanager sweep")
    assert pages.ars_table([grid]) == []

    readme = ("# r\n\nbefore\n" + pages.README_START + "\nold table\n" + pages.README_END
              + "\nafter\n")
    assert pages.readme_with_table(readme, table) == (
        "# r\n\nbefore\n" + pages.README_START + "\n" + "\n".join(table) + "\n"
        + pages.README_END + "\nafter\n")
    assert pages.readme_with_table("no block\n", table) == "no block\n"


def test_the_readme_table_is_generated_from_the_json() -> None:
    pages = _benchmark_module("results_page")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == pages.render_readme(readme), (
        "README.md's ARS table is out of date: run python benchmarks/results_page.py")


@pytest.mark.slow
def test_real_training_runs_are_summarized(ray_session: RayManager, tmp_path: Path) -> None:
    from raymanager.training import TrainConfig, train

    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        # Tiny rounds: the files' format is under test, not learning.
        train(TrainConfig(seed=seed, max_rounds=2, progress=False, seeds_per_round=8,
                          batch_size=4, chunk_size=4, eval_every=1, eval_episodes=4,
                          output_dir=str(sweep / "runs"), run_name=f"seed{seed}"))
    summary = summarize(sweep, varying=("learning_rate",))
    assert [(r.name, r.seed, r.state, r.rounds) for r in summary.runs] == [
        ("seed0", 0, "budget", 2), ("seed1", 1, "budget", 2)]
    for record in summary.runs:
        assert record.env == "CartPole-v1" and record.target == 475.0
        assert len(record.evaluations) == 2 and record.best_eval is not None
        assert record.env_steps > 0 and record.episodes and record.seconds > 0
    [group] = summary.groups
    assert group.seeds == 2 and group.median_best_eval == pytest.approx(
        float(np.median([r.best_eval for r in summary.runs if r.best_eval is not None])))
    paths = write_summary(summary)
    assert all(p.is_file() for p in paths)
    assert json.loads(json.dumps(summary_to_json(summary)))["groups"][0]["seeds"] == 2

    result, section = _results_section(sweep, "raymanager train --seed 0/1 --max-rounds 2")
    assert result["varying"] == []  # the two runs differ only in their seed
    assert "| `seed0` | `--seed 0` | budget |" in section
    assert "| CartPole-v1 | 475 | 2 | 0/2 | - | - |" in section


def test_every_command_of_a_sweep_result_is_one_raymanager_train_takes(tmp_path: Path) -> None:
    # Options of every kind: a bool turned off, a repeatable one, a mapping, a path with a
    # space. Each run's printed command, pasted, must give back its config.yaml.
    from raymanager.cli import build_parser
    from raymanager.cli_flags import given_options

    for seed in (0, 1):
        run = make_run(tmp_path, f"r{seed}", [(1, 1.0, 10, 1, 1.0)], seed=seed)
        config = yaml.safe_load((run / "config.yaml").read_text())
        config.update(overlap_eval=False, trackers=["mlflow"], env_kwargs={"a b": 1},
                      target_return=None)
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = _benchmark_module("sweep_result").sweep_result(tmp_path, "raymanager sweep")
    assert "--no-overlap-eval --tracker mlflow" in result["common_command"]
    for run in result["runs"]:
        arguments = shlex.split(run["command"])
        assert arguments[:2] == ["raymanager", "train"]
        given = given_options(build_parser().parse_args(arguments[1:]))
        config = yaml.safe_load((tmp_path / "runs" / run["run"] / "config.yaml").read_text())
        expected = {k: v for k, v in config.items()
                    if v is not None and k not in ("output_dir", "run_name", "progress")}
        assert {k: list(v) if isinstance(v, tuple) else v for k, v in given.items()} == expected
