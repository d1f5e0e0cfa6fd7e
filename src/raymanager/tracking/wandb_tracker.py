"""Weights & Biases: one W&B run per training run; a sweep's runs are one W&B group.

Online with the user's login (``wandb login`` or ``WANDB_API_KEY``) and
project (``WANDB_PROJECT``, else ``raymanager``); without a login, offline:
the run is written under ``RUN_DIR/wandb/offline-run-*`` and the final lines
print the ``wandb sync`` command that uploads it. ``WANDB_MODE`` has the last
word, as everywhere in W&B. W&B's console capture and system-metrics sampling
are off: the run's own output stays as it is, and no sampler competes with the
actors for CPU.

    >>> tracker = open_run(RunSpec("seed0", run_dir, store_dir, params))   # doctest: +SKIP
    >>> tracker.log_metrics({"train/loss": 0.5}, step=1)                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import wandb

from raymanager.tracking.base import RunSpec

__all__ = ["DEFAULT_PROJECT", "WandbRun", "open_parent", "open_run"]

DEFAULT_PROJECT = "raymanager"


def _logged_in() -> bool:
    """Whether W&B has an API key (environment or ``~/.netrc``); only the answer is kept."""
    try:
        return bool(wandb.apis.InternalApi().api_key)
    except Exception:  # an odd netrc: treat it as no login, and go offline
        return False


def _mode() -> Literal["online", "offline"] | None:
    if os.environ.get("WANDB_MODE"):
        return None  # W&B reads it itself
    return "online" if _logged_in() else "offline"


class WandbRun:
    """One W&B run: config, a history row per round, files (a ``Tracker``)."""

    name = "wandb"

    def __init__(self, run: Any) -> None:
        self.run = run

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log({key: float(value) for key, value in metrics.items()}, step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        # Files of the run (W&B's "Files" tab, offline too), under their own names:
        # checkpoint/weights.npz, learning_curve.png, config.yaml.
        # Copied into the run's folder, not linked: an offline run synced later
        # uploads the files as they were at the run's end.
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        into = Path(self.run.dir) / (folder or "")
        for file in files:
            target = into / file.relative_to(path.parent)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
            self.run.save(str(target), base_path=self.run.dir, policy="now")

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)

    @property
    def offline(self) -> bool:
        return bool(self.run.settings._offline)

    def sync_dir(self) -> Path:
        """The run's folder of W&B files (``RUN_DIR/wandb/offline-run-*`` offline)."""
        return Path(self.run.dir).parent

    def state(self) -> dict[str, Any]:
        return {"run_id": str(self.run.id), "project": str(self.run.project),
                "offline": self.offline}

    def where(self) -> list[str]:
        if self.offline:
            return [f"W&B:            offline run {self.run.id} in {self.sync_dir()}",
                    f"W&B upload:     wandb sync {shlex.quote(str(self.sync_dir()))}"]
        return [f"W&B:            {self.run.url}"]


def open_run(spec: RunSpec) -> WandbRun:
    """Start the W&B run of a training run (or resume the one ``spec.saved`` names)."""
    saved, parent = spec.saved or {}, spec.parent or {}
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=str(saved.get("project") or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT),
        # W&B tags are short labels (64 characters): the env, not the run's path.
        name=spec.name, group=parent.get("group"),
        tags=[spec.tags["raymanager.env"]] if "raymanager.env" in spec.tags else None,
        dir=str(spec.run_dir), id=saved.get("run_id"),
        resume="allow" if saved.get("run_id") else None, mode=_mode(),
        # Several runs of a sweep are open at once, from several threads.
        reinit="create_new",
        settings=wandb.Settings(console="off", x_disable_stats=True, silent=True,
                                save_code=False, disable_git=True))
    return WandbRun(run)


class WandbGroup:
    """A sweep on W&B: a group name its runs share (W&B has no parent run)."""

    name = "wandb"

    def __init__(self, group: str, sweep_dir: Path) -> None:
        self.group, self.sweep_dir = group, sweep_dir

    def child_context(self) -> dict[str, Any]:
        return {"group": self.group}

    def finish(self, status: str) -> None:
        """Nothing to end: each run of the group ends itself."""

    def state(self) -> dict[str, Any]:
        return {"group": self.group}

    def where(self) -> list[str]:
        lines = [f"W&B:            the sweep's runs are group {self.group} of project "
                 f"{os.environ.get('WANDB_PROJECT') or DEFAULT_PROJECT}"]
        mode = os.environ.get("WANDB_MODE") or _mode()
        if mode in ("offline", "dryrun"):  # the runs' folders, by a glob the shell expands
            runs = shlex.quote(str(self.sweep_dir / "runs"))  # the sweep's RUNS_DIR
            lines.append(f"W&B upload:     wandb sync {runs}/*/wandb/offline-run-*")
        return lines


def open_parent(spec: RunSpec) -> WandbGroup:
    """A sweep's W&B group: its directory's name (kept on resume)."""
    return WandbGroup(str((spec.saved or {}).get("group") or spec.name), spec.run_dir)
