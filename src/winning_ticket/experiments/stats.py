"""Interval estimates used by the claims checks.

* :func:`wilson_interval`: the Wilson score interval of a success rate (well
  behaved at 0 and at 1, unlike the normal approximation).
* :func:`bootstrap_slope`: a least-squares slope with a percentile bootstrap
  interval, resampling runs within each group (e.g. within each value of r)
  so every x value keeps its number of points.
"""

from __future__ import annotations

import numpy as np

from .validation import check_int, check_real

Z95 = 1.959963984540054


def wilson_interval(successes, trials, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval ``(low, high)`` for ``successes`` out of ``trials`` (arrays allowed)."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise ValueError("wilson_interval needs 0 <= successes <= trials and trials >= 1")
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def bootstrap_slope(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int, n_boot: int = 2000, level: float = 0.95
) -> tuple[float, float, float]:
    """Least-squares slope of ``y`` on ``x`` and a bootstrap interval resampling within ``groups``."""
    n_boot = check_int("n_boot", n_boot, 10)
    level = check_real("level", level, 0.0, 1.0, low_open=True, high_open=True)
    x, y, groups = (np.asarray(a) for a in (x, y, groups))
    if not (x.shape == y.shape == groups.shape) or x.ndim != 1:
        raise ValueError("x, y and groups must be one-dimensional arrays of equal length")
    if np.unique(x).size < 2:
        raise ValueError("x must take at least two distinct values to fit a slope")
    slope = float(np.polyfit(x, y, 1)[0])
    rng = np.random.default_rng(seed)
    idx_by_group = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    boots = np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(ix, size=ix.size, replace=True) for ix in idx_by_group])
        boots[b] = np.polyfit(x[idx], y[idx], 1)[0]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(boots, [tail, 100 - tail])
    return slope, float(lo), float(hi)
