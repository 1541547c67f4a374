r"""The Greedy-pruning chapter (Rajaraman et al., 2023): Fig. 1, the pipeline's error level, its controls.

* **Fig. 1** (population loss, :math:`d = k`, :math:`r = 4`): gradient descent with and without the
  group-Lasso penalty from the same start; the column-norm profile and histogram.
* **Pipeline** (Gaussian sensing, finite :math:`n`): Algorithm 1 against three controls fitted to the
  same measurements: the unpruned, unregularized factorization trained for a fixed number of
  steps, the same model stopped early on fresh validation measurements, and a model with exactly
  :math:`r` columns fitted from scratch (knowing :math:`r`, no over-parameterized phase).  Error
  :math:`\|UU^\top - M^*\|_F` against the reference :math:`\sigma\sqrt{rd/n}`.
* **λ sweep**: over what range of the penalty weight exactly :math:`r` columns survive.
* **Quadratic network** (rank-one sensing :math:`A_i = x_ix_i^\top`): surviving neurons and test MSE.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..experiments.validation import check_int
from ..experiments import rules
from ..experiments.claims import Claim, inconclusive
from ..algorithms.matrix_sensing import (gradient_descent, greedy_pruning, group_lasso, ground_truth,
                             make_sensing_problem, population_gradient, population_loss)
from ..experiments.seeding import numpy_rng, seed_sequence
from ..experiments.plotting import PALETTE, label_axes
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec, SweepPlan, run_plans


LEVEL_BAND = (0.5, 2.0)
r"""The error level: at every n the mean of :math:`\|UU^\top - M^*\|_F / (\sigma\sqrt{rd/n})` must lie in this band."""
KNOWING_R_BAND = (0.8, 1.25)
"""Pruning matches knowing r: at every n the mean ratio of the errors (pruned / exact-r from scratch) in this band."""
LAMBDA_SPAN = 10.0
"""Exactly r columns must survive, in every trial, over a stretch of the λ grid spanning at least this factor."""
MIN_TRIALS = 5
"""Fewer independent problems than this per n (or per λ) and a claim is INCONCLUSIVE."""


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
    trials: int = param(20, "independent problems per n (and for the quadratic network)", low=1)
    train_steps: int = param(10_000, "regularized training steps", low=1)
    fine_tune_steps: int = param(3000, "fine-tuning steps", low=1)
    baseline_init: float = param(1e-3, "initialization scale of the unpruned and the exact-r models", low=0.0)
    val_fraction: float = param(0.25, "validation measurements of the early-stopped model, as a fraction of n",
                                low=0.0, low_open=True)
    val_every: int = param(50, "steps between validation checks of the early-stopped model", low=1)
    lam_values: tuple[float, ...] = param((0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
                                          "λ grid of the survival sweep", low=0.0, low_open=True, item="λ", min_len=2)
    lam_n: int = param(800, "measurements in the λ sweep", low=1)
    lam_trials: int = param(10, "independent problems per λ", low=1)
    quad_n: int = param(2000, "samples of the quadratic network", low=1)
    quad_test: int = param(5000, "test samples of the quadratic network", low=1)
    seed: int = param(2023, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(fig_d=40, fig_steps=8000, n_values=(100, 400, 1600), trials=2, quad_n=1500, quad_test=2000,
                      lam_values=(0.01, 0.05, 2.0), lam_n=200, lam_trials=2, train_steps=4000, fine_tune_steps=1500),
        "book": dict(fig_d=100, trials=3, lam_values=(0.005, 0.05, 0.5, 2.0), lam_trials=2),
        "evidence": dict(),
    }

    def validate(self) -> None:
        check_int("r", self.r, 1, min(self.d, self.k))

    @property
    def tau(self) -> float:
        """The pruning threshold :math:`2\\sqrt\\beta`."""
        return 2 * float(np.sqrt(self.beta))


FIG1_SETTINGS = ("without regularizer", "with group Lasso")


def figure1_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """Fig. 1: population-loss GD from one start, with and without the penalty; every column's final norm."""
    rows = []
    d, r = params["fig_d"], params["fig_r"]
    for ss, t in zip(seeds, trials):
        U_star = ground_truth(d, r, seed_sequence(ss, 0))
        M = U_star @ U_star.T
        U0 = numpy_rng(ss, 1).normal(0, 1 / np.sqrt(d), (d, d))
        for name, lam in zip(FIG1_SETTINGS, (0.0, params["lam"])):
            res = gradient_descent(lambda U, lam=lam: population_gradient(U, M) + lam * group_lasso(U, params["beta"])[1],
                                   U0, params["eta"], params["fig_steps"])
            error = float(np.linalg.norm(res.U @ res.U.T - M))
            rows += [dict(trial=t, setting=name, column=j, norm=float(v), error=error, status=res.status)
                     for j, v in enumerate(np.linalg.norm(res.U, axis=0))]
    return rows


def _early_stopped(problem, validation, U0, eta: float, steps: int, every: int):
    """Gradient descent on the training loss, keeping the iterate with the smallest validation loss
    (checked every ``every`` steps, and at the start)."""
    best = {"loss": np.inf, "U": U0, "step": 0}
    count = {"step": 0}

    def record(U):
        loss = validation.loss(U)
        if loss < best["loss"]:
            best.update(loss=loss, U=U.copy(), step=count["step"])
        count["step"] += every

    res = gradient_descent(problem.gradient, U0, eta, steps, record=record, record_every=every)
    return res, best


def pipeline_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """Algorithm 1 and its controls at one n, all on the same measurements.

    Controls: the unpruned factorization (k columns, small start, no penalty) for the pipeline's
    total number of steps; the same run's iterate with the smallest loss on fresh validation
    measurements (early stopping); and exactly r columns fitted from a small start (knowing r).
    """
    rows = []
    d, r, k, n = params["d"], params["r"], params["k"], params["n"]
    steps = params["train_steps"] + params["fine_tune_steps"]
    for ss, t in zip(seeds, trials):
        U_star = ground_truth(d, r, seed_sequence(ss, 0))
        p = make_sensing_problem(n, U_star, params["sigma"], seed_sequence(ss, 1), params["kind"])
        M = p.M_star
        err = lambda U: float(np.linalg.norm(U @ U.T - M))  # noqa: E731
        res = greedy_pruning(p, k, params["lam"], params["beta"], eta=params["eta"], train_steps=params["train_steps"],
                             fine_tune_steps=params["fine_tune_steps"], seed=seed_sequence(ss, 2))
        U0 = numpy_rng(ss, 3).normal(0, params["baseline_init"], (d, k))
        n_val = max(1, int(round(params["val_fraction"] * n)))
        val = make_sensing_problem(n_val, U_star, params["sigma"], seed_sequence(ss, 5), params["kind"])
        base, best = _early_stopped(p, val, U0, params["eta"], steps, params["val_every"])
        exact = gradient_descent(p.gradient, numpy_rng(ss, 6).normal(0, params["baseline_init"], (d, r)),
                                 params["eta"], steps)
        row = dict(kind=params["kind"], n=n, trial=t, kept=res.kept, status=res.status, baseline_status=base.status,
                   error_after_train=res.error_after_train, error_after_prune=res.error_after_prune,
                   error=res.error_after_fine_tune, train_loss=res.train_loss,
                   baseline_error=err(base.U), baseline_train_loss=p.loss(base.U),
                   early_stopped_error=err(best["U"]), early_stopped_step=int(best["step"]), validation_n=n_val,
                   exact_r_error=err(exact.U), exact_r_status=exact.status, exact_r_train_loss=p.loss(exact.U),
                   reference=params["sigma"] * np.sqrt(r * d / n),
                   history_error=[h[0] for h in res.fine_tune_history],
                   history_grad=[h[1] for h in res.fine_tune_history])
        if params["kind"] == "rank_one":
            row["test_mse"] = population_loss(res.U, M, "rank_one", params["sigma"])
            row["baseline_test_mse"] = population_loss(base.U, M, "rank_one", params["sigma"])
            row["exact_r_test_mse"] = population_loss(exact.U, M, "rank_one", params["sigma"])
            Xt = numpy_rng(ss, 4).standard_normal((params["n_test"], d))
            yt = np.sum((Xt @ U_star) ** 2, axis=1)
            row["test_mse_sampled"] = float(np.mean((np.sum((Xt @ res.U) ** 2, axis=1) - yt) ** 2)) + params["sigma"] ** 2
        rows.append(row)
    return rows


def lambda_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """The survival sweep: Algorithm 1's training and pruning at one λ (no fine-tuning): columns kept."""
    rows = []
    d, r, k, n = params["d"], params["r"], params["k"], params["n"]
    for ss, t in zip(seeds, trials):
        U_star = ground_truth(d, r, seed_sequence(ss, 0))
        p = make_sensing_problem(n, U_star, params["sigma"], seed_sequence(ss, 1), "gaussian")
        res = greedy_pruning(p, k, params["lam"], params["beta"], eta=params["eta"], train_steps=params["train_steps"],
                             fine_tune_steps=0, seed=seed_sequence(ss, 2))
        rows.append(dict(lam=params["lam"], n=n, trial=t, kept=res.kept, status=res.status,
                         error_after_prune=res.error_after_prune))
    return rows


@dataclass(kw_only=True)
class GreedyResult(ChapterResult):
    """Fig. 1 (``figure1``: column norms), the pipeline against n (``runs``), the λ sweep (``lambdas``)
    and the quadratic network (``quad``)."""

    TABLES: ClassVar[tuple[str, ...]] = ("figure1", "runs", "lambdas", "quad")
    config: GreedyConfig
    figure1: pd.DataFrame
    runs: pd.DataFrame
    lambdas: pd.DataFrame
    quad: pd.DataFrame


def sweeps(config: GreedyConfig) -> list[SweepPlan]:
    """Four sweeps: Fig. 1 (one run), the pipeline at every n, the λ sweep, the quadratic network."""
    c = config
    common = dict(d=c.d, r=c.r, k=c.k, sigma=c.sigma, lam=c.lam, beta=c.beta, eta=c.eta, train_steps=c.train_steps,
                  fine_tune_steps=c.fine_tune_steps, baseline_init=c.baseline_init, val_fraction=c.val_fraction,
                  val_every=c.val_every)
    fig = dict(fig_d=c.fig_d, fig_r=c.fig_r, fig_steps=c.fig_steps, lam=c.lam, beta=c.beta, eta=c.eta)
    lam_common = dict(d=c.d, r=c.r, k=c.k, sigma=c.sigma, beta=c.beta, eta=c.eta, train_steps=c.train_steps, n=c.lam_n)
    return [
        SweepPlan(f"greedy-fig1-{c.profile}", figure1_task, (fig,), 1, c.seed, table="figure1"),
        SweepPlan(f"greedy-{c.profile}", pipeline_task, tuple(dict(common, n=n, kind="gaussian") for n in c.n_values),
                  c.trials, c.seed, seed_keys=("n",), table="runs"),
        SweepPlan(f"greedy-lambda-{c.profile}", lambda_task, tuple(dict(lam_common, lam=lam) for lam in c.lam_values),
                  c.lam_trials, c.seed + 1, seed_keys=("n",), table="lambdas"),
        SweepPlan(f"greedy-quad-{c.profile}", pipeline_task,
                  (dict(common, n=c.quad_n, kind="rank_one", n_test=c.quad_test),), c.trials, c.seed, table="quad"),
    ]


def run(config: GreedyConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> GreedyResult:
    """Run the four sweeps."""
    return run_plans(sweeps(config), GreedyResult, config, executor=executor, cache_dir=cache_dir, progress=progress)


def _norms(result: GreedyResult, setting: str) -> np.ndarray:
    f = result.figure1
    return f[f["setting"] == setting].sort_values("column")["norm"].to_numpy()


def figure1_counts(result: GreedyResult) -> pd.DataFrame:
    """Columns above the pruning threshold, and above half the largest norm, with and without the penalty."""
    c = result.config
    rows = {}
    for name in FIG1_SETTINGS:
        norms = _norms(result, name)
        error = float(result.figure1.loc[result.figure1["setting"] == name, "error"].iloc[0])
        rows[name] = {"columns above 2√β": int((norms > c.tau).sum()),
                      "columns ≥ 0.5 × largest": int((norms >= 0.5 * norms.max()).sum()),
                      "columns ≥ 0.1 × largest": int((norms >= 0.1 * norms.max()).sum()),
                      "largest column norm": float(norms.max()),
                      "‖UUᵀ − M*‖_F": error}
    return pd.DataFrame(rows).T


def _ci(values) -> str:
    m, lo, hi = rules.mean_interval(values)
    return f"{m:.3g} [{lo:.3g}, {hi:.3g}]"


def pipeline_summary(result: GreedyResult) -> pd.DataFrame:
    """Per n: columns kept, the mean errors of the pipeline and its three controls, the σ√(rd/n)
    reference and the pipeline's level (error / reference, mean with its 95% interval over problems)."""
    g = result.runs.groupby("n")
    return pd.DataFrame({
        "problems": g.size(),
        "kept (min-max)": g["kept"].agg(lambda s: f"{s.min()}-{s.max()}"),
        "after prune": g["error_after_prune"].mean(), "pruned + fine-tuned": g["error"].mean(),
        "σ√(rd/n)": g["reference"].first(),
        "level: error / σ√(rd/n) (pointwise 95% CI)": g.apply(lambda x: _ci(x["error"] / x["reference"]), include_groups=False),
        "exactly r from scratch": g["exact_r_error"].mean(),
        "unpruned, early-stopped": g["early_stopped_error"].mean(),
        "unpruned, all steps": g["baseline_error"].mean(),
        "train MSE, pruned": g["train_loss"].mean(), "train MSE, unpruned": g["baseline_train_loss"].mean(),
    })


def rate_fit(result: GreedyResult) -> dict[str, float]:
    """Log-log slopes of the mean error against n (descriptive; the claims test the level)."""
    r = result.runs
    x = np.log(np.sort(r["n"].unique()).astype(float))
    out = {}
    for label, col in (("pruned + fine-tuned", "error"), ("exactly r from scratch", "exact_r_error"),
                       ("unpruned, early-stopped", "early_stopped_error"), ("unpruned, all steps", "baseline_error")):
        out[label] = float(np.polyfit(x, np.log(r.groupby("n")[col].mean().to_numpy()), 1)[0])
    return out


def lambda_summary(result: GreedyResult) -> pd.DataFrame:
    """Per λ: trials, the columns kept (min-max) and the share of trials that kept exactly r."""
    lam = result.lambdas
    r = result.config.r
    g = lam.groupby("lam")
    return pd.DataFrame({"trials": g.size(), "kept (min-max)": g["kept"].agg(lambda s: f"{s.min()}-{s.max()}"),
                         "share with exactly r": g["kept"].agg(lambda s: float((s == r).mean())),
                         "error after pruning (mean)": g["error_after_prune"].mean()})


def lambda_range(result: GreedyResult) -> tuple[float, float] | None:
    """The longest stretch of consecutive λ values of the grid at which every trial kept exactly r
    (its smallest and largest λ), or ``None``."""
    s = lambda_summary(result)
    ok = (s["share with exactly r"] == 1.0).to_numpy()
    lams = s.index.to_numpy(dtype=float)
    best, start = None, None
    for i, good in enumerate(list(ok) + [False]):
        if good and start is None:
            start = i
        if not good and start is not None:
            if best is None or lams[i - 1] / lams[start] > best[1] / best[0]:
                best = (float(lams[start]), float(lams[i - 1]))
            start = None
    return best


def linear_phase_r2(history: list[float], low: float = 1e-7, high: float = 1e-2) -> tuple[float, float]:
    """Fit log(gradient norm) against the record index where it lies between ``low`` and ``high`` times its start.

    Returns (contraction per record, R²); the first, faster transient is left out by ``high``.
    NaN when fewer than 5 records fall in the window.
    """
    h = np.asarray(history, dtype=float)
    if h.size == 0:
        return float("nan"), float("nan")
    idx = np.nonzero((h <= high * h[0]) & (h >= low * h[0]))[0]
    if len(idx) < 5:
        return float("nan"), float("nan")
    y = np.log(h[idx])
    coef = np.polyfit(idx, y, 1)
    resid = y - np.polyval(coef, idx)
    return float(np.exp(coef[0])), float(1 - resid.var() / y.var())


def _per_n(runs: pd.DataFrame, make) -> rules.Decision:
    """One decision per n (each at the Bonferroni level for the number of n values), combined by :func:`rules.at_every`."""
    groups = list(runs.groupby("n"))
    level = rules.bonferroni_level(max(1, len(groups)))
    return rules.at_every({f"n = {n}": make(g, level) for n, g in groups})


def _level_decision(g: pd.DataFrame, level: float) -> rules.Decision:
    m, lo, hi = rules.mean_interval(g["error"] / g["reference"], level)
    return rules.within(m, lo, hi, int(len(g)), *LEVEL_BAND, min_units=MIN_TRIALS)


def _beats(col: str):
    def make(g: pd.DataFrame, level: float) -> rules.Decision:
        return rules.paired_difference(g[col].to_numpy(), g["error"].to_numpy(), lower=0.0, min_units=MIN_TRIALS,
                                       level=level)
    return make


def _knowing_r(g: pd.DataFrame, level: float) -> rules.Decision:
    return rules.paired_difference(np.log(g["error"].to_numpy()), np.log(g["exact_r_error"].to_numpy()),
                                   lower=float(np.log(KNOWING_R_BAND[0])), upper=float(np.log(KNOWING_R_BAND[1])),
                                   min_units=MIN_TRIALS, level=level)


def _fits_better(g: pd.DataFrame, level: float) -> rules.Decision:
    return rules.paired_difference(g["train_loss"].to_numpy(), g["baseline_train_loss"].to_numpy(), lower=0.0,
                                   min_units=MIN_TRIALS, level=level)


def _lambda_decision(result: GreedyResult) -> tuple[str, str]:
    """Verdict and statistic of ``exactly-r-over-a-range-of-lambda``."""
    from ..experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED

    s = lambda_summary(result)
    shares = ", ".join(f"λ = {lam:g}: {share:.0%}" for lam, share in s["share with exactly r"].items())
    if s["trials"].min() < MIN_TRIALS:
        return INCONCLUSIVE, f"{int(s['trials'].min())} trials at some λ, the rule needs {MIN_TRIALS}; {shares}"
    rng = lambda_range(result)
    span = rng[1] / rng[0] if rng else 0.0
    where = f"exactly r in every trial for λ in [{rng[0]:g}, {rng[1]:g}] (a factor {span:g})" if rng else \
        "no λ kept exactly r in every trial"
    return (SUPPORTED if span >= LAMBDA_SPAN else NOT_SUPPORTED), f"{where}; {shares} ({int(s['trials'].min())} trials each)"


CLAIMS = {
    "regularizer-separates-columns": (
        "With the group-Lasso penalty only r columns stay non-negligible; without it many columns are comparable "
        "to the largest (paper Fig. 1; one run, an illustration).",
        "exactly r columns above the threshold with the penalty, at least 20% of columns at half the largest without"),
    "prune-keeps-exactly-r": (
        "After pruning exactly r columns survive, at the chapter's λ (matrix sensing and the quadratic network).",
        "the share of runs that keep exactly r and do not diverge is at least 0.95 (Wilson 95% interval; ≥ 10 runs)"),
    "exactly-r-over-a-range-of-lambda": (
        f"Exactly r columns survive over a range of the penalty weight λ spanning a factor of at least {LAMBDA_SPAN:g}, "
        "not only near the value the book chose.",
        f"every trial (≥ {MIN_TRIALS} per λ) keeps exactly r at consecutive grid values spanning a factor "
        f"≥ {LAMBDA_SPAN:g} in λ (a count over all trials, not an interval)"),
    "error-level-sigma-sqrt-rd-over-n": (
        "After fine-tuning the error is at the level σ√(rd/n) of the theorem, at every n.",
        f"at every n the mean of error / σ√(rd/n) has its interval (95% family-wise, Bonferroni over n) inside "
        f"[{LEVEL_BAND[0]:g}, {LEVEL_BAND[1]:g}]; ≥ {MIN_TRIALS} problems per n"),
    "pruning-beats-unpruned": (
        "The pruned, fine-tuned model generalizes better than the unpruned, unregularized one trained as long.",
        "at every n the mean paired difference (unpruned − pruned error) has its interval above 0 "
        "(95% family-wise, Bonferroni over n)"),
    "pruning-beats-early-stopped-unpruned": (
        "It still does when the unpruned model is stopped early on fresh validation measurements.",
        "at every n the mean paired difference (early-stopped unpruned − pruned error) has its interval above 0 "
        "(95% family-wise, Bonferroni over n)"),
    "pruning-matches-knowing-r": (
        "Pruning and fine-tuning is as good as fitting exactly r columns from scratch, i.e. as knowing r.",
        f"at every n the mean paired log ratio log(pruned / exactly-r error) has its interval inside "
        f"[log {KNOWING_R_BAND[0]:g}, log {KNOWING_R_BAND[1]:g}] (95% family-wise)"),
    "unpruned-fits-the-training-data-better": (
        "The unpruned model has the lower training error.",
        "at every n the mean paired difference (pruned − unpruned training MSE) has its interval above 0 "
        "(95% family-wise)"),
    "fine-tuning-converges-linearly": (
        "Fine-tuning converges linearly (a check: near a minimum with a local error bound, modulo rotations "
        "U → UR, gradient descent with a small enough step does).",
        "R² ≥ 0.95 of a log-linear fit of the gradient norm for every run (between 1e-7 and 1e-2 of its start)"),
    "quadratic-network-pruned-generalizes": (
        "For the quadratic-activation network the pruned, fine-tuned model keeps r neurons and has the lower "
        "test error than the unpruned one.",
        "every trial keeps r neurons, and the mean paired difference of test MSE (unpruned − pruned) has its "
        "95% interval above 0"),
}
"""Each claim's statement and rule (fixed before the evidence run), by claim id."""


def check_claims(result: GreedyResult) -> list[Claim]:
    """The claims of Rajaraman et al. tested by the chapter (statements and rules in :data:`CLAIMS`).

    * ``regularizer-separates-columns``: with the penalty exactly r columns above the threshold, without
      it at least 20% of the columns at half the largest norm (Fig. 1; one run).
    * ``prune-keeps-exactly-r``: the share of runs keeping exactly r (Wilson interval) at least 0.95.
    * ``exactly-r-over-a-range-of-lambda``: every trial keeps exactly r over consecutive λ spanning a factor ≥ 10.
    * ``error-level-sigma-sqrt-rd-over-n``: at every n, error / σ√(rd/n) inside [0.5, 2] (Bonferroni).
    * ``pruning-beats-unpruned`` and ``pruning-beats-early-stopped-unpruned``: at every n the paired
      difference of errors above 0 (Bonferroni).
    * ``pruning-matches-knowing-r``: at every n the paired log ratio to the exact-r model inside
      [log 0.8, log 1.25] (Bonferroni).
    * ``unpruned-fits-the-training-data-better``: at every n the paired training-MSE difference above 0.
    * ``fine-tuning-converges-linearly`` (a check): R² ≥ 0.95 of a log-linear fit for every run.
    * ``quadratic-network-pruned-generalizes``: every trial keeps r neurons and the paired test-MSE
      difference is above 0.

    Intervals resample problems (the independent unit); claims made "at every n" use a
    Bonferroni level over the n values and :func:`~winning_ticket.experiments.rules.at_every`.
    When a run pruned every column (λ too large), the claims about the fine-tuned model are
    INCONCLUSIVE with that reason, and ``prune-keeps-exactly-r`` is NOT SUPPORTED.
    """
    c = result.config
    f1 = figure1_counts(result)
    runs, quad = result.runs, result.quad
    with_, without = f1.loc["with group Lasso", "columns above 2√β"], f1.loc["without regularizer", "columns ≥ 0.5 × largest"]
    claims = [Claim(name="regularizer-separates-columns", statement=CLAIMS["regularizer-separates-columns"][0],
                    holds=bool(with_ == c.fig_r and without >= 0.2 * c.fig_d),
                    statistic=f"with: {with_} of {c.fig_d} columns above 2√β; without: {without} of {c.fig_d} at "
                              "≥ 0.5 × largest", rule=CLAIMS["regularizer-separates-columns"][1])]
    every = pd.concat([runs[["kept", "status"]], quad[["kept", "status"]]])
    good = int(((every["kept"] == c.r) & (every["status"] == "done")).sum())
    claims.append(rules.rate_at_least(good, len(every), 0.95).claim(
        "prune-keeps-exactly-r", *CLAIMS["prune-keeps-exactly-r"], what="share of runs keeping exactly r"))
    verdict, stat = _lambda_decision(result)
    claims.append(Claim(name="exactly-r-over-a-range-of-lambda", statement=CLAIMS["exactly-r-over-a-range-of-lambda"][0],
                        holds={"SUPPORTED": True, "NOT SUPPORTED": False}.get(verdict), statistic=stat,
                        rule=CLAIMS["exactly-r-over-a-range-of-lambda"][1]))
    empty = int((runs["kept"] == 0).sum() + (quad["kept"] == 0).sum())
    fine_tuned = ("error-level-sigma-sqrt-rd-over-n", "pruning-beats-unpruned", "pruning-beats-early-stopped-unpruned",
                  "pruning-matches-knowing-r", "unpruned-fits-the-training-data-better", "fine-tuning-converges-linearly",
                  "quadratic-network-pruned-generalizes")
    if empty:
        reason = (f"{empty} run(s) pruned every column (λ = {c.lam:g} is too large for the threshold 2√β = "
                  f"{c.tau:.2g}); nothing is left to fine-tune")
        return claims + [inconclusive(name, CLAIMS[name][0], CLAIMS[name][1], reason) for name in fine_tuned]
    claims.append(_per_n(runs, _level_decision).claim(
        "error-level-sigma-sqrt-rd-over-n", *CLAIMS["error-level-sigma-sqrt-rd-over-n"], what="error / σ√(rd/n)"))
    claims.append(_per_n(runs, _beats("baseline_error")).claim(
        "pruning-beats-unpruned", *CLAIMS["pruning-beats-unpruned"], what="unpruned − pruned error"))
    claims.append(_per_n(runs, _beats("early_stopped_error")).claim(
        "pruning-beats-early-stopped-unpruned", *CLAIMS["pruning-beats-early-stopped-unpruned"],
        what="early-stopped − pruned error"))
    claims.append(_per_n(runs, _knowing_r).claim(
        "pruning-matches-knowing-r", *CLAIMS["pruning-matches-knowing-r"], what="log(pruned / exactly-r error)"))
    claims.append(_per_n(runs, _fits_better).claim(
        "unpruned-fits-the-training-data-better", *CLAIMS["unpruned-fits-the-training-data-better"],
        what="pruned − unpruned training MSE"))
    fits = np.array([linear_phase_r2(h) for h in runs["history_grad"]], dtype=float).reshape(-1, 2)
    fitted = fits[np.isfinite(fits[:, 1])]
    short = len(fits) - len(fitted)  # too few records in the fit's window: undecided, not a failure
    r2 = float(fitted[:, 1].min()) if len(fitted) else float("nan")
    rate = float(np.median(fitted[:, 0])) if len(fitted) else float("nan")
    claims.append(Claim(name="fine-tuning-converges-linearly", statement=CLAIMS["fine-tuning-converges-linearly"][0],
                        holds=None if (len(fits) < MIN_TRIALS or short) else bool(r2 >= 0.95),
                        statistic=f"smallest R² of the log-linear fit over {len(fitted)} runs: {r2:.3f}"
                                  f"{f' ({short} runs too short to fit)' if short else ''}; median contraction "
                                  f"per 10 steps {rate:.3f}",
                        rule=CLAIMS["fine-tuning-converges-linearly"][1]))
    d = rules.paired_difference(quad["baseline_test_mse"].to_numpy(), quad["test_mse"].to_numpy(), lower=0.0,
                                min_units=MIN_TRIALS)
    if d.verdict == "SUPPORTED" and not (quad["kept"] == c.r).all():
        d = rules.Decision("NOT SUPPORTED", d.estimate, d.low, d.high, d.units,
                           f"kept neurons {sorted(set(quad['kept']))}, not always r = {c.r}")
    claims.append(d.claim("quadratic-network-pruned-generalizes", *CLAIMS["quadratic-network-pruned-generalizes"],
                          what="unpruned − pruned test MSE"))
    return claims


def plot_figure1(result: GreedyResult):
    """Fig. 1 of Rajaraman et al.: sorted column norms without and with the group-Lasso penalty."""
    c = result.config
    xs = np.linspace(0, 1, 101)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    for i, name in enumerate(FIG1_SETTINGS):
        norms = _norms(result, name)
        ax_a.plot(xs, [(norms >= x * norms.max()).mean() for x in xs], color=PALETTE[i], label=name)
        ax_b.hist(norms, bins=40, color=PALETTE[i], alpha=0.7, label=name)
    label_axes(ax_a, "x (fraction of the largest column norm)", "fraction of columns with norm ≥ x · max", f"(a) d = k = {c.fig_d}, r = {c.fig_r}, population loss", legend=True)
    ax_b.set_yscale("log")
    label_axes(ax_b, r"column norm $\|u_j\|_2$", "number of columns", "(b) histogram of column norms", legend=True)
    return fig


def plot_pipeline(result: GreedyResult):
    """Error against n for the pipeline and its three controls (means with 95% intervals over problems),
    the level error / σ√(rd/n), and one fine-tuning history."""
    c = result.config
    runs = result.runs
    ns = np.sort(runs["n"].unique())
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(14, 4.0))
    series = (("pruned + fine-tuned", "error", "o", "-"), ("exactly r from scratch", "exact_r_error", "D", ":"),
              ("unpruned, early-stopped", "early_stopped_error", "v", "--"),
              ("unpruned, all steps", "baseline_error", "s", "-"))
    for i, (label, col, marker, ls) in enumerate(series):
        stats = np.array([rules.mean_interval(runs.loc[runs["n"] == n, col]) for n in ns])
        ax_a.errorbar(ns, stats[:, 0], yerr=[stats[:, 0] - stats[:, 1], stats[:, 2] - stats[:, 0]], marker=marker,
                      ls=ls, color=PALETTE[i], capsize=3, label=label)
    ax_a.plot(ns, c.sigma * np.sqrt(c.r * c.d / ns), color="0.4", ls=":", label=r"$\sigma\sqrt{rd/n}$")
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    label_axes(ax_a, "measurements n", r"$\|UU^\top - M^*\|_F$ (mean, 95% CI)",
               f"(a) d = {c.d}, r = {c.r}, k = {c.k}, σ = {c.sigma}")
    ax_a.legend(fontsize=7)
    for i, (label, col, marker, ls) in enumerate(series):
        stats = np.array([rules.mean_interval(runs.loc[runs["n"] == n, col] / runs.loc[runs["n"] == n, "reference"])
                          for n in ns])
        ax_b.errorbar(ns, stats[:, 0], yerr=[stats[:, 0] - stats[:, 1], stats[:, 2] - stats[:, 0]], marker=marker,
                      ls=ls, color=PALETTE[i], capsize=3, label=label)
    ax_b.axhspan(*LEVEL_BAND, color="0.9", zorder=0, label="band of the level claim")
    ax_b.set_xscale("log")
    label_axes(ax_b, "measurements n", r"error / $\sigma\sqrt{rd/n}$ (mean, 95% CI)", "(b) the level of the theorem")
    ax_b.legend(fontsize=7)
    row = runs[runs["n"] == c.n_values[len(c.n_values) // 2]].head(1)
    he, hg = row["history_error"].iloc[0], row["history_grad"].iloc[0]
    steps = np.arange(len(he)) * 10
    ax_c.plot(steps, hg, color=PALETTE[4], label=r"gradient norm $\|\nabla L\|_F$")
    ax_c.plot(steps, he, color=PALETTE[0], label=r"error $\|UU^\top - M^*\|_F$")
    ax_c.set_yscale("log")
    label_axes(ax_c, "fine-tuning step", "value (log scale)", f"(c) fine-tuning, n = {int(row['n'].iloc[0])}")
    ax_c.legend(fontsize=7)
    return fig


def quad_table(result: GreedyResult) -> pd.DataFrame:
    """The quadratic network: neurons kept and test MSE of the pipeline and its controls (means over trials)."""
    q = result.quad
    c = result.config
    return pd.DataFrame({
        "pruned + fine-tuned": [f"{q['kept'].min()}-{q['kept'].max()}", q["test_mse"].mean(), q["test_mse_sampled"].mean(),
                                q["train_loss"].mean()],
        "exactly r from scratch": [str(c.r), q["exact_r_test_mse"].mean(), float("nan"), q["exact_r_train_loss"].mean()],
        "unpruned, unregularized": [str(c.k), q["baseline_test_mse"].mean(), float("nan"),
                                    q["baseline_train_loss"].mean()],
    }, index=["neurons", "test MSE (population formula)", "test MSE (fresh samples)", "training MSE"])


CHAPTER = ChapterSpec("greedy_pruning", "Greedy pruning with group Lasso: matrix sensing", GreedyConfig, GreedyResult, run, check_claims,
                      {"Fig. 1 (Rajaraman et al.)": plot_figure1, "pipeline": plot_pipeline}, sweeps=sweeps)
