"""What travels between the driver and an actor's host for one call.

Plain dataclasses, no Ray: the engine reads a :class:`Report` as a call's
per-batch outcomes, and the simulator makes them without any actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raymanager.errors import BatchError, RemoteTraceback

__all__ = ["CallSpec", "Failure", "Report", "raised_error"]


@dataclass(frozen=True)
class CallSpec:
    """What one remote ``run`` call works on: ``count`` consecutive batches.

    ``row_start:row_stop`` are rows of the shared array when ``shared``, else
    the call's inline rows start at 0. ``stop_on_error`` ends the call at the
    first failing batch (the run is going to stop there anyway).
    """

    first: int
    count: int
    row_start: int
    row_stop: int
    shared: bool
    batch_size: int
    chunk_size: int
    stop_on_error: bool


@dataclass
class Failure:
    """An exception from the user's code, carried back in place of a result.

    ``exception`` is None when the exception itself cannot travel (it does not
    pickle); ``traceback`` always can.
    """

    exception: BaseException | None
    traceback: str
    type_name: str


@dataclass
class Report:
    """What one ``run`` call returns: one result or Failure per batch, in order."""

    results: list[Any]
    seconds: float


def raised_error(failure: Failure, message: str, *, index: int, actor: str,
                 attempts: int) -> BatchError:
    """The :class:`BatchError` for user code that raised ``failure`` in ``actor``.

    Its ``__cause__`` is the user's exception (whose own ``__cause__`` is the
    remote traceback), or the remote traceback alone when the exception
    could not travel.

    >>> error = raised_error(Failure(ValueError("bad"), "Traceback ...", "ValueError"),
    ...                      "batch 3 raised ValueError", index=3, actor="A#0", attempts=1)
    >>> type(error.__cause__).__name__, type(error.__cause__.__cause__).__name__
    ('ValueError', 'RemoteTraceback')
    """
    error = BatchError(message, index=index, actor=actor, attempts=attempts)
    cause = failure.exception if failure.exception is not None else RemoteTraceback(
        failure.traceback)
    if failure.exception is not None:
        cause.__cause__ = RemoteTraceback(failure.traceback)
    error.__cause__ = cause
    return error
