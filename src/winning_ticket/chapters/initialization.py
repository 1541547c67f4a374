r"""The Initialization chapter: the tensor initialization of Lemma 1 at work, and where it breaks.

Four sweeps (:mod:`winning_ticket.algorithms.tensor_init`, every problem its own seed):

* **error against N** (``by_n``; :math:`K = 3`, :math:`r = 10`, disjoint supports): the relative
  error :math:`\|W^{(0)} - W^*\|_F/\|W^*\|_F` of the default (robust) initializer and the error of
  each of its steps against its population target (:func:`~winning_ticket.algorithms.tensor_init.step_errors`);
* **error against r** (``by_r``) at fixed :math:`N`;
* **the (K, r) grid** (``grid``): :math:`r = K`, :math:`r < K`, :math:`r > K`, disjoint and the
  paper's overlapping supports, each problem initialized three ways: the paper's literal recipe
  (the summed input :math:`\tilde x`, plain moments, scales from :math:`\hat M_1`), the robust
  steps on :math:`\tilde x`, and the default (robust steps on the inputs in the union of the
  supports); on overlapping supports also :math:`\tilde x` without the overlap correction;
* **does AGD converge from it** (``agd``): overlapping supports with few samples
  (:math:`K = 5`, :math:`r = 10`, :math:`d = 20`, :math:`N_\text{agd} = 150`), where AGD from an
  independent random draw usually fails within the iteration cap: AGD (the paper's
  :math:`\eta`, :math:`\beta`, success rule) from the tensor initialization, from a random draw
  of the teacher's prior and from the paper's experimental start at :math:`\lambda = 0.5`, on
  the same data.
"""

from __future__ import annotations

import warnings
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..algorithms.agd import SUCCESS_TOL, relative_error
from ..algorithms.engine import run_agd_batched
from ..algorithms.teacher_student import Problem, make_problem, starts_along
from ..algorithms.tensor_init import TensorInitWarning, step_errors, tensor_initialization
from ..experiments import rules
from ..experiments.chapter import ChapterConfig, ChapterResult, ChapterSpec, SweepPlan, param, run_plans
from ..experiments.claims import Claim, inconclusive
from ..experiments.plotting import PALETTE, label_axes
from ..experiments.seeding import numpy_rng, seed_sequence
from ..experiments.stats import wilson_interval

STARTS = ("tensor", "random", "lambda=0.5")
VARIANTS = {
    "paper": dict(reduction="sum", control_variate=False, magnitudes="m1", calibrate=False),
    "robust-sum": dict(reduction="sum"),
    "union": dict(reduction="union"),
}
"""The three initializers the grid compares: the paper's literal recipe, its robust steps on the
summed input, and the default (robust steps on the union of the supports)."""

GRID = ((3, 3, "disjoint"), (4, 4, "disjoint"), (4, 2, "disjoint"), (3, 10, "disjoint"), (5, 10, "disjoint"),
        (3, 10, "overlapping"))
"""The (K, r, supports) settings of the grid sweep."""

RATE_BAND = (-0.65, -0.35)
"""Lemma 1's error bound falls like :math:`N^{-1/2}`; the log-log slope must lie in this band."""


@dataclass(frozen=True)
class InitConfig(ChapterConfig):
    K: int = param(3, "hidden neurons (error against N and r)", low=1, high=7)
    r: int = param(10, "weights per neuron (error against N)", low=1)
    N_values: tuple[int, ...] = param((10_000, 30_000, 100_000, 300_000, 1_000_000),
                                      "samples of the moment estimates", low=30, item="N", min_len=2)
    r_values: tuple[int, ...] = param((5, 10, 20, 40), "weights per neuron (error against r)", low=1, item="r",
                                      min_len=2)
    N_r: int = param(100_000, "samples for the error against r and the grid", low=30)
    d_overlap: int = param(40, "input dimension of the grid's overlapping supports", low=10)
    trials: int = param(20, "independent problems per cell", low=1)
    K_agd: int = param(5, "hidden neurons of the AGD experiment", low=1, high=7)
    r_agd: int = param(10, "weights per neuron of the AGD experiment", low=1)
    d_agd: int = param(20, "input dimension of the AGD experiment (overlapping supports)", low="r_agd")
    N_init: int = param(300_000, "samples the initialization of the AGD experiment uses", low=30)
    N_agd: int = param(150, "samples of the AGD runs (the first N_agd of the N_init)", low=1)
    agd_trials: int = param(40, "independent problems of the AGD experiment", low=1)
    eta: float = param(0.5, "step size η", low=0.0, low_open=True)
    beta: float = param(0.2, "momentum β", low=0.0, high=1.0, high_open=True)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(N_values=(10_000, 40_000), r_values=(5, 10), N_r=20_000, trials=3, N_init=20_000,
                      agd_trials=4),
        "book": dict(N_values=(10_000, 30_000, 100_000, 300_000), N_r=100_000, trials=8, agd_trials=16),
        "evidence": dict(),
    }

    def validate(self) -> None:
        if self.N_agd > self.N_init:
            raise ValueError(f"N_agd = {self.N_agd} must not exceed N_init = {self.N_init}")
        if self.K * max(self.r_values + (self.r,)) > 10_000:
            raise ValueError("K * r must stay below 10,000 (disjoint supports need d = K r inputs)")


def _initialize(p: Problem, ss, **kw):
    with warnings.catch_warnings():  # the flags are recorded in the table instead
        warnings.simplefilter("ignore", TensorInitWarning)
        return tensor_initialization(p.X, p.y, p.omega, seed=seed_sequence(ss, 9), **kw)


def _error_row(p: Problem, res) -> dict:
    e = step_errors(res, p.w_star, p.omega)
    return dict(init_error=e["final"], raw_error=e["raw"], subspace_error=e["subspace"], direction_error=e["directions"],
                size_error=e["sizes"], signs_right=e["signs"], condition=res.condition, scale=res.scale,
                flagged=bool(res.flags))


def error_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """The default initializer on disjoint supports at one (K, r, N): its error and each step's."""
    K, r, N = params["K"], params["r"], params["N"]
    rows = []
    for ss, t in zip(seeds, trials):
        p = make_problem(N, K * r, K, r, 0.0, seed_sequence(ss, 0), disjoint=True)
        rows.append(dict(K=K, r=r, N=N, trial=t, **_error_row(p, _initialize(p, ss))))
    return rows


def grid_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """One (K, r, supports) setting: the same problem initialized by every variant (paired)."""
    K, r, N, supports = params["K"], params["r"], params["N"], params["supports"]
    disjoint = supports == "disjoint"
    d = K * r if disjoint else params["d"]
    rows = []
    for ss, t in zip(seeds, trials):
        p = make_problem(N, d, K, r, 0.0, seed_sequence(ss, 0), disjoint=disjoint)
        variants = dict(VARIANTS)
        if not disjoint:
            variants["sum-uncorrected"] = dict(reduction="sum", correct_overlaps=False)
        for name, kw in variants.items():
            row = dict(K=K, r=r, N=N, supports=supports, trial=t, variant=name)
            if kw.get("reduction") == "sum" and r < K:
                row.update(init_error=np.nan, flagged=True)  # K components do not fit into R^r
            else:
                res = _initialize(p, ss, **kw)
                row.update(init_error=relative_error(res.W0, p.w_star), condition=res.condition, flagged=bool(res.flags))
            rows.append(row)
    return rows


def agd_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """Overlapping supports, few samples: AGD from the tensor initialization, a random draw and lambda = 0.5."""
    K, r, d, n = params["K"], params["r"], params["d"], params["N_agd"]
    rows, problems, starts = [], [], []
    for ss, t in zip(seeds, trials):
        p = make_problem(params["N_init"], d, K, r, 0.0, seed_sequence(ss, 0))
        res = _initialize(p, ss)
        rand = numpy_rng(ss, 3).uniform(-0.5, 0.5, size=p.w_star.shape)
        near = starts_along(p.w_star, [0.5], seed_sequence(ss, 4))[0]
        starts.append(np.stack([res.W0, rand, near]))
        problems.append(Problem(X=p.X[:n], y=p.y[:n], omega=p.omega, w_star=p.w_star))
        rows.append(dict(K=K, r=r, d=d, N_agd=n, trial=t, init_error=relative_error(res.W0, p.w_star),
                         random_error=relative_error(rand, p.w_star)))
    out = run_agd_batched(problems, np.stack(starts), params["eta"], params["beta"], record_history=False,
                          progress=False, success_stop=SUCCESS_TOL)
    for b, row in enumerate(rows):
        for s, name in enumerate(STARTS):
            row[f"success_{name}"] = bool(out.success[b, s])
            row[f"iterations_{name}"] = int(out.iterations[b, s])
            row[f"final_error_{name}"] = float(out.final_error[b, s])
    return rows


@dataclass(kw_only=True)
class InitResult(ChapterResult):
    """Errors against N (``by_n``), against r (``by_r``), over the (K, r) grid (``grid``, one row per
    problem and variant) and the AGD runs from three starts (``agd``, one row per problem)."""

    TABLES: ClassVar[tuple[str, ...]] = ("by_n", "by_r", "grid", "agd")
    config: InitConfig
    by_n: pd.DataFrame
    by_r: pd.DataFrame
    grid: pd.DataFrame
    agd: pd.DataFrame


def sweeps(config: InitConfig) -> list[SweepPlan]:
    """The four sweeps of a configuration (error against N and r, the grid, AGD), one result table each."""
    c = config
    return [
        SweepPlan(f"init-n-{c.profile}", error_task, tuple(dict(K=c.K, r=c.r, N=N) for N in c.N_values), c.trials,
                  c.seed, trials_per_unit=5, table="by_n"),
        SweepPlan(f"init-r-{c.profile}", error_task, tuple(dict(K=c.K, r=r, N=c.N_r) for r in c.r_values), c.trials,
                  c.seed, trials_per_unit=5, table="by_r"),
        SweepPlan(f"init-grid-{c.profile}", grid_task,
                  tuple(dict(K=K, r=r, N=c.N_r, supports=sp, d=c.d_overlap) for K, r, sp in GRID), c.trials, c.seed,
                  trials_per_unit=5, table="grid"),
        SweepPlan(f"init-agd-{c.profile}", agd_task,
                  (dict(K=c.K_agd, r=c.r_agd, d=c.d_agd, N_init=c.N_init, N_agd=c.N_agd, eta=c.eta, beta=c.beta),),
                  c.agd_trials, c.seed, trials_per_unit=10, table="agd"),
    ]


def run(config: InitConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> InitResult:
    """Run the four sweeps: error against N, against r, over the (K, r) grid, and AGD from three starts."""
    return run_plans(sweeps(config), InitResult, config, executor=executor, cache_dir=cache_dir, progress=progress)


def _quartiles(df: pd.DataFrame, by: str, column: str = "init_error") -> pd.DataFrame:
    g = df.groupby(by)[column]
    return pd.DataFrame({"median": g.median(), "q25": g.quantile(0.25), "q75": g.quantile(0.75), "problems": g.size()})


def n_summary(result: InitResult) -> pd.DataFrame:
    """Per N: quartiles of the error, medians of each step's error, flagged starts."""
    g = result.by_n.groupby("N")
    out = _quartiles(result.by_n, "N")
    for col in ("subspace_error", "direction_error", "size_error"):
        out[f"{col}_median"] = g[col].median()
    out["flagged"] = g["flagged"].sum()
    return out


def r_summary(result: InitResult) -> pd.DataFrame:
    """Per r at fixed N: quartiles of the error and the median subspace error."""
    out = _quartiles(result.by_r, "r")
    out["subspace_error_median"] = result.by_r.groupby("r")["subspace_error"].median()
    return out


def grid_summary(result: InitResult) -> pd.DataFrame:
    """Per (K, r, supports) and variant: median and largest error, starts worse than W = 0, flagged starts."""
    g = result.grid.groupby(["K", "r", "supports", "variant"], sort=False)["init_error"]
    flagged = result.grid.groupby(["K", "r", "supports", "variant"], sort=False)["flagged"].sum()
    out = pd.DataFrame({"median": g.median(), "max": g.max(), "worse_than_zero": g.apply(lambda e: int((e > 1).sum())),
                        "flagged": flagged, "problems": g.size()})
    return out.unstack("variant")


def agd_summary(result: InitResult) -> pd.DataFrame:
    """Per start: AGD success rate with its Wilson 95% interval and median iterations."""
    a = result.agd
    rows = {}
    for name in STARTS:
        k, n = int(a[f"success_{name}"].sum()), len(a)
        lo, hi = wilson_interval(k, n)
        rows[name] = dict(successes=k, problems=n, rate=k / n, low=float(lo), high=float(hi),
                          median_iterations=float(a[f"iterations_{name}"].median()))
    return pd.DataFrame(rows).T


def _log_slope(df: pd.DataFrame, x: str, seed: int) -> tuple[float, float, float, int]:
    ok = df["init_error"] > 0
    d = df[ok]
    units = np.arange(len(d))  # every row is its own problem
    return rules.cluster_slope(np.log(d[x].to_numpy(float)), np.log(d["init_error"].to_numpy()), units, seed=seed)


def check_claims(result: InitResult) -> list[Claim]:
    """The claims about the tensor initialization of Lemma 1, each decided by an interval over problems.

    * ``error-falls-with-N``: the least-squares slope of log error on log N (bootstrap over
      problems, one problem per point) has a 95% CI below 0: SUPPORTED; above 0: NOT SUPPORTED;
      otherwise INCONCLUSIVE.
    * ``error-rate-root-N``: that slope's 95% CI lies inside ``RATE_BAND`` (-0.65, -0.35), Lemma
      1's :math:`N^{-1/2}`: SUPPORTED; entirely outside it: NOT SUPPORTED; otherwise INCONCLUSIVE.
    * ``error-grows-with-r``: at fixed N the slope of log error on log r has a 95% CI above 0:
      SUPPORTED; below 0: NOT SUPPORTED; otherwise INCONCLUSIVE.
    * ``lands-in-convergence-region``: AGD from the tensor initialization succeeds with a Wilson
      95% interval at or above 0.8 (SUPPORTED), below 0.8 (NOT SUPPORTED), otherwise INCONCLUSIVE
      (at least 10 problems).
    * ``beats-random-start``: paired by problem, the success indicator from the tensor start minus
      that from a random draw of the teacher's prior has a mean whose t-interval lies above 0:
      SUPPORTED; below 0: NOT SUPPORTED; otherwise INCONCLUSIVE.
    * ``overlap-correction-helps``: on overlapping supports the paper's summed-input method with the
      :math:`A_j`/:math:`\\tilde\\Sigma` correction against without it, paired by problem: the mean of
      log(uncorrected error) - log(corrected error) has a t-interval above 0: SUPPORTED; below 0:
      NOT SUPPORTED; otherwise INCONCLUSIVE.
    * ``union-beats-sum``: over every grid problem where both are defined, the mean of
      log(robust summed-input error) - log(union error) has a t-interval above 0: SUPPORTED; below
      0: NOT SUPPORTED; otherwise INCONCLUSIVE.

    Every rule needs at least 5 problems (10 for the success rate); fewer give INCONCLUSIVE.
    """
    c = result.config
    claims = []

    slope, lo, hi, units = _log_slope(result.by_n, "N", c.seed)
    claims.append(rules.below(slope, lo, hi, units, 0.0).claim(
        "error-falls-with-N", f"The initialization error falls as N grows (K = {c.K}, r = {c.r}).",
        "95% CI of the slope of log error on log N (problems resampled) below 0", "slope", ".3f"))
    claims.append(rules.within(slope, lo, hi, units, *RATE_BAND).claim(
        "error-rate-root-N", "The error falls like N^(-1/2), the rate of Lemma 1's bound.",
        f"95% CI of that slope inside [{RATE_BAND[0]}, {RATE_BAND[1]}]; entirely outside: NOT SUPPORTED", "slope", ".3f"))

    slope, lo, hi, units = _log_slope(result.by_r, "r", c.seed)
    claims.append(rules.above(slope, lo, hi, units, 0.0).claim(
        "error-grows-with-r", f"At fixed N = {c.N_r:,} the initialization error grows with r.",
        "95% CI of the slope of log error on log r (problems resampled) above 0", "slope", ".3f"))

    a = result.agd
    k, n = int(a["success_tensor"].sum()), len(a)
    d = rules.rate_at_least(k, n, 0.8)
    claims.append(d.claim("lands-in-convergence-region",
                          f"AGD converges from the tensor initialization (K = {c.K_agd}, r = {c.r_agd}, d = {c.d_agd}, "
                          f"N_agd = {c.N_agd}).",
                          "Wilson 95% interval of the success rate at or above 0.8", f"success rate ({k}/{n})", ".2f"))
    d = rules.paired_difference(a["success_tensor"].astype(float), a["success_random"].astype(float), lower=0.0)
    claims.append(d.claim("beats-random-start",
                          "AGD succeeds more often from the tensor initialization than from a random draw of the "
                          "teacher's prior (same problems).",
                          "t-interval of the mean paired difference of success indicators above 0",
                          "success(tensor) - success(random)", ".2f"))

    g = result.grid
    over = g[g["supports"] == "overlapping"].pivot_table(index=["K", "r", "trial"], columns="variant", values="init_error")
    if {"robust-sum", "sum-uncorrected"} <= set(over.columns):
        d = rules.paired_difference(np.log(over["sum-uncorrected"]), np.log(over["robust-sum"]), lower=0.0)
        claims.append(d.claim("overlap-correction-helps",
                              "With the paper's overlapping supports, the summed-input method needs the A_j correction.",
                              "t-interval of mean log(uncorrected / corrected error), paired by problem, above 0",
                              "mean log error ratio", ".2f"))
    else:
        claims.append(inconclusive("overlap-correction-helps", "With overlapping supports the A_j correction helps.",
                                   "paired log error ratio above 0", "the grid has no overlapping setting"))
    wide = g.pivot_table(index=["K", "r", "supports", "trial"], columns="variant", values="init_error").dropna(
        subset=["robust-sum", "union"])
    d = rules.paired_difference(np.log(wide["robust-sum"]), np.log(wide["union"]), lower=0.0)
    claims.append(d.claim("union-beats-sum",
                          "Moments of the inputs in the union of the supports give a better start than the paper's "
                          "summed input (same robust steps, same problems).",
                          "t-interval of mean log(summed-input error / union error), paired by problem, above 0",
                          "mean log error ratio", ".2f"))
    return claims


def plot_initialization(result: InitResult):
    """(a) error and step errors against N; (b) error against r; (c) the grid's three variants; (d) AGD success per start."""
    c = result.config
    s, rs = n_summary(result), r_summary(result)
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.0))
    ax_a, ax_b, ax_c, ax_d = axes
    ax_a.scatter(result.by_n["N"], result.by_n["init_error"], s=9, alpha=0.3, color=PALETTE[0], linewidths=0)
    ax_a.errorbar(s.index, s["median"], yerr=[s["median"] - s["q25"], s["q75"] - s["median"]], marker="o",
                  color=PALETTE[0], capsize=3, label=r"$\|W^{(0)}-W^*\|_F/\|W^*\|_F$ (median, IQR)")
    ax_a.plot(s.index, s["subspace_error_median"], marker="s", ls="--", color=PALETTE[1], label="subspace step")
    ax_a.plot(s.index, s["direction_error_median"], marker="^", ls=":", color=PALETTE[2], label="direction step (sine)")
    ref = s["median"].iloc[0] * np.sqrt(s.index[0] / np.asarray(s.index, dtype=float))
    ax_a.plot(s.index, ref, color="0.5", lw=1, label=r"$\propto N^{-1/2}$")
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    label_axes(ax_a, "samples N", "relative error (dots: problems)", f"(a) K = {c.K}, r = {c.r}, disjoint")
    ax_a.legend(loc="lower left", fontsize=7)
    ax_b.scatter(result.by_r["r"], result.by_r["init_error"], s=9, alpha=0.3, color=PALETTE[0], linewidths=0)
    ax_b.errorbar(rs.index, rs["median"], yerr=[rs["median"] - rs["q25"], rs["q75"] - rs["median"]], marker="o",
                  color=PALETTE[0], capsize=3)
    ax_b.set_xscale("log")
    ax_b.set_yscale("log")
    ax_b.set_xticks(list(rs.index))
    ax_b.set_xticklabels([str(r) for r in rs.index])
    ax_b.xaxis.set_minor_locator(plt.NullLocator())
    label_axes(ax_b, "non-pruned weights per neuron r", "relative error", f"(b) against r at N = {c.N_r:,}")
    g = result.grid
    settings = list(dict.fromkeys(zip(g["K"], g["r"], g["supports"])))
    markers = {"paper": ("x", PALETTE[3]), "robust-sum": ("^", PALETTE[4]), "union": ("o", PALETTE[0])}
    for i, (name, (marker, color)) in enumerate(markers.items()):
        sub = g[g["variant"] == name]
        for x, key in enumerate(settings):
            e = sub[(sub["K"] == key[0]) & (sub["r"] == key[1]) & (sub["supports"] == key[2])]["init_error"].dropna()
            ax_c.scatter(np.full(len(e), x + (i - 1) * 0.25), e, marker=marker, s=14, color=color, alpha=0.6,
                         label=name if x == 0 else None)
    ax_c.axhline(1.0, color="0.4", lw=1, ls="--")
    ax_c.text(len(settings) - 0.5, 1.1, "W = 0", ha="right", va="bottom", fontsize=8, color="0.3")
    ax_c.set_yscale("log")
    ax_c.set_xticks(range(len(settings)))
    ax_c.set_xticklabels([f"K={K}\nr={r}\n{'disj.' if sp == 'disjoint' else 'overl.'}" for K, r, sp in settings], fontsize=8)
    label_axes(ax_c, "setting", "relative error (log)", f"(c) three initializers, N = {c.N_r:,}", legend=True)
    ag = agd_summary(result)
    x = np.arange(len(STARTS))
    ax_d.bar(x, ag["rate"].astype(float), color=[PALETTE[i + 2] for i in range(len(STARTS))], alpha=0.8)
    ax_d.errorbar(x, ag["rate"].astype(float), yerr=[ag["rate"] - ag["low"], ag["high"] - ag["rate"]], fmt="none",
                  color="k", capsize=4)
    ax_d.set_xticks(x)
    ax_d.set_xticklabels(STARTS)
    ax_d.set_ylim(0, 1.05)
    label_axes(ax_d, "start of AGD", f"success rate (Wilson 95%; {len(result.agd)} problems)",
               f"(d) K = {c.K_agd}, r = {c.r_agd}, d = {c.d_agd}, N = {c.N_agd}")
    return fig


CHAPTER = ChapterSpec("initialization", "Initialization: the tensor method of Lemma 1", InitConfig, InitResult, run,
                      check_claims, {"Lemma 1": plot_initialization}, sweeps=sweeps)
