"""The results page's figures: drawn from the JSON, shown by the page, and checked.

``benchmarks/results_page.py --check`` must fail when a JSON changes and the page or a
figure does not; a figure is checked by the digest of the data it shows (stored in
the PNG), never by its bytes. Files only: nothing here starts Ray.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from raymanager.sweep.summary import group_curve, summarize

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    # As the scripts run from the command line: they import their siblings.
    sys.path.insert(0, str(BENCHMARKS))

import results_figures as figures  # noqa: E402
import results_page as pages  # noqa: E402
import sweep_result  # noqa: E402

#: A few reports of each kind the page draws: a sweep of an ARS task, a sweep with a
#: grid, benchmarks/run.py's peers, and two of the Ray tax's reports.
SAMPLE = ("sweep-ars-hopper", "sweep-swimmer-mlp", "benchmarks-quick", "recovery",
          "actor-gap-w1")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


def _load(name: str) -> dict[str, Any]:
    return json.loads((pages.RESULTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _sample(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """A results folder with :data:`SAMPLE`, an empty figures folder, the page's path and
    a README with both generated blocks."""
    results = tmp_path / "results"
    results.mkdir()
    for name in SAMPLE:
        shutil.copy(pages.RESULTS_DIR / f"{name}.json", results)
    readme = tmp_path / "README.md"
    readme.write_text("# r\n" + "\n".join([pages.README_START, pages.README_END,
                                             *pages.TAX_MARKERS]) + "\n", encoding="utf-8")
    return results, tmp_path / "figures", tmp_path / "results.md", readme


def _edit(path: Path, change: Any) -> None:
    report = json.loads(path.read_text(encoding="utf-8"))
    change(report)
    path.write_text(json.dumps(report, indent=1), encoding="utf-8")


def test_the_committed_page_readme_and_figures_match_their_json() -> None:
    assert pages.stale() == [], "run python benchmarks/results_page.py"
    assert pages.main(["--check"]) == 0


def test_the_page_shows_every_figure_it_makes_and_each_file_exists() -> None:
    specs = pages.page_figures()
    assert len(specs) >= 10
    page = pages.PAGE.read_text(encoding="utf-8")
    shown = IMAGE.findall(page)
    assert sorted(shown) == sorted(f"{pages.PAGE_FIGURES}/{s.file}" for s in specs)
    for spec in specs:
        png = figures.FIGURES_DIR / spec.file
        assert png.is_file(), png
        assert figures.digest_of(png) == spec.digest(), f"{png} is stale"
    # Every PNG in the folder is one the page shows: none left behind by a removed JSON.
    assert {p.name for p in figures.FIGURES_DIR.glob("*.png")} == {s.file for s in specs}
    # Each ARS task and each workload of benchmarks/run.py has its figure.
    files = {spec.file for spec in specs}
    for task in ("swimmer", "hopper", "halfcheetah", "walker2d", "ant"):
        assert f"sweep-ars-{task}.png" in files
    assert {"benchmarks-quick-w1.png", "benchmarks-quick-w2.png",
            "benchmarks-quick-w3.png", "ray-tax.png"} <= files
    readme = pages.README.read_text(encoding="utf-8")
    assert IMAGE.findall(readme.split(pages.TAX_MARKERS[0])[1]) == [
        f"{pages.README_FIGURES}/ray-tax.png"]


def test_no_table_holds_a_command() -> None:
    page = pages.PAGE.read_text(encoding="utf-8")
    table_rows = [line for line in page.splitlines() if line.startswith("|")]
    assert table_rows
    for row in table_rows:
        assert "python benchmarks/" not in row and "raymanager sweep" not in row, row
    # The commands are still on the page, in the lists of how each section was measured.
    assert page.count(pages.MEASURED) == len(list(pages.RESULTS_DIR.glob("*.json"))) + 2
    assert "`python benchmarks/recovery.py --turns 6 --out docs/results/recovery.json`" in page


def test_the_check_fails_when_a_json_changes_until_the_page_is_regenerated(
        tmp_path: Path) -> None:
    results, folder, page, readme = _sample(tmp_path)
    written = pages.update(results, page, readme, folder)
    assert page in written and readme in written
    assert pages.stale(results, page, readme, folder) == []

    # A seed's last evaluation is plotted but in no table: that figure only.
    def better(report: dict[str, Any]) -> None:
        report["runs"][0]["final_eval"] += 100.0

    _edit(results / "sweep-ars-hopper.json", better)
    assert pages.stale(results, page, readme, folder) == [
        f"{folder / 'sweep-ars-hopper.png'}: drawn from other inputs than "
        "docs/results/*.json now"]
    pages.update(results, page, readme, folder)
    assert pages.stale(results, page, readme, folder) == []

    # The spare pool's ratio is a dot of the Ray tax: the README's figure goes stale too.
    def slower(report: dict[str, Any]) -> None:
        report["pools"]["spare_actors=1"]["median_ratio"] = 1.5

    _edit(results / "recovery.json", slower)
    assert pages.stale(results, page, readme, folder) == [
        f"{page}: out of date",
        f"{folder / 'ray-tax.png'}: drawn from other inputs than docs/results/*.json now"]
    pages.update(results, page, readme, folder)

    # A figure missing, one drawn from other inputs (another's PNG under its name), and
    # one that no JSON makes any more.
    (folder / "ray-tax.png").unlink()
    shutil.copy(folder / "benchmarks-quick-w1.png", folder / "benchmarks-quick-w2.png")
    (results / "sweep-swimmer-mlp.json").unlink()
    problems = pages.stale(results, page, readme, folder)
    assert f"{folder / 'ray-tax.png'}: missing" in problems
    assert any(p.startswith(f"{folder / 'benchmarks-quick-w2.png'}: drawn from other")
               for p in problems)
    assert f"{folder / 'sweep-swimmer-mlp.png'}: no JSON makes it" in problems
    pages.update(results, page, readme, folder)
    assert pages.stale(results, page, readme, folder) == []
    assert not (folder / "sweep-swimmer-mlp.png").exists()


def test_a_figure_digest_follows_what_it_plots_and_nothing_else() -> None:
    sweep = _load("sweep-ars-walker2d")
    digest = figures.sweep_figure("w", sweep).digest()
    assert figures.sweep_figure("w", json.loads(json.dumps(sweep))).digest() == digest
    sweep["note"] = "another note"  # on the page, not in the figure
    assert figures.sweep_figure("w", sweep).digest() == digest
    sweep["runs"][1]["best_eval"] = 4000.0
    assert figures.sweep_figure("w", sweep).digest() != digest

    quick = _load("benchmarks-quick")
    before = [spec.digest() for spec in figures.peer_figures("q", quick)]
    w2 = quick["workloads"]["W2"]["variants"]
    next(v for v in w2 if v["variant"] == "mpire")["median_s"] *= 2
    after = [spec.digest() for spec in figures.peer_figures("q", quick)]
    assert [b == a for b, a in zip(before, after, strict=True)] == [True, False, True]


def test_the_peer_bars_are_each_systems_time_over_the_fastest_parallel_one() -> None:
    quick = _load("benchmarks-quick")
    w2 = next(s for s in figures.peer_figures("q", quick) if s.file == "q-w2.png")
    seconds = {v["variant"]: v["median_s"] for v in quick["workloads"]["W2"]["variants"]}
    best = min(s for name, s in seconds.items() if name != figures.SERIAL)
    assert w2.data["best"] == min((s, n) for n, s in seconds.items()
                                  if n != figures.SERIAL)[1]
    for bar in w2.data["bars"]:
        assert bar["ratio"] == pytest.approx(seconds[bar["variant"]] / best, rel=1e-3)
    # Serial is drawn for reference but is never the best, though it is fastest on W2.
    assert min(bar["ratio"] for bar in w2.data["bars"]) < 1

    # A variant whose results were wrong is named, not drawn.
    quick["workloads"]["W2"]["variants"][1]["check"] = "mismatch"
    w2 = next(s for s in figures.peer_figures("q", quick) if s.file == "q-w2.png")
    assert w2.data["failed"] == ["multiprocessing.Pool"]
    assert "multiprocessing.Pool" not in [bar["variant"] for bar in w2.data["bars"]]


def test_the_ray_tax_dots_are_the_tables_ratios_against_its_targets() -> None:
    named = pages._reports(pages.RESULTS_DIR)
    rows = pages.tax_rows([r for _, r in named], [n for n, _ in named])
    spec = pages.tax_figure(rows)
    assert [dot["value"] for dot in spec.data["rows"]] == [
        pytest.approx(row.value, rel=1e-5) for row in rows]
    assert [dot["target"] for dot in spec.data["rows"]] == [row.target for row in rows]
    assert figures.meets(0.986, ">=", 1.0) is False
    assert figures.meets(0.931, "<", 1.0) is True
    assert pages.TaxRow("m", "m", 1.2, "-", "x", {}).op_bound == (None, None)


def _write_run(sweep: Path, seed: int, rows: list[tuple[int, float, int, int, float]],
               target: float = 100.0) -> None:
    run = sweep / "runs" / f"seed{seed}"
    run.mkdir(parents=True)
    config = {"env": "CartPole-v1", "agent": "es", "seed": seed, "target_return": target,
              "max_rounds": 3, "output_dir": str(sweep / "runs")}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    lines = ["round,seconds,env_steps,episodes,eval_return_mean"]
    lines += [",".join(map(str, row)) for row in rows]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_a_sweep_recorded_with_its_evaluations_is_drawn_as_median_and_band(
        tmp_path: Path) -> None:
    _write_run(tmp_path, 0, [(1, 10.0, 1000, 10, 40.0), (2, 20.0, 2000, 20, 120.0)])
    _write_run(tmp_path, 1, [(1, 12.0, 1000, 10, 30.0), (2, 24.0, 2000, 20, 60.0),
                             (3, 36.0, 3000, 30, 90.0)])
    _write_run(tmp_path, 2, [(1, 11.0, 1000, 10, 20.0), (2, 22.0, 2000, 20, 110.0)])
    result = json.loads(json.dumps(sweep_result.sweep_result(tmp_path, "raymanager sweep")))
    assert result["runs"][1]["evaluations"]["eval_return_mean"] == [30.0, 60.0, 90.0]

    spec = figures.sweep_figure("sweep-test", result)
    curves = spec.data["groups"][0]["curves"]
    assert curves is not None and "median over seeds with its band" in spec.alt
    # The page's curve is the sweep's own summary.png curve, from the same points.
    expected = group_curve(summarize(tmp_path).groups[0].runs, "seconds")
    assert curves["seconds"]["x"] == pytest.approx(list(expected.x))
    assert curves["seconds"]["median"] == pytest.approx(list(expected.median))
    assert curves["seconds"]["low"] == pytest.approx(list(expected.low))
    assert curves["seconds"]["band"] == "min-max" and curves["seconds"]["seeds"] == 3
    png = figures.draw(spec, tmp_path / "figures")
    assert figures.digest_of(png) == spec.digest()

    # An older JSON without the points: no curve is made up, only the seeds' end points.
    for run in result["runs"]:
        del run["evaluations"]
    spec = figures.sweep_figure("sweep-test", result)
    assert spec.data["groups"][0]["curves"] is None and "has no curve" in spec.alt
    ends = spec.data["groups"][0]["seeds"]
    assert [(s["end"]["seconds"], s["final"], s["state"]) for s in ends] == [
        (20.0, 120.0, "reached"), (36.0, 90.0, "budget"), (22.0, 110.0, "reached")]


def test_the_committed_sweeps_have_no_curve_and_are_drawn_as_end_points() -> None:
    # Recorded before sweep_result.py kept each run's evaluations: said on the figure.
    for path in sorted(pages.RESULTS_DIR.glob("sweep-*.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        spec = figures.sweep_figure(path.stem, report)
        has_points = any(run.get("evaluations") for run in report["runs"])
        assert (spec.data["groups"][0]["curves"] is not None) == has_points


def test_every_raymanager_command_on_the_results_page_is_one_the_cli_takes() -> None:
    # Printed commands are pasted: each `raymanager ...` of a committed report must parse.
    from raymanager.cli import build_parser

    def commands(value: Any) -> list[str]:
        if isinstance(value, str):
            names = ("raymanager train ", "raymanager sweep ", "raymanager evaluate ")
            return [value] if value.startswith(names) else []
        if isinstance(value, dict):
            return [c for v in value.values() for c in commands(v)]
        if isinstance(value, list):
            return [c for v in value for c in commands(v)]
        return []

    found = [c for path in sorted(pages.RESULTS_DIR.glob("*.json"))
             for c in commands(json.loads(path.read_text(encoding="utf-8")))]
    assert any(c.startswith("raymanager train ") for c in found)
    for command in found:
        arguments = shlex.split(command)[1:]
        try:
            build_parser().parse_args(arguments)
        except SystemExit:
            pytest.fail(f"raymanager does not take: {command}")
