"""What ``journal=PATH`` costs, and whether it keeps its promise under SIGKILL.

Run from the repository root::

    python benchmarks/journal.py                        # 3 timed runs each, 200 kills
    python benchmarks/journal.py --repeats 1 --kills 20 # quicker
    python benchmarks/journal.py --kills 0              # the timings only

Measured on a private local Ray (2 CPUs) with a pool of 2 trivial actors
(``process_batch`` returns the batch's first value), started before timing:

- 20,000 one-row batches without a journal, with a new journal, and the same
  call again with every batch recorded (a resume that runs nothing), each the
  median of ``--repeats`` runs; twice: on a numpy array (its content is in the
  fingerprint) and on a list (each batch's rows hashed, see
  ``raymanager.journal``). The journal's overhead per batch is (journal - none)
  / batches; the files a journal leaves are counted.
- the driver-SIGKILL loop of ``tests/journal_sigkill.py``: ``--kills`` drivers
  (subprocesses joined to this Ray) in a row, each SIGKILLed at a random moment
  while it runs ``process_in_parallel`` on the journal the one before left,
  then one that finishes; every step is checked (0 lost, 0 wrong, commits in
  write order, at most the last uncommitted group re-run).

Prints the figures and writes them as JSON to ``benchmarks/results/journal.json``
(git-ignored: results belong to a machine and a moment).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from machine import describe

from raymanager import BatchConfig, RayActor, RayConfig, RayManager

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the SIGKILL loop and its actors live with the tests


class Trivial(RayActor[Any, int]):
    """The batch's first value: the journal's cost is all there is to see."""

    def process_batch(self, batch: Any) -> int:
        return int(batch[0])


def timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def measure_kind(manager: RayManager, pool: Any, data: Any, batches: int, repeats: int,
                 folder: Path) -> dict[str, Any]:
    """Median seconds of a run without a journal, with a new one, and a full resume."""
    config = BatchConfig(batch_size=1)
    expected = [int(x) for x in data]
    none, fresh, resumed, files = [], [], [], []
    for attempt in range(repeats):
        seconds, results = timed(lambda: manager.process_in_parallel(pool, data, config))
        assert results == expected
        none.append(seconds)
        path = folder / f"run{attempt}.journal"
        seconds, results = timed(
            lambda path=path: manager.process_in_parallel(pool, data, config, journal=path))
        assert results == expected
        fresh.append(seconds)
        files.append(sorted(p.name for p in folder.iterdir() if p.name.startswith(path.name)))
        seconds, results = timed(
            lambda path=path: manager.process_in_parallel(pool, data, config, journal=path))
        assert results == expected
        resumed.append(seconds)
    no_journal, with_journal = statistics.median(none), statistics.median(fresh)
    return {
        "batches": batches,
        "no_journal_s": round(no_journal, 4),
        "journal_s": round(with_journal, 4),
        "overhead_us_per_batch": round((with_journal - no_journal) / batches * 1e6, 1),
        "resume_all_recorded_s": round(statistics.median(resumed), 4),
        "files_after_run": files[0],
        "journal_bytes": (folder / "run0.journal").stat().st_size,
        "runs": {"no_journal_s": [round(s, 4) for s in none],
                 "journal_s": [round(s, 4) for s in fresh],
                 "resume_s": [round(s, 4) for s in resumed]},
    }


def main() -> None:
    """Measure, print, and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "journal.json"))
    args = parser.parse_args()
    report: dict[str, Any] = {
        "kind": "journal",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "machine": describe(),
        "python": sys.version.split()[0], "ray": ray.__version__,
    }
    with tempfile.TemporaryDirectory(prefix="journal-bench-") as tmp, \
            RayManager(RayConfig(num_cpus=2)) as manager:
        folder = Path(tmp)
        pool = manager.create_actor_pool(Trivial, {}, num_actors=2)
        manager.process_in_parallel(pool, range(100), BatchConfig(batch_size=1))  # warm
        for kind, data in (("array", np.arange(args.batches)),
                           ("list", list(range(args.batches)))):
            (folder / kind).mkdir()
            report[kind] = measure_kind(manager, pool, data, args.batches, args.repeats,
                                        folder / kind)
            print(kind, json.dumps(report[kind]), flush=True)
        if args.kills:
            from journal_sigkill import sigkill_loop

            address = ray.get_runtime_context().gcs_address
            seconds, counts = timed(lambda: sigkill_loop(
                address, folder / "sigkill", kills=args.kills,
                rows=max(2000, 60 * args.kills), seed=args.seed))
            report["sigkill_loop"] = {**counts, "seconds": round(seconds, 1)}
            print("sigkill_loop", json.dumps(report["sigkill_loop"]), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
