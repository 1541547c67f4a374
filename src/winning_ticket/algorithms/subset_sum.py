r"""Strong lottery tickets by subset sum (Pensia et al., 2020) and the single-unit baseline (Malach et al., 2020).

**Subset sum.**  Given values :math:`v_1..v_n` and a target :math:`w`, find the subset
:math:`S` minimizing :math:`|w - \sum_{i\in S} v_i|`.  :func:`solve_subset_sum` solves it
*exactly* for many independent problems at once by meet-in-the-middle: split the values in two
halves, enumerate the :math:`2^{n_1}` and :math:`2^{n_2}` half sums, sort one half and, for every
sum of the other, look up the nearest complement by binary search.  Cost
:math:`O(2^{n/2} n)` per problem instead of :math:`2^n`; :func:`brute_force_subset_sum` is the
plain reference it is tested against.  Lueker (1998): for :math:`n = O(\log 1/\varepsilon)`
random values with a uniform component, every target in :math:`[-1, 1]` is within
:math:`\varepsilon` of a subset sum, so the best error decays like :math:`2^{-n}`.

**The construction** (:func:`prune_random_network`).  A target ReLU network without biases,
:math:`f(x) = W_l\,\sigma(W_{l-1}\cdots\sigma(W_1x))`, is approximated by *pruning* (never
training) a random network twice as deep.  Target layer :math:`W\in\mathbb R^{d_{out}\times d_{in}}`
becomes two random layers: :math:`2n` hidden units per input :math:`j`, unit :math:`k` reading only
:math:`x_j` with weight :math:`a_{jk}\sim U[-1,1]`, followed by :math:`b_{ijk}\sim U[-1,1]` to output
:math:`i`.  Since :math:`wx = w\sigma(x) - w\sigma(-x)` and :math:`b\,\sigma(ax) = ab\,\sigma(x)` for
:math:`a > 0` (:math:`= |a|b\,\sigma(-x)` for :math:`a < 0`), weight :math:`w_{ij}` is realised by two subset
sums over the products: values :math:`\{a_{jk}b_{ijk}: a_{jk} > 0\}` with target :math:`w_{ij}`, and
:math:`\{|a_{jk}|b_{ijk}: a_{jk} < 0\}` with target :math:`-w_{ij}`.  The mask keeps the chosen
:math:`b` entries (and the units some output uses).  The single-unit baseline keeps, per sum, the one
product closest to the target (or none), the best any one-candidate-per-weight selection can do
with the same random units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..experiments.seeding import numpy_rng, torch_generator
from ..experiments.validation import check_int, check_real

MAX_N = 40
"""Largest number of values per problem the exact solver accepts (2^20 half sums)."""


def _half_sums(values: torch.Tensor) -> torch.Tensor:
    """All :math:`2^k` subset sums of each row of ``values (m, k)``; entry ``s`` uses the bits of ``s``."""
    sums = torch.zeros(values.shape[0], 1, dtype=values.dtype, device=values.device)
    for i in range(values.shape[1]):  # bit i of the subset index selects values[:, i]
        sums = torch.cat([sums, sums + values[:, i:i + 1]], dim=1)
    return sums


def _bits(index: np.ndarray, k: int) -> np.ndarray:
    return ((np.asarray(index)[:, None] >> np.arange(k)) & 1).astype(bool)


def _as_problems(values, targets) -> tuple[np.ndarray, np.ndarray]:
    """``values`` as an ``(m, n)`` float array (an ``(n,)`` row shared by all) and ``targets`` as ``(m,)``."""
    targets = np.asarray(targets, dtype=np.float64).reshape(-1)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = np.broadcast_to(values, (len(targets), len(values)))
    if values.ndim != 2 or values.shape[0] != len(targets):
        raise ValueError(f"values must be (n,) or (m, n) with m = len(targets) = {len(targets)}; got {values.shape}")
    return values, targets


def solve_subset_sum(values: np.ndarray, targets: np.ndarray, chunk: int = 2048,
                     device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Exact best subsets for ``m`` independent problems (meet in the middle, batched in torch).

    ``values`` is ``(m, n)`` (row ``i`` are the values of problem ``i``; NaN marks an absent value)
    or ``(n,)`` shared by all; ``targets`` is ``(m,)``.  Returns the boolean ``(m, n)`` selection
    and the signed errors ``target - chosen sum`` (recomputed from the selection in float64).
    """
    values, targets = _as_problems(values, targets)
    n = check_int("n (values per problem)", values.shape[1], 1, MAX_N)
    if not np.all(np.isfinite(targets)):
        raise ValueError("targets must be finite")
    if np.any(np.isinf(values)):
        raise ValueError("values must be finite numbers or NaN (NaN marks an absent value); got an infinite value")
    present = ~np.isnan(values)
    vals = np.where(present, values, 0.0)  # an absent value contributes 0 and is never reported as chosen
    n1 = n // 2
    n2 = n - n1
    select = np.zeros(values.shape, dtype=bool)
    chunk = max(1, min(chunk, (1 << 22) >> n2))  # bound the (rows x 2^n2) work arrays
    for s in range(0, len(targets), chunk):
        v = torch.as_tensor(vals[s:s + chunk], device=device)
        t = torch.as_tensor(targets[s:s + chunk], device=device)
        A = _half_sums(v[:, :n1])  # (m, 2^n1)
        Bs, order = torch.sort(_half_sums(v[:, n1:]), dim=1)  # (m, 2^n2)
        need = t[:, None] - A  # the B sum that would make the total exact
        pos = torch.searchsorted(Bs, need)
        lo = (pos - 1).clamp(0, Bs.shape[1] - 1)
        hi = pos.clamp(0, Bs.shape[1] - 1)
        err_lo = (need - Bs.gather(1, lo)).abs()
        err_hi = (need - Bs.gather(1, hi)).abs()
        use_hi = err_hi < err_lo
        j_sorted = torch.where(use_hi, hi, lo)
        i_best = torch.minimum(err_lo, err_hi).argmin(dim=1)
        j_best = order.gather(1, j_sorted.gather(1, i_best[:, None]))[:, 0]
        select[s:s + chunk, :n1] = _bits(i_best.cpu().numpy(), n1)
        select[s:s + chunk, n1:] = _bits(j_best.cpu().numpy(), n2)
    select &= present
    return select, targets - (vals * select).sum(axis=1)


def brute_force_subset_sum(values: np.ndarray, target: float) -> tuple[np.ndarray, float]:
    """The plain reference: try all :math:`2^n` subsets of one problem."""
    values = np.asarray(values, dtype=np.float64)
    n = check_int("n", len(values), 1, 22)
    bits = _bits(np.arange(2**n), n)
    sums = bits @ values
    best = int(np.argmin(np.abs(target - sums)))
    return bits[best], float(target - sums[best])


def single_unit(values: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: choose at most one value per problem (the one closest to the target, or none)."""
    values, targets = _as_problems(values, targets)
    dist = np.abs(targets[:, None] - np.where(np.isfinite(values), values, np.inf))
    k = np.argmin(dist, axis=1)
    take = dist[np.arange(len(k)), k] < np.abs(targets)  # better than choosing nothing
    select = np.zeros(values.shape, dtype=bool)
    select[np.arange(len(k))[take], k[take]] = True
    return select, targets - np.where(select, np.nan_to_num(values), 0.0).sum(axis=1)


# --- the construction ------------------------------------------------------------------------


def random_target(widths: tuple[int, ...], seed: int | np.random.SeedSequence) -> list[np.ndarray]:
    """A target network: layer ``i`` is ``G / ||G||_2`` with Gaussian ``G`` of shape ``(widths[i+1], widths[i])``."""
    rng = numpy_rng(seed)
    layers = []
    for d_in, d_out in zip(widths[:-1], widths[1:]):
        G = rng.standard_normal((d_out, d_in))
        layers.append(G / np.linalg.norm(G, 2))
    return layers


@dataclass
class PrunedLayer:
    """One target layer realised by two pruned random layers.

    ``first`` is the ``(d_in * 2n, d_in)`` block-diagonal random layer (unit ``j*2n + k`` reads
    input ``j``), ``second`` the ``(d_out, d_in * 2n)`` random layer, and ``mask_first``,
    ``mask_second`` the kept entries.  ``errors`` are the per-weight errors ``w - realised w``.
    """

    first: np.ndarray
    second: np.ndarray
    mask_first: np.ndarray
    mask_second: np.ndarray
    errors: np.ndarray

    def realised_weights(self) -> tuple[np.ndarray, np.ndarray]:
        r"""Matrices :math:`P, Q` with output :math:`P\sigma(x) + Q\sigma(-x)`; the construction aims at :math:`P = W, Q = -W`.

        A kept unit :math:`u` of input :math:`j` with :math:`a_u > 0` adds :math:`b_{iu}a_u` to :math:`P_{ij}`;
        one with :math:`a_u < 0` adds :math:`b_{iu}|a_u|` to :math:`Q_{ij}`.
        """
        M1 = np.where(self.mask_first, self.first, 0.0)
        M2 = np.where(self.mask_second, self.second, 0.0)
        return M2 @ M1.clip(min=0), M2 @ (-M1).clip(min=0)

    @property
    def kept(self) -> int:
        """Weights kept in the two random layers."""
        return int(self.mask_first.sum() + self.mask_second.sum())


def _prune_layer(W: np.ndarray, n: int, rng: np.random.Generator, method: str) -> PrunedLayer:
    d_out, d_in = W.shape
    a = rng.uniform(-1, 1, size=(d_in, 2 * n))
    b = rng.uniform(-1, 1, size=(d_out, d_in, 2 * n))
    # list each input's units with a > 0 first and with a < 0 last (a relabelling of the units)
    order = np.argsort(-a, axis=1, kind="stable")
    a = np.take_along_axis(a, order, axis=1)
    pos = a > 0
    n_pos = pos.sum(axis=1)
    prod = a[None] * b  # (d_out, d_in, 2n): a_jk * b_ijk
    P, Q = int(n_pos.max()), int((2 * n - n_pos).max())
    # problem 1: the a > 0 units (first columns), target w; problem 2: the a < 0 units, target -w
    v1 = np.where(pos[None], prod, np.nan)[:, :, :max(P, 1)].reshape(-1, max(P, 1))
    v2 = np.where(~pos[None], -prod, np.nan)[:, :, ::-1][:, :, :max(Q, 1)].reshape(-1, max(Q, 1))
    solve = solve_subset_sum if method == "subset_sum" else single_unit
    s1, e1 = solve(v1, W.ravel())
    s2, e2 = solve(v2, -W.ravel())
    keep = np.zeros((d_out, d_in, 2 * n), dtype=bool)
    keep[:, :, :max(P, 1)] |= s1.reshape(d_out, d_in, -1)
    keep[:, :, ::-1][:, :, :max(Q, 1)] |= s2.reshape(d_out, d_in, -1)
    units = np.arange(d_in * 2 * n)
    first = np.zeros((d_in * 2 * n, d_in))
    first[units, np.repeat(np.arange(d_in), 2 * n)] = a.ravel()
    mask_first = np.zeros_like(first, dtype=bool)
    mask_first[units, np.repeat(np.arange(d_in), 2 * n)] = keep.any(axis=0).ravel()  # units some output uses
    err = np.maximum(np.abs(e1), np.abs(e2)).reshape(d_out, d_in)
    return PrunedLayer(first=first, second=b.reshape(d_out, d_in * 2 * n), mask_first=mask_first,
                       mask_second=keep.reshape(d_out, d_in * 2 * n), errors=err)


def prune_random_network(target: list[np.ndarray], n: int, seed, method: str = "subset_sum") -> list[PrunedLayer]:
    """Approximate ``target`` by pruning a random network with ``2n`` candidate units per input and layer.

    ``method`` is ``"subset_sum"`` (Pensia et al.) or ``"single_unit"`` (the baseline).
    """
    check_int("n", n, 1, MAX_N // 2)
    if method not in ("subset_sum", "single_unit"):
        raise ValueError(f"method = {method!r}; allowed: 'subset_sum', 'single_unit'")
    rng = numpy_rng(seed)
    return [_prune_layer(W, n, rng, method) for W in target]


def pruned_forward(layers: list[PrunedLayer], x: torch.Tensor) -> torch.Tensor:
    """Forward pass of the pruned random network (depth ``2l``) on ``x (batch, d_in)``; a real network."""
    h = x
    for i, L in enumerate(layers):
        M1 = torch.as_tensor(np.where(L.mask_first, L.first, 0.0), dtype=x.dtype, device=x.device)
        M2 = torch.as_tensor(np.where(L.mask_second, L.second, 0.0), dtype=x.dtype, device=x.device)
        h = torch.relu(h @ M1.T) @ M2.T
        if i < len(layers) - 1:
            h = torch.relu(h)
    return h


def target_forward(target: list[np.ndarray], x: torch.Tensor) -> torch.Tensor:
    """Forward pass of the target network :math:`W_l\\sigma(\\cdots\\sigma(W_1x))`."""
    h = x
    for i, W in enumerate(target):
        h = h @ torch.as_tensor(W, dtype=x.dtype, device=x.device).T
        if i < len(target) - 1:
            h = torch.relu(h)
    return h


def sup_error(target: list[np.ndarray], layers: list[PrunedLayer], seed, samples: int = 10_000,
              starts: int = 20, steps: int = 50, lr: float = 0.05) -> float:
    r"""Estimate :math:`\sup_{\|x\|_2 = 1}\|f(x) - \tilde g(x)\|_2` (both networks are 1-homogeneous).

    Maximum over ``samples`` random points of the unit sphere, refined by ``steps`` of projected
    gradient ascent from the ``starts`` worst ones.  A lower estimate of the supremum.
    """
    check_int("samples", samples, 1)
    check_real("lr", lr, 0.0, low_open=True)
    g = torch_generator(seed)
    d = target[0].shape[1]
    x = torch.randn(samples, d, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    with torch.no_grad():
        err = (target_forward(target, x) - pruned_forward(layers, x)).norm(dim=1)
    best = float(err.max())
    z = x[torch.argsort(err, descending=True)[:starts]].clone().requires_grad_(True)
    for _ in range(steps):
        e = (target_forward(target, z) - pruned_forward(layers, z)).norm(dim=1)
        best = max(best, float(e.detach().max()))
        (grad,) = torch.autograd.grad(e.sum(), z)
        with torch.no_grad():
            z += lr * grad
            z /= z.norm(dim=1, keepdim=True)
    return best
