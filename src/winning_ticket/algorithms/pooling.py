r"""Compiled CPU kernels of the LeNet-5 trainer (:mod:`~winning_ticket.algorithms.stacked_lenet`):
2x2 max pooling followed by ReLU, forward and backward, in one pass each (numba).

``F.max_pool2d`` followed by ``torch.relu`` takes about 2 ms forward and backward on a 60-image
batch of LeNet-5's first layer on the CPU (a slow path of this build).  These loops do both in one
pass.  They reproduce torch exactly: a window is scanned in row-major order and a later entry wins
only if it is greater (or NaN), as in ``max_pool2d``; the ReLU's gradient is blocked where its
output is at most 0 (a NaN passes, as in torch).  The pooling windows do not overlap, so the
backward pass adds each gradient to exactly one input and the result does not depend on any
order of summation.  Kept apart from :mod:`~winning_ticket.algorithms.kernels` so that the engine's
chapters do not depend on this code.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a pinned dependency; without it stacked_lenet falls back to the torch operations
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None


def available() -> bool:
    """Whether the kernels can run here (numba imports)."""
    return numba is not None


def _pool_relu_forward(x, out, idx):  # pragma: no cover - compiled by numba, tested through the wrapper
    P, H, W = x.shape
    for p in range(P):
        for i in range(H // 2):
            for j in range(W // 2):
                # max_pool2d's scan: row-major in the window, a later entry wins only if greater (or NaN)
                m = x[p, 2 * i, 2 * j]
                k = (2 * i) * W + 2 * j
                for di in range(2):
                    for dj in range(2):
                        v = x[p, 2 * i + di, 2 * j + dj]
                        if v > m or v != v:
                            m = v
                            k = (2 * i + di) * W + 2 * j + dj
                if m > 0.0 or m != m:  # ReLU; its gradient is blocked where the output is <= 0 (not NaN)
                    out[p, i, j] = m
                    idx[p, i, j] = k
                else:
                    out[p, i, j] = 0.0
                    idx[p, i, j] = -1
    return out


def _pool_relu_backward(g, idx, out):  # pragma: no cover - compiled by numba, tested through the wrapper
    P, H2, W2 = g.shape
    W = out.shape[2]
    out[:] = 0.0
    for p in range(P):
        for i in range(H2):
            for j in range(W2):
                k = idx[p, i, j]
                if k >= 0:
                    out[p, k // W, k % W] += g[p, i, j]
    return out


_pool_compiled: dict = {}


def _pool_kernel(name: str):
    if numba is None:
        raise RuntimeError("the pooling kernel needs numba (pip install -r requirements-dev.txt -c constraints.txt)")
    if name not in _pool_compiled:
        fn = {"forward": _pool_relu_forward, "backward": _pool_relu_backward}[name]
        _pool_compiled[name] = numba.njit(boundscheck=False, cache=True, nogil=True)(fn)
    return _pool_compiled[name]


def pool_relu_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``relu(max_pool2d(x, 2))`` of a C-contiguous float32 ``(P, H, W)`` array (even ``H``, ``W``)
    and, per output, the flat index in its ``H x W`` plane of the entry its gradient goes to
    (``max_pool2d``'s choice among ties), or -1 where the ReLU blocks it."""
    if x.dtype != np.float32 or x.ndim != 3 or not x.flags.c_contiguous or x.shape[1] % 2 or x.shape[2] % 2:
        raise ValueError(f"x must be a C-contiguous float32 (P, H, W) array with even H and W, got {x.dtype} {x.shape}")
    P, H, W = x.shape
    out = np.empty((P, H // 2, W // 2), dtype=np.float32)
    idx = np.empty((P, H // 2, W // 2), dtype=np.int32)
    _pool_kernel("forward")(x, out, idx)
    return out, idx


def pool_relu_backward(g: np.ndarray, idx: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The gradient with respect to the input of :func:`pool_relu_forward`, from the output's ``g``."""
    g = np.ascontiguousarray(g, dtype=np.float32)
    if g.shape != idx.shape or len(shape) != 3 or g.shape != (shape[0], shape[1] // 2, shape[2] // 2):
        raise ValueError(f"g {g.shape}, idx {idx.shape} and input shape {shape} do not match")
    return _pool_kernel("backward")(g, idx, np.empty(shape, dtype=np.float32))
