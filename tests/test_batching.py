"""Cutting data into batches and groups, without Ray."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from raymanager.actors.base import RayActor, chunk_rows, num_rows
from raymanager.batching import make_source, slice_rows


def drain(source, size):  # type: ignore[no-untyped-def]
    groups = []
    while (group := source.take(size)) is not None:
        groups.append(group)
    return groups


def test_array_batches_and_last_smaller() -> None:
    source = make_source(np.arange(10), batch_size=4)
    assert source.num_batches == 3 and source.shared is None
    groups = drain(source, 1)
    assert [g.rows.tolist() for g in groups] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [g.first for g in groups] == [0, 1, 2]


def test_large_array_is_shared_and_groups_are_row_ranges() -> None:
    data = np.zeros((100_000, 8))
    source = make_source(data, batch_size=1000)
    assert source.shared is data
    group = source.take(3)
    assert group is not None and group.rows is None
    assert (group.first, group.count, group.row_start, group.row_stop) == (0, 3, 0, 3000)


def test_sequence_keeps_type() -> None:
    groups = drain(make_source(range(7), batch_size=3), 2)
    assert groups[0].rows == range(0, 6) and groups[1].rows == range(6, 7)


def test_mapping_columns() -> None:
    data = {"x": np.arange(5), "y": np.arange(5) * 10}
    group = make_source(data, batch_size=2).take(1)
    assert group is not None
    assert {k: v.tolist() for k, v in group.rows.items()} == {"x": [0, 1], "y": [0, 10]}


def test_ragged_mapping_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        make_source({"x": [1, 2, 3], "y": [1, 2]}, batch_size=2)


def test_generator_is_lazy() -> None:
    pulled = []

    def rows():  # type: ignore[no-untyped-def]
        for i in range(10):
            pulled.append(i)
            yield i

    source = make_source(rows(), batch_size=3)
    assert source.num_batches is None
    group = source.take(1)
    assert group is not None and group.rows == [0, 1, 2]
    assert len(pulled) == 3  # nothing read ahead
    rest = drain(source, 5)
    assert [g.count for g in rest] == [3]  # 7 rows left: 3 batches
    assert source.num_batches == 4 and source.exhausted


def test_empty_inputs() -> None:
    assert make_source([], batch_size=4).is_empty()
    assert make_source(np.zeros((0, 3)), batch_size=4).is_empty()
    assert make_source(iter([]), batch_size=4).is_empty()
    source = make_source(iter([1]), batch_size=4)
    assert not source.is_empty()
    assert drain(source, 1)[0].rows == [1]


@pytest.mark.parametrize("bad", ["text", b"bytes", 42, np.float64(3.0), np.array(5)])
def test_unsupported_data_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        make_source(bad, batch_size=4)


def test_split_for_retries() -> None:
    source = make_source(list(range(10)), batch_size=3)
    group = source.take(4)
    assert group is not None
    parts = group.split(3)
    assert [(p.first, p.rows) for p in parts] == [
        (0, [0, 1, 2]), (1, [3, 4, 5]), (2, [6, 7, 8]), (3, [9])]
    shared = make_source(np.zeros((1_000_000,)), batch_size=300_000).take(4)
    assert shared is not None
    assert [(p.row_start, p.row_stop) for p in shared.split(300_000)] == [
        (0, 300_000), (300_000, 600_000), (600_000, 900_000), (900_000, 1_000_000)]


def test_chunk_helpers() -> None:
    assert [c.tolist() for c in chunk_rows(np.arange(5), 2)] == [[0, 1], [2, 3], [4]]
    assert num_rows({"a": [1, 2], "b": [3, 4]}) == 2
    assert slice_rows({"a": [1, 2, 3]}, 0, 2) == {"a": [1, 2]}
    with pytest.raises(ValueError):
        list(chunk_rows([1], 0))


def test_ray_actor_plain_python() -> None:
    class Double(RayActor[list[int], list[int]]):
        def process_batch(self, batch: list[int]) -> list[int]:
            return [2 * x for chunk in self.iter_chunks(batch) for x in chunk]

    actor = Double({"k": 1})
    actor.chunk_size = 2
    assert actor.process_batch([1, 2, 3]) == [2, 4, 6]
    assert actor.config == {"k": 1}
    with pytest.raises(TypeError, match="config mapping"):
        Double([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RayActor({})  # type: ignore[abstract]


class ArrayLike:
    """An array of another library (like a torch tensor): ``__array__``, ``shape``, slicing."""

    def __init__(self, values: list[int]) -> None:
        self.values = values
        self.shape = (len(values),)

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return np.asarray(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: slice) -> ArrayLike:
        return ArrayLike(self.values[index])


def test_array_likes_of_other_libraries_are_cut_into_slices_of_their_type() -> None:
    source = make_source(ArrayLike(list(range(10))), batch_size=4)
    group = source.take(3)
    assert group is not None and isinstance(group.rows, ArrayLike)
    assert [slice_rows(group.rows, a, a + 4).values for a in (0, 4, 8)] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_dataframe_is_cut_by_rows_not_iterated_as_column_names() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": range(10), "y": range(10)}, index=range(50, 60))
    source = make_source(frame, batch_size=4)
    assert source.num_batches == 3
    group = source.take(1)
    assert group is not None and list(group.rows["x"]) == [0, 1, 2, 3]


def test_other_tables_are_refused_by_name() -> None:
    class Frame:  # looks like a table of a library we do not cut
        __module__ = "polars.dataframe.frame"

        def __iter__(self) -> Iterator[str]:
            return iter(["a", "b"])

    with pytest.raises(TypeError, match=r"polars\.dataframe\.frame\.Frame"):
        make_source(Frame(), batch_size=2)
