"""RayConfig and BatchConfig: the seed's fields and defaults, and validation."""

from __future__ import annotations

import dataclasses

import pytest

from raymanager import BatchConfig, RayConfig


def test_seed_fields_and_defaults() -> None:
    ray_fields = {f.name: f.default for f in dataclasses.fields(RayConfig)}
    for name in ("num_cpus", "num_gpus", "memory", "object_store_memory"):
        assert ray_fields[name] is None
    batch = BatchConfig()
    assert (batch.batch_size, batch.num_parallel, batch.chunk_size) == (128, 4, 32)
    assert RayConfig(num_cpus=4).num_cpus == 4
    assert BatchConfig(batch_size=128).batch_size == 128


def test_extra_defaults_are_safe() -> None:
    config = RayConfig()
    assert config.address is None and config.include_dashboard is False
    batch = BatchConfig()
    assert batch.max_retries == 3 and batch.timeout_s is None and batch.on_error == "raise"


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": -5}, ValueError, "-5"),
        ({"chunk_size": "32"}, TypeError, "chunk_size"),
        ({"num_parallel": 2.5}, TypeError, "num_parallel"),
        ({"num_parallel": True}, TypeError, "num_parallel"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"timeout_s": 0}, ValueError, "timeout_s"),
        ({"timeout_s": float("nan")}, ValueError, "timeout_s"),
        ({"on_error": "ignore"}, ValueError, "on_error"),
        ({"max_inflight_bytes": 0}, ValueError, "max_inflight_bytes"),
    ],
)
def test_bad_batch_config(kwargs: dict[str, object], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words) as info:
        BatchConfig(**kwargs)  # type: ignore[arg-type]
    assert "BatchConfig." in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"num_cpus": -1}, ValueError, "num_cpus.*-1"),
        ({"num_cpus": 0}, ValueError, "num_cpus"),
        ({"num_gpus": -1}, ValueError, "num_gpus"),
        ({"num_cpus": "4"}, TypeError, "num_cpus"),
        ({"memory": 0}, ValueError, "memory"),
        ({"object_store_memory": 1024}, ValueError, "object_store_memory"),
        ({"address": ""}, TypeError, "address"),
        ({"namespace": 3}, TypeError, "namespace"),
        ({"include_dashboard": "yes"}, TypeError, "include_dashboard"),
        ({"actor_start_timeout_s": 0}, ValueError, "actor_start_timeout_s"),
        ({"object_store_warn_fraction": 1.5}, ValueError, "object_store_warn_fraction"),
        ({"init_kwargs": []}, TypeError, "init_kwargs"),
        ({"worker_niceness": -1}, ValueError, "worker_niceness"),
        ({"worker_niceness": 20}, ValueError, "worker_niceness"),
        ({"worker_niceness": True}, TypeError, "worker_niceness"),
        ({"worker_niceness": "5"}, TypeError, "worker_niceness"),
    ],
)
def test_bad_ray_config(kwargs: dict[str, object], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        RayConfig(**kwargs)  # type: ignore[arg-type]


def test_configs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BatchConfig().batch_size = 3  # type: ignore[misc]


def test_numpy_and_other_integral_numbers_are_accepted_as_plain_numbers() -> None:
    import fractions

    import numpy as np

    batch = BatchConfig(batch_size=np.int64(64), num_parallel=np.uint8(2),
                        timeout_s=np.float32(1.5))
    assert batch.batch_size == 64 and type(batch.batch_size) is int
    assert batch.num_parallel == 2 and type(batch.num_parallel) is int
    assert batch.timeout_s == 1.5 and type(batch.timeout_s) is float
    config = RayConfig(num_cpus=np.int32(2), connect_timeout_s=fractions.Fraction(1, 2))
    assert config.num_cpus == 2 and type(config.num_cpus) is int
    assert config.connect_timeout_s == 0.5 and type(config.connect_timeout_s) is float
    with pytest.raises(TypeError, match="num_parallel"):
        BatchConfig(num_parallel=np.bool_(True))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        # No machine has a million CPUs: a typo, refused now, not 35 s into start-up.
        ({"num_cpus": 10**12}, ValueError, r"num_cpus must be <= 1048576, got 1000000000000"),
        ({"num_gpus": 2**21}, ValueError, "num_gpus"),
        ({"memory": 2**61}, ValueError, "memory"),
        ({"num_cpus": float("nan")}, TypeError, r"num_cpus must be an int or None, got nan"),
        ({"connect_timeout_s": float("nan")}, ValueError, "connect_timeout_s must be finite"),
        ({"connect_timeout_s": 0}, ValueError, "connect_timeout_s must be > 0"),
        ({"actor_start_timeout_s": float("inf")}, ValueError, "actor_start_timeout_s"),
    ],
)
def test_impossible_values_are_refused_at_construction(
    kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        RayConfig(**kwargs)  # type: ignore[arg-type]


def test_connect_timeout_default() -> None:
    assert RayConfig().connect_timeout_s == 30.0
