"""Streams of results: what ``imap`` / ``imap_unordered`` set up and return.

:func:`open_stream` checks a run's input and reserves what it needs when
``imap`` is called (the data in the object store, the journal), and returns a
:class:`ResultStream`, which runs the batches as it is iterated
(:class:`~raymanager.pool.Run` does the work) and owns the run's journal:
it is the one that closes it, once the run is over, stopped or dropped.

Imports ray (object refs), ``batching``, ``config``, ``journal``, ``pool``
and ``progress``; used by the manager only.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

import numpy as np
import ray

from raymanager.batching import SHARE_MIN_BYTES, BatchSource, make_source
from raymanager.config import BatchConfig
from raymanager.journal import Journal, fingerprint, input_digest
from raymanager.pool import STARTED, TIMED_OUT, ActorPool, Run
from raymanager.progress import BatchProgress

__all__ = ["ResultStream", "open_stream"]

JournalPath = str | os.PathLike[str]


class ResultStream(Iterator[Any]):
    """The iterator ``imap`` / ``imap_unordered`` return.

    Owns its journal (if any) from its creation until the run is over, it is
    closed or dropped, also when it was never started: :meth:`_release` is
    the one place that closes it. With ``results_only`` it hands on the
    result of each ``(index, result)`` pair and keeps neither.
    """

    def __init__(
        self,
        generator: Generator[Any, float | None, None],
        *,
        journal: Journal | None,
        results_only: bool,
        check_usable: Callable[[], None],
    ) -> None:
        #: Yields STARTED first, then lists of (index, result) or TIMED_OUT;
        #: each resume sends the time the caller waits until (see Run.chunks).
        self._generator = generator
        self._journal = journal
        self._results_only = results_only
        self._check_usable = check_usable
        #: Results that arrived together and are not handed out yet: each
        #: leaves the buffer as it is handed out, so none is kept after.
        self._ready: collections.deque[tuple[int, Any]] = collections.deque()

    def __iter__(self) -> ResultStream:
        return self

    def __next__(self) -> Any:
        if self._ready:  # the fast path: no generator to resume
            self._check_usable()  # nothing is handed out after a shutdown
            return self._hand_out()
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        """The next result; ``TimeoutError`` if none came within ``timeout`` seconds.

        A timeout stops nothing: no actor is killed, the run stays where it
        was, and a later ``next()`` goes on (as Ray's ``ActorPool.get_next``).

        Example::

            >>> stream = manager.imap(pool, data)          # doctest: +SKIP
            >>> stream.next(timeout=5.0)
        """
        if not self._ready:
            chunk = self._resume(None if timeout is None else time.monotonic() + timeout)
            if chunk is TIMED_OUT:
                raise TimeoutError(f"no result within {timeout:g} s; the run goes on")
            self._ready.extend(chunk)
            del chunk
        else:
            self._check_usable()
        return self._hand_out()

    def _resume(self, wait_until: float | None) -> Any:
        """The run's next chunk, or TIMED_OUT once ``wait_until`` passed."""
        try:
            if inspect.getgeneratorstate(self._generator) == inspect.GEN_CREATED:
                started = next(self._generator)  # up to the run's start
                assert started is STARTED
            return self._generator.send(wait_until)
        except BaseException:  # StopIteration or the run's error: the run is over
            self._release()
            raise

    def _hand_out(self) -> Any:
        try:
            item = self._ready.popleft()
        except IndexError:  # close() from another thread emptied the buffer
            raise StopIteration from None
        return item[1] if self._results_only else item

    def _release(self) -> None:
        """Close the journal (commits the last results); once, whoever calls first."""
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    def close(self) -> None:
        """Stop the run: work in flight finishes or its actors are replaced."""
        self._ready.clear()
        try:
            self._generator.close()
        finally:
            self._release()

    def __enter__(self) -> ResultStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def open_stream(
    actor_pool: ActorPool,
    data: Any,
    config: BatchConfig,
    *,
    progress: bool,
    ordered: bool,
    results_only: bool,
    journal: JournalPath | None,
    store_bytes: int,
    after_run: Callable[[], None],
) -> ResultStream:
    """Check the input and reserve what the run needs now; the run starts when iterated.

    ``store_bytes`` is the object store's size (an array may take at most
    half of it), ``after_run`` is called when the run ends (its shared data
    released).
    """
    stored_ref, data = _stored_object(data)
    # An array may take at most half the object store: a bigger one goes
    # inline, a bounded window at a time, instead of spilling whole.
    source = make_source(data, config.batch_size,
                         share_min_bytes=0 if stored_ref is not None else SHARE_MIN_BYTES,
                         share_max_bytes=None if stored_ref is not None or not store_bytes
                         else store_bytes // 2)
    if stored_ref is not None and source.shared is None:
        raise TypeError("an ObjectRef passed as data must hold numpy arrays (not objects)")
    expected = None if journal is None else _fingerprint(data, source, config)
    actor_pool.check_usable()  # before anything is put in the store
    empty = source.is_empty()
    shared_ref = None if empty else _shared_ref(source, stored_ref)
    log = None
    if journal is not None and expected is not None:
        digest_of = source.pop_digest if expected["content"] is None else None
        log = Journal.open(journal, expected, digest_of=digest_of)
    generator = _results(actor_pool, source, config, shared_ref, progress, ordered,
                         empty=empty, journal=log, after_run=after_run)
    return ResultStream(generator, journal=log, results_only=results_only,
                        check_usable=actor_pool.check_usable)


def _stored_object(data: Any) -> tuple[Any, Any]:
    """``(ref, its value)`` for data already in the object store; ``(None, data)`` else.

    Put once, used for many runs: its shape is read here (zero-copy for
    arrays) and that very object is shared with the actors.
    """
    if not isinstance(data, ray.ObjectRef):
        return None, data
    value = ray.get(data)
    if not isinstance(value, (np.ndarray, Mapping)):
        raise TypeError(
            f"an ObjectRef passed as data must hold a numpy array or a mapping of "
            f"arrays, got {type(value).__name__}"
        )
    return data, value


def _fingerprint(data: Any, source: BatchSource, config: BatchConfig) -> dict[str, Any]:
    """The input's fingerprint for its journal. An input whose content it does not
    cover has each batch's rows hashed as they are taken (from now on)."""
    expected = fingerprint(data, config.batch_size, source.num_rows)
    if expected["content"] is None:
        source.keep_digests(input_digest)
    return expected


def _shared_ref(source: BatchSource, stored_ref: Any) -> Any:
    """What the actors read the data from: a mapped file, the user's object, or a put."""
    if source.mapped is not None:
        return source.mapped  # workers map the file by path: nothing is put
    if stored_ref is not None:
        return stored_ref  # the user's object: never put again
    if source.shared is not None:
        return ray.put(source.shared)
    return None


def _results(
    actor_pool: ActorPool,
    source: BatchSource,
    config: BatchConfig,
    shared_ref: Any,
    progress: bool,
    ordered: bool,
    *,
    empty: bool,
    journal: Journal | None,
    after_run: Callable[[], None],
) -> Generator[Any, float | None, None]:
    try:
        if empty:
            return
        reporter: contextlib.AbstractContextManager[Any] = contextlib.nullcontext(None)
        if progress:
            before = (actor_pool.restarts, actor_pool.retries)
            reporter = BatchProgress(
                source.num_batches, source.num_rows,
                health=lambda: (actor_pool.restarts - before[0],
                                actor_pool.retries - before[1]),
            )
        with reporter as on_progress:
            run = Run(actor_pool.adapter, source, config, shared_ref=shared_ref,
                      on_progress=on_progress, ordered=ordered, journal=journal)
            yield from run.chunks()
    finally:
        # Drop our reference so the object store can free the shared data.
        del shared_ref
        after_run()
