r"""Batched engine: many independent AGD runs at once, in torch, on CPU or GPU.

It computes exactly what :mod:`winning_ticket.risk` and :mod:`winning_ticket.agd`
compute, for a batch of ``B`` problems with ``S`` runs per problem (runs of one
problem share its data: AGD and GD, several starting points, several step sizes).

Layout.  The per-neuron inputs of problem ``b`` are a contiguous ``(K, N, r)``
block, and the ``S`` runs of that problem are the columns of a ``(K, r, S)``
weight tensor, so one iteration is two batched matrix products per problem,

.. math::

    Z_{j} = X_{\Omega_j} W_{j} \in \mathbb R^{N\times S},\qquad
    G_{j} = \tfrac{1}{NK} X_{\Omega_j}^\top \big(e \odot \mathbb 1\{Z_j>0\}\big),

costing about :math:`4NrKS` flops.  With ``S = 1`` these are matrix-vector
products limited by memory traffic; every extra run that shares the data is
almost free, which is why the chapters run AGD and GD (and several starts) on
the same problem instance.

Scheduling.  Problems are processed in chunks small enough to stay in the CPU
cache (``max_chunk_bytes``; on a GPU the chunk is large).  A problem leaves its
chunk as soon as all its runs have stopped, so stragglers do not slow the rest.
Each run's arithmetic touches only its own problem, so the results do not
depend on the chunk size or on which other problems share the batch.

Public functions take and return weights in the paper's layout ``(..., r, K)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ._checks import check_int, check_real
from .agd import CONVERGED, DIVERGED, DIVERGENCE_ERROR, MAX_ITER, MAX_ITERATIONS, STATUS_NAMES, STOP_TOL, SUCCESS_TOL
from .model import Problem
from .progress import progress_bar

DTYPE = torch.float64


def default_device() -> torch.device:
    """``$WT_DEVICE`` if set, else CUDA when available, else the CPU."""
    name = os.environ.get("WT_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def stack_problems(problems: Sequence[Problem], device: torch.device | str | None = None, dtype=DTYPE):
    """Stack problems of equal shape into tensors ``Xs (B,K,N,r)``, ``y (B,N)``, ``w_star (B,r,K)``."""
    if not problems:
        raise ValueError("problems must not be empty")
    shape = (problems[0].N, problems[0].d, problems[0].K, problems[0].r)
    for p in problems:
        if (p.N, p.d, p.K, p.r) != shape:
            raise ValueError(f"all problems must share (N, d, K, r) = {shape}, got {(p.N, p.d, p.K, p.r)}")
    device = torch.device(device) if device is not None else default_device()
    Xs = torch.from_numpy(np.stack([p.sub_inputs() for p in problems])).to(device=device, dtype=dtype)
    y = torch.from_numpy(np.stack([p.y for p in problems])).to(device=device, dtype=dtype)
    w_star = torch.from_numpy(np.stack([p.w_star for p in problems])).to(device=device, dtype=dtype)
    return Xs, y, w_star


# --- risk, gradient and Hessian for a batch (paper layout) ---------------------------------


def _z(Xs: torch.Tensor, Wk: torch.Tensor) -> torch.Tensor:
    """Pre-activations ``(B,K,N,S)`` from inputs ``(B,K,N,r)`` and weights ``(B,K,r,S)``."""
    return torch.matmul(Xs, Wk)


def _residual(Z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Residuals ``e (B,N,S)`` of the network output :math:`\\frac1K\\sum_j\\phi(z_j)`."""
    return Z.clamp_min(0).mean(dim=1) - y.unsqueeze(-1)


def _grad(Xs: torch.Tensor, Z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Gradient ``(B,K,r,S)`` given pre-activations and residuals."""
    K, N = Xs.shape[1], Xs.shape[2]
    return torch.matmul(Xs.transpose(-1, -2), e.unsqueeze(1) * (Z > 0)) / (N * K)


def _to_k(W: torch.Tensor) -> torch.Tensor:
    """Paper layout ``(B,S,r,K)`` to engine layout ``(B,K,r,S)``."""
    return W.permute(0, 3, 2, 1)


def batched_risk(Xs: torch.Tensor, y: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Empirical risk (2) for weights ``W (B,S,r,K)``; returns ``(B,S)``."""
    e = _residual(_z(Xs, _to_k(W)), y)
    return 0.5 * (e**2).mean(dim=1)


def batched_gradient(Xs: torch.Tensor, y: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Gradient of the empirical risk for ``W (B,S,r,K)``; returns ``(B,S,r,K)``."""
    Z = _z(Xs, _to_k(W))
    return _grad(Xs, Z, _residual(Z, y)).permute(0, 3, 2, 1)


def batched_hessian(Xs: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """The ``(rK, rK)`` Hessians at ``W (B,S,r,K)``; returns ``(B,S,rK,rK)`` (column-major vec(W))."""
    B, K, N, r = Xs.shape
    active = (_z(Xs, _to_k(W)) > 0).to(Xs.dtype)  # (B,K,N,S)
    S = active.shape[-1]
    H = Xs.new_empty(B, S, K * r, K * r)
    for j in range(K):
        for l in range(j, K):
            both = active[:, j] * active[:, l]  # (B,N,S)
            block = torch.einsum("bnr,bns,bnq->bsrq", Xs[:, j], both, Xs[:, l]) / (N * K**2)
            H[:, :, j * r : (j + 1) * r, l * r : (l + 1) * r] = block
            H[:, :, l * r : (l + 1) * r, j * r : (j + 1) * r] = block.transpose(-1, -2)
    return H


# --- AGD for a batch --------------------------------------------------------------------------


@dataclass
class BatchResult:
    """Outcome of ``B x S`` AGD runs (``S`` runs per problem).

    ``rel_error[b, s, t]`` is the relative error after ``t`` iterations, NaN after the
    run stopped (``None`` when the history was not recorded).
    """

    W: np.ndarray  # (B, S, r, K)
    iterations: np.ndarray  # (B, S)
    status: np.ndarray  # (B, S), codes of agd.STATUS_NAMES
    final_error: np.ndarray  # (B, S)
    rel_error: np.ndarray | None  # (B, S, T+1)

    @property
    def success(self) -> np.ndarray:
        return (self.status != DIVERGED) & (self.final_error < SUCCESS_TOL)

    @property
    def status_names(self) -> np.ndarray:
        return np.asarray(STATUS_NAMES, dtype=object)[self.status]

    def flops(self, N: int, r: int, K: int) -> float:
        """Useful floating-point work done: 4 N r K per iteration of each run."""
        return float(4.0 * N * r * K * self.iterations.sum())


def _per_run(name: str, value, B: int, S: int) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (B, S)).copy() if np.ndim(value) < 2 else None
    if arr is None:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (B, S):
            raise ValueError(f"{name} must be a scalar, an (S,) or a (B, S) array; got shape {arr.shape}")
    return arr


def run_agd_batched(
    problems: Sequence[Problem],
    W0: np.ndarray,
    eta=0.5,
    beta=0.2,
    *,
    max_iter: int = MAX_ITER,
    tol: float = STOP_TOL,
    record_history: bool = True,
    device: torch.device | str | None = None,
    max_chunk_bytes: int | None = None,
    progress: bool | None = None,
) -> BatchResult:
    """Run AGD on ``B`` problems with ``S`` starting points each, all at once.

    Parameters
    ----------
    problems : ``B`` problems sharing ``(N, d, K, r)``.
    W0 : starting points, shape ``(B, S, r, K)``.
    eta, beta : step size and momentum; a scalar, one value per run column ``(S,)``
        or one per run ``(B, S)``.  ``beta = 0`` is GD.
    max_iter, tol : the iteration cap and the relative-change threshold of the stopping rule.
    record_history : keep the relative error of every iterate.
    device : torch device (default :func:`default_device`).
    max_chunk_bytes : how much problem data is in flight at once; default 32 MiB
        on the CPU (about the cache), 4 GiB on a GPU.
    progress : show a progress bar over problems (default: see :mod:`winning_ticket.progress`).
    """
    B = len(problems)
    if B == 0:
        raise ValueError("problems must not be empty")
    N, K, r = problems[0].N, problems[0].K, problems[0].r
    W0 = np.asarray(W0, dtype=np.float64)
    if W0.ndim != 4 or W0.shape[0] != B or W0.shape[2:] != (r, K):
        raise ValueError(f"W0 must have shape (B={B}, S, r={r}, K={K}), got {W0.shape}")
    if not np.all(np.isfinite(W0)):
        raise ValueError("W0 contains NaN or infinite entries")
    S = W0.shape[1]
    etas, betas = _per_run("eta", eta, B, S), _per_run("beta", beta, B, S)
    for e_, b_ in zip(etas.ravel(), betas.ravel()):
        check_real("eta", e_, 0.0, low_open=True)
        check_real("beta", b_, 0.0, 1.0, high_open=True)
    max_iter = check_int("max_iter", max_iter, 1)
    tol = check_real("tol", tol, 0.0)
    device = torch.device(device) if device is not None else default_device()
    if max_chunk_bytes is None:
        max_chunk_bytes = (4 << 30) if device.type == "cuda" else (32 << 20)
    per_problem = N * K * r * 8
    chunk = max(1, min(B, max_chunk_bytes // per_problem))

    out_W = np.empty((B, S, r, K))
    out_it = np.zeros((B, S), dtype=np.int64)
    out_status = np.zeros((B, S), dtype=np.int64)
    out_err = np.empty((B, S))
    hist = np.full((B, S, max_iter + 1), np.nan) if record_history else None
    with progress_bar(total=B, desc="AGD runs (problems)", enable=progress) as bar:
        for start in range(0, B, chunk):
            sl = slice(start, min(B, start + chunk))
            res = _run_chunk(
                problems[sl], W0[sl], etas[sl], betas[sl], max_iter, tol, record_history, device, bar
            )
            out_W[sl], out_it[sl], out_status[sl], out_err[sl] = res[:4]
            if hist is not None:
                hist[sl] = res[4]
    if hist is not None:
        hist = hist[:, :, : int(out_it.max()) + 1]
    return BatchResult(W=out_W, iterations=out_it, status=out_status, final_error=out_err, rel_error=hist)


def _run_chunk(problems, W0, etas, betas, max_iter, tol, record_history, device, bar):
    """AGD on one chunk of problems; finished problems leave the active set."""
    Xs, y, w_star = stack_problems(problems, device)
    b, K, N, r = Xs.shape
    S = W0.shape[1]
    as_t = lambda a: torch.as_tensor(a, dtype=DTYPE, device=device)  # noqa: E731
    W = _to_k(as_t(W0)).contiguous()  # (b,K,r,S)
    W_prev = W.clone()
    Ws = w_star.permute(0, 2, 1).unsqueeze(-1)  # (b,K,r,1)
    ws_norm = Ws.flatten(1).norm(dim=1).unsqueeze(1)  # (b,1)
    eta = as_t(etas).view(b, 1, 1, S)
    beta = as_t(betas).view(b, 1, 1, S)

    status = torch.zeros(b, S, dtype=torch.int64, device=device)
    iters = torch.zeros(b, S, dtype=torch.int64, device=device)
    err0 = (W - Ws).flatten(1, 2).norm(dim=1) / ws_norm
    hist = torch.full((b, S, max_iter + 1), float("nan"), dtype=DTYPE, device=device) if record_history else None
    if hist is not None:
        hist[:, :, 0] = err0
    final_W, final_err = W.clone(), err0.clone()

    rows = torch.arange(b, device=device)  # global index (within the chunk) of each active row
    check_every = 1 if device.type == "cpu" else 16
    for t in range(max_iter):
        Z = _z(Xs, W)
        G = _grad(Xs, Z, _residual(Z, y))
        W_next = W - eta * G + beta * (W - W_prev)
        err = (W_next - Ws).flatten(1, 2).norm(dim=1) / ws_norm  # (a,S)
        change = (W_next - W).flatten(1, 2).norm(dim=1) / W.flatten(1, 2).norm(dim=1)
        running = status[rows] == 0
        ok = running & (err <= DIVERGENCE_ERROR)  # False for NaN / inf as well
        keep = ok.view(-1, 1, 1, S)
        W_prev = torch.where(keep, W, W_prev)
        W = torch.where(keep, W_next, W)
        new_status = torch.where(running & ~ok, DIVERGED, 0)
        new_status = torch.where(ok & (change < tol), CONVERGED, new_status)
        if t == max_iter - 1:
            new_status = torch.where(ok & (new_status == 0), MAX_ITERATIONS, new_status)
        status[rows] = torch.where(running, new_status, status[rows])
        iters[rows] += ok.to(torch.int64)
        final_err[rows] = torch.where(ok, err, final_err[rows])
        if hist is not None:
            hist[rows, :, t + 1] = torch.where(ok, err, torch.nan)
        if t % check_every == check_every - 1 or t == max_iter - 1:
            alive = (status[rows] == 0).any(dim=1)
            if not bool(alive.all()):
                done = ~alive
                final_W[rows[done]] = W[done]
                if bar is not None:
                    bar.update(int(done.sum()))
                rows, Xs, y, Ws, ws_norm = rows[alive], Xs[alive], y[alive], Ws[alive], ws_norm[alive]
                W, W_prev, eta, beta = W[alive], W_prev[alive], eta[alive], beta[alive]
                if rows.numel() == 0:
                    break
    out_W = final_W.permute(0, 3, 2, 1).cpu().numpy()
    out_hist = hist.cpu().numpy() if hist is not None else None
    return out_W, iters.cpu().numpy(), status.cpu().numpy(), final_err.cpu().numpy(), out_hist
