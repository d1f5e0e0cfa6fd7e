"""The tanh MLP policies of the built-in agents: the ``hidden_sizes`` key and the forward pass.

Both built-in agents (:mod:`raymanager.agents.es`, :mod:`raymanager.agents.ars`)
accept ``hidden_sizes``: a list of layer widths, empty for a linear policy,
``[64, 64]`` for the two tanh layers of 64 units that Salimans et al. (2017)
trained. This module checks that key and computes the layers' output, one
policy per row, the same way for both agents.

    >>> hidden_sizes_from({"hidden_sizes": [64, 64]})
    (64, 64)
    >>> layer_shapes(4, (64, 64), 2)
    [(4, 64), (64, 64), (64, 2)]

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "MAX_HIDDEN_LAYERS",
    "MAX_LAYER_UNITS",
    "FlatLayout",
    "check_hidden_sizes",
    "hidden_sizes_from",
    "layer_shapes",
    "mlp_rows",
]

# Bounds that only catch typos (64000 for 64, a list pasted twice): ES and ARS
# perturb every parameter with one normal draw per round and direction, so a
# policy near these bounds is already far past what they can train on a CPU.
#: Largest width ``hidden_sizes`` accepts for one layer.
MAX_LAYER_UNITS = 4096
#: Most hidden layers ``hidden_sizes`` accepts.
MAX_HIDDEN_LAYERS = 8


def check_hidden_sizes(value: object, key: str = "hidden_sizes") -> tuple[int, ...]:
    """``value`` as a tuple of layer widths, or a TypeError/ValueError naming ``config[key]``.

    A list or tuple of ints (numpy ints too) in ``[1, MAX_LAYER_UNITS]``, at
    most ``MAX_HIDDEN_LAYERS`` of them; empty means a linear policy. A string
    such as ``"64,64"`` is refused: parsing it is the command line's job.

    >>> check_hidden_sizes([32, 16])
    (32, 16)
    >>> check_hidden_sizes([64, 0])
    Traceback (most recent call last):
    ...
    ValueError: config['hidden_sizes'][1] must be >= 1, got 0
    """
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"config[{key!r}] must be a list of ints (layer widths, [] = linear), got {value!r}")
    if len(value) > MAX_HIDDEN_LAYERS:
        raise ValueError(
            f"config[{key!r}] has {len(value)} hidden layers, at most {MAX_HIDDEN_LAYERS} "
            f"(a typo?), got {value!r}")
    sizes = []
    for index, size in enumerate(value):
        # bool is an int subclass; True as a width is a mistake, not 1 unit.
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
            raise TypeError(f"config[{key!r}][{index}] must be an int, got {size!r}")
        if size < 1:
            raise ValueError(f"config[{key!r}][{index}] must be >= 1, got {size!r}")
        if size > MAX_LAYER_UNITS:
            raise ValueError(
                f"config[{key!r}][{index}] must be <= {MAX_LAYER_UNITS} units (a typo?), "
                f"got {size!r}")
        sizes.append(int(size))
    return tuple(sizes)


def hidden_sizes_from(config: Mapping[str, Any]) -> tuple[int, ...]:
    """The checked ``hidden_sizes`` of ``config`` (``()``, linear, when absent).

    >>> hidden_sizes_from({})
    ()
    >>> hidden_sizes_from({"hidden_sizes": "64,64"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: config['hidden_sizes'] must be a list of ints ...
    """
    return check_hidden_sizes(config.get("hidden_sizes", ()), "hidden_sizes")


def layer_shapes(inputs: int, hidden_sizes: Sequence[int], outputs: int) -> list[tuple[int, int]]:
    """``(fan_in, fan_out)`` of each layer, input layer first.

    >>> layer_shapes(3, (), 1)
    [(3, 1)]
    """
    widths = [inputs, *hidden_sizes, outputs]
    return list(itertools.pairwise(widths))


def mlp_rows(layers: Sequence[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Outputs of policy ``i`` for input row ``i``: tanh between layers, the last one linear.

    ``layers`` holds ``(W, b)`` per layer with ``W`` of shape ``(rows, fan_in,
    fan_out)`` and ``b`` of shape ``(rows, fan_out)``; ``rows`` may be 1 (one
    policy for every input row). Written as broadcast multiply-and-sum rather
    than matmul: a row's result then does not depend on how many rows are
    computed together, which keeps chunked and unchunked rollouts bit-identical.

    >>> w, b = np.ones((1, 2, 1)), np.zeros((1, 1))
    >>> mlp_rows([(w, b)], np.array([[1.0, 2.0], [3.0, 4.0]])).tolist()
    [[3.0], [7.0]]
    """
    for index, (weights, bias) in enumerate(layers):
        x = (x[:, :, None] * weights).sum(axis=1) + bias
        if index < len(layers) - 1:
            x = np.tanh(x)
    return x


class FlatLayout:
    """Named arrays laid one after another in a flat parameter vector (what ES and ARS
    perturb), in the order of ``shapes``.

    >>> layout = FlatLayout({"W": (2, 3), "b": (3,)})
    >>> layout.num_params, layout.unflatten(np.arange(18.0).reshape(2, 9))["b"][1].tolist()
    (9, [15.0, 16.0, 17.0])
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.shapes = shapes
        self.sizes = {name: math.prod(shape) for name, shape in shapes.items()}
        self.num_params = sum(self.sizes.values())

    def unflatten(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Views of rows of flat parameters ``(rows, num_params)`` as named arrays."""
        named: dict[str, np.ndarray] = {}
        offset = 0
        for name, shape in self.shapes.items():
            size = self.sizes[name]
            named[name] = flat[:, offset : offset + size].reshape((len(flat), *shape))
            offset += size
        return named
