"""The simulator catches planted engine bugs: a mutation test of its checks.

Each mutation below replaces one function or method of the engine
(``raymanager.engine.run``, ``policy``, the index of ready slots, the pool's
core ``raymanager.engine.pool``) with a plausible wrong version, and the
test runs the seeded schedules of ``engine_schedules`` (the same ranges as CI's
model test) until the simulator raises a :class:`Violation`. Every mutation
must be caught within :data:`LIMIT` schedules, the CI model test's count; the
unmutated engine passes every schedule any mutation needed.

Three classes survived an earlier, independent mutation check of the
simulator (issue 30), and each has mutations here:

- *a policy checked against itself*: ``fair_share_divides_by_the_others``
  (the simulator recomputes the share from its own ledger);
- *no bound on a poison batch's damage*: ``retry_bound_off_by_one``,
  ``died_never_charged``, ``queue_behind_a_suspect``;
- *blame from the engine's own idea*: ``timeout_blames_the_first_call``,
  ``every_call_the_timeout_culprit``, ``every_lost_call_alone``,
  ``preemption_charged`` (the simulator judges each charge by the true cause
  of the death, not by the culprit the engine names).

The kill table (mutation -> schedules until caught)::

    python tests/test_engine_mutations.py --out docs/results/engine-mutations.json
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import logging
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from engine_schedules import quiet_engine, run_schedule, seeded_schedule  # noqa: F401 (autouse)

from raymanager.engine import policy
from raymanager.engine.pool import PoolCore
from raymanager.engine.run import Expire, RunCore, Send
from raymanager.engine.simulator import Violation
from raymanager.engine.slot_board import SlotList
from raymanager.engine.slots import Call, Loss, LossKind, Slot, SlotState

#: Schedules a mutation may take to be caught: the CI model test's seeded count.
LIMIT = 10_000
#: The seeded stream the mutations run on (not CI's, not the big run's).
SEED = "mutations"

Patch = Callable[[pytest.MonkeyPatch], None]
MUTATIONS: dict[str, tuple[str, Patch]] = {}


def mutation(name: str, what: str) -> Callable[[Patch], Patch]:
    def register(patch: Patch) -> Patch:
        MUTATIONS[name] = (what, patch)
        return patch
    return register


_lost, _returned, _close = RunCore.lost, RunCore.returned, RunCore.close
_expired = RunCore.expired
_next_send, _requeue_split = RunCore.next_send, RunCore._requeue_split
_spawn, _pool_lose, _tick = PoolCore.spawn, PoolCore.lose, PoolCore.tick
_record = PoolCore.record
_fair_share, _queue_depth, _may_queue = (policy.fair_share, policy.queue_depth,
                                         policy.may_queue_behind)


@mutation("retry_bound_off_by_one", "a lost batch is re-run while attempts <= max_retries + 1")
def _retry_bound(mp: pytest.MonkeyPatch) -> None:
    def charge(self: RunCore, group: Any, loss: Loss) -> None:
        group.attempts += 1
        if self.on_charge is not None:
            self.on_charge()
        if group.attempts <= self.config.max_retries + 1:  # the bug: one try too many
            self._requeue(group)
            return
        from raymanager.engine.run import _lost_error
        self._fail(group.first, _lost_error(group.first, group.attempts, loss, self.config),
                   group)
    mp.setattr(RunCore, "_charge", charge)


@mutation("died_never_charged", "a worker death is never pinned on the batch running alone")
def _never_charged(mp: pytest.MonkeyPatch) -> None:
    def lost(self: RunCore, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        _lost(self, call, running, alone and loss.kind is not LossKind.DIED, loss)
    mp.setattr(RunCore, "lost", lost)


@mutation("every_lost_call_alone", "every call lost with an actor is treated as alone on it")
def _every_alone(mp: pytest.MonkeyPatch) -> None:
    def lost(self: RunCore, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        _lost(self, call, running, True, loss)
    mp.setattr(RunCore, "lost", lost)


@mutation("every_call_the_timeout_culprit",
          "each call lost to a timeout believes it is the call that ran over")
def _every_culprit(mp: pytest.MonkeyPatch) -> None:
    def lost(self: RunCore, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        if loss.kind is LossKind.TIMED_OUT:
            loss = dataclasses.replace(loss, culprit=call)
        _lost(self, call, running, alone, loss)
    mp.setattr(RunCore, "lost", lost)


@mutation("timeout_blames_the_first_call",
          "a timeout names the actor's first call as the one that ran over")
def _first_call_blamed(mp: pytest.MonkeyPatch) -> None:
    def expired(self: RunCore, now: float) -> list[Expire]:
        return [Expire(e.call, dataclasses.replace(e.loss, culprit=e.call.slot.calls[0]))
                if e.call.slot.calls else e for e in _expired(self, now)]
    mp.setattr(RunCore, "expired", expired)


@mutation("preemption_charged", "a drained node's preemption is charged like a death")
def _preemption(mp: pytest.MonkeyPatch) -> None:
    def lost(self: RunCore, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        if loss.kind is LossKind.PREEMPTED:
            loss = dataclasses.replace(loss, kind=LossKind.DIED)
        _lost(self, call, running, alone, loss)
    mp.setattr(RunCore, "lost", lost)


@mutation("fair_share_divides_by_the_others",
          "the fair share divides the pool by the other busy runs, not by all of them")
def _fair_share_bug(mp: pytest.MonkeyPatch) -> None:
    def fair_share(num_slots: int, max_actors: int, other_busy_runs: int) -> int:
        return max(1, -(-max(num_slots, max_actors) // max(1, other_busy_runs)))
    mp.setattr(policy, "fair_share", fair_share)


@mutation("queue_behind_a_suspect", "a call may queue behind a suspect batch")
def _behind_suspect(mp: pytest.MonkeyPatch) -> None:
    def may_queue_behind(calls: Any, *, max_concurrency: int, now: float) -> bool:
        calls = [c for c in calls if not (c.group is not None and c.group.suspect)]
        return _may_queue(calls, max_concurrency=max_concurrency, now=now)
    mp.setattr(policy, "may_queue_behind", may_queue_behind)


@mutation("neighbours_not_requeued", "calls queued behind a lost one are forgotten, not re-run")
def _neighbours(mp: pytest.MonkeyPatch) -> None:
    def lost(self: RunCore, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        if not running and loss.kind is not LossKind.TIMED_OUT:
            self._forget(call)
            return
        _lost(self, call, running, alone, loss)
    mp.setattr(RunCore, "lost", lost)


@mutation("drop_a_result", "the last result of a multi-batch call is not recorded")
def _drop(mp: pytest.MonkeyPatch) -> None:
    def returned(self: RunCore, call: Call, report: Any) -> bool:
        if len(report.results) > 1:
            report = dataclasses.replace(report, results=report.results[:-1])
        return _returned(self, call, report)
    mp.setattr(RunCore, "returned", returned)


@mutation("drop_a_result_quietly",
          "as drop_a_result, with the engine's own stall and completeness checks gone")
def _drop_quietly(mp: pytest.MonkeyPatch) -> None:
    _drop(mp)
    mp.setattr(RunCore, "check_stall", lambda self: None)
    mp.setattr(RunCore, "check_complete", lambda self: None)


@mutation("duplicate_a_result", "a split group is re-run whole as well as batch by batch")
def _duplicate(mp: pytest.MonkeyPatch) -> None:
    def requeue_split(self: RunCore, group: Any) -> None:
        _requeue_split(self, group)
        if group.count > 1:
            self._requeue(group)
    mp.setattr(RunCore, "_requeue_split", requeue_split)


@mutation("out_of_order", "an ordered run hands out results in arrival order")
def _out_of_order(mp: pytest.MonkeyPatch) -> None:
    def pop_ready(self: RunCore) -> list[tuple[int, Any]]:
        ready: list[tuple[int, Any]] = []
        done, index = self.done, self.next_to_yield
        while done:
            if self.ordered and index not in done:
                break
            key = next(iter(done))  # the bug: the oldest result, not the next in order
            is_error = type(done[key]).__name__ == "_Raise"
            if is_error and ready:
                break
            ready.append((key, done.pop(key)))
            index += 1
            if is_error:
                break
        if self.ordered:
            self.next_to_yield = index
        self.delivered += len(ready)
        if type(ready[0][1]).__name__ == "_Raise":
            raise ready[0][1].error
        return ready
    mp.setattr(RunCore, "pop_ready", pop_ready)


@mutation("stop_leaves_queued_calls", "a stopped run names only its calls already running")
def _stop(mp: pytest.MonkeyPatch) -> None:
    def close(self: RunCore) -> list[Call]:
        return [c for c in _close(self) if c.started is not None]
    mp.setattr(RunCore, "close", close)


@mutation("exceeds_max_concurrency", "an actor gets max_concurrency + 1 calls")
def _concurrency(mp: pytest.MonkeyPatch) -> None:
    def queue_depth(**kwargs: Any) -> int:
        depth = _queue_depth(**kwargs)
        return depth + 1 if kwargs["max_concurrency"] > 1 else depth
    mp.setattr(policy, "queue_depth", queue_depth)


@mutation("sends_to_a_draining_slot", "the index of ready slots files a draining one as ready")
def _draining(mp: pytest.MonkeyPatch) -> None:
    def slot_changed(self: SlotList, slot: Slot, head_moved: bool) -> None:
        key = id(slot)
        if key not in self._key:
            return
        state = slot.state
        if self._state_of[key] is not state:
            del self._by_state[self._state_of[key]][key]
            self._by_state[state][key] = slot
            self._state_of[key] = state
        # The bug: a draining slot is filed with the ready ones.
        filed = slot.state in (SlotState.READY, SlotState.DRAINING)
        bucket = len(slot.calls) if filed else None
        old = self._bucket[key]
        if bucket != old:
            self._bucket[key] = bucket
            if old is not None:
                self._filed[old] -= 1
            if bucket is not None:
                while len(self._heaps) <= bucket:
                    self._heaps.append([])
                    self._filed.append(0)
                self._filed[bucket] += 1
                heapq.heappush(self._heaps[bucket], (self._key[key], slot))
        if head_moved and slot.calls:
            self.moves.append(slot)
    mp.setattr(SlotList, "slot_changed", slot_changed)


@mutation("batches_left_ignored", "calls are sized without the actor's max_batches_per_actor")
def _batches_left(mp: pytest.MonkeyPatch) -> None:
    def next_send(self: RunCore, slots: Any, now: float, batches_left: Any = lambda s: None,
                  share: int | None = None) -> Any:
        return _next_send(self, slots, now, lambda slot: None, share)
    mp.setattr(RunCore, "next_send", next_send)


@mutation("clock_starts_when_queued", "a queued call's timeout starts when it is sent")
def _clock(mp: pytest.MonkeyPatch) -> None:
    def next_send(self: RunCore, slots: Any, now: float, batches_left: Any = lambda s: None,
                  share: int | None = None) -> Any:
        command = _next_send(self, slots, now, batches_left, share)
        if isinstance(command, Send) and command.started is None:
            command = dataclasses.replace(command, started=now)
        return command
    mp.setattr(RunCore, "next_send", next_send)


# ----------------------------------------------------------------- the pool's core


@mutation("recycle_counts_delivered", "an actor is recycled only once its results were delivered")
def _recycle_delivered(mp: pytest.MonkeyPatch) -> None:
    delivered: dict[tuple[int, int], int] = {}  # (slot, generation) -> batches delivered

    def record(self: PoolCore, call: Call, batches: int, seconds: float) -> None:
        _record(self, call, batches, seconds)
        key = (id(call.slot), call.generation)
        delivered[key] = delivered.get(key, 0) + batches

    def finished(self: PoolCore, call: Call, now: float) -> None:
        slot = call.slot
        if call.generation != slot.generation:
            return
        if call in slot.calls:
            slot.calls.remove(call)
        if slot.calls:
            return
        slot.idle_since = now
        limit = self.max_batches_per_actor
        # The bug (the adapter's before engine v4): delivered, not sent, batches count.
        if (limit is not None and delivered.get((id(slot), slot.generation), 0) >= limit
                and slot.state is SlotState.READY and self.running):
            self.recycle(slot, now)
    mp.setattr(PoolCore, "record", record)
    mp.setattr(PoolCore, "finished", finished)


@mutation("recycle_without_close", "a recycled actor is replaced without being closed")
def _recycle_no_close(mp: pytest.MonkeyPatch) -> None:
    def recycle(self: PoolCore, slot: Slot, now: float) -> None:
        self.recycled += 1
        self.spawn(slot, now)  # the bug: the old actor is neither closed nor killed
    mp.setattr(PoolCore, "recycle", recycle)


@mutation("promote_a_cold_spare", "a spare still starting is promoted into a slot")
def _cold_spare(mp: pytest.MonkeyPatch) -> None:
    def spawn(self: PoolCore, slot: Slot, now: float) -> None:
        if self.spares and self.spares[0].pid is None:
            self.spares[0].pid = -1  # the bug: taken as ready before it answered
        _spawn(self, slot, now)
    mp.setattr(PoolCore, "spawn", spawn)


@mutation("lost_call_never_running", "the pool tells no lost call that it was the one running")
def _never_running(mp: pytest.MonkeyPatch) -> None:
    def lose(self: PoolCore, slot: Slot, generation: int, loss: Loss, now: float,
             salvage: Any = lambda call: (False, None)) -> None:
        calls = list(slot.calls)
        for call in calls:  # the bug: every owner is told "queued", never "running"
            owner = call.owner
            call.owner = _Queued(owner)
        _pool_lose(self, slot, generation, loss, now, salvage)
    mp.setattr(PoolCore, "lose", lose)


@mutation("drained_slot_stays", "a drained slot whose calls are done is never moved or retired")
def _drained_stays(mp: pytest.MonkeyPatch) -> None:
    def tick(self: PoolCore, now: float) -> None:
        draining = list(self.slots.in_state(SlotState.DRAINING))
        for slot in draining:
            slot.calls.append(_PLUG)  # hidden from the tick: it looks busy
        try:
            _tick(self, now)
        finally:
            for slot in draining:
                if _PLUG in slot.calls:
                    slot.calls.remove(_PLUG)
    mp.setattr(PoolCore, "tick", tick)


@mutation("backoff_never_retried", "a slot that failed to start is never started again")
def _backoff_stays(mp: pytest.MonkeyPatch) -> None:
    def tick(self: PoolCore, now: float) -> None:
        backing_off = list(self.slots.in_state(SlotState.BACKOFF))
        for slot in backing_off:
            slot.retry_at += 1e9  # the bug: its retry time never comes
        _tick(self, now)
        for slot in backing_off:
            slot.retry_at -= 1e9
    mp.setattr(PoolCore, "tick", tick)


@mutation("pool_share_ignores_other_runs", "the pool gives each run all its actors")
def _pool_share(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(PoolCore, "fair_share", lambda self, run: len(self.slots))


class _Queued:
    """A call's owner seen through the mutation above: told every loss was queued."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner

    def call_done(self, call: Call, value: Any) -> None:
        call.owner = self.owner
        self.owner.call_done(call, value)

    def call_lost(self, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        call.owner = self.owner
        self.owner.call_lost(call, False, alone, loss)


_PLUG = Call(None, Slot(index=-99), 0, _Queued(None))



def schedules_until_caught(limit: int = LIMIT) -> tuple[int | None, str]:
    """Run seeded schedules until one raises a Violation: (how many ran, its text)."""
    for index in range(limit):
        try:
            run_schedule(seeded_schedule(SEED, index))
        except Violation as violation:
            return index + 1, str(violation)
    return None, ""


#: Schedules each mutation needed, filled as the tests run (for the clean check).
_NEEDED: dict[str, int] = {}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_the_simulator_catches_the_mutation(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, patch = MUTATIONS[name]
    patch(monkeypatch)
    ran, text = schedules_until_caught()
    assert ran is not None, f"{name} survived {LIMIT} schedules"
    _NEEDED[name] = ran
    print(f"{name}: caught after {ran} schedules: {text}")


def test_the_unmutated_engine_passes_the_same_schedules() -> None:
    # The schedules any mutation needed (all of them when run alone).
    needed = max(_NEEDED.values(), default=LIMIT // 5)
    for index in range(needed):
        run_schedule(seeded_schedule(SEED, index))


def test_mutations_restore_the_engine() -> None:
    assert (RunCore.lost, RunCore.returned, policy.fair_share) == (_lost, _returned,
                                                                     _fair_share)
    assert (PoolCore.spawn, PoolCore.lose, PoolCore.tick) == (_spawn, _pool_lose, _tick)


def kill_table(limit: int = LIMIT) -> list[dict[str, Any]]:
    """Each mutation, what it plants, and the schedules until the simulator caught it."""
    rows = []
    for name, (what, patch) in MUTATIONS.items():
        began = time.process_time()
        with pytest.MonkeyPatch.context() as mp:
            patch(mp)
            ran, text = schedules_until_caught(limit)
        rows.append({"mutation": name, "plants": what, "schedules_until_caught": ran,
                     "violation": text[:300], "cpu_s": round(time.process_time() - began, 3)})
        print(f"{name}: {ran} ({text[:100]})", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=LIMIT)
    args_list = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(args_list)
    logging.getLogger("raymanager").setLevel(logging.ERROR)
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "benchmarks"))
    from machine import describe

    rows = kill_table(args.limit)
    needed = max((r["schedules_until_caught"] or args.limit) for r in rows)
    clean_ran = 0
    for index in range(needed):
        run_schedule(seeded_schedule(SEED, index))  # raises if the clean engine fails
        clean_ran += 1
    report = {
        "kind": "engine_mutations",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join(["python", "tests/test_engine_mutations.py", *args_list]),
        "machine": describe(packages=("hypothesis",)),
        "seed": SEED,
        "limit": args.limit,
        "rows": rows,
        "caught": sum(1 for r in rows if r["schedules_until_caught"] is not None),
        "unmutated_schedules_passed": clean_ran,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0 if report["caught"] == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
