"""The README and the docs site are right: the site builds with no warning, every
``python`` block on every page runs, every ``raymanager`` command line parses, every
relative link resolves, and the results page is what its JSON files say.

Each python block runs in a fresh interpreter in an empty folder (with ``examples/``
beside it), as a new user would run it: a block that starts Ray starts its own private
Ray and shuts it down before it ends. A block that cannot run in a test starts with
``# not run: <why>``; there are few, and each must say why.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from raymanager import RayManager
from raymanager.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
NOT_RUN = "# not run:"
#: The two commands of the README's Quickstart, byte for byte.
QUICKSTART = (
    "python3 -m venv .venv && . .venv/bin/activate && python -m pip install -e . "
    "&& raymanager train",
    'python3 -m venv .venv && . .venv/bin/activate && python -m pip install -e ".[test]" '
    "&& python -m pytest",
)


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path, language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(page.read_text(encoding="utf-8"))
            if lang == language]


def python_blocks() -> list[tuple[str, int, str]]:
    return [(_name(page), index, code) for page in PAGES
            for index, code in enumerate(blocks(page, "python"))]


def runnable_blocks() -> list[tuple[str, int, str]]:
    return [block for block in python_blocks() if not block[2].startswith(NOT_RUN)]


def test_the_readme_has_the_blocks_this_file_runs() -> None:
    assert len(blocks(README, "python")) >= 2
    assert any("class Normalize" in code for code in blocks(README, "python"))
    assert any("manager.create_actor_pool(" in code and "process_in_parallel" in code
               for code in blocks(README, "python"))


def test_the_readme_is_short_and_keeps_the_quickstart() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    for command in QUICKSTART:
        assert f"```bash\n{command}\n```" in quickstart


def test_every_page_has_runnable_code_or_none_and_few_blocks_are_skipped() -> None:
    skipped = [block for block in python_blocks() if block[2].startswith(NOT_RUN)]
    for page, index, code in skipped:
        reason = code.splitlines()[0][len(NOT_RUN):].strip()
        assert reason, f"{page} python block {index}: '# not run:' must say why"
    assert len(skipped) <= 3, [f"{page}#{index}" for page, index, _ in skipped]
    assert len(runnable_blocks()) >= 15


@pytest.mark.slow
@pytest.mark.parametrize(("page", "index", "code"), runnable_blocks(),
                         ids=[f"{page}-{index}" for page, index, _ in runnable_blocks()])
def test_python_block_runs(page: str, index: int, code: str, tmp_path: Path) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    # No usage reports from the trackers' libraries (MLflow 3 sends them by default).
    env = {**os.environ, "MPLBACKEND": "Agg", "MLFLOW_DISABLE_TELEMETRY": "true",
           "DO_NOT_TRACK": "true"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, env=env)
    assert done.returncode == 0, f"{page} python block {index}:\n{code}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr


def _command_lines() -> list[list[str]]:
    commands = []
    for page in PAGES:
        for code in blocks(page, "bash"):
            for line in code.splitlines():
                line = line.split("  #")[0].strip()
                for part in line.split("&&"):
                    words = shlex.split(part)
                    if words and words[0] == "raymanager":
                        commands.append(words[1:])
    return commands


def test_every_raymanager_command_in_the_docs_parses() -> None:
    commands = _command_lines()
    assert {c[0] for c in commands} >= {"train", "evaluate", "info"}
    parser = build_parser()
    for words in commands:
        parser.parse_args(words)  # exits (fails the test) on an unknown flag


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """Heading anchors as GitHub and MyST make them."""
    anchors = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_every_relative_link_resolves() -> None:
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path) if path else page
            assert resolved.exists(), f"{_name(page)}: link to {target}: no such file"
            if anchor and resolved.suffix == ".md":
                assert anchor in _anchors(resolved), f"{_name(page)}: link to {target}"


def test_no_page_points_outside_the_project() -> None:
    for page in PAGES:
        assert "../shared" not in page.read_text(encoding="utf-8"), _name(page)


def _benchmark_module(name: str) -> Any:
    # Benchmark scripts import their siblings (machine.py, workloads.py), as
    # they do when run from the command line.
    if str(ROOT / "benchmarks") not in sys.path:
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_results_page_is_generated_from_the_json() -> None:
    expected = _benchmark_module("results_page").render_page(DOCS / "results")
    assert (DOCS / "results.md").read_text(encoding="utf-8") == expected, (
        "docs/results.md is out of date: run python benchmarks/results_page.py")
    for path in (DOCS / "results").glob("*.json"):
        text = path.read_text(encoding="utf-8")
        for key in ('"date"', '"command"', '"machine"', '"platform"', '"cpu_count"'):
            assert key in text, f"{path.name} lacks {key}"


def test_a_training_run_becomes_a_results_section(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(
        "env: CartPole-v1\nagent: es\nseed: 3\nnum_actors: 2\nnum_eval_actors: 2\n"
        "target_return: 475.0\n")
    (run_dir / "metrics.csv").write_text(
        "round,seconds,env_steps,episodes,eval_return_mean,eval_return_std,eval_episodes\n"
        "1,5.5,1000,128,,,\n2,7.25,2000,256,480.5,3.5,100\n")
    result = _benchmark_module("training_result").training_result(
        run_dir, "raymanager train --seed 3", note="a test")
    assert result["command"] == "raymanager train --seed 3"
    assert result["machine"]["cpu_count"] == os.cpu_count() and result["date"].endswith("Z")
    section = _benchmark_module("results_page").render_report("train-test", result)
    assert "| rounds | 2 |" in section
    assert "| last evaluation: mean ± std over episodes | 480.5 ± 3.5 over 100 (round 2) |" \
        in section
    assert "| target 475 reached | round 2, 7 s |" in section


def test_the_mujoco_step_cost_bounds_each_paper_task(tmp_path: Path) -> None:
    """A real (short) measurement; the bound is the paper's episodes x 1,000 steps x the
    step's cost, spread over the cores."""
    costs = _benchmark_module("mujoco_step_cost")
    out = tmp_path / "cost.json"
    costs.main(["--turns", "1", "--steps", "200", "--seconds", "0.05", "--train-tasks", "",
                "--out", str(out)])
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["kind"] == "mujoco_step_cost" and set(report["tasks"]) == set(costs.TASKS)
    assert report["tasks"]["HalfCheetah-v5"]["ratio_to_halfcheetah"] == 1.0
    assert all(task["us_per_step"] > 0 for task in report["tasks"].values())
    report["machine"]["cpu_count"] = 2
    report["tasks"]["Ant-v5"]["us_per_step"] = 300.0
    section = _benchmark_module("results_page").render_report("cost", report)
    # 20,800 episodes x 1,000 steps x 300 µs / 2 cores = 3,120 s = 52 minutes.
    assert "| Ant-v5 | 300.0 |" in section and "| 20,800 | 52.0 min |" in section


@pytest.mark.slow
def test_the_docs_site_builds_with_no_warning(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    for page in ("index", "api-guide", "journal", "reference", "results"):
        assert (tmp_path / "html" / f"{page}.html").exists()
    assert "process_in_parallel" in (tmp_path / "html" / "reference.html").read_text()


@pytest.mark.slow
def test_the_actor_gap_puts_an_actor_beside_a_forked_process_and_the_readme_shows_it() -> None:
    """A real (short) interleaved measurement, its section, and the README's Ray-tax rows."""
    gap = _benchmark_module("actor_gap")
    report = gap.measure("loop", ["fork", "ray defaults"], rounds=2, batches=3, workers=2)
    fork, actor = report["variants"]
    assert fork["ratio_to_fork"] == 1.0 and actor["ratio_to_fork"] > 0
    # Both sides ran the same batches (checked inside), each in its own kind of process.
    assert actor["niceness"] == 15 and fork["niceness"] == os.getpriority(os.PRIO_PROCESS, 0)
    assert actor["threads"] > fork["threads"]  # a Ray worker's gRPC and I/O threads
    report.update({"kind": "actor_gap", "date": "2026-12-05T00:00:00Z",
                   "command": "python benchmarks/actor_gap.py", "machine": {}})
    pages = _benchmark_module("results_page")
    section = pages.render_report("gap", report)
    assert "| ray defaults |" in section and "wall / fork (median)" in section
    recovery = {"kind": "recovery", "date": "2026-12-05T00:00:00Z",
                "command": "python benchmarks/recovery.py", "machine": {},
                "settings": {"turns": 2}, "spare_memory_bytes": {"uss": 2**20, "pss": 2**20,
                                                                  "rss": 2**21},
                "pools": {"no spare": {"median_ratio": 1.2, "ratios": [1.2, 1.2],
                                       "median_ready_after_s": 0.5, "check": "ok"},
                          "spare_actors=1": {"median_ratio": 1.05, "ratios": [1.05, 1.05],
                                             "median_ready_after_s": 0.05, "check": "ok"}}}
    table = pages.tax_table([report, recovery])
    assert table[2].startswith("| the same batches in an actor / in a forked process (wall) | ")
    assert table[3] == "| W1 with one worker SIGKILLed / without | 1.200 | - | `recovery` |"
    assert table[4].startswith("| the same, `spare_actors=1` | 1.050 | ≤ 1.10 |")
    assert "| spare_actors=1 | 1.050 | 1.05, 1.05 | 0.05 s | ok |" in pages.render_report(
        "recovery", recovery)
    # Commands stay out of the table, in the list of how each row was measured.
    assert pages.tax_measured(pages.tax_rows([report, recovery]))[-1] == (
        "- rows 2, 3, [recovery](#recovery): 2026-12-05T00:00:00Z on a machine not "
        "recorded: `python benchmarks/recovery.py`")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert pages.TAX_MARKERS[0] in readme and pages.TAX_MARKERS[1] in readme


@pytest.mark.slow
def test_driver_scaling_turns_make_a_report_that_the_page_and_readme_show(
        manager: RayManager) -> None:
    """Real (short) sleep-bound runs, summarized per pool size, and rendered."""
    scaling = _benchmark_module("driver_scaling")
    # Two turns of 2 actors, one of 64 (starting 64 worker processes on 2
    # cores takes tens of seconds).
    runs = {2: [scaling.measure(manager, 2, 0.01, 0.2) for _ in range(2)],
            64: [scaling.measure(manager, 64, 0.01, 0.2)]}
    sizes = scaling.summarize(runs)
    assert [size["actors"] for size in sizes] == [2, 64]
    assert [len(size["of_ideal"]) for size in sizes] == [2, 1]
    assert all(size["check"] == "ok" for size in sizes)
    assert all(0 < size["median_of_ideal"] <= 1.05 for size in sizes)
    report = {"kind": "driver_scaling", "date": "2026-12-05T00:00:00Z",
              "command": "python benchmarks/driver_scaling.py", "machine": {},
              "settings": {"batch_s": 0.01, "seconds": 0.2, "turns": 2}, "sizes": sizes}
    pages = _benchmark_module("results_page")
    section = pages.render_report("scaling", report)
    assert f"| 64 | {sizes[1]['median_of_ideal']:.3f} |" in section
    table = pages.tax_table([report])
    assert table[2] == ("| 64 actors on batches sleeping 10 ms, throughput of ideal | "
                        f"{sizes[1]['median_of_ideal']:.3f} | ≥ 0.90 | `driver_scaling` |")
