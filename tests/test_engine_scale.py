"""Smoke test of ``benchmarks/engine_scale.py``: its ``--quick`` mode runs and writes its JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from raymanager.engine.run import RunCore

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "engine_scale.py"


def _load(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("engine_scale", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "engine_scale", module)  # for its dataclass
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_its_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "engine_scale.json"
    originals = {name: RunCore.__dict__[name] for name in ("next_send", "returned", "pop_ready")}
    _load(monkeypatch).main(["--quick", "--out", str(out)])
    # The core's methods are unwrapped again afterwards.
    assert all(RunCore.__dict__[name] is method for name, method in originals.items())

    data = json.loads(out.read_text())
    for key in ("date", "command", "machine", "python", "engine", "settings", "rows", "growth",
                "wrapper_us_per_call"):
        assert key in data, key
    assert data["machine"]["cpu_count"] and data["machine"]["platform"]
    assert "--quick" in data["command"]
    rows = data["rows"]
    assert len(rows) == len(data["settings"]["actors"]) * len(data["settings"]["batch_ms"])
    for row in rows:
        assert row["batches"] == row["actors"] * row["batches_per_actor"]
        for key in ("calls", "decisions", "steps", "virtual_seconds", "cpu_s", "core_cpu_s",
                    "driver_cpu_us_per_batch", "core_us_per_batch", "core_us_per_decision",
                    "next_send_us_per_call", "max_batches_per_s_core",
                    "ideal_batches_per_s", "core_over_ideal"):
            assert row[key] > 0, (key, row[key])
        assert row["simulator_cpu_s"] >= 0
        assert row["ideal_batches_per_s"] == row["actors"] / (row["batch_ms"] / 1000)
        assert isinstance(row["one_driver_keeps_up"], bool)
        assert row["by_method"]["next_send"]["calls"] == row["decisions"]
    assert data["growth"], "two pool sizes give one growth row per batch duration"
