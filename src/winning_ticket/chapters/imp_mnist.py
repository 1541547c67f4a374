r"""The IMP chapter, part 2: LeNet-5 on real MNIST (paper Fig. 7), with seeds and controls.

Protocol of the reference repository the paper used (rahulvigneswaran/Lottery-Ticket-Hypothesis-in-Pytorch),
with its known bugs fixed:

* Xavier-normal weights and N(0, 1) biases (:func:`~winning_ticket.algorithms.networks.reference_init`);
* Adam, learning rate 1.2e-3, weight decay 1e-4, batch 60, a new optimizer every round;
* layer-wise magnitude pruning of 20% of the surviving weights of every weight tensor per round,
  output layer included; biases are never pruned (:mod:`winning_ticket.algorithms.pruning`, exact counts);
* rewinding of weights *and biases* to the original initialization :math:`\theta_0`.

Fixes (each said in the chapter): the reference freezes the gradient of every weight below 1e-6,
negative ones included (``w < eps`` instead of ``|w| < eps``); here the pruned weights are held at
exactly zero by the mask and nothing else is frozen.  The reference rewinds biases by aliasing
the stored :math:`\theta_0`, which Adam then modifies; here :math:`\theta_0` is an untouched copy.  The
reference's test loader drops the last 40 test images; here every test image is scored.

Added (Frankle & Carbin's protocol and controls):

* a **validation set** of ``n_val`` class-balanced training images, fixed for the chapter and
  disjoint from every training subset; it is scored ``checkpoints`` times per epoch and the
  reported accuracy is the test accuracy at the minimum validation loss (*early stopping*); the
  reference's metric, the best test accuracy over the epochs, is kept and labelled as such;
* **seeds**: ``trials`` independent runs per training-set size; trial ``t`` uses the same
  streams at every ``N``, so the initialization and the controls' draws are shared and sizes are
  compared paired by seed;
* two **controls** at every pruning round, trained on the same minibatches as the ticket: the
  ticket's mask with a fresh random initialization (``reinit``), and a random mask with the
  ticket's layer-wise counts and the original initialization (``random_mask``).

The three networks of a round train as one computation
(:mod:`~winning_ticket.algorithms.stacked_lenet`), on ``$WT_DEVICE`` (else CUDA when available,
else the CPU; :func:`~winning_ticket.algorithms.stacked_lenet.default_device`).  One unit of work is one
(N, seed): its whole IMP sequence.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..algorithms import stacked_lenet as sl
from ..algorithms.mnist import balanced_subset, load_mnist, to_float
from ..algorithms.networks import ARCHS, reference_init
from ..algorithms.pruning import magnitude_prune, remaining_counts, rewind
from ..experiments import rules
from ..experiments.chapter import ChapterConfig, ChapterResult, ChapterSpec, SweepPlan, param, run_plans
from ..experiments.claims import Claim
from ..experiments.plotting import PALETTE, sequential_colors
from ..experiments.seeding import seed_sequence, torch_generator

ARMS = ("ticket", "reinit", "random_mask")
"""The winning ticket, and its two controls (trained only at sizes listed in ``control_N``)."""
MODERATE_BAND = (20.0, 60.0)
"""Remaining weights (%) that count as *moderate* pruning: rounds 3 to 7 at a 20% rate (51% to 21%)."""
SPARSE_ROUNDS = 2
"""The last this many rounds count as *over-pruned* (8.6% and 6.9% remaining at 12 rounds of 20%)."""
RAREST_CLASS = 5_421
"""Training images of MNIST's rarest digit (5): a class-balanced subset has at most 10 times this, less the validation share."""
METRICS = {"es_accuracy": "test accuracy at the validation-chosen checkpoint (early stopping)",
           "best_accuracy": "best test accuracy over the epochs (the reference repository's metric)",
           "final_accuracy": "test accuracy after the last epoch"}
"""The accuracies a run reports."""


@dataclass(frozen=True)
class MNISTIMPConfig(ChapterConfig):
    arch: str = param("lenet5", "network (classic LeNet-5, or the reference's Conv-2 'LeNet5')", choices=tuple(ARCHS))
    N_values: tuple[int, ...] = param((10_000, 20_000, 30_000, 40_000), "training-set sizes", low=10, high=55_000,
                                      item="N")
    control_N: tuple[int, ...] = param((10_000, 20_000, 30_000, 40_000),
                                       "sizes that also train both controls at every round", low=10, high=55_000,
                                       item="N", min_len=0)
    rounds: int = param(12, "pruning rounds", low=1)
    rate: float = param(0.2, "fraction of remaining weights pruned per round and layer", low=0.0, high=1.0,
                        low_open=True, high_open=True)
    epochs: int = param(100, "epochs per round", low=1)
    lr: float = param(1.2e-3, "Adam learning rate", low=0.0, low_open=True)
    weight_decay: float = param(1e-4, "Adam weight decay", low=0.0)
    batch_size: int = param(60, "minibatch size", low=1)
    n_val: int = param(5_000, "validation images held out of the 60,000 training images", low=10, high=10_000)
    checkpoints: int = param(2, "validation checkpoints per epoch", low=1, high=10)
    n_test: int = param(10_000, "test images", low=1, high=10_000)
    trials: int = param(5, "seeds per N", low=1)
    workers: int = param(2, "parallel processes", low=1)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(N_values=(1000, 2000), control_N=(1000,), rounds=3, epochs=1, n_val=500, n_test=1000,
                      trials=2, workers=1),
        "book": dict(epochs=5, trials=1, control_N=(10_000,), checkpoints=1),
        "evidence": dict(epochs=5, trials=5, control_N=(10_000, 40_000), checkpoints=1),
    }

    def validate(self) -> None:
        """``control_N`` must be among ``N_values``; class-balanced training sets must fit beside the
        validation set (MNIST's rarest digit, 5, has :data:`RAREST_CLASS` training images)."""
        extra = sorted(set(self.control_N) - set(self.N_values))
        if extra:
            raise ValueError(f"control_N = {self.control_N}: {extra} not in N_values {self.N_values}")
        most = 10 * (RAREST_CLASS - -(-self.n_val // 10))
        if max(self.N_values) > most:
            raise ValueError(f"N_values: {max(self.N_values)} class-balanced training images do not fit beside "
                             f"n_val = {self.n_val} validation images (at most {most}: digit 5 has {RAREST_CLASS})")


# --- data -----------------------------------------------------------------------------------------


def validation_split(labels: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation indices, the rest): a class-balanced validation set of ``n_val`` of the training
    images, the same for every size and seed of the chapter (stream ``(seed, 0)``; with the trials'
    seeds keyed ``(seed, trial)`` that is trial 0's root, from which the task never draws: it uses
    only the sub-streams ``(seed, trial, ...)``)."""
    val = balanced_subset(labels, n_val, seed_sequence(seed, 0))
    rest = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return val, rest


def training_subset(labels: np.ndarray, pool: np.ndarray, N: int, ss) -> np.ndarray:
    """A class-balanced subset of ``N`` indices from ``pool`` (the images outside the validation set)."""
    return pool[balanced_subset(labels[pool], N, seed_sequence(ss, 0))]


def _tensors(images, labels, device=None):
    return (torch.from_numpy(to_float(images)).to(device), torch.from_numpy(labels.astype(np.int64)).to(device))


def random_masks(masks: Mapping[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random masks with the same number of kept entries as ``masks``, tensor by tensor (layer-wise sparsity)."""
    out = {}
    for n, m in masks.items():
        keep = torch.zeros(m.numel(), dtype=torch.bool)
        keep[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = True
        out[n] = keep.reshape(m.shape)
    return out


# --- one unit of work ----------------------------------------------------------------------------


def imp_mnist_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """IMP at one training-set size and seed: ``rounds + 1`` rounds, each training the ticket and,
    when ``controls``, its two controls as one stack; one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [row for ss, t in zip(seeds, trials) for row in _imp_one(params, ss, t)]
    finally:
        torch.set_num_threads(threads)


def _init(arch: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    model = reference_init(ARCHS[arch](), generator)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _imp_one(params: Mapping[str, Any], ss, trial: int) -> list[dict]:
    data = load_mnist()
    labels = data["train_labels"]
    val_idx, pool = validation_split(labels, params["n_val"], params["split_seed"])
    idx = training_subset(labels, pool, params["N"], ss)
    device = sl.default_device()  # the networks train where the images are; IMP's state stays on the CPU
    train = _tensors(data["train_images"][idx], labels[idx], device)
    validation = _tensors(data["train_images"][val_idx], labels[val_idx], device)
    test = _tensors(data["test_images"][: params["n_test"]], data["test_labels"][: params["n_test"]], device)
    init = _init(params["arch"], torch_generator(ss, 1))  # theta_0, never modified
    masks = {n: torch.ones_like(t, dtype=torch.bool) for n, t in init.items()}  # biases: always kept
    weights = list(sl.WEIGHTS)
    train_kw = dict(epochs=params["epochs"], lr=params["lr"], weight_decay=params["weight_decay"],
                    batch_size=params["batch_size"])
    rows = []
    for k in range(params["rounds"] + 1):
        arms = [("ticket", rewind(init, masks), masks)]
        if params["controls"] and k > 0:
            fresh = _init(params["arch"], torch_generator(ss, 3, k))
            arms.append(("reinit", rewind(fresh, masks), masks))
            rmask = {**masks, **random_masks({n: masks[n] for n in weights}, torch_generator(ss, 4, k))}
            arms.append(("random_mask", rewind(init, rmask), rmask))
        stack_masks = {n: torch.stack([a[2][n] for a in arms]) for n in weights}
        rec = sl.train_early_stopping(sl.stack([a[1] for a in arms]), stack_masks, train, validation, test,
                                      per_epoch=params["checkpoints"], generator=torch_generator(ss, 2, k),
                                      **train_kw)
        total = sum(masks[n].numel() for n in weights)
        for s, (arm, _, m) in enumerate(arms):
            best = int(torch.argmax(rec.test_accuracy[:, s]))
            stop = int(rec.stop[s])
            rows.append(dict(
                N=params["N"], trial=trial, round=k, arm=arm,
                remaining=100.0 * sum(int(m[n].sum()) for n in weights) / total,
                es_accuracy=float(rec.stop_test_accuracy[s]), es_epoch=float(rec.epoch[stop]),
                es_val_loss=float(rec.val_loss[stop, s]), es_val_accuracy=float(rec.val_accuracy[stop, s]),
                best_accuracy=float(rec.test_accuracy[best, s]), best_epoch=best + 1,
                final_accuracy=float(rec.test_accuracy[-1, s]),
                diverged=not bool(torch.isfinite(rec.val_loss[-1, s])),
                **{f"kept_{n}": float(m[n].float().mean()) for n in weights}))
        if k < params["rounds"]:
            ticket = {n: rec.trained[n][0] for n in weights}
            masks = {**masks, **magnitude_prune(ticket, {n: masks[n] for n in weights}, params["rate"], "layer")}
    return rows


# --- the chapter -----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class MNISTIMPResult(ChapterResult):
    """IMP on MNIST: ``runs`` has one row per (N, trial, round, arm)."""

    TABLES: ClassVar[tuple[str, ...]] = ("runs",)
    config: MNISTIMPConfig
    runs: pd.DataFrame


def sweeps(config: MNISTIMPConfig) -> list[SweepPlan]:
    """One task per N (largest first, so two workers finish together); one seed per unit.

    Trial seeds depend on the trial only (``seed_keys=()``): trial ``t`` has the same
    initialization and control draws at every N (its subsets and minibatch orders, drawn over sets
    of different sizes, differ).  The audit re-executes a unit's first two rounds.
    """
    c = config
    tasks = tuple(dict(arch=c.arch, N=N, controls=N in c.control_N, rounds=c.rounds, rate=c.rate, epochs=c.epochs,
                       lr=c.lr, weight_decay=c.weight_decay, batch_size=c.batch_size, n_val=c.n_val,
                       checkpoints=c.checkpoints, n_test=c.n_test, split_seed=c.seed)
                  for N in sorted(c.N_values, key=lambda N: -N * (3 if N in c.control_N else 1)))
    return [SweepPlan(f"imp-mnist-{c.profile}", imp_mnist_task, tasks, c.trials, c.seed, seed_keys=(),
                      trials_per_unit=1, audit_prefix=("rounds", 1, "round"))]


def run(config: MNISTIMPConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> MNISTIMPResult:
    """Every (N, seed) unit, in ``config.workers`` processes unless an executor is given; cached per unit."""
    own = None
    if executor is None and config.workers > 1:
        own = executor = ProcessPoolExecutor(config.workers)
    try:
        result = run_plans(sweeps(config), MNISTIMPResult, config, executor=executor, cache_dir=cache_dir,
                           progress=progress)
    finally:
        if own is not None:
            own.shutdown()
    result.runs = result.runs.sort_values(["N", "trial", "round", "arm"]).reset_index(drop=True)
    return result


def _pivot(runs: pd.DataFrame, metric: str, arm: str = "ticket") -> pd.DataFrame:
    """``metric`` of one arm as a table: index (N, trial), columns round."""
    r = runs[runs["arm"] == arm]
    return r.pivot_table(index=["N", "trial"], columns="round", values=metric, aggfunc="first")


def remaining_by_round(config: MNISTIMPConfig) -> pd.Series:
    """Remaining weights (%) after each round, from the exact per-layer counts of LeNet-5."""
    sizes = [p.numel() for n, p in ARCHS[config.arch]().named_parameters() if n.endswith("weight")]
    counts = np.array([remaining_counts(s, config.rate, config.rounds) for s in sizes]).sum(0)
    return pd.Series(100.0 * counts / counts[0], index=pd.RangeIndex(config.rounds + 1, name="round"))


def moderate_rounds(config: MNISTIMPConfig) -> list[int]:
    """The rounds whose remaining fraction lies in :data:`MODERATE_BAND`."""
    rem = remaining_by_round(config)
    return [int(k) for k, v in rem.items() if k > 0 and MODERATE_BAND[0] <= v <= MODERATE_BAND[1]]


def sparse_rounds(config: MNISTIMPConfig) -> list[int]:
    """The last :data:`SPARSE_ROUNDS` rounds, unless moderate (with few rounds the two would overlap)."""
    mid = set(moderate_rounds(config))
    return [k for k in range(max(1, config.rounds - SPARSE_ROUNDS + 1), config.rounds + 1) if k not in mid]


def summary(result: MNISTIMPResult, metric: str = "es_accuracy") -> pd.DataFrame:
    """Per (N, arm, round): remaining %, mean ``metric`` over seeds with its 95% t-interval, and the
    number of seeds (``metric`` may be any numeric column, e.g. ``es_epoch``)."""
    rows = []
    for (N, arm, k), g in result.runs.groupby(["N", "arm", "round"]):
        mean, lo, hi = rules.mean_interval(g[metric])
        rows.append(dict(N=N, arm=arm, round=k, remaining=g["remaining"].iloc[0], mean=mean, low=lo, high=hi,
                         seeds=int(g[metric].notna().sum())))
    return pd.DataFrame(rows).set_index(["N", "arm", "round"])


def paired_vs_dense(result: MNISTIMPResult, metric: str = "es_accuracy") -> pd.DataFrame:
    """Per (N, round >= 1): the ticket's ``metric`` minus the dense network's, paired by seed: mean and
    95% t-interval over seeds (the curve of the figure's panel (b))."""
    rows = []
    for N, p in _pivot(result.runs, metric).groupby(level="N"):
        for k in p.columns[1:]:
            mean, lo, hi = rules.mean_interval(p[k] - p[0])
            rows.append(dict(N=N, round=k, mean=mean, low=lo, high=hi, seeds=int((p[k] - p[0]).notna().sum())))
    return pd.DataFrame(rows).set_index(["N", "round"])


def _band_mean(p: pd.DataFrame, rounds: list[int]) -> pd.Series:
    # a seed missing one of the rounds gets NaN (and drops out of the pairs), never a mean over fewer rounds
    return p.reindex(columns=rounds).mean(axis=1, skipna=False)


CLAIM_STATEMENTS = {
    "moderate-pruning-raises-accuracy": "Moderate pruning raises the test accuracy above the dense network's (paper Fig. 7).",
    "over-pruning-lowers-accuracy": "Over-pruning lowers the accuracy below the dense network's.",
    "more-data-higher-accuracy": "A larger training set gives a higher accuracy at every sparsity.",
    "ticket-beats-reinit": "At moderate sparsity the winning ticket beats the same mask with a fresh random "
                           "initialization (the lottery-ticket control).",
    "ticket-beats-random-mask": "At moderate sparsity the winning ticket beats a random mask with the ticket's "
                                "layer-wise sparsity (the lottery-ticket control).",
    "tickets-stop-earlier": "Winning tickets reach their early-stopping point sooner than the dense network "
                            "(Frankle & Carbin).",
}
"""The claims of the chapter, by name."""


def check_claims(result: MNISTIMPResult) -> list[Claim]:
    """The claims of Fig. 7 and the controls, judged on the early-stopping test accuracy.

    See :func:`claims_for_metric` for the rules; ``claims_for_metric(result, "best_accuracy")``
    judges the reference repository's metric instead.
    """
    return claims_for_metric(result, "es_accuracy")


def claims_for_metric(result: MNISTIMPResult, metric: str) -> list[Claim]:
    """The claims judged on ``metric`` (one of :data:`METRICS`).  The seed is the unit; every
    interval is a Student-t interval over seeds, at the Bonferroni level for the claim's number of
    comparisons (:func:`~winning_ticket.experiments.rules.bonferroni_level`); a claim made "at every"
    point is SUPPORTED when every point is, NOT SUPPORTED when one point's interval lies on the
    wrong side, else INCONCLUSIVE; fewer than 5 seeds make a point INCONCLUSIVE.

    * ``moderate-pruning-raises-accuracy``: at every N, the ticket's accuracy averaged over the
      moderate rounds (:data:`MODERATE_BAND`) minus the dense accuracy, per seed, is above 0.
    * ``over-pruning-lowers-accuracy``: at every N, the accuracy averaged over the last
      :data:`SPARSE_ROUNDS` rounds minus the dense accuracy is below 0.
    * ``more-data-higher-accuracy``: at every round and every pair of neighbouring sizes, the larger
      size's accuracy minus the smaller's (paired by seed) is above 0.
    * ``ticket-beats-reinit``: at every size with controls, the ticket minus the same mask with a
      fresh initialization, averaged over the moderate rounds, is above 0.
    * ``ticket-beats-random-mask``: the same against a random mask of the ticket's layer-wise sparsity.
    * ``tickets-stop-earlier``: at every N, the early-stopping epoch averaged over the moderate
      rounds minus the dense network's is below 0 (winning tickets learn faster).
    """
    if metric not in METRICS:
        raise ValueError(f"metric = {metric!r}; allowed: {', '.join(map(repr, METRICS))}")
    c = result.config
    runs = result.runs
    mid, sparse = moderate_rounds(c), sparse_rounds(c)
    rem = remaining_by_round(c)
    if not mid or not sparse:
        reason = (f"{c.rounds} rounds at rate {c.rate:g} leave no round in the moderate band {MODERATE_BAND} % "
                  f"(moderate: {mid}) or none after it (over-pruned: {sparse})")
        return [Claim(name=n, statement=st, holds=None, statistic=reason, rule="needs moderate and over-pruned rounds")
                for n, st in CLAIM_STATEMENTS.items()]
    p = _pivot(runs, metric)
    Ns = sorted(runs["N"].unique())
    where = f"{metric} ({METRICS[metric]})"

    def per_N(values: dict, *, lower=None, upper=None) -> rules.Decision:
        level = rules.bonferroni_level(len(values))
        return rules.at_every({f"N={N}": rules.paired_difference(np.asarray(a), np.asarray(b), lower=lower,
                                                                 upper=upper, level=level)
                               for N, (a, b) in values.items()})

    def vs_dense(rounds):
        return {N: (_band_mean(p.loc[N], rounds).to_numpy(), p.loc[N][0].to_numpy()) for N in Ns}

    claims = [
        per_N(vs_dense(mid), lower=0.0).claim(
            "moderate-pruning-raises-accuracy", CLAIM_STATEMENTS["moderate-pruning-raises-accuracy"],
            f"at every N, mean {metric} over rounds {mid[0]}-{mid[-1]} ({rem[mid[0]]:.0f}% to {rem[mid[-1]]:.0f}% "
            f"remaining, the rounds in the band {MODERATE_BAND[1]:.0f}-{MODERATE_BAND[0]:.0f}%) minus round 0, "
            f"paired by seed, interval above 0 "
            f"(Bonferroni over {len(Ns)} sizes)", "pruned - dense", ".4f"),
        per_N(vs_dense(sparse), upper=0.0).claim(
            "over-pruning-lowers-accuracy", CLAIM_STATEMENTS["over-pruning-lowers-accuracy"],
            f"at every N, mean {metric} over rounds {sparse[0]}-{sparse[-1]} minus round 0, paired by seed, "
            f"interval below 0 (Bonferroni over {len(Ns)} sizes)", "over-pruned - dense", ".4f"),
    ]
    pairs = list(zip(Ns[:-1], Ns[1:]))
    if pairs:
        rounds = list(p.columns)
        level = rules.bonferroni_level(len(pairs) * len(rounds))
        points = {}
        for a, b in pairs:
            both = p.loc[a].index.intersection(p.loc[b].index)
            for k in rounds:
                points[f"{b} vs {a}, round {k}"] = rules.paired_difference(
                    p.loc[b].loc[both, k].to_numpy(), p.loc[a].loc[both, k].to_numpy(), lower=0.0, level=level)
        claims.append(rules.at_every(points).claim(
            "more-data-higher-accuracy", CLAIM_STATEMENTS["more-data-higher-accuracy"],
            f"at every round and every pair of neighbouring N, larger minus smaller, paired by seed, interval "
            f"above 0 (Bonferroni over {len(points)} comparisons)", "larger N - smaller N", ".4f"))
    with_controls = sorted(set(runs.loc[runs["arm"] != "ticket", "N"]))
    for arm, name in (("reinit", "ticket-beats-reinit"), ("random_mask", "ticket-beats-random-mask")):
        q = _pivot(runs, metric, arm)
        values = {N: (_band_mean(p.loc[N].loc[q.loc[N].index], mid).to_numpy(), _band_mean(q.loc[N], mid).to_numpy())
                  for N in with_controls}
        if not values:
            claims.append(Claim(name=name, statement=CLAIM_STATEMENTS[name], holds=None,
                                statistic="no size trained the controls (control_N is empty)",
                                rule="needs control runs"))
            continue
        claims.append(per_N(values, lower=0.0).claim(
            name, CLAIM_STATEMENTS[name],
            f"at every N with controls, mean {metric} over rounds {mid[0]}-{mid[-1]}, ticket minus control, paired "
            f"by seed, interval above 0 (Bonferroni over {len(values)} sizes)", "ticket - control", ".4f"))
    e = _pivot(runs, "es_epoch")
    claims.append(per_N({N: (_band_mean(e.loc[N], mid).to_numpy(), e.loc[N][0].to_numpy()) for N in Ns},
                        upper=0.0).claim(
        "tickets-stop-earlier", CLAIM_STATEMENTS["tickets-stop-earlier"],
        f"at every N, early-stopping epoch averaged over rounds {mid[0]}-{mid[-1]} minus round 0, paired by seed, "
        f"interval below 0 (Bonferroni over {len(Ns)} sizes)", "epochs earlier", ".3f"))
    return [cl if cl.name == "tickets-stop-earlier" else dataclasses.replace(cl, statistic=f"{where}: {cl.statistic}")
            for cl in claims]


# --- figures ---------------------------------------------------------------------------------------


def _remaining_axis(ax):
    ax.set_xscale("log")
    ax.set_xlim(110, 5)
    ax.set_xticks([100, 50, 20, 10, 5])
    ax.set_xticklabels(["100", "50", "20", "10", "5"])
    ax.set_xlabel("remaining weights (% of the dense network, log scale)")
    ax.axvspan(MODERATE_BAND[0], MODERATE_BAND[1], color="0.92", zorder=0)


def plot_figure7(result: MNISTIMPResult, metric: str = "es_accuracy"):
    """(a) The ticket's test accuracy against remaining weights, one curve per N, mean over seeds with
    95% intervals; (b) the same minus the dense accuracy, paired by seed (the claims' statistic)."""
    s = summary(result, metric).xs("ticket", level="arm").reset_index()
    d = paired_vs_dense(result, metric).reset_index()
    rem = s.groupby("round")["remaining"].first()
    Ns = sorted(s["N"].unique())
    colors = sequential_colors(len(Ns))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
    for color, N in zip(colors, Ns):
        g = s[s["N"] == N]
        axes[0].plot(g["remaining"], 100 * g["mean"], marker="o", ms=3.5, color=color, label=f"N = {N:,}")
        axes[0].fill_between(g["remaining"], 100 * g["low"], 100 * g["high"], color=color, alpha=0.2, lw=0)
        h = d[d["N"] == N]
        x = rem.loc[h["round"]].to_numpy()
        axes[1].plot(x, 100 * h["mean"], marker="o", ms=3.5, color=color, label=f"N = {N:,}")
        axes[1].fill_between(x, 100 * h["low"], 100 * h["high"], color=color, alpha=0.2, lw=0)
    axes[1].axhline(0, color="0.3", lw=0.8)
    seeds = int(s["seeds"].min())
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].set_ylabel("pruned minus dense (percentage points)")
    axes[0].set_title(f"(a) {METRICS[metric].split(' (')[0]}, mean of {seeds} seeds, 95% CI", loc="left", fontsize=9)
    axes[1].set_title("(b) paired by seed; grey band: moderate pruning", loc="left", fontsize=9)
    for ax in axes:
        _remaining_axis(ax)
    axes[0].legend(fontsize=8)
    return fig


def plot_controls(result: MNISTIMPResult, metric: str = "es_accuracy"):
    """At each size with controls: the ticket, the same mask re-initialized and a random mask (mean over
    seeds, 95% intervals), with the dense accuracy as a line."""
    s = summary(result, metric).reset_index()
    Ns = sorted(s.loc[s["arm"] != "ticket", "N"].unique())
    if not Ns:
        raise ValueError("no size trained the controls (control_N is empty)")
    fig, axes = plt.subplots(1, len(Ns), figsize=(5.5 * len(Ns), 4.0), sharey=False, squeeze=False)
    labels = {"ticket": "winning ticket", "reinit": "same mask, fresh init", "random_mask": "random mask"}
    for ax, N in zip(axes[0], Ns):
        for color, arm in zip(PALETTE, ARMS):
            g = s[(s["N"] == N) & (s["arm"] == arm) & (s["round"] > 0)]
            ax.plot(g["remaining"], 100 * g["mean"], marker="os^"[ARMS.index(arm)], ms=3.5, color=color,
                    label=labels[arm])
            ax.fill_between(g["remaining"], 100 * g["low"].clip(0, 1), 100 * g["high"].clip(0, 1), color=color,
                            alpha=0.2, lw=0)  # an accuracy interval stops at 0% and 100%
        dense = s[(s["N"] == N) & (s["arm"] == "ticket") & (s["round"] == 0)]["mean"].iloc[0]
        ax.axhline(100 * dense, color="0.3", lw=0.8, ls="--", label="dense")
        _remaining_axis(ax)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"N = {N:,}", loc="left", fontsize=9)
    axes[0][0].legend(fontsize=8)
    return fig


def plot_early_stopping(result: MNISTIMPResult):
    """Early-stopping epoch (minimum validation loss) against remaining weights: the ticket at every N
    and the controls where they ran; mean over seeds with 95% intervals."""
    s = summary(result, "es_epoch").reset_index()  # mean, low, high: of the early-stopping epoch
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    Ns = sorted(s["N"].unique())
    colors = dict(zip(Ns, sequential_colors(len(Ns))))
    top = result.config.epochs  # the stopping point is censored at the last epoch
    for N, color in colors.items():
        g = s[(s["N"] == N) & (s["arm"] == "ticket")]
        ax.plot(g["remaining"], g["mean"], marker="o", ms=3.5, color=color, label=f"ticket, N = {N:,}")
        ax.fill_between(g["remaining"], g["low"].clip(0, top), g["high"].clip(0, top), color=color, alpha=0.15, lw=0)
    for arm, ls in (("reinit", "--"), ("random_mask", ":")):
        for N in sorted(s.loc[s["arm"] == arm, "N"].unique()):
            g = s[(s["N"] == N) & (s["arm"] == arm)]
            ax.plot(g["remaining"], g["mean"], ls=ls, color=colors[N], lw=1.2,
                    label=f"{arm.replace('_', ' ')}, N = {N:,} (mean)")
    _remaining_axis(ax)
    ax.set_ylabel("early-stopping point (epochs)")
    ax.legend(fontsize=7, ncol=2)
    return fig


CHAPTER = ChapterSpec("imp_mnist", "Lottery tickets on MNIST: LeNet-5", MNISTIMPConfig, MNISTIMPResult, run, check_claims,
                      {"Fig. 7": plot_figure7, "controls": plot_controls, "early stopping": plot_early_stopping},
                      sweeps=sweeps)
