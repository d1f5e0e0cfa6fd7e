"""A sweep's summary as files: ``summary.csv`` (a row per run), ``summary.md`` (the
median table per group), ``summary.png`` (each group's median curve and band) and the
JSON of ``benchmarks/sweep_result.py``; each file is replaced atomically.

This module imports :mod:`raymanager.rundir`, :mod:`raymanager.durable` and the
summary's own modules of ours, and matplotlib when drawing.

    >>> write_summary(summarize("sweeps/lr", varying=("learning_rate",)))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from raymanager.durable import write_atomically
from raymanager.rundir import SUMMARY_CSV, SUMMARY_MD, SUMMARY_PNG
from raymanager.sweep.aggregate import GroupSummary, Summary, XAxis, group_curve
from raymanager.sweep.records import RECORD_COLUMNS, STATES, RunRecord, option_text, record_values

__all__ = ["CSV_COLUMNS", "MD_COLUMNS", "median_table", "plot_summary", "summary_csv",
           "summary_markdown", "summary_to_json", "write_summary"]


#: summary.csv's columns; the varying options' names go after ``seed``.
CSV_COLUMNS = RECORD_COLUMNS


def summary_csv(summary: Summary) -> str:
    """``summary.csv``'s text: a header (:data:`CSV_COLUMNS`, varying options after seed),
    then one row per run; empty cells are unknown (None).

    >>> summary_csv(summary).splitlines()[0]                         # doctest: +SKIP
    'run,env,seed,learning_rate,target,reached,seconds_to_target,...'
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS[:3], *summary.varying, *CSV_COLUMNS[3:]])
    for record in summary.runs:
        values, options = record_values(record), dict(record.options)
        writer.writerow([option_text(values[c]) for c in CSV_COLUMNS[:3]]
                        + [option_text(options.get(name)) for name in summary.varying]
                        + [option_text(values[c]) for c in CSV_COLUMNS[3:]])
    return out.getvalue()


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}}"


def _count(value: float | None) -> str:
    # A median of two counts can end in .5; say so rather than round it away.
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


#: The median table's header, the varying options' names after ``task``.
MD_COLUMNS = ("task", "threshold", "seeds", "seeds reaching it", "median seconds to it ¹",
              "median episodes to it ¹", "median best eval return", "median final eval return")


def median_table(summary: Summary) -> list[str]:
    """The markdown lines of the median table, one row per group."""
    header = [MD_COLUMNS[0], *summary.varying, *MD_COLUMNS[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in summary.groups:
        cells = [g.env, *(option_text(v) or "-" for _, v in g.options),
                 ", ".join(f"{t:g}" for t in g.targets) or "-", str(g.seeds),
                 f"{g.reached}/{g.seeds}", _fmt(g.median_seconds_to_target, ".1f"),
                 _count(g.median_episodes_to_target), _fmt(g.median_best_eval, ".1f"),
                 _fmt(g.median_final_eval, ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_markdown(summary: Summary) -> str:
    """``summary.md``'s text: run counts, the median table per group, and its notes.

    >>> print(summary_markdown(summary))                             # doctest: +SKIP
    # Sweep lr
    ...
    | task | learning_rate | threshold | seeds | seeds reaching it | ...
    """
    states = {s: sum(r.state == s for r in summary.runs) for s in STATES}
    counts = ", ".join(f"{n} {s}" for s, n in states.items() if n)
    lines = [
        f"# Sweep {summary.sweep_dir.name}",
        "",
        f"{len(summary.runs)} runs: {counts or 'none yet'}. Medians are over the seeds of "
        "each group; an unfinished run counts with what it has written so far.",
        "",
        *median_table(summary),
        "",
        "¹ Median over all the seeds, a seed that never reached the threshold (the first "
        "evaluation whose mean return is at least it) counting as never; - where half "
        "of them or more never did. Seconds are wall time since the run "
        "started, Ray's start-up included; episodes are training episodes.",
    ]
    corrupt = [r for r in summary.runs if r.state == "corrupt"]
    if corrupt:
        lines += ["", "Runs left out, unreadable:", ""]
        lines += [f"- `{r.name}`: {r.error}" for r in corrupt]
    return "\n".join(lines) + "\n"


def plot_summary(summary: Summary, out_png: str | os.PathLike[str]) -> Path:
    """Draw ``summary.png``: each group's median eval curve and band, against env steps
    (left) and wall-clock seconds (right), each target as a dashed line.

    The legend says what each band is (see :func:`group_curve`).

    >>> plot_summary(summary, "sweeps/lr/summary.png")               # doctest: +SKIP
    PosixPath('sweeps/lr/summary.png')
    """
    # A Figure of its own, not pyplot's global state: a sweep's runs draw
    # their curves from other threads meanwhile, and pyplot is not thread-safe.
    import matplotlib
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.5), dpi=110)
    axes_row = figure.subplots(1, 2, sharey=True)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    axes_x: tuple[tuple[Any, XAxis, str], ...] = (
        (axes_row[0], "env_steps", "environment steps"),
        (axes_row[1], "seconds", "wall-clock seconds since the run started"))
    for axes, x, xlabel in axes_x:
        for i, group in enumerate(summary.groups):
            curve = group_curve(group.runs, x)
            if not curve.seeds:
                continue
            color = colors[i % len(colors)]
            axes.fill_between(curve.x, curve.low, curve.high, color=color, alpha=0.2,
                              linewidth=0, label=f"{group.label}: {curve.band} of seeds")
            axes.plot(curve.x, curve.median, color=color,
                      label=f"{group.label}: median of {curve.seeds} seed(s)")
        targets = dict.fromkeys(t for g in summary.groups for t in g.targets)
        for target in targets:
            axes.axhline(target, color="black", linestyle="--", linewidth=1,
                         label=f"target {target:g}")
        axes.set_xlabel(xlabel)
        axes.grid(alpha=0.3)
    axes_row[0].set_ylabel("evaluation return (mean over episodes)")
    if any(g.runs and any(r.evaluations for r in g.runs) for g in summary.groups):
        axes_row[0].legend(loc="lower right", fontsize="small")
    else:
        axes_row[0].text(0.5, 0.5, "no evaluation yet", transform=axes_row[0].transAxes,
                         ha="center")
    figure.suptitle(f"sweep {summary.sweep_dir.name}: median over seeds; band min-max "
                    "(< 4 seeds) or 25-75 % (>= 4)")
    figure.tight_layout()
    out = Path(out_png)
    write_atomically(out, lambda handle: figure.savefig(handle, format="png"))
    return out


def write_summary(summary: Summary, out_dir: str | os.PathLike[str] | None = None,
                  ) -> tuple[Path, Path, Path]:
    """Write ``summary.csv``, ``summary.md`` and ``summary.png``, each atomically.

    They go into ``out_dir``, by default the sweep directory; call it again
    whenever a run writes more: each file is replaced whole.

    >>> write_summary(summarize("sweeps/lr", varying=("learning_rate",)))  # doctest: +SKIP
    (PosixPath('sweeps/lr/summary.csv'), PosixPath('sweeps/lr/summary.md'), ...)
    """
    folder = Path(summary.sweep_dir if out_dir is None else out_dir)
    csv_path, md_path = folder / SUMMARY_CSV, folder / SUMMARY_MD
    write_atomically(csv_path, summary_csv(summary))
    write_atomically(md_path, summary_markdown(summary))
    return csv_path, md_path, plot_summary(summary, folder / SUMMARY_PNG)


def summary_to_json(summary: Summary) -> dict[str, Any]:
    """The summary as JSON-ready data: the varying options, each run, each group's medians.

    ``benchmarks/sweep_result.py`` adds the date, machine and commands.

    >>> json.dumps(summary_to_json(summary))                         # doctest: +SKIP
    '{"sweep": "lr", "varying": ["learning_rate"], "runs": [...], "groups": [...]}'
    """
    def run(r: RunRecord) -> dict[str, Any]:
        return {**record_values(r), "options": dict(r.options), "error": r.error}

    def group(g: GroupSummary) -> dict[str, Any]:
        return {"env": g.env, "options": dict(g.options), "targets": list(g.targets),
                "runs": [r.name for r in g.runs], "seeds": g.seeds, "reached": g.reached,
                "finished": g.finished,
                "median_seconds_to_target": g.median_seconds_to_target,
                "median_episodes_to_target": g.median_episodes_to_target,
                "median_env_steps_to_target": g.median_env_steps_to_target,
                "median_best_eval": g.median_best_eval,
                "median_final_eval": g.median_final_eval}

    return {"sweep": summary.sweep_dir.name, "varying": list(summary.varying),
            "runs": [run(r) for r in summary.runs], "groups": [group(g) for g in summary.groups]}
