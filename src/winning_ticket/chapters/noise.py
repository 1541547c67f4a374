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

from ..algorithms.agd import ITERATION_CAP, run_agd
from ..experiments import rules
from ..experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, Claim
from ..algorithms.engine import run_agd_batched
from ..algorithms.teacher_student import make_problem, starts_along
from ..experiments.seeding import seed_sequence
from ..experiments.plotting import PALETTE, label_axes
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec, SweepPlan

EXPONENT_BAND = (0.35, 0.65)
r"""Theorem 2: the error floor grows like :math:`\sqrt r`; the log-log slope on r must lie in this band."""
LS_BAND = (0.8, 1.2)
r"""Least squares: the error grows like :math:`\sqrt{rK/(N - rK)}`; the log-log slope on it must lie in this band."""
PROPORTIONAL_BAND = (-0.1, 0.1)
"""Error proportional to the level: mean log(error/level) at the highest minus the lowest level within ±0.1 (±10%)."""


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
        "evidence": dict(trials=40),
    }

    def validate(self) -> None:
        if self.N <= self.K * max(self.r_values):
            raise ValueError(f"N = {self.N} must exceed K r = {self.K * max(self.r_values)} (more samples than unknowns "
                             "at every r; the least-squares comparison divides by N - rK)")



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


def sweeps(config: NoiseConfig) -> list[SweepPlan]:
    """One sweep: every r, every trial at every noise level (same data and standardized noise)."""
    c = config
    tasks = tuple(dict(N=c.N, d=c.d, K=c.K, r=r, levels=c.levels, lam=c.lam, eta=c.eta, beta=c.beta,
                       max_iter=c.max_iter) for r in c.r_values)
    return [SweepPlan(f"noise-{c.profile}", noise_task, tasks, c.trials, c.seed, trials_per_unit=10)]


def run(config: NoiseConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> NoiseResult:
    """Run the sweep (tasks choose their device: ``$WT_DEVICE``, else CUDA when available)."""
    (plan,) = sweeps(config)
    sweep = plan.run(executor=executor, cache_dir=cache_dir, progress=progress)
    return NoiseResult(config=config, runs=sweep.runs, seconds=sweep.seconds)


def least_squares_scale(r, K: int, N: int) -> np.ndarray:
    r"""The shape of a least-squares error floor, :math:`\sqrt{rK/(N - rK)}` (``rK`` unknowns, ``N`` samples)."""
    r = np.asarray(r, dtype=float)
    return np.sqrt(r * K / (N - r * K))


def summary(result: NoiseResult) -> pd.DataFrame:
    """Per (level, r): mean and spread of the final relative error, and the error divided by the level."""
    g = result.runs.groupby(["level", "r"])["final_error"]
    out = pd.DataFrame({"runs": g.size(), "error_mean": g.mean(), "error_sd": g.std(), "error_max": g.max()})
    out["error_over_level"] = out["error_mean"] / out.index.get_level_values("level")
    out["per_level_and_sqrt_r"] = out["error_over_level"] / np.sqrt(out.index.get_level_values("r"))
    out["at_cap"] = result.runs.groupby(["level", "r"])["status"].apply(lambda s: int((s == "max_iter").sum()))
    return out


def _units(runs: pd.DataFrame) -> np.ndarray:
    return (runs["r"] * 100_000 + runs["trial"]).to_numpy()  # one problem per (r, trial), shared by the levels


def fits(result: NoiseResult) -> pd.DataFrame:
    r"""Per level: the log-log slope of the final error on r and on the least-squares shape, with bootstrap
    95% intervals over problems, and the fitted constant c of error = c·level·sqrt(rK/(N − rK))."""
    c = result.config
    rows = []
    for level, g in result.runs.groupby("level"):
        ok = g[(g["final_error"] > 0) & (g["status"] != "diverged")]
        y = np.log(ok["final_error"].to_numpy())
        units = _units(ok)
        s_r = rules.cluster_slope(np.log(ok["r"].to_numpy(float)), y, units, seed=c.seed)
        scale = least_squares_scale(ok["r"], c.K, c.N)
        s_ls = rules.cluster_slope(np.log(scale), y, units, seed=c.seed)
        const = float(np.exp(np.mean(y - np.log(level * scale))))
        rows.append(dict(level=level, slope_r=s_r[0], slope_r_low=s_r[1], slope_r_high=s_r[2], slope_ls=s_ls[0],
                         slope_ls_low=s_ls[1], slope_ls_high=s_ls[2], ls_constant=const, problems=s_r[3]))
    return pd.DataFrame(rows).set_index("level")


def _combine(decisions: dict) -> bool | None:
    verdicts = {d.verdict for d in decisions.values()}
    return False if NOT_SUPPORTED in verdicts else (None if INCONCLUSIVE in verdicts else True)


def check_claims(result: NoiseResult) -> list[Claim]:
    """The claims of Fig. 5 and Theorem 2, decided by intervals over problems.

    * ``error-grows-like-sqrt-r``: at every noise level the slope of log final error on log r
      (bootstrap over problems) has a 95% CI inside ``EXPONENT_BAND`` (0.35, 0.65): SUPPORTED; at
      some level entirely outside it: NOT SUPPORTED; otherwise INCONCLUSIVE.
    * ``error-follows-least-squares``: at every level the slope of log final error on
      log sqrt(rK/(N − rK)) has a 95% CI inside ``LS_BAND`` (0.8, 1.2): SUPPORTED; at some level
      entirely outside: NOT SUPPORTED; otherwise INCONCLUSIVE.
    * ``error-proportional-to-noise``: paired by problem (same data, same standardized noise),
      log(error/level) at the highest level minus at the lowest has a mean whose t-interval lies
      inside ``PROPORTIONAL_BAND`` (±0.1): SUPPORTED; entirely outside: NOT SUPPORTED; otherwise
      INCONCLUSIVE.

    Diverged runs are left out of the fits and counted in the statistic; every rule needs at
    least 5 problems.
    """
    c = result.config
    runs = result.runs
    f = fits(result)
    diverged = int((runs["status"] == "diverged").sum())
    note = f"; {diverged} diverged run(s) left out" if diverged else ""
    claims = []
    for name, statement, col, band, rule in (
        ("error-grows-like-sqrt-r", "The final error grows like √r at every noise level (Theorem 2, Fig. 5).",
         "slope_r", EXPONENT_BAND, f"at every level the 95% CI of the slope of log error on log r lies in {EXPONENT_BAND}"),
        ("error-follows-least-squares",
         "The final error grows like the least-squares floor sqrt(rK/(N − rK)) (rK unknowns from N samples).",
         "slope_ls", LS_BAND, f"at every level the 95% CI of the slope of log error on log sqrt(rK/(N-rK)) lies in {LS_BAND}"),
    ):
        decisions = {lv: rules.within(row[col], row[f"{col}_low"], row[f"{col}_high"], int(row["problems"]), *band)
                     for lv, row in f.iterrows()}
        claims.append(Claim(name=name, statement=statement, holds=_combine(decisions), rule=rule,
                            statistic="; ".join(f"σ/E_y = {lv:g}: " + d.describe("slope", ".3f")
                                                for lv, d in decisions.items()) + note))
    lo, hi = min(c.levels), max(c.levels)
    wide = runs[runs["status"] != "diverged"].pivot_table(index=["r", "trial"], columns="level", values="final_error")
    if lo in wide and hi in wide:
        d = rules.paired_difference(np.log(wide[hi] / hi), np.log(wide[lo] / lo), lower=PROPORTIONAL_BAND[0],
                                    upper=PROPORTIONAL_BAND[1])
    else:
        d = rules.paired_difference(np.array([]), np.array([]), lower=PROPORTIONAL_BAND[0], upper=PROPORTIONAL_BAND[1])
    claims.append(d.claim("error-proportional-to-noise",
                          "The final error is proportional to the noise level (error / level does not depend on the level).",
                          f"t-interval of mean log(error/level) at σ/E_y = {hi:g} minus at {lo:g}, paired by problem, "
                          f"inside {PROPORTIONAL_BAND}", "mean log ratio", ".3f"))
    return claims


def kink_cycling(config: NoiseConfig, *, level: float, r: int, trial: int = 0,
                 checkpoints=(2000, 5000, ITERATION_CAP - 1)) -> pd.DataFrame:
    r"""What the iterates of one noisy run do late in the run (the reference implementation, :func:`~winning_ticket.algorithms.agd.run_agd`).

    For each checkpoint ``t`` the run is repeated to ``t`` and to ``t + 1`` iterations (the same
    arithmetic, so the same iterates), and the table gives the relative error, the relative change
    :math:`\|W^{(t+1)} - W^{(t)}\|_F/\|W^{(t)}\|_F`, and the number of training activations
    :math:`\mathbb 1\{w_j^\top x_{n,\Omega_j} > 0\}` that change sign in that step.
    """
    c = config
    ss = seed_sequence(c.seed, 99, r, trial)  # 99: a stream of its own, apart from the sweep's
    p = make_problem(c.N, c.d, c.K, r, level, seed_sequence(ss, 0))
    W0 = starts_along(p.w_star, [c.lam], seed_sequence(ss, 1))[0]
    Xs = p.sub_inputs()
    rows = []
    for t in checkpoints:
        a = run_agd(Xs, p.y, p.w_star, W0, c.eta, c.beta, max_iter=int(t), tol=0.0)
        b = run_agd(Xs, p.y, p.w_star, W0, c.eta, c.beta, max_iter=int(t) + 1, tol=0.0)
        sa = np.einsum("knr,rk->kn", Xs, a.W) > 0
        sb = np.einsum("knr,rk->kn", Xs, b.W) > 0
        rows.append(dict(iteration=int(t), relative_error=a.final_error,
                         relative_change=float(np.linalg.norm(b.W - a.W) / np.linalg.norm(a.W)),
                         sign_flips=int((sa != sb).sum()), activations=int(sa.size)))
    return pd.DataFrame(rows).set_index("iteration")


def plot_figure5(result: NoiseResult):
    """(a) Fig. 5: final relative error against √r per noise level, with the fitted least-squares floor;
    (b) error per unit of noise against r on log axes, with the √r reference."""
    c = result.config
    s = summary(result).reset_index()
    s["sqrt_r"] = np.sqrt(s["r"])
    f = fits(result)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = "osD^v<>"
    rr = np.linspace(min(c.r_values), max(c.r_values), 60)
    for i, level in enumerate(c.levels):
        g = s[s["level"] == level]
        runs = result.runs[result.runs["level"] == level]
        color = PALETTE[i % len(PALETTE)]
        ax_a.scatter(runs["sqrt_r"], runs["final_error"], s=8, alpha=0.25, color=color, linewidths=0)
        ax_a.plot(g["sqrt_r"], g["error_mean"], marker=markers[i], color=color, label=f"σ/E_y = {level:g} (mean)")
        ls = f.loc[level, "ls_constant"] * level * least_squares_scale(rr, c.K, c.N)
        ax_a.plot(np.sqrt(rr), ls, color=color, ls="--", lw=1)
        ax_b.plot(g["r"], g["error_over_level"], marker=markers[i], color=color, label=f"σ/E_y = {level:g}")
        ax_b.plot(rr, f.loc[level, "ls_constant"] * least_squares_scale(rr, c.K, c.N), color=color, ls="--", lw=1)
    s0 = s[s["level"] == min(c.levels)]
    ax_b.plot(rr, s0["error_over_level"].iloc[0] * np.sqrt(rr / s0["r"].iloc[0]), color="0.4", ls=":", lw=1.5,
              label=r"$\propto\sqrt{r}$ (Theorem 2)")
    ax_b.set_xscale("log")
    ax_b.set_yscale("log")
    ax_b.set_xticks(list(c.r_values))
    ax_b.set_xticklabels([str(r) for r in c.r_values])
    ax_b.xaxis.set_minor_locator(plt.NullLocator())
    label_axes(ax_a, r"$\sqrt{r}$", r"final relative error $\|W-W^*\|_F/\|W^*\|_F$",
               "(a) Fig. 5 (dots: runs; dashed: c·σ/E_y·√(rK/(N−rK)))", legend=True, xlim0=True, ylim0=True)
    label_axes(ax_b, "remaining weights per neuron r", "mean final error / noise level",
               "(b) log axes: dashed least squares, dotted √r", legend=True)
    return fig


CHAPTER = ChapterSpec("noise", "Noise: how the error floor grows with r", NoiseConfig, NoiseResult, run, check_claims,
                      {"Fig. 5": plot_figure5}, sweeps=sweeps)
