"""Single items with futures: ``pool.submit(batch)`` -> ``concurrent.futures.Future``.

Submissions share the pool's actors with batch runs and get the same
recovery: a call lost with its actor is sent again (up to ``max_retries``),
an exception from ``process_batch`` is the future's ``BatchError``. A daemon
thread of the pool sends the calls and resolves the futures while any are
pending, so the futures work with ``concurrent.futures.as_completed`` and
``wait`` without the caller driving anything.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from raymanager.engine import policy
from raymanager.engine.loop import serve
from raymanager.engine.slots import Call, Loss, Slot
from raymanager.engine.wire import Failure, raised_error
from raymanager.errors import (
    BatchError,
    RayManagerError,
    WorkerDiedError,
)
from raymanager.pool.adapter import LOST, Outcome, PoolAdapter, wait_for

__all__ = ["Submissions"]

#: Calls of submitted items queued on one actor at most.
CALLS_PER_ACTOR = 2
#: Longest wait of the submission thread, so it notices new items and shutdown.
POLL_SECONDS = 0.2


@dataclass(eq=False)
class _Item:
    index: int
    batch: Any
    future: Future[Any]
    max_retries: int
    attempts: int = 0
    calls: list[Call] = field(default_factory=list)


class Submissions:
    """The submitted items of one pool, and the thread that runs them."""

    def __init__(self, pool: PoolAdapter) -> None:
        self.pool = pool
        self.waiting: collections.deque[_Item] = collections.deque()
        self.calls: dict[Any, tuple[Call, _Item]] = {}
        self.counter = itertools.count()
        self.thread: threading.Thread | None = None

    def submit(self, batch: Any, max_retries: int) -> Future[Any]:
        """Queue one item (lock held); start the thread if it is not running."""
        future: Future[Any] = Future()
        self.waiting.append(_Item(next(self.counter), batch, future, max_retries))
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._loop, name="raymanager-submit",
                                           daemon=True)
            self.thread.start()
        return future

    def fail_all(self, error: RayManagerError) -> None:
        """Fail every pending future (lock held): the pool shut down or broke."""
        items = [item for _, item in self.calls.values()] + list(self.waiting)
        self.calls.clear()
        self.waiting.clear()
        for item in items:
            if not item.future.done():
                with contextlib.suppress(Exception):  # cancelled meanwhile
                    item.future.set_exception(error)

    # ------------------------------------------------------------- the thread

    def _loop(self) -> None:
        try:
            serve(self, self.pool)  # the engine's loop for owners of one-off calls
        except RayManagerError as error:  # shut down or broken: every future says so
            with self.pool.locked():
                self.fail_all(error)

    def step(self) -> bool:
        """Send what waits, while an actor has room (lock held); False when done."""
        self.pool.check_alive()  # breaks the pool if no actor can be kept alive
        self._send()
        if not self.calls and not self.waiting:
            self.thread = None
            return False
        return True

    def pending(self) -> tuple[dict[Any, Call], list[Any]]:
        # Items waiting for an actor wake when one becomes ready.
        starts = [slot.ready_ref for slot in self.pool.core.starting()
                  if slot.ready_ref is not None]
        return {ref: call for ref, (call, _) in self.calls.items()}, starts

    def wait_news(self, pending: tuple[dict[Any, Call], list[Any]]
                  ) -> list[tuple[Call, Outcome]]:
        try:
            return wait_for(self.pool, *pending, timeout=POLL_SECONDS)
        except RayManagerError:
            return []  # shut down meanwhile: the next turn fails the futures

    def settle(self, news: list[tuple[Call, Outcome]]) -> None:
        for call, outcome in news:
            entry = self.calls.get(call.ref)
            if entry is not None:
                self._collect(*entry, outcome)

    def _send(self) -> None:
        while self.waiting:
            slot = self._free_slot()
            if slot is None:
                self.pool.grow()  # an elastic pool below its max starts one more
                return
            item = self.waiting.popleft()
            # A retried item's future already runs; a new one may have been cancelled.
            if not item.future.running() and not item.future.set_running_or_notify_cancel():
                continue
            self._call(slot, item)

    def _call(self, slot: Slot, item: _Item) -> None:
        ref = slot.handle.process_one.remote(item.batch)
        slot.sent_to_generation += 1
        self.calls[ref] = (self.pool.register_call(slot, self, ref), item)

    def _free_slot(self) -> Slot | None:
        return self.pool.core.free_slot(CALLS_PER_ACTOR)  # the pool's index: O(log n)

    def _collect(self, call: Call, item: _Item, outcome: Outcome) -> None:
        value, cause = self.pool.settle(call, outcome)
        if value is LOST:
            return  # the pool told call_lost: sent again, or failed for good
        if cause is not None:
            del self.calls[call.ref]
            label = call.slot.label(self.pool.actor_name)
            error = BatchError(f"submitted item {item.index}'s result could not reach the "
                               f"driver from {label}", index=item.index, actor=label,
                               attempts=item.attempts + 1)
            error.__cause__ = cause
            item.future.set_exception(error)
            return
        self.call_done(call, value)

    # ------------------------------------------------------------- CallOwner

    def call_done(self, call: Call, value: Any) -> None:
        entry = self.calls.pop(call.ref, None)
        if entry is None:
            return
        item = entry[1]
        self.pool.record(call, 1, 0.0)
        if isinstance(value, Failure):
            label = call.slot.label(self.pool.actor_name)
            item.future.set_exception(raised_error(
                value, f"submitted item {item.index} raised {value.type_name} in {label}",
                index=item.index, actor=label, attempts=item.attempts + 1))
        else:
            item.future.set_result(value)

    def call_lost(self, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        entry = self.calls.pop(call.ref, None)
        if entry is None:
            return
        item = entry[1]
        # The engine's one charging rule; an item is one batch, so a death
        # that may be its own is only re-tried (it runs again, maybe alone).
        if policy.blame(call, running=running, alone=alone, loss=loss) is policy.Blame.ITS:
            item.attempts += 1
            self.pool.count_retry()
        if item.attempts > item.max_retries:
            item.future.set_exception(WorkerDiedError(
                f"submitted item {item.index} lost its worker on all {item.attempts} tries "
                f"({loss.reason}); last on {loss.actor}",
                index=item.index, actor=loss.actor, attempts=item.attempts,
            ))
            return
        self.waiting.appendleft(item)  # sent again, ahead of new items, by the thread
