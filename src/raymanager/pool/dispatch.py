"""The Ray adapter of one run: hosts the engine's one loop on Ray.

Every decision (what to send where, how big a call is, who is charged for a
failure, what to re-run, what to hand out) is made by the pure
:class:`~raymanager.engine.run.RunCore` and the pool's
:class:`~raymanager.engine.pool.PoolCore`, and the loop that drives them is
:func:`raymanager.engine.loop.drive`, the same one the simulator hosts.
:class:`Run` is its :class:`~raymanager.engine.loop.Host` on Ray: it makes
the calls, ``ray.wait`` for those in flight, ``ray.get`` their reports, maps
Ray's exceptions (:mod:`raymanager.pool.ray_errors`, the one place that
knows them) to engine events, and loses an actor through the pool when the
engine says a call timed out or a stopped run's call overran its grace.

Every change of run state happens under the pool's lock: the pool reports
the fate of our calls (``call_done`` / ``call_lost``) when a broadcast or
another thread sees an actor die first. The run's I/O does not: reading the
user's source (its generator, hashing rows for a journal, putting big
groups in the object store), reading and writing the journal, and
``ray.get`` of finished calls happen in the run's own thread with the lock
released, and only their outcome is reported to the core under it
(:class:`~raymanager.engine.run.Read` / ``taken``,
:class:`~raymanager.engine.run.Record` / ``recorded``). A slow generator or a
slow disk therefore delays its own run only, never the other runs,
submissions and broadcasts of the pool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from raymanager.batching import BatchSource
from raymanager.config import BatchConfig
from raymanager.engine.loop import STARTED, TIMED_OUT, WaitUntil, drive
from raymanager.engine.pool import PoolCore, RunOwner
from raymanager.engine.run import Input, Journal, Read, Record, RunCore, Send
from raymanager.engine.run_io import read_input, write_records
from raymanager.engine.slots import Call, Loss
from raymanager.engine.wire import CallSpec
from raymanager.mapped_file import MappedFileUnavailable
from raymanager.pool.adapter import LOST, Outcome, PoolAdapter, wait_for
from raymanager.pool.stopping import finish_calls
from raymanager.rows import slice_rows

__all__ = ["STARTED", "TIMED_OUT", "ProgressCallback", "Run"]

logger = logging.getLogger("raymanager")

ProgressCallback = Callable[[int, int], None]

#: Groups of inline rows at least this big are put in the object store as
#: they are read, outside the lock; smaller ones are pickled into their call.
#: Ray puts call arguments above 100 KiB in the store anyway
#: (``max_direct_call_object_size``), so this adds no copy.
PUT_MIN_BYTES = 100 * 1024


@dataclass(frozen=True)
class _Pending:
    """What a run waits for: calls in flight (by ref), starts, a journal's replays."""

    calls: dict[Any, Call]
    starts: list[Any]
    replayed: bool


class Run:
    """One pass of a pool over a source; iterate :meth:`chunks`."""

    def __init__(
        self,
        pool: PoolAdapter,
        source: BatchSource,
        config: BatchConfig,
        *,
        shared_ref: Any = None,
        on_progress: ProgressCallback | None = None,
        ordered: bool = True,
        journal: Journal | None = None,
    ) -> None:
        self.pool = pool
        self.source = source
        self.config = config
        self.shared_ref = shared_ref
        self.journal = journal
        #: Slots whose worker cannot map the source's file: they get rows inline.
        self.no_file: set[int] = set()
        #: Object-store copies of the rows of groups read, by (first batch,
        #: batches): put outside the lock, dropped when such a group is sent.
        self.stored: dict[tuple[int, int], Any] = {}
        self.core = RunCore(
            source, config,
            width=min(config.num_parallel, pool.max_actors),
            max_concurrency=pool.max_concurrency,
            actor_name=pool.actor_name,
            ordered=ordered,
            journal=journal,
            on_progress=on_progress,
            on_charge=pool.count_retry,
        )

    def collect(self, call: Call, outcome: Outcome) -> None:
        """A run (this one or another) found this call of ours finished and got
        its ``outcome`` outside the lock; take it (lock held)."""
        if self.core.owns(call):
            self._collect(call, outcome)

    # ----------------------------------------------------------------- the loop

    def chunks(self) -> Generator[Any, WaitUntil, None]:
        """Yield lists of ``(batch index, result)``: every result deliverable at
        once, in input order when ordered; a batch error raises at its own
        position, after every list before it.

        The one loop of :func:`raymanager.engine.loop.drive`, hosted on Ray:
        the first ``next()`` yields :data:`STARTED` before anything runs;
        after that, resume with ``send(wait_until)`` (a ``time.monotonic()``
        time, or None): when ``wait_until`` passes before any result is
        ready, :data:`TIMED_OUT` is yielded instead. One list per call rather
        than one item per batch: a call of 1,000 trivial batches costs the
        driver one resume of this generator, not 1,000.
        """
        return drive(self, self)

    # ----------------------------------------------------------------- the host

    @property
    def pool_core(self) -> PoolCore:
        return self.pool.core

    def locked(self) -> threading.RLock:
        return self.pool.locked()

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def check_usable(self) -> None:
        self.pool.check_usable()

    def poll(self) -> None:
        self.pool.poll()

    def lose(self, call: Call, loss: Loss) -> None:
        self.pool.lose(call.slot, call.generation, loss)

    def grow(self) -> None:
        self.pool.grow()

    def send(self, run: RunOwner, command: Send) -> None:
        assert run is self
        self._send(command)

    def read(self, run: RunOwner, command: Read) -> Input:
        return self._read(command)

    def record(self, run: RunOwner) -> None:
        self._record()

    def pending(self, run: RunOwner) -> _Pending:
        # Other runs' calls too: one left suspended by its consumer must not
        # keep the actors it used from this one.
        calls = {call.ref: call for each in self.pool.runs()
                 for call in each.core.calls_in_flight()}
        starts = [slot.ready_ref for slot in self.pool.core.starting()
                  if slot.ready_ref is not None]
        replayed = self.journal is not None and self.journal.replayed()
        return _Pending(calls, starts, replayed)

    def wait(self, pending: _Pending, timeout: float) -> list[tuple[Call, Outcome]]:
        if pending.replayed and not pending.calls and not pending.starts:
            return []  # results read back from a journal need no actor: go on at once
        return wait_for(self.pool, pending.calls, pending.starts,
                        0.0 if pending.replayed else timeout)

    def settle(self, news: list[tuple[Call, Outcome]]) -> None:
        _hand_to_owners(news)

    def finish_calls(self, calls: list[Call], grace_s: float, *,
                     interrupted: bool) -> list[Call]:
        # A grace, then the stuck ones' actors are replaced: pool/stopping.py.
        return finish_calls(self.pool, calls, grace_s, interrupted=interrupted)

    def record_stopped(self, run: RunOwner, record: Record) -> None:
        if self.journal is None:
            return
        try:
            write_records(self.journal, record)
        except Exception as exc:  # the run stops for another reason already
            logger.warning("%d finished result(s) not journaled while stopping: %s",
                           len(record.results), exc)

    def closed(self, run: RunOwner) -> None:
        self.stored.clear()  # groups read and never sent: their copies go
        self.pool.remove_run(self)

    # ----------------------------------------------------------------- dispatch

    def _read(self, command: Read) -> Input:
        """Read the source for ``command`` (lock released): the user's generator
        runs, rows are hashed for a journal, a big group is put in the store."""
        event = read_input(self.source, command, self.journal)
        group = event.group
        if group is not None and event.replayed is None and group.rows is not None \
                and group.nbytes >= PUT_MIN_BYTES:
            with self.pool.ray_call():
                self.stored[group.first, group.count] = ray.put(group.rows)
        return event

    def _record(self) -> None:
        """Write the results the engine hands over to the journal (lock released)."""
        if self.journal is None:
            return
        lock = self.pool.locked()
        with lock:
            record = self.core.take_records()
        if record is None:
            return
        write_records(self.journal, record)  # may commit, with an fsync
        with lock:
            self.core.recorded(record)

    def _send(self, command: Send) -> None:
        slot, group = command.slot, command.group
        shared = self.shared_ref is not None
        # Rows put in the store as they were read travel as that reference.
        stored = self.stored.pop((group.first, group.count), None)
        data = self.shared_ref if shared else group.rows if stored is None else stored
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
        call = self.pool.register_call(slot, self, ref, group=group, started=command.started,
                                       expected=command.expected)
        self.core.sent(call)

    # ----------------------------------------------------------------- outcomes

    def _collect(self, call: Call, outcome: Outcome) -> None:
        """One of our calls is ready (lock held): take its report or its failure."""
        value, cause = self.pool.settle(call, outcome)
        if value is LOST:
            # Reported through call_lost, unless its actor was replaced already.
            self.core.orphaned(call)
        elif isinstance(cause, MappedFileUnavailable):
            logger.warning("%s cannot map the data's file (%s): its rows go inline",
                           call.slot.label(self.pool.actor_name), cause)
            self.no_file.add(call.slot.index)
            self.core.inline_instead(call)
        elif cause is not None:
            self.core.undeliverable(call, cause)
        else:
            self.call_done(call, value)

    def call_done(self, call: Call, value: Any) -> None:
        """The pool or :meth:`_collect` hands us a finished call's report."""
        if self.core.returned(call, value):
            self.pool.record(call, len(value.results), value.seconds)

    def call_lost(self, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        """The pool lost the actor of one of our calls (lock held)."""
        self.core.lost(call, running, alone, loss)


def _hand_to_owners(outcomes: list[tuple[Call, Outcome]]) -> None:
    """Give each finished call's outcome to its run (lock held), emptying the list:
    the loop keeps no reference to a result once its caller holds it."""
    outcomes.reverse()  # popped from the end: in the order they came
    while outcomes:
        call, outcome = outcomes.pop()
        if isinstance(call.owner, Run):
            # Skipped by its run if taken meanwhile (salvaged by a loss just reported).
            call.owner.collect(call, outcome)
