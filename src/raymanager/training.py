"""The main job: train an agent with a pool of training actors, evaluate it with another.

Read top to bottom, one round is::

    broadcast the round's weights to every TrainingActor (put once)
    hand the pool this round's seeds, cut into batches; each batch's result is
        its seeds' returns (+ observation statistics for ARS), not weights
    the driver takes the step from all results in batch order (independent of
        which actor ran what); see raymanager.rounds.run_round
    every `eval_every` rounds: broadcast the weights to the EvaluationActors,
        run `eval_episodes` seeded episodes, stop when the mean return reaches
        the environment's reward threshold (475 for CartPole-v1)
    append a row to metrics.csv; checkpoint after each evaluation

Options left at None take the defaults of the environment and agent
(:func:`round_defaults`): ES with 128 seeds per round on CartPole-v1; ARS with
the paper's V2-t settings on the MuJoCo tasks (10 evaluation episodes).

The run directory holds ``config.yaml`` (resolved options), ``metrics.csv``,
``tensorboard/`` (the same metrics as TensorBoard events, ``train/...`` and
``eval/...``), ``checkpoint/`` (``weights.npz`` + ``state.json``: loading never
executes code) and ``learning_curve.png``.

    >>> from raymanager.training import TrainConfig, train        # doctest: +SKIP
    >>> summary = train(TrainConfig(max_rounds=5, output_dir="runs"))  # doctest: +SKIP

Only the public API of raymanager is used here (see docs/development.md, "Layers").
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from raymanager.actors.evaluation import EvaluationActor, merge_evaluations
from raymanager.actors.training import TrainingActor
from raymanager.agents.ars import ars_preset
from raymanager.agents.base import make_agent, round_seeds
from raymanager.config import BatchConfig, RayConfig
from raymanager.durable import append_durably, write_atomically
from raymanager.envs import env_settings, make_env, validate_env_config
from raymanager.errors import CheckpointError, RunFileError
from raymanager.manager import RayManager
from raymanager.pool import ActorPool
from raymanager.rounds import run_round

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "RunFileError",
    "TrainConfig",
    "TrainSummary",
    "evaluate_checkpoint",
    "load_checkpoint",
    "new_run_dir",
    "read_run_config",
    "resolved_config",
    "resume_config",
    "round_defaults",
    "save_checkpoint",
    "train",
]

logger = logging.getLogger("raymanager")

CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.csv"
CONFIG_FILE = "config.yaml"
CURVE_FILE = "learning_curve.png"
TENSORBOARD_DIR = "tensorboard"
#: Evaluation episodes use seeds from a range training seeds never reach.
EVAL_SEED_OFFSET = 1_000_000_000


def _help(text: str) -> dict[str, str]:
    return {"help": text}


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
    run_name: str | None = field(default=None, metadata=_help("run directory name"))
    address: str | None = field(
        default=None, metadata=_help("Ray cluster to join ('auto', 'host:port'); None: local")
    )
    num_cpus: int | None = field(default=None, metadata=_help("CPUs of a local Ray"))
    progress: bool = field(default=True, metadata=_help("live progress display"))

    def __post_init__(self) -> None:
        for name in ("num_actors", "num_eval_actors", "seeds_per_round", "batch_size",
                     "chunk_size", "eval_every", "eval_episodes", "max_rounds"):
            value = getattr(self, name)
            if value is None and name in _ROUND_DEFAULT_KEYS:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an int >= 1, got {value!r}")
        if self.agent is not None and (not isinstance(self.agent, str) or not self.agent):
            raise TypeError(f"TrainConfig.agent must be a non-empty str or None, "
                            f"got {self.agent!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"TrainConfig.seed must be an int >= 0, got {self.seed!r}")
        for name in ("env_kwargs", "agent_kwargs"):
            if not isinstance(getattr(self, name), dict):
                value = getattr(self, name)
                raise TypeError(f"TrainConfig.{name} must be a mapping, got {value!r}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"TrainConfig.max_seconds must be > 0, got {self.max_seconds!r}")

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

    def resolved(self) -> TrainConfig:
        """This config with every None that has a default filled in (see round_defaults).

        >>> TrainConfig().resolved().seeds_per_round
        128
        """
        agent = self.agent if self.agent is not None else default_agent_for(
            {"env": self.env, "env_kwargs": self.env_kwargs})
        defaults = round_defaults(self.env, agent)
        values: dict[str, Any] = {"agent": agent}
        for key in _ROUND_DEFAULT_KEYS:
            if getattr(self, key) is None:
                values[key] = defaults[key]
        return dataclasses.replace(self, **values)

    def agent_config(self) -> dict[str, Any]:
        """The config every TrainingActor and EvaluationActor is built from."""
        agent = self.agent if self.agent is not None else self.resolved().agent
        config: dict[str, Any] = {"agent": agent, "env": self.env, "seed": self.seed}
        if self.env_kwargs:
            config["env_kwargs"] = dict(self.env_kwargs)
        if self.learning_rate is not None:
            config["learning_rate"] = self.learning_rate
        if self.noise_std is not None:
            config["noise_std"] = self.noise_std
        config.update(self.agent_kwargs)
        return config


_ROUND_DEFAULT_KEYS = ("seeds_per_round", "batch_size", "chunk_size", "eval_every",
                       "eval_episodes")


def default_agent_for(env_config: Mapping[str, Any]) -> str:
    """``"ars"`` for a continuous (Box) action space, else ``"es"``.

    >>> default_agent_for({"env": "CartPole-v1"}), default_agent_for({"env": "Pendulum-v1"})
    ('es', 'ars')
    """
    from gymnasium import spaces

    _, action_space = validate_env_config(env_config)
    return "ars" if isinstance(action_space, spaces.Box) else "es"


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


@dataclass
class Checkpoint:
    """Weights plus where training stood; stored as ``weights.npz`` + ``state.json``."""

    weights: dict[str, np.ndarray]
    round: int
    env_steps: int
    seconds: float
    config: dict[str, Any]
    last_eval: dict[str, Any] | None = None
    #: Training episodes so far (0 in checkpoints written before this field).
    episodes: int = 0


def _cannot_write(error: OSError, path: Path) -> RunFileError:
    """``error`` as our own, naming the file (a failed write may name none)."""
    return RunFileError(error.errno, error.strerror or str(error) or type(error).__name__,
                        os.fspath(error.filename or path))


def _write_file(target: Path, content: Any, *, binary: bool = True) -> None:
    """Replace ``target`` durably (see :mod:`raymanager.durable`); RunFileError if it fails."""
    try:
        write_atomically(target, content, binary=binary)
    except OSError as error:
        raise _cannot_write(error, target) from error


def save_checkpoint(directory: str | os.PathLike[str], checkpoint: Checkpoint) -> Path:
    """Write a checkpoint atomically and durably: a crash or a power loss mid-write leaves
    the old one whole. A full disk or an unwritable folder raises :class:`RunFileError`
    naming the file.

    >>> save_checkpoint("run/checkpoint", ckpt)                     # doctest: +SKIP
    """
    target = Path(directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_write(error, target) from error
    state = {
        "format": 1,
        "round": checkpoint.round,
        "env_steps": checkpoint.env_steps,
        "episodes": checkpoint.episodes,
        "seconds": checkpoint.seconds,
        "config": checkpoint.config,
        "last_eval": checkpoint.last_eval,
    }
    _write_file(target / "weights.npz",
                lambda handle: np.savez(handle, **checkpoint.weights))  # type: ignore[arg-type]
    _write_file(target / "state.json", json.dumps(state, indent=2))
    return target


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint from a checkpoint directory or a run directory.

    Never executes code: arrays load without pickle, state is JSON. A file
    that cannot be read raises :class:`CheckpointError` saying it is corrupt.

    >>> load_checkpoint("runs/CartPole-v1-seed0").round             # doctest: +SKIP
    42
    """
    directory = Path(path)
    if (directory / CHECKPOINT_DIR / "state.json").exists():
        directory = directory / CHECKPOINT_DIR
    state_file, weights_file = directory / "state.json", directory / "weights.npz"
    if not state_file.exists() or not weights_file.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path}: expected state.json and weights.npz in it "
            f"or in its {CHECKPOINT_DIR}/ folder"
        )
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        checkpoint_fields = {
            "round": int(state["round"]),
            "env_steps": int(state["env_steps"]),
            "seconds": float(state["seconds"]),
            "config": dict(state["config"]),
            "last_eval": state.get("last_eval"),
            "episodes": int(state.get("episodes", 0)),
        }
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as error:
        raise CheckpointError(
            f"{state_file} is corrupt (not a raymanager checkpoint state: {error})"
        ) from None
    weights = _load_weights(weights_file)
    return Checkpoint(weights=weights, **checkpoint_fields)


def _load_weights(weights_file: Path) -> dict[str, np.ndarray]:
    # numpy's own messages would suggest allow_pickle=True for an object
    # array or a file it does not recognise: code execution from a file,
    # which we never do nor advise.
    if not zipfile.is_zipfile(weights_file):
        reason = "not an .npz archive: truncated or overwritten"
    else:
        try:
            with np.load(weights_file, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except ValueError as error:
            if "pickle" in str(error):
                reason = "it holds Python objects, which raymanager never loads"
            else:
                reason = str(error).split(". ")[0]
        except (OSError, EOFError, KeyError, zipfile.BadZipFile, AttributeError) as error:
            reason = str(error) or type(error).__name__
    raise CheckpointError(
        f"{weights_file} is corrupt or not a raymanager checkpoint ({reason}); "
        f"restore it from a copy or train again"
    )


@dataclass
class TrainSummary:
    """What a training run did."""

    run_dir: Path
    rounds: int
    env_steps: int
    seconds: float
    solved: bool
    target_return: float
    last_eval: dict[str, Any] | None
    interrupted: bool = False
    #: Files of the run that could not be written although the run itself
    #: finished (the learning curve on a full disk): the run's files are incomplete.
    incomplete: tuple[str, ...] = ()


def target_return_of(config: TrainConfig) -> float:
    """The return to reach: the option, else the environment's reward threshold."""
    if config.target_return is not None:
        return float(config.target_return)
    env = make_env({"env": config.env, "env_kwargs": config.env_kwargs})
    try:
        threshold = env.spec.reward_threshold if env.spec is not None else None
    finally:
        env.close()
    if threshold is None:
        raise ValueError(
            f"{config.env} has no reward threshold; set target_return to say when it is solved"
        )
    return float(threshold)


METRIC_COLUMNS = [
    "round", "seconds", "env_steps", "train_env_steps", "fitness_mean", "fitness_max",
    "loss", "eval_return_mean", "eval_return_std", "eval_return_min", "eval_return_max",
    "eval_length_mean", "eval_episodes", "restarts",
    # Training episodes (cumulative and this round) compare with "episodes to
    # threshold"; bytes: batch results to the driver + the weights broadcast.
    "episodes", "train_episodes", "batches", "result_bytes", "broadcast_bytes",
    "bytes_per_round",
]


#: Options a resumed run may change: budgets and where it runs. Any other
#: option would change what the checkpoint's weights mean.
RESUMABLE_OPTIONS = ("max_rounds", "max_seconds", "target_return", "progress", "address",
                     "num_cpus", "num_actors", "num_eval_actors")

#: The files of a run directory that ``overwrite`` replaces.
RUN_FILES = (CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR, CURVE_FILE, TENSORBOARD_DIR)


def tensorboard_scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """A metrics row as TensorBoard scalars: ``eval_*`` under ``eval/``, the rest ``train/``.

    The round is the step, so it is not a scalar itself; empty cells are left out.

    >>> tensorboard_scalars({"round": 3, "loss": 0.5, "eval_return_mean": 200.0,
    ...                      "eval_episodes": None})
    {'train/loss': 0.5, 'eval/return_mean': 200.0}
    """
    scalars: dict[str, float] = {}
    for key, value in row.items():
        if key == "round" or value is None or value == "":
            continue
        if key.startswith("eval_"):
            scalars[f"eval/{key[len('eval_'):]}"] = float(value)
        else:
            scalars[f"train/{key}"] = float(value)
    return scalars


def read_run_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The options a run directory was trained with (its ``config.yaml``)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is corrupt: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} is corrupt: expected a mapping of options")
    return TrainConfig.from_mapping(values)


def resume_config(
    run_dir: str | os.PathLike[str], changes: Mapping[str, Any] | None = None
) -> TrainConfig:
    """The run's own options, with ``changes`` to its budgets or resources.

    Everything not in ``changes`` stays as the run had it, its budgets
    included; changing an option outside :data:`RESUMABLE_OPTIONS` raises
    ValueError naming it.

    >>> resume_config("runs/CartPole-v1-seed0-20261126-101500",
    ...               {"max_rounds": 50}).max_rounds                 # doctest: +SKIP
    50
    """
    saved = read_run_config(run_dir)
    changes = dict(changes or {})
    _check_resumable(saved, TrainConfig.from_mapping({**dataclasses.asdict(saved), **changes}),
                     run_dir)
    return dataclasses.replace(saved, **changes)


def _check_resumable(saved: TrainConfig, config: TrainConfig,
                     run_dir: str | os.PathLike[str]) -> None:
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


def new_run_dir(config: TrainConfig, *, overwrite: bool = False) -> Path:
    """Create the run directory of a new run; never share or silently reuse one.

    Without ``run_name`` the name is ``{env}-seed{seed}-{date}-{time}``, with
    ``-2``, ``-3`` ... added when that exists already (two runs started in the
    same second each get their own). An explicit ``run_name`` that holds a run
    raises FileExistsError (continue it with ``resume``), unless ``overwrite``.
    """
    output = Path(config.output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(error.errno, f"cannot create the output directory ({error.strerror})",
                      str(output)) from None
    if config.run_name is None:  # a fresh name: the first that does not exist
        base = f"{config.env}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        for number in itertools.count(1):
            run_dir = output / (base if number == 1 else f"{base}-{number}")
            try:
                run_dir.mkdir()  # atomic: of two runs racing for a name, one gets it
            except FileExistsError:
                continue
            return run_dir
    run_dir = output / str(config.run_name)
    run_dir.mkdir(exist_ok=True)
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"run directory {run_dir} already holds a run ({', '.join(existing)}); continue it "
            f"with `raymanager train --resume {run_dir}`, or add --overwrite to replace it"
        )
    _remove_run_files(run_dir, remove_dir=False)
    return run_dir


def _remove_run_files(run_dir: Path, *, remove_dir: bool = True) -> None:
    """Remove what a run writes in ``run_dir`` (and the folder, if that empties it)."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    if remove_dir:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # only if empty: never the user's own files


class _RunFiles:
    """The run directory: config, metrics rows (CSV and TensorBoard), checkpoint and curve.

    ``metrics.csv`` and the checkpoint always agree: a row is written before
    the checkpoint of its round, and rows past the checkpoint's round (a run
    killed between the two) are dropped when the run is resumed or stopped.
    """

    def __init__(self, run_dir: Path, config: TrainConfig, resumed_round: int | None) -> None:
        self.run_dir = run_dir
        text = yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
        _write_file(run_dir / CONFIG_FILE, text)
        self.metrics_path = run_dir / METRICS_FILE
        if resumed_round is None or not self.metrics_path.exists():
            self._rewrite([])
        else:
            self.keep_rounds_up_to(resumed_round)
        from tensorboardX import SummaryWriter

        # On resume, purge_step tells TensorBoard to drop the earlier file's events
        # past the checkpoint's round, as keep_rounds_up_to drops those CSV rows.
        self.events = SummaryWriter(
            str(run_dir / TENSORBOARD_DIR),
            purge_step=None if resumed_round is None else resumed_round + 1)

    def _rewrite(self, rows: list[list[str]]) -> None:
        def write(handle: Any) -> None:
            writer = csv.writer(handle)
            writer.writerow(METRIC_COLUMNS)
            writer.writerows(rows)

        _write_file(self.metrics_path, write, binary=False)

    def keep_rounds_up_to(self, last_round: int) -> None:
        """Drop the rows of rounds after ``last_round`` (the checkpoint's round)."""
        with open(self.metrics_path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [row for row in reader if row]
        if header != METRIC_COLUMNS:
            raise ValueError(f"{self.metrics_path} is corrupt: unexpected header {header}")
        kept = [row for row in rows if row[0].isdigit() and int(row[0]) <= last_round]
        if len(kept) != len(rows):
            logger.warning("%s: dropped %d row(s) after round %d, the checkpoint's round",
                           self.metrics_path, len(rows) - len(kept), last_round)
            self._rewrite(kept)

    def append(self, row: Mapping[str, Any]) -> None:
        line = io.StringIO()
        csv.writer(line).writerow([_cell(row.get(column)) for column in METRIC_COLUMNS])
        try:
            # One write (Ctrl-C never leaves half a row), fsynced: a row survives a reboot.
            append_durably(self.metrics_path, line.getvalue())
        except OSError as error:
            raise _cannot_write(error, self.metrics_path) from error
        step = int(row["round"])
        for tag, value in tensorboard_scalars(
                {column: row.get(column) for column in METRIC_COLUMNS}).items():
            self.events.add_scalar(tag, value, step)
        self.events.flush()

    def close(self) -> None:
        self.events.close()

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT_DIR, checkpoint)

    def plot(self, target: float) -> None:
        from raymanager.plotting import plot_learning_curve

        plot_learning_curve(self.metrics_path, self.run_dir / CURVE_FILE, target=target)


def resolved_config(config: TrainConfig) -> TrainConfig:
    """``config`` with the values actually used where it says "default" (None).

    The target return becomes the environment's threshold; the ES agent's
    learning rate and noise scale its defaults. (A custom agent's defaults are
    its own business: they stay None.)
    """
    validate_env_config(config.agent_config())  # a wrong id: close matches, before Ray starts
    config = config.resolved()  # the agent and the round options for this environment
    values: dict[str, Any] = {"target_return": target_return_of(config)}
    if config.agent == "es":
        from raymanager.agents.es import ESConfig

        settings = ESConfig.from_mapping(config.agent_config())
        values.update(learning_rate=settings.learning_rate, noise_std=settings.noise_std)
    return dataclasses.replace(config, **values)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _evaluate(
    manager: RayManager, pool: ActorPool, weights: Mapping[str, np.ndarray], config: TrainConfig,
    round_index: int,
) -> dict[str, Any]:
    manager.broadcast(pool, "set_weights", (weights,), replay_on_restart=True)
    episodes = config.resolved().eval_episodes
    assert episodes is not None
    # Fresh episodes each evaluation, from a seed range training never uses.
    seeds = EVAL_SEED_OFFSET + round_seeds(config.seed, round_index, episodes)
    per_actor = math.ceil(episodes / config.num_eval_actors)
    batch = BatchConfig(batch_size=per_actor, num_parallel=config.num_eval_actors,
                        chunk_size=per_actor)
    return merge_evaluations(manager.process_in_parallel(pool, seeds, batch))


ProgressHook = Callable[[dict[str, Any]], None]


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    on_round: ProgressHook | None = None,
    overwrite: bool = False,
) -> TrainSummary:
    """Train until the target return, the round budget or the time budget.

    A new run gets a directory of its own under ``output_dir`` (see
    :func:`new_run_dir`; ``overwrite`` replaces an existing ``run_name``).
    With ``resume`` (a run directory) training continues from its
    checkpoint with the run's own options, budgets included; ``config`` may
    change only :data:`RESUMABLE_OPTIONS` (build it with :func:`resume_config`).
    Ctrl-C saves a checkpoint of the last complete round, shuts Ray down and
    returns with ``interrupted=True``.

    Example::

        >>> summary = train(TrainConfig(max_rounds=3, progress=False))   # doctest: +SKIP
        >>> summary.rounds                                               # doctest: +SKIP
        3
    """
    start = time.monotonic()
    checkpoint: Checkpoint | None = None
    if resume is not None:
        run_dir = Path(resume)
        checkpoint = load_checkpoint(run_dir)
        saved = read_run_config(run_dir)
        config = saved if config is None else config
        _check_resumable(saved, config, run_dir)
    elif config is None:
        raise TypeError("train() needs a TrainConfig, or resume= a run directory")
    config = resolved_config(config)
    assert config.batch_size and config.chunk_size and config.seeds_per_round
    assert config.eval_every
    target = float(config.target_return)  # type: ignore[arg-type]
    if resume is None:
        run_dir = new_run_dir(config, overwrite=overwrite)
    try:
        files = _RunFiles(run_dir, config, checkpoint.round if checkpoint else None)
    except BaseException:
        if resume is None:  # a run that could not write its first files leaves no folder
            _remove_run_files(run_dir)
        raise
    agent_config = config.agent_config()
    batch = BatchConfig(batch_size=config.batch_size, num_parallel=config.num_actors,
                        chunk_size=config.chunk_size)

    round_index = checkpoint.round if checkpoint else 0
    env_steps = checkpoint.env_steps if checkpoint else 0
    episodes = checkpoint.episodes if checkpoint else 0
    seconds_before = checkpoint.seconds if checkpoint else 0.0
    last_eval = checkpoint.last_eval if checkpoint else None
    weights: dict[str, np.ndarray] | None = checkpoint.weights if checkpoint else None
    solved = bool(last_eval and last_eval["return_mean"] >= target)
    interrupted = False

    def elapsed() -> float:
        return seconds_before + time.monotonic() - start

    def save() -> None:
        if weights is None:  # interrupted before the first weights existed
            return
        files.checkpoint(Checkpoint(weights, round_index, env_steps, elapsed(),
                                    dataclasses.asdict(config), _slim(last_eval),
                                    episodes=episodes))

    # The last round whose metrics row is written: what a stop rolls back to,
    # so that the checkpoint and metrics.csv always agree.
    committed = (round_index, env_steps, weights, last_eval, solved)

    if checkpoint is not None and (solved or round_index >= config.max_rounds or (
            config.max_seconds is not None and seconds_before >= config.max_seconds)):
        logger.warning("%s: nothing to do: %s", run_dir, "solved" if solved else
                       "its budget is spent (raise --max-rounds / --max-seconds to go on)")
        return TrainSummary(run_dir, round_index, env_steps, seconds_before, solved, target,
                            _slim(last_eval))
    try:
        manager = RayManager(RayConfig(address=config.address, num_cpus=config.num_cpus))
    except BaseException:
        if resume is None:  # a run that never started leaves no directory behind
            _remove_run_files(run_dir)
        raise
    try:
        train_pool = manager.create_actor_pool(TrainingActor, agent_config, config.num_actors)
        eval_pool = manager.create_actor_pool(EvaluationActor, agent_config,
                                              config.num_eval_actors)
        # The driver's copy of the agent takes each round's step from the results.
        learner = make_agent(agent_config)
        if weights is None:
            weights = train_pool.broadcast("get_weights")[0]
            committed = (round_index, env_steps, weights, last_eval, solved)
        # Throughput is over training time: Ray's and the actors' start-up excluded.
        ready_at, steps_at_ready = time.monotonic(), env_steps
        try:
            while not solved and round_index < config.max_rounds:
                if config.max_seconds is not None and elapsed() >= config.max_seconds:
                    break
                seeds = round_seeds(config.seed, round_index, config.seeds_per_round)
                step = run_round(manager, train_pool, weights, seeds, batch, learner)
                weights = step.weights
                train_steps = int(step.metrics["env_steps"])
                train_episodes = int(step.metrics["episodes"])
                env_steps += train_steps
                episodes += train_episodes
                round_index += 1
                row: dict[str, Any] = {
                    "round": round_index,
                    "train_env_steps": train_steps,
                    "fitness_mean": step.metrics["fitness_mean"],
                    "fitness_max": step.metrics["fitness_max"],
                    "loss": step.metrics["loss"],
                    "restarts": train_pool.restarts + eval_pool.restarts,
                    "episodes": episodes,
                    "train_episodes": train_episodes,
                    "batches": step.batches,
                    "result_bytes": step.result_bytes,
                    "broadcast_bytes": step.broadcast_bytes,
                    "bytes_per_round": step.result_bytes + step.broadcast_bytes,
                }
                if round_index % config.eval_every == 0 or round_index == config.max_rounds:
                    last_eval = _evaluate(manager, eval_pool, weights, config, round_index)
                    solved = last_eval["return_mean"] >= target
                    row.update({f"eval_{k}": last_eval[k] for k in (
                        "return_mean", "return_std", "return_min", "return_max",
                        "length_mean", "episodes")})
                row["seconds"], row["env_steps"] = elapsed(), env_steps
                files.append(row)
                committed = (round_index, env_steps, weights, last_eval, solved)
                if "eval_return_mean" in row:
                    save()
                if on_round is not None:
                    on_round({**row, "target": target, "max_rounds": config.max_rounds,
                              "max_seconds": config.max_seconds,
                              "training_seconds": time.monotonic() - ready_at,
                              "training_env_steps": env_steps - steps_at_ready})
        except KeyboardInterrupt:
            interrupted = True
            round_index, env_steps, weights, last_eval, solved = committed
            logger.warning("interrupted: saving a checkpoint at round %d", round_index)
        save()
        files.keep_rounds_up_to(round_index)
    finally:
        files.close()
        manager.shutdown()
    incomplete: tuple[str, ...] = ()
    try:
        files.plot(target)
    except Exception as error:  # a missing plot must not lose a finished run
        curve = run_dir / CURVE_FILE
        reason = (f"{error.strerror}: {error.filename}"
                  if isinstance(error, OSError) and error.strerror and error.filename
                  else (str(error).splitlines() or [type(error).__name__])[0])
        # One line; the traceback only with -v (INFO), for a bug report.
        logger.warning("could not draw the learning curve %s (%s); the run's other files "
                       "are complete", curve, reason,
                       exc_info=logger.isEnabledFor(logging.INFO))
        incomplete = (str(curve),)
    return TrainSummary(run_dir, round_index, env_steps, elapsed(), solved, target,
                        _slim(last_eval), interrupted, incomplete)


def _slim(evaluation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An evaluation without its per-episode lists, for state.json."""
    if evaluation is None:
        return None
    return {k: v for k, v in evaluation.items() if k not in ("returns", "lengths")}


def evaluate_checkpoint(
    path: str | os.PathLike[str], episodes: int = 100, *, num_actors: int = 2,
    address: str | None = None, seed: int | None = None,
) -> dict[str, Any]:
    """Evaluate a saved checkpoint on ``episodes`` seeded episodes in parallel.

    >>> evaluate_checkpoint("runs/CartPole-v1-seed0", episodes=100)["return_mean"]  # doctest: +SKIP
    500.0
    """
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    checkpoint = load_checkpoint(path)
    config = TrainConfig.from_mapping(checkpoint.config)
    config = dataclasses.replace(config, eval_episodes=episodes, num_eval_actors=num_actors,
                                 seed=config.seed if seed is None else seed)
    with RayManager(RayConfig(address=address)) as manager:
        pool = manager.create_actor_pool(EvaluationActor, config.agent_config(), num_actors)
        return _evaluate(manager, pool, checkpoint.weights, config, checkpoint.round + 1)

