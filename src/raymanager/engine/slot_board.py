"""A pool's slots as a list that keeps an index of the ready slots with room.

A run's decision (:meth:`raymanager.engine.run.RunCore.next_send`) needs the
ready slot with the fewest calls, first in the pool's order among equals. A
scan of every slot made that O(n) per decision, and a round of n sends
O(n²): ~234 µs per decision at 1,000 actors. :class:`SlotList` is the pool's
list of slots (a ``list`` subclass, so the pool and the simulator use it as
before); each of its slots tells it of every change of state and of calls
(:class:`~raymanager.engine.slots.CallQueue`), and it files each ready slot
in a heap per number of calls, by its position in the list. A decision reads
the heads of those heaps: O(log n), plus the candidates it turns down
(a slot due for recycling, a straggler to queue behind).

It also keeps the slots of each state (the slots backing off, for a run's
wait) and a log of the slots whose first call may have changed, so a run
starts the clocks of its queued calls from what moved, not by looking at
all of them.

Example::

    >>> from raymanager.engine.slots import Slot, SlotState
    >>> slots = SlotList(Slot(index=i, state=SlotState.READY) for i in range(3))
    >>> slots[0].state = SlotState.STARTING
    >>> slots.first_with_room(depth=1, accept=lambda slot: TAKE).index
    1
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, SupportsIndex

from raymanager.engine.slots import Slot, SlotState

__all__ = ["PARK", "PASS", "TAKE", "SlotList"]

#: What a decision says of a candidate slot (:meth:`SlotList.first_with_room`):
#: take it; pass it over this time; or pass it over until the slot changes
#: (its state or its calls), for a reason that holds till then whoever asks
#: (a straggler or an untimed call at its head, a suspect, due for recycling).
TAKE, PASS, PARK = 1, 0, -1

#: The log of moved heads is cut once it holds this many entries per slot (a
#: run that has not read it since then looks at all its queued calls once).
_MOVES_PER_SLOT = 4


class SlotList(list[Slot]):
    """The pool's slots, in order, with an index of the ready ones by calls held."""

    def __init__(self, slots: Iterable[Slot] = ()) -> None:
        super().__init__()
        self._order = itertools.count()
        #: id(slot) -> (its position key, the heap it is filed in: its calls, or None)
        self._key: dict[int, int] = {}
        self._bucket: dict[int, int | None] = {}
        #: One heap per number of calls held: (position key, slot); stale
        #: entries (the slot moved on) are dropped when they reach the top.
        self._heaps: list[list[tuple[int, Slot]]] = []
        self._filed: list[int] = []  # slots really filed per heap
        self._by_state: dict[SlotState, dict[int, Slot]] = {state: {} for state in SlotState}
        self._state_of: dict[int, SlotState] = {}
        #: Slots whose first call may have changed, for RunCore.start_clocks.
        self.moves: list[Slot] = []
        self.moves_base = 0  # how many moves were cut from the front of the log
        for slot in slots:
            self.append(slot)

    # ----------------------------------------------------------------- membership

    def append(self, slot: Slot) -> None:
        super().append(slot)
        self._attach(slot)

    def extend(self, slots: Iterable[Slot]) -> None:
        for slot in slots:
            self.append(slot)

    def __iadd__(self, slots: Iterable[Slot]) -> SlotList:  # type: ignore[override,misc]
        self.extend(slots)
        return self

    def remove(self, slot: Slot) -> None:
        super().remove(slot)
        self._detach(slot)

    def pop(self, index: SupportsIndex = -1) -> Slot:
        slot = super().pop(index)
        self._detach(slot)
        return slot

    def clear(self) -> None:
        for slot in self:
            self._detach(slot)
        super().clear()

    def insert(self, index: SupportsIndex, slot: Slot) -> None:
        super().insert(index, slot)
        self._reindex()

    def __setitem__(self, index: Any, value: Any) -> None:
        old = list(self)
        super().__setitem__(index, value)
        for slot in old:
            self._detach(slot)
        self._reindex()

    def __delitem__(self, index: Any) -> None:
        old = list(self)
        super().__delitem__(index)
        for slot in old:
            self._detach(slot)
        self._reindex()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        super().sort(*args, **kwargs)
        self._reindex()

    def reverse(self) -> None:
        super().reverse()
        self._reindex()

    def _reindex(self) -> None:
        """The order changed (rare): file every slot again."""
        for slot in self:
            self._detach(slot)
        self._heaps = []
        self._filed = []
        for slot in self:
            self._attach(slot)

    def _attach(self, slot: Slot) -> None:
        slot.board = self
        key = id(slot)
        self._key[key] = next(self._order)
        self._bucket[key] = None
        self._state_of[key] = slot.state
        self._by_state[slot.state][key] = slot
        self.slot_changed(slot, True)

    def _detach(self, slot: Slot) -> None:
        key = id(slot)
        if self._key.pop(key, None) is None:
            return
        bucket = self._bucket.pop(key)
        if bucket is not None:
            self._filed[bucket] -= 1
        self._by_state[self._state_of.pop(key)].pop(key, None)
        if slot.board is self:
            slot.board = None

    # ----------------------------------------------------------------- changes

    def slot_changed(self, slot: Slot, head_moved: bool) -> None:
        """``slot``'s state or calls changed: file it again (from Slot and CallQueue)."""
        key = id(slot)
        if key not in self._key:
            return
        state = slot.state
        if self._state_of[key] is not state:
            del self._by_state[self._state_of[key]][key]
            self._by_state[state][key] = slot
            self._state_of[key] = state
        bucket = len(slot.calls) if slot.state is SlotState.READY else None
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
                heap = self._heaps[bucket]
                heapq.heappush(heap, (self._key[key], slot))
                if len(heap) > 4 * self._filed[bucket] + 64:
                    self._compact(bucket)
        if head_moved and slot.calls:
            self.moves.append(slot)
            if len(self.moves) > _MOVES_PER_SLOT * len(self) + 64:
                self.moves_base += len(self.moves)
                self.moves.clear()

    def _compact(self, bucket: int) -> None:
        """Drop a heap's stale entries (amortized: it grew to 4x what it holds)."""
        heap = [entry for entry in self._heaps[bucket] if self._current(entry, bucket)]
        unique = {id(slot): (key, slot) for key, slot in heap}
        self._heaps[bucket] = list(unique.values())
        heapq.heapify(self._heaps[bucket])

    def _current(self, entry: tuple[int, Slot], bucket: int) -> bool:
        key, slot = entry
        return self._bucket.get(id(slot)) == bucket and self._key.get(id(slot)) == key

    # ----------------------------------------------------------------- queries

    def in_state(self, state: SlotState) -> Iterator[Slot]:
        """The slots in ``state`` now, in no particular order."""
        return iter(list(self._by_state[state].values()))

    def room(self, depth: int) -> int:
        """How many ready slots hold fewer than ``depth`` calls."""
        return sum(self._filed[:depth])

    def order_of(self, slot: Slot) -> int:
        """``slot``'s position key: larger for slots later in the list."""
        return self._key[id(slot)]

    def first_with_room(self, depth: int, accept: Callable[[Slot], int]) -> Slot | None:
        """The ready slot with the fewest calls (< ``depth``), first in list order,
        that ``accept`` takes (:data:`TAKE`): what a scan of every slot would pick.

        A slot ``accept`` parks (:data:`PARK`) leaves the index until it changes,
        so a pool of busy actors that may not queue another call is not looked
        at again by every decision.
        """
        for bucket in range(min(depth, len(self._heaps))):
            if not self._filed[bucket]:
                continue
            heap = self._heaps[bucket]
            turned_down: list[tuple[int, Slot]] = []
            seen: set[int] = set()
            found: Slot | None = None
            while heap:
                entry = heap[0]
                slot = entry[1]
                if not self._current(entry, bucket) or id(slot) in seen:
                    heapq.heappop(heap)  # stale, or a second entry of a slot seen
                    continue
                verdict = accept(slot)
                if verdict == TAKE:
                    found = slot
                    break
                seen.add(id(slot))
                if verdict == PARK:
                    heapq.heappop(heap)
                    self._bucket[id(slot)] = None  # filed again at its next change
                    self._filed[bucket] -= 1
                else:
                    turned_down.append(heapq.heappop(heap))
            for entry in turned_down:
                heapq.heappush(heap, entry)
            if found is not None:
                return found
        return None
