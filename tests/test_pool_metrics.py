"""Pool metrics in Ray's metrics system, read back from the node's Prometheus endpoint.

A private Ray in a child process exports its metrics on a loopback port
(``_metrics_export_port``; the node's metrics agent comes with ``ray[default]``);
a pool runs there, one of its actors is SIGKILLed, and the series are read from
``http://127.0.0.1:PORT/metrics`` with prometheus_client's own parser.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from raymanager.engine.slots import LossKind
from raymanager.pool.metrics import metrics_enabled, pool_counts

CHILD = textwrap.dedent("""
    import os, signal, socket, sys, time, urllib.request
    from raymanager import BatchConfig, RayConfig, RayManager
    from actors_for_tests import Echo

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    config = RayConfig(num_cpus=2, init_kwargs={"_metrics_export_port": port})
    with RayManager(config) as manager:
        pool = manager.create_actor_pool(Echo, {}, num_actors=2)
        os.kill(pool.pids()[0], signal.SIGKILL)
        results = manager.process_in_parallel(pool, list(range(40)), BatchConfig(batch_size=4))
        assert len(results) == 10, results
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:  # the agent scrapes the driver every few seconds
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                              timeout=10).read().decode()
            except OSError:
                text = ""
            if ('raymanager_pool_rows_done_total' in text
                    and 'reason="died"' in text):
                break
            time.sleep(1)
        print("POOL", pool.pool_id)
        print("BEGIN")
        print(text)
""")


def _series(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, list[tuple[dict[str, str], float]]] = collections.defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("ray_raymanager_pool_"):
                found[sample.name].append((dict(sample.labels), sample.value))
    return found


@pytest.mark.slow
def test_pool_series_reach_the_nodes_prometheus_endpoint(tmp_path: Path) -> None:
    from ray._private.utils import get_dashboard_dependency_error

    if get_dashboard_dependency_error() is not None:
        pytest.skip("Ray's metrics agent needs ray[default] (the test extra has it)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          cwd=tmp_path, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    head, _, text = done.stdout.partition("BEGIN\n")
    pool_id = head.split("POOL ", 1)[1].split()[0]
    series = _series(text)

    def value(name: str, **labels: str) -> float:
        matches = [v for found, v in series[name]
                   if found.get("pool") == pool_id and found.get("actor_class") == "Echo"
                   and all(found.get(k) == want for k, want in labels.items())]
        assert len(matches) == 1, (name, labels, series.get(name))
        return matches[0]

    assert value("ray_raymanager_pool_batches_done_total") == 10
    assert value("ray_raymanager_pool_rows_done_total") == 40
    assert value("ray_raymanager_pool_actor_restarts_total", reason="died") == 1
    assert value("ray_raymanager_pool_actors") == 2
    assert value("ray_raymanager_pool_calls_in_flight") == 0
    assert value("ray_raymanager_pool_batches_queued") == 0
    assert value("ray_raymanager_pool_actors_busy") == 0


def test_pool_counts_read_the_pools_own_counters() -> None:
    busy = SimpleNamespace(calls=[object(), object()])
    idle = SimpleNamespace(calls=[])
    run = SimpleNamespace(core=SimpleNamespace(rows_done=7))
    pool: Any = SimpleNamespace(
        pool_id="p", actor_name="Echo", batches_done=12, rows_finished=30, retries=2,
        recycled=1, restarts_by_kind=collections.Counter({LossKind.TIMED_OUT.value: 3}),
        slots=[busy, idle], runs=lambda: [run], queued_batches=lambda: 5,
        locked=threading.RLock)
    assert pool_counts(pool) == {
        "batches_done": 12, "rows_done": 37, "batches_retried": 2, "calls_in_flight": 2,
        "batches_queued": 5, "actors_busy": 1, "actors": 2, "restarts:timed_out": 3,
        "restarts:recycled": 1}


@pytest.mark.parametrize(("value", "enabled"), [(None, True), ("1", True), ("0", False),
                                                ("off", False), ("False", False)])
def test_pool_metrics_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                        enabled: bool) -> None:
    if value is None:
        monkeypatch.delenv("RAYMANAGER_POOL_METRICS", raising=False)
    else:
        monkeypatch.setenv("RAYMANAGER_POOL_METRICS", value)
    assert metrics_enabled() is enabled
