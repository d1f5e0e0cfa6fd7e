"""Multi-node behaviour on a real ray.cluster_utils.Cluster (head + worker nodes on loopback).

The scenarios run in child processes (see cluster_scenarios.py): a Cluster
needs a Ray of its own, and this pytest session already runs one.
"""

from __future__ import annotations

from typing import Any

import pytest
import scenarios

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def run_scenario(name: str) -> dict[str, Any]:
    return scenarios.run_scenario("cluster_scenarios.py", name)


def test_pool_spreads_over_every_node() -> None:
    result = run_scenario("spread")
    assert result["nodes"] == 3
    # Six actors on three nodes: two on each, every run (Ray's SPREAD alone
    # often leaves a node empty when actors reserve no CPU).
    counts = sorted(result["spread_nodes"].count(n) for n in set(result["spread_nodes"]))
    assert counts == [2, 2, 2]
    assert result["correct"] and result["pids_used"] == 6


@pytest.mark.parametrize("mode", ["graceful", "forced"])
def test_run_survives_losing_a_worker_node(mode: str) -> None:
    result = run_scenario(f"node_loss_{mode}")
    assert result["batches"] == 900
    assert result["correct"]  # every batch exactly once, in order, right values
    assert result["restarts"] >= 1
    assert result["detect_s"] is not None
    # The pool heals back to its size on the nodes that remain, and a new pool
    # made right after the loss starts there too.
    assert len(result["healed_nodes"]) == 3 and result["victim"] not in result["healed_nodes"]
    assert len(result["fresh_pool_nodes"]) == 3
    assert result["victim"] not in result["fresh_pool_nodes"]


def test_a_result_lost_with_its_node_is_made_again() -> None:
    result = run_scenario("lost_result")
    assert result["batches"] == 60 and result["correct"]
    assert result["restarts"] >= 1


def test_gpu_actors_get_their_own_devices() -> None:
    """A CPU-only machine, Ray told it has 2 GPUs: Ray assigns device ids per actor."""
    result = run_scenario("gpus")
    whole = sorted(w["cuda"] for w in result["whole"])
    assert whole == ["0", "1"]
    half = [w["cuda"] for w in result["half"]]
    # Four half-GPU actors share the two devices two by two.
    assert sorted(half) == ["0", "0", "1", "1"]


def test_an_elastic_pool_uses_a_node_that_joins_mid_run() -> None:
    result = run_scenario("elastic_join")
    assert result["correct"]
    assert result["actors"] == 3 and result["new_node_used"]
    assert result["rate_after"] > result["rate_before"]  # three actors, not one


def test_a_drained_node_gets_no_new_work_and_costs_no_try() -> None:
    result = run_scenario("drained")
    assert result["correct"]
    assert result["retries"] == 0  # max_retries=0, yet nothing failed: preemption is no failure
    assert result["late"] > 0 and result["victim_pid_late"] == 0


def test_a_sweep_runs_its_seeds_at_once_over_both_nodes() -> None:
    """A sweep of 2 seeds on a 2-node Cluster (2 CPUs each): both runs at once, and the
    runs' training actors on both nodes."""
    result = run_scenario("sweep")
    assert result["states"] == ["budget", "budget"]
    assert result["runs_at_once"] == 2
    (start0, end0), (start1, end1) = result["spans"]
    assert start1 < end0 and start0 < end1  # the two runs overlapped in time
    assert len({node for nodes in result["run_nodes"] for node in nodes}) == 2
    assert result["summary_rows"] == 2
