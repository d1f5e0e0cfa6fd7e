"""A sweep in the trackers: an MLflow parent run with a child per run, a W&B group.

The parent is opened before the first run starts (its id is what the
children point at) and kept in ``SWEEP_DIR/trackers.json``, so a resumed sweep
adds its runs to the same parent. A tracker that cannot open the parent gives
one WARNING; the runs then open their own tracker runs without one.

    >>> parents = SweepTrackers.start(["mlflow"], spec)               # doctest: +SKIP
    >>> train(config, tracking_parents=parents.children())            # doctest: +SKIP
    >>> parents.finish("FINISHED")                                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raymanager.tracking.base import RunSpec
from raymanager.tracking.trackers import backend, check_trackers, read_state, warn, write_state

__all__ = ["SweepTrackers"]

logger = logging.getLogger("raymanager")


class SweepTrackers:
    """The parents of a sweep's tracker runs, by tracker name."""

    def __init__(self, parents: dict[str, Any]) -> None:
        self._parents = parents

    @classmethod
    def start(cls, names: Sequence[str], spec: RunSpec, *, resumed: bool = False
              ) -> SweepTrackers:
        """Open (or, ``resumed``, reopen) the parent of each tracker in ``names``."""
        saved = read_state(spec.run_dir) if resumed else {}
        parents: dict[str, Any] = {}
        for name in dict.fromkeys(names):
            try:
                parents[name] = backend(name).open_parent(
                    dataclasses.replace(spec, saved=saved.get(name)))
            except Exception as error:
                warn(name, "could not start the sweep's parent run", error)
        if parents:
            try:
                write_state(spec.run_dir, {n: p.state() for n, p in parents.items()})
            except OSError as error:
                logger.warning("could not write the sweep's tracker ids (%s)", error)
        return cls(parents)

    @classmethod
    def for_sweep(cls, names: Sequence[str], sweep_dir: Path, spec: Mapping[str, Any], *,
                  resumed: bool) -> SweepTrackers:
        """The parents of a sweep in ``sweep_dir`` (none without ``names``).

        ``spec``: the sweep as plain data (``SweepSpec.to_mapping()``), the parent's
        params: the base options, the seeds and the grid. A local store goes beside
        the sweep's directory, as a run's goes beside the run's.
        """
        if not names:
            return cls({})
        check_trackers(names)  # a missing extra: one error, not every run failing with it
        return cls.start(names, RunSpec(name=sweep_dir.name, run_dir=sweep_dir,
                                        store_dir=sweep_dir.parent, params=spec,
                                        tags={"raymanager.sweep_dir": str(sweep_dir.resolve())}),
                         resumed=resumed)

    def children(self) -> dict[str, dict[str, Any]]:
        """What each run passes to its trackers (plain data) to join the sweep."""
        return {name: parent.child_context() for name, parent in self._parents.items()}

    def finish(self, status: str = "FINISHED") -> list[str]:
        """End the parents; the lines that say where to look at the sweep."""
        lines: list[str] = []
        for name, parent in list(self._parents.items()):
            try:
                parent.finish(status)
                lines.extend(parent.where())
            except Exception as error:
                warn(name, "failed to end the sweep's parent run", error)
        return lines
