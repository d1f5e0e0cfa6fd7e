"""Seeded episodes in vector environments: what the agents train on and the
evaluation actors run.

Every episode here is seeded on its own: :func:`run_episodes` takes one seed per
episode, and an episode's trajectory depends only on its seed and the policy,
never on which other episodes share the vector environment. That is what lets
an actor cut a batch into chunks of any size and still return the same numbers.

    >>> env = make_vector_env({"env": "CartPole-v1"}, num_envs=3)
    >>> always_left = lambda obs: np.zeros(len(obs), dtype=np.int64)
    >>> result = run_episodes(env, always_left, [1, 2, 3])
    >>> result.returns.shape, bool((result.returns > 0).all())
    ((3,), True)
    >>> env.close()

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import SyncVectorEnv, VectorEnv

from raymanager.envs import env_settings, make_env

__all__ = ["EpisodeBatch", "Observer", "Policy", "VectorEnvCache", "make_vector_env",
           "run_episodes"]

# An environment without any time limit and a policy that never fails would loop
# forever; this bounds one rollout when neither the config nor the registry
# gives a limit.
_UNLIMITED_EPISODE_CAP = 100_000

Policy = Callable[[np.ndarray], np.ndarray]
#: Called with (observations, mask of running episodes) before each step.
Observer = Callable[[np.ndarray, np.ndarray], None]


class _PerEnvSeededCartPole(CartPoleVectorEnv):
    """gymnasium's numpy CartPole vector env, with one reset seed per sub-environment.

    The stock class seeds all sub-environments from one generator, so an
    episode's start would depend on its position in the batch. Here sub-env
    ``i`` starts exactly where ``CartPoleEnv.reset(seed=seeds[i])`` starts, and
    the whole batch still steps as a few numpy operations, far cheaper per
    env step than a SyncVectorEnv of CartPoleEnv stepping each env in Python.
    """

    def reset(
        self,
        *,
        seed: int | list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if not isinstance(seed, list):
            return super().reset(seed=seed, options=options)
        if len(seed) != self.num_envs or any(s is None for s in seed):
            raise ValueError(f"reset(seed=...) needs {self.num_envs} int seeds, got {seed!r}")
        seeds = [int(s) for s in seed if s is not None]
        # The shared generator only draws the starts of auto-resets after an
        # episode ends, which run_episodes ignores; seed it from all seeds anyway
        # so that stepping on is reproducible too.
        shared = int(np.random.SeedSequence(seeds).generate_state(1)[0])
        super().reset(seed=shared, options=options)
        assert self.state is not None
        for index, episode_seed in enumerate(seeds):
            # Same generator and draw as CartPoleEnv.reset(seed=episode_seed).
            self.state[:, index] = np.random.default_rng(episode_seed).uniform(
                low=self.low, high=self.high, size=(4,)
            )
        return self.state.T.astype(np.float32), {}


def make_vector_env(config: Mapping[str, Any], num_envs: int) -> VectorEnv[Any, Any, Any]:
    """Build ``num_envs`` copies of the config's environment as one vector env.

    The result accepts ``reset(seed=[s0, s1, ...])`` with one seed per
    sub-environment, which :func:`run_episodes` relies on. CartPole uses a
    numpy-vectorised implementation; any other environment a
    :class:`gymnasium.vector.SyncVectorEnv`.

    >>> env = make_vector_env({"env": "CartPole-v1"}, num_envs=4)
    >>> env.num_envs, env.single_action_space
    (4, Discrete(2))
    >>> env.close()
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    settings = env_settings(config)
    spec = gymnasium.spec(settings.env_id)
    if spec.vector_entry_point == "gymnasium.envs.classic_control.cartpole:CartPoleVectorEnv":
        limit = settings.max_episode_steps or spec.max_episode_steps or _UNLIMITED_EPISODE_CAP
        env: VectorEnv[Any, Any, Any] = _PerEnvSeededCartPole(
            num_envs=num_envs, max_episode_steps=limit, **settings.env_kwargs
        )
        env.spec = spec
        return env
    return SyncVectorEnv([lambda: make_env(config) for _ in range(num_envs)])


@dataclass(frozen=True)
class EpisodeBatch:
    """Outcome of :func:`run_episodes`: one entry per episode, in seed order."""

    returns: np.ndarray  # float64, undiscounted sum of rewards
    lengths: np.ndarray  # int64, steps taken

    @property
    def env_steps(self) -> int:
        """Total environment steps over all episodes."""
        return int(self.lengths.sum())


def run_episodes(
    env: VectorEnv[Any, Any, Any],
    policy: Policy,
    seeds: Sequence[int] | np.ndarray,
    *,
    max_steps: int | None = None,
    observe: Observer | None = None,
) -> EpisodeBatch:
    """Run one episode per seed in ``env`` (one sub-environment each) with ``policy``.

    ``policy`` maps a batch of observations (first axis: sub-environment) to a
    batch of actions. Each episode counts once: a sub-environment stops
    collecting reward at its first ``terminated``/``truncated``, and whatever
    the vector env's auto-reset starts afterwards is ignored. Stepping ends
    when every episode has ended, or after ``max_steps`` steps (default
    100 000, a guard for environments without a time limit).

    ``observe(observations, alive)``, when given, sees every observation the
    policy acts on, with the mask of the episodes still running (an agent
    that normalises observations collects its statistics there).

    A :class:`~gymnasium.vector.SyncVectorEnv` (every environment but
    CartPole) is stepped sub-environment by sub-environment, and only while
    its episode runs: a Hopper that fell after 20 steps costs 20 steps, not
    as many as the longest episode of the batch.

    >>> env = make_vector_env({"max_episode_steps": 10}, num_envs=2)
    >>> run_episodes(env, lambda obs: (obs[:, 2] > 0).astype(np.int64), [7, 8]).lengths
    array([10, 10])
    >>> env.close()
    """
    seed_list = [int(s) for s in np.asarray(seeds).reshape(-1)]
    if len(seed_list) != env.num_envs:
        raise ValueError(
            f"run_episodes needs one seed per sub-environment: {env.num_envs} sub-environments, "
            f"got {len(seed_list)} seeds"
        )
    if max_steps is None:
        # The environment's own time limit ends episodes first; this only
        # guards against environments that have none.
        max_steps = _UNLIMITED_EPISODE_CAP
    if isinstance(env, SyncVectorEnv):
        return _run_sub_envs(list(env.envs), policy, seed_list, max_steps, observe)
    per_env_seeds: list[int | None] = list(seed_list)
    # VectorEnv.reset is annotated with one int seed; the vector envs of
    # make_vector_env (and gymnasium's Sync/AsyncVectorEnv) take one per sub-env.
    observations, _ = env.reset(seed=per_env_seeds)  # type: ignore[arg-type]
    count = env.num_envs
    returns = np.zeros(count, dtype=np.float64)
    lengths = np.zeros(count, dtype=np.int64)
    alive = np.ones(count, dtype=bool)
    for _ in range(max_steps):
        if observe is not None:
            observe(observations, alive.copy())
        actions = policy(observations)
        observations, rewards, terminated, truncated, _ = env.step(actions)
        returns += np.where(alive, np.asarray(rewards, dtype=np.float64), 0.0)
        lengths += alive
        alive &= ~(np.asarray(terminated) | np.asarray(truncated))
        if not alive.any():
            break
    return EpisodeBatch(returns=returns, lengths=lengths)


def _run_sub_envs(
    envs: list[gymnasium.Env[Any, Any]],
    policy: Policy,
    seeds: list[int],
    max_steps: int,
    observe: Observer | None,
) -> EpisodeBatch:
    """run_episodes over plain environments: each steps only until its own episode ends."""
    count = len(envs)
    first = [np.asarray(e.reset(seed=s)[0], dtype=np.float64) for e, s in zip(envs, seeds,
                                                                              strict=True)]
    observations = np.stack(first)
    returns = np.zeros(count, dtype=np.float64)
    lengths = np.zeros(count, dtype=np.int64)
    alive = np.ones(count, dtype=bool)
    for _ in range(max_steps):
        if observe is not None:
            observe(observations, alive.copy())
        # Finished rows keep their last observation; their actions are not used.
        actions = policy(observations)
        for index in np.flatnonzero(alive):
            observation, reward, terminated, truncated, _ = envs[index].step(actions[index])
            observations[index] = observation
            returns[index] += float(reward)
            lengths[index] += 1
            if terminated or truncated:
                alive[index] = False
        if not alive.any():
            break
    return EpisodeBatch(returns=returns, lengths=lengths)


class VectorEnvCache:
    """Vector environments of a config, kept open by width between batches.

    Making a vector env costs more than a short rollout, and batches mostly
    come in one or two sizes (full ones and the last one), so the two widths
    used last stay open.

    >>> cache = VectorEnvCache({"env": "CartPole-v1"})
    >>> cache.get(4).num_envs
    4
    >>> cache.close()
    """

    def __init__(self, config: Mapping[str, Any], keep: int = 2) -> None:
        self._config = config
        self._keep = keep
        self._envs: dict[int, VectorEnv[Any, Any, Any]] = {}

    def get(self, num_envs: int) -> VectorEnv[Any, Any, Any]:
        env = self._envs.get(num_envs)
        if env is None:
            if len(self._envs) >= self._keep:
                # A new width: drop the oldest one.
                self._envs.pop(next(iter(self._envs))).close()
            env = make_vector_env(self._config, num_envs)
            self._envs[num_envs] = env
        return env

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
