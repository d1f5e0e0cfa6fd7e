"""One run of a pool over a batch source, as a pure state machine.

:class:`RunCore` holds a run's state (its calls in flight, the batches to
re-run, the results not yet handed out) and makes every decision of the run;
it does no I/O and reads no clock. The Ray adapter (``pool/dispatch.py``)
and the simulator (:mod:`raymanager.engine.simulator`) drive it the same way:

- ask :meth:`RunCore.next_send` for work to send, one call at a time, and
  report each call made with :meth:`RunCore.sent`; when it answers
  :class:`Read`, read that many batches from the source (with
  :func:`raymanager.engine.run_io.read_input`) and report them with
  :meth:`RunCore.taken`, then ask again;
- when :meth:`RunCore.take_records` hands out a :class:`Record`, write its
  results to the journal and report it with :meth:`RunCore.recorded`: a
  journaled result is handed out only once it is recorded;
- report what came back: :meth:`~RunCore.returned` (per-batch outcomes),
  :meth:`~RunCore.lost` (the actor is gone), :meth:`~RunCore.undeliverable`
  (the reply could not travel), :meth:`~RunCore.inline_instead` (the worker
  cannot map the source's file);
- ask :meth:`~RunCore.expired` for calls past their timeout, and lose their actors;
- hand out :meth:`~RunCore.pop_ready` while :meth:`~RunCore.deliverable`.

The core never performs I/O itself: reading the user's source (and hashing
its rows for a journal), replaying and writing the journal are commands it
gives and events it is told of. The Ray adapter performs them outside the
pool's lock, so a slow generator or a slow disk in one run never holds up
the other runs, submissions and broadcasts of the pool.

Accounting is per batch. A call carries a *group* of consecutive batches; the
worker reports one result or failure per batch. When a call fails in a way
that cannot be pinned on one of its batches (its actor died or hung while
running it), nobody is charged: the group is split and its batches re-run one
per call, as *suspects* that run alone. A one-batch call that fails is charged
to that batch alone: a retry when its worker died or timed out (up to
``max_retries``), else its :class:`~raymanager.errors.BatchError`.

Example (the simulator plays the actors)::

    >>> from raymanager.engine.simulator import simulate
    >>> simulate(num_batches=20, num_actors=2).results == {i: i for i in range(20)}
    True
"""

from __future__ import annotations

import collections
import heapq
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from raymanager.batching import BatchSource, Group
from raymanager.config import BatchConfig
from raymanager.engine import policy
from raymanager.engine.slot_board import PARK, PASS, TAKE, SlotList
from raymanager.engine.slots import Call, Loss, LossKind, Slot, SlotState
from raymanager.engine.wire import Failure, Report, raised_error
from raymanager.errors import BatchError, BatchTimeoutError, WorkerDiedError

__all__ = ["GROW", "NOT_RECORDED", "Expire", "Input", "Journal", "Read", "Record", "RunCore",
           "Send"]

logger = logging.getLogger("raymanager")

ProgressCallback = Callable[[int, int], None]


class _NotRecorded:
    def __repr__(self) -> str:
        return "NOT_RECORDED"


#: What :meth:`Journal.replay` returns for a batch it does not hold.
NOT_RECORDED: Any = _NotRecorded()


class Journal(Protocol):
    """What a run needs of a journal (``raymanager.journal.Journal``)."""

    @property
    def resuming(self) -> bool:
        """Whether recorded batches may lie ahead of those replayed so far."""

    def replay(self, index: int) -> Any:
        """Batch ``index``'s recorded result, or :data:`NOT_RECORDED`."""

    def write(self, index: int, value: Any) -> None: ...

    def replayed(self) -> bool:
        """Whether a batch was replayed since the last call."""


@dataclass(frozen=True)
class Send:
    """Command: send ``group`` to ``slot``'s actor; its clock starts at ``started``."""

    slot: Slot
    group: Group
    started: float | None
    expected: float | None


@dataclass(frozen=True)
class Read:
    """Command: read up to ``count`` more batches from the source, then report
    them with :meth:`RunCore.taken` (the adapter reads outside its lock)."""

    count: int


@dataclass
class Input:
    """Event: what a :class:`Read` got: ``group`` (None: the source is spent),
    the source's ``total`` batches when known, and, for a resumed run, each
    batch's journaled result (:data:`NOT_RECORDED` for one to run), in order."""

    group: Group | None
    total: int | None
    replayed: list[Any] | None = None


@dataclass(frozen=True)
class Record:
    """Command: write these ``(batch index, result)`` pairs to the journal, then
    report them with :meth:`RunCore.recorded` (the adapter writes outside its lock)."""

    results: list[tuple[int, Any]]


@dataclass(frozen=True)
class _Grow:
    """Command: the run has work for more actors than the pool has ready."""


GROW = _Grow()


@dataclass(frozen=True)
class Expire:
    """Command: ``call`` ran past its timeout; lose its actor with ``loss``."""

    call: Call
    loss: Loss


@dataclass
class _Raise:
    """A batch error of an ``on_error="raise"`` run, raised at its position."""

    error: BatchError


class RunCore:
    """The state and the decisions of one run; see the module docstring."""

    def __init__(
        self,
        source: BatchSource,
        config: BatchConfig,
        *,
        width: int,
        max_concurrency: int,
        actor_name: str,
        ordered: bool = True,
        journal: Journal | None = None,
        on_progress: ProgressCallback | None = None,
        on_charge: Callable[[], None] | None = None,
    ) -> None:
        self.source = source
        self.config = config
        self.width = width
        self.max_concurrency = max_concurrency
        self.actor_name = actor_name
        self.ordered = ordered
        self.journal = journal
        self.on_progress = on_progress
        #: Told of each try a batch is charged with (the pool counts them).
        self.on_charge = on_charge
        self.calls: dict[int, Call] = {}  # by id(call): one entry per call in flight
        self.calls_per_slot: Counter[int] = Counter()
        #: Slots with a call of this run: kept as a count, not recounted per decision.
        self.slots_in_use = 0
        #: Calls of this run queued behind another on their actor (clock not started):
        #: the only ones start_clocks looks at, not every slot of the pool.
        self.queued: dict[int, Call] = {}
        #: The slots with a call of this run, by index (a capped run picks among them).
        self.slots_used: dict[int, Slot] = {}
        #: Started calls by the earliest their deadline can be (started + timeout_s):
        #: a heap, so a wait or an expiry check looks at the calls near their
        #: deadline, not at every call. Stale entries (settled calls) are dropped
        #: at the top. Calls past that floor move to ``overdue``, checked exactly.
        self.deadlines: list[tuple[float, int, Call]] = []
        self.deadline_seq = 0
        self.overdue: dict[int, Call] = {}
        #: The pool's indexed slot list, once seen (next_send or sent), and how
        #: far into its log of moved heads start_clocks has read.
        self.board: SlotList | None = None
        self.moves_seen = 0
        #: When the first untimed call (a probe) was decided (policy.probe_held).
        self.probes_began: float | None = None
        self.retry: list[tuple[int, int, Group]] = []  # heap by first batch index
        self.retry_seq = 0
        self.done: dict[int, Any] = {}
        #: Groups read from the source and not yet sent (see :meth:`taken`).
        self.fresh: collections.deque[Group] = collections.deque()
        #: Batches read from the source so far, and its total once known: the
        #: core's own count, so that no decision reads the source while the
        #: adapter is reading it outside the lock.
        self.batches_taken = 0
        self.total = source.num_batches
        #: Journaled results not yet written (Record), and those being written.
        self.unrecorded: dict[int, Any] = {}
        self.recording: dict[int, Any] = {}
        self.next_to_yield = 0
        self.delivered = 0
        self.stop_at: int | None = None
        self.batches_done = 0
        self.rows_done = 0
        self.inflight_bytes = 0
        self.seconds_per_batch: float | None = None
        self.largest_returned = 0
        self.closed = False
        #: Calls of next_send: the run's decisions (the scale model's count).
        self.decisions = 0
        self.progress_told = 0  # batches_done when on_progress was last called

    # ----------------------------------------------------------------- queries

    def queued_batches(self) -> int:
        """Batches waiting to be sent: retries and what the source has left."""
        retried = sum(group.count for _, _, group in self.retry)
        fresh = sum(group.count for group in self.fresh)
        return retried + fresh + (self._remaining() or 0)

    def _remaining(self) -> int | None:
        """Batches the source has not handed out yet (None: unknown)."""
        return None if self.total is None else self.total - self.batches_taken

    @property
    def exhausted(self) -> bool:
        """Whether every batch of the source was read."""
        return self.total is not None and self.batches_taken >= self.total

    def deliverable(self) -> bool:
        return (self.next_to_yield in self.done) if self.ordered else bool(self.done)

    def finished(self) -> bool:
        return (self.exhausted and not self.calls and not self.retry and not self.done
                and not self.fresh and not self.unrecorded and not self.recording)

    def window_shut(self) -> bool:
        """Whether the read-ahead window holds work back now.

        An adapter asks before handing results out: if it was shut, or if no
        call is left in flight afterwards, it makes calls again before it
        waits (handing out reopens the window; waiting on nothing stalls).
        """
        return not self._window_open()

    def calls_in_flight(self) -> list[Call]:
        return list(self.calls.values())

    def check_stall(self) -> None:
        """Raise if the run would wait for nothing: a bug of ours, never a hang.

        Nothing in flight, nothing to re-run and nothing to hand out, while
        the source is spent, the run stopping, or the read-ahead window shut:
        then no event can ever come, and the batches taken are lost.
        """
        if self.calls or self.retry or self.deliverable():
            return
        if self.fresh and self.stop_at is None:
            return  # read and not sent yet: sent once an actor is free
        if self.unrecorded or self.recording:
            return  # the adapter writes them next: they are handed out after
        if self.exhausted or self.stop_at is not None or not self._window_open():
            raise RuntimeError(
                f"raymanager stalled: {self.batches_taken} batches taken, "
                f"{self.delivered} handed out, none pending"
            )

    def check_complete(self) -> None:
        total = self.total
        if total is not None and self.delivered != total:
            raise RuntimeError(  # a bug of ours: never lose batches quietly
                f"raymanager delivered {self.delivered} of {total} batches"
            )

    # ----------------------------------------------------------------- sizing

    def group_size(self) -> int:
        return policy.group_size(
            seconds_per_batch=self.seconds_per_batch,
            width=self.width,
            remaining=self._remaining(),
            timeout_s=self.config.timeout_s,
            batch_nbytes=self.source.batch_nbytes,
            max_inflight_bytes=self.config.max_inflight_bytes,
            largest_returned=self.largest_returned,
        )

    def _depth(self) -> int:
        return policy.queue_depth(
            max_concurrency=self.max_concurrency,
            seconds_per_batch=self.seconds_per_batch,
            remaining=self._remaining(),
            width=self.width,
            size=self.group_size(),
        )

    def _window_open(self) -> bool:
        return policy.window_open(
            taken=self.batches_taken,
            delivered=self.delivered,
            width=self.width,
            size=self.group_size(),
            inflight_bytes=self.inflight_bytes,
            max_inflight_bytes=self.config.max_inflight_bytes,
        )

    # ----------------------------------------------------------------- dispatch

    def next_send(
        self,
        slots: Sequence[Slot],
        now: float,
        batches_left: Callable[[Slot], int | None] = lambda slot: None,
        share: int | None = None,
    ) -> Send | Read | _Grow | None:
        """The next call to make: a :class:`Send`, :data:`GROW`, a :class:`Read`
        (more input is needed first: read it, report it with :meth:`taken`,
        then ask again), or None for now.

        Retries come first, then new groups from the source. ``share`` caps
        the actors this run keeps busy when other runs share the pool (its
        ``num_parallel`` caps them always). The caller makes the call and
        reports it with :meth:`sent` before asking again.
        """
        self.decisions += 1
        if self._probes_held(now) is not None:
            return None  # probes out: wait a moment for the first batch's time
        width = self.width if share is None else min(self.width, share)
        depth = self._depth()
        slot = self._free_slot(slots, depth, now, batches_left, width)
        if slot is None:
            if self.slots_in_use < width and self._work_waiting():
                return GROW  # an elastic pool below its max
            return None
        if slot.calls and self.retry and self.retry[0][2].suspect:
            # A suspect runs alone: look for an idle actor instead.
            idle = self._free_slot(slots, 1, now, batches_left, width)
            if idle is None:
                return None
            slot = idle
        group = self._next_group(batches_left(slot))
        if group is None or isinstance(group, Read):
            return group
        # The clock of a call starts when it runs: now if its actor is idle,
        # else when the calls before it are done (start_clocks).
        started = now if not slot.calls or self.max_concurrency > 1 else None
        expected = (None if self.seconds_per_batch is None
                    else group.count * self.seconds_per_batch)
        if self.seconds_per_batch is None and self.probes_began is None:
            self.probes_began = now
        return Send(slot, group, started, expected)

    def _probes_held(self, now: float) -> float | None:
        if not self.calls:
            return None  # no probe out: nothing to wait for
        return policy.probe_held(timed=self.seconds_per_batch is not None,
                                 probes_began=self.probes_began, now=now)

    def sent(self, call: Call) -> None:
        """The adapter made the call of a :class:`Send` (and put it on its slot)."""
        assert call.group is not None
        self.calls[id(call)] = call
        if not self.calls_per_slot[call.slot.index]:
            self.slots_in_use += 1
        self.calls_per_slot[call.slot.index] += 1
        if call.started is None:
            self.queued[id(call)] = call
        call.slot.sent_to_generation += call.group.count
        self.inflight_bytes += call.group.nbytes
        self.slots_used[call.slot.index] = call.slot
        board = call.slot.board
        if board is not None and board is not self.board:
            self._watch(board)
        if call.started is not None:
            self._clock_started(call)

    def _free_slot(
        self,
        slots: Sequence[Slot],
        depth: int,
        now: float,
        batches_left: Callable[[Slot], int | None],
        width: int,
    ) -> Slot | None:
        """The ready actor with the fewest calls, within ``width`` actors.

        Among equals, the first in the pool's order. On a :class:`SlotList`,
        read from its index: the heads of its heaps of ready slots with room,
        or this run's own slots when it is at its width and they are fewer.
        """
        if isinstance(slots, SlotList):
            return self._free_indexed(slots, depth, now, batches_left, width)
        best: Slot | None = None
        in_use = self.slots_in_use
        for slot in slots:
            if slot.state is not SlotState.READY or len(slot.calls) >= depth:
                continue
            if batches_left(slot) == 0:
                continue  # due for recycling once its calls are done
            if slot.calls and not policy.may_queue_behind(
                    slot.calls, max_concurrency=self.max_concurrency, now=now):
                continue
            if not self.calls_per_slot[slot.index] and in_use >= width:
                continue
            if best is None or len(slot.calls) < len(best.calls):
                best = slot
                if not slot.calls:
                    break
        return best

    def _free_indexed(
        self,
        slots: SlotList,
        depth: int,
        now: float,
        batches_left: Callable[[Slot], int | None],
        width: int,
    ) -> Slot | None:
        """:meth:`_free_slot`'s pick, from the list's index: O(log n) per decision."""
        if slots is not self.board:
            self._watch(slots)
        max_concurrency = self.max_concurrency
        capped = self.slots_in_use >= width
        used = self.calls_per_slot

        def accept(slot: Slot) -> int:
            # Parked: reasons that hold until the slot changes, for any run
            # (its sent count only grows, ``now`` only moves on, its calls
            # and their clocks are what they are until a call ends).
            if batches_left(slot) == 0:
                return PARK  # due for recycling once its calls are done
            if slot.calls and not policy.may_queue_behind(
                    slot.calls, max_concurrency=max_concurrency, now=now):
                return PARK
            if capped and not used[slot.index]:
                return PASS  # another run's: this run is at its width
            return TAKE

        if capped and len(self.slots_used) < slots.room(depth):
            # At its width, the run may only use its own slots: when they are
            # fewer than the slots with room, look at them instead.
            best: Slot | None = None
            best_key = (0, 0)
            for slot in self.slots_used.values():
                if (slot.state is not SlotState.READY or len(slot.calls) >= depth
                        or slot.board is not slots or accept(slot) != TAKE):
                    continue
                key = (len(slot.calls), slots.order_of(slot))
                if best is None or key < best_key:
                    best, best_key = slot, key
            return best
        return slots.first_with_room(depth, accept)

    def _work_waiting(self) -> bool:
        if self.retry or self.fresh:
            return True
        return not self.exhausted and self.stop_at is None and self._window_open()

    def _next_group(self, room: int | None = None) -> Group | Read | None:
        """Retries first, then a group read already (of at most ``room`` batches),
        else a :class:`Read` of the source's next group."""
        while self.retry:
            _, _, retried = heapq.heappop(self.retry)
            if self.stop_at is None or retried.first < self.stop_at:
                if room is not None and retried.count > max(1, room):
                    # A group re-queued whole, for an actor near its
                    # max_batches_per_actor: what fits now, the rest later.
                    retried, rest = retried.cut(max(1, room), self.source.batch_size)
                    self._requeue(rest)
                return retried
        if self.stop_at is not None:
            return None
        if self.fresh:
            group = self.fresh.popleft()
            if room is not None and group.count > max(1, room):
                # Read for another actor's room: this one takes what it may.
                group, rest = group.cut(max(1, room), self.source.batch_size)
                self.fresh.appendleft(rest)
            return group
        if self.exhausted or not self._window_open():
            return None
        size = self.group_size()
        return Read(size if room is None else max(1, min(size, room)))

    def taken(self, event: Input) -> None:
        """The adapter read the source for a :class:`Read`.

        A resumed run's batches found in the journal are done at once (read
        back, not run again); the others wait to be sent.
        """
        self.total = event.total
        group = event.group
        if group is None:
            return
        self.batches_taken += group.count
        if event.replayed is None:
            self.fresh.append(group)
            return
        parts = group.split(self.source.batch_size)
        for part, recorded in zip(parts, event.replayed, strict=True):
            if recorded is not NOT_RECORDED:
                self._done(part.first, recorded, rows=part.num_rows, recorded=True)
            else:
                self._requeue(part)

    def _requeue(self, group: Group) -> None:
        self.retry_seq += 1
        heapq.heappush(self.retry, (group.first, self.retry_seq, group))

    def _requeue_split(self, group: Group) -> None:
        """Re-run ``group``'s batches one per call, charging none: a culprit shows itself."""
        for part in group.split(self.source.batch_size):
            part.suspect = True
            self._requeue(part)

    # ----------------------------------------------------------------- outcomes

    def _forget(self, call: Call) -> bool:
        if self.calls.pop(id(call), None) is None:
            return False
        self.queued.pop(id(call), None)
        self.overdue.pop(id(call), None)
        self.calls_per_slot[call.slot.index] -= 1
        if not self.calls_per_slot[call.slot.index]:
            self.slots_in_use -= 1
            self.slots_used.pop(call.slot.index, None)
        assert call.group is not None
        self.inflight_bytes -= call.group.nbytes
        return True

    def owns(self, call: Call) -> bool:
        """Whether ``call`` is one of this run's calls in flight."""
        return id(call) in self.calls

    def returned(self, call: Call, report: Report) -> bool:
        """A call came back with one outcome per batch (or fewer, after a stop).

        False when the report is no news: the call was settled already, or
        the run is closed.
        """
        if not self._forget(call) or self.closed:
            return False
        group = call.group
        assert group is not None
        n = len(report.results)
        self.largest_returned = max(self.largest_returned, n)
        if n and report.seconds > 0:
            per_batch = report.seconds / n
            old = self.seconds_per_batch
            self.seconds_per_batch = per_batch if old is None else 0.7 * old + 0.3 * per_batch
        for k, result in enumerate(report.results):
            if isinstance(result, Failure):
                self._batch_raised(group.first + k, result, call, group.attempts + 1)
            else:
                self._done(group.first + k, result, rows=self._rows_of(group, k))
        return True

    def lost(self, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        """The actor of ``call`` is gone.

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
        fault = policy.blame(call, running=running, alone=alone, loss=loss)
        if fault is policy.Blame.NOT_ITS:
            # Not the work's fault (a drain, another run's stop, a hang ahead
            # of it): no try used.
            self._requeue(group)
        elif fault is policy.Blame.UNKNOWN or group.count > 1:
            self._requeue_split(group)  # its batches run alone: the next death tells
        else:
            self._charge(group, loss)

    def undeliverable(self, call: Call, cause: BaseException) -> None:
        """The call ran, but its reply could not reach the driver (it does not unpickle)."""
        if not self._forget(call) or self.closed:
            return
        group = call.group
        assert group is not None
        if group.count > 1:
            self._requeue_split(group)
            return
        # A one-batch call whose reply fails to travel fails again if re-run.
        actor = call.slot.label(self.actor_name)
        first_line = str(cause).splitlines()[0] if str(cause) else ""
        error = BatchError(
            f"batch {group.first}'s result could not reach the driver from {actor}: "
            f"{type(cause).__name__}: {first_line}",
            index=group.first, actor=actor, attempts=group.attempts + 1,
        )
        error.__cause__ = cause
        self._fail(group.first, error, group)

    def orphaned(self, call: Call) -> None:
        """The call failed on an actor that was replaced already: re-run it, uncharged."""
        if self._forget(call):
            assert call.group is not None
            self._requeue(call.group)

    def inline_instead(self, call: Call) -> None:
        """The call's worker cannot map the source's file: send its rows again."""
        if self._forget(call):
            assert call.group is not None
            self._requeue(call.group)

    def _charge(self, group: Group, loss: Loss) -> None:
        attempts = group.attempts + 1
        group.attempts = attempts
        if self.on_charge is not None:
            self.on_charge()
        if attempts <= self.config.max_retries:
            logger.warning(
                "retrying batch %d (attempt %d of %d) after %s: %s",
                group.first, attempts + 1, self.config.max_retries + 1, loss.actor, loss.reason,
            )
            self._requeue(group)
            return
        self._fail(group.first, _lost_error(group.first, attempts, loss, self.config), group)

    def _batch_raised(self, index: int, failure: Failure, call: Call, attempts: int) -> None:
        actor = call.slot.label(self.actor_name)
        error = raised_error(failure, f"batch {index} raised {failure.type_name} in {actor}",
                             index=index, actor=actor, attempts=attempts)
        assert call.group is not None
        part = call.group.split(self.source.batch_size)[index - call.group.first]
        part.attempts = attempts
        self._fail(index, error, part)

    def _fail(self, index: int, error: BatchError, group: Group) -> None:
        """Batch ``index`` failed for good: raise, continue, or (a callback's choice) retry."""
        policy_ = self._policy(error)
        # "retry" re-runs the batch while it has tries left, then counts as "raise".
        if policy_ == "retry" and error.attempts <= self.config.max_retries:
            group.attempts = error.attempts
            logger.warning("retrying batch %d (attempt %d of %d), as on_error decided: %s",
                           index, group.attempts + 1, self.config.max_retries + 1, error)
            group.suspect = False
            self._requeue(group)
            return
        if policy_ != "continue":
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
            # Handed out only once the adapter wrote it (Record): never lost.
            self.unrecorded[index] = value
        else:
            self.done[index] = value
        self.batches_done += 1
        self.rows_done += rows

    def tell_progress(self) -> None:
        """Call the user's progress callback with the counts, if they moved.

        Called by the loop with the pool's lock released (a progress bar may
        draw, or a callback may log): never from inside a decision.
        """
        if self.on_progress is not None and self.progress_told != self.batches_done:
            self.progress_told = self.batches_done
            self.on_progress(self.batches_done, self.rows_done)

    def take_records(self) -> Record | None:
        """The results to write to the journal now (None: none waits).

        The adapter writes them, then reports :meth:`recorded`; until then
        they are not handed out.
        """
        if not self.unrecorded:
            return None
        results = list(self.unrecorded.items())
        self.recording.update(self.unrecorded)
        self.unrecorded.clear()
        return Record(results)

    def recorded(self, record: Record) -> None:
        """The adapter wrote ``record``'s results: they may be handed out."""
        if self.closed:
            return
        for index, _ in record.results:
            if index in self.recording:
                self.done[index] = self.recording.pop(index)

    def _rows_of(self, group: Group, k: int) -> int:
        size = self.source.batch_size
        lo = k * size
        return max(0, min(lo + size, group.num_rows) - lo)

    # ----------------------------------------------------------------- delivery

    def pop_ready(self) -> list[tuple[int, Any]]:
        """Every deliverable result, up to (not including) the next batch error.

        A batch error is raised on its own, once everything before it is out.
        """
        ready: list[tuple[int, Any]] = []
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

    # ----------------------------------------------------------------- timeouts

    def start_clocks(self, now: float) -> None:
        """Start the clock of each of our queued calls that reached the head of its actor.

        On a :class:`SlotList`, only the slots whose head moved since the last
        look are checked (its log); else, or when the log was cut meanwhile,
        every queued call.
        """
        if not self.queued:
            if self.board is not None:
                self.moves_seen = self.board.moves_base + len(self.board.moves)
            return
        board = self.board
        if board is None or self.moves_seen < board.moves_base:
            for call in list(self.queued.values()):
                self._start_if_head(call.slot, now)
        else:
            moved = board.moves[self.moves_seen - board.moves_base:]
            for slot in moved:
                self._start_if_head(slot, now)
        if board is not None:
            self.moves_seen = board.moves_base + len(board.moves)

    def _start_if_head(self, slot: Slot, now: float) -> None:
        # A draining actor runs its calls too: a hang there must time out (a
        # resize that drains a busy actor would otherwise wait for ever).
        if slot.state in (SlotState.READY, SlotState.DRAINING) and slot.calls:
            call = slot.calls[0]
            if self.queued.pop(id(call), None) is not None:
                call.started = now
                self._clock_started(call)

    def _watch(self, board: SlotList) -> None:
        """The pool's indexed list, first seen: read its log from now on."""
        self.board = board
        # Calls queued before: the next start_clocks looks at each of them once.
        self.moves_seen = -1 if self.queued else board.moves_base + len(board.moves)

    def _clock_started(self, call: Call) -> None:
        if self.config.timeout_s is not None:
            assert call.started is not None
            self.deadline_seq += 1
            heapq.heappush(self.deadlines,
                           (call.started + self.config.timeout_s, self.deadline_seq, call))

    def _near_deadline(self, now: float) -> Iterable[Call]:
        """Our started calls that have run at least timeout_s: those a deadline may hit now."""
        heap = self.deadlines
        while heap and (heap[0][0] <= now or id(heap[0][2]) not in self.calls):
            _, _, call = heapq.heappop(heap)
            if id(call) in self.calls:
                self.overdue[id(call)] = call
        return list(self.overdue.values())

    def _deadline(self, call: Call) -> float:
        assert self.config.timeout_s is not None
        return policy.call_deadline(call, timeout_s=self.config.timeout_s,
                                    seconds_per_batch=self.seconds_per_batch)

    def wait_timeout(self, now: float, slots: Iterable[Slot] = ()) -> float:
        """How long the adapter may block before something is due here."""
        wait = policy.POLL_SECONDS
        if self.config.timeout_s is not None:
            # The calls past timeout_s exactly; the others by the heap's top,
            # the earliest a deadline can come (its call's extra batches
            # aside): waking then moves it among the exact ones.
            for call in self._near_deadline(now):
                wait = min(wait, max(0.0, self._deadline(call) - now))
            if self.deadlines:
                wait = min(wait, max(0.0, self.deadlines[0][0] - now))
        held = self._probes_held(now)
        if held is not None:
            wait = min(wait, max(0.0, held - now))
        backing_off = slots.in_state(SlotState.BACKOFF) if isinstance(slots, SlotList) else slots
        for slot in backing_off:
            if slot.state is SlotState.BACKOFF:
                wait = min(wait, max(0.0, slot.retry_at - now))
        return wait

    def expired(self, now: float) -> list[Expire]:
        """The calls past their deadline: the adapter loses each one's actor."""
        if self.config.timeout_s is None:
            return []
        due = []
        for call in self._near_deadline(now):
            if call.started is None or now < self._deadline(call):
                continue
            group = call.group
            assert group is not None
            batches = (f"batch {group.first}" if group.count == 1
                       else f"a batch of {group.first}..{group.first + group.count - 1}")
            loss = Loss(
                LossKind.TIMED_OUT,
                f"{batches} ran past timeout_s={self.config.timeout_s:g}",
                call.slot.label(self.actor_name),
                culprit=call,
            )
            due.append(Expire(call, loss))
        return due

    # ----------------------------------------------------------------- stopping

    def close(self) -> list[Call]:
        """The run stops early: no more outcomes count. Returns the calls in flight."""
        self.closed = True
        return self.calls_in_flight()

    def clear(self) -> None:
        """Forget everything (after :meth:`close`, once the calls are settled)."""
        self.calls.clear()
        self.calls_per_slot.clear()
        self.slots_in_use = 0
        self.slots_used.clear()
        self.queued.clear()
        self.deadlines.clear()
        self.overdue.clear()
        self.done.clear()
        self.retry.clear()
        self.fresh.clear()
        self.unrecorded.clear()
        self.recording.clear()


def _lost_error(index: int, attempts: int, loss: Loss, config: BatchConfig) -> BatchError:
    """The error of a batch that lost its worker on every try."""
    if loss.kind is LossKind.TIMED_OUT:
        return BatchTimeoutError(
            f"batch {index} timed out on all {attempts} tries "
            f"(timeout_s={config.timeout_s:g}); last on {loss.actor}",
            index=index, actor=loss.actor, attempts=attempts,
        )
    if loss.kind is LossKind.OUT_OF_MEMORY:
        return WorkerDiedError(
            f"batch {index} exhausts memory: it killed its worker on all {attempts} "
            f"tries; last on {loss.actor}",
            index=index, actor=loss.actor, attempts=attempts, out_of_memory=True,
        )
    return WorkerDiedError(
        f"batch {index} lost its worker on all {attempts} tries ({loss.reason}); "
        f"last on {loss.actor}",
        index=index, actor=loss.actor, attempts=attempts,
    )
