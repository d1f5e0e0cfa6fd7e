"""The I/O a run's core asks for, performed by whoever drives it.

:class:`~raymanager.engine.run.RunCore` decides *that* input must be read
(:class:`~raymanager.engine.run.Read`) and *that* results must be journaled
(:class:`~raymanager.engine.run.Record`); the functions here do it: pull the
user's source (its generator runs, its rows are hashed for a journal),
read a resumed run's journal back, write results. They touch no core
state, so the Ray adapter calls them outside the pool's lock and reports the
outcome under it (:meth:`RunCore.taken`, :meth:`RunCore.recorded`); the
simulator calls them the same way.

    >>> from raymanager.batching import make_source
    >>> event = read_input(make_source([1, 2, 3], batch_size=2), 2, journal=None)
    >>> (event.group.count, event.total, event.replayed)
    (2, 2, None)
"""

from __future__ import annotations

from raymanager.batching import BatchSource
from raymanager.engine.run import Input, Journal, Read, Record

__all__ = ["read_input", "write_records"]


def read_input(source: BatchSource, count: int | Read, journal: Journal | None) -> Input:
    """Take up to ``count`` batches from ``source`` (and, while a journal is
    resuming, each one's recorded result) as an :class:`Input` event.

    Raises what the user's generator raises, and JournalError when a
    batch's input differs from the one recorded.
    """
    if isinstance(count, Read):
        count = count.count
    group = source.take(count)
    replayed = None
    if group is not None and journal is not None and journal.resuming:
        # A resumed run: batches in the journal are read back, not run again.
        replayed = [journal.replay(part.first) for part in group.split(source.batch_size)]
    return Input(group, source.num_batches, replayed)


def write_records(journal: Journal, record: Record) -> None:
    """Write ``record``'s results to ``journal`` (JournalError if one cannot be)."""
    for index, value in record.results:
        journal.write(index, value)
