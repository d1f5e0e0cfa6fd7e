"""The built-in agent ``"ars"``: Augmented Random Search V2-t (Mania, Guy, Recht 2018).

The paper's static linear policy ``a = clip(M @ (x - mu) / sigma)`` over
observations ``x`` normalised by the running mean ``mu`` and std ``sigma`` of
every state seen in training; or, with ``hidden_sizes``, a tanh MLP on the same
normalised observations whose last layer is linear, then the same clip to the
action bounds. ``theta`` is the policy's flat parameter vector (``M``'s
entries for the linear policy). Training data are integer seeds; seed ``s``
stands for the direction ``delta = np.random.default_rng(s).standard_normal(
len(theta))`` and the start of the two episodes that evaluate it. One round:

1. workers roll out ``theta + nu * delta`` and ``theta - nu * delta`` for each seed of
   their batch (same start for both signs) with the round's ``mu, sigma``, and
   send back per seed: the two returns; per batch: the count, mean and sum of
   squared deviations of the states they saw (:meth:`ARS.rollout`);
2. the driver keeps the ``top_directions`` (b) seeds with the best
   ``max(r+, r-)``, regenerates their ``delta`` and steps
   ``theta += alpha / (b * sigma_R) * sum (r+ - r-) delta``, with ``sigma_R`` the
   std of those 2b returns; then merges the batches' state statistics into
   the running ones, in batch order (:meth:`ARS.apply_rollouts`).

So only scalars and per-observation statistics travel back: the bytes per
batch do not depend on the size of the policy. The weights (the policy and the
running statistics ``obs.count``, ``obs.mean``, ``obs.m2``) are what
checkpoints hold, so a resumed run normalises exactly as before. The policy is
``M`` (shape ``(actions, observations)``) for the linear policy, and
``W1``, ``b1``, ..., ``Wn``, ``bn`` (input layer first, ``W`` of shape
``(fan_in, fan_out)``, as in the ``es`` agent) for ``n - 1`` hidden layers.

The linear policy starts at ``M = 0``, as in the paper. An MLP does not: its
hidden layers start as normal weights scaled by ``1/sqrt(fan_in)``, drawn from
``seed``, and its output layer at 0: at an all-zero MLP a direction would
move the actions only to second order, and the step would have no signal.

For Hopper, Walker2d, Ant and Humanoid the paper removes the survival bonus
from the training rewards ("-t" is the top-b variant; the shift is part of its
MuJoCo recipe): ``reward_shift`` (default: the env's healthy reward) is
subtracted per training step. Evaluation returns are the env's own.

Config keys: see :mod:`raymanager.agents.ars_config`.

    >>> agent = ARS({"env": "Pendulum-v1", "max_episode_steps": 20})
    >>> result = agent.rollout(np.arange(4), chunk_size=4)
    >>> result["plus_returns"].shape, result["obs_count"]
    ((4,), 160.0)

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from raymanager.agents.ars_config import (
    ARS_CONFIG_KEYS,
    ARS_PRESETS,
    ARSConfig,
    ars_preset,
)
from raymanager.agents.config_keys import EPISODE_SEED_BOUND, as_seeds
from raymanager.agents.mlp import FlatLayout, layer_shapes, mlp_rows
from raymanager.agents.moments import MomentCollector, merge_moments
from raymanager.envs import env_spaces as _env_spaces
from raymanager.episodes import VectorEnvCache, run_episodes

__all__ = [
    "ARS",
    "ARS_CONFIG_KEYS",
    "ARS_PRESETS",
    "ARSConfig",
    "ars_preset",
    "merge_moments",
]

# A state coordinate with a smaller std is left unscaled (only centred).
_MIN_STD = 1e-6


class _PolicyLayout(FlatLayout):
    """Where each named policy array sits in the flat vector ``theta`` that directions perturb.

    >>> _PolicyLayout(3, 1, ()).shapes
    {'M': (1, 3)}
    >>> _PolicyLayout(3, 1, (8,)).shapes
    {'W1': (3, 8), 'b1': (8,), 'W2': (8, 1), 'b2': (1,)}
    """

    def __init__(self, obs_size: int, act_size: int, hidden_sizes: tuple[int, ...]) -> None:
        self.hidden_sizes = hidden_sizes
        self.act_size, self.obs_size = act_size, obs_size
        shapes: dict[str, tuple[int, ...]] = {}
        if not hidden_sizes:
            # The paper's M, named and shaped as before MLPs: old checkpoints load.
            shapes["M"] = (act_size, obs_size)
        else:
            for index, (fan_in, fan_out) in enumerate(
                    layer_shapes(obs_size, hidden_sizes, act_size), start=1):
                shapes[f"W{index}"] = (fan_in, fan_out)
                shapes[f"b{index}"] = (fan_out,)
        super().__init__(shapes)

    def initial(self, seed: int) -> np.ndarray:
        """The flat starting parameters: all 0 for the linear policy (the paper's start).

        An MLP's hidden layers start as N(0, 1) / sqrt(fan_in) from ``seed``,
        its biases and output layer at 0. At an all-zero MLP every hidden unit
        is tanh(0) = 0, so a direction moves the output only through products
        of two perturbed weights: ``theta + nu * delta`` and ``theta - nu *
        delta`` then act alike (the output is even in ``nu`` but for the output
        bias), ``r+ - r-`` is about 0 and the step has no signal. Random hidden
        layers give the output layer features to weigh from the first round;
        a zero output layer still starts at the action 0 (clipped), as the
        linear policy does, so no random start has to be unlearned. The
        1/sqrt(fan_in) scale keeps each pre-activation of normalised
        observations near unit variance, inside tanh's useful range.
        """
        if not self.hidden_sizes:
            return np.zeros(self.num_params)
        rng = np.random.default_rng(seed)
        pieces = []
        last = len(self.hidden_sizes) + 1
        for name, shape in self.shapes.items():
            if name.startswith("W") and name != f"W{last}":
                pieces.append(rng.standard_normal(shape).reshape(-1) / math.sqrt(shape[0]))
            else:
                pieces.append(np.zeros(math.prod(shape)))
        return np.concatenate(pieces)

    def outputs(self, flat: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Unclipped actions of parameter row ``i`` (or the only one) for normalised row ``i``.

        Multiply-and-sum rather than matmul: a row's result does not depend on
        how many rows are computed together, so chunking changes nothing.
        """
        return self.bind(flat)(x)

    def bind(self, flat: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """:meth:`outputs` of ``flat``'s rows as a function of ``x``, unflattened once.

        A rollout asks for actions every step, with the same rows all along.

        >>> layout = _PolicyLayout(2, 1, ())
        >>> layout.bind(np.array([[1.0, 2.0]]))(np.array([[1.0, 1.0]])).tolist()
        [[3.0]]
        """
        params = self.unflatten(flat)
        if not self.hidden_sizes:
            matrix = params["M"]
            return lambda x: np.asarray((matrix * x[:, None, :]).sum(axis=2))
        layers = [(params[f"W{i}"], params[f"b{i}"])
                  for i in range(1, len(self.hidden_sizes) + 2)]
        return functools.partial(mlp_rows, layers)


class ARS:
    """ARS V2-t over a static linear policy or a tanh MLP (see the module docstring).

    >>> agent = ARS({"env": "Pendulum-v1"})
    >>> sorted(agent.get_weights())
    ['M', 'obs.count', 'obs.m2', 'obs.mean']
    >>> sorted(ARS({"env": "Pendulum-v1", "hidden_sizes": [8]}).get_weights())
    ['W1', 'W2', 'b1', 'b2', 'obs.count', 'obs.m2', 'obs.mean']
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.settings = ARSConfig.from_mapping(self.config)
        observation_space, action_space = _env_spaces(self.config)
        self._check_spaces(observation_space, action_space)
        assert isinstance(action_space, spaces.Box)
        self._action_space = action_space
        assert isinstance(observation_space, spaces.Box)
        self._obs_size = int(np.prod(observation_space.shape))
        self._act_size = int(np.prod(action_space.shape))
        self._low = action_space.low.reshape(-1).astype(np.float64)
        self._high = action_space.high.reshape(-1).astype(np.float64)
        self._policy = _PolicyLayout(self._obs_size, self._act_size, self.settings.hidden_sizes)
        self._theta = self._policy.initial(self.settings.seed)
        self._act_cache: tuple[Any, ...] | None = None
        self._count = 0.0
        self._mean = np.zeros(self._obs_size)
        self._m2 = np.zeros(self._obs_size)
        self._envs = VectorEnvCache(self.config)

    @staticmethod
    def _check_spaces(observation_space: Any, action_space: Any) -> None:
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(
                f"the 'ars' agent needs a Box observation space, the environment has "
                f"{observation_space}")
        if not isinstance(action_space, spaces.Box):
            raise ValueError(
                f"the 'ars' agent needs a Box action space (continuous control), the "
                f"environment has {action_space}; use the 'es' agent")

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        """Check ``config`` in the driver, before workers build the agent.

        >>> ARS.validate_config({"env": "CartPole-v1"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: the 'ars' agent needs a Box action space ...
        >>> ARS.validate_config({"env": "Pendulum-v1", "hidden_sizes": [64, 0]})
        Traceback (most recent call last):
        ...
        ValueError: config['hidden_sizes'][1] must be >= 1, got 0
        """
        from raymanager.envs import validate_env_config

        ARSConfig.from_mapping(config)
        cls._check_spaces(*validate_env_config(config))

    @property
    def num_params(self) -> int:
        """Length of the flat parameter vector a direction perturbs (M's entries if linear).

        >>> ARS({"env": "Pendulum-v1", "hidden_sizes": [2]}).num_params  # 3*2 + 2 + 2*1 + 1
        11
        """
        return self._policy.num_params

    # -- the policy -----------------------------------------------------------------------

    def _normalizer(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.settings.normalize_observations or self._count < 2:
            return np.zeros(self._obs_size), np.ones(self._obs_size)
        std = np.sqrt(self._m2 / self._count)
        return self._mean.copy(), np.where(std < _MIN_STD, 1.0, std)

    def _actions(
        self, outputs: Callable[[np.ndarray], np.ndarray], mean: np.ndarray, std: np.ndarray,
        observations: np.ndarray,
    ) -> np.ndarray:
        """Actions of policy row ``i`` of ``outputs`` (:meth:`_PolicyLayout.bind`, or its
        only row) for observation ``i``."""
        x = (np.asarray(observations, dtype=np.float64).reshape(len(observations), -1) - mean)
        x = x / std
        actions: np.ndarray = np.clip(outputs(x), self._low, self._high)
        return actions.astype(self._action_space.dtype).reshape(
            (len(actions), *self._action_space.shape))

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions of the current policy for a batch of observations.

        >>> ARS({"env": "Pendulum-v1"}).act(np.ones((2, 3))).tolist()  # M = 0 at the start
        [[0.0], [0.0]]
        """
        # An evaluation asks every step; the policy changes only between rounds.
        # The cache keeps the arrays it was made from, so ``is`` cannot be fooled.
        made_from = (self._theta, self._mean, self._m2, self._count)
        cached = self._act_cache
        if cached is None or not all(a is b for a, b in zip(cached[0], made_from, strict=True)):
            mean, std = self._normalizer()
            cached = (made_from, self._policy.bind(self._theta[None, :]), mean, std)
            self._act_cache = cached
        _, outputs, mean, std = cached
        return self._actions(outputs, mean, std, observations)

    def _direction(self, seed: int) -> tuple[np.ndarray, int]:
        rng = np.random.default_rng(seed)
        # Drawn flat: for the linear policy the same numbers as a draw of M's shape.
        delta = rng.standard_normal(self._policy.num_params)
        return delta, int(rng.integers(0, EPISODE_SEED_BOUND))

    # -- training: workers ------------------------------------------------------------------

    def rollout(self, batch_of_seeds: np.ndarray, chunk_size: int) -> dict[str, Any]:
        """Evaluate ``theta +- nu * delta(seed)`` for each seed; scalars and state moments only.

        Returns ``seeds``, ``plus_returns``, ``minus_returns`` (training
        returns, survival bonus removed), ``obs_count``, ``obs_mean``,
        ``obs_m2`` and the metrics ``episodes``, ``env_steps``, ``rows``,
        ``fitness_mean``, ``fitness_max``, ``seconds``.
        """
        started = time.perf_counter()
        seeds = as_seeds(batch_of_seeds)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        count = len(seeds)
        mean, std = self._normalizer()
        nu = self.settings.noise_std
        plus = np.empty(count)
        minus = np.empty(count)
        env_steps = 0
        collector = MomentCollector(self._obs_size)
        for start in range(0, count, chunk_size):
            chunk = seeds[start : start + chunk_size]
            width = len(chunk)
            # Rows 0..width-1 are +delta, rows width..2*width-1 the matching -delta.
            population = np.empty((2 * width, self._policy.num_params))
            episode_seeds = np.empty(2 * width, dtype=np.int64)
            for row, seed in enumerate(chunk):
                delta, episode_seed = self._direction(int(seed))
                population[row] = self._theta + nu * delta
                population[width + row] = self._theta - nu * delta
                episode_seeds[row] = episode_seeds[width + row] = episode_seed
            outcome = run_episodes(
                self._envs.get(2 * width),
                functools.partial(self._actions, self._policy.bind(population), mean, std),
                episode_seeds,
                observe=collector,
            )
            shaped = outcome.returns - self.settings.reward_shift * outcome.lengths
            plus[start : start + width] = shaped[:width]
            minus[start : start + width] = shaped[width:]
            env_steps += outcome.env_steps
        both = np.concatenate([plus, minus])
        obs_count, obs_mean, obs_m2 = collector.moments
        return {
            "seeds": seeds.copy(),
            "plus_returns": plus,
            "minus_returns": minus,
            "obs_count": float(obs_count),
            "obs_mean": obs_mean,
            "obs_m2": obs_m2,
            "episodes": float(2 * count),
            "env_steps": float(env_steps),
            "rows": float(count),
            "fitness_mean": float(both.mean()),
            "fitness_max": float(both.max()),
            "loss": -float(both.mean()),
            "seconds": time.perf_counter() - started,
        }

    # -- training: driver ------------------------------------------------------------------

    def apply_rollouts(self, results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """One ARS step from the :meth:`rollout` results of a round (in batch order).

        >>> agent = ARS({"env": "Pendulum-v1", "max_episode_steps": 10})
        >>> metrics = agent.apply_rollouts([agent.rollout(np.arange(4), 4)])
        >>> metrics["update_norm"] > 0, agent.get_weights()["obs.count"].item()
        (True, 80.0)
        """
        if len(results) == 0:
            raise ValueError("apply_rollouts needs the results of at least one batch")
        seeds = np.concatenate([np.asarray(r["seeds"], dtype=np.int64) for r in results])
        plus = np.concatenate([np.asarray(r["plus_returns"], dtype=np.float64) for r in results])
        minus = np.concatenate([np.asarray(r["minus_returns"], dtype=np.float64)
                                for r in results])
        top = min(self.settings.top_directions, len(seeds))
        # Stable sort on -max: ties keep batch order, so the choice is reproducible.
        order = np.argsort(-np.maximum(plus, minus), kind="stable")[:top]
        sigma_r = float(np.concatenate([plus[order], minus[order]]).std())
        step = np.zeros_like(self._theta)
        for index in order:
            step += (plus[index] - minus[index]) * self._direction(int(seeds[index]))[0]
        # All returns equal (say, every episode fell at once): no signal, no step.
        scale = self.settings.learning_rate / (top * sigma_r) if sigma_r > 0 else 0.0
        update = scale * step
        self._theta = self._theta + update
        moments = (self._count, self._mean, self._m2)
        for result in results:
            moments = merge_moments(moments, (
                float(result["obs_count"]),
                np.asarray(result["obs_mean"], dtype=np.float64),
                np.asarray(result["obs_m2"], dtype=np.float64),
            ))
        self._count, self._mean, self._m2 = moments
        both = np.concatenate([plus, minus])
        return {
            "fitness_mean": float(both.mean()),
            "fitness_max": float(both.max()),
            "loss": -float(both.mean()),
            "episodes": float(2 * len(seeds)),
            "env_steps": float(sum(float(r["env_steps"]) for r in results)),
            "rows": float(len(seeds)),
            "sigma_r": sigma_r,
            "update_norm": float(np.linalg.norm(update)),
        }

    def train(self, batch_of_seeds: np.ndarray, chunk_size: int) -> dict[str, float]:
        """One full ARS step over ``batch_of_seeds`` in this process (rollout + update)."""
        started = time.perf_counter()
        metrics = self.apply_rollouts([self.rollout(batch_of_seeds, chunk_size)])
        metrics["seconds"] = time.perf_counter() - started
        return metrics

    # -- weights -----------------------------------------------------------------------------

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of the policy arrays (``M``, or ``W1``, ``b1``...) and the observation statistics.

        >>> weights = ARS({"env": "Pendulum-v1", "hidden_sizes": [64, 64]}).get_weights()
        >>> weights["W1"].shape, weights["W3"].shape, float(abs(weights["W3"]).max())
        ((3, 64), (64, 1), 0.0)
        """
        weights = {name: array[0].copy()
                   for name, array in self._policy.unflatten(self._theta[None, :]).items()}
        weights.update({
            "obs.count": np.array(self._count),
            "obs.mean": self._mean.copy(),
            "obs.m2": self._m2.copy(),
        })
        return weights

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load weights from :meth:`get_weights`; the policy alone resets the statistics.

        Raises ValueError naming the array that is missing, unknown, of the
        wrong shape or not finite; a failed call changes nothing.

        >>> agent = ARS({"env": "Pendulum-v1"})
        >>> agent.set_weights({"M": np.zeros((2, 3))})
        Traceback (most recent call last):
        ...
        ValueError: weights['M'] has shape (2, 3), expected (1, 3)
        """
        names = list(self._policy.shapes)
        stat_names = ["obs.count", "obs.mean", "obs.m2"]
        unknown = sorted(set(weights) - set(names) - set(stat_names))
        if unknown:
            # The usual cause: a checkpoint of another policy (linear M vs W1...).
            raise ValueError(
                f"unknown weight keys {unknown}; expected {names + stat_names} for "
                f"hidden_sizes {list(self._policy.hidden_sizes)}")
        pieces = []
        for name, shape in self._policy.shapes.items():
            if name not in weights:
                raise ValueError(f"weights lack {name!r}")
            array = np.array(weights[name], dtype=np.float64)
            if array.shape != shape:
                raise ValueError(f"weights[{name!r}] has shape {array.shape}, expected {shape}")
            if not np.isfinite(array).all():
                raise ValueError(f"weights[{name!r}] has non-finite values")
            pieces.append(array.reshape(-1))
        theta = np.concatenate(pieces)
        stats = [key for key in stat_names if key in weights]
        if stats and len(stats) != 3:
            raise ValueError("weights have part of the observation statistics")
        if stats:
            count = float(np.asarray(weights["obs.count"]).reshape(()))
            mean = np.array(weights["obs.mean"], dtype=np.float64)
            m2 = np.array(weights["obs.m2"], dtype=np.float64)
            if mean.shape != (self._obs_size,) or m2.shape != (self._obs_size,):
                raise ValueError(f"observation statistics must have shape ({self._obs_size},)")
            if count < 0 or (m2 < 0).any() or not np.isfinite(np.r_[count, mean, m2]).all():
                raise ValueError("observation statistics must be finite, count and m2 >= 0")
        else:
            count, mean, m2 = 0.0, np.zeros(self._obs_size), np.zeros(self._obs_size)
        self._theta, self._count, self._mean, self._m2 = theta, count, mean, m2

    def close(self) -> None:
        """Close the environments this agent opened."""
        self._envs.close()
