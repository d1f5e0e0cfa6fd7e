"""Running statistics of observations (count, mean and sum of squared deviations),
merged in a fixed order so that results are bit-identical however the work was split:
the ``ars`` agent's observation filter.

This module knows nothing of Ray (see docs/development.md, "Layers").
"""

from __future__ import annotations

import numpy as np

__all__ = ["MomentCollector", "merge_moments"]


def merge_moments(
    a: tuple[float, np.ndarray, np.ndarray], b: tuple[float, np.ndarray, np.ndarray],
) -> tuple[float, np.ndarray, np.ndarray]:
    """Merge two (count, mean, M2) summaries (Chan et al.'s parallel Welford step).

    ``M2`` is the sum of squared deviations from the mean, so the variance is
    ``M2 / count``. Merging in a fixed order gives bit-identical results.

    >>> x = np.arange(10.0)[:, None]
    >>> left = (5.0, x[:5].mean(0), ((x[:5] - x[:5].mean(0)) ** 2).sum(0))
    >>> right = (5.0, x[5:].mean(0), ((x[5:] - x[5:].mean(0)) ** 2).sum(0))
    >>> count, mean, m2 = merge_moments(left, right)
    >>> count, float(mean[0]), float(m2[0] / count) == float(x.var())
    (10.0, 4.5, True)
    """
    count_a, mean_a, m2_a = a
    count_b, mean_b, m2_b = b
    if count_b == 0:
        return count_a, mean_a, m2_a
    if count_a == 0:
        return count_b, mean_b, m2_b
    count = count_a + count_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (count_b / count)
    m2 = m2_a + m2_b + delta**2 * (count_a * count_b / count)
    return count, mean, m2


class MomentCollector:
    """Running (count, mean, M2) of the observations of running episodes.

    Called once per lockstep of a rollout, it only keeps the rows; they are
    reduced (two passes: mean, then squared deviations) and merged into the
    running summary when :attr:`moments` is read or when ``flush_rows`` rows
    are waiting. A merge per lockstep cost more than the policy's actions for a
    narrow chunk (a few µs per env step); this is one copy per lockstep. The
    reductions fall where the row counts say, so a rollout's statistics depend
    only on its episodes and its chunk size, as before.

    >>> collector = MomentCollector(1)
    >>> collector(np.array([[1.0], [3.0]]), np.array([True, True]))
    >>> collector(np.array([[5.0], [9.0]]), np.array([True, False]))
    >>> count, mean, m2 = collector.moments
    >>> count, mean.tolist(), m2.tolist()
    (3.0, [3.0], [8.0])
    """

    def __init__(self, size: int, flush_rows: int = 4096) -> None:
        self._summary: tuple[float, np.ndarray, np.ndarray] = (
            0.0, np.zeros(size), np.zeros(size))
        self._rows: list[np.ndarray] = []
        self._waiting = 0
        self._flush_rows = flush_rows

    def __call__(self, observations: np.ndarray, alive: np.ndarray) -> None:
        # Boolean indexing copies: the caller may overwrite ``observations`` next step.
        rows = np.asarray(observations, dtype=np.float64).reshape(len(observations), -1)[alive]
        if len(rows) == 0:
            return
        self._rows.append(rows)
        self._waiting += len(rows)
        if self._waiting >= self._flush_rows:
            self._reduce()

    def _reduce(self) -> None:
        rows = np.concatenate(self._rows)
        self._rows.clear()
        self._waiting = 0
        mean = rows.mean(axis=0)
        self._summary = merge_moments(
            self._summary, (float(len(rows)), mean, ((rows - mean) ** 2).sum(axis=0)))

    @property
    def moments(self) -> tuple[float, np.ndarray, np.ndarray]:
        """(count, mean, M2) of every row collected so far."""
        if self._rows:
            self._reduce()
        return self._summary
