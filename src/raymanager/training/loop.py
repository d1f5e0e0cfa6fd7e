"""The main job's loop: rounds of training on one pool, evaluations on another.

Read top to bottom, one round is::

    broadcast the round's weights to every TrainingActor (put once)
    hand the pool this round's seeds, cut into batches; each batch's result is
        its seeds' returns (+ observation statistics for ARS), not weights
    the driver takes the step from all results in batch order (independent of
        which actor ran what); see raymanager.rounds.run_round
    every `eval_every` rounds: broadcast the weights to the EvaluationActors,
        run `eval_episodes` seeded episodes, stop when the mean return reaches
        the target (the environment's reward threshold: 475 for CartPole-v1)
    append a row to metrics.csv; checkpoint after each evaluation

    >>> summary = train(TrainConfig(max_rounds=5, output_dir="runs"))  # doctest: +SKIP
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymanager.actors.evaluation import EvaluationActor
from raymanager.actors.training import TrainingActor
from raymanager.agents.base import Agent, make_agent, round_seeds
from raymanager.config import RayConfig
from raymanager.manager import RayManager
from raymanager.pool import ActorPool
from raymanager.rounds import run_round
from raymanager.rundir import (
    CURVE_FILE,
    Checkpoint,
    DirectoryLock,
    load_checkpoint,
    remove_run_files,
    tensorboard_scalars,
)
from raymanager.tracking import Trackers, check_trackers
from raymanager.training.evaluation import evaluate_weights, without_episode_lists
from raymanager.training.options import TrainConfig, check_resumable
from raymanager.training.plan import TrainPlan, plan_run
from raymanager.training.run_files import RunFiles, claim_new_run_dir, read_run_config
from raymanager.training.tracked import finish_trackers, start_trackers

__all__ = ["ProgressHook", "TrainSummary", "train"]

logger = logging.getLogger("raymanager")

#: Called after each round with its metrics row and the run's budgets.
ProgressHook = Callable[[dict[str, Any]], None]


@dataclass
class TrainSummary:
    """What a training run did."""

    run_dir: Path
    rounds: int
    env_steps: int
    seconds: float
    solved: bool
    target_return: float
    last_eval: dict[str, Any] | None
    interrupted: bool = False
    #: Files of the run that could not be written although the run itself
    #: finished (the learning curve on a full disk): the run's files are incomplete.
    incomplete: tuple[str, ...] = ()
    #: The Ray nodes its training actors started on (empty when no round ran).
    nodes: tuple[str, ...] = ()
    #: Where its experiment trackers keep it: lines to print (``--tracker``).
    tracking: tuple[str, ...] = ()


@dataclass(frozen=True)
class _TrainingState:
    """Where training stands after its last complete round: what a checkpoint holds."""

    round: int = 0
    env_steps: int = 0
    episodes: int = 0
    weights: dict[str, np.ndarray] | None = None
    last_eval: dict[str, Any] | None = None
    solved: bool = False


def train(
    config: TrainConfig | TrainPlan | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    on_round: ProgressHook | None = None,
    overwrite: bool = False,
    manager: RayManager | None = None,
    stop: threading.Event | None = None,
    tracking_parents: Mapping[str, Mapping[str, Any]] | None = None,
) -> TrainSummary:
    """Train until the target return, the round budget or the time budget.

    A new run gets a directory of its own under ``output_dir`` (see
    :func:`~raymanager.training.new_run_dir`; ``overwrite`` replaces an existing
    ``run_name``). With ``resume`` (a run directory) training continues from its
    checkpoint with the run's own options, budgets included; ``config`` may
    change only :data:`~raymanager.training.RESUMABLE_OPTIONS` (build it with
    :func:`~raymanager.training.resume_config`). Ctrl-C, or ``stop`` being set,
    saves a checkpoint of the last complete round and returns with
    ``interrupted=True``.

    One process at a time writes a run directory: its lock is held from the
    start to the return, and a run that another process is writing raises
    :class:`~raymanager.errors.RunLockedError` before Ray starts.

    ``config.trackers`` also log the run to MLflow / W&B (see
    :mod:`raymanager.tracking`); ``tracking_parents`` (a sweep's) make each
    tracker run a child of the sweep's. A resumed run continues its tracker runs.

    Without ``manager`` the run starts its own Ray (a private local one, or
    the cluster at ``config.address``) and shuts it down at the end; with one
    (a sweep's) it starts its pools on that Ray and shuts down only them.

    Example::

        >>> summary = train(TrainConfig(max_rounds=3, progress=False))   # doctest: +SKIP
        >>> summary.rounds                                               # doctest: +SKIP
        3
    """
    start = time.monotonic()
    checkpoint: Checkpoint | None = None
    if resume is not None:
        run_dir = Path(resume)
        read_run_config(run_dir)  # not a run directory: say so before writing a lock into it
        # One writer at a time: the run's files are read under the lock, so a
        # run still training elsewhere is refused here, before Ray starts.
        lock = DirectoryLock(run_dir).acquire()
        try:
            checkpoint = load_checkpoint(run_dir)
            saved = read_run_config(run_dir)
            config = saved if config is None else config
            check_resumable(saved, config.config if isinstance(config, TrainPlan) else config,
                            run_dir)
            plan = config if isinstance(config, TrainPlan) else plan_run(config)
            check_trackers(plan.config.trackers)  # a missing extra fails before Ray
        except BaseException:
            lock.release()
            raise
    elif config is None:
        raise TypeError("train() needs a TrainConfig, or resume= a run directory")
    else:
        plan = config if isinstance(config, TrainPlan) else plan_run(config)
        check_trackers(plan.config.trackers)  # a missing extra fails before any file or Ray
        lock = claim_new_run_dir(plan.config, overwrite=overwrite)
        run_dir = lock.directory
    try:
        return _train_locked(plan, run_dir, checkpoint, lock, start, on_round, manager, stop,
                             tracking_parents)
    finally:
        lock.release()


def _train_locked(plan: TrainPlan, run_dir: Path, checkpoint: Checkpoint | None,
                  lock: DirectoryLock, start: float, on_round: ProgressHook | None,
                  manager: RayManager | None, stop: threading.Event | None,
                  tracking_parents: Mapping[str, Mapping[str, Any]] | None) -> TrainSummary:
    """:func:`train` once its run directory's lock is held."""
    new = checkpoint is None
    try:
        files = RunFiles(run_dir, plan.config, checkpoint.round if checkpoint else None)
    except BaseException:
        if new:  # a run that could not write its first files leaves no folder
            remove_run_files(run_dir, lock=lock)
        raise
    standing = _TrainingState() if checkpoint is None else _TrainingState(
        checkpoint.round, checkpoint.env_steps, checkpoint.episodes, checkpoint.weights,
        checkpoint.last_eval,
        bool(checkpoint.last_eval and checkpoint.last_eval["return_mean"] >= plan.target))
    seconds_before = checkpoint.seconds if checkpoint else 0.0
    if checkpoint is not None and (standing.solved or standing.round >= plan.max_rounds or (
            plan.max_seconds is not None and seconds_before >= plan.max_seconds)):
        files.close()
        logger.warning("%s: nothing to do: %s", run_dir, "solved" if standing.solved else
                       "its budget is spent (raise --max-rounds / --max-seconds to go on)")
        return TrainSummary(run_dir, standing.round, standing.env_steps, seconds_before,
                            standing.solved, plan.target, without_episode_lists(standing.last_eval))
    loop = _Loop(plan, files, standing, seconds_before, start, on_round, stop)
    try:
        owned = manager is None
        if manager is None:
            manager = RayManager(RayConfig(address=plan.config.address,
                                           num_cpus=plan.config.num_cpus))
    except BaseException:
        files.close()
        if new:  # a run that never started leaves no directory behind
            remove_run_files(run_dir, lock=lock)
        raise
    # Opened once Ray is up (a run that never started has no tracker run), in
    # the background: a tracker server that is slow to answer costs no round.
    loop.trackers = start_trackers(plan, run_dir, resumed=checkpoint is not None,
                                   parents=tracking_parents)
    try:
        interrupted = loop.run(manager, owned)
    except BaseException as error:
        finish_trackers(loop.trackers, run_dir, "KILLED" if isinstance(
            error, KeyboardInterrupt) else "FAILED", drawn=False)
        if new and not loop.pools_started:
            # Its pools could not start (too large for the cluster, say): a
            # run that never started leaves no directory behind.
            files.close()
            remove_run_files(run_dir, lock=lock)
        raise
    finally:
        files.close()
        if owned:
            manager.shutdown()
    summary = loop.summary(run_dir, interrupted)
    lines = finish_trackers(loop.trackers, run_dir, "KILLED" if interrupted else "FINISHED",
                            drawn=not summary.incomplete)
    return dataclasses.replace(summary, tracking=tuple(lines))


@dataclass
class _PendingEval:
    """A trained round whose evaluation is still running: its row and standing so far."""

    row: dict[str, Any]
    standing: _TrainingState
    evaluation: concurrent.futures.Future[tuple[dict[str, Any], float]]


class _Loop:
    """One run's rounds, from its standing to a budget, the target, or a stop."""

    def __init__(self, plan: TrainPlan, files: RunFiles, standing: _TrainingState,
                 seconds_before: float, start: float, on_round: ProgressHook | None,
                 stop: threading.Event | None) -> None:
        self.plan, self.files, self.standing = plan, files, standing
        self.seconds_before, self.start = seconds_before, start
        self.on_round, self.stop = on_round, stop
        self.nodes: tuple[str, ...] = ()
        self.trackers: Trackers | None = None
        self.pools_started = False

    def elapsed(self) -> float:
        return self.seconds_before + time.monotonic() - self.start

    def save(self, seconds: float | None = None) -> None:
        """Checkpoint the standing; ``seconds``: the run'state clock at its round'state end
        (now by default; an overlapped evaluation ended before the save)."""
        state = self.standing
        if state.weights is None:  # stopped before the first weights existed
            return
        seconds = self.elapsed() if seconds is None else seconds
        self.files.checkpoint(Checkpoint(state.weights, state.round, state.env_steps, seconds,
                                         dataclasses.asdict(self.plan.config),
                                         without_episode_lists(state.last_eval),
                                         episodes=state.episodes))

    def run(self, manager: RayManager, owned: bool) -> bool:
        """The rounds; True when Ctrl-C or ``stop`` ended them."""
        plan, agent_config = self.plan, dict(self.plan.agent_config)
        train_pool = manager.create_actor_pool(TrainingActor, agent_config, plan.config.num_actors)
        try:
            eval_pool = manager.create_actor_pool(EvaluationActor, agent_config,
                                                  plan.config.num_eval_actors)
        except BaseException:
            train_pool.shutdown()
            raise
        self.pools_started = True
        self.nodes = tuple(sorted({node for node in train_pool.node_ids() if node}))
        interrupted = False
        try:
            # The driver's copy of the agent takes each round's step from the results.
            learner = make_agent(agent_config)
            if self.standing.weights is None:
                weights = train_pool.broadcast("get_weights")[0]
                self.standing = dataclasses.replace(self.standing, weights=weights)
            try:
                interrupted = self._rounds(manager, train_pool, eval_pool, learner)
            except KeyboardInterrupt:
                interrupted = True
            if interrupted:
                logger.warning("%s: stopped: saving a checkpoint at round %d",
                               self.files.run_dir, self.standing.round)
            self.save()
            self.files.keep_rounds_up_to(self.standing.round)
        finally:
            if not owned:  # a shared Ray outlives the run: its pools do not
                train_pool.shutdown()
                eval_pool.shutdown()
        return interrupted

    def _rounds(self, manager: RayManager, train_pool: ActorPool, eval_pool: ActorPool,
                learner: Agent) -> bool:
        """The rounds; with ``overlap_eval``, each evaluation runs beside the next round.

        An evaluated round is committed (its row written, the standing moved,
        the checkpoint saved) once its evaluation is back, which is after the
        next round's training when the two overlap. That next round started
        from the evaluated round's weights, as it would have after a barrier,
        so a run's rounds, rows and checkpoints are the same either way; only
        when the evaluation reaches the target is the next round's training
        dropped, unrecorded.
        """
        plan = self.plan
        # Throughput is over training time: Ray's and the actors' start-up excluded.
        ready_at, steps_at_ready = time.monotonic(), self.standing.env_steps
        pending: _PendingEval | None = None
        evaluator = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="raymanager-eval")
        try:
            while True:
                # The head: where the next round starts from, committed or not.
                head = self.standing if pending is None else pending.standing
                if head.solved or head.round >= plan.max_rounds:
                    return False
                if plan.max_seconds is not None and self.elapsed() >= plan.max_seconds:
                    return False
                if self.stop is not None and self.stop.is_set():
                    return True
                assert head.weights is not None
                seeds = round_seeds(plan.seed, head.round, plan.seeds_per_round)
                step = run_round(manager, train_pool, head.weights, seeds, plan.train_batch,
                                 learner)
                if pending is not None:
                    current, pending = pending, None
                    if self._commit_when_evaluated(current, ready_at, steps_at_ready):
                        return False  # the target is met: the round just trained is dropped
                    head = self.standing
                train_steps = int(step.metrics["env_steps"])
                train_episodes = int(step.metrics["episodes"])
                round_index = head.round + 1
                row: dict[str, Any] = {
                    "round": round_index,
                    "train_env_steps": train_steps,
                    "fitness_mean": step.metrics["fitness_mean"],
                    "fitness_max": step.metrics["fitness_max"],
                    "loss": step.metrics["loss"],
                    "restarts": train_pool.restarts + eval_pool.restarts,
                    "episodes": head.episodes + train_episodes,
                    "train_episodes": train_episodes,
                    "batches": step.batches,
                    "result_bytes": step.result_bytes,
                    "broadcast_bytes": step.broadcast_bytes,
                    "bytes_per_round": step.result_bytes + step.broadcast_bytes,
                    "env_steps": head.env_steps + train_steps,
                }
                after = _TrainingState(round_index, head.env_steps + train_steps,
                                       head.episodes + train_episodes, step.weights,
                                       head.last_eval, False)
                if round_index % plan.eval_every and round_index != plan.max_rounds:
                    row["seconds"] = self.elapsed()
                    self._commit(row, after, ready_at, steps_at_ready)
                    continue
                evaluation = evaluator.submit(self._evaluate, manager, eval_pool, step.weights,
                                              round_index)
                if not plan.config.overlap_eval or round_index == plan.max_rounds:
                    self._commit_when_evaluated(_PendingEval(row, after, evaluation), ready_at,
                                                steps_at_ready)
                else:
                    pending = _PendingEval(row, after, evaluation)
        except BaseException:
            # Ctrl-C or an error during the next round: the evaluation still
            # completes its own round (unless it failed too, or a second Ctrl-C
            # comes), so the checkpoint is the latest complete round.
            awaiting, pending = pending, None
            if awaiting is not None:
                with contextlib.suppress(Exception):
                    self._commit_when_evaluated(awaiting, ready_at, steps_at_ready)
            raise
        finally:
            if pending is not None:  # a budget or a stop ended the rounds
                self._commit_when_evaluated(pending, ready_at, steps_at_ready)
            # Every evaluation we still wanted is settled by now.
            evaluator.shutdown(wait=False)

    def _evaluate(self, manager: RayManager, eval_pool: ActorPool,
                  weights: dict[str, np.ndarray], round_index: int) -> tuple[dict[str, Any],
                                                                             float]:
        """An evaluation and the run's clock when it ended (in the evaluator's thread)."""
        evaluation = evaluate_weights(manager, eval_pool, weights, self.plan, round_index)
        return evaluation, self.elapsed()

    def _commit_when_evaluated(self, pending: _PendingEval, ready_at: float,
                               steps_at_ready: int) -> bool:
        """Wait for a pending evaluation, then commit its round; True when it met the target."""
        evaluation, seconds = pending.evaluation.result()
        solved = bool(evaluation["return_mean"] >= self.plan.target)
        row = {**pending.row, **{f"eval_{k}": evaluation[k] for k in (
            "return_mean", "return_std", "return_min", "return_max", "length_mean",
            "episodes")}, "seconds": seconds}
        standing = dataclasses.replace(pending.standing, last_eval=evaluation, solved=solved)
        self._commit(row, standing, ready_at, steps_at_ready, seconds)
        return solved

    def _commit(self, row: dict[str, Any], standing: _TrainingState, ready_at: float,
                steps_at_ready: int, eval_seconds: float | None = None) -> None:
        """Write a finished round's row, then move the standing to it (checkpointed if
        evaluated), then tell the progress hook."""
        self.files.append(row)  # in metrics.csv's column order, whatever the row's
        if self.trackers is not None:  # queued: the tracker's own thread sends it
            self.trackers.log_metrics(tensorboard_scalars(row), int(row["round"]))
        # The row is written: this round is what a stop now rolls back to,
        # so that the checkpoint and metrics.csv always agree.
        self.standing = standing
        if eval_seconds is not None:
            self.save(eval_seconds)
        if self.on_round is not None:
            self.on_round({**row, "target": self.plan.target,
                           "max_rounds": self.plan.max_rounds,
                           "max_seconds": self.plan.max_seconds,
                           "training_seconds": time.monotonic() - ready_at,
                           "training_env_steps": self.standing.env_steps - steps_at_ready})

    def summary(self, run_dir: Path, interrupted: bool) -> TrainSummary:
        incomplete: tuple[str, ...] = ()
        try:
            self.files.plot(self.plan.target)
        except Exception as error:  # a missing plot must not lose a finished run
            curve = run_dir / CURVE_FILE
            reason = (f"{error.strerror}: {error.filename}"
                      if isinstance(error, OSError) and error.strerror and error.filename
                      else (str(error).splitlines() or [type(error).__name__])[0])
            # One line; the traceback only with -v (INFO), for a bug report.
            logger.warning("could not draw the learning curve %s (%s); the run's other files "
                           "are complete", curve, reason,
                           exc_info=logger.isEnabledFor(logging.INFO))
            incomplete = (str(curve),)
        state = self.standing
        return TrainSummary(run_dir, state.round, state.env_steps, self.elapsed(), state.solved,
                            self.plan.target, without_episode_lists(state.last_eval),
                            interrupted, incomplete, self.nodes)

