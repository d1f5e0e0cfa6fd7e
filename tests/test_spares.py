"""Warm spares (``spare_actors``): a dead actor's place is taken by a spare that is already up."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import psutil
import pytest
from actors_for_tests import Echo, Square

from raymanager import BatchConfig, RayManager

N = 200
BATCH = 10
EXPECTED = [[v * v for v in range(i, min(i + BATCH, N))] for i in range(0, N, BATCH)]


def _spare_pids(pool: object) -> list[int]:
    stats = pool.stats()  # type: ignore[attr-defined]  # polls the spares
    assert stats["spares_ready"] == len([s for s in pool.spares if s.pid])  # type: ignore[attr-defined]
    return [s.pid for s in pool.spares if s.pid is not None]  # type: ignore[attr-defined]


def _wait_for_spare(pool: object, timeout_s: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = _spare_pids(pool)
        if pids:
            return pids
        time.sleep(0.1)
    raise AssertionError("no spare became ready")


def test_a_spare_is_up_with_the_pool_and_outside_its_count(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {}, num_actors=2, spare_actors=1)
    spares = _spare_pids(pool)
    assert len(spares) == 1 and psutil.pid_exists(spares[0])
    assert spares[0] not in pool.pids() and len(pool.pids()) == 2
    assert pool.stats()["promoted"] == 0
    results = manager.process_in_parallel(pool, np.arange(N), BatchConfig(batch_size=BATCH))
    assert results == EXPECTED
    # Work goes to the pool's actors only: the spare did nothing.
    assert {s["pid"] for s in pool.stats()["actors"]} == set(pool.pids())


def test_a_killed_actors_place_goes_to_the_spare_and_a_new_spare_starts(
    manager: RayManager,
) -> None:
    pool = manager.create_actor_pool(Square, {"sleep_s": 0.01}, num_actors=2, spare_actors=1)
    [spare] = _spare_pids(pool)
    victim = pool.pids()[0]
    assert victim is not None
    killed = False
    results = []
    for result in manager.imap(pool, np.arange(N), BatchConfig(batch_size=BATCH)):
        results.append(result)
        if not killed:
            os.kill(victim, signal.SIGKILL)  # our own pool's actor, by its PID
            killed = True
    assert results == EXPECTED  # nothing lost, nothing twice, in order
    assert pool.restarts == 1 and pool.stats()["promoted"] == 1
    assert spare in pool.pids() and victim not in pool.pids()
    [new_spare] = _wait_for_spare(pool)
    assert new_spare not in (spare, victim) and psutil.pid_exists(new_spare)


def test_a_promoted_spare_gets_the_broadcasts_sent_after_it_started(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Echo, {}, num_actors=1, spare_actors=1)
    [spare] = _spare_pids(pool)
    # The spare started before these: promotion replays the last one into it.
    pool.broadcast("set_state", args=({"round": 1},), replay_on_restart=True)
    pool.broadcast("set_state", args=({"round": 2},), replay_on_restart=True)
    os.kill(pool.pids()[0], signal.SIGKILL)
    assert pool.broadcast("get_state") == [{"round": 2}]
    assert pool.pids() == [spare]
    # A spare started after the broadcasts has them from its start.
    [new_spare] = _wait_for_spare(pool)
    os.kill(spare, signal.SIGKILL)
    assert pool.broadcast("get_state") == [{"round": 2}]
    assert pool.pids() == [new_spare]


def test_shutdown_takes_the_spares_with_the_pool(manager: RayManager) -> None:
    pool = manager.create_actor_pool(Square, {}, num_actors=1, spare_actors=2)
    spares = _spare_pids(pool)
    assert len(spares) == 2
    pool.shutdown()
    deadline = time.monotonic() + 30
    while any(psutil.pid_exists(p) for p in spares) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(psutil.pid_exists(p) for p in spares)


@pytest.mark.parametrize("bad", [-1, True, 1.5, "1"])
def test_spare_actors_must_be_a_count(manager: RayManager, bad: object) -> None:
    with pytest.raises(ValueError, match="spare_actors"):
        manager.create_actor_pool(Square, {}, num_actors=1, spare_actors=bad)  # type: ignore[arg-type]
