"""A broadcast: one method called on every actor of a pool, with the same arguments.

The arguments are put in the object store once. A call whose actor dies is
sent again to the replacement (or taken from the replacement's replay, when
the broadcast is remembered with ``replay_on_restart``); a death the call
caused alone (the engine's one charging rule, ``policy.blame``) uses a try, up
to ``max_retries`` per actor, and any loss at most a few times that. The pool
owns the slots and reports each call's fate here (``call_done`` /
``call_lost``), as it does for runs.
"""

from __future__ import annotations

import collections
from typing import Any

from raymanager.engine import policy
from raymanager.engine.loop import serve
from raymanager.engine.slots import Call, Loss, Slot, SlotState
from raymanager.errors import BroadcastError, PoolBrokenError
from raymanager.pool.adapter import LOST, Outcome, PoolAdapter, wait_for

__all__ = ["Broadcast"]

#: A broadcast's call lost this many times per try, charged or not, fails.
UNCHARGED_LOSSES_PER_TRY = 4


class Broadcast:
    """One broadcast in flight: a call per slot, retried on a replacement."""

    def __init__(self, pool: PoolAdapter, method: str, payload_ref: Any, max_retries: int) -> None:
        self.pool = pool
        self.method = method
        self.payload_ref = payload_ref
        self.max_retries = max_retries
        self.order = [slot.index for slot in pool.slots]  # answers in this order
        self.answers: dict[int, Any] = {}
        self.calls: dict[Any, Call] = {}
        self.waiting_replay: dict[int, Slot] = {}  # slot index -> slot whose replay answers
        self.losses: collections.Counter[int] = collections.Counter()  # charged, per slot
        self.lost: collections.Counter[int] = collections.Counter()  # all, per slot
        self.error: BaseException | None = None
        self.closed = False

    def send(self, slot: Slot) -> None:
        """Send the call to ``slot``'s current actor (lock held)."""
        if slot.state not in (SlotState.READY, SlotState.STARTING):
            return  # no actor there: it answers None (a replayed broadcast reaches it later)
        if slot.state is SlotState.STARTING and slot.replays.get(self.method) is self.payload_ref:
            self.waiting_replay[slot.index] = slot  # the replay makes this very call
            return
        ref = slot.handle.call.remote(self.method, self.payload_ref)
        self.calls[ref] = self.pool.register_call(slot, self, ref)

    def call_done(self, call: Call, value: Any) -> None:
        self.calls.pop(call.ref, None)
        self.answers[call.slot.index] = value

    def call_lost(self, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        self.calls.pop(call.ref, None)
        if self.closed:
            return
        index = call.slot.index
        # The engine's one charging rule: a loss that was not this call's
        # doing (a drain, a run's batch that killed the actor first) uses no try.
        if policy.blame(call, running=running, alone=alone, loss=loss) is policy.Blame.ITS:
            self.losses[index] += 1
        self.lost[index] += 1
        # Uncharged losses are bounded too: a broadcast that kills its actor
        # while other calls share it is never alone, yet must end.
        if (self.losses[index] > self.max_retries
                or self.lost[index] > UNCHARGED_LOSSES_PER_TRY * (self.max_retries + 1)):
            self.error = PoolBrokenError(
                f"broadcast of {self.method!r} lost its actor {self.lost[index]} times on "
                f"{loss.actor}: {loss.reason}"
            )
            return
        self.send(call.slot)

    def wait(self) -> list[Any]:
        try:
            return self._wait()
        except BaseException:
            with self.pool.locked():
                # Calls still out are nobody's now: forget them, so the pool
                # does not route their fate to a broadcast that has ended.
                for call in self.calls.values():
                    self.pool.finished(call)
                self.calls.clear()
                self.closed = True
            raise

    def _wait(self) -> list[Any]:
        serve(self, self.pool)  # the engine's loop for owners of one-off calls
        return [self.answers.get(index) for index in self.order]

    def step(self) -> bool:
        """Take the answers of replays (lock held); False once every answer is in."""
        self._take_replays()
        if self.error is not None:
            raise self.error
        return bool(self.calls or self.waiting_replay)

    def pending(self) -> tuple[dict[Any, Call], list[Any]]:
        starts = [slot.ready_ref for slot in self.waiting_replay.values()
                  if slot.ready_ref is not None]
        return dict(self.calls), starts

    def wait_news(self, pending: tuple[dict[Any, Call], list[Any]]
                  ) -> list[tuple[Call, Outcome]]:
        return wait_for(self.pool, *pending, timeout=1.0)

    def settle(self, news: list[tuple[Call, Outcome]]) -> None:
        for call, outcome in news:
            if call.ref in self.calls:
                self._collect(call, outcome)

    def _take_replays(self) -> None:
        for index, slot in list(self.waiting_replay.items()):
            if slot.state is SlotState.READY:
                self.answers[index] = slot.replay_answers.get(self.method)
                del self.waiting_replay[index]
            elif slot.state is not SlotState.STARTING:
                del self.waiting_replay[index]  # failed to start: answers None

    def _collect(self, call: Call, outcome: Outcome) -> None:
        value, cause = self.pool.settle(call, outcome)
        if value is LOST:
            return  # the pool told call_lost: sent again to the replacement
        if cause is not None:
            self.calls.pop(call.ref, None)
            actor = call.slot.label(self.pool.actor_name)
            error = BroadcastError(
                f"broadcast of {self.method!r} raised {type(cause).__name__} in {actor}",
                method=self.method, actor=actor,
            )
            raise error from cause
        self.call_done(call, value)
