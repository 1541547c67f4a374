r"""The engine's fused CPU kernel: the gradient of the empirical risk (2) in one pass over the data.

The torch path of :mod:`winning_ticket.algorithms.engine` computes an iteration as two batched
matrix products, :math:`Z_j^\top = W_j^\top X_{\Omega_j}^\top` and then
:math:`G_j^\top \propto (e\odot\mathbb 1\{Z_j>0\})^\top X_{\Omega_j}`.  Each product reads all
of a problem's inputs, so an iteration reads them twice, and with the few runs per problem of
the chapters (``S = 2``: AGD and GD) both products are matrix-vector work limited by memory
traffic.  This kernel walks the samples once instead: for sample :math:`n` it loads
:math:`x_{n,\Omega_1},\dots,x_{n,\Omega_K}` (``K r`` numbers, a few kilobytes), computes every
run's pre-activations and residual from them and adds the sample's contribution

.. math::

    \nabla_{w_j}\hat f_D \mathrel{+}= \frac{1}{NK}\, e_n\,\mathbb 1\{z_{nj}>0\}\, x_{n,\Omega_j}

while they are still in the L1 cache (the formula is the gradient of
:mod:`winning_ticket.algorithms.risk`).  Memory traffic halves, and the loops compile to vector
instructions (numba).

Numerics.  The sums over :math:`i` (the dot products) are reassociated into vector lanes
(``fastmath`` reassociation and fused multiply-add, no other relaxation: NaN and infinity keep
their meaning, so a diverging run is still seen as one); the sums over samples run in sample
order.  The result therefore differs from the torch path's in the last bits (tested to
:math:`10^{-12}`), depends only on a problem's own data (never on the batch, the chunk or the
thread count: the kernel runs on one thread), and is the same on machines with the same vector
instruction set; an archive records which kernel made it.

Samples beyond ``n_valid[b]`` are never read, so a zero-padded batch of problems of different
``N`` gives bitwise the unpadded gradients.
"""

from __future__ import annotations

import numpy as np

_FASTMATH = {"reassoc", "contract"}

try:  # numba is a pinned dependency; without it the engine falls back to its torch path
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None


def available() -> bool:
    """Whether the fused kernel can run here (numba imports)."""
    return numba is not None


def _fused_gradient(XN, y, W, n_valid, G):  # pragma: no cover - compiled by numba, tested through the wrapper
    B, _, K, r = XN.shape
    S = W.shape[2]
    z = np.empty((K, S))
    c = np.empty((K, S))
    for b in range(B):
        N = n_valid[b]
        G[b] = 0.0
        for n in range(N):
            for j in range(K):  # pre-activations z_nj of every run
                for s in range(S):
                    acc = 0.0
                    for i in range(r):
                        acc += W[b, j, s, i] * XN[b, n, j, i]
                    z[j, s] = acc
            for s in range(S):  # residual e_n of run s, times the active indicators
                total = 0.0
                for j in range(K):
                    if z[j, s] > 0.0:
                        total += z[j, s]
                e = total / K - y[b, n]
                for j in range(K):
                    c[j, s] = e if z[j, s] > 0.0 else 0.0
            for j in range(K):  # the gradient contributions, while x_n is in the L1 cache
                for s in range(S):
                    cj = c[j, s]
                    if cj != 0.0:
                        for i in range(r):
                            G[b, j, s, i] += cj * XN[b, n, j, i]
        scale = 1.0 / (N * K)
        for j in range(K):
            for s in range(S):
                for i in range(r):
                    G[b, j, s, i] *= scale
    return G


_compiled = None


def fused_gradient(XN: np.ndarray, y: np.ndarray, W: np.ndarray, n_valid: np.ndarray,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Gradients of ``B`` problems' empirical risks at ``S`` weight settings each.

    * ``XN``: ``(B, N, K, r)`` float64, C-contiguous; ``XN[b, n, j]`` is :math:`x_{n,\\Omega_j}` of problem ``b``.
    * ``y``: ``(B, N)`` labels; ``W``: ``(B, K, S, r)`` weights (row ``s`` of ``W[b, j]`` is :math:`w_j` of run ``s``).
    * ``n_valid``: ``(B,)`` number of real samples of each problem (the rest is padding, never read).
    * ``out``: optional ``(B, K, S, r)`` array to write into.

    Returns the gradients in ``W``'s layout.
    """
    global _compiled
    if numba is None:
        raise RuntimeError("the fused kernel needs numba (pip install -r requirements-dev.txt -c constraints.txt)")
    if _compiled is None:
        _compiled = numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True, nogil=True)(_fused_gradient)
    for name, a, nd in (("XN", XN, 4), ("y", y, 2), ("W", W, 4)):
        if a.dtype != np.float64 or a.ndim != nd or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous float64 array with {nd} dimensions")
    B, N, K, r = XN.shape
    if y.shape != (B, N) or W.shape[:2] != (B, K) or W.shape[3] != r:
        raise ValueError(f"shapes do not match: XN {XN.shape}, y {y.shape}, W {W.shape}")
    n_valid = np.ascontiguousarray(n_valid, dtype=np.int64)
    if n_valid.shape != (B,) or np.any(n_valid < 1) or np.any(n_valid > N):
        raise ValueError(f"n_valid must hold B = {B} sample counts in [1, {N}]")
    if out is None:
        out = np.empty(W.shape)
    return _compiled(XN, y, W, n_valid, out)
