"""Checking ``create_actor_pool``'s arguments before anything starts.

:func:`check_pool_arguments` refuses a wrong argument with a message naming
it (the class is not a RayActor, a count is not an int, a timeout not a
number, ...), lets the actor class check its config in the driver, and
returns the arguments :class:`~raymanager.pool.ActorPool` takes, normalised
(plain ints and floats, Ray's actor options).

Imports ``actors`` (RayActor) and ``config`` (its checks); no ray.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from raymanager.actors.base import RayActor
from raymanager.config import (
    check_int,
    check_number,
    check_optional_int,
    check_pool_size,
)

__all__ = ["Placement", "PoolArguments", "check_actor_class", "check_pool_arguments"]

Placement = Literal["spread", "pack"]


@dataclass(frozen=True)
class PoolArguments:
    """What :class:`~raymanager.pool.ActorPool` is built from, checked (but its class)."""

    actor_config: Mapping[str, Any]
    num_actors: int | tuple[int, int]
    #: Ray's options of each actor: resources, and no restarts by Ray.
    actor_options: dict[str, Any]
    placement: str
    max_batches_per_actor: int | None
    close_timeout_s: float
    idle_timeout_s: float
    max_concurrency: int
    spare_actors: int

    def as_kwargs(self) -> dict[str, Any]:
        """The fields as ``ActorPool``'s keyword arguments (not copied)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


def check_actor_class(actor_class: object) -> None:
    """TypeError unless ``actor_class`` is a concrete subclass of RayActor.

    >>> check_actor_class(int)
    Traceback (most recent call last):
    ...
    TypeError: actor_class must be a subclass of RayActor, got <class 'int'>
    """
    if not (isinstance(actor_class, type) and issubclass(actor_class, RayActor)):
        hint = ""
        if hasattr(actor_class, "remote"):
            hint = " (pass the plain class, not one decorated with @ray.remote)"
        raise TypeError(f"actor_class must be a subclass of RayActor, got {actor_class!r}{hint}")
    missing = sorted(getattr(actor_class, "__abstractmethods__", ()))
    if missing:  # found here, not after a round trip as "raised in its constructor"
        raise TypeError(f"{actor_class.__name__} does not implement "
                        f"{', '.join(missing)}: a RayActor subclass must define "
                        f"{' and '.join(f'{name}(...)' for name in missing)}")


def _num_actors(num_actors: object) -> int | tuple[int, int]:
    if isinstance(num_actors, tuple):
        if len(num_actors) != 2:
            raise ValueError(f"num_actors must be an int or a (min, max) pair, got {num_actors!r}")
        return check_pool_size(*num_actors)
    return check_int("num_actors", num_actors, minimum=1)


def _actor_options(num_cpus: object, num_gpus: object, memory: int | None,
                   resources: Mapping[str, float] | None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        # We replace dead actors ourselves (with their work): Ray must not.
        "max_restarts": 0,
        "max_task_retries": 0,
    }
    if memory is not None:
        options["memory"] = memory
    if resources:
        options["resources"] = dict(resources)
    return options


def check_pool_arguments(
    actor_class: type[RayActor[Any, Any]],
    actor_config: Mapping[str, Any] | None,
    num_actors: int | tuple[int, int],
    *,
    num_cpus: float,
    num_gpus: float,
    memory: int | None,
    resources: Mapping[str, float] | None,
    placement: Placement,
    max_batches_per_actor: int | None,
    close_timeout_s: float,
    idle_timeout_s: float,
    max_concurrency: int,
    spare_actors: int,
) -> PoolArguments:
    """``create_actor_pool``'s arguments checked, in the order it lists them.

    TypeError or ValueError naming the first wrong one; the actor class's
    ``validate_config`` runs last, on the config.
    """
    check_actor_class(actor_class)
    if actor_config is None:
        actor_config = {}
    if not isinstance(actor_config, Mapping):
        raise TypeError(f"actor_config must be a mapping, got {type(actor_config).__name__}")
    checked_num_actors = _num_actors(num_actors)
    checked_idle_timeout_s = check_number("idle_timeout_s", idle_timeout_s, minimum=0, strict=True)
    check_number("num_cpus", num_cpus, minimum=0)
    check_number("num_gpus", num_gpus, minimum=0)
    arguments = PoolArguments(
        actor_config=actor_config,
        num_actors=checked_num_actors,
        max_batches_per_actor=check_optional_int(
            "max_batches_per_actor", max_batches_per_actor, minimum=1),
        close_timeout_s=check_number("close_timeout_s", close_timeout_s, minimum=0),
        idle_timeout_s=checked_idle_timeout_s,
        max_concurrency=check_int("max_concurrency", max_concurrency, minimum=1),
        spare_actors=check_int("spare_actors", spare_actors, minimum=0),
        placement=placement,
        actor_options=_actor_options(num_cpus, num_gpus, memory, resources),
    )
    if placement not in ("spread", "pack"):
        raise ValueError(f"placement must be 'spread' or 'pack', got {placement!r}")
    actor_class.validate_config(actor_config)
    return arguments
