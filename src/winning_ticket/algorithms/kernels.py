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

while they are still in the cache (the formula is the gradient of
:mod:`winning_ticket.algorithms.risk`).  Memory traffic halves, and the loops compile to vector
instructions (numba).  Two layouts of the data, one kernel each, both tested against the plain
one-sample loop :func:`_fused_gradient_reference`:

* rows (:func:`_fused_gradient`, for long rows): ``XN (B, N, K, r)``; the samples eight at a time
  and the runs two at a time, so sixteen dot products along a row share each loop, a weight
  loaded from the L1 cache serves eight of them, and a gradient entry is loaded and stored once
  per eight samples;
* sample blocks (:func:`_fused_gradient_blocks`, for ``r <= BLOCKS_MAX_R``): ``XB (B, NB, F, L)``
  from :func:`feature_blocks`, one row per input feature with the samples contiguous in blocks of
  ``L``, so the vector lanes run over samples and a short row no longer leaves them idle; a
  feature that several neurons read is stored and read from memory once.

The engine picks the layout with :func:`layout_for`.  :func:`_agd_step` then takes the AGD step (12) of every run, computes the two
distances and applies the stopping rule, in one call instead of about thirty small torch
operations, and :func:`_iterate` runs the gradient and the step of many float64 iterations in one
compiled loop, so the engine's Python loop is entered when a problem finishes, not every iteration.

Numerics.  The sums are reassociated into vector lanes (``fastmath`` reassociation and fused
multiply-add, no other relaxation: NaN and infinity keep their meaning, so a diverging run is
still seen as one): in the row layout the dot products over :math:`i`, with the sums over
samples in sample order; in the block layout each block's sum over samples, blocks in order.  The result therefore differs from the torch path's in the last bits (tested to
:math:`10^{-12}`), depends only on a problem's own data, the layout and the run's place among its ``S`` runs
(paired or not; never on the batch, the chunk or the thread count: the kernel runs on one
thread), and is the same on machines with the same vector instruction set; an archive records
which kernel made it.

Samples beyond ``n_valid[b]`` are never read, so a zero-padded batch of problems of different
``N`` gives bitwise the unpadded gradients.

Precision.  The two kernels compute in their inputs' precision (running sums start from a zero of
the inputs' type): the engine passes float64, and float32 copies for the float32 phase of its
mixed precision (``engine.PRECISIONS``); float32 arrays compile a float32 version (tested to
float32 rounding).
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


def _fused_gradient_reference(XN, y, W, n_valid, G):  # pragma: no cover - compiled by numba, tested through the wrapper
    """The plain one-sample-at-a-time loop: what :func:`_fused_gradient` computes, kept for the tests."""
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


def _fused_gradient(XN, y, W, n_valid, G, pair_runs=True, active=None):  # pragma: no cover - compiled by numba, tested through the wrapper
    """The kernel: :func:`_fused_gradient_reference` with the samples taken eight at a time and the
    runs two at a time.

    Eight samples' inputs are loaded together, so each weight read from the L1 cache serves eight
    dot products and each gradient entry is loaded and stored once per eight samples instead of
    once per sample.  With ``pair_runs`` (the default) two runs of a problem share each load of
    the inputs as well: the inner loops hold sixteen dot products (two runs, eight samples) or two
    gradient rows, so a vector of inputs loaded from the L1 cache feeds two fused multiply-adds
    and each weight or gradient vector eight.  Runs ``0, 1``, ``2, 3``, ... are paired; with an odd
    ``S`` the last run takes the one-run loop (``pair_runs=False`` gives every run that loop).
    Sixteen running sums and eight input vectors fill the vector registers of an AVX-512 core
    (``benchmarks/ab_kernels.py`` compares the kernel with an earlier commit's; the README gives
    the measurements, and the blockings that were tried and not kept).

    The arithmetic is the reference's sums: every dot product is its own reduction, and a gradient
    entry receives the eight samples' contributions as ``g + c0 x0 + c1 x1 + ... + c7 x7``, written
    in sample order (fast-math reassociation lets the compiler regroup this sum as it regroups a
    dot product, so the result agrees with the reference to rounding, tested to 1e-14 relative,
    not bit for bit).  How the compiler splits a dot
    product into vector lanes depends on the loop it sits in, so a run's last bits can depend on
    whether it is paired (its position among its problem's ``S`` runs), never on other problems
    or the chunk.  A contribution with ``c = 0`` is added as ``0 * x`` (the reference skips it),
    which changes no bit for finite inputs.  The samples left over after the last full block of
    eight take the reference's loop.  ``active``: optional ``(B,)`` booleans; a problem with
    ``False`` is skipped and its ``G[b]`` left as it was (the engine's mixed precision computes a
    problem's float32 and float64 gradients only where one of its runs needs them).
    """
    B, _, K, r = XN.shape
    S = W.shape[2]
    zero = XN.dtype.type(0)  # the inputs' precision: float64 in the engine
    z = np.empty((8, K, S), XN.dtype)
    c = np.empty((8, K, S), XN.dtype)
    for b in range(B):
        if active is not None and not active[b]:  # skipped: G[b] is left as it was
            continue
        N = n_valid[b]
        G[b] = 0.0
        blocked = N - N % 8
        for n0 in range(0, blocked, 8):
            for j in range(K):  # pre-activations of eight samples, every run
                x0 = XN[b, n0 + 0, j]
                x1 = XN[b, n0 + 1, j]
                x2 = XN[b, n0 + 2, j]
                x3 = XN[b, n0 + 3, j]
                x4 = XN[b, n0 + 4, j]
                x5 = XN[b, n0 + 5, j]
                x6 = XN[b, n0 + 6, j]
                x7 = XN[b, n0 + 7, j]
                s = 0
                while pair_runs and s + 1 < S:  # runs s and s + 1 together: sixteen dot products
                    u = W[b, j, s]
                    v = W[b, j, s + 1]
                    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = zero
                    for i in range(r):
                        ui = u[i]
                        vi = v[i]
                        p0 = x0[i]
                        p1 = x1[i]
                        p2 = x2[i]
                        p3 = x3[i]
                        p4 = x4[i]
                        p5 = x5[i]
                        p6 = x6[i]
                        p7 = x7[i]
                        a0 += ui * p0
                        a1 += ui * p1
                        a2 += ui * p2
                        a3 += ui * p3
                        a4 += ui * p4
                        a5 += ui * p5
                        a6 += ui * p6
                        a7 += ui * p7
                        b0 += vi * p0
                        b1 += vi * p1
                        b2 += vi * p2
                        b3 += vi * p3
                        b4 += vi * p4
                        b5 += vi * p5
                        b6 += vi * p6
                        b7 += vi * p7
                    z[0, j, s] = a0
                    z[1, j, s] = a1
                    z[2, j, s] = a2
                    z[3, j, s] = a3
                    z[4, j, s] = a4
                    z[5, j, s] = a5
                    z[6, j, s] = a6
                    z[7, j, s] = a7
                    z[0, j, s + 1] = b0
                    z[1, j, s + 1] = b1
                    z[2, j, s + 1] = b2
                    z[3, j, s + 1] = b3
                    z[4, j, s + 1] = b4
                    z[5, j, s + 1] = b5
                    z[6, j, s + 1] = b6
                    z[7, j, s + 1] = b7
                    s += 2
                while s < S:  # a run on its own: eight dot products
                    w = W[b, j, s]
                    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
                    for i in range(r):
                        wi = w[i]
                        a0 += wi * x0[i]
                        a1 += wi * x1[i]
                        a2 += wi * x2[i]
                        a3 += wi * x3[i]
                        a4 += wi * x4[i]
                        a5 += wi * x5[i]
                        a6 += wi * x6[i]
                        a7 += wi * x7[i]
                    z[0, j, s] = a0
                    z[1, j, s] = a1
                    z[2, j, s] = a2
                    z[3, j, s] = a3
                    z[4, j, s] = a4
                    z[5, j, s] = a5
                    z[6, j, s] = a6
                    z[7, j, s] = a7
                    s += 1
            for q in range(8):  # residuals times the active indicators
                for s in range(S):
                    total = zero
                    for j in range(K):
                        if z[q, j, s] > 0.0:
                            total += z[q, j, s]
                    e = total / K - y[b, n0 + q]
                    for j in range(K):
                        c[q, j, s] = e if z[q, j, s] > 0.0 else 0.0
            for j in range(K):  # the eight samples' gradient contributions, in sample order
                x0 = XN[b, n0 + 0, j]
                x1 = XN[b, n0 + 1, j]
                x2 = XN[b, n0 + 2, j]
                x3 = XN[b, n0 + 3, j]
                x4 = XN[b, n0 + 4, j]
                x5 = XN[b, n0 + 5, j]
                x6 = XN[b, n0 + 6, j]
                x7 = XN[b, n0 + 7, j]
                s = 0
                while pair_runs and s + 1 < S:  # two runs' gradient rows from one load of the inputs
                    c0 = c[0, j, s]
                    c1 = c[1, j, s]
                    c2 = c[2, j, s]
                    c3 = c[3, j, s]
                    c4 = c[4, j, s]
                    c5 = c[5, j, s]
                    c6 = c[6, j, s]
                    c7 = c[7, j, s]
                    d0 = c[0, j, s + 1]
                    d1 = c[1, j, s + 1]
                    d2 = c[2, j, s + 1]
                    d3 = c[3, j, s + 1]
                    d4 = c[4, j, s + 1]
                    d5 = c[5, j, s + 1]
                    d6 = c[6, j, s + 1]
                    d7 = c[7, j, s + 1]
                    g = G[b, j, s]
                    h = G[b, j, s + 1]
                    for i in range(r):
                        p0 = x0[i]
                        p1 = x1[i]
                        p2 = x2[i]
                        p3 = x3[i]
                        p4 = x4[i]
                        p5 = x5[i]
                        p6 = x6[i]
                        p7 = x7[i]
                        g[i] = (g[i] + c0 * p0 + c1 * p1 + c2 * p2 + c3 * p3
                                + c4 * p4 + c5 * p5 + c6 * p6 + c7 * p7)
                        h[i] = (h[i] + d0 * p0 + d1 * p1 + d2 * p2 + d3 * p3
                                + d4 * p4 + d5 * p5 + d6 * p6 + d7 * p7)
                    s += 2
                while s < S:
                    c0 = c[0, j, s]
                    c1 = c[1, j, s]
                    c2 = c[2, j, s]
                    c3 = c[3, j, s]
                    c4 = c[4, j, s]
                    c5 = c[5, j, s]
                    c6 = c[6, j, s]
                    c7 = c[7, j, s]
                    g = G[b, j, s]
                    for i in range(r):
                        g[i] = (g[i] + c0 * x0[i] + c1 * x1[i] + c2 * x2[i] + c3 * x3[i]
                                + c4 * x4[i] + c5 * x5[i] + c6 * x6[i] + c7 * x7[i])
                    s += 1
        for n in range(blocked, N):  # the last N mod 8 samples, one at a time
            for j in range(K):
                for s in range(S):
                    acc = zero
                    for i in range(r):
                        acc += W[b, j, s, i] * XN[b, n, j, i]
                    z[0, j, s] = acc
            for s in range(S):
                total = zero
                for j in range(K):
                    if z[0, j, s] > 0.0:
                        total += z[0, j, s]
                e = total / K - y[b, n]
                for j in range(K):
                    c[0, j, s] = e if z[0, j, s] > 0.0 else 0.0
            for j in range(K):
                for s in range(S):
                    cj = c[0, j, s]
                    if cj != 0.0:
                        for i in range(r):
                            G[b, j, s, i] += cj * XN[b, n, j, i]
        scale = 1.0 / (N * K)
        for j in range(K):
            for s in range(S):
                for i in range(r):
                    G[b, j, s, i] *= scale
    return G


SAMPLE_BLOCK = 768
"""Samples per block of :func:`_fused_gradient_blocks` (at most; see :func:`block_length`).  Each of
a block's rows is a stream of ``8 L`` bytes that the kernel's loops walk eight rows at a time, and
longer streams ran faster than blocks that fit the L2 cache: kernel alone, N = 3000, K = 5
(2026-12-03, medians of 7 alternating repetitions), blocks of 768 samples against 256 ran 1.17,
1.20, 1.30 and 1.46 times as fast at r = 48, 64, 100 and 128 with two runs, 1.11 and 1.23 times at
r = 48 and 100 with six runs, and 1.05 to 1.21 times at r = 5 to 20; 512 and 1024 (rows 4 and 8 KB
apart, which share the L1 cache's sets) were slower than 768 in most of these shapes, 640 and 896 no
faster.  ``benchmarks/bench_engine.py`` times the engine with it."""


def block_length(N: int) -> int:
    """The block length of :func:`feature_blocks` and :func:`to_blocks` for a batch whose largest sample count is ``N``:
    :data:`SAMPLE_BLOCK`, or ``N`` rounded up to a multiple of eight when that is shorter (a batch
    of small problems is not padded to a whole block).  Either way a problem of ``n`` samples is cut
    into blocks of ``SAMPLE_BLOCK`` (one block if ``n <= SAMPLE_BLOCK``), so its gradient does not
    depend on the problems it is batched with (tested bit for bit)."""
    return min(SAMPLE_BLOCK, -(-N // 8) * 8)


BLOCKS_MAX_R = 128
"""The engine's fused path takes the sample-block kernel (:func:`_fused_gradient_blocks`) for ``r`` up
to this and the row kernel (:func:`_fused_gradient`) above it.  ``benchmarks/ab_kernels.py``: the
block kernel alone was 1.24 to 3.3 times the row kernel's speed at the chapters' shapes with r from
5 to 64; a sweep over r with N = 1500, K = 5 and 2, 4 or 10 runs (2026-12-03, kernel alone,
medians of 5 alternating repetitions) put the block kernel at 0.94 to 1.16 times the row kernel's
speed for r = 64 to 128 (1.04 to 1.12 at r = 80 to 100) and 0.63 to 0.98 times from r = 160 on,
where a block (then of 256 samples and one row per neuron input: ``256 K r`` numbers, 1.6 MB at
K r = 800) no longer stayed in the 1 MB L2 cache between the two passes and the row kernel's loads
serve more runs.  With blocks of 768 samples and one row per feature (:func:`feature_blocks`) the
engine ran the Landscape benchmark (r = 256, ten runs per problem) at 31.0 GFLOP/s in blocks
against 33.8 in rows (2026-12-03), so the limit stays."""


def layout_for(r: int) -> str:
    """The fused kernel's layout for rows of ``r`` weights: ``"blocks"`` (``r <= BLOCKS_MAX_R``) or ``"rows"``."""
    return "blocks" if r <= BLOCKS_MAX_R else "rows"


def to_blocks(XN: np.ndarray, y: np.ndarray, L: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sample-block layout of :func:`_fused_gradient_blocks` from the row layout, with blocks of
    ``L`` samples (default :func:`block_length` of ``N``), one row per neuron input (no rows shared).

    ``XN (B, N, K, r)`` becomes ``XB (B, NB, K r, L)`` with ``XB[b, k, j r + i, l]`` the ``i``-th input of
    neuron ``j`` of sample ``k L + l`` (``NB = ceil(N / L)``; the last block is zero-padded), so that a
    row of ``L`` consecutive samples is contiguous; ``rows (B, K, r)`` says so (``rows[b, j, i] = j r + i``);
    ``y (B, N)`` becomes ``(B, NB L)``, zero-padded.  The engine uses :func:`feature_blocks`, which
    stores an input shared by several neurons once; for the kernel the two differ only in ``rows``.
    """
    B, N, K, r = XN.shape
    L = block_length(N) if L is None else L
    NB = -(-N // L)
    XB = np.zeros((B, NB, K * r, L), XN.dtype)
    for k in range(NB):  # one block at a time: no padded copy of the whole array
        block = XN[:, k * L:(k + 1) * L]
        XB[:, k, :, :block.shape[1]] = block.reshape(B, block.shape[1], K * r).transpose(0, 2, 1)
    yB = np.zeros((B, NB * L), y.dtype)
    yB[:, :N] = y
    rows = np.ascontiguousarray(np.broadcast_to(np.arange(K * r, dtype=np.int64).reshape(1, K, r), (B, K, r)))
    return XB, rows, yB


def feature_blocks(Xs, omegas, ys, L: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The sample-block layout of :func:`_fused_gradient_blocks` from the problems' inputs, each input
    feature stored once.

    ``Xs``: ``B`` input matrices ``(N_b, d)``; ``omegas``: their supports ``(K, r)`` (neuron ``j`` reads
    features ``omegas[b][j]``, the model's :math:`\Omega_j`); ``ys``: the labels ``(N_b,)``.  The
    supports of a problem's neurons overlap (drawn independently, ``K r`` draws among ``d``), so the
    per-neuron layout of :func:`to_blocks` holds a shared feature once per neuron that reads it;
    here problem ``b``'s block holds only the features of the union :math:`U_b = \bigcup_j \Omega_j`, in
    increasing order, once: ``XB (B, NB, F, L)`` with ``F`` the largest union (a smaller one is
    zero-padded and never read), ``rows (B, K, r)`` with ``XB[b, k, rows[b, j, i], l]`` =
    :math:`x_{kL+l,\,\Omega_j(i)}` of problem ``b``, and ``y`` as in :func:`to_blocks` (largest
    ``N_b``).  The kernel reads the same numbers in the same order as from :func:`to_blocks`, so the
    gradients are the same bit for bit (tested); an iteration reads ``F`` rows instead of ``K r``
    (Fig. 3's shape, d = 300, K = 5, r = 100: 265 instead of 500 for the benchmark's first problem;
    :math:`d(1 - (1 - r/d)^K) \approx 260` on average).
    """
    B = len(Xs)
    if not (len(omegas) == len(ys) == B) or B == 0:
        raise ValueError(f"Xs, omegas and ys must hold the same positive number of problems; got "
                         f"{len(Xs)}, {len(omegas)} and {len(ys)}")
    N = max(X.shape[0] for X in Xs)
    K, r = np.shape(omegas[0])
    L = block_length(N) if L is None else L
    NB = -(-N // L)
    unions = [np.unique(np.asarray(om)) for om in omegas]
    F = max(len(u) for u in unions)
    dtype = np.result_type(*(X.dtype for X in Xs))
    XB = np.zeros((B, NB, F, L), dtype)
    rows = np.empty((B, K, r), np.int64)
    yB = np.zeros((B, NB * L), np.result_type(*(y.dtype for y in ys)))
    for b, (X, om, y, u) in enumerate(zip(Xs, omegas, ys, unions)):
        if np.shape(om) != (K, r):
            raise ValueError(f"omegas[{b}] has shape {np.shape(om)}; the batch's neurons read (K, r) = {(K, r)} features")
        rows[b] = np.searchsorted(u, om)
        n = X.shape[0]
        for k in range(-(-n // L)):  # one block at a time: no padded copy of the whole array
            block = X[k * L:(k + 1) * L, u]
            XB[b, k, :len(u), :block.shape[0]] = block.T
        yB[b, :n] = y
    return XB, rows, yB


def _fused_gradient_blocks(XB, rows, y, W, n_valid, G, active=None):  # pragma: no cover - compiled by numba, tested through the wrapper
    """:func:`_fused_gradient_reference` with the samples along the vector lanes, for short rows.

    With ``r`` below a few vector widths the row kernel's dot products along ``i`` are short and
    end in horizontal sums.  This kernel reads the sample-block layout of :func:`feature_blocks`
    (or :func:`to_blocks`) and makes the samples the vector dimension instead: ``XB[b, blk]`` holds
    one row of ``L`` samples per input feature, and neuron ``j``'s ``i``-th input is the row
    ``rows[b, j, i]``.  For a block of ``L`` samples it computes every run's pre-activations of all
    ``L`` samples (``z[j, s, :] += W[b, j, s, i] X[rows[b, j, i], :]``, eight rows ``i`` per pass,
    two runs sharing each load of the inputs), then their residuals, then the gradient entries
    (``G[b, j, s, i] += sum_l c[j, s, l] X[rows[b, j, i], l]``, eight rows and two runs per pass:
    sixteen dot products of length ``L``); of the last ``r mod 8`` rows, four are taken as one group
    the same way (two runs per load of the inputs, eight dot products per pass: the kernel alone on
    a problem as the engine lays it out ran 1.05, 1.08 and 1.23 times as fast at r = 100, 60 and 20,
    medians of 9 alternating repetitions, 2026-12-04, than with those rows one at a time), the rest
    one at a time.  The block's inputs are still in the cache (L2 or L3)
    for the second pass and for the other neurons that read the same feature, so the data is read
    from memory once per iteration.

    The sums are the reference's: a pre-activation adds the rows in order ``i = 0, 1, ...``
    (fast-math lets the compiler regroup them and contract products into fused multiply-adds), a
    gradient entry adds the blocks in order and each block's ``L`` samples as a vector reduction;
    the result agrees with the reference to rounding (tested to 1e-14 relative), does not depend on
    other problems or the chunk, and can depend on whether a run is paired.  Samples beyond
    ``n_valid[b]`` are never read.  ``active``: as in :func:`_fused_gradient`.
    """
    B, NB, F, L = XB.shape
    K, r = rows.shape[1], rows.shape[2]
    S = W.shape[2]
    zero = XB.dtype.type(0)  # the inputs' precision: float64 in the engine
    z = np.empty((K, S, L), XB.dtype)
    c = np.empty((K, S, L), XB.dtype)
    tot = np.empty(L, XB.dtype)
    r8 = r - r % 8
    for b in range(B):
        if active is not None and not active[b]:  # skipped: G[b] is left as it was
            continue
        N = n_valid[b]
        G[b] = 0.0
        for blk in range(NB):
            n0 = blk * L
            if n0 >= N:
                break
            m = min(L, N - n0)
            for j in range(K):  # pre-activations of the block's samples, every run
                X = XB[b, blk]
                ix = rows[b, j]
                w = W[b, j]
                for s in range(S):
                    zs = z[j, s]
                    for n in range(m):
                        zs[n] = 0.0
                for i in range(0, r8, 8):
                    x0 = X[ix[i]]
                    x1 = X[ix[i + 1]]
                    x2 = X[ix[i + 2]]
                    x3 = X[ix[i + 3]]
                    x4 = X[ix[i + 4]]
                    x5 = X[ix[i + 5]]
                    x6 = X[ix[i + 6]]
                    x7 = X[ix[i + 7]]
                    s = 0
                    while s + 1 < S:  # runs s and s + 1 from one load of the inputs
                        za = z[j, s]
                        zb = z[j, s + 1]
                        u = w[s]
                        v = w[s + 1]
                        u0, u1, u2, u3, u4, u5, u6, u7 = u[i], u[i + 1], u[i + 2], u[i + 3], u[i + 4], u[i + 5], u[i + 6], u[i + 7]
                        v0, v1, v2, v3, v4, v5, v6, v7 = v[i], v[i + 1], v[i + 2], v[i + 3], v[i + 4], v[i + 5], v[i + 6], v[i + 7]
                        for n in range(m):
                            p0 = x0[n]
                            p1 = x1[n]
                            p2 = x2[n]
                            p3 = x3[n]
                            p4 = x4[n]
                            p5 = x5[n]
                            p6 = x6[n]
                            p7 = x7[n]
                            za[n] = za[n] + u0 * p0 + u1 * p1 + u2 * p2 + u3 * p3 + u4 * p4 + u5 * p5 + u6 * p6 + u7 * p7
                            zb[n] = zb[n] + v0 * p0 + v1 * p1 + v2 * p2 + v3 * p3 + v4 * p4 + v5 * p5 + v6 * p6 + v7 * p7
                        s += 2
                    if s < S:  # the last run of an odd S
                        za = z[j, s]
                        u = w[s]
                        u0, u1, u2, u3, u4, u5, u6, u7 = u[i], u[i + 1], u[i + 2], u[i + 3], u[i + 4], u[i + 5], u[i + 6], u[i + 7]
                        for n in range(m):
                            za[n] = (za[n] + u0 * x0[n] + u1 * x1[n] + u2 * x2[n] + u3 * x3[n]
                                     + u4 * x4[n] + u5 * x5[n] + u6 * x6[n] + u7 * x7[n])
                r4 = r8
                if r - r8 >= 4:  # four of the last r mod 8 rows as one group
                    x0 = X[ix[r8]]
                    x1 = X[ix[r8 + 1]]
                    x2 = X[ix[r8 + 2]]
                    x3 = X[ix[r8 + 3]]
                    s = 0
                    while s + 1 < S:  # runs s and s + 1 from one load of the inputs
                        za = z[j, s]
                        zb = z[j, s + 1]
                        u = w[s]
                        v = w[s + 1]
                        u0, u1, u2, u3 = u[r8], u[r8 + 1], u[r8 + 2], u[r8 + 3]
                        v0, v1, v2, v3 = v[r8], v[r8 + 1], v[r8 + 2], v[r8 + 3]
                        for n in range(m):
                            p0 = x0[n]
                            p1 = x1[n]
                            p2 = x2[n]
                            p3 = x3[n]
                            za[n] = za[n] + u0 * p0 + u1 * p1 + u2 * p2 + u3 * p3
                            zb[n] = zb[n] + v0 * p0 + v1 * p1 + v2 * p2 + v3 * p3
                        s += 2
                    if s < S:  # the last run of an odd S
                        za = z[j, s]
                        u = w[s]
                        u0, u1, u2, u3 = u[r8], u[r8 + 1], u[r8 + 2], u[r8 + 3]
                        for n in range(m):
                            za[n] = za[n] + u0 * x0[n] + u1 * x1[n] + u2 * x2[n] + u3 * x3[n]
                    r4 = r8 + 4
                for i in range(r4, r):  # the last r mod 4 rows, one at a time
                    x0 = X[ix[i]]
                    for s in range(S):
                        za = z[j, s]
                        u0 = w[s, i]
                        for n in range(m):
                            za[n] = za[n] + u0 * x0[n]
            for s in range(S):  # residuals times the active indicators
                for n in range(m):
                    tot[n] = 0.0
                for j in range(K):
                    zs = z[j, s]
                    for n in range(m):
                        zn = zs[n]
                        tot[n] += zn if zn > 0.0 else 0.0
                for n in range(m):
                    tot[n] = tot[n] / K - y[b, n0 + n]
                for j in range(K):
                    zs = z[j, s]
                    cs = c[j, s]
                    for n in range(m):
                        cs[n] = tot[n] if zs[n] > 0.0 else 0.0
            for j in range(K):  # the block's gradient contributions
                X = XB[b, blk]
                ix = rows[b, j]
                g = G[b, j]
                for i in range(0, r8, 8):
                    x0 = X[ix[i]]
                    x1 = X[ix[i + 1]]
                    x2 = X[ix[i + 2]]
                    x3 = X[ix[i + 3]]
                    x4 = X[ix[i + 4]]
                    x5 = X[ix[i + 5]]
                    x6 = X[ix[i + 6]]
                    x7 = X[ix[i + 7]]
                    s = 0
                    while s + 1 < S:  # sixteen dot products: eight rows, two runs
                        ca = c[j, s]
                        cb = c[j, s + 1]
                        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = zero
                        for n in range(m):
                            pa = ca[n]
                            pb = cb[n]
                            q0 = x0[n]
                            q1 = x1[n]
                            q2 = x2[n]
                            q3 = x3[n]
                            q4 = x4[n]
                            q5 = x5[n]
                            q6 = x6[n]
                            q7 = x7[n]
                            a0 += pa * q0
                            a1 += pa * q1
                            a2 += pa * q2
                            a3 += pa * q3
                            a4 += pa * q4
                            a5 += pa * q5
                            a6 += pa * q6
                            a7 += pa * q7
                            b0 += pb * q0
                            b1 += pb * q1
                            b2 += pb * q2
                            b3 += pb * q3
                            b4 += pb * q4
                            b5 += pb * q5
                            b6 += pb * q6
                            b7 += pb * q7
                        ga = g[s]
                        gb = g[s + 1]
                        ga[i] += a0
                        ga[i + 1] += a1
                        ga[i + 2] += a2
                        ga[i + 3] += a3
                        ga[i + 4] += a4
                        ga[i + 5] += a5
                        ga[i + 6] += a6
                        ga[i + 7] += a7
                        gb[i] += b0
                        gb[i + 1] += b1
                        gb[i + 2] += b2
                        gb[i + 3] += b3
                        gb[i + 4] += b4
                        gb[i + 5] += b5
                        gb[i + 6] += b6
                        gb[i + 7] += b7
                        s += 2
                    if s < S:
                        ca = c[j, s]
                        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
                        for n in range(m):
                            pa = ca[n]
                            a0 += pa * x0[n]
                            a1 += pa * x1[n]
                            a2 += pa * x2[n]
                            a3 += pa * x3[n]
                            a4 += pa * x4[n]
                            a5 += pa * x5[n]
                            a6 += pa * x6[n]
                            a7 += pa * x7[n]
                        ga = g[s]
                        ga[i] += a0
                        ga[i + 1] += a1
                        ga[i + 2] += a2
                        ga[i + 3] += a3
                        ga[i + 4] += a4
                        ga[i + 5] += a5
                        ga[i + 6] += a6
                        ga[i + 7] += a7
                r4 = r8
                if r - r8 >= 4:  # four dot products per pass over the run's residuals
                    x0 = X[ix[r8]]
                    x1 = X[ix[r8 + 1]]
                    x2 = X[ix[r8 + 2]]
                    x3 = X[ix[r8 + 3]]
                    s = 0
                    while s + 1 < S:  # eight dot products: four rows, two runs
                        ca = c[j, s]
                        cb = c[j, s + 1]
                        a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
                        for n in range(m):
                            pa = ca[n]
                            pb = cb[n]
                            q0 = x0[n]
                            q1 = x1[n]
                            q2 = x2[n]
                            q3 = x3[n]
                            a0 += pa * q0
                            a1 += pa * q1
                            a2 += pa * q2
                            a3 += pa * q3
                            b0 += pb * q0
                            b1 += pb * q1
                            b2 += pb * q2
                            b3 += pb * q3
                        ga = g[s]
                        gb = g[s + 1]
                        ga[r8] += a0
                        ga[r8 + 1] += a1
                        ga[r8 + 2] += a2
                        ga[r8 + 3] += a3
                        gb[r8] += b0
                        gb[r8 + 1] += b1
                        gb[r8 + 2] += b2
                        gb[r8 + 3] += b3
                        s += 2
                    if s < S:
                        ca = c[j, s]
                        a0 = a1 = a2 = a3 = zero
                        for n in range(m):
                            pa = ca[n]
                            a0 += pa * x0[n]
                            a1 += pa * x1[n]
                            a2 += pa * x2[n]
                            a3 += pa * x3[n]
                        ga = g[s]
                        ga[r8] += a0
                        ga[r8 + 1] += a1
                        ga[r8 + 2] += a2
                        ga[r8 + 3] += a3
                    r4 = r8 + 4
                for i in range(r4, r):
                    x0 = X[ix[i]]
                    for s in range(S):
                        cs = c[j, s]
                        a0 = zero
                        for n in range(m):
                            a0 += cs[n] * x0[n]
                        g[s, i] += a0
        scale = 1.0 / (N * K)
        for j in range(K):
            for s in range(S):
                for i in range(r):
                    G[b, j, s, i] *= scale
    return G


def _agd_step(W, W_prev, G, M, masked, eta, beta, Ws, ws_norm, err, status, iters, hist, recording, t, max_iter,
              tol, success_stop, divergence, codes, W_next, low=None, switch_error=0.0,
              switch_change=0.0):  # pragma: no cover - compiled by numba
    """One iteration of every running run after its gradient: the AGD step (12), the two distances,
    and the stopping rule, in place.  What the engine's torch path (``engine._step``) computes.

    * The iterate ``W - eta * (G * M) + beta * (W - W_prev)``, element by element, in the order and
      with the roundings of the torch expression (compiled without fast-math: no fused
      multiply-add), into ``W_next``; then per run ``err_next = |W_next - W*|_F / |W*|_F`` and
      ``change = |W_next - W|_F / |W|_F`` (squares summed in index order, so these may differ from
      torch's in the last bit).
    * A run whose ``err_next`` is at most ``divergence`` (not NaN) takes the step (``W_prev``, ``W``,
      ``err``, ``iters``); it stops as converged when ``change < tol``, as an early success when
      ``success_stop > 0``, ``err_next < success_stop`` and the error fell, at the cap on the last
      iteration; any other run stops as diverged.  ``codes``: the status codes (converged,
      diverged, early success, cap).  ``hist[b, s, t + 1]`` gets ``err_next`` (NaN if diverged).

    * Mixed precision (``low``, ``(B, S)`` booleans: the runs whose gradient was computed in
      float32): such a run moves to float64 (``low`` set to ``False``) once ``err_next <
      switch_error`` or ``change < switch_change``, and it never stops as converged or as an early
      success while in float32: where the rule would stop it, it moves to float64 instead and goes on
      (at the cap it stops as capped), so those decisions are always taken on float64 gradients.

    Arrays: ``W, W_prev, G, M, W_next (B, K, S, r)``, ``eta, beta, err (B, S)``, ``status, iters
    (B, S)`` int64, ``Ws (B, K, r)``, ``ws_norm (B,)``, ``hist (B, S, T)``.  Returns the number of
    problems none of whose runs is still running.
    """
    B, K, S, r = W.shape
    finished = 0
    for b in range(B):
        running_left = 0
        for s in range(S):
            if status[b, s] != 0:
                continue
            et = eta[b, s]
            bt = beta[b, s]
            e2 = 0.0
            c2 = 0.0
            w2 = 0.0
            for j in range(K):
                for i in range(r):
                    g = G[b, j, s, i] * M[b, j, s, i] if masked else G[b, j, s, i]
                    w = W[b, j, s, i]
                    wn = (w - et * g) + bt * (w - W_prev[b, j, s, i])
                    W_next[b, j, s, i] = wn
                    d = wn - Ws[b, j, i]
                    e2 += d * d
                    d = wn - w
                    c2 += d * d
                    w2 += w * w
            err_next = np.sqrt(e2) / ws_norm[b]
            change = np.sqrt(c2) / np.sqrt(w2)
            ok = err_next <= divergence  # False for NaN
            stop = 0
            if ok:
                falling = err_next < err[b, s]
                for j in range(K):
                    for i in range(r):
                        W_prev[b, j, s, i] = W[b, j, s, i]
                        W[b, j, s, i] = W_next[b, j, s, i]
                err[b, s] = err_next
                iters[b, s] += 1
                if change < tol:
                    stop = codes[0]
                elif success_stop > 0.0 and err_next < success_stop and falling:
                    stop = codes[2]
                elif t == max_iter - 1:
                    stop = codes[3]
                if low is not None and low[b, s]:
                    if stop == codes[0] or stop == codes[2]:  # decided on float64 gradients only
                        stop = codes[3] if t == max_iter - 1 else 0
                        low[b, s] = False
                    elif err_next < switch_error or change < switch_change:
                        low[b, s] = False
            else:
                stop = codes[1]
            status[b, s] = stop
            if recording:
                hist[b, s, t + 1] = err_next if ok else np.nan
            if stop == 0:
                running_left += 1
        if running_left == 0:
            finished += 1
    return finished


ITERATIONS_PER_CALL = 64
"""The most float64 iterations the engine's fused path runs in one call of :func:`_iterate` before it
returns to the engine's Python loop (which then checks for an interrupt and calls again), so a long
run still answers Ctrl-C within a fraction of a second.  ``0``: one Python call of the gradient
kernel and one of :func:`_agd_step` per iteration instead (the engine before the compiled loop;
``benchmarks/bench_engine.py`` uses it for the variants that swap the gradient kernel, which
:func:`_iterate` cannot call).  Every value gives the same iterates bit for bit (tested)."""

_jit_blocks = _jit_rows = _jit_step = None  # the compiled kernels _iterate calls, set by compiled("iterate")


def _iterate(XN, rows, y, W, n_valid, W_prev, M, masked, eta, beta, Ws, ws_norm, err, status, iters, hist,
             recording, t0, t1, max_iter, tol, success_stop, divergence, codes, blocks):  # pragma: no cover - compiled by numba
    """Iterations ``t0, t0 + 1, ...`` of every run of a chunk (float64), each one gradient call and one
    :func:`_agd_step`, compiled as one loop, so the engine's Python loop is entered once per call instead
    of once per iteration.

    Returns ``(t, finished)`` at the first iteration ``t`` after which ``finished > 0`` problems have no
    running run (the engine then retires them and calls again from ``t + 1``), else ``(t1 - 1, 0)``.
    ``blocks``: the sample-block kernel on :func:`feature_blocks`' ``XN, rows, y``, else the row
    kernel on ``XN, y`` (``rows`` unused).  The other arguments are :func:`_agd_step`'s (``M`` any
    array of ``W``'s shape when ``masked`` is false).  The gradient and next-iterate buffers are
    reused between iterations: both are written in full before they are read (:func:`_agd_step`
    reads ``W_next`` only where it has just written it), so the iterates are the ones of one call per
    iteration bit for bit (tested against the engine with ``ITERATIONS_PER_CALL = 0`` and against its mixed
    precision with every run in float64, which call each function once per iteration).
    """
    G = np.empty(W.shape)
    W_next = np.empty(W.shape)
    for t in range(t0, t1):
        if blocks:
            _jit_blocks(XN, rows, y, W, n_valid, G)
        else:
            _jit_rows(XN, y, W, n_valid, G)
        finished = _jit_step(W, W_prev, G, M, masked, eta, beta, Ws, ws_norm, err, status, iters, hist, recording, t,
                             max_iter, tol, success_stop, divergence, codes, W_next)
        if finished > 0:
            return t, finished
    return t1 - 1, 0


_compiled = {}


def compiled(name: str):
    """The numba-compiled ``name`` (``gradient``, ``blocks``, ``reference``, ``step`` or ``iterate``), compiled on first use.

    The engine calls these directly inside its iteration loop (checked once per chunk, not per
    call); :func:`fused_gradient` is the checked entry point.
    """
    if numba is None:
        raise RuntimeError("the fused kernel needs numba (pip install -r requirements-dev.txt -c constraints.txt)")
    if name not in _compiled:
        _compiled[name] = _compile(name)
    return _compiled[name]


def _compile(name: str):
    """A new numba dispatcher for ``name`` (see :func:`compiled`; numba's disk cache makes a second one cheap)."""
    if name == "iterate":
        # a loop over the compiled kernels, which it reaches as this module's globals, bound here to
        # dispatchers of their own: a kernel swapped into ``_compiled`` (the benchmark's variants do)
        # never ends up inside the loop
        global _jit_blocks, _jit_rows, _jit_step
        _jit_blocks, _jit_rows, _jit_step = _compile("blocks"), _compile("gradient"), _compile("step")
        return numba.njit(boundscheck=False, cache=True, nogil=True)(_iterate)
    if name == "step":  # no fast-math: the torch path's roundings; numpy's error model: x / 0 is inf
        return numba.njit(boundscheck=False, cache=True, nogil=True, error_model="numpy")(_agd_step)
    py = {"gradient": _fused_gradient, "blocks": _fused_gradient_blocks, "reference": _fused_gradient_reference}[name]
    return numba.njit(fastmath=_FASTMATH, boundscheck=False, cache=True, nogil=True)(py)


def check_rows(XN: np.ndarray, y: np.ndarray, W: np.ndarray, n_valid) -> np.ndarray:
    """Check the fused kernel's inputs (see :func:`fused_gradient`); returns ``n_valid`` as int64."""
    for name, a, nd in (("XN", XN, 4), ("y", y, 2), ("W", W, 4)):
        if a.dtype != np.float64 or a.ndim != nd or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous float64 array with {nd} dimensions")
    B, N, K, r = XN.shape
    if y.shape != (B, N) or W.shape[:2] != (B, K) or W.shape[3] != r:
        raise ValueError(f"shapes do not match: XN {XN.shape}, y {y.shape}, W {W.shape}")
    n_valid = np.ascontiguousarray(n_valid, dtype=np.int64)
    if n_valid.shape != (B,) or np.any(n_valid < 1) or np.any(n_valid > N):
        raise ValueError(f"n_valid must hold B = {B} sample counts in [1, {N}]")
    return n_valid


def check_blocks(XB: np.ndarray, rows: np.ndarray, y: np.ndarray, W: np.ndarray, n_valid) -> np.ndarray:
    """Check the sample-block kernel's inputs (the layout of :func:`feature_blocks` or :func:`to_blocks`);
    returns ``n_valid`` as int64."""
    for name, a, nd in (("XB", XB, 4), ("y", y, 2), ("W", W, 4)):
        if a.dtype != np.float64 or a.ndim != nd or not a.flags.c_contiguous:
            raise ValueError(f"{name} must be a C-contiguous float64 array with {nd} dimensions")
    B, NB, F, L = XB.shape
    if rows.dtype != np.int64 or rows.ndim != 3 or not rows.flags.c_contiguous:
        raise ValueError("rows must be a C-contiguous int64 array with 3 dimensions (B, K, r)")
    if rows.shape[0] != B or y.shape != (B, NB * L) or W.shape[:2] != (B, rows.shape[1]) or W.shape[3] != rows.shape[2]:
        raise ValueError(f"shapes do not match: XB {XB.shape}, rows {rows.shape}, y {y.shape}, W {W.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= F):
        raise ValueError(f"rows must index the F = {F} rows of a block: values in [0, {F - 1}]")
    n_valid = np.ascontiguousarray(n_valid, dtype=np.int64)
    if n_valid.shape != (B,) or np.any(n_valid < 1) or np.any(n_valid > NB * L):
        raise ValueError(f"n_valid must hold B = {B} sample counts in [1, {NB * L}]")
    return n_valid


def fused_gradient(XN: np.ndarray, y: np.ndarray, W: np.ndarray, n_valid: np.ndarray,
                   out: np.ndarray | None = None, reference: bool = False, pair_runs: bool = True,
                   layout: str = "rows") -> np.ndarray:
    """Gradients of ``B`` problems' empirical risks at ``S`` weight settings each.

    * ``XN``: ``(B, N, K, r)`` float64, C-contiguous; ``XN[b, n, j]`` is :math:`x_{n,\\Omega_j}` of problem ``b``.
    * ``y``: ``(B, N)`` labels; ``W``: ``(B, K, S, r)`` weights (row ``s`` of ``W[b, j]`` is :math:`w_j` of run ``s``).
    * ``n_valid``: ``(B,)`` number of real samples of each problem (the rest is padding, never read).
    * ``out``: optional ``(B, K, S, r)`` array to write into.
    * ``reference``: use the plain one-sample loop (:func:`_fused_gradient_reference`) instead of the kernel.
    * ``pair_runs``: the row kernel's two-runs-at-a-time loops (default); ``False``: one run at a time.
    * ``layout``: ``"rows"``, the row kernel (:func:`_fused_gradient`), or ``"blocks"``, the sample-block
      kernel (:func:`_fused_gradient_blocks`, on ``to_blocks(XN, y)``).

    Returns the gradients in ``W``'s layout.
    """
    if layout not in ("rows", "blocks"):
        raise ValueError(f"layout = {layout!r}; allowed: 'rows', 'blocks'")
    if layout == "blocks" and (reference or not pair_runs):
        raise ValueError("layout = 'blocks' takes neither reference=True (the reference is the row layout's "
                         "one-sample loop) nor pair_runs=False (the block kernel always pairs runs)")
    n_valid = check_rows(XN, y, W, n_valid)
    if out is None:
        out = np.empty(W.shape)
    if layout == "blocks":
        XB, rows, yB = to_blocks(XN, y)
        return compiled("blocks")(XB, rows, yB, W, n_valid, out)
    fn = compiled("reference" if reference else "gradient")
    if reference or pair_runs:  # the engine's own call: five arguments, the compiled default pair_runs=True
        return fn(XN, y, W, n_valid, out)
    return fn(XN, y, W, n_valid, out, False)
