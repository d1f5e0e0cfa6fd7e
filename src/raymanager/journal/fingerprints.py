"""Input fingerprints: what identifies a run's input, and a hash of each batch's rows.

A journal is refused at open when :func:`fingerprint` of the new input differs
from the one it was made for; an input the fingerprint cannot hash whole has
each batch's rows hashed with :func:`input_digest` as they are read, and
compared with the hash recorded beside the batch's result on resume.

Imports numpy and the standard library only (nothing of ours, no ray):
``journal/store.py`` and the manager use it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
from collections.abc import Callable, Mapping, Set
from typing import Any

import numpy as np

__all__ = ["HASH_WHOLE_BYTES", "DigestOf", "fingerprint", "input_digest", "no_digest"]

#: Arrays up to this size are hashed whole for the fingerprint; the content
#: of larger ones is checked batch by batch.
HASH_WHOLE_BYTES = 64 * 1024 * 1024

#: The hash of batch ``index``'s input rows, or None where it is not checked.
DigestOf = Callable[[int], "bytes | None"]


def no_digest(index: int) -> bytes | None:
    """No per-batch hash: the input's content is in its fingerprint."""
    return None


def fingerprint(data: Any, batch_size: int, num_rows: int | None) -> dict[str, Any]:
    """What identifies a run's input at open: kind, size, batch size, and content where cheap.

    ``content`` is a hash of a numpy array (or a mapping of numpy arrays) of
    up to :data:`HASH_WHOLE_BYTES` in all; None for every other input, whose
    content is checked batch by batch instead (see :func:`input_digest`).

    >>> fingerprint(np.zeros(4), 2, 4)["content"] is not None
    True
    >>> fingerprint([1, 2, 3], 2, 3)["content"] is None
    True
    """
    content: str | None = None
    shape: Any = None
    if isinstance(data, np.ndarray):
        shape = [data.dtype.str, list(data.shape)]
        if not data.dtype.hasobject and data.nbytes <= HASH_WHOLE_BYTES:
            digest = hashlib.blake2b(digest_size=16)
            _feed_array(digest, data)
            content = digest.hexdigest()
    elif isinstance(data, Mapping):
        columns = list(data.items())
        shape = sorted(str(key) for key in data)
        arrays = [c for _, c in columns if isinstance(c, np.ndarray) and not c.dtype.hasobject]
        if len(arrays) == len(columns) and sum(a.nbytes for a in arrays) <= HASH_WHOLE_BYTES:
            digest = hashlib.blake2b(digest_size=16)
            for key, column in sorted(columns, key=lambda item: str(item[0])):
                digest.update(str(key).encode())
                _feed_array(digest, column)
            content = digest.hexdigest()
    return {"kind": type(data).__name__, "rows": num_rows, "batch_size": batch_size,
            "shape": shape, "content": content}


def input_digest(rows: Any) -> bytes:
    """A 16-byte blake2b hash of one batch's input rows, the same in every process.

    Arrays are hashed by dtype, shape and bytes; numbers and strings by
    value and type; lists, tuples, dicts and sets by their items; pandas
    and pyarrow tables by their columns and values; another object by its
    ``__dict__``, or by a ``__repr__`` of its own. An object whose content
    cannot be seen (only the default ``<X object at 0x...>`` repr) raises
    TypeError: its hash would differ in every process.

    >>> input_digest([1, 2]) == input_digest([1, 2]) != input_digest([1, 3])
    True
    """
    digest = hashlib.blake2b(digest_size=16)
    try:
        _feed(digest, rows)
    except RecursionError:
        raise TypeError("rows nested too deeply (or a cycle)") from None
    return digest.digest()


_PLAIN = (int, float, str, bool, type(None))
#: ``<X object at 0x...>``: an address, different in every process.
_DEFAULT_REPR: Any = object.__repr__


def _feed_array(digest: Any, array: np.ndarray) -> None:
    digest.update(f"A{array.dtype.str}{array.shape}".encode())
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.size:
        digest.update(flat.view(np.uint8))


def _feed(digest: Any, value: Any) -> None:
    kind = type(value)
    if kind in _PLAIN:
        text = repr(value).encode()
        digest.update(b"%s%d:" % (kind.__name__[:2].encode(), len(text)))
        digest.update(text)
    elif kind in (list, tuple):
        digest.update(b"%c%d[" % (kind.__name__[0].encode()[0], len(value)))
        if all(type(item) in _PLAIN for item in value):
            # repr of numbers, strings, bools and None is exact and unambiguous
            # (strings are quoted and escaped): one C call for the whole batch.
            digest.update(repr(value).encode())
        else:
            for item in value:
                _feed(digest, item)
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            digest.update(f"O{value.shape}".encode())
            for item in value.reshape(-1):
                _feed(digest, item)
        else:
            _feed_array(digest, value)
    elif isinstance(value, np.generic):
        _feed_array(digest, np.asarray(value))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        digest.update(b"b%d:" % len(data))
        digest.update(data)
    elif isinstance(value, range):
        digest.update(repr(value).encode())
    elif isinstance(value, Mapping):
        digest.update(b"M%d{" % len(value))
        for key, item in sorted(value.items(), key=lambda pair: repr(pair[0])):
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, Set):
        parts = sorted(input_digest(item) for item in value)
        digest.update(b"S%d{" % len(parts))
        for part in parts:
            digest.update(part)
    else:
        _feed_other(digest, value)


def _feed_other(digest: Any, value: Any) -> None:
    kind = type(value)
    module = kind.__module__
    digest.update(f"{module}.{kind.__qualname__}:".encode())
    if module.startswith("pandas.") and hasattr(value, "iloc"):
        pandas = importlib.import_module("pandas")  # already loaded: the value is pandas'

        columns = value.columns if hasattr(value, "columns") else [value.name]  # a Series
        digest.update(repr((list(columns), value.dtypes)).encode())
        hashed = pandas.util.hash_pandas_object(value, index=True).to_numpy()
        digest.update(np.ascontiguousarray(hashed).view(np.uint8))
    elif module.startswith("pyarrow") and hasattr(value, "to_pydict"):
        digest.update(str(value.schema).encode())
        _feed(digest, value.to_pydict())
    elif hasattr(value, "__array__") and hasattr(value, "shape"):
        _feed_array(digest, np.asarray(value))  # torch, jax, ... tensors
    elif dataclasses.is_dataclass(value) or (
        hasattr(value, "__dict__") and kind.__repr__ is _DEFAULT_REPR
    ):
        _feed(digest, vars(value))
    elif kind.__repr__ is not _DEFAULT_REPR:
        digest.update(repr(value).encode())
    else:
        raise TypeError(
            f"a {module}.{kind.__qualname__}, whose content cannot be seen (no __dict__, "
            "only the default repr)"
        )
