r"""Magnitude pruning and iterative magnitude pruning (IMP, Frankle & Carbin 2019).

A *ticket* is a set of named weight tensors (a ``dict[str, torch.Tensor]``) and a binary
mask of the same shapes.  One IMP round (:func:`run_imp`):

1. **rewind**: start from the original initialization :math:`\theta_0` masked,
   :math:`\theta_0\odot M` (:func:`rewind`);
2. **train** with the mask held fixed (the caller's ``train`` function; it must keep the
   pruned weights at exactly zero, which :func:`run_imp` checks after every round);
3. **prune** a fraction ``rate`` of the *remaining* weights with the smallest magnitude
   (:func:`magnitude_prune`), globally over all tensors (the paper's Section 4.1 and the
   synthetic Fig. 6) or layer by layer (the reference MNIST code).

Counts are exact: a round removes :math:`\lfloor \text{rate}\cdot n + 1/2\rfloor` of the
:math:`n` remaining weights (per tensor when layer-wise), ties in magnitude broken by position,
so the remaining fraction after :math:`k` rounds is known in advance
(:func:`remaining_counts`) and does not depend on how many weights happen to share a value.

Tensors may carry leading *batch* dimensions (``batch_dims``): then each index of those
dimensions is an independent network with its own mask, pruned on its own.  The synthetic IMP
chapter trains many trials at once this way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from ..experiments.validation import check_int, check_real

Tensors = dict[str, torch.Tensor]
SCOPES = ("global", "layer")


def prune_count(remaining: int, rate: float) -> int:
    """How many of ``remaining`` weights one round removes: ``floor(rate * remaining + 1/2)``."""
    return int(math.floor(rate * remaining + 0.5))


def remaining_counts(total: int, rate: float, rounds: int) -> list[int]:
    """Surviving weights after ``0..rounds`` rounds of pruning ``rate`` of the remaining ones."""
    check_int("total", total, 0)
    check_real("rate", rate, 0.0, 1.0, low_open=True, high_open=True)
    counts = [total]
    for _ in range(check_int("rounds", rounds, 0)):
        counts.append(counts[-1] - prune_count(counts[-1], rate))
    return counts


def _check_ticket(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    if set(weights) != set(masks):
        raise ValueError(f"weights and masks must name the same tensors; got {sorted(weights)} and {sorted(masks)}")
    for name, w in weights.items():
        if masks[name].shape != w.shape:
            raise ValueError(f"mask {name!r} has shape {tuple(masks[name].shape)}, weights {tuple(w.shape)}")
        if masks[name].dtype != torch.bool:
            raise ValueError(f"mask {name!r} must be a bool tensor, got {masks[name].dtype}")


def _prune_flat(scores: torch.Tensor, keep: torch.Tensor, rate: float) -> torch.Tensor:
    """New keep-flags for one network: drop the ``prune_count`` smallest scores among the kept entries.

    ``scores`` and ``keep`` are 1-D; ties are broken by position (a stable sort).
    """
    alive = torch.nonzero(keep).squeeze(1)
    k = prune_count(int(alive.numel()), rate)
    out = keep.clone()
    if k:
        order = torch.sort(scores[alive], stable=True).indices
        out[alive[order[:k]]] = False
    return out


def magnitude_prune(
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    rate: float,
    scope: str = "global",
    batch_dims: int = 0,
) -> Tensors:
    """New masks that remove ``rate`` of the surviving weights with the smallest :math:`|w|`.

    ``scope="global"`` ranks all tensors together; ``"layer"`` prunes each tensor on its own.
    With ``batch_dims`` leading dimensions, every batch index is pruned independently.
    The input masks are not modified.
    """
    if not weights:
        raise ValueError("weights must hold at least one tensor to prune")
    _check_ticket(weights, masks)
    empty = [n for n, w in weights.items() if w.numel() == 0]
    if empty:
        raise ValueError(f"tensors {empty} have no entries; nothing to prune")
    rate = check_real("rate", rate, 0.0, 1.0, low_open=True, high_open=True)
    if scope not in SCOPES:
        raise ValueError(f"scope = {scope!r}; allowed: {', '.join(SCOPES)}")
    names = list(weights)
    batch_shape = weights[names[0]].shape[:batch_dims]
    for n in names:
        if weights[n].shape[:batch_dims] != batch_shape:
            raise ValueError(f"tensor {n!r} does not share the batch shape {tuple(batch_shape)}")
    B = math.prod(batch_shape)
    flat_w = {n: weights[n].detach().reshape(B, -1).abs() for n in names}
    flat_m = {n: masks[n].reshape(B, -1) for n in names}
    new = {n: torch.empty_like(flat_m[n]) for n in names}
    for b in range(B):
        if scope == "layer":
            for n in names:
                new[n][b] = _prune_flat(flat_w[n][b], flat_m[n][b], rate)
        else:
            sizes = [flat_w[n].shape[1] for n in names]
            kept = _prune_flat(torch.cat([flat_w[n][b] for n in names]), torch.cat([flat_m[n][b] for n in names]), rate)
            for n, part in zip(names, torch.split(kept, sizes)):
                new[n][b] = part
    return {n: new[n].reshape(masks[n].shape) for n in names}


def rewind(init: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> Tensors:
    r"""Rewound weights :math:`\theta_0\odot M`: survivors get exactly their initial values, the rest exactly 0."""
    _check_ticket(init, masks)
    return {n: torch.where(masks[n], init[n], torch.zeros((), dtype=init[n].dtype, device=init[n].device))
            for n in init}


def remaining_fraction(masks: Mapping[str, torch.Tensor], batch_dims: int = 0) -> torch.Tensor:
    """Fraction of weights kept (per batch index when ``batch_dims`` > 0)."""
    names = list(masks)
    batch_shape = masks[names[0]].shape[:batch_dims]
    kept = sum(masks[n].reshape(*batch_shape, -1).sum(-1) for n in names)
    total = sum(masks[n][(0,) * batch_dims].numel() for n in names)
    return kept.double() / total


@dataclass
class IMPResult:
    """What :func:`run_imp` returns.

    ``masks[k]`` is the mask trained in round ``k`` (round 0 is the dense network),
    ``trained[k]`` the trained weights of that round, ``metrics[k]`` what ``evaluate``
    returned for them and ``remaining[k]`` the kept fraction (per batch index).
    """

    masks: list[Tensors] = field(default_factory=list)
    trained: list[Tensors] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    remaining: list[torch.Tensor] = field(default_factory=list)


def run_imp(
    init: Mapping[str, torch.Tensor],
    train: Callable[[Tensors, Tensors, int], Tensors],
    rounds: int,
    rate: float = 0.2,
    scope: str = "global",
    *,
    evaluate: Callable[[Tensors, Tensors, int], dict] | None = None,
    prunable: Mapping[str, bool] | None = None,
    batch_dims: int = 0,
    keep_trained: bool = True,
) -> IMPResult:
    """Iterative magnitude pruning with rewinding to the original initialization.

    Parameters:

    * ``init``: the original initialization :math:`\\theta_0` (never modified).
    * ``train``: ``train(start, masks, round) -> trained``; must keep pruned entries at zero.
    * ``rounds``: number of pruning rounds; ``rounds + 1`` trainings in total (round 0 is dense).
    * ``rate``: fraction of the remaining weights pruned per round (0.2 in the paper).
    * ``scope``: ``"global"`` or ``"layer"`` (:func:`magnitude_prune`).
    * ``evaluate``: ``evaluate(trained, masks, round) -> dict`` of metrics for the round.
    * ``prunable``: which tensors are pruned (default: all); the others (biases, say) keep a
      full mask, are rewound too and are not counted in ``remaining``.
    * ``batch_dims``: leading dimensions indexing independent networks.
    * ``keep_trained``: keep every round's trained weights in the result.
    """
    rounds = check_int("rounds", rounds, 0)
    prunable = {n: True for n in init} if prunable is None else dict(prunable)
    if set(prunable) != set(init):
        raise ValueError("prunable must name exactly the tensors of init")
    masks = {n: torch.ones_like(t, dtype=torch.bool) for n, t in init.items()}
    out = IMPResult()
    for k in range(rounds + 1):
        start = rewind(init, masks)
        trained = train(start, {n: m.clone() for n, m in masks.items()}, k)
        for n, m in masks.items():
            if bool((trained[n][~m] != 0).any()):
                raise RuntimeError(f"round {k}: training changed pruned weights of {n!r}; train must keep them at 0")
        pruned_part = {n: masks[n] for n in masks if prunable[n]}
        out.masks.append({n: m.clone() for n, m in masks.items()})
        out.remaining.append(remaining_fraction(pruned_part, batch_dims))
        out.metrics.append(evaluate(trained, masks, k) if evaluate is not None else {})
        if keep_trained:
            out.trained.append({n: t.detach().clone() for n, t in trained.items()})
        if k < rounds:
            new = magnitude_prune({n: trained[n] for n in pruned_part}, pruned_part, rate, scope, batch_dims)
            masks = {**masks, **new}
    return out
