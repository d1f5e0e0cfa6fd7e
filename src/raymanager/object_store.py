"""Reporting Ray's object store: bytes used and total, and a warning when it fills.

:func:`object_store_stats` is what ``RayManager.object_store_stats()`` returns;
:class:`StoreWatch` keeps the store's size for the runs (an array may take at
most half of it) and warns, at most every :data:`STORE_CHECK_INTERVAL_S`,
when a run leaves it fuller than ``RayConfig.object_store_warn_fraction``.

Imports ray and :mod:`raymanager.ray_internals` (the store's use is read
through Ray's internal API); used by the manager only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import ray

from raymanager.ray_internals import object_store_bytes_used

__all__ = ["STORE_CHECK_INTERVAL_S", "ObjectStoreStats", "StoreWatch", "cluster_resources",
           "object_store_stats"]

logger = logging.getLogger("raymanager")

#: Seconds between two checks of object store use after a run.
STORE_CHECK_INTERVAL_S = 10.0


class ObjectStoreStats(dict[str, int]):
    """``{"used": bytes, "total": bytes}`` of the cluster's object store."""


def cluster_resources() -> dict[str, float]:
    """Resources of the whole cluster Ray sees, e.g. ``{"CPU": 2.0, ...}`` (no ``node:`` keys).

    >>> cluster_resources()   # doctest: +SKIP
    {'CPU': 2.0, 'memory': ..., 'object_store_memory': ...}
    """
    resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return {name: float(amount) for name, amount in resources.items()
            if not name.startswith("node:")}


def object_store_stats() -> ObjectStoreStats:
    """Bytes used and total in the object store, summed over the cluster's nodes.

    ``used`` is -1 when Ray cannot report it (its gRPC stats API is missing).

    >>> object_store_stats()   # doctest: +SKIP
    {'used': 1048576, 'total': 2147483648}
    """
    total = int(cluster_resources().get("object_store_memory", 0))
    try:
        used = object_store_bytes_used()
    except Exception:  # internal API moved or gRPC missing: say so, do not guess
        logger.debug("object store usage unavailable", exc_info=True)
        used = -1
    return ObjectStoreStats(used=used, total=total)


class StoreWatch:
    """The object store's size (read once) and a warning when a run leaves it full.

    ``stats`` reads the store's use (the manager's ``object_store_stats``),
    ``usable`` says whether Ray may still be asked (not after a shutdown).
    """

    def __init__(self, warn_fraction: float, *, stats: Callable[[], ObjectStoreStats],
                 usable: Callable[[], bool]) -> None:
        self.warn_fraction = warn_fraction
        self._stats = stats
        self._usable = usable
        self._total: int | None = None
        self._next_check = 0.0

    def total(self) -> int:
        """Bytes of the cluster's object store (0: Ray does not say)."""
        if self._total is None:
            self._total = int(cluster_resources().get("object_store_memory", 0))
        return self._total

    def warn_if_full(self) -> None:
        """Log a warning when the store is fuller than ``warn_fraction``.

        Asking the raylets costs tens of ms: at most once per interval.
        """
        now = time.monotonic()
        if not self._usable() or not ray.is_initialized() or now < self._next_check:
            return
        self._next_check = now + STORE_CHECK_INTERVAL_S
        try:
            stats = self._stats()
        except Exception:
            return
        used, total = stats["used"], stats["total"]
        if total and used > 0 and used / total > self.warn_fraction:
            logger.warning(
                "object store is %.0f%% full (%d of %d bytes); Ray will spill to disk",
                100 * used / total, used, total,
            )
