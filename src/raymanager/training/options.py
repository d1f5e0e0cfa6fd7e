"""The options of a training run (:class:`TrainConfig`) and the defaults they fall back on.

Every option is a CLI flag and a YAML key; a None means "the default of the
environment and agent", filled in once by :func:`raymanager.training.plan_run`.

    >>> TrainConfig(env="Hopper-v5", seed=3).seed
    3
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from raymanager.agents.ars import ars_preset
from raymanager.config import check_int
from raymanager.envs import env_facts, env_settings
from raymanager.tracking.trackers import BACKENDS

#: What TrainConfig.trackers accepts.
TRACKER_NAMES = tuple(BACKENDS)

__all__ = [
    "RESUMABLE_OPTIONS",
    "ROUND_DEFAULT_KEYS",
    "TrainConfig",
    "check_resumable",
    "check_run_name",
    "default_agent",
    "default_agent_for",
    "hidden_sizes_of",
    "round_defaults",
]


def _help(text: str, default: str | None = None) -> dict[str, str]:
    """A field's line of help, and its default as ``--help`` shows it where None stands
    for something (``default``)."""
    return {"help": text} if default is None else {"help": text, "default": default}


#: Options left at None take these from :func:`round_defaults`.
ROUND_DEFAULT_KEYS = ("seeds_per_round", "batch_size", "chunk_size", "eval_every",
                      "eval_episodes")


@dataclass
class TrainConfig:
    """Every option of ``raymanager train``, one line of help each (CLI flags and YAML keys)."""

    env: str = field(default="CartPole-v1", metadata=_help("gymnasium environment id"))
    env_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_help("keyword arguments for gymnasium.make (YAML)")
    )
    agent: str | None = field(
        default=None, metadata=_help(
            "'es', 'ars' or 'package.module:Factory' (trusted); None: ars for continuous "
            "actions, else es")
    )
    agent_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata=_help("extra agent config keys (YAML)")
    )
    policy: str = field(default="linear", metadata=_help(
        "policy of the built-in agents: 'linear', or a tanh MLP's hidden sizes such as "
        "'64x64'"))
    seed: int = field(default=0, metadata=_help("seed of weights, training and evaluation"))
    num_actors: int = field(default=2, metadata=_help("training actors"))
    num_eval_actors: int = field(default=2, metadata=_help("evaluation actors"))
    learning_rate: float | None = field(
        default=None, metadata=_help("agent learning rate (None: the agent's default)")
    )
    noise_std: float | None = field(
        default=None, metadata=_help("ES perturbation scale (None: the agent's default)")
    )
    # None: the defaults of the env and agent (round_defaults).
    seeds_per_round: int | None = field(
        default=None, metadata=_help("perturbations (directions) per round"))
    batch_size: int | None = field(
        default=None, metadata=_help("perturbations per training batch"))
    chunk_size: int | None = field(
        default=None, metadata=_help("perturbations rolled out at once"))
    eval_every: int | None = field(default=None, metadata=_help("rounds between evaluations"))
    eval_episodes: int | None = field(default=None, metadata=_help("episodes per evaluation"))
    target_return: float | None = field(
        default=None, metadata=_help("stop at this mean eval return (None: env threshold)")
    )
    # MuJoCo runs are bounded by time rather than rounds: their rounds vary in
    # length (a Hopper that falls early makes a short round).
    max_rounds: int = field(default=1000, metadata=_help("round budget"))
    max_seconds: float | None = field(default=600.0, metadata=_help("wall-clock budget"))
    output_dir: str = field(default="runs", metadata=_help("where run directories go"))
    run_name: str | None = field(default=None, metadata=_help(
        "run directory name: a plain name, no path", default="{env}-seed{seed}-{date}-{time}"))
    address: str | None = field(
        default=None, metadata=_help("Ray cluster to join ('auto', 'host:port'); None: local")
    )
    num_cpus: int | None = field(default=None, metadata=_help(
        "CPUs of a local Ray", default="all of this machine's"))
    progress: bool = field(default=True, metadata=_help("live progress display"))
    overlap_eval: bool = field(default=True, metadata=_help(
        "evaluate each evaluated round beside the next round's training, not between them"))
    # One flag per tracker (--tracker mlflow --tracker wandb): see cli_flags.
    trackers: list[str] = field(default_factory=list, metadata={
        **_help("experiment tracker beside metrics.csv and TensorBoard: 'mlflow' or 'wandb'; "
                "repeat for both (see docs/tracking.md)"),
        "flag": "--tracker"})

    def __post_init__(self) -> None:
        for name in ("num_actors", "num_eval_actors", "seeds_per_round", "batch_size",
                     "chunk_size", "eval_every", "eval_episodes", "max_rounds"):
            value = getattr(self, name)
            if value is None and name in ROUND_DEFAULT_KEYS:
                continue
            # A plain int kept (a numpy int would not go into config.yaml).
            setattr(self, name, check_int(f"TrainConfig.{name}", value, minimum=1))
        if self.agent is not None and (not isinstance(self.agent, str) or not self.agent):
            raise TypeError(f"TrainConfig.agent must be a non-empty str or None, "
                            f"got {self.agent!r}")
        self.seed = check_int("TrainConfig.seed", self.seed, minimum=0)
        for name in ("env_kwargs", "agent_kwargs"):
            if not isinstance(getattr(self, name), dict):
                value = getattr(self, name)
                raise TypeError(f"TrainConfig.{name} must be a mapping, got {value!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"TrainConfig.max_seconds must be > 0, got {self.max_seconds!r}")
        hidden_sizes_of(self.policy)  # a malformed policy fails here, by name
        check_run_name(self.run_name)
        self.trackers = _tracker_names(self.trackers)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping (e.g. YAML), rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; known options: {sorted(known)}")
        return cls(**dict(values))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a YAML file of options (``yaml.safe_load``: no code runs)."""
        with open(path, encoding="utf-8") as handle:
            values = yaml.safe_load(handle) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of options, got {type(values).__name__}")
        return cls.from_mapping(values)

    def agent_config(self) -> dict[str, Any]:
        """The config every TrainingActor and EvaluationActor is built from.

        >>> TrainConfig(seed=2).agent_config()
        {'agent': 'es', 'env': 'CartPole-v1', 'seed': 2}
        """
        agent = self.agent if self.agent is not None else default_agent_for(
            {"env": self.env, "env_kwargs": self.env_kwargs})
        config: dict[str, Any] = {"agent": agent, "env": self.env, "seed": self.seed}
        if self.env_kwargs:
            config["env_kwargs"] = dict(self.env_kwargs)
        if self.learning_rate is not None:
            config["learning_rate"] = self.learning_rate
        if self.noise_std is not None:
            config["noise_std"] = self.noise_std
        hidden = hidden_sizes_of(self.policy)
        if hidden:
            if "hidden_sizes" in self.agent_kwargs or "hidden_size" in self.agent_kwargs:
                raise ValueError("give the policy once: TrainConfig.policy, or hidden_sizes in "
                                 "agent_kwargs, not both")
            config["hidden_sizes"] = list(hidden)  # a list, as config.yaml stores it
        config.update(self.agent_kwargs)
        return config


def check_run_name(name: str | None) -> None:
    """Refuse a run name that is not a plain folder name: it would write outside
    ``output_dir`` (``../x``, ``/tmp/x``) or into a folder of another run.

    >>> check_run_name("my run")
    >>> check_run_name("../escape")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: TrainConfig.run_name must be a plain folder name (...), got '../escape'; ...
    """
    if name is None:
        return
    if not isinstance(name, str):
        raise TypeError(f"TrainConfig.run_name must be a str or None, got {name!r}")
    # Both separators everywhere: a name must mean one folder on every system.
    if name in ("", ".", "..") or any(mark in name for mark in ("/", "\\", "\0")):
        raise ValueError(f"TrainConfig.run_name must be a plain folder name (no '/', '\\', "
                         f"'..' or '.'), got {name!r}; give folders in output_dir")


def _tracker_names(trackers: Any) -> list[str]:
    """The trackers option as a list of known names, each once, in the order given.

    >>> _tracker_names(("wandb", "mlflow", "wandb")), _tracker_names("mlflow")
    (['wandb', 'mlflow'], ['mlflow'])
    """
    names = [trackers] if isinstance(trackers, str) else trackers
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"TrainConfig.trackers must be a list of tracker names, got {trackers!r}")
    unknown = [name for name in names if name not in TRACKER_NAMES]
    if unknown:
        raise ValueError(f"unknown tracker {unknown[0]!r}: choose from "
                         f"{', '.join(TRACKER_NAMES)} (TensorBoard event files are always written)")
    return list(dict.fromkeys(names))


def hidden_sizes_of(policy: str) -> tuple[int, ...]:
    """The hidden layer sizes a ``policy`` option names: () for ``"linear"``.

    >>> hidden_sizes_of("64x64"), hidden_sizes_of("linear")
    ((64, 64), ())
    >>> hidden_sizes_of("64,64")
    Traceback (most recent call last):
    ...
    ValueError: TrainConfig.policy must be 'linear' or hidden sizes such as '64x64', got '64,64'
    """
    if not isinstance(policy, str):
        raise TypeError(f"TrainConfig.policy must be a str such as 'linear' or '64x64', "
                        f"got {policy!r}")
    if policy == "linear":
        return ()
    parts = policy.lower().removeprefix("mlp").split("x")
    if not all(part.isdigit() and int(part) >= 1 for part in parts):
        raise ValueError(f"TrainConfig.policy must be 'linear' or hidden sizes such as '64x64', "
                         f"got {policy!r}")
    return tuple(int(part) for part in parts)


def default_agent(continuous_actions: bool) -> str:
    """The built-in agent for an action space: ``"ars"`` for continuous (Box) actions,
    else ``"es"``. The one place this choice is made.

    >>> default_agent(True), default_agent(False)
    ('ars', 'es')
    """
    return "ars" if continuous_actions else "es"


def default_agent_for(env_config: Mapping[str, Any]) -> str:
    """:func:`default_agent` for an environment (built once to learn its action space).

    >>> default_agent_for({"env": "CartPole-v1"}), default_agent_for({"env": "Pendulum-v1"})
    ('es', 'ars')
    """
    return default_agent(env_facts(env_config).continuous_actions)


def round_defaults(env: str, agent: str) -> dict[str, int]:
    """Round options for ``env`` and ``agent`` when the config leaves them at None.

    ES (tuned on CartPole-v1): 128 seeds per round in batches of 64, 100
    evaluation episodes every round. ARS: the paper's directions per round
    for the task, in batches of 1/16 of them (at least 1) that go to
    whichever actor is free, so two actors stay busy to the round's end (a
    MuJoCo batch is long: 2 directions x 2 episodes x 1000 steps on
    HalfCheetah); 10 evaluation episodes (MuJoCo episodes are 1000 steps),
    about every 128 training episodes.

    >>> round_defaults("HalfCheetah-v5", "ars")["seeds_per_round"]
    32
    """
    if agent == "ars":
        directions = int(ars_preset(env_settings({"env": env}).env_id)["directions"])
        batch = max(1, directions // 16)
        return {"seeds_per_round": directions, "batch_size": batch, "chunk_size": batch,
                "eval_every": max(1, min(10, math.ceil(64 / directions))),
                "eval_episodes": 10}
    # One batch per training actor per round (2 by default), each rolled out
    # as one wide vector env, which costs less per env step than narrow ones;
    # chosen with benchmarks/es_single_process.py --batch-size/--chunk-size.
    return {"seeds_per_round": 128, "batch_size": 64, "chunk_size": 64, "eval_every": 1,
            "eval_episodes": 100}


#: Options a resumed run may change: budgets and where it runs. Any other
#: option would change what the checkpoint's weights mean.
RESUMABLE_OPTIONS = ("max_rounds", "max_seconds", "target_return", "progress", "address",
                     "num_cpus", "num_actors", "num_eval_actors", "overlap_eval", "trackers")


def check_resumable(saved: TrainConfig, config: TrainConfig,
                    run_dir: str | os.PathLike[str]) -> None:
    """Raise ValueError naming each option ``config`` changes outside RESUMABLE_OPTIONS.

    >>> check_resumable(TrainConfig(), TrainConfig(max_rounds=5), "run")
    >>> check_resumable(TrainConfig(), TrainConfig(seed=1), "run")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: cannot resume run with other options than it was trained with: seed ...
    """
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name not in RESUMABLE_OPTIONS
               and getattr(config, f.name) != getattr(saved, f.name)]
    if changed:
        details = ", ".join(f"{name} (run: {getattr(saved, name)!r}, now: "
                            f"{getattr(config, name)!r})" for name in changed)
        raise ValueError(
            f"cannot resume {run_dir} with other options than it was trained with: {details}; "
            f"a resumed run may change only {', '.join(RESUMABLE_OPTIONS)}"
        )
