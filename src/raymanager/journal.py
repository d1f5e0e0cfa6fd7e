"""Durable runs: a journal of finished batches, so a stopped run resumes where it was.

``process_in_parallel(pool, data, config, journal=PATH)`` records each batch's
result in ``PATH`` as it arrives; the same call after a driver crash, a reboot
or Ctrl-C skips the batches already done and returns the same results.

Layout: ``PATH/meta.json`` (a fingerprint of the input and the batch config)
and ``PATH/batches/<index>.npz``, one file per batch, written to a temporary
file and renamed, so a crash never leaves half a record. Results at rest are
never pickled: numpy arrays (not of objects), numbers, strings, None, and
lists, tuples and string-keyed dicts of them are stored; reading uses
``allow_pickle=False``. Anything else is refused with a clear error at the
first batch.

    >>> journal = Journal.open(tmp_path, {"batch_size": 4, "rows": 10})   # doctest: +SKIP
    >>> journal.write(0, {"loss": np.float32(0.5), "ids": [1, 2]})        # doctest: +SKIP

No ray import here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from raymanager.errors import JournalError

__all__ = ["Journal", "JournalError", "fingerprint"]

#: Arrays up to this size are hashed whole for the fingerprint; larger ones by
#: their shape, dtype and first and last MiB.
HASH_WHOLE_BYTES = 64 * 1024 * 1024
_EDGE = 1024 * 1024


def fingerprint(data: Any, batch_size: int, num_rows: int | None) -> dict[str, Any]:
    """What identifies a run's input: its kind, size, batch size, and content where cheap.

    Arrays are hashed (whole up to 64 MiB, else shape, dtype and their edges);
    sequences by their items' repr at both ends; lazy iterables only by kind,
    since reading them would consume them.
    """
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(data, np.ndarray):
        digest.update(f"{data.dtype}{data.shape}".encode())
        if not data.dtype.hasobject:
            flat = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            if flat.size <= HASH_WHOLE_BYTES:
                digest.update(flat.tobytes())
            else:
                digest.update(flat[:_EDGE].tobytes())
                digest.update(flat[-_EDGE:].tobytes())
        content: str | None = digest.hexdigest()
    elif isinstance(data, Mapping):
        for key in sorted(map(str, data)):
            digest.update(key.encode())
        for column in data.values():
            if isinstance(column, np.ndarray):
                digest.update(str(fingerprint(column, batch_size, num_rows)["content"]).encode())
        content = digest.hexdigest()
    elif num_rows is not None and hasattr(data, "__getitem__"):
        try:
            edges = list(data[:100]) + list(data[-100:])
            digest.update(repr(edges).encode())
            content = digest.hexdigest()
        except Exception:
            content = None
    else:
        content = None  # a lazy iterable: reading it would consume it
    return {"kind": type(data).__name__, "rows": num_rows, "batch_size": batch_size,
            "content": content}


class Journal:
    """The finished batches of one run, on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches = path / "batches"
        self.done: set[int] = set()

    @classmethod
    def open(cls, path: str | os.PathLike[str], expected: dict[str, Any]) -> Journal:
        """Open (or create) the journal at ``path`` for an input with this fingerprint."""
        journal = cls(Path(path))
        meta = journal.path / "meta.json"
        try:
            journal.batches.mkdir(parents=True, exist_ok=True)
            if meta.exists():
                found = json.loads(meta.read_text())
                if found.get("fingerprint") != expected:
                    raise JournalError(
                        f"the journal at {journal.path} was made for other data or another "
                        f"batch config ({found.get('fingerprint')}, now {expected}); use a new "
                        "journal path, or remove this one to start over"
                    )
            else:
                _atomic_write(meta, json.dumps({"version": 1, "fingerprint": expected}).encode())
        except (OSError, ValueError) as exc:
            raise JournalError(f"cannot use the journal at {journal.path}: {exc}") from exc
        journal.done = {int(p.stem) for p in journal.batches.glob("*.npz") if p.stem.isdigit()}
        return journal

    def write(self, index: int, result: Any) -> None:
        """Record batch ``index``'s result (atomically); JournalError if it cannot be stored."""
        arrays: dict[str, np.ndarray] = {}
        try:
            encoded = _encode(result, arrays)
        except TypeError as exc:
            raise JournalError(
                f"batch {index}'s result cannot be kept in a journal: {exc}. A journal stores "
                "numpy arrays, numbers, strings, None, and lists, tuples and string-keyed dicts "
                "of them (never pickles)"
            ) from None
        arrays["__json__"] = np.array(json.dumps(encoded))
        named: dict[str, Any] = arrays  # np.savez's stubs type **kwargs narrowly
        target = self.batches / f"{index}.npz"
        fd, tmp = tempfile.mkstemp(dir=self.batches, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **named)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.done.add(index)

    def read(self, index: int) -> Any:
        """Batch ``index``'s recorded result."""
        try:
            with np.load(self.batches / f"{index}.npz", allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            encoded = json.loads(str(arrays.pop("__json__")))
        except (OSError, ValueError, KeyError) as exc:
            # Not numpy's text: it suggests allow_pickle, which we never do.
            raise JournalError(
                f"the journal's record of batch {index} is corrupt (not a readable record: "
                f"{type(exc).__name__}); remove {self.batches / f'{index}.npz'} to run that "
                "batch again"
            ) from None
        return _decode(encoded, arrays)


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("a numpy array of Python objects")
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"__ndarray__": name}
    if isinstance(value, np.generic):
        name = f"a{len(arrays)}"
        arrays[name] = np.asarray(value)
        return {"__scalar__": name}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a dict with keys that are not strings")
        if any(k.startswith("__") and k.endswith("__") for k in value):
            return {"__dict__": {k: _encode(v, arrays) for k, v in value.items()}}
        return {k: _encode(v, arrays) for k, v in value.items()}
    raise TypeError(f"a {type(value).__module__}.{type(value).__qualname__}")


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return arrays[value["__ndarray__"]]
        if "__scalar__" in value:
            return arrays[value["__scalar__"]][()]
        if "__tuple__" in value:
            return tuple(_decode(v, arrays) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
        return {k: _decode(v, arrays) for k, v in value.items()}
    return value


def _atomic_write(target: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
