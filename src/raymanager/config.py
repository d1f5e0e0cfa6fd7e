"""Configuration dataclasses: how to start Ray and how to cut and run the data.

Both classes validate on construction, so a wrong value fails where it was
written, with the field and the value in the message, and not later inside a
Ray worker::

    >>> BatchConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: BatchConfig.batch_size must be >= 1, got 0

This module imports nothing of ours (see docs/development.md, "Layers").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

__all__ = [
    "BatchConfig",
    "OnError",
    "RayConfig",
    "check_int",
    "check_number",
    "check_optional_int",
    "check_pool_size",
    "is_int",
    "is_number",
]

#: "raise", "continue", or a callable that gets each failed batch's BatchError
#: and returns "raise", "continue" or "retry" (while the batch has tries left).
OnError = Literal["raise", "continue"] | Callable[[Any], str]


#: Upper bound of the CPU / GPU counts of a local Ray. Ray accepts more CPUs
#: than the machine has (it only schedules by them), so os.cpu_count() is no
#: bound; but a count no machine or cluster has (2**20 is 16x the largest
#: supercomputer node count times cores per node we know of) is a typo, and
#: Ray would only fail much later, at start-up, with "node timed out during startup".
MAX_DEVICES = 2**20
#: The niceness of a private local Ray's worker processes unless
#: ``RayConfig.worker_niceness`` says otherwise (chosen with
#: ``benchmarks/actor_gap.py``; its figures are on the docs' results page).
DEFAULT_WORKER_NICENESS = 15
#: Upper bound of a byte count: 2**60 bytes (an exbibyte). Larger is a typo.
MAX_BYTES = 2**60


def is_int(value: object) -> TypeGuard[numbers.Integral]:
    """Whether ``value`` is an integral number: ``numpy.int64(2)`` is, ``True`` is not.

    >>> is_int(2), is_int(True), is_int(2.0)
    (True, False, False)
    """
    return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def is_number(value: object) -> TypeGuard[numbers.Real]:
    """Whether ``value`` is a real number (ints and floats of any kind), not a bool.

    >>> is_number(0.5), is_number(3), is_number(False), is_number("1")
    (True, True, False, False)
    """
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def check_int(name: str, value: object, *, minimum: int) -> int:
    """``value`` as a plain int; ValueError naming ``name`` unless an int >= ``minimum``.

    For the arguments of a function (a field of a config class says
    ``Owner.field`` and tells a TypeError from a ValueError instead).

    >>> check_int("spare_actors", -1, minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: spare_actors must be an int >= 0, got -1
    """
    if not is_int(value) or int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_optional_int(name: str, value: object, *, minimum: int) -> int | None:
    """Like :func:`check_int`, and None stays None.

    >>> check_optional_int("max_batches_per_actor", None, minimum=1) is None
    True
    """
    if value is None:
        return None
    if not is_int(value) or int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or None, got {value!r}")
    return int(value)


def check_number(name: str, value: object, *, minimum: float, strict: bool = False) -> float:
    """``value`` as a float; ValueError naming ``name`` unless a number >= (or >) ``minimum``.

    NaN is refused; infinity passes where it is above ``minimum``.

    >>> check_number("idle_timeout_s", 0, minimum=0, strict=True)
    Traceback (most recent call last):
    ...
    ValueError: idle_timeout_s must be a number > 0, got 0
    """
    number = float(value) if is_number(value) else math.nan
    if not (number > minimum if strict else number >= minimum):
        raise ValueError(f"{name} must be a number {'>' if strict else '>='} {minimum:g}, "
                         f"got {value!r}")
    return number


def check_pool_size(low: object, high: object) -> tuple[int, int]:
    """A pool's size range as ints: ``0 <= min <= max``, ``max >= 1``; else ValueError.

    >>> check_pool_size(0, 4)
    (0, 4)
    >>> check_pool_size(3, 2)
    Traceback (most recent call last):
    ...
    ValueError: num_actors must be an int >= 1 or a (min, max) pair ... got (3, 2)
    """
    smallest = check_int("num_actors min", low, minimum=0)
    largest = check_int("num_actors max", high, minimum=0)
    if largest < 1 or smallest > largest:
        got = repr(low) if low == high else f"({low!r}, {high!r})"
        raise ValueError(
            f"num_actors must be an int >= 1 or a (min, max) pair with 0 <= min <= max "
            f"and max >= 1, got {got}"
        )
    return smallest, largest


def _as_int(owner: str, name: str, value: object, *, minimum: int, optional: bool,
            maximum: int | None = None) -> int | None:
    """``value`` as a plain int, or a TypeError / ValueError naming the field.

    Any integral number is accepted (``numpy.int64(2)`` as well as ``2``);
    bool is refused: ``num_cpus=True`` is a bug, not a 1.
    """
    if value is None and optional:
        return None
    if not is_int(value):
        kind = "an int or None" if optional else "an int"
        raise TypeError(f"{owner}.{name} must be {kind}, got {value!r}")
    number = int(value)
    if number < minimum:
        raise ValueError(f"{owner}.{name} must be >= {minimum}, got {value!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{owner}.{name} must be <= {maximum}, got {value!r}")
    return number


def _as_number(
    owner: str, name: str, value: object, *, minimum: float, optional: bool, strict: bool = False,
    maximum: float | None = None,
) -> float | None:
    """``value`` as a plain float (any real number but bool), finite and in range."""
    if value is None and optional:
        return None
    if not is_number(value):
        kind = "a number or None" if optional else "a number"
        raise TypeError(f"{owner}.{name} must be {kind}, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{owner}.{name} must be finite, got {value!r}")
    if number < minimum or (strict and number == minimum):
        op = ">" if strict else ">="
        raise ValueError(f"{owner}.{name} must be {op} {minimum}, got {value!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{owner}.{name} must be <= {maximum}, got {value!r}")
    return number


def _set(config: object, name: str, value: object) -> None:
    # The dataclasses are frozen: store the normalised value (a plain int for
    # numpy.int64(2)) the way dataclasses' own __init__ does.
    if getattr(config, name) is not value:
        object.__setattr__(config, name, value)


def _check_optional_str(owner: str, name: str, value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"{owner}.{name} must be a non-empty string or None, got {value!r}")


@dataclass(frozen=True)
class RayConfig:
    """How :class:`~raymanager.RayManager` starts or joins Ray.

    The first four fields are the seed's; ``None`` means "let Ray decide"
    (all CPUs / GPUs of the machine, Ray's default memory split).

    Example::

        >>> RayConfig(num_cpus=4).num_cpus
        4
        >>> RayConfig(address="auto").address   # join a running cluster
        'auto'
    """

    #: CPUs for a local Ray (None = all available). Ignored when joining a cluster.
    num_cpus: int | None = None
    #: GPUs for a local Ray (None = all available). Ignored when joining a cluster.
    num_gpus: int | None = None
    #: Heap memory for Ray's scheduler, in bytes (None = Ray's default).
    memory: int | None = None
    #: Shared-memory object store size, in bytes (None = Ray's default).
    object_store_memory: int | None = None
    #: An existing cluster to join: "auto", "host:port" or "ray://host:port".
    #: None starts a private local Ray that :meth:`RayManager.shutdown` stops.
    address: str | None = None
    #: Ray namespace for the actors we create (None = an anonymous one).
    namespace: str | None = None
    #: Ray's web dashboard (on 127.0.0.1:8265). Off by default; needs the
    #: ``dashboard`` extra (``pip install 'raymanager[dashboard]'``, Ray's own
    #: ``ray[default]`` packages).
    include_dashboard: bool = False
    #: Forward actor stdout/stderr (and Ray's worker notices) to the driver's
    #: terminal. Off by default: raymanager logs what went wrong itself, and
    #: Ray's notices are noise there; they stay in Ray's session log files.
    log_to_driver: bool = False
    #: Seconds to wait for a pool's actors to start before giving up.
    actor_start_timeout_s: float = 120.0
    #: Seconds to wait for the cluster at ``address`` to answer before
    #: :class:`~raymanager.RayStartError` says there is none (Ray itself would
    #: retry for about ten minutes).
    connect_timeout_s: float = 30.0
    #: Log a warning when the object store is fuller than this fraction.
    object_store_warn_fraction: float = 0.8
    #: Niceness (0-19) of the worker processes of a private local Ray: the
    #: higher, the sooner they give way to the driver and Ray's own processes.
    #: Ignored when joining a cluster, whose owner set it.
    worker_niceness: int = DEFAULT_WORKER_NICENESS
    #: Extra keyword arguments for ``ray.init`` (e.g. ``runtime_env``), for what
    #: the fields above do not cover.
    init_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        owner = "RayConfig"
        for name, minimum, maximum in (
            ("num_cpus", 1, MAX_DEVICES),
            ("num_gpus", 0, MAX_DEVICES),
            ("memory", 1, MAX_BYTES),
            # Ray refuses an object store under 75 MiB; say so here, not in a Ray traceback.
            ("object_store_memory", 75 * 1024 * 1024, MAX_BYTES),
        ):
            _set(self, name, _as_int(owner, name, getattr(self, name), minimum=minimum,
                                     maximum=maximum, optional=True))
        _set(self, "worker_niceness", _as_int(owner, "worker_niceness", self.worker_niceness,
                                              minimum=0, maximum=19, optional=False))
        _check_optional_str(owner, "address", self.address)
        _check_optional_str(owner, "namespace", self.namespace)
        for name in ("include_dashboard", "log_to_driver"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{owner}.{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("actor_start_timeout_s", "connect_timeout_s"):
            _set(self, name, _as_number(owner, name, getattr(self, name), minimum=0,
                                        optional=False, strict=True))
        _set(self, "object_store_warn_fraction", _as_number(
            owner, "object_store_warn_fraction", self.object_store_warn_fraction,
            minimum=0, maximum=1, optional=False, strict=True,
        ))
        if not isinstance(self.init_kwargs, dict):
            raise TypeError(f"{owner}.init_kwargs must be a dict, got {self.init_kwargs!r}")


@dataclass(frozen=True)
class BatchConfig:
    """How :meth:`~raymanager.RayManager.process_in_parallel` cuts and runs data.

    - ``batch_size``: rows per batch, cut along the first axis; the last batch
      may be smaller. One ``process_batch`` call and one result per batch.
    - ``num_parallel``: at most this many actors of the pool work at once.
    - ``chunk_size``: rows per chunk inside a batch, for actors that bound
      their memory by working piece by piece (``RayActor.iter_chunks``).
    - ``max_retries``: times a batch is re-run after its worker died or timed out.
    - ``timeout_s``: seconds one batch may run before its worker counts as
      stuck, is killed and replaced, and the batch retried (None = no limit).
    - ``on_error``: ``"raise"`` stops at the first exception from
      ``process_batch`` and raises :class:`~raymanager.BatchError`;
      ``"continue"`` keeps going and puts the ``BatchError`` in that batch's
      place in the results; a callable gets each ``BatchError`` and returns
      one of those or ``"retry"`` (re-run while ``max_retries`` allows).
    - ``max_inflight_bytes``: bound on input bytes sent but not yet finished,
      so a large or endless input never piles up in memory.

    Example::

        >>> BatchConfig(batch_size=64, timeout_s=30).num_parallel
        4
    """

    batch_size: int = 128
    num_parallel: int = 4
    chunk_size: int = 32
    max_retries: int = 3
    timeout_s: float | None = None
    on_error: OnError = "raise"
    max_inflight_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        owner = "BatchConfig"
        for name, minimum in (("batch_size", 1), ("num_parallel", 1), ("chunk_size", 1),
                              ("max_retries", 0), ("max_inflight_bytes", 1)):
            _set(self, name, _as_int(owner, name, getattr(self, name), minimum=minimum,
                                     optional=False))
        _set(self, "timeout_s", _as_number(owner, "timeout_s", self.timeout_s, minimum=0,
                                           optional=True, strict=True))
        if not callable(self.on_error) and (
            not isinstance(self.on_error, str) or self.on_error not in ("raise", "continue")
        ):
            raise ValueError(
                f"{owner}.on_error must be 'raise', 'continue' or a callable, "
                f"got {self.on_error!r}"
            )
