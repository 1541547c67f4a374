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


# --- the local (quadratic) theory of the rate ------------------------------------------------
#
# Near W* the noiseless risk is a quadratic with Hessian H = H(W*), and the AGD recursion (4),
# W(t+1) = W(t) - eta grad f(W(t)) + beta (W(t) - W(t-1)), acts on each eigen-direction of H with
# eigenvalue h as the 2x2 matrix [[1 + beta - eta h, -beta], [1, 0]].  Its roots solve
#     z^2 - (1 + beta - eta h) z + beta = 0,
# and the asymptotic rate nu is the largest root modulus over the spectrum of H.  The modulus is
# sqrt(beta) where the roots are complex and grows away from that interval, so the largest one
# is attained at h = mu (the smallest eigenvalue) or h = L (the largest).


def heavy_ball_rate(eta: float, beta: float, mu: float, L: float) -> float:
    r"""Asymptotic rate :math:`\nu` of the recursion (4) on a quadratic whose Hessian has spectrum in :math:`[\mu, L]`.

    The largest modulus of a root of :math:`z^2 - (1 + \beta - \eta h) z + \beta = 0` over
    :math:`h \in \{\mu, L\}`; ``beta = 0`` gives gradient descent's :math:`\max(|1-\eta\mu|, |1-\eta L|)`.
    A value above 1 means the recursion diverges.
    """
    eta = check_real("eta", eta, 0.0, low_open=True)
    beta = check_real("beta", beta, 0.0, 1.0, high_open=True)
    mu = check_real("mu", mu, 0.0, low_open=True)
    L = check_real("L", L, mu)
    out = 0.0
    for h in (mu, L):
        roots = np.roots([1.0, -(1.0 + beta - eta * h), beta])
        out = max(out, float(np.max(np.abs(roots))))
    return out


def best_gd_step(mu: float, L: float) -> float:
    r"""Gradient descent's best constant step on the quadratic, :math:`2/(L+\mu)`; its rate is
    :math:`(\kappa-1)/(\kappa+1)` with :math:`\kappa = L/\mu`.  The step is just under the stability limit :math:`2/L`."""
    mu = check_real("mu", mu, 0.0, low_open=True)
    L = check_real("L", L, mu)
    return 2.0 / (L + mu)


def polyak_parameters(mu: float, L: float) -> tuple[float, float]:
    r"""Polyak's heavy-ball parameters :math:`\eta = 4/(\sqrt L + \sqrt\mu)^2`,
    :math:`\beta = ((\sqrt\kappa - 1)/(\sqrt\kappa + 1))^2`; their rate is :math:`(\sqrt\kappa-1)/(\sqrt\kappa+1)`,
    the momentum counterpart of Theorem 2's :math:`\nu(\beta^*) = 1 - \Theta(1/\sqrt{\cdot})` against GD's :math:`1 - \Theta(1/\cdot)`."""
    mu = check_real("mu", mu, 0.0, low_open=True)
    L = check_real("L", L, mu)
    s = np.sqrt(L / mu)
    return float(4.0 / (np.sqrt(L) + np.sqrt(mu)) ** 2), float(((s - 1.0) / (s + 1.0)) ** 2)
