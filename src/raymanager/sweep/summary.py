"""The summary of a sweep: what its runs reached, per run and as medians over seeds.

A sweep keeps one ``raymanager train`` run directory per run (``config.yaml``,
``metrics.csv``, ``checkpoint/state.json``). This module reads them, files
only, no Ray, and writes three files into the sweep directory, each replaced
atomically (:func:`raymanager.durable.write_atomically`):

``summary.csv``
    one row per run: ``run, env, seed, <each varying option>, target, reached,
    seconds_to_target, episodes_to_target, env_steps_to_target, best_eval,
    final_eval, rounds, seconds, env_steps, episodes, state``.
``summary.md``
    a table of medians over the seeds of each group (a group is the env plus
    the values of the varying options): the results table "task, threshold,
    seeds reaching it, median time and episodes to it, best return".
``summary.png``
    per group, the median evaluation curve over seeds with a band, against
    environment steps and against wall-clock seconds.

It is safe to call while runs are still writing: a ``metrics.csv`` whose last
line is not complete yet (no newline) is read without that line, and a run
with no rows yet is ``"pending"``.

    >>> summary = summarize("sweeps/lr", varying=("learning_rate",))   # doctest: +SKIP
    >>> write_summary(summary)                                          # doctest: +SKIP

A run's ``state`` is one of :data:`STATES` (see :mod:`raymanager.sweep.records`).

Errors: :func:`read_run` raises :class:`RunDirError` (a ``ValueError``) that
names the file when a file is there but unreadable: a YAML error, a header
without the needed columns, a complete line that is not numbers. Missing
files are not errors: a run the sweep has not started yet has none.
:func:`summarize` turns a :class:`RunDirError` into a record in state
``"corrupt"`` carrying the message (listed under the table of ``summary.md``,
left out of the medians), so that one bad run does not stop the live summary
of the others. A wrong ``varying`` (an option no ``config.yaml`` has) is the
caller's mistake and raises ``ValueError`` from both.

One module a job, all re-exported here: :mod:`~raymanager.sweep.records` reads
a run directory into a :class:`RunRecord`, :mod:`~raymanager.sweep.aggregate`
groups the records and takes the medians and curves, :mod:`~raymanager.sweep.render`
writes the files. They read the runs through :mod:`raymanager.rundir`, never Ray
or gymnasium.
"""

from __future__ import annotations

from raymanager.rundir import SUMMARY_CSV, SUMMARY_MD, SUMMARY_PNG
from raymanager.sweep.aggregate import Curve, GroupSummary, Summary, group_curve, summarize
from raymanager.sweep.records import (
    STATES,
    EvalPoint,
    RunDirError,
    RunRecord,
    read_run,
    run_dirs_of,
    varying_options,
)
from raymanager.sweep.render import (
    CSV_COLUMNS,
    MD_COLUMNS,
    median_table,
    plot_summary,
    summary_csv,
    summary_markdown,
    summary_to_json,
    write_summary,
)

__all__ = [
    "CSV_COLUMNS",
    "MD_COLUMNS",
    "STATES",
    "SUMMARY_CSV",
    "SUMMARY_MD",
    "SUMMARY_PNG",
    "Curve",
    "EvalPoint",
    "GroupSummary",
    "RunDirError",
    "RunRecord",
    "Summary",
    "group_curve",
    "median_table",
    "plot_summary",
    "read_run",
    "run_dirs_of",
    "summarize",
    "summary_csv",
    "summary_markdown",
    "summary_to_json",
    "varying_options",
    "write_summary",
]
