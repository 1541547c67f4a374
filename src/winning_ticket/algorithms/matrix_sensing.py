r"""Greedy pruning with group Lasso for matrix sensing (Rajaraman et al., NeurIPS 2023).

Ground truth :math:`M^* = U^*U^{*\top}` (rank :math:`r`, :math:`U^* \in \mathbb R^{d\times r}`); measurements
:math:`y_i = \langle A_i, M^*\rangle + \varepsilon_i`, :math:`\varepsilon_i \sim N(0, \sigma^2)`.  The model is an
over-parameterized factor :math:`U \in \mathbb R^{d\times k}`, :math:`k \gg r`, predicting
:math:`\langle A, UU^\top\rangle`; its *groups* are the :math:`k` columns :math:`u_j`.

* Empirical loss :math:`L(U) = \frac1n\sum_i(\langle A_i, UU^\top\rangle - y_i)^2`, gradient
  :math:`\frac4n\sum_i \mathrm{res}_i A_iU` for symmetric :math:`A_i`.
* Sensing (:func:`make_sensing_problem`): ``"gaussian"``, :math:`A_i = (G_i + G_i^\top)/2` with
  Gaussian :math:`G_i`, so that :math:`\langle A_i, \Delta\rangle \sim N(0, \|\Delta\|_F^2)` for symmetric
  :math:`\Delta` and the population loss is :math:`\|UU^\top - M^*\|_F^2 + \sigma^2`; or ``"rank_one"``,
  :math:`A_i = x_ix_i^\top` with :math:`x_i \sim N(0, I_d)`: the two-layer network with quadratic
  activations :math:`f_U(x) = \|U^\top x\|^2`, whose population loss is
  :math:`2\|\Delta\|_F^2 + (\mathrm{tr}\,\Delta)^2 + \sigma^2` (the :math:`A_i` are never formed).
* Smooth group Lasso :math:`R_\beta(U) = \sum_j h_\beta(\|u_j\|)`, pluggable (:data:`SMOOTHINGS`):
  ``"sqrt"`` :math:`h = \sqrt{\|u\|^2 + \beta}` (default) or ``"ratio"`` :math:`h = \|u\|^2/\sqrt{\|u\|^2+\beta}`.

Algorithm 1 (:func:`greedy_pruning`): (1) gradient descent on :math:`L + \lambda R_\beta`;
(2) keep the columns with :math:`\|u_j\| > \tau` (default :math:`\tau = 2\sqrt\beta`); (3) fine-tune the kept
columns by gradient descent on :math:`L` alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..experiments.validation import check_int, check_real
from ..experiments.seeding import SeedLike, numpy_rng

KINDS = ("gaussian", "rank_one")


def _rng(seed: SeedLike) -> np.random.Generator:
    return numpy_rng(seed)


def ground_truth(d: int, r: int, seed: SeedLike, top: float = 1.0, bottom: float = 0.5) -> np.ndarray:
    r""":math:`U^* = Q\,\mathrm{diag}(\mathrm{linspace}(top, bottom, r))` with a random orthonormal :math:`Q` (``(d, r)``)."""
    d = check_int("d", d, 1)
    r = check_int("r", r, 1, d)
    Q, _ = np.linalg.qr(_rng(seed).standard_normal((d, r)))
    return Q * np.linspace(top, bottom, r)


@dataclass(eq=False)
class SensingProblem:
    """Measurements of :math:`M^* = U^*U^{*\\top}`: ``A (n, d, d)`` for Gaussian sensing or ``X (n, d)`` for rank one."""

    kind: str
    y: np.ndarray
    U_star: np.ndarray
    sigma: float
    A: np.ndarray | None = None
    X: np.ndarray | None = None

    @property
    def M_star(self) -> np.ndarray:
        return self.U_star @ self.U_star.T

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def d(self) -> int:
        return self.U_star.shape[0]

    def predict(self, U: np.ndarray) -> np.ndarray:
        r""":math:`\langle A_i, UU^\top\rangle` for every measurement."""
        if self.kind == "gaussian":
            return self.A.reshape(self.n, -1) @ (U @ U.T).ravel()
        return np.sum((self.X @ U) ** 2, axis=1)

    def loss(self, U: np.ndarray) -> float:
        """The empirical loss :math:`L(U)`."""
        return float(np.mean((self.predict(U) - self.y) ** 2))

    def gradient(self, U: np.ndarray) -> np.ndarray:
        r""":math:`\nabla L(U) = \frac4n\sum_i \mathrm{res}_i A_i U`."""
        res = self.predict(U) - self.y
        if self.kind == "gaussian":
            return 4.0 / self.n * (res @ self.A.reshape(self.n, -1)).reshape(self.d, self.d) @ U
        return 4.0 / self.n * self.X.T @ (res[:, None] * (self.X @ U))


def make_sensing_problem(n: int, U_star: np.ndarray, sigma: float, seed: SeedLike, kind: str = "gaussian") -> SensingProblem:
    """Draw ``n`` measurements (sensing matrices or inputs, then noise) from ``seed``."""
    n = check_int("n", n, 1)
    sigma = check_real("sigma", sigma, 0.0)
    if kind not in KINDS:
        raise ValueError(f"kind = {kind!r}; allowed: {', '.join(KINDS)}")
    rng = _rng(seed)
    d = U_star.shape[0]
    M = U_star @ U_star.T
    if kind == "gaussian":
        G = rng.standard_normal((n, d, d))
        A = (G + G.transpose(0, 2, 1)) / 2
        clean = np.einsum("nij,ij->n", A, M, optimize=True)
        return SensingProblem(kind, clean + sigma * rng.standard_normal(n), U_star, sigma, A=A)
    X = rng.standard_normal((n, d))
    clean = np.sum((X @ U_star) ** 2, axis=1)
    return SensingProblem(kind, clean + sigma * rng.standard_normal(n), U_star, sigma, X=X)


def population_loss(U: np.ndarray, M_star: np.ndarray, kind: str = "gaussian", sigma: float = 0.0) -> float:
    r"""Expected loss on a fresh measurement: :math:`\|\Delta\|_F^2 + \sigma^2` (Gaussian) or :math:`2\|\Delta\|_F^2 + (\mathrm{tr}\Delta)^2 + \sigma^2` (rank one)."""
    D = U @ U.T - M_star
    if kind == "gaussian":
        return float(np.sum(D**2) + sigma**2)
    return float(2 * np.sum(D**2) + np.trace(D) ** 2 + sigma**2)


def population_gradient(U: np.ndarray, M_star: np.ndarray, kind: str = "gaussian") -> np.ndarray:
    r"""Gradient of :func:`population_loss`: :math:`4\Delta U` or :math:`8\Delta U + 4\,\mathrm{tr}(\Delta)\,U`."""
    D = U @ U.T - M_star
    if kind == "gaussian":
        return 4 * D @ U
    return 8 * D @ U + 4 * np.trace(D) * U


def _sqrt_h(norms: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    s = np.sqrt(norms**2 + beta)
    return s, 1.0 / s  # value, dh/d||u|| divided by ||u||


def _ratio_h(norms: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    s = np.sqrt(norms**2 + beta)
    return norms**2 / s, (2 * s**2 - norms**2) / s**3


SMOOTHINGS: dict[str, Callable[[np.ndarray, float], tuple[np.ndarray, np.ndarray]]] = {
    "sqrt": _sqrt_h, "ratio": _ratio_h}
"""Smoothing forms :math:`h_\\beta`: each returns :math:`h(\\|u\\|)` and :math:`h'(\\|u\\|)/\\|u\\|` per column."""


def group_lasso(U: np.ndarray, beta: float, form: str = "sqrt") -> tuple[float, np.ndarray]:
    r"""Value and gradient of :math:`R_\beta(U) = \sum_j h_\beta(\|u_j\|)`; gradient column :math:`j` is :math:`h'(\|u_j\|)\,u_j/\|u_j\|`."""
    beta = check_real("beta", beta, 0.0, low_open=True)
    if form not in SMOOTHINGS:
        raise ValueError(f"form = {form!r}; allowed: {', '.join(SMOOTHINGS)}")
    value, scale = SMOOTHINGS[form](np.linalg.norm(U, axis=0), beta)
    return float(value.sum()), U * scale


@dataclass
class GDResult:
    U: np.ndarray
    steps: int
    status: str  # "done" or "diverged"
    history: list = field(default_factory=list)


def gradient_descent(grad: Callable[[np.ndarray], np.ndarray], U0: np.ndarray, eta: float, steps: int,
                     record: Callable[[np.ndarray], object] | None = None, record_every: int = 1) -> GDResult:
    """Plain gradient descent; a non-finite iterate stops the run as ``diverged`` (the last finite one is kept)."""
    eta = check_real("eta", eta, 0.0, low_open=True)
    steps = check_int("steps", steps, 0)
    U = np.array(U0, dtype=np.float64)
    hist = [record(U)] if record is not None else []
    for t in range(steps):
        nxt = U - eta * grad(U)
        if not np.all(np.isfinite(nxt)) or np.abs(nxt).max() > 1e6:
            return GDResult(U, t, "diverged", hist)
        U = nxt
        if record is not None and (t + 1) % record_every == 0:
            hist.append(record(U))
    return GDResult(U, steps, "done", hist)


def prune_columns(U: np.ndarray, tau: float) -> np.ndarray:
    """Boolean mask of the columns kept: exactly those with :math:`\\|u_j\\|_2 > \\tau`."""
    check_real("tau", tau, 0.0)
    return np.linalg.norm(U, axis=0) > tau


def fine_tune(problem: SensingProblem, U: np.ndarray, keep: np.ndarray, eta: float, steps: int,
              record_every: int = 1) -> GDResult:
    """Gradient descent on the unregularized loss over the kept columns only.

    Returns a full-width ``U`` whose pruned columns are exactly zero; ``history`` holds pairs
    (:math:`\\|UU^\\top - M^*\\|_F`, :math:`\\|\\nabla L(U)\\|_F`) every ``record_every`` steps.
    """
    M = problem.M_star
    if not np.any(keep):  # every column pruned: nothing to fine-tune, the model is U = 0
        return GDResult(np.zeros_like(U), 0, "nothing_kept", [])
    sub = gradient_descent(problem.gradient, U[:, keep], eta, steps,
                           record=lambda V: (float(np.linalg.norm(V @ V.T - M)), float(np.linalg.norm(problem.gradient(V)))),
                           record_every=record_every)
    full = np.zeros_like(U)
    full[:, keep] = sub.U
    return GDResult(full, sub.steps, sub.status, sub.history)


def column_norm_profile(U: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Fraction of columns whose norm is at least ``x`` times the largest, for each ``x`` (paper Fig. 1, left)."""
    norms = np.linalg.norm(U, axis=0)
    return np.array([(norms >= x * norms.max()).mean() for x in xs])


@dataclass
class PipelineResult:
    kept: int
    error_after_train: float
    error_after_prune: float
    error_after_fine_tune: float
    train_loss: float
    status: str
    fine_tune_history: list[tuple[float, float]]
    U: np.ndarray


def greedy_pruning(problem: SensingProblem, k: int, lam: float, beta: float, *, eta: float, train_steps: int,
                   fine_tune_steps: int, seed: SeedLike, tau: float | None = None, form: str = "sqrt",
                   init_scale: float | None = None, record_every: int = 10) -> PipelineResult:
    r"""Algorithm 1: group-Lasso training from :math:`U_0 \sim N(0, s^2)` (default :math:`s^2 = 1/d`), pruning at
    ``tau`` (default :math:`2\sqrt\beta`), fine-tuning.  Errors are :math:`\|UU^\top - M^*\|_F`."""
    k = check_int("k", k, 1)
    lam = check_real("lam", lam, 0.0)
    tau = 2 * np.sqrt(beta) if tau is None else tau
    d = problem.d
    scale = 1 / np.sqrt(d) if init_scale is None else init_scale
    U0 = _rng(seed).normal(0.0, scale, (d, k))
    M = problem.M_star

    def grad(U):
        return problem.gradient(U) + lam * group_lasso(U, beta, form)[1]

    trained = gradient_descent(grad, U0, eta, train_steps)
    keep = prune_columns(trained.U, tau)
    pruned = np.where(keep[None], trained.U, 0.0)
    tuned = fine_tune(problem, trained.U, keep, eta, fine_tune_steps, record_every)
    err = lambda U: float(np.linalg.norm(U @ U.T - M))  # noqa: E731
    status = ("diverged" if "diverged" in (trained.status, tuned.status)
              else "nothing_kept" if tuned.status == "nothing_kept" else "done")
    return PipelineResult(kept=int(keep.sum()), error_after_train=err(trained.U), error_after_prune=err(pruned),
                          error_after_fine_tune=err(tuned.U), train_loss=problem.loss(tuned.U), status=status,
                          fine_tune_history=tuned.history, U=tuned.U)
