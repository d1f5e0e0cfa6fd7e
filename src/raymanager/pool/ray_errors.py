"""One mapping from Ray's exceptions to what the pool does about them.

Every exception a Ray call can raise lands in one of three kinds:

- **lost**: the actor's process, its node, or an object it made is gone
  (``RayActorError``, ``ObjectLostError`` and friends, OOM kills, node
  death). Not the batch's fault: the actor is replaced and its work re-run.
- **start failed**: the actor's constructor raised (reported by our host).
- **call failed**: the call itself failed in a way that repeats if the same
  batch runs again (its result does not pickle, or does not unpickle in the
  driver). The batch's own error, like an exception from ``process_batch``.

Nothing else of the pool inspects Ray's exception types.
"""

from __future__ import annotations

import enum
import re

from ray.exceptions import (
    ActorUnschedulableError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    RayActorError,
    RayTaskError,
    TaskUnschedulableError,
    WorkerCrashedError,
)

from raymanager.pool.host import HostStartError

__all__ = [
    "LOST",
    "FailureKind",
    "classify",
    "is_node_death",
    "is_out_of_memory",
    "is_preempted",
    "user_cause",
]

#: Ray errors that mean "the worker, its node or its output is gone".
LOST: tuple[type[BaseException], ...] = (
    RayActorError,
    OutOfMemoryError,
    ActorUnschedulableError,
    TaskUnschedulableError,
    NodeDiedError,
    WorkerCrashedError,
    ObjectLostError,
)

#: Phrases of Ray's errors for a worker that its memory monitor killed.
OOM_MARKERS = ("running low on memory", "killed due to memory", "OutOfMemoryError")


class FailureKind(enum.Enum):
    LOST = "lost"
    START_FAILED = "start failed"
    CALL_FAILED = "call failed"


def classify(exc: BaseException) -> FailureKind:
    """What a failed ``ray.get`` of one of our calls means for the pool.

    >>> classify(ValueError("result does not unpickle"))
    <FailureKind.CALL_FAILED: 'call failed'>
    """
    if isinstance(exc, LOST):
        return FailureKind.LOST
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, HostStartError):
        return FailureKind.START_FAILED
    return FailureKind.CALL_FAILED


def user_cause(exc: BaseException) -> BaseException:
    """The exception to show a user: a task error's own cause, else ``exc``."""
    if isinstance(exc, RayTaskError) and isinstance(exc.cause, BaseException):
        return exc.cause
    return exc


def is_out_of_memory(exc: BaseException) -> bool:
    # Ray's memory monitor says so in the error; a plain crash mentions the
    # kernel OOM killer only as one guess among several, which is not enough.
    return isinstance(exc, OutOfMemoryError) or any(m in str(exc) for m in OOM_MARKERS)


def is_preempted(exc: BaseException) -> bool:
    """True when Ray says the actor's node was drained for preemption."""
    return isinstance(exc, RayActorError) and bool(exc.preempted)


def is_node_death(exc: BaseException) -> bool:
    """True when Ray says the actor died with its node (node lost or drained)."""
    if isinstance(exc, NodeDiedError):
        return True
    if isinstance(exc, RayActorError) and exc.preempted:
        return True
    text = str(exc).lower()
    return "node" in text and ("died" in text or "dead" in text) and "worker" not in text


_EXIT = re.compile(r"Worker exit type: (\w+)(?: Worker exit detail: ([^.]*))?")
_EXIT_CODE = re.compile(r"exit code (-?\d+)|exit_code[=:] ?(-?\d+)")


def death_detail(exc: BaseException) -> str:
    """What Ray says of how a worker process ended, in one line.

    Ray reports an exit type and detail (and an exit code where it knows
    one); a process that ended with ``os._exit(n)`` or a signal reaches Ray
    only as a broken connection, so its code is not known to the driver.

    >>> death_detail(Exception("... Worker exit type: SYSTEM_ERROR Worker exit detail: "
    ...                        "Worker unexpectedly exits with a connection error code 2. End"))
    'SYSTEM_ERROR: Worker unexpectedly exits with a connection error code 2'
    """
    text = str(exc)
    found = _EXIT.search(text)
    if found is None:
        lines = text.strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    kind, detail = found.group(1), (found.group(2) or "").strip()
    code = _EXIT_CODE.search(text)
    if code is not None and "exit code" not in detail:
        detail = f"{detail}, exit code {code.group(1) or code.group(2)}".lstrip(", ")
    return f"{kind}: {detail}" if detail else kind
