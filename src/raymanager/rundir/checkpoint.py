"""Checkpoints: ``weights.npz`` + ``state.json``, written durably, read without running code.

    >>> save_checkpoint("run/checkpoint", ckpt)                     # doctest: +SKIP
    >>> load_checkpoint("run").round                                 # doctest: +SKIP
    42
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymanager.errors import CheckpointError
from raymanager.rundir.files import RunDirError, cannot_write, write_file
from raymanager.rundir.layout import CHECKPOINT_DIR, STATE_FILE, WEIGHTS_FILE

__all__ = ["Checkpoint", "checkpoint_exists", "checkpoint_seconds", "load_checkpoint",
           "save_checkpoint"]


@dataclass
class Checkpoint:
    """Weights plus where training stood; stored as ``weights.npz`` + ``state.json``."""

    weights: dict[str, np.ndarray]
    round: int
    env_steps: int
    seconds: float
    config: dict[str, Any]
    last_eval: dict[str, Any] | None = None
    #: Training episodes so far (0 in checkpoints written before this field).
    episodes: int = 0


def checkpoint_exists(run_dir: str | os.PathLike[str]) -> bool:
    """Whether a run directory holds a checkpoint (its ``checkpoint/state.json``)."""
    return (Path(run_dir) / CHECKPOINT_DIR / STATE_FILE).exists()


def checkpoint_seconds(run_dir: str | os.PathLike[str]) -> float | None:
    """The run's clock at its checkpoint (None without one), read from ``state.json``
    alone: cheap enough for a summary that polls runs still training.

    Raises :class:`RunDirError` naming the file when it is not JSON.
    """
    path = Path(run_dir) / CHECKPOINT_DIR / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as error:  # json.JSONDecodeError is a ValueError
        raise RunDirError(path, f"not valid JSON ({error})") from None
    seconds = state.get("seconds") if isinstance(state, dict) else None
    return float(seconds) if isinstance(seconds, (int, float)) else None


def save_checkpoint(directory: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write a checkpoint atomically and durably: a crash or a power loss mid-write leaves
    the old one whole. A full disk or an unwritable folder raises :class:`RunFileError`
    naming the file.

    >>> save_checkpoint("run/checkpoint", ckpt)                     # doctest: +SKIP
    """
    target = Path(directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(error, target) from error
    state = {
        "format": 1,
        "round": checkpoint.round,
        "env_steps": checkpoint.env_steps,
        "episodes": checkpoint.episodes,
        "seconds": checkpoint.seconds,
        "config": checkpoint.config,
        "last_eval": checkpoint.last_eval,
    }
    write_file(target / WEIGHTS_FILE,
                lambda handle: np.savez(handle, **checkpoint.weights))  # type: ignore[arg-type]
    write_file(target / STATE_FILE, json.dumps(state, indent=2))
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint from a checkpoint directory or a run directory.

    Never executes code: arrays load without pickle, state is JSON. A file
    that cannot be read raises :class:`CheckpointError` saying it is corrupt.

    >>> load_checkpoint("runs/CartPole-v1-seed0").round             # doctest: +SKIP
    42
    """
    directory = Path(path)
    if checkpoint_exists(directory):
        directory = directory / CHECKPOINT_DIR
    state_file, weights_file = directory / STATE_FILE, directory / WEIGHTS_FILE
    if not state_file.exists() or not weights_file.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path}: expected {STATE_FILE} and {WEIGHTS_FILE} in it "
            f"or in its {CHECKPOINT_DIR}/ folder"
        )
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        checkpoint_fields = {
            "round": int(state["round"]),
            "env_steps": int(state["env_steps"]),
            "seconds": float(state["seconds"]),
            "config": dict(state["config"]),
            "last_eval": state.get("last_eval"),
            "episodes": int(state.get("episodes", 0)),
        }
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"{state_file} is corrupt (not a raymanager checkpoint state: {error})"
        ) from None
    weights = _load_weights(weights_file)
    return Checkpoint(weights=weights, **checkpoint_fields)


def _load_weights(weights_file: Path) -> dict[str, np.ndarray]:
    # numpy's own messages would suggest allow_pickle=True for an object
    # array or a file it does not recognise: code execution from a file,
    # which we never do nor advise.
    if not zipfile.is_zipfile(weights_file):
        reason = "not an .npz archive: truncated or overwritten"
    else:
        try:
            with np.load(weights_file, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except ValueError as error:
            if "pickle" in str(error):
                reason = "it holds Python objects, which raymanager never loads"
            else:
                reason = str(error).split(". ")[0]
        except (OSError, EOFError, KeyError, zipfile.BadZipFile, AttributeError) as error:
            reason = str(error) or type(error).__name__
    raise CheckpointError(
        f"{weights_file} is corrupt or not a raymanager checkpoint ({reason}); "
        f"restore it from a copy or train again"
    )
