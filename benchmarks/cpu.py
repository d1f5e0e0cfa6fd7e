"""Where a run's CPU went: the driver, Ray's daemons, and the worker processes.

Every variant does the same work per batch, so the CPU its *workers* spend
is about the same; what differs is the CPU spent around the work: the
driver's (submitting, pickling, collecting) and Ray's daemons' (raylet, GCS,
agents). On 2 vCPUs every core-second spent around the work is taken from
the workers, so this is the profile of a variant's overhead that the
machine's drifting speed does not hide: wall times move by 20-40 % between
runs, the overhead's CPU much less.

Only this process and its descendants are read (``/proc`` through psutil):

    >>> before = snapshot()
    >>> sum(range(10**6)) > 0
    True
    >>> spent(before, snapshot())["driver"] > 0
    True
"""

from __future__ import annotations

import psutil

__all__ = ["ROLES", "Snapshot", "role_of", "snapshot", "spent"]

#: The roles a process of the tree is counted under.
ROLES = ("driver", "ray_daemons", "workers")

#: Command-line fragments of Ray's own long-lived processes (not workers).
_DAEMON_MARKS = (
    "raylet", "gcs_server", "dashboard", "log_monitor", "monitor.py",
    "runtime_env", "DashboardAgent", "RuntimeEnvAgent", "ray_client_server",
)

#: pid -> (role, CPU seconds so far), for this process and its descendants.
Snapshot = dict[int, tuple[str, float]]


def role_of(process: psutil.Process, driver_pid: int) -> str:
    """``driver`` for ``driver_pid``; ``ray_daemons`` for Ray's own; else ``workers``.

    Workers are every other descendant: Ray actor and task workers (idle
    ones included), ``multiprocessing`` and mpire workers.
    """
    if process.pid == driver_pid:
        return "driver"
    command = " ".join(process.cmdline())
    if any(mark in command for mark in _DAEMON_MARKS):
        return "ray_daemons"
    return "workers"


def snapshot() -> Snapshot:
    """CPU seconds (user + system) of this process and each descendant, by role."""
    me = psutil.Process()
    out: Snapshot = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
            out[process.pid] = (role_of(process, me.pid), times.user + times.system)
        except psutil.Error:  # exited while we looked: its CPU is lost to both sides
            continue
    return out


def spent(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds per role between two snapshots (new processes count from zero)."""
    totals = dict.fromkeys(ROLES, 0.0)
    for pid, (role, seconds) in after.items():
        _, earlier = before.get(pid, (role, 0.0))
        totals[role] += max(0.0, seconds - earlier)
    return totals
