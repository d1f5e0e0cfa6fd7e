"""RayManager: starts or joins Ray, makes actor pools, runs data through them.

The seed's usage, unchanged::

    manager = RayManager(RayConfig(num_cpus=4))
    pool = manager.create_actor_pool(TrainingActor, {"learning_rate": 0.001}, num_actors=4)
    results = manager.process_in_parallel(pool, data, BatchConfig(batch_size=128))
    manager.shutdown()

Or as a context manager, which shuts down also when the body raises::

    with RayManager() as manager:
        ...

Ownership: a manager that started Ray stops it in :meth:`shutdown`. A manager
that joined a cluster (``RayConfig.address``) or a Ray already running in this
process only kills the actors and frees the objects it made.

This module is the public facade; each job is a module of its own, which its
methods call: ``startup`` (start or join Ray), ``pool_arguments`` (check
``create_actor_pool``'s arguments), ``streams`` (set up a run and its
:class:`ResultStream`), ``object_store`` (report the object store). It
imports those, ``pool`` and ``config``, and ray (to stop the Ray it started).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import ray

from raymanager.actors.base import RayActor
from raymanager.config import BatchConfig, RayConfig
from raymanager.errors import ManagerShutdownError
from raymanager.object_store import (
    ObjectStoreStats,
    StoreWatch,
    cluster_resources,
    object_store_stats,
)
from raymanager.pool import ActorPool, check_capacity, check_feasible
from raymanager.pool_arguments import Placement, check_pool_arguments
from raymanager.ray_internals import alive_nodes
from raymanager.startup import start_ray
from raymanager.streams import JournalPath, ResultStream, open_stream

__all__ = ["ObjectStoreStats", "RayManager", "ResultStream"]

logger = logging.getLogger("raymanager")

#: Seconds shutdown() waits for other threads to leave their Ray calls.
SHUTDOWN_WAIT_S = 5.0


class RayManager:
    """Ray lifecycle, actor pools and parallel processing, in one object.

    Example::

        >>> with RayManager(RayConfig(num_cpus=2)) as manager:          # doctest: +SKIP
        ...     pool = manager.create_actor_pool(MyActor, {}, num_actors=2)
        ...     manager.process_in_parallel(pool, np.arange(1000), BatchConfig())
    """

    def __init__(self, ray_config: RayConfig | None = None) -> None:
        if ray_config is None:
            ray_config = RayConfig()
        if not isinstance(ray_config, RayConfig):
            raise TypeError(
                f"RayManager takes a RayConfig, got {type(ray_config).__name__}"
            )
        self.ray_config = ray_config
        self._pools: list[ActorPool] = []
        self._warned_idle: weakref.WeakSet[ActorPool] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._shut_down = False
        self.owns_ray = False
        self._store = StoreWatch(ray_config.object_store_warn_fraction,
                                 stats=self.object_store_stats,
                                 usable=lambda: not self._shut_down)
        self.owns_ray = start_ray(ray_config)

    # ----------------------------------------------------------------- Ray lifecycle

    def _check_open(self) -> None:
        if self._shut_down:
            raise ManagerShutdownError(
                "this RayManager was shut down; create a new RayManager to run more work"
            )

    def shutdown(self) -> None:
        """Kill every actor this manager made and stop Ray if it started it.

        Safe to call twice; after it, any call on the manager or its pools
        raises :class:`~raymanager.ManagerShutdownError`.

        Example::

            >>> manager.shutdown(); manager.shutdown()   # doctest: +SKIP
        """
        with self._lock:
            if self._shut_down:
                return
            self._shut_down = True
        for pool in self._pools:
            pool.shutdown(by_manager=True)
        # A run or broadcast in another thread may be inside ray.wait: let it
        # see the shutdown and leave Ray before Ray is torn down under it.
        for pool in self._pools:
            if not pool.wait_for_ray_calls(timeout=SHUTDOWN_WAIT_S):
                logger.warning("a thread still waits on Ray for a pool of %s", pool.actor_name)
        self._pools.clear()
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    # ----------------------------------------------------------------- pools

    def create_actor_pool(
        self,
        actor_class: type[RayActor[Any, Any]],
        actor_config: Mapping[str, Any] | None = None,
        num_actors: int | tuple[int, int] = 4,
        *,
        num_cpus: float = 0,
        num_gpus: float = 0,
        memory: int | None = None,
        resources: Mapping[str, float] | None = None,
        placement: Placement = "spread",
        start_timeout_s: float | None = None,
        max_batches_per_actor: int | None = None,
        close_timeout_s: float = 10.0,
        idle_timeout_s: float = 60.0,
        max_concurrency: int = 1,
        spare_actors: int = 0,
    ) -> ActorPool:
        """Start ``num_actors`` actors of ``actor_class``, each built from ``actor_config``.

        By default an actor reserves no CPU (like Ray's own actors once they
        run), so several pools, say training and evaluation, share a machine.
        Resources asked for with ``num_cpus`` / ``num_gpus`` (fractions allowed),
        ``memory`` or custom ``resources`` are reserved per actor.

        ``num_actors=(min, max)`` makes the pool elastic: it starts ``min``
        actors, grows towards ``max`` while a run's work waits for an actor and
        the cluster has room (a node that joins is used), and retires actors
        idle for ``idle_timeout_s`` down to ``min`` (0: scale to zero). See
        also :meth:`ActorPool.resize`.

        ``max_concurrency=k`` lets one actor run ``k`` calls at once: for a
        ``process_batch`` that is ``async def`` (I/O-bound work: model APIs,
        remote simulators), or a thread-safe one (run in ``k`` threads).

        ``spare_actors=k`` keeps ``k`` warm actors beside the pool, outside its
        count: when an actor dies, times out or is recycled, a spare takes its
        place at once instead of a new process starting, and a new spare
        starts once no call is in flight on the pool. Each costs one idle
        actor process's memory; they start with the pool or when it is idle,
        so their start takes no core from the work.

        ``max_batches_per_actor`` replaces an actor after that many batches
        (like ``maxtasksperchild``), for user code that leaks. An actor that
        overrides :meth:`RayActor.close` gets that call, with ``close_timeout_s``
        to finish, before the pool retires it (shutdown, recycling).

        Returns when every actor is up. Raises
        :class:`~raymanager.ActorStartError` when a constructor raises, and
        :class:`~raymanager.ResourceUnavailableError` when no node can ever
        host an actor, or the actors did not start in time.

        Example::

            >>> pool = manager.create_actor_pool(TrainingActor, {"learning_rate": 0.001},
            ...                                  num_actors=4)   # doctest: +SKIP
        """
        self._check_open()
        arguments = check_pool_arguments(
            actor_class, actor_config, num_actors, num_cpus=num_cpus, num_gpus=num_gpus,
            memory=memory, resources=resources, placement=placement,
            max_batches_per_actor=max_batches_per_actor, close_timeout_s=close_timeout_s,
            idle_timeout_s=idle_timeout_s, max_concurrency=max_concurrency,
            spare_actors=spare_actors,
        )
        check_feasible(arguments.actor_options, actor_class.__name__)
        size = arguments.num_actors
        low, high = size if isinstance(size, tuple) else (size, size)
        # Before any actor exists: those started with the pool must all fit.
        check_capacity(arguments.actor_options, low + arguments.spare_actors, high,
                       actor_class.__name__)
        pool = ActorPool(
            actor_class,
            start_timeout_s=start_timeout_s or self.ray_config.actor_start_timeout_s,
            **arguments.as_kwargs(),
        )
        self._pools.append(pool)
        return pool

    # ----------------------------------------------------------------- processing

    def process_in_parallel(
        self,
        actor_pool: ActorPool,
        data: Any,
        batch_config: BatchConfig | None = None,
        *,
        progress: bool = False,
        journal: JournalPath | None = None,
    ) -> list[Any]:
        """Run every batch of ``data`` through the pool; results in input order.

        ``data`` is cut along its first axis into ``batch_size`` rows (see
        :class:`~raymanager.BatchConfig`); there is one result per batch.
        Empty data returns ``[]`` without calling any actor. Dead workers are
        replaced and their batches re-run; see docs/failure-model.md.

        With ``journal=PATH`` each finished batch is recorded there (never
        pickled), and the same call after a crash or Ctrl-C skips the batches
        already done and returns the same results (see :mod:`raymanager.journal`).

        Example::

            >>> manager.process_in_parallel(pool, np.arange(512),
            ...                             BatchConfig(batch_size=128))   # doctest: +SKIP
            [{...}, {...}, {...}, {...}]
        """
        return list(self.imap(actor_pool, data, batch_config, progress=progress, journal=journal))

    def imap(
        self,
        actor_pool: ActorPool,
        data: Any,
        batch_config: BatchConfig | None = None,
        *,
        progress: bool = False,
        journal: JournalPath | None = None,
    ) -> ResultStream:
        """Like :meth:`process_in_parallel`, but yield results in order as they come.

        Arguments are checked, and the pool reserved, when ``imap`` is called
        (as ``Executor.map`` does), not at the first ``next()``. Input is read
        lazily and results are handed over as soon as all earlier ones are, so
        a generator of any length streams through in bounded memory. A failed
        batch raises at its own position, after every earlier result. Closing
        the iterator (or dropping it) stops the work in flight and frees the pool.

        Example::

            >>> for result in manager.imap(pool, rows_from_disk()):   # doctest: +SKIP
            ...     save(result)
        """
        # Each (index, result) pair is dropped as its result is handed on, so
        # no reference to a delivered result stays with us (CPython bpo-14406).
        return self._stream(actor_pool, data, batch_config, progress, ordered=True,
                            results_only=True, journal=journal)

    def imap_unordered(
        self,
        actor_pool: ActorPool,
        data: Any,
        batch_config: BatchConfig | None = None,
        *,
        progress: bool = False,
        journal: JournalPath | None = None,
    ) -> ResultStream:
        """Yield ``(batch index, result)`` pairs as batches finish, in any order.

        Example::

            >>> dict(manager.imap_unordered(pool, np.arange(10),
            ...                             BatchConfig(batch_size=5)))   # doctest: +SKIP
            {1: ..., 0: ...}
        """
        return self._stream(actor_pool, data, batch_config, progress, ordered=False,
                            results_only=False, journal=journal)

    def _stream(
        self,
        actor_pool: ActorPool,
        data: Any,
        batch_config: BatchConfig | None,
        progress: bool,
        *,
        ordered: bool,
        results_only: bool,
        journal: JournalPath | None = None,
    ) -> ResultStream:
        """Check everything and reserve the pool now; process when iterated."""
        self._check_open()
        self._check_pool(actor_pool)
        config = batch_config if batch_config is not None else BatchConfig()
        if not isinstance(config, BatchConfig):
            raise TypeError(f"batch_config must be a BatchConfig, got {type(config).__name__}")
        self._warn_idle_actors(actor_pool, config)
        return open_stream(actor_pool, data, config, progress=progress, ordered=ordered,
                           results_only=results_only, journal=journal,
                           store_bytes=self._store.total(), after_run=self._store.warn_if_full)

    @staticmethod
    def _check_pool(actor_pool: object) -> None:
        if not isinstance(actor_pool, ActorPool):
            raise TypeError(
                f"actor_pool must come from create_actor_pool, got {type(actor_pool).__name__}"
            )

    def _warn_idle_actors(self, actor_pool: ActorPool, config: BatchConfig) -> None:
        if actor_pool.max_actors > config.num_parallel and actor_pool not in self._warned_idle:
            self._warned_idle.add(actor_pool)
            logger.warning(
                "this pool has %d actors but BatchConfig.num_parallel=%d: %d of them stay "
                "idle; set num_parallel=%d to use them all",
                actor_pool.max_actors, config.num_parallel,
                actor_pool.max_actors - config.num_parallel, actor_pool.max_actors,
            )

    def broadcast(
        self,
        actor_pool: ActorPool,
        method: str,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        replay_on_restart: bool = False,
    ) -> list[Any]:
        """Call one method on every actor of the pool with the same arguments.

        The arguments go into the object store once. See
        :meth:`ActorPool.broadcast`.

        Example::

            >>> manager.broadcast(pool, "set_weights", (weights,),
            ...                   replay_on_restart=True)   # doctest: +SKIP
        """
        self._check_open()
        self._check_pool(actor_pool)
        return actor_pool.broadcast(
            method, args, kwargs, replay_on_restart=replay_on_restart
        )

    # ----------------------------------------------------------------- observability

    def cluster_resources(self) -> dict[str, float]:
        """Resources of the whole cluster Ray sees, e.g. ``{"CPU": 2.0, ...}``."""
        self._check_open()
        return cluster_resources()

    def alive_nodes(self) -> int:
        """How many nodes of the cluster are alive (1 for a private local Ray)."""
        self._check_open()
        return len(alive_nodes())

    def object_store_stats(self) -> ObjectStoreStats:
        """Bytes used and total in the object store, summed over the cluster's nodes.

        ``used`` is -1 when Ray cannot report it (its gRPC stats API is missing).

        Example::

            >>> manager.object_store_stats()   # doctest: +SKIP
            {'used': 1048576, 'total': 2147483648}
        """
        self._check_open()
        return object_store_stats()
