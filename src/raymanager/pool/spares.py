"""Warm spares (``spare_actors``): started actors outside a pool's count.

See ``engine/slots.py`` for the SPARE state. When a slot needs a new actor,
``ActorLifecycle._spawn`` takes a ready spare's instead of starting a process
(:meth:`SpareKeeper._promote`); the spare's successor starts once no call is in
flight on the pool, so on a small machine its process start takes no core from
the work. Every method runs with the pool's lock held, unless it says otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import time

import ray

from raymanager.engine.slots import Slot, SlotState
from raymanager.errors import first_line
from raymanager.pool.base import PoolBase, PoolState
from raymanager.pool.observe import ACTOR_NAME_PREFIX
from raymanager.pool.ray_errors import FailureKind, classify

__all__ = ["SPARE_RETRY_S", "SpareKeeper"]

logger = logging.getLogger("raymanager")

#: Seconds before a spare that failed to start is tried again: the pool's own
#: slots report a constructor's error; a spare only retries, slowly.
SPARE_RETRY_S = 30.0


class SpareKeeper(PoolBase):
    """Starts, promotes and retires a pool's warm spares."""

    def _start_spare(self) -> None:
        """Start one warm spare actor, outside the pool's count (lock held). Not waited for."""
        spare = Slot(-1, state=SlotState.SPARE, spawned_at=time.monotonic())
        self._spare_starts += 1
        options = dict(self._options)
        options["name"] = f"{ACTOR_NAME_PREFIX}{self.pool_id}/{self.actor_name}/" \
                          f"spare.{self._spare_starts}"
        spare.handle = self._remote_class.options(**options).remote(
            self.actor_class, self.actor_config
        )
        # Brought to the broadcasts' state now; those sent later are replayed
        # when it is promoted.
        spare.replays = dict(self._broadcasts)
        for method, payload_ref in spare.replays.items():
            spare.handle.replay.remote(method, payload_ref)
        spare.ready_ref = spare.handle.ready.remote()
        self._spares.append(spare)

    def _poll_spares(self, now: float) -> None:
        """Take note of spares that answered ready(); replace those that failed (lock held)."""
        starting = {spare.ready_ref: spare for spare in self._spares if spare.ready_ref is not None}
        if starting:
            done, _ = ray.wait(list(starting), num_returns=len(starting), timeout=0)
            for ref in done:
                spare = starting[ref]
                spare.ready_ref = None
                try:
                    pid, node_id, failure, answers = ray.get(ref)
                except Exception as exc:
                    if classify(exc) is not FailureKind.LOST:
                        raise
                    failure = first_line(exc)
                if failure is None:
                    spare.pid, spare.node_id, spare.replay_answers = pid, node_id, answers
                    continue
                # A spare that cannot start is tried again only after a while:
                # the pool's own slots report the error if it is the class's.
                self._kill_spare(spare)
                spare.retry_at = now + SPARE_RETRY_S
        due = [spare for spare in self._spares if spare.retry_at and now >= spare.retry_at]
        for spare in due:
            self._spares.remove(spare)
            self._start_spare()

    def _promote(self, spare: Slot, slot: Slot) -> None:
        """``spare``'s actor becomes ``slot``'s next generation (lock held)."""
        self._spares.remove(spare)
        slot.generation += 1
        slot.handle = spare.handle
        slot.planned_node = None
        slot.state = SlotState.STARTING
        slot.pid = slot.node_id = None
        slot.spawned_at = time.monotonic()
        slot.sent_to_generation = slot.done_by_generation = 0
        slot.calls.clear()
        slot.replays = dict(self._broadcasts)
        slot.replay_answers = {}
        for method, payload_ref in slot.replays.items():
            if spare.replays.get(method) is not payload_ref:  # broadcast after it started
                slot.handle.replay.remote(method, payload_ref)
        # Answers at once (the actor is up) with every replay's answer.
        slot.ready_ref = slot.handle.ready.remote()
        self.promoted += 1
        logger.info("actor %s: a warm spare took its place", slot.label(self.actor_name))
        self._spares_owed += 1
        self.start_owed_spares()

    def start_owed_spares(self) -> None:
        """Start the spares owed for promoted ones, once no call is in flight (lock held).

        Not at once: on a small machine a process start takes a core from the
        work for a second, which is what the spare was there to save.
        """
        if (self._spares_owed and self._state is PoolState.RUNNING and not self._runs
                and not any(slot.calls for slot in self._slots)):
            for _ in range(self._spares_owed):
                self._start_spare()
            self._spares_owed = 0

    def _retire_spares(self) -> None:
        for spare in self._spares:
            self._kill_spare(spare)
        self._spares.clear()
        self._spares_owed = 0

    def _wait_spares(self) -> None:
        """Give the spares started with the pool the start timeout to be ready.

        Called without the lock (it waits). One that is not ready stays a
        spare in the making; the pool works without it.
        """
        with self._lock:
            refs = [spare.ready_ref for spare in self._spares if spare.ready_ref is not None]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=self._start_timeout_s)
        with self._lock:
            self._poll_spares(time.monotonic())

    @staticmethod
    def _kill_spare(spare: Slot) -> None:
        # Already dead, or Ray already shut down: nothing left to kill.
        with contextlib.suppress(Exception):
            ray.kill(spare.handle, no_restart=True)
