"""The state of one place in a pool, and of each call in flight on it.

A *slot* holds at most one live actor at a time. Its lifecycle is a
transition table (:data:`TRANSITIONS`, as h11's ``_state.py`` keeps its
connection's): every state, the events allowed in it, and where each leads.
:meth:`Slot.move` is the one way a slot changes state; an event a state does
not allow raises :class:`LifecycleError`, naming the slot, its state and the
event, and so does any assignment of ``state`` outside the table::

    STARTING --READY--> READY --START (lost, recycled)--> STARTING (generation + 1)
        |                 |
        |                 +--DRAIN (shrink while busy, node drained)--> DRAINING
        |                                       |
        |                                       +--START (evacuated elsewhere)--> STARTING
        +--START_FAILED--> BACKOFF --START (retry time)--> STARTING
    any state but RETIRED --RETIRE (shutdown, shrink, drained)--> RETIRED (out of the pool)

A pool may also keep warm *spares* (``spare_actors``): slots in state SPARE,
outside the pool's count, whose actors are started and idle. When a slot
needs a new actor (its actor died, timed out or was recycled), a ready
spare's actor becomes that slot's next generation at once (START, by
promotion), instead of a process starting; a new spare then starts in the
background. A spare slot itself only ever RETIREs.

Every START begins a new *generation*. Each call in flight records the
generation it was sent to: a failure of a call from an older generation is
old news (that actor was already replaced) and never triggers a second
replacement. Only the pool's core (:class:`raymanager.engine.pool.PoolCore`)
moves a slot.

A slot that belongs to a :class:`~raymanager.engine.slot_board.SlotList` tells
it of every change of its state and of its calls (:class:`CallQueue`), so the
list keeps an index of the ready slots with room that a run's decision reads
in O(log n) instead of scanning every slot.

Example::

    >>> slot = Slot(index=0)
    >>> slot.move(SlotEvent.READY).value
    'ready'
    >>> slot.move(SlotEvent.READY)
    Traceback (most recent call last):
    ...
    raymanager.engine.slots.LifecycleError: slot 0 is ready: event READY is not allowed there
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from raymanager.batching import Group

if TYPE_CHECKING:
    from raymanager.engine.slot_board import SlotList

__all__ = ["TRANSITIONS", "Call", "CallOwner", "CallQueue", "LifecycleError", "Loss",
           "LossKind", "Slot", "SlotEvent", "SlotState"]


class SlotState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"  # finishes its calls, gets no new work, then retires
    BACKOFF = "backoff"
    RETIRED = "retired"
    SPARE = "spare"  # a warm actor outside the pool's count, promoted when a slot needs one


class SlotEvent(enum.Enum):
    """What happens to a slot: the events of its lifecycle table."""

    START = "START"  # a new generation starts (a process, or a spare's actor promoted)
    READY = "READY"  # its actor answered ready()
    START_FAILED = "START_FAILED"  # its actor could not start: back off, then START again
    DRAIN = "DRAIN"  # no new work: its calls finish, then it retires or moves elsewhere
    RETIRE = "RETIRE"  # out of the pool for good


#: The lifecycle: (state, event) -> the state it leads to. Nothing else is allowed.
TRANSITIONS: dict[tuple[SlotState, SlotEvent], SlotState] = {
    (SlotState.STARTING, SlotEvent.READY): SlotState.READY,
    (SlotState.STARTING, SlotEvent.START_FAILED): SlotState.BACKOFF,
    (SlotState.STARTING, SlotEvent.START): SlotState.STARTING,  # lost while starting
    (SlotState.READY, SlotEvent.START): SlotState.STARTING,  # lost, or recycled
    (SlotState.READY, SlotEvent.DRAIN): SlotState.DRAINING,
    (SlotState.DRAINING, SlotEvent.START): SlotState.STARTING,  # evacuated from its node
    (SlotState.BACKOFF, SlotEvent.START): SlotState.STARTING,  # its retry time came
    **{(state, SlotEvent.RETIRE): SlotState.RETIRED
       for state in SlotState if state is not SlotState.RETIRED},
}
_ALLOWED = {(state, target) for (state, _), target in TRANSITIONS.items()}


class LifecycleError(AssertionError):
    """A slot was moved by an event its state does not allow: a bug of the pool's core."""


class LossKind(enum.Enum):
    DIED = "died"
    OUT_OF_MEMORY = "out of memory"
    TIMED_OUT = "timed out"
    STOPPED = "stopped"  # killed by us because its run stopped while it was busy
    PREEMPTED = "preempted"  # its node was drained: not the work's fault, never charged


@dataclass(frozen=True)
class Loss:
    """Why a slot's actor was lost: what its calls' owners are told."""

    kind: LossKind
    reason: str
    actor: str  # the lost actor's label, e.g. "Square#1 (pid 4242)"
    #: The call that ran past its timeout (TIMED_OUT): the one call charged,
    #: not the others an actor with max_concurrency > 1 ran beside it.
    culprit: Call | None = None


class CallOwner(Protocol):
    """A run or a broadcast: whoever sent a call and wants its outcome."""

    def call_done(self, call: Call, value: Any) -> None: ...

    def call_lost(self, call: Call, running: bool, alone: bool, loss: Loss) -> None:
        """The call's actor is gone; ``running``: it was the first unfinished call
        on that actor; ``alone``: no other call was lost with it."""


@dataclass(eq=False)
class Call:
    """One remote call in flight, owned by one run or broadcast."""

    ref: Any
    slot: Slot
    generation: int
    owner: CallOwner
    group: Group | None = None  # the batches of a run call
    started: float | None = None  # when it began executing (None: queued)
    expected: float | None = None  # seconds it should take, when measured before


class CallQueue(collections.deque[Call]):
    """A slot's calls in the order its actor runs them; tells the slot's list of changes.

    Only the mutators the pool uses tell (and the other common ones, for
    safety): the list re-files the slot by its number of calls, and notes
    that the head may have moved (a queued call may have started).
    """

    def __init__(self, slot: Slot | None = None) -> None:
        super().__init__()
        self.slot = slot

    def _changed(self, head_moved: bool) -> None:
        slot = self.slot
        if slot is not None:
            board = slot.__dict__.get("board")
            if board is not None:
                board.slot_changed(slot, head_moved)

    def append(self, call: Call) -> None:
        super().append(call)
        self._changed(len(self) == 1)

    def appendleft(self, call: Call) -> None:
        super().appendleft(call)
        self._changed(True)

    def extend(self, calls: Any) -> None:
        super().extend(calls)
        self._changed(True)

    def pop(self) -> Call:  # type: ignore[override]
        call = super().pop()
        self._changed(True)
        return call

    def popleft(self) -> Call:
        call = super().popleft()
        self._changed(True)
        return call

    def remove(self, call: Call) -> None:
        super().remove(call)
        self._changed(True)

    def clear(self) -> None:
        super().clear()
        self._changed(True)

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self._changed(True)


@dataclass(eq=False)
class Slot:
    """One place in the pool; see the module docstring for its lifecycle."""

    index: int
    generation: int = 0
    state: SlotState = SlotState.STARTING
    handle: Any = None
    ready_ref: Any = None
    pid: int | None = None
    node_id: str | None = None
    planned_node: str | None = None
    spawned_at: float = 0.0
    start_failures: int = 0  # consecutive failed starts
    retry_at: float = 0.0
    last_start_error: str = ""
    batches: int = 0  # batches finished here, all generations
    busy_s: float = 0.0  # seconds its actors spent in process_batch
    restarts: int = 0  # actors of this slot lost and replaced
    sent_to_generation: int = 0  # batches sent to the current actor (for recycling)
    idle_since: float = 0.0  # when its last call finished (for idle shrinking)
    #: DRAINING because its node is being drained: replaced elsewhere, not removed.
    evacuating: bool = False
    #: Calls sent to the current generation and not yet seen to finish, in
    #: the order the actor runs them (Ray runs an actor's calls in order).
    calls: CallQueue = field(default_factory=CallQueue)
    #: Broadcasts replayed into this generation: method -> payload ref.
    replays: dict[str, Any] = field(default_factory=dict)
    #: Answers of those replays, once the actor is ready.
    replay_answers: dict[str, Any] = field(default_factory=dict)
    #: The list that indexes this slot (set by it), told of each change.
    board: SlotList | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.calls.slot = self

    def move(self, event: SlotEvent) -> SlotState:
        """Apply ``event`` to this slot's state by the table; its new state."""
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            raise LifecycleError(f"slot {self.index} is {self.state.value}: event "
                                 f"{event.value} is not allowed there")
        self.state = target
        return target

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "state":
            old = self.__dict__.get("state")
            # The table holds for every assignment, not only for move(): a
            # change it does not list is a bug wherever it is written.
            if old is not None and old is not value and (old, value) not in _ALLOWED:
                raise LifecycleError(f"slot {self.index}: {old.value} -> {value.value} "
                                     "is not in the lifecycle table")
        object.__setattr__(self, name, value)
        if name == "state":
            board = self.__dict__.get("board")
            if board is not None:
                board.slot_changed(self, True)

    def label(self, class_name: str) -> str:
        where = f"pid {self.pid}" if self.pid is not None else self.state.value
        return f"{class_name}#{self.index} ({where})"
