"""Gymnasium environments for agents and actors: building, checking, rolling out.

Environments are named in the same config mapping the actors get:

``env`` (default ``"CartPole-v1"``)
    A registered gymnasium id (``"module:EnvId"`` imports ``module`` first,
    as in :func:`gymnasium.make`).
``env_kwargs`` (default ``{}``)
    Keyword arguments for the environment's constructor.
``max_episode_steps`` (default ``None``)
    Time limit per episode; ``None`` keeps the environment's registered limit.

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

import copy
import difflib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import SyncVectorEnv, VectorEnv

__all__ = [
    "DEFAULT_ENV",
    "ENV_CONFIG_KEYS",
    "EnvFacts",
    "EnvSettings",
    "EpisodeBatch",
    "Observer",
    "VectorEnvCache",
    "env_facts",
    "env_settings",
    "env_spaces",
    "make_env",
    "make_vector_env",
    "run_episodes",
    "validate_env_config",
]

#: Environment used when the config names none.
DEFAULT_ENV = "CartPole-v1"

#: The config keys this module reads (others belong to the agent).
ENV_CONFIG_KEYS = ("env", "env_kwargs", "max_episode_steps")

# An environment without any time limit and a policy that never fails would loop
# forever; this bounds one rollout when neither the config nor the registry
# gives a limit.
_UNLIMITED_EPISODE_CAP = 100_000

Policy = Callable[[np.ndarray], np.ndarray]
#: Called with (observations, mask of running episodes) before each step.
Observer = Callable[[np.ndarray, np.ndarray], None]


@dataclass(frozen=True)
class EnvSettings:
    """The environment part of a config, checked for types and filled with defaults.

    >>> env_settings({"env": "CartPole-v0"})
    EnvSettings(env_id='CartPole-v0', env_kwargs={}, max_episode_steps=None)
    """

    env_id: str
    env_kwargs: dict[str, Any]
    max_episode_steps: int | None


def env_settings(config: Mapping[str, Any]) -> EnvSettings:
    """Read ``env``, ``env_kwargs`` and ``max_episode_steps`` from ``config``.

    Checks types only (cheap, no environment is built); :func:`validate_env_config`
    also builds the environment once.

    >>> env_settings({}).env_id
    'CartPole-v1'
    >>> env_settings({"env_kwargs": {"max_episode_steps": 10}}).max_episode_steps
    10
    >>> env_settings({"max_episode_steps": 0})
    Traceback (most recent call last):
    ...
    ValueError: config['max_episode_steps'] must be an int >= 1 or None, got 0
    """
    env_id = config.get("env", DEFAULT_ENV)
    if not isinstance(env_id, str) or not env_id:
        raise TypeError(
            f"config['env'] must be a gymnasium environment id (a non-empty str), got {env_id!r}"
        )
    env_kwargs = config.get("env_kwargs", {})
    if env_kwargs is None:
        env_kwargs = {}
    if not isinstance(env_kwargs, Mapping) or not all(isinstance(k, str) for k in env_kwargs):
        raise TypeError(
            f"config['env_kwargs'] must be a mapping of str keys to values, got {env_kwargs!r}"
        )
    env_kwargs = dict(env_kwargs)
    limit = config.get("max_episode_steps")
    if "max_episode_steps" in env_kwargs:
        # gymnasium.make takes it as a keyword, so users put it in env_kwargs
        # (the CLI's only way to set it): it is the same episode cap.
        inner = env_kwargs.pop("max_episode_steps")
        if limit is not None and inner != limit:
            raise ValueError(
                f"max_episode_steps is {limit!r} in the config and {inner!r} in its env_kwargs: "
                "give it once"
            )
        limit = inner
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"config['max_episode_steps'] must be an int >= 1 or None, got {limit!r}")
    return EnvSettings(env_id=env_id, env_kwargs=env_kwargs, max_episode_steps=limit)


def make_env(config: Mapping[str, Any]) -> gymnasium.Env[Any, Any]:
    """Build one environment from ``config`` (keys ``env``, ``env_kwargs``, ``max_episode_steps``).

    >>> env = make_env({"env": "CartPole-v1", "max_episode_steps": 50})
    >>> env.spec.max_episode_steps
    50
    >>> env.close()
    """
    settings = env_settings(config)
    return gymnasium.make(
        settings.env_id, max_episode_steps=settings.max_episode_steps, **settings.env_kwargs
    )


def env_spaces(config: Mapping[str, Any]) -> tuple[gymnasium.Space[Any], gymnasium.Space[Any]]:
    """The (observation space, action space) of one environment of ``config``.

    Builds the environment at most once per process and settings (see :func:`env_facts`).

    >>> env_spaces({})[1]
    Discrete(2)
    """
    facts = env_facts(config)
    return facts.observation_space, facts.action_space


@dataclass(frozen=True)
class EnvFacts:
    """What the driver needs to know of an environment, read from one built instance.

    >>> facts = env_facts({"env": "CartPole-v1"})
    >>> facts.reward_threshold, facts.max_episode_steps, facts.continuous_actions
    (475.0, 500, False)
    """

    env_id: str
    observation_space: gymnasium.Space[Any]
    action_space: gymnasium.Space[Any]
    #: The registry's "solved" return; None when the environment declares none.
    reward_threshold: float | None
    #: The episode cap in force (the config's, else the registry's); None: no cap.
    max_episode_steps: int | None

    @property
    def continuous_actions(self) -> bool:
        """True for a Box action space (ARS territory), False for discrete actions."""
        return isinstance(self.action_space, gymnasium.spaces.Box)


# Settings -> facts of an environment that built and reset. A run asks for
# the same facts many times (the plan, each pool's config check, the
# driver's agent); building a MuJoCo env costs tens of milliseconds and a
# custom one may cost seconds, so each is built once per process. Only
# successes are kept: a failure is raised again, with its message, each time.
_FACTS: dict[tuple[Any, ...], EnvFacts] = {}
_FACTS_LOCK = threading.Lock()


def _facts_key(settings: EnvSettings) -> tuple[Any, ...] | None:
    try:
        kwargs = repr(sorted(settings.env_kwargs.items()))
    except TypeError:  # keys that do not sort: not worth a cache entry
        return None
    # The registered spec object is part of the key: re-registering an id
    # (or registering it on first import, for "module:Env" ids) is a new key.
    spec = gymnasium.envs.registry.get(settings.env_id)
    return (settings.env_id, settings.max_episode_steps, kwargs, id(spec))


def env_facts(config: Mapping[str, Any]) -> EnvFacts:
    """Check the environment part of ``config`` by building it once; its facts.

    Meant for the driver, before any actor starts: a wrong id or keyword becomes
    an error that names the config key and its value, not a traceback from a
    worker. The environment is built (and reset once, as some only use their
    keywords then) at most once per process and settings; the spaces returned
    are copies, so a caller that samples from one changes no one else's.

    >>> env_facts({"env": "CartPol-v1"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: config['env'] = 'CartPol-v1' is not a gymnasium environment: ...
    """
    settings = env_settings(config)
    key = _facts_key(settings)
    with _FACTS_LOCK:
        known = _FACTS.get(key) if key is not None else None
    if known is None:
        known = _build_facts(settings)
        if key is not None:
            with _FACTS_LOCK:
                _FACTS[key] = known
    return EnvFacts(known.env_id, copy.deepcopy(known.observation_space),
                    copy.deepcopy(known.action_space), known.reward_threshold,
                    known.max_episode_steps)


def _build_facts(settings: EnvSettings) -> EnvFacts:
    try:
        env = gymnasium.make(settings.env_id, max_episode_steps=settings.max_episode_steps,
                             **settings.env_kwargs)
    except gymnasium.error.Error as error:
        hint = "" if "Did you mean" in str(error) else _closest_env_ids(settings.env_id)
        raise ValueError(
            f"config['env'] = {settings.env_id!r} is not a gymnasium environment: {error}{hint}"
        ) from error
    except ImportError as error:
        raise ValueError(
            f"config['env'] = {settings.env_id!r} needs a package that is not installed: {error}"
        ) from error
    except (TypeError, ValueError) as error:
        # gymnasium re-raises a constructor's TypeError with the kwargs in the text;
        # a ValueError is an environment rejecting a keyword's value.
        raise _rejected_kwargs(settings, error) from error
    try:
        # Some environments only use their keywords when they reset.
        env.reset(seed=0)
    except (TypeError, ValueError) as error:
        raise _rejected_kwargs(settings, error) from error
    finally:
        env.close()
    spec = env.spec
    threshold = spec.reward_threshold if spec is not None else None
    return EnvFacts(
        env_id=settings.env_id,
        observation_space=env.observation_space,
        action_space=env.action_space,
        reward_threshold=None if threshold is None else float(threshold),
        max_episode_steps=spec.max_episode_steps if spec is not None else None,
    )


def validate_env_config(
    config: Mapping[str, Any],
) -> tuple[gymnasium.Space[Any], gymnasium.Space[Any]]:
    """Check the environment part of ``config``; its (observation space, action space).

    :func:`env_facts` with only the spaces: the environment is built at most once
    per process and settings.

    >>> validate_env_config({"env": "CartPol-v1"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: config['env'] = 'CartPol-v1' is not a gymnasium environment: ...
    """
    facts = env_facts(config)
    return facts.observation_space, facts.action_space


def _rejected_kwargs(settings: EnvSettings, error: Exception) -> ValueError:
    return ValueError(
        f"config['env_kwargs'] = {settings.env_kwargs!r} was rejected by "
        f"{settings.env_id!r}: {error}"
    )


def _closest_env_ids(env_id: str) -> str:
    matches = difflib.get_close_matches(env_id, list(gymnasium.registry), n=3)
    return f" (close matches: {', '.join(matches)})" if matches else ""


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
