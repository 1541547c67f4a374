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
   :math:`\approx\sum_j \lambda_j (V^\top c_j)^{\otimes 3}`; Jennrich's simultaneous
   diagonalization (:func:`jennrich`) recovers unit vectors :math:`\hat u_j \propto \pm V^\top c_j`;
3. magnitudes and signs: the least-squares fit :math:`\hat M_1 \approx \sum_j z_j V\hat u_j`
   gives :math:`c_j = 2K z_j V\hat u_j` with its sign;
4. un-mixing and assignment: the recovered components carry no neuron labels, so every
   assignment :math:`\pi` of components to neurons is tried and
   :math:`w_j = A_j^{-1} c_{\pi(j)}` with the lowest empirical risk is kept.  For disjoint supports
   :math:`A_j = I/\sqrt K`, and :math:`w_j = 2K^{3/2} z_j V\hat u_j` as in Zhong et al.

Labels are centred first, which leaves every Hermite moment unchanged (each Hermite tensor
has mean zero) and removes most of their variance.
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

    For :math:`T pprox \sum_j\lambda_j u_j^{\otimes 3}` with orthonormal :math:`u_j`
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


@dataclass
class TensorInitResult:
    """Output of :func:`tensor_initialization`.

    ``W0`` is the initialization ``(r, K)``; ``V`` the estimated ``(r, K)`` subspace;
    ``components`` the recovered vectors :math:`c_j` (rows, before un-mixing and assignment);
    ``permutation[j]`` the component given to neuron ``j``; ``cp_residual`` the relative
    residual of the tensor decomposition.
    """

    W0: np.ndarray
    V: np.ndarray
    components: np.ndarray
    permutation: tuple[int, ...]
    cp_residual: float


def subspace_error(V: np.ndarray, C: np.ndarray) -> float:
    r""":math:`\|P_V - P_C\|_2`, the distance between the span of ``V`` and the span of the columns of ``C``."""
    Q, _ = np.linalg.qr(C)
    return float(np.linalg.norm(V @ V.T - Q @ Q.T, 2))


def tensor_initialization(
    X: np.ndarray,
    y: np.ndarray,
    omega: np.ndarray,
    *,
    seed: SeedLike = 0,
    correct_overlaps: bool = True,
    method: str = "whitened",
    restarts: int = 20,
    assignment_samples: int = 50_000,
) -> TensorInitResult:
    r"""The tensor initialization of Lemma 1 on samples ``X (N, d)``, ``y (N,)`` and supports ``omega (K, r)``.

    ``correct_overlaps`` uses the known :math:`A_j` and :math:`\tilde\Sigma` of overlapping
    supports (spec 3.4); without it the method treats them as disjoint (:math:`A_j = I/\sqrt K`,
    :math:`\tilde\Sigma = I`), the plain recipe of the paper.  ``seed`` drives Jennrich's random
    contractions.  ``method`` chooses the decomposition of step 2: ``"whitened"`` (default)
    whitens :math:`\hat R` with :math:`(V^\top\hat M_2V)^{-1/2}`, which makes the components
    orthogonal, and runs the tensor power method (:func:`power_method`); ``"jennrich"``
    decomposes :math:`\hat R` directly (:func:`jennrich`).  The neuron assignment compares the empirical risk of all :math:`K!`
    assignments on the first ``assignment_samples`` samples of the third part.
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
    rng = numpy_rng(seed)

    if correct_overlaps:
        A, Sigma = support_matrices(omega)
    else:
        A, Sigma = np.broadcast_to(np.eye(r) / math.sqrt(K), (K, r, r)), np.eye(r)
    Xt = x_tilde(X, omega)
    yc = y - y.mean()
    p1, p2, p3 = (slice(i * N // 3, (i + 1) * N // 3) for i in range(3))

    # 1. subspace from M2 (and the contraction vector alpha from M1), first third
    M2 = estimate_m2(Xt[p1], yc[p1], Sigma)
    _, vecs = np.linalg.eigh((M2 + M2.T) / 2)
    V = vecs[:, ::-1][:, :K]
    alpha = estimate_m1(Xt[p1], yc[p1])
    alpha = alpha / np.linalg.norm(alpha)

    # 2. directions from M4(V, V, V, alpha), second third
    R = estimate_m4_projected(Xt[p2], yc[p2], V, alpha, Sigma)
    if method == "jennrich":
        U, _, res = jennrich(R, rng, restarts)
    elif method == "whitened":
        evals, evecs = np.linalg.eigh(V.T @ M2 @ V)
        evals = np.maximum(evals, evals.max() * 1e-12)
        Wh = evecs @ np.diag(evals**-0.5) @ evecs.T  # (V^T M2 V)^{-1/2}
        Uw, _, res = power_method(np.einsum("abc,ap,bq,cs->pqs", R, Wh, Wh, Wh), rng, restarts)
        U = evecs @ np.diag(evals**0.5) @ evecs.T @ Uw  # back to V-coordinates
        U = U / np.linalg.norm(U, axis=0)
    else:
        raise ValueError(f"method = {method!r}; allowed: 'whitened', 'jennrich'")

    # 3. magnitudes and signs from M1, third third: M1 = sum_j c_j / (2K)
    M1 = estimate_m1(Xt[p3], yc[p3])
    basis = V @ U
    z, *_ = np.linalg.lstsq(basis, M1, rcond=None)
    components = (2 * K * z * basis).T  # row j = c_j

    # 4. un-mixing w = A^{-1} c and neuron assignment by empirical risk
    Ainv = np.linalg.pinv(A)  # A_j can be singular when supports overlap: then the least-norm w_j
    sub = slice(p3.start, min(p3.stop, p3.start + assignment_samples))
    best = None
    for perm in itertools.permutations(range(K)):
        W = np.stack([Ainv[j] @ components[perm[j]] for j in range(K)], axis=1)
        risk = float(np.mean((teacher_output(X[sub], omega, W) - y[sub]) ** 2))
        if best is None or risk < best[0]:
            best = (risk, W, perm)
    return TensorInitResult(W0=best[1], V=V, components=components, permutation=tuple(best[2]), cp_residual=res)
