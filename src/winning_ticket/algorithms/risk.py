r"""Empirical risk (2), its gradient and its Hessian: the plain numpy reference.

With :math:`z_{nj} = w_j^\top x_{n,\Omega_j}`,
:math:`\hat y_n = \frac1K \sum_j \phi(z_{nj})` and :math:`e_n = \hat y_n - y_n`,

.. math::

    \hat f_D(W) = \frac{1}{2N}\sum_{n=1}^{N} e_n^2 ,\qquad
    \nabla_{w_j}\hat f_D = \frac{1}{NK}\sum_n e_n\,\mathbb 1\{z_{nj}>0\}\,x_{n,\Omega_j},

and, almost everywhere (the :math:`\phi''` term vanishes), the
:math:`(rK)\times(rK)` Hessian with :math:`r\times r` blocks

.. math::

    [\nabla^2 \hat f_D]_{jl} = \frac{1}{NK^2}\sum_n
        \mathbb 1\{z_{nj}>0\}\mathbb 1\{z_{nl}>0\}\, x_{n,\Omega_j} x_{n,\Omega_l}^\top .

Arrays: ``Xs`` holds the per-neuron inputs :math:`x_{n,\Omega_j}` as ``(K, N, r)``
(see :meth:`winning_ticket.algorithms.teacher_student.Problem.sub_inputs`), ``W`` is ``(r, K)`` and the
Hessian is indexed by ``vec(W)`` in column order (:math:`w_1` first, then :math:`w_2`, ...).
These functions favour clarity over speed; :mod:`winning_ticket.algorithms.engine` is the
fast batched version and the tests check that both agree.
"""

from __future__ import annotations

import numpy as np


def preactivations(Xs: np.ndarray, W: np.ndarray) -> np.ndarray:
    """:math:`Z_{nj} = w_j^\\top x_{n,\\Omega_j}` as an ``(N, K)`` array."""
    return np.einsum("knr,rk->nk", Xs, W)


def residuals(Xs: np.ndarray, y: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(Z, e)``: pre-activations and residuals :math:`e = \\hat y - y`."""
    K = Xs.shape[0]
    Z = preactivations(Xs, W)
    return Z, np.maximum(Z, 0.0).sum(axis=1) / K - y


def risk(Xs: np.ndarray, y: np.ndarray, W: np.ndarray) -> float:
    """Empirical risk (2): :math:`\\frac{1}{2N}\\sum_n e_n^2`."""
    _, e = residuals(Xs, y, W)
    return float(0.5 * np.mean(e**2))


def gradient(Xs: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Gradient of the empirical risk with respect to ``W``, shape ``(r, K)``."""
    K, N, _ = Xs.shape
    Z, e = residuals(Xs, y, W)
    G = np.empty_like(W)
    for j in range(K):
        G[:, j] = Xs[j].T @ (e * (Z[:, j] > 0)) / (N * K)
    return G


def hessian(Xs: np.ndarray, W: np.ndarray) -> np.ndarray:
    """The ``(rK, rK)`` Hessian of the empirical risk at ``W`` (defined almost everywhere)."""
    K, N, r = Xs.shape
    active = preactivations(Xs, W) > 0  # (N, K)
    H = np.empty((r * K, r * K))
    for j in range(K):
        for l in range(K):
            both = (active[:, j] & active[:, l]).astype(float)
            H[j * r : (j + 1) * r, l * r : (l + 1) * r] = (Xs[j].T * both) @ Xs[l] / (N * K**2)
    return H
