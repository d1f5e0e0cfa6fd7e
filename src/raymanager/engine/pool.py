"""A whole pool as one pure state machine: its slots, their lifecycle, and the owners of calls.

:class:`PoolCore` makes every decision about a pool's actors that
``pool/`` used to make across a chain of five classes: when a slot starts a
new generation and whether a warm spare's actor takes it (promotion), how
long a failed start backs off, which slots drain and when a drained one moves
or retires, when an actor is recycled, when an idle one is shrunk away,
what a resize does, what shutdown does, how a lost actor's calls are reported
to their owners, and how the runs sharing the pool split it (fair share).

It does no I/O, reads no clock and starts no thread: time comes in as
``now``, and what the world must do goes out as commands to an
:class:`Actors` it is given (start an actor, promote a spare, close then kill
one, kill one). The Ray adapter (``pool/actors.py``) performs them on Ray;
the simulator (:mod:`raymanager.engine.simulator`) performs them on its
simulated actors. Every state change of a slot goes through its lifecycle
table (:data:`raymanager.engine.slots.TRANSITIONS`).

Events in:

- :meth:`~PoolCore.ready` / :meth:`~PoolCore.start_failed`: a start ended;
- :meth:`~PoolCore.spare_ready` / :meth:`~PoolCore.spare_failed`: a spare's start ended;
- :meth:`~PoolCore.lose`: an actor is gone (or must go); its calls' owners are told;
- :meth:`~PoolCore.finished`: a call's outcome was taken (recycling is decided here);
- :meth:`~PoolCore.nodes_draining`, :meth:`~PoolCore.tick` (at ``now``),
  :meth:`~PoolCore.resize`, :meth:`~PoolCore.grow`, :meth:`~PoolCore.shutdown`;
- :meth:`~PoolCore.add_run` / :meth:`~PoolCore.remove_run`: an owner comes and goes.

Example (a pretend world that starts every actor at once)::

    >>> class Instant:
    ...     def start(self, slot): pass
    ...     def start_spare(self, spare): pass
    ...     def promote(self, spare, slot): pass
    ...     def close(self, slot): pass
    ...     def kill(self, slot): pass
    >>> core = PoolCore(Instant(), actor_name="Sim", num_actors=(2, 2))
    >>> core.open(now=0.0)
    >>> [slot.state.value for slot in core.slots]
    ['starting', 'starting']
    >>> core.ready(core.slots[0], pid=7, node_id="n1", answers={})
    >>> core.slots[0].state.value, core.slots[0].generation
    ('ready', 1)
"""

from __future__ import annotations

import collections
import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from raymanager.engine import policy
from raymanager.engine.run import RunCore
from raymanager.engine.slot_board import SlotList
from raymanager.engine.slots import Call, CallOwner, Loss, LossKind, Slot, SlotEvent, SlotState
from raymanager.errors import ManagerShutdownError, PoolBrokenError

__all__ = ["BACKOFF_BASE_S", "BACKOFF_MAX_S", "GIVE_UP_AFTER", "SPARE_RETRY_S", "Actors",
           "PoolCore", "PoolState", "RunOwner"]

logger = logging.getLogger("raymanager")

#: First wait before a failed start is tried again; doubles per failure.
BACKOFF_BASE_S = 0.5
#: Longest wait between two tries to start a slot's actor.
BACKOFF_MAX_S = 30.0
#: Consecutive failed starts after which a slot no longer counts as alive (it
#: is still retried every BACKOFF_MAX_S, so the pool heals when it can).
GIVE_UP_AFTER = 5
#: Seconds before a spare that failed to start is tried again: the pool's own
#: slots report a constructor's error; a spare only retries, slowly.
SPARE_RETRY_S = 30.0
#: Seconds between two looks at the cluster's free resources when growing.
GROW_CHECK_S = 0.5


class PoolState(enum.Enum):
    """Lifecycle of a pool, as in ``concurrent.futures`` executors."""

    RUNNING = "running"
    BROKEN = "broken"
    SHUT_DOWN = "shut down"


class Actors(Protocol):
    """The commands the core gives: what the world does with actors.

    Each is given under the pool's lock and must not block: it starts
    something (a Ray actor's creation is asynchronous) or hands it on.
    """

    def start(self, slot: Slot) -> None:
        """Start ``slot``'s new generation (its state is STARTING): create the
        actor, replay ``slot.replays`` into it, and ask it ready()."""

    def start_spare(self, spare: Slot) -> None:
        """Start a warm spare's actor (state SPARE), replaying ``spare.replays``."""

    def promote(self, spare: Slot, slot: Slot) -> None:
        """``spare``'s actor becomes ``slot``'s new generation (STARTING): replay what
        ``slot.replays`` holds that ``spare.replays`` does not, and ask it ready()."""

    def close(self, slot: Slot) -> None:
        """Let ``slot``'s live actor close(), then kill it; never waits."""

    def kill(self, slot: Slot) -> None:
        """Kill ``slot``'s actor (it may be dead already)."""


class RunOwner(CallOwner, Protocol):
    """A run sharing the pool: its core."""

    core: RunCore


class PoolCore:
    """The decisions about one pool's actors; see the module docstring."""

    def __init__(
        self,
        actors: Actors,
        *,
        actor_name: str,
        num_actors: tuple[int, int],
        max_concurrency: int = 1,
        max_batches_per_actor: int | None = None,
        idle_timeout_s: float = 60.0,
        spare_actors: int = 0,
    ) -> None:
        self.actors = actors
        self.actor_name = actor_name
        self.min_actors, self.max_actors = num_actors
        self.max_concurrency = max_concurrency
        self.max_batches_per_actor = max_batches_per_actor
        self.idle_timeout_s = idle_timeout_s
        self.spare_actors = spare_actors
        self.state = PoolState.RUNNING
        self.shut_down_by_manager = False
        #: The pool's slots, indexed: a run picks a free slot in O(log n).
        self.slots = SlotList()
        #: Warm spare actors (SPARE slots), outside the pool's count.
        self.spares: list[Slot] = []
        #: Runs sharing the pool now, oldest first.
        self.runs: list[RunOwner] = []
        #: Broadcasts remembered with replay_on_restart: method -> payload.
        self.broadcasts: dict[str, Any] = {}
        #: Nodes being drained (the world says which): no new work placed there.
        self.draining: set[str] = set()
        self.next_index = 0
        self.next_grow_check = 0.0
        self.spares_owed = 0  # spares to start once the pool is idle
        self.spare_starts = 0
        #: The slot whose finished calls lose() is handing out (no recycling meanwhile).
        self.salvaging: Slot | None = None
        self.restarts = 0
        #: Restarts by the loss's kind ("died", "timed out", ...): the pool's metrics.
        self.restarts_by_kind: collections.Counter[str] = collections.Counter()
        self.recycled = 0
        self.promoted = 0
        self.retries = 0  # batch tries charged after a worker died or timed out
        self.batches_done = 0
        self.rows_finished = 0  # rows of the runs that ended on this pool

    def open(self, now: float) -> None:
        """Start the pool's first actors, and its spares."""
        for _ in range(self.min_actors):
            self.spawn(self.new_slot(now), now)
        # Started with the pool's own actors, while nothing else runs: a
        # spare's start never takes a core from the work.
        for _ in range(self.spare_actors):
            self.start_spare(now)

    # ----------------------------------------------------------------- queries

    @property
    def running(self) -> bool:
        return self.state is PoolState.RUNNING

    def label(self, slot: Slot) -> str:
        return slot.label(self.actor_name)

    def check_usable(self) -> None:
        """Raise if the pool was shut down or is broken."""
        if self.state is PoolState.SHUT_DOWN:
            if self.shut_down_by_manager:
                raise ManagerShutdownError(
                    f"the RayManager of this pool of {self.actor_name} was shut down; "
                    "create a new RayManager, then a new pool"
                )
            raise ManagerShutdownError(
                f"this pool of {self.actor_name} was shut down; create a new pool"
            )
        if self.state is PoolState.BROKEN:
            raise PoolBrokenError(
                f"this pool of {self.actor_name} is broken (its actors cannot be kept alive); "
                "create a new pool"
            )

    def check_alive(self) -> None:
        """Raise if the pool is unusable, breaking it first when no actor can be kept alive."""
        self.check_usable()
        if not self.alive_or_hopeful():
            error = self.no_actor_error()
            self.state = PoolState.BROKEN
            raise error

    def alive_or_hopeful(self) -> bool:
        """True while some slot runs, drains, starts, or has not failed to start too
        often, or the pool may still grow.

        A draining actor is alive: its calls finish, and one on a drained node
        is replaced elsewhere (a one-actor pool whose node drains is not broken).
        """
        if len(self.slots) < self.max_actors:
            return True
        return any(
            slot.state in (SlotState.READY, SlotState.STARTING, SlotState.DRAINING)
            or (slot.state is SlotState.BACKOFF and slot.start_failures < GIVE_UP_AFTER)
            for slot in self.slots
        )

    def no_actor_error(self) -> PoolBrokenError:
        last = "; ".join(
            f"#{slot.index}: {slot.last_start_error.splitlines()[0]}"
            for slot in self.slots if slot.last_start_error
        )
        return PoolBrokenError(
            f"no actor of this pool of {self.actor_name} can be kept alive: every slot failed "
            f"to start {GIVE_UP_AFTER} times in a row ({last})"
        )

    def batches_left(self, slot: Slot) -> int | None:
        """How many more batches ``slot``'s actor may be sent (None: no limit)."""
        if self.max_batches_per_actor is None:
            return None
        return max(0, self.max_batches_per_actor - slot.sent_to_generation)

    def free_slot(self, depth: int) -> Slot | None:
        """The ready slot with the fewest calls (fewer than ``depth``), first in the
        pool's order among equals, that may still be sent a batch: for owners of
        one-batch calls (submissions).

        A scan of the ready slots, not the runs' index: a run parks a slot in
        the index for reasons of its own (a call at its head it may not queue
        behind), which do not hold for a submission.
        """
        best: Slot | None = None
        for slot in self.slots.in_state(SlotState.READY):
            if len(slot.calls) >= depth or self.batches_left(slot) == 0:
                continue
            if best is None or (len(slot.calls), self.slots.order_of(slot)) < (
                    len(best.calls), self.slots.order_of(best)):
                best = slot
        return best

    def fair_share(self, run: RunOwner) -> int:
        """Actors ``run`` may keep busy (see :func:`raymanager.engine.policy.fair_share`)."""
        others = sum(1 for other in self.runs if other is not run and other.core.calls)
        return policy.fair_share(len(self.slots), self.max_actors, others)

    def queued_batches(self) -> int:
        """Batches the runs on this pool have waiting for an actor."""
        return sum(run.core.queued_batches() for run in self.runs)

    def starting(self) -> Iterable[Slot]:
        """The slots whose actor is starting now."""
        return self.slots.in_state(SlotState.STARTING)

    # ----------------------------------------------------------------- owners

    def add_run(self, run: RunOwner) -> None:
        """A run starts on this pool; it shares the actors with the others."""
        self.check_usable()
        self.runs.append(run)

    def remove_run(self, run: RunOwner, now: float) -> None:
        if run in self.runs:
            self.runs.remove(run)
            self.rows_finished += run.core.rows_done  # kept for the pool's metrics
        self.start_owed_spares(now)  # the pool may be idle now

    def register_call(self, slot: Slot, owner: CallOwner, ref: Any, **fields: Any) -> Call:
        """A call was just sent to ``slot``'s actor (ready, or starting for a broadcast)."""
        if slot.state not in (SlotState.READY, SlotState.STARTING):
            raise AssertionError(f"a call sent to slot {slot.index} while {slot.state.value}")
        call = Call(ref, slot, slot.generation, owner, **fields)
        slot.calls.append(call)
        return call

    def finished(self, call: Call, now: float) -> None:
        """Forget a call whose outcome its owner has taken.

        An actor sent its ``max_batches_per_actor`` is recycled here, once no
        call is left on it, whoever its last calls were for and however many
        of their results were delivered (a stopped run's are dropped, a raise
        cuts a call short): the runs stop sending to it once it was *sent* its
        max, so waiting for delivered results would leave it idle for ever.
        """
        slot = call.slot
        if call.generation != slot.generation:
            return
        if call in slot.calls:
            slot.calls.remove(call)
        if slot.calls:
            return
        slot.idle_since = now
        if (self.batches_left(slot) == 0 and slot.state is SlotState.READY
                and self.running and slot is not self.salvaging):
            self.recycle(slot, now)

    def record(self, call: Call, batches: int, seconds: float) -> None:
        """Count finished batches of a call: the pool's and the slot's stats."""
        slot = call.slot
        slot.batches += batches
        slot.busy_s += seconds
        self.batches_done += batches

    def count_retry(self) -> None:
        """A batch was charged a try: for the pool's stats."""
        self.retries += 1

    def remember(self, method: str, payload: Any) -> None:
        """A broadcast to replay into every actor that starts from now on."""
        self.broadcasts[method] = payload

    # ----------------------------------------------------------------- starting

    def new_slot(self, now: float) -> Slot:
        slot = Slot(self.next_index, idle_since=now)
        self.next_index += 1
        self.slots.append(slot)
        return slot

    def spawn(self, slot: Slot, now: float) -> None:
        """Start a new generation of ``slot``: a ready spare's actor, or a new one."""
        spare = next((candidate for candidate in self.spares if candidate.pid is not None), None)
        self._new_generation(slot, now)
        if spare is not None:
            self.spares.remove(spare)
            self.actors.promote(spare, slot)
            self.promoted += 1
            logger.info("actor %s: a warm spare took its place", self.label(slot))
            self.spares_owed += 1
            self.start_owed_spares(now)
        else:
            self.actors.start(slot)

    def _new_generation(self, slot: Slot, now: float) -> None:
        slot.generation += 1
        slot.move(SlotEvent.START)
        slot.pid = slot.node_id = None
        slot.planned_node = None
        slot.spawned_at = now
        slot.sent_to_generation = 0
        slot.calls.clear()
        # A fresh actor starts from its config; the world brings it to the
        # state broadcasts marked replay_on_restart gave the others, before
        # ready() answers and before it gets any work.
        slot.replays = dict(self.broadcasts)
        slot.replay_answers = {}
        slot.evacuating = False

    def ready(self, slot: Slot, *, pid: int | None, node_id: str | None,
              answers: Mapping[str, Any]) -> None:
        """``slot``'s starting actor answered ready()."""
        slot.move(SlotEvent.READY)
        slot.pid, slot.node_id = pid, node_id
        slot.replay_answers = dict(answers)
        slot.start_failures = 0
        slot.ready_ref = None

    def start_failed(self, slot: Slot, generation: int, reason: str, now: float,
                     detail: str = "") -> None:
        """A start of ``slot`` (that generation) failed: back off, then try again.

        Calls sent to it while it was starting (broadcasts) are lost, and
        charged to nobody: no work of theirs ran.
        """
        if slot.generation != generation or slot.state is not SlotState.STARTING:
            return  # an older generation's news
        self.actors.kill(slot)
        slot.start_failures += 1
        wait = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (slot.start_failures - 1))
        slot.move(SlotEvent.START_FAILED)
        slot.retry_at = now + wait
        slot.last_start_error = f"{reason}:\n{detail}" if detail else reason
        slot.ready_ref = None
        logger.warning(
            "actor %s#%d could not start (%s); try %d, next in %.1f s",
            self.actor_name, slot.index, reason, slot.start_failures + 1, wait,
        )
        label = self.label(slot)
        lost = list(slot.calls)
        slot.calls.clear()
        for call in lost:
            call.owner.call_lost(call, False, False, Loss(LossKind.DIED, reason, label))

    def start_spare(self, now: float) -> None:
        """Start one warm spare actor, outside the pool's count."""
        spare = Slot(-1, state=SlotState.SPARE, spawned_at=now)
        self.spare_starts += 1
        spare.generation = self.spare_starts  # names the spare's actor
        # Brought to the broadcasts' state now; those sent later are replayed
        # when it is promoted.
        spare.replays = dict(self.broadcasts)
        self.spares.append(spare)
        self.actors.start_spare(spare)

    def spare_ready(self, spare: Slot, *, pid: int | None, node_id: str | None,
                    answers: Mapping[str, Any]) -> None:
        spare.ready_ref = None
        spare.pid, spare.node_id, spare.replay_answers = pid, node_id, dict(answers)

    def spare_failed(self, spare: Slot, now: float) -> None:
        """A spare could not start: tried again only after a while (the pool's own
        slots report the error if it is the class's)."""
        spare.ready_ref = None
        self.actors.kill(spare)
        spare.retry_at = now + SPARE_RETRY_S

    def start_owed_spares(self, now: float) -> None:
        """Start the spares owed for promoted ones, once no call is in flight.

        Not at once: on a small machine a process start takes a core from the
        work for a second, which is what the spare was there to save.
        """
        if (self.spares_owed and self.running and not self.runs
                and not any(slot.calls for slot in self.slots)):
            owed, self.spares_owed = self.spares_owed, 0
            for _ in range(owed):
                self.start_spare(now)

    # ----------------------------------------------------------------- losing

    def lose(self, slot: Slot, generation: int, loss: Loss, now: float,
             salvage: Callable[[Call], tuple[bool, Any]] = lambda call: (False, None)) -> None:
        """The actor of ``slot`` (that generation) is gone or must go.

        Once per generation: calls that finished before it died are salvaged
        (``salvage`` says which, and their owners get the results), the actor
        is killed and a new one started (unless the pool stopped running or
        the slot was draining to leave), and each owner of a lost call is told
        whether that call was the one executing.
        """
        if slot.generation != generation or slot.state is SlotState.RETIRED:
            return
        calls = list(slot.calls)
        slot.calls.clear()
        lost: list[Call] = []
        self.salvaging = slot
        try:
            for call in calls:
                done, value = salvage(call)
                if done:
                    call.owner.call_done(call, value)
                else:
                    lost.append(call)
        finally:
            self.salvaging = None
        self.actors.kill(slot)
        self.restarts += 1
        self.restarts_by_kind[loss.kind.value] += 1
        slot.restarts += 1
        logger.warning("replacing actor %s: %s", loss.actor, loss.reason)
        if self.running and (slot.state is not SlotState.DRAINING or slot.evacuating):
            self.spawn(slot, now)
        else:
            self._remove(slot)
        concurrent = self.max_concurrency > 1
        for position, call in enumerate(lost):
            # Ray runs an actor's calls in order: the first unfinished one ran
            # (with max_concurrency > 1, any of them may have).
            call.owner.call_lost(call, position == 0 or concurrent, len(lost) == 1, loss)

    def recycle(self, slot: Slot, now: float) -> None:
        """Retire a healthy actor that was sent its max_batches_per_actor; start its next."""
        logger.info("recycling actor %s after %d batches (max_batches_per_actor)",
                    self.label(slot), slot.sent_to_generation)
        self.recycled += 1
        self.actors.close(slot)
        self.spawn(slot, now)

    # ----------------------------------------------------------------- shrinking

    def _retire(self, slot: Slot) -> None:
        """Let a live actor close(), then kill it; a starting one is killed."""
        if slot.state is SlotState.READY:
            self.actors.close(slot)
        else:
            self.actors.kill(slot)

    def _remove(self, slot: Slot) -> None:
        if slot.state is not SlotState.DRAINING:
            self._retire(slot)  # a draining slot's actor was closed or killed by its caller
        slot.move(SlotEvent.RETIRE)
        if slot in self.slots:
            self.slots.remove(slot)

    def drain(self, slot: Slot) -> None:
        """No new work for ``slot``; retire it now if it is idle."""
        if slot.calls and slot.state is SlotState.READY:
            slot.move(SlotEvent.DRAIN)
        else:
            self._remove(slot)

    def nodes_draining(self, nodes: set[str]) -> None:
        """The world says which nodes are being drained: their actors take no new
        work, and move elsewhere once idle (:meth:`tick`)."""
        self.draining = set(nodes)
        if not self.running:
            return
        for slot in list(self.slots.in_state(SlotState.READY)):
            if slot.node_id in self.draining:
                logger.warning("actor %s: its node is being drained; it takes no new work",
                               self.label(slot))
                slot.move(SlotEvent.DRAIN)
                slot.evacuating = True

    def tick(self, now: float) -> None:
        """What time alone decides: drained slots move or go, idle ones shrink away,
        backed-off starts and failed spares are tried again."""
        if not self.running:
            return
        self.start_owed_spares(now)
        for slot in list(self.slots.in_state(SlotState.DRAINING)):
            if slot.calls:
                continue
            if slot.evacuating:  # its node goes away: its successor starts elsewhere
                self.actors.close(slot)
                self.spawn(slot, now)
            else:
                self.actors.close(slot)
                self._remove(slot)
        self._shrink_idle(now)
        for slot in list(self.slots.in_state(SlotState.BACKOFF)):
            if now >= slot.retry_at:
                self.spawn(slot, now)
        due = [spare for spare in self.spares if spare.retry_at and now >= spare.retry_at]
        for spare in due:
            self.spares.remove(spare)
            self.start_spare(now)

    def _shrink_idle(self, now: float) -> None:
        if len(self.slots) <= self.min_actors:
            return
        for slot in list(self.slots.in_state(SlotState.READY)):
            if (not slot.calls and now - slot.idle_since > self.idle_timeout_s
                    and len(self.slots) > self.min_actors):
                logger.info("retiring actor %s: idle for %.0f s", self.label(slot),
                            now - slot.idle_since)
                self._remove(slot)

    def may_grow(self, now: float) -> bool:
        """Whether a run that waits for an actor may have one more started now:
        below ``max_actors``, one start at a time (starts are slow, demand may
        pass), at most every GROW_CHECK_S. The world then checks the cluster's
        room and calls :meth:`grow`."""
        if not self.running or len(self.slots) >= self.max_actors:
            return False
        if any(True for _ in self.starting()):
            return False
        if now < self.next_grow_check:
            return False
        self.next_grow_check = now + GROW_CHECK_S
        return True

    def grow(self, now: float) -> Slot:
        """Start one more actor (after :meth:`may_grow` and the world's room check)."""
        slot = self.new_slot(now)
        self.spawn(slot, now)
        return slot

    def resize(self, low: int, high: int, now: float) -> None:
        """Set the pool's size range: start actors, or drain the excess (idle first)."""
        self.check_usable()
        self.min_actors, self.max_actors = low, high
        live = [slot for slot in self.slots if slot.state is not SlotState.DRAINING]
        for _ in range(low - len(live)):
            self.spawn(self.new_slot(now), now)
        excess = len(live) - high
        # Idle and not-yet-running actors go first, busy ones drain.
        by_load = sorted(live, key=lambda slot: (len(slot.calls),
                                                 slot.state is SlotState.READY))
        for slot in by_load[:max(0, excess)]:
            self.drain(slot)

    def shutdown(self, *, by_manager: bool = False) -> bool:
        """Retire every actor and spare; False if the pool was shut down already."""
        if self.state is PoolState.SHUT_DOWN:
            return False
        self.state = PoolState.SHUT_DOWN
        self.shut_down_by_manager = by_manager
        for slot in self.slots:
            self._retire(slot)
            slot.move(SlotEvent.RETIRE)
            slot.calls.clear()
            slot.ready_ref = None
        for spare in self.spares:
            self.actors.kill(spare)
        self.spares.clear()
        self.spares_owed = 0
        self.broadcasts.clear()
        return True
