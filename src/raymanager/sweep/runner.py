"""Run a sweep's training runs on one Ray, as many at once as its CPUs allow.

Every run is exactly a ``raymanager train`` run: its own directory under
``SWEEP_DIR/runs/``, checkpoint, metrics and curve. They share the sweep's Ray
(a private local one, or the cluster at ``address``): each run starts its
pools on it, spread over the nodes, so on a cluster with room for all the
runs, a sweep of five seeds takes the time of one. A run that fails is
reported and the others go on.

Ctrl-C stops every run after its round in progress, each saving a
checkpoint; ``--resume SWEEP_DIR`` continues the runs that were cut short,
starts those that never started, and leaves finished runs as they are.

    >>> result = run_sweep(SweepSpec(TrainConfig(max_rounds=3), seeds=(0, 1, 2)))  # doctest: +SKIP
    >>> [run.state for run in result.runs]                                          # doctest: +SKIP
    ['budget', 'budget', 'budget']
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymanager.config import RayConfig
from raymanager.manager import RayManager
from raymanager.rundir import (
    RUNS_DIR,
    SPEC_FILE,
    DirectoryLock,
    checkpoint_exists,
    claim_sweep_dir,
    read_directory_file,
    resume_command,
    write_mapping,
)
from raymanager.sweep.spec import PlannedRun, SweepSpec
from raymanager.sweep.summary import summarize, write_summary
from raymanager.tracking.sweeps import SweepTrackers
from raymanager.training import (
    RESUMABLE_OPTIONS,
    TrainSummary,
    plan_run,
    resume_config,
    train,
)

__all__ = ["RunOutcome", "SweepResult", "check_runs", "claim_new_sweep_dir", "new_sweep_dir",
           "read_sweep_spec", "run_sweep"]

logger = logging.getLogger("raymanager")

#: Least time between two live rewrites of the summary (drawing it costs ~0.5 s).
SUMMARY_EVERY_S = 10.0

#: Called with one line of news: a run started, evaluated, ended.
EventHook = Callable[[str], None]


@dataclass
class RunOutcome:
    """What became of one run of the sweep."""

    name: str
    run_dir: Path
    #: "solved", "budget" (a budget ran out first), "stopped" (Ctrl-C / stop),
    #: "failed" (see ``error``) or "not started".
    state: str
    summary: TrainSummary | None = None
    error: str | None = None
    #: Seconds from the sweep's start to the run's start and end.
    started_s: float | None = None
    ended_s: float | None = None


@dataclass
class SweepResult:
    """What a sweep did, run by run, and how its runs shared the cluster."""

    sweep_dir: Path
    runs: list[RunOutcome]
    runs_at_once: int
    cpus: float
    nodes: int
    interrupted: bool
    #: Where the trackers keep the sweep (its parent run or group): lines to print.
    tracking: tuple[str, ...] = ()


def new_sweep_dir(spec: SweepSpec) -> Path:
    """The sweep's directory: ``output_dir/run_name``, or ``output_dir/sweep-{env}-{time}``.

    An existing directory that holds a sweep raises FileExistsError (continue it
    with ``--resume``); one that another process is writing, RunLockedError.
    The directory's lock is released on return: :func:`claim_new_sweep_dir` keeps it.
    """
    lock = claim_new_sweep_dir(spec)
    lock.release()
    return lock.directory


def claim_new_sweep_dir(spec: SweepSpec) -> DirectoryLock:
    """:func:`new_sweep_dir`, returning the directory's lock held (release it when done)."""
    base = spec.base
    name = base.run_name or f"sweep-{base.env}-{time.strftime('%Y%m%d-%H%M%S')}"
    return claim_sweep_dir(base.output_dir, name)


def read_sweep_spec(sweep_dir: str | os.PathLike[str]) -> SweepSpec:
    """The spec a sweep directory was started with (its ``sweep.yaml``)."""
    values = read_directory_file(sweep_dir, SPEC_FILE, "sweep")
    return SweepSpec.from_mapping(values)


def check_runs(spec: SweepSpec) -> None:
    """Resolve each grid point's options as its runs will (env id, agent, options):
    a mistake raises here, once, before Ray starts, not once per run."""
    seen: set[str] = set()
    for run in spec.runs():
        point = repr(sorted(run.point.items()))
        if point not in seen:  # seeds never make options invalid: one run per point
            seen.add(point)
            plan_run(run.config)


def run_sweep(
    spec: SweepSpec | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    changes: Mapping[str, Any] | None = None,
    parallel: int | None = None,
    stop: threading.Event | None = None,
    on_event: EventHook | None = None,
) -> SweepResult:
    """Run every run of ``spec`` (or continue the sweep in ``resume``); write its summary.

    ``changes`` (with ``resume``) may change the runs' budgets and resources,
    as ``raymanager train --resume`` may; ``parallel`` overrides the spec's.
    Ctrl-C in the calling thread, or ``stop`` being set, stops every run after
    its round in progress; the result then has ``interrupted=True``.
    """
    changes = dict(changes or {})
    if resume is not None:
        sweep_dir = Path(resume)
        read_sweep_spec(sweep_dir)  # not a sweep directory: say so before writing a lock into it
        lock = DirectoryLock(sweep_dir, what="sweep").acquire()
        try:
            saved = read_sweep_spec(sweep_dir)
            not_allowed = sorted(set(changes) - set(RESUMABLE_OPTIONS))
            if not_allowed:
                raise ValueError(f"a resumed sweep may change only "
                                 f"{', '.join(RESUMABLE_OPTIONS)}; got {not_allowed}")
            spec = dataclasses.replace(saved, base=dataclasses.replace(saved.base, **changes),
                                       parallel=parallel or saved.parallel)
            check_runs(spec)
        except BaseException:
            lock.release()
            raise
    elif spec is None:
        raise TypeError("run_sweep() needs a SweepSpec, or resume= a sweep directory")
    elif changes:
        raise ValueError("changes= is for a resumed sweep; put options in the spec")
    else:
        if parallel is not None:
            spec = dataclasses.replace(spec, parallel=parallel)
        check_runs(spec)
        lock = claim_new_sweep_dir(spec)
        sweep_dir = lock.directory
        try:
            write_mapping(sweep_dir / SPEC_FILE, spec.to_mapping())
        except BaseException:
            lock.release()
            raise
    try:
        return _Sweep(spec, sweep_dir, resume is not None, changes, stop or threading.Event(),
                      on_event).run()
    finally:
        lock.release()


class _Sweep:
    def __init__(self, spec: SweepSpec, sweep_dir: Path, resuming: bool,
                 changes: Mapping[str, Any], stop: threading.Event,
                 on_event: EventHook | None) -> None:
        self.spec, self.sweep_dir, self.resuming = spec, sweep_dir, resuming
        self.changes, self.stop = changes, stop
        self.on_event = on_event or (lambda line: logger.info("%s", line))
        self.planned = spec.runs()
        self.run_dirs = [sweep_dir / RUNS_DIR / run.name for run in self.planned]
        self.started = time.monotonic()
        self._summary_lock = threading.Lock()
        self._summary_at = 0.0

    def run(self) -> SweepResult:
        base = self.spec.base
        manager = RayManager(RayConfig(address=base.address, num_cpus=base.num_cpus))
        interrupted = False
        try:
            # --tracker: a parent run (MLflow) or group (W&B) that each run joins.
            self.trackers = SweepTrackers.for_sweep(base.trackers, self.sweep_dir,
                                                    self.spec.to_mapping(),
                                                    resumed=self.resuming)
            cpus = float(manager.cluster_resources().get("CPU", 1.0))
            nodes = manager.alive_nodes()
            at_once = self.spec.parallel or max(1, int(cpus) // base.num_actors)
            at_once = min(at_once, len(self.planned))
            self.on_event(
                f"{len(self.planned)} runs, {at_once} at a time on {cpus:g} CPUs "
                f"({nodes} node{'s' * (nodes != 1)}); each run: {base.num_actors} training and "
                f"{base.num_eval_actors} evaluation actors; runs in {self.sweep_dir / RUNS_DIR}")
            outcomes: list[RunOutcome | None] = [None] * len(self.planned)
            with concurrent.futures.ThreadPoolExecutor(
                    max_workers=at_once, thread_name_prefix="raymanager-sweep") as threads:
                futures = {threads.submit(self._one, run, run_dir, manager): index
                           for index, (run, run_dir) in enumerate(
                               zip(self.planned, self.run_dirs, strict=True))}
                interrupted = self._wait(futures, manager)
                for future, index in futures.items():
                    outcomes[index] = future.result()
        finally:
            manager.shutdown()
        runs = [o for o in outcomes if o is not None]
        self.write_summary(force=True)
        stopped = interrupted or self.stop.is_set()
        tracking = self.trackers.finish("KILLED" if stopped else "FINISHED")
        return SweepResult(self.sweep_dir, runs, at_once, cpus, nodes, stopped, tuple(tracking))

    def _wait(self, futures: Mapping[concurrent.futures.Future[RunOutcome], int],
              manager: RayManager) -> bool:
        """Wait for every run; Ctrl-C stops them after their round, twice at once."""
        interrupted = False
        pending = set(futures)
        while pending:
            try:
                _, pending = concurrent.futures.wait(pending, timeout=0.5)
            except KeyboardInterrupt:
                if interrupted:  # the second Ctrl-C: do not wait for the rounds
                    self.on_event("stopping now: the runs keep their last checkpoints")
                    manager.shutdown()
                    continue
                interrupted = True
                self.stop.set()
                self.on_event("stopping: each run saves a checkpoint after its round in "
                              "progress (Ctrl-C again to stop now); resume with "
                              f"`{resume_command('sweep', self.sweep_dir)}`")
        return interrupted

    def _one(self, run: PlannedRun, run_dir: Path, manager: RayManager) -> RunOutcome:
        if self.stop.is_set():
            return RunOutcome(run.name, run_dir, "not started")
        started = time.monotonic() - self.started
        self.on_event(f"{run.name}: started")

        def on_round(row: Mapping[str, Any]) -> None:
            if row.get("eval_return_mean") is not None:
                self.on_event(f"{run.name}: round {row['round']}, eval "
                              f"{float(row['eval_return_mean']):.1f} (target {row['target']:g}), "
                              f"{float(row['seconds']):.0f} s")
                self.write_summary()

        try:
            if checkpoint_exists(run_dir):
                config = resume_config(run_dir, self.changes)
                summary = train(config, resume=run_dir, manager=manager, stop=self.stop,
                                on_round=on_round, tracking_parents=self.trackers.children())
            else:  # new, or stopped before its first checkpoint: from the start
                config = dataclasses.replace(run.config, output_dir=str(run_dir.parent))
                summary = train(config, manager=manager, stop=self.stop, on_round=on_round,
                                overwrite=True, tracking_parents=self.trackers.children())
        except Exception as error:  # one run's failure is reported; the others go on
            logger.debug("run %s failed", run.name, exc_info=True)
            reason = (str(error).splitlines() or [type(error).__name__])[0]
            self.on_event(f"{run.name}: failed: {type(error).__name__}: {reason}")
            return RunOutcome(run.name, run_dir, "failed", error=f"{type(error).__name__}: "
                              f"{reason}", started_s=started,
                              ended_s=time.monotonic() - self.started)
        state = ("stopped" if summary.interrupted else
                 "solved" if summary.solved else "budget")
        where = f" on {len(summary.nodes)} node{'s' * (len(summary.nodes) != 1)}" \
            if summary.nodes else ""
        self.on_event(f"{run.name}: {state} after {summary.rounds} rounds, "
                      f"{summary.seconds:.0f} s{where}")
        self.write_summary()
        return RunOutcome(run.name, run_dir, state, summary, started_s=started,
                          ended_s=time.monotonic() - self.started)

    def write_summary(self, *, force: bool = False) -> None:
        """Rewrite summary.csv / .md / .png, at most every SUMMARY_EVERY_S unless forced."""
        with self._summary_lock:
            now = time.monotonic()
            if not force and now - self._summary_at < SUMMARY_EVERY_S:
                return
            self._summary_at = now
            try:
                write_summary(summarize(self.sweep_dir, self.run_dirs,
                                        varying=self.spec.varying))
            except Exception as error:  # a summary that cannot be drawn must not stop runs
                logger.warning("could not write the sweep's summary in %s (%s)",
                               self.sweep_dir, error, exc_info=logger.isEnabledFor(logging.INFO))

