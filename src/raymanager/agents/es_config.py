"""The ``es`` agent's config keys, checked into an :class:`ESConfig`.

Config keys (all optional):

=====================  ==================  =============================================
key                    default             meaning
=====================  ==================  =============================================
``agent``              ``"es"``            this agent
``env``                ``"CartPole-v1"``   gymnasium id (see :mod:`raymanager.envs`)
``env_kwargs``         ``{}``              keyword arguments of the environment
``max_episode_steps``  ``None``            episode time limit; None = the env's own
``learning_rate``      ``0.3``             Adam step size
``noise_std``          ``0.1``             standard deviation of the perturbations
``seed``               ``0``               seeds the initial weights: every agent
                                           built from one config starts identical
``hidden_sizes``       ``[]``              widths of the tanh hidden layers, input side
                                           first, each 1-4096, at most 8; [] = linear
``hidden_size``        ``0``               the older form of one layer: n is
                                           ``hidden_sizes=[n]``, 0 is ``[]``; giving
                                           both keys, they must agree
``l2``                 ``0.1``             L2 weight decay added to the gradient
=====================  ==================  =============================================

    >>> ESConfig.from_mapping({"noise_std": 0.05}).learning_rate
    0.3

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raymanager.agents.config_keys import check_known_keys, int_at_least, positive_number
from raymanager.agents.mlp import check_hidden_sizes
from raymanager.envs import ENV_CONFIG_KEYS

__all__ = ["ES_CONFIG_KEYS", "ESConfig"]

#: Every config key the ES agent reads; any other key is rejected as a likely typo.
ES_CONFIG_KEYS = (
    "agent",
    *ENV_CONFIG_KEYS,
    "hidden_size",
    "hidden_sizes",
    "l2",
    "learning_rate",
    "noise_std",
    "seed",
)

@dataclass(frozen=True)
class ESConfig:
    """The ES hyperparameters of a config mapping, checked (see the module docstring).

    ``hidden_sizes`` is the policy's layout; ``hidden_size`` is the older key as
    given (0 when absent), kept so that configs and code that read it still work.

    >>> ESConfig.from_mapping({"learning_rate": 0.001}).noise_std
    0.1
    >>> ESConfig.from_mapping({"hidden_size": 8}).hidden_sizes
    (8,)
    >>> ESConfig.from_mapping({"learnig_rate": 0.001})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: config key 'learnig_rate' is not used by the 'es' agent (did you mean ...?)
    """

    learning_rate: float = 0.3
    noise_std: float = 0.1
    seed: int = 0
    hidden_size: int = 0
    l2: float = 0.1
    hidden_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        sizes = check_hidden_sizes(self.hidden_sizes)
        if self.hidden_size and sizes and sizes != (self.hidden_size,):
            raise ValueError(_disagree(self.hidden_size, sizes))
        if self.hidden_size and not sizes:
            # hidden_size is not bounded as hidden_sizes is: it keeps accepting
            # what it accepted before hidden_sizes existed.
            sizes = (self.hidden_size,)
        # Frozen: set through object.__setattr__, once, while being built.
        object.__setattr__(self, "hidden_sizes", sizes)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> ESConfig:
        """Read and check the ES keys of ``config``; raises ValueError/TypeError naming the key."""
        check_known_keys(config, ES_CONFIG_KEYS, "es")
        defaults = cls()
        learning_rate = positive_number(config, "learning_rate", defaults.learning_rate)
        noise_std = positive_number(config, "noise_std", defaults.noise_std)
        l2 = config.get("l2", defaults.l2)
        if isinstance(l2, bool) or not isinstance(l2, (int, float)):
            raise TypeError(f"config['l2'] must be a number, got {l2!r}")
        if not math.isfinite(l2) or l2 < 0:
            raise ValueError(f"config['l2'] must be a finite number >= 0, got {l2!r}")
        seed = int_at_least(config, "seed", defaults.seed, minimum=0)
        hidden_size = int_at_least(config, "hidden_size", defaults.hidden_size, minimum=0)
        hidden_sizes = check_hidden_sizes(config.get("hidden_sizes", ()), "hidden_sizes")
        # Both keys given: hidden_size 0 says "linear" too, so it must match [] here
        # (__post_init__ alone cannot tell an explicit 0 from the default).
        if "hidden_size" in config and "hidden_sizes" in config and hidden_sizes != (
            (hidden_size,) if hidden_size else ()
        ):
            raise ValueError(_disagree(hidden_size, hidden_sizes))
        return cls(
            learning_rate=learning_rate,
            noise_std=noise_std,
            seed=seed,
            hidden_size=hidden_size,
            l2=float(l2),
            hidden_sizes=hidden_sizes,
        )


def _disagree(hidden_size: int, hidden_sizes: tuple[int, ...]) -> str:
    return (
        f"config['hidden_size'] = {hidden_size} and config['hidden_sizes'] = "
        f"{list(hidden_sizes)} disagree: give only 'hidden_sizes' (hidden_size n means "
        f"hidden_sizes [n], 0 means [])"
    )
