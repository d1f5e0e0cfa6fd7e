"""The driver-SIGKILL loop of the journal, shared by tests/test_journal.py and
benchmarks/journal.py: drivers that join one Ray, each killed at a random moment
while it resumes the journal the one before left, then one that finishes.

Each step checks: every printed result right (0 wrong), nothing committed lost,
no recorded batch run again, and of the results handed out what is lost is the
tail written after the last commit (one group); the last driver returns every
result once (0 lost).
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

from procs import still_running

from raymanager.journal import Journal, fingerprint

TESTS = Path(__file__).parent


def recorded(path: Path, expected: dict[str, Any]) -> list[int]:
    """The batch indices committed to the journal at ``path``."""
    with Journal.open(path, expected) as journal:
        return list(journal.indices())


def marks_of(folder: Path, run: str) -> set[int]:
    """The first values of the batches that run ``run``'s actors ran (their mark files)."""
    return {int(p.name.split("-", 1)[1]) for p in folder.iterdir()
            if p.name.startswith(f"{run}-")}


#: A driver that joins the test session's Ray and runs process_in_parallel with a
#: journal. Its journal says on stdout what it does: "W index value square" just
#: before it takes a result, "C n" once a commit of n results has returned.
LOOP_DRIVER = textwrap.dedent(
    """
    import faulthandler, json, sys
    faulthandler.dump_traceback_later(60, repeat=True)  # where a stuck driver is, on stderr
    from engine_actors import Recorded
    import raymanager.journal as j
    from raymanager import BatchConfig, RayConfig, RayManager

    write, commit = j.Journal.write, j.Journal._commit

    def traced_write(self, index, result):
        print("W", index, result["value"], int(result["squares"][0]), flush=True)
        write(self, index, result)

    def traced_commit(self):
        pending = len(self._pending)
        commit(self)
        if pending:
            print("C", pending, flush=True)

    j.Journal.write, j.Journal._commit = traced_write, traced_commit
    address, journal, marks, run, rows = sys.argv[1:6]
    manager = RayManager(RayConfig(address=address))
    pool = manager.create_actor_pool(
        Recorded, {"marks": marks, "run": run, "sleep_s": 0.002}, num_actors=2)
    print("PIDS", json.dumps(pool.pids()), flush=True)
    results = manager.process_in_parallel(pool, range(int(rows)), BatchConfig(batch_size=1),
                                          journal=journal)
    print("DONE", json.dumps([[r["value"], int(r["squares"][0])] for r in results]), flush=True)
    manager.shutdown()
    """
)


class Driver:
    """A LOOP_DRIVER process, its stdout read line by line on a thread."""

    def __init__(self, address: str, journal: Path, marks: Path, run: str, rows: int) -> None:
        # Ray's workers import from the driver's working folder: the tests'.
        env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # joins on loopback
        self.stderr = marks.parent / f"{run}.err"
        with open(self.stderr, "w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LOOP_DRIVER, address, str(journal), str(marks), run,
                 str(rows)], cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=stderr,
                text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[list[str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            # Ray's own lines may share stdout, and the last may be cut short by
            # the kill: only whole lines of ours count.
            fields = line.split()
            if line.endswith("\n") and fields and fields[0] in ("PIDS", "W", "C", "DONE"):
                self.lines.put(line.strip())
        self.lines.put(None)

    def next_line(self, timeout: float = 120) -> list[str] | None:
        line = self.lines.get(timeout=timeout)
        if line is None:
            return None
        fields = line.split(" ", 1) if line.startswith(("PIDS", "DONE")) else line.split()
        self.seen.append(fields)
        return fields

    def rest(self) -> list[list[str]]:
        while self.next_line() is not None:
            pass
        return self.seen

    def why(self) -> str:
        return self.stderr.read_text()[-3000:]


def sigkill_loop(address: str, folder: Path, kills: int, rows: int, seed: int) -> dict[str, Any]:
    """Kill ``kills`` drivers in a row at random moments, each resuming the journal the
    one before left, then let one finish; check every step. Returns the counts:
    ``lost`` and ``wrong`` results (0, or an assertion fails first), and
    ``rerun_after_written``: results the journal had taken but not yet committed
    when their driver died, which the next one ran again (at most one group each)."""
    rng = random.Random(seed)
    journal, marks = folder / "run.journal", folder / "marks"
    marks.mkdir(parents=True)
    expected = fingerprint(range(rows), 1, rows)
    committed: set[int] = set()
    tails: list[int] = []
    groups: list[int] = []
    for attempt in range(kills + 1):
        run = f"r{attempt}"
        driver = Driver(address, journal, marks, run, rows)
        first = driver.next_line()
        assert first is not None and first[0] == "PIDS", driver.why()
        actor_pids = json.loads(first[1])
        if attempt < kills:
            # A random moment: after a random number of new results, plus up to 50 ms.
            target = rng.randint(1, 60)
            while sum(fields[0] == "W" for fields in driver.seen) < target:
                fields = driver.next_line()
                assert fields is not None and fields[0] != "DONE", "ended before its kill"
            threading.Event().wait(rng.uniform(0, 0.05))
            os.kill(driver.process.pid, signal.SIGKILL)  # the driver we started, by its PID
            driver.process.wait(30)
            assert not still_running(actor_pids, wait_s=30)  # its actors died with it
        seen = driver.rest()  # and what reached the pipe before the kill
        written: list[int] = []
        last_commit = 0  # results written before the last commit that returned
        for fields in seen:
            if fields[0] == "W":
                index, value, square = map(int, fields[1:])
                assert value == index and square == index**2, fields  # 0 wrong
                assert index not in committed, f"recorded batch {index} ran again"
                written.append(index)
            elif fields[0] == "C":
                groups.append(int(fields[1]))
                last_commit = len(written)
        assert not marks_of(marks, run) & committed, "a recorded batch ran again"
        if attempt == kills:
            assert seen[-1][0] == "DONE" and driver.process.wait(60) == 0, driver.why()
            results = json.loads(seen[-1][1])
            assert results == [[i, i * i] for i in range(rows)]  # 0 lost, 0 wrong, in order
            break
        now = set(recorded(journal, expected))
        assert committed <= now, "a committed result was lost"
        new = now - committed
        # Commits keep the order of writes: what is in the file is the first len(new)
        # results written, at least up to the last commit seen to return; what was
        # written after is the one group not yet committed, to run again.
        assert set(written[:len(new)]) == new and len(new) >= last_commit, (
            written, sorted(new), last_commit)
        tails.append(len(written) - len(new))
        committed = now
    return {"kills": kills, "rows": rows, "lost": 0, "wrong": 0,
            "commit_groups": len(groups), "largest_group": max(groups, default=0),
            "rerun_after_written_max": max(tails, default=0),
            "rerun_after_written_total": sum(tails)}
