"""The figures of the results page, drawn with matplotlib from docs/results/*.json.

``benchmarks/results_page.py`` calls this module; it is not run on its own. Each
figure is a :class:`FigureSpec`: a file name, a kind (a drawing function of
:data:`DRAWERS`) and ``data``, exactly the numbers and words the figure shows,
taken from one or more JSON reports. Nothing is drawn that is not in ``data``.

PNG bytes are not reproducible (they change with matplotlib, FreeType and zlib
versions), so a figure is not checked by its bytes: each PNG carries, in a text
chunk named :data:`METADATA_KEY`, the digest of what made it (its ``data``, its
kind, and this module's source, the code that draws it). ``results_page.py
--check`` rebuilds every spec from the JSON and compares digests.

Figures:

- a sweep (``benchmarks/sweep_result.py``): the evaluation return against
  environment steps and against wall seconds, each group's median over seeds with
  its band where the JSON records each run's evaluations, each seed's end point
  where it records only those (older sweeps), and the threshold as a dashed line;
- a training run (``benchmarks/training_result.py``): its evaluations, mean with
  the min-max band over the evaluation's episodes, and its target;
- a ``benchmarks/run.py`` report: one bar chart per workload, each system's time
  over the fastest parallel system's, on a log scale;
- the Ray tax (``results_page.tax_rows``): each ratio as a dot against its target.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Where the PNGs go; docs/results.md shows them as ``results/figures/NAME.png``.
FIGURES_DIR = ROOT / "docs" / "results" / "figures"
#: The PNG text chunk holding the digest of a figure's inputs.
METADATA_KEY = "raymanager-inputs"
#: Small PNGs for a web page and a git repository: ~1000 px wide at most.
DPI = 100
#: The x axes of a learning curve: (key in the data, axis label with its unit).
X_AXES = (("env_steps", "environment steps (training)"),
          ("seconds", "wall-clock time since the run started (s)"))
RETURN_LABEL = "evaluation return (mean over episodes)"
#: The variant of ``benchmarks/run.py`` that is a plain loop, not a parallel system:
#: shown for reference, never "the best".
SERIAL = "serial"


@dataclass(frozen=True)
class FigureSpec:
    """One figure: ``file`` under :data:`FIGURES_DIR`, drawn by ``DRAWERS[kind]`` from
    ``data``; ``alt`` is its text for the page (what it shows, in words)."""

    file: str
    kind: str
    data: dict[str, Any]
    alt: str

    def digest(self) -> str:
        """The SHA-256 of what makes this figure: its kind, data and the drawing code.

        The same data drawn by other code is another figure, so this module's
        source is part of it (line endings normalised: a checkout on Windows
        draws the same figures).
        """
        code = Path(__file__).read_text(encoding="utf-8").replace("\r\n", "\n")
        payload = json.dumps({"kind": self.kind, "data": self.data, "alt": self.alt,
                              "code": hashlib.sha256(code.encode()).hexdigest()},
                             sort_keys=True, ensure_ascii=True, allow_nan=False)
        return hashlib.sha256(payload.encode()).hexdigest()


def rounded(value: float | None, digits: int = 6) -> float | None:
    """``value`` to ``digits`` significant digits: what a figure can show, and a digest
    that does not depend on the last bit of a float computed on another machine.

    >>> rounded(0.123456789), rounded(None)
    (0.123457, None)
    """
    return None if value is None else float(f"{value:.{digits}g}")


def _rounded_list(values: Any) -> list[float | None]:
    return [rounded(float(v)) for v in values]


# --- sweeps -------------------------------------------------------------------------------


def _group_label(group: dict[str, Any], varying: Sequence[str], envs: int) -> str:
    # The title names the task; a legend names only what tells the groups apart.
    options = group.get("options") or {}
    parts = [f"{name}={options.get(name)}" for name in varying]
    return " ".join([group["env"], *parts] if envs > 1 else parts)


def _curves(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The median curve and band of ``runs`` (one group's seeds) from the evaluations the
    JSON records, by the sweep's own :func:`raymanager.sweep.summary.group_curve`;
    None when no run has any."""
    from raymanager.sweep.summary import EvalPoint, RunRecord, group_curve

    records = []
    for run in runs:
        ev = run.get("evaluations") or {}
        points = tuple(
            EvalPoint(round=int(r), seconds=float(s), env_steps=int(n),
                      episodes=None if e is None else int(e), value=float(v))
            for r, s, n, e, v in zip(ev.get("round", []), ev.get("seconds", []),
                                     ev.get("env_steps", []), ev.get("episodes", []),
                                     ev.get("eval_return_mean", []), strict=True))
        records.append(RunRecord(name=run["run"], path=Path(run["run"]), state=run["state"],
                                 evaluations=points))
    if not any(r.evaluations for r in records):
        return None
    curves: dict[str, Any] = {}
    for x, _ in X_AXES:
        curve = group_curve(records, x)
        curves[x] = {"x": _rounded_list(curve.x), "median": _rounded_list(curve.median),
                     "low": _rounded_list(curve.low), "high": _rounded_list(curve.high),
                     "band": curve.band, "seeds": curve.seeds}
    return curves


def _seed_end(run: dict[str, Any]) -> dict[str, Any]:
    """What a sweep's JSON says of one seed without its curve: where it ended, its last
    and best evaluation, and where it first reached the threshold (None if never)."""
    reached = run.get("seconds_to_target") is not None
    return {"seed": run.get("seed"), "state": run["state"],
            "end": {"env_steps": run["env_steps"], "seconds": rounded(run["seconds"])},
            "final": rounded(run.get("final_eval")), "best": rounded(run.get("best_eval")),
            "to_target": {"env_steps": run.get("env_steps_to_target"),
                          "seconds": rounded(run.get("seconds_to_target"))} if reached
            else None}


def sweep_figure(name: str, report: dict[str, Any],
                 cited: Mapping[str, float] | None = None) -> FigureSpec:
    """The learning curves of a sweep report, one colour per group (task + options).

    ``cited`` maps a task (``HalfCheetah``) to the ARS paper's threshold: a target
    equal to it is labelled as the paper's.
    """
    runs = {run["run"]: run for run in report["runs"]}
    groups = []
    env_count = len({g["env"] for g in report["groups"]})
    for g in report["groups"]:
        members = [runs[n] for n in g["runs"] if n in runs]
        groups.append({
            "label": _group_label(g, report["varying"], env_count),
            "curves": _curves(members),
            "seeds": [_seed_end(r) for r in members if r.get("final_eval") is not None],
            "median_to_target": {"env_steps": rounded(g.get("median_env_steps_to_target")),
                                 "seconds": rounded(g.get("median_seconds_to_target"))},
        })
    papers = {value for g in report["groups"] for task, value in (cited or {}).items()
              if g["env"].split("-v")[0] == task}
    targets = [{"value": t, "label": f"threshold {t:g}"
                + (" (the ARS paper's)" if t in papers else "")}
               for t in sorted({t for g in report["groups"] for t in g["targets"]})]
    seeds = max((g["seeds"] for g in report["groups"]), default=0)
    envs = ", ".join(dict.fromkeys(g["env"] for g in report["groups"]))
    title = f"{envs}: {seeds} seeds{' per group' if len(groups) > 1 else ''} ({name})"
    with_curves = all(g["curves"] is not None for g in groups)
    alt = (f"{envs}: evaluation return against environment steps and wall seconds, "
           + ("median over seeds with its band" if with_curves else
              "each seed's last and best evaluation at its end (the JSON has no curve)")
           + ", threshold " + ", ".join(f"{t['value']:g}" for t in targets))
    data = {"title": title, "targets": targets, "groups": groups}
    return FigureSpec(f"{name}.png", "sweep", data, alt)


def draw_sweep(figure: Any, data: dict[str, Any]) -> None:
    """Two panels sharing the return axis: against env steps, against wall seconds."""
    axes_row = figure.subplots(1, 2, sharey=True)
    colors = _colors()
    groups = data["groups"]
    for axes, (x, xlabel) in zip(axes_row, X_AXES, strict=True):
        for i, group in enumerate(groups):
            # One group needs no name in the legend: the title names the task.
            label = group["label"] + ": " if len(groups) > 1 and group["label"] else ""
            _draw_group(axes, x, group, colors[i % len(colors)], label)
        for target in data["targets"]:
            axes.axhline(target["value"], color="black", linestyle="--", linewidth=1,
                         label=target["label"])
        axes.set_xlabel(xlabel)
        # From zero: how far a return is from the threshold reads at a glance.
        # Room on the right for the last points' "seed N".
        axes.set_xlim(0, _largest_x(groups, x) * 1.12)
        axes.grid(alpha=0.3)
    axes_row[0].set_ylim(bottom=min(0.0, axes_row[0].get_ylim()[0]))
    axes_row[0].set_ylabel(RETURN_LABEL)
    handles, labels = axes_row[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize="small",
                  frameon=False)
    title = data["title"]
    if any(g["curves"] is None for g in groups):
        # Say what is missing on the figure itself: a reader of the PNG alone must
        # not take the end points for a curve.
        title += ("\nits JSON records each seed's end point, not its per-round "
                  "evaluations: no median curve to draw")
    figure.suptitle(title, fontsize="medium")
    rows = -(-len(labels) // 2)  # the legend's lines, two entries a line
    figure.tight_layout(rect=(0, 0.03 + 0.06 * rows, 1, 1))


def _largest_x(groups: Sequence[dict[str, Any]], x: str) -> float:
    ends = [s["end"][x] for g in groups for s in g["seeds"]]
    ends += [g["curves"][x]["x"][-1] for g in groups if g["curves"] and g["curves"][x]["x"]]
    return max(ends, default=1.0) or 1.0


def _draw_group(axes: Any, x: str, group: dict[str, Any], color: str, label: str) -> None:
    curves = group["curves"]
    if curves is not None:
        curve = curves[x]
        axes.fill_between(curve["x"], curve["low"], curve["high"], color=color, alpha=0.2,
                          linewidth=0, label=f"{label}{curve['band']} of seeds")
        axes.plot(curve["x"], curve["median"], color=color,
                  label=f"{label}median of {curve['seeds']} seeds")
    else:
        _draw_seed_ends(axes, x, group["seeds"], color, label)
    median = group["median_to_target"][x]
    if median is not None:
        axes.axvline(median, color=color, linestyle=":",
                     label=f"{label}median to the threshold")


def _draw_seed_ends(axes: Any, x: str, seeds: Sequence[dict[str, Any]], color: str,
                    label: str) -> None:
    """Each seed where it stopped: its last evaluation (a dot if it reached the threshold,
    which stops a run, a cross if it ran out of budget) and its best (a triangle: the
    JSON does not say when it was, so it is drawn at the end too)."""
    for reached, marker, what in ((True, "o", "reached the threshold, stopped"),
                                  (False, "X", "budget spent first")):
        chosen = [s for s in seeds if (s["state"] == "reached") == reached]
        if chosen:
            axes.scatter([s["end"][x] for s in chosen], [s["final"] for s in chosen],
                         color=color, marker=marker, zorder=3,
                         label=f"{label}a seed's last eval: {what}")
    unreached = [s for s in seeds if s["best"] != s["final"]]
    if unreached:
        ends = [s["end"][x] for s in unreached]
        axes.vlines(ends, [s["final"] for s in unreached], [s["best"] for s in unreached],
                    color=color, linewidth=1)
        axes.scatter(ends, [s["best"] for s in unreached], facecolors="none",
                     edgecolors=color, marker="^", zorder=3,
                     label=f"{label}its best eval (when: not in the JSON)")
    for s in seeds:
        axes.annotate(f"seed {s['seed']}", (s["end"][x], s["final"]), xytext=(4, -10),
                      textcoords="offset points", fontsize="x-small", color=color)


# --- a training run -----------------------------------------------------------------------


def _or_mean(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return row["eval_return_mean"] if value is None else value


def training_figure(name: str, result: dict[str, Any]) -> FigureSpec:
    """The evaluations of one training run (``benchmarks/training_result.py``)."""
    config = result["config"]
    rows = [r for r in result["rows"] if r.get("eval_return_mean") is not None]
    # A row may lack min/max (older metrics.csv): then the band is the mean itself.
    data = {
        "title": f"{config['env']}, {config['agent']}, seed {config['seed']}: one run "
                 f"({name})",
        "env_steps": [r["env_steps"] for r in rows],
        "seconds": _rounded_list(r["seconds"] for r in rows),
        "mean": _rounded_list(r["eval_return_mean"] for r in rows),
        "low": _rounded_list(_or_mean(r, "eval_return_min") for r in rows),
        "high": _rounded_list(_or_mean(r, "eval_return_max") for r in rows),
        "target": config.get("target_return"),
    }
    alt = (f"{config['env']}: one run's evaluation return against environment steps and "
           "wall seconds, with the min-max over the evaluation's episodes")
    return FigureSpec(f"{name}.png", "training", data, alt)


def draw_training(figure: Any, data: dict[str, Any]) -> None:
    """Two panels: against env steps, against wall seconds; band min-max over episodes."""
    axes_row = figure.subplots(1, 2, sharey=True)
    for axes, (x, xlabel) in zip(axes_row, X_AXES, strict=True):
        axes.fill_between(data[x], data["low"], data["high"], color="tab:blue", alpha=0.2,
                          linewidth=0, label="min-max over the evaluation's episodes")
        axes.plot(data[x], data["mean"], color="tab:blue", marker="o", markersize=3,
                  label="mean over the evaluation's episodes")
        if data["target"] is not None:
            axes.axhline(data["target"], color="black", linestyle="--", linewidth=1,
                         label=f"target {data['target']:g}")
        axes.set_xlabel(xlabel)
        axes.grid(alpha=0.3)
    axes_row[0].set_ylabel(RETURN_LABEL)
    axes_row[1].legend(loc="lower right", fontsize="x-small")
    figure.suptitle(data["title"])
    figure.tight_layout()


# --- peers: benchmarks/run.py --------------------------------------------------------------


def _time_text(workload: str, info: dict[str, Any], seconds: float) -> str:
    # W2 is about the cost of a batch; the others about the wall of the whole run.
    if workload == "W2":
        return f"{1e6 * seconds / info['batches']:,.0f} µs/batch"
    return f"{seconds:.3g} s"


def peer_figures(name: str, report: dict[str, Any]) -> list[FigureSpec]:
    """One bar chart per workload of a ``benchmarks/run.py`` report: each system's median
    time over the fastest parallel system's (serial shown for reference, never the best;
    a variant whose results were wrong is named, not drawn)."""
    specs = []
    for workload, info in report["workloads"].items():
        ok = [v for v in info["variants"] if v.get("check") == "ok" and v.get("median_s")]
        parallel = [v for v in ok if v["variant"] != SERIAL]
        if not parallel:
            continue
        best = min(parallel, key=lambda v: v["median_s"])
        bars = [{"variant": v["variant"], "ratio": rounded(v["median_s"] / best["median_s"], 4),
                 "text": _time_text(workload, info, v["median_s"])}
                for v in sorted(ok, key=lambda v: v["median_s"])]
        failed = [v["variant"] for v in info["variants"] if v.get("check") != "ok"]
        data = {"title": f"{workload}: {info['description']}", "best": best["variant"],
                "bars": bars, "failed": failed}
        alt = (f"{workload}: each system's time over the fastest parallel system's "
               f"({best['variant']}), log scale")
        specs.append(FigureSpec(f"{name}-{workload.lower()}.png", "peers", data, alt))
    return specs


def draw_peers(figure: Any, data: dict[str, Any]) -> None:
    """Horizontal bars, fastest on top, on a log axis (the ratios span 1x to ~100x)."""
    axes = figure.subplots()
    bars = data["bars"]
    names = [b["variant"] for b in bars]
    ratios = [b["ratio"] for b in bars]
    colors = ["tab:gray" if n == SERIAL else "tab:orange" if n.startswith("raymanager")
              else "tab:blue" for n in names]
    positions = list(range(len(bars)))[::-1]
    axes.barh(positions, ratios, color=colors, left=0)
    axes.set_xscale("log")
    axes.set_yticks(positions, names)
    axes.axvline(1.0, color="black", linewidth=1)
    for y, bar in zip(positions, bars, strict=True):
        axes.text(bar["ratio"] * 1.05, y, f"{bar['ratio']:.2f}x ({bar['text']})",
                  va="center", fontsize="small")
    # Room on the right of the longest bar for its text, on a log axis.
    axes.set_xlim(min(0.5, min(ratios) / 1.5), max(ratios) * 15)
    from matplotlib.patches import Patch

    axes.legend(handles=[Patch(color="tab:orange", label="raymanager"),
                         Patch(color="tab:blue", label="the others"),
                         Patch(color="tab:gray", label="serial: a plain loop, for reference")],
                loc="upper right", fontsize="x-small")
    axes.set_xlabel(f"median time / {data['best']}'s, the fastest parallel system's\n"
                    "(log scale; lower is better)", fontsize="small")
    if data["failed"]:
        axes.set_title("wrong results, not drawn: " + ", ".join(data["failed"]),
                       fontsize="small", color="tab:red")
    axes.grid(axis="x", alpha=0.3, which="both")
    figure.suptitle(data["title"], fontsize="medium")
    figure.tight_layout()


# --- the Ray tax ---------------------------------------------------------------------------


def tax_figure(rows: Sequence[dict[str, Any]]) -> FigureSpec:
    """The Ray-tax ratios as dots against their targets; ``rows`` are dicts with
    ``short`` (a label), ``value``, ``target`` (as the table shows it), ``op`` (one of
    ``>=``, ``<=``, ``<``, or None) and ``bound`` (the target's number, or None)."""
    data = {"title": "The Ray tax on one machine: each ratio against its target",
            "rows": [{k: row[k] for k in ("short", "value", "target", "op", "bound")}
                     for row in rows]}
    alt = "The Ray tax: each ratio (median of turns) as a dot, its target as a bar"
    return FigureSpec("ray-tax.png", "tax", data, alt)


def meets(value: float, op: str | None, bound: float | None) -> bool | None:
    """Whether ``value`` meets the target ``op bound``; None when there is no target.

    >>> meets(0.99, ">=", 1.0), meets(0.99, "<", 1.0), meets(1.2, None, None)
    (False, True, None)
    """
    if op is None or bound is None:
        return None
    return {">=": value >= bound, "<=": value <= bound, "<": value < bound}[op]


def draw_tax(figure: Any, data: dict[str, Any]) -> None:
    """One line per ratio: its dot (green: meets the target, red: misses it, grey: no
    target) and the target as a short bar marked with the side that passes."""
    axes = figure.subplots()
    rows = data["rows"]
    positions = list(range(len(rows)))[::-1]
    for y, row in zip(positions, rows, strict=True):
        verdict = meets(row["value"], row["op"], row["bound"])
        color = {True: "tab:green", False: "tab:red", None: "tab:gray"}[verdict]
        if row["bound"] is not None:
            axes.plot([row["bound"]] * 2, [y - 0.3, y + 0.3], color="black", linewidth=2)
            axes.text(row["bound"], y + 0.32, row["target"], ha="center", va="bottom",
                      fontsize="x-small")
        axes.plot([row["value"]], [y], "o", color=color, markersize=8)
        axes.text(row["value"], y - 0.38, f"{row['value']:.3f}", ha="center", va="top",
                  fontsize="x-small", color=color)
    axes.set_yticks(positions, [row["short"] for row in rows], fontsize="small")
    axes.set_ylim(-0.8, len(rows) - 0.2)
    axes.axvline(1.0, color="gray", linewidth=0.8, linestyle=":")
    axes.set_xlabel("ratio, median of turns (unitless)", fontsize="small")
    axes.grid(axis="x", alpha=0.3)
    from matplotlib.lines import Line2D

    def dot(color: str, label: str) -> Line2D:
        return Line2D([], [], marker="o", color=color, linestyle="", label=label)

    figure.legend(handles=[dot("tab:green", "meets its target"), dot("tab:red", "misses it"),
                           dot("tab:gray", "no target"),
                           Line2D([], [], color="black", linewidth=2, label="target")],
                  loc="lower center", ncol=4, fontsize="x-small", frameon=False)
    figure.suptitle(data["title"], fontsize="medium")
    figure.tight_layout(rect=(0, 0.05, 1, 1))


# --- drawing and reading back -------------------------------------------------------------

#: kind -> (drawing function, figure size in inches).
DRAWERS: dict[str, tuple[Callable[[Any, dict[str, Any]], None], tuple[float, float]]] = {
    "sweep": (draw_sweep, (10, 4)),
    "training": (draw_training, (10, 3.8)),
    "peers": (draw_peers, (8, 3.4)),
    "tax": (draw_tax, (8, 4.2)),
}


def _colors() -> list[str]:
    import matplotlib

    return list(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])


def draw(spec: FigureSpec, folder: Path = FIGURES_DIR) -> Path:
    """Draw ``spec`` into ``folder``, its digest in the PNG; replaced atomically."""
    # A Figure of its own, not pyplot's global state (as raymanager.plotting does).
    from matplotlib.figure import Figure

    function, size = DRAWERS[spec.kind]
    figure = Figure(figsize=size, dpi=DPI)
    function(figure, spec.data)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / spec.file
    handle, tmp = tempfile.mkstemp(dir=folder, suffix=".png.tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            _save_small(figure, stream, spec.digest())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the picture from a web server
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _save_small(figure: Any, stream: Any, digest: str) -> None:
    """Save ``figure`` as a PNG of 128 colours carrying ``digest``: line art and text lose
    nothing visible, and the file is a third of the size, for a git repository."""
    from PIL import Image, PngImagePlugin

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    with Image.open(buffer) as image:
        small = image.convert("RGB").quantize(colors=128)
    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, digest)
    small.save(stream, format="png", optimize=True, pnginfo=info)


def digest_of(png: Path) -> str | None:
    """The digest a PNG was drawn from (:data:`METADATA_KEY`); None if it has none or is
    not a PNG that can be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(png) as image:
            text = getattr(image, "text", {})
            value = text.get(METADATA_KEY)
    except (OSError, UnidentifiedImageError):
        return None
    return value if isinstance(value, str) else None


def stale_figures(specs: Sequence[FigureSpec], folder: Path = FIGURES_DIR) -> list[str]:
    """Why the figures in ``folder`` do not match ``specs``, one line per file: missing,
    drawn from other inputs, or a PNG no spec makes. Empty when all match."""
    problems = []
    for spec in specs:
        png = folder / spec.file
        if not png.is_file():
            problems.append(f"{png}: missing")
        elif digest_of(png) != spec.digest():
            problems.append(f"{png}: drawn from other inputs than docs/results/*.json now")
    wanted = {spec.file for spec in specs}
    problems += [f"{png}: no JSON makes it" for png in sorted(folder.glob("*.png"))
                 if png.name not in wanted]
    return problems


def write_figures(specs: Sequence[FigureSpec], folder: Path = FIGURES_DIR) -> list[Path]:
    """Draw each figure whose PNG is missing or stale, and remove PNGs no spec makes;
    the paths written and removed."""
    changed = []
    for spec in specs:
        png = folder / spec.file
        if not png.is_file() or digest_of(png) != spec.digest():
            changed.append(draw(spec, folder))
    wanted = {spec.file for spec in specs}
    for png in sorted(folder.glob("*.png")):
        if png.name not in wanted:
            png.unlink()
            changed.append(png)
    return changed
