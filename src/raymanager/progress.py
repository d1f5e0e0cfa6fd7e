"""An opt-in progress bar for ``process_in_parallel``: batches, rows/s and ETA.

Drawn with rich on stderr, so it never mixes with a program's stdout::

    with BatchProgress(total_batches=100, total_rows=12_800) as update:
        update(10, 1280)   # batches done, rows done
"""

from __future__ import annotations

from types import TracebackType

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

__all__ = ["BatchProgress"]


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
        self, total_batches: int | None, total_rows: int | None, description: str = "batches"
    ) -> None:
        self._progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RowsPerSecond(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total_batches, rows=0)
        self._total_rows = total_rows

    def update(self, batches: int, rows: int) -> None:
        self._progress.update(self._task, completed=batches, rows=rows)

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
