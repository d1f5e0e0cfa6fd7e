"""Pool counters in Ray's own metrics system (``ray.util.metrics``), from the driver.

What ``pool.stats()`` counts, exported where Ray's dashboards and Prometheus
already look, labelled by ``pool`` (its id) and ``actor_class``:

- ``ray_raymanager_pool_batches_done_total`` (counter): batches finished;
- ``ray_raymanager_pool_rows_done_total`` (counter): rows of the batches that runs
  finished (``process_in_parallel``, ``imap``; a ``submit`` has no rows);
- ``ray_raymanager_pool_batches_retried_total`` (counter): tries charged to batches;
- ``ray_raymanager_pool_actor_restarts_total`` (counter): actors replaced, by ``reason``;
- ``ray_raymanager_pool_calls_in_flight``, ``..._batches_queued``, ``..._actors_busy``,
  ``..._actors`` (gauges): calls not yet back, batches waiting for an actor, actors
  running a call, actors of the pool.

``reason`` is ``died``, ``out_of_memory``, ``timed_out``, ``stopped``,
``preempted`` or ``recycled``. Nothing is recorded per batch: a thread of the
driver reads the pool's existing counters under its lock at most every
:data:`PUBLISH_EVERY_S` and records the differences (and once more at
shutdown). ``RAYMANAGER_POOL_METRICS=0`` turns it off.

    >>> publisher = MetricsPublisher(pool)   # doctest: +SKIP
    >>> publisher.stop()                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from ray.util import metrics

from raymanager.engine.slots import Slot

__all__ = ["PUBLISH_EVERY_S", "REASONS", "MetricsPublisher", "metrics_enabled", "pool_counts"]

logger = logging.getLogger("raymanager")

#: Least seconds between two publications of a pool's counters.
PUBLISH_EVERY_S = 1.0
#: Why an actor was replaced: the engine's loss kinds, and recycling.
REASONS = ("died", "out_of_memory", "timed_out", "stopped", "preempted", "recycled")
_TAGS = ("pool", "actor_class")
_COUNTERS = {
    "batches_done": "Batches finished by the pool's actors",
    "rows_done": "Rows of the batches finished by runs on the pool",
    "batches_retried": "Tries charged to batches after an actor was lost",
}
_GAUGES = {
    "calls_in_flight": "Calls sent to the pool's actors and not yet back",
    "batches_queued": "Batches waiting for an actor, in all runs on the pool",
    "actors_busy": "Actors of the pool running a call",
    "actors": "Actors of the pool (starting, running or draining)",
}
PREFIX = "raymanager_pool_"


class Counted(Protocol):
    """What :func:`pool_counts` reads of a pool (lock held)."""

    @property
    def pool_id(self) -> str: ...

    @property
    def batches_done(self) -> int: ...

    @property
    def rows_finished(self) -> int: ...

    @property
    def retries(self) -> int: ...

    @property
    def recycled(self) -> int: ...

    @property
    def restarts_by_kind(self) -> Mapping[str, int]: ...


    @property
    def actor_name(self) -> str: ...

    @property
    def slots(self) -> list[Slot]: ...

    def runs(self) -> list[Any]: ...

    def queued_batches(self) -> int: ...

    def locked(self) -> threading.RLock: ...


def metrics_enabled() -> bool:
    """Whether pools publish metrics: yes unless ``RAYMANAGER_POOL_METRICS`` is 0/off/false."""
    return os.environ.get("RAYMANAGER_POOL_METRICS", "1").strip().lower() not in (
        "0", "off", "false", "no")


def pool_counts(pool: Counted) -> dict[str, float]:
    """The pool's counters and gauges now, by metric name (lock held).

    Rows: of finished runs (kept when a run ends) and of the runs going on.
    """
    counts: dict[str, float] = {
        "batches_done": pool.batches_done,
        "rows_done": pool.rows_finished + sum(run.core.rows_done for run in pool.runs()),
        "batches_retried": pool.retries,
        "calls_in_flight": sum(len(slot.calls) for slot in pool.slots),
        "batches_queued": pool.queued_batches(),
        "actors_busy": sum(1 for slot in pool.slots if slot.calls),
        "actors": len(pool.slots),
    }
    for kind, count in pool.restarts_by_kind.items():
        counts[f"restarts:{kind.replace(' ', '_')}"] = count
    counts["restarts:recycled"] = pool.recycled
    return counts


class MetricsPublisher:
    """Publishes one pool's counts every PUBLISH_EVERY_S from a daemon thread."""

    def __init__(self, pool: Counted, every_s: float = PUBLISH_EVERY_S) -> None:
        self.pool, self.every_s = pool, every_s
        self._tags = {"pool": pool.pool_id, "actor_class": pool.actor_name}
        self._counters = {name: metrics.Counter(PREFIX + name, description=text,
                                                tag_keys=_TAGS)
                          for name, text in _COUNTERS.items()}
        self._restarts = metrics.Counter(PREFIX + "actor_restarts",
                                         description="Actors replaced, by reason",
                                         tag_keys=(*_TAGS, "reason"))
        self._gauges = {name: metrics.Gauge(PREFIX + name, description=text, tag_keys=_TAGS)
                        for name, text in _GAUGES.items()}
        self._published: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="raymanager-metrics",
                                        daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.publish()

    def publish(self) -> None:
        """Record what changed since the last publication."""
        with self._lock:
            try:
                with self.pool.locked():
                    counts = pool_counts(self.pool)
                for name, value in counts.items():
                    if name in self._gauges:
                        self._gauges[name].set(value, self._tags)
                        continue
                    delta = value - self._published.get(name, 0)
                    if delta > 0:
                        if name.startswith("restarts:"):
                            self._restarts.inc(delta, {**self._tags,
                                                       "reason": name.split(":", 1)[1]})
                        else:
                            self._counters[name].inc(delta, self._tags)
                self._published = counts
            except Exception:  # Ray shut down under us: metrics are not worth a crash
                logger.debug("could not publish pool metrics", exc_info=True)

    def stop(self) -> None:
        """Publish once more (the pool's last counts), then stop the thread."""
        self._stop.set()
        self.publish()
