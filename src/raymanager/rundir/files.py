"""Reading and writing a run directory's text files: ``config.yaml`` / ``sweep.yaml``
(YAML mappings, ``safe_load``: nothing read runs code) and ``metrics.csv`` (one row
per round, :data:`~raymanager.rundir.layout.METRIC_COLUMNS`).

Writers replace a file durably or append a whole row in one fsynced write
(:mod:`raymanager.durable`), and raise :class:`~raymanager.errors.RunFileError`
naming the file. Readers raise :class:`RunDirError` (a ValueError) naming the
file that is there but unreadable; a reader of a run still being written sees
only its complete rows.

This module imports :mod:`raymanager.durable`, :mod:`raymanager.errors` and
:mod:`raymanager.rundir.layout` of ours.

    >>> metrics_line({"round": 3, "loss": 0.5, "fitness_mean": None}).split(",")[:7]
    ['3', '', '', '', '', '', '0.5']
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from raymanager.durable import append_durably, write_atomically
from raymanager.errors import RunFileError
from raymanager.rundir.layout import METRIC_COLUMNS

__all__ = [
    "RunDirError",
    "append_metrics_row",
    "cannot_write",
    "complete_lines",
    "keep_rounds_up_to",
    "metrics_line",
    "read_directory_file",
    "read_mapping",
    "tensorboard_scalars",
    "write_file",
    "write_mapping",
    "write_metrics",
]


class RunDirError(ValueError):
    """A file of a run or sweep directory is there but cannot be read; ``path`` names it,
    ``reason`` says what is wrong with it.

    >>> str(RunDirError("runs/a/metrics.csv", "line 3: not a number"))
    'runs/a/metrics.csv: line 3: not a number'
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason


def cannot_write(error: OSError, path: Path) -> RunFileError:
    """``error`` as our own, naming the file (a failed write may name none)."""
    return RunFileError(error.errno, error.strerror or str(error) or type(error).__name__,
                        os.fspath(error.filename or path))


def write_file(target: Path, content: Any, *, binary: bool = True) -> None:
    """Replace ``target`` durably (see :mod:`raymanager.durable`); RunFileError if it fails."""
    try:
        write_atomically(target, content, binary=binary)
    except OSError as error:
        raise cannot_write(error, target) from error


def read_mapping(path: Path, *, missing_ok: bool = False) -> dict[str, Any] | None:
    """A YAML file holding a mapping (``config.yaml``, ``sweep.yaml``), read safely.

    A missing file is None with ``missing_ok``, else FileNotFoundError; one that
    is not YAML, or not a mapping, raises :class:`RunDirError` naming it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return None
        raise
    except UnicodeDecodeError as error:
        raise RunDirError(path, f"not valid YAML ({error})") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RunDirError(path, f"not valid YAML ({error})") from None
    if not isinstance(values, dict):
        raise RunDirError(path, "expected a mapping of options")
    return values


def read_directory_file(directory: str | os.PathLike[str], name: str,
                        what: str) -> dict[str, Any]:
    """The mapping of ``directory``'s own YAML file ``name`` (``config.yaml`` of a run,
    ``sweep.yaml`` of a sweep), with errors that say what is wrong in a user's words:
    FileNotFoundError "DIR is not a WHAT directory", ValueError "FILE is corrupt: ...".
    """
    path = Path(directory) / name
    try:
        values = read_mapping(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{os.fspath(directory)} is not a {what} directory: it has no {name}") from None
    except RunDirError as error:
        raise ValueError(f"{path} is corrupt: {error.reason}") from None
    assert values is not None  # missing_ok is off: a missing file raised above
    return values


def write_mapping(path: Path, values: Mapping[str, Any]) -> None:
    """Write a mapping as YAML (keys in the given order), durably."""
    write_file(path, yaml.safe_dump(dict(values), sort_keys=False), binary=False)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def metrics_line(row: Mapping[str, Any]) -> str:
    """One metrics.csv line for ``row`` (its keys in any order, missing ones empty)."""
    line = io.StringIO()
    csv.writer(line).writerow([_cell(row.get(column)) for column in METRIC_COLUMNS])
    return line.getvalue()


def write_metrics(path: Path, rows: Sequence[Sequence[str]] = ()) -> None:
    """Replace metrics.csv with its header and ``rows`` (cells as read), durably."""
    def write(handle: Any) -> None:
        writer = csv.writer(handle)
        writer.writerow(METRIC_COLUMNS)
        writer.writerows(rows)

    write_file(path, write, binary=False)


def append_metrics_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one round's row: one write (Ctrl-C never leaves half a row), fsynced."""
    try:
        append_durably(path, metrics_line(row))
    except OSError as error:
        raise cannot_write(error, path) from error


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError as error:
        raise RunDirError(path, f"not UTF-8 text ({error})") from None


def complete_lines(path: Path) -> list[str]:
    """The file's lines up to its last newline: a row being appended is not read yet.

    A missing file has none; one that is not UTF-8 raises :class:`RunDirError`.
    """
    text = _text(path)
    # The trainer appends a row in one write, but a reader can still see part of it
    # (or a crash can leave it): what follows the last newline is not a row yet.
    return text[: text.rfind("\n") + 1].splitlines()


def keep_rounds_up_to(path: Path, last_round: int) -> int:
    """Drop the rows of rounds after ``last_round`` (a checkpoint's round), and a row a
    crash left half-written; return how many rows were dropped. The header must be
    metrics.csv's own (RunDirError otherwise)."""
    text = _text(path)
    reader = csv.reader(text[: text.rfind("\n") + 1].splitlines())
    header = next(reader, None)
    if header != list(METRIC_COLUMNS):
        raise RunDirError(path, f"corrupt: unexpected header {header}")
    rows = [row for row in reader if row]
    kept = [row for row in rows if row[0].isdigit() and int(row[0]) <= last_round]
    if len(kept) != len(rows) or not text.endswith("\n"):
        write_metrics(path, kept)
    return len(rows) - len(kept)


def tensorboard_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """A metrics row's columns as TensorBoard scalars: ``eval_*`` under ``eval/``, the rest
    ``train/``.

    The round is the step, so it is not a scalar itself; empty cells and keys
    that are not metrics.csv columns are left out.

    >>> tensorboard_scalars({"round": 3, "loss": 0.5, "eval_return_mean": 200.0,
    ...                      "eval_episodes": None})
    {'train/loss': 0.5, 'eval/return_mean': 200.0}
    """
    scalars: dict[str, float] = {}
    for key in METRIC_COLUMNS:  # a row may carry more (the target, for a progress hook)
        value = row.get(key)
        if key == "round" or value is None or value == "":
            continue
        if key.startswith("eval_"):
            scalars[f"eval/{key[len('eval_'):]}"] = float(value)
        else:
            scalars[f"train/{key}"] = float(value)
    return scalars
