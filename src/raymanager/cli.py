"""The ``raymanager`` command: ``train``, ``evaluate`` and ``info``.

    raymanager train                          # CartPole-v1, local Ray, until solved
    raymanager train --config run.yaml --num-actors 4 --address auto
    raymanager train --resume runs/CartPole-v1-seed0-20261126-101500
    raymanager evaluate runs/CartPole-v1-seed0-20261126-101500 --episodes 100
    raymanager info

Options of ``train`` come from :class:`raymanager.training.TrainConfig`:
defaults, then the YAML file of ``--config``, then flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from raymanager.training import TrainConfig, TrainSummary, evaluate_checkpoint, train

__all__ = ["main"]

console = Console(stderr=True)


def _flag_type(annotation: Any) -> tuple[Any, bool]:
    """(argparse type, is a bool flag) for a TrainConfig field annotation."""
    hints = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    base = next((h for h in hints if h is not type(None)), annotation)
    if base is bool:
        return None, True
    if base in (int, float, str):
        return base, False
    return yaml.safe_load, False  # dicts: a YAML/JSON literal such as '{a: 1}'


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML", help="YAML file of options (safe_load)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    hints = typing.get_type_hints(TrainConfig)
    for spec in dataclasses.fields(TrainConfig):
        flag = "--" + spec.name.replace("_", "-")
        kind, is_bool = _flag_type(hints[spec.name])
        help_text = spec.metadata.get("help", "")
        if is_bool:
            parser.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, dest=spec.name, type=kind, default=argparse.SUPPRESS,
                                help=help_text, metavar=spec.name.upper())


def _train_config(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config:
        values.update(dataclasses.asdict(TrainConfig.from_yaml(args.config)))
    for spec in dataclasses.fields(TrainConfig):
        if spec.name in vars(args):
            values[spec.name] = getattr(args, spec.name)
    return TrainConfig.from_mapping(values)


class _LiveDisplay:
    """Round, env steps/s, latest eval return and ETA, redrawn after every round."""

    def __init__(self, config: TrainConfig) -> None:
        self.progress = Progress(
            TextColumn("[bold]round"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[evaluation]}"),
            TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
            console=console,
        )
        self.task = self.progress.add_task(
            "train", total=config.max_rounds, rate="", evaluation="eval: -", eta="?")
        self.last_eval = "eval: -"

    def __call__(self, row: dict[str, Any]) -> None:
        seconds, steps, done = row["seconds"], row["env_steps"], row["round"]
        rate = f"{steps / seconds:,.0f} steps/s" if seconds > 0 else ""
        if row.get("eval_return_mean") is not None:
            self.last_eval = (f"eval: {row['eval_return_mean']:.1f} "
                              f"(target {row['target']:g})")
        # Whichever budget ends first, rounds or time, bounds the wait.
        eta = seconds / done * (row["max_rounds"] - done) if done else float("inf")
        if row.get("max_seconds"):
            eta = min(eta, max(0.0, row["max_seconds"] - seconds))
        self.progress.update(self.task, completed=done, rate=rate, evaluation=self.last_eval,
                             eta=f"{eta:,.0f}s (budget)")


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
    Console().print(table)


def _cmd_train(args: argparse.Namespace) -> int:
    config = _train_config(args)
    if config.progress and not args.resume:
        console.print(f"training {config.resolved().agent} on {config.env} with "
                      f"{config.num_actors} "
                      f"training and {config.num_eval_actors} evaluation actors")
    display = _LiveDisplay(config) if config.progress else None
    if display is not None:
        display.progress.start()
    try:
        summary = train(config, resume=args.resume, on_round=display)
    finally:
        if display is not None:
            display.progress.stop()
    _report(summary)
    return 130 if summary.interrupted else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
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


def _cmd_info(args: argparse.Namespace) -> int:
    import ray

    from raymanager import RayConfig, RayManager

    with RayManager(RayConfig(address=args.address)) as manager:
        resources = manager.cluster_resources()
        store = manager.object_store_stats()
        nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        table = Table(title="Ray resources seen by raymanager", show_header=False)
        where = f"joined {args.address}" if args.address else "private local"
        table.add_row("Ray", f"{ray.__version__} ({where})")
        table.add_row("nodes", str(len(nodes)))
        table.add_row("CPUs", f"{resources.get('CPU', 0):g}")
        table.add_row("GPUs", f"{resources.get('GPU', 0):g}")
        table.add_row("memory", _gib(resources.get("memory", 0)))
        used = "unknown" if store["used"] < 0 else _gib(store["used"])
        table.add_row("object store", f"{used} used of {_gib(store['total'])}")
        custom = {k: v for k, v in resources.items()
                  if k not in ("CPU", "GPU", "memory", "object_store_memory")}
        if custom:
            table.add_row("other", ", ".join(f"{k}={v:g}" for k, v in sorted(custom.items())))
        Console().print(table)
    return 0


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f} GiB"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raymanager",
        description="Train and evaluate agents in parallel on pools of Ray actors.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train an agent (default: ES on CartPole)")
    _add_train_flags(train_parser)
    train_parser.set_defaults(run=_cmd_train)
    evaluate = commands.add_parser("evaluate", help="evaluate a checkpoint in parallel")
    evaluate.add_argument("checkpoint", help="a run directory or its checkpoint/ folder")
    evaluate.add_argument("--episodes", type=int, default=100, help="episodes to run")
    evaluate.add_argument("--num-actors", type=int, default=2, help="evaluation actors")
    evaluate.add_argument("--address", default=None, help="Ray cluster to join")
    evaluate.set_defaults(run=_cmd_evaluate)
    info = commands.add_parser("info", help="show the Ray resources raymanager sees")
    info.add_argument("--address", default=None, help="Ray cluster to join")
    info.set_defaults(run=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raymanager`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        status: int = args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        return 2
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
