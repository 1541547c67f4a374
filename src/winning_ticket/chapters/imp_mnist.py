r"""The IMP chapter, part 2: LeNet-5 on real MNIST (paper Fig. 7).

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

Reported per round: the best test accuracy over the epochs (the reference's metric, a selection
on the test set) and the accuracy after the last epoch.  Each training-set size is one unit of
work; units run in parallel processes with one torch thread each (two threads per process make
these small networks 20-100 times slower on a busy 2-core machine) and are cached on disk.
"""

from __future__ import annotations

from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from ..experiments.claims import Claim
from ..algorithms.mnist import balanced_subset, load_mnist, to_float
from ..experiments.seeding import seed_sequence, torch_generator
from ..algorithms.networks import ARCHS, accuracy, reference_init
from ..experiments.plotting import sequential_colors
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec
from ..algorithms.pruning import run_imp
from ..experiments.sweep import run_sweep


@dataclass(frozen=True)
class MNISTIMPConfig(ChapterConfig):
    arch: str = param("lenet5", "network (classic LeNet-5, or the reference's Conv-2 'LeNet5')", choices=tuple(ARCHS))
    N_values: tuple[int, ...] = param((10_000, 20_000, 30_000, 40_000), "training-set sizes", low=10, high=60_000,
                                      item="N")
    rounds: int = param(12, "pruning rounds", low=1)
    rate: float = param(0.2, "fraction of remaining weights pruned per round and layer", low=0.0, high=1.0,
                        low_open=True, high_open=True)
    epochs: int = param(100, "epochs per round", low=1)
    lr: float = param(1.2e-3, "Adam learning rate", low=0.0, low_open=True)
    weight_decay: float = param(1e-4, "Adam weight decay", low=0.0)
    batch_size: int = param(60, "minibatch size", low=1)
    n_test: int = param(10_000, "test images", low=1, high=10_000)
    trials: int = param(1, "seeds per N", low=1)
    workers: int = param(2, "parallel processes", low=1)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(N_values=(1000, 2000, 3000, 4000), epochs=2, n_test=2000, workers=1),
        "book": dict(epochs=5),
    }



def _weight_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if n.endswith("weight")]


def imp_mnist_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """IMP at one training-set size: ``rounds + 1`` trainings of ``epochs`` epochs each, one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [row for ss, t in zip(seeds, trials) for row in _imp_one(params, ss, t)]
    finally:
        torch.set_num_threads(threads)


def _imp_one(params: Mapping[str, Any], ss, trial: int) -> list[dict]:
    data = load_mnist()
    idx = balanced_subset(data["train_labels"], params["N"], seed_sequence(ss, 0))
    X = torch.from_numpy(to_float(data["train_images"][idx]))
    y = torch.from_numpy(data["train_labels"][idx].astype(np.int64))
    Xt = torch.from_numpy(to_float(data["test_images"][: params["n_test"]]))
    yt = torch.from_numpy(data["test_labels"][: params["n_test"]].astype(np.int64))
    g = torch_generator(ss, 1)
    model = reference_init(ARCHS[params["arch"]](), g)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}  # theta_0, never aliased
    weights = set(_weight_names(model))
    history: list[dict] = []

    def train(start, masks, k):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(start[n])
        opt = torch.optim.Adam(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
        shuffle = torch_generator(ss, 2, k)
        named = dict(model.named_parameters())
        accs = []
        for _ in range(params["epochs"]):
            model.train()
            perm = torch.randperm(len(X), generator=shuffle)
            for s in range(0, len(X), params["batch_size"]):
                b = perm[s:s + params["batch_size"]]
                opt.zero_grad()
                nn.functional.cross_entropy(model(X[b]), y[b]).backward()
                for n in weights:  # pruned weights get no gradient (not: every weight below 1e-6)
                    named[n].grad.mul_(masks[n])
                opt.step()
                with torch.no_grad():
                    for n in weights:  # and stay exactly zero
                        named[n].mul_(masks[n])
            accs.append(accuracy(model, Xt, yt))
        history.append(dict(best=max(accs), final=accs[-1], best_epoch=int(np.argmax(accs)) + 1))
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    imp = run_imp(init, train, params["rounds"], params["rate"], "layer",
                  prunable={n: n in weights for n in init}, keep_trained=False)
    rows = []
    for k, (h, masks) in enumerate(zip(history, imp.masks)):
        layer = {f"kept_{n}": float(masks[n].float().mean()) for n in sorted(weights)}
        rows.append(dict(N=params["N"], trial=trial, round=k, remaining=float(imp.remaining[k]) * 100,
                         best_accuracy=h["best"], final_accuracy=h["final"], best_epoch=h["best_epoch"], **layer))
    return rows


@dataclass(kw_only=True)
class MNISTIMPResult(ChapterResult):
    """IMP on MNIST: ``runs`` has one row per (N, trial, round); ``computed``/``cached`` count units of work."""

    TABLES: ClassVar[tuple[str, ...]] = ("runs",)
    config: MNISTIMPConfig
    runs: pd.DataFrame
    computed: int
    cached: int


def run(config: MNISTIMPConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> MNISTIMPResult:
    """Run IMP for every N (largest first, so two workers finish together); results cached per N and trial."""
    c = config
    tasks = [dict(arch=c.arch, N=N, rounds=c.rounds, rate=c.rate, epochs=c.epochs, lr=c.lr,
                  weight_decay=c.weight_decay, batch_size=c.batch_size, n_test=c.n_test)
             for N in sorted(c.N_values, reverse=True)]
    own = None
    if executor is None and c.workers > 1:
        own = executor = ProcessPoolExecutor(c.workers)
    try:
        sweep = run_sweep(imp_mnist_task, tasks, c.trials, seed=c.seed, name=f"imp-mnist-{c.profile}",
                          trials_per_unit=1, executor=executor, cache_dir=cache_dir, progress=progress)
    finally:
        if own is not None:
            own.shutdown()
    runs = sweep.runs.sort_values(["N", "trial", "round"]).reset_index(drop=True)
    return MNISTIMPResult(config=c, runs=runs, seconds=sweep.seconds, computed=sweep.computed, cached=sweep.cached)


def summary(result: MNISTIMPResult) -> pd.DataFrame:
    """Per (N, round): remaining %, best-over-epochs and final test accuracy (means over trials)."""
    g = result.runs.groupby(["N", "round"])
    return pd.DataFrame({"remaining": g["remaining"].first(), "best_accuracy": g["best_accuracy"].mean(),
                         "final_accuracy": g["final_accuracy"].mean(), "best_epoch": g["best_epoch"].mean()})


def check_claims(result: MNISTIMPResult) -> list[Claim]:
    """The claims of Fig. 7, judged on each run's best test accuracy over epochs.

    See :func:`claims_for_metric` for the rules; ``claims_for_metric(result, "final_accuracy")``
    judges the accuracy after the last epoch instead.
    """
    return claims_for_metric(result, "best_accuracy")


def claims_for_metric(result: MNISTIMPResult, metric: str) -> list[Claim]:
    """The claims of Fig. 7 judged on ``metric`` (``best_accuracy`` or ``final_accuracy``).

    * ``moderate-pruning-raises-accuracy``: for every N the best accuracy over the rounds
      exceeds the dense one and is reached at an intermediate round.
    * ``over-pruning-lowers-accuracy``: for every N the accuracy at the last round is below the peak.
    * ``more-data-higher-accuracy``: every N beats the next smaller N at every round.
    """
    if metric not in ("best_accuracy", "final_accuracy"):
        raise ValueError(f"metric = {metric!r}; allowed: 'best_accuracy', 'final_accuracy'")
    full = summary(result)
    s = full[metric].unstack("round")
    rounds = s.columns
    dense, last = s[rounds[0]], s[rounds[-1]]
    peak = s.max(axis=1)
    peak_round = s.idxmax(axis=1)
    rises = (peak > dense) & (peak_round > rounds[0]) & (peak_round < rounds[-1])
    falls = last < peak
    Ns = sorted(s.index)
    ordered = [(s.loc[b] > s.loc[a]).mean() for a, b in zip(Ns[:-1], Ns[1:])]
    ordered_all = all(bool((s.loc[b] > s.loc[a]).all()) for a, b in zip(Ns[:-1], Ns[1:]))
    return [
        Claim(
            name="moderate-pruning-raises-accuracy",
            statement="Moderate pruning first raises the test accuracy above the dense network's (paper Fig. 7).",
            holds=bool(rises.all()),
            statistic="peak - dense accuracy (at remaining %): " + ", ".join(
                f"N={N}: {peak[N] - dense[N]:+.4f} ({full['remaining'].loc[(N, peak_round[N])]:.0f}%)" for N in Ns),
            rule=f"for every N the best {metric.replace('_', ' ')} over rounds exceeds the dense one and is reached "
                 "at an intermediate round",
        ),
        Claim(
            name="over-pruning-lowers-accuracy",
            statement="Over-pruning then lowers the accuracy again.",
            holds=bool(falls.all()),
            statistic="last round - peak: " + ", ".join(f"N={N}: {last[N] - peak[N]:+.4f}" for N in Ns),
            rule="for every N the accuracy at the last round is below the peak",
        ),
        Claim(
            name="more-data-higher-accuracy",
            statement="A larger training set gives a higher accuracy at every sparsity.",
            holds=ordered_all,
            statistic="share of rounds where N beats the next smaller N: " + ", ".join(
                f"{b} vs {a}: {v:.2f}" for (a, b), v in zip(zip(Ns[:-1], Ns[1:]), ordered)),
            rule="every N beats the next smaller N at every round",
        ),
    ]


def plot_figure7(result: MNISTIMPResult):
    """Test accuracy against remaining weights, one curve per N: (a) best over epochs, (b) final."""
    c = result.config
    s = summary(result).reset_index()
    colors = sequential_colors(len(c.N_values))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.9), sharey=True)
    for ax, metric, title in zip(axes, ("best_accuracy", "final_accuracy"),
                                 ("(a) best over epochs (the reference's metric)", "(b) after the last epoch")):
        for color, N in zip(colors, sorted(c.N_values)):
            g = s[s["N"] == N]
            ax.plot(g["remaining"], g[metric], marker="o", ms=3.5, color=color, label=f"N = {N:,}")
        ax.set_xlim(102, 0)
        ax.set_xlabel("remaining weights (% of the dense network)")
        ax.set_title(title, loc="left")
    axes[0].set_ylabel("test accuracy (fraction, 10,000 images)" if c.n_test == 10_000 else
                       f"test accuracy (fraction, first {c.n_test:,} test images)")
    axes[0].legend(fontsize=8)
    return fig


CHAPTER = ChapterSpec("imp_mnist", "Lottery tickets on MNIST: LeNet-5", MNISTIMPConfig, MNISTIMPResult, run, check_claims,
                      {"Fig. 7": plot_figure7})
