r"""The Landscape chapter: paper Fig. 2 and Theorem 1, with the sample ratio separated from sparsity.

Fig. 2 (spec section 5.1): the success rate of AGD over the grid of :math:`\sqrt r` and the
initial relative distance :math:`\lambda = \|W^{(0)}-W^*\|_F/\|W^*\|_F` (:math:`K = 5`,
:math:`d = 500`, :math:`N = 3000`, noiseless).  The paper reads the boundary as Theorem 1's
convex-region radius and says it falls linearly in :math:`\sqrt r`.

At fixed :math:`N`, a larger :math:`r` is also a smaller sample ratio :math:`N/(rK)`, so the
design has three arms that see the same kind of problem:

* **fixed N** (the paper's map): :math:`N = 3000`, :math:`\sqrt r = 5 \dots 22`, every problem run
  from all :math:`\lambda` of the grid along one random direction, at the main step
  :math:`\eta = 5` (the paper gives no step; this one makes the 10000-iteration cap bind only
  where the curvature is tiny);
* **fixed ratio**: :math:`N = c\,rK` with the same :math:`c` for every :math:`r`, so only
  sparsity changes along the :math:`r` axis;
* **paper step**: the same problems and starts as *fixed N* at :math:`\eta = 0.5` on a subset of
  the grid, to show what the iteration cap does to the map.

Each run also records what it ended at: the training risk and the risk on fresh samples of the
same teacher (both relative to :math:`\tfrac12 E[y^2]`), and the gradient norm relative to the
start's, so a failure can be told apart as a high-risk stationary point, a run still descending,
or a valley of low training risk that does not generalize.

Theorem 1's own quantity is the local strong convexity.  The *curvature* sweep measures, on the
same problems and along the same directions as the starts, the extreme eigenvalues of the
empirical Hessian (defined almost everywhere) and the secant curvature
:math:`\langle\nabla f(W), W-W^*\rangle/\|W-W^*\|_F^2` at every :math:`\lambda`, and the
**curvature radius**: the largest :math:`\lambda` of the grid up to which the secant curvature
stays at least half its value at :math:`W^*`.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..algorithms.agd import ITERATION_CAP, SUCCESS_TOL
from ..algorithms.engine import (batched_gradient, batched_hessian, batched_risk, default_device, run_agd_batched,
                                 stack_problems)
from ..algorithms.teacher_student import Problem, make_problem, starts_along, teacher_output
from ..experiments import rules
from ..experiments.chapter import ChapterConfig, ChapterResult, ChapterSpec, SweepPlan, param, run_plans
from ..experiments.claims import INCONCLUSIVE, Claim
from ..experiments.plotting import PALETTE, label_axes
from ..experiments.seeding import numpy_rng, seed_sequence
from ..experiments.sweep import success_summary

EARLY_SUCCESS = True
"""Stop a run once it succeeds (error below ``SUCCESS_TOL`` and falling): same verdict, less work."""
CURVATURE_FRACTION = 0.5
"""The curvature radius: the largest λ up to which the secant curvature stays at least this fraction of its value at W*."""
LINEAR_BAND = (-0.5, 0.5)
"""λ* linear in √r: the relative curvature κ of a quadratic fit must lie in this band."""
RATIO_BAND = (-0.25, 0.25)
"""λ_min(W*) independent of r at a fixed ratio: its log-log slope on r must lie in this band."""
OVERFIT_FACTOR = 0.1
"""A failed run ended in an overfitting valley when its training risk is below this fraction of its fresh-data risk."""
RESCUE_LEVEL = 0.9
"""The paper-step failures are the iteration cap when at least this fraction succeed at the main step."""
BOOTSTRAP = 2000
"""Bootstrap resamples of the problems."""
ARMS = ("fixed N", "fixed ratio", "paper step")


@dataclass(frozen=True)
class LandscapeConfig(ChapterConfig):
    """Parameters of the three arms of the Fig. 2 experiment and of the curvature sweep."""

    N: int = param(3000, "training samples of the fixed-N and paper-step arms", low=1)
    d: int = param(500, "input dimension", low=1)
    K: int = param(5, "hidden neurons", low=1)
    r_values: tuple[int, ...] = param((25, 49, 100, 169, 256, 361, 484), "remaining weights per neuron (fixed N)",
                                      low=1, high="d", item="r", min_len=2)
    lams: tuple[float, ...] = param((0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 2.0, 4.0, 8.0, 16.0),
                                    "relative distances λ of the starts from W* (increasing)", low=0.0,
                                    low_open=True, item="lam", min_len=2)
    trials: int = param(100, "independent problems per r in the fixed-N and fixed-ratio arms", low=1)
    eta: float = param(5.0, "main step size η", low=0.0, low_open=True)
    beta: float = param(0.2, "momentum β", low=0.0, high=1.0, high_open=True)
    ratio: float = param(1.5, "samples per unknown N/(rK) of the fixed-ratio arm", low=1.0, low_open=True)
    ratio_r_values: tuple[int, ...] = param((25, 49, 100, 169, 256, 361), "r of the fixed-ratio arm", low=1,
                                            high="d", item="r", min_len=2)
    paper_eta: float = param(0.5, "the paper-step arm's step size", low=0.0, low_open=True)
    paper_r_values: tuple[int, ...] = param((25, 100, 256, 484), "r of the paper-step arm (a subset of r_values)",
                                            low=1, high="d", item="r", min_len=1)
    paper_lams: tuple[float, ...] = param((0.1, 0.5, 2.0, 8.0), "λ of the paper-step arm (a subset of lams)",
                                          low=0.0, low_open=True, item="lam", min_len=1)
    paper_trials: int = param(3, "problems per r of the paper-step arm (the first of the fixed-N arm's)", low=1)
    n_fresh: int = param(2000, "fresh samples of each teacher for the diagnostics", low=1)
    max_iter: int = param(ITERATION_CAP, "iteration cap", low=1)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(N=220, d=60, K=3, r_values=(5, 20, 45), lams=(0.5, 2.0, 8.0), trials=2, max_iter=1500,
                      ratio_r_values=(5, 20), paper_r_values=(5, 45), paper_lams=(0.5, 8.0), paper_trials=1,
                      n_fresh=300),
        "book": dict(r_values=(25, 100, 256, 484), ratio_r_values=(25, 100, 256), trials=2, paper_trials=1,
                     lams=(0.1, 0.3, 1.0, 4.0, 16.0), paper_lams=(0.1, 1.0, 16.0)),
        "evidence": dict(trials=5),
    }

    def validate(self) -> None:
        if list(self.lams) != sorted(set(self.lams)):
            raise ValueError(f"lams = {self.lams} must be increasing")
        if not set(self.paper_r_values) <= set(self.r_values):
            raise ValueError(f"paper_r_values = {self.paper_r_values} must be a subset of r_values = {self.r_values}")
        if not set(self.paper_lams) <= set(self.lams):
            raise ValueError(f"paper_lams = {self.paper_lams} must be a subset of lams = {self.lams}")
        if self.paper_trials > self.trials:
            raise ValueError(f"paper_trials = {self.paper_trials} must be at most trials = {self.trials}")

    def ratio_N(self, r: int) -> int:
        """The fixed-ratio arm's N for ``r``: ``round(ratio * r * K)``."""
        return int(round(self.ratio * r * self.K))


def _problem(params: Mapping[str, Any], ss) -> tuple[Problem, np.ndarray]:
    """The trial's problem (stream 0) and its starts along one random direction (stream 1)."""
    p = make_problem(params["N"], params["d"], params["K"], params["r"], 0.0, seed_sequence(ss, 0))
    return p, starts_along(p.w_star, params["lams"], seed_sequence(ss, 1))


def fresh_problem(p: Problem, n: int, seed) -> Problem:
    """``n`` fresh noiseless samples of the teacher of ``p`` (the same supports and weights)."""
    X = numpy_rng(seed).standard_normal((n, p.d))
    return Problem(X=X, y=teacher_output(X, p.omega, p.w_star), omega=p.omega, w_star=p.w_star)


def landscape_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """One r of one arm: every trial's problem run from all λ at once, with end-point diagnostics.

    Streams of a trial seed: 0 the problem, 1 the common direction of its starts, 3 the fresh
    samples.  ``train_risk`` and ``fresh_risk`` are relative to :math:`\\tfrac12` the mean square
    label of their data; ``grad_ratio`` is the final gradient norm over the start's.
    """
    N, K, r = params["N"], params["K"], params["r"]
    lams = list(params["lams"])
    device = default_device()
    made = [_problem(params, ss) for ss in seeds]
    problems = [p for p, _ in made]
    res = run_agd_batched(problems, np.stack([W0 for _, W0 in made]), params["eta"], params["beta"],
                          max_iter=params["max_iter"], record_history=False,
                          success_stop=SUCCESS_TOL if params["early_success"] else None, progress=False)
    rows = []
    for b, (t, ss) in enumerate(zip(trials, seeds)):
        p, W0 = made[b]
        fresh = fresh_problem(p, params["n_fresh"], seed_sequence(ss, 3))
        XT, y, _ = stack_problems([p], device)
        XF, yf, _ = stack_problems([fresh], device)
        W_end = torch.as_tensor(res.W[b][None], device=device)
        train = (batched_risk(XT, y, W_end)[0] / (0.5 * (y**2).mean())).cpu().numpy()
        test = (batched_risk(XF, yf, W_end)[0] / (0.5 * (yf**2).mean())).cpu().numpy()
        g_end = batched_gradient(XT, y, W_end)[0].flatten(1).norm(dim=1)
        g_0 = batched_gradient(XT, y, torch.as_tensor(W0[None], device=device))[0].flatten(1).norm(dim=1)
        grad_ratio = (g_end / g_0).cpu().numpy()
        for s, lam in enumerate(lams):
            rows.append(dict(arm=params["arm"], N=N, r=r, sqrt_r=float(np.sqrt(r)), ratio=N / (r * K), lam=float(lam),
                             eta=float(params["eta"]), trial=t, **res.record(b, s, lam), train_risk=float(train[s]),
                             fresh_risk=float(test[s]), grad_ratio=float(grad_ratio[s])))
    return rows


def curvature_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    r"""Curvature at :math:`W^*` and at every start of the grid, on the problems and directions of
    :func:`landscape_task` (same trial seeds and streams).

    Per point: the smallest and largest eigenvalue of the empirical Hessian (defined almost
    everywhere), and the *secant curvature*
    :math:`\mu(W) = \langle \nabla f(W), W - W^*\rangle / \|W - W^*\|_F^2` (noiseless, so
    :math:`\nabla f(W^*) = 0`); at :math:`W^*` itself, its limit along the direction,
    :math:`\Delta^\top H(W^*)\Delta / \|\Delta\|^2`.  Strong convexity with constant
    :math:`\mu_0` on a ball (Theorem 1) gives :math:`\mu(W) \ge \mu_0` there; where
    :math:`\mu(W) \le 0` the gradient does not point towards :math:`W^*` at all.
    """
    device = default_device()
    rows = []
    for t, ss in zip(trials, seeds):
        p, W0 = _problem(params, ss)
        XT, y, _ = stack_problems([p], device)
        for lam, W in zip([0.0] + list(params["lams"]), np.concatenate([p.w_star[None], W0])):
            Wt = torch.as_tensor(W[None, None], device=device)
            H = batched_hessian(XT, Wt)[0, 0]
            eig = torch.linalg.eigvalsh(H)
            if lam == 0.0:
                D = torch.as_tensor((W0[0] - p.w_star).T.reshape(-1), device=device)  # column-major vec
                secant = float(D @ H @ D / (D @ D))
            else:
                delta = Wt - torch.as_tensor(p.w_star[None, None], device=device)
                secant = float((batched_gradient(XT, y, Wt) * delta).sum() / (delta**2).sum())
            rows.append(dict(arm=params["arm"], N=p.N, r=p.r, sqrt_r=float(np.sqrt(p.r)), ratio=p.N / (p.r * p.K),
                             lam=float(lam), trial=t, min_eig=float(eig[0]), max_eig=float(eig[-1]),
                             secant=secant))
    return rows


@dataclass(kw_only=True)
class LandscapeResult(ChapterResult):
    """The runs of the three arms (``runs``, ``ratio_runs``, ``paper_runs``: one row per (r, λ, problem)) and
    the Hessian eigenvalues along the starts' directions (``curvature``: one row per (arm, r, λ, problem))."""

    TABLES: ClassVar[tuple[str, ...]] = ("runs", "ratio_runs", "paper_runs", "curvature")
    config: LandscapeConfig
    runs: pd.DataFrame
    ratio_runs: pd.DataFrame
    paper_runs: pd.DataFrame
    curvature: pd.DataFrame

    def all_runs(self) -> pd.DataFrame:
        """The three arms' runs in one table."""
        return pd.concat([self.runs, self.ratio_runs, self.paper_runs], ignore_index=True)


def sweeps(config: LandscapeConfig) -> list[SweepPlan]:
    """The three arms and the curvature sweep; trial seeds are keyed by (N, r) only, so the paper-step
    arm and the curvature sweep see the fixed-N arm's problems and starts."""
    c = config
    common = dict(d=c.d, K=c.K, beta=c.beta, max_iter=c.max_iter, n_fresh=c.n_fresh, early_success=EARLY_SUCCESS)
    fixed = tuple(dict(arm="fixed N", N=c.N, r=r, lams=c.lams, eta=c.eta, **common) for r in c.r_values)
    ratio = tuple(dict(arm="fixed ratio", N=c.ratio_N(r), r=r, lams=c.lams, eta=c.eta, **common)
                  for r in c.ratio_r_values)
    paper = tuple(dict(arm="paper step", N=c.N, r=r, lams=c.paper_lams, eta=c.paper_eta, **common)
                  for r in c.paper_r_values)
    curv = tuple(dict(arm=t["arm"], N=t["N"], d=c.d, K=c.K, r=t["r"], lams=c.lams) for t in fixed + ratio)
    keys = ("N", "r")
    return [SweepPlan(f"landscape-fixedN-{c.profile}", landscape_task, fixed, c.trials, c.seed, keys, 1, "runs"),
            SweepPlan(f"landscape-ratio-{c.profile}", landscape_task, ratio, c.trials, c.seed, keys, 1, "ratio_runs"),
            SweepPlan(f"landscape-paperstep-{c.profile}", landscape_task, paper, c.paper_trials, c.seed, keys, 1,
                      "paper_runs"),
            SweepPlan(f"landscape-curvature-{c.profile}", curvature_task, curv, c.trials, c.seed, keys, 1,
                      "curvature")]


def run(config: LandscapeConfig, *, executor: Executor | None = None, cache_dir=None,
        progress: bool | None = None) -> LandscapeResult:
    """Run the three arms and the curvature sweep (tasks choose their device: ``$WT_DEVICE``, else CUDA when available)."""
    return run_plans(sweeps(config), LandscapeResult, config, executor=executor, cache_dir=cache_dir, progress=progress)


# --- summaries ----------------------------------------------------------------------------------


def success_map(runs: pd.DataFrame) -> pd.DataFrame:
    """Success rate per (arm, r, λ) with Wilson 95% intervals."""
    return success_summary(runs, by=["arm", "r", "lam"])


def _largest_prefix(lams: np.ndarray, good: np.ndarray) -> tuple[float, str]:
    """The largest λ up to which every λ of the (sorted) grid is good, and whether the grid censors it."""
    k = int(np.argmin(good)) if not good.all() else len(good)
    if k == len(good):
        return float(lams[-1]), "above-grid"
    if k == 0:
        return 0.0, "below-grid"
    return float(lams[k - 1]), "ok"


def problem_boundaries(runs: pd.DataFrame) -> pd.DataFrame:
    """Per problem (arm, N, r, trial): λ*, the largest λ of the grid up to which every start succeeds.

    ``status`` says whether the grid censors it: ``above-grid`` (every start succeeds; λ* is at
    least the largest λ) or ``below-grid`` (the smallest λ fails; λ* is recorded as 0).
    """
    rows = []
    for (arm, N, r, t), g in runs.groupby(["arm", "N", "r", "trial"], sort=True):
        g = g.sort_values("lam")
        lam_star, status = _largest_prefix(g["lam"].to_numpy(), g["success"].to_numpy(bool))
        rows.append(dict(arm=arm, N=N, r=r, sqrt_r=float(np.sqrt(r)), trial=t, lam_star=lam_star, status=status))
    return pd.DataFrame(rows)


def curvature_radii(curvature: pd.DataFrame) -> pd.DataFrame:
    """Per problem: the curvature at W* and the curvature radius.

    The radius is the largest λ of the grid up to which the secant curvature
    (:func:`curvature_task`) stays at least ``CURVATURE_FRACTION`` of its value at W*;
    ``status`` as in :func:`problem_boundaries`.  ``eig_ratio_at_largest`` is the Hessian's smallest
    eigenvalue at the farthest start over its value at W*.
    """
    rows = []
    for (arm, N, r, t), g in curvature.groupby(["arm", "N", "r", "trial"], sort=True):
        g = g.sort_values("lam")
        at_star, rest = g.iloc[0], g.iloc[1:]
        radius, status = _largest_prefix(rest["lam"].to_numpy(),
                                         rest["secant"].to_numpy() >= CURVATURE_FRACTION * at_star["secant"])
        rows.append(dict(arm=arm, N=N, r=r, sqrt_r=float(np.sqrt(r)), trial=t, min_eig_at_star=at_star["min_eig"],
                         condition_at_star=float(at_star["max_eig"] / at_star["min_eig"]),
                         secant_at_star=at_star["secant"], radius=radius, status=status,
                         eig_ratio_at_largest=float(rest["min_eig"].iloc[-1] / at_star["min_eig"])))
    return pd.DataFrame(rows)


def boundary_summary(result: LandscapeResult) -> pd.DataFrame:
    """Per (arm, r): the median λ*, the median curvature radius, how many problems each grid censors, and N/(rK)."""
    b = problem_boundaries(result.all_runs())
    out = b.groupby(["arm", "r"]).agg(N=("N", "first"), problems=("trial", "size"), median_lam_star=("lam_star", "median"),
                                      censored_above=("status", lambda s: int((s == "above-grid").sum())),
                                      censored_below=("status", lambda s: int((s == "below-grid").sum())))
    out["samples_per_unknown"] = out["N"] / (out.index.get_level_values("r") * result.config.K)
    rad = curvature_radii(result.curvature).groupby(["arm", "r"]).agg(
        median_curvature_radius=("radius", "median"), median_secant_at_star=("secant_at_star", "median"),
        median_min_eig_at_star=("min_eig_at_star", "median"))
    return out.join(rad)


def failure_diagnosis(result: LandscapeResult) -> pd.DataFrame:
    """Every failed run of the main step, with where it ended: ``kind`` is

    * ``overfitting valley``: training risk below ``OVERFIT_FACTOR`` times the fresh-data risk;
    * ``still descending``: stopped by the cap with the gradient norm below 1% of the start's;
    * ``stationary``: stopped because the iterates stopped moving (a stationary point of the training risk);
    * ``other``: anything else (diverged, or stopped by the cap with a large gradient).
    """
    runs = pd.concat([result.runs, result.ratio_runs], ignore_index=True)
    f = runs[~runs["success"]].copy()
    overfit = f["train_risk"] < OVERFIT_FACTOR * f["fresh_risk"]
    kind = np.where(overfit, "overfitting valley",
                    np.where(f["status"] == "converged", "stationary",
                             np.where((f["status"] == "max_iter") & (f["grad_ratio"] < 0.01), "still descending", "other")))
    f["kind"] = kind
    return f[["arm", "N", "r", "lam", "trial", "status", "final_error", "train_risk", "fresh_risk", "grad_ratio", "kind"]]


def rescue_table(result: LandscapeResult) -> pd.DataFrame:
    """Each start that failed at the paper's step, beside the same start (same problem, same λ) at the main step."""
    key = ["r", "lam", "trial"]
    small = result.paper_runs.set_index(key)
    big = result.runs.set_index(key)
    failed = small[~small["success"]]
    c = result.config
    return pd.DataFrame({
        f"iterations at η={c.paper_eta:g}": failed["iterations"],
        f"error at η={c.paper_eta:g}": failed["final_error"],
        f"error at η={c.eta:g}": big["final_error"].reindex(failed.index),
        f"success at η={c.eta:g}": big["success"].reindex(failed.index),
        f"iterations at η={c.eta:g}": big["iterations"].reindex(failed.index),
    }).sort_index()


# --- rules --------------------------------------------------------------------------------------


def _units(df: pd.DataFrame) -> np.ndarray:
    return (df["arm"].astype(str) + "/" + df["N"].astype(str) + "/" + df["r"].astype(str) + "/" +
            df["trial"].astype(str)).to_numpy()


def _resolved_r(per_problem: pd.DataFrame) -> list[int]:
    """The r at which at least half of the problems have a value inside the grid."""
    ok = per_problem.assign(inside=per_problem["status"] == "ok").groupby("r")["inside"].mean()
    return sorted(int(r) for r in ok.index[ok >= 0.5])


def falls_with_sqrt_r(per_problem: pd.DataFrame, value: str, *, seed: int) -> rules.Decision:
    """The claim "``value`` falls as √r grows": the least-squares slope of the per-problem value on √r
    (censored values at the grid's edge, which can only flatten a fall) with a bootstrap 95% interval
    over problems.  Below 0: SUPPORTED; above 0: NOT SUPPORTED; INCONCLUSIVE when the interval
    straddles 0, when fewer than 2 r have most of their problems inside the grid, or with fewer than
    5 problems."""
    slope, lo, hi, units = rules.cluster_slope(per_problem["sqrt_r"], per_problem[value], _units(per_problem),
                                               seed=seed, n_boot=BOOTSTRAP)
    d = rules.below(slope, lo, hi, units, 0.0)
    resolved = _resolved_r(per_problem)
    if units >= 5 and len(resolved) < 2:
        return rules.Decision(INCONCLUSIVE, slope, lo, hi, units,
                              f"the grid censors the value at all but {len(resolved)} r (it cannot locate it)")
    return d


def _curvature_ratio(x: np.ndarray, y: np.ndarray) -> float:
    """κ = c R / |b| for the fit y = a + b (x - m) + c (x - m)² over the range R of x: the quadratic
    term's change across the range relative to the linear term's (0 for a straight line)."""
    m, R = x.mean(), np.ptp(x)
    c, b, _ = np.polyfit(x - m, y, 2)
    return float(c * R / abs(b)) if b != 0 else float("inf")


def linear_in_sqrt_r(per_problem: pd.DataFrame, *, seed: int) -> rules.Decision:
    """The claim "λ* falls linearly in √r", on the r where most problems have λ* inside the grid
    (at least 3): the relative curvature κ of a quadratic fit (``_curvature_ratio``) with a
    bootstrap 95% interval over problems inside ``LINEAR_BAND``: SUPPORTED; outside it: NOT
    SUPPORTED; otherwise INCONCLUSIVE."""
    resolved = _resolved_r(per_problem)
    pts = per_problem[per_problem["r"].isin(resolved)]
    x, y = pts["sqrt_r"].to_numpy(float), pts["lam_star"].to_numpy(float)
    if len(resolved) < 3:
        return rules.Decision(INCONCLUSIVE, float("nan"), float("nan"), float("nan"), len(pts),
                              f"λ* lies inside the λ grid at {len(resolved)} r; the shape needs at least 3")
    est = _curvature_ratio(x, y)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(pts["r"].to_numpy() == r) for r in resolved]
    boots = []
    for _ in range(BOOTSTRAP):  # resample problems within each r (every r keeps its problems' count)
        idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        boots.append(_curvature_ratio(x[idx], y[idx]))
    boots = np.asarray(boots)
    boots = boots[np.isfinite(boots)]
    lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots.size >= BOOTSTRAP // 2 else (np.nan, np.nan))
    return rules.within(est, float(lo), float(hi), len(pts), *LINEAR_BAND)


def _per_problem_fraction(df: pd.DataFrame, flag: pd.Series) -> np.ndarray:
    return df.assign(flag=flag.to_numpy(float)).groupby(["arm", "N", "r", "trial"])["flag"].mean().to_numpy()


def check_claims(result: LandscapeResult) -> list[Claim]:
    """The claims of Fig. 2 and Theorem 1, decided over independent problems.

    * ``boundary-falls-with-sqrt-r`` (fixed N, main step), ``-paper-step`` and
      ``-at-fixed-ratio``: :func:`falls_with_sqrt_r` on the per-problem λ*.
    * ``boundary-linear-in-sqrt-r`` (fixed N): :func:`linear_in_sqrt_r`.
    * ``curvature-radius-falls-with-sqrt-r``: :func:`falls_with_sqrt_r` on the per-problem
      curvature radius (:func:`curvature_radii`), fixed N.
    * ``strong-convexity-at-W*-falls-at-fixed-N``: :func:`falls_with_sqrt_r` on the log of the
      Hessian's smallest eigenvalue at W*, fixed N.
    * ``strong-convexity-at-W*-set-by-sample-ratio``: at the fixed ratio, the log-log slope of the
      smallest eigenvalue at W* on r with a bootstrap 95% interval over problems inside
      ``RATIO_BAND``: SUPPORTED; outside: NOT SUPPORTED; otherwise INCONCLUSIVE.
    * ``failures-are-overfitting``: per problem with failures at the main step (both arms), the
      fraction of its failed runs whose training risk is below ``OVERFIT_FACTOR`` times their
      fresh-data risk; mean over problems with a t interval above 0.5: SUPPORTED; below: NOT
      SUPPORTED (at least 5 problems).
    * ``paper-step-failures-are-the-cap``: per problem with failures at η = 0.5, the fraction of
      them that succeed from the same start at the main step; mean with a t interval above
      ``RESCUE_LEVEL``: SUPPORTED; below: NOT SUPPORTED (at least 5 problems).
    """
    c = result.config
    s = c.seed
    b = problem_boundaries(result.all_runs())
    rad = curvature_radii(result.curvature)
    arms = {a: b[b["arm"] == a] for a in ARMS}
    claims = [
        falls_with_sqrt_r(arms["fixed N"], "lam_star", seed=s).claim(
            "boundary-falls-with-sqrt-r",
            f"The success boundary λ* falls as √r grows at fixed N = {c.N} (paper Fig. 2; η = {c.eta:g}).",
            "bootstrap 95% CI (problems resampled) of the slope of the per-problem λ* on √r below 0; the grid must "
            "locate λ* at 2 r or more", "slope of λ* on √r", ".3f"),
        linear_in_sqrt_r(arms["fixed N"], seed=s).claim(
            "boundary-linear-in-sqrt-r",
            "λ* falls linearly in √r (the paper's reading of Fig. 2).",
            f"on the r where the grid locates λ* (at least 3): the relative curvature κ of a quadratic fit in √r, "
            f"bootstrap 95% CI inside {LINEAR_BAND}", "κ", ".2f"),
        falls_with_sqrt_r(arms["paper step"], "lam_star", seed=s).claim(
            "boundary-falls-with-sqrt-r-paper-step",
            f"The same at the paper-step arm's η = {c.paper_eta:g} (iteration cap {c.max_iter}).",
            "as boundary-falls-with-sqrt-r", "slope of λ* on √r", ".3f"),
        falls_with_sqrt_r(arms["fixed ratio"], "lam_star", seed=s).claim(
            "boundary-falls-with-sqrt-r-at-fixed-ratio",
            f"λ* still falls as √r grows when N grows with r (N = {c.ratio:g} rK): sparsity, not the sample ratio, "
            "moves the boundary.", "as boundary-falls-with-sqrt-r", "slope of λ* on √r", ".3f"),
        falls_with_sqrt_r(rad[rad["arm"] == "fixed N"], "radius", seed=s).claim(
            "curvature-radius-falls-with-sqrt-r",
            f"The distance from W* at which the curvature along the starts' direction halves shrinks as √r grows "
            f"(fixed N = {c.N}; the convex-region reading of Fig. 2).",
            "as boundary-falls-with-sqrt-r, on the per-problem curvature radius", "slope of the radius on √r", ".3f"),
    ]
    star = rad.assign(log_min_eig=np.log(rad["min_eig_at_star"]), status="ok")
    claims.append(falls_with_sqrt_r(star[star["arm"] == "fixed N"], "log_min_eig", seed=s).claim(
        "strong-convexity-at-W*-falls-at-fixed-N",
        f"At fixed N = {c.N}, the smallest eigenvalue of the Hessian at W* falls as √r grows (Theorem 1's bound "
        "shrinks with rK/N).", "as boundary-falls-with-sqrt-r, on the log of the smallest eigenvalue at W*",
        "slope of log λ_min on √r", ".3f"))
    fr = star[star["arm"] == "fixed ratio"]
    slope, lo, hi, units = rules.cluster_slope(np.log(fr["r"].to_numpy(float)), fr["log_min_eig"], _units(fr),
                                               seed=s, n_boot=BOOTSTRAP)
    claims.append(rules.within(slope, lo, hi, units, *RATIO_BAND).claim(
        "strong-convexity-at-W*-set-by-sample-ratio",
        f"At a fixed ratio N = {c.ratio:g} rK the smallest eigenvalue of the Hessian at W* does not change with r "
        "(Theorem 1's bound depends on r only through rK/N, up to logarithms).",
        f"bootstrap 95% CI of the log-log slope of λ_min(W*) on r inside {RATIO_BAND}", "log-log slope", ".3f"))
    diag = failure_diagnosis(result)
    frac = _per_problem_fraction(diag, diag["kind"] == "overfitting valley")
    est, lo, hi = rules.mean_interval(frac)
    claims.append(rules.above(est, lo, hi, len(frac), 0.5).claim(
        "failures-are-overfitting",
        "The main-step failures end in valleys of low training risk that do not generalize, not at high-risk "
        "stationary points.",
        f"per problem with failures: the fraction of failed runs with training risk < {OVERFIT_FACTOR:g} × fresh-data "
        "risk; t 95% CI of the mean over problems above 0.5", "mean fraction", ".2f"))
    rescue = rescue_table(result)
    ok_col = f"success at η={c.eta:g}"
    frac = rescue.groupby(["r", "trial"])[ok_col].mean().to_numpy(float)
    est, lo, hi = rules.mean_interval(frac)
    claims.append(rules.above(est, lo, hi, len(frac), RESCUE_LEVEL).claim(
        "paper-step-failures-are-the-cap",
        f"The failures at η = {c.paper_eta:g} are the iteration budget: the same starts succeed at η = {c.eta:g}.",
        f"per problem with failures at η = {c.paper_eta:g}: the fraction that succeed at η = {c.eta:g}; t 95% CI of the "
        f"mean over problems above {RESCUE_LEVEL:g}", "mean fraction", ".2f"))
    return claims


# --- figure -------------------------------------------------------------------------------------


def _map(ax, runs: pd.DataFrame, r_values, lams, title: str, trials: int):
    m = success_map(runs)["rate"].droplevel("arm").unstack("r").reindex(index=list(lams), columns=list(r_values))
    im = ax.imshow(m.to_numpy(), origin="lower", cmap="gray", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(r_values)), [f"{np.sqrt(r):.3g}" for r in r_values])
    ax.set_yticks(range(len(lams)), [f"{lam:g}" for lam in lams])
    ax.set_xlabel(r"$\sqrt{r}$")
    ax.set_title(title, loc="left")
    ax.grid(False)
    return im


def plot_figure2(result: LandscapeResult):
    """(a), (b): success maps at fixed N and at fixed N/(rK) (white = every problem succeeds); (c) per-problem
    boundary λ* of each arm and the curvature radius (median, range over problems); (d) where the failed runs ended."""
    c = result.config
    fig, axes = plt.subplots(2, 2, figsize=(12.5, 9.5))
    (ax_a, ax_b), (ax_c, ax_d) = axes
    _map(ax_a, result.runs, c.r_values, c.lams, f"(a) fixed N = {c.N}, η = {c.eta:g}", c.trials)
    im = _map(ax_b, result.ratio_runs, c.ratio_r_values, c.lams, f"(b) N = {c.ratio:g} rK, η = {c.eta:g}", c.trials)
    ax_a.set_ylabel(r"initial distance $\lambda = \|W^{(0)}-W^*\|_F/\|W^*\|_F$")
    fig.colorbar(im, ax=[ax_a, ax_b], label=f"success rate ({c.trials} problems per cell)", fraction=0.03, pad=0.02)
    b = problem_boundaries(result.all_runs())
    rad = curvature_radii(result.curvature)
    floor = min(c.lams) / 2  # where a boundary below the grid is drawn
    series = [(b, "fixed N", "lam_star", "o", "-", PALETTE[0], f"λ*, N = {c.N}, η = {c.eta:g}"),
              (b, "paper step", "lam_star", "v", "-", PALETTE[5], f"λ*, N = {c.N}, η = {c.paper_eta:g} (λ ≤ {max(c.paper_lams):g})"),
              (b, "fixed ratio", "lam_star", "s", "-", PALETTE[1], f"λ*, N = {c.ratio:g} rK"),
              (rad, "fixed N", "radius", "^", "--", PALETTE[2], f"curvature radius, N = {c.N}"),
              (rad, "fixed ratio", "radius", "D", "--", PALETTE[4], f"curvature radius, N = {c.ratio:g} rK")]
    for df, arm, col, marker, ls, color, label in series:
        g = df[df["arm"] == arm].assign(v=lambda x: x[col].clip(lower=floor)).groupby("sqrt_r")["v"]
        med, lo, hi = g.median(), g.min(), g.max()
        ax_c.errorbar(med.index, med, yerr=[med - lo, hi - med], marker=marker, ls=ls, color=color, capsize=2, ms=4,
                      lw=1, label=label)
    ax_c.axhline(max(c.lams), color="0.6", lw=0.8, ls=":")
    ax_c.text(ax_c.get_xlim()[0], max(c.lams) * 1.08, " top of the λ grid: the boundary is at least this", fontsize=7,
              color="0.4")
    ax_c.axhline(floor, color="0.6", lw=0.8, ls=":")
    ax_c.set_yscale("log")
    ax_c.set_ylim(floor / 1.5, max(c.lams) * 1.6)
    label_axes(ax_c, r"$\sqrt{r}$", r"relative distance $\lambda$ (median and range over problems)",
               "(c) boundary λ* and curvature radius")
    ax_c.legend(fontsize=7, loc="lower left")
    d = failure_diagnosis(result)
    for (arm, marker), color in zip((("fixed N", "o"), ("fixed ratio", "s")), (PALETTE[0], PALETTE[1])):
        g = d[d["arm"] == arm]
        ax_d.scatter(g["train_risk"].clip(lower=1e-12), g["fresh_risk"].clip(lower=1e-12), marker=marker, s=14,
                     color=color, alpha=0.7, label=f"failed runs, {arm}")
    lim = np.array([1e-6, 10.0])
    ax_d.plot(lim, lim, color="0.4", lw=0.8, label="fresh = training risk")
    ax_d.plot(lim, lim / OVERFIT_FACTOR, color="0.4", lw=0.8, ls="--", label=f"fresh = training / {OVERFIT_FACTOR:g}")
    ax_d.set_xscale("log")
    ax_d.set_yscale("log")
    ax_d.set_xlim(*lim)
    ax_d.set_ylim(1e-3, 10)
    label_axes(ax_d, r"training risk at the end (relative to $\frac{1}{2}E[y^2]$)",
               r"fresh-data risk (relative to $\frac{1}{2}E[y^2]$)", "(d) where the failed runs ended", legend=True)
    return fig


CHAPTER = ChapterSpec("landscape", "Landscape: how large is the convex region?", LandscapeConfig, LandscapeResult, run,
                      check_claims, {"Fig. 2": plot_figure2}, sweeps=sweeps)
