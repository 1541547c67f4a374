r"""The Strong-tickets chapter: approximation by pruning alone (Pensia et al., 2020; Malach et al., 2020).

Two experiments.

* **Theory check**: random bias-free ReLU targets of width ``d`` and depth 2 and 3, approximated
  by pruning a random network twice as deep with :math:`2n` Uniform[-1, 1] candidate units per
  input (:func:`~winning_ticket.algorithms.subset_sum.prune_random_network`), by subset sum and by the
  single-unit baseline; the error is the supremum over the unit sphere
  (:func:`~winning_ticket.algorithms.subset_sum.sup_error`: random points plus projected gradient ascent, a
  lower estimate).
* **Experiment 1 of the official code on MNIST**: train the bias-free ``784-500-10`` target, then
  replace every weight :math:`w` by the best subset sum of :math:`n = c\lceil\log_2(1/\varepsilon)\rfloor`
  fresh random coefficients drawn from :math:`U[\min w, \max w]`, and compare accuracies and counts
  with the repository's table.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..experiments import rules
from ..experiments.claims import Claim, INCONCLUSIVE
from ..algorithms.mnist import balanced_subset, load_mnist, to_float
from ..experiments.seeding import numpy_rng, seed_sequence, torch_generator
from ..algorithms.networks import DEFAULT_CACHE, BiasFreeMLP, accuracy, cache_key, load_state, save_state_atomic, train_classifier
from ..experiments.plotting import PALETTE, label_axes
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec, SweepPlan, run_plans
from ..algorithms.subset_sum import prune_random_network, random_target, solve_subset_sum, sup_error

METHODS = ("subset_sum", "single_unit")
PAPER_TABLE = {"target accuracy": 0.9719, "approximation accuracy": 0.9719, "weights": 397_000,
               "total coefficients": 8_337_000, "remaining coefficients": 3_725_871}
"""The official repository's README table (Experiment 1)."""
WEIGHT_RATE_BAND = (-1.3, -0.7)
"""Per-weight error of the best subset sum: the slope of log2(median error) on n must lie in this band (theory: -1)."""
NETWORK_RATE_MAX = -0.3
"""Network sup error: the slope of log2(median sup error) on n must lie below this (at least 2^(-0.3 n))."""
SINGLE_UNIT_BAND = (-1.5, -0.5)
"""Single unit: the slope of log2(per-weight error) on log2(n) must lie in this band (theory: -1, error about 1/n)."""
WIDTH_EPS = 0.05
"""The sup error the width sweep asks for."""
WIDTH_SLOPE_MAX = 3.0
"""Logarithmic width factor: at most this many extra candidates per doubling of the target width."""
MIN_TARGETS = 5
"""Fewer random targets than this per depth (or width) and a claim is INCONCLUSIVE."""
N_MIN_FIT = 6
"""Rate fits use n >= this (smaller n are pre-asymptotic)."""


@dataclass(frozen=True)
class StrongConfig(ChapterConfig):
    width: int = param(8, "target width of the rate experiments", low=1)
    widths: tuple[int, ...] = param((4, 8, 16, 32), "target widths of the width sweep", low=1, item="width", min_len=2)
    depths: tuple[int, ...] = param((2, 3), "target depths", low=1, item="depth")
    n_values: tuple[int, ...] = param((2, 4, 6, 8, 10, 12, 14, 16, 18, 20), "random candidates per weight",
                                      low=1, high=20, item="n", min_len=3)
    trials: int = param(10, "random targets per depth", low=1)
    sup_samples: int = param(10_000, "points of the sup-error estimate", low=1)
    eps_grid: tuple[float, ...] = param((0.3, 0.1, 0.03, 0.01, 0.003, 0.001), "target errors ε", low=0.0,
                                        low_open=True, item="eps")
    mnist_hidden: int = param(500, "hidden units of the MNIST target", low=1)
    mnist_train: int = param(60_000, "MNIST training images", low=10, high=60_000)
    mnist_epochs: int = param(10, "training epochs of the MNIST target", low=1)
    mnist_lr: float = param(0.1, "SGD learning rate of the MNIST target", low=0.0, low_open=True)
    mnist_eps: float = param(0.01, "per-weight error ε of the MNIST replica", low=0.0, high=1.0,
                             low_open=True, high_open=True)
    mnist_c: int = param(3, "candidates factor c (n = c·log2(1/ε))", low=1)
    seed: int = param(2020, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(n_values=(4, 8, 12, 16, 20), trials=2, sup_samples=2000, mnist_hidden=32, mnist_train=6000,
                      mnist_epochs=1, widths=(4, 8)),
        "book": dict(trials=5, sup_samples=4000, widths=(4, 8, 16)),
        "evidence": dict(),
    }


    @property
    def mnist_n(self) -> int:
        """Coefficients per weight, ``int(c * round(log2(1 / eps)))`` as in the official script."""
        return int(self.mnist_c * round(math.log2(1 / self.mnist_eps)))


# --- theory check -------------------------------------------------------------------------------


def theory_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """One depth: every trial's target, pruned at every n by both methods."""
    widths = (params["width"],) * (params["depth"] + 1)
    rows = []
    for ss, t in zip(seeds, trials):
        target = random_target(widths, seed_sequence(ss, 0))
        n_weights = sum(W.size for W in target)
        for n in params["n_values"]:
            for m, method in enumerate(METHODS):
                layers = prune_random_network(target, n, seed_sequence(ss, 1, n), method)  # same random net
                errs = np.concatenate([L.errors.ravel() for L in layers])
                rows.append(dict(width=params["width"], depth=params["depth"], trial=t, n=n, method=method,
                                 sup_error=sup_error(target, layers, seed_sequence(ss, 2, n, m),
                                                     samples=params["sup_samples"]),
                                 weight_error_median=float(np.median(errs)), weight_error_max=float(errs.max()),
                                 kept=sum(L.kept for L in layers),
                                 random_params=sum(L.first.shape[0] + L.second.size for L in layers),
                                 target_weights=n_weights))
    return rows


def theory_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (depth, method, n): median and spread of the sup error, kept weights per target weight."""
    g = runs.groupby(["depth", "method", "n"])
    out = pd.DataFrame({"sup_error_median": g["sup_error"].median(), "sup_error_max": g["sup_error"].max(),
                        "weight_error_median": g["weight_error_median"].median(),
                        "kept_per_target_weight": (g["kept"].mean() / g["target_weights"].first())})
    out["random_params_per_target_weight"] = g["random_params"].first() / g["target_weights"].first()
    return out


def decay_slopes(runs: pd.DataFrame, n_min: int = 6) -> pd.DataFrame:
    """Least-squares slope of log10(median sup error) against n (n >= n_min), per depth and method."""
    s = theory_summary(runs).reset_index()
    s = s[s["n"] >= n_min]
    rows = []
    for (depth, method), g in s.groupby(["depth", "method"]):
        slope = np.polyfit(g["n"], np.log10(g["sup_error_median"]), 1)[0]
        rows.append(dict(depth=depth, method=method, log10_slope_per_unit=slope))
    return pd.DataFrame(rows).set_index(["depth", "method"])


def n_needed(runs: pd.DataFrame, eps_grid) -> pd.DataFrame:
    """Smallest n in the grid whose median sup error is at most eps (NaN: not reached in the grid)."""
    s = theory_summary(runs)["sup_error_median"]
    rows = []
    for (depth, method), g in s.groupby(level=["depth", "method"]):
        g = g.droplevel([0, 1])
        for eps in eps_grid:
            ok = g[g <= eps]
            rows.append(dict(depth=depth, method=method, eps=eps, n=float(ok.index.min()) if len(ok) else np.nan))
    return pd.DataFrame(rows)


# --- MNIST replica ------------------------------------------------------------------------------


def _mnist_tensors(config: StrongConfig):
    data = load_mnist()
    idx = np.arange(60_000) if config.mnist_train == 60_000 else \
        balanced_subset(data["train_labels"], config.mnist_train, seed_sequence(config.seed, 7))
    X = torch.from_numpy(to_float(data["train_images"][idx], normalize=False))  # the script: ToTensor only
    y = torch.from_numpy(data["train_labels"][idx].astype(np.int64))
    Xt = torch.from_numpy(to_float(data["test_images"], normalize=False))
    yt = torch.from_numpy(data["test_labels"].astype(np.int64))
    return X, y, Xt, yt


def mnist_target(config: StrongConfig, X: torch.Tensor, y: torch.Tensor, cache_dir=DEFAULT_CACHE,
                 progress: bool | None = None):
    """The bias-free target trained on ``X, y`` (cached atomically, keyed by its training parameters)."""
    c = config
    key = cache_key(kind="strong-target", hidden=c.mnist_hidden, train=c.mnist_train, epochs=c.mnist_epochs,
                    lr=c.mnist_lr, seed=c.seed, torch=torch.__version__.split("+")[0])
    path = None if cache_dir is None else Path(cache_dir) / f"strong-target-{key}.pt"
    model = BiasFreeMLP((784, c.mnist_hidden, 10), generator=torch_generator(c.seed, 8, bits=31))
    cached = load_state(path) if path is not None else None
    if cached is not None:
        model.load_state_dict(cached[0])
        return model, cached[1]["seconds"], True
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # CPU matrix products sum in a thread-dependent order; one thread makes the
    start = time.perf_counter()  # trained target the same on every machine (as the MNIST IMP runs do)
    try:
        train_classifier(model, X, y, epochs=c.mnist_epochs, lr=c.mnist_lr, momentum=0.9, weight_decay=5e-4,
                         batch_size=64, seed=c.seed, progress=progress)
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    if path is not None:
        save_state_atomic(path, model.state_dict(), {"seconds": seconds})
    return model, seconds, False


def approximate_weights(weights: list[np.ndarray], n: int, seed) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Best subset sums of ``n`` fresh U[min w, max w] coefficients for every weight; returns (w_hat, kept counts)."""
    lo = min(float(W.min()) for W in weights)
    hi = max(float(W.max()) for W in weights)
    rng = numpy_rng(seed)
    approx, kept = [], []
    for W in weights:
        coeffs = rng.uniform(lo, hi, size=(W.size, n))
        sel, err = solve_subset_sum(coeffs, W.ravel())
        approx.append((W.ravel() - err).reshape(W.shape))
        kept.append(sel.sum(axis=1).reshape(W.shape))
    return approx, kept


def run_mnist_replica(config: StrongConfig, cache_dir=DEFAULT_CACHE, progress: bool | None = None) -> dict:
    """Experiment 1 of Pensia et al.: train the target, approximate every weight by subset sum, compare accuracies."""
    c = config
    X, y, Xt, yt = _mnist_tensors(c)  # read and checked once
    model, train_seconds, cached = mnist_target(c, X, y, cache_dir, progress)
    weights = model.weight_matrices()
    start = time.perf_counter()
    approx, kept = approximate_weights(weights, c.mnist_n, seed_sequence(c.seed, 9))
    solve_seconds = time.perf_counter() - start
    approx_model = BiasFreeMLP((784, c.mnist_hidden, 10))
    with torch.no_grad():
        for lin, W in zip([m for m in approx_model if isinstance(m, torch.nn.Linear)], approx):
            lin.weight.copy_(torch.from_numpy(W.astype(np.float32)))
    errs = np.concatenate([(W - A).ravel() for W, A in zip(weights, approx)])
    n_weights = int(sum(W.size for W in weights))
    return dict(
        target_accuracy=accuracy(model, Xt, yt), approx_accuracy=accuracy(approx_model, Xt, yt),
        weights=n_weights, coefficients_per_weight=c.mnist_n, total_coefficients=n_weights * c.mnist_n,
        remaining_coefficients=int(sum(k.sum() for k in kept)), max_weight_error=float(np.abs(errs).max()),
        within_eps=float(np.mean(np.abs(errs) <= c.mnist_eps)), small_weights=float(np.mean(
            np.abs(np.concatenate([W.ravel() for W in weights])) <= c.mnist_eps)),
        train_seconds=train_seconds, target_cached=cached, solve_seconds=solve_seconds,
        solve_ms_per_weight=solve_seconds / n_weights * 1e3,
    )


def mnist_table(rep: dict) -> pd.DataFrame:
    """Our replica beside the repository's table, formatted for reading."""
    pct = "{:.2%}".format
    count = lambda v: f"{int(v):,}"  # noqa: E731 (table rows hold counts as floats)
    paper = PAPER_TABLE
    rows = {
        "target accuracy": (pct(rep["target_accuracy"]), pct(paper["target accuracy"])),
        "approximation accuracy": (pct(rep["approx_accuracy"]), pct(paper["approximation accuracy"])),
        "target weights": (count(rep["weights"]), count(paper["weights"])),
        "coefficients per weight": (str(int(rep["coefficients_per_weight"])), "21"),
        "total coefficients": (count(rep["total_coefficients"]), count(paper["total coefficients"])),
        "remaining coefficients": (count(rep["remaining_coefficients"]), count(paper["remaining coefficients"])),
        "remaining / total": (f"{rep['remaining_coefficients'] / rep['total_coefficients']:.3f}",
                              f"{paper['remaining coefficients'] / paper['total coefficients']:.3f}"),
        "largest |w - w_hat|": (f"{rep['max_weight_error']:.2e}", "<= 0.01 (required)"),
        "subset-sum solver": ("exact best subset, meet in the middle (time: printed by the run)",
                              "Gurobi MIP, first subset within 0.01; about 21.5 h on 36 cores"),
    }
    return pd.DataFrame(rows, index=["this book", "official repository"]).T


def counting_bound(n_weights: int, eps: float, weight_range: float = 2.0) -> float:
    r"""Random coefficients any pruning scheme needs to hit every target to within ``eps``.

    The targets form a grid of :math:`(R/2\varepsilon)^{m}` points pairwise :math:`> 2\varepsilon` apart
    (:math:`m` weights in a range of length :math:`R`); each needs its own mask, and :math:`p`
    coefficients give only :math:`2^p` masks, so :math:`p \ge m\log_2(R/2\varepsilon)`.
    """
    return n_weights * math.log2(weight_range / (2 * eps))


# --- chapter ------------------------------------------------------------------------------------


def mnist_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """Experiment 1 on MNIST as one unit of work (its seeds come from the config's ``seed``)."""
    config = StrongConfig(**{k: v for k, v in params.items()})
    rep = run_mnist_replica(config)
    for timing in ("train_seconds", "target_cached", "solve_seconds", "solve_ms_per_weight"):
        rep.pop(timing)  # machine-dependent: the archive's unit_seconds records the time
    return [dict(rep, trial=t) for t in trials]


@dataclass(kw_only=True)
class StrongResult(ChapterResult):
    """The theory sweep (``runs``: one row per (width, depth, trial, method, n)) and the MNIST replica
    (``mnist``: one row)."""

    TABLES: ClassVar[tuple[str, ...]] = ("runs", "mnist")
    config: StrongConfig
    runs: pd.DataFrame
    mnist: pd.DataFrame

    @property
    def replica(self) -> dict:
        """The MNIST replica's numbers as a dict."""
        return self.mnist.iloc[0].to_dict()

    @property
    def rate_runs(self) -> pd.DataFrame:
        """The runs at the rate experiments' width ``config.width``."""
        return self.runs[self.runs["width"] == self.config.width]


_MNIST_FIELDS = ("mnist_hidden", "mnist_train", "mnist_epochs", "mnist_lr", "mnist_eps", "mnist_c", "seed")


def sweeps(config: StrongConfig) -> list[SweepPlan]:
    """The theory sweep over (width, depth) (the rate experiments are its ``width`` rows) and the MNIST replica."""
    c = config
    widths = tuple(sorted(set(c.widths) | {c.width}))
    tasks = tuple(dict(width=w, depth=dp, n_values=c.n_values, sup_samples=c.sup_samples) for dp in c.depths
                  for w in widths)
    return [SweepPlan(f"strong-{c.profile}", theory_task, tasks, c.trials, c.seed, table="runs"),
            SweepPlan(f"strong-mnist-{c.profile}", mnist_task, (dict({f: getattr(c, f) for f in _MNIST_FIELDS}),), 1,
                      c.seed, table="mnist")]


def run(config: StrongConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> StrongResult:
    """The theory sweep (subset sum and single unit against n, per width and depth) and the MNIST replica."""
    return run_plans(sweeps(config), StrongResult, config, executor=executor, cache_dir=cache_dir, progress=progress)


def rate_fits(result: StrongResult) -> pd.DataFrame:
    """Per depth at the rate width: the slopes the claims test, each with a 95% bootstrap interval over targets.

    * subset sum, per-weight error: slope of log2(median per-weight error) on n (n >= 6);
    * subset sum, network: slope of log2(sup error) on n (n >= 6);
    * single unit, per-weight error: slope of log2(median per-weight error) on log2(n).
    """
    runs = result.rate_runs
    rows = []
    for depth, g in runs.groupby("depth"):
        ss = g[(g["method"] == "subset_sum") & (g["n"] >= N_MIN_FIT)]
        su = g[g["method"] == "single_unit"]
        fits = {
            "subset sum, per weight (log2 error per candidate)": rules.cluster_slope(
                ss["n"], np.log2(ss["weight_error_median"]), ss["trial"], seed=int(depth)),
            "subset sum, network sup error (log2 per candidate)": rules.cluster_slope(
                ss["n"], np.log2(ss["sup_error"]), ss["trial"], seed=int(depth) + 10),
            "single unit, per weight (log2 error per log2 n)": rules.cluster_slope(
                np.log2(su["n"]), np.log2(su["weight_error_median"]), su["trial"], seed=int(depth) + 20),
        }
        for what, (slope, lo, hi, units) in fits.items():
            rows.append(dict(depth=depth, quantity=what, slope=slope, low=lo, high=hi, targets=units))
    return pd.DataFrame(rows).set_index(["depth", "quantity"])


def width_needs(result: StrongResult, eps: float = WIDTH_EPS) -> pd.DataFrame:
    """Per (width, depth, target): the smallest n of the grid whose sup error (subset sum) is at most ``eps``
    (NaN when the grid does not reach it)."""
    r = result.runs[result.runs["method"] == "subset_sum"]
    rows = []
    for (w, depth, t), g in r.groupby(["width", "depth", "trial"]):
        ok = g[g["sup_error"] <= eps]["n"]
        rows.append(dict(width=w, depth=depth, trial=t, n_needed=float(ok.min()) if len(ok) else np.nan))
    return pd.DataFrame(rows)


def width_fit(result: StrongResult, eps: float = WIDTH_EPS) -> pd.DataFrame:
    """Per depth: candidates needed for sup error ``eps`` against log2(width): the slope (extra candidates per
    doubling of the width) with a 95% bootstrap interval over targets, the mean n per width and how many
    targets the grid did not bring to ``eps``."""
    need = width_needs(result, eps)
    rows = []
    for depth, g in need.groupby("depth"):
        slope, lo, hi, units = rules.cluster_slope(np.log2(g["width"]), g["n_needed"], g["trial"], seed=int(depth) + 30)
        row = dict(depth=depth, slope=slope, low=lo, high=hi, targets=units, not_reached=int(g["n_needed"].isna().sum()))
        row.update({f"mean n, width {w}": h["n_needed"].mean() for w, h in g.groupby("width")})
        rows.append(row)
    return pd.DataFrame(rows).set_index("depth")


CLAIMS = {
    "weight-error-halves-per-candidate": (
        "The best subset sum of n random candidates approximates a weight with an error that falls about like 2^-n.",
        f"at every depth the slope of log2(median per-weight error) on n (n ≥ {N_MIN_FIT}) has its 95% bootstrap "
        f"interval over targets inside [{WEIGHT_RATE_BAND[0]}, {WEIGHT_RATE_BAND[1]}]; ≥ {MIN_TARGETS} targets"),
    "network-error-falls-geometrically": (
        "The pruned network's error (sup over the unit sphere) falls geometrically in n, at least like 2^(-0.3 n); "
        "the measured rate is in the statistic.",
        f"at every depth the slope of log2(sup error) on n (n ≥ {N_MIN_FIT}) has its 95% interval below "
        f"{NETWORK_RATE_MAX}"),
    "single-unit-error-polynomial": (
        "Selecting one unit per weight (Malach et al.) improves only polynomially: per-weight error like a power "
        "of n between n^-1.5 and n^-0.5 (fitted over the whole grid, n = 2 to 20).",
        f"at every depth the slope of log2(median per-weight error) on log2(n) has its 95% interval inside "
        f"[{SINGLE_UNIT_BAND[0]}, {SINGLE_UNIT_BAND[1]}]"),
    "candidates-grow-logarithmically-with-width": (
        "The candidates needed per weight grow only logarithmically with the target's width: a few more per "
        "doubling of the width (the O(log(d l / ε)) factor of Pensia et al.).",
        f"at every depth the slope of n needed for sup error ≤ {WIDTH_EPS} on log2(width) has its 95% interval "
        f"inside [0, {WIDTH_SLOPE_MAX}] (candidates per doubling); every target reaches the error in the grid"),
    "mnist-accuracy-preserved": (
        "Replacing every MNIST weight by its subset sum keeps the target's accuracy (repository: 97.19% both). "
        "A check of the construction: once every weight is within ε, the accuracy follows.",
        "accuracies within 0.1 points and every weight within ε"),
    "mnist-remaining-fraction": (
        "About 45% of the random coefficients survive pruning (repository: 3,725,871 of 8,337,000).",
        "the fraction lies in [0.35, 0.55]"),
}
"""Each claim's statement and rule (fixed before the evidence run), by claim id."""


def _fit_decision(fits: pd.DataFrame, quantity: str, lower, upper) -> rules.Decision:
    per = {}
    for depth in fits.index.get_level_values(0).unique():
        f = fits.loc[(depth, quantity)]
        per[f"depth {depth}"] = rules.compare(f["slope"], f["low"], f["high"], int(f["targets"]), lower=lower,
                                              upper=upper, min_units=MIN_TARGETS)
    return rules.at_every(per)


def check_claims(result: StrongResult) -> list[Claim]:
    """The claims of Pensia et al. tested by the chapter (statements and rules in :data:`CLAIMS`).

    * ``weight-error-halves-per-candidate``: at every depth the slope of log2(per-weight error) on n in [-1.3, -0.7].
    * ``network-error-falls-geometrically``: at every depth the slope of log2(sup error) on n below -0.3 (2^(-0.3 n)).
    * ``single-unit-error-polynomial``: at every depth the log-log slope of the single unit's per-weight error
      in [-1.5, -0.5].
    * ``candidates-grow-logarithmically-with-width``: at every depth the extra candidates per doubling of the
      width (for sup error ≤ 0.05) in [0, 3], every target reaching the error.
    * ``mnist-accuracy-preserved`` (a check): accuracies within 0.1 points, every weight within ε.
    * ``mnist-remaining-fraction``: the kept fraction of coefficients in [0.35, 0.55].

    Intervals resample random targets (the independent unit); rate claims are made at every depth.
    """
    c = result.config
    fits = rate_fits(result)
    claims = [
        _fit_decision(fits, "subset sum, per weight (log2 error per candidate)", *WEIGHT_RATE_BAND).claim(
            "weight-error-halves-per-candidate", *CLAIMS["weight-error-halves-per-candidate"],
            what="log2 slope per candidate"),
        _fit_decision(fits, "subset sum, network sup error (log2 per candidate)", None, NETWORK_RATE_MAX).claim(
            "network-error-falls-geometrically", *CLAIMS["network-error-falls-geometrically"],
            what="log2 slope per candidate"),
        _fit_decision(fits, "single unit, per weight (log2 error per log2 n)", *SINGLE_UNIT_BAND).claim(
            "single-unit-error-polynomial", *CLAIMS["single-unit-error-polynomial"], what="log-log slope"),
    ]
    wf = width_fit(result)
    per = {}
    for depth, f in wf.iterrows():
        d = rules.compare(f["slope"], f["low"], f["high"], int(f["targets"]), lower=0.0, upper=WIDTH_SLOPE_MAX,
                          min_units=MIN_TARGETS)
        if f["not_reached"]:
            d = rules.Decision(INCONCLUSIVE, d.estimate, d.low, d.high, d.units,
                               f"{int(f['not_reached'])} target(s) did not reach sup error {WIDTH_EPS} within n ≤ {max(c.n_values)}")
        per[f"depth {depth}"] = d
    if len(set(result.runs["width"])) < 2:
        claims.append(Claim(name="candidates-grow-logarithmically-with-width",
                            statement=CLAIMS["candidates-grow-logarithmically-with-width"][0], holds=None,
                            statistic="fewer than two widths", rule=CLAIMS["candidates-grow-logarithmically-with-width"][1]))
    else:
        claims.append(rules.at_every(per).claim("candidates-grow-logarithmically-with-width",
                                                *CLAIMS["candidates-grow-logarithmically-with-width"],
                                                what="candidates per doubling of the width"))
    rep = result.replica
    frac = rep["remaining_coefficients"] / rep["total_coefficients"]
    claims += [
        Claim(name="mnist-accuracy-preserved", statement=CLAIMS["mnist-accuracy-preserved"][0],
              holds=bool(abs(rep["approx_accuracy"] - rep["target_accuracy"]) <= 0.001 and rep["within_eps"] == 1.0),
              statistic=f"target {rep['target_accuracy']:.4f}, approximation {rep['approx_accuracy']:.4f}; "
                        f"largest weight error {rep['max_weight_error']:.2e} (ε = {c.mnist_eps})",
              rule=CLAIMS["mnist-accuracy-preserved"][1]),
        Claim(name="mnist-remaining-fraction", statement=CLAIMS["mnist-remaining-fraction"][0],
              holds=bool(0.35 <= frac <= 0.55),
              statistic=f"remaining / total = {frac:.3f} ({int(rep['remaining_coefficients']):,} of "
                        f"{int(rep['total_coefficients']):,})", rule=CLAIMS["mnist-remaining-fraction"][1]),
    ]
    return claims


def plot_theory(result: StrongResult):
    """(a) sup error against n; (b) candidates needed against 1/eps; (c) kept weights per target weight."""
    c = result.config
    s = theory_summary(result.rate_runs).reset_index()
    need = n_needed(result.rate_runs, c.eps_grid)
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(13, 3.9))
    styles = {2: "-", 3: "--", 4: ":"}
    for m, method in enumerate(METHODS):
        for depth in c.depths:
            g = s[(s.method == method) & (s.depth == depth)]
            label = f"{method.replace('_', ' ')}, depth {depth}"
            ax_a.plot(g["n"], g["sup_error_median"], marker="os"[m], color=PALETTE[m], ls=styles.get(depth, "-"),
                      label=label)
            h = need[(need.method == method) & (need.depth == depth)]
            ax_b.plot(1 / h["eps"], h["n"], marker="os"[m], color=PALETTE[m], ls=styles.get(depth, "-"), label=label)
            ax_c.plot(g["n"], g["kept_per_target_weight"], marker="os"[m], color=PALETTE[m],
                      ls=styles.get(depth, "-"), label=label)
    ns = np.array(c.n_values, dtype=float)
    ax_a.plot(ns, 0.3 / ns, color="0.5", lw=1, ls="-.", label=r"guide $\propto 1/n$")
    ax_a.set_yscale("log")
    label_axes(ax_a, "candidate units per input and sign, n", r"sup error on the unit sphere (median)", f"(a) error of the pruned network, width {c.width}")
    ax_a.legend(fontsize=7, handlelength=3)
    ax_b.set_xscale("log")
    label_axes(ax_b, r"target precision $1/\varepsilon$", r"smallest n with median error $\leq\varepsilon$" "\n(missing points: not reached)", "(b) n needed for error ≤ ε")
    label_axes(ax_c, "candidate units per input and sign, n", "kept weights per target weight", "(c) size of the ticket")
    return fig


def plot_width(result: StrongResult):
    """Candidates needed for sup error ≤ WIDTH_EPS against the target width (subset sum), mean and 95% interval over targets."""
    need = width_needs(result)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for i, (depth, g) in enumerate(need.groupby("depth")):
        stats = np.array([rules.mean_interval(h["n_needed"]) for _, h in g.groupby("width")])
        ws = np.array(sorted(g["width"].unique()), dtype=float)
        ax.errorbar(ws, stats[:, 0], yerr=[stats[:, 0] - stats[:, 1], stats[:, 2] - stats[:, 0]], marker="os"[i % 2],
                    color=PALETTE[i], capsize=3, label=f"depth {depth}")
    ax.set_xscale("log", base=2)
    label_axes(ax, "target width d", f"candidates n needed for sup error ≤ {WIDTH_EPS}\n(mean, 95% CI over targets)",
               "candidates against width (subset sum)", legend=True)
    return fig


CHAPTER = ChapterSpec("strong_tickets", "Strong lottery tickets by subset sum", StrongConfig, StrongResult, run, check_claims,
                      {"Theorem 1 (Pensia et al.)": plot_theory, "width": plot_width}, sweeps=sweeps)
