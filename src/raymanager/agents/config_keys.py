"""Checks of an agent's config keys, shared by the built-in agents: unknown keys (a
likely typo, with the closest known key), numbers, ints, and a batch of seeds.

Each check raises ValueError or TypeError naming the key (``config['noise_std']``).

    >>> positive_number({"noise_std": 0.02}, "noise_std", 0.1)
    0.02
    >>> check_known_keys({"learnig_rate": 1}, ("learning_rate",), "es")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: config key 'learnig_rate' is not used by the 'es' agent (did you mean ...?)

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["EPISODE_SEED_BOUND", "as_seeds", "check_known_keys", "int_at_least",
           "positive_number"]

#: Episode seeds are drawn below 2**31 so that every gymnasium env accepts them.
EPISODE_SEED_BOUND = 2**31 - 1


def check_known_keys(config: Mapping[str, Any], known: Sequence[str], agent: str) -> None:
    """Refuse a key the agent does not read, naming the closest one it does."""
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"config key {key!r} is not used by the {agent!r} agent{hint}")


def positive_number(config: Mapping[str, Any], key: str, default: float) -> float:
    """``config[key]`` (else ``default``) as a finite float > 0."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"config[{key!r}] must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"config[{key!r}] must be a finite number > 0, got {value!r}")
    return float(value)


def int_at_least(config: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    """``config[key]`` (else ``default``) as an int >= ``minimum``."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"config[{key!r}] must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"config[{key!r}] must be >= {minimum}, got {value!r}")
    return int(value)


def as_seeds(batch: Any) -> np.ndarray:
    """A batch of seeds as an int64 array; rejects anything that is not non-negative ints.

    >>> as_seeds([3, 4]).dtype
    dtype('int64')
    """
    seeds = np.asarray(batch)
    if seeds.ndim != 1:
        raise ValueError(f"a batch of seeds must be 1-D, got shape {seeds.shape}")
    if seeds.size == 0:
        raise ValueError("a batch of seeds is empty; nothing to train on")
    if not np.issubdtype(seeds.dtype, np.integer):
        raise TypeError(f"training data must be integer seeds, got dtype {seeds.dtype}")
    if (seeds < 0).any():
        raise ValueError(f"seeds must be >= 0, got {int(seeds.min())}")
    return seeds.astype(np.int64, copy=False)
