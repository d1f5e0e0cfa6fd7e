"""How :class:`~raymanager.RayManager` starts or joins Ray: fast, private and quiet.

What Ray does not do on its own, a function each:

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
  dashboard needs.

Used by manager.py only. Ray's internals it needs are reached through
:mod:`raymanager.ray_internals`, imported where used (so importing this
module does not import ray).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from raymanager.errors import RayStartError

__all__ = [
    "LOOPBACK",
    "check_cluster",
    "check_dashboard",
    "loopback_only",
    "python_sigterm",
    "quiet_ray_notices",
]

logger = logging.getLogger("raymanager")

LOOPBACK = "127.0.0.1"

#: Ray's own switch for "a single machine, on loopback": its default on macOS
#: and Windows, where it keeps every Ray process on 127.0.0.1.
_SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


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
