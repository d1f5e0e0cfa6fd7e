"""Random sequences of what users do to a pool, checked by hypothesis.

Runs, ``imap`` steps, broadcasts, SIGKILL of an actor by PID, ``pool.shutdown()``
and ``manager.shutdown()``, each from the test's thread or from a second one,
in any order. After every step: it returned within a bound, every delivered
result was right and in its place, every error was a RayManagerError; after
every example: no actor of ours is left alive.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from engine_actors import Misbehave
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    precondition,
    rule,
    run_state_machine_as_test,
)
from procs import still_running

from raymanager import BatchConfig, RayManager, RayManagerError

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.usefixtures("ray_session")]

#: No step may take longer than this (a hang is a failure, not a slow test).
STEP_BOUND_S = 60.0
#: What the examples saw, summed; printed at the end of the test.
TOTALS = {"examples": 0, "steps": 0, "hangs": 0, "leaked_actors": 0, "wrong_results": 0}


def expected(values: range) -> list[list[int]]:
    return [[2 * v] for v in values]


def bounded(action: Callable[[], Any], *, in_thread: bool) -> Any:
    """Run ``action`` (here or in a second thread) and return or raise its outcome."""
    if not in_thread:
        return action()
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(("ok", action()))
        except BaseException as exc:
            outcome.append(("error", exc))

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(STEP_BOUND_S)
    if thread.is_alive():
        TOTALS["hangs"] += 1
        raise AssertionError("a step blocked past its bound")
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


class PoolUser(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        TOTALS["examples"] += 1
        self.seen_pids: set[int] = set()
        self.killed_pids: set[int] = set()
        self.stream: Iterator[Any] | None = None
        self.stream_expected: list[list[int]] = []
        self.stream_position = 0
        self._new_manager()

    def _new_manager(self) -> None:
        self.manager = RayManager()
        self.pool = self.manager.create_actor_pool(Misbehave, {}, num_actors=2)
        self.usable = True
        self._note_pids()

    def _note_pids(self) -> None:
        if self.usable:
            self.seen_pids.update(p for p in self.pool.pids() if p is not None)

    def _step(self, action: Callable[[], Any], in_thread: bool) -> Any:
        TOTALS["steps"] += 1
        try:
            return bounded(action, in_thread=in_thread)
        except RayManagerError:
            return None  # a documented outcome (busy, shut down, broken ...)

    # ------------------------------------------------------------- rules

    @rule(rows=st.integers(0, 40), batch_size=st.integers(1, 8), in_thread=st.booleans())
    def run(self, rows: int, batch_size: int, in_thread: bool) -> None:
        results = self._step(lambda: self.manager.process_in_parallel(
            self.pool, range(rows), BatchConfig(batch_size=batch_size)), in_thread)
        if results is not None:
            flat = [v for r in results for v in r]
            if flat != [2 * v for v in range(rows)]:
                TOTALS["wrong_results"] += 1
                raise AssertionError(f"wrong results {results}")
        self._note_pids()

    @rule(rows=st.integers(1, 60))
    @precondition(lambda self: self.stream is None)
    def open_stream(self, rows: int) -> None:
        self.stream = self._step(
            lambda: self.manager.imap(self.pool, range(rows), BatchConfig(batch_size=1)), False)
        self.stream_expected = expected(range(rows))
        self.stream_position = 0

    @rule(steps=st.integers(1, 10), in_thread=st.booleans())
    @precondition(lambda self: self.stream is not None)
    def step_stream(self, steps: int, in_thread: bool) -> None:
        stream = self.stream
        assert stream is not None

        def take() -> list[Any]:
            got = []
            for _ in range(steps):
                try:
                    got.append(next(stream))
                except StopIteration:
                    break
            return got

        got = self._step(take, in_thread)
        if got is None:  # the stream ended with one of our errors
            self.stream = None
            return
        want = self.stream_expected[self.stream_position:self.stream_position + len(got)]
        if got != want:
            TOTALS["wrong_results"] += 1
            raise AssertionError(f"stream gave {got}, expected {want}")
        self.stream_position += len(got)

    @rule()
    @precondition(lambda self: self.stream is not None)
    def close_stream(self) -> None:
        stream, self.stream = self.stream, None
        self._step(lambda: stream.close(), False)  # type: ignore[union-attr]

    @rule(in_thread=st.booleans())
    def broadcast(self, in_thread: bool) -> None:
        answers = self._step(lambda: self.pool.broadcast("echo", (5,)), in_thread)
        if answers is not None:
            assert answers == [5, 5]

    @rule(slot=st.integers(0, 1))
    def kill_actor(self, slot: int) -> None:
        if not self.usable:
            return
        pid = self.pool.pids()[slot]
        # A pid killed before may still be listed until the pool hears of the
        # death: it is gone (or, once reaped, could be anyone's), never kill twice.
        if pid is not None and pid not in self.killed_pids:
            self.seen_pids.add(pid)
            self.killed_pids.add(pid)
            os.kill(pid, signal.SIGKILL)

    @rule(in_thread=st.booleans())
    def shut_pool(self, in_thread: bool) -> None:
        self._note_pids()
        self._step(self.pool.shutdown, in_thread)
        self.usable = False

    @rule(in_thread=st.booleans())
    def shut_manager(self, in_thread: bool) -> None:
        self._note_pids()
        self._step(self.manager.shutdown, in_thread)
        self.usable = False

    @rule()
    @precondition(lambda self: not self.usable)
    def start_again(self) -> None:
        if self.stream is not None:
            self.stream = None
        self.manager.shutdown()
        self._check_no_actor_left()
        self._new_manager()

    # ------------------------------------------------------------- checks

    def _check_no_actor_left(self) -> None:
        left = still_running(self.seen_pids, wait_s=20)
        TOTALS["leaked_actors"] += len(left)
        assert not left, f"actors left alive after shutdown: {left}"

    def teardown(self) -> None:
        if self.stream is not None:
            close = getattr(self.stream, "close", None)
            if close is not None:
                close()
        self._note_pids()
        self.manager.shutdown()
        self._check_no_actor_left()


def test_random_sequences_of_user_actions() -> None:
    run_state_machine_as_test(PoolUser, settings=settings(
        max_examples=int(os.environ.get("RAYMANAGER_STATEFUL_EXAMPLES", "12")),
        stateful_step_count=10,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    ))
    print("stateful totals:", TOTALS)
    assert TOTALS["examples"] >= 1
    assert TOTALS["hangs"] == TOTALS["leaked_actors"] == TOTALS["wrong_results"] == 0
