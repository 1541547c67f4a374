r"""Convergence-rate estimation from a relative-error history.

Theorem 2 bounds the error by :math:`\nu^t \|W^{(0)} - W^*\|_F` (linear
convergence).  We estimate :math:`\nu` as :math:`\exp(\text{slope})` of a
least-squares line through :math:`\log(\text{error}_t)` against :math:`t`,
using only the iterates inside a window (default :math:`10^{-7} <` error
:math:`< 10^{-2}`): above it the run has not reached its linear phase, below it
the stopping rule and round-off take over (spec, ambiguity 6).

The fit also returns :math:`R^2` of the log-linear fit, which is how the
Convergence chapter tests "linear convergence": a straight line on a log
axis has :math:`R^2` close to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..experiments.validation import check_int, check_real

WINDOW = (1e-7, 1e-2)
MIN_POINTS = 10


@dataclass(frozen=True)
class RateFit:
    """A log-linear fit of an error history: ``rate`` = exp(slope), ``r2`` its R^2, ``points`` used."""

    rate: float
    r2: float
    points: int


def fit_rate(history: np.ndarray, window: tuple[float, float] = WINDOW, min_points: int = MIN_POINTS) -> RateFit:
    """Fit :math:`\\log(\\text{error}_t) \\approx a + t \\log\\nu` over the iterates inside ``window``.

    NaN entries (iterations after the run stopped) are ignored.  With fewer than
    ``min_points`` iterates in the window the rate is undefined and NaN is returned.
    """
    low = check_real("window[0]", window[0], 0.0, low_open=True)
    high = check_real("window[1]", window[1], low, low_open=True)
    min_points = check_int("min_points", min_points, 2)
    h = np.asarray(history, dtype=np.float64)
    if h.ndim != 1:
        raise ValueError(f"history must be one-dimensional, got shape {h.shape}")
    t = np.flatnonzero(np.isfinite(h) & (h > low) & (h < high))
    if t.size < min_points:
        return RateFit(float("nan"), float("nan"), int(t.size))
    logs = np.log(h[t])
    slope, intercept = np.polyfit(t, logs, 1)
    resid = logs - (intercept + slope * t)
    total = np.sum((logs - logs.mean()) ** 2)
    r2 = 1.0 - np.sum(resid**2) / total if total > 0 else float("nan")
    return RateFit(float(np.exp(slope)), float(r2), int(t.size))


def fit_rates(histories: np.ndarray, window: tuple[float, float] = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """Rates and R^2 for an array of histories ``(..., T)``; returns two arrays of shape ``(...)``."""
    h = np.asarray(histories, dtype=np.float64)
    flat = h.reshape(-1, h.shape[-1])
    fits = [fit_rate(row, window) for row in flat]
    shape = h.shape[:-1]
    return (
        np.array([f.rate for f in fits]).reshape(shape),
        np.array([f.r2 for f in fits]).reshape(shape),
    )
