"""Gymnasium environments for agents and actors: their settings, building and checking
one (episodes are run by :mod:`raymanager.episodes`).

Environments are named in the same config mapping the actors get:

``env`` (default ``"CartPole-v1"``)
    A registered gymnasium id (``"module:EnvId"`` imports ``module`` first,
    as in :func:`gymnasium.make`).
``env_kwargs`` (default ``{}``)
    Keyword arguments for the environment's constructor.
``max_episode_steps`` (default ``None``)
    Time limit per episode; ``None`` keeps the environment's registered limit.

    >>> env_settings({"max_episode_steps": 10}).max_episode_steps
    10

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import copy
import difflib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium

__all__ = [
    "DEFAULT_ENV",
    "ENV_CONFIG_KEYS",
    "EnvFacts",
    "EnvSettings",
    "env_facts",
    "env_settings",
    "env_spaces",
    "make_env",
    "validate_env_config",
]

#: Environment used when the config names none.
DEFAULT_ENV = "CartPole-v1"

#: The config keys this module reads (others belong to the agent).
ENV_CONFIG_KEYS = ("env", "env_kwargs", "max_episode_steps")

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
