"""The worker side: one Ray actor process hosting one user :class:`RayActor`.

The driver never calls a user actor directly. It calls :class:`ActorHost`,
which keeps the user's actor plain Python and reports *per batch*: a batch
that raises (anything, ``SystemExit`` and ``KeyboardInterrupt`` included) is
that batch's :class:`Failure`, and its neighbours in the same call still
return their results.

    host = ActorHost(MyActor, {"scale": 2})        # inside a Ray worker
    report = host.run(rows, CallSpec(first=0, row_start=0, row_stop=256, ...))
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import time
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import ray

from raymanager.actors.base import RayActor
from raymanager.engine.wire import CallSpec, Failure, Report
from raymanager.mapped_file import MappedFile
from raymanager.rows import slice_rows

__all__ = [
    "ActorHost",
    "AsyncActorHost",
    "CallSpec",
    "Failure",
    "HostStartError",
    "Report",
    "host_class",
    "is_async",
]


class HostStartError(Exception):
    """Raised by a host whose user actor failed to construct."""


def capture(exc: BaseException) -> Failure:
    """Wrap ``exc`` so that it, or at least its traceback, reaches the driver.

    Ray's own exits are raised again instead: the SystemExit that Ray's
    SIGTERM handler raises when a node is drained or the actor is being
    killed, and ``ray.actor.exit_actor()``'s. They end this process; the
    driver must see an actor death (the batches move elsewhere), not a batch
    that failed by its own decision as a user's ``sys.exit()`` does.

    >>> capture(SystemExit(3)).type_name
    'SystemExit'
    """
    if is_ray_exit(exc):
        raise exc
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickle.loads(pickle.dumps(exc))  # only to test that the exception can travel
        kept: BaseException | None = exc
    except Exception:
        kept = None
    return Failure(kept, tb, type(exc).__qualname__)


def is_ray_exit(exc: BaseException) -> bool:
    """Whether ``exc`` is Ray ending this worker process, not the user's code.

    Ray marks the SystemExit it raises (its SIGTERM handler, ``exit_actor()``)
    with a ``ray_terminate_msg`` attribute; async actors exit by
    ``AsyncioActorExit``.

    >>> is_ray_exit(SystemExit(1))
    False
    """
    if isinstance(exc, SystemExit) and hasattr(exc, "ray_terminate_msg"):
        return True
    return isinstance(exc, ray.exceptions.AsyncioActorExit)


class ActorHost:
    """Runs inside a Ray worker process and hosts one user RayActor."""

    def __init__(self, actor_class: type[RayActor[Any, Any]], config: Mapping[str, Any]) -> None:
        self._start_failure: Failure | None = None
        self._replay_failure: Failure | None = None
        self._actor: RayActor[Any, Any] | None = None
        self._replay_answers: dict[str, Any] = {}
        self._mapped: dict[MappedFile, np.ndarray] = {}  # files this worker has mapped
        try:
            self._actor = actor_class(config)
        except BaseException as exc:
            # Kept, not raised: a Ray constructor error reaches the driver as a
            # generic ActorDiedError; this way the driver gets the real one.
            self._start_failure = capture(exc)

    def _actor_or_raise(self) -> RayActor[Any, Any]:
        if self._actor is None:
            assert self._start_failure is not None
            raise HostStartError(self._start_failure.traceback)
        return self._actor

    def ready(self) -> tuple[int, str, Failure | None, dict[str, Any]]:
        """(pid, node id, constructor or replay failure or None, replay answers).

        Called after the replays of a replacement, so it answers only once the
        actor is in the state the rest of the pool was brought to.
        """
        node = ray.get_runtime_context().get_node_id()
        answers, self._replay_answers = self._replay_answers, {}
        return os.getpid(), node, self._start_failure or self._replay_failure, answers

    def _batches(self, data: Any, spec: CallSpec) -> tuple[RayActor[Any, Any], Iterator[Any]]:
        """The user's actor, set up for this call, and the call's batches."""
        actor = self._actor_or_raise()
        actor.chunk_size = spec.chunk_size
        total = spec.row_stop - spec.row_start
        rows = self._rows(data, spec)
        starts = range(0, spec.count * spec.batch_size, spec.batch_size)
        return actor, (slice_rows(rows, lo, min(lo + spec.batch_size, total)) for lo in starts)

    def run(self, data: Any, spec: CallSpec) -> Report:
        """Process ``spec.count`` batches of ``data``; one result or Failure each."""
        began = time.perf_counter()
        actor, batches = self._batches(data, spec)
        results: list[Any] = []
        for batch in batches:
            try:
                results.append(actor.process_batch(batch))
            except BaseException as exc:
                # SystemExit and KeyboardInterrupt too: a batch that calls
                # sys.exit() made a decision about that batch, not the process.
                results.append(capture(exc))
                if spec.stop_on_error:
                    break
        return Report(results, time.perf_counter() - began)

    def _rows(self, data: Any, spec: CallSpec) -> Any:
        """The call's rows: cut from the shared array or file, or the inline rows."""
        if isinstance(data, MappedFile):
            if data not in self._mapped:
                self._mapped[data] = data.open()  # raises MappedFileUnavailable
            data = self._mapped[data]
        # Shared data is the whole array: cut the call's rows out of it.
        return slice_rows(data, spec.row_start, spec.row_stop) if spec.shared else read_only(data)

    def process_one(self, batch: Any) -> Any:
        """One submitted batch: its result, or its Failure."""
        actor = self._actor_or_raise()
        try:
            return actor.process_batch(batch)
        except BaseException as exc:
            return capture(exc)

    def close(self) -> Failure | None:
        """The user's ``close()``, before the pool kills this actor."""
        if self._actor is None:
            return None
        try:
            self._actor.close()
        except BaseException as exc:
            return capture(exc)
        return None

    def call(self, method: str, payload: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
        """``method(*args, **kwargs)`` on the user's actor (a broadcast)."""
        actor = self._actor_or_raise()
        args, kwargs = payload
        return getattr(actor, method)(*args, **kwargs)

    def replay(self, method: str, payload: tuple[tuple[Any, ...], dict[str, Any]]) -> None:
        """A remembered broadcast, replayed into a replacement before it gets work."""
        if self._actor is None or self._replay_failure is not None:
            return
        args, kwargs = payload
        try:
            self._replay_answers[method] = getattr(self._actor, method)(*args, **kwargs)
        except BaseException as exc:
            self._replay_failure = capture(exc)


def read_only(rows: Any) -> Any:
    """Make inline numpy rows read-only, like shared ones.

    So an actor cannot come to depend on writing into its batch, which would
    break the day the same data arrives shared.
    """
    if isinstance(rows, np.ndarray):
        rows.flags.writeable = False
    elif isinstance(rows, dict):
        for column in rows.values():
            if isinstance(column, np.ndarray):
                column.flags.writeable = False
    return rows


class AsyncActorHost(ActorHost):
    """The host of a user actor whose ``process_batch`` is ``async def``.

    Ray runs an actor with async methods on an event loop, up to the pool's
    ``max_concurrency`` calls at once: I/O-bound work (model APIs, remote
    simulators) keeps that many batches in flight per actor.
    """

    async def ready(self) -> tuple[int, str, Failure | None, dict[str, Any]]:  # type: ignore[override]
        return super().ready()

    async def run(self, data: Any, spec: CallSpec) -> Report:  # type: ignore[override]
        began = time.perf_counter()
        actor, batches = self._batches(data, spec)
        results: list[Any] = []
        for batch in batches:
            try:
                results.append(await _maybe_await(actor.process_batch(batch)))
            except asyncio.CancelledError:
                raise  # ray.cancel (a run stopped by Ctrl-C): the call ends, the actor stays
            except BaseException as exc:
                results.append(capture(exc))
                if spec.stop_on_error:
                    break
        return Report(results, time.perf_counter() - began)

    async def process_one(self, batch: Any) -> Any:
        actor = self._actor_or_raise()
        try:
            return await _maybe_await(actor.process_batch(batch))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            return capture(exc)

    async def call(
        self, method: str, payload: tuple[tuple[Any, ...], dict[str, Any]]
    ) -> Any:
        actor = self._actor_or_raise()
        args, kwargs = payload
        return await _maybe_await(getattr(actor, method)(*args, **kwargs))

    async def replay(  # type: ignore[override]
        self, method: str, payload: tuple[tuple[Any, ...], dict[str, Any]]
    ) -> None:
        if self._actor is None or self._replay_failure is not None:
            return
        args, kwargs = payload
        try:
            answer = await _maybe_await(getattr(self._actor, method)(*args, **kwargs))
            self._replay_answers[method] = answer
        except BaseException as exc:
            self._replay_failure = capture(exc)

    async def close(self) -> Failure | None:  # type: ignore[override]
        if self._actor is None:
            return None
        try:
            closing: Any = self._actor.close  # may be async def in the user's class
            await _maybe_await(closing())
        except BaseException as exc:
            return capture(exc)
        return None


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def is_async(actor_class: type[RayActor[Any, Any]]) -> bool:
    """Whether ``actor_class``'s ``process_batch`` is ``async def`` (it runs on Ray's event loop).

    >>> is_async(RayActor)
    False
    """
    return inspect.iscoroutinefunction(actor_class.process_batch)


def host_class(actor_class: type[RayActor[Any, Any]]) -> type[ActorHost]:
    """The host for ``actor_class``: async when its ``process_batch`` is ``async def``."""
    return AsyncActorHost if is_async(actor_class) else ActorHost
