"""A pool of simulated actors under a virtual clock, driving the real engine.

The simulator plays what Ray and the workers do for ``pool/dispatch.py``:
actors that start after a delay, run their calls in order (or ``k`` at a
time), take scripted time per batch, return results, raise, die, hang, and
are replaced. It drives the same :class:`~raymanager.engine.run.RunCore`
through the same loop as the Ray adapter, and checks the engine's promises
at every step (:class:`Violation` names the first one broken):

- **progress**: while a run is not finished, there is always something to
  wait for (a call in flight, an actor starting) or something to hand out;
- **exactly once, in order**: every batch is handed out once, as its result
  or its error, in input order for ordered runs;
- **blame**: a batch fails for lost workers only after it was itself the one
  running alone at as many losses as it was charged tries, and never after
  more than ``max_retries + 1`` tries;
- **bounds**: no actor holds more calls than ``max(2, max_concurrency)``, runs
  more than ``max_concurrency`` at once, or gets a call while not ready; a
  suspect batch is sent only to an idle actor;
- **stopping**: a run stopped early leaves no call of its own behind.

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


@dataclass
class _Running:
    """A call an actor works on; its batches finish one after another."""

    call: Call
    ends: float  # math.inf for a hang


class _Actor:
    """The simulated actor of one slot (one generation)."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.running: list[_Running] = []


def _value(index: int) -> int:
    return index


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
    busy actors at random times; ``stop_after`` makes the consumer stop
    after that many results; ``runs`` runs of the same kind share the actors;
    ``max_actors`` makes the pool elastic, from ``num_actors`` up to it.
    ``driver_seconds_per_call`` makes the driver a serial resource of the
    scale model: each call it sends keeps it busy that long of virtual time
    (what Ray charges the driver per call), while the actors go on; what they
    did meanwhile is seen at its next look.
    Raises :class:`Violation` on a broken promise.
    """
    rng = random.Random(seed)
    durations = batch_seconds or (lambda i: 0.001 + (i * 7919 % 5) / 1000)
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
    )
    sim.driver_seconds_per_call = driver_seconds_per_call
    ceiling = max(num_actors, max_actors or num_actors)
    sim.max_actors = ceiling
    config = BatchConfig(batch_size=1, num_parallel=num_parallel or ceiling,
                         max_retries=max_retries, timeout_s=timeout_s, on_error=on_error)
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
    horizon = 0.0
    for _ in range(external_kills):
        horizon += rng.expovariate(1.0 / max(0.01, 4 * durations(0) * num_batches / num_actors))
        sim.schedule(horizon, "external_kill", None)
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
        self.over = False

    # Calls name their run as their owner; the simulator reports to its core.
    def call_done(self, call: Call, value: Any) -> None:  # pragma: no cover
        raise AssertionError("unused")

    def call_lost(  # pragma: no cover
        self, call: Call, running: bool, alone: bool, loss: Loss
    ) -> None:
        raise AssertionError("unused")


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
    ) -> None:
        self.rng = rng
        #: The host ends a call at its first failing batch (``on_error="raise"``).
        self.stop_on_error = stop_on_error
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
        # (run, batch) -> times it began running / losses it was the one charged at
        self.tries: Counter[tuple[int, int]] = Counter()
        self.hits: Counter[tuple[int, int]] = Counter()
        self.charges = 0
        self.slots = SlotList(Slot(index=i) for i in range(num_actors))
        self.max_actors = num_actors  # the elastic pool's ceiling (set by simulate)
        self.driver_seconds_per_call = 0.0  # virtual time each call costs the driver
        self.actors: dict[int, _Actor] = {}
        self.restarts = 0
        self.runs: list[_SimRun] = []
        #: The simulator's own count of each run's calls per slot (run -> slot
        #: index -> calls), kept as calls come and go so the checks cost O(1)
        #: per step at 10,000 actors instead of a recount of every slot.
        self.held: dict[int, Counter[int]] = {}
        for slot in self.slots:
            self._spawn(slot)

    # ----------------------------------------------------------------- the world

    def schedule(self, at: float, kind: str, payload: Any) -> None:
        heapq.heappush(self.events, (at, next(self.seq), kind, payload))

    def count_charge(self) -> None:
        self.charges += 1

    def _spawn(self, slot: Slot) -> None:
        slot.generation += 1
        slot.state = SlotState.STARTING
        slot.sent_to_generation = 0
        self.actors.pop(slot.index, None)
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
            number = _run_of(call).number
            at = self.now if now is None else now
            ends = at
            dies: float | None = None
            results: list[Any] = []
            for k in range(call.group.count):
                index = call.group.first + k
                self.tries[number, index] += 1
                tries = self.tries[number, index]
                if self.hang_at.get(index, 0) >= tries:
                    ends = float("inf")
                    break
                if self.kill_at.get(index, 0) >= tries:
                    dies = ends + self.durations(index) / 2
                    break
                ends += self.durations(index)
                if self.raise_at.get(index, 0) >= tries:
                    results.append(Failure(ValueError(f"bad {index}"), "Traceback: bad",
                                           "ValueError"))
                    if self.stop_on_error:
                        break
                else:
                    results.append(_value(index))
            self.reports[id(call)] = Report(results, ends - at)
            actor.running.append(_Running(call, ends if dies is None else float("inf")))
            running.add(id(call))
            if dies is not None:
                self.schedule(dies, "die", (slot, slot.generation, call))
            elif ends != float("inf"):
                self.schedule(ends, "return", (slot, slot.generation, call))
            if len(actor.running) > self.max_concurrency:
                raise Violation(f"slot {slot.index} runs {len(actor.running)} calls at once")

    def lose(self, slot: Slot, generation: int, loss: Loss) -> None:
        """What ``ActorPool.lose`` does: replace the actor, tell each call's owner."""
        if slot.generation != generation or slot.state is SlotState.RETIRED:
            return
        actor = self.actors.get(slot.index)
        running_ids = {id(r.call) for r in actor.running} if actor else set()
        lost = list(slot.calls)
        slot.calls.clear()
        for call in lost:
            self._release(call)
        # The one batch that may be charged: the call that timed out, or the
        # call running alone when its actor died.
        blamed = loss.culprit if loss.kind is LossKind.TIMED_OUT else (
            lost[0] if len(lost) == 1 else None)
        if blamed is not None and blamed.group is not None and blamed.group.count == 1 and (
                id(blamed) in running_ids):
            self.hits[_run_of(blamed).number, blamed.group.first] += 1
        self.restarts += 1
        self._spawn(slot)
        concurrent = self.max_concurrency > 1
        for position, call in enumerate(lost):
            _run_of(call).core.lost(call, position == 0 or concurrent, len(lost) == 1, loss)

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
        elif kind == "return":
            slot, generation, call = payload
            actor = self.actors.get(slot.index)
            if slot.generation != generation or actor is None:
                return
            actor.running = [r for r in actor.running if r.call is not call]
            if call in slot.calls:
                slot.calls.remove(call)
                self._release(call)
            _run_of(call).core.returned(call, self.reports.pop(id(call)))
            self._begin(actor, at)
        elif kind == "die":
            slot, generation, _ = payload
            loss = Loss(LossKind.DIED, "a batch killed it", f"Sim#{slot.index}")
            self.lose(slot, generation, loss)
        elif kind == "external_kill":
            busy = [s for s in self.slots if s.state is SlotState.READY and s.calls]
            if busy:
                victim = self.rng.choice(busy)
                self.lose(victim, victim.generation,
                          Loss(LossKind.DIED, "SIGKILL", f"Sim#{victim.index}"))

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
            run.stream.close()
            return False
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
            run.stream.close()
            return False
        return True

    def _chunks(self, run: _SimRun, max_steps: int) -> Generator[list[Any], None, None]:
        """The adapter's loop (``pool/dispatch.py``), on simulated actors."""
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
                        self.lose(expire.call.slot, expire.call.generation, expire.loss)
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
                waiting = any(each.calls for each in sharing) or any(
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
                self._abort(core)
                for slot in self.slots:
                    if any(id(c) in core.calls for c in slot.calls):
                        raise Violation("a stopped run left a call behind")

    def _grow(self) -> None:
        """What ``ActorPool.grow`` does: one more actor, one start at a time, up to the max."""
        if len(self.slots) >= self.max_actors:
            return
        if any(slot.state is SlotState.STARTING for slot in self.slots):
            return
        slot = Slot(index=len(self.slots))
        self.slots.append(slot)
        self._spawn(slot)

    def _abort(self, core: RunCore) -> None:
        """What the adapter does for a stopped run: it waits up to the grace
        period for the run's calls (the actors go on meanwhile, for every
        run), then kills and replaces the actors of those still busy."""
        pending = core.close()
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
                self.lose(call.slot, call.generation, loss)
        core.clear()

    def _fill(self, run: _SimRun) -> None:
        core, out = run.core, run.out
        busy_others = sum(1 for r in self.runs if r is not run and r.core.calls)
        share = policy.fair_share(len(self.slots), self.max_actors, busy_others)
        while True:
            out.decisions += 1
            command = core.next_send(self.slots, self.now, share=share)
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
            held = self.held.setdefault(run.number, Counter())
            if not held[slot.index] and len(held) >= share:
                raise Violation(f"run {run.number} took an actor past its share of {share}")
            call = Call(None, slot, slot.generation, run, group=group,
                        started=command.started, expected=command.expected)
            slot.calls.append(call)
            held[slot.index] += 1
            if len(slot.calls) > max(2, self.max_concurrency):
                raise Violation(f"slot {slot.index} holds {len(slot.calls)} calls")
            core.sent(call)
            out.calls += 1
            self.now += self.driver_seconds_per_call  # the call reaches its actor after that
            self._begin(self.actors[slot.index])

    def _release(self, call: Call) -> None:
        """``call`` left its slot's queue: the simulator's own count follows."""
        held = self.held[_run_of(call).number]
        held[call.slot.index] -= 1
        if not held[call.slot.index]:
            del held[call.slot.index]

    def _check_bounds(self) -> None:
        # Calls are counted by the simulator as it queues and ends them, not
        # by recounting every slot; a slot's bound is checked as a call is
        # queued on it (_fill), the only place it can be broken.
        for run in self.runs:
            counted = len(self.held.get(run.number, ()))
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
            if self.raise_at.get(index, 0) < 1:
                raise Violation(f"batch {index} blamed for raising; it never raised")
            return
        # Tries are shared: a callback's "retry" after a raise uses one too.
        raised = min(self.raise_at.get(index, 0), self.tries[key])
        if self.hits[key] < 1 or self.hits[key] + raised < error.attempts:
            raise Violation(f"batch {index} charged {error.attempts} tries, was running "
                            f"alone at {self.hits[key]} losses and raised {raised} times")

    def _check_raised(self, error: BatchError, run: _SimRun) -> None:
        self._check_value(error.index, error, run)
        if run.ordered and sorted(run.out.results) != list(range(error.index)):
            raise Violation(f"batch {error.index} raised before every earlier batch was out")
