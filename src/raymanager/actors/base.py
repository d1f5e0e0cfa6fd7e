"""RayActor: the plain-Python base class of every actor a pool runs.

A RayActor knows nothing of Ray or pools: the pool hosts one instance inside
each Ray worker process and calls :meth:`RayActor.process_batch` on it. So a
subclass can be unit-tested by constructing it and calling it directly::

    >>> class Doubler(RayActor[list[int], list[int]]):
    ...     def process_batch(self, batch):
    ...         return [2 * x for x in batch]
    >>> Doubler({}).process_batch([1, 2, 3])
    [2, 4, 6]
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["BatchT", "RayActor", "ResultT", "chunk_rows", "num_rows"]

BatchT = TypeVar("BatchT")
ResultT = TypeVar("ResultT")

#: chunk_size used when an actor is called outside process_in_parallel.
DEFAULT_CHUNK_SIZE = 32


def num_rows(batch: Any) -> int:
    """Rows in a batch: its length, or the common length of a columnar mapping.

    >>> num_rows({"x": [1, 2, 3], "y": [4, 5, 6]})
    3
    """
    if isinstance(batch, Mapping):
        lengths = {len(column) for column in batch.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of a batch differ in length: {sorted(lengths)}")
        return lengths.pop() if lengths else 0
    return len(batch)


def chunk_rows(batch: Any, chunk_size: int) -> Iterator[Any]:
    """Yield consecutive pieces of ``batch`` of at most ``chunk_size`` rows.

    Works on anything sliceable along its first axis (numpy arrays, lists,
    tuples) and on mappings of such columns; numpy slices are views, not copies.

    >>> [list(c) for c in chunk_rows([1, 2, 3, 4, 5], 2)]
    [[1, 2], [3, 4], [5]]
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    total = num_rows(batch)
    for start in range(0, total, chunk_size):
        stop = min(start + chunk_size, total)
        if isinstance(batch, Mapping):
            yield {key: column[start:stop] for key, column in batch.items()}
        else:
            yield batch[start:stop]


class RayActor(abc.ABC, Generic[BatchT, ResultT]):
    """Abstract base for the actors of a pool.

    Subclasses implement :meth:`process_batch`. They are constructed with one
    config mapping (the ``actor_config`` of ``create_actor_pool``), which is
    kept as ``self.config``.

    ``chunk_size`` is set by the pool before each call of ``process_in_parallel``
    from ``BatchConfig.chunk_size``; :meth:`iter_chunks` uses it.

    Example::

        >>> class RowSum(RayActor[list[int], int]):
        ...     def process_batch(self, batch):
        ...         return sum(sum(chunk) for chunk in self.iter_chunks(batch))
        >>> actor = RowSum({})
        >>> actor.chunk_size = 2
        >>> actor.process_batch([1, 2, 3, 4, 5])
        15
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(
                f"{type(self).__name__} takes one config mapping, got {type(config).__name__}"
            )
        self.config: dict[str, Any] = dict(config or {})
        self.chunk_size: int = DEFAULT_CHUNK_SIZE

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        """Check ``config`` in the driver before any actor starts.

        Called by ``create_actor_pool`` so that a bad config is a clear
        ``ValueError`` / ``TypeError`` at pool creation, not a traceback from a
        worker. The default accepts everything; override to check keys.
        """

    @abc.abstractmethod
    def process_batch(self, batch: BatchT) -> ResultT:
        """Process one batch and return its result (one result per batch)."""

    def close(self) -> None:
        """Release what the actor holds (files, connections, devices) before it goes.

        The pool calls it, with a time limit (``close_timeout_s`` of
        ``create_actor_pool``), when it retires a live actor: at ``shutdown()``
        and when recycling it (``max_batches_per_actor``). Not called when the
        process died. The default does nothing.
        """

    def iter_chunks(self, batch: BatchT) -> Iterator[BatchT]:
        """Yield ``batch`` in pieces of ``self.chunk_size`` rows, to bound memory.

        >>> class Echo(RayActor[list[int], list[list[int]]]):
        ...     def process_batch(self, batch):
        ...         return list(self.iter_chunks(batch))
        >>> Echo({}).process_batch(list(range(40)))[1][:3]
        [32, 33, 34]
        """
        yield from chunk_rows(batch, self.chunk_size)
