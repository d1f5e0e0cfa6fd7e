"""A pool of simulated actors under a virtual clock, driving the real engine.

The simulator is the world a pool lives in, and nothing else: actors that
start after a delay (or fail to start), run their calls in order (or ``k`` at
a time), take scripted time per batch, return results, raise, die and hang;
warm spares that answer ready(); nodes that are drained, whose actors are
preempted if they overrun their grace; a consumer that pulls from one or
more runs and may stop them. The decisions are the engine's own: the pool's
core (:class:`~raymanager.engine.pool.PoolCore`: starts, spares, back-off,
drains, recycling, losses) and each run's core, driven by the one loop
(:func:`raymanager.engine.loop.drive`) that the Ray adapter runs too. The
simulator hosts that loop (:class:`~raymanager.engine.loop.Host`) with a
virtual clock and no lock, and performs the pool core's commands
(:class:`~raymanager.engine.pool.Actors`) on its simulated actors.

It judges the engine by **its own records, never by the engine's policy or
the engine's idea of blame** (:class:`Violation` names the first promise
broken). The simulator keeps a ledger of every call it placed on an actor,
and for every actor death it causes it records the *true cause*: the
batch's own scripted kill, a batch that truly ran past ``timeout_s`` (or
hung), an external SIGKILL, another run's stop, or a drain's preemption.
Against those it checks:

- **progress**: while a run is not finished, there is always something to
  wait for (a call in flight, an actor starting) or something to hand out;
  the engine never raises an error of its own;
- **exactly once, in order**: every batch is handed out once, as its result
  or its error, in input order for ordered runs;
- **blame from the truth**: a try is charged to a batch only for a death that
  batch caused (its own kill, its own overrun or hang, or an external kill
  while its call was the only one running on that actor); deaths that are not
  its fault (another run's stop, a drain's preemption, a neighbour's kill) are
  never charged; a batch failed for lost workers was charged at least once;
- **a poison batch's damage is bounded**: a one-batch call that kills its
  actor (or overruns) while alone on it is charged for it; a batch causes at
  most one uncharged death of its own (the one that shows it up as a suspect);
  at most ``max_retries + 1`` charged deaths, after which it fails and is
  never run again;
- **fair share**, recomputed here: a run never takes one more actor when it
  already keeps busy ``ceil(pool size / (1 + other busy runs))`` actors, or its
  ``num_parallel``, counted from the simulator's ledger;
- **recycling**: no actor is sent more than ``max_batches_per_actor``
  batches (counted by the simulator); one sent its max is replaced once no
  call is left on it, and closed (or killed) before its successor starts;
- **lifecycle**: no slot's actor starts while its previous one is alive;
  every state change follows the lifecycle table (the slots check it);
- **bounds**: no actor holds more calls than ``max(2, max_concurrency)``, or
  gets a call while not ready (a spare, a draining or starting slot); a suspect
  batch is sent only to an idle actor;
- **stopping**: a stopped run names every call of its own still on an actor
  (from the ledger), so none is left behind.

With ``runs=2`` two runs share the actors, as two ``imap`` streams of one
pool do; the consumer pulls from them in a random interleaving, and each run
while it waits lets the other's calls finish and time out (the loop does),
so a suspended run never stalls the other.

It is also the engine's scale model: ``benchmarks/engine_scale.py`` drives
thousands of simulated actors to measure the driver's own cost per decision.

Example::

    >>> out = simulate(num_batches=50, num_actors=3, seed=1, kill_at={7: 1})
    >>> sorted(out.results) == list(range(50)) and out.restarts >= 1
    True
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from raymanager.batching import BatchSource, make_source
from raymanager.config import BatchConfig
from raymanager.engine.loop import STARTED, drive
from raymanager.engine.pool import PoolCore, RunOwner
from raymanager.engine.run import Input, Read, Record, RunCore, Send
from raymanager.engine.run_io import read_input
from raymanager.engine.slots import Call, Loss, LossKind, Slot, SlotState
from raymanager.engine.wire import Failure, Report
from raymanager.errors import BatchError

__all__ = ["Outcome", "Violation", "simulate"]

#: Float slack when the simulator compares its own clock readings.
_EPS = 1e-9


class Violation(AssertionError):
    """An engine promise broken in a simulated schedule."""


@dataclass
class Outcome:
    """What a simulated run handed out, and what it cost."""

    results: dict[int, Any] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    raised: BatchError | None = None
    restarts: int = 0
    calls: int = 0
    decisions: int = 0
    steps: int = 0
    virtual_seconds: float = 0.0
    #: Actors the pool had at the end (an elastic pool grows).
    actors: int = 0
    #: The outcomes of the other runs that shared the pool (``runs > 1``).
    others: list[Outcome] = field(default_factory=list)
    #: Actors ended, by true cause: deaths ("kill", "overrun", "external",
    #: "stopped", "preempted") and ends that are no death ("recycled").
    deaths: Counter[str] = field(default_factory=Counter)
    #: Tries the engine charged (for any run), as seen on the groups.
    charges: int = 0


@dataclass
class _Running:
    """A call an actor works on; its batches finish one after another."""

    call: Call
    began: float
    #: When each batch of the call ends (inf for a hung one; cut at a kill).
    batch_ends: list[float]

    def batch_at(self, now: float) -> tuple[int, float]:
        """The batch (offset in the group) running at ``now``, and when it began."""
        start = self.began
        for k, end in enumerate(self.batch_ends):
            if end > now:
                return k, start
            start = end
        return len(self.batch_ends) - 1, start


@dataclass(frozen=True)
class _Death:
    """What truly ended an actor, as only the simulator knows it.

    ``culprits``: the (run, batch) that may be charged a try for it; ``own``:
    those whose own fault it was (kill or overrun), for the poison bound.
    """

    cause: str
    culprits: frozenset[tuple[int, int]] = frozenset()
    own: frozenset[tuple[int, int]] = frozenset()


class _Actor:
    """The simulated actor of one slot (one generation)."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.running: list[_Running] = []


def _value(index: int) -> int:
    return index


def _share(pool_size: int, other_busy_runs: int) -> int:
    """The fair share, from its definition: the pool split evenly, odd actors rounded up.

    Written apart from ``policy.fair_share`` on purpose: the oracle must not
    be the function it judges.
    """
    runs = other_busy_runs + 1
    share, odd = divmod(pool_size, runs)
    return max(1, share + (1 if odd else 0))


def simulate(
    *,
    num_batches: int,
    num_actors: int,
    seed: int = 0,
    source: str = "list",
    batch_seconds: Callable[[int], float] | None = None,
    raise_at: Mapping[int, int] | None = None,
    kill_at: Mapping[int, int] | None = None,
    hang_at: Mapping[int, int] | None = None,
    external_kills: int = 0,
    drains: int = 0,
    spares: int = 0,
    failed_starts: int = 0,
    resizes: int = 0,
    interrupt: bool = False,
    max_batches_per_actor: int | None = None,
    start_delay: float = 0.5,
    on_error: Any = "raise",
    max_retries: int = 3,
    timeout_s: float | None = None,
    max_concurrency: int = 1,
    num_parallel: int | None = None,
    ordered: bool = True,
    stop_after: int | None = None,
    runs: int = 1,
    max_actors: int | None = None,
    max_steps: int = 1_000_000,
    driver_seconds_per_call: float = 0.0,
) -> Outcome:
    """Run ``num_batches`` one-row batches (row ``i`` gives result ``i``) on simulated actors.

    ``raise_at``/``kill_at``/``hang_at`` map a batch index to how many of its
    tries raise, kill their worker, or hang; ``external_kills`` SIGKILLs random
    busy actors at random times; ``drains`` drains the node of a random actor
    at random times (its actor finishes its calls, then is replaced, or is
    preempted after a grace); ``spares`` warm spare actors take over lost
    actors' places; ``failed_starts`` starts fail (each start fails with
    probability 1/2 until that many have), and their slots back off;
    ``resizes`` resizes the pool at random times (a new ``(min, max)`` within
    ``1..max(num_actors, max_actors)``: idle actors go, busy ones drain);
    ``stop_after`` makes the consumer stop after that many
    results (with ``interrupt``, by Ctrl-C: a KeyboardInterrupt thrown into
    the run); ``runs`` runs of the same kind share the actors;
    ``max_actors`` makes the pool elastic, from ``num_actors`` up to it;
    ``max_batches_per_actor`` recycles an actor once it was sent that many.
    ``driver_seconds_per_call`` makes the driver a serial resource of the
    scale model: each call it sends keeps it busy that long of virtual time
    (what Ray charges the driver per call), while the actors go on; what they
    did meanwhile is seen at its next look.
    Raises :class:`Violation` on a broken promise.
    """
    rng = random.Random(seed)
    durations = batch_seconds or (lambda i: 0.001 + (i * 7919 % 5) / 1000)
    ceiling = max(num_actors, max_actors or num_actors)
    config = BatchConfig(batch_size=1, num_parallel=num_parallel or ceiling,
                         max_retries=max_retries, timeout_s=timeout_s, on_error=on_error)
    sim = _Sim(
        rng=rng,
        durations=durations,
        raise_at=dict(raise_at or {}),
        kill_at=dict(kill_at or {}),
        hang_at=dict(hang_at or {}),
        start_delay=start_delay,
        max_concurrency=max_concurrency,
        stop_on_error=on_error == "raise",
        config=config,
        failed_starts=failed_starts,
        max_batches_per_actor=max_batches_per_actor,
        ceiling=ceiling,
        interrupt=interrupt,
        driver_seconds_per_call=driver_seconds_per_call,
        max_steps=max_steps,
    )
    sim.pool = PoolCore(sim, actor_name="Sim", num_actors=(num_actors, ceiling),
                        max_concurrency=max_concurrency,
                        max_batches_per_actor=max_batches_per_actor, spare_actors=spares)
    sim.pool.open(sim.clock)
    for number in range(runs):
        rows: Any = list(range(num_batches))
        if source == "iterator":
            rows = iter(rows)
        elif source == "generator":
            rows = (i for i in range(num_batches))
        batch_source = make_source(rows, 1)
        core = RunCore(batch_source, config, width=min(config.num_parallel, ceiling),
                       max_concurrency=max_concurrency, actor_name="Sim", ordered=ordered,
                       on_charge=sim.count_charge)
        sim.runs.append(_SimRun(sim, number, core, batch_source, config, ordered, stop_after))
    mean_gap = max(0.01, 4 * durations(0) * num_batches / num_actors)
    for kind, count in (("external_kill", external_kills), ("drain", drains),
                        ("resize", resizes)):
        horizon = 0.0
        for _ in range(count):
            horizon += rng.expovariate(1.0 / mean_gap)
            sim.schedule(horizon, kind, None)
    outcomes = sim.run()
    outcomes[0].others = outcomes[1:]
    return outcomes[0]


class _SimRun:
    """One run of the simulation: its core, its consumer's state, its outcome."""

    def __init__(self, sim: _Sim, number: int, core: RunCore, source: BatchSource,
                 config: BatchConfig, ordered: bool, stop_after: int | None) -> None:
        self.sim = sim
        self.number = number
        self.core = core
        self.source = source
        self.config = config
        self.ordered = ordered
        self.stop_after = stop_after
        self.out = Outcome()
        self.stream: Generator[list[Any], Any, None] | None = None
        #: The simulator's ledger: calls of this run it placed on an actor and
        #: that have not returned or been lost, and how many per slot.
        self.placed: dict[int, Call] = {}
        self.per_slot: Counter[int] = Counter()
        #: Set by the simulator when the consumer stops the run early.
        self.stopped = False

    # The pool's core tells a call's owner of its fate (CallOwner).
    def call_done(self, call: Call, value: Any) -> None:
        # Only for a call that finished before its actor was lost (salvaged):
        # a simulated call that finished has returned already.
        raise Violation(f"run {self.number}: a call salvaged that never finished")

    def call_lost(self, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        self.sim.judge_loss(self, call, running, alone, loss)

    def place(self, call: Call) -> None:
        self.placed[id(call)] = call
        self.per_slot[call.slot.index] += 1

    def settle(self, call: Call) -> None:
        if self.placed.pop(id(call), None) is not None:
            self.per_slot[call.slot.index] -= 1
            if not self.per_slot[call.slot.index]:
                del self.per_slot[call.slot.index]


def _run_of(call: Call) -> _SimRun:
    owner = call.owner
    assert isinstance(owner, _SimRun)
    return owner


class _Sim:
    """The simulated world: it hosts the runs' loop and performs the pool core's commands."""

    def __init__(
        self,
        *,
        rng: random.Random,
        durations: Callable[[int], float],
        raise_at: dict[int, int],
        kill_at: dict[int, int],
        hang_at: dict[int, int],
        start_delay: float,
        max_concurrency: int,
        stop_on_error: bool,
        config: BatchConfig,
        failed_starts: int = 0,
        max_batches_per_actor: int | None = None,
        ceiling: int = 1,
        interrupt: bool = False,
        driver_seconds_per_call: float = 0.0,
        max_steps: int = 1_000_000,
    ) -> None:
        self.rng = rng
        #: The host ends a call at its first failing batch (``on_error="raise"``).
        self.stop_on_error = stop_on_error
        self.config = config
        self.reports: dict[int, Report] = {}  # by id(call), made when it begins
        self.clock = 0.0
        self.durations = durations
        self.raise_at = raise_at
        self.kill_at = kill_at
        self.hang_at = hang_at
        self.start_delay = start_delay
        self.max_concurrency = max_concurrency
        self.failed_starts_left = failed_starts
        self.ceiling = ceiling  # the largest the pool may be resized to
        self.interrupt = interrupt  # a consumer that stops stops by Ctrl-C
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = itertools.count()
        # The ground truth, per (run, batch): tries begun, raises reported,
        # deaths it may be charged for, its own deaths (charged or not), and
        # the tries the engine charged it.
        self.tries: Counter[tuple[int, int]] = Counter()
        self.raised: Counter[tuple[int, int]] = Counter()
        self.chargeable: Counter[tuple[int, int]] = Counter()
        self.own_uncharged: Counter[tuple[int, int]] = Counter()
        self.charged: Counter[tuple[int, int]] = Counter()
        self.deaths: Counter[str] = Counter()
        #: The death being reported to the owners now (a charge outside one is
        #: a bug), and whether the dead actor held exactly one call (the ledger's count).
        self.judging: _Death | None = None
        self.judging_alone = False
        self.charges_seen = 0
        self.pool: PoolCore  # set by simulate: the engine's pool core, given this world
        self.driver_seconds_per_call = driver_seconds_per_call
        #: The live simulated actor of each slot, by slot index (none while starting).
        self.actors: dict[int, _Actor] = {}
        self.pids = itertools.count(1000)
        #: Spares whose actor answered ready(), by id: the only ones that may be promoted.
        self.warm: set[int] = set()
        #: Nodes drained so far (each actor has a node of its own: "n<slot>.<generation>").
        self.draining: set[str] = set()
        #: Recycling: batches sent to each slot's current actor (the
        #: simulator's own count, reset when the slot gets a new actor).
        self.max_batches_per_actor = max_batches_per_actor
        self.sent_here: Counter[int] = Counter()
        self.runs: list[_SimRun] = []
        self.turns = 0
        self.max_turns = max_steps

    # ----------------------------------------------------------------- the world

    def schedule(self, at: float, kind: str, payload: Any) -> None:
        heapq.heappush(self.events, (at, next(self.seq), kind, payload))

    def count_charge(self) -> None:
        self.charges_seen += 1
        if self.judging is None:
            raise Violation("a try was charged while no actor was being lost")

    # ----------------------------------------------------------------- the pool core's commands

    def start(self, slot: Slot) -> None:
        self._check_gone(slot)
        self.sent_here[slot.index] = 0
        delay = self.start_delay * (0.5 + self.rng.random())
        if self.failed_starts_left and self.rng.random() < 0.5:
            self.failed_starts_left -= 1
            self.schedule(self.clock + delay, "start_failed", (slot, slot.generation))
        else:
            self.schedule(self.clock + delay, "ready", (slot, slot.generation))

    def start_spare(self, spare: Slot) -> None:
        delay = self.start_delay * (0.5 + self.rng.random())
        self.schedule(self.clock + delay, "spare_ready", (spare, spare.generation))

    def promote(self, spare: Slot, slot: Slot) -> None:
        if id(spare) not in self.warm:  # the simulator's own record, not the spare's fields
            raise Violation(f"a spare promoted into slot {slot.index} before it was ready")
        self.warm.discard(id(spare))
        self._check_gone(slot)
        self.sent_here[slot.index] = 0
        self.schedule(self.clock, "ready", (slot, slot.generation))  # it is up: answers at once

    def close(self, slot: Slot) -> None:
        if self.actors.pop(slot.index, None) is not None:
            self.deaths["closed"] += 1  # recycled, shrunk or drained: no call is lost

    def kill(self, slot: Slot) -> None:
        if slot.state is not SlotState.SPARE:
            self.actors.pop(slot.index, None)

    def _check_gone(self, slot: Slot) -> None:
        if slot.index in self.actors:
            raise Violation(f"slot {slot.index}'s actor of generation {slot.generation} "
                            "starts while the one before it is alive (not closed or killed)")

    def _begin(self, actor: _Actor, now: float | None = None) -> None:
        """Start the calls an actor can run at ``now`` (default: the driver's now),
        in order, up to max_concurrency."""
        slot = actor.slot
        running = {id(r.call) for r in actor.running}
        for call in list(slot.calls):
            if len(actor.running) >= self.max_concurrency:
                break
            if id(call) in running:
                continue
            assert call.group is not None
            run = _run_of(call)
            number = run.number
            at = self.clock if now is None else now
            ends = at
            dies: float | None = None
            killer = -1
            results: list[Any] = []
            batch_ends: list[float] = []
            for k in range(call.group.count):
                index = call.group.first + k
                key = (number, index)
                if (self.charged[key] + self.raised[key] > self.config.max_retries
                        and not run.stopped):
                    raise Violation(f"run {number}: batch {index} runs again after it used "
                                    f"all {self.config.max_retries + 1} tries")
                self.tries[key] += 1
                tries = self.tries[key]
                if self.hang_at.get(index, 0) >= tries:
                    ends = float("inf")
                    batch_ends.append(ends)
                    break
                if self.kill_at.get(index, 0) >= tries:
                    dies = ends + self.durations(index) / 2
                    killer = index
                    batch_ends.append(float("inf"))
                    break
                ends += self.durations(index)
                batch_ends.append(ends)
                if self.raise_at.get(index, 0) >= tries:
                    results.append(Failure(ValueError(f"bad {index}"), "Traceback: bad",
                                           "ValueError"))
                    if self.stop_on_error:
                        break
                else:
                    results.append(_value(index))
            self.reports[id(call)] = Report(results, ends - at)
            actor.running.append(_Running(call, at, batch_ends))
            running.add(id(call))
            if dies is not None:
                self.schedule(dies, "die", (slot, slot.generation, call, killer))
            elif ends != float("inf"):
                self.schedule(ends, "return", (slot, slot.generation, call))

    # ----------------------------------------------------------------- deaths

    def _overrun(self, actor: _Actor | None) -> frozenset[tuple[int, int]]:
        """The batches truly running past timeout_s (or hung) on ``actor`` now."""
        timeout = self.config.timeout_s
        if actor is None or timeout is None:
            return frozenset()
        found = set()
        for running in actor.running:
            k, began = running.batch_at(self.clock)
            if self.clock - began >= timeout - _EPS:
                assert running.call.group is not None
                found.add((_run_of(running.call).number, running.call.group.first + k))
        return frozenset(found)

    def _expire(self, call: Call, loss: Loss) -> None:
        """The engine has ``call``'s actor killed for running past its timeout."""
        slot = call.slot
        if call.generation != slot.generation or id(call) not in _run_of(call).placed:
            # That actor is gone already, and the call with it (the ledger says
            # so): its expiry was decided in the same turn as that loss, and the
            # pool ignores it (a retired slot keeps its generation).
            return
        actor = self.actors.get(slot.index)
        overrun = self._overrun(actor)
        running = next((r for r in actor.running if r.call is call), None) if actor else None
        assert call.group is not None
        if running is None:
            raise Violation(f"run {_run_of(call).number}: an actor killed for the timeout of "
                            f"batch {call.group.first}, which had not begun")
        k, _ = running.batch_at(self.clock)
        key = (_run_of(call).number, call.group.first + k)
        own: frozenset[tuple[int, int]] = frozenset()
        if key in overrun:
            own = frozenset({key})
        elif call.group.count == 1:
            raise Violation(f"run {key[0]}: batch {key[1]}'s actor killed for a timeout "
                            f"after {self.clock - running.began:.3g} s of "
                            f"timeout_s={self.config.timeout_s}")
        self.end_actor(slot, call.generation, loss, _Death("overrun", overrun, own))

    def _sole_running(self, actor: _Actor | None) -> frozenset[tuple[int, int]]:
        """The batch running on ``actor`` when it runs exactly one call (else none)."""
        if actor is None or len(actor.running) != 1:
            return frozenset()
        running = actor.running[0]
        assert running.call.group is not None
        k, _ = running.batch_at(self.clock)
        return frozenset({(_run_of(running.call).number, running.call.group.first + k)})

    def end_actor(self, slot: Slot, generation: int, loss: Loss, death: _Death) -> None:
        """The actor of ``slot`` is gone (``death`` is why): the pool's core replaces
        it and tells each call's owner, whose charge is judged (:meth:`judge_loss`)."""
        if slot.generation != generation or slot.state is SlotState.RETIRED:
            return
        self.actors.pop(slot.index, None)
        self.deaths[death.cause] += 1
        for key in death.culprits:
            self.chargeable[key] += 1
        self.judging = death
        self.judging_alone = sum(run.per_slot.get(slot.index, 0) for run in self.runs) == 1
        try:
            self.pool.lose(slot, generation, loss, self.clock)
        finally:
            self.judging = None

    def judge_loss(self, run: _SimRun, call: Call, running: bool, alone: bool,
                   loss: Loss) -> None:
        """The pool's core reports ``call`` lost: pass it to its run, judge the charge."""
        death = self.judging
        if death is None:
            raise Violation(f"run {run.number}: a call reported lost while no actor died")
        run.settle(call)
        group = call.group
        assert group is not None
        before, seen = group.attempts, self.charges_seen
        run.core.lost(call, running, alone, loss)
        self._judge_charge(run, call, death, alone=self.judging_alone,
                           charged=group.attempts - before, counted=self.charges_seen - seen)

    def _judge_charge(self, run: _SimRun, call: Call, death: _Death, *, alone: bool,
                      charged: int, counted: int) -> None:
        """Check the engine's charge (or none) for one lost call against the true cause."""
        group = call.group
        assert group is not None
        keys = [(run.number, group.first + k) for k in range(group.count)]
        if charged < 0 or charged > 1 or counted != charged:
            raise Violation(f"run {run.number}: batch {group.first} charged {charged} tries "
                            f"({counted} counted) for one death")
        if charged:
            for key in keys:
                if key not in death.culprits:
                    raise Violation(f"run {run.number}: batch {key[1]} charged for a death "
                                    f"it did not cause ({death.cause})")
                self.charged[key] += 1
        if run.stopped:
            return
        for key in keys:
            if key not in death.own or charged:
                continue
            if alone and group.count == 1:
                raise Violation(f"run {run.number}: batch {key[1]} killed its actor alone "
                                f"({death.cause}) and was not charged")
            self.own_uncharged[key] += 1
            if self.own_uncharged[key] > 1:
                raise Violation(f"run {run.number}: batch {key[1]} killed its actor "
                                f"{self.own_uncharged[key]} times uncharged: it should run "
                                "alone (suspect) after the first")

    def _next_event_time(self, wait: float) -> float:
        # Never back: events that came due while the driver was busy sending
        # are seen now.
        return max(self.clock, min(self.events[0][0] if self.events else float("inf"),
                                 self.clock + wait))

    def _handle(self, kind: str, payload: Any, at: float | None = None) -> None:
        """Event ``kind`` due at ``at``: the actor acts then, the driver sees it now."""
        pool = self.pool
        if kind == "ready":
            slot, generation = payload
            if slot.generation == generation and slot.state is SlotState.STARTING:
                pool.ready(slot, pid=next(self.pids), node_id=f"n{slot.index}.{generation}",
                           answers={})
                self.actors[slot.index] = _Actor(slot)
        elif kind == "start_failed":
            slot, generation = payload
            pool.start_failed(slot, generation, "a simulated start failure", self.clock)
        elif kind == "spare_ready":
            spare, generation = payload
            if spare in pool.spares and spare.generation == generation:
                self.warm.add(id(spare))
                pool.spare_ready(spare, pid=next(self.pids), node_id=f"spare{generation}",
                                 answers={})
        elif kind == "return":
            self._returned(*payload, at=self.clock if at is None else at)
        elif kind == "die":
            slot, generation, call, killer = payload
            if slot.generation != generation:
                return
            key = frozenset({(_run_of(call).number, killer)})
            self.end_actor(slot, generation,
                      Loss(LossKind.DIED, "a batch killed it", f"Sim#{slot.index}"),
                      _Death("kill", key, key))
        elif kind == "external_kill":
            busy = [s for s in pool.slots
                    if s.state in (SlotState.READY, SlotState.DRAINING) and s.calls]
            if busy:
                victim = self.rng.choice(busy)
                sole = self._sole_running(self.actors.get(victim.index))
                self.end_actor(victim, victim.generation,
                          Loss(LossKind.DIED, "SIGKILL", f"Sim#{victim.index}"),
                          _Death("external", sole))
        elif kind == "drain":
            # A busy actor's node, where there is one: its calls must finish or be preempted.
            ready = ([s for s in pool.slots if s.state is SlotState.READY and s.calls]
                     or [s for s in pool.slots if s.state is SlotState.READY])
            if ready:
                slot = self.rng.choice(ready)
                assert slot.node_id is not None
                self.draining.add(slot.node_id)
                pool.nodes_draining(self.draining)
                if slot.state is not SlotState.DRAINING:
                    raise Violation(f"slot {slot.index}'s node is drained; it is "
                                    f"{slot.state.value}")
                grace = self.rng.choice([0.05, 0.5, 3.0])
                self.schedule(self.clock + grace, "preempt", (slot, slot.generation))
        elif kind == "resize":
            low = self.rng.randint(1, self.ceiling)
            high = self.rng.randint(low, self.ceiling)
            if pool.running:
                pool.resize(low, high, self.clock)  # nothing is lost: the busy drain
        elif kind == "preempt":
            slot, generation = payload
            if slot.generation == generation and slot.state is SlotState.DRAINING:
                self.end_actor(slot, generation,
                          Loss(LossKind.PREEMPTED, "its node was drained", f"Sim#{slot.index}"),
                          _Death("preempted"))

    def _returned(self, slot: Slot, generation: int, call: Call, *, at: float) -> None:
        """A call's actor returned its report: the pool's core settles it (and decides
        recycling), then its run takes the report, as the adapter does."""
        actor = self.actors.get(slot.index)
        if slot.generation != generation or actor is None:
            return
        actor.running = [r for r in actor.running if r.call is not call]
        run = _run_of(call)
        run.settle(call)
        report = self.reports.pop(id(call))
        assert call.group is not None
        for k, result in enumerate(report.results):
            if isinstance(result, Failure):
                self.raised[run.number, call.group.first + k] += 1
        sent = self.sent_here[slot.index]
        self.pool.finished(call, self.clock)
        if run.core.returned(call, report):
            self.pool.record(call, len(report.results), report.seconds)
        limit = self.max_batches_per_actor
        if slot.generation != generation:
            return  # recycled: closed (checked when its successor started)
        if (limit is not None and sent >= limit and not slot.calls and self.pool.running
                and slot.state is SlotState.READY):
            raise Violation(f"slot {slot.index}'s actor was sent its max of {limit} batches "
                            "and is idle, yet it was not recycled")
        self._begin(actor, at)

    # ----------------------------------------------------------------- the consumer

    def run(self) -> list[Outcome]:
        """The consumer: pulls from the runs in a random interleaving until each ends."""
        for run in self.runs:
            run.stream = drive(run, self)
            if next(run.stream) is not STARTED:
                raise Violation("the loop did not start with STARTED")
        live = list(self.runs)
        while live:
            run = self.rng.choice(live)
            if not self._pull(run):
                live.remove(run)
        for run in self.runs:
            everything = run.out.raised is None and run.stop_after is None
            if everything and sorted(run.out.results) != list(range(run.source.num_batches or 0)):
                raise Violation(f"run {run.number}: a batch was never handed out")
            run.out.restarts = self.pool.restarts
            run.out.decisions = run.core.decisions
            run.out.actors = len(self.pool.slots)
            run.out.virtual_seconds = self.clock
            run.out.deaths = self.deaths
            run.out.charges = sum(self.charged.values())
        return [run.out for run in self.runs]

    def _pull(self, run: _SimRun) -> bool:
        """One ``next()`` on ``run``'s stream; False once the run is over."""
        assert run.stream is not None
        out = run.out
        try:
            chunk = next(run.stream)
        except StopIteration:
            return False
        except BatchError as error:
            out.raised = error
            self._check_raised(error, run)
            run.stopped = True
            run.stream.close()
            return False
        except Violation:
            raise
        except Exception as error:
            raise Violation(f"run {run.number}: the engine raised "
                            f"{type(error).__name__}: {error}") from error
        for index, value in chunk:
            if index in out.results:
                raise Violation(f"run {run.number}: batch {index} handed out twice")
            if run.ordered and index != len(out.order):
                raise Violation(f"run {run.number}: batch {index} handed out at position "
                                f"{len(out.order)}")
            out.results[index] = value
            out.order.append(index)
            self._check_value(index, value, run)
        if run.stop_after is not None and len(out.results) >= run.stop_after:
            run.stopped = True
            if not self.interrupt:
                run.stream.close()  # the consumer stops iterating
                return False
            try:  # Ctrl-C while the consumer waits: the loop stops the run, keeps the pool
                run.stream.throw(KeyboardInterrupt())
            except KeyboardInterrupt:
                return False
            raise Violation(f"run {run.number}: Ctrl-C did not end the run")
        return True

    # ----------------------------------------------------------------- the host of the loop

    @property
    def pool_core(self) -> PoolCore:
        return self.pool

    def locked(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()  # one thread: nothing to lock

    def now(self) -> float:
        return self.clock

    def check_usable(self) -> None:
        self.pool.check_usable()

    def poll(self) -> None:
        self.turns += 1
        if self.turns > self.max_turns:
            raise Violation(f"no end after {self.max_turns} turns of the loop")
        pool = self.pool
        pool.tick(self.clock)
        if pool.running:
            # What time alone decides was decided: a drained actor left, a
            # backed-off start started again.
            for slot in pool.slots.in_state(SlotState.DRAINING):
                if not slot.calls:
                    raise Violation(f"slot {slot.index} drained its calls and stays draining")
            for slot in pool.slots.in_state(SlotState.BACKOFF):
                if slot.retry_at <= self.clock:
                    raise Violation(f"slot {slot.index} is past its back-off and not restarted")
        # Calls are counted by the simulator as it queues and ends them, not
        # by recounting every slot; a slot's bound is checked as a call is
        # queued on it (send), the only place it can be broken.
        for run in self.runs:
            counted = len(run.per_slot)
            if run.core.slots_in_use != counted:
                raise Violation(f"run {run.number} counts {run.core.slots_in_use} actors in "
                                f"use, has calls on {counted}")

    def lose(self, call: Call, loss: Loss) -> None:
        if loss.kind is LossKind.TIMED_OUT:
            self._expire(call, loss)
            return
        run = _run_of(call)
        if loss.kind is not LossKind.STOPPED or not run.stopped:
            raise Violation(f"run {run.number}: an actor replaced for a {loss.kind.value} "
                            "loss the simulator did not cause")
        self.end_actor(call.slot, call.generation, loss, _Death("stopped"))

    def grow(self) -> None:
        if self.pool.may_grow(self.clock):
            self.pool.grow(self.clock)

    def send(self, owner: RunOwner, command: Send) -> None:
        run = owner
        assert isinstance(run, _SimRun)
        slot, group = command.slot, command.group
        if slot.state is not SlotState.READY:
            raise Violation(f"a call was sent to slot {slot.index} while {slot.state.value}")
        if group.suspect and slot.calls:
            raise Violation(f"suspect batch {group.first} queued behind another call")
        # The share the run is judged by, from the simulator's own ledger.
        truly_busy = sum(1 for r in self.runs if r is not run and r.placed)
        allowed = min(_share(max(len(self.pool.slots), self.pool.max_actors), truly_busy),
                      run.config.num_parallel)
        if not run.per_slot[slot.index] and len(run.per_slot) >= allowed:
            raise Violation(f"run {run.number} took an actor past its share of {allowed} "
                            f"({truly_busy} other busy runs, {len(self.pool.slots)} actors)")
        limit = self.max_batches_per_actor
        if limit is not None and self.sent_here[slot.index] + group.count > limit:
            raise Violation(f"slot {slot.index}'s actor sent {self.sent_here[slot.index]} "
                            f"+ {group.count} batches, max_batches_per_actor={limit}")
        self.sent_here[slot.index] += group.count
        call = self.pool.register_call(slot, run, None, group=group, started=command.started,
                                       expected=command.expected)
        run.place(call)
        if len(slot.calls) > max(2, self.max_concurrency):
            raise Violation(f"slot {slot.index} holds {len(slot.calls)} calls")
        run.core.sent(call)
        run.out.calls += 1
        self.clock += self.driver_seconds_per_call  # the call reaches its actor after that
        self._begin(self.actors[slot.index])

    def read(self, run: RunOwner, command: Read) -> Input:
        assert isinstance(run, _SimRun)
        return read_input(run.source, command, journal=None)

    def record(self, run: RunOwner) -> None:
        """No journal in the simulation."""

    def pending(self, run: RunOwner) -> None:
        assert isinstance(run, _SimRun)
        run.out.steps += 1
        slots = self.pool.slots
        waiting = any(r.placed for r in self.runs) or any(
            True for state in (SlotState.STARTING, SlotState.BACKOFF)
            for _ in slots.in_state(state))
        if not waiting:
            raise Violation("the run waits for nothing: it would hang")

    def wait(self, pending: None, timeout: float) -> None:
        """Move the virtual clock to the next event (or the timeout); the world acts."""
        self.clock = self._next_event_time(timeout)
        if self.clock == float("inf"):
            raise Violation("the run waits for an event that never comes")
        while self.events and self.events[0][0] <= self.clock:
            at, _, kind, payload = heapq.heappop(self.events)
            self._handle(kind, payload, at)

    def settle(self, news: None) -> None:
        """The world's news were applied as they came (:meth:`wait`)."""

    def finish_calls(self, calls: list[Call], grace_s: float, *,
                     interrupted: bool) -> list[Call]:
        """A stopped run's calls get the grace: the world goes on (for every run)
        until they are done or the grace is over; those still running."""
        run = _run_of(calls[0])
        run.stopped = True
        named = {id(call) for call in calls}
        left = [call for key, call in run.placed.items() if key not in named]
        if left:
            raise Violation(f"run {run.number} stopped and did not name {len(left)} call(s) "
                            "of its own still on an actor: they would be left behind")
        grace_ends = self.clock + grace_s
        while (self.events and self.events[0][0] <= grace_ends
               and any(call in call.slot.calls for call in calls)):
            at, _, kind, payload = heapq.heappop(self.events)
            self.clock = max(self.clock, at)
            self._handle(kind, payload)
        return [call for call in calls if call in call.slot.calls]

    def record_stopped(self, run: RunOwner, record: Record) -> None:
        """No journal in the simulation."""

    def closed(self, run: RunOwner) -> None:
        self.pool.remove_run(run, self.clock)

    def _check_value(self, index: int, value: Any, run: _SimRun) -> None:
        if isinstance(value, BatchError):
            self._check_blame(value, run)
            if value.index != index:
                raise Violation(f"batch {index}'s error names batch {value.index}")
        elif value != _value(index):
            raise Violation(f"batch {index} gave {value!r}")

    def _check_blame(self, error: BatchError, run: _SimRun) -> None:
        index, key = error.index, (run.number, error.index)
        if error.attempts > run.config.max_retries + 1:
            raise Violation(f"batch {index} tried {error.attempts} times")
        if type(error) is BatchError:
            if self.raised[key] < 1:
                raise Violation(f"batch {index} blamed for raising; it never raised")
            return
        # Failed for lost workers: its tries are the deaths it was charged
        # for (each checked against the truth as it happened) and the raises a
        # callback retried; at least one death must be its own.
        if self.charged[key] < 1 or self.chargeable[key] < self.charged[key]:
            raise Violation(f"batch {index} failed for lost workers, charged "
                            f"{self.charged[key]} times, caused {self.chargeable[key]} deaths")
        if error.attempts > self.charged[key] + self.raised[key]:
            raise Violation(f"batch {index} reports {error.attempts} tries, was charged "
                            f"{self.charged[key]} deaths and raised {self.raised[key]} times")

    def _check_raised(self, error: BatchError, run: _SimRun) -> None:
        self._check_value(error.index, error, run)
        if run.ordered and sorted(run.out.results) != list(range(error.index)):
            raise Violation(f"batch {error.index} raised before every earlier batch was out")
