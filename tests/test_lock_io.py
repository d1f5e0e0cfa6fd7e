"""A run's own I/O never holds the pool's lock (real Ray, the session's local instance).

One run whose input generator is slow, or whose journal writes are slow, must
not hold up another run, a submission or a broadcast sharing its pool: the
adapter reads the source, writes the journal and gets replies with the
pool's lock released (see ``pool/dispatch.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_actors import Misbehave

from raymanager import BatchConfig, RayManager
from raymanager.journal import Journal

#: Each batch of the other run and of a submission takes this long on its actor.
BATCH_S = 0.01
#: What a submission may wait beyond its own batch: one poll of the submission
#: thread (0.2 s), Ray's call latency, and a machine shared with other work.
SLACK_S = 1.0
#: The other run: 200 batches of BATCH_S on two actors take ~1-2 s alone.
OTHER_RUN_LIMIT_S = 4.0


def _slow_items(count: int, seconds: float, first_read: threading.Event,
                ended: threading.Event) -> Iterator[list[int]]:
    """A user's generator that takes ``seconds`` to produce each item."""
    for value in range(count):
        time.sleep(seconds)
        first_read.set()
        yield [value]
    ended.set()


def _in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``target`` in a thread; its result (or error) and end time in the dict."""
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            out["result"] = target()
        except BaseException as exc:  # re-raised by the test
            out["error"] = exc
        out["ended"] = time.monotonic()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, out


def _joined(thread: threading.Thread, out: dict[str, Any], timeout: float) -> Any:
    thread.join(timeout)
    assert not thread.is_alive(), "the run did not finish"
    if "error" in out:
        raise out["error"]
    return out["result"]


def _other_run_and_submits(manager: RayManager, pool: Any,
                           busy: threading.Event) -> tuple[float, list[float]]:
    """While ``busy`` stays clear: submit three items one by one, then run B
    (200 batches). Returns B's seconds and each submission's seconds.

    The submissions go first, so none waits behind a call of run B on its
    actor: what they measure is the pool's lock, not queueing.
    """
    latencies = []
    for value in range(3):
        sent = time.monotonic()
        assert pool.submit([value]).result(timeout=60) == [2 * value]
        latencies.append(time.monotonic() - sent)
    started = time.monotonic()
    assert manager.process_in_parallel(pool, range(200), BatchConfig(batch_size=1)) == [
        [2 * v] for v in range(200)]
    other_s = time.monotonic() - started
    assert not busy.is_set(), (
        f"run B ({other_s:.1f} s) and the submissions ({latencies}) waited for run A to end")
    print(f"run B: {other_s:.2f} s; submissions: {[round(s, 3) for s in latencies]} s")
    return other_s, latencies


@pytest.mark.slow
def test_a_slow_generator_does_not_hold_up_other_runs_or_submissions(
        manager: RayManager) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": BATCH_S}, num_actors=2)
    first_read, ended = threading.Event(), threading.Event()
    # Run A: its generator sleeps 1 s per item, 8 items.
    run_a, out_a = _in_thread(lambda: manager.process_in_parallel(
        pool, _slow_items(8, 1.0, first_read, ended), BatchConfig(batch_size=1)))
    assert first_read.wait(30)
    other_s, latencies = _other_run_and_submits(manager, pool, ended)
    assert other_s < OTHER_RUN_LIMIT_S, f"run B took {other_s:.1f} s beside a slow generator"
    assert max(latencies) < BATCH_S + SLACK_S, f"submissions took {latencies}"
    assert _joined(run_a, out_a, 60) == [[2 * v] for v in range(8)]


@pytest.mark.slow
def test_a_slow_journal_does_not_hold_up_other_runs_or_submissions(
        manager: RayManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = manager.create_actor_pool(Misbehave, {"sleep_s": BATCH_S}, num_actors=2)
    wrote, done = threading.Event(), threading.Event()
    write = Journal.write

    def slow_write(journal: Journal, index: int, result: Any) -> None:
        time.sleep(1.0)  # a disk that takes a second per write (an fsync, say)
        write(journal, index, result)
        wrote.set()

    monkeypatch.setattr(Journal, "write", slow_write)
    journal = tmp_path / "a.journal"

    def run_a() -> Any:
        try:
            return manager.process_in_parallel(pool, range(8), BatchConfig(batch_size=1),
                                               journal=journal)
        finally:
            done.set()

    thread_a, out_a = _in_thread(run_a)
    assert wrote.wait(30)
    other_s, latencies = _other_run_and_submits(manager, pool, done)
    assert other_s < OTHER_RUN_LIMIT_S, f"run B took {other_s:.1f} s beside a slow journal"
    assert max(latencies) < BATCH_S + SLACK_S, f"submissions took {latencies}"
    assert _joined(thread_a, out_a, 60) == [[2 * v] for v in range(8)]
    # Every result of run A was journaled: a resume reads them all back.
    monkeypatch.setattr(Journal, "write", write)
    ran = pool.batches_done
    assert manager.process_in_parallel(pool, range(8), BatchConfig(batch_size=1),
                                       journal=journal) == [[2 * v] for v in range(8)]
    assert pool.batches_done == ran  # nothing ran again
