"""The exceptions raymanager raises.

Every error of ours derives from :class:`RayManagerError`, so one ``except``
catches them all; the subclasses carry the data a caller needs to act::

    RayManagerError
    ├── RayStartError             Ray did not start, or no cluster at the address
    ├── ManagerShutdownError      a call on a manager or pool after shutdown()
    ├── PoolBrokenError           no actor of the pool can be kept alive
    │   ├── ActorStartError       an actor constructor raised
    │   └── ResourceUnavailableError  asked-for resources do not exist / never came
    ├── PoolBusyError             (never raised now: runs share a pool; kept for old code)
    ├── BroadcastError            a broadcast method raised in an actor (cause = its error)
    ├── BatchError                one batch failed (index, actor; cause = remote error)
    │   ├── BatchTimeoutError     it ran past timeout_s on every try (also a TimeoutError)
    │   └── WorkerDiedError       its worker process died on every try
    ├── JournalError              a journal= file cannot be used: made for other input, a
    │                             batch whose input changed, unreadable or unwritable (its
    │                             path), or a result it cannot store
    ├── CheckpointError           a checkpoint cannot be read: corrupt (also a ValueError)
    ├── RunFileError              a file of a run cannot be written: full disk, no permission
    │                             (also an OSError: errno, filename)
    └── RunLockedError            a run or sweep directory is in use by another process
                                  (its path; pid, host, command of the holder)

Configuration mistakes are plain ``ValueError`` / ``TypeError`` (see config.py).

Remote tracebacks follow ``concurrent.futures``: the exception raised inside the
actor becomes ``BatchError.__cause__``, and its own ``__cause__`` is a
:class:`RemoteTraceback` holding the text of the traceback in the worker.

This module imports nothing of ours.
"""

from __future__ import annotations

__all__ = [
    "ActorStartError",
    "BatchError",
    "BatchTimeoutError",
    "BroadcastError",
    "CheckpointError",
    "JournalError",
    "ManagerShutdownError",
    "PoolBrokenError",
    "PoolBusyError",
    "RayManagerError",
    "RayStartError",
    "RemoteTraceback",
    "ResourceUnavailableError",
    "RunFileError",
    "RunLockedError",
    "WorkerDiedError",
]


class RayManagerError(Exception):
    """Base class of every raymanager error."""


class ManagerShutdownError(RayManagerError):
    """A manager or pool was used after :meth:`RayManager.shutdown`."""


class PoolBrokenError(RayManagerError):
    """The pool cannot keep any actor alive; it accepts no more work."""


class ActorStartError(PoolBrokenError):
    """An actor's constructor raised; the constructor's exception is ``__cause__``.

    Attributes:
        actor_class: name of the actor class that failed to start.
    """

    def __init__(self, message: str, *, actor_class: str) -> None:
        super().__init__(message)
        self.actor_class = actor_class


class ResourceUnavailableError(PoolBrokenError):
    """The resources asked for an actor do not exist in the cluster, or never came,
    or a pool's actors together ask for more than the cluster has.

    Attributes:
        requested: resources asked for one actor, e.g. ``{"CPU": 4.0}``.
        available: the largest amount of each resource on any one node; for
            a pool whose actors together ask for more than the cluster has
            (and no autoscaler could add it), the cluster's total.
    """

    def __init__(
        self, message: str, *, requested: dict[str, float], available: dict[str, float]
    ) -> None:
        super().__init__(message)
        self.requested = requested
        self.available = available


class PoolBusyError(RayManagerError):
    """Deprecated, never raised: several runs now share one pool's actors.

    Up to 0.1 a pool ran one ``imap`` / ``process_in_parallel`` at a time and
    raised this for a second one. It stays importable so that code which
    catches it keeps working.
    """


class BroadcastError(RayManagerError):
    """A method called on every actor by ``broadcast`` raised in one of them.

    The actor's exception is ``__cause__``.

    Attributes:
        method: the broadcast method's name.
        actor: the actor it raised in, e.g. ``"TrainingActor#1 (pid 4242)"``.
    """

    def __init__(self, message: str, *, method: str, actor: str) -> None:
        super().__init__(message)
        self.method = method
        self.actor = actor


class BatchError(RayManagerError):
    """A batch failed.

    Attributes:
        index: position of the batch in the input (0-based).
        actor: the actor that ran it last, e.g. ``"TrainingActor#1 (pid 4242)"``.
        attempts: how many times the batch was tried.
    """

    def __init__(self, message: str, *, index: int, actor: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.index = index
        self.actor = actor
        self.attempts = attempts

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the keyword-only data when an error crosses a process boundary.
        return (_rebuild_batch_error, (type(self), str(self), self.index, self.actor,
                                       self.attempts))


def _rebuild_batch_error(
    cls: type[BatchError], message: str, index: int, actor: str, attempts: int
) -> BatchError:
    return cls(message, index=index, actor=actor, attempts=attempts)


class BatchTimeoutError(BatchError, TimeoutError):
    """A batch ran past ``BatchConfig.timeout_s`` on its first try and every retry.

    Also a :class:`TimeoutError`, so ``except TimeoutError`` catches it as it
    does for ``concurrent.futures``.
    """


class WorkerDiedError(BatchError):
    """The worker process running a batch died on its first try and every retry.

    ``out_of_memory`` is True when Ray's memory monitor killed the worker: the
    batch itself most likely needs more memory than a worker may have.
    """

    def __init__(
        self, message: str, *, index: int, actor: str, attempts: int = 1,
        out_of_memory: bool = False,
    ) -> None:
        super().__init__(message, index=index, actor=actor, attempts=attempts)
        self.out_of_memory = out_of_memory


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker process."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class RayStartError(RayManagerError):
    """Ray could not be started, or no cluster answers at ``RayConfig.address``.

    The message says what to check; Ray's own exception, if any, is ``__cause__``.
    """


class JournalError(RayManagerError):
    """A journal (``journal=PATH``) cannot be used; the message names its path and says why.

    It was made for other input or another batch config, a recorded batch's
    input rows differ from the ones given now (its result would be stale),
    it is in an older format, in use by another run, unreadable, or cannot
    be written (a full disk); or a result cannot be stored without pickle.
    """


class CheckpointError(RayManagerError, ValueError):
    """A checkpoint that cannot be read: truncated, garbage, or not raymanager's.

    Also a :class:`ValueError`, as it was before it joined this tree.
    """


class RunFileError(RayManagerError, OSError):
    """A file of a training run (checkpoint, ``config.yaml``, ``metrics.csv``, learning
    curve) could not be written: a full disk, no permission, a read-only file system.

    Also an :class:`OSError` with the ``errno`` of the failure and ``filename``
    the file that could not be written, e.g.
    ``[Errno 28] No space left on device: 'runs/x/metrics.csv'``.
    """


class RunLockedError(RayManagerError):
    """A run or sweep directory is being written by another process (one writer at a time).

    Attributes:
        path: the directory.
        pid, host, command: the process that holds it, as it recorded itself
            (``None`` where it left no record).

    The lock dies with its holder, even one killed with SIGKILL: once that
    process is gone, the directory can be opened again.
    """

    def __init__(self, message: str, *, path: str, pid: int | None = None,
                 host: str | None = None, command: str | None = None) -> None:
        super().__init__(message)
        self.path, self.pid, self.host, self.command = path, pid, host, command


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none.

    A helper for messages that quote another error (not in ``__all__``).

    >>> first_line(ValueError("bad\\nmore")), first_line(KeyError())
    ('bad', 'KeyError')
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
