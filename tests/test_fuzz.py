"""Property-based bad-input fuzzing of process_in_parallel and the config classes.

Data of every shape, dtype and container, and configs with arbitrary field
values, must either work (one result per batch, the rows seen by the actors
adding up to the input's rows) or raise a documented error: ``TypeError`` /
``ValueError`` for bad data or config, a :class:`~raymanager.RayManagerError`
for failed work. Never a hang, never a bare Ray exception, never a dead or
extra actor: one pool serves every example of the data properties and must
end with its first actors alive and no restart. Runs that stop early (the
input raises) use a pool of their own.

The config properties need no Ray: each value either constructs or raises
``TypeError`` / ``ValueError`` naming the field, as an oracle of the
documented rules says.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import hypothesis.extra.numpy as hnp
import numpy as np
import psutil
import pytest
from chaos_actors import RowCounter
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from raymanager import ActorPool, BatchConfig, PoolState, RayConfig, RayManager, RayManagerError

FUZZ_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NUM_ACTORS = 2

#: What an input must do: succeed with this many rows, or be refused.
Expect = int | Literal["reject"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fuzz_manager(ray_session: RayManager) -> Iterator[RayManager]:
    manager = RayManager()
    yield manager
    manager.shutdown()


@pytest.fixture(scope="module")
def fuzz_pool(fuzz_manager: RayManager) -> Iterator[ActorPool]:
    """One pool for every example: a leaked, killed or replaced actor shows here."""
    pool = fuzz_manager.create_actor_pool(RowCounter, {}, num_actors=NUM_ACTORS)
    first_pids = list(pool.pids())
    yield pool
    assert pool.pids() == first_pids, "the fuzzed pool lost or replaced an actor"
    _assert_healthy(pool)


def _assert_healthy(pool: ActorPool) -> None:
    assert pool.state is PoolState.RUNNING
    assert pool.restarts == 0
    pids = pool.pids()
    assert len(pids) == NUM_ACTORS
    for pid in pids:
        assert pid is not None and psutil.pid_exists(pid)
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def _assert_ours(error: BaseException) -> None:
    """A documented error, not a Ray one leaking through."""
    module = type(error).__module__
    assert module.split(".")[0] != "ray", f"Ray exception leaked: {error!r}"
    assert isinstance(error, (TypeError, ValueError, RayManagerError)), repr(error)


# --------------------------------------------------------------------------- data strategies

_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.unicode_string_dtypes(max_len=4),
    hnp.byte_string_dtypes(max_len=4),
    hnp.datetime64_dtypes(),
)
_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=12)
_PY_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(max_magnitude=1e6),
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=3),
)


def _expect_array(array: np.ndarray) -> Expect:
    return "reject" if array.ndim == 0 else len(array)


@st.composite
def numeric_arrays(draw: st.DrawFn) -> tuple[Any, Expect]:
    array = draw(hnp.arrays(_DTYPES, _SHAPES))
    layout = draw(st.sampled_from(["c", "reversed", "transposed", "fortran"]))
    if array.ndim >= 1 and layout == "reversed":
        array = array[::-1]
    elif array.ndim >= 2 and layout == "transposed":
        array = array.T
    elif layout == "fortran":
        array = np.asfortranarray(array)
    return array, _expect_array(array)


@st.composite
def object_arrays(draw: st.DrawFn) -> tuple[Any, Expect]:
    array = draw(hnp.arrays(object, _SHAPES, elements=_PY_VALUES))
    return array, _expect_array(array)


@st.composite
def structured_arrays(draw: st.DrawFn) -> tuple[Any, Expect]:
    rows = draw(st.integers(0, 40))
    array = np.zeros(rows, dtype=[("a", "i4"), ("b", "f8"), ("c", "U3")])
    array["a"] = np.arange(rows)
    return array, rows


@st.composite
def large_arrays(draw: st.DrawFn) -> tuple[Any, Expect]:
    """Few rows, over 512 KiB: shared through the object store, not sent inline."""
    rows = draw(st.integers(0, 12))
    dtype = draw(st.sampled_from([np.float64, np.int32, np.complex64]))
    array = np.ones((rows, 70_000 // np.dtype(dtype).itemsize * 8 + 1), dtype=dtype)
    return array, rows


@st.composite
def sequences(draw: st.DrawFn) -> tuple[Any, Expect]:
    items = draw(st.lists(_PY_VALUES, max_size=300))
    kind = draw(st.sampled_from(["list", "tuple", "range", "generator", "iterator", "set"]))
    if kind == "tuple":
        return tuple(items), len(items)
    if kind == "range":
        start, stop, step = draw(st.integers(-50, 50)), draw(st.integers(-50, 300)), draw(
            st.integers(-7, 7).filter(bool)
        )
        return range(start, stop, step), len(range(start, stop, step))
    if kind == "generator":
        return (item for item in items), len(items)
    if kind == "iterator":
        return iter(items), len(items)
    if kind == "set":
        unique = {repr(item) for item in items}
        return unique, len(unique)
    return items, len(items)


@st.composite
def mappings(draw: st.DrawFn) -> tuple[Any, Expect]:
    """Columnar data: equal columns, ragged ones, and columns that are no columns."""
    names = draw(st.lists(st.text(max_size=3), max_size=4, unique=True))
    length = draw(st.integers(0, 60))
    columns: dict[str, Any] = {}
    lengths: set[int] = set()
    not_a_column = False
    for name in names:
        kind = draw(st.sampled_from(
            ["array", "list", "ragged", "scalar", "0d", "string", "2d", "object", "big"]
        ))
        if kind == "array":
            columns[name] = draw(hnp.arrays(_DTYPES, st.just((length,))))
        elif kind == "2d":
            columns[name] = np.ones((length, draw(st.integers(0, 4))))
        elif kind == "big":  # the mapping goes through the object store
            columns[name] = np.ones((length, 9000))
        elif kind == "object":
            columns[name] = np.array([None] * length, dtype=object)
        elif kind == "list":
            columns[name] = draw(st.lists(_PY_VALUES, min_size=length, max_size=length))
        elif kind == "ragged":
            columns[name] = list(range(draw(st.integers(0, 60))))
        elif kind == "scalar":
            columns[name] = draw(st.one_of(st.integers(), st.floats(), st.none()))
            not_a_column = True
        elif kind == "0d":
            columns[name] = np.asarray(draw(st.floats()))
            not_a_column = True
        else:
            columns[name] = draw(st.text(min_size=length, max_size=length))
            not_a_column = True
        if not not_a_column:
            lengths.add(len(columns[name]))
    if not_a_column or len(lengths) > 1:
        return columns, "reject"
    return columns, lengths.pop() if lengths else 0


@st.composite
def not_data(draw: st.DrawFn) -> tuple[Any, Expect]:
    value = draw(st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.text(max_size=5),
        st.binary(max_size=5),
        st.just(bytearray(b"abc")),
        st.just(object()),
    ))
    return value, "reject"


ARRAYS = st.one_of(numeric_arrays(), object_arrays(), structured_arrays(), large_arrays())
OTHER_DATA = st.one_of(sequences(), mappings(), not_data())

VALID_BATCH_CONFIGS = st.builds(
    BatchConfig,
    batch_size=st.integers(1, 40),
    num_parallel=st.integers(1, 4),
    chunk_size=st.integers(1, 9),
    max_retries=st.integers(0, 3),
    # Long enough never to fire on a busy 2-core machine: a fired timeout is
    # a restart, which the pool check counts as a failure.
    timeout_s=st.one_of(st.none(), st.floats(30, 120)),
    on_error=st.sampled_from(["raise", "continue"]),
    max_inflight_bytes=st.integers(1, 2**40),
)


# --------------------------------------------------------------------------- data properties


def _check_run(
    manager: RayManager, pool: ActorPool, case: tuple[Any, Expect], config: BatchConfig
) -> None:
    data, expect = case
    note(f"data type {type(data).__name__}, expect {expect!r}, {config}")
    try:
        results = manager.process_in_parallel(pool, data, config)
    except Exception as error:
        event(f"refused with {type(error).__name__}")
        _assert_ours(error)
        assert expect == "reject", f"valid data refused: {error!r}"
        assert isinstance(error, (TypeError, ValueError)), repr(error)
    else:
        event(f"ran {type(data).__name__} in {min(len(results), 3)}+ batches")
        assert expect != "reject", "bad data was accepted"
        rows = [r["rows"] for r in results]
        assert len(results) == math.ceil(expect / config.batch_size)
        assert sum(rows) == expect
        assert all(n == config.batch_size for n in rows[:-1])
        assert all(1 <= n <= config.batch_size for n in rows)
        if isinstance(data, np.ndarray):
            assert {r["type"] for r in results} <= {"ndarray"}
    _assert_healthy(pool)


@pytest.mark.timeout(120)
@FUZZ_SETTINGS
@given(case=ARRAYS, config=VALID_BATCH_CONFIGS)
def test_any_array_gives_one_result_per_batch_or_a_clear_error(
    fuzz_manager: RayManager, fuzz_pool: ActorPool, case: tuple[Any, Expect], config: BatchConfig
) -> None:
    _check_run(fuzz_manager, fuzz_pool, case, config)


@pytest.mark.timeout(120)
@FUZZ_SETTINGS
@given(case=OTHER_DATA, config=VALID_BATCH_CONFIGS)
def test_any_container_gives_one_result_per_batch_or_a_clear_error(
    fuzz_manager: RayManager, fuzz_pool: ActorPool, case: tuple[Any, Expect], config: BatchConfig
) -> None:
    _check_run(fuzz_manager, fuzz_pool, case, config)


def _rows_then_raise(items: list[int], fail_after: int, error: Exception) -> Iterator[int]:
    for i, item in enumerate(items):
        if i == fail_after:
            raise error
        yield item


@pytest.fixture(scope="module")
def abort_pool(fuzz_manager: RayManager) -> ActorPool:
    """A pool of its own for runs that stop early (see the early-stop test below)."""
    return fuzz_manager.create_actor_pool(RowCounter, {}, num_actors=NUM_ACTORS)


@pytest.mark.timeout(120)
@settings(FUZZ_SETTINGS, max_examples=20)
@given(
    items=st.lists(st.integers(), max_size=200),
    fail_after=st.integers(0, 200),
    batch_size=st.integers(1, 30),
)
def test_a_generator_that_raises_propagates_its_own_error(
    fuzz_manager: RayManager,
    abort_pool: ActorPool,
    items: list[int],
    fail_after: int,
    batch_size: int,
) -> None:
    boom = RuntimeError("the input file is corrupt")
    config = BatchConfig(batch_size=batch_size)
    if fail_after < len(items):
        with pytest.raises(RuntimeError) as info:
            fuzz_manager.process_in_parallel(
                abort_pool, _rows_then_raise(items, fail_after, boom), config
            )
        assert info.value is boom
    else:
        results = fuzz_manager.process_in_parallel(
            abort_pool, _rows_then_raise(items, fail_after, boom), config
        )
        assert sum(r["rows"] for r in results) == len(items)
    # The pool takes the next call, and gets it right.
    follow_up = fuzz_manager.process_in_parallel(abort_pool, [1, 2, 3], config)
    assert sum(r["rows"] for r in follow_up) == 3
    assert abort_pool.state is PoolState.RUNNING


@pytest.mark.timeout(120)
def test_an_early_stop_leaves_the_pool_ready_for_the_next_call(manager: RayManager) -> None:
    pool = manager.create_actor_pool(RowCounter, {}, num_actors=NUM_ACTORS)
    for attempt in range(40):
        batch_size = 1 + attempt % 10
        # The input fails while the run sends its first calls: the run stops
        # with calls in flight, which must not disturb the next run.
        fail_after = 3 * batch_size + attempt % batch_size
        with pytest.raises(RuntimeError):
            manager.process_in_parallel(
                pool,
                _rows_then_raise(list(range(200)), fail_after, RuntimeError("bad row")),
                BatchConfig(batch_size=batch_size),
            )
        # A stalled actor queue (a gap left by a cancelled call) holds a call
        # for 30 s: past this timeout, which would replace the actor.
        results = manager.process_in_parallel(
            pool, list(range(10)), BatchConfig(batch_size=1, timeout_s=10.0)
        )
        assert [r["rows"] for r in results] == [1] * 10
        if pool.restarts:
            break
    assert pool.restarts == 0, f"{pool.restarts} actor(s) replaced after {attempt + 1} early stops"


GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["raise", "continue", "auto", "", "local", "ray://x:1"]),
    st.binary(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.float64, st.floats()),
    st.builds(np.bool_, st.booleans()),
    st.just(object()),
)


@pytest.mark.timeout(120)
@FUZZ_SETTINGS
@given(batch_config=GARBAGE | st.just(BatchConfig) | st.just({"batch_size": 4}),
       actor_pool_ok=st.booleans())
def test_wrong_arguments_to_process_in_parallel_are_type_errors(
    fuzz_manager: RayManager, fuzz_pool: ActorPool, batch_config: Any, actor_pool_ok: bool
) -> None:
    pool: Any = fuzz_pool if actor_pool_ok else batch_config
    if actor_pool_ok and batch_config is None:
        assert fuzz_manager.process_in_parallel(pool, [1], batch_config)[0]["rows"] == 1
    else:
        with pytest.raises(TypeError) as info:
            fuzz_manager.process_in_parallel(pool, [1, 2, 3], batch_config)
        _assert_ours(info.value)
    _assert_healthy(fuzz_pool)


# --------------------------------------------------------------------------- config oracle


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


Rule = Callable[[object], "type[Exception] | None"]


def _int_rule(minimum: int, *, optional: bool, maximum: float = math.inf) -> Rule:
    def rule(value: object) -> type[Exception] | None:
        if value is None and optional:
            return None
        if not _is_int(value):
            return TypeError
        return None if minimum <= int(value) <= maximum else ValueError  # type: ignore[call-overload]

    return rule


def _number_rule(*, above: float, at_most: float = math.inf, optional: bool) -> Rule:
    def rule(value: object) -> type[Exception] | None:
        if value is None and optional:
            return None
        if not _is_number(value):
            return TypeError
        number = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(number) and above < number <= at_most
        return None if ok else ValueError

    return rule


def _one_of_rule(allowed: tuple[str, ...]) -> Rule:
    def rule(value: object) -> type[Exception] | None:
        return None if isinstance(value, str) and value in allowed else ValueError

    return rule


def _optional_str_rule(value: object) -> type[Exception] | None:
    ok = value is None or (isinstance(value, str) and value != "")
    return None if ok else TypeError


def _bool_rule(value: object) -> type[Exception] | None:
    return None if isinstance(value, bool) else TypeError


def _dict_rule(value: object) -> type[Exception] | None:
    return None if isinstance(value, dict) else TypeError


#: The documented rules of every field: the error type a bad value must raise.
BATCH_RULES: dict[str, Rule] = {
    "batch_size": _int_rule(1, optional=False),
    "num_parallel": _int_rule(1, optional=False),
    "chunk_size": _int_rule(1, optional=False),
    "max_retries": _int_rule(0, optional=False),
    "timeout_s": _number_rule(above=0, optional=True),
    "on_error": _one_of_rule(("raise", "continue")),
    "max_inflight_bytes": _int_rule(1, optional=False),
}
RAY_RULES: dict[str, Rule] = {
    "num_cpus": _int_rule(1, optional=True, maximum=2**20),
    "num_gpus": _int_rule(0, optional=True, maximum=2**20),
    "memory": _int_rule(1, optional=True, maximum=2**60),
    "object_store_memory": _int_rule(75 * 1024 * 1024, optional=True, maximum=2**60),
    "address": _optional_str_rule,
    "namespace": _optional_str_rule,
    "include_dashboard": _bool_rule,
    "log_to_driver": _bool_rule,
    "actor_start_timeout_s": _number_rule(above=0, optional=False),
    "connect_timeout_s": _number_rule(above=0, optional=False),
    "object_store_warn_fraction": _number_rule(above=0, at_most=1, optional=False),
    "worker_niceness": _int_rule(0, optional=False, maximum=19),
    "init_kwargs": _dict_rule,
}


def test_the_oracle_covers_every_field() -> None:
    assert set(BATCH_RULES) == {f.name for f in dataclasses.fields(BatchConfig)}
    assert set(RAY_RULES) == {f.name for f in dataclasses.fields(RayConfig)}


def _check_config(owner: type[Any], rules: Mapping[str, Rule], kwargs: dict[str, Any]) -> None:
    expected = {name: rules[name](value) for name, value in kwargs.items()}
    bad = {name: error for name, error in expected.items() if error is not None}
    note(f"{owner.__name__}({kwargs!r}): bad fields {bad}")
    try:
        config = owner(**kwargs)
    except Exception as error:
        assert isinstance(error, (TypeError, ValueError)), repr(error)
        assert bad, f"valid {owner.__name__} refused: {error!r}"
        named = [name for name in bad if f"{owner.__name__}.{name}" in str(error)]
        assert named, f"message names no bad field of {sorted(bad)}: {error}"
        if len(bad) == 1:
            assert type(error) is bad[named[0]], repr(error)
    else:
        assert not bad, f"{owner.__name__} accepted bad {sorted(bad)}"
        for name, value in kwargs.items():
            stored = getattr(config, name)
            # Numbers are stored as plain int / float (numpy.int64(2) -> 2).
            if _is_number(value):
                assert stored == value and type(stored) in (int, float), (name, stored)
            else:
                assert stored is value, (name, stored)


def _field_values(rules: Mapping[str, Rule], valid: Mapping[str, st.SearchStrategy[Any]]) -> Any:
    """Some fields, each a documented-valid value or garbage."""
    return st.fixed_dictionaries(
        {}, optional={name: valid[name] | GARBAGE for name in rules}
    )


VALID_BATCH_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "batch_size": st.integers(1, 2**40),
    "num_parallel": st.integers(1, 64),
    "chunk_size": st.integers(1, 2**20),
    "max_retries": st.integers(0, 10),
    "timeout_s": st.none() | st.floats(1e-6, 1e6) | st.integers(1, 10**6),
    "on_error": st.sampled_from(["raise", "continue"]),
    "max_inflight_bytes": st.integers(1, 2**50),
}
VALID_RAY_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "num_cpus": st.none() | st.integers(1, 512),
    "num_gpus": st.none() | st.integers(0, 16),
    "memory": st.none() | st.integers(1, 2**45),
    "object_store_memory": st.none() | st.integers(75 * 1024 * 1024, 2**40),
    "address": st.none() | st.sampled_from(["auto", "127.0.0.1:6379", "ray://head:10001"]),
    "namespace": st.none() | st.text(min_size=1, max_size=8),
    "include_dashboard": st.booleans(),
    "log_to_driver": st.booleans(),
    "actor_start_timeout_s": st.floats(1e-3, 1e5) | st.integers(1, 10**5),
    "connect_timeout_s": st.floats(1e-3, 1e5) | st.integers(1, 10**5),
    "object_store_warn_fraction": st.floats(1e-6, 1.0),
    "worker_niceness": st.integers(0, 19),
    "init_kwargs": st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
}


@FUZZ_SETTINGS
@given(kwargs=_field_values(BATCH_RULES, VALID_BATCH_FIELDS))
def test_batch_config_constructs_or_names_the_bad_field(kwargs: dict[str, Any]) -> None:
    _check_config(BatchConfig, BATCH_RULES, kwargs)


@FUZZ_SETTINGS
@given(kwargs=_field_values(RAY_RULES, VALID_RAY_FIELDS))
def test_ray_config_constructs_or_names_the_bad_field(kwargs: dict[str, Any]) -> None:
    _check_config(RayConfig, RAY_RULES, kwargs)


@FUZZ_SETTINGS
@given(
    owner=st.sampled_from([BatchConfig, RayConfig]),
    name=st.text(min_size=1, max_size=8).filter(str.isidentifier),
    value=GARBAGE,
)
def test_unknown_config_fields_are_type_errors_naming_them(
    owner: type[Any], name: str, value: Any
) -> None:
    if name in {f.name for f in dataclasses.fields(owner)}:
        return
    with pytest.raises(TypeError, match=name):
        owner(**{name: value})


def test_numpy_array_as_on_error_names_the_field() -> None:
    with pytest.raises((TypeError, ValueError), match=r"BatchConfig\.on_error"):
        BatchConfig(on_error=np.array(["raise", "continue"]))  # type: ignore[arg-type]


def test_a_deque_is_read_as_rows(fuzz_manager: RayManager, fuzz_pool: ActorPool) -> None:
    data = collections.deque(range(10))  # a Sequence that cannot be sliced: read lazily
    results = fuzz_manager.process_in_parallel(fuzz_pool, data, BatchConfig(batch_size=4))
    assert [r["rows"] for r in results] == [4, 4, 2]
    _assert_healthy(fuzz_pool)
