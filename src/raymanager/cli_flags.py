"""Command-line flags from :class:`~raymanager.training.TrainConfig`'s fields, for
``raymanager train`` and ``raymanager sweep`` alike: one flag per option, its help
from the field, YAML for mappings.

    >>> parser = argparse.ArgumentParser()
    >>> add_option_flags(parser)
    >>> given_options(parser.parse_args(["--seed", "3"]))
    {'seed': 3}
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any

import yaml

from raymanager.training import TrainConfig
from raymanager.training.options import ROUND_DEFAULT_KEYS, round_defaults

__all__ = ["add_option_flags", "given_options", "option_flags", "read_yaml_config", "yaml_problem"]


def _yaml_mapping(text: str) -> dict[str, Any]:
    """A flag's YAML / JSON mapping literal, such as ``'{sutton_barto_reward: true}'``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise argparse.ArgumentTypeError(
            f"not a YAML mapping: {text!r} ({yaml_problem(error)})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a mapping such as '{{key: 1}}', got {text!r}")
    return value


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line of what YAML found wrong, and where."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def _flag_type(annotation: Any) -> tuple[Any, bool]:
    """(argparse type, is a bool flag) for a TrainConfig field annotation."""
    hints = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    base = next((h for h in hints if h is not type(None)), annotation)
    if base is bool:
        return None, True
    if base in (int, float, str):
        return base, False
    return _yaml_mapping, False  # dicts: a YAML/JSON literal such as '{a: 1}'


#: The example task whose ARS defaults ``--help`` shows (they differ per task).
_ARS_EXAMPLE_ENV = "HalfCheetah-v5"


def _default_text(spec: dataclasses.Field[Any]) -> str:
    """The default a flag's help shows: the value a run will use, never a bare "none".

    >>> [_default_text(f) for f in dataclasses.fields(TrainConfig) if f.name == "batch_size"]
    ['es 64; ars per task, 2 on HalfCheetah-v5']
    """
    if spec.name in ROUND_DEFAULT_KEYS:  # None: filled in per agent and env by plan_run
        es = round_defaults(TrainConfig.env, "es")[spec.name]
        ars = round_defaults(_ARS_EXAMPLE_ENV, "ars")[spec.name]
        return f"es {es}; ars per task, {ars} on {_ARS_EXAMPLE_ENV}"
    if "default" in spec.metadata:
        return str(spec.metadata["default"])
    if spec.default is not dataclasses.MISSING:
        default = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        default = spec.default_factory()
    else:  # pragma: no cover - every TrainConfig field has a default
        return ""
    if default is None:
        return "none"
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default) if default != {} else "{}"


def add_option_flags(parser: argparse.ArgumentParser, *, lists: bool = False,
                     skip: Collection[str] = ()) -> None:
    """One flag per TrainConfig option (``--learning-rate``), but those in ``skip``.

    With ``lists``, a number or text option takes a comma-separated list
    (``--learning-rate 0.01,0.02``), parsed to a list of values: a sweep's grid.
    A flag the user did not give is absent from the namespace (see
    :func:`given_options`).
    """
    hints = typing.get_type_hints(TrainConfig)
    for spec in dataclasses.fields(TrainConfig):
        if spec.name in skip:
            continue
        flag = "--" + spec.name.replace("_", "-")
        kind, is_bool = _flag_type(hints[spec.name])
        # The defaults are shown by hand: the flags default to SUPPRESS so
        # that we know which ones the user gave (a resumed run keeps the rest).
        help_text = spec.metadata.get("help", "")
        if "None:" not in help_text:  # else the help says what None means
            help_text += f" (default: {_default_text(spec)})"
        if "flag" in spec.metadata:  # a repeatable flag of its own: --tracker mlflow
            parser.add_argument(spec.metadata["flag"], dest=spec.name, action=_Repeated,
                                default=argparse.SUPPRESS, help=help_text + "; repeatable",
                                metavar="NAME")
            continue
        if is_bool:
            parser.add_argument(flag, dest=spec.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
            continue
        if lists and kind in (int, float, str):
            kind = comma_list(kind)
            help_text += "; a comma-separated list sweeps over its values"
        parser.add_argument(flag, dest=spec.name, type=kind, default=argparse.SUPPRESS,
                            help=help_text, metavar=spec.name.upper())


class _Repeated(argparse.Action):
    """A repeatable flag's values, gathered as a tuple.

    A tuple, not a list: a sweep reads a list as a grid axis, while
    ``--tracker mlflow --tracker wandb`` is one option with two values.
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, (*getattr(namespace, self.dest, ()), values))


def comma_list(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """An argparse type: ``"1,2"`` -> ``[kind("1"), kind("2")]``.

    >>> comma_list(float)("0.01, 0.02")
    [0.01, 0.02]
    """
    def parse(text: str) -> list[Any]:
        parts = [part.strip() for part in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"an empty item in the list {text!r}")
        try:
            return [kind(part) for part in parts]
        except ValueError:
            name = getattr(kind, "__name__", "value")
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {name}, got {text!r}") from None

    parse.__name__ = f"list of {getattr(kind, '__name__', 'values')}"
    return parse


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig options given as flags (not their defaults)."""
    return {spec.name: getattr(args, spec.name) for spec in dataclasses.fields(TrainConfig)
            if spec.name in vars(args)}


def option_flags(options: Mapping[str, Any]) -> list[str]:
    """The ``raymanager train`` arguments that give ``options`` (TrainConfig names to values).

    The inverse of :func:`given_options`: a bool is ``--x`` or ``--no-x``, a
    repeatable option repeats its flag (none for an empty one), a mapping is a
    YAML flow literal, None (the option's default) is left out. Join the list
    with :func:`shlex.join` for a command a shell takes back as it was.

    >>> option_flags({"env": "Hopper-v5", "overlap_eval": False, "trackers": ["mlflow"],
    ...               "env_kwargs": {}, "seed": None})
    ['--env', 'Hopper-v5', '--no-overlap-eval', '--tracker', 'mlflow', '--env-kwargs', '{}']
    """
    fields = {spec.name: spec for spec in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    arguments: list[str] = []
    for name, value in options.items():
        spec = fields.get(name)
        if spec is None:
            raise ValueError(f"{name!r} is not an option of raymanager train")
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if "flag" in spec.metadata:
            for item in value:
                arguments += [spec.metadata["flag"], str(item)]
        elif _flag_type(hints[name])[1]:
            arguments.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, Mapping):
            arguments += [flag, yaml.safe_dump(dict(value), default_flow_style=True).strip()]
        else:
            arguments += [flag, str(value)]
    return arguments


def read_yaml_config(path: str) -> TrainConfig:
    try:
        return TrainConfig.from_yaml(path)
    except yaml.YAMLError as error:
        refused = " (tags such as !!python/... are refused: nothing in a config runs code)"
        tag = "tag" in str(error) and "python" in str(error)
        raise ValueError(
            f"{path}: not a valid options file: {yaml_problem(error)}{refused if tag else ''}"
        ) from None
