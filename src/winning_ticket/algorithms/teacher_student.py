r"""The sparse teacher-student model of Section 2 of the paper.

Teacher (ground truth), one hidden layer of :math:`K` ReLU neurons whose
neuron :math:`j` reads only the inputs in :math:`\Omega_j \subset [d]`,
:math:`|\Omega_j| = r`, and a fixed output layer of weights :math:`1/K`:

.. math::

    y_n = \frac{1}{K}\sum_{j=1}^{K} \phi(w_j^{*\top} x_{n,\Omega_j}) + \xi_n
        =: g(x_n; W^*) + \xi_n, \qquad \phi(z) = \max(z, 0).

Data protocol of the paper's synthetic experiments (spec section 1.5):

* :math:`x_n \sim \mathcal N(0, I_d)`;
* each :math:`\Omega_j` holds :math:`r` indices drawn uniformly from :math:`[d]`
  without replacement, independently per neuron (neurons may share inputs),
  stored sorted;
* entries of :math:`W^* \in \mathbb R^{r\times K}` are i.i.d. Uniform[-0.5, 0.5];
* noise :math:`\xi_n \sim \mathcal N(0, \sigma^2)` with
  :math:`\sigma = \text{level}\cdot E_y`, where
  :math:`E_y = \sqrt{\tfrac1N \sum_n g(x_n; W^*)^2}` is the RMS of the noiseless
  training outputs.

In the paper's experiments the student uses the teacher's supports
(:math:`r = r^*`, :math:`W^* = \hat W^*`); :func:`make_problem` builds exactly
that.  Weights follow the paper's layout: ``W`` has shape ``(r, K)`` and its
column ``j`` is :math:`w_j`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

from ..experiments.seeding import SeedLike, numpy_rng
from ..experiments.validation import check_array, check_int, check_real

def sample_supports(d: int, K: int, r: int, rng: np.random.Generator) -> np.ndarray:
    """Draw the index sets :math:`\\Omega_1..\\Omega_K` as a sorted ``(K, r)`` int array."""
    d = check_int("d", d, 1)
    K = check_int("K", K, 1)
    r = check_int("r", r, 1, d)
    return np.stack([np.sort(rng.choice(d, size=r, replace=False)) for _ in range(K)])


def sample_disjoint_supports(d: int, K: int, r: int, rng: np.random.Generator) -> np.ndarray:
    r"""Draw pairwise disjoint index sets (no input shared by two neurons), sorted, ``(K, r)``.

    Needs :math:`Kr \le d`.  Used by the tensor-initialization chapter, where disjoint
    supports make the moments of :math:`\tilde x` exactly those of Zhong et al. (spec 3.4).
    """
    d = check_int("d", d, 1)
    K = check_int("K", K, 1)
    r = check_int("r", r, 1, d)
    if K * r > d:
        raise ValueError(f"disjoint supports need K*r <= d; got K = {K}, r = {r}, d = {d} (allowed: r <= {d // K})")
    return np.sort(rng.permutation(d)[: K * r].reshape(K, r), axis=1)


def teacher_output(X: np.ndarray, omega: np.ndarray, W: np.ndarray) -> np.ndarray:
    r"""Noiseless network output :math:`g(x_n; W) = \frac1K\sum_j \phi(w_j^\top x_{n,\Omega_j})`."""
    K = omega.shape[0]
    Z = np.einsum("knr,rk->nk", X[:, omega.T].transpose(2, 0, 1), W)
    return np.maximum(Z, 0.0).sum(axis=1) / K


@dataclass(eq=False)
class Problem:
    """One instance of the synthetic regression problem (teacher, data and supports).

    Attributes
    ----------
    X : (N, d) inputs.
    y : (N,) labels, noise included.
    omega : (K, r) sorted supports, row ``j`` is :math:`\\Omega_j`.
    w_star : (r, K) ground truth :math:`W^*`.
    noise_level : :math:`\\sigma / E_y`.
    E_y : RMS of the noiseless outputs.
    """

    X: np.ndarray
    y: np.ndarray
    omega: np.ndarray
    w_star: np.ndarray
    noise_level: float = 0.0
    E_y: float = field(default=float("nan"))

    def __post_init__(self) -> None:
        self.X = check_array("X", self.X, (None, None))
        N, d = self.X.shape
        self.y = check_array("y", self.y, (N,))
        omega = np.asarray(self.omega)
        if omega.ndim != 2 or not np.issubdtype(omega.dtype, np.integer):
            raise ValueError(f"omega must be a (K, r) integer array, got {omega.dtype} {omega.shape}")
        if omega.size and (omega.min() < 0 or omega.max() >= d):
            raise ValueError(f"omega entries must lie in 0 <= i < d = {d}")
        if any(len(set(row)) != len(row) for row in omega.tolist()):
            raise ValueError("omega rows must not repeat an index")
        self.omega = omega
        K, r = omega.shape
        self.w_star = check_array("w_star", self.w_star, (r, K))
        if np.isnan(self.E_y):
            self.E_y = float(np.sqrt(np.mean(teacher_output(self.X, omega, self.w_star) ** 2)))

    @property
    def N(self) -> int:
        return self.X.shape[0]

    @property
    def d(self) -> int:
        return self.X.shape[1]

    @property
    def K(self) -> int:
        return self.omega.shape[0]

    @property
    def r(self) -> int:
        return self.omega.shape[1]

    @property
    def sigma(self) -> float:
        """Noise standard deviation :math:`\\sigma = \\text{level}\\cdot E_y`."""
        return self.noise_level * self.E_y

    def sub_inputs(self) -> np.ndarray:
        """Per-neuron inputs :math:`x_{n,\\Omega_j}` as a contiguous ``(K, N, r)`` array."""
        return np.ascontiguousarray(self.X[:, self.omega].transpose(1, 0, 2))


def make_problem(
    N: int,
    d: int,
    K: int,
    r: int,
    noise_level: float = 0.0,
    seed: SeedLike = 0,
    disjoint: bool = False,
) -> Problem:
    r"""Draw one problem of the paper's synthetic protocol from its own seed.

    The draws happen in a fixed order (supports, :math:`W^*`, inputs, noise) from
    ``numpy.random.default_rng(seed)``, so the same seed always gives the same
    problem.  ``disjoint=True`` draws pairwise disjoint supports
    (:func:`sample_disjoint_supports`, needs :math:`Kr \le d`) instead of the paper's
    independent ones.
    """
    N = check_int("N", N, 1)
    d = check_int("d", d, 1)
    K = check_int("K", K, 1)
    r = check_int("r", r, 1, d)
    noise_level = check_real("noise_level", noise_level, 0.0)
    rng = numpy_rng(seed)
    omega = sample_disjoint_supports(d, K, r, rng) if disjoint else sample_supports(d, K, r, rng)
    w_star = rng.uniform(-0.5, 0.5, size=(r, K))
    X = rng.standard_normal((N, d))
    clean = teacher_output(X, omega, w_star)
    E_y = float(np.sqrt(np.mean(clean**2)))
    y = clean + noise_level * E_y * rng.standard_normal(N)
    return Problem(X=X, y=y, omega=omega, w_star=w_star, noise_level=noise_level, E_y=E_y)


def dense_student(problem: Problem) -> Problem:
    r"""The same data seen by the dense student (:math:`r = d`, every :math:`\Omega_j = [d]`).

    Its ``w_star`` is the zero-padded teacher :math:`\tilde W^* \in \mathbb R^{d\times K}`
    (column :math:`j` holds :math:`w_j^*` at the positions :math:`\Omega_j` and zeros elsewhere),
    so the dense network with weights :math:`\tilde W^*` computes exactly the teacher.
    """
    d, K = problem.d, problem.K
    padded = np.zeros((d, K))
    for j in range(K):
        padded[problem.omega[j], j] = problem.w_star[:, j]
    return Problem(X=problem.X, y=problem.y, omega=np.tile(np.arange(d), (K, 1)), w_star=padded,
                   noise_level=problem.noise_level, E_y=problem.E_y)


def initial_point(w_star: np.ndarray, lam: float, seed: SeedLike) -> np.ndarray:
    r"""A start at exact relative distance ``lam`` from :math:`W^*` in a random direction.

    :math:`W^{(0)} = W^* + \lambda \|W^*\|_F\, \Delta / \|\Delta\|_F` with Gaussian
    :math:`\Delta` (spec, ambiguity 2), so
    :math:`\|W^{(0)} - W^*\|_F / \|W^*\|_F = \lambda` exactly.
    """
    w_star = check_array("w_star", w_star, (None, None))
    lam = check_real("lam", lam, 0.0)
    rng = numpy_rng(seed)
    delta = rng.standard_normal(w_star.shape)
    return w_star + lam * np.linalg.norm(w_star) * delta / np.linalg.norm(delta)


def starts_along(w_star: np.ndarray, lams, seed: SeedLike) -> np.ndarray:
    r"""Starts at relative distances ``lams`` from :math:`W^*` along one random direction.

    Returns ``(len(lams), r, K)``; entry ``i`` is
    :math:`W^* + \lambda_i \|W^*\|_F\,\Delta/\|\Delta\|_F` with the same Gaussian :math:`\Delta`
    for every :math:`\lambda_i` (so a grid of distances varies one thing at a time).
    """
    lams = [check_real("lam", lam, 0.0) for lam in np.atleast_1d(lams)]
    return np.stack([initial_point(w_star, lam, seed) for lam in lams])
