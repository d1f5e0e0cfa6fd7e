"""Secure defaults: Ray's token stays on and its file is readable by its owner only."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from raymanager.security import ensure_private_token, quiet_auth_banner


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_token_file_is_owner_only(home: Path) -> None:
    path = ensure_private_token()
    assert path == home / ".ray" / "auth_token"
    assert mode(path) == 0o600
    assert len(path.read_text()) == 64  # 256 bits in hex, like Ray's own


def test_existing_token_is_kept_and_tightened(home: Path) -> None:
    token = home / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("a-token-a-running-cluster-uses")
    token.chmod(0o644)
    assert ensure_private_token() == token
    assert token.read_text() == "a-token-a-running-cluster-uses"
    assert mode(token) == 0o600


def test_user_choices_are_respected(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert ensure_private_token() is None
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(home / "mine"))
    assert ensure_private_token() is None
    assert not (home / ".ray" / "auth_token").exists()


def test_session_ray_token_file_is_private(ray_session: object) -> None:
    token = Path.home() / ".ray" / "auth_token"
    assert token.exists() and mode(token) == 0o600


def test_only_the_enabled_banner_is_hidden(caplog: pytest.LogCaptureFixture) -> None:
    name = "ray._private.authentication.authentication_token_setup"
    with caplog.at_level(logging.WARNING, logger=name), quiet_auth_banner():
        logging.getLogger(name).warning("Token authentication is enabled for this Ray cluster.")
        logging.getLogger(name).warning("Token authentication is disabled for this Ray cluster.")
    assert "enabled" not in caplog.text and "disabled" in caplog.text
