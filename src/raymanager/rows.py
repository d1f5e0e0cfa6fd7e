"""Rows of any input: slicing them and sizing them, whatever holds them.

Numpy arrays, sequences, mappings of columns, pandas and pyarrow tables (by
module name: neither library is imported here) and arrays of other libraries
(torch, jax, ...) are cut by rows with :func:`slice_rows` and sized in bytes
with :func:`rows_nbytes`, the same way in the driver and in the workers.

Imports numpy only (nothing of ours, no ray).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["is_array_like", "rows_nbytes", "slice_rows", "table_kind"]


def slice_rows(rows: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of an array, a sequence, a table or a mapping of columns.

    >>> slice_rows({"a": [1, 2, 3]}, 1, 3)
    {'a': [2, 3]}
    """
    if isinstance(rows, Mapping):
        return {key: column[start:stop] for key, column in rows.items()}
    kind = table_kind(rows)
    if kind == "pandas":
        return rows.iloc[start:stop]  # by position, whatever the index
    if kind == "arrow":
        return rows.slice(start, max(0, stop - start))
    return rows[start:stop]


def table_kind(data: Any) -> str | None:
    """"pandas" / "arrow" for the table types cut by rows their own way.

    Found by module name, so neither library is imported here.
    """
    module = type(data).__module__
    if module.startswith("pandas.") and hasattr(data, "iloc"):
        return "pandas"
    if module.startswith("pyarrow") and hasattr(data, "num_rows") and hasattr(data, "slice"):
        return "arrow"
    return None


def is_array_like(data: Any) -> bool:
    """An array of another library (torch, jax, cupy, ...): sliced by ``data[a:b]``."""
    return (
        hasattr(data, "__array__") and hasattr(data, "shape") and hasattr(data, "__getitem__")
        and hasattr(data, "__len__") and len(getattr(data, "shape", ())) > 0
    )


def rows_nbytes(rows: Any) -> int:
    """Bytes of ``rows``: exact for arrays and tables, about 64 per plain Python row.

    >>> rows_nbytes(np.zeros(4)), rows_nbytes([1, 2]), rows_nbytes(None)
    (32, 128, 0)
    """
    if rows is None:
        return 0
    if isinstance(rows, np.ndarray):
        return int(rows.nbytes)
    kind = table_kind(rows)
    if kind == "pandas":
        return int(rows.memory_usage(deep=False, index=False).sum()) if rows.ndim == 2 else int(
            rows.memory_usage(deep=False, index=False))
    if kind == "arrow" or is_array_like(rows):
        nbytes = getattr(rows, "nbytes", None)
        if isinstance(nbytes, int):
            return nbytes
    if isinstance(rows, Mapping):
        return sum(rows_nbytes(column) for column in rows.values())
    if isinstance(rows, (list, tuple)) and rows and isinstance(rows[0], np.ndarray):
        return sum(int(getattr(row, "nbytes", 0)) for row in rows)
    # Plain Python rows: a rough 64 bytes each keeps the byte bound meaningful.
    try:
        return 64 * len(rows)
    except TypeError:
        return 0
