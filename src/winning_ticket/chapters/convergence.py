r"""The Convergence chapter: paper Fig. 3 and Theorem 2.

Set-up of Fig. 3 (spec section 5.1): :math:`N = 3000`, :math:`d = 300`,
:math:`K = 5`, noiseless data, AGD with :math:`\eta = 0.5`, :math:`\beta = 0.2`
and GD (:math:`\beta = 0`).  The paper leaves the grid of :math:`r`, the
starting distance :math:`\lambda` and the trial count open; we take
:math:`\lambda = 0.5` and the grids of ``ConvergenceConfig.PROFILES``.

Design choice (recorded in the chapter): every problem instance is run from
``starts`` independent starting points, each with AGD and with GD from the
same point, so AGD-versus-GD is a paired comparison and the runs of one
problem share its data in the batched engine.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..algorithms.agd import ITERATION_CAP, STOP_TOL, RunStatus
from ..experiments import rules
from ..experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, Claim, inconclusive
from ..experiments.rules import cluster_slope
from ..algorithms.engine import run_agd_batched
from ..algorithms.teacher_student import initial_point, make_problem
from ..experiments.seeding import seed_sequence
from ..experiments.plotting import PALETTE, label_axes, sequential_colors
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec, SweepPlan
from ..algorithms.rates import fit_rate

AGD, GD = "AGD (β = 0.2)", "GD (β = 0)"
R2_THRESHOLD = 0.99
"""A run converges linearly when its log-linear fit has at least this R²."""


@dataclass(frozen=True)
class ConvergenceConfig(ChapterConfig):
    """Parameters of the Fig. 3 experiment."""

    N: int = param(3000, "training samples", low=1)
    d: int = param(300, "input dimension", low=1)
    K: int = param(5, "hidden neurons", low=1)
    r_values: tuple[int, ...] = param((30, 60, 90, 120, 150, 180, 210, 240, 270, 300),
                                      "remaining weights per neuron (the grid of Fig. 3)", low=1, high="d", item="r")
    trials: int = param(20, "independent problems per r", low=1)
    starts: int = param(1, "starting points per problem", low=1)
    lam: float = param(0.5, "relative distance of the start from W*", low=0.0)
    eta: float = param(0.5, "step size η", low=0.0, low_open=True)
    beta: float = param(0.2, "momentum β of AGD (GD: 0)", low=0.0, high=1.0, high_open=True)
    max_iter: int = param(ITERATION_CAP, "iteration cap", low=1)
    tol: float = param(STOP_TOL, "relative-change threshold of the stopping rule", low=0.0)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(N=800, d=60, K=3, r_values=(5, 10, 20, 40), trials=2, starts=1),
        "book": dict(r_values=(25, 50, 100, 150, 200), trials=3, starts=2),
        "evidence": dict(trials=20, starts=1),
    }





def convergence_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """All trials of one r in one engine batch: each problem from ``starts`` starts, by AGD and by GD.

    Trial seed stream 0 draws the problem, stream ``(1, s)`` start ``s``.  The rows of the
    first start of trial 0 carry the run's relative-error history (panel (a) of Fig. 3).
    """
    N, d, K, r, starts = params["N"], params["d"], params["K"], params["r"], params["starts"]
    methods = [AGD, GD] * starts
    problems = [make_problem(N, d, K, r, 0.0, seed_sequence(ss, 0)) for ss in seeds]
    W0 = np.stack([np.stack([initial_point(p.w_star, params["lam"], seed_sequence(ss, 1, s))
                             for s in range(starts) for _ in (AGD, GD)])
                   for p, ss in zip(problems, seeds)])
    res = run_agd_batched(problems, W0, params["eta"], np.array([params["beta"], 0.0] * starts),
                          max_iter=params["max_iter"], tol=params["tol"], progress=False)
    rows = []
    for b, trial in enumerate(trials):
        for col, method in enumerate(methods):
            h = res.rel_error[b, col]
            fit = fit_rate(h)
            h = h[np.isfinite(h)]
            rows.append(dict(r=r, sqrt_r=float(np.sqrt(r)), trial=trial, start=col // 2, method=method,
                             **res.record(b, col),
                             rate=np.nan if res.status[b, col] == RunStatus.DIVERGED else fit.rate,
                             r2=np.nan if res.status[b, col] == RunStatus.DIVERGED else fit.r2,
                             flops=4.0 * N * r * K * int(res.iterations[b, col]),
                             history=[float(x) for x in h] if trial == 0 and col < 2 else None))
    return rows


@dataclass(kw_only=True)
class ConvergenceResult(ChapterResult):
    """Runs of the Fig. 3 experiment.

    ``runs`` has one row per run (r, trial, start, method, iterations, status, final error,
    success, fitted rate and R², useful flops); the rows of the first start of trial 0 also
    hold the run's relative-error ``history`` (``None`` elsewhere).
    """

    TABLES: ClassVar[tuple[str, ...]] = ("runs",)
    config: ConvergenceConfig
    runs: pd.DataFrame

    @property
    def flops(self) -> float:
        """Useful floating-point work of all runs (4 N r K per iteration)."""
        return float(self.runs["flops"].sum())

    def history(self, r: int, method: str = AGD) -> np.ndarray:
        """The relative-error history of the first run of ``r`` (trial 0, start 0) by ``method``."""
        row = self.runs[(self.runs["r"] == r) & (self.runs["trial"] == 0) & (self.runs["start"] == 0)
                        & (self.runs["method"] == method)]
        return np.asarray(row["history"].iloc[0], dtype=np.float64)


def run(config: ConvergenceConfig, *, executor: Executor | None = None, cache_dir=None,
        progress: bool | None = None) -> ConvergenceResult:
    """Run AGD and GD for every ``r`` of the grid, one unit of work per ``r``.

    Trial seeds are keyed by ``(r, trial)`` only (``seed_keys=("r",)``), so changing a step
    size or the iteration cap keeps the problem instances.  Tasks choose their device
    (``$WT_DEVICE``, else CUDA when available).
    """
    (plan,) = sweeps(config)
    sweep = plan.run(executor=executor, cache_dir=cache_dir, progress=progress)
    return ConvergenceResult(config=config, runs=sweep.runs, seconds=sweep.seconds)


def sweeps(config: ConvergenceConfig) -> list[SweepPlan]:
    """One sweep: a task per r, one trial per unit of work (so any archived run can be re-executed alone)."""
    c = config
    tasks = tuple(dict(N=c.N, d=c.d, K=c.K, r=r, starts=c.starts, lam=c.lam, eta=c.eta, beta=c.beta,
                       max_iter=c.max_iter, tol=c.tol) for r in c.r_values)
    return [SweepPlan(f"convergence-{c.profile}", convergence_task, tasks, c.trials, c.seed, seed_keys=("r",),
                      trials_per_unit=1)]


def summary(result: ConvergenceResult) -> pd.DataFrame:
    """Per ``(r, method)``: runs, successes, mean iterations, rate mean and spread."""
    g = result.runs.groupby(["r", "method"], sort=True)
    out = g.agg(
        runs=("rate", "size"),
        successes=("success", "sum"),
        iterations=("iterations", "mean"),
        rate_mean=("rate", "mean"),
        rate_min=("rate", "min"),
        rate_max=("rate", "max"),
        min_r2=("r2", "min"),
    )
    out["iterations"] = out["iterations"].round(1)
    return out


def _paired_rates(runs: pd.DataFrame) -> pd.DataFrame:
    """AGD and GD rates side by side, one row per (r, trial, start) where both are defined."""
    wide = runs.pivot_table(index=["r", "trial", "start"], columns="method", values="rate")
    for method in (AGD, GD):
        if method not in wide:
            wide[method] = np.nan
    return wide[[AGD, GD]].dropna()


def speedup(result: ConvergenceResult) -> pd.DataFrame:
    r"""Per r: mean rates and the speed-up :math:`(1-\nu_{AGD})/(1-\nu_{GD})` of paired runs.

    For small steps the heavy-ball recursion behaves like GD with step
    :math:`\eta/(1-\beta)`, so the speed-up is close to :math:`1/(1-\beta)`
    (1.25 for :math:`\beta = 0.2`); the column ``heavy_ball_limit`` shows that value.
    Only pairs in which both runs have a rate count (none: an empty table).
    """
    wide = _paired_rates(result.runs)
    ratio = ((1 - wide[AGD]) / (1 - wide[GD])).groupby(level="r")
    out = pd.DataFrame(
        {
            "rate_AGD": wide[AGD].groupby(level="r").mean(),
            "rate_GD": wide[GD].groupby(level="r").mean(),
            "speedup_mean": ratio.mean(),
            "speedup_min": ratio.min(),
            "speedup_max": ratio.max(),
        }
    )
    out["heavy_ball_limit"] = 1.0 / (1.0 - result.config.beta)
    return out


def check_claims(result: ConvergenceResult) -> list[Claim]:
    """The claims of Fig. 3, decided from the runs.

    * ``linear-convergence``: every run reaches the fit window 1e-7 < error < 1e-2 and its
      log-linear fit has R² ≥ ``R2_THRESHOLD`` (0.99).  NOT SUPPORTED if a run diverged or a
      fit falls below the threshold; INCONCLUSIVE if the fitted runs pass but some runs never
      reached the window (the iteration budget decides, not the data).
    * ``rate-grows-with-sqrt-r``: for AGD and for GD, the 95% CI of the least-squares slope of ν
      on √r, resampling problem instances, lies above 0 (SUPPORTED); below 0 for either method:
      NOT SUPPORTED; otherwise, or with fewer than 5 instances or two values of r: INCONCLUSIVE.
    * ``agd-faster-than-gd``: at every r, ν_AGD < ν_GD in every paired run (same data, same start).
      INCONCLUSIVE when some r has no pair with both rates.
    """
    runs = result.runs
    fitted = runs.dropna(subset=["rate"])
    claims = []

    # 1. Linear convergence: log(error) is a straight line in t.
    statement = "The relative error decays linearly (a straight line on a log axis) for every r."
    rule = f"every run reaches the window 1e-7 < error < 1e-2 and fits with R² ≥ {R2_THRESHOLD}"
    diverged = int((runs["status"] == "diverged").sum())
    if len(fitted) == 0 and diverged == 0:
        claims.append(inconclusive("linear-convergence", statement, rule,
                                   f"none of the {len(runs)} runs reached the fit window"))
    else:
        bad_fit = int((fitted["r2"] < R2_THRESHOLD).sum())
        holds = False if (diverged or bad_fit) else (True if len(fitted) == len(runs) else None)
        claims.append(Claim(
            name="linear-convergence", statement=statement, holds=holds,
            statistic=(f"R² of log-linear fits: min {fitted['r2'].min():.4f}, median {fitted['r2'].median():.4f}; "
                       f"{len(fitted)}/{len(runs)} runs reach the fit window, {diverged} diverged"),
            rule=rule))

    # 2. The rate grows with sqrt(r), for AGD and for GD: the slope of nu on sqrt(r), with a
    #    95% interval that resamples problem instances (every start of an instance goes together).
    statement = "The convergence rate ν increases with √r (larger r converges more slowly)."
    rule = ("for AGD and for GD, the 95% CI of the least-squares slope of ν on √r (problem instances resampled) "
            "lies above 0; NOT SUPPORTED if it lies below 0 for either; INCONCLUSIVE otherwise")
    decisions, parts = [], []
    for method in (AGD, GD):
        m = fitted[fitted["method"] == method]
        slope, lo, hi, units = cluster_slope(m["sqrt_r"], m["rate"], m["r"] * 100_000 + m["trial"],
                                             seed=result.config.seed)
        d = rules.above(slope, lo, hi, units, 0.0)
        decisions.append(d)
        parts.append(f"{method.split()[0]}: " + d.describe("slope per unit √r", ".2e"))
    verdicts = {d.verdict for d in decisions}
    holds = False if NOT_SUPPORTED in verdicts else (None if INCONCLUSIVE in verdicts else True)
    claims.append(Claim(name="rate-grows-with-sqrt-r", statement=statement, holds=holds,
                        statistic="; ".join(parts), rule=rule))

    # 3. AGD is faster than GD at every r (paired: same problem, same start).
    statement = "AGD converges faster than GD (smaller ν) at every r."
    rule = "at every r, ν_AGD < ν_GD in every paired run (same data, same start)"
    wide = _paired_rates(fitted)
    faster = (wide[AGD] < wide[GD]).groupby(level="r").mean()
    gap = (wide[GD] - wide[AGD]).groupby(level="r").mean()
    missing = sorted(set(result.config.r_values) - set(faster.index))
    if len(faster) and not (faster == 1.0).all():
        holds = False
    elif missing:
        holds = None
    else:
        holds = True
    stat = (f"AGD faster in {int((wide[AGD] < wide[GD]).sum())}/{len(wide)} paired runs"
            + (f"; mean ν_GD − ν_AGD between {gap.min():.2e} and {gap.max():.2e} across r" if len(gap) else "")
            + (f"; no pair with both rates at r = {', '.join(map(str, missing))}" if missing else ""))
    claims.append(Claim(name="agd-faster-than-gd", statement=statement, holds=holds, statistic=stat, rule=rule))
    return claims


def plot_figure3(result: ConvergenceResult):
    """Fig. 3: (a) relative error against iteration for each r (AGD); (b) rate against √r."""
    c = result.config
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 4))
    colors = sequential_colors(len(c.r_values))
    for color, r in zip(colors, c.r_values):
        h = result.history(r)
        ax_a.semilogy(np.arange(h.size), h, color=color, label=f"r = {r}")
    ax_a.axhline(1e-4, color="0.4", ls=":", lw=1)
    ax_a.text(0.99, 1.3e-4, "success threshold", color="0.35", ha="right", va="bottom",
              transform=ax_a.get_yaxis_transform(), fontsize=8)
    label_axes(ax_a, "iteration t", r"relative error $\|W^{(t)}-W^*\|_F/\|W^*\|_F$", "(a) AGD, first trial per r")
    ax_a.legend(fontsize=8, ncol=2)

    runs = result.runs.dropna(subset=["rate"])
    for color, marker, method in ((PALETTE[0], "o", AGD), (PALETTE[1], "s", GD)):
        m = runs[runs["method"] == method]
        ax_b.scatter(m["sqrt_r"], m["rate"], color=color, alpha=0.35, s=14, marker=marker, linewidths=0)
        stats = [rules.mean_interval(g.to_numpy()) for _, g in m.groupby("sqrt_r")["rate"]]
        x = np.array(sorted(m["sqrt_r"].unique()))
        mean, lo, hi = (np.array(v) for v in zip(*stats)) if stats else (np.array([]),) * 3
        ax_b.errorbar(x, mean, yerr=np.nan_to_num([mean - lo, hi - mean]), color=color, marker=marker, capsize=3,
                      label=f"{method}, mean and 95% CI")
    label_axes(ax_b, r"$\sqrt{r}$", r"convergence rate $\nu$ (per iteration)", "(b) rate against √r (dots: single runs)", legend=True)
    return fig


CHAPTER = ChapterSpec("convergence", "Convergence: linear, and faster when pruned", ConvergenceConfig, ConvergenceResult, run, check_claims,
                      {"Fig. 3": plot_figure3}, sweeps=sweeps)
