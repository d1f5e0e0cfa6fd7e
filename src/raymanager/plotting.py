"""The learning-curve picture of a run, drawn from its metrics.csv with matplotlib.

    >>> plot_learning_curve("runs/x/metrics.csv", "runs/x/learning_curve.png")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

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
    """Eval return (mean, min-max band) and training fitness against env steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    steps = _column(rows, "env_steps")
    fitness = _column(rows, "fitness_mean")
    figure, axes = plt.subplots(figsize=(7, 4), dpi=110)
    axes.plot(steps, fitness, color="tab:gray", alpha=0.7, label="training fitness (mean)")
    evaluated = [i for i, row in enumerate(rows) if row.get("eval_return_mean")]
    if evaluated:
        x = [steps[i] for i in evaluated]
        mean = [float(rows[i]["eval_return_mean"]) for i in evaluated]
        low = [float(rows[i]["eval_return_min"]) for i in evaluated]
        high = [float(rows[i]["eval_return_max"]) for i in evaluated]
        axes.fill_between(x, low, high, color="tab:blue", alpha=0.2, label="eval min-max")
        axes.plot(x, mean, marker="o", color="tab:blue", label="eval return (mean)")
    if target is not None:
        axes.axhline(target, color="tab:green", linestyle="--", label=f"target {target:g}")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("episode return")
    axes.set_title(Path(metrics_csv).parent.name)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    out = Path(out_png)
    figure.savefig(out)
    plt.close(figure)
    return out
