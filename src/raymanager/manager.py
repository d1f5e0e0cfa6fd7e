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
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
import numbers
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal

import numpy as np
import ray

from raymanager.actors.base import RayActor
from raymanager.batching import SHARE_MIN_BYTES, BatchSource, make_source
from raymanager.config import DEFAULT_WORKER_NICENESS, BatchConfig, RayConfig
from raymanager.errors import ManagerShutdownError, RayStartError
from raymanager.journal import Journal, fingerprint, input_digest
from raymanager.pool import TIMED_OUT, ActorPool, Deadline, Run, check_feasible, check_size
from raymanager.progress import BatchProgress
from raymanager.ray_internals import alive_nodes, object_store_bytes_used
from raymanager.security import ensure_private_token, quiet_auth_banner
from raymanager.startup import (
    LOOPBACK,
    check_cluster,
    check_dashboard,
    loopback_only,
    python_sigterm,
    quiet_ray_notices,
)

__all__ = ["ObjectStoreStats", "RayManager", "ResultStream"]

logger = logging.getLogger("raymanager")

Placement = Literal["spread", "pack"]

#: Seconds between two checks of object store use after a run.
STORE_CHECK_INTERVAL_S = 10.0
#: Seconds shutdown() waits for other threads to leave their Ray calls.
SHUTDOWN_WAIT_S = 5.0


class ObjectStoreStats(dict[str, int]):
    """``{"used": bytes, "total": bytes}`` of the cluster's object store."""


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
        self._next_store_check = 0.0
        self._store_bytes: int | None = None
        self._start_ray()

    # ----------------------------------------------------------------- Ray lifecycle

    def _start_ray(self) -> None:
        config = self.ray_config
        if ray.is_initialized():
            # A library must not tear down a Ray it did not start: join it.
            if config.address is not None or config.num_cpus is not None:
                logger.warning(
                    "Ray is already running in this process; RayManager joins it and "
                    "ignores RayConfig's address and resource fields"
                )
            return
        kwargs: dict[str, Any] = {
            "namespace": config.namespace,
            "log_to_driver": config.log_to_driver,
            # Ray's INFO lines ("Started a local Ray instance ...") are noise
            # on a user's terminal; its warnings and errors still show.
            "logging_level": logging.WARNING,
        }
        private = config.address is None
        if private:
            if config.include_dashboard:
                check_dashboard()
            ensure_private_token()
            kwargs.update(
                # "local" always starts a private Ray, even when RAY_ADDRESS is
                # set or another Ray runs on this machine.
                address="local",
                num_cpus=config.num_cpus,
                num_gpus=config.num_gpus,
                object_store_memory=config.object_store_memory,
                include_dashboard=config.include_dashboard,
                # A private Ray serves this process only: on loopback.
                _node_ip_address=LOOPBACK,
            )
            if config.memory is not None:
                kwargs["_memory"] = config.memory
            # A fresh dict: ray.init writes into the one it gets, and the
            # user's own _system_config (init_kwargs) has the last word.
            kwargs["_system_config"] = {
                "worker_niceness": config.worker_niceness,
                **config.init_kwargs.get("_system_config", {}),
            }
            self.owns_ray = True
        else:
            assert config.address is not None
            check_cluster(config.address, config.connect_timeout_s)
            kwargs["address"] = config.address
            if config.worker_niceness != DEFAULT_WORKER_NICENESS:
                logger.warning(
                    "RayConfig.worker_niceness=%d is ignored: the workers of the cluster at "
                    "%s keep the niceness its owner gave them", config.worker_niceness,
                    config.address,
                )
        extra = dict(config.init_kwargs)
        if private:
            extra.pop("_system_config", None)  # merged into ours above
        kwargs.update(extra)
        loopback = private and kwargs.get("_node_ip_address") == LOOPBACK
        try:
            with contextlib.ExitStack() as stack:
                stack.enter_context(quiet_auth_banner())
                stack.enter_context(python_sigterm())
                stack.enter_context(self._driver_path_for_workers())
                if loopback:
                    stack.enter_context(loopback_only())
                ray.init(**kwargs)
        except Exception as error:
            self.owns_ray = False
            if ray.is_initialized():  # half started: leave nothing running
                ray.shutdown()
            where = "start a local Ray" if private else f"join the Ray cluster at {config.address}"
            raise RayStartError(
                f"could not {where}: {type(error).__name__}: {error}. Check RayConfig "
                f"(and its init_kwargs), free memory and disk under /tmp/ray, and Ray's "
                f"log files in /tmp/ray/session_latest/logs"
            ) from error
        quiet_ray_notices(not config.log_to_driver)

    @contextlib.contextmanager
    def _driver_path_for_workers(self) -> Iterator[None]:
        """Give the workers of a local Ray the driver's import path.

        Actor and agent classes defined in the user's own modules (scripts,
        tests, examples) then import in workers as they do here. Set in the
        environment the local Ray's processes inherit, not as a runtime_env:
        a runtime_env makes Ray start a fresh worker for every actor instead
        of reusing its prestarted ones, which makes every pool slower to start.
        """
        if not self.owns_ray:
            yield
            return
        paths = [p for p in sys.path if p and os.path.isdir(p)]
        if os.getcwd() not in paths:
            paths.insert(0, os.getcwd())
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
        try:
            yield
        finally:
            if before is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = before

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
        if not (isinstance(actor_class, type) and issubclass(actor_class, RayActor)):
            hint = ""
            if hasattr(actor_class, "remote"):
                hint = " (pass the plain class, not one decorated with @ray.remote)"
            raise TypeError(
                f"actor_class must be a subclass of RayActor, got {actor_class!r}{hint}"
            )
        missing = sorted(getattr(actor_class, "__abstractmethods__", ()))
        if missing:  # found here, not after a round trip as "raised in its constructor"
            raise TypeError(f"{actor_class.__name__} does not implement "
                            f"{', '.join(missing)}: a RayActor subclass must define "
                            f"{' and '.join(f'{name}(...)' for name in missing)}")
        if actor_config is None:
            actor_config = {}
        if not isinstance(actor_config, Mapping):
            raise TypeError(f"actor_config must be a mapping, got {type(actor_config).__name__}")
        if isinstance(num_actors, tuple):
            if len(num_actors) != 2:
                raise ValueError(f"num_actors must be an int or a (min, max) pair, "
                                 f"got {num_actors!r}")
            check_size(*num_actors)
            num_actors = (int(num_actors[0]), int(num_actors[1]))
        elif (isinstance(num_actors, bool) or not isinstance(num_actors, numbers.Integral)
              or num_actors < 1):
            raise ValueError(f"num_actors must be an int >= 1, got {num_actors!r}")
        else:
            num_actors = int(num_actors)
        if isinstance(idle_timeout_s, bool) or not isinstance(idle_timeout_s, (int, float)) \
                or not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be a number > 0, got {idle_timeout_s!r}")
        for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if max_batches_per_actor is not None and (
            isinstance(max_batches_per_actor, bool) or not isinstance(max_batches_per_actor, int)
            or max_batches_per_actor < 1
        ):
            raise ValueError(
                f"max_batches_per_actor must be an int >= 1 or None, got {max_batches_per_actor!r}"
            )
        if isinstance(close_timeout_s, bool) or not isinstance(close_timeout_s, (int, float)) \
                or not close_timeout_s >= 0:
            raise ValueError(f"close_timeout_s must be a number >= 0, got {close_timeout_s!r}")
        if (isinstance(max_concurrency, bool) or not isinstance(max_concurrency, numbers.Integral)
                or max_concurrency < 1):
            raise ValueError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        if (isinstance(spare_actors, bool) or not isinstance(spare_actors, numbers.Integral)
                or spare_actors < 0):
            raise ValueError(f"spare_actors must be an int >= 0, got {spare_actors!r}")
        if placement not in ("spread", "pack"):
            raise ValueError(f"placement must be 'spread' or 'pack', got {placement!r}")
        actor_class.validate_config(actor_config)
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
        check_feasible(options, actor_class.__name__)
        pool = ActorPool(
            actor_class,
            actor_config,
            num_actors,
            actor_options=options,
            start_timeout_s=start_timeout_s or self.ray_config.actor_start_timeout_s,
            placement=placement,
            max_batches_per_actor=max_batches_per_actor,
            close_timeout_s=float(close_timeout_s),
            idle_timeout_s=float(idle_timeout_s),
            max_concurrency=int(max_concurrency),
            spare_actors=int(spare_actors),
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
        journal: str | os.PathLike[str] | None = None,
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
        journal: str | os.PathLike[str] | None = None,
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
        journal: str | os.PathLike[str] | None = None,
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
        journal: str | os.PathLike[str] | None = None,
    ) -> ResultStream:
        """Check everything and reserve the pool now; process when iterated."""
        self._check_open()
        if not isinstance(actor_pool, ActorPool):
            raise TypeError(
                f"actor_pool must come from create_actor_pool, got {type(actor_pool).__name__}"
            )
        config = batch_config if batch_config is not None else BatchConfig()
        if not isinstance(config, BatchConfig):
            raise TypeError(f"batch_config must be a BatchConfig, got {type(config).__name__}")
        # An array may take at most half the object store: a bigger one goes
        # inline, a bounded window at a time, instead of spilling whole.
        store = self._store_total()
        stored_ref = None
        if isinstance(data, ray.ObjectRef):
            # Already in the object store (put once, used for many runs): read
            # its shape here (zero-copy for arrays) and share that very object.
            stored_ref, data = data, ray.get(data)
            if not isinstance(data, (np.ndarray, Mapping)):
                raise TypeError(
                    f"an ObjectRef passed as data must hold a numpy array or a mapping of "
                    f"arrays, got {type(data).__name__}"
                )
        source = make_source(data, config.batch_size,
                             share_min_bytes=0 if stored_ref is not None else SHARE_MIN_BYTES,
                             share_max_bytes=None if stored_ref is not None or not store
                             else store // 2)
        if stored_ref is not None and source.shared is None:
            raise TypeError("an ObjectRef passed as data must hold numpy arrays (not objects)")
        log = _open_journal(journal, data, source, config)
        self._warn_idle_actors(actor_pool, config)
        try:
            actor_pool.check_usable()  # before anything is put in the store
            empty = source.is_empty()
            shared_ref: Any = None
            if not empty and source.mapped is not None:
                shared_ref = source.mapped  # workers map the file by path: nothing is put
            elif not empty and stored_ref is not None:
                shared_ref = stored_ref  # the user's object: never put again
            elif not empty and source.shared is not None:
                shared_ref = ray.put(source.shared)
        except BaseException:
            if log is not None:
                log.close()
            raise

        def release() -> None:
            if log is not None:
                log.close()  # commits the last results

        deadline = Deadline()
        generator = self._results(actor_pool, source, config, shared_ref, progress, ordered,
                                  empty=empty, deadline=deadline, journal=log)
        return ResultStream(generator, release=release, results_only=results_only,
                             deadline=deadline, check_usable=actor_pool.check_usable)

    def _results(
        self,
        actor_pool: ActorPool,
        source: Any,
        config: BatchConfig,
        shared_ref: Any,
        progress: bool,
        ordered: bool,
        *,
        empty: bool,
        deadline: Deadline,
        journal: Journal | None,
    ) -> Generator[Any, None, None]:
        try:
            if empty:
                return
            reporter: contextlib.AbstractContextManager[Any]
            if progress:
                before = (actor_pool.restarts, actor_pool.retries)
                reporter = BatchProgress(
                    source.num_batches, source.num_rows,
                    health=lambda: (actor_pool.restarts - before[0],
                                    actor_pool.retries - before[1]),
                )
            else:
                reporter = contextlib.nullcontext(None)
            with reporter as on_progress:
                run = Run(actor_pool, source, config, shared_ref=shared_ref,
                          on_progress=on_progress, ordered=ordered, deadline=deadline,
                          journal=journal)
                yield from run.chunks()
        finally:
            # Drop our reference so the object store can free the shared data.
            del shared_ref
            self._warn_if_store_full()
            if journal is not None:
                journal.close()  # commits the last results

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
        if not isinstance(actor_pool, ActorPool):
            raise TypeError(
                f"actor_pool must come from create_actor_pool, got {type(actor_pool).__name__}"
            )
        return actor_pool.broadcast(
            method, args, kwargs, replay_on_restart=replay_on_restart
        )

    # ----------------------------------------------------------------- observability

    def cluster_resources(self) -> dict[str, float]:
        """Resources of the whole cluster Ray sees, e.g. ``{"CPU": 2.0, ...}``."""
        self._check_open()
        resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return {k: float(v) for k, v in resources.items() if not k.startswith("node:")}

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
        total = int(self.cluster_resources().get("object_store_memory", 0))
        used = 0
        try:
            used = object_store_bytes_used()
        except Exception:  # internal API moved or gRPC missing: say so, do not guess
            logger.debug("object store usage unavailable", exc_info=True)
            used = -1
        return ObjectStoreStats(used=used, total=total)

    def _store_total(self) -> int:
        if self._store_bytes is None:
            self._store_bytes = int(self.cluster_resources().get("object_store_memory", 0))
        return self._store_bytes

    def _warn_if_store_full(self) -> None:
        # Asking the raylets costs tens of ms: at most once per interval.
        now = time.monotonic()
        if self._shut_down or not ray.is_initialized() or now < self._next_store_check:
            return
        self._next_store_check = now + STORE_CHECK_INTERVAL_S
        try:
            stats = self.object_store_stats()
        except Exception:
            return
        limit = self.ray_config.object_store_warn_fraction
        if stats["total"] and stats["used"] > 0 and stats["used"] / stats["total"] > limit:
            logger.warning(
                "object store is %.0f%% full (%d of %d bytes); Ray will spill to disk",
                100 * stats["used"] / stats["total"], stats["used"], stats["total"],
            )


def _open_journal(
    path: str | os.PathLike[str] | None, data: Any, source: BatchSource, config: BatchConfig
) -> Journal | None:
    """The run's journal (None without one). An input whose content the fingerprint
    does not cover has each batch's rows hashed as they are taken."""
    if path is None:
        return None
    expected = fingerprint(data, config.batch_size, source.num_rows)
    if expected["content"] is None:
        source.keep_digests(input_digest)
        return Journal.open(path, expected, digest_of=source.pop_digest)
    return Journal.open(path, expected)


class ResultStream(Iterator[Any]):
    """The iterator ``imap`` / ``imap_unordered`` return.

    Holds its journal (if any) from its creation until it is exhausted,
    closed or dropped, also when it was never started (a generator that never
    started would not run its clean-up). With ``results_only`` it hands on
    the result of each ``(index, result)`` pair and keeps neither.
    """

    def __init__(
        self,
        generator: Generator[Any, None, None],
        *,
        release: Callable[[], None],
        results_only: bool,
        deadline: Deadline,
        check_usable: Callable[[], None],
    ) -> None:
        self._generator = generator
        #: Run once, for a stream closed before it started (its generator's
        #: clean-up never runs then).
        self._release: Callable[[], None] | None = release
        self._results_only = results_only
        self._deadline = deadline
        self._check_usable = check_usable
        #: Results that arrived together and are not handed out yet: each
        #: leaves the buffer as it is handed out, so none is kept after.
        self._ready: collections.deque[tuple[int, Any]] = collections.deque()

    def __iter__(self) -> ResultStream:
        return self

    def __next__(self) -> Any:
        if self._ready:  # the fast path: no generator to resume
            self._check_usable()  # nothing is handed out after a shutdown
            return self._hand_out()
        return self.next()

    def next(self, timeout: float | None = None) -> Any:
        """The next result; ``TimeoutError`` if none came within ``timeout`` seconds.

        A timeout stops nothing: no actor is killed, the run stays where it
        was, and a later ``next()`` goes on (as Ray's ``ActorPool.get_next``).

        Example::

            >>> stream = manager.imap(pool, data)          # doctest: +SKIP
            >>> stream.next(timeout=5.0)
        """
        if not self._ready:
            self._deadline.at = None if timeout is None else time.monotonic() + timeout
            try:
                chunk = next(self._generator)
            finally:
                self._deadline.at = None
            if chunk is TIMED_OUT:
                raise TimeoutError(f"no result within {timeout:g} s; the run goes on")
            self._ready.extend(chunk)
            del chunk
        else:
            self._check_usable()
        return self._hand_out()

    def _hand_out(self) -> Any:
        try:
            item = self._ready.popleft()
        except IndexError:  # close() from another thread emptied the buffer
            raise StopIteration from None
        return item[1] if self._results_only else item

    def close(self) -> None:
        """Stop the run: work in flight finishes or its actors are replaced."""
        never_started = inspect.getgeneratorstate(self._generator) == inspect.GEN_CREATED
        self._ready.clear()
        self._generator.close()
        if never_started and self._release is not None:
            self._release()
        self._release = None

    def __enter__(self) -> ResultStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
