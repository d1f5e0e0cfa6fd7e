"""Simulated schedules for the engine model: how they are drawn, run and shrunk.

Shared by ``tests/test_engine_model.py`` (CI), ``tests/test_engine_mutations.py``
and ``benchmarks/engine_model_run.py`` (the big run). A schedule is a dict of
:func:`raymanager.engine.simulator.simulate`'s arguments, with the batch
durations and ``on_error`` named (so it prints and stores as JSON):

    >>> import logging
    >>> logging.getLogger("raymanager").setLevel(logging.ERROR)
    >>> run_schedule(seeded_schedule("ci", 0)).steps > 0
    True
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import strategies as st

from raymanager.engine.simulator import Outcome, simulate

DURATIONS: dict[str, Callable[[int], float]] = {
    "instant": lambda i: 0.00001,
    "uneven": lambda i: 0.001 + (i * 7919 % 5) / 1000,
    "long": lambda i: 0.03 + (i * 31 % 4) / 100,
    "mixed": lambda i: 0.2 if i % 17 == 3 else 0.0005,
}


def retry_then_raise(error: Any) -> str:
    return "retry"


def continue_odd(error: Any) -> str:
    return "continue" if error.index % 2 else "raise"


ON_ERROR: dict[str, Any] = {"raise": "raise", "continue": "continue",
                            "retry": retry_then_raise, "callable": continue_odd}


@st.composite
def schedules(draw: st.DrawFn) -> dict[str, Any]:
    """Hypothesis's schedules (it shrinks a counter-example by itself)."""
    num_batches = draw(st.integers(0, 120))
    num_actors = draw(st.integers(1, 5))
    indices = st.integers(0, max(0, num_batches - 1))
    faults = st.dictionaries(indices, st.integers(1, 5), max_size=4) if num_batches else st.just({})
    timeout_s = draw(st.sampled_from([None, None, 0.05, 0.5, 2.0]))
    stop = draw(st.one_of(st.none(), st.integers(1, max(1, num_batches))))
    return {
        "num_batches": num_batches,
        "num_actors": num_actors,
        "num_parallel": draw(st.integers(1, num_actors)),
        "seed": draw(st.integers(0, 2**16)),
        "source": draw(st.sampled_from(["list", "iterator", "generator"])),
        "durations": draw(st.sampled_from(sorted(DURATIONS))),
        "raise_at": draw(faults),
        "kill_at": draw(faults),
        # A hang only ends by timeout_s: without one it would rightly wait forever.
        "hang_at": draw(faults) if timeout_s is not None else {},
        "external_kills": draw(st.integers(0, 3)),
        "drains": draw(st.sampled_from([0, 0, 1, 2])),
        "spares": draw(st.sampled_from([0, 0, 1, 2])),
        "max_batches_per_actor": draw(st.sampled_from([None, None, None, 1, 4, 25])),
        "on_error": draw(st.sampled_from(sorted(ON_ERROR))),
        "max_retries": draw(st.integers(0, 4)),
        "timeout_s": timeout_s,
        "max_concurrency": draw(st.sampled_from([1, 1, 2, 3])),
        "ordered": draw(st.booleans()),
        "stop_after": stop if num_batches else None,
        "start_delay": draw(st.sampled_from([0.0, 0.2, 1.0])),
        "runs": draw(st.sampled_from([1, 1, 2])),
        # An elastic pool: from num_actors up to this many.
        "max_actors": num_actors + draw(st.sampled_from([0, 0, 1, 3])),
        # Starts that fail: their slots back off, then start again.
        "failed_starts": draw(st.sampled_from([0, 0, 0, 1, 3])),
        "resizes": draw(st.sampled_from([0, 0, 0, 1, 2])),
        "interrupt": draw(st.booleans()),
    }


def random_schedule(rng: random.Random) -> dict[str, Any]:
    """One schedule drawn from ``rng``, from the same ranges as :func:`schedules`.

    Without hypothesis's bookkeeping (about 3x cheaper per schedule), for the
    seeded loops: schedule ``i`` of seed ``s`` is
    ``random_schedule(random.Random(f"{s}:{i}"))``, so any one re-runs alone.
    """
    num_batches = rng.randint(0, 120)
    num_actors = rng.randint(1, 5)
    timeout_s = rng.choice([None, None, 0.05, 0.5, 2.0])

    def faults() -> dict[int, int]:
        if not num_batches:
            return {}
        return {rng.randrange(num_batches): rng.randint(1, 5) for _ in range(rng.randint(0, 4))}

    stop = rng.choice([None, rng.randint(1, max(1, num_batches))])
    return {
        "num_batches": num_batches,
        "num_actors": num_actors,
        "num_parallel": rng.randint(1, num_actors),
        "seed": rng.randint(0, 2**16),
        "source": rng.choice(["list", "iterator", "generator"]),
        "durations": rng.choice(sorted(DURATIONS)),
        "raise_at": faults(),
        "kill_at": faults(),
        "hang_at": faults() if timeout_s is not None else {},
        "external_kills": rng.randint(0, 3),
        "drains": rng.choice([0, 0, 1, 2]),
        "spares": rng.choice([0, 0, 1, 2]),
        "max_batches_per_actor": rng.choice([None, None, None, 1, 4, 25]),
        "on_error": rng.choice(sorted(ON_ERROR)),
        "max_retries": rng.randint(0, 4),
        "timeout_s": timeout_s,
        "max_concurrency": rng.choice([1, 1, 2, 3]),
        "ordered": rng.random() < 0.5,
        "stop_after": stop if num_batches else None,
        "start_delay": rng.choice([0.0, 0.2, 1.0]),
        "runs": rng.choice([1, 1, 2]),
        "max_actors": num_actors + rng.choice([0, 0, 1, 3]),
        # Drawn last, so the draws above stay what they were before these existed.
        "failed_starts": rng.choice([0, 0, 0, 1, 3]),
        "resizes": rng.choice([0, 0, 0, 1, 2]),
        "interrupt": rng.random() < 0.3,
    }


def seeded_schedule(seed: int | str, index: int) -> dict[str, Any]:
    """Schedule ``index`` of the seeded stream ``seed``."""
    return random_schedule(random.Random(f"{seed}:{index}"))


def run_schedule(schedule: dict[str, Any], max_steps: int = 200_000) -> Outcome:
    """Simulate one schedule; a broken promise raises ``Violation``."""
    params = dict(schedule)
    params["batch_seconds"] = DURATIONS[params.pop("durations")]
    params["on_error"] = ON_ERROR[params["on_error"]]
    return simulate(**params, max_steps=max_steps)


def fails(schedule: dict[str, Any]) -> BaseException | None:
    """The exception a schedule raises (a Violation, or anything else), or None."""
    try:
        run_schedule(schedule)
    except Exception as error:  # any exception is a finding: the engine's or ours
        return error
    return None


def _simpler(schedule: dict[str, Any]) -> list[dict[str, Any]]:
    """Schedules one step simpler than ``schedule`` (the greedy shrinker's moves)."""
    out = []

    def with_(**changes: Any) -> None:
        candidate = {**schedule, **changes}
        n = candidate["num_batches"]
        for name in ("raise_at", "kill_at", "hang_at"):
            candidate[name] = {i: k for i, k in candidate[name].items() if i < n}
        if candidate["timeout_s"] is None:
            candidate["hang_at"] = {}
        if candidate["stop_after"] is not None:
            candidate["stop_after"] = min(candidate["stop_after"], max(1, n))
        candidate["num_parallel"] = min(candidate["num_parallel"], candidate["num_actors"])
        candidate["max_actors"] = max(candidate["max_actors"], candidate["num_actors"])
        if candidate != schedule:
            out.append(candidate)

    n = schedule["num_batches"]
    for smaller in (n // 2, n - 1):
        if 0 <= smaller < n:
            with_(num_batches=smaller)
    for name in ("raise_at", "kill_at", "hang_at"):
        for index, tries in schedule[name].items():
            rest = {i: k for i, k in schedule[name].items() if i != index}
            with_(**{name: rest})
            if tries > 1:
                with_(**{name: {**rest, index: 1}})
    simple: dict[str, Any] = {
        "runs": 1, "external_kills": 0, "drains": 0, "spares": 0, "failed_starts": 0,
        "resizes": 0, "interrupt": False, "stop_after": None,
        "max_batches_per_actor": None,
        "max_concurrency": 1, "source": "list", "on_error": "raise", "ordered": True,
        "start_delay": 0.0, "durations": "uneven", "seed": 0, "timeout_s": None,
        "max_actors": schedule["num_actors"], "num_parallel": schedule["num_actors"],
    }
    for name, value in simple.items():
        with_(**{name: value})
    for name in ("external_kills", "drains", "spares", "failed_starts", "resizes",
                 "max_retries", "num_actors", "runs"):
        if schedule.get(name, 0) > (1 if name in ("num_actors", "runs") else 0):
            with_(**{name: schedule[name] - 1})
    return out


def shrink(schedule: dict[str, Any], *, budget: int = 400) -> tuple[dict[str, Any], str]:
    """A smaller schedule that still fails with the same kind of exception, greedily.

    Returns it and its exception's text. ``budget`` bounds the schedules tried.
    """
    error = fails(schedule)
    assert error is not None, "shrink a failing schedule"
    kind = type(error)
    tried = 0
    improved = True
    while improved and tried < budget:
        improved = False
        for candidate in _simpler(schedule):
            tried += 1
            found = fails(candidate)
            if found is not None and type(found) is kind:
                schedule, error, improved = candidate, found, True
                break
            if tried >= budget:
                break
    return schedule, f"{type(error).__name__}: {error}"


@pytest.fixture(autouse=True)
def quiet_engine() -> Iterator[None]:
    """Retries log a warning each: thousands of schedules would flood the output.
    Autouse in every test module that imports it."""
    logger = logging.getLogger("raymanager")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)
