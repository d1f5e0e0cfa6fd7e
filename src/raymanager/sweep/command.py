"""``raymanager sweep``: the command-line face of :func:`raymanager.sweep.run_sweep`.

    raymanager sweep --env HalfCheetah-v5 --seeds 0,1,2 --target-return 3430
    raymanager sweep --seeds 0,1,2 --learning-rate 0.1,0.3 --max-rounds 20
    raymanager sweep --resume runs/sweep-HalfCheetah-v5-20261204-213000
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from raymanager.cli_flags import add_option_flags, comma_list, given_options, read_yaml_config
from raymanager.rundir import RUNS_DIR, SUMMARY_CSV, SUMMARY_MD, SUMMARY_PNG, resume_command
from raymanager.sweep.runner import SweepResult, check_runs, read_sweep_spec, run_sweep
from raymanager.sweep.spec import SweepSpec
from raymanager.training import RESUMABLE_OPTIONS, TrainConfig

__all__ = ["FAILED", "add_sweep_parser", "sweep_spec_of"]

#: Exit status of a sweep in which a run failed (the others finished).
FAILED = 1


def add_sweep_parser(commands: Any, console: Console) -> None:
    """Add ``sweep`` to the ``raymanager`` subcommands (``commands`` from add_subparsers)."""
    parser = commands.add_parser(
        "sweep", help="train several seeds (and a small grid) on one Ray, and summarize",
        description="Runs one training run per seed and grid point on one Ray (a private "
                    "local one, or --address), as many at once as the CPUs allow; each run "
                    "writes the files `raymanager train` writes, under SWEEP_DIR/runs/. The "
                    "summary (summary.csv, summary.md, summary.png) is rewritten as runs "
                    "evaluate. A comma-separated option value is a grid axis. --output-dir "
                    "is where the sweep directory goes, --run-name its name.")
    parser.add_argument("--config", metavar="YAML",
                        help="YAML file of options (safe_load; keys = the flags' names)")
    parser.add_argument("--seeds", type=comma_list(int), default=None, metavar="SEEDS",
                        help="comma-separated seeds, one run each (default: 0,1,2)")
    parser.add_argument("--parallel", type=int, default=None, metavar="N",
                        help="runs at once (default: the cluster's CPUs / --num-actors, "
                             "at least 1)")
    parser.add_argument("--resume", metavar="SWEEP_DIR",
                        help="continue a sweep: runs cut short go on, finished runs stay")
    add_option_flags(parser, lists=True, skip=("seed", "progress"))
    # A sweep has no live line; its progress is a line of news per run event.
    parser.add_argument("--progress", dest="progress", action=argparse.BooleanOptionalAction,
                        default=argparse.SUPPRESS,
                        help="print a line as each run starts, evaluates and ends, and when "
                             "Ctrl-C stops the runs (--no-progress: only the final table "
                             "and summary; -v logs them) (default: on)")
    parser.set_defaults(prepare=lambda args: _prepare_sweep(args, console))


def sweep_spec_of(args: argparse.Namespace) -> SweepSpec:
    """The sweep the flags describe: single values into the base, lists into the grid.

    >>> parser = argparse.ArgumentParser(); commands = parser.add_subparsers()
    >>> add_sweep_parser(commands, Console())
    >>> spec = sweep_spec_of(parser.parse_args(
    ...     ["sweep", "--seeds", "1,2", "--learning-rate", "0.1,0.3", "--max-rounds", "5"]))
    >>> spec.seeds, dict(spec.grid), spec.base.max_rounds
    ((1, 2), {'learning_rate': (0.1, 0.3)}, 5)
    """
    values: dict[str, Any] = {}
    if args.config:
        values.update(dataclasses.asdict(read_yaml_config(args.config)))
    grid: dict[str, list[Any]] = {}
    for option, given in given_options(args).items():
        if isinstance(given, list) and len(given) > 1:
            grid[option] = given
        else:
            values[option] = given[0] if isinstance(given, list) else given
    base = TrainConfig.from_mapping(values)
    seeds = tuple(args.seeds) if args.seeds is not None else (0, 1, 2)
    return SweepSpec(base, seeds, grid, args.parallel)


def _prepare_sweep(args: argparse.Namespace, console: Console) -> Callable[[], int]:
    """Check the sweep's options and every run's (before Ray starts); return the sweep."""
    def print_event(line: str) -> None:
        console.print(line, highlight=False, soft_wrap=True, markup=False)

    # None: the runner logs its news at INFO instead (shown with -v).
    on_event = print_event if getattr(args, "progress", True) else None
    if args.resume:
        changes = given_options(args)
        refused = sorted(set(changes) - set(RESUMABLE_OPTIONS))
        if args.config or args.seeds or refused:
            raise ValueError(f"--resume continues a sweep with its own options; it may change "
                             f"only {', '.join(RESUMABLE_OPTIONS)} and --parallel")
        changes = {k: v[0] if isinstance(v, list) else v for k, v in changes.items()}
        saved = read_sweep_spec(args.resume)
        check_runs(dataclasses.replace(saved, base=dataclasses.replace(saved.base, **changes)))

        def resume() -> int:
            return _outcome(run_sweep(resume=args.resume, changes=changes,
                                      parallel=args.parallel, on_event=on_event), console)

        return resume
    spec = sweep_spec_of(args)
    check_runs(spec)
    return lambda: _outcome(run_sweep(spec, on_event=on_event), console)


def _outcome(result: SweepResult, console: Console) -> int:
    _report(result, console)
    if result.interrupted:
        return 130
    return FAILED if any(run.state == "failed" for run in result.runs) else 0


def _report(result: SweepResult, console: Console) -> None:
    table = Table(title=f"raymanager sweep: {result.sweep_dir}")
    for column in ("run", "state", "rounds", "seconds", "last eval", "nodes"):
        table.add_column(column, justify="left" if column in ("run", "state") else "right")
    for run in result.runs:
        summary = run.summary
        last = summary.last_eval["return_mean"] if summary and summary.last_eval else None
        table.add_row(run.name, run.state if run.error is None else f"failed: {run.error}",
                      str(summary.rounds) if summary else "-",
                      f"{summary.seconds:.0f}" if summary else "-",
                      f"{last:.1f}" if last is not None else "-",
                      str(len(summary.nodes)) if summary and summary.nodes else "-")
    out = Console()
    out.print(table)
    out.print(f"{len(result.runs)} runs, {result.runs_at_once} at a time on {result.cpus:g} "
              f"CPUs ({result.nodes} node{'s' * (result.nodes != 1)})", highlight=False)
    md = result.sweep_dir / SUMMARY_MD
    if md.exists():
        out.print(md.read_text(encoding="utf-8"), highlight=False, markup=False, soft_wrap=True)
    out.print(f"summary: {result.sweep_dir / SUMMARY_CSV}, {md}, {result.sweep_dir / SUMMARY_PNG}\n"
              f"runs:    {result.sweep_dir / RUNS_DIR}/\n"
              f"resume:  {resume_command('sweep', result.sweep_dir)}",
              highlight=False, soft_wrap=True, markup=False)
    for line in result.tracking:  # --tracker: where each tracker keeps the sweep
        out.print(line, highlight=False, soft_wrap=True, markup=False)
