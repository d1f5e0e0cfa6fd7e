"""ActorPool: a pool of Ray actors that loses no work when workers die.

Built on Ray core (``ray.wait``, ``ray.kill``) rather than
``ray.util.ActorPool``, which drops the item of an actor that dies. The pool:

- hosts one user :class:`~raymanager.RayActor` per Ray actor (``_ActorHost``),
  so user actors stay plain Python;
- sends *groups* of consecutive batches per remote call, sized from measured
  batch times so that small batches do not each pay a call's ~1 ms, and keeps
  the next group queued on every actor before it finishes the current one;
- replaces an actor whose process died (crash, kill, OOM, node loss), re-runs
  its batches (one per call, so a bad batch cannot sink its neighbours) up to
  ``max_retries`` times, and replays remembered broadcasts into the new actor;
- kills and replaces an actor whose batch ran past ``timeout_s``.

Users get a pool from :meth:`RayManager.create_actor_pool`::

    pool = manager.create_actor_pool(MyActor, {"scale": 2}, num_actors=2)
    pool.broadcast("set_weights", args=(weights,), replay_on_restart=True)
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
from ray.exceptions import (
    ActorUnschedulableError,
    NodeDiedError,
    OutOfMemoryError,
    RayActorError,
    RayError,
    RayTaskError,
    WorkerCrashedError,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raymanager.actors.base import RayActor
from raymanager.batching import BatchSource, Group, slice_rows
from raymanager.config import BatchConfig
from raymanager.errors import (
    ActorStartError,
    BatchError,
    BatchTimeoutError,
    ManagerShutdownError,
    PoolBrokenError,
    PoolBusyError,
    RemoteTraceback,
    ResourceUnavailableError,
    WorkerDiedError,
)

__all__ = ["ActorPool", "PoolState"]

logger = logging.getLogger("raymanager")

#: Ray errors that mean "the actor's process or node is gone": replace and retry.
WORKER_LOST = (
    RayActorError, OutOfMemoryError, ActorUnschedulableError, NodeDiedError, WorkerCrashedError,
)

#: Work per remote call the group sizing aims at: long enough that the call's
#: fixed cost (~1 ms of CPU on each side) is a few percent, short enough that
#: actors rarely wait on each other at the end of a run.
TARGET_CALL_SECONDS = 0.05
#: Work per call below which a call's fixed cost (~1 ms) would dominate: the
#: tail of a run of tiny batches is not cut finer than this.
MIN_CALL_SECONDS = 0.005
#: Remote calls queued on one actor: one running, one waiting, so an actor
#: never idles while the driver reacts to its last result.
CALLS_PER_ACTOR = 2
#: Seconds a stopped call may take to notice its cancellation before its
#: actor is killed and replaced instead.
CANCEL_GRACE_SECONDS = 2.0
#: Phrases of Ray's errors for a worker that its memory monitor killed.
OOM_MARKERS = ("running low on memory", "killed due to memory", "OutOfMemoryError")


class PoolState(enum.Enum):
    """Lifecycle of a pool, as in ``concurrent.futures`` executors."""

    RUNNING = "running"
    BROKEN = "broken"
    SHUT_DOWN = "shut down"


# --------------------------------------------------------------------------- worker side


@dataclass
class _Failure:
    """An exception from ``process_batch``, carried back in place of a result."""

    exception: BaseException | None
    traceback: str
    type_name: str


@dataclass
class _Report:
    """What one remote call returns: results in batch order, and time spent."""

    results: list[Any]
    seconds: float


class _HostStartError(Exception):
    """Raised by a host whose user actor failed to construct."""


def _capture(exc: BaseException) -> _Failure:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        import pickle  # only to test that the exception can travel back

        pickle.loads(pickle.dumps(exc))
        kept: BaseException | None = exc
    except Exception:
        kept = None
    return _Failure(kept, tb, type(exc).__qualname__)


class _ActorHost:
    """Runs inside a Ray worker process and hosts one user RayActor."""

    def __init__(self, actor_class: type[RayActor[Any, Any]], config: Mapping[str, Any]) -> None:
        self._start_failure: _Failure | None = None
        self._actor: RayActor[Any, Any] | None = None
        try:
            self._actor = actor_class(config)
        except Exception as exc:
            # Kept, not raised: a Ray constructor error reaches the driver as a
            # generic ActorDiedError; this way the driver gets the real one.
            self._start_failure = _capture(exc)

    def _actor_or_raise(self) -> RayActor[Any, Any]:
        if self._actor is None:
            assert self._start_failure is not None
            raise _HostStartError(self._start_failure.traceback)
        return self._actor

    def ready(self) -> tuple[int, str, _Failure | None]:
        """(pid, node id, constructor failure or None)."""
        node = ray.get_runtime_context().get_node_id()
        return os.getpid(), node, self._start_failure

    def run(
        self,
        data: Any,
        row_start: int,
        row_stop: int,
        shared: bool,
        count: int,
        batch_size: int,
        chunk_size: int,
        stop_on_error: bool,
    ) -> _Report:
        actor = self._actor_or_raise()
        actor.chunk_size = chunk_size
        began = time.perf_counter()
        rows = slice_rows(data, row_start, row_stop) if shared else _read_only(data)
        total = row_stop - row_start
        results: list[Any] = []
        for k in range(count):
            batch = slice_rows(rows, k * batch_size, min((k + 1) * batch_size, total))
            try:
                results.append(actor.process_batch(batch))
            except Exception as exc:
                results.append(_capture(exc))
                if stop_on_error:
                    break
        return _Report(results, time.perf_counter() - began)

    def call(self, method: str, payload: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
        actor = self._actor_or_raise()
        args, kwargs = payload
        return getattr(actor, method)(*args, **kwargs)


def _read_only(rows: Any) -> Any:
    # Inline arrays arrive as private copies; make them read-only like shared
    # ones so an actor cannot come to depend on writing into its batch.
    if isinstance(rows, np.ndarray):
        rows.flags.writeable = False
    elif isinstance(rows, dict):
        for column in rows.values():
            if isinstance(column, np.ndarray):
                column.flags.writeable = False
    return rows


# --------------------------------------------------------------------------- driver side


@dataclass
class _Slot:
    """One place in the pool: the live actor there, and its calls in flight."""

    index: int
    handle: Any
    pid: int | None = None
    node_id: str | None = None
    planned_node: str | None = None  # where placement asked Ray to put it
    calls: collections.deque[_Call] = field(default_factory=collections.deque)

    def label(self, class_name: str) -> str:
        pid = "starting" if self.pid is None else f"pid {self.pid}"
        return f"{class_name}#{self.index} ({pid})"


@dataclass
class _Call:
    ref: Any
    slot: _Slot
    group: Group
    started: float | None  # None while queued behind another call on the slot


@dataclass
class _Broadcast:
    method: str
    payload_ref: Any


ProgressCallback = Callable[[int, int], None]


class ActorPool:
    """A fixed-size pool of actors of one class, with health and replacement.

    Made by :meth:`RayManager.create_actor_pool`; use it through the
    manager's ``process_in_parallel`` / ``imap`` / ``broadcast`` or directly.

    Example::

        with RayManager() as manager:
            pool = manager.create_actor_pool(MyActor, {}, num_actors=2)
            answers = pool.broadcast("describe")   # one answer per actor
    """

    def __init__(
        self,
        actor_class: type[RayActor[Any, Any]],
        actor_config: Mapping[str, Any],
        num_actors: int,
        *,
        actor_options: Mapping[str, Any],
        start_timeout_s: float,
        placement: str = "spread",
    ) -> None:
        self.actor_class = actor_class
        self.actor_config = dict(actor_config)
        self.num_actors = num_actors
        self._options = dict(actor_options)
        self._placement = placement
        self._remote_class = ray.remote(_ActorHost)
        self._start_timeout_s = start_timeout_s
        self._state = PoolState.RUNNING
        self._lock = threading.Lock()
        self._broadcasts: dict[str, _Broadcast] = {}
        self.restarts = 0
        # ready() calls of replacement actors, not yet seen to answer.
        self._pending_ready: dict[Any, _Slot] = {}
        self._slots: list[_Slot] = []
        for index in range(num_actors):
            self._slots.append(_Slot(index, None))
            self._slots[index].handle = self._spawn(self._slots[index])
        try:
            self._wait_ready(self._slots)
        except BaseException:
            self.shutdown()
            raise

    # ----------------------------------------------------------------- lifecycle

    @property
    def state(self) -> PoolState:
        return self._state

    @property
    def actor_name(self) -> str:
        return self.actor_class.__name__

    def pids(self) -> list[int | None]:
        """PIDs of the pool's actor processes, in slot order (None: still starting)."""
        self._poll_ready()
        return [slot.pid for slot in self._slots]

    def node_ids(self) -> list[str | None]:
        """The Ray node each actor runs on, in slot order (None: still starting)."""
        self._poll_ready()
        return [slot.node_id for slot in self._slots]

    def _poll_ready(self) -> None:
        """Take note of replacement actors that have started since the last look."""
        if not self._pending_ready or self._state is not PoolState.RUNNING:
            return
        ready, _ = ray.wait(list(self._pending_ready), num_returns=len(self._pending_ready),
                            timeout=0)
        for ref in ready:
            slot = self._pending_ready.pop(ref)
            # A constructor that failed breaks the pool; the next call says so.
            with contextlib.suppress(PoolBrokenError):
                self._accept_ready(slot, ref)

    def shutdown(self) -> None:
        """Kill every actor of the pool. Safe to call twice."""
        if self._state is PoolState.SHUT_DOWN:
            return
        self._state = PoolState.SHUT_DOWN
        for slot in getattr(self, "_slots", []):
            self._kill(slot)
            slot.calls.clear()
        self._broadcasts.clear()

    def _check_usable(self) -> None:
        if self._state is PoolState.SHUT_DOWN:
            raise ManagerShutdownError(
                f"this pool of {self.actor_name} was shut down; create a new pool"
            )
        if self._state is PoolState.BROKEN:
            raise PoolBrokenError(
                f"this pool of {self.actor_name} is broken (its actors cannot be kept alive); "
                "create a new pool"
            )

    def _spawn(self, slot: _Slot) -> Any:
        options = dict(self._options)
        if self._placement == "spread":
            node = self._spread_target(slot)
            if node is not None:
                # Hard affinity: soft affinity was measured here to leave a node
                # empty just like SPREAD. If the node dies before the actor is
                # placed, Ray fails the actor, and its replacement is placed
                # on a node that is alive then.
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        slot.node_id = None
        return self._remote_class.options(**options).remote(self.actor_class, self.actor_config)

    def _spread_target(self, slot: _Slot) -> str | None:
        """The live node that can host this actor and holds fewest of ours.

        Ray's own SPREAD strategy is best effort: with actors that reserve no
        CPU it often puts most of a pool on one node. Choosing the node
        ourselves makes spreading hold, also for replacements after a node
        was lost.
        """
        nodes = _feasible_nodes(_requested_resources(self._options))
        if len(nodes) < 2:
            return None
        load = dict.fromkeys(nodes, 0)
        for other in self._slots:
            if other is not slot and other.planned_node in load:
                load[other.planned_node] += 1
        target = min(nodes, key=lambda node: (load[node], nodes.index(node)))
        slot.planned_node = target
        return target

    @staticmethod
    def _kill(slot: _Slot) -> None:
        # Already dead, or Ray already shut down: nothing left to kill.
        with contextlib.suppress(Exception):
            ray.kill(slot.handle, no_restart=True)

    def _wait_ready(self, slots: list[_Slot]) -> None:
        refs = {slot.handle.ready.remote(): slot for slot in slots}
        deadline = time.monotonic() + self._start_timeout_s
        pending = list(refs)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._not_started_error(len(pending))
            done, pending = ray.wait(pending, num_returns=len(pending), timeout=min(left, 1.0))
            for ref in done:
                self._accept_ready(refs[ref], ref, initial=True)

    def _accept_ready(self, slot: _Slot, ref: Any, *, initial: bool = False) -> None:
        """Record a started actor; raise if its constructor failed.

        A replacement that died while starting is left alone: its queued work
        fails with RayActorError and the run replaces it again, counting retries.
        """
        try:
            pid, node_id, failure = ray.get(ref)
        except WORKER_LOST as exc:
            if not initial:
                return
            self._state = PoolState.BROKEN
            raise ActorStartError(
                f"an actor of {self.actor_name} died while starting: {exc}",
                actor_class=self.actor_name,
            ) from exc
        slot.pid, slot.node_id = pid, node_id
        if failure is not None:
            self._state = PoolState.BROKEN
            raise self._start_error(failure)

    def _start_error(self, failure: _Failure) -> ActorStartError:
        error = ActorStartError(
            f"{self.actor_name}({self.actor_config!r}) raised "
            f"{failure.type_name} in its constructor",
            actor_class=self.actor_name,
        )
        cause = failure.exception or RemoteTraceback(failure.traceback)
        cause.__cause__ = RemoteTraceback(failure.traceback)
        error.__cause__ = cause
        return error

    def _not_started_error(self, pending: int) -> ResourceUnavailableError:
        requested = _requested_resources(self._options)
        available = _largest_node_resources()
        return ResourceUnavailableError(
            f"{pending} of {self.num_actors} actors of {self.actor_name} did not start within "
            f"{self._start_timeout_s:g} s; each asks for {requested or 'no resources'}, "
            f"the largest node has {available} and other work may hold it",
            requested=requested,
            available=available,
        )

    def _replace(self, slot: _Slot, reason: str) -> dict[str, Any]:
        """Kill the actor in ``slot`` and start a fresh one there (not waited for).

        Returns the refs of the broadcasts replayed into it, by method name.
        """
        self._kill(slot)
        self.restarts += 1
        old = slot.label(self.actor_name)
        slot.handle = self._spawn(slot)
        slot.pid = slot.node_id = None
        slot.calls.clear()
        logger.warning("replacing actor %s: %s", old, reason)
        # A fresh actor starts from its config; bring it to the state the
        # others were given by broadcasts marked replay_on_restart.
        replayed = {
            b.method: slot.handle.call.remote(b.method, b.payload_ref)
            for b in self._broadcasts.values()
        }
        for ref in [r for r, waiting in self._pending_ready.items() if waiting is slot]:
            del self._pending_ready[ref]
        self._pending_ready[slot.handle.ready.remote()] = slot
        return replayed

    def _await_ready(self, slot: _Slot) -> None:
        for ref in [r for r, waiting in self._pending_ready.items() if waiting is slot]:
            del self._pending_ready[ref]
            self._accept_ready(slot, ref)

    # ----------------------------------------------------------------- broadcast

    def broadcast(
        self,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        replay_on_restart: bool = False,
        max_retries: int = 3,
    ) -> list[Any]:
        """Call ``method(*args, **kwargs)`` on every actor; return each answer.

        The arguments are put in the object store once and every actor reads
        the same copy (numpy arrays zero-copy), so broadcasting weights to N
        actors costs one serialization, not N. With ``replay_on_restart`` the
        call is remembered and replayed into any actor that replaces a dead
        one, before it gets work (the last call per method name is kept).

        Example::

            pool.broadcast("set_weights", args=(weights,), replay_on_restart=True)
        """
        self._check_usable()
        if not isinstance(method, str) or not hasattr(self.actor_class, method):
            raise AttributeError(f"{self.actor_name} has no method {method!r} to broadcast")
        payload_ref = ray.put((tuple(args), dict(kwargs or {})))
        if replay_on_restart:
            self._broadcasts[method] = _Broadcast(method, payload_ref)
        answers: list[Any] = [None] * len(self._slots)
        pending = {slot.handle.call.remote(method, payload_ref): slot for slot in self._slots}
        failures = dict.fromkeys(range(len(self._slots)), 0)
        while pending:
            ref, slot = next(iter(pending.items()))
            del pending[ref]
            try:
                answers[slot.index] = ray.get(ref)
            except RayTaskError as exc:
                if isinstance(exc.cause, _HostStartError):
                    self._await_ready(slot)  # raises the constructor's error
                raise exc.as_instanceof_cause() from None  # type: ignore[no-untyped-call]
            except WORKER_LOST as exc:
                failures[slot.index] += 1
                if failures[slot.index] > max_retries:
                    raise PoolBrokenError(
                        f"broadcast of {method!r} failed {failures[slot.index]} times on "
                        f"{slot.label(self.actor_name)}: {exc}"
                    ) from exc
                replayed = self._replace(slot, f"it died during broadcast of {method!r}")
                # A replayed broadcast has already made this call on the new actor.
                retry = replayed.get(method) or slot.handle.call.remote(method, payload_ref)
                pending[retry] = slot
        for slot in self._slots:
            if slot.pid is None:
                self._await_ready(slot)
        return answers

    # ----------------------------------------------------------------- processing

    def run(
        self,
        source: BatchSource,
        config: BatchConfig,
        *,
        shared_ref: Any = None,
        on_progress: ProgressCallback | None = None,
        ordered: bool = True,
    ) -> Iterator[tuple[int, Any]]:
        """Process every batch of ``source``; yield ``(batch index, result)``.

        In input order when ``ordered``, else as batches finish. Made for the
        manager's ``process_in_parallel`` / ``imap`` / ``imap_unordered``.
        """
        self._check_usable()
        if not self._lock.acquire(blocking=False):
            raise PoolBusyError(
                f"this pool of {self.actor_name} is already processing data; "
                "use a second pool to run two jobs at once"
            )
        try:
            yield from _Run(self, source, config, shared_ref, on_progress, ordered).results()
        finally:
            self._lock.release()


class _Run:
    """One pass of a pool over a source: dispatch, collect, recover, order."""

    def __init__(
        self,
        pool: ActorPool,
        source: BatchSource,
        config: BatchConfig,
        shared_ref: Any,
        on_progress: ProgressCallback | None,
        ordered: bool,
    ) -> None:
        self.pool = pool
        self.source = source
        self.config = config
        self.shared_ref = shared_ref
        self.on_progress = on_progress
        self.ordered = ordered
        self.slots = pool._slots[: min(config.num_parallel, len(pool._slots))]
        self.calls: dict[Any, _Call] = {}
        self.retry: collections.deque[Group] = collections.deque()
        self.done: dict[int, Any] = {}
        self.next_to_yield = 0
        self.batches_done = 0
        self.rows_done = 0
        self.inflight_bytes = 0
        self.seconds_per_batch: float | None = None

    # -- sizing

    def _group_size(self) -> int:
        if self.seconds_per_batch is None:
            return 1  # the first call on each actor measures how long a batch takes
        per_batch = max(self.seconds_per_batch, 1e-7)
        size = max(1, int(TARGET_CALL_SECONDS / per_batch))
        remaining = self.source.remaining_batches()
        if remaining is not None:
            # Guided self-scheduling: never more than a share of what is left,
            # so the last calls are short and no actor waits long at the end;
            # but never so short that the call's own cost dominates its work.
            floor = max(1, math.ceil(MIN_CALL_SECONDS / per_batch))
            size = min(size, max(floor, math.ceil(remaining / (2 * len(self.slots)))))
        batch_nbytes = self.source.batch_nbytes
        if batch_nbytes:
            # Inline data: all calls in flight together stay within the byte bound.
            share = self.config.max_inflight_bytes // (CALLS_PER_ACTOR * len(self.slots))
            size = min(size, max(1, share // batch_nbytes))
        return size

    def _window_open(self) -> bool:
        # Bound what is sent but not yet handed to the caller: results wait in
        # `done` for an earlier slow batch, and inputs sit in the object store.
        window = max(64, 4 * len(self.slots) * CALLS_PER_ACTOR * self._group_size())
        if self.source.batches_taken - self.next_to_yield >= window:
            return False
        return self.inflight_bytes < self.config.max_inflight_bytes

    # -- dispatch

    def _next_group(self) -> Group | None:
        if self.retry:
            return self.retry.popleft()
        if not self._window_open():
            return None
        return self.source.take(self._group_size())

    def _submit(self, slot: _Slot, group: Group) -> None:
        shared = self.shared_ref is not None
        data = self.shared_ref if shared else group.rows
        ref = slot.handle.run.remote(
            data,
            group.row_start,
            group.row_stop,
            shared,
            group.count,
            self.source.batch_size,
            self.config.chunk_size,
            self.config.on_error == "raise",
        )
        now = time.monotonic()
        # The clock of a call starts when it runs: now if its actor is up and
        # idle, else when the call before it ends or the new actor is ready.
        running = not slot.calls and slot.pid is not None
        call = _Call(ref, slot, group, now if running else None)
        slot.calls.append(call)
        self.calls[ref] = call
        self.inflight_bytes += group.nbytes

    def _fill(self) -> None:
        progress = True
        while progress:
            progress = False
            # An actor that is still starting (a replacement) gets no work while
            # a started one has room: work queued behind a start-up of seconds
            # would hold up every later result of an ordered run.
            started = [slot for slot in self.slots if slot.pid is not None]
            for slot in started or self.slots:
                if len(slot.calls) >= CALLS_PER_ACTOR:
                    continue
                group = self._next_group()
                if group is None:
                    return
                self._submit(slot, group)
                progress = True

    # -- collect

    def results(self) -> Iterator[tuple[int, Any]]:
        completed = False
        try:
            self._fill()
            while self.calls or self.retry or not self.source.exhausted:
                if not self.calls:
                    self._fill()
                    if not self.calls:
                        if self.retry or not self.source.exhausted:
                            raise RuntimeError(  # a bug of ours: never lose batches quietly
                                f"raymanager stalled with work left ({len(self.retry)} retries, "
                                f"{self.source.remaining_batches()} batches not sent)"
                            )
                        break
                timeout = self._wait_timeout()
                waiting = list(self.calls) + list(self.pool._pending_ready)
                ready, _ = ray.wait(waiting, num_returns=1, timeout=timeout)
                if not ready:
                    self._expire_timeouts()
                elif ready[0] in self.calls:
                    self._collect(self.calls[ready[0]])
                else:
                    self._started(ready[0])
                self._fill()
                yield from self._deliver()
            yield from self._deliver()
            total = self.source.num_batches
            if total is not None and self.next_to_yield != total:
                raise RuntimeError(  # a bug of ours: never lose batches quietly
                    f"raymanager delivered {self.next_to_yield} of {total} batches"
                )
            completed = True
        except KeyboardInterrupt:
            # The user wants out now: no grace period, no replacements. Kill
            # the pool's actors so nothing of ours keeps running.
            logger.warning("interrupted: killing the %d actors of this pool", len(self.pool._slots))
            self.pool.shutdown()
            completed = True
            raise
        finally:
            if not completed:
                self._abort()

    def _deliver(self) -> Iterator[tuple[int, Any]]:
        if self.ordered:
            while self.next_to_yield in self.done:
                index = self.next_to_yield
                self.next_to_yield += 1
                yield index, self.done.pop(index)
        else:
            while self.done:
                index, value = self.done.popitem()
                self.next_to_yield += 1
                yield index, value

    def _wait_timeout(self) -> float | None:
        if self.config.timeout_s is None:
            return None
        now = time.monotonic()
        for slot in self.slots:
            # A replacement may have been seen to start outside this loop
            # (pool.pids() looks too): its first call runs from then on.
            if slot.calls and slot.calls[0].started is None and slot.pid is not None:
                slot.calls[0].started = now
        deadlines = [
            call.started + self.config.timeout_s * call.group.count
            for call in self.calls.values()
            if call.started is not None
        ]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _started(self, ready_ref: Any) -> None:
        slot = self.pool._pending_ready.pop(ready_ref)
        self.pool._accept_ready(slot, ready_ref)
        if slot.calls and slot.calls[0].started is None:
            slot.calls[0].started = time.monotonic()

    def _finish_call(self, call: _Call) -> None:
        del self.calls[call.ref]
        self.inflight_bytes -= call.group.nbytes
        slot = call.slot
        # ray.wait may hand back an actor's second call before its first when
        # both are done, so the call is not always at the head of the queue.
        if call in slot.calls:
            slot.calls.remove(call)
        if slot.calls and slot.calls[0].started is None and slot.pid is not None:
            slot.calls[0].started = time.monotonic()

    def _collect(self, call: _Call) -> None:
        try:
            report: _Report = ray.get(call.ref)
        except WORKER_LOST as exc:
            self._worker_lost(call.slot, exc)
            return
        except RayTaskError as exc:
            if isinstance(exc.cause, _HostStartError):
                self.pool._await_ready(call.slot)  # raises the constructor's error
            self._finish_call(call)
            self._record_failure(call, call.group.first, exc.cause or exc, str(exc), "")
            return
        self._finish_call(call)
        self._accept(call, report)

    def _accept(self, call: _Call, report: _Report) -> None:
        n = len(report.results)
        if n and report.seconds > 0:
            per_batch = report.seconds / n
            old = self.seconds_per_batch
            self.seconds_per_batch = per_batch if old is None else 0.7 * old + 0.3 * per_batch
        group = call.group
        for k, value in enumerate(report.results):
            index = group.first + k
            if isinstance(value, _Failure):
                self._record_failure(call, index, value.exception, value.traceback, value.type_name)
            else:
                self.done[index] = value
        if n < group.count:
            return  # stopped at an error, which _record_failure has raised
        self.batches_done += n
        self.rows_done += group.num_rows
        if self.on_progress is not None:
            self.on_progress(self.batches_done, self.rows_done)

    def _record_failure(
        self, call: _Call, index: int, exception: BaseException | None, tb: str, type_name: str
    ) -> None:
        actor = call.slot.label(self.pool.actor_name)
        error = BatchError(
            f"batch {index} raised {type_name or type(exception).__name__} in {actor}",
            index=index,
            actor=actor,
            attempts=call.group.attempts + 1,
        )
        cause = exception if exception is not None else RemoteTraceback(tb)
        if tb and exception is not None:
            cause.__cause__ = RemoteTraceback(tb)
        error.__cause__ = cause
        self._fail_batch(index, error)

    def _fail_batch(self, index: int, error: BatchError) -> None:
        if self.config.on_error == "raise":
            raise error
        logger.warning("%s", error)
        self.done[index] = error
        self.batches_done += 1
        if self.on_progress is not None:
            self.on_progress(self.batches_done, self.rows_done)

    # -- recovery

    def _worker_lost(self, slot: _Slot, exc: BaseException) -> None:
        """The actor in ``slot`` died: salvage finished calls, requeue the rest."""
        # Ray's memory monitor says so in the error; a plain crash mentions the
        # kernel OOM killer only as one guess among several, which is not enough.
        out_of_memory = isinstance(exc, OutOfMemoryError) or any(
            marker in str(exc) for marker in OOM_MARKERS
        )
        if out_of_memory:
            reason = "its worker was killed for using too much memory"
        else:
            reason = "its worker process died"
        self._lose_slot(slot, reason, out_of_memory=out_of_memory)

    def _expire_timeouts(self) -> None:
        now = time.monotonic()
        timeout = self.config.timeout_s
        assert timeout is not None
        for call in list(self.calls.values()):
            if call.started is None or call.ref not in self.calls:
                continue
            if now >= call.started + timeout * call.group.count:
                reason = (
                    f"batches {call.group.first}..{call.group.first + call.group.count - 1} "
                    f"ran past timeout_s={timeout:g} per batch"
                )
                self._lose_slot(call.slot, reason, timed_out=True)

    def _lose_slot(
        self,
        slot: _Slot,
        reason: str,
        *,
        out_of_memory: bool = False,
        timed_out: bool = False,
    ) -> None:
        calls = list(slot.calls)
        charged: _Call | None = None
        requeue: list[Group] = []
        for call in calls:
            # A call may have finished before the actor died: keep its result.
            ready, _ = ray.wait([call.ref], timeout=0)
            if ready:
                try:
                    report = ray.get(call.ref)
                except RayError:
                    pass
                else:
                    self._finish_call(call)
                    self._accept(call, report)
                    continue
            if call.ref in self.calls:
                self._finish_call(call)
            if charged is None:
                # Calls on an actor run in order: the first unfinished one was running.
                charged = call
            else:
                requeue.append(call.group)
        slot.calls.clear()
        label = slot.label(self.pool.actor_name)
        self.pool._replace(slot, reason)
        if charged is not None:
            self._charge(charged.group, label, reason, out_of_memory, timed_out)
        # Innocent queued work goes back at the front, in order, uncharged.
        self.retry.extendleft(reversed(requeue))

    def _charge(
        self, group: Group, label: str, reason: str, out_of_memory: bool, timed_out: bool
    ) -> None:
        attempts = group.attempts + 1
        if attempts <= self.config.max_retries:
            logger.warning(
                "retrying batches %d..%d (attempt %d of %d) after %s: %s",
                group.first, group.first + group.count - 1, attempts + 1,
                self.config.max_retries + 1, label, reason,
            )
        for part in group.split(self.source.batch_size):
            part.attempts = attempts
            if attempts > self.config.max_retries:
                self._give_up(part, label, reason, out_of_memory, timed_out)
            else:
                self.retry.append(part)

    def _give_up(
        self, part: Group, label: str, reason: str, out_of_memory: bool, timed_out: bool
    ) -> None:
        tries = part.attempts
        error: BatchError
        if timed_out:
            error = BatchTimeoutError(
                f"batch {part.first} timed out on all {tries} tries "
                f"(timeout_s={self.config.timeout_s:g}); last on {label}",
                index=part.first, actor=label, attempts=tries,
            )
        elif out_of_memory:
            error = WorkerDiedError(
                f"batch {part.first} exhausts memory: it killed its worker on all {tries} "
                f"tries; last on {label}",
                index=part.first, actor=label, attempts=tries, out_of_memory=True,
            )
        else:
            error = WorkerDiedError(
                f"batch {part.first} lost its worker on all {tries} tries ({reason}); "
                f"last on {label}",
                index=part.first, actor=label, attempts=tries,
            )
        self._fail_batch(part.first, error)

    def _abort(self) -> None:
        """Stop early (error, caller stopped iterating, Ctrl-C): leave every actor idle."""
        refs = list(self.calls)
        if not refs:
            return
        # No ray.cancel: cancelling an actor call that has not reached the
        # actor yet leaves a gap in its task sequence, and the actor's next
        # call then waits 30 s for the missing one (seen here with Ray 2.60).
        # Groups are sized to ~50 ms, so letting them finish is quick; an
        # actor still busy after the grace period is killed and replaced.
        _, stuck = ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_SECONDS)
        stuck_slots = {self.calls[ref].slot.index: self.calls[ref].slot for ref in stuck}
        for slot in stuck_slots.values():
            self.pool._replace(slot, "it was still busy when its run was stopped")
        for slot in self.slots:
            slot.calls.clear()
        self.calls.clear()


def _requested_resources(options: Mapping[str, Any]) -> dict[str, float]:
    requested: dict[str, float] = {}
    if options.get("num_cpus"):
        requested["CPU"] = float(options["num_cpus"])
    if options.get("num_gpus"):
        requested["GPU"] = float(options["num_gpus"])
    if options.get("memory"):
        requested["memory"] = float(options["memory"])
    for name, amount in (options.get("resources") or {}).items():
        requested[name] = float(amount)
    return requested


def _largest_node_resources() -> dict[str, float]:
    largest: dict[str, float] = {}
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if not node.get("Alive"):
            continue
        for name, amount in node.get("Resources", {}).items():
            if name.startswith("node:") or name.endswith("_group"):
                continue
            largest[name] = max(largest.get(name, 0.0), float(amount))
    return largest


def _feasible_nodes(requested: Mapping[str, float]) -> list[str]:
    """IDs of the live nodes whose total resources could host one actor, sorted."""
    nodes = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if not node.get("Alive"):
            continue
        total = node.get("Resources", {})
        if all(float(total.get(name, 0.0)) >= amount for name, amount in requested.items()):
            nodes.append(str(node["NodeID"]))
    return sorted(nodes)


def check_feasible(options: Mapping[str, Any], actor_name: str) -> None:
    """Fail at once when no node of the cluster could ever host one actor."""
    requested = _requested_resources(options)
    if not requested:
        return
    largest = _largest_node_resources()
    missing = {name: amount for name, amount in requested.items()
               if largest.get(name, 0.0) < amount}
    if missing:
        raise ResourceUnavailableError(
            f"each {actor_name} asks for {requested}, but no node of this Ray cluster has that "
            f"much of {sorted(missing)}: the largest node offers "
            f"{ {k: largest.get(k, 0.0) for k in requested} }",
            requested=requested,
            available=largest,
        )

