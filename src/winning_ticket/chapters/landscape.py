r"""The Landscape chapter: paper Fig. 2 and Theorem 1.

Fig. 2 (spec section 5.1): the success rate of AGD over the grid of
:math:`\sqrt r` and the initial relative distance :math:`\lambda`
(:math:`K = 5`, :math:`d = 500`, :math:`N = 3000`, noiseless); white means every trial
succeeds.  The paper reads the boundary as Theorem 1's convex-region radius, falling
linearly in :math:`\sqrt r`.

What this module adds:

* every problem instance is run from all :math:`\lambda` of its column along one
  common random direction and with two step sizes, the paper's :math:`\eta = 0.5` and a
  documented larger :math:`\eta = 5` (under which the 10000-iteration cap no longer binds),
  so the two maps differ only in what drives failures;
* a direct measurement of local convexity: at distance :math:`\rho` from :math:`W^*`,
  (i) the smallest eigenvalue of the empirical Hessian (defined almost everywhere) at
  random points, and (ii) convexity of the risk along random chords between two points
  of the sphere of radius :math:`\rho` (second differences on a fine grid, which also
  see the ReLU kinks the almost-everywhere Hessian misses).
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..algorithms.agd import ITERATION_CAP, SUCCESS_TOL
from ..experiments.claims import Claim
from ..algorithms.engine import batched_hessian, batched_risk, default_device, run_agd_batched, stack_problems
from ..algorithms.teacher_student import make_problem, starts_along
from ..experiments.seeding import numpy_rng, seed_sequence
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec
from ..experiments.plotting import label_axes
from ..experiments.sweep import run_sweep, success_summary

EARLY_SUCCESS = True
"""Stop a run once it succeeds (error below ``SUCCESS_TOL`` and falling): same verdict, less work."""


@dataclass(frozen=True)
class LandscapeConfig(ChapterConfig):
    """Parameters of the Fig. 2 experiment and of the convexity probe."""

    N: int = param(3000, "training samples", low=1)
    d: int = param(500, "input dimension", low=1)
    K: int = param(5, "hidden neurons", low=1)
    r_values: tuple[int, ...] = param((25, 49, 100, 169, 256, 361, 484), "remaining weights per neuron",
                                      low=1, high="d", item="r")
    lams: tuple[float, ...] = param((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0),
                                    "relative distances λ of the starts from W*", low=0.0, item="lam")
    trials: int = param(100, "independent problems per cell", low=1)
    etas: tuple[float, ...] = param((0.5, 5.0), "step sizes (the paper's, then a larger control)", low=0.0,
                                    low_open=True, item="eta")
    beta: float = param(0.2, "momentum β", low=0.0, high=1.0, high_open=True)
    max_iter: int = param(ITERATION_CAP, "iteration cap", low=1)
    probe_rhos: tuple[float, ...] = param((0.25, 0.5, 1.0, 2.0, 4.0, 8.0), "distances ρ of the convexity probe",
                                          low=0.0, low_open=True, item="rho")
    probe_chords: int = param(16, "random chords per distance", low=1)
    probe_points: int = param(2, "Hessian points per distance", low=1)
    probe_trials: int = param(3, "problems probed per r", low=1)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(N=220, d=60, K=3, r_values=(5, 20, 45), lams=(0.5, 2.0, 8.0), trials=2, max_iter=1500,
                      probe_rhos=(0.5, 2.0), probe_chords=4, probe_trials=1),
        "book": dict(r_values=(25, 100, 225, 400), lams=(0.5, 1.0, 2.0, 4.0, 8.0), trials=2,
                     probe_rhos=(0.5, 2.0, 8.0), probe_chords=8, probe_points=1, probe_trials=1),
    }



def landscape_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """One column of the map: every trial's problem run from all (lambda, eta) pairs at once.

    Trial seed stream 0 draws the problem, stream 1 the common direction of its starts.
    """
    N, d, K, r = params["N"], params["d"], params["K"], params["r"]
    lams, etas = np.asarray(params["lams"], float), np.asarray(params["etas"], float)
    problems = [make_problem(N, d, K, r, 0.0, seed_sequence(ss, 0)) for ss in seeds]
    cols = [(lam, eta) for eta in etas for lam in lams]
    W0 = np.stack([starts_along(p.w_star, [lam for lam, _ in cols], seed_sequence(ss, 1))
                   for p, ss in zip(problems, seeds)])
    res = run_agd_batched(
        problems, W0, np.array([eta for _, eta in cols]), params["beta"], max_iter=params["max_iter"],
        record_history=False, success_stop=SUCCESS_TOL if params["early_success"] else None, progress=False,
    )
    return [
        dict(r=r, sqrt_r=float(np.sqrt(r)), lam=float(lam), eta=float(eta), trial=t, **res.record(b, s, lam))
        for b, t in enumerate(trials)
        for s, (lam, eta) in enumerate(cols)
    ]


def nonconvex_fraction(g: np.ndarray, rel_tol: float = 1e-9) -> float:
    """Fraction of rows of ``g`` (a function sampled on an even grid) with a negative second difference.

    A second difference below ``-rel_tol`` times the row's largest value counts (round-off
    is not non-convexity).
    """
    g = np.atleast_2d(np.asarray(g, dtype=np.float64))
    d2 = g[:, 2:] - 2 * g[:, 1:-1] + g[:, :-2]
    return float((d2.min(axis=1) < -rel_tol * np.abs(g).max(axis=1)).mean())


def convexity_probe(config: LandscapeConfig, r: int, seed: int, device=None) -> pd.DataFrame:
    """Local convexity of the empirical risk at distances ``probe_rhos`` from :math:`W^*`.

    For each :math:`\\rho`: the smallest eigenvalue of the almost-everywhere Hessian at
    ``probe_points`` random points with :math:`\\|W - W^*\\|_F = \\rho\\|W^*\\|_F`, and
    the fraction of ``probe_chords`` random chords between two such points along which
    the risk has a negative second difference (101 points per chord).
    """
    c = config
    device = torch.device(device) if device is not None else default_device()
    p = make_problem(c.N, c.d, c.K, r, 0.0, seed_sequence(c.seed, 7, r, seed))
    XT, y, _ = stack_problems([p], device)
    rng = numpy_rng(c.seed, 8, r, seed)
    scale = np.linalg.norm(p.w_star)

    def sphere(rho: float, n: int) -> np.ndarray:
        D = rng.standard_normal((n, r, c.K))
        return p.w_star + rho * scale * D / np.linalg.norm(D, axis=(1, 2), keepdims=True)

    s = np.linspace(0.0, 1.0, 101)
    rows = []
    for rho in c.probe_rhos:
        pts = sphere(rho, c.probe_points)
        H = batched_hessian(XT, torch.as_tensor(pts[None], device=device))
        eig = torch.linalg.eigvalsh(H)[0].cpu().numpy()  # (points, rK) ascending
        a, b = sphere(rho, c.probe_chords), sphere(rho, c.probe_chords)
        W = a[:, None] + s[None, :, None, None] * (b - a)[:, None]  # (chords, 101, r, K)
        g = np.concatenate([batched_risk(XT, y, torch.as_tensor(Wc[None], device=device)).cpu().numpy()
                            for Wc in W])  # (chords, 101)
        rows.append(dict(r=r, sqrt_r=float(np.sqrt(r)), probe=seed, rho=rho,
                         hessian_min_eig=float(eig[:, 0].min()), hessian_max_eig=float(eig[:, -1].max()),
                         nonconvex_chords=nonconvex_fraction(g)))
    return pd.DataFrame(rows)


def measured_radius(probe: pd.DataFrame) -> pd.DataFrame:
    """Per r: the largest probed :math:`\\rho` up to which every probe was convex, and whether it is censored."""
    out = []
    for r, g in probe.groupby("r", sort=True):
        g = g.groupby("rho").agg(min_eig=("hessian_min_eig", "min"), nonconvex=("nonconvex_chords", "max"))
        ok = (g["min_eig"] > 0) & (g["nonconvex"] == 0)
        bad = np.flatnonzero(~ok.to_numpy())
        radius = g.index[bad[0] - 1] if bad.size and bad[0] > 0 else (0.0 if bad.size else g.index[-1])
        out.append(dict(r=r, sqrt_r=float(np.sqrt(r)), radius=float(radius), censored=not bad.size))
    return pd.DataFrame(out).set_index("r")


@dataclass(kw_only=True)
class LandscapeResult(ChapterResult):
    """Runs of Fig. 2 (``runs``: one row per (r, λ, η, trial)) and the convexity probe (``probe``: one row per (r, probe, ρ))."""

    TABLES: ClassVar[tuple[str, ...]] = ("runs", "probe")
    config: LandscapeConfig
    runs: pd.DataFrame
    probe: pd.DataFrame


def run(config: LandscapeConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> LandscapeResult:
    """The Fig. 2 sweep (both step sizes) and the convexity probe.

    Runs stop as soon as they succeed (``EARLY_SUCCESS``; the same verdict as the full
    protocol, tested).  Everything runs on ``$WT_DEVICE``, else CUDA when available.
    """
    c = config
    t0 = time.perf_counter()
    tasks = [dict(N=c.N, d=c.d, K=c.K, r=r, lams=c.lams, etas=c.etas, beta=c.beta, max_iter=c.max_iter,
                  early_success=EARLY_SUCCESS) for r in c.r_values]
    sweep = run_sweep(landscape_task, tasks, c.trials, seed=c.seed, name=f"landscape-{c.profile}",
                      executor=executor, cache_dir=cache_dir, progress=progress)
    probe = pd.concat([convexity_probe(c, r, t) for r in c.r_values for t in range(c.probe_trials)],
                      ignore_index=True)
    return LandscapeResult(config=c, runs=sweep.runs, probe=probe, seconds=time.perf_counter() - t0)


def success_map(result: LandscapeResult) -> pd.DataFrame:
    """Success rate per (eta, r, lam) with Wilson 95% intervals."""
    return success_summary(result.runs, by=["eta", "r", "lam"])


def boundary(result: LandscapeResult) -> pd.DataFrame:
    """Per (eta, r): the largest lambda such that every lambda up to it has success rate >= 0.5."""
    m = success_map(result)["rate"]
    rows = []
    for (eta, r), g in m.groupby(level=["eta", "r"]):
        rates = g.droplevel(["eta", "r"]).sort_index()
        good = (rates >= 0.5).to_numpy()
        k = int(np.argmin(good)) if not good.all() else len(good)
        rows.append(dict(eta=eta, r=r, sqrt_r=float(np.sqrt(r)), boundary=float(rates.index[k - 1]) if k else 0.0,
                         below_grid=k == 0, above_grid=k == len(good)))
    return pd.DataFrame(rows).set_index(["eta", "r"])


def _non_increasing_and_falls(values: np.ndarray) -> bool:
    return bool(np.all(np.diff(values) <= 0) and values[-1] < values[0])


def rescue_table(result: LandscapeResult) -> pd.DataFrame:
    """Each run that failed at the paper's step, beside the same start with the larger step."""
    c = result.config
    key = ["r", "lam", "trial"]
    runs = result.runs.set_index(key)
    small, big = runs[runs["eta"] == c.etas[0]], runs[runs["eta"] == c.etas[-1]]
    failed = small[~small["success"]]
    out = pd.DataFrame({
        f"error at η={c.etas[0]:g}": failed["final_error"],
        f"error at η={c.etas[-1]:g}": big["final_error"].reindex(failed.index),
        f"success at η={c.etas[-1]:g}": big["success"].reindex(failed.index),
    })
    return out.sort_index()


def check_claims(result: LandscapeResult) -> list[Claim]:
    """The claims of Fig. 2 and Theorem 1, decided from the runs and the probe.

    * ``boundary-falls-with-sqrt-r`` (and ``-large-step`` for the larger step): λ*, the largest
      λ up to which every cell has success rate ≥ 0.5, never rises with r and ends lower.
    * ``failures-are-only-the-cap``: there are failures at the paper's step and at least 90% of
      them succeed from the same start with the larger step.
    * ``convex-region-shrinks-with-sqrt-r``: the largest probed ρ with a positive Hessian
      minimum and no non-convex chord never rises with r and ends lower.
    """
    c = result.config
    eta0, eta1 = c.etas[0], c.etas[-1]
    b = boundary(result)
    claims = []
    for eta, tag in ((eta0, "paper Fig. 2"), (eta1, "control with the larger step")):
        values = b.loc[eta]["boundary"].to_numpy()
        claims.append(
            Claim(
                name="boundary-falls-with-sqrt-r" + ("" if eta == eta0 else "-large-step"),
                statement=f"The success boundary in λ falls as √r grows (η = {eta:g}, {tag}).",
                holds=_non_increasing_and_falls(values),
                statistic="boundary λ* by r: " + ", ".join(f"{r}: {v:g}" for r, v in zip(c.r_values, values)),
                rule="λ* (largest λ up to which every cell has success rate ≥ 0.5) never rises with r and ends lower than it starts",
            )
        )
    rescue = rescue_table(result)
    rescued = rescue.iloc[:, 2]
    claims.append(
        Claim(
            name="failures-are-only-the-cap",
            statement=f"The failures at η = {eta0:g} are only the iteration budget: the same starts succeed at η = {eta1:g}.",
            holds=bool(len(rescue) > 0 and rescued.mean() >= 0.9),
            statistic=(f"{int(rescued.sum())} of {len(rescue)} failed starts succeed at η = {eta1:g}; the others end at "
                       f"median error {rescue.iloc[:, 1][~rescued].median():.2f} (η = {eta1:g}) vs "
                       f"{rescue.iloc[:, 0][~rescued].median():.2f} (η = {eta0:g})") if len(rescue) else "no failures",
            rule="there are failures and at least 90% of them succeed with the larger step",
        )
    )
    rad = measured_radius(result.probe)
    radii = rad["radius"].to_numpy()
    claims.append(
        Claim(
            name="convex-region-shrinks-with-sqrt-r",
            statement="The locally convex region, measured directly, shrinks as √r grows (Theorem 1).",
            holds=_non_increasing_and_falls(radii),
            statistic="measured radius by r: " + ", ".join(
                f"{r}: {'≥' if cens else ''}{v:g}" for r, v, cens in zip(rad.index, radii, rad["censored"])),
            rule="the largest probed ρ with a positive Hessian minimum and no non-convex chord never rises with r and ends lower",
        )
    )
    return claims


def curvature(result: LandscapeResult) -> pd.DataFrame:
    """Per r: smallest and largest Hessian eigenvalue seen by the probe, and their ratio."""
    g = result.probe.groupby("r")
    out = pd.DataFrame({"min_eig": g["hessian_min_eig"].min(), "max_eig": g["hessian_max_eig"].max()})
    out["condition"] = out["max_eig"] / out["min_eig"]
    out["rK/N"] = [r * result.config.K / result.config.N for r in out.index]
    return out


def plot_figure2(result: LandscapeResult):
    """(a), (b): success maps for the two step sizes (white = all succeed); (c): boundaries and radius."""
    c = result.config
    m = success_map(result)["rate"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 1.2, 1.1]})
    for ax, eta, tag in ((axes[0], c.etas[0], "(a)"), (axes[1], c.etas[-1], "(b)")):
        grid = m.loc[eta].unstack("r").reindex(index=sorted(c.lams), columns=list(c.r_values))
        im = ax.imshow(grid.to_numpy(), origin="lower", cmap="gray", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(c.r_values)), [f"{np.sqrt(r):.3g}" for r in c.r_values])
        ax.set_yticks(range(len(grid.index)), [f"{lam:g}" for lam in grid.index])
        ax.set_xlabel(r"$\sqrt{r}$")
        ax.set_title(f"{tag} success rate, η = {eta:g}", loc="left")
        ax.grid(False)
    axes[0].set_ylabel(r"initial distance $\lambda = \|W^{(0)}-W^*\|_F/\|W^*\|_F$")
    fig.colorbar(im, ax=axes[1], label=f"success rate ({c.trials} trials per cell)")
    ax = axes[2]
    b = boundary(result)
    for (eta, marker), color in zip(((c.etas[0], "o"), (c.etas[-1], "s")), ("C0", "C1")):
        bb = b.loc[eta]
        ax.plot(bb["sqrt_r"], bb["boundary"], marker=marker, color=color, label=f"AGD boundary λ*, η = {eta:g}")
    rad = measured_radius(result.probe)
    ax.plot(rad["sqrt_r"], rad["radius"], marker="^", color="C2", ls="--", label="measured convex radius ρ")
    cens = rad[rad["censored"]]
    ax.scatter(cens["sqrt_r"], cens["radius"] * 1.04, marker=r"$\uparrow$", s=140, color="C2",
               label="no violation up to the largest ρ")
    ax.set_ylim(bottom=-0.3)
    label_axes(ax, r"$\sqrt{r}$", r"relative distance from $W^*$ ($\lambda$ or $\rho$)", "(c) boundaries and convexity radius")
    ax.legend(fontsize=8, loc="lower left")
    return fig


CHAPTER = ChapterSpec("landscape", "Landscape: how large is the convex region?", LandscapeConfig, LandscapeResult, run, check_claims,
                      {"Fig. 2": plot_figure2})
