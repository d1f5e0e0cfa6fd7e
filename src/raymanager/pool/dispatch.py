"""One run of a pool over a batch source: dispatch, collect, recover, deliver.

A remote call carries a *group* of consecutive batches, sized from measured
batch times to ~100 ms of work, so tiny batches do not each pay a call's cost.
Accounting is nevertheless per batch:

- the worker reports one result or failure per batch (``ActorHost.run``);
- when a call fails in a way that cannot be pinned on one of its batches
  (its actor died or hung while running it, or its reply does not travel),
  nobody is charged: the group is split and its batches re-run one per call;
- a one-batch call that fails is charged to that batch alone: a retry when
  its worker died or timed out (up to ``max_retries``), else its BatchError.

So a batch that kills its worker costs its group one re-run, and only that
batch fails; ``timeout_s`` is per batch, not per group.

Every change of run state happens under the pool's lock: the pool reports the
fate of our calls (``call_done`` / ``call_lost``) when a broadcast or another
thread sees an actor die first.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from raymanager.batching import BatchSource, Group, MappedFileUnavailable, slice_rows
from raymanager.config import BatchConfig
from raymanager.errors import (
    BatchError,
    BatchTimeoutError,
    RemoteTraceback,
    WorkerDiedError,
)
from raymanager.journal import NOT_RECORDED, Journal
from raymanager.pool.actor_pool import ActorPool
from raymanager.pool.host import CallSpec, Failure, Report
from raymanager.pool.ray_errors import FailureKind, classify, user_cause
from raymanager.pool.slots import Call, Loss, LossKind, Slot, SlotState

__all__ = ["TIMED_OUT", "Deadline", "ProgressCallback", "Run"]

logger = logging.getLogger("raymanager")

ProgressCallback = Callable[[int, int], None]

#: Work per remote call the group sizing aims at: long enough that the call's
#: fixed cost (~1-2 ms of CPU in the driver and ~0.5 ms in the actor, on the
#: same cores as the work on a small machine) is a couple of percent, short
#: enough that actors rarely wait on each other at the end of a run (the last
#: calls are cut shorter anyway). 50 ms cost W1 ~4 % against 100 ms here.
TARGET_CALL_SECONDS = 0.1
#: Work per call below which a call's fixed cost would dominate: the tail of a
#: run of tiny batches is not cut finer than this.
MIN_CALL_SECONDS = 0.005
#: A second call is queued on a busy actor for batches at most this long: there
#: it hides the driver's reaction time between two calls. For longer batches a
#: queued call could wait behind a slow batch while another actor sits idle, so
#: it is queued only while at least QUEUE_AHEAD_CALLS_LEFT full calls per actor
#: of work are left: the tail, where the calls shrink and an idle actor should
#: take what is left, has no queued calls. With many actors the reaction time
#: grows (calls that finish close together wait for one driver): 64 actors on
#: sleep-bound 21 ms batches were busy 0.87-0.89 of the time with no queued
#: call, 0.89-0.90 with one while 4 calls per actor were left, 0.89-0.93 while 2.
QUEUE_AHEAD_MAX_BATCH_S = 0.02
QUEUE_AHEAD_CALLS_LEFT = 2
#: A call running past STRAGGLER_FACTOR x its expected time + STRAGGLER_SLACK_S
#: is a straggler: nothing more is queued behind it.
STRAGGLER_FACTOR = 4.0
STRAGGLER_SLACK_S = 0.05
#: Seconds a stopped run lets its calls in flight finish before their actors
#: are killed and replaced instead (no ray.cancel: see _abort).
CANCEL_GRACE_SECONDS = 2.0
#: The driver's fixed cost of one remote call (submit, wait, get, bookkeeping),
#: measured with benchmarks/driver_scaling.py: ~0.9 ms of our code at one batch
#: per call, and Ray's threads in the driver process cost about as much again
#: (1.5-2.1 ms in all at 2 to 64 actors; 1 ms here gave 64 actors 0.82 of the
#: ideal throughput, 2 ms 0.86).
DRIVER_SECONDS_PER_CALL = 0.002
#: Calls are sized so that cost keeps the driver busy at most 1/DRIVER_SHARE of the time.
DRIVER_SHARE = 4.0
#: With more calls in flight than this, one scan takes every finished call
#: (with few, a second ray.wait per result would cost more than it saves).
SCAN_ALL_FROM = 8
#: Longest single wait, so a run notices a shutdown or a slot to restart.
POLL_SECONDS = 1.0


@dataclass
class Deadline:
    """When the caller stops waiting for the next result (``next(timeout=...)``)."""

    at: float | None = None


#: Yielded by :meth:`Run.chunks` instead of results when the deadline passed;
#: the run stays suspended and goes on at the next ``next()``.
TIMED_OUT = object()


@dataclass
class _Raise:
    """A batch error of an ``on_error="raise"`` run, raised at its position."""

    error: BatchError


class Run:
    """One pass of a pool over a source; iterate :meth:`chunks`."""

    def __init__(
        self,
        pool: ActorPool,
        source: BatchSource,
        config: BatchConfig,
        *,
        shared_ref: Any = None,
        on_progress: ProgressCallback | None = None,
        ordered: bool = True,
        deadline: Deadline | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.pool = pool
        self.deadline = deadline if deadline is not None else Deadline()
        self.journal = journal
        #: Slots whose worker cannot map the source's file: they get rows inline.
        self.no_file: set[int] = set()
        self.source = source
        self.config = config
        self.shared_ref = shared_ref
        self.on_progress = on_progress
        self.ordered = ordered
        self.width = min(config.num_parallel, pool.max_actors)
        self.calls: dict[Any, Call] = {}
        self.calls_per_slot: Counter[int] = Counter()
        self.retry: list[tuple[int, int, Group]] = []  # heap by first batch index
        self.retry_seq = 0
        self.done: dict[int, Any] = {}
        self.next_to_yield = 0
        self.delivered = 0
        self.stop_at: int | None = None
        self.batches_done = 0
        self.rows_done = 0
        self.inflight_bytes = 0
        self.seconds_per_batch: float | None = None
        self.closed = False
        pool.queued_batches = lambda: sum(group.count for _, _, group in self.retry) + (
            self.source.remaining_batches() or 0)

    # ----------------------------------------------------------------- the loop

    def chunks(self) -> Iterator[Any]:
        """Yield lists of ``(batch index, result)``: every result deliverable at
        once, in input order when ``ordered``; a batch error raises at its own
        position, after every list before it.

        Yields :data:`TIMED_OUT` instead when ``deadline`` passes first. One
        list per call rather than one item per batch: a call of 1,000 trivial
        batches costs the driver one resume of this generator, not 1,000.
        """
        completed = False
        lock = self.pool.locked()
        try:
            while True:
                with lock:
                    self._check_pool()
                    self.pool.poll()
                    self._start_clocks()
                    self._expire_timeouts()
                    self._fill()
                while self._deliverable():
                    yield self._pop_ready()  # no reference kept once handed over
                with lock:
                    if self._finished():
                        break
                if self.deadline.at is not None and time.monotonic() >= self.deadline.at:
                    yield TIMED_OUT
                    continue
                with lock:
                    self._check_stall()
                    refs = list(self.calls) + [
                        s.ready_ref for s in self.pool.slots
                        if s.state is SlotState.STARTING and s.ready_ref is not None
                    ]
                    timeout = self._wait_timeout()
                    replayed = self.journal is not None and self.journal.replayed()
                if replayed and not refs:
                    continue  # results read back from a journal need no actor: go on at once
                with self.pool.ray_call():
                    ready = self._wait(refs, 0.0 if replayed else timeout)
                with lock:
                    self.pool.check_usable()
                    for ref in ready:
                        call = self.calls.get(ref)
                        if call is not None:
                            self._collect(call)
            self._check_complete()
            completed = True
        except KeyboardInterrupt:
            # The user wants out now: no grace period, no replacements.
            logger.warning("interrupted: killing the %d actors of this pool", self.pool.num_actors)
            self.pool.shutdown()
            completed = True
            raise
        finally:
            self.closed = True
            if not completed:
                self._abort()

    @staticmethod
    def _wait(refs: list[Any], timeout: float) -> list[Any]:
        """Every ref ready now, in one scan; else block until one is (or timeout)."""
        if not refs:  # every slot is backing off: wait for the next start
            time.sleep(min(timeout, 0.05))
            return []
        if len(refs) > SCAN_ALL_FROM:
            # One scan that takes every finished call, not one scan per result:
            # with many actors, several calls are done by the time we look.
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            if ready:
                return ready
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        return ready

    def _check_pool(self) -> None:
        self.pool.check_usable()
        if not self.pool.alive_or_hopeful():
            error = self.pool.no_actor_error()
            self.pool.break_pool()
            raise error

    def _finished(self) -> bool:
        return self.source.exhausted and not self.calls and not self.retry and not self.done

    def _check_stall(self) -> None:
        if self.calls or self.retry or self._deliverable():
            return
        if self.source.exhausted or self.stop_at is not None:
            raise RuntimeError(  # a bug of ours: never lose batches quietly
                f"raymanager stalled: batch {self.next_to_yield} is neither done nor pending"
            )

    def _check_complete(self) -> None:
        total = self.source.num_batches
        if total is not None and self.delivered != total:
            raise RuntimeError(  # a bug of ours: never lose batches quietly
                f"raymanager delivered {self.delivered} of {total} batches"
            )

    # ----------------------------------------------------------------- delivery

    def _deliverable(self) -> bool:
        return (self.next_to_yield in self.done) if self.ordered else bool(self.done)

    def _pop_ready(self) -> list[tuple[int, Any]]:
        """Every deliverable result, up to (not including) the next batch error.

        A batch error is raised on its own, once everything before it is out.
        """
        ready: list[tuple[int, Any]] = []
        with self.pool.locked():
            self.pool.check_usable()  # nothing more is handed out after a shutdown
            done = self.done
            index = self.next_to_yield
            while done:
                if self.ordered and index not in done:
                    break
                key = index if self.ordered else next(iter(done))
                is_error = isinstance(done[key], _Raise)
                if is_error and ready:
                    break  # raised by the next call, after these are out
                ready.append((key, done.pop(key)))
                index += 1
                if is_error:
                    break
            if self.ordered:
                self.next_to_yield = index
            self.delivered += len(ready)
        if isinstance(ready[0][1], _Raise):
            raise ready[0][1].error
        return ready

    # ----------------------------------------------------------------- sizing

    def _group_size(self) -> int:
        if self.seconds_per_batch is None:
            return 1  # the first call on each actor measures how long a batch takes
        per_batch = max(self.seconds_per_batch, 1e-7)
        # With many actors the driver's fixed cost per call bounds throughput:
        # longer calls keep it busy at most 1/DRIVER_SHARE of the time. A fixed
        # figure, not a measured one: a measured cost per call includes work
        # per batch (pickling rows), which grows with the group and would feed
        # back into ever larger groups.
        target = max(TARGET_CALL_SECONDS, DRIVER_SHARE * self.width * DRIVER_SECONDS_PER_CALL)
        if self.config.timeout_s is not None:
            # A hang inside a group is found only as a whole: keep groups well
            # under the timeout so it still fires about timeout_s after it began.
            target = min(target, self.config.timeout_s / 4)
        size = max(1, int(target / per_batch))
        remaining = self.source.remaining_batches()
        if remaining is not None:
            # Guided self-scheduling: never more than a share of what is left,
            # so the last calls are short and no actor waits long at the end;
            # but never so short that the call's own cost dominates its work.
            floor = max(1, math.ceil(MIN_CALL_SECONDS / per_batch))
            size = min(size, max(floor, math.ceil(remaining / (2 * self.width))))
        batch_nbytes = self.source.batch_nbytes
        if batch_nbytes:
            # Inline data: all calls in flight together stay within the byte bound.
            # Two calls per actor, and each holds its rows twice in the driver
            # (the rows and their pickled copy until the call is done).
            share = self.config.max_inflight_bytes // (4 * self.width)
            size = min(size, max(1, share // batch_nbytes))
        return size

    def _depth(self) -> int:
        """Calls to keep queued on one actor (see QUEUE_AHEAD_MAX_BATCH_S)."""
        if self.pool.max_concurrency > 1:
            return self.pool.max_concurrency  # they run side by side, none waits
        per_batch = self.seconds_per_batch
        if per_batch is None:
            return 1  # nothing is queued behind a batch nobody has timed
        if per_batch <= QUEUE_AHEAD_MAX_BATCH_S:
            return 2
        remaining = self.source.remaining_batches()  # None: a stream of unknown length
        far_from_tail = (remaining is not None and remaining
                         >= QUEUE_AHEAD_CALLS_LEFT * self.width * self._group_size())
        return 2 if far_from_tail else 1

    def _window_open(self) -> bool:
        # Bound what is sent but not yet handed to the caller: results wait in
        # `done` for an earlier slow batch, and inputs sit in the object store.
        window = max(64, 8 * self.width * self._group_size())
        if self.source.batches_taken - self.next_to_yield >= window:
            return False
        return self.inflight_bytes < self.config.max_inflight_bytes

    # ----------------------------------------------------------------- dispatch

    def _fill(self) -> None:
        """Send work to free actors (lock held): retries first, then new groups."""
        depth = self._depth()
        while True:
            slot = self._free_slot(depth)
            if slot is None:
                in_use = sum(1 for n in self.calls_per_slot.values() if n)
                if in_use < self.width and self._work_waiting():
                    self.pool.grow()  # an elastic pool below its max
                return
            if slot.calls and self.retry and self.retry[0][2].suspect:
                # A suspect runs alone: look for an idle actor instead.
                idle = self._free_slot(1)
                if idle is None:
                    return
                slot = idle
            group = self._next_group(self.pool.batches_left(slot))
            if group is None:
                return
            self._send(slot, group)

    def _free_slot(self, depth: int) -> Slot | None:
        """The ready actor with the fewest calls, within ``num_parallel`` actors."""
        best: Slot | None = None
        in_use = sum(1 for n in self.calls_per_slot.values() if n)
        now = time.monotonic()
        for slot in self.pool.slots:
            if slot.state is not SlotState.READY or len(slot.calls) >= depth:
                continue
            if self.pool.batches_left(slot) == 0:
                continue  # due for recycling once its calls are done
            if slot.calls and not self._queue_behind(slot, now):
                continue
            if not self.calls_per_slot[slot.index] and in_use >= self.width:
                continue
            if best is None or len(slot.calls) < len(best.calls):
                best = slot
                if not slot.calls:
                    break
        return best

    def _work_waiting(self) -> bool:
        if self.retry:
            return True
        return not self.source.exhausted and self.stop_at is None and self._window_open()

    def _queue_behind(self, slot: Slot, now: float) -> bool:
        """Whether a call may wait behind the ones ``slot`` is running.

        Only behind calls of known, on-time duration (when a second call is
        wanted at all is :meth:`_depth`'s rule): a call queued behind a batch
        nobody has timed yet, or behind a straggler, would hold up a result
        that an idle actor could have made (Ray gh-23107).
        """
        if any(call.group is not None and call.group.suspect for call in slot.calls):
            return False  # a suspect runs alone
        if self.pool.max_concurrency > 1:
            return True
        for call in slot.calls:
            if call.expected is None:
                return False
        head = slot.calls[0]
        if head.started is not None and head.expected is not None:
            # Generous: on a loaded machine calls often take twice their time,
            # and refusing to queue then would idle the actor between calls.
            return now - head.started <= STRAGGLER_FACTOR * head.expected + STRAGGLER_SLACK_S
        return True

    def _next_group(self, room: int | None = None) -> Group | None:
        """Retries first, then the source's next group (of at most ``room`` batches)."""
        while True:
            while self.retry:
                _, _, retried = heapq.heappop(self.retry)
                if self.stop_at is None or retried.first < self.stop_at:
                    return retried
            if self.stop_at is not None or not self._window_open():
                return None
            size = self._group_size()
            group = self.source.take(size if room is None else max(1, min(size, room)))
            if group is None or self.journal is None or not self.journal.resuming:
                return group
            # A resumed run: batches in the journal are read back, not run again.
            for part in group.split(self.source.batch_size):
                recorded = self.journal.replay(part.first)  # JournalError if its input changed
                if recorded is not NOT_RECORDED:
                    self._done(part.first, recorded, rows=part.num_rows, recorded=True)
                else:
                    self._requeue(part)

    def _send(self, slot: Slot, group: Group) -> None:
        shared = self.shared_ref is not None
        data = self.shared_ref if shared else group.rows
        if shared and slot.index in self.no_file:
            # This worker cannot see the driver's file: its rows travel inline.
            shared = False
            data = np.asarray(slice_rows(self.source.shared, group.row_start, group.row_stop))
        spec = CallSpec(
            first=group.first,
            count=group.count,
            row_start=group.row_start,
            row_stop=group.row_stop,
            shared=shared,
            batch_size=self.source.batch_size,
            chunk_size=self.config.chunk_size,
            # A callback decides per batch, so the worker goes on after a failure.
            stop_on_error=self.config.on_error == "raise",
        )
        ref = slot.handle.run.remote(data, spec)
        # The clock of a call starts when it runs: now if its actor is idle,
        # else when the calls before it are done (_start_clocks).
        concurrent = self.pool.max_concurrency > 1
        started = time.monotonic() if not slot.calls or concurrent else None
        expected = None if self.seconds_per_batch is None else group.count * self.seconds_per_batch
        self.calls[ref] = self.pool.register_call(slot, self, ref, group=group, started=started,
                                           expected=expected)
        self.calls_per_slot[slot.index] += 1
        slot.sent_to_generation += group.count
        self.inflight_bytes += group.nbytes

    def _requeue(self, group: Group) -> None:
        self.retry_seq += 1
        heapq.heappush(self.retry, (group.first, self.retry_seq, group))

    # ----------------------------------------------------------------- outcomes

    def _forget(self, call: Call) -> bool:
        if self.calls.pop(call.ref, None) is None:
            return False
        self.calls_per_slot[call.slot.index] -= 1
        assert call.group is not None
        self.inflight_bytes -= call.group.nbytes
        return True

    def _collect(self, call: Call) -> None:
        """One of our calls is ready (lock held): take its report or its failure."""
        try:
            report: Report = ray.get(call.ref)
        except Exception as exc:
            kind = classify(exc)
            if isinstance(user_cause(exc), MappedFileUnavailable):
                self.pool.finished(call)
                self._forget(call)
                logger.warning("%s cannot map the data's file (%s): its rows go inline",
                               call.slot.label(self.pool.actor_name), user_cause(exc))
                self.no_file.add(call.slot.index)
                assert call.group is not None
                self._requeue(call.group)
            elif kind is FailureKind.CALL_FAILED:
                self.pool.finished(call)
                self._forget(call)
                self._unattributed_or_charged(call, exc)
            else:
                self.pool.lose_after_error(call, exc)
                if self._forget(call):  # an older generation: already replaced
                    assert call.group is not None
                    self._requeue(call.group)
            return
        self.pool.finished(call)
        self.call_done(call, report)

    def call_done(self, call: Call, value: Any) -> None:
        """The pool or :meth:`_collect` hands us a finished call's report."""
        if not self._forget(call) or self.closed:
            return
        report: Report = value
        group = call.group
        assert group is not None
        n = len(report.results)
        self.pool.record(call, n, report.seconds)
        if n and report.seconds > 0:
            per_batch = report.seconds / n
            old = self.seconds_per_batch
            self.seconds_per_batch = per_batch if old is None else 0.7 * old + 0.3 * per_batch
        for k, result in enumerate(report.results):
            if isinstance(result, Failure):
                self._batch_raised(group.first + k, result, call, group.attempts + 1)
            else:
                self._done(group.first + k, result, rows=_rows_of(group, k, self.source))

    def call_lost(self, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        """The pool lost the actor of one of our calls (lock held).

        ``running``: the call was the first unfinished one on its actor;
        ``alone``: no other call was lost with it. Only a one-batch call that
        was running alone, or that timed out, is charged: when an actor dies
        with two calls, the first may have finished with its reply still on
        the wire, so which one killed it is unknown.
        """
        if not self._forget(call) or self.closed:
            return
        group = call.group
        assert group is not None
        attributable = running and (alone or loss.kind is LossKind.TIMED_OUT)
        if loss.kind is LossKind.PREEMPTED:
            self._requeue(group)  # preemption is not failure: no try used
        elif not running and loss.kind is LossKind.TIMED_OUT:
            self._requeue(group)  # only queued behind a hang: not charged
        elif not attributable or group.count > 1:
            # Charge none, and re-run the batches alone, one per call, so a
            # culprit shows itself.
            for part in group.split(self.source.batch_size):
                part.suspect = True
                self._requeue(part)
        else:
            self._charge(group, loss)

    def _unattributed_or_charged(self, call: Call, exc: BaseException) -> None:
        group = call.group
        assert group is not None
        if group.count > 1:
            for part in group.split(self.source.batch_size):
                part.suspect = True
                self._requeue(part)
            return
        # A one-batch call whose reply fails to travel fails again if re-run.
        actor = call.slot.label(self.pool.actor_name)
        cause = user_cause(exc)
        error = BatchError(
            f"batch {group.first}'s result could not reach the driver from {actor}: "
            f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}",
            index=group.first, actor=actor, attempts=group.attempts + 1,
        )
        error.__cause__ = cause
        self._fail(group.first, error, group)

    def _charge(self, group: Group, loss: Loss) -> None:
        attempts = group.attempts + 1
        group.attempts = attempts
        self.pool.retries += 1
        if attempts <= self.config.max_retries:
            logger.warning(
                "retrying batch %d (attempt %d of %d) after %s: %s",
                group.first, attempts + 1, self.config.max_retries + 1, loss.actor, loss.reason,
            )
            self._requeue(group)
            return
        index = group.first
        error: BatchError
        if loss.kind is LossKind.TIMED_OUT:
            error = BatchTimeoutError(
                f"batch {index} timed out on all {attempts} tries "
                f"(timeout_s={self.config.timeout_s:g}); last on {loss.actor}",
                index=index, actor=loss.actor, attempts=attempts,
            )
        elif loss.kind is LossKind.OUT_OF_MEMORY:
            error = WorkerDiedError(
                f"batch {index} exhausts memory: it killed its worker on all {attempts} "
                f"tries; last on {loss.actor}",
                index=index, actor=loss.actor, attempts=attempts, out_of_memory=True,
            )
        else:
            error = WorkerDiedError(
                f"batch {index} lost its worker on all {attempts} tries ({loss.reason}); "
                f"last on {loss.actor}",
                index=index, actor=loss.actor, attempts=attempts,
            )
        self._fail(index, error, group)

    def _batch_raised(self, index: int, failure: Failure, call: Call, attempts: int) -> None:
        actor = call.slot.label(self.pool.actor_name)
        error = BatchError(
            f"batch {index} raised {failure.type_name} in {actor}",
            index=index, actor=actor, attempts=attempts,
        )
        cause = failure.exception if failure.exception is not None else RemoteTraceback(
            failure.traceback
        )
        if failure.exception is not None:
            cause.__cause__ = RemoteTraceback(failure.traceback)
        error.__cause__ = cause
        assert call.group is not None
        part = call.group.split(self.source.batch_size)[index - call.group.first]
        part.attempts = attempts
        self._fail(index, error, part)

    def _fail(self, index: int, error: BatchError, group: Group) -> None:
        """Batch ``index`` failed for good: raise, continue, or (a callback's choice) retry."""
        policy = self._policy(error)
        # "retry" re-runs the batch while it has tries left, then counts as "raise".
        if policy == "retry" and error.attempts <= self.config.max_retries:
            group.attempts = error.attempts
            logger.warning("retrying batch %d (attempt %d of %d), as on_error decided: %s",
                           index, group.attempts + 1, self.config.max_retries + 1, error)
            group.suspect = False
            self._requeue(group)
            return
        if policy != "continue":
            self.done[index] = _Raise(error)
            self.stop_at = index if self.stop_at is None else min(self.stop_at, index)
            return
        logger.warning("%s", error)
        self._done(index, error, rows=0)

    def _policy(self, error: BatchError) -> str:
        """What to do about a failed batch: ``on_error`` itself, or its callback's answer."""
        on_error = self.config.on_error
        if not callable(on_error):
            return on_error
        decision = on_error(error)
        if decision not in ("raise", "continue", "retry"):
            raise TypeError(
                f"BatchConfig.on_error returned {decision!r} for batch {error.index}; "
                "it must return 'raise', 'continue' or 'retry'"
            ) from error
        return str(decision)

    def _done(self, index: int, value: Any, *, rows: int, recorded: bool = False) -> None:
        if self.journal is not None and not recorded and not isinstance(value, BatchError):
            self.journal.write(index, value)  # before it is handed out: never lost
        self.done[index] = value
        self.batches_done += 1
        self.rows_done += rows
        if self.on_progress is not None:
            self.on_progress(self.batches_done, self.rows_done)

    # ----------------------------------------------------------------- timeouts

    def _start_clocks(self) -> None:
        """Start the clock of each of our calls that reached the head of its actor."""
        now = time.monotonic()
        for slot in self.pool.slots:
            if slot.state is SlotState.READY and slot.calls:
                head = slot.calls[0]
                if head.owner is self and head.started is None:
                    head.started = now

    def _deadline(self, call: Call) -> float:
        assert call.started is not None and call.group is not None
        timeout = self.config.timeout_s
        assert timeout is not None
        # The group's other batches get twice their measured time on top.
        others = (call.group.count - 1) * 2 * (self.seconds_per_batch or 0.0)
        return call.started + timeout + others

    def _wait_timeout(self) -> float:
        wait = POLL_SECONDS
        if self.deadline.at is not None:
            wait = min(wait, max(0.0, self.deadline.at - time.monotonic()))
        if self.config.timeout_s is not None:
            now = time.monotonic()
            for call in self.calls.values():
                if call.started is not None:
                    wait = min(wait, max(0.0, self._deadline(call) - now))
        for slot in self.pool.slots:
            if slot.state is SlotState.BACKOFF:
                wait = min(wait, max(0.0, slot.retry_at - time.monotonic()))
        return wait

    def _expire_timeouts(self) -> None:
        if self.config.timeout_s is None:
            return
        now = time.monotonic()
        for call in list(self.calls.values()):
            if call.started is None or call.ref not in self.calls or now < self._deadline(call):
                continue
            group = call.group
            assert group is not None
            batches = (f"batch {group.first}" if group.count == 1
                       else f"a batch of {group.first}..{group.first + group.count - 1}")
            loss = Loss(
                LossKind.TIMED_OUT,
                f"{batches} ran past timeout_s={self.config.timeout_s:g}",
                call.slot.label(self.pool.actor_name),
            )
            self.pool.lose(call.slot, call.generation, loss)

    # ----------------------------------------------------------------- stopping

    def _abort(self) -> None:
        """Stop early (error, caller stopped iterating): leave every actor idle.

        No ray.cancel: cancelling an actor call that has not reached the actor
        yet leaves a gap in its task sequence, and the actor's next call then
        waits 30 s for the missing one (seen with Ray 2.60). Calls are sized to
        ~100 ms, so letting them finish is quick; an actor still busy after the
        grace period is killed and replaced.
        """
        lock = self.pool.locked()
        with lock:
            refs = list(self.calls)
        if refs:
            try:
                with self.pool.ray_call():
                    _, stuck = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_SECONDS)
            except Exception:  # shut down meanwhile: the actors are gone already
                stuck = []
            with lock:
                for ref in stuck:
                    call = self.calls.get(ref)
                    if call is not None:
                        label = call.slot.label(self.pool.actor_name)
                        loss = Loss(LossKind.STOPPED,
                                    "it was still busy when its run was stopped", label)
                        self.pool.lose(call.slot, call.generation, loss)
        with lock:
            for call in self.calls.values():
                self.pool.finished(call)
            self.calls.clear()
            self.calls_per_slot.clear()
            self.done.clear()
            self.retry.clear()


def _rows_of(group: Group, k: int, source: BatchSource) -> int:
    lo = k * source.batch_size
    return max(0, min(lo + source.batch_size, group.num_rows) - lo)
