"""What a sweep runs: one set of training options, several seeds, and a small grid.

    >>> spec = SweepSpec(TrainConfig(env="CartPole-v1"), seeds=(0, 1),
    ...                  grid={"learning_rate": (0.1, 0.3)})
    >>> [run.name for run in spec.runs()][:3]
    ['learning_rate0.1-seed0', 'learning_rate0.1-seed1', 'learning_rate0.3-seed0']
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from raymanager.training import TrainConfig

__all__ = ["FIXED_OPTIONS", "MAX_RUNS", "PlannedRun", "SweepSpec"]

#: Options a grid may not vary: where and how the sweep runs, and what it
#: names; a run's seed comes from ``seeds``.
FIXED_OPTIONS = ("seed", "output_dir", "run_name", "address", "num_cpus", "progress",
                 "trackers")
#: More runs than this in one sweep is a typo in a grid, not a plan.
MAX_RUNS = 1000


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its directory name and its options."""

    name: str
    config: TrainConfig
    #: The grid's values for this run, by option (empty without a grid).
    point: Mapping[str, Any]


@dataclass(frozen=True)
class SweepSpec:
    """The runs of a sweep: ``base`` for every seed and every point of ``grid``.

    ``base.output_dir`` / ``base.run_name`` name the sweep's directory (see
    :func:`raymanager.sweep.new_sweep_dir`); ``parallel`` is how many runs go
    at once (None: as many as the cluster's CPUs give each run one per
    training actor, at least 1).
    """

    base: TrainConfig
    seeds: tuple[int, ...] = (0, 1, 2)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    parallel: int | None = None

    def __post_init__(self) -> None:
        seeds = tuple(self.seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                            for s in seeds):
            raise ValueError(f"seeds must be one or more ints >= 0, got {self.seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must differ from each other, got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        grid: dict[str, tuple[Any, ...]] = {}
        for option, values in dict(self.grid).items():
            if option not in known:
                raise ValueError(f"grid option {option!r} is not an option of train; "
                                 f"known options: {sorted(known - set(FIXED_OPTIONS))}")
            if option in FIXED_OPTIONS:
                raise ValueError(f"a sweep cannot vary {option!r} (seeds go in `seeds`)")
            values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
            if not values or len(set(map(repr, values))) != len(values):
                raise ValueError(f"grid option {option!r} needs distinct values, got {values!r}")
            grid[option] = values
        object.__setattr__(self, "grid", grid)
        if self.parallel is not None and (isinstance(self.parallel, bool)
                                          or not isinstance(self.parallel, int)
                                          or self.parallel < 1):
            raise ValueError(f"parallel must be an int >= 1 or None, got {self.parallel!r}")
        count = len(seeds) * _product_size(grid)
        if count > MAX_RUNS:
            raise ValueError(f"the sweep has {count} runs, more than {MAX_RUNS}: check the grid")
        self.runs()  # every run's options are valid now, not when its turn comes

    @property
    def varying(self) -> tuple[str, ...]:
        """The options that differ between runs besides the seed (the grid's)."""
        return tuple(self.grid)

    def runs(self) -> list[PlannedRun]:
        """Every run, grid point by grid point, seeds in the order given."""
        runs = []
        for values in itertools.product(*self.grid.values()):
            point = dict(zip(self.grid, values, strict=True))
            for seed in self.seeds:
                name = "-".join([f"{option}{_name_part(value)}" for option, value in point.items()]
                                + [f"seed{seed}"])
                config = TrainConfig.from_mapping({
                    **dataclasses.asdict(self.base), **point, "seed": seed, "run_name": name,
                    "progress": False})
                runs.append(PlannedRun(name, config, point))
        return runs

    def to_mapping(self) -> dict[str, Any]:
        """The spec as plain data, for ``sweep.yaml``.

        >>> SweepSpec(TrainConfig(), seeds=(4,)).to_mapping()["seeds"]
        [4]
        """
        return {"base": dataclasses.asdict(self.base), "seeds": list(self.seeds),
                "grid": {option: list(values) for option, values in self.grid.items()},
                "parallel": self.parallel}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SweepSpec:
        """The spec of :meth:`to_mapping`, checked as a new one is.

        >>> spec = SweepSpec(TrainConfig(), seeds=(1, 2), grid={"noise_std": [0.05, 0.1]})
        >>> SweepSpec.from_mapping(spec.to_mapping()) == spec
        True
        """
        unknown = sorted(set(values) - {"base", "seeds", "grid", "parallel"})
        if unknown:
            raise ValueError(f"not a sweep spec: unknown key(s) {unknown}")
        base = values.get("base")
        if not isinstance(base, Mapping):
            raise ValueError("not a sweep spec: 'base' must be a mapping of train options")
        return cls(TrainConfig.from_mapping(base), tuple(values.get("seeds") or ()),
                   dict(values.get("grid") or {}), values.get("parallel"))


def _product_size(grid: Mapping[str, Sequence[Any]]) -> int:
    size = 1
    for values in grid.values():
        size *= len(values)
    return size


def _name_part(value: Any) -> str:
    """A grid value as part of a directory name: letters, digits, '.', '_' and '-' only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{value:g}" if isinstance(value, float)
                  else str(value))
