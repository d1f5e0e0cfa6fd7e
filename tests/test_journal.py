"""Durable runs: the journal keeps results without pickle, refuses stale ones, and
survives SIGKILLed drivers losing at most its last uncommitted group."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
from journal_sigkill import marks_of, recorded

import raymanager.journal.fingerprints as journal_fingerprints
import raymanager.journal.store as journal_store
from raymanager import BatchConfig, RayManager
from raymanager.journal import NOT_RECORDED, Journal, JournalError, fingerprint, input_digest

TESTS = Path(__file__).parent


# --------------------------------------------------------------------------- storage


def test_results_round_trip_without_pickle(tmp_path: Path) -> None:
    path = tmp_path / "run.journal"
    result = {"a": np.arange(6).reshape(2, 3), "t": (1, "x", None), "s": np.float32(1.5),
              "nested": [{"__ndarray__": "tricky key"}], "f": 2.5, "b": True,
              "empty": np.zeros((0, 3), dtype=np.int16), "nan": float("nan")}
    with Journal.open(path, {"rows": 3}) as journal:
        journal.write(0, result)
        journal.write(1, 7)
    with Journal.open(path, {"rows": 3}) as again:
        assert list(again.indices()) == [0, 1]
        read = again.replay(0)
        assert again.replay(1) == 7
        assert again.replay(2) is NOT_RECORDED
    assert np.array_equal(read["a"], result["a"]) and read["t"] == (1, "x", None)
    assert read["s"] == np.float32(1.5) and type(read["s"]) is np.float32
    assert read["nested"] == [{"__ndarray__": "tricky key"}]
    assert read["f"] == 2.5 and read["b"] is True and np.isnan(read["nan"])
    assert read["empty"].shape == (0, 3) and read["empty"].dtype == np.int16
    # One file once closed (the WAL is folded in; exclusive locking: no -shm file).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.journal"]
    # At rest: JSON and .npy records, readable with allow_pickle=False.
    with sqlite3.connect(path) as raw:
        structure, arrays = raw.execute(
            "SELECT structure, arrays FROM batches WHERE idx = 0").fetchone()
    assert json.loads(structure)["a"] == {"__ndarray__": 0}
    import io
    first = np.lib.format.read_array(io.BytesIO(arrays), allow_pickle=False)
    assert np.array_equal(first, result["a"])


def test_a_result_that_would_need_pickle_is_refused(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", {}) as journal:
        with pytest.raises(JournalError, match="batch 3's result cannot be kept"):
            journal.write(3, {"model": object()})
        with pytest.raises(JournalError, match="keys that are not strings"):
            journal.write(4, {1: "a"})
        with pytest.raises(JournalError, match="array of Python objects"):
            journal.write(5, np.array([object()]))
    assert recorded(tmp_path / "j", {}) == []  # nothing half-written


def test_a_journal_for_other_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal.open(path, fingerprint(np.arange(10), 2, 10)).close()
    middle = np.arange(10)
    middle[5] = -1
    for other, what in (
        (fingerprint(middle, 2, 10), "the array's content"),
        (fingerprint(np.arange(10), 5, 10), "the batch size"),
        (fingerprint(np.arange(10.0), 2, 10), "dtype and shape"),
        (fingerprint(list(range(10)), 2, 10), "the input's type"),
    ):
        with pytest.raises(JournalError, match="made for other data") as info:
            Journal.open(path, other)
        assert what in str(info.value) and str(path) in str(info.value)


def test_a_corrupt_record_says_so(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path, {}) as journal:
        journal.write(0, np.arange(3))
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE batches SET arrays = ? WHERE idx = 0", (b"garbage",))
    raw.close()
    with Journal.open(path, {}) as journal, pytest.raises(JournalError, match="corrupt") as info:
        journal.replay(0)
    assert "allow_pickle" not in str(info.value) and str(path) in str(info.value)


def test_the_old_format_is_refused_naming_its_version(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "batches").mkdir(parents=True)
    (old / "meta.json").write_text(json.dumps({"version": 1, "fingerprint": {}}))
    (old / "batches" / "0.npz").write_bytes(b"PK")
    with pytest.raises(JournalError, match=r"in format 1 .*reads format 2 only"):
        Journal.open(old, {})
    assert sorted(p.name for p in old.rglob("*")) == ["0.npz", "batches", "meta.json"]


def test_what_is_not_a_journal_is_refused_and_left_alone(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="is a folder; journal= names a file"):
        Journal.open(tmp_path, {})
    text = tmp_path / "notes.txt"
    text.write_text("mine")
    with pytest.raises(JournalError, match="not an SQLite database"):
        Journal.open(text, {})
    assert text.read_text() == "mine"
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as raw:
        raw.execute("CREATE TABLE users (name TEXT)")
    raw.close()
    before = other.read_bytes()
    with pytest.raises(JournalError, match="database of another program"):
        Journal.open(other, {})
    assert other.read_bytes() == before  # not even switched to WAL


def test_a_journal_records_one_run_at_a_time(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", {}), pytest.raises(JournalError, match="in use by another"):
        Journal.open(tmp_path / "j", {})
    Journal.open(tmp_path / "j", {}).close()  # free again once closed


def test_a_full_disk_is_a_journal_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal.open(path, {})
    # SQLite's own full-database condition (SQLITE_FULL), as a full disk raises it.
    journal._connection.execute("PRAGMA max_page_count = 16")
    for index in range(4):
        journal.write(index, np.zeros(4096))  # 32 KiB each: more than 16 pages in all
    with pytest.raises(JournalError, match=r"cannot write the journal at .*full") as info:
        journal.commit()
    assert str(path) in str(info.value)
    journal.close()


def test_an_unwritable_path_is_a_journal_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "run.journal"  # a folder that is a file: even root fails
    with pytest.raises(JournalError, match="cannot open the journal at") as info:
        Journal.open(path, {})
    assert str(path) in str(info.value)


CRASH = textwrap.dedent(
    """
    import os, signal, sys
    import raymanager.journal.store as j

    j.COMMIT_SECONDS = 3600  # groups end where this script says
    journal = j.Journal.open(sys.argv[1], {"rows": 20})
    for index in range(10):
        journal.write(index, index)
    journal.commit()
    j.COMMIT_MAX_BATCHES = 4  # the 4th write from here commits a group
    for index in range(10, 16):
        journal.write(index, index)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_crash_loses_only_the_group_not_yet_committed(tmp_path: Path) -> None:
    path = tmp_path / "j"
    done = subprocess.run([sys.executable, "-c", CRASH, str(path)], capture_output=True,
                          timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert recorded(path, {"rows": 20}) == list(range(14))  # 14, 15: their group never came


def test_replay_streams_the_journal_in_bounded_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_store, "READ_PAGE_BYTES", 2 * 1024 * 1024)
    path = tmp_path / "j"
    with Journal.open(path, {}) as journal:
        for index in range(12):
            journal.write(index, np.full(128 * 1024, index, dtype=np.float64))  # 1 MiB
    with Journal.open(path, {}) as journal:
        pages = []
        for index in range(12):
            assert journal.resuming
            result = journal.replay(index)
            assert result.shape == (128 * 1024,) and result[0] == index
            pages.append(len(journal._page))
        assert journal.replay(12) is NOT_RECORDED and not journal.resuming
    assert max(pages) <= 2  # never more than ~READ_PAGE_BYTES of records held


def test_replayed_reads_and_resets_its_flag_under_the_journal_lock(tmp_path: Path) -> None:
    # replay() sets the flag under the lock from the run's thread; replayed()
    # reads and resets it. Without the lock a replay between its read and its
    # reset would be lost (the run would then wait on actors for nothing):
    # while the lock is held elsewhere, replayed() must wait for it.
    path = tmp_path / "j"
    with Journal.open(path, {}) as journal:
        journal.write(0, 1)
    with Journal.open(path, {}) as journal:
        assert journal.replay(0) == 1
        answers: list[bool] = []
        with journal._lock:
            reader = threading.Thread(target=lambda: answers.append(journal.replayed()))
            reader.start()
            reader.join(timeout=0.2)
            assert reader.is_alive() and answers == []  # it waits for the lock
        reader.join(timeout=10)
        assert answers == [True] and journal.replayed() is False


def test_a_recorded_batch_whose_input_changed_is_named(tmp_path: Path) -> None:
    path = tmp_path / "j"
    rows = {0: [1, 2], 1: [3, 4], 2: [5, 6]}
    with Journal.open(path, {}, digest_of=lambda i: input_digest(rows[i])) as journal:
        for index in rows:
            journal.write(index, sum(rows[index]))
    rows[1] = [3, 5]
    with Journal.open(path, {}, digest_of=lambda i: input_digest(rows[i])) as journal:
        assert journal.replay(0) == 3
        with pytest.raises(JournalError, match=r"batch 1's input rows differ .* stale"):
            journal.replay(1)


# --------------------------------------------------------------------------- input hashes


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Plain:
    def __init__(self, value: int) -> None:
        self.value = value


class Opaque:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


def test_input_digest_tells_content_and_types_apart() -> None:
    distinct = [1, 1.0, "1", True, None, b"1", [1], (1,), {"a": 1}, {1}, np.int64(1),
                np.array([1]), np.array([1.0]), np.array([[1]]), [1, 2], ["1, 2"],
                range(0, 2), Point(1, 2.0), Point(1, 2.5), Plain(1), Plain(2)]
    digests = [input_digest(value) for value in distinct]
    assert len(set(digests)) == len(distinct)
    assert input_digest([Point(1, 2.0), {"k": np.arange(3)}]) == input_digest(
        [Point(1, 2.0), {"k": np.arange(3)}])
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    changed = frame.copy()
    changed.loc[1, "b"] = "q"
    assert input_digest(frame) == input_digest(frame.copy()) != input_digest(changed)
    with pytest.raises(TypeError, match="content cannot be seen"):
        input_digest([Opaque(1)])


DIGESTS = "from raymanager.journal import input_digest; " \
          "print(input_digest([{'b', 'a', 'c'}, {'y': 1, 'x': 2}, frozenset({'q', 'r'})]).hex())"


def test_input_digest_is_the_same_in_every_process() -> None:
    """String hashing is salted per process: sets and dicts must not hash in their order."""
    outs = {subprocess.run([sys.executable, "-c", DIGESTS], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2", "3", "4")}
    assert len(outs) == 1


# --------------------------------------------------------------------------- with Ray


def test_a_changed_generator_is_refused_at_its_first_changed_batch(
    manager: RayManager, tmp_path: Path
) -> None:
    """The issue's case: the same journal with a generator of other content."""
    from journal_actors import Total

    marks = tmp_path / "marks"
    marks.mkdir()
    path = tmp_path / "gen.journal"
    config = BatchConfig(batch_size=2)
    first = manager.create_actor_pool(Total, {"marks": str(marks), "run": "a"}, num_actors=2)
    assert manager.process_in_parallel(first, (x for x in range(10)), config,
                                       journal=path) == [1, 5, 9, 13, 17]
    again = manager.create_actor_pool(Total, {"marks": str(marks), "run": "b"}, num_actors=2)
    assert manager.process_in_parallel(again, (x for x in range(10)), config,
                                       journal=path) == [1, 5, 9, 13, 17]
    assert marks_of(marks, "b") == set()  # all read back, none run again
    with pytest.raises(JournalError, match=r"batch 0's input rows differ") as info:
        manager.process_in_parallel(again, (x * 100 for x in range(10)), config, journal=path)
    assert str(path) in str(info.value)
    with pytest.raises(JournalError, match=r"batch 3's input rows differ"):
        manager.process_in_parallel(again, (-x if x == 7 else x for x in range(10)), config,
                                    journal=path)
    assert marks_of(marks, "b") == set()


def test_a_long_list_changed_in_the_middle_is_refused_at_that_batch(
    manager: RayManager, tmp_path: Path
) -> None:
    from journal_actors import Total

    pool = manager.create_actor_pool(Total, {}, num_actors=2)
    path = tmp_path / "list.journal"
    data = list(range(100_000))
    config = BatchConfig(batch_size=1000)
    expected = [sum(range(i * 1000, (i + 1) * 1000)) for i in range(100)]
    assert manager.process_in_parallel(pool, data, config, journal=path) == expected
    assert manager.process_in_parallel(pool, list(data), config, journal=path) == expected
    data[50_500] = -1
    with pytest.raises(JournalError, match=r"batch 50's input rows differ"):
        manager.process_in_parallel(pool, data, config, journal=path)


@pytest.mark.parametrize("nbytes", [8 * 1024, 1024 * 1024], ids=["inline", "shared"])
def test_an_array_changed_in_the_middle_is_refused(
    manager: RayManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nbytes: int
) -> None:
    from journal_actors import Total

    pool = manager.create_actor_pool(Total, {}, num_actors=2)
    data = np.arange(nbytes // 8, dtype=np.int64)
    changed = data.copy()
    changed[len(data) // 2] = -1
    config = BatchConfig(batch_size=len(data) // 16)
    middle = (len(data) // 2) // config.batch_size
    # Hashed whole at open (cheap: up to HASH_WHOLE_BYTES) ...
    path = tmp_path / "whole.journal"
    manager.process_in_parallel(pool, data, config, journal=path)
    with pytest.raises(JournalError, match="the array's content"):
        manager.process_in_parallel(pool, changed, config, journal=path)
    # ... and batch by batch when it is larger.
    monkeypatch.setattr(journal_fingerprints, "HASH_WHOLE_BYTES", 1024)
    path = tmp_path / "batches.journal"
    expected = manager.process_in_parallel(pool, data, config, journal=path)
    assert manager.process_in_parallel(pool, data.copy(), config, journal=path) == expected
    with pytest.raises(JournalError, match=rf"batch {middle}'s input rows differ"):
        manager.process_in_parallel(pool, changed, config, journal=path)


def test_a_stopped_run_resumes_without_running_recorded_batches(
    manager: RayManager, tmp_path: Path
) -> None:
    from journal_actors import Total

    marks = tmp_path / "marks"
    marks.mkdir()
    path = tmp_path / "run.journal"
    data = list(range(60))
    config = BatchConfig(batch_size=1)
    first = manager.create_actor_pool(
        Total, {"marks": str(marks), "run": "a", "sleep_s": 0.01}, num_actors=2)
    stream = manager.imap(first, data, config, journal=path)
    assert [next(stream) for _ in range(20)] == list(range(20))
    stream.close()  # commits what it has
    kept = set(recorded(path, fingerprint(data, 1, 60)))
    assert set(range(20)) <= kept < set(range(60))
    second = manager.create_actor_pool(Total, {"marks": str(marks), "run": "b"}, num_actors=2)
    assert manager.process_in_parallel(second, data, config, journal=path) == data
    assert not marks_of(marks, "b") & kept
    assert marks_of(marks, "b") | kept == set(range(60))


def test_a_stream_holds_its_journal_until_done_or_dropped(
    manager: RayManager, tmp_path: Path
) -> None:
    from journal_actors import Total

    pool = manager.create_actor_pool(Total, {}, num_actors=1)
    other = manager.create_actor_pool(Total, {}, num_actors=1)
    path, config = tmp_path / "run.journal", BatchConfig(batch_size=1)
    stream = manager.imap(pool, [1, 2, 3], config, journal=path)
    with pytest.raises(JournalError, match="in use by another run"):
        manager.process_in_parallel(other, [1, 2, 3], config, journal=path)
    del stream  # never started: dropping it frees the pool and the journal
    assert manager.process_in_parallel(other, [1, 2, 3], config, journal=path) == [1, 2, 3]
    assert manager.process_in_parallel(pool, [1, 2, 3], config, journal=path) == [1, 2, 3]


# --------------------------------------------------------------------------- SIGKILL loop


@pytest.mark.slow
def test_sigkilled_drivers_lose_nothing_and_rerun_at_most_their_last_group(
    ray_session: RayManager, tmp_path: Path
) -> None:
    from journal_sigkill import sigkill_loop

    counts = sigkill_loop(ray.get_runtime_context().gcs_address, tmp_path, kills=20,
                          rows=2000, seed=19)
    assert counts["lost"] == counts["wrong"] == 0 and counts["commit_groups"] > 0


@pytest.mark.slow
def test_the_docs_example_runs_as_written(tmp_path: Path) -> None:
    """docs/journal.md's resume example, in a fresh interpreter with its own Ray."""
    page = (TESTS.parent / "docs" / "journal.md").read_text()
    blocks = [code for lang, code in re.findall(r"^```(\w+)\n(.*?)^```", page, re.S | re.M)
              if lang == "python" and "RayManager()" in code]
    assert len(blocks) == 1
    done = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "batch 12's input rows differ" in done.stdout
