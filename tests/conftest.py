"""Shared fixtures: one real local Ray for the whole pytest run.

Ray takes seconds to start, so the session starts it once (a RayManager that
owns it) and each test gets its own RayManager that joins it; a test's
manager kills the actors it made when the test ends, and the session's
manager stops Ray at the end of the run.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import ray

from raymanager import RayConfig, RayManager

# A shell without job control starts a background command (`.ci/run &`, nohup)
# with SIGINT ignored, every process it starts inherits that, and Python then
# installs no KeyboardInterrupt handler: the Ctrl-C tests would send SIGINT to
# drivers that cannot hear it and time out. Those tests play a user pressing
# Ctrl-C at a foreground program, so give the run the foreground's default;
# the drivers they start inherit it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[RayManager]:
    if ray.is_initialized():  # pragma: no cover - a test leaked a Ray
        ray.shutdown()
    session = RayManager(RayConfig(num_cpus=2, object_store_memory=300 * 1024 * 1024))
    yield session
    session.shutdown()


@pytest.fixture
def manager(ray_session: RayManager) -> Iterator[RayManager]:
    """A manager on the session's Ray; its pools are killed after the test."""
    joined = RayManager()
    assert not joined.owns_ray
    yield joined
    joined.shutdown()
