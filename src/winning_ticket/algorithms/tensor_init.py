r"""Tensor initialization (Lemma 1; the paper's Appendix A).

The paper's initializer is Algorithm 1 of Zhong et al. (2017) with the input
:math:`x` replaced by the position-wise sum of the neurons' sub-vectors,

.. math::

    \tilde x = \frac{1}{\sqrt K}\sum_{j=1}^K x_{\Omega_j} \in \mathbb R^r ,

which lowers the order of every moment tensor from :math:`d` to :math:`r` dimensions.
Write :math:`u_j = w_j^{*\top} x_{\Omega_j}` and :math:`c_j = \mathrm{Cov}(\tilde x, u_j) = A_j w_j^*`
with :math:`A_j = \mathbb E[\tilde x\, x_{\Omega_j}^\top]` and :math:`\tilde\Sigma = \mathbb E[\tilde x\tilde x^\top]`
(both known from the masks, :func:`support_matrices`).  Stein's identity gives the Hermite
moments of the label (spec 3.4; :func:`population_moments`):

.. math::

    M_1 = \mathbb E[y\tilde x] = \tfrac{1}{2K}\sum_j c_j,\qquad
    M_2 = \mathbb E[y(\tilde x\tilde x^\top - \tilde\Sigma)] = \tfrac1K\sum_j \frac{c_j c_j^\top}{\sqrt{2\pi}\,\|w_j^*\|},

    M_3 = 0,\qquad
    M_4 = \mathbb E[y\,\mathrm{He}_4(\tilde x)] = -\tfrac1K\sum_j \frac{c_j^{\otimes 4}}{\sqrt{2\pi}\,\|w_j^*\|^3}.

The third moment vanishes for ReLU (:math:`\phi(z) = z/2 + |z|/2` has no odd Hermite
coefficient above order one), so the decomposition step uses the fourth moment contracted
with one vector, :math:`M_4(I, I, I, \alpha)`, exactly as Zhong et al.'s order-selection rule
prescribes; implementing the paper's "third-order moment" literally would decompose pure noise.

The pipeline (:func:`tensor_initialization`), on three disjoint thirds of the samples:

1. subspace: the top-:math:`K` eigenvectors :math:`V` of :math:`\hat M_2` (PSD here, because
   the output weights :math:`1/K` are positive);
2. directions: :math:`\hat R = \hat M_4(V, V, V, \alpha)` is a :math:`K\times K\times K` tensor
   :math:`\approx\sum_j \lambda_j (V^\top c_j)^{\otimes 3}`; whitened by :math:`(V^\top\hat M_2V)^{-1/2}`
   its components are orthogonal and the tensor power method (or, unwhitened, Jennrich's
   simultaneous diagonalization) recovers unit vectors :math:`\hat u_j \propto \pm V^\top c_j`;
3. magnitudes and signs: the sizes from :math:`V^\top\hat M_2V = \sum_j t_j\hat u_j\hat u_j^\top`
   (non-negative least squares), the signs from :math:`\hat M_1`;
4. un-mixing and assignment: the recovered components carry no neuron labels, so every
   assignment :math:`\pi` of components to neurons is tried and
   :math:`w_j = A_j^{-1} c_{\pi(j)}` with the lowest empirical risk is kept.  For disjoint supports
   :math:`A_j = I/\sqrt K`, and :math:`w_j = \sqrt K c_{\pi(j)}`;
5. calibration: the start is scaled by the factor that minimizes the held-out risk, and flagged
   when its directions are ill-conditioned or it predicts worse than :math:`W = 0`.

Labels are centred first, which leaves every Hermite moment unchanged (each Hermite tensor
has mean zero).

What limits the method (measured, see the Initialization chapter): the population pipeline is
exact (direction errors of :math:`10^{-8}`), but the fourth-order estimate is noisy: at
:math:`N = 3\cdot 10^5` the plain :math:`\hat R` had relative errors of 0.6 to 2.2 for
:math:`K, r \le 10`.  Its noisy directions come out nearly parallel, and solving
:math:`\hat M_1 = \sum_j z_jV\hat u_j` for the scales (Zhong et al.'s step 3) then divides by
the near-singular basis: relative errors of :math:`10^5` to :math:`10^7` (issue 18).  Three changes
make the method robust without changing what it estimates: labels minus their degree-1 and
degree-2 Hermite parts (the same expectation, 4 to 8 times less error in :math:`\hat R`),
sizes from :math:`\hat M_2` (bounded by its trace), and the moments of the inputs in the union of
the supports, where disjoint neurons stay orthogonal, instead of their sum :math:`\tilde x`
(with :math:`r = K` the summed components form a random square matrix with condition numbers
up to a few hundred).  The paper's recipe stays available (``reduction="sum"``,
``control_variate=False``, ``magnitudes="m1"``, ``calibrate=False``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..experiments.validation import check_array, check_int
from ..experiments.seeding import SeedLike, numpy_rng
from .teacher_student import teacher_output

SQRT_2PI = math.sqrt(2.0 * math.pi)
MAX_ASSIGNMENT_K = 7
"""Largest K for which every one of the K! neuron assignments is tried."""


# --- constants and population moments --------------------------------------------------------


def relu_hermite_constants(sigma: float) -> dict[str, float]:
    r"""Zhong et al.'s scalars for ReLU at :math:`\sigma = \|w\|` (spec 3.3).

    :math:`\gamma_j(\sigma) = \mathbb E_{z\sim N(0,1)}[\phi(\sigma z) z^j]` for :math:`j = 0..4`, and
    :math:`m_1 = \gamma_1`, :math:`m_2 = \gamma_2 - \gamma_0`, :math:`m_3 = \gamma_3 - 3\gamma_1`,
    :math:`m_4 = \gamma_4 + 3\gamma_0 - 6\gamma_2`; for ReLU :math:`m_3 = 0` exactly.
    """
    g = [sigma / SQRT_2PI, sigma / 2, 2 * sigma / SQRT_2PI, 3 * sigma / 2, 8 * sigma / SQRT_2PI]
    out = {f"gamma{j}": v for j, v in enumerate(g)}
    out.update(m1=g[1], m2=g[2] - g[0], m3=g[3] - 3 * g[1], m4=g[4] + 3 * g[0] - 6 * g[2])
    return out


def support_matrices(omega: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r""":math:`A_j = \mathbb E[\tilde x x_{\Omega_j}^\top]` (a ``(K, r, r)`` array) and :math:`\tilde\Sigma = \mathbb E[\tilde x\tilde x^\top]`.

    With :math:`(C_{lj})_{ab} = 1` iff :math:`\Omega_l[a] = \Omega_j[b]`:
    :math:`A_j = \frac{1}{\sqrt K}\sum_l C_{lj}` and :math:`\tilde\Sigma = \frac1K\sum_{l,l'} C_{ll'}`.
    Disjoint supports give :math:`A_j = I/\sqrt K` and :math:`\tilde\Sigma = I`.
    """
    omega = np.asarray(omega)
    K = omega.shape[0]
    C = (omega[:, None, :, None] == omega[None, :, None, :]).astype(np.float64)  # C[l, j, a, b]
    A = C.sum(axis=0) / math.sqrt(K)
    Sigma = C.sum(axis=(0, 1)) / K
    return A, Sigma


def x_tilde(X: np.ndarray, omega: np.ndarray) -> np.ndarray:
    r""":math:`\tilde x_n = \frac1{\sqrt K}\sum_j x_{n,\Omega_j}` for every sample, ``(N, r)``."""
    omega = np.asarray(omega)
    out = np.zeros((X.shape[0], omega.shape[1]))
    for row in omega:
        out += X[:, row]
    return out / math.sqrt(omega.shape[0])


def population_moments(w_star: np.ndarray, omega: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Closed forms of :math:`M_1`, :math:`M_2` and :math:`M_4` (``(r,)``, ``(r, r)``, ``(r, r, r, r)``)."""
    K = omega.shape[0]
    A, _ = support_matrices(omega)
    c = np.einsum("jab,bj->ja", A, w_star)  # row j is c_j
    norms = np.linalg.norm(w_star, axis=0)
    M1 = c.sum(axis=0) / (2 * K)
    M2 = np.einsum("j,ja,jb->ab", 1 / (SQRT_2PI * norms), c, c) / K
    M4 = -np.einsum("j,ja,jb,jc,jd->abcd", 1 / (SQRT_2PI * norms**3), c, c, c, c) / K
    return M1, M2, M4


# --- moment estimators -------------------------------------------------------------------------
# Sums over the samples use numpy's own einsum loops (optimize=False), not BLAS: a BLAS reduction
# over a long axis depends on the number of threads, and the decomposition step turns such
# last-bit differences into visibly different initializations.  This keeps the results
# identical whatever the thread count.


def estimate_m1(Xt: np.ndarray, y: np.ndarray) -> np.ndarray:
    r""":math:`\hat M_1 = \frac1n\sum_n y_n\tilde x_n`."""
    return np.einsum("na,n->a", Xt, y) / len(y)


def estimate_m2(Xt: np.ndarray, y: np.ndarray, Sigma: np.ndarray) -> np.ndarray:
    r""":math:`\hat M_2 = \frac1n\sum_n y_n(\tilde x_n\tilde x_n^\top - \tilde\Sigma)`."""
    n = len(y)
    return np.einsum("n,na,nb->ab", y, Xt, Xt) / n - y.mean() * Sigma


def _sym3(a: np.ndarray, B: np.ndarray) -> np.ndarray:
    """:math:`a\\otimes B` placed in the three ways a vector and a symmetric matrix fill three modes."""
    return (np.einsum("...p,...qs->...pqs", a, B) + np.einsum("...q,...ps->...pqs", a, B)
            + np.einsum("...s,...pq->...pqs", a, B))


def estimate_m4_projected(
    Xt: np.ndarray, y: np.ndarray, V: np.ndarray, alpha: np.ndarray, Sigma: np.ndarray, chunk: int = 65536
) -> np.ndarray:
    r""":math:`\hat R = \hat M_4(V, V, V, \alpha)`, a ``(k, k, k)`` tensor, without forming any :math:`r^4` array.

    With :math:`Z = V^\top\tilde x`, :math:`a = \alpha^\top\tilde x`, :math:`B = V^\top\tilde\Sigma V`
    and :math:`b = V^\top\tilde\Sigma\alpha`, the fourth Hermite tensor contracted with
    :math:`(V, V, V, \alpha)` is

    .. math:: a\,Z^{\otimes 3} - \mathrm{sym}_3(Z\otimes Z\otimes b) - a\,\mathrm{sym}_3(Z\otimes B) + \mathrm{sym}_3(b\otimes B).
    """
    B = V.T @ Sigma @ V
    b = V.T @ Sigma @ alpha
    k = V.shape[1]
    R = np.zeros((k, k, k))
    for s in range(0, len(y), chunk):
        X, w = Xt[s : s + chunk], y[s : s + chunk]
        Z, a = np.einsum("na,ap->np", X, V), np.einsum("na,a->n", X, alpha)
        wa = w * a
        R += np.einsum("n,np,nq,ns->pqs", wa, Z, Z, Z)
        ZZ = np.einsum("n,np,nq->pq", w, Z, Z)
        R -= (np.einsum("pq,s->pqs", ZZ, b) + np.einsum("ps,q->pqs", ZZ, b) + np.einsum("qs,p->pqs", ZZ, b))
        R -= _sym3(np.einsum("n,np->p", wa, Z), B)
        R += w.sum() * _sym3(b, B)
    return R / len(y)


def estimate_m4(Xt: np.ndarray, y: np.ndarray, Sigma: np.ndarray) -> np.ndarray:
    r"""The full :math:`\hat M_4 = \frac1n\sum_n y_n\,\mathrm{He}_4(\tilde x_n)` (``(r,)*4``; small ``r`` only, for tests).

    :math:`\mathrm{He}_4(x) = x^{\otimes 4} - \sum_{6} x\otimes x\otimes\Sigma + \sum_3 \Sigma\otimes\Sigma`
    (sums over the placements of :math:`\Sigma` among the four modes).
    """
    n = len(y)
    X4 = np.einsum("n,na,nb,nc,nd->abcd", y, Xt, Xt, Xt, Xt, optimize=True)
    X2 = np.einsum("n,na,nb->ab", y, Xt, Xt)
    S = Sigma
    six = sum(np.einsum(f"{p},{q}->abcd", X2, S) for p, q in
              (("ab", "cd"), ("ac", "bd"), ("ad", "bc"), ("bc", "ad"), ("bd", "ac"), ("cd", "ab")))
    three = np.einsum("ab,cd->abcd", S, S) + np.einsum("ac,bd->abcd", S, S) + np.einsum("ad,bc->abcd", S, S)
    return (X4 - six + y.sum() * three) / n


# --- decomposition --------------------------------------------------------------------------


def cp_residual(T: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, float]:
    r"""Least-squares weights :math:`\lambda` of :math:`T\approx\sum_j\lambda_j u_j^{\otimes 3}` and the relative residual."""
    k = U.shape[1]
    design = np.einsum("aj,bj,cj->abcj", U, U, U).reshape(-1, k)
    lam, *_ = np.linalg.lstsq(design, T.ravel(), rcond=None)
    return lam, float(np.linalg.norm(design @ lam - T.ravel()) / np.linalg.norm(T))


def jennrich(T: np.ndarray, rng: np.random.Generator, restarts: int = 20) -> tuple[np.ndarray, np.ndarray, float]:
    r"""Symmetric CP decomposition of a ``(k, k, k)`` tensor by Jennrich's method with restarts.

    For :math:`T = \sum_j\lambda_j u_j^{\otimes 3}` with linearly independent :math:`u_j`,
    :math:`T(I,I,a)\,T(I,I,b)^{-1} = U D_a D_b^{-1} U^{-1}`, whose eigenvectors are the
    :math:`u_j`.  Each restart draws :math:`a, b` at random; the draw whose unit vectors fit
    :math:`T` with the smallest least-squares residual is kept.  Returns ``U`` (unit columns),
    the weights :math:`\lambda` and the relative residual.
    """
    k = T.shape[0]
    best = None
    for _ in range(check_int("restarts", restarts, 1)):
        a, b = rng.standard_normal(k), rng.standard_normal(k)
        Ta, Tb = T @ a, T @ b
        try:
            vals, vecs = np.linalg.eig(Ta @ np.linalg.pinv(Tb))
        except np.linalg.LinAlgError:
            continue
        U = np.real(vecs)
        norms = np.linalg.norm(U, axis=0)
        if np.any(norms == 0) or not np.all(np.isfinite(U)):
            continue
        U = U / norms
        lam, res = cp_residual(T, U)
        if best is None or res < best[2]:
            best = (U, lam, res)
    if best is None:
        raise np.linalg.LinAlgError("Jennrich's method failed on every restart")
    return best


def power_method(
    T: np.ndarray, rng: np.random.Generator, restarts: int = 20, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray, float]:
    r"""Orthogonal symmetric CP decomposition by the robust tensor power method with deflation.

    For :math:`T \approx \sum_j\lambda_j u_j^{\otimes 3}` with orthonormal :math:`u_j`
    (Anandkumar et al., 2014): from each of ``restarts`` random unit vectors iterate
    :math:`u \leftarrow T(I, u, u)/\|T(I, u, u)\|`, keep the end point with the largest
    :math:`|T(u, u, u)|`, subtract :math:`\lambda u^{\otimes 3}` and repeat ``k`` times.
    Returns ``U`` (unit columns), :math:`\lambda` and the relative residual.
    """
    k = T.shape[0]
    restarts = check_int("restarts", restarts, 1)
    R = T.copy()
    cols = []
    for _ in range(k):
        best = None
        for _ in range(restarts):
            u = rng.standard_normal(k)
            u /= np.linalg.norm(u)
            for _ in range(iterations):
                v = np.einsum("abc,b,c->a", R, u, u)
                norm = np.linalg.norm(v)
                if norm == 0:
                    break
                u = v / norm
            value = float(np.einsum("abc,a,b,c->", R, u, u, u))
            if best is None or abs(value) > abs(best[1]):
                best = (u, value)
        u, value = best
        cols.append(u)
        R = R - value * np.einsum("a,b,c->abc", u, u, u)
    U = np.stack(cols, axis=1)
    lam, res = cp_residual(T, U)
    return U, lam, res


# --- the pipeline -------------------------------------------------------------------------------

REDUCTIONS = ("union", "sum", "auto")
MAGNITUDES = ("m2", "m1")
ILL_CONDITIONED = 1e3
"""Condition number of the recovered directions above which the decomposition is flagged: the
components are then nearly linearly dependent, and at least one of them is an artefact of noise."""

_CHUNK = 65536


class TensorInitWarning(UserWarning):
    """The tensor initialization returned a start it flags as unreliable (see ``TensorInitResult.flags``)."""


def reduced_inputs(X: np.ndarray, omega: np.ndarray, reduction: str, correct_overlaps: bool = True):
    r"""The features the moments are taken of, their covariance, and the un-mixing maps.

    Returns ``(Z, Sigma, unmix)`` with ``Z`` of shape ``(N, m)`` and ``unmix`` of shape ``(K, r, m)``,
    so that neuron :math:`j`'s weights are :math:`w_j = \mathrm{unmix}_j\,c_j` for the
    component :math:`c_j = \mathrm{Cov}(z, w_j^{*\top}x_{\Omega_j})`.

    * ``"sum"``: :math:`z = \tilde x \in\mathbb R^r` (the paper's reduction), :math:`c_j = A_jw_j^*`,
      un-mixing :math:`A_j^{+}`; ``correct_overlaps=False`` pretends the supports are disjoint.
      Only :math:`r\ge K` components fit into :math:`\mathbb R^r`.
    * ``"union"``: :math:`z = x_U`, the inputs in the union :math:`U` of the supports
      (:math:`m = |U|`, up to :math:`Kr`), :math:`c_j` = :math:`w_j^*` placed at its positions, and
      un-mixing reads neuron :math:`j`'s positions.  Needs more samples (the moments live in
      :math:`m \ge r` dimensions) but works for :math:`r < K`.
    """
    omega = np.asarray(omega)
    K, r = omega.shape
    if reduction == "sum":
        if correct_overlaps:
            A, Sigma = support_matrices(omega)
        else:
            A, Sigma = np.broadcast_to(np.eye(r) / math.sqrt(K), (K, r, r)), np.eye(r)
        return x_tilde(X, omega), Sigma, np.linalg.pinv(A)  # A_j is singular when a neuron repeats an input position
    if reduction == "union":
        union = np.unique(omega)
        index = np.searchsorted(union, omega)
        unmix = np.zeros((K, r, len(union)))
        unmix[np.arange(K)[:, None], np.arange(r)[None, :], index] = 1.0
        return X[:, union], np.eye(len(union)), unmix
    raise ValueError(f"reduction = {reduction!r}; allowed: 'sum', 'union'")


def population_components(w_star: np.ndarray, omega: np.ndarray, reduction: str) -> np.ndarray:
    r"""The targets :math:`c_j` (rows, ``(K, m)``) of the components in the chosen reduction."""
    omega = np.asarray(omega)
    if reduction == "sum":
        A, _ = support_matrices(omega)
        return np.einsum("jab,bj->ja", A, w_star)
    union = np.unique(omega)
    out = np.zeros((omega.shape[0], len(union)))
    for j in range(omega.shape[0]):
        out[j, np.searchsorted(union, omega[j])] = w_star[:, j]
    return out


def hermite_fit(Xu: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""The degree-1 and degree-2 Hermite coefficients of ``y`` in the standard Gaussian inputs ``Xu``.

    :math:`b = \mathbb E[yx]` and :math:`Q = \mathbb E[y(xx^\top - I)]`; the projection of
    :math:`y` on the polynomials of degree one and two is :math:`b^\top x + \tfrac12\langle Q, xx^\top - I\rangle`.
    """
    n = len(y)
    return (np.einsum("na,n->a", Xu, y) / n,
            np.einsum("n,na,nb->ab", y, Xu, Xu) / n - y.mean() * np.eye(Xu.shape[1]))


def hermite_part(Xu: np.ndarray, b: np.ndarray | None, Q: np.ndarray | None) -> np.ndarray:
    r""":math:`b^\top x_n + \tfrac12(x_n^\top Qx_n - \mathrm{tr}\,Q)` for every sample (either term may be ``None``)."""
    out = np.zeros(Xu.shape[0])
    for s in range(0, len(out), _CHUNK):
        X = Xu[s : s + _CHUNK]
        if b is not None:
            out[s : s + _CHUNK] += np.einsum("na,a->n", X, b)
        if Q is not None:
            out[s : s + _CHUNK] += 0.5 * (np.einsum("na,na->n", np.einsum("na,ab->nb", X, Q), X) - np.trace(Q))
    return out


@dataclass
class TensorInitResult:
    """Output of :func:`tensor_initialization`.

    ``W0`` is the initialization ``(r, K)`` (``scale`` times ``W_raw`` when calibrated);
    ``V`` the estimated ``(m, K)`` subspace of the reduced inputs; ``directions`` the recovered
    unit vectors :math:`b_c` (rows) and ``components`` the signed :math:`c_c = m_c b_c` (rows, in
    the decomposition's order); ``permutation[j]`` the component given to neuron ``j``;
    ``cp_residual`` the relative residual of the tensor decomposition; ``condition`` the condition
    number of the directions; ``risk`` and ``risk_zero`` the held-out empirical risks of ``W0`` and
    of :math:`W = 0`, ``risk_raw`` that of ``W_raw``; ``flags`` what the checks found:
    ``"ill-conditioned"`` (``condition`` above :data:`ILL_CONDITIONED`) and
    ``"worse-than-zero"`` (``risk_raw`` above ``risk_zero``).
    """

    W0: np.ndarray
    W_raw: np.ndarray
    V: np.ndarray
    directions: np.ndarray
    components: np.ndarray
    permutation: tuple[int, ...]
    cp_residual: float
    condition: float
    scale: float
    risk: float
    risk_raw: float
    risk_zero: float
    reduction: str
    flags: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """No check flagged the start."""
        return not self.flags


def subspace_error(V: np.ndarray, C: np.ndarray) -> float:
    r""":math:`\|P_V - P_C\|_2`, the distance between the span of ``V`` and the span of the columns of ``C``."""
    Q, _ = np.linalg.qr(C)
    return float(np.linalg.norm(V @ V.T - Q @ Q.T, 2))


def _signs(M1: np.ndarray, directions: np.ndarray, sizes: np.ndarray, K: int) -> np.ndarray:
    """The sign vector s minimising ||M1 - sum_c s_c sizes_c b_c / (2K)|| over all 2^K choices."""
    S = np.array(list(itertools.product((1.0, -1.0), repeat=len(sizes))))
    fit = (S * sizes) @ directions / (2 * K)
    return S[int(np.argmin(np.linalg.norm(fit - M1, axis=1)))]


def tensor_initialization(
    X: np.ndarray,
    y: np.ndarray,
    omega: np.ndarray,
    *,
    seed: SeedLike = 0,
    correct_overlaps: bool = True,
    method: str = "whitened",
    reduction: str = "union",
    control_variate: bool = True,
    magnitudes: str = "m2",
    calibrate: bool = True,
    restarts: int = 20,
    assignment_samples: int = 50_000,
    warn: bool = True,
) -> TensorInitResult:
    r"""The tensor initialization of Lemma 1 on samples ``X (N, d)``, ``y (N,)`` and supports ``omega (K, r)``.

    The choices, each with the paper's literal recipe available:

    * ``reduction``: ``"union"`` (default) takes the moments of the inputs in the union of the
      supports, ``"sum"`` those of the paper's :math:`\tilde x` (:func:`reduced_inputs`); ``"auto"``
      takes ``"sum"`` when :math:`r\ge K` and ``"union"`` otherwise (:math:`K` components do not
      fit into :math:`\mathbb R^r`).  The sum mixes the neurons' weight vectors into
      :math:`\mathbb R^r`, where they are no longer orthogonal (for :math:`r = K` they form a random
      square matrix, often badly conditioned); in the union, disjoint supports keep them
      orthogonal.  Measured at :math:`N = 3\cdot10^5`, :math:`K = 3`, :math:`r = 10` the sum's
      median error was 0.13 and the union's 0.03 (the Initialization chapter shows the grid).
    * ``correct_overlaps`` uses the known :math:`A_j` and :math:`\tilde\Sigma` of overlapping
      supports (spec 3.4); without it the ``"sum"`` reduction treats them as disjoint.
    * ``method`` decomposes :math:`\hat R` after whitening with :math:`(V^\top\hat M_2V)^{-1/2}`
      by the tensor power method (``"whitened"``) or directly by Jennrich's method (``"jennrich"``);
      ``seed`` drives their random starts.
    * ``control_variate`` (default on) subtracts from the labels their degree-1 and degree-2
      Hermite parts, fitted on the first third (:func:`hermite_fit`), before :math:`\hat M_4` and
      :math:`\hat M_1` are estimated.  Hermite polynomials of degree four are orthogonal to
      every polynomial of lower degree, so the expectation is unchanged; the variance falls by
      more than an order of magnitude (a ReLU's variance is 97% in its degree-0..2 parts).
    * ``magnitudes``: ``"m1"`` solves :math:`\hat M_1 = \sum_c z_c b_c` for all :math:`K` scales at
      once (Zhong et al.), which divides by the conditioning of the directions and explodes when
      the decomposition returns two nearly parallel ones; ``"m2"`` (default) fits the sizes
      :math:`|m_c|` to :math:`V^\top\hat M_2V = \sum_c t_c u_cu_c^\top` by non-negative least squares
      (bounded: :math:`\sum_c t_c = \mathrm{tr}\,V^\top\hat M_2 V`) and takes only the signs from
      :math:`\hat M_1`.
    * ``calibrate`` (default on) multiplies the start by the factor :math:`s\ge 0` that minimizes
      the held-out empirical risk; ReLU networks are positively homogeneous, so :math:`s` has a
      closed form and the result's risk is never above that of :math:`W = 0`.

    The neuron assignment compares the empirical risk of all :math:`K!` assignments on the first
    ``assignment_samples`` samples of the third part, which also give ``risk`` and ``scale``.  The
    result's ``flags`` say when the directions are ill-conditioned or the uncalibrated start is
    worse than :math:`W = 0`; with ``warn`` a :class:`TensorInitWarning` says so too.
    """
    X = check_array("X", X, (None, None))
    N = X.shape[0]
    y = check_array("y", y, (N,))
    omega = np.asarray(omega)
    K, r = omega.shape
    check_int("K", K, 1, MAX_ASSIGNMENT_K)
    if N < 3 * max(K, 2):
        raise ValueError(f"N = {N} is too small; the method splits the samples in three parts (N >= {3 * max(K, 2)})")
    check_int("assignment_samples", assignment_samples, 1)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction = {reduction!r}; allowed: {', '.join(map(repr, REDUCTIONS))}")
    if magnitudes not in MAGNITUDES:
        raise ValueError(f"magnitudes = {magnitudes!r}; allowed: {', '.join(map(repr, MAGNITUDES))}")
    if method not in ("whitened", "jennrich"):
        raise ValueError(f"method = {method!r}; allowed: 'whitened', 'jennrich'")
    if reduction == "auto":
        reduction = "sum" if r >= K else "union"
    Z, Sigma, unmix = reduced_inputs(X, omega, reduction, correct_overlaps)
    m = Z.shape[1]
    if m < K:
        raise ValueError(f"reduction = {reduction!r} gives {m} dimensions for K = {K} components; "
                         f"use reduction='union' or supports that cover at least K inputs")
    rng = numpy_rng(seed)
    yc = y - y.mean()
    p1, p2, p3 = (slice(i * N // 3, (i + 1) * N // 3) for i in range(3))

    # 0. control variate: the label's degree-1 and degree-2 Hermite parts, fitted on the first third
    if control_variate:
        union = np.unique(omega)
        b, Q = hermite_fit(X[p1][:, union], yc[p1])
        y2 = yc[p2] - hermite_part(X[p2][:, union], b, Q)
        y3 = yc[p3] - hermite_part(X[p3][:, union], None, Q)  # the degree-1 part is M1's signal
    else:
        y2, y3 = yc[p2], yc[p3]

    # 1. subspace from M2 (and the contraction vector alpha from M1), first third
    M2 = estimate_m2(Z[p1], yc[p1], Sigma)
    _, vecs = np.linalg.eigh((M2 + M2.T) / 2)
    V = vecs[:, ::-1][:, :K]
    alpha = estimate_m1(Z[p1], yc[p1])
    alpha = alpha / np.linalg.norm(alpha)

    # 2. directions from M4(V, V, V, alpha), second third
    R = estimate_m4_projected(Z[p2], y2, V, alpha, Sigma)
    P2 = V.T @ M2 @ V
    if method == "jennrich":
        U, _, res = jennrich(R, rng, restarts)
    else:
        evals, evecs = np.linalg.eigh((P2 + P2.T) / 2)
        evals = np.maximum(evals, evals.max() * 1e-12)
        Wh = evecs @ np.diag(evals**-0.5) @ evecs.T  # (V^T M2 V)^{-1/2}
        Uw, _, res = power_method(np.einsum("abc,ap,bq,cs->pqs", R, Wh, Wh, Wh), rng, restarts)
        U = evecs @ np.diag(evals**0.5) @ evecs.T @ Uw  # back to V-coordinates
    U = U / np.linalg.norm(U, axis=0)
    directions = (V @ U).T  # row c = b_c, a unit vector
    condition = float(np.linalg.cond(directions))

    # 3. magnitudes and signs, third third: M1 = sum_c c_c / (2K)
    M1 = estimate_m1(Z[p3], y3)
    if magnitudes == "m1":
        z, *_ = np.linalg.lstsq(directions.T, M1, rcond=None)
        signed = 2 * K * z  # c_c = signed_c b_c
        sizes, signs = np.abs(signed), np.sign(signed)
        t = None
    else:
        from scipy.optimize import nnls

        design = np.einsum("pc,qc->pqc", U, U).reshape(K * K, K)
        t, _ = nnls(design, P2.ravel())  # t_c = |m_c| / (K sqrt(2 pi) ||w_c||), see population_moments
        gain = np.linalg.norm(np.einsum("jam,cm->jca", unmix, directions), axis=2)  # ||unmix_j b_c||
        sizes = t * K * SQRT_2PI * gain.max(axis=0)
        signs = _signs(M1, directions, sizes, K)

    # 4. neuron assignment by empirical risk (every permutation)
    sub = slice(p3.start, min(p3.stop, p3.start + assignment_samples))
    Xs, ys = X[sub], y[sub]
    best = None
    for perm in itertools.permutations(range(K)):
        cols = []
        for j in range(K):
            c = perm[j]
            w = unmix[j] @ directions[c]
            size = sizes[c] if t is None else t[c] * K * SQRT_2PI * np.linalg.norm(w)
            cols.append(signs[c] * size * w)
        W = np.stack(cols, axis=1)
        risk = float(np.mean((teacher_output(Xs, omega, W) - ys) ** 2))
        if best is None or risk < best[0]:
            best = (risk, W, perm)
    risk_raw, W_raw, perm = best

    # 5. calibration along the ray (f(sW) = s f(W) for s >= 0) and the checks
    risk_zero = float(np.mean(ys**2))
    scale = 1.0
    if calibrate:
        f = teacher_output(Xs, omega, W_raw)
        ff = float(np.dot(f, f))
        scale = max(0.0, float(np.dot(f, ys)) / ff) if ff > 0 else 0.0
    W0 = scale * W_raw
    risk_final = float(np.mean((teacher_output(Xs, omega, W0) - ys) ** 2))
    flags = tuple(name for name, bad in (("ill-conditioned", condition > ILL_CONDITIONED),
                                         ("worse-than-zero", risk_raw > risk_zero)) if bad)
    if flags and warn:
        import warnings

        warnings.warn(f"tensor initialization flagged {', '.join(flags)} (condition {condition:.3g}, "
                      f"risk {risk_raw:.3g} against {risk_zero:.3g} for W = 0; calibrated scale {scale:.3g})",
                      TensorInitWarning, stacklevel=2)
    components = (signs * sizes)[:, None] * directions
    return TensorInitResult(W0=W0, W_raw=W_raw, V=V, directions=directions, components=components,
                            permutation=tuple(perm), cp_residual=res, condition=condition, scale=scale,
                            risk=risk_final, risk_raw=risk_raw, risk_zero=risk_zero, reduction=reduction,
                            flags=flags)


def step_errors(result: TensorInitResult, w_star: np.ndarray, omega: np.ndarray) -> dict[str, float]:
    r"""Each step's error against its population target (for diagnosis).

    ``subspace``: :math:`\|P_V - P_C\|_2`; ``directions``: the largest :math:`\sin\angle(b_c, c_j)`
    after the best matching of recovered to true components; ``sizes``: the largest relative
    error of :math:`|m_c|` against :math:`\|c_j\|` on that matching; ``signs``: the fraction of
    matched components whose sign agrees; ``raw`` and ``final``: relative errors of ``W_raw``
    and ``W0``.
    """
    from scipy.optimize import linear_sum_assignment

    C = population_components(w_star, omega, result.reduction)
    norms = np.linalg.norm(C, axis=1)
    cos = (C / norms[:, None]) @ result.directions.T
    rows, cols = linear_sum_assignment(-np.abs(cos))
    c = cos[rows, cols]
    sizes = np.linalg.norm(result.components, axis=1)[cols]
    along = np.einsum("ja,ja->j", result.components[cols], C[rows])
    ref = np.linalg.norm(w_star)
    return dict(subspace=subspace_error(result.V, C.T),
                directions=float(np.max(np.sqrt(np.maximum(0.0, 1 - c**2)))),
                sizes=float(np.max(np.abs(sizes - norms[rows]) / norms[rows])),
                signs=float(np.mean(along > 0)),
                raw=float(np.linalg.norm(result.W_raw - w_star) / ref),
                final=float(np.linalg.norm(result.W0 - w_star) / ref))
