"""``imap_unordered`` over hundreds of uneven, timed batches, and the per-actor
concurrency bound of async actors.

Engine v2 hung here: the read-ahead window of a run was measured from the next
batch *in order* to hand out, which an unordered run never advances, so after
64 batches sent nothing more was read and the run waited forever. Batches that
take no time hid it (calls of hundreds of batches make the window larger than
the run), and so did runs of fewer than 64 batches: every earlier test had one
or the other. Each test here checks exactly-once delivery.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from chaos_actors import UnevenWork
from engine_actors import AsyncIO
from killer import Killer

from raymanager import BatchConfig, BatchError, RayManager

NUM_BATCHES = 300


def _source(kind: str, n: int) -> Any:
    values = list(range(n))
    if kind == "list":
        return values
    if kind == "iterator":
        return iter(values)

    def rows() -> Iterator[int]:
        yield from values

    return rows()


def _exactly_once(pairs: list[tuple[int, Any]], n: int) -> dict[int, Any]:
    counts = Counter(index for index, _ in pairs)
    assert sorted(counts) == list(range(n)), "a batch is missing"
    assert max(counts.values()) == 1, "a batch was delivered twice"
    return dict(pairs)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["list", "iterator", "generator"])
def test_unordered_timed_batches_all_arrive_once(manager: RayManager, kind: str) -> None:
    pool = manager.create_actor_pool(UnevenWork, {}, num_actors=2)
    pairs = list(manager.imap_unordered(pool, _source(kind, NUM_BATCHES),
                                        BatchConfig(batch_size=1)))
    results = _exactly_once(pairs, NUM_BATCHES)
    assert results == {i: 3 * i for i in range(NUM_BATCHES)}


@pytest.mark.timeout(120)
def test_the_issue_snippet_200_batches_of_2_ms(manager: RayManager) -> None:
    pool = manager.create_actor_pool(UnevenWork, {}, num_actors=2)
    # Values whose sleep is 2 ms (value * 7919 % 5 == 2): the snippet of the bug report.
    values = [v for v in range(2000) if v * 7919 % 5 == 2][:200]
    pairs = list(manager.imap_unordered(pool, values, BatchConfig(batch_size=1)))
    results = _exactly_once(pairs, len(values))
    assert [results[i] for i in range(len(values))] == [3 * v for v in values]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["list", "generator"])
def test_unordered_with_a_raising_batch_and_continue(manager: RayManager, kind: str) -> None:
    pool = manager.create_actor_pool(UnevenWork, {"raise_at": [2, 50, 98]}, num_actors=3)
    pairs = list(manager.imap_unordered(pool, _source(kind, 100),
                                        BatchConfig(batch_size=1, on_error="continue")))
    results = _exactly_once(pairs, 100)
    for index, value in results.items():
        if index in (2, 50, 98):
            assert isinstance(value, BatchError) and value.index == index
        else:
            assert value == 3 * index


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_unordered_timed_batches_survive_random_sigkills(manager: RayManager) -> None:
    pool = manager.create_actor_pool(UnevenWork, {}, num_actors=2)
    n = 600
    killer = Killer(pool, seed=17, num_results=n, kills=3)
    pairs = []
    for pair in manager.imap_unordered(pool, _source("iterator", n),
                                       BatchConfig(batch_size=1, max_retries=3)):
        pairs.append(pair)
        killer.maybe_kill(len(pairs))
    results = _exactly_once(pairs, n)
    assert results == {i: 3 * i for i in range(n)}
    assert len(killer.killed) == 3, f"only {len(killer.killed)} kills landed"
    assert pool.restarts >= 1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("k", [1, 4])
def test_async_actors_never_run_more_than_max_concurrency(manager: RayManager, k: int) -> None:
    pool = manager.create_actor_pool(AsyncIO, {"wait_s": 0.01}, num_actors=2,
                                     max_concurrency=k)
    results = manager.process_in_parallel(pool, range(80), BatchConfig(batch_size=1))
    assert [value for value, _ in results] == [2 * v for v in range(80)]
    peak = max(seen for _, seen in results)
    assert peak <= k
    if k > 1:
        assert peak >= 2  # and the bound is used, not just kept
