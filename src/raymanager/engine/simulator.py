"""A pool of simulated actors under a virtual clock, driving the real engine.

The simulator plays what Ray and the workers do for ``pool/dispatch.py``:
actors that start after a delay, run their calls in order (or ``k`` at a
time), take scripted time per batch, return results, raise, die, hang, and
are replaced; warm spares that take over a lost actor's place; nodes that are
drained (their actors finish their calls, get no new ones, and are preempted
if they overrun). It drives the same :class:`~raymanager.engine.run.RunCore`
through the same loop as the Ray adapter.

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
  call is left on it;
- **bounds**: no actor holds more calls than ``max(2, max_concurrency)``, or
  gets a call while not ready (a spare, a draining or starting slot); a suspect
  batch is sent only to an idle actor;
- **stopping**: a stopped run names every call of its own still on an actor
  (from the ledger), so none is left behind.

With ``runs=2`` two runs share the actors, as two ``imap`` streams of one
pool do; the consumer pulls from them in a random interleaving, and each run
while it waits lets the other's calls finish and time out (as the adapter
does), so a suspended run never stalls the other.

It is also the engine's scale model: ``benchmarks/engine_scale.py`` drives
thousands of simulated actors to measure the driver's own cost per decision.

Example::

    >>> out = simulate(num_batches=50, num_actors=3, seed=1, kill_at={7: 1})
    >>> sorted(out.results) == list(range(50)) and out.restarts >= 1
    True
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from raymanager.batching import BatchSource, make_source
from raymanager.config import BatchConfig
from raymanager.engine import policy
from raymanager.engine.run import GROW, Read, RunCore, Send
from raymanager.engine.run_io import read_input
from raymanager.engine.slot_board import SlotList
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
    actors' places; ``stop_after`` makes the consumer stop after that many
    results; ``runs`` runs of the same kind share the actors;
    ``max_actors`` makes the pool elastic, from ``num_actors`` up to it;
    ``max_batches_per_actor`` recycles an actor once it finished that many.
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
        num_actors=num_actors,
        durations=durations,
        raise_at=dict(raise_at or {}),
        kill_at=dict(kill_at or {}),
        hang_at=dict(hang_at or {}),
        start_delay=start_delay,
        max_concurrency=max_concurrency,
        stop_on_error=on_error == "raise",
        config=config,
        spares=spares,
        max_batches_per_actor=max_batches_per_actor,
    )
    sim.driver_seconds_per_call = driver_seconds_per_call
    sim.max_actors = ceiling
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
        sim.runs.append(_SimRun(number, core, batch_source, config, ordered, stop_after))
    mean_gap = max(0.01, 4 * durations(0) * num_batches / num_actors)
    for kind, count in (("external_kill", external_kills), ("drain", drains)):
        horizon = 0.0
        for _ in range(count):
            horizon += rng.expovariate(1.0 / mean_gap)
            sim.schedule(horizon, kind, None)
    outcomes = sim.run(max_steps)
    outcomes[0].others = outcomes[1:]
    return outcomes[0]


class _SimRun:
    """One run of the simulation: its core, its consumer's state, its outcome."""

    def __init__(self, number: int, core: RunCore, source: BatchSource, config: BatchConfig,
                 ordered: bool, stop_after: int | None) -> None:
        self.number = number
        self.core = core
        self.source = source
        self.config = config
        self.ordered = ordered
        self.stop_after = stop_after
        self.out = Outcome()
        self.stream: Generator[list[Any], None, None] | None = None
        #: The simulator's ledger: calls of this run it placed on an actor and
        #: that have not returned or been lost, and how many per slot.
        self.placed: dict[int, Call] = {}
        self.per_slot: Counter[int] = Counter()
        #: Set by the simulator when the consumer stops the run early.
        self.stopped = False

    # Calls name their run as their owner; the simulator reports to its core.
    def call_done(self, call: Call, value: Any) -> None:  # pragma: no cover
        raise AssertionError("unused")

    def call_lost(  # pragma: no cover
        self, call: Call, running: bool, alone: bool, loss: Loss
    ) -> None:
        raise AssertionError("unused")

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
    def __init__(
        self,
        *,
        rng: random.Random,
        num_actors: int,
        durations: Callable[[int], float],
        raise_at: dict[int, int],
        kill_at: dict[int, int],
        hang_at: dict[int, int],
        start_delay: float,
        max_concurrency: int,
        stop_on_error: bool,
        config: BatchConfig,
        spares: int = 0,
        max_batches_per_actor: int | None = None,
    ) -> None:
        self.rng = rng
        #: The host ends a call at its first failing batch (``on_error="raise"``).
        self.stop_on_error = stop_on_error
        self.config = config
        self.reports: dict[int, Report] = {}  # by id(call), made when it begins
        self.now = 0.0
        self.durations = durations
        self.raise_at = raise_at
        self.kill_at = kill_at
        self.hang_at = hang_at
        self.start_delay = start_delay
        self.max_concurrency = max_concurrency
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
        #: The death being reported to an owner now (a charge outside one is a bug).
        self.judging: _Death | None = None
        self.charges_seen = 0
        self.slots = SlotList(Slot(index=i) for i in range(num_actors))
        self.max_actors = num_actors  # the elastic pool's ceiling (set by simulate)
        self.driver_seconds_per_call = 0.0  # virtual time each call costs the driver
        self.actors: dict[int, _Actor] = {}
        #: Warm spares, outside the pool's count: state SPARE, ready once in ``warm``.
        self.spares = [Slot(index=-1 - k, state=SlotState.SPARE) for k in range(spares)]
        self.warm: set[int] = set()
        self.restarts = 0
        #: Recycling: batches sent to each slot's current actor (the
        #: simulator's own count, reset when the slot gets a new actor).
        self.max_batches_per_actor = max_batches_per_actor
        self.sent_here: Counter[int] = Counter()
        self.runs: list[_SimRun] = []
        for spare in self.spares:
            self._start_spare(spare)
        for slot in self.slots:
            self._spawn(slot)

    # ----------------------------------------------------------------- the world

    def schedule(self, at: float, kind: str, payload: Any) -> None:
        heapq.heappush(self.events, (at, next(self.seq), kind, payload))

    def count_charge(self) -> None:
        self.charges_seen += 1
        if self.judging is None:
            raise Violation("a try was charged while no actor was being lost")

    def _start_spare(self, spare: Slot) -> None:
        spare.generation += 1
        self.warm.discard(spare.index)
        delay = self.start_delay * (0.5 + self.rng.random())
        self.schedule(self.now + delay, "spare_ready", (spare, spare.generation))

    def _spawn(self, slot: Slot) -> None:
        slot.generation += 1
        slot.sent_to_generation = 0
        self.sent_here[slot.index] = 0
        self.actors.pop(slot.index, None)
        warm = next((s for s in self.spares if s.index in self.warm), None)
        if warm is not None:
            # A warm spare's actor takes the place at once; a new spare starts.
            slot.state = SlotState.READY
            self.actors[slot.index] = _Actor(slot)
            self._start_spare(warm)
            return
        slot.state = SlotState.STARTING
        delay = self.start_delay * (0.5 + self.rng.random())
        self.schedule(self.now + delay, "ready", (slot, slot.generation))

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
            at = self.now if now is None else now
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
            k, began = running.batch_at(self.now)
            if self.now - began >= timeout - _EPS:
                assert running.call.group is not None
                found.add((_run_of(running.call).number, running.call.group.first + k))
        return frozenset(found)

    def _expire(self, call: Call, loss: Loss) -> None:
        """The engine has ``call``'s actor killed for running past its timeout."""
        slot = call.slot
        if call.generation != slot.generation:
            return  # that actor is gone already
        actor = self.actors.get(slot.index)
        overrun = self._overrun(actor)
        running = next((r for r in actor.running if r.call is call), None) if actor else None
        assert call.group is not None
        if running is None:
            raise Violation(f"run {_run_of(call).number}: an actor killed for the timeout of "
                            f"batch {call.group.first}, which had not begun")
        k, _ = running.batch_at(self.now)
        key = (_run_of(call).number, call.group.first + k)
        own: frozenset[tuple[int, int]] = frozenset()
        if key in overrun:
            own = frozenset({key})
        elif call.group.count == 1:
            raise Violation(f"run {key[0]}: batch {key[1]}'s actor killed for a timeout "
                            f"after {self.now - running.began:.3g} s of "
                            f"timeout_s={self.config.timeout_s}")
        self.lose(slot, call.generation, loss, _Death("overrun", overrun, own))

    def _sole_running(self, actor: _Actor | None) -> frozenset[tuple[int, int]]:
        """The batch running on ``actor`` when it runs exactly one call (else none)."""
        if actor is None or len(actor.running) != 1:
            return frozenset()
        running = actor.running[0]
        assert running.call.group is not None
        k, _ = running.batch_at(self.now)
        return frozenset({(_run_of(running.call).number, running.call.group.first + k)})

    def lose(self, slot: Slot, generation: int, loss: Loss, death: _Death) -> None:
        """The actor of ``slot`` is gone (``death`` is why): replace it, tell each call's owner."""
        if slot.generation != generation or slot.state is SlotState.RETIRED:
            return
        lost = list(slot.calls)
        slot.calls.clear()
        self.deaths[death.cause] += 1
        for key in death.culprits:
            self.chargeable[key] += 1
        self.restarts += 1
        self._spawn(slot)
        concurrent = self.max_concurrency > 1
        for position, call in enumerate(lost):
            run = _run_of(call)
            run.settle(call)
            group = call.group
            assert group is not None
            before, seen = group.attempts, self.charges_seen
            self.judging = death
            try:
                run.core.lost(call, position == 0 or concurrent, len(lost) == 1, loss)
            finally:
                self.judging = None
            self._judge_charge(run, call, death, alone=len(lost) == 1,
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
        return max(self.now, min(self.events[0][0] if self.events else float("inf"),
                                 self.now + wait))

    def _handle(self, kind: str, payload: Any, at: float | None = None) -> None:
        """Event ``kind`` due at ``at``: the actor acts then, the driver sees it now."""
        if kind == "ready":
            slot, generation = payload
            if slot.generation == generation and slot.state is SlotState.STARTING:
                slot.state = SlotState.READY
                self.actors[slot.index] = _Actor(slot)
        elif kind == "spare_ready":
            spare, generation = payload
            if spare.generation == generation:
                self.warm.add(spare.index)
        elif kind == "return":
            slot, generation, call = payload
            actor = self.actors.get(slot.index)
            if slot.generation != generation or actor is None:
                return
            actor.running = [r for r in actor.running if r.call is not call]
            if call in slot.calls:
                slot.calls.remove(call)
            run = _run_of(call)
            run.settle(call)
            report = self.reports.pop(id(call))
            assert call.group is not None
            for k, result in enumerate(report.results):
                if isinstance(result, Failure):
                    self.raised[run.number, call.group.first + k] += 1
            run.core.returned(call, report)
            limit = self.max_batches_per_actor
            if slot.state is SlotState.DRAINING and not slot.calls:
                self._spawn(slot)  # drained: its place moves to another node
            elif (limit is not None and self.sent_here[slot.index] >= limit
                  and not slot.calls and slot.state is SlotState.READY):
                # Sent its max and nothing left in flight, whoever's results
                # they were and however many came back (a raise cuts a call
                # short; a stopped run's are dropped): recycled.
                self.deaths["recycled"] += 1  # closed, then replaced: no call is lost
                self._spawn(slot)
            else:
                self._begin(actor, at)
        elif kind == "die":
            slot, generation, call, killer = payload
            if slot.generation != generation:
                return
            key = frozenset({(_run_of(call).number, killer)})
            self.lose(slot, generation,
                      Loss(LossKind.DIED, "a batch killed it", f"Sim#{slot.index}"),
                      _Death("kill", key, key))
        elif kind == "external_kill":
            busy = [s for s in self.slots
                    if s.state in (SlotState.READY, SlotState.DRAINING) and s.calls]
            if busy:
                victim = self.rng.choice(busy)
                sole = self._sole_running(self.actors.get(victim.index))
                self.lose(victim, victim.generation,
                          Loss(LossKind.DIED, "SIGKILL", f"Sim#{victim.index}"),
                          _Death("external", sole))
        elif kind == "drain":
            # A busy actor's node, where there is one: its calls must finish or be preempted.
            ready = ([s for s in self.slots if s.state is SlotState.READY and s.calls]
                     or [s for s in self.slots if s.state is SlotState.READY])
            if ready:
                slot = self.rng.choice(ready)
                if not slot.calls:
                    self._spawn(slot)
                else:
                    slot.state = SlotState.DRAINING
                    grace = self.rng.choice([0.05, 0.5, 3.0])
                    self.schedule(self.now + grace, "preempt", (slot, slot.generation))
        elif kind == "preempt":
            slot, generation = payload
            if slot.generation == generation and slot.state is SlotState.DRAINING:
                self.lose(slot, generation,
                          Loss(LossKind.PREEMPTED, "its node was drained", f"Sim#{slot.index}"),
                          _Death("preempted"))

    # ----------------------------------------------------------------- the loop

    def run(self, max_steps: int) -> list[Outcome]:
        """The consumer: pulls from the runs in a random interleaving until each ends."""
        for run in self.runs:
            run.stream = self._chunks(run, max_steps)
        live = list(self.runs)
        while live:
            run = self.rng.choice(live)
            if not self._pull(run):
                live.remove(run)
        for run in self.runs:
            everything = run.out.raised is None and run.stop_after is None
            if everything and sorted(run.out.results) != list(range(run.source.num_batches or 0)):
                raise Violation(f"run {run.number}: a batch was never handed out")
            run.out.restarts = self.restarts
            run.out.actors = len(self.slots)
            run.out.virtual_seconds = self.now
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
            run.stream.close()
            return False
        return True

    def _chunks(self, run: _SimRun, max_steps: int) -> Generator[list[Any], None, None]:
        """Drive one run's core, as ``pool/dispatch.py`` does, on simulated actors."""
        core, out = run.core, run.out
        completed = False
        try:
            while True:
                out.steps += 1
                if out.steps > max_steps:
                    raise Violation(f"no end after {max_steps} steps")
                sharing = [r.core for r in self.runs if not r.core.closed]
                for each in sharing:
                    each.start_clocks(self.now)
                for each in sharing:
                    for expire in each.expired(self.now):
                        self._expire(expire.call, expire.loss)
                self._fill(run)
                self._check_bounds()
                if core.deliverable():
                    window_shut = core.window_shut()
                    while core.deliverable():
                        yield core.pop_ready()
                    if window_shut or not core.calls:
                        continue  # as the adapter does: fill again before waiting
                if core.finished():
                    break
                core.check_stall()
                waiting = any(r.placed for r in self.runs) or any(
                    s.state is SlotState.STARTING for s in self.slots)
                if not waiting:
                    raise Violation("the run waits for nothing: it would hang")
                wait = min(each.wait_timeout(self.now, self.slots) for each in sharing)
                self.now = self._next_event_time(wait)
                if self.now == float("inf"):
                    raise Violation("the run waits for an event that never comes")
                while self.events and self.events[0][0] <= self.now:
                    at, _, kind, payload = heapq.heappop(self.events)
                    self._handle(kind, payload, at)
            core.check_complete()
            completed = True
        finally:
            core.closed = True
            if not completed:
                run.stopped = True
                self._abort(run)

    def _grow(self) -> None:
        """What ``ActorPool.grow`` does: one more actor, one start at a time, up to the max."""
        if len(self.slots) >= self.max_actors:
            return
        if any(slot.state is SlotState.STARTING for slot in self.slots):
            return
        slot = Slot(index=len(self.slots))
        self.slots.append(slot)
        self._spawn(slot)

    def _abort(self, run: _SimRun) -> None:
        """A stopped run: the adapter waits up to the grace period for the calls
        the core names (the actors go on meanwhile, for every run), then kills
        and replaces the actors of those still busy."""
        pending = run.core.close()
        named = {id(call) for call in pending}
        left = [call for key, call in run.placed.items() if key not in named]
        if left:
            raise Violation(f"run {run.number} stopped and did not name {len(left)} call(s) "
                            "of its own still on an actor: they would be left behind")
        grace_ends = self.now + policy.CANCEL_GRACE_SECONDS
        while (self.events and self.events[0][0] <= grace_ends
               and any(call in call.slot.calls for call in pending)):
            at, _, kind, payload = heapq.heappop(self.events)
            self.now = max(self.now, at)
            self._handle(kind, payload)
        for call in pending:
            if call in call.slot.calls:
                loss = Loss(LossKind.STOPPED, "still busy when its run stopped",
                            f"Sim#{call.slot.index}")
                self.lose(call.slot, call.generation, loss, _Death("stopped"))
        run.core.clear()

    def _fill(self, run: _SimRun) -> None:
        core, out = run.core, run.out
        # The share given to the core, as the adapter computes it ...
        busy_others = sum(1 for r in self.runs if r is not run and r.core.calls)
        share = policy.fair_share(len(self.slots), self.max_actors, busy_others)
        # ... and the one it is judged by, from the simulator's own ledger.
        truly_busy = sum(1 for r in self.runs if r is not run and r.placed)
        allowed = min(_share(max(len(self.slots), self.max_actors), truly_busy),
                      run.config.num_parallel)
        slots = self.slots + self.spares  # a spare is never a place for a call
        limit = self.max_batches_per_actor

        def batches_left(slot: Slot) -> int | None:
            # The adapter's rule, from the count the engine keeps on the slot.
            return None if limit is None else max(0, limit - slot.sent_to_generation)

        while True:
            out.decisions += 1
            command = core.next_send(slots, self.now, batches_left, share=share)
            if command is GROW:
                self._grow()
                return
            if command is None:
                return
            if isinstance(command, Read):
                core.taken(read_input(run.source, command, journal=None))
                continue
            assert isinstance(command, Send)
            slot, group = command.slot, command.group
            if slot.state is not SlotState.READY:
                raise Violation(f"a call was sent to slot {slot.index} while {slot.state.value}")
            if group.suspect and slot.calls:
                raise Violation(f"suspect batch {group.first} queued behind another call")
            if not run.per_slot[slot.index] and len(run.per_slot) >= allowed:
                raise Violation(f"run {run.number} took an actor past its share of {allowed} "
                                f"({truly_busy} other busy runs, {len(self.slots)} actors)")
            if limit is not None and self.sent_here[slot.index] + group.count > limit:
                raise Violation(f"slot {slot.index}'s actor sent {self.sent_here[slot.index]} "
                                f"+ {group.count} batches, max_batches_per_actor={limit}")
            self.sent_here[slot.index] += group.count
            call = Call(None, slot, slot.generation, run, group=group,
                        started=command.started, expected=command.expected)
            slot.calls.append(call)
            run.place(call)
            if len(slot.calls) > max(2, self.max_concurrency):
                raise Violation(f"slot {slot.index} holds {len(slot.calls)} calls")
            core.sent(call)
            out.calls += 1
            self.now += self.driver_seconds_per_call  # the call reaches its actor after that
            self._begin(self.actors[slot.index])

    def _check_bounds(self) -> None:
        # Calls are counted by the simulator as it queues and ends them, not
        # by recounting every slot; a slot's bound is checked as a call is
        # queued on it (_fill), the only place it can be broken.
        for run in self.runs:
            counted = len(run.per_slot)
            if run.core.slots_in_use != counted:
                raise Violation(f"run {run.number} counts {run.core.slots_in_use} actors in "
                                f"use, has calls on {counted}")

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
