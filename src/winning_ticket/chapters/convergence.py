r"""The Convergence chapter: paper Fig. 3 and Theorem 2.

Set-up of Fig. 3 (spec section 5.1): :math:`N = 3000`, :math:`d = 300`,
:math:`K = 5`, noiseless data, AGD with :math:`\eta = 0.5`, :math:`\beta = 0.2`
and GD (:math:`\beta = 0`).  The paper leaves the grid of :math:`r`, the
starting distance :math:`\lambda` and the trial count open; we take
:math:`\lambda = 0.5` and the grids of ``ConvergenceConfig.PROFILES``.

Two arms, with the problem instance as the independent unit:

* **fixed N** (the paper's figure): :math:`N = 3000` for every :math:`r`, so the
  sparsity :math:`r` and the unknowns per sample :math:`rK/N` grow together;
* **fixed ratio**: :math:`N = c\,rK`, so only :math:`r` moves.

Every problem is run four times from the same start: AGD and GD at the paper's step,
and, with :math:`\mu` and :math:`L` the extreme eigenvalues of the Hessian at
:math:`W^*`, GD at its best step :math:`2/(L+\mu)` (just under the stability limit
:math:`2/L`) and heavy ball with Polyak's :math:`(\eta, \beta)`.  The paper's step is
:math:`1/80` to :math:`1/30` of the stability limit, where momentum :math:`\beta` is GD with step
:math:`\eta/(1-\beta)` (:func:`~winning_ticket.algorithms.rates.heavy_ball_rate`); the
tuned pair tests momentum where it can matter.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter
import numpy as np
import pandas as pd
import torch

from ..algorithms.agd import STOP_TOL, RunStatus
from ..algorithms.engine import batched_hessian, default_device, run_agd_batched, stack_problems
from ..algorithms.rates import best_gd_step, fit_rate, heavy_ball_rate, polyak_parameters
from ..algorithms.teacher_student import initial_point, make_problem
from ..experiments import rules
from ..experiments.chapter import ChapterConfig, ChapterResult, ChapterSpec, SweepPlan, param, run_plans
from ..experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Claim, inconclusive
from ..experiments.plotting import PALETTE, label_axes, sequential_colors
from ..experiments.rules import cluster_slope
from ..experiments.seeding import seed_sequence

AGD, GD = "AGD (paper step)", "GD (paper step)"
GD_TUNED, HB_TUNED = "GD, step 2/(L+μ)", "heavy ball, Polyak's (η, β)"
METHODS = (AGD, GD, GD_TUNED, HB_TUNED)
"""The four runs of every problem, in the order of the engine batch's columns."""
PAPER_METHODS = (AGD, GD)
ARMS = ("fixed N", "fixed ratio")
R2_THRESHOLD = 0.99
"""A run converges linearly when its log-linear fit has at least this R²."""
RATIO_BAND = (-0.25, 0.25)
"""ν set by the sample ratio: the log-log slope of 1 − ν on r at a fixed N/(rK) must lie in this band."""
THEORY_BAND = (0.8, 1.25)
"""The measured 1 − ν over the local quadratic theory's 1 − ν must lie in this band (mean over problems)."""
IDENTITY_TOLERANCE = 0.04
"""The paper-step speed-up (1 − ν_AGD)/(1 − ν_GD) must lie within this relative distance of 1/(1 − β)."""
SQRT_KAPPA_BAND = (0.3, 0.7)
"""The tuned momentum gain grows like √κ: its log-log slope on κ must lie in this band (the quadratic theory's
(κ+1)/(√κ+1) has slope 0.5 to 0.55 for κ from 5 to 200)."""
MIN_PROBLEMS = 5
"""The fewest problems a per-r rule decides on."""
MAX_ITER = 30_000
"""The chapter's iteration cap: every paper-step run at r = d and N = 3000 stops by the relative-change rule before it."""


@dataclass(frozen=True)
class ConvergenceConfig(ChapterConfig):
    """Parameters of the Fig. 3 experiment (fixed-N arm) and of the fixed-ratio arm."""

    N: int = param(3000, "training samples of the fixed-N arm", low=1)
    d: int = param(300, "input dimension", low=1)
    K: int = param(5, "hidden neurons", low=1)
    r_values: tuple[int, ...] = param((30, 60, 90, 120, 150, 180, 210, 240, 270, 300),
                                      "remaining weights per neuron, fixed-N arm (the grid of Fig. 3)",
                                      low=1, high="d", item="r")
    ratio: float = param(4.0, "samples per unknown N/(rK) of the fixed-ratio arm", low=0.0, low_open=True)
    ratio_r_values: tuple[int, ...] = param((30, 60, 120, 240), "remaining weights per neuron, fixed-ratio arm",
                                            low=1, high="d", item="r")
    trials: int = param(20, "independent problems per r (each arm)", low=1)
    lam: float = param(0.5, "relative distance of the start from W*", low=0.0)
    eta: float = param(0.5, "the paper's step size η", low=0.0, low_open=True)
    beta: float = param(0.2, "the paper's momentum β of AGD (GD: 0)", low=0.0, high=1.0, high_open=True)
    max_iter: int = param(MAX_ITER, "iteration cap", low=1)
    tol: float = param(STOP_TOL, "relative-change threshold of the stopping rule", low=0.0)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(N=800, d=60, K=3, r_values=(5, 10, 20, 40), ratio_r_values=(10, 20, 40), ratio=8.0,
                      trials=2),
        "book": dict(r_values=(25, 50, 100, 150), ratio_r_values=(25, 50, 100), trials=2),
        "evidence": dict(r_values=(30, 60, 120, 180, 240, 300), trials=8),
    }

    def validate(self) -> None:
        if self.ratio <= 1:
            raise ValueError(f"ratio = {self.ratio} must be > 1: with N <= rK the Hessian at W* is singular")
        if max(self.r_values) * self.K >= self.N:
            raise ValueError(f"r_values = {self.r_values} must have r K < N = {self.N} (the Hessian at W* is singular otherwise)")

    def ratio_N(self, r: int) -> int:
        """The fixed-ratio arm's N for ``r``: ``round(ratio * r * K)``."""
        return int(round(self.ratio * r * self.K))


def curvature_at_optimum(XT: torch.Tensor, w_star: torch.Tensor) -> tuple[float, float]:
    """Smallest and largest eigenvalue of the empirical Hessian at :math:`W^*` (one problem)."""
    eig = torch.linalg.eigvalsh(batched_hessian(XT, w_star.unsqueeze(1))[0, 0])
    return float(eig[0]), float(eig[-1])


def convergence_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    r"""Each trial's problem from one start, by the four methods of :data:`METHODS`, in one engine batch.

    Trial seed stream 0 draws the problem, stream 1 the start.  The Hessian at :math:`W^*`
    gives :math:`\mu`, :math:`L`, the tuned steps and each run's predicted rate
    (:func:`~winning_ticket.algorithms.rates.heavy_ball_rate`).  The rows of trial 0 carry the
    run's relative-error history (Fig. 3a and the momentum figure).
    """
    N, d, K, r = params["N"], params["d"], params["K"], params["r"]
    device = default_device()
    problems = [make_problem(N, d, K, r, 0.0, seed_sequence(ss, 0)) for ss in seeds]
    etas, betas, curv = [], [], []
    for p in problems:
        XT, _, w_star = stack_problems([p], device)
        mu, L = curvature_at_optimum(XT, w_star)
        eta_hb, beta_hb = polyak_parameters(mu, L)
        etas.append([params["eta"], params["eta"], best_gd_step(mu, L), eta_hb])
        betas.append([params["beta"], 0.0, 0.0, beta_hb])
        curv.append((mu, L))
    W0 = np.stack([np.stack([initial_point(p.w_star, params["lam"], seed_sequence(ss, 1))] * len(METHODS))
                   for p, ss in zip(problems, seeds)])
    res = run_agd_batched(problems, W0, np.array(etas), np.array(betas), max_iter=params["max_iter"],
                          tol=params["tol"], progress=False)
    rows = []
    for b, trial in enumerate(trials):
        mu, L = curv[b]
        for col, method in enumerate(METHODS):
            h = res.rel_error[b, col]
            diverged = res.status[b, col] == RunStatus.DIVERGED
            fit = fit_rate(h)
            h = h[np.isfinite(h)]
            rows.append(dict(arm=params["arm"], N=N, r=r, sqrt_r=float(np.sqrt(r)), ratio=N / (r * K), trial=trial,
                             method=method, eta=float(etas[b][col]), beta=float(betas[b][col]),
                             mu=mu, L=L, kappa=L / mu,
                             predicted_rate=heavy_ball_rate(etas[b][col], betas[b][col], mu, L),
                             **res.record(b, col),
                             rate=np.nan if diverged else fit.rate, r2=np.nan if diverged else fit.r2,
                             flops=4.0 * N * r * K * int(res.iterations[b, col]),
                             history=[float(x) for x in h] if trial == 0 else None))
    return rows


@dataclass(kw_only=True)
class ConvergenceResult(ChapterResult):
    """Runs of the two arms, one row per (r, problem, method): ``runs`` (fixed N, Fig. 3) and
    ``ratio_runs`` (fixed N/(rK)).

    Each row holds the step and momentum used, the Hessian's extreme eigenvalues at W*
    (``mu``, ``L``, ``kappa``), the local theory's ``predicted_rate``, the outcome (iterations,
    status, final error, success), the fitted ``rate`` and its R², and the useful flops; the rows
    of trial 0 also hold the relative-error ``history`` (``None`` elsewhere).
    """

    TABLES: ClassVar[tuple[str, ...]] = ("runs", "ratio_runs")
    config: ConvergenceConfig
    runs: pd.DataFrame
    ratio_runs: pd.DataFrame

    def all_runs(self) -> pd.DataFrame:
        """Both arms' runs in one table."""
        return pd.concat([self.runs, self.ratio_runs], ignore_index=True)

    @property
    def flops(self) -> float:
        """Useful floating-point work of all runs (4 N r K per iteration)."""
        return float(self.all_runs()["flops"].sum())

    def history(self, r: int, method: str = AGD, arm: str = "fixed N") -> np.ndarray:
        """The relative-error history of trial 0 at ``r`` by ``method``."""
        runs = self.runs if arm == "fixed N" else self.ratio_runs
        row = runs[(runs["r"] == r) & (runs["trial"] == 0) & (runs["method"] == method)]
        return np.asarray(row["history"].iloc[0], dtype=np.float64)


def sweeps(config: ConvergenceConfig) -> list[SweepPlan]:
    """Two sweeps (the arms), a task per r and one trial per unit of work (so any archived run can be
    re-executed alone).  Trial seeds are keyed by ``(N, r)``: changing a step, the cap or the
    trial count keeps the problem instances."""
    c = config
    common = dict(d=c.d, K=c.K, lam=c.lam, eta=c.eta, beta=c.beta, max_iter=c.max_iter, tol=c.tol)
    fixed = tuple(dict(arm="fixed N", N=c.N, r=r, **common) for r in c.r_values)
    ratio = tuple(dict(arm="fixed ratio", N=c.ratio_N(r), r=r, **common) for r in c.ratio_r_values)
    keys = ("N", "r")
    return [SweepPlan(f"convergence-fixedN-{c.profile}", convergence_task, fixed, c.trials, c.seed, keys, 1, "runs"),
            SweepPlan(f"convergence-ratio-{c.profile}", convergence_task, ratio, c.trials, c.seed, keys, 1,
                      "ratio_runs")]


def run(config: ConvergenceConfig, *, executor: Executor | None = None, cache_dir=None,
        progress: bool | None = None) -> ConvergenceResult:
    """Run both arms (tasks choose their device: ``$WT_DEVICE``, else CUDA when available)."""
    return run_plans(sweeps(config), ConvergenceResult, config, executor=executor, cache_dir=cache_dir,
                     progress=progress)


# --- summaries ----------------------------------------------------------------------------------


def summary(result: ConvergenceResult) -> pd.DataFrame:
    """Per (arm, r, method): problems, successes, mean iterations, runs stopped by the cap, rate mean and range,
    the local theory's mean rate, and the smallest R²."""
    g = result.all_runs().groupby(["arm", "r", "method"], sort=False)
    out = g.agg(
        problems=("rate", "size"),
        successes=("success", "sum"),
        iterations=("iterations", "mean"),
        capped=("status", lambda s: int((s == "max_iter").sum())),
        rate_mean=("rate", "mean"),
        rate_min=("rate", "min"),
        rate_max=("rate", "max"),
        predicted=("predicted_rate", "mean"),
        min_r2=("r2", "min"),
    )
    out["iterations"] = out["iterations"].round(1)
    return out


def _wide(runs: pd.DataFrame, value: str = "rate") -> pd.DataFrame:
    """``value`` of the four methods side by side, one row per (arm, r, trial)."""
    wide = runs.pivot(index=["arm", "r", "trial"], columns="method", values=value)
    for method in METHODS:
        if method not in wide:
            wide[method] = np.nan
    return wide[list(METHODS)]


def speedup(result: ConvergenceResult) -> pd.DataFrame:
    r"""Per (arm, r): the paper-step speed-up :math:`(1-\nu_{AGD})/(1-\nu_{GD})` of paired runs (mean, range).

    For small steps the heavy-ball recursion is GD with step :math:`\eta/(1-\beta)`, so the speed-up
    is close to :math:`1/(1-\beta)` (1.25 for :math:`\beta = 0.2`); ``heavy_ball_limit`` shows it.
    Only pairs in which both runs have a rate count (none: an empty table).
    """
    wide = _wide(result.all_runs())[[AGD, GD]].dropna()
    ratio = ((1 - wide[AGD]) / (1 - wide[GD])).groupby(level=["arm", "r"], sort=False)
    out = pd.DataFrame({"speedup_mean": ratio.mean(), "speedup_min": ratio.min(), "speedup_max": ratio.max()})
    out["heavy_ball_limit"] = 1.0 / (1.0 - result.config.beta)
    return out


def momentum_gains(runs: pd.DataFrame) -> pd.DataFrame:
    r"""One row per problem: κ, the tuned methods' rates and the momentum gain
    :math:`(1-\nu_{HB})/(1-\nu_{GD})`, next to the quadratic theory's gain :math:`(\kappa+1)/(\sqrt\kappa+1)`.

    A diverged heavy-ball run has gain 0 (it never converged); a problem whose tuned GD run
    diverged or has no rate has no gain (NaN).
    """
    wide = _wide(runs)
    status = _wide(runs.assign(div=(runs["status"] == "diverged").astype(float)), "div")
    kappa = runs.pivot_table(index=["arm", "r", "trial"], values="kappa", aggfunc="first")["kappa"]
    gain = (1 - wide[HB_TUNED]) / (1 - wide[GD_TUNED])
    gain = gain.where(status[HB_TUNED] != 1.0, 0.0)
    out = pd.DataFrame({"kappa": kappa, "rate_GD_tuned": wide[GD_TUNED], "rate_HB_tuned": wide[HB_TUNED],
                        "gain": gain})
    out["theory_gain"] = (out["kappa"] + 1) / (np.sqrt(out["kappa"]) + 1)
    return out.reset_index()


def momentum_table(result: ConvergenceResult) -> pd.DataFrame:
    """Per (arm, r): mean κ, tuned iterations, and the momentum gain (mean, 95% interval over problems) beside the theory's."""
    g = momentum_gains(result.all_runs())
    runs = result.all_runs()
    its = runs.pivot_table(index=["arm", "r"], columns="method", values="iterations", aggfunc="median")
    rows = []
    for (arm, r), grp in g.groupby(["arm", "r"], sort=False):
        mean, lo, hi = rules.mean_interval(grp["gain"])
        rows.append(dict(arm=arm, r=r, problems=int(grp["gain"].notna().sum()), kappa=grp["kappa"].mean(),
                         iterations_GD_tuned=its.loc[(arm, r), GD_TUNED], iterations_HB_tuned=its.loc[(arm, r), HB_TUNED],
                         gain=mean, gain_low=lo, gain_high=hi, theory_gain=grp["theory_gain"].mean()))
    return pd.DataFrame(rows).set_index(["arm", "r"])


def curvature_table(result: ConvergenceResult) -> pd.DataFrame:
    """Per (arm, r): N/(rK) and the mean extreme Hessian eigenvalues μ, L at W* and κ = L/μ over the problems."""
    runs = result.all_runs().drop_duplicates(["arm", "r", "trial"])
    return runs.groupby(["arm", "r"], sort=False).agg(N=("N", "first"), ratio=("ratio", "first"), mu=("mu", "mean"),
                                                       L=("L", "mean"), kappa=("kappa", "mean"))


def theory_ratios(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: the measured 1 − ν over the local quadratic theory's 1 − ν (NaN where either is undefined)."""
    out = runs[["arm", "r", "trial", "method"]].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio"] = (1 - runs["rate"]) / (1 - runs["predicted_rate"])
    return out


def _units(df: pd.DataFrame) -> np.ndarray:
    """The independent unit of each row: the problem, (arm, r, trial)."""
    return (df["arm"].astype(str) + "/" + df["r"].astype(str) + "/" + df["trial"].astype(str)).to_numpy()


def log_rate_slope(runs: pd.DataFrame, method: str, *, seed: int) -> tuple[float, float, float, int]:
    """Least-squares slope of log(1 − ν) on log r for ``method``, with a bootstrap interval over problems."""
    m = runs[(runs["method"] == method)].dropna(subset=["rate"])
    m = m[m["rate"] < 1]
    return cluster_slope(np.log(m["r"]), np.log(1 - m["rate"]), _units(m), seed=seed)


# --- claims -------------------------------------------------------------------------------------


def _combine(decisions: list[rules.Decision]) -> bool | None:
    verdicts = {d.verdict for d in decisions}
    if not decisions:
        return None
    return False if NOT_SUPPORTED in verdicts else (None if INCONCLUSIVE in verdicts else True)


def check_claims(result: ConvergenceResult) -> list[Claim]:
    """The claims of Fig. 3 and Theorem 2, decided from the runs.

    The problem instance is the independent unit everywhere; the paper-step claims use AGD and GD
    at the paper's (η, β), the momentum claims the tuned pair.

    * ``linear-convergence``: every paper-step run reaches the fit window 1e-7 < error < 1e-2 and
      its log-linear fit has R² ≥ ``R2_THRESHOLD`` (0.99).  NOT SUPPORTED if a run diverged or a
      fit falls below; INCONCLUSIVE if some never reach the window (the budget decides, not the data).
    * ``rate-grows-with-sqrt-r`` (fixed N): for AGD and for GD, the 95% CI of the least-squares slope
      of ν on √r, resampling problems, lies above 0; below 0 for either: NOT SUPPORTED.
    * ``rate-set-by-sample-ratio`` (fixed N/(rK)): for AGD and for GD, the CI of the log-log slope of
      1 − ν on r lies inside ``RATIO_BAND`` (±0.25); outside for either: NOT SUPPORTED.
    * ``rate-matches-local-theory`` (a check): for each method, the t-interval of the mean over
      problems of (1 − ν)/(1 − ν_theory) lies inside ``THEORY_BAND`` ([0.8, 1.25]), ν_theory from
      :func:`~winning_ticket.algorithms.rates.heavy_ball_rate` on the Hessian at W*.
    * ``agd-is-gd-with-a-larger-step`` (a check of the heavy-ball identity): the t-interval of the
      mean paired speed-up (1 − ν_AGD)/(1 − ν_GD) lies within ``IDENTITY_TOLERANCE`` (4%) of 1/(1 − β).
    * ``tuned-momentum-beats-tuned-gd``: at every r of the fixed-N arm, the t-interval of the mean
      gain (1 − ν_HB)/(1 − ν_GD) of the tuned pair lies above 1 (a diverged heavy ball counts 0);
      below 1 at some r: NOT SUPPORTED; fewer than ``MIN_PROBLEMS`` problems at some r: INCONCLUSIVE.
    * ``momentum-gain-grows-like-sqrt-kappa``: the bootstrap CI of the log-log slope of the gain on
      κ = L/μ (both arms) lies inside ``SQRT_KAPPA_BAND`` ([0.3, 0.7]; the quadratic theory gives
      about 0.5); outside: NOT SUPPORTED.
    """
    c = result.config
    allruns = result.all_runs()
    paper = allruns[allruns["method"].isin(PAPER_METHODS)]
    fitted = paper.dropna(subset=["rate"])
    claims = []

    # 1. Linear convergence: log(error) is a straight line in t (paper step, both arms).
    statement = ("Check: at the paper's step the relative error decays linearly (a straight line on a log axis) for every r "
                 "(R² cannot see a rate that drifts by 10-20% along the fit window).")
    rule = (f"every paper-step run reaches the window 1e-7 < error < 1e-2 and fits with R² ≥ {R2_THRESHOLD}; "
            "NOT SUPPORTED if one diverges or fits worse; INCONCLUSIVE if some never reach the window")
    diverged = int((paper["status"] == "diverged").sum())
    if len(fitted) == 0 and diverged == 0:
        claims.append(inconclusive("linear-convergence", statement, rule,
                                   f"none of the {len(paper)} runs reached the fit window"))
    else:
        bad_fit = int((fitted["r2"] < R2_THRESHOLD).sum())
        holds = False if (diverged or bad_fit) else (True if len(fitted) == len(paper) else None)
        claims.append(Claim(
            name="linear-convergence", statement=statement, holds=holds,
            statistic=(f"R² of log-linear fits: min {fitted['r2'].min():.4f}, median {fitted['r2'].median():.4f}; "
                       f"{len(fitted)}/{len(paper)} runs reach the fit window, {diverged} diverged, "
                       f"{int((paper['status'] == 'max_iter').sum())} stopped by the cap"),
            rule=rule))

    # 2. The rate grows with sqrt(r) at fixed N (Fig. 3b), for AGD and for GD.
    statement = "At fixed N the convergence rate ν increases with √r (larger r converges more slowly)."
    rule = ("for AGD and for GD at the paper's step, the 95% CI of the least-squares slope of ν on √r "
            "(problems resampled) lies above 0; NOT SUPPORTED if it lies below 0 for either; INCONCLUSIVE otherwise")
    decisions, parts = [], []
    fixed = fitted[fitted["arm"] == "fixed N"]
    for method in PAPER_METHODS:
        m = fixed[fixed["method"] == method]
        slope, lo, hi, units = cluster_slope(m["sqrt_r"], m["rate"], _units(m), seed=c.seed)
        d = rules.above(slope, lo, hi, units, 0.0)
        decisions.append(d)
        parts.append(f"{method.split()[0]}: " + d.describe("slope per unit √r", ".2e"))
    claims.append(Claim(name="rate-grows-with-sqrt-r", statement=statement, holds=_combine(decisions),
                        statistic="; ".join(parts), rule=rule))

    # 3. At a fixed sample ratio the rate does not depend on r.
    statement = (f"At a fixed ratio N/(rK) = {c.ratio:g} the rate depends on r only weakly (|log-log slope of 1 − ν| < 0.25): "
                 "the growth at fixed N comes from the falling sample ratio.")
    rule = (f"for AGD and for GD at the paper's step, the 95% CI of the log-log slope of 1 − ν on r (problems resampled) "
            f"lies inside {list(RATIO_BAND)}; NOT SUPPORTED if it lies outside for either; INCONCLUSIVE otherwise")
    decisions, parts = [], []
    for method in PAPER_METHODS:
        slope, lo, hi, units = log_rate_slope(result.ratio_runs, method, seed=c.seed)
        d = rules.within(slope, lo, hi, units, *RATIO_BAND)
        decisions.append(d)
        parts.append(f"{method.split()[0]}: " + d.describe("slope", ".3f"))
    contrast = log_rate_slope(result.runs, AGD, seed=c.seed)
    stat = "; ".join(parts) + (f" (at fixed N the AGD slope is {contrast[0]:.3f})" if np.isfinite(contrast[0]) else "")
    claims.append(Claim(name="rate-set-by-sample-ratio", statement=statement, holds=_combine(decisions),
                        statistic=stat, rule=rule))

    # 4. Check: the measured rate is the local quadratic theory's (Hessian at W*).
    statement = ("Check: every method's 1 − ν is within 25% of the local theory's on average (the heavy-ball recursion on "
                 "the Hessian at W*, the convergence phase Theorem 2 describes).")
    rule = (f"for each method, the 95% CI of the mean over problems of (1 − ν)/(1 − ν_theory) lies inside "
            f"{list(THEORY_BAND)}; NOT SUPPORTED if outside for any method; INCONCLUSIVE otherwise")
    ratios = theory_ratios(allruns)
    decisions, parts = [], []
    for method in METHODS:
        v = ratios.loc[ratios["method"] == method, "ratio"].to_numpy()
        d = rules.within(*rules.mean_interval(v), int(np.isfinite(v).sum()), *THEORY_BAND, min_units=MIN_PROBLEMS)
        decisions.append(d)
        parts.append(f"{method}: " + d.describe("ratio", ".3f"))
    claims.append(Claim(name="rate-matches-local-theory", statement=statement, holds=_combine(decisions),
                        statistic="; ".join(parts), rule=rule))

    # 5. Check of the heavy-ball identity at the paper's small step: AGD = GD with step eta/(1-beta).
    limit = 1.0 / (1.0 - c.beta)
    band = (limit * (1 - IDENTITY_TOLERANCE), limit * (1 + IDENTITY_TOLERANCE))
    statement = (f"Check: at the paper's step AGD is faster than GD by the heavy-ball factor 1/(1 − β) = {limit:.3g}, "
                 f"to within {IDENTITY_TOLERANCE:.0%} (momentum acts as a larger step, nothing more).")
    rule = (f"the 95% CI of the mean paired speed-up (1 − ν_AGD)/(1 − ν_GD) (same problem, same start) lies inside "
            f"[{band[0]:.3g}, {band[1]:.3g}]; NOT SUPPORTED if outside; INCONCLUSIVE otherwise")
    wide = _wide(paper)[[AGD, GD]].dropna()
    sp = ((1 - wide[AGD]) / (1 - wide[GD])).to_numpy()
    d = rules.within(*rules.mean_interval(sp), int(sp.size), *band)
    claims.append(d.claim("agd-is-gd-with-a-larger-step", statement, rule, "speed-up", ".4f"))

    # 6. Near the stability limit, tuned momentum beats the best GD step, at every r.
    statement = ("Near the stability limit momentum pays: heavy ball with Polyak's (η, β) for the Hessian at W* converges "
                 "faster than GD at its best step, at every r, from a start at relative distance λ.")
    rule = ("at every r of the fixed-N arm, the 95% CI of the mean momentum gain (1 − ν_HB)/(1 − ν_GD) over problems lies "
            "above 1 (a diverged heavy-ball run counts as gain 0); NOT SUPPORTED if it lies below 1 at some r; "
            f"INCONCLUSIVE otherwise or with fewer than {MIN_PROBLEMS} problems at some r")
    gains = momentum_gains(result.runs)
    decisions, parts = [], []
    for r, grp in gains.groupby("r"):
        v = grp["gain"].to_numpy()
        d = rules.above(*rules.mean_interval(v), int(np.isfinite(v).sum()), 1.0, min_units=MIN_PROBLEMS)
        decisions.append(d)
        parts.append(f"r = {r}: {d.estimate:.2f} [{d.low:.2f}, {d.high:.2f}]")
    holds = _combine(decisions)
    stat = ("gain per r, mean [95% CI]: " + "; ".join(parts)
            + f" ({int(np.isfinite(gains['gain']).sum())} problems, "
              f"{int((gains['gain'] == 0).sum())} diverged heavy-ball runs)") if parts else "no tuned pair"
    reasons = [d.reason for d in decisions if d.verdict != SUPPORTED and d.reason]
    claims.append(Claim(name="tuned-momentum-beats-tuned-gd", statement=statement, holds=holds,
                        statistic=stat + (f"; {reasons[0]}" if reasons and holds is None else ""), rule=rule))

    # 7. The gain grows like sqrt(kappa) (Theorem 2: 1 - Theta(1/sqrt) against 1 - Theta(1/.)).
    statement = ("Check of Polyak's local theory: the momentum gain grows like √κ with the condition number κ = L/μ of the "
                 "Hessian at W* (given the previous checks nearly automatic; Theorem 2's √K cannot be tested at fixed K).")
    rule = (f"the 95% CI of the log-log slope of the gain on κ (both arms, problems resampled) lies inside "
            f"{list(SQRT_KAPPA_BAND)}; NOT SUPPORTED if outside; INCONCLUSIVE otherwise")
    allgains = momentum_gains(allruns)
    ok = allgains[(allgains["gain"] > 0) & np.isfinite(allgains["gain"])]
    slope, lo, hi, units = cluster_slope(np.log(ok["kappa"]), np.log(ok["gain"]), _units(ok), seed=c.seed)
    d = rules.within(slope, lo, hi, units, *SQRT_KAPPA_BAND)
    claim = d.claim("momentum-gain-grows-like-sqrt-kappa", statement, rule, "slope", ".3f")
    if len(ok):
        claim = Claim(name=claim.name, statement=statement, holds=claim.holds, rule=rule,
                      statistic=claim.statistic + f"; κ from {ok['kappa'].min():.1f} to {ok['kappa'].max():.1f}")
    claims.append(claim)
    return claims


# --- figures ------------------------------------------------------------------------------------


def _mean_with_interval(ax, x_and_values, color, marker, label):
    stats = [(x, *rules.mean_interval(v)) for x, v in x_and_values]
    if not stats:
        return
    x, mean, lo, hi = (np.array(v, dtype=float) for v in zip(*stats))
    ax.errorbar(x, mean, yerr=np.nan_to_num([mean - lo, hi - mean]), color=color, marker=marker, capsize=3,
                label=label)


def plot_figure3(result: ConvergenceResult):
    """Fig. 3 (fixed N): (a) relative error against iteration for each r (AGD); (b) rate against √r."""
    c = result.config
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 4))
    colors = sequential_colors(len(c.r_values))
    for color, r in zip(colors, c.r_values):
        h = result.history(r)
        ax_a.semilogy(np.arange(h.size), h, color=color, label=f"r = {r}")
    ax_a.axhline(1e-4, color="0.4", ls=":", lw=1)
    ax_a.text(0.99, 1.3e-4, "success threshold", color="0.35", ha="right", va="bottom",
              transform=ax_a.get_yaxis_transform(), fontsize=8)
    label_axes(ax_a, "iteration t", r"relative error $\|W^{(t)}-W^*\|_F/\|W^*\|_F$", "(a) AGD, first problem per r")
    ax_a.legend(fontsize=8, ncol=2)

    runs = result.runs.dropna(subset=["rate"])
    for color, marker, method in ((PALETTE[0], "o", AGD), (PALETTE[1], "s", GD)):
        m = runs[runs["method"] == method]
        ax_b.scatter(m["sqrt_r"], m["rate"], color=color, alpha=0.35, s=14, marker=marker, linewidths=0)
        _mean_with_interval(ax_b, [(x, g.to_numpy()) for x, g in m.groupby("sqrt_r")["rate"]], color, marker,
                            f"{method}, mean and 95% CI")
    label_axes(ax_b, r"$\sqrt{r}$", r"convergence rate $\nu$ (per iteration)",
               f"(b) rate against √r, N = {c.N} (dots: single runs)", legend=True)
    return fig


def plot_rates_and_ratio(result: ConvergenceResult):
    r"""1 − ν against r on log-log axes, fixed N against fixed N/(rK), at the paper's step, with the
    local theory's prediction (Hessian at W*) as open markers."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for color, arm, runs in ((PALETTE[0], "fixed N", result.runs), (PALETTE[2], "fixed ratio", result.ratio_runs)):
        for marker, method in (("o", AGD), ("s", GD)):
            m = runs[(runs["method"] == method)].dropna(subset=["rate"])
            if m.empty:
                continue
            gap = 1 - m["rate"]
            _mean_with_interval(ax, [(r, g.to_numpy()) for r, g in gap.groupby(m["r"])], color, marker,
                                f"{arm}, {method.split()[0]}")
            theory = (1 - m["predicted_rate"]).groupby(m["r"]).mean()
            ax.plot(theory.index, theory.to_numpy(), ls="none", marker=marker, mfc="none", color=color, ms=9, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted(set(result.runs["r"]) | set(result.ratio_runs["r"]))
    ax.set_xticks(ticks, [str(r) for r in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.plot([], [], ls="none", marker="o", mfc="none", color="0.4", ms=9, label="local theory (Hessian at W*)")
    label_axes(ax, "remaining weights per neuron r (log scale)", r"$1-\nu$ (error reduction per iteration, log scale)",
               f"fixed N = {result.config.N} against fixed N/(rK) = {result.config.ratio:g}", legend=True)
    return fig


def plot_momentum(result: ConvergenceResult):
    """Momentum near the stability limit: (a) trial 0's error curves at the smallest and largest r, four methods;
    (b) the gain of tuned heavy ball over tuned GD against κ, with the quadratic theory's (κ+1)/(√κ+1)."""
    c = result.config
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 4))
    styles = {AGD: (PALETTE[0], "-"), GD: (PALETTE[1], "-"), GD_TUNED: (PALETTE[1], "--"), HB_TUNED: (PALETTE[0], "--")}
    for r, alpha in ((min(c.r_values), 0.45), (max(c.r_values), 1.0)):
        for method in METHODS:
            h = result.history(r, method)
            color, ls = styles[method]
            ax_a.semilogy(np.arange(1, h.size + 1), h, color=color, ls=ls, alpha=alpha,
                          label=f"{method}" if r == max(c.r_values) else None)
    ax_a.set_xscale("log")
    label_axes(ax_a, "iteration t (log scale)", "relative error (log scale)",
               f"(a) first problem; faint r = {min(c.r_values)}, dark r = {max(c.r_values)}", legend=True)
    g = momentum_gains(result.all_runs())
    for color, marker, arm in ((PALETTE[0], "o", "fixed N"), (PALETTE[2], "^", "fixed ratio")):
        m = g[(g["arm"] == arm) & (g["gain"] > 0)]
        ax_b.scatter(m["kappa"], m["gain"], color=color, marker=marker, s=22, alpha=0.7, label=f"{arm} (problems)")
    if len(g):
        k = np.geomspace(g["kappa"].min() * 0.8, g["kappa"].max() * 1.25, 50)
        ax_b.plot(k, (k + 1) / (np.sqrt(k) + 1), color="0.3", ls="--", label=r"theory $(\kappa+1)/(\sqrt{\kappa}+1)$")
    ax_b.set_xscale("log")
    ax_b.set_yscale("log")
    label_axes(ax_b, r"condition number $\kappa = L/\mu$ of the Hessian at $W^*$ (log scale)",
               r"momentum gain $(1-\nu_{HB})/(1-\nu_{GD})$ (log scale)", "(b) tuned heavy ball over tuned GD",
               legend=True)
    return fig


CHAPTER = ChapterSpec("convergence", "Convergence: linear, and faster when pruned", ConvergenceConfig, ConvergenceResult,
                      run, check_claims, {"Fig. 3": plot_figure3, "rates and sample ratio": plot_rates_and_ratio,
                                          "momentum": plot_momentum}, sweeps=sweeps)
