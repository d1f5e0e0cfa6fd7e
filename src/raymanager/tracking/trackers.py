"""The trackers of one run, fed by the training loop without ever blocking it.

Every tracker call (opening the tracker run, params, each round's metrics,
the files at the end) runs in order on one background thread: a slow or
unreachable tracker server costs the rounds nothing. A tracker that raises
gives one WARNING line and is dropped; the run goes on, and ``metrics.csv``
stays the record.

``trackers.json`` in the run directory keeps, per tracker, its run id and
the last round it logged (plain JSON): ``--resume`` reopens the same tracker
run and never logs a round twice.

    >>> trackers = Trackers.start(["mlflow"], spec)                  # doctest: +SKIP
    >>> trackers.log_metrics({"train/loss": 0.5}, step=1)             # doctest: +SKIP
    >>> trackers.finish("FINISHED")                                   # doctest: +SKIP
    ['MLflow: run 3f2a... in sqlite:////home/me/runs/mlflow.db', ...]
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from raymanager.durable import write_atomically
from raymanager.rundir.layout import TRACKERS_FILE
from raymanager.tracking.base import RunSpec, Tracker

__all__ = ["BACKENDS", "STATE_FILE", "Trackers", "attach", "check_trackers", "read_state", "warn",
           "write_state"]

logger = logging.getLogger("raymanager")

#: The tracker names ``--tracker`` takes: their module, and the extra that installs them.
BACKENDS: dict[str, str] = {
    "mlflow": "raymanager.tracking.mlflow_tracker",
    "wandb": "raymanager.tracking.wandb_tracker",
}
#: The library each tracker imports, by tracker name.
LIBRARIES = {"mlflow": "mlflow", "wandb": "wandb"}
#: Per tracker, what reopens its run: the run id, where, the last round logged.
STATE_FILE = TRACKERS_FILE
#: How long the end of a run waits for its trackers to finish sending.
FINISH_TIMEOUT_S = 120.0

#: "FINISHED", "KILLED" (stopped: Ctrl-C, SIGTERM) or "FAILED": MLflow's run statuses.
STATUSES = ("FINISHED", "KILLED", "FAILED")


def check_trackers(names: Sequence[str]) -> None:
    """Raise ValueError for a tracker name we do not know or whose library is missing.

    Called before Ray starts: a missing extra is a mistake in the command, not a
    tracker failing in the middle of a run.

    >>> check_trackers(["tensorboard"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown tracker 'tensorboard': choose from mlflow, wandb (TensorBoard ...)
    """
    for name in names:
        if name not in BACKENDS:
            raise ValueError(f"unknown tracker {name!r}: choose from {', '.join(BACKENDS)} "
                             f"(TensorBoard event files are always written)")
        if importlib.util.find_spec(LIBRARIES[name]) is None:
            raise ValueError(f"--tracker {name} needs the {LIBRARIES[name]} package: "
                             f"pip install 'raymanager[{name}]'")


def backend(name: str) -> Any:
    """The module of tracker ``name`` (imported on first use: nothing unless asked)."""
    return importlib.import_module(BACKENDS[name])


def read_state(folder: Path) -> dict[str, dict[str, Any]]:
    """``folder/trackers.json``: per tracker, plain data; {} when there is none or it is bad."""
    path = folder / STATE_FILE
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("%s is unreadable (%s): trackers start new runs", path, error)
        return {}
    if not isinstance(values, dict):
        return {}
    return {k: v for k, v in values.items() if isinstance(v, dict)}


def write_state(folder: Path, state: Mapping[str, Mapping[str, Any]]) -> None:
    write_atomically(folder / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n",
                     binary=False)


class Trackers:
    """The trackers of one run: every call queued to one thread, failures made warnings."""

    def __init__(self) -> None:
        self._live: dict[str, Tracker] = {}
        self._state: dict[str, dict[str, Any]] = {}
        self._where: list[str] = []
        self._folder: Path | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="raymanager-trackers",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, names: Sequence[str], spec: RunSpec, *, resumed: bool = False,
              parents: Mapping[str, Mapping[str, Any]] | None = None,
              backfill: Sequence[tuple[int, Mapping[str, float]]] = ()) -> Trackers:
        """Open tracker runs ``names`` for the run ``spec`` describes (in the background).

        With ``resumed``, each tracker reopens the run ``trackers.json`` names
        and skips the rounds it already has; params are logged for a new run only
        (they are the run's own options, which a resume does not change). A
        tracker new to a resumed run first gets ``backfill``, the (step, metrics)
        of the rounds before (from ``metrics.csv``).
        """
        trackers = cls()
        trackers._folder = spec.run_dir
        saved = read_state(spec.run_dir) if resumed else {}
        for name in dict.fromkeys(names):
            trackers._put(functools.partial(trackers._open, name, dataclasses.replace(
                spec, saved=saved.get(name), parent=(parents or {}).get(name)), backfill))
        return trackers

    def _open(self, name: str, spec: RunSpec,
              backfill: Sequence[tuple[int, Mapping[str, float]]] = ()) -> None:
        try:
            tracker: Tracker = backend(name).open_run(spec)
        except Exception as error:
            warn(name, "could not start", error)
            return
        self._live[name] = tracker
        logged = int((spec.saved or {}).get("logged_through", 0))
        self._state[name] = {**tracker.state(), "logged_through": logged}
        self._save()
        if spec.saved is None:
            self._each("log the params", lambda t: t.log_params(spec.params), only=name)
            for step, metrics in backfill:  # added on resume: the rounds it missed
                if not self._guard(name, "log metrics",
                                   functools.partial(_log_metrics, metrics=metrics, step=step)):
                    break
                self._state[name]["logged_through"] = step
            self._save()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """One round's metrics (``train/…``, ``eval/…``), the round as the step."""
        values = dict(metrics)

        def job() -> None:
            for name in list(self._live):
                if step <= int(self._state[name].get("logged_through", 0)):
                    continue  # logged before a resume rolled the run back: not twice
                if self._guard(name, "log metrics", lambda t: t.log_metrics(values, step)):
                    self._state[name]["logged_through"] = step
            self._save()

        self._put(job)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        """A file or folder of the run, copied to every tracker (if it exists by then)."""
        def job() -> None:
            if path.exists():
                self._each(f"store {path.name}", lambda t: t.log_artifact(path, folder))

        self._put(job)

    def finish(self, status: str = "FINISHED", timeout_s: float = FINISH_TIMEOUT_S) -> list[str]:
        """End every tracker run; the lines that say where to look at them.

        Waits up to ``timeout_s`` for what is queued; a tracker still busy then
        is left behind with a WARNING (its thread is a daemon).
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")

        def job() -> None:
            for name in list(self._live):
                if self._guard(name, "finish", lambda t: t.finish(status)):
                    self._state[name]["status"] = status  # what attach() puts back
                    self._guard(name, "say where it is", lambda t: self._where.extend(t.where()))
            self._save()

        self._put(job)
        self._put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("trackers still busy after %.0f s: leaving them; metrics.csv is the "
                           "run's record", timeout_s)
            return []
        return list(self._where)

    def _put(self, job: Callable[[], None] | None) -> None:
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # a bug of ours must not kill the thread: the queue drains
                logger.warning("tracker job failed", exc_info=True)

    def _each(self, what: str, call: Callable[[Tracker], object], *,
              only: str | None = None) -> None:
        for name in list(self._live):
            if only is None or name == only:
                self._guard(name, what, call)

    def _guard(self, name: str, what: str, call: Callable[[Tracker], object]) -> bool:
        """Run ``call``; on an exception drop tracker ``name`` with one WARNING. True if it ran."""
        tracker = self._live.get(name)
        if tracker is None:
            return False
        try:
            call(tracker)
        except Exception as error:
            del self._live[name]
            warn(name, f"failed to {what}", error)
            return False
        return True

    def _save(self) -> None:
        if self._folder is None or not self._state:
            return
        try:
            write_state(self._folder, self._state)
        except OSError as error:
            logger.warning("could not write %s (%s): a resumed run may start new tracker runs",
                           self._folder / STATE_FILE, error)
            self._folder = None  # once


def _log_metrics(tracker: Tracker, metrics: Mapping[str, float], step: int) -> None:
    tracker.log_metrics(metrics, step)


def attach(run_dir: Path, path: Path, folder: str = "videos") -> list[str]:
    """Add ``path`` to the tracker runs of a run that has ended (a video made later).

    Reopens each tracker run ``run_dir/trackers.json`` names, adds the file under
    ``folder``, and ends the run with the status it had. A run without trackers, or
    whose tracker is not installed here, is left as it is. Returns the lines that
    say where the runs are.

    >>> attach(Path("runs/r1"), Path("policy.gif"))       # doctest: +SKIP
    ['MLflow:         run 6564e38e... in sqlite:////home/me/runs/mlflow.db', ...]
    """
    state = read_state(run_dir)
    names = [name for name in state
             if name in BACKENDS and importlib.util.find_spec(LIBRARIES[name]) is not None]
    if not names:
        return []
    trackers = Trackers.start(names, RunSpec(run_dir.name, run_dir, run_dir.parent, {}),
                              resumed=True)
    trackers.log_artifact(path, folder)
    statuses = {str(state[name].get("status", "FINISHED")) for name in names}
    # One status for all: they ended together; a tracker's own may differ only if
    # it failed, and then it is not reopened anyway.
    status = statuses.pop() if len(statuses) == 1 else "FINISHED"
    return trackers.finish(status if status in STATUSES else "FINISHED")


def warn(name: str, what: str, error: BaseException) -> None:
    reason = (str(error).splitlines() or [type(error).__name__])[0]
    # One line; the traceback only at INFO (-v), for a bug report.
    logger.warning("tracker %s %s (%s: %s); the run goes on without it and metrics.csv "
                   "stays the record", name, what, type(error).__name__, reason,
                   exc_info=logger.isEnabledFor(logging.INFO))
