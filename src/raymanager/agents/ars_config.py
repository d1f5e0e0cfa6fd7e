"""The ``ars`` agent's config keys, checked into an :class:`ARSConfig`, and the ARS
paper's hyperparameters per task (:data:`ARS_PRESETS`).

Config keys (all optional; hyperparameters default to the paper's V2-t values
for the environment, see :data:`ARS_PRESETS`, else the generic row):

============================  ===========================================================
key                           meaning
============================  ===========================================================
``learning_rate``             step size alpha
``noise_std``                 exploration noise nu
``top_directions``            b: directions kept per round (<= directions per round)
``reward_shift``              subtracted from every training reward
``normalize_observations``    V2 (True, default) or V1 (False)
``hidden_sizes``              widths of tanh hidden layers, input side first, each 1-4096,
                              at most 8; ``[]`` (default) = the paper's linear policy
``seed``                      draws an MLP's hidden layers; unused by the linear policy
                              (M starts at 0, as in the paper)
============================  ===========================================================

    >>> ARSConfig.from_mapping({"env": "Swimmer-v5"}).learning_rate
    0.02

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raymanager.agents.config_keys import check_known_keys, int_at_least, positive_number
from raymanager.agents.mlp import hidden_sizes_from
from raymanager.envs import ENV_CONFIG_KEYS, env_settings

__all__ = ["ARS_CONFIG_KEYS", "ARS_PRESETS", "GENERIC_PRESET", "ARSConfig", "ars_preset"]

#: Every config key the ARS agent reads.
ARS_CONFIG_KEYS = (
    "agent",
    *ENV_CONFIG_KEYS,
    "learning_rate",
    "noise_std",
    "top_directions",
    "reward_shift",
    "normalize_observations",
    "hidden_sizes",
    "seed",
)

#: V2-t hyperparameters of the ARS paper (Table 9) by environment family:
#: step size, directions per round, top directions, noise, survival bonus removed.
ARS_PRESETS: Mapping[str, Mapping[str, float]] = {
    "Swimmer": {"learning_rate": 0.02, "directions": 1, "top_directions": 1,
                "noise_std": 0.01, "reward_shift": 0.0},
    "Hopper": {"learning_rate": 0.01, "directions": 8, "top_directions": 4,
               "noise_std": 0.025, "reward_shift": 1.0},
    "HalfCheetah": {"learning_rate": 0.02, "directions": 32, "top_directions": 4,
                    "noise_std": 0.03, "reward_shift": 0.0},
    "Walker2d": {"learning_rate": 0.025, "directions": 40, "top_directions": 30,
                 "noise_std": 0.01, "reward_shift": 1.0},
    "Ant": {"learning_rate": 0.015, "directions": 60, "top_directions": 20,
            "noise_std": 0.025, "reward_shift": 1.0},
    "Humanoid": {"learning_rate": 0.02, "directions": 230, "top_directions": 230,
                 "noise_std": 0.0075, "reward_shift": 5.0},
}

#: For environments outside the table.
GENERIC_PRESET: Mapping[str, float] = {
    "learning_rate": 0.02, "directions": 16, "top_directions": 8,
    "noise_std": 0.03, "reward_shift": 0.0,
}

def ars_preset(env_id: str) -> Mapping[str, float]:
    """The paper's V2-t hyperparameters for ``env_id`` (any version), else generic ones.

    >>> ars_preset("HalfCheetah-v5")["directions"]
    32
    >>> ars_preset("Pendulum-v1") == GENERIC_PRESET
    True
    """
    family = env_id.split(":")[-1].split("-")[0]
    return ARS_PRESETS.get(family, GENERIC_PRESET)


@dataclass(frozen=True)
class ARSConfig:
    """The ARS keys of a config mapping, checked, with the environment's preset filled in.

    >>> ARSConfig.from_mapping({"env": "Hopper-v5"}).top_directions
    4
    >>> ARSConfig.from_mapping({"top_direction": 3})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: config key 'top_direction' is not used by the 'ars' agent (did you mean ...?)
    """

    learning_rate: float
    noise_std: float
    top_directions: int
    reward_shift: float
    normalize_observations: bool
    seed: int
    hidden_sizes: tuple[int, ...] = ()

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> ARSConfig:
        """Read and check the ARS keys of ``config``; raises ValueError/TypeError naming the key."""
        check_known_keys(config, ARS_CONFIG_KEYS, "ars")
        preset = ars_preset(env_settings(config).env_id)
        normalize = config.get("normalize_observations", True)
        if not isinstance(normalize, bool):
            raise TypeError(f"config['normalize_observations'] must be a bool, got {normalize!r}")
        shift = config.get("reward_shift", preset["reward_shift"])
        if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not math.isfinite(
            shift
        ):
            raise ValueError(f"config['reward_shift'] must be a finite number, got {shift!r}")
        return cls(
            learning_rate=positive_number(config, "learning_rate", preset["learning_rate"]),
            noise_std=positive_number(config, "noise_std", preset["noise_std"]),
            top_directions=int_at_least(config, "top_directions",
                                        int(preset["top_directions"]), minimum=1),
            reward_shift=float(shift),
            normalize_observations=normalize,
            seed=int_at_least(config, "seed", 0, minimum=0),
            hidden_sizes=hidden_sizes_from(config),
        )
