"""``raymanager sweep``: several training runs (seeds, a small grid) on one Ray, summarized.

- :mod:`~raymanager.sweep.spec`: :class:`SweepSpec`, the runs of a sweep;
- :mod:`~raymanager.sweep.runner`: :func:`run_sweep`, the runs on one Ray, resumable;
- :mod:`~raymanager.sweep.summary`: ``summary.csv``, ``summary.md`` and ``summary.png``,
  read from the runs' own files.

    >>> from raymanager.sweep import SweepSpec, run_sweep                    # doctest: +SKIP
    >>> result = run_sweep(SweepSpec(TrainConfig(max_rounds=5), seeds=(0, 1, 2)))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raymanager._lazy import lazy_attributes

if TYPE_CHECKING:
    from raymanager.sweep.runner import RunOutcome, SweepResult, read_sweep_spec, run_sweep
    from raymanager.sweep.spec import SweepSpec
    from raymanager.sweep.summary import Summary, summarize, write_summary

#: Names imported on first use: the summary is read from files alone (no Ray, no
#: gymnasium), so ``import raymanager.sweep.summary`` must not pull in the runner.
__getattr__, __dir__ = lazy_attributes(__name__, {
    "RunOutcome": "raymanager.sweep.runner",
    "SweepResult": "raymanager.sweep.runner",
    "read_sweep_spec": "raymanager.sweep.runner",
    "run_sweep": "raymanager.sweep.runner",
    "SweepSpec": "raymanager.sweep.spec",
    "Summary": "raymanager.sweep.summary",
    "summarize": "raymanager.sweep.summary",
    "write_summary": "raymanager.sweep.summary",
})

__all__ = ["RunOutcome", "Summary", "SweepResult", "SweepSpec", "read_sweep_spec", "run_sweep",
           "summarize", "write_summary"]
