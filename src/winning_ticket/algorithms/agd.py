r"""Algorithm 1 as run in the paper's experiments: the plain numpy reference.

Heavy-ball accelerated gradient descent (AGD) on the full batch,

.. math::

    W^{(t+1)} = W^{(t)} - \eta\,\nabla \hat f_D(W^{(t)}) + \beta\,(W^{(t)} - W^{(t-1)}),
    \qquad W^{(-1)} := W^{(0)},

so the first step is a plain gradient step and :math:`\beta = 0` is gradient
descent (GD).  The rules of Section 5.1 of the paper:

* stop when :math:`\|W^{(t+1)} - W^{(t)}\|_F / \|W^{(t)}\|_F < 10^{-8}`
  or after 10000 iterations;
* a run succeeds when :math:`\|W - W^*\|_F / \|W^*\|_F < 10^{-4}`
  (the paper writes :math:`\|\cdot\|_2`; the spec reads it as Frobenius).

A run whose iterate becomes non-finite, or whose relative error exceeds
:data:`DIVERGENCE_ERROR`, is stopped and recorded as *diverged* (a failure);
its returned ``W`` is the last finite iterate.

This loop is the teaching reference: one problem, one run, readable.
:func:`winning_ticket.algorithms.engine.run_agd_batched` runs many at once and is tested
against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ..experiments.validation import check_array, check_int, check_real
from .risk import gradient

STOP_TOL = 1e-8
"""Relative-change threshold of the stopping rule."""
ITERATION_CAP = 10_000
"""Iteration cap of the paper's experiments (the default ``max_iter``)."""
SUCCESS_TOL = 1e-4
"""A run succeeds when its final relative error is below this."""
DIVERGENCE_ERROR = 1e6
"""A run whose relative error exceeds this is stopped as diverged."""


class RunStatus(IntEnum):
    """How an AGD run ended; ``label`` is the name stored in result tables."""

    RUNNING = 0
    """Not stopped yet (only seen inside the engine)."""
    CONVERGED = 1
    """Stopped by the relative-change rule ``||W_{t+1} - W_t|| / ||W_t|| < tol``."""
    MAX_ITER = 2
    """Hit the iteration cap ``max_iter``."""
    DIVERGED = 3
    """The relative error exceeded ``DIVERGENCE_ERROR`` or became non-finite."""
    EARLY_SUCCESS = 4
    """Stopped early as a success (engine option ``success_stop``)."""

    @property
    def label(self) -> str:
        return self.name.lower()


STATUS_NAMES = tuple(s.label for s in RunStatus)
"""The labels of :class:`RunStatus`, indexed by code."""


def relative_error(W: np.ndarray, w_star: np.ndarray) -> float:
    """:math:`\\|W - W^*\\|_F / \\|W^*\\|_F`."""
    return float(np.linalg.norm(W - w_star) / np.linalg.norm(w_star))


def check_agd_params(eta: float, beta: float, max_iter: int, tol: float) -> tuple[float, float, int, float]:
    """Validate AGD hyper-parameters; return them as plain numbers."""
    return (
        check_real("eta", eta, 0.0, low_open=True),
        check_real("beta", beta, 0.0, 1.0, high_open=True),
        check_int("max_iter", max_iter, 1),
        check_real("tol", tol, 0.0),
    )


def check_mask(mask, shape: tuple[int, ...]) -> np.ndarray:
    """A binary mask of the given shape as a float64 array of 0s and 1s, or a ValueError."""
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"mask must have shape {tuple(shape)}, got {m.shape}")
    if not np.all((m == 0) | (m == 1)):
        raise ValueError("mask entries must be 0 or 1")
    return m.astype(np.float64)


@dataclass
class AGDResult:
    """Outcome of one AGD run.

    ``rel_error[t]`` is the relative error of :math:`W^{(t)}`, for
    ``t = 0..iterations``.
    """

    W: np.ndarray
    iterations: int
    rel_error: np.ndarray
    status: int

    @property
    def status_name(self) -> str:
        return RunStatus(self.status).label

    @property
    def final_error(self) -> float:
        return float(self.rel_error[-1])

    @property
    def success(self) -> bool:
        return self.status != RunStatus.DIVERGED and self.final_error < SUCCESS_TOL


def run_agd(
    Xs: np.ndarray,
    y: np.ndarray,
    w_star: np.ndarray,
    W0: np.ndarray,
    eta: float = 0.5,
    beta: float = 0.2,
    max_iter: int = ITERATION_CAP,
    tol: float = STOP_TOL,
    mask: np.ndarray | None = None,
) -> AGDResult:
    """Run full-batch AGD from ``W0`` on one problem (``Xs`` is ``(K, N, r)``).

    With a binary ``mask`` (shape ``(r, K)``) this is AGD on the pruned problem (4) of the
    paper: the gradient is multiplied entry-wise by the mask, so weights that start at zero
    where the mask is 0 stay exactly zero (``W0`` must be zero there).
    """
    eta, beta, max_iter, tol = check_agd_params(eta, beta, max_iter, tol)
    if np.ndim(Xs) != 3:
        raise ValueError(f"Xs must have shape (K, N, r), got {np.shape(Xs)}")
    Xs = check_array("Xs", Xs, (None, None, None))
    K, N, r = Xs.shape
    y = check_array("y", y, (N,))
    w_star = check_array("w_star", w_star, (r, K))
    W = check_array("W0", W0, (r, K)).copy()
    M = None
    if mask is not None:
        M = check_mask(mask, (r, K))
        if np.any(W[M == 0] != 0):
            raise ValueError("W0 must be zero wherever mask is 0")

    W_prev = W.copy()
    history = [relative_error(W, w_star)]
    status = RunStatus.MAX_ITER
    # [algorithm-1] the loop of Algorithm 1, shown in the book's introduction
    for _ in range(max_iter):
        G = gradient(Xs, y, W)
        if M is not None:
            G = G * M
        W_next = W - eta * G + beta * (W - W_prev)
        err = relative_error(W_next, w_star) if np.all(np.isfinite(W_next)) else np.inf
        if not err <= DIVERGENCE_ERROR:
            status = RunStatus.DIVERGED
            break
        change = np.linalg.norm(W_next - W) / np.linalg.norm(W)
        W_prev, W = W, W_next
        history.append(err)
        if change < tol:
            status = RunStatus.CONVERGED
            break
    # [/algorithm-1]
    return AGDResult(W=W, iterations=len(history) - 1, rel_error=np.asarray(history), status=status)
