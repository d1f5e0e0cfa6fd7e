"""Start-up of Ray: no cluster fails fast and clearly, a private Ray serves on loopback only,
Ray's worker notices stay off the terminal, a failed start is a RayStartError."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from raymanager import RayConfig, RayManager, RayStartError
from raymanager.startup import check_cluster, check_dashboard

TESTS = Path(__file__).parent


def test_no_cluster_at_the_address_is_a_clear_error() -> None:
    with pytest.raises(RayStartError, match=r"no Ray cluster at 127\.0\.0\.1:1\b.*nothing listens"):
        check_cluster("127.0.0.1:1", timeout_s=5)


def test_something_that_is_not_ray_is_a_clear_error_within_the_timeout() -> None:
    # Listens on every interface (Ray connects to the machine's address, not
    # 127.0.0.1) and never answers, like a firewalled or wrong port.
    with socket.socket() as silent:
        silent.bind(("0.0.0.0", 0))
        silent.listen()
        port = silent.getsockname()[1]
        words = r"no answer from a Ray cluster there.*at most 0\.5 s, RayConfig\.connect_timeout_s"
        with pytest.raises(RayStartError, match=words):
            check_cluster(f"127.0.0.1:{port}", timeout_s=0.5)


@pytest.mark.parametrize(
    ("details", "words"),
    [
        # gRPC's own words, as measured against a refused port and a silent listener.
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:192.0.2.2:1: Failed "
         "to connect to remote host: Connection refused", "nothing listens there"),
        ("failed to connect to all addresses; last error: UNKNOWN: ipv4:192.0.2.2:47124: "
         "connection attempt timed out before receiving SETTINGS frame", "no answer from"),
        ("failed to connect to all addresses; last error: INTERNAL: ipv4:127.0.0.1:80: "
         "Failed parsing HTTP/2", "not a Ray cluster's GCS"),
    ],
)
def test_why_nothing_answered(details: str, words: str) -> None:
    import grpc

    from raymanager.startup import _no_cluster

    message = _no_cluster("h:1", grpc.StatusCode.UNAVAILABLE, details, 30)
    assert message.startswith("no Ray cluster at h:1: ") and words in message, message


def test_ray_client_address_without_a_server() -> None:
    with pytest.raises(RayStartError, match=r"no Ray cluster at ray://127\.0\.0\.1:1"):
        check_cluster("ray://127.0.0.1:1", timeout_s=5)


def test_the_session_ray_answers_the_check(ray_session: RayManager) -> None:
    import ray

    check_cluster(ray.get_runtime_context().gcs_address, timeout_s=10)


def test_dashboard_without_its_packages_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from raymanager import ray_internals

    if ray_internals.dashboard_dependency_error() is None:
        # The test extra has ray[default] (for the pool metrics test): Ray's own check
        # then says what a plain `ray` would miss.
        monkeypatch.setattr(ray_internals, "dashboard_dependency_error",
                            lambda: ImportError("No module named 'aiohttp'"))
    with pytest.raises(RayStartError, match=r"raymanager\[dashboard\]"):
        check_dashboard()


def _listening(process: psutil.Process) -> list[str]:
    try:
        connections = process.net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []
    return [c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN]


def test_private_ray_listens_on_loopback_only(ray_session: RayManager) -> None:
    """Every socket the session's Ray processes (and this driver) listen on is loopback."""
    import ray

    assert ray_session.owns_ray
    me = psutil.Process()
    processes = [me, *me.children(recursive=True)]
    names = {p.pid: p.name() for p in processes}
    assert any("gcs_server" in n for n in names.values()), names
    assert any("raylet" in n for n in names.values()), names
    addresses = {(names[p.pid], ip) for p in processes for ip in _listening(p)}
    assert addresses, "Ray's processes listen somewhere"
    loopback = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
    assert {ip for _, ip in addresses} <= loopback, sorted(addresses)
    assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"


CHILD = textwrap.dedent("""
    import logging, os, signal, sys
    import ray
    from raymanager import BatchConfig, RayConfig, RayManager
    from actors_for_tests import Echo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with RayManager(RayConfig(num_cpus=1)) as manager:
        print("SESSION", ray._private.worker._global_node.get_session_dir_path(),
              file=sys.stderr)
        pool = manager.create_actor_pool(Echo, {}, num_actors=2)
        os.kill(pool.pids()[0], signal.SIGKILL)
        results = manager.process_in_parallel(pool, list(range(40)), BatchConfig(batch_size=4))
        print("RESULTS", len(results), file=sys.stderr)
""")


@pytest.mark.slow
def test_worker_death_is_one_line_of_ours_not_rays_block(tmp_path: Path) -> None:
    """Ray's "(raylet) A worker died ..." block stays in its log files, not on the terminal."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=240)
    terminal = done.stdout + done.stderr
    assert done.returncode == 0, terminal[-3000:]
    assert "RESULTS 10" in done.stderr
    assert "A worker died" not in terminal and "(raylet)" not in terminal, terminal
    ours = [line for line in done.stderr.splitlines() if line.startswith("WARNING raymanager:")]
    assert any("replacing actor Echo#0" in line and "died" in line for line in ours), terminal
    session = Path(next(line.split()[1] for line in done.stderr.splitlines()
                        if line.startswith("SESSION")))
    logged = [p for p in (session / "logs").rglob("*")
              if p.is_file() and "A worker died" in p.read_text(errors="replace")]
    assert logged, "the notice should still be in Ray's log files"


def test_a_failed_start_is_a_ray_start_error(tmp_path: Path) -> None:
    """Ray's own start-up failure (here: a bad init_kwargs) becomes a RayStartError."""
    code = textwrap.dedent("""
        from raymanager import RayConfig, RayManager, RayStartError
        try:
            RayManager(RayConfig(num_cpus=1, init_kwargs={"_temp_dir": "/proc/no/such"}))
        except RayStartError as error:
            print("RAYSTARTERROR", error)
        import ray
        print("INITIALIZED", ray.is_initialized())
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert "RAYSTARTERROR could not start a local Ray" in done.stdout, done.stderr[-3000:]
    assert "INITIALIZED False" in done.stdout


def test_the_session_rays_workers_run_at_the_default_niceness(ray_session: RayManager) -> None:
    """A private Ray's workers get RayConfig.worker_niceness; this process keeps its own."""
    import ray

    @ray.remote(num_cpus=0)
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, 0)

    assert ray.get(niceness.remote()) == RayConfig().worker_niceness
    assert os.getpriority(os.PRIO_PROCESS, 0) != RayConfig().worker_niceness


def test_worker_niceness_reaches_the_workers_and_init_kwargs_stay_as_given(
    tmp_path: Path,
) -> None:
    """worker_niceness=7 gives workers niceness 7; the user's _system_config is merged in,
    and the init_kwargs dict is not written into (ray.init adds keys to the one it gets)."""
    code = textwrap.dedent("""
        import os, ray
        from raymanager import RayConfig, RayManager
        system = {"task_events_report_interval_ms": 500}
        config = RayConfig(num_cpus=1, worker_niceness=7,
                           init_kwargs={"_system_config": system})
        with RayManager(config) as manager:
            pool = manager.create_actor_pool(Niceness, num_actors=1)
            print("NICENESS", manager.broadcast(pool, "niceness"))
        print("SYSTEM", sorted(system))
    """)
    code = "from actors_for_tests import Niceness\n" + code
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(TESTS)})
    assert "NICENESS [7]" in done.stdout, done.stderr[-3000:]
    assert "SYSTEM ['task_events_report_interval_ms']" in done.stdout


@pytest.mark.slow
def test_dashboard_with_its_extra_serves_on_loopback(tmp_path: Path) -> None:
    """With `pip install -e ".[dashboard]"`, include_dashboard=True works, on 127.0.0.1."""
    from ray._private.utils import get_dashboard_dependency_error

    if get_dashboard_dependency_error() is not None:
        pytest.skip("the dashboard extra is not installed here")
    code = textwrap.dedent("""
        import urllib.error, urllib.request
        from raymanager import RayConfig, RayManager
        with RayManager(RayConfig(num_cpus=1, include_dashboard=True)):
            try:
                urllib.request.urlopen("http://127.0.0.1:8265/api/version", timeout=30)
                print("DASHBOARD 200")
            except urllib.error.HTTPError as error:  # token auth: 401 without the token
                print("DASHBOARD", error.code)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=240)
    assert "DASHBOARD 200" in done.stdout or "DASHBOARD 401" in done.stdout, done.stderr[-3000:]
