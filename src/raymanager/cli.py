"""The ``raymanager`` command: ``train``, ``sweep``, ``evaluate`` and ``info``.

    raymanager train                          # CartPole-v1, local Ray, until solved
    raymanager sweep --seeds 0,1,2            # three runs on one Ray, and their summary
    raymanager train --config run.yaml --num-actors 4 --address auto
    raymanager train --resume runs/CartPole-v1-seed0-20261126-101500
    raymanager evaluate runs/CartPole-v1-seed0-20261126-101500 --episodes 100
    raymanager evaluate runs/CartPole-v1-seed0-20261126-101500 --video policy.gif
    raymanager info

Options of ``train`` come from :class:`raymanager.training.TrainConfig`:
defaults, then the YAML file of ``--config``, then flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import signal
import sys
import threading
import traceback
import types
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from raymanager.cli_flags import add_option_flags, given_options, read_yaml_config
from raymanager.cli_info import Run, add_info_parser
from raymanager.config import RayConfig
from raymanager.errors import RayManagerError
from raymanager.progress import LiveDisplay
from raymanager.sweep.command import add_sweep_parser
from raymanager.training import (
    CURVE_FILE,
    METRICS_FILE,
    TENSORBOARD_DIR,
    TrainConfig,
    TrainSummary,
    evaluate_checkpoint,
    load_checkpoint,
    plan_evaluation,
    plan_run,
    resume_config,
    train,
)
from raymanager.video import VideoError

__all__ = ["main"]

console = Console(stderr=True)


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML",
                        help="YAML file of options (safe_load; keys = the flags' names)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue a run from its checkpoint, with its own options")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run in --output-dir/--run-name if there is one")
    add_option_flags(parser)


def _train_config(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config:
        values.update(dataclasses.asdict(read_yaml_config(args.config)))
    values.update(given_options(args))
    return TrainConfig.from_mapping(values)


def _report(summary: TrainSummary) -> None:
    table = Table(title="raymanager train", show_header=False)
    table.add_row("run directory", str(summary.run_dir))
    table.add_row("rounds", str(summary.rounds))
    table.add_row("env steps", f"{summary.env_steps:,}")
    table.add_row("wall time", f"{summary.seconds:.1f} s")
    if summary.last_eval:
        table.add_row("last eval return",
                      f"{summary.last_eval['return_mean']:.1f} ± "
                      f"{summary.last_eval['return_std']:.1f} "
                      f"over {summary.last_eval['episodes']} episodes")
    state = "interrupted" if summary.interrupted else (
        "solved" if summary.solved else "budget ended before the target")
    table.add_row("status", f"{state} (target {summary.target_return:g})")
    if summary.incomplete:
        table.add_row("not written", ", ".join(summary.incomplete))
    out = Console()
    out.print(table)
    run_dir = summary.run_dir
    # Where to look next, as lines a user can copy (paths quoted for a shell).
    out.print(f"learning curve: {run_dir / CURVE_FILE}\n"
              f"metrics:        {run_dir / METRICS_FILE}\n"
              f"TensorBoard:    tensorboard --logdir {shlex.quote(str(run_dir / TENSORBOARD_DIR))}"
              f"  (pip install tensorboard)", highlight=False, soft_wrap=True, markup=False)
    for line in summary.tracking:  # --tracker: where each tracker keeps the run
        out.print(line, highlight=False, soft_wrap=True, markup=False)


def _prepare_train(args: argparse.Namespace) -> Run:
    if args.resume:
        if args.config:
            raise ValueError("--resume continues a run with its own options: drop --config")
        config = resume_config(args.resume, given_options(args))
        load_checkpoint(args.resume)  # a missing or corrupt checkpoint is said now
    else:
        config = _train_config(args)
    # Resolved once, before Ray starts: the display names the agent and round
    # options actually used (ARS or ES ...), and a wrong env id fails here.
    plan = plan_run(config)

    def run() -> int:
        if args.resume:
            done = load_checkpoint(args.resume).round
            budget = f"{config.max_seconds:g} s" if config.max_seconds is not None else "none"
            console.print(f"resuming {args.resume} after round {done}: up to round "
                          f"{config.max_rounds}, time budget {budget} in all "
                          f"(change with --max-rounds / --max-seconds)", soft_wrap=True,
                          highlight=False, markup=False)
        display = LiveDisplay(plan.config, console) if config.progress else None
        if display is not None:
            display.start()
        try:
            summary = train(plan, resume=args.resume, on_round=display,
                            overwrite=args.overwrite)
        finally:
            if display is not None:
                display.stop()
        _report(summary)
        if summary.interrupted:
            return 130
        return INCOMPLETE if summary.incomplete else 0

    return run


def _prepare_evaluate(args: argparse.Namespace) -> Run:
    if args.video is not None:
        from raymanager.video import check_video_request

        check_video_request(args.video, args.video_episodes)
        plan_evaluation(args.checkpoint)
        return lambda: _record_video(args)
    plan_evaluation(args.checkpoint, args.episodes, num_actors=args.num_actors)
    RayConfig(address=args.address)
    return lambda: _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    result = evaluate_checkpoint(args.checkpoint, episodes=args.episodes,
                                 num_actors=args.num_actors, address=args.address)
    table = Table(title=f"evaluation of {args.checkpoint}")
    for column in ("episodes", "return mean", "return std", "return min", "return max",
                   "mean length"):
        table.add_column(column, justify="right")
    table.add_row(str(result["episodes"]), f"{result['return_mean']:.2f}",
                  f"{result['return_std']:.2f}", f"{result['return_min']:.1f}",
                  f"{result['return_max']:.1f}", f"{result['length_mean']:.1f}")
    Console().print(table)
    return 0


def _record_video(args: argparse.Namespace) -> int:
    from raymanager.video import record_video  # gymnasium loads only for a video

    result = record_video(args.checkpoint, args.video, episodes=args.video_episodes)
    returns = ", ".join(f"{value:.1f}" for value in result.returns)
    if result.stored_frames == result.frames:
        frames = f"{result.frames} frames"
    else:
        frames = (f"{result.frames} frames rendered, {result.stored_frames} stored: identical "
                  f"consecutive frames merged")
    Console().print(f"video: {result.path} ({result.seconds:.1f} s, {frames}; "
                    f"{len(result.returns)} episode(s), returns {returns})",
                    highlight=False, soft_wrap=True, markup=False)
    for line in result.tracking:  # a run trained with --tracker: the video is there too
        Console().print(line, highlight=False, soft_wrap=True, markup=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raymanager",
        description="Train and evaluate agents in parallel on pools of Ray actors.",
        epilog="exit status: 0 done; 1 a sweep in which a run failed, or an internal error "
               "(a bug: its traceback); 2 a mistake in the "
               "options or files, or a full or unwritable disk (one 'error:' line); 3 a run "
               "that finished without all its files (the learning curve could not be "
               "drawn); 130 Ctrl-C; 143 SIGTERM",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser(
        "train", help="train an agent (default: ES on CartPole)",
        description="Train an agent; options: defaults, then --config YAML, then flags.")
    _add_train_flags(train_parser)
    train_parser.set_defaults(prepare=_prepare_train)
    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint in parallel",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    evaluate.add_argument("checkpoint", help="a run directory or its checkpoint/ folder")
    evaluate.add_argument("--episodes", type=int, default=100, help="episodes to run")
    evaluate.add_argument("--num-actors", type=int, default=2, help="evaluation actors")
    evaluate.add_argument("--address", default=None,
                          help="Ray cluster to join (none: a private local Ray)")
    evaluate.add_argument("--video", metavar="FILE", default=None,
                          help="instead of evaluating, record episodes into FILE (.gif or "
                               ".mp4) in this process")
    evaluate.add_argument("--video-episodes", type=int, default=1,
                          help="episodes to record with --video")
    evaluate.set_defaults(prepare=_prepare_evaluate)
    add_sweep_parser(commands, console)
    add_info_parser(commands)
    return parser


class _ConsoleHandler(logging.Handler):
    """Log lines printed through the console the live progress line is drawn on.

    rich then ends the live line first and redraws it below the message, so a
    WARNING never lands on the end of the progress line.
    """

    def __init__(self, target: Console) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.print(self.format(record), markup=False, highlight=False,
                              soft_wrap=True)
        except Exception:  # logging must never raise into the program
            self.handleError(record)


#: What checking a command's input can raise: the user's mistake (a bad value, a
#: malformed or missing file). One line, exit status 2.
INPUT_ERRORS = (ValueError, TypeError, OSError, yaml.YAMLError, RayManagerError, VideoError)
#: What a command can raise once its input is checked that is still not a bug: our
#: own errors (a run directory in use, a corrupt file, no Ray cluster, a pool that
#: cannot start) and the machine's (a full disk, no permission). One line, exit 2.
RUN_ERRORS = (OSError, RayManagerError, VideoError)
#: Exit status of a run that finished but could not write all its files (the
#: learning curve on a full disk): its checkpoint and metrics.csv are whole.
INCOMPLETE = 3
#: Exit status of an internal error: a bug, shown with its traceback.
BUG = 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raymanager`` command; returns the exit status.

    Each command first checks its input (options, files, the environment and
    agent), before Ray starts. A mistake in the options or files (a bad value,
    a malformed YAML file, a missing or corrupt checkpoint, an unwritable or
    full disk, no Ray cluster at ``--address``, a run directory in use) prints
    one ``error: ...`` line, naming the file where there is one, and returns 2
    (with ``-v``, the traceback too). Any other exception once the input is
    checked is a bug: its traceback is printed, with a line asking to report
    it, and the status is 1. A run that finished but could not write every file
    (the learning curve on a full disk: one WARNING line) returns 3. Ctrl-C
    returns 130, SIGTERM 143.

    >>> main(["train", "--num-actors", "0"])                # doctest: +SKIP
    error: TrainConfig.num_actors must be an int >= 1, got 0
    2
    """
    args = build_parser().parse_args(argv)
    handler = _ConsoleHandler(console)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        handlers=[handler], force=True)
    terminated: list[int] = []

    def on_sigterm(signum: int, frame: types.FrameType | None) -> None:
        # SIGTERM stops like Ctrl-C (a checkpoint, Ray shut down), then exits 143.
        terminated.append(signum)
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, on_sigterm) if main_thread else None
    try:
        status = _run_command(args)
    except KeyboardInterrupt:
        console.print("interrupted", highlight=False)
        status = 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, before)
    if terminated:
        return 128 + signal.SIGTERM
    return status


def _run_command(args: argparse.Namespace) -> int:
    """Check the command's input, then run it; say what went wrong and whose it is."""
    try:
        run: Run = args.prepare(args)
    except INPUT_ERRORS as error:
        return _error_line(error, args.verbose)
    try:
        return run()
    except RUN_ERRORS as error:
        return _error_line(error, args.verbose)
    except Exception:
        traceback.print_exc()
        console.print("[red]internal error[/red]: this is a bug in raymanager, or in code it "
                      "ran for you (a custom agent or actor): the traceback above says where. "
                      "If it is raymanager's, please report it with that traceback.",
                      highlight=False, soft_wrap=True)
        return BUG


def _error_line(error: BaseException, verbose: bool) -> int:
    if verbose:  # the traceback, for a report
        traceback.print_exc()
    console.print(f"[red]error:[/red] {_message(error)}", highlight=False, soft_wrap=True)
    return 2


def _message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.filename is not None:
        # "[Errno 28] No space left on device: 'runs/x'" -> a sentence
        return f"{error.strerror or error}: {error.filename}"
    text = str(error) or type(error).__name__
    return text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
