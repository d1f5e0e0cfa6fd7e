"""The engine's pure policies, called directly (no Ray, no simulator).

Their docstring examples are run here too, so an example that goes stale
fails CI instead of misleading a reader.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

from raymanager.engine import policy

PURE_MODULES = ["raymanager.engine.policy", "raymanager.engine.run", "raymanager.engine.slots",
                "raymanager.engine.pool", "raymanager.engine.loop",
                "raymanager.engine.wire", "raymanager.engine.simulator", "raymanager.engine.run_io",
                "raymanager.batching", "raymanager.config",
                "raymanager.journal.codec", "raymanager.journal.fingerprints",
                "raymanager.rows", "raymanager.mapped_file"]


@pytest.mark.parametrize("name", PURE_MODULES)
def test_the_docstring_examples_of_pure_modules_hold(name: str) -> None:
    module = importlib.import_module(name)
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_policy_has_docstring_examples() -> None:
    # The test above passes on a module without examples: make sure it has some.
    assert doctest.testmod(policy).attempted >= 4


def _depth(*, width: int, size: int, remaining: int | None, seconds: float = 0.04) -> int:
    return policy.queue_depth(max_concurrency=1, seconds_per_batch=seconds,
                              remaining=remaining, width=width, size=size)


def test_long_batches_on_few_actors_queue_nothing_in_the_tail() -> None:
    # 40 ms batches on 2 actors: a queued call could keep an idle actor waiting.
    assert _depth(width=2, size=5, remaining=10_000) == 2
    assert _depth(width=2, size=5, remaining=10) == 1
    assert _depth(width=2, size=5, remaining=None) == 1


def test_a_wide_pool_queues_behind_calls_shorter_than_the_drivers_turn() -> None:
    # 64 actors: serving each once costs the driver ~DRIVER_SHARE x 64 calls'
    # fixed cost, longer than these calls, so an actor with nothing queued
    # would wait for its turn at every call's end.
    turn = policy.DRIVER_SHARE * 64 * policy.DRIVER_SECONDS_PER_CALL
    short = int(turn / 0.04)
    assert _depth(width=64, size=short, remaining=10) == 2
    assert _depth(width=64, size=short, remaining=None) == 2
    # A call longer than that turn is back to the tail rule.
    assert _depth(width=64, size=short * 4, remaining=10) == 1


def test_concurrency_and_untimed_batches_set_the_depth() -> None:
    assert policy.queue_depth(max_concurrency=3, seconds_per_batch=None, remaining=None,
                              width=64, size=1) == 3
    assert policy.queue_depth(max_concurrency=1, seconds_per_batch=None, remaining=None,
                              width=64, size=1) == 1


def test_a_wide_pools_tail_calls_are_no_shorter_than_the_driver_takes_to_send_them() -> None:
    # 10,000 actors, 100 ms batches, one batch per actor left: shares of what
    # is left fell to one batch per call, and each actor waited a whole round
    # of the driver (10,000 calls) for its next 100 ms.
    per_batch, remaining = 0.1, 10_000
    size = policy.group_size(seconds_per_batch=per_batch, width=10_000, remaining=remaining,
                             timeout_s=None, batch_nbytes=None, max_inflight_bytes=1 << 30,
                             largest_returned=1)
    calls_left = -(-remaining // size)
    assert calls_left * policy.DRIVER_SECONDS_PER_CALL <= size * per_batch
    # A small pool's tail is still cut to even shares.
    assert policy.group_size(seconds_per_batch=0.001, width=2, remaining=100, timeout_s=None,
                             batch_nbytes=None, max_inflight_bytes=1 << 30,
                             largest_returned=1) == 25
