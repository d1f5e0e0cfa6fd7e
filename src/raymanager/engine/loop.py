"""The loops that drive a pool's owners of calls, each written once, in the engine.

:func:`drive` is a run's whole life on a pool: it tells the pool's core
(:class:`~raymanager.engine.pool.PoolCore`) that the run shares its actors,
asks the run's core (:class:`~raymanager.engine.run.RunCore`) what to send,
reads input and writes the journal with the lock released, hands out what
is deliverable, waits for the world's news, and stops the run when it ends
early. Whoever hosts the run supplies a :class:`Host`: the Ray adapter
(``pool/dispatch.py``: Ray calls, a real lock and clock) or the simulator
(:mod:`raymanager.engine.simulator`: simulated actors, a virtual clock, no
lock). Nothing in either describes what the other does: both run this loop.

:func:`serve` is the same turn for an owner of one-off calls (a broadcast,
a pool's submissions): send what can be sent, wait with the lock released,
settle what came back with it held, until nothing is left to wait for.

The generator protocol: the first ``next()`` yields :data:`STARTED` before
anything runs; after that, resume with ``send(wait_until)`` (a time on the
host's clock, or None): when ``wait_until`` passes before any result is
ready, :data:`TIMED_OUT` is yielded instead. Otherwise each yield is a list
of ``(batch index, result)``: every result deliverable at once, in input
order when ordered.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from raymanager.engine import policy
from raymanager.engine.pool import PoolCore, RunOwner
from raymanager.engine.run import GROW, Input, Read, Record, Send
from raymanager.engine.slots import Call, Loss, LossKind

__all__ = ["STARTED", "TIMED_OUT", "Host", "Served", "WaitUntil", "drive", "serve", "stop"]

#: Yielded by :func:`drive` first, before the run starts.
STARTED = object()
#: Yielded by :func:`drive` instead of results when the caller's wait ended;
#: the run stays suspended and goes on at the next resume.
TIMED_OUT = object()

#: What :func:`drive` is resumed with: a time on the host's clock by which the
#: caller stops waiting for the next results, or None (no limit).
WaitUntil = float | None


class Host(Protocol):
    """What the loop needs of whoever hosts a run (the Ray adapter, the simulator).

    Methods marked *lock held* are called inside ``locked()``; the others
    with it released, so their I/O never holds up the pool's other users.
    """

    @property
    def pool_core(self) -> PoolCore:
        """The core of the pool the run shares."""

    def locked(self) -> AbstractContextManager[Any]:
        """The pool's lock (the simulator's does nothing)."""

    def now(self) -> float:
        """The host's clock."""

    def check_usable(self) -> None:
        """Raise if the pool was shut down or broke (lock held)."""

    def poll(self) -> None:
        """Tell the pool's core what the world says now, without blocking (lock held)."""

    def lose(self, call: Call, loss: Loss) -> None:
        """Have ``call``'s actor replaced (lock held): it ran past its timeout
        (TIMED_OUT), or was still busy when its run stopped (STOPPED)."""

    def grow(self) -> None:
        """The run has work for more actors than the pool has ready (lock held)."""

    def send(self, run: RunOwner, command: Send) -> None:
        """Make the call of ``command`` and report it to the run's core (lock held)."""

    def read(self, run: RunOwner, command: Read) -> Input:
        """Read the run's source for ``command`` (lock released)."""

    def record(self, run: RunOwner) -> None:
        """Write what the run's core hands over to its journal (lock released)."""

    def pending(self, run: RunOwner) -> Any:
        """What to wait for (lock held): the calls in flight, the starts."""

    def wait(self, pending: Any, timeout: float) -> Any:
        """Wait up to ``timeout`` for news of ``pending`` (lock released); the news."""

    def settle(self, news: Any) -> None:
        """Tell each owner what came back (lock held)."""

    def finish_calls(self, calls: list[Call], grace_s: float, *,
                     interrupted: bool) -> list[Call]:
        """Let a stopped run's ``calls`` finish for up to ``grace_s`` (lock
        released); those still running after it, whose actors are replaced."""

    def record_stopped(self, run: RunOwner, record: Record) -> None:
        """Journal what a stopped run had finished (lock released); never raises."""

    def closed(self, run: RunOwner) -> None:
        """The run is over: the pool forgets it."""


class Served(Protocol):
    """An owner of one-off calls that :func:`serve` drives (a broadcast, submissions)."""

    def step(self) -> bool:
        """Send what can be sent, take what needs no wait (lock held); False once
        nothing is left to wait for. May raise to end the owner's service."""

    def pending(self) -> Any:
        """What to wait for now (lock held)."""

    def wait_news(self, pending: Any) -> Any:
        """Wait for news of ``pending`` (lock released); the news."""

    def settle(self, news: Any) -> None:
        """Take the news (lock held)."""


class ServedPool(Protocol):
    """What :func:`serve` needs of the pool: its lock, its health, its news."""

    def locked(self) -> AbstractContextManager[Any]: ...

    def check_usable(self) -> None: ...

    def poll(self) -> None: ...


def serve(owner: Served, pool: ServedPool) -> None:
    """Drive ``owner`` until it has nothing left to wait for: one turn at a time,
    its I/O (the wait, the replies) with the pool's lock released.

    Raises what the pool's health check or the owner's step raises
    (the pool was shut down, the owner failed).
    """
    while True:
        with pool.locked():
            pool.check_usable()
            pool.poll()
            if not owner.step():
                return
            pending = owner.pending()
        news = owner.wait_news(pending)
        with pool.locked():
            pool.check_usable()
            owner.settle(news)


def drive(run: RunOwner, host: Host) -> Generator[Any, WaitUntil, None]:
    """Drive ``run`` on ``host`` until it is done; see the module docstring.

    Example (the simulator hosts it)::

        >>> from raymanager.engine.simulator import simulate
        >>> simulate(num_batches=30, num_actors=2, seed=3).results == {i: i for i in range(30)}
        True
    """
    wait_until = yield STARTED
    core = run.core
    pool = host.pool_core
    completed = False
    with host.locked():
        pool.add_run(run)
    try:
        while True:
            with host.locked():
                pool.check_alive()
                host.poll()
                now = host.now()
                # Every run's clocks, not only ours: a call of a suspended
                # run that hangs must not stall this one.
                sharing = [each.core for each in pool.runs]
                for each in sharing:
                    each.start_clocks(now)
                for each in sharing:
                    for expire in each.expired(now):
                        host.lose(expire.call, expire.loss)
                read = _fill(run, host)
            while read is not None:
                event = host.read(run, read)  # the user's generator runs: lock released
                with host.locked():
                    host.check_usable()
                    core.taken(event)
                    read = _fill(run, host)
            host.record(run)
            core.tell_progress()  # the user's callback: lock released
            if core.deliverable():
                window_shut = core.window_shut()
                while core.deliverable():
                    wait_until = yield _pop_ready(run, host)  # no reference kept once handed
                if window_shut or not core.calls:
                    continue  # what was handed out lets more be read: fill first
            with host.locked():
                if core.finished():
                    break
            if wait_until is not None and host.now() >= wait_until:
                wait_until = yield TIMED_OUT
                continue
            with host.locked():
                if core.unrecorded:
                    continue  # another thread took a call of ours: record it first
                core.check_stall()
                now = host.now()
                timeout = min(each.core.wait_timeout(now, pool.slots) for each in pool.runs)
                if wait_until is not None:
                    timeout = min(timeout, max(0.0, wait_until - now))
                pending = host.pending(run)
            news = host.wait(pending, timeout)
            with host.locked():
                host.check_usable()
                host.settle(news)
            core.tell_progress()
        core.tell_progress()
        core.check_complete()
        completed = True
    except KeyboardInterrupt:
        # The user wants this run stopped, wherever Ctrl-C lands, and the
        # pool kept warm (a notebook keeps its actors' models and caches).
        stop(run, host, interrupted=True)
        completed = True
        raise
    finally:
        if not completed:
            stop(run, host, interrupted=False)
        core.closed = True
        host.closed(run)


def stop(run: RunOwner, host: Host, *, interrupted: bool) -> None:
    """Stop a run early (an error, a caller that stopped iterating, Ctrl-C) and
    leave every actor idle: the pool stays usable, and warm.

    Batches not sent yet are dropped; calls in flight get a grace to finish
    (``policy.CANCEL_GRACE_SECONDS``, or after Ctrl-C ``policy.interrupt_grace``:
    about what is left of the calls), and only an actor still busy after it
    is replaced. Results finished before the stop are journaled, as they
    would have been had the run gone on (they are not run again on resume).
    """
    core, pool = run.core, host.pool_core
    with host.locked():
        record = core.take_records()
        calls = core.close()
        grace_s = (policy.interrupt_grace(calls, now=host.now()) if interrupted
                   else policy.CANCEL_GRACE_SECONDS)
    stuck = host.finish_calls(calls, grace_s, interrupted=interrupted) if calls else []
    with host.locked():
        reason = ("it was still busy when its run was interrupted (Ctrl-C)" if interrupted
                  else "it was still busy when its run was stopped")
        for call in stuck:
            host.lose(call, Loss(LossKind.STOPPED, reason, pool.label(call.slot)))
    if record is not None:
        host.record_stopped(run, record)
    with host.locked():
        now = host.now()
        for call in calls:
            pool.finished(call, now)
        core.clear()


def _pop_ready(run: RunOwner, host: Host) -> list[tuple[int, Any]]:
    with host.locked():
        host.check_usable()  # nothing is handed out after a shutdown
        return run.core.pop_ready()


def _fill(run: RunOwner, host: Host) -> Read | None:
    """Make the calls the run's core decides on (lock held); the input to read
    first, if it needs more (read it with the lock released)."""
    core, pool = run.core, host.pool_core
    while True:
        command = core.next_send(pool.slots, host.now(), pool.batches_left,
                                 pool.fair_share(run))
        if command is GROW:
            host.grow()  # an elastic pool below its max
            return None
        if isinstance(command, Read):
            return command
        if not isinstance(command, Send):
            return None
        host.send(run, command)
