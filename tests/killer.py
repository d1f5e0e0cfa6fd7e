"""A seeded killer of a pool's worker processes, shared by the chaos tests.

It kills by PID, only processes that are Ray workers of the pool it was given.
"""

from __future__ import annotations

import os
import random
import signal

import psutil

from raymanager import ActorPool

#: Kills per chaos run: a restart costs ~1-2 s of a 2-core machine.
MAX_KILLS = 6


def is_live_ray_worker(pid: int) -> bool:
    """True for a running (not zombie) Ray worker process: never kill anything else."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        title = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return False
    return "ray::" in title or "default_worker.py" in title


class Killer:
    """SIGKILLs a random live actor of ``pool`` at seeded random points of a run.

    The points are result counts, not clock times, so the kills land however
    fast or slow the machine is: ``kills`` of them between 5% and 90% of the
    run. ``killed`` lists the distinct PIDs that were alive when the signal
    was sent.
    """

    def __init__(self, pool: ActorPool, seed: int, num_results: int,
                 kills: int = MAX_KILLS) -> None:
        self.pool = pool
        self.rng = random.Random(seed)
        points = self.rng.sample(range(num_results // 20, num_results * 9 // 10), kills)
        self.pending = sorted(points)
        self.killed: list[int] = []
        self.skipped = 0  # points where no actor was up to be killed

    def maybe_kill(self, results_so_far: int) -> None:
        if not self.pending or results_so_far < self.pending[0]:
            return
        pids = [pid for pid in self.pool.pids() if pid is not None]
        live = [pid for pid in pids if pid not in self.killed and is_live_ray_worker(pid)]
        if not live:
            self.skipped += 1  # all actors starting: try again at the next result
            return
        victim = self.rng.choice(live)
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            self.skipped += 1
            return
        self.pending.pop(0)
        self.killed.append(victim)
