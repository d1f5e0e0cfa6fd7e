"""Durable runs: a journal of finished batches survives a SIGKILLed driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from procs import still_running

from raymanager.journal import Journal, JournalError, fingerprint

TESTS = Path(__file__).parent


def test_results_round_trip_without_pickle(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j", {"rows": 3})
    result = {"a": np.arange(6).reshape(2, 3), "t": (1, "x", None), "s": np.float32(1.5),
              "nested": [{"__ndarray__": "tricky key"}], "f": 2.5, "b": True}
    journal.write(0, result)
    again = Journal.open(tmp_path / "j", {"rows": 3})
    assert again.done == {0}
    read = again.read(0)
    assert np.array_equal(read["a"], result["a"]) and read["t"] == (1, "x", None)
    assert read["s"] == np.float32(1.5) and type(read["s"]) is np.float32
    assert read["nested"] == [{"__ndarray__": "tricky key"}]
    assert read["f"] == 2.5 and read["b"] is True
    with np.load(tmp_path / "j" / "batches" / "0.npz", allow_pickle=False) as stored:
        assert "__json__" in stored.files  # readable with allow_pickle=False


def test_a_result_that_would_need_pickle_is_refused(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, {})
    with pytest.raises(JournalError, match="batch 3's result cannot be kept"):
        journal.write(3, {"model": object()})
    with pytest.raises(JournalError, match="keys that are not strings"):
        journal.write(4, {1: "a"})
    assert not list((tmp_path / "batches").iterdir())  # nothing half-written


def test_a_journal_for_other_data_is_refused(tmp_path: Path) -> None:
    first = fingerprint(np.arange(10), 2, 10)
    Journal.open(tmp_path, first)
    for other in (fingerprint(np.arange(1, 11), 2, 10), fingerprint(np.arange(10), 5, 10),
                  fingerprint(list(range(10)), 2, 10)):
        with pytest.raises(JournalError, match="made for other data"):
            Journal.open(tmp_path, other)


def test_a_corrupt_record_says_so(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path, {})
    journal.write(0, [1, 2])
    (tmp_path / "batches" / "0.npz").write_bytes(b"garbage")
    with pytest.raises(JournalError, match="corrupt") as info:
        journal.read(0)
    assert "allow_pickle" not in str(info.value)


DRIVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from engine_actors import Recorded
    from raymanager import BatchConfig, RayConfig, RayManager

    manager = RayManager(RayConfig(num_cpus=2))
    pool = manager.create_actor_pool(
        Recorded, {{"marks": {marks!r}, "run": sys.argv[1], "sleep_s": 0.02}}, num_actors=2)
    print("PIDS", json.dumps(pool.pids()), flush=True)
    results = manager.process_in_parallel(pool, np.arange(300), BatchConfig(batch_size=1),
                                          journal={journal!r})
    print("DONE", json.dumps([[r["value"], int(r["squares"][0]), list(r["pair"]),
                               type(r["pair"]).__name__, type(r["scalar"]).__name__]
                              for r in results]), flush=True)
    manager.shutdown()
    """
)


@pytest.mark.slow
def test_a_run_resumes_after_its_driver_was_sigkilled(tmp_path: Path) -> None:
    marks, journal = tmp_path / "marks", tmp_path / "journal"
    marks.mkdir()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(TESTS), marks=str(marks), journal=str(journal)))
    first = subprocess.Popen([sys.executable, str(script), "a"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert first.stdout is not None
    line = first.stdout.readline()
    assert line.startswith("PIDS"), first.stderr.read() if first.stderr else ""
    actor_pids = json.loads(line.split(" ", 1)[1])
    # The driver's own Ray (raylet, GCS, workers) shares its fate: gone with it.
    family = [p.pid for p in psutil.Process(first.pid).children(recursive=True)]
    deadline = time.monotonic() + 120
    while len(list((journal / "batches").glob("*.npz"))) < 60 and time.monotonic() < deadline:
        time.sleep(0.02)  # watching the journal fill, the event we kill on
    os.kill(first.pid, signal.SIGKILL)
    first.wait(30)
    recorded = {int(p.stem) for p in (journal / "batches").glob("*.npz")}
    assert 60 <= len(recorded) < 300
    assert not still_running(actor_pids, wait_s=30)  # its actors died with it
    # Ray's own agents can outlive a driver killed by SIGKILL: end what we started.
    for pid in still_running(family, wait_s=5):
        os.kill(pid, signal.SIGKILL)

    second = subprocess.run([sys.executable, str(script), "b"], capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    done = json.loads(next(ln for ln in second.stdout.splitlines()
                           if ln.startswith("DONE"))[5:])
    assert [row[0] for row in done] == list(range(300))  # every result once, in order
    assert all(row[1] == row[0] ** 2 and row[2] == [row[0], "x"] for row in done)
    assert {row[3] for row in done} == {"tuple"} and {row[4] for row in done} == {"float32"}
    rerun = {int(p.name.split("-")[1]) for p in marks.iterdir() if p.name.startswith("b-")}
    assert not rerun & recorded  # batches in the journal were not run again
    assert rerun | recorded == set(range(300))
