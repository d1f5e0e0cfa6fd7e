"""How :class:`~raymanager.RayManager` starts or joins Ray: fast, private and quiet.

What Ray does not do on its own, a function each:

- :func:`start_ray` starts a private local Ray or joins a cluster, as a
  ``RayConfig`` says, with the helpers below, and says whether the caller
  owns the Ray it started;
- :func:`check_cluster` answers "is there a Ray cluster at this address?" in
  at most ``RayConfig.connect_timeout_s`` (Ray's own ``ray.init`` retries for
  about ten minutes, printing warnings, when nothing is there)::

      >>> check_cluster("127.0.0.1:1", timeout_s=5)              # doctest: +SKIP
      Traceback (most recent call last):
      RayStartError: no Ray cluster at 127.0.0.1:1 (Ray connects to ...): nothing listens there ...

- :func:`loopback_only` makes a private local Ray serve on 127.0.0.1 only;
- :func:`quiet_ray_notices` keeps Ray's worker notices ("A worker died ...")
  off the terminal; they stay in Ray's log files and our ``raymanager``
  logger says what happened in one line;
- :func:`python_sigterm` keeps SIGTERM a Python signal (Ray's crash handler
  would abort the process) and :func:`check_dashboard` names the extra the
  dashboard needs;
- :func:`driver_path_for_workers` gives a local Ray's workers the driver's
  import path.

Used by manager.py only. Imports ray, ``config``, ``errors``, ``security``
and :mod:`raymanager.ray_internals` (Ray's internals it needs), the latter
where used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import ray

from raymanager.config import DEFAULT_WORKER_NICENESS, RayConfig
from raymanager.errors import RayStartError
from raymanager.security import ensure_private_token, quiet_auth_banner

__all__ = [
    "LOOPBACK",
    "check_cluster",
    "check_dashboard",
    "driver_path_for_workers",
    "loopback_only",
    "python_sigterm",
    "quiet_ray_notices",
    "start_ray",
]

logger = logging.getLogger("raymanager")

LOOPBACK = "127.0.0.1"

#: Ray's own switch for "a single machine, on loopback": its default on macOS
#: and Windows, where it keeps every Ray process on 127.0.0.1.
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


# --------------------------------------------------------------------------- start or join


def start_ray(config: RayConfig) -> bool:
    """Start a private local Ray, or join the cluster at ``config.address``.

    Returns whether the caller owns the Ray (started it, so stops it). A Ray
    already running in this process is joined, never restarted: a library
    must not tear down a Ray it did not start. RayStartError when Ray does
    not start (nothing is left running then).

    >>> owns_ray = start_ray(RayConfig(num_cpus=2))   # doctest: +SKIP
    """
    if ray.is_initialized():
        if config.address is not None or config.num_cpus is not None:
            logger.warning(
                "Ray is already running in this process; RayManager joins it and "
                "ignores RayConfig's address and resource fields"
            )
        return False
    private = config.address is None
    kwargs = _private_init_kwargs(config) if private else _cluster_init_kwargs(config)
    loopback = private and kwargs.get("_node_ip_address") == LOOPBACK
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(quiet_auth_banner())
            stack.enter_context(python_sigterm())
            if private:
                stack.enter_context(driver_path_for_workers())
            if loopback:
                stack.enter_context(loopback_only())
            ray.init(**kwargs)
    except Exception as error:
        if ray.is_initialized():  # half started: leave nothing running
            ray.shutdown()
        where = "start a local Ray" if private else f"join the Ray cluster at {config.address}"
        raise RayStartError(
            f"could not {where}: {type(error).__name__}: {error}. Check RayConfig "
            f"(and its init_kwargs), free memory and disk under /tmp/ray, and Ray's "
            f"log files in /tmp/ray/session_latest/logs"
        ) from error
    quiet_ray_notices(not config.log_to_driver)
    return private


def _common_init_kwargs(config: RayConfig) -> dict[str, Any]:
    return {
        "namespace": config.namespace,
        "log_to_driver": config.log_to_driver,
        # Ray's INFO lines ("Started a local Ray instance ...") are noise
        # on a user's terminal; its warnings and errors still show.
        "logging_level": logging.WARNING,
    }


def _private_init_kwargs(config: RayConfig) -> dict[str, Any]:
    """``ray.init``'s arguments for a private local Ray (checks first: dashboard, token)."""
    if config.include_dashboard:
        check_dashboard()
    ensure_private_token()
    kwargs = _common_init_kwargs(config)
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
    # A fresh dict: ray.init writes into the one it gets, and the user's own
    # _system_config (init_kwargs) has the last word.
    kwargs["_system_config"] = {
        "worker_niceness": config.worker_niceness,
        **config.init_kwargs.get("_system_config", {}),
    }
    extra = dict(config.init_kwargs)
    extra.pop("_system_config", None)  # merged into ours above
    kwargs.update(extra)
    return kwargs


def _cluster_init_kwargs(config: RayConfig) -> dict[str, Any]:
    """``ray.init``'s arguments to join the cluster at ``config.address`` (checked first)."""
    assert config.address is not None
    check_cluster(config.address, config.connect_timeout_s)
    kwargs = _common_init_kwargs(config)
    kwargs["address"] = config.address
    if config.worker_niceness != DEFAULT_WORKER_NICENESS:
        logger.warning(
            "RayConfig.worker_niceness=%d is ignored: the workers of the cluster at "
            "%s keep the niceness its owner gave them", config.worker_niceness,
            config.address,
        )
    kwargs.update(config.init_kwargs)
    return kwargs


@contextlib.contextmanager
def driver_path_for_workers() -> Iterator[None]:
    """Give the workers of a local Ray the driver's import path (while it starts).

    Actor and agent classes defined in the user's own modules (scripts,
    tests, examples) then import in workers as they do here. Set in the
    environment the local Ray's processes inherit, not as a runtime_env:
    a runtime_env makes Ray start a fresh worker for every actor instead
    of reusing its prestarted ones, which makes every pool slower to start.
    """
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


# --------------------------------------------------------------------------- joining


def check_cluster(address: str, timeout_s: float) -> None:
    """Raise :class:`RayStartError` unless a Ray cluster answers at ``address``.

    ``address`` is what ``ray.init`` takes: ``"auto"``, ``"host:port"`` (the
    GCS, usually port 6379) or ``"ray://host:port"`` (Ray Client). For a GCS
    address one gRPC call asks for the cluster's id: a reply, or a refusal
    for want of the cluster's token, proves a Ray cluster is there; anything
    else (nothing listening, another program, no answer in ``timeout_s``) is a
    clear error instead of Ray's ten minutes of retries.
    """
    if address.startswith("ray://"):
        _check_tcp(address, address[len("ray://"):], timeout_s)
        return
    target = _bootstrap_address(address)
    shown = address if target == address else f"{address} (Ray connects to {target})"
    from raymanager.ray_internals import ask_gcs_cluster_id

    try:
        import grpc

        ask_gcs_cluster_id(target, timeout_s)
    except ImportError:  # Ray moved its generated code: a plain TCP check still helps
        _check_tcp(shown, target, timeout_s)
    except grpc.RpcError as error:
        code = error.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return  # a Ray cluster that wants its token: ray.init sends it
        details = error.details() or ""
        raise RayStartError(_no_cluster(shown, code, details, timeout_s)) from None


def _no_cluster(shown: str, code: Any, details: str, timeout_s: float) -> str:
    """Why nothing usable answered, from gRPC's status and details."""
    reason = details.rpartition("last error: ")[2] or str(code)
    lowered = details.lower()
    if "refused" in lowered:
        return (f"no Ray cluster at {shown}: nothing listens there ({reason}); start one "
                f"with `ray start --head` and use the address it prints")
    if code.name == "DEADLINE_EXCEEDED" or "timed out" in lowered or "timeout" in lowered:
        return (f"no Ray cluster at {shown}: no answer from a Ray cluster there ({reason}; "
                f"waited at most {timeout_s:g} s, RayConfig.connect_timeout_s); check the "
                f"address and that a firewall lets this machine reach it")
    return (f"no Ray cluster at {shown}: something answers there but it is not a Ray "
            f"cluster's GCS ({code.name}: {reason}); check the port")


def _bootstrap_address(address: str) -> str:
    """The host:port ``ray.init`` will connect to (it resolves "auto" and localhost)."""
    from raymanager.ray_internals import bootstrap_address

    try:
        target = bootstrap_address(address)
    except (ConnectionError, ValueError) as error:
        raise RayStartError(f"no Ray cluster at {address!r}: {error}") from None
    if target is None:  # "local", or "auto" with nothing recorded: ray.init would start one
        raise RayStartError(
            f"no Ray cluster at {address!r}; leave RayConfig.address unset (None) to start "
            f"a private local Ray"
        )
    return target


def _check_tcp(shown: str, host_port: str, timeout_s: float) -> None:
    import socket

    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise RayStartError(f"not a Ray address: {shown!r} (expected host:port)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except TimeoutError:
        raise RayStartError(
            f"no Ray cluster at {shown}: no answer within {timeout_s:g} s "
            f"(RayConfig.connect_timeout_s)"
        ) from None
    except OSError as error:
        raise RayStartError(f"no Ray cluster at {shown}: {error.strerror or error}") from None


# --------------------------------------------------------------------------- starting


def check_dashboard() -> None:
    """Raise :class:`RayStartError` when Ray's dashboard packages are missing."""
    from raymanager.ray_internals import dashboard_dependency_error

    missing = dashboard_dependency_error()
    if missing is not None:
        raise RayStartError(
            "RayConfig(include_dashboard=True) needs Ray's dashboard packages, which "
            "plain `ray` does not have: pip install 'raymanager[dashboard]' "
            f"(that is ray[default]); missing: {missing}"
        )


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While a private local Ray starts, make every one of its processes serve on loopback.

    Ray binds its gRPC servers to 127.0.0.1 exactly when the node's IP is
    127.0.0.1, and on Linux it replaces 127.0.0.1 by the machine's address
    unless its single-machine mode is on (the default on macOS and Windows).
    So for the start: the mode's environment variable for the processes Ray
    starts, and the driver's copy of the flag (read once when Ray is
    imported), both restored afterwards.
    """
    from raymanager.ray_internals import cluster_mode_off

    before_env = os.environ.get(_SINGLE_MACHINE_ENV)
    os.environ[_SINGLE_MACHINE_ENV] = "0"
    try:
        with cluster_mode_off():
            yield
    finally:
        if before_env is None:
            del os.environ[_SINGLE_MACHINE_ENV]
        else:
            os.environ[_SINGLE_MACHINE_ENV] = before_env


@contextlib.contextmanager
def python_sigterm() -> Iterator[None]:
    """Keep SIGTERM a Python signal across ``ray.init`` (in the main thread).

    ``ray.init`` sets a Python SIGTERM handler (exit), then its C++ core
    worker installs a crash handler over it that prints "*** SIGTERM received
    ..." and aborts the process: no ``finally`` runs, no checkpoint is saved,
    exit status 134. Afterwards the Python handler in effect before
    ``ray.init`` (the program's own) is put back, or else Ray's.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        handler = before if callable(before) else signal.getsignal(signal.SIGTERM)
        if callable(handler):
            signal.signal(signal.SIGTERM, handler)


# --------------------------------------------------------------------------- noise

_quiet = False


def quiet_ray_notices(quiet: bool) -> None:
    """Keep (``True``) or let (``False``) Ray's worker notices off the terminal.

    Ray's driver prints every error its raylets publish ("A worker died or
    was killed ...", "N PYTHON worker processes have been started ...") on
    stdout, from a thread of its own, whatever ``log_to_driver`` says. The
    same events are in Ray's log files (``raylet.out``), and raymanager logs
    what it did about them. Quiet, the notices go to the
    ``raymanager.ray_notices`` logger at DEBUG level instead.
    """
    global _quiet
    _quiet = quiet
    from raymanager.ray_internals import worker_notice_printer

    worker_notice_printer(_make_filter, marker="_raymanager_wrapped")


_notices = logging.getLogger("raymanager.ray_notices")


def _make_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    def print_to_stdstream(data: dict[str, Any], ignore_prefix: bool) -> Any:
        if not _quiet:
            return original(data, ignore_prefix)
        for line in data.get("lines", ()):
            _notices.debug("(%s) %s", data.get("pid"), line)
        return None

    print_to_stdstream._raymanager_wrapped = original  # type: ignore[attr-defined]
    return print_to_stdstream
