"""The learning-curve picture of a run, drawn from its metrics.csv with matplotlib.

    >>> plot_learning_curve("runs/x/metrics.csv", "runs/x/learning_curve.png")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from raymanager.durable import write_atomically

__all__ = ["plot_learning_curve"]


def _column(rows: list[dict[str, str]], name: str) -> list[float]:
    # A missing value is NaN, which matplotlib leaves as a gap in the line.
    return [float(row[name]) if row.get(name) else float("nan") for row in rows]


def plot_learning_curve(
    metrics_csv: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    *,
    target: float | None = None,
) -> Path:
    """Eval return (mean, min-max band) and training fitness against env steps and episodes.

    Two panels share the return axis: the left one counts environment steps,
    the right one training episodes (the unit of the ARS paper's "episodes to
    threshold"). A metrics file without an ``episodes`` column (older runs)
    gets the left panel only.
    """
    # A Figure of its own, not pyplot's global state: a sweep draws from
    # several threads at once, and pyplot is not thread-safe.
    from matplotlib.figure import Figure

    with open(metrics_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    x_columns = [("env_steps", "environment steps")]
    if rows and rows[0].get("episodes"):
        x_columns.append(("episodes", "training episodes"))
    figure = Figure(figsize=(5.5 * len(x_columns), 4), dpi=110)
    axes_row = figure.subplots(1, len(x_columns), sharey=True, squeeze=False)
    for axes, (column, label) in zip(axes_row[0], x_columns, strict=True):
        _draw(axes, rows, _column(rows, column), target)
        axes.set_xlabel(label)
    axes_row[0][0].set_ylabel("episode return")
    figure.suptitle(Path(metrics_csv).parent.name)
    figure.tight_layout()
    out = Path(out_png)
    # Atomic: a full disk leaves no half-written picture behind.
    write_atomically(out, lambda handle: figure.savefig(handle, format="png"))
    return out


def _draw(axes: Any, rows: list[dict[str, str]], x: list[float], target: float | None) -> None:
    axes.plot(x, _column(rows, "fitness_mean"), color="tab:gray", alpha=0.7,
              label="training fitness (mean)")
    evaluated = [i for i, row in enumerate(rows) if row.get("eval_return_mean")]
    if evaluated:
        points = [x[i] for i in evaluated]
        mean = [float(rows[i]["eval_return_mean"]) for i in evaluated]
        low = [float(rows[i]["eval_return_min"]) for i in evaluated]
        high = [float(rows[i]["eval_return_max"]) for i in evaluated]
        axes.fill_between(points, low, high, color="tab:blue", alpha=0.2, label="eval min-max")
        axes.plot(points, mean, marker="o", markersize=3, color="tab:blue",
                  label="eval return (mean)")
    if target is not None:
        axes.axhline(target, color="tab:green", linestyle="--", label=f"target {target:g}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
