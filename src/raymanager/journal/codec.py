"""The result codec: a batch's result as JSON plus ``.npy`` records, and back.

A journal stores each result as its structure in JSON (arrays and numpy
scalars replaced by their position in a list) and its numpy arrays as
consecutive ``.npy`` records, written and read with ``allow_pickle=False``:
a journal never holds a pickle, and reading one never runs code. Stored are
numpy arrays (not of objects), numpy scalars, numbers, strings, None, and
lists, tuples and string-keyed dicts of them.

    >>> structure, blob = encode_result({"loss": 0.5, "ids": (1, 2)})
    >>> decode_result(structure, blob)
    {'loss': 0.5, 'ids': (1, 2)}

Imports numpy and the standard library only (nothing of ours, no ray).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

__all__ = ["decode_result", "encode_result"]


def encode_result(result: Any) -> tuple[str, bytes | None]:
    """``result`` as (JSON structure, ``.npy`` records or None); TypeError if it cannot be kept.

    >>> encode_result([1, "a"])
    ('[1,"a"]', None)
    """
    arrays: list[np.ndarray] = []
    structure = json.dumps(_to_tree(result, arrays), separators=(",", ":"))
    blob: bytes | None = None
    if arrays:
        buffer = io.BytesIO()
        for array in arrays:
            np.lib.format.write_array(buffer, array, allow_pickle=False)
        blob = buffer.getvalue()
    return structure, blob


def decode_result(structure: str, blob: bytes | None) -> Any:
    """The result :func:`encode_result` encoded; ValueError, KeyError, IndexError,
    TypeError or OSError for a record that is not one.

    >>> decode_result('{"__tuple__":[1,2]}', None)
    (1, 2)
    """
    arrays: list[np.ndarray] = []
    if blob is not None:
        stream = io.BytesIO(blob)
        while stream.tell() < len(blob):
            arrays.append(np.lib.format.read_array(stream, allow_pickle=False))
    return _from_tree(json.loads(structure), arrays)


def _to_tree(value: Any, arrays: list[np.ndarray]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("a numpy array of Python objects")
        arrays.append(value)
        return {"__ndarray__": len(arrays) - 1}
    if isinstance(value, np.generic):
        if isinstance(value, np.object_):
            raise TypeError("a numpy object scalar")
        arrays.append(np.asarray(value))
        return {"__scalar__": len(arrays) - 1}
    if isinstance(value, tuple):
        return {"__tuple__": [_to_tree(item, arrays) for item in value]}
    if isinstance(value, list):
        return [_to_tree(item, arrays) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("a dict with keys that are not strings")
        if any(key.startswith("__") and key.endswith("__") for key in value):
            return {"__dict__": {key: _to_tree(item, arrays) for key, item in value.items()}}
        return {key: _to_tree(item, arrays) for key, item in value.items()}
    raise TypeError(f"a {type(value).__module__}.{type(value).__qualname__}")


def _from_tree(value: Any, arrays: list[np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_from_tree(item, arrays) for item in value]
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return arrays[value["__ndarray__"]]
        if "__scalar__" in value:
            return arrays[value["__scalar__"]][()]
        if "__tuple__" in value:
            return tuple(_from_tree(item, arrays) for item in value["__tuple__"])
        if "__dict__" in value:
            return {key: _from_tree(item, arrays) for key, item in value["__dict__"].items()}
        return {key: _from_tree(item, arrays) for key, item in value.items()}
    return value
