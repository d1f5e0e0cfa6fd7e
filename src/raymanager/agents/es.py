"""The built-in agent ``"es"``: evolution strategies in numpy (Salimans et al., 2017).

Training data are integer seeds. Seed ``s`` stands for the perturbation
``eps = np.random.default_rng(s).standard_normal(num_params)`` of the policy's
flat parameter vector. One :meth:`EvolutionStrategies.train` call over a batch
of seeds is one update step:

1. for each seed, roll out one episode with ``theta + noise_std * eps`` and one
   with ``theta - noise_std * eps`` (antithetic sampling), both from the same
   start (the episode seed is drawn from the same generator, after ``eps``), so
   the pair differs only by the sign of the perturbation; ``chunk_size`` seeds
   (``2 * chunk_size`` episodes) run at once in a vector environment;
2. replace the returns by centered ranks in [-0.5, 0.5] (ties share a rank),
   which makes the step insensitive to the scale of rewards and to outliers;
3. estimate the gradient ``sum_i (rank(+eps_i) - rank(-eps_i)) * eps_i / n``,
   regenerating each ``eps_i`` from its seed rather than keeping them all;
4. take one Adam step (ascent, with L2 weight decay ``l2``).

A result depends only on the seeds and the weights the step started from, not
on ``chunk_size`` nor on which process ran it. Adam's moments and step count are
part of :meth:`~EvolutionStrategies.get_weights` (keys ``adam.m.<name>``,
``adam.v.<name>``, ``adam.t``).

In a pool, the step is split as in Salimans et al.: workers run step 1 over
their batch (:meth:`~EvolutionStrategies.rollout`) and send back only each
seed's two returns; the driver runs steps 2-4 over the whole round
(:meth:`~EvolutionStrategies.apply_rollouts`), regenerating the noise from the
seeds. The bytes a batch sends back do not depend on the policy's size.

The policy is deterministic: linear (the default) or a tanh MLP with the
widths of ``hidden_sizes`` (``[64, 64]``: the two layers of 64 units of
Salimans et al.), then argmax for a discrete action space, or tanh squashed
into the bounds of a box action space. Its weights are ``W``, ``b`` for the
linear policy and ``W1``, ``b1``, ..., ``Wn``, ``bn`` (input layer first,
``W`` of shape ``(fan_in, fan_out)``) for ``n - 1`` hidden layers, so the
checkpoints of ``hidden_size`` (one layer: ``W1``, ``b1``, ``W2``, ``b2``) load
as ``hidden_sizes=[hidden_size]``.

Config keys: see :mod:`raymanager.agents.es_config`.

Why these defaults: an argmax policy does not change when its weights are
scaled up, but the perturbations then matter less and less, and plain Adam
kept growing the weights along directions that were already right while the
rest of the search stalled. The L2 decay bounds the scale, so ``noise_std``
stays a real exploration radius and a large Adam step stays useful. On
CartPole-v1 with 128 seeds per round in batches of 64, this solves it (mean
return >= 475 over 100 evaluation episodes) in 4 to 12 rounds for each of the
config seeds 0-19: 110 000 to 375 000 training env steps, median about 250 000
(benchmarks/es_single_process.py).

    >>> agent = EvolutionStrategies({"seed": 0})
    >>> metrics = agent.train(np.arange(8), chunk_size=4)
    >>> metrics["episodes"], metrics["rows"]
    (16.0, 8.0)

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv

from raymanager.agents.config_keys import EPISODE_SEED_BOUND, as_seeds
from raymanager.agents.es_config import ES_CONFIG_KEYS, ESConfig
from raymanager.agents.mlp import FlatLayout, layer_shapes, mlp_rows
from raymanager.envs import env_spaces as _env_spaces
from raymanager.envs import validate_env_config as _validate_env_config
from raymanager.episodes import VectorEnvCache, run_episodes

__all__ = [
    "ES_CONFIG_KEYS",
    "TUNED_BATCH_SIZE",
    "TUNED_SEEDS_PER_ROUND",
    "ESConfig",
    "EvolutionStrategies",
    "centered_ranks",
    "perturbation",
]

# Adam's usual constants; not worth a config key each.
_ADAM_BETA1 = 0.9
_ADAM_BETA2 = 0.999
_ADAM_EPSILON = 1e-8

# Initial weights are N(0, 1) * _INIT_SCALE / sqrt(fan_in): small next to the
# perturbations, so early rounds search around the origin instead of polishing
# whatever a large random start happens to do (a large start can also make every
# perturbation act the same, which leaves ES with no signal).
_INIT_SCALE = 0.2

#: Seeds per training round and per batch that solve CartPole-v1 fastest with the
#: defaults (tuned with benchmarks/es_single_process.py; see its docstring).
TUNED_SEEDS_PER_ROUND = 128
TUNED_BATCH_SIZE = 64


def centered_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks of ``values`` scaled to [-0.5, 0.5]; equal values share their mean rank.

    Sharing ranks matters on CartPole, where many episodes end at the same
    time limit: ranking ties by position would push the weights along noise.

    >>> centered_ranks(np.array([10.0, 30.0, 20.0]))
    array([-0.5,  0.5,  0. ])
    >>> centered_ranks(np.array([5.0, 5.0, 1.0]))
    array([ 0.25,  0.25, -0.5 ])
    """
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    count = flat.size
    if count < 2:
        return np.zeros(count)
    order = np.argsort(flat, kind="stable")
    sorted_values = flat[order]
    # Start index of each run of equal values, and the mean rank of that run.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], count]
    run_ranks = (starts + ends - 1) / 2.0
    ranks = np.empty(count)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks / (count - 1) - 0.5


def perturbation(seed: int, num_params: int) -> tuple[np.ndarray, int]:
    """The noise vector of ``seed`` and the seed of the episodes that evaluate it.

    >>> eps, episode_seed = perturbation(7, 3)
    >>> bool(np.array_equal(eps, np.random.default_rng(7).standard_normal(3)))
    True
    """
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal(num_params)
    episode_seed = int(rng.integers(0, EPISODE_SEED_BOUND))
    return eps, episode_seed


class _PolicyShape(FlatLayout):
    """Layout of the policy's parameters inside the flat vector ES perturbs."""

    def __init__(
        self,
        observation_space: gymnasium.Space[Any],
        action_space: gymnasium.Space[Any],
        hidden_sizes: Sequence[int],
    ) -> None:
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(
                f"the 'es' agent needs a Box observation space, the environment has "
                f"{observation_space}"
            )
        self.observation_shape = observation_space.shape
        inputs = int(np.prod(observation_space.shape))
        self.action_space = action_space
        if isinstance(action_space, spaces.Discrete):
            outputs = int(action_space.n)
        elif isinstance(action_space, spaces.Box):
            outputs = int(np.prod(action_space.shape))
        else:
            raise ValueError(
                f"the 'es' agent needs a Discrete or Box action space, the environment has "
                f"{action_space}"
            )
        layers = layer_shapes(inputs, hidden_sizes, outputs)
        shapes: dict[str, tuple[int, ...]] = {}
        for index, (fan_in, fan_out) in enumerate(layers, start=1):
            # "W", "b" for the linear policy, as before there were hidden layers:
            # old checkpoints keep loading.
            suffix = "" if len(layers) == 1 else str(index)
            shapes[f"W{suffix}"] = (fan_in, fan_out)
            shapes[f"b{suffix}"] = (fan_out,)
        super().__init__(shapes)

    def initial(self, seed: int) -> np.ndarray:
        """Flat initial parameters: scaled normal weights, zero biases."""
        rng = np.random.default_rng(seed)
        pieces = []
        for name, shape in self.shapes.items():
            if name.startswith("W"):
                # 1/sqrt(fan_in): the same pre-activation scale whatever the obs size.
                scale = _INIT_SCALE / math.sqrt(shape[0])
                pieces.append(rng.standard_normal(shape).reshape(-1) * scale)
            else:
                pieces.append(np.zeros(math.prod(shape)))
        return np.concatenate(pieces)

    def actions(self, flat: np.ndarray, observations: np.ndarray) -> np.ndarray:
        """Actions of policy row ``i`` of ``flat`` (or of its only row) for observation ``i``.

        Row by row (:func:`~raymanager.agents.mlp.mlp_rows`), so chunked and
        unchunked rollouts are bit-identical.
        """
        params = self.unflatten(flat)
        x = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)
        names = list(self.shapes)  # W, b per layer, input layer first
        x = mlp_rows([(params[w], params[b]) for w, b in zip(names[::2], names[1::2],
                                                             strict=True)], x)
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            discrete: np.ndarray = np.argmax(x, axis=1).astype(np.int64) + int(space.start)
            return discrete
        assert isinstance(space, spaces.Box)
        low, high = space.low.reshape(-1), space.high.reshape(-1)
        if np.isfinite(low).all() and np.isfinite(high).all():
            x = low + (np.tanh(x) + 1.0) * 0.5 * (high - low)
        return x.astype(space.dtype).reshape((len(x), *space.shape))


class EvolutionStrategies:
    """Evolution-strategies agent over a small deterministic policy (see module docstring).

    >>> agent = EvolutionStrategies({"seed": 1})
    >>> twin = EvolutionStrategies({"seed": 1})
    >>> a, b = agent.get_weights(), twin.get_weights()
    >>> all(np.array_equal(a[key], b[key]) for key in a)
    True
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        self.settings = ESConfig.from_mapping(self.config)
        observation_space, action_space = _env_spaces(self.config)
        self._policy = _PolicyShape(observation_space, action_space, self.settings.hidden_sizes)
        self._theta = self._policy.initial(self.settings.seed)
        self._adam_m = np.zeros_like(self._theta)
        self._adam_v = np.zeros_like(self._theta)
        self._adam_t = 0.0
        # One vector env per rollout width; a batch needs at most two widths
        # (full chunks and the last, shorter one).
        self._envs = VectorEnvCache(self.config)

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> None:
        """Check ``config`` without building the agent (driver-side, before workers start).

        >>> EvolutionStrategies.validate_config({"hidden_size": -1})
        Traceback (most recent call last):
        ...
        ValueError: config['hidden_size'] must be >= 0, got -1
        """
        settings = ESConfig.from_mapping(config)
        observation_space, action_space = _validate_env_config(config)
        _PolicyShape(observation_space, action_space, settings.hidden_sizes)

    @property
    def num_params(self) -> int:
        """Length of the flat parameter vector that a perturbation perturbs."""
        return self._policy.num_params

    # -- Agent protocol -----------------------------------------------------------------

    def train(self, batch_of_seeds: np.ndarray, chunk_size: int) -> dict[str, float]:
        """One ES step over ``batch_of_seeds`` (non-negative ints), ``chunk_size`` at a time.

        The same as :meth:`rollout` then :meth:`apply_rollouts` in one process.
        Returns ``fitness_mean/max/min`` (episode returns over both signs),
        ``episodes``, ``env_steps``, ``rows`` (seeds), ``loss``
        (``-fitness_mean``), ``grad_norm``, ``update_norm`` and ``seconds``.
        """
        started = time.perf_counter()
        metrics = self.apply_rollouts([self.rollout(batch_of_seeds, chunk_size)])
        metrics["seconds"] = time.perf_counter() - started
        return metrics

    def rollout(self, batch_of_seeds: np.ndarray, chunk_size: int) -> dict[str, Any]:
        """The episodes of one batch of seeds, as scalars: no weights travel back.

        Returns ``seeds``, ``plus_returns``, ``minus_returns`` (one per seed)
        and the metrics ``fitness_mean/max/min``, ``loss``, ``episodes``,
        ``env_steps``, ``rows`` and ``seconds``. :meth:`apply_rollouts`
        rebuilds the step from the seeds.
        """
        started = time.perf_counter()
        seeds = as_seeds(batch_of_seeds)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
        count = len(seeds)
        plus_returns = np.empty(count)
        minus_returns = np.empty(count)
        env_steps = 0
        sigma = self.settings.noise_std
        for start in range(0, count, chunk_size):
            chunk = seeds[start : start + chunk_size]
            width = len(chunk)
            # Rows 0..width-1 are +eps, rows width..2*width-1 the matching -eps.
            population = np.empty((2 * width, self.num_params))
            episode_seeds = np.empty(2 * width, dtype=np.int64)
            for row, seed in enumerate(chunk):
                eps, episode_seed = perturbation(int(seed), self.num_params)
                population[row] = self._theta + sigma * eps
                population[width + row] = self._theta - sigma * eps
                episode_seeds[row] = episode_seeds[width + row] = episode_seed
            outcome = run_episodes(
                self._env(2 * width),
                functools.partial(self._policy.actions, population),
                episode_seeds,
            )
            plus_returns[start : start + width] = outcome.returns[:width]
            minus_returns[start : start + width] = outcome.returns[width:]
            env_steps += outcome.env_steps
        returns = np.concatenate([plus_returns, minus_returns])
        return {
            "seeds": seeds.copy(),
            "plus_returns": plus_returns,
            "minus_returns": minus_returns,
            "fitness_mean": float(returns.mean()),
            "fitness_max": float(returns.max()),
            "fitness_min": float(returns.min()),
            "loss": -float(returns.mean()),
            "episodes": float(2 * count),
            "env_steps": float(env_steps),
            "rows": float(count),
            "seconds": time.perf_counter() - started,
        }

    def apply_rollouts(self, results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """One ES step (ranks over the whole round, one Adam step) from :meth:`rollout` results.

        >>> agent = EvolutionStrategies({"seed": 0})
        >>> metrics = agent.apply_rollouts([agent.rollout(np.arange(4), 4)])
        >>> metrics["rows"], metrics["update_norm"] > 0
        (4.0, True)
        """
        if len(results) == 0:
            raise ValueError("apply_rollouts needs the results of at least one batch")
        seeds = np.concatenate([np.asarray(r["seeds"], dtype=np.int64) for r in results])
        plus_returns = np.concatenate([np.asarray(r["plus_returns"], dtype=np.float64)
                                       for r in results])
        minus_returns = np.concatenate([np.asarray(r["minus_returns"], dtype=np.float64)
                                        for r in results])
        count = len(seeds)
        ranks = centered_ranks(np.concatenate([plus_returns, minus_returns]))
        advantages = ranks[:count] - ranks[count:]
        gradient = np.zeros(self.num_params)
        # eps are regenerated seed by seed, in batch order: memory stays O(1) in
        # the number of seeds and the sum is the same whatever the batching was.
        for seed, advantage in zip(seeds, advantages, strict=True):
            if advantage != 0.0:
                gradient += advantage * perturbation(int(seed), self.num_params)[0]
        gradient /= count
        update = self._adam_step(gradient)
        returns = np.concatenate([plus_returns, minus_returns])
        return {
            "fitness_mean": float(returns.mean()),
            "fitness_max": float(returns.max()),
            "fitness_min": float(returns.min()),
            "loss": -float(returns.mean()),
            "episodes": float(2 * count),
            "env_steps": float(sum(float(r["env_steps"]) for r in results)),
            "rows": float(count),
            "grad_norm": float(np.linalg.norm(gradient)),
            "update_norm": float(np.linalg.norm(update)),
        }

    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions of the current weights for a batch of observations.

        >>> EvolutionStrategies({}).act(np.zeros((3, 4), dtype=np.float32)).dtype
        dtype('int64')
        """
        return self._policy.actions(self._theta[None, :], np.asarray(observations))

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of the policy arrays (``W``, ``b`` or ``W1``...) and Adam's state."""
        weights: dict[str, np.ndarray] = {}
        for prefix, flat in (
            ("", self._theta),
            ("adam.m.", self._adam_m),
            ("adam.v.", self._adam_v),
        ):
            for name, array in self._policy.unflatten(flat[None, :]).items():
                weights[prefix + name] = array[0].copy()
        weights["adam.t"] = np.array(self._adam_t)
        return weights

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load weights from :meth:`get_weights` (arrays are copied).

        The policy arrays are required. Adam's state is optional: a mapping
        with only the policy (say, a policy checkpoint) resets Adam.
        """
        names = list(self._policy.shapes)
        adam_keys = [f"adam.{moment}.{name}" for moment in "mv" for name in names] + ["adam.t"]
        unknown = sorted(set(weights) - set(names) - set(adam_keys))
        if unknown:
            # The usual cause: a checkpoint of another layout (W vs W1, W2...).
            raise ValueError(
                f"unknown weight keys {unknown}; expected {names + adam_keys} for "
                f"hidden_sizes {list(self.settings.hidden_sizes)}")
        present_adam = [key for key in adam_keys if key in weights]
        if present_adam and len(present_adam) != len(adam_keys):
            missing = sorted(set(adam_keys) - set(present_adam))
            raise ValueError(f"weights have part of Adam's state; missing {missing}")
        theta = self._flatten(weights, "")
        if present_adam:
            adam_m = self._flatten(weights, "adam.m.")
            adam_v = self._flatten(weights, "adam.v.")
            adam_t = float(np.asarray(weights["adam.t"]).reshape(()))
            if (adam_v < 0).any() or adam_t < 0:
                raise ValueError("Adam's second moments and step count must be >= 0")
        else:
            adam_m, adam_v, adam_t = np.zeros_like(theta), np.zeros_like(theta), 0.0
        self._theta, self._adam_m, self._adam_v, self._adam_t = theta, adam_m, adam_v, adam_t

    # -- internals -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the vector environments this agent opened."""
        self._envs.close()

    def _env(self, num_envs: int) -> VectorEnv[Any, Any, Any]:
        return self._envs.get(num_envs)

    def _flatten(self, weights: Mapping[str, np.ndarray], prefix: str) -> np.ndarray:
        pieces = []
        for name, shape in self._policy.shapes.items():
            key = prefix + name
            if key not in weights:
                raise ValueError(f"weights lack {key!r}")
            array = np.asarray(weights[key], dtype=np.float64)
            if array.shape != shape:
                raise ValueError(f"weights[{key!r}] has shape {array.shape}, expected {shape}")
            if not np.isfinite(array).all():
                raise ValueError(f"weights[{key!r}] has non-finite values")
            pieces.append(array.reshape(-1))
        return np.concatenate(pieces)

    def _adam_step(self, ascent_direction: np.ndarray) -> np.ndarray:
        """Apply one Adam step towards ``ascent_direction``; returns the parameter change."""
        gradient = -ascent_direction + self.settings.l2 * self._theta
        self._adam_t += 1.0
        self._adam_m = _ADAM_BETA1 * self._adam_m + (1 - _ADAM_BETA1) * gradient
        self._adam_v = _ADAM_BETA2 * self._adam_v + (1 - _ADAM_BETA2) * gradient**2
        m_hat = self._adam_m / (1 - _ADAM_BETA1**self._adam_t)
        v_hat = self._adam_v / (1 - _ADAM_BETA2**self._adam_t)
        update: np.ndarray = -self.settings.learning_rate * m_hat / (np.sqrt(v_hat) + _ADAM_EPSILON)
        self._theta = self._theta + update
        return update
