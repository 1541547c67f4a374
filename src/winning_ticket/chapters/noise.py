r"""The Noise chapter: paper Fig. 5 and the noise term of Theorem 2.

Theorem 2, eq. (9): the iterates settle at a distance
:math:`O(\sqrt{K^2 r\log d/N})\,|\xi|` from :math:`W^*`, so at fixed :math:`N` the final
error should grow linearly in :math:`\sqrt r` and in proportion to the noise level.  Fig. 5:
:math:`N = 1000`, :math:`K = 10`, :math:`d = 300`, final relative error against
:math:`\sqrt r` for several noise levels :math:`\sigma/E_y`.

Design choice: the problems of one trial at different noise levels share the inputs,
supports, :math:`W^*` and the *standardized* noise draw, scaled by the level (common random
numbers; :func:`~winning_ticket.algorithms.teacher_student.make_problem` draws them in that order from one seed),
so the comparison across levels is paired.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..algorithms.agd import ITERATION_CAP
from ..experiments.claims import Claim
from ..algorithms.engine import run_agd_batched
from ..algorithms.teacher_student import make_problem, starts_along
from ..experiments.seeding import seed_sequence
from ..experiments.plotting import PALETTE, label_axes
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec
from ..experiments.stats import bootstrap_slope
from ..experiments.sweep import run_sweep


@dataclass(frozen=True)
class NoiseConfig(ChapterConfig):
    N: int = param(1000, "training samples", low=1)
    d: int = param(300, "input dimension", low=1)
    K: int = param(10, "hidden neurons", low=1)
    r_values: tuple[int, ...] = param((5, 10, 15, 20, 30, 40), "remaining weights per neuron", low=1, high="d",
                                      item="r", min_len=2)
    levels: tuple[float, ...] = param((0.01, 0.05, 0.1), "noise levels σ/E_y", low=0.0, low_open=True,
                                      item="noise level", min_len=2)
    trials: int = param(50, "independent problems per cell", low=1)
    lam: float = param(0.5, "relative distance of the start from W*", low=0.0)
    eta: float = param(0.5, "step size η", low=0.0, low_open=True)
    beta: float = param(0.2, "momentum β", low=0.0, high=1.0, high_open=True)
    max_iter: int = param(ITERATION_CAP, "iteration cap", low=1)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(N=600, d=60, K=3, r_values=(4, 8, 16), levels=(0.02, 0.1), trials=3),
        "book": dict(trials=8),
    }



def noise_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """One r: every trial at every noise level (same data and standardized noise), one batch."""
    N, d, K, r = params["N"], params["d"], params["K"], params["r"]
    levels = params["levels"]
    problems, meta = [], []
    for ss, t in zip(seeds, trials):
        for level in levels:
            problems.append(make_problem(N, d, K, r, level, seed_sequence(ss, 0)))
            meta.append((t, level, ss))
    W0 = np.stack([starts_along(p.w_star, [params["lam"]], seed_sequence(ss, 1)) for p, (_, _, ss) in zip(problems, meta)])
    res = run_agd_batched(problems, W0, params["eta"], params["beta"], max_iter=params["max_iter"],
                          record_history=False, progress=False)
    return [dict(r=r, sqrt_r=float(np.sqrt(r)), level=float(level), trial=t, **res.record(b, 0, params["lam"]))
            for b, (t, level, _) in enumerate(meta)]


@dataclass(kw_only=True)
class NoiseResult(ChapterResult):
    """Runs of the Fig. 5 experiment: ``runs`` has one row per (r, noise level, trial) with the final error and status."""

    TABLES: ClassVar[tuple[str, ...]] = ("runs",)
    config: NoiseConfig
    runs: pd.DataFrame


def run(config: NoiseConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> NoiseResult:
    """Run the sweep (tasks choose their device: ``$WT_DEVICE``, else CUDA when available)."""
    c = config
    tasks = [dict(N=c.N, d=c.d, K=c.K, r=r, levels=c.levels, lam=c.lam, eta=c.eta, beta=c.beta, max_iter=c.max_iter)
             for r in c.r_values]
    sweep = run_sweep(noise_task, tasks, c.trials, seed=c.seed, name=f"noise-{c.profile}",
                      executor=executor, cache_dir=cache_dir, progress=progress)
    return NoiseResult(config=c, runs=sweep.runs, seconds=sweep.seconds)


def summary(result: NoiseResult) -> pd.DataFrame:
    """Per (level, r): mean and spread of the final relative error, and the error divided by the level."""
    g = result.runs.groupby(["level", "r"])["final_error"]
    out = pd.DataFrame({"runs": g.size(), "error_mean": g.mean(), "error_sd": g.std(), "error_max": g.max()})
    out["error_over_level"] = out["error_mean"] / out.index.get_level_values("level")
    out["per_level_and_sqrt_r"] = out["error_over_level"] / np.sqrt(out.index.get_level_values("r"))
    out["at_cap"] = result.runs.groupby(["level", "r"])["status"].apply(lambda s: int((s == "max_iter").sum()))
    return out


def fits(result: NoiseResult) -> pd.DataFrame:
    """Per level: least-squares line error = a + b sqrt(r), R² of the mean errors, bootstrap CI of b."""
    rows = []
    for level, g in result.runs.groupby("level"):
        x, y = g["sqrt_r"].to_numpy(), g["final_error"].to_numpy()
        slope, lo, hi = bootstrap_slope(x, y, g["r"].to_numpy(), seed=result.config.seed)
        means = g.groupby("sqrt_r")["final_error"].mean()
        coef = np.polyfit(means.index.to_numpy(), means.to_numpy(), 1)
        resid = means.to_numpy() - np.polyval(coef, means.index.to_numpy())
        r2 = 1 - resid.var() / means.to_numpy().var()
        rows.append(dict(level=level, slope=slope, slope_low=lo, slope_high=hi, intercept=coef[1], r2_of_means=r2))
    return pd.DataFrame(rows).set_index("level")


def check_claims(result: NoiseResult) -> list[Claim]:
    """The claims of Fig. 5, decided from the runs.

    * ``error-linear-in-sqrt-r``: no run diverged and, at every noise level, the bootstrap 95% CI
      of the slope of the final error on √r lies above 0 and a line fits the mean errors with
      R² ≥ 0.9.
    * ``error-proportional-to-noise``: no run diverged and, at every r, the largest mean
      error/level is within 25% of the smallest.
    """
    f = fits(result)
    s = summary(result)
    ratio = s["error_over_level"].unstack("level")
    spread = (ratio.max(axis=1) / ratio.min(axis=1))
    diverged = int((result.runs["status"] == "diverged").sum())
    return [
        Claim(
            name="error-linear-in-sqrt-r",
            statement="The final error grows linearly in √r at every noise level (paper Fig. 5).",
            holds=bool(diverged == 0 and (f["slope_low"] > 0).all() and (f["r2_of_means"] >= 0.9).all()),
            statistic="; ".join(f"σ/E_y = {lv:g}: slope {row.slope:.2e} [{row.slope_low:.2e}, {row.slope_high:.2e}], "
                                f"R² {row.r2_of_means:.3f}" for lv, row in f.iterrows()),
            rule="for every level, the bootstrap CI of the slope on √r lies above 0 and a line fits the mean errors with R² ≥ 0.9",
        ),
        Claim(
            name="error-proportional-to-noise",
            statement="The final error is proportional to the noise level (error / level does not depend on the level).",
            holds=bool(diverged == 0 and (spread <= 1.25).all()),
            statistic="max/min over levels of mean error / level, by r: "
                      + ", ".join(f"{r}: {v:.3f}" for r, v in spread.items()),
            rule="at every r, the largest mean error/level is within 25% of the smallest",
        ),
    ]


def plot_figure5(result: NoiseResult):
    """(a) final relative error against √r, one curve per noise level; (b) error divided by the level."""
    c = result.config
    s = summary(result).reset_index()
    s["sqrt_r"] = np.sqrt(s["r"])
    f = fits(result)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10.5, 4))
    markers = "osD^v<>"
    for i, level in enumerate(c.levels):
        g = s[s["level"] == level]
        runs = result.runs[result.runs["level"] == level]
        color = PALETTE[i % len(PALETTE)]
        ax_a.scatter(runs["sqrt_r"], runs["final_error"], s=10, alpha=0.3, color=color, linewidths=0)
        ax_a.plot(g["sqrt_r"], g["error_mean"], marker=markers[i], color=color, label=f"σ/E_y = {level:g}")
        xs = np.linspace(0, g["sqrt_r"].max(), 20)
        ax_a.plot(xs, f.loc[level, "intercept"] + f.loc[level, "slope"] * xs, color=color, ls=":", lw=1)
        ax_b.plot(g["sqrt_r"], g["error_over_level"], marker=markers[i], color=color, label=f"σ/E_y = {level:g}")
    label_axes(ax_a, r"$\sqrt{r}$", r"final relative error $\|W-W^*\|_F/\|W^*\|_F$", "(a) error against √r (dots: runs; dotted: fits)", legend=True, xlim0=True, ylim0=True)
    label_axes(ax_b, r"$\sqrt{r}$", "mean final error / noise level", "(b) error per unit of noise", legend=True, xlim0=True, ylim0=True)
    return fig


CHAPTER = ChapterSpec("noise", "Noise: the error floor grows like √r", NoiseConfig, NoiseResult, run, check_claims,
                      {"Fig. 5": plot_figure5})
