r"""Batched engine: many independent AGD runs at once, in torch, on CPU or GPU.

It computes exactly what :mod:`winning_ticket.algorithms.risk` and :mod:`winning_ticket.algorithms.agd`
compute, for a batch of ``B`` problems with ``S`` runs per problem (runs of one
problem share its data: AGD and GD, several starting points, several step sizes).

Layout.  The inputs of neuron :math:`j` of problem ``b`` are stored transposed and
contiguous, :math:`X_{\Omega_j}^\top \in \mathbb R^{r\times N}` (a ``(B, K, r, N)``
tensor), and the ``S`` runs of a problem are the rows of a ``(K, S, r)`` weight
tensor, so one iteration is two batched matrix products per problem,

.. math::

    Z_j^\top = W_j^\top X_{\Omega_j}^\top \in \mathbb R^{S\times N},\qquad
    G_j^\top = \tfrac{1}{NK}\big(e \odot \mathbb 1\{Z_j>0\}\big)^\top X_{\Omega_j},

costing about :math:`4NrKS` flops.  With ``S = 1`` these are matrix-vector products
limited by memory traffic; every extra run that shares the data is almost free, which
is why the chapters run AGD and GD (and several starts) on the same problem instance.
(The transposed layout measured 1.3-1.9 times faster than ``(N, r)`` blocks on CPU.)

Scheduling.  Problems are processed in chunks small enough to stay near the CPU
cache (``max_chunk_bytes``; on a GPU the chunk is large).  A problem leaves its chunk
as soon as all its runs have stopped, so stragglers do not slow the rest down.  Each
run's arithmetic touches only its own problem, so results do not depend on the chunk
size or on which other problems share the batch (with the fused kernel a run's last bits can
depend on its place among its own problem's runs, paired with a neighbour or alone; see
:func:`~winning_ticket.algorithms.kernels._fused_gradient`).

Kernels.  On the CPU an iteration's gradient is by default (``auto``) computed by the fused
kernel of :mod:`winning_ticket.algorithms.kernels`: one pass over the samples instead of two
products (for ``r`` up to ``kernels.BLOCKS_MAX_R`` with the samples along the vector lanes, for
longer rows eight samples and two runs at a time along the rows), followed by one compiled call
that takes the AGD step, computes the runs' two distances and applies the stopping rule (the
step bit for bit torch's expression; measured side by side in ``benchmarks/bench_engine.py``;
see the README); in float64 both run inside one compiled loop of up to
``kernels.ITERATIONS_PER_CALL`` iterations (``kernels._iterate``), which returns to this module's
loop when a problem's runs have all stopped.  ``kernel="torch"`` (or ``$WT_KERNEL=torch``)
selects the two batched products above, which a GPU always uses.  The two agree to rounding
(tested), and an archive records the setting that made it.

Precision.  Float64 throughout by default.  ``precision="mixed"`` (or ``$WT_PRECISION=mixed``;
fused kernel only) computes each run's gradients in float32 until the run nears the end and in
float64 to finish, with the step and every stopping decision in float64 (:data:`PRECISIONS`).
Its iterates are not float64's; its verdicts are checked against the float64 archive
(``tools/audit.py --precision mixed``), and an archive records the precision that made it.

Sizes.  The problems of one call may have different ``N`` (a column of a sample-size sweep):
a chunk is zero-padded to its largest ``N`` and each problem's gradient is divided by its own, so
a run does not depend on what it is batched with (bit for bit with the fused kernel).

Public functions take and return weights in the paper's layout ``(..., r, K)``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..experiments.validation import check_real
from .agd import (
    DIVERGENCE_ERROR,
    ITERATION_CAP,
    STATUS_NAMES,
    STOP_TOL,
    RunStatus,
    SUCCESS_TOL,
    check_agd_params,
    check_mask,
)
from . import kernels
from .teacher_student import Problem
from ..experiments.progress import progress_bar

DTYPE = torch.float64


def default_device() -> torch.device:
    """``$WT_DEVICE`` if set, else CUDA when available, else the CPU."""
    name = os.environ.get("WT_DEVICE", "").strip()
    if name:
        return checked_device(name, "WT_DEVICE")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def checked_device(device, what: str = "device") -> torch.device:
    """``device`` as a ``torch.device``, or a ``ValueError`` that says what is wrong with it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{what} = {device!r} is not a device; allowed: 'cpu', 'cuda', 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{what} = {device!r}; allowed: 'cpu', 'cuda', 'cuda:N'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} = {device!r} but this torch has no usable CUDA device "
                         f"(torch {torch.__version__}); use 'cpu' or install a CUDA build of torch")
    return dev


ENGINE_THREADS_DEFAULT = 1
"""Torch CPU threads of the engine unless ``$WT_THREADS`` says otherwise.

One thread: on a busy 2-core machine a small batch ran 50-70 times slower with torch's
default of 2 threads than with 1 (the threads wait for each other), while the gain on an
idle machine is at most 2x; parallel work comes from processes (one unit each), and results
do not depend on the choice (tested)."""


def _positive_int_setting(name: str, default: int, unit: str = "") -> int:
    """The environment variable ``name`` as a positive integer, ``default`` when unset or empty, or a
    ``ValueError`` naming it and the allowed values."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name} = {raw!r}; allowed: a positive integer{unit}")
    return int(raw)


def _choice_setting(name: str, choices: tuple[str, ...], default: str) -> str:
    """The environment variable ``name`` as one of ``choices``, ``default`` when unset or empty, or a
    ``ValueError`` naming it and the allowed values."""
    raw = os.environ.get(name, "").strip() or default
    if raw not in choices:
        raise ValueError(f"{name} = {raw!r}; allowed: " + ", ".join(repr(c) for c in choices))
    return raw


def engine_threads() -> int:
    """``$WT_THREADS`` if set (a positive integer), else :data:`ENGINE_THREADS_DEFAULT`."""
    return _positive_int_setting("WT_THREADS", ENGINE_THREADS_DEFAULT)


CHUNK_BYTES_CPU = 8 << 20
"""Problem data in flight at once on the CPU when ``max_chunk_bytes`` is not given (48 MiB before
2026-12-03, then 16 MiB; ``$WT_CHUNK_BYTES`` overrides it).  The fused kernel reads a chunk's
inputs once per iteration, and a chunk that stays in the L3 cache between iterations ran faster:
the Fig. 3 workload (16 problems of 6.2 MB in the sample-block layout), medians of 5 interleaved
repetitions on the 2-core machine, 25.8, 25.5 and 25.2 GFLOP/s with chunks of 6, 8 and 12 MiB
(one problem each) against 20.7 with 16 MiB (two) and 17.1 with 32 MiB (four); the torch kernel
ran the same with 8 and 16 MiB (7.9 and 8.1).  With the fused kernel a run's bits do not depend on
the chunk; with the torch kernel they agree to rounding only (a batched product may round
differently for another batch size), so an archive records the setting and the audit re-executes
with it."""

CHUNK_BYTES_BEFORE = 48 << 20
"""The CPU chunk of the archives made before ``engine_chunk_bytes`` was recorded (the audit's default)."""


def engine_chunk_bytes() -> int:
    """``$WT_CHUNK_BYTES`` if set (a positive integer, bytes), else :data:`CHUNK_BYTES_CPU`."""
    return _positive_int_setting("WT_CHUNK_BYTES", CHUNK_BYTES_CPU, " (bytes)")


KERNELS = ("torch", "fused")
"""The engine's gradient kernels: ``torch`` (two batched products; CPU or GPU) and ``fused``
(:mod:`winning_ticket.algorithms.kernels`; CPU only)."""

FUSED_MIN_R = 1
"""``auto`` takes the fused kernel on the CPU for ``r`` at least this, i.e. always.  It was 16 while
the fused kernel had only its row layout, whose inner loops fill too few vector lanes for short
rows; with the sample-block layout (:func:`~winning_ticket.algorithms.kernels.layout_for`) the
engine's fused path ran the benchmark's ``short`` workload (the Noise chapter's shape, r = 10) 2.5
times as fast as the torch kernel (``benchmarks/bench_engine.py``; README), and 2.5 to 5 times in
scratch runs at r = 5 to 20."""


PRECISIONS = ("float64", "mixed")
"""The engine's arithmetic: ``float64`` throughout (the default, and every archive's), or ``mixed``
(fused kernel only): each run's gradient in float32 (inputs, weights and sums; the kernels'
float32 versions) until the run nears the end, then in float64 to finish (:data:`SWITCH_ERROR`,
:data:`SWITCH_CHANGE`); the step, the distances and the stopping rule are always float64, and a run
is never stopped as converged or as an early success on a float32 gradient
(:func:`~winning_ticket.algorithms.kernels._agd_step`).  The iterates differ from float64's (the
float32 phase follows the problem with its inputs rounded to float32); the verdicts are checked
against the float64 archive on a sample of the units of every chapter that uses the engine
(``tools/audit.py --precision mixed``).  A run whose float32 phase reaches the iteration cap
stops as capped even where the stopping rule would have called it converged at that last
iteration (rare: the switch comes at 1000 times the rule's threshold)."""

SWITCH_ERROR = 1e-2
"""Mixed precision: a run moves to float64 once its relative error is below this (100 times
:data:`~winning_ticket.algorithms.agd.SUCCESS_TOL`, so an early-success decision is never near)."""

SWITCH_CHANGE = 1e-5
"""Mixed precision: or once its relative change per step is below this (1000 times
:data:`~winning_ticket.algorithms.agd.STOP_TOL`; or 1000 times the run's ``tol`` if larger): a run
that stalls, at a local minimum or at the float32 problem's own minimizer, finishes in float64."""


def precision_setting() -> str:
    """``$WT_PRECISION`` if set (``float64`` or ``mixed``), else ``float64``."""
    return _choice_setting("WT_PRECISION", PRECISIONS, "float64")


def kernel_setting() -> str:
    """``$WT_KERNEL`` if set (``auto``, ``torch`` or ``fused``), else ``auto``."""
    return _choice_setting("WT_KERNEL", ("auto",) + KERNELS, "auto")


def engine_kernel(device: torch.device | str | None = None, r: int | None = None) -> str:
    """The kernel the engine uses on ``device`` for problems with ``r`` weights per neuron under
    :func:`kernel_setting`."""
    device = checked_device(device) if device is not None else default_device()
    return check_kernel(kernel_setting(), device, r, "WT_KERNEL")


def check_kernel(kernel: str, device: torch.device, r: int | None = None, what: str = "kernel") -> str:
    """``kernel`` resolved for ``device`` and ``r`` (``auto`` becomes a kernel), or a ``ValueError`` naming ``what``.

    ``auto``: ``fused`` on the CPU when numba is installed and ``r >= FUSED_MIN_R`` (every ``r``; or
    ``r`` is not given), else ``torch``.
    """
    if kernel not in KERNELS + ("auto",):
        raise ValueError(f"{what} = {kernel!r}; allowed: 'auto', " + ", ".join(repr(k) for k in KERNELS))
    if kernel == "auto":
        fused = device.type == "cpu" and kernels.available() and (r is None or r >= FUSED_MIN_R)
        return "fused" if fused else "torch"
    if kernel == "fused" and device.type != "cpu":
        raise ValueError(f"{what} = 'fused' runs on the CPU only, not on {device}; use 'torch' or 'auto'")
    if kernel == "fused" and not kernels.available():
        raise ValueError(f"{what} = 'fused' needs numba, which is not installed; use 'torch' or 'auto'")
    return kernel


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the body with ``n`` torch CPU threads, restoring the previous count after."""
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def _check_shapes(problems: Sequence[Problem], pad: bool) -> int:
    """The largest ``N`` of ``problems``, which must share ``(d, K, r)`` (and ``N`` unless ``pad``)."""
    if not problems:
        raise ValueError("problems must not be empty")
    p0 = problems[0]
    for p in problems:
        if (p.d, p.K, p.r) != (p0.d, p0.K, p0.r) or (not pad and p.N != p0.N):
            what, want, got = (("(d, K, r)", (p0.d, p0.K, p0.r), (p.d, p.K, p.r)) if pad else
                               ("(N, d, K, r)", (p0.N, p0.d, p0.K, p0.r), (p.N, p.d, p.K, p.r)))
            raise ValueError(f"all problems must share {what} = {want}, got {got}")
    return max(p.N for p in problems)


def _padded(a: np.ndarray, N: int) -> np.ndarray:
    """``a`` with zero rows appended along its first axis up to ``N`` rows."""
    return a if len(a) == N else np.concatenate([a, np.zeros((N - len(a),) + a.shape[1:])])


def stack_problems(problems: Sequence[Problem], device: torch.device | str | None = None, dtype=DTYPE,
                   pad: bool = False):
    """Stack problems of equal shape: ``XT (B,K,r,N)``, ``y (B,N)``, ``w_star (B,r,K)``.

    ``XT[b, j]`` is :math:`X_{\\Omega_j}^\\top` of problem ``b``, contiguous.  With ``pad`` the
    problems may have different ``N``: zero samples (zero inputs and labels) fill each up to the
    largest.
    """
    N = _check_shapes(problems, pad)
    device = checked_device(device) if device is not None else default_device()
    XT = np.stack([_padded(p.X, N).T[p.omega] for p in problems])  # (B, K, r, N), C-contiguous
    XT = torch.from_numpy(XT).to(device=device, dtype=dtype)
    y = torch.from_numpy(np.stack([_padded(p.y, N) for p in problems])).to(device=device, dtype=dtype)
    w_star = torch.from_numpy(np.stack([p.w_star for p in problems])).to(device=device, dtype=dtype)
    return XT, y, w_star


# --- risk, gradient and Hessian for a batch ---------------------------------------------------
# Internal weight layout: Wt (B, K, S, r), row s of Wt[b, j] is w_j of run s.


def _to_rows(W: torch.Tensor) -> torch.Tensor:
    """Paper layout ``(B,S,r,K)`` to engine layout ``(B,K,S,r)``."""
    return W.permute(0, 3, 1, 2)


def _to_paper(Wt: torch.Tensor) -> torch.Tensor:
    """Engine layout ``(B,K,S,r)`` to paper layout ``(B,S,r,K)``."""
    return Wt.permute(0, 2, 3, 1)


def _forward(XT: torch.Tensor, Wt: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pre-activations ``ZT (B,K,S,N)`` and residuals ``e (B,S,N)`` of :math:`\\frac1K\\sum_j\\phi(z_j) - y`."""
    ZT = torch.matmul(Wt, XT)
    return ZT, ZT.clamp_min(0).mean(dim=1) - y.unsqueeze(1)


def _grad(XT: torch.Tensor, ZT: torch.Tensor, e: torch.Tensor, n: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient ``(B,K,S,r)`` from pre-activations and residuals; ``n (B,1,1,1)``: each problem's
    own sample count when the batch is zero-padded (a padded sample adds exactly zero to the sums)."""
    K, N = XT.shape[1], XT.shape[3]
    if n is not None:
        N = n
    ET = e.unsqueeze(1) * (ZT > 0)
    if ET.shape[2] <= 2:  # few runs: (S,N) @ (N,r) measured fastest
        G = torch.matmul(ET, XT.mT)
    else:  # more runs: (r,N) @ (N,S), then transpose
        G = torch.matmul(XT, ET.mT).mT
    return G / (N * K)


def batched_risk(XT: torch.Tensor, y: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Empirical risk (2) for weights ``W (B,S,r,K)``; returns ``(B,S)``."""
    _, e = _forward(XT, _to_rows(W), y)
    return 0.5 * (e**2).mean(dim=-1)


def batched_gradient(XT: torch.Tensor, y: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Gradient of the empirical risk for ``W (B,S,r,K)``; returns ``(B,S,r,K)``."""
    ZT, e = _forward(XT, _to_rows(W), y)
    return _to_paper(_grad(XT, ZT, e))


def batched_hessian(XT: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """The ``(rK, rK)`` Hessians at ``W (B,S,r,K)``; returns ``(B,S,rK,rK)`` (column-major vec(W))."""
    B, K, r, N = XT.shape
    active = (torch.matmul(_to_rows(W), XT) > 0).to(XT.dtype)  # (B,K,S,N)
    S = active.shape[2]
    H = XT.new_empty(B, S, K * r, K * r)
    for j in range(K):
        for l in range(j, K):
            both = active[:, j] * active[:, l]  # (B,S,N)
            block = torch.einsum("brn,bsn,bqn->bsrq", XT[:, j], both, XT[:, l]) / (N * K**2)
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
    status: np.ndarray  # (B, S), codes of agd.RunStatus
    final_error: np.ndarray  # (B, S)
    rel_error: np.ndarray | None  # (B, S, T+1)

    @property
    def success(self) -> np.ndarray:
        return (self.status != RunStatus.DIVERGED) & (self.final_error < SUCCESS_TOL)

    @property
    def status_names(self) -> np.ndarray:
        return np.asarray(STATUS_NAMES, dtype=object)[self.status]

    def record(self, b: int, s: int, initial_error: float | None = None) -> dict:
        """The outcome of run ``(b, s)`` as plain fields of a results row.

        With ``initial_error`` (the start's relative distance) it includes ``rate``, the mean
        contraction per iteration (:meth:`mean_rate`).
        """
        row = dict(status=STATUS_NAMES[self.status[b, s]], success=bool(self.success[b, s]),
                   final_error=float(self.final_error[b, s]), iterations=int(self.iterations[b, s]))
        if initial_error is not None:
            row["rate"] = float(self.mean_rate(initial_error)[b, s])
        return row

    def mean_rate(self, initial_error) -> np.ndarray:
        """Mean contraction per iteration, ``(final_error / initial_error) ** (1 / iterations)``.

        Needs no history; for a run in its linear phase it approaches the fitted rate of
        :mod:`winning_ticket.algorithms.rates`.  NaN for runs that made no iteration and for
        diverged runs (their rate is undefined), so summaries never average them in.
        """
        init = np.broadcast_to(np.asarray(initial_error, dtype=np.float64), self.final_error.shape)
        defined = (self.iterations > 0) & (self.status != RunStatus.DIVERGED)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(defined, (self.final_error / init) ** (1.0 / self.iterations), np.nan)

    def flops(self, N: int, r: int, K: int) -> float:
        """Useful floating-point work done: 4 N r K per iteration of each run."""
        return float(4.0 * N * r * K * self.iterations.sum())


def _per_run(name: str, value, B: int, S: int) -> np.ndarray:
    """``value`` (a scalar, one per run column ``(S,)`` or one per run ``(B, S)``) as a ``(B, S)`` array."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 2 or (arr.ndim == 2 and arr.shape != (B, S)):
        raise ValueError(f"{name} must be a scalar, an (S,) or a (B, S) array; got shape {arr.shape}")
    try:
        return np.broadcast_to(arr, (B, S)).copy()
    except ValueError:
        raise ValueError(f"{name} must be a scalar, an (S,) or a (B, S) array; got shape {arr.shape}") from None


def run_agd_batched(
    problems: Sequence[Problem],
    W0: np.ndarray,
    eta=0.5,
    beta=0.2,
    *,
    max_iter: int = ITERATION_CAP,
    tol: float = STOP_TOL,
    record_history: bool = True,
    device: torch.device | str | None = None,
    max_chunk_bytes: int | None = None,
    progress: bool | None = None,
    success_stop: float | None = None,
    mask: np.ndarray | None = None,
    kernel: str | None = None,
    precision: str | None = None,
) -> BatchResult:
    """Run AGD on ``B`` problems with ``S`` starting points each, all at once.

    Parameters:

    * ``problems``: ``B`` problems sharing ``(d, K, r)``.  Their ``N`` may differ: each chunk is
      zero-padded to its largest ``N`` (a zero sample adds exactly nothing to the sums of the
      gradient) and each problem's gradient is divided by its own ``N``, so a run follows its
      unpadded self (bit for bit with the fused kernel, which never reads the padding; to
      rounding with the torch kernel).  This puts the cells of a sample-size sweep into one
      batch (one launch per iteration on a GPU).
    * ``W0``: starting points, shape ``(B, S, r, K)``.
    * ``eta``, ``beta``: step size and momentum; a scalar, one value per run column ``(S,)``
      or one per run ``(B, S)``.  ``beta = 0`` is GD.
    * ``max_iter``, ``tol``: the iteration cap and the relative-change threshold of the stopping rule.
    * ``record_history``: keep the relative error of every iterate.
    * ``device``: torch device (default :func:`default_device`).
    * ``max_chunk_bytes``: how much problem data is in flight at once; default 8 MiB on the
      CPU (a chunk that stays in the last-level cache, shared by two workers, ran about twice
      as fast as 48 MiB with either kernel), 4 GiB on a GPU.
    * ``progress``: show a progress bar over problems (default: see :mod:`winning_ticket.experiments.progress`).
    * ``success_stop``: when set (use :data:`~winning_ticket.algorithms.agd.SUCCESS_TOL`), a noiseless run stops
      as soon as its relative error is below this value *and* fell in the last step, with
      status ``early_success``.  Its success verdict is the one the full protocol would
      give (in the linear phase the error keeps falling; tested), at a fraction of the
      iterations; its ``iterations`` and ``final_error`` are those of the early stop.
    * ``mask``: binary ``(B, S, r, K)`` mask (or one broadcastable to it): AGD on the pruned
      problem (4), the gradient multiplied by the mask.  ``W0`` must be zero where the mask
      is 0; those weights then stay exactly zero.
    * ``kernel``: ``"fused"``, ``"torch"`` or ``"auto"`` (default: :func:`kernel_setting`,
      resolved by :func:`check_kernel`).
    * ``precision``: ``"float64"`` or ``"mixed"`` (default: :func:`precision_setting`; see
      :data:`PRECISIONS`); ``"mixed"`` needs the fused kernel.
    """
    B = len(problems)
    if B == 0:
        raise ValueError("problems must not be empty")
    N = _check_shapes(problems, pad=True)
    K, r = problems[0].K, problems[0].r
    W0 = np.asarray(W0, dtype=np.float64)
    if W0.ndim != 4 or W0.shape[0] != B or W0.shape[2:] != (r, K):
        raise ValueError(f"W0 must have shape (B={B}, S, r={r}, K={K}), got {W0.shape}")
    if not np.all(np.isfinite(W0)):
        raise ValueError("W0 contains NaN or infinite entries")
    S = W0.shape[1]
    masks = None
    if mask is not None:
        try:
            masks = check_mask(np.broadcast_to(np.asarray(mask), W0.shape), W0.shape)
        except ValueError as exc:
            raise ValueError(f"mask must broadcast to W0's shape {W0.shape}: {exc}") from None
        if np.any(W0[masks == 0] != 0):
            raise ValueError("W0 must be zero wherever mask is 0")
    etas, betas = _per_run("eta", eta, B, S), _per_run("beta", beta, B, S)
    for e_, b_ in zip(etas.ravel(), betas.ravel()):
        _, _, max_iter, tol = check_agd_params(e_, b_, max_iter, tol)
    if success_stop is not None:
        success_stop = check_real("success_stop", success_stop, 0.0, low_open=True)
    device = checked_device(device) if device is not None else default_device()
    kernel = engine_kernel(device, r) if kernel is None else check_kernel(kernel, device, r)
    what = "precision"
    if precision is None:
        precision, what = precision_setting(), "WT_PRECISION"
    if precision not in PRECISIONS:
        raise ValueError(f"{what} = {precision!r}; allowed: " + ", ".join(repr(p) for p in PRECISIONS))
    if precision == "mixed" and kernel != "fused":
        raise ValueError(f"{what} = 'mixed' needs the fused kernel (CPU, numba); the kernel here is {kernel!r} "
                         "(use precision='float64', or the CPU with kernel 'fused' or 'auto')")
    if max_chunk_bytes is None:
        max_chunk_bytes = (4 << 30) if device.type == "cuda" else engine_chunk_bytes()
    held, rows = N, K * r  # samples and rows held per problem
    if kernel == "fused" and kernels.layout_for(r) == "blocks":  # whole blocks, one row per feature read
        L = kernels.block_length(N)
        held, rows = -(-N // L) * L, max(len(np.unique(p.omega)) for p in problems)
    per_problem = held * rows * (12 if precision == "mixed" else 8)  # mixed: a float32 copy beside the float64
    chunk = max(1, min(B, max_chunk_bytes // per_problem))

    out_W = np.empty((B, S, r, K))
    out_it = np.zeros((B, S), dtype=np.int64)
    out_status = np.zeros((B, S), dtype=np.int64)
    out_err = np.empty((B, S))
    hist = np.full((B, S, max_iter + 1), np.nan) if record_history else None
    threads = engine_threads() if device.type == "cpu" else torch.get_num_threads()
    with progress_bar(total=B, desc="AGD runs (problems)", enable=progress) as bar, torch_threads(threads):
        for start in range(0, B, chunk):
            sl = slice(start, min(B, start + chunk))
            res = _run_chunk(
                problems[sl], W0[sl], etas[sl], betas[sl], max_iter, tol, record_history, device, bar, success_stop,
                None if masks is None else masks[sl], kernel, precision == "mixed",
            )
            out_W[sl], out_it[sl], out_status[sl], out_err[sl] = res[:4]
            if hist is not None:
                hist[sl] = res[4]
    if hist is not None:
        hist = hist[:, :, : int(out_it.max()) + 1]
    return BatchResult(W=out_W, iterations=out_it, status=out_status, final_error=out_err, rel_error=hist)


def _run_norms(T: torch.Tensor) -> torch.Tensor:
    """Frobenius norm of each run's weights: ``(a,K,S,r)`` to ``(a,S)``."""
    return T.transpose(1, 2).flatten(2).norm(dim=2)


def stack_rows(problems: Sequence[Problem]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fused row kernel's layout: ``XN (B,N,K,r)`` with ``XN[b, n, j]`` = :math:`x_{n,\\Omega_j}`,
    ``y (B,N)`` and the sample counts ``(B,)`` (problems of different ``N`` are zero-padded to the
    largest; the kernel reads only each problem's own samples)."""
    N = _check_shapes(problems, pad=True)
    XN = np.ascontiguousarray(np.stack([_padded(p.X, N)[:, p.omega] for p in problems]))
    y = np.ascontiguousarray(np.stack([_padded(p.y, N) for p in problems]))
    return XN, y, np.array([p.N for p in problems], dtype=np.int64)


def _step(W, W_prev, G, M, eta, beta, Ws, ws_norm, err, status, iters, t, max_iter, tol, success_stop):
    """One iteration of every run after its gradient ``G``, in torch: the AGD step (12) and the stopping
    rule.  Returns the new ``W, W_prev, err, status, iters`` and the errors to record (NaN for a
    run that did not step).  The fused path computes the same with ``kernels.compiled("step")``."""
    S = W.shape[2]
    # [engine-step]
    if M is not None:
        G = G * M
    W_next = W - eta * G + beta * (W - W_prev)
    err_next = _run_norms(W_next - Ws) / ws_norm
    change = _run_norms(W_next - W) / _run_norms(W)
    running = status == 0
    ok = running & (err_next <= DIVERGENCE_ERROR)  # False for NaN and inf too
    falling = err_next < err
    keep = ok.view(-1, 1, S, 1)  # a stopped or diverging run keeps its last iterate
    W_prev = torch.where(keep, W, W_prev)
    W = torch.where(keep, W_next, W)
    err = torch.where(ok, err_next, err)
    iters = iters + ok
    stop = torch.where(ok & (change < tol), int(RunStatus.CONVERGED), torch.where(running & ~ok, int(RunStatus.DIVERGED), 0))
    if success_stop is not None:
        early = ok & (stop == 0) & (err_next < success_stop) & falling
        stop = torch.where(early, int(RunStatus.EARLY_SUCCESS), stop)
    if t == max_iter - 1:
        stop = torch.where(ok & (stop == 0), int(RunStatus.MAX_ITER), stop)
    status = torch.where(running, stop, status)
    # [/engine-step]
    return W, W_prev, err, status, iters, torch.where(ok, err_next, torch.nan)


STATUS_CODES = np.array([RunStatus.CONVERGED, RunStatus.DIVERGED, RunStatus.EARLY_SUCCESS, RunStatus.MAX_ITER],
                        dtype=np.int64)
"""The codes the compiled step writes: converged, diverged, early success, cap."""


def _run_chunk(problems, W0, etas, betas, max_iter, tol, record_history, device, bar, success_stop, masks=None,
               kernel="torch", mixed=False):
    """AGD on one chunk of problems.

    All per-run state lives in "active" tensors; a problem whose runs have all stopped
    is written to the outputs and dropped from them, so an iteration does no scatter.
    """
    n = None  # each problem's sample count, when the chunk is zero-padded (torch kernel)
    if kernel == "fused":
        XT = y = None
        w_star = torch.from_numpy(np.stack([p.w_star for p in problems])).to(dtype=DTYPE)
        b, K, r = len(problems), problems[0].K, problems[0].r
        layout = kernels.layout_for(r)  # short rows: samples along the vector lanes, each feature once
        if layout == "blocks":
            _check_shapes(problems, pad=True)
            XN, feature_rows, y_rows = kernels.feature_blocks([p.X for p in problems], [p.omega for p in problems],
                                                              [p.y for p in problems])
            n_valid = np.array([p.N for p in problems], dtype=np.int64)
            feature_rows = (feature_rows,)  # the block kernel's argument after the inputs
        else:
            XN, y_rows, n_valid = stack_rows(problems)
            feature_rows = ()
        check_inputs = kernels.check_blocks if layout == "blocks" else kernels.check_rows
        gradient_fn = kernels.compiled("blocks" if layout == "blocks" else "gradient")
        step_fn = kernels.compiled("step")
        iterate_fn = kernels.compiled("iterate")  # float64: many iterations per call
        no_rows = np.empty((0, 0, 0), np.int64)  # the row kernel reads no feature index
        pairing = () if layout == "blocks" else (True,)  # the rows kernel takes pair_runs before active
        if mixed:  # the inputs in float32 too, for the runs' float32 phase
            XN32, y32 = XN.astype(np.float32), y_rows.astype(np.float32)
    else:
        XT, y, w_star = stack_problems(problems, device, pad=True)
        b, K, r, N = XT.shape
        if any(p.N != N for p in problems):
            n = torch.tensor([float(p.N) for p in problems], dtype=DTYPE, device=device).view(b, 1, 1, 1)
    S = W0.shape[1]
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=DTYPE, device=device)  # noqa: E731
    W = _to_rows(as_t(W0)).contiguous()  # (a,K,S,r) for the a active problems
    W_prev = W.clone()
    M = None if masks is None else _to_rows(as_t(masks)).contiguous()
    Ws = w_star.permute(0, 2, 1).unsqueeze(2)  # (a,K,1,r)
    if XT is None:
        Ws = Ws.contiguous()  # the fused path reads it as a (a,K,r) array
        check_inputs(XN, *feature_rows, y_rows, W.numpy(), n_valid)
    ws_norm = Ws.flatten(1).norm(dim=1).unsqueeze(1)  # (a,1)
    eta = as_t(etas).view(b, 1, S, 1)
    beta = as_t(betas).view(b, 1, S, 1)
    err = _run_norms(W - Ws) / ws_norm  # (a,S)
    status = torch.zeros(b, S, dtype=torch.int64, device=device)
    iters = torch.zeros(b, S, dtype=torch.int64, device=device)
    hist = None
    if record_history:
        hist = torch.full((b, S, max_iter + 1), float("nan"), dtype=DTYPE, device=device)
        hist[:, :, 0] = err

    out_W = np.empty((b, S, r, K))
    out_it = np.empty((b, S), dtype=np.int64)
    out_status = np.empty((b, S), dtype=np.int64)
    out_err = np.empty((b, S))
    out_hist = np.empty((b, S, max_iter + 1)) if record_history else None
    rows = torch.arange(b, device=device)  # chunk index of each active problem

    def retire(done: torch.Tensor) -> None:
        idx = rows[done].cpu().numpy()
        out_W[idx] = _to_paper(W[done]).cpu().numpy()
        out_it[idx] = iters[done].cpu().numpy()
        out_status[idx] = status[done].cpu().numpy()
        out_err[idx] = err[done].cpu().numpy()
        if hist is not None:
            out_hist[idx] = hist[done].cpu().numpy()
        if bar is not None:
            bar.update(len(idx))

    def fused_state():
        """numpy views of the state the compiled step updates in place (valid until the next compaction)."""
        return (W.numpy(), W_prev.numpy(), None if M is None else M.numpy(), eta.view(-1, S).numpy(),
                beta.view(-1, S).numpy(), Ws[:, :, 0].numpy(), ws_norm[:, 0].numpy(), err.numpy(), status.numpy(),
                iters.numpy(), hist.numpy() if hist is not None else np.empty((0, 0, 0)))

    low = None  # mixed precision: the runs whose gradient is still float32
    if XT is None:
        state = fused_state()
        if mixed:
            low = err.numpy() >= SWITCH_ERROR
    switch_change = SWITCH_CHANGE * max(1.0, tol / STOP_TOL)  # 1000 tol for a tol above the default
    check_every = 1 if device.type == "cpu" else 16
    success_at = -1.0 if success_stop is None else success_stop  # the compiled step's "off"
    t = 0
    while t < max_iter:
        # [engine-iteration] one iteration for every run (fused float64: up to 64), shown on the Reproducing page
        if XT is None:  # fused kernel: one pass over the samples, then the step and the stopping rule, compiled
            Wn, Wp, Mn, et, bt, Wsn, wsn, errn, stn, itn, hn = state
            if low is None and kernels.ITERATIONS_PER_CALL > 0:  # float64: iterations t, t + 1, ... in one compiled loop
                t, finished = iterate_fn(XN, feature_rows[0] if feature_rows else no_rows, y_rows, Wn, n_valid, Wp,
                                         Wn if Mn is None else Mn, Mn is not None, et, bt, Wsn, wsn, errn, stn, itn, hn,
                                         hist is not None, t, min(max_iter, t + kernels.ITERATIONS_PER_CALL), max_iter,
                                         tol, success_at, DIVERGENCE_ERROR,
                                         STATUS_CODES, layout == "blocks")
            else:  # one iteration: the gradient, then the compiled step
                if low is None:
                    G = gradient_fn(XN, *feature_rows, y_rows, Wn, n_valid, np.empty(Wn.shape))
                else:  # mixed: each running run's gradient in its own precision; a problem's pass only where needed
                    running = stn == 0
                    need32, need64 = (low & running).any(axis=1), (~low & running).any(axis=1)
                    G = np.empty(Wn.shape)
                    if need64.any():
                        gradient_fn(XN, *feature_rows, y_rows, Wn, n_valid, G, *pairing, need64)
                    if need32.any():
                        G32 = gradient_fn(XN32, *feature_rows, y32, Wn.astype(np.float32), n_valid,
                                          np.empty(Wn.shape, np.float32), *pairing, need32)
                        # the running float32 runs' rows: a problem the kernel skipped holds whatever the
                        # buffer held (possibly a signalling NaN), never read (tested)
                        np.copyto(G, G32, where=(low & running)[:, None, :, None])
                finished = step_fn(Wn, Wp, G, G if Mn is None else Mn, Mn is not None, et, bt, Wsn, wsn, errn, stn, itn,
                                   hn, hist is not None, t, max_iter, tol, success_at,
                                   DIVERGENCE_ERROR, STATUS_CODES, np.empty(Wn.shape), low, SWITCH_ERROR, switch_change)
        else:  # two batched products, then the step and the stopping rule (_step)
            ZT, e = _forward(XT, W, y)
            G = _grad(XT, ZT, e, n)
            W, W_prev, err, status, iters, recorded = _step(W, W_prev, G, M, eta, beta, Ws, ws_norm, err, status,
                                                            iters, t, max_iter, tol, success_stop)
            if hist is not None:
                hist[:, :, t + 1] = recorded
            finished = None
        # [/engine-iteration]
        t += 1
        if finished == 0:
            continue  # (fused) every problem still has a running run
        if t % check_every == 0 or t == max_iter:  # t iterations done
            alive = (status == 0).any(dim=1)
            if not bool(alive.all()):
                retire(~alive)
                if XT is None:
                    keep_np = alive.numpy()
                    XN, y_rows, n_valid = XN[keep_np], y_rows[keep_np], n_valid[keep_np]
                    feature_rows = tuple(np.ascontiguousarray(a[keep_np]) for a in feature_rows)
                    if low is not None:
                        XN32, y32, low = XN32[keep_np], y32[keep_np], low[keep_np]
                else:
                    XT, y = XT[alive], y[alive]
                    n = n[alive] if n is not None else None
                rows, Ws, ws_norm = rows[alive], Ws[alive], ws_norm[alive]
                W, W_prev, eta, beta, err = W[alive], W_prev[alive], eta[alive], beta[alive], err[alive]
                status, iters = status[alive], iters[alive]
                M = M[alive] if M is not None else None
                hist = hist[alive] if hist is not None else None
                if rows.numel() == 0:
                    break
                if XT is None:
                    state = fused_state()
    return out_W, out_it, out_status, out_err, out_hist
