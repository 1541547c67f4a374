r"""The Greedy-pruning chapter (Rajaraman et al., 2023): Fig. 1, the pipeline's rate, the quadratic network.

* **Fig. 1** (population loss, :math:`d = k`, :math:`r = 4`): gradient descent with and without the
  group-Lasso penalty from the same start; the column-norm profile and histogram.
* **Pipeline** (Gaussian sensing, finite :math:`n`): Algorithm 1 against the unpruned,
  unregularized factorization trained from a small start, over a grid of :math:`n`; error
  :math:`\|UU^\top - M^*\|_F` against the reference :math:`\sigma\sqrt{rd/n}`.
* **Quadratic network** (rank-one sensing :math:`A_i = x_ix_i^\top`): surviving neurons and test MSE.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..experiments.validation import check_int
from ..experiments.claims import Claim, inconclusive
from ..algorithms.matrix_sensing import (column_norm_profile, gradient_descent, greedy_pruning, group_lasso, ground_truth,
                             make_sensing_problem, population_gradient, population_loss)
from ..experiments.seeding import numpy_rng, seed_sequence
from ..experiments.plotting import PALETTE, label_axes
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec
from ..experiments.sweep import run_sweep


@dataclass(frozen=True)
class GreedyConfig(ChapterConfig):
    fig_d: int = param(500, "dimension of Fig. 1's problem", low=1)
    fig_r: int = param(4, "rank of Fig. 1's problem", low=1, high="fig_d")
    fig_steps: int = param(20_000, "gradient steps of Fig. 1", low=1)
    lam: float = param(0.05, "group-Lasso weight λ", low=0.0)
    beta: float = param(1e-6, "smoothing β of the penalty (pruning threshold 2√β)", low=0.0, low_open=True)
    eta: float = param(0.01, "step size η", low=0.0, low_open=True)
    d: int = param(20, "dimension of the pipeline's problem", low=1)
    r: int = param(2, "true rank r", low=1)
    k: int = param(20, "columns of the over-parameterized model", low=1)
    sigma: float = param(0.1, "noise level σ", low=0.0)
    n_values: tuple[int, ...] = param((100, 200, 400, 800, 1600, 3200), "sample sizes", low=1, item="n", min_len=3)
    trials: int = param(5, "independent problems per n", low=1)
    train_steps: int = param(10_000, "regularized training steps", low=1)
    fine_tune_steps: int = param(3000, "fine-tuning steps", low=1)
    baseline_init: float = param(1e-3, "initialization scale of the unpruned baseline", low=0.0)
    quad_n: int = param(2000, "samples of the quadratic network", low=1)
    quad_test: int = param(5000, "test samples of the quadratic network", low=1)
    seed: int = param(2023, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(fig_d=40, fig_steps=8000, n_values=(100, 400, 1600), trials=2, quad_n=1500, quad_test=2000),
        "book": dict(fig_d=100, trials=3),
    }

    def validate(self) -> None:
        check_int("r", self.r, 1, min(self.d, self.k))

    @property
    def tau(self) -> float:
        """The pruning threshold :math:`2\\sqrt\\beta`."""
        return 2 * float(np.sqrt(self.beta))


def run_figure1(config: GreedyConfig) -> dict[str, np.ndarray]:
    """Population-loss GD from one start, with and without the penalty; the final U of each."""
    c = config
    U_star = ground_truth(c.fig_d, c.fig_r, seed_sequence(c.seed, 0))
    M = U_star @ U_star.T
    U0 = numpy_rng(c.seed, 1).normal(0, 1 / np.sqrt(c.fig_d), (c.fig_d, c.fig_d))
    out = {}
    for name, lam in (("without regularizer", 0.0), ("with group Lasso", c.lam)):
        res = gradient_descent(lambda U, lam=lam: population_gradient(U, M) + lam * group_lasso(U, c.beta)[1],
                               U0, c.eta, c.fig_steps)
        out[name] = res.U
    out["M_star"] = M
    return out


def pipeline_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """Algorithm 1 and the unpruned baseline at one n, on the same measurements."""
    rows = []
    d, r, k, n = params["d"], params["r"], params["k"], params["n"]
    for ss, t in zip(seeds, trials):
        U_star = ground_truth(d, r, seed_sequence(ss, 0))
        p = make_sensing_problem(n, U_star, params["sigma"], seed_sequence(ss, 1), params["kind"])
        res = greedy_pruning(p, k, params["lam"], params["beta"], eta=params["eta"], train_steps=params["train_steps"],
                             fine_tune_steps=params["fine_tune_steps"], seed=seed_sequence(ss, 2))
        U0 = numpy_rng(ss, 3).normal(0, params["baseline_init"], (d, k))
        base = gradient_descent(p.gradient, U0, params["eta"], params["train_steps"] + params["fine_tune_steps"])
        row = dict(kind=params["kind"], n=n, trial=t, kept=res.kept, status=res.status, baseline_status=base.status,
                   error_after_train=res.error_after_train, error_after_prune=res.error_after_prune,
                   error=res.error_after_fine_tune, train_loss=res.train_loss,
                   baseline_error=float(np.linalg.norm(base.U @ base.U.T - p.M_star)),
                   baseline_train_loss=p.loss(base.U), reference=params["sigma"] * np.sqrt(r * d / n),
                   history_error=[h[0] for h in res.fine_tune_history],
                   history_grad=[h[1] for h in res.fine_tune_history])
        if params["kind"] == "rank_one":
            row["test_mse"] = population_loss(res.U, p.M_star, "rank_one", params["sigma"])
            row["baseline_test_mse"] = population_loss(base.U, p.M_star, "rank_one", params["sigma"])
            Xt = numpy_rng(ss, 4).standard_normal((params["n_test"], d))
            yt = np.sum((Xt @ U_star) ** 2, axis=1)
            row["test_mse_sampled"] = float(np.mean((np.sum((Xt @ res.U) ** 2, axis=1) - yt) ** 2)) + params["sigma"] ** 2
        rows.append(row)
    return rows


@dataclass(kw_only=True)
class GreedyResult(ChapterResult):
    """Fig. 1 (``figure1``), the pipeline against n (``runs``) and the quadratic network (``quad``)."""

    TABLES: ClassVar[tuple[str, ...]] = ("runs", "quad")
    config: GreedyConfig
    figure1: dict
    runs: pd.DataFrame
    quad: pd.DataFrame


def run(config: GreedyConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> GreedyResult:
    """Fig. 1 (one over-parameterized training with and without the penalty), the pipeline against n, and the quadratic network."""
    c = config
    start = time.perf_counter()
    fig1 = run_figure1(c)
    common = dict(d=c.d, r=c.r, k=c.k, sigma=c.sigma, lam=c.lam, beta=c.beta, eta=c.eta, train_steps=c.train_steps,
                  fine_tune_steps=c.fine_tune_steps, baseline_init=c.baseline_init)
    runs = run_sweep(pipeline_task, [dict(common, n=n, kind="gaussian") for n in c.n_values], c.trials,
                     seed=c.seed, name=f"greedy-{c.profile}", executor=executor, cache_dir=cache_dir, progress=progress)
    quad = run_sweep(pipeline_task, [dict(common, n=c.quad_n, kind="rank_one", n_test=c.quad_test)], c.trials,
                     seed=c.seed, name=f"greedy-quad-{c.profile}", executor=executor, cache_dir=cache_dir,
                     progress=progress)
    return GreedyResult(config=c, figure1=fig1, runs=runs.runs, quad=quad.runs, seconds=time.perf_counter() - start)


def figure1_counts(result: GreedyResult) -> pd.DataFrame:
    """Columns above the pruning threshold, and above half the largest norm, with and without the penalty."""
    c = result.config
    rows = {}
    for name in ("without regularizer", "with group Lasso"):
        U = result.figure1[name]
        norms = np.linalg.norm(U, axis=0)
        rows[name] = {"columns above 2√β": int((norms > c.tau).sum()),
                      "columns ≥ 0.5 × largest": int((norms >= 0.5 * norms.max()).sum()),
                      "columns ≥ 0.1 × largest": int((norms >= 0.1 * norms.max()).sum()),
                      "largest column norm": float(norms.max()),
                      "‖UUᵀ − M*‖_F": float(np.linalg.norm(U @ U.T - result.figure1["M_star"]))}
    return pd.DataFrame(rows).T


def pipeline_summary(result: GreedyResult) -> pd.DataFrame:
    """Per n: columns kept, errors after pruning and fine-tuning, the σ√(rd/n) reference, the unpruned model."""
    g = result.runs.groupby("n")
    return pd.DataFrame({
        "kept (min-max)": g["kept"].agg(lambda s: f"{s.min()}-{s.max()}"),
        "after prune": g["error_after_prune"].mean(), "after fine-tune": g["error"].mean(),
        "σ√(rd/n)": g["reference"].first(), "unpruned": g["baseline_error"].mean(),
        "train MSE, pruned": g["train_loss"].mean(), "train MSE, unpruned": g["baseline_train_loss"].mean(),
    })


def rate_fit(result: GreedyResult) -> dict[str, float]:
    """Log-log slopes of the mean error against n (fine-tuned and unpruned)."""
    s = pipeline_summary(result)
    x = np.log(s.index.to_numpy(dtype=float))
    return {"fine-tuned": float(np.polyfit(x, np.log(s["after fine-tune"]), 1)[0]),
            "unpruned": float(np.polyfit(x, np.log(s["unpruned"]), 1)[0])}


def linear_phase_r2(history: list[float], low: float = 1e-7, high: float = 1e-2) -> tuple[float, float]:
    """Fit log(gradient norm) against the record index where it lies between ``low`` and ``high`` times its start.

    Returns (contraction per record, R²); the first, faster transient is left out by ``high``.
    NaN when fewer than 5 records fall in the window.
    """
    h = np.asarray(history, dtype=float)
    idx = np.nonzero((h <= high * h[0]) & (h >= low * h[0]))[0]
    if len(idx) < 5:
        return float("nan"), float("nan")
    y = np.log(h[idx])
    coef = np.polyfit(idx, y, 1)
    resid = y - np.polyval(coef, idx)
    return float(np.exp(coef[0])), float(1 - resid.var() / y.var())


def check_claims(result: GreedyResult) -> list[Claim]:
    """The claims of Rajaraman et al. tested by the chapter, decided from the runs.

    * ``regularizer-separates-columns``: with the penalty exactly r columns lie above the pruning
      threshold; without it at least 20% of the columns exceed half the largest norm (Fig. 1).
    * ``prune-keeps-exactly-r``: every run keeps r columns and none diverged.
    * ``error-rate-sqrt-rd-over-n``: the log-log slope of the fine-tuned error against n lies in
      [-0.7, -0.3] (theory: -1/2).
    * ``unpruned-fits-better-generalizes-worse``: at every n the unpruned model has the lower
      training error and the higher test error.
    * ``fine-tuning-converges-linearly``: R² ≥ 0.95 of a log-linear fit for every run.
    * ``quadratic-network-pruned-generalizes``: in every trial r neurons survive and the pruned
      network has the smaller test MSE.

    When a run pruned every column (λ too large), the claims about the fine-tuned model are
    INCONCLUSIVE with that reason, and ``prune-keeps-exactly-r`` is NOT SUPPORTED.
    """
    c = result.config
    f1 = figure1_counts(result)
    runs, quad = result.runs, result.quad
    empty = int((runs["kept"] == 0).sum() + (quad["kept"] == 0).sum())
    if empty:
        return _claims_when_everything_was_pruned(result, f1, empty)
    slopes = rate_fit(result)
    s = pipeline_summary(result)
    worse = (s["unpruned"] > s["after fine-tune"]) & (s["train MSE, unpruned"] < s["train MSE, pruned"])
    fits = [linear_phase_r2(h) for h in runs["history_grad"]]
    r2 = float(np.min([f[1] for f in fits]))  # NaN (too short a window) fails the claim
    diverged = int((runs["status"] == "diverged").sum() + (quad["status"] == "diverged").sum())
    return [
        Claim(
            name="regularizer-separates-columns",
            statement="With the group-Lasso penalty only r columns stay non-negligible; without it many columns "
                      "are comparable to the largest (paper Fig. 1).",
            holds=bool(f1.loc["with group Lasso", "columns above 2√β"] == c.fig_r
                       and f1.loc["without regularizer", "columns ≥ 0.5 × largest"] >= 0.2 * c.fig_d),
            statistic=f"with: {f1.loc['with group Lasso', 'columns above 2√β']} of {c.fig_d} columns above 2√β; "
                      f"without: {f1.loc['without regularizer', 'columns ≥ 0.5 × largest']} of {c.fig_d} at ≥ 0.5 × largest",
            rule="exactly r columns above the threshold with the penalty, at least 20% of columns at half the largest without",
        ),
        Claim(
            name="prune-keeps-exactly-r",
            statement="After pruning exactly r columns survive (matrix sensing and the quadratic network).",
            holds=bool((runs["kept"] == c.r).all() and (quad["kept"] == c.r).all() and diverged == 0),
            statistic=f"kept columns over all runs: {sorted(set(runs['kept']) | set(quad['kept']))}; diverged runs: {diverged}",
            rule="every run keeps r columns and none diverged",
        ),
        Claim(
            name="error-rate-sqrt-rd-over-n",
            statement="Fine-tuning reaches an error that scales like sqrt(r d / n).",
            holds=bool(-0.7 <= slopes["fine-tuned"] <= -0.3),
            statistic=f"log-log slope of the mean error against n: {slopes['fine-tuned']:.2f} (unpruned: {slopes['unpruned']:.2f})",
            rule="the slope lies in [-0.7, -0.3] (theory: -1/2)",
        ),
        Claim(
            name="unpruned-fits-better-generalizes-worse",
            statement="The unpruned, unregularized model has the lower training error and the higher generalization error.",
            holds=bool(worse.all()),
            statistic="n where both hold: " + ", ".join(str(n) for n in s.index[worse]) + f" (of {len(s)})",
            rule="both hold at every n",
        ),
        Claim(
            name="fine-tuning-converges-linearly",
            statement="Fine-tuning converges linearly (log gradient norm falls on a line).",
            holds=bool(r2 >= 0.95),  # False for NaN
            statistic=f"smallest R² of the log-linear fit over runs: {r2:.3f}; median contraction per 10 steps "
                      f"{np.median([f[0] for f in fits]):.3f}",
            rule="R² ≥ 0.95 for every run (fit where the gradient norm is between 1e-7 and 1e-2 of its start)",
        ),
        Claim(
            name="quadratic-network-pruned-generalizes",
            statement="For the quadratic-activation network the pruned, fine-tuned model keeps r neurons and "
                      "has the lower test error.",
            holds=bool((quad["kept"] == c.r).all() and (quad["test_mse"] < quad["baseline_test_mse"]).all()),
            statistic=f"test MSE (population formula) pruned {quad['test_mse'].mean():.4f}, "
                      f"unpruned {quad['baseline_test_mse'].mean():.4f}; noise floor σ² = {c.sigma**2:.4f}",
            rule="in every trial r neurons survive and the pruned test MSE is the smaller",
        ),
    ]


def _claims_when_everything_was_pruned(result: GreedyResult, f1: pd.DataFrame, empty: int) -> list[Claim]:
    """Runs that pruned every column leave nothing to fine-tune: the claims about the fine-tuned
    model cannot be decided (INCONCLUSIVE); keeping r columns failed (NOT SUPPORTED)."""
    c = result.config
    runs, quad = result.runs, result.quad
    reason = (f"{empty} run(s) pruned every column (λ = {c.lam:g} is too large for the threshold 2√β = {c.tau:.2g}); "
              "nothing is left to fine-tune")
    kept = sorted(set(runs["kept"]) | set(quad["kept"]))
    claims = [
        Claim(name="regularizer-separates-columns",
              statement="With the group-Lasso penalty only r columns stay non-negligible; without it many columns "
                        "are comparable to the largest (paper Fig. 1).",
              holds=bool(f1.loc["with group Lasso", "columns above 2√β"] == c.fig_r
                         and f1.loc["without regularizer", "columns ≥ 0.5 × largest"] >= 0.2 * c.fig_d),
              statistic=f"with: {f1.loc['with group Lasso', 'columns above 2√β']} of {c.fig_d} columns above 2√β",
              rule="exactly r columns above the threshold with the penalty, at least 20% of columns at half the largest without"),
        Claim(name="prune-keeps-exactly-r",
              statement="After pruning exactly r columns survive (matrix sensing and the quadratic network).",
              holds=False, statistic=f"kept columns over all runs: {kept}", rule="every run keeps r columns and none diverged"),
    ]
    for name, statement, rule in (
        ("error-rate-sqrt-rd-over-n", "Fine-tuning reaches an error that scales like sqrt(r d / n).",
         "the slope lies in [-0.7, -0.3] (theory: -1/2)"),
        ("unpruned-fits-better-generalizes-worse", "The unpruned, unregularized model has the lower training error "
         "and the higher generalization error.", "both hold at every n"),
        ("fine-tuning-converges-linearly", "Fine-tuning converges linearly (log gradient norm falls on a line).",
         "R² ≥ 0.95 for every run"),
        ("quadratic-network-pruned-generalizes", "For the quadratic-activation network the pruned, fine-tuned model "
         "keeps r neurons and has the lower test error.", "in every trial r neurons survive and the pruned test MSE is the smaller"),
    ):
        claims.append(inconclusive(name, statement, rule, reason))
    return claims


def plot_figure1(result: GreedyResult):
    """Fig. 1 of Rajaraman et al.: sorted column norms without and with the group-Lasso penalty."""
    c = result.config
    xs = np.linspace(0, 1, 101)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    for i, name in enumerate(("without regularizer", "with group Lasso")):
        U = result.figure1[name]
        ax_a.plot(xs, column_norm_profile(U, xs), color=PALETTE[i], label=name)
        ax_b.hist(np.linalg.norm(U, axis=0), bins=40, color=PALETTE[i], alpha=0.7, label=name)
    label_axes(ax_a, "x (fraction of the largest column norm)", "fraction of columns with norm ≥ x · max", f"(a) d = k = {c.fig_d}, r = {c.fig_r}, population loss", legend=True)
    ax_b.set_yscale("log")
    label_axes(ax_b, r"column norm $\|u_j\|_2$", "number of columns", "(b) histogram of column norms", legend=True)
    return fig


def plot_pipeline(result: GreedyResult):
    """Error against n (pruned, fine-tuned, unpruned), training errors, and fine-tuning histories."""
    c = result.config
    s = pipeline_summary(result)
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(13, 3.8))
    n = s.index.to_numpy(dtype=float)
    ax_a.plot(n, s["after fine-tune"], marker="o", color=PALETTE[0], label="pruned + fine-tuned")
    ax_a.plot(n, s["after prune"], marker="^", color=PALETTE[2], ls="--", label="right after pruning")
    ax_a.plot(n, s["unpruned"], marker="s", color=PALETTE[1], label="unpruned, unregularized")
    ax_a.plot(n, s["σ√(rd/n)"], color="0.4", ls=":", label=r"$\sigma\sqrt{rd/n}$ (slope $-1/2$)")
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    label_axes(ax_a, "measurements n", r"$\|UU^\top - M^*\|_F$ (mean)", f"(a) d = {c.d}, r = {c.r}, k = {c.k}, σ = {c.sigma}")
    ax_a.legend(fontsize=7)
    ax_b.plot(n, s["train MSE, pruned"], marker="o", color=PALETTE[0], label="pruned + fine-tuned")
    ax_b.plot(n, s["train MSE, unpruned"], marker="s", color=PALETTE[1], label="unpruned")
    ax_b.axhline(c.sigma**2, color="0.4", ls=":", label=r"noise level $\sigma^2$")
    ax_b.set_xscale("log")
    label_axes(ax_b, "measurements n", "training MSE", "(b) fit to the training data")
    ax_b.legend(fontsize=7)
    row = result.runs[result.runs["n"] == c.n_values[len(c.n_values) // 2]].head(1)
    he, hg = row["history_error"].iloc[0], row["history_grad"].iloc[0]
    steps = np.arange(len(he)) * 10
    ax_c.plot(steps, hg, color=PALETTE[4], label=r"gradient norm $\|\nabla L\|_F$")
    ax_c.plot(steps, he, color=PALETTE[0], label=r"error $\|UU^\top - M^*\|_F$")
    ax_c.set_yscale("log")
    label_axes(ax_c, "fine-tuning step", "value (log scale)", f"(c) fine-tuning, n = {int(row['n'].iloc[0])}")
    ax_c.legend(fontsize=7)
    return fig


def quad_table(result: GreedyResult) -> pd.DataFrame:
    """The quadratic network: neurons kept and test MSE, pruned against unpruned."""
    q = result.quad
    return pd.DataFrame({
        "pruned + fine-tuned": [f"{q['kept'].min()}-{q['kept'].max()}", q["test_mse"].mean(), q["test_mse_sampled"].mean(),
                                q["train_loss"].mean()],
        "unpruned, unregularized": [str(result.config.k), q["baseline_test_mse"].mean(), float("nan"),
                                    q["baseline_train_loss"].mean()],
    }, index=["neurons", "test MSE (population formula)", "test MSE (fresh samples)", "training MSE"])


CHAPTER = ChapterSpec("greedy_pruning", "Greedy pruning with group Lasso: matrix sensing", GreedyConfig, GreedyResult, run, check_claims,
                      {"Fig. 1 (Rajaraman et al.)": plot_figure1, "pipeline": plot_pipeline})
