"""Progress displays, drawn with rich on stderr so they never mix with stdout.

``BatchProgress``, the opt-in bar of ``process_in_parallel``: batches, rows/s
and ETA::

    with BatchProgress(total_batches=100, total_rows=12_800) as update:
        update(10, 1280)   # batches done, rows done

``LiveDisplay``, the line of ``raymanager train``, fits 80 columns::

    round 12/1000 ━━━━━━━━━━ 0:00:14  53.2k steps/s  eval 212.3/475  ≤9m46s left
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["BatchProgress", "LiveDisplay", "format_duration"]


class _RowsPerSecond(ProgressColumn):
    """Rows per second since the start (rich's speed column counts batches)."""

    def render(self, task: Task) -> Text:
        rows = task.fields.get("rows", 0)
        elapsed = task.elapsed or 0.0
        rate = rows / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:,.0f} rows/s", style="progress.data.speed")


class BatchProgress:
    """A context manager whose value is the ``(batches, rows)`` progress callback."""

    def __init__(
        self,
        total_batches: int | None,
        total_rows: int | None,
        description: str = "batches",
        *,
        health: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self._progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RowsPerSecond(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[health]}"),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total_batches, rows=0,
                                             health="")
        self._total_rows = total_rows
        self._health = health

    def update(self, batches: int, rows: int) -> None:
        health = ""
        if self._health is not None:
            # Restarts and retries show as they happen, not only in the log.
            restarts, retries = self._health()
            if restarts or retries:
                health = f"restarts {restarts} retries {retries}"
        self._progress.update(self._task, completed=batches, rows=rows, health=health)

    def __enter__(self) -> BatchProgress:
        self._progress.start()
        return self

    def __call__(self, batches: int, rows: int) -> None:
        self.update(batches, rows)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()


class _TrainOptions(Protocol):
    agent: str | None
    env: str
    num_actors: int
    num_eval_actors: int
    max_rounds: int


def format_duration(seconds: float) -> str:
    """A short duration: ``45s``, ``9m46s``, ``1h02m``.

    >>> format_duration(586.2), format_duration(3725)
    ('9m46s', '1h02m')
    """
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def _rate(value: float) -> str:
    return f"{value / 1000:,.1f}k" if value >= 10_000 else f"{value:,.0f}"


class LiveDisplay:
    """The live line of ``raymanager train``, redrawn after every round.

    It says that Ray and the actors are starting until the first round ends;
    env steps/s count training time only (start-up excluded); the time left
    is shown once two rounds have run, as an upper bound ("≤"): whichever of
    the round and time budgets ends first, if the target is not reached before.

    >>> display = LiveDisplay(config, Console(width=80))   # doctest: +SKIP
    >>> display.start(); display(row); display.stop()      # doctest: +SKIP
    """

    def __init__(self, config: _TrainOptions, console: Console) -> None:
        self.console = console
        self.config = config
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=10),
            TimeElapsedColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[evaluation]}"),
            TextColumn("{task.fields[left]}"),
            console=console,
        )
        self.task = self.progress.add_task(
            "starting...", total=config.max_rounds, rate="", evaluation="", left="")
        self.last_eval = ""
        self.rounds_seen = 0

    def start(self) -> None:
        c = self.config
        self.console.print(
            f"starting Ray and {c.num_actors}+{c.num_eval_actors} actors (training+evaluation) "
            f"for {c.agent} on {c.env} ...", highlight=False, soft_wrap=True)
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def __call__(self, row: Mapping[str, Any]) -> None:
        self.rounds_seen += 1
        done, max_rounds = int(row["round"]), int(row["max_rounds"])
        training_s = float(row.get("training_seconds") or 0.0)
        steps = float(row.get("training_env_steps") or 0)
        rate = f"{_rate(steps / training_s)} steps/s" if training_s > 0 else ""
        if row.get("eval_return_mean") is not None:
            self.last_eval = f"eval {row['eval_return_mean']:.1f}/{row['target']:g}"
        left = ""
        if self.rounds_seen >= 2 and training_s > 0 and done < max_rounds:
            bound = training_s / self.rounds_seen * (max_rounds - done)
            if row.get("max_seconds"):
                bound = min(bound, max(0.0, float(row["max_seconds"]) - float(row["seconds"])))
            left = f"≤{format_duration(bound)} left"
        self.progress.update(self.task, completed=done, description=f"round {done}/{max_rounds}",
                             rate=rate, evaluation=self.last_eval, left=left)
