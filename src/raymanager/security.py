"""Secure defaults for the local Ray we start.

Ray serves on the node's network interfaces, and whoever can talk to it can
run code there. Ray protects a new local cluster with a token
(``RAY_AUTH_MODE=token`` is its default); we keep that on and make sure the
token file is readable by its owner only (Ray writes it with the umask's
mode, often 0644, which lets every local user read it).

    >>> import stat
    >>> path = ensure_private_token()                      # doctest: +SKIP
    >>> oct(stat.S_IMODE(path.stat().st_mode))             # doctest: +SKIP
    '0o600'
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from raymanager.ray_internals import AUTH_BANNER_LOGGER

__all__ = ["TOKEN_ENV_VARS", "default_token_path", "ensure_private_token", "quiet_auth_banner"]

#: Environment variables through which a user hands Ray a token of their own.
TOKEN_ENV_VARS = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")

def default_token_path() -> Path:
    """Where Ray looks for its token when none is given: ``~/.ray/auth_token``."""
    return Path.home() / ".ray" / "auth_token"


def ensure_private_token() -> Path | None:
    """Create Ray's default token file with mode 0600, or tighten an existing one.

    Does nothing when token authentication is switched off by the user
    (``RAY_AUTH_MODE=disabled``, their decision, which we never make for
    them) or when they hand Ray their own token through the environment.
    Returns the token file's path when it is the default one.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if any(os.environ.get(name) for name in TOKEN_ENV_VARS):
        return None
    path = default_token_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: never overwrite a token a running cluster may be using.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_uid == os.getuid():
            path.chmod(0o600)
        return path
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))  # 256 bits, as Ray's own generator
    return path


class _DropBanner(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled" not in record.getMessage()


@contextlib.contextmanager
def quiet_auth_banner() -> Iterator[None]:
    """Hide Ray's "token authentication is enabled" notice: on is what we want.

    Ray's warnings that authentication is *disabled* still show.
    """
    banner_logger = logging.getLogger(AUTH_BANNER_LOGGER)
    drop = _DropBanner()
    banner_logger.addFilter(drop)
    try:
        yield
    finally:
        banner_logger.removeFilter(drop)
