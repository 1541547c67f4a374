r"""The Sample-complexity chapter: paper Fig. 4 and the :math:`N = \Theta(r\log d)` claim, on one teacher.

Fig. 4 (spec section 5.1): the success rate over the number of remaining weights per neuron
:math:`r` and the number of samples :math:`N`, at :math:`d = 100`; the paper reads the phase
transition as :math:`N^*` linear in :math:`r`.  The paper gives neither :math:`K`, :math:`\lambda`,
:math:`\eta`, :math:`\beta` nor the grids; we take :math:`K = 5`, :math:`\lambda = 0.5`,
:math:`\eta = 0.5`, :math:`\beta = 0.2` (spec, recommended).

The design compares students of **one sparse teacher**: each problem draws a teacher with
:math:`r^* = 10` weights per neuron, and the student with :math:`r` weights per neuron reads
:math:`\Omega_j \supseteq \Omega_j^*` (the teacher's inputs plus :math:`r - r^*` others; nested in
:math:`r`), so every student can represent the teacher exactly (its :math:`W^*` is the teacher's
weights at their positions and zeros elsewhere).  :math:`r = d` is the dense student on the same
teacher.  A student with :math:`r` weights per neuron sees the first :math:`N` of the teacher's samples, for
the :math:`N` of one common geometric grid from :math:`0.8\,r_\min K` up to :math:`6\,rK` (the
transition sits at a few samples per unknown), so every column reaches past its transition, every
student is also tried where the smallest one succeeds, and the grid is not aligned with the
hypothesis :math:`N^*\propto r`.

:math:`N^*` of a student is where a logistic fit of success on :math:`\log N` crosses 50%
(:func:`logistic_threshold`); its interval and those of the claims come from a bootstrap over
teachers, the independent unit (each teacher is seen by every student).
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..algorithms.agd import ITERATION_CAP, SUCCESS_TOL
from ..algorithms.engine import run_agd_batched
from ..algorithms.teacher_student import Problem, make_problem, starts_along
from ..experiments import rules
from ..experiments.chapter import ChapterConfig, ChapterResult, ChapterSpec, SweepPlan, param
from ..experiments.claims import Claim
from ..experiments.plotting import PALETTE, label_axes
from ..experiments.seeding import numpy_rng, seed_sequence
from ..experiments.sweep import success_summary

SLOPE_BAND = (0.75, 1.25)
"""N* linear in r: the log-log slope of N* on r must lie in this band."""
BOOTSTRAP = 1000
"""Bootstrap resamples of the teachers."""


@dataclass(frozen=True)
class SampleComplexityConfig(ChapterConfig):
    d: int = param(100, "input dimension", low=1)
    K: int = param(5, "hidden neurons", low=1)
    r_star: int = param(10, "the teacher's weights per neuron r*", low=1, high="d")
    r_values: tuple[int, ...] = param((10, 20, 40, 60, 80, 100), "the students' weights per neuron (r* ≤ r ≤ d)",
                                      low=1, high="d", item="r", min_len=2)
    N_values: tuple[int, ...] = param(tuple(int(round(40 * 1.25**k)) for k in range(21)),
                                      "the common grid of training-set sizes (geometric, ratio 1.25)", low=1, item="N",
                                      min_len=3)
    window: tuple[float, ...] = param((0.8, 6.0), "the student with r runs the N of the grid within "
                                      "[window[0] min(r) K, window[1] rK]", low=0.0, low_open=True, item="window bound",
                                      min_len=2)
    trials: int = param(100, "independent teachers (each seen by every student at every N)", low=1)
    lam: float = param(0.5, "relative distance of the start from W*", low=0.0)
    eta: float = param(0.5, "step size η", low=0.0, low_open=True)
    beta: float = param(0.2, "momentum β", low=0.0, high=1.0, high_open=True)
    max_iter: int = param(ITERATION_CAP, "iteration cap", low=1)
    seed: int = param(2021, "base seed of every random stream", low=0)
    batch_columns: bool = param(False, "run all sizes N of a student in one engine call (zero-padded to the "
                                "largest; the same runs, fewer and larger batches: for a GPU)", choices=(False, True))
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(d=40, K=3, r_star=5, r_values=(5, 10, 20, 40), N_values=(12, 24, 48, 96, 192, 384, 768),
                      trials=3, max_iter=3000),
        "book": dict(r_values=(10, 40, 100), N_values=(40, 60, 90, 135, 200, 300, 450, 680, 1000, 1500, 2250, 3400),
                     trials=6),
        "evidence": dict(trials=20),
        "paper": dict(batch_columns=True),
    }

    def validate(self) -> None:
        if len(self.window) != 2 or not self.window[0] < self.window[1]:
            raise ValueError(f"window = {self.window} must be two ratios, the smaller first")
        for r in self.r_values:
            if len(self.n_values(r)) < 2:
                raise ValueError(f"N_values has fewer than 2 sizes within the window of r = {r} "
                                 f"([{self.window[0] * r * self.K:g}, {self.window[1] * r * self.K:g}])")
        if min(self.r_values) < self.r_star:
            raise ValueError(f"r_values must be at least r_star = {self.r_star} (a student reads the teacher's inputs); "
                             f"got {min(self.r_values)}")

    def n_values(self, r: int) -> tuple[int, ...]:
        """The sizes of the common grid the student with ``r`` weights per neuron runs: from the smallest
        student's lower end, ``window[0] * min(r_values) * K``, up to its own ``window[1] * r * K`` (so
        every student is also tried where the smallest one succeeds, and the comparison can go either way)."""
        lo, hi = self.window[0] * min(self.r_values) * self.K, self.window[1] * r * self.K
        return tuple(N for N in self.N_values if lo <= N <= hi)

    @property
    def N_max(self) -> int:
        """The samples every teacher draws (the largest N of any student)."""
        return max(max(self.n_values(r)) for r in self.r_values)


def nested_student(teacher: Problem, r: int, seed) -> Problem:
    r"""The student with ``r`` weights per neuron of ``teacher`` (supports :math:`\Omega_j\supseteq\Omega_j^*`).

    Neuron :math:`j` reads the teacher's inputs :math:`\Omega_j^*` (in the teacher's order) followed
    by the first :math:`r - r^*` of a random permutation (from ``seed``) of the other inputs, so the
    students of one teacher are nested; its :math:`W^*` holds the teacher's weights in the first
    :math:`r^*` rows and zeros below, and the student network with it computes the teacher exactly.
    """
    K, r_star = teacher.omega.shape
    d = teacher.X.shape[1]
    if not r_star <= r <= d:
        raise ValueError(f"r = {r} must lie in [r* = {r_star}, d = {d}]")
    rng = numpy_rng(seed)
    omega = np.empty((K, r), dtype=teacher.omega.dtype)
    for j in range(K):
        rest = np.setdiff1d(np.arange(d), teacher.omega[j])
        omega[j] = np.concatenate([teacher.omega[j], rng.permutation(rest)[: r - r_star]])
    w_star = np.zeros((r, K))
    w_star[:r_star] = teacher.w_star
    return Problem(X=teacher.X, y=teacher.y, omega=omega, w_star=w_star, noise_level=teacher.noise_level,
                   E_y=teacher.E_y)


def sample_complexity_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """One student size r at one N for every teacher (stream 0: teacher, 2: the student's extra inputs, 1: start)."""
    N, d, K, r, r_star = params["N"], params["d"], params["K"], params["r"], params["r_star"]
    problems, starts = [], []
    for ss in seeds:
        teacher = make_problem(params["N_max"], d, K, r_star, 0.0, seed_sequence(ss, 0))
        s = nested_student(teacher, r, seed_sequence(ss, 2))
        problems.append(Problem(X=s.X[:N], y=s.y[:N], omega=s.omega, w_star=s.w_star))
        starts.append(starts_along(s.w_star, [params["lam"]], seed_sequence(ss, 1)))
    res = run_agd_batched(problems, np.stack(starts), params["eta"], params["beta"], max_iter=params["max_iter"],
                          record_history=False, success_stop=SUCCESS_TOL, progress=False)
    return [dict(r=r, N=N, ratio=N / (r * K), trial=t, **res.record(b, 0, params["lam"])) for b, t in enumerate(trials)]


def sample_complexity_column_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """One student size r at every N of ``params["N_list"]`` for every teacher, in one engine call.

    The same runs as :func:`sample_complexity_task` cell by cell (same teachers, students, starts
    and seeds): the engine zero-pads the problems of different N to the largest and divides each
    gradient by its own N, so with the fused kernel every row is bit for bit the cell's, and with
    the torch kernel (r < 16 on the CPU, and on a GPU) equal to rounding (tested).  On a GPU the
    column's cells then share one launch per iteration instead of one each.
    """
    d, K, r, r_star, lam = params["d"], params["K"], params["r"], params["r_star"], params["lam"]
    problems, starts, cells = [], [], []
    for ss, t in zip(seeds, trials):
        teacher = make_problem(params["N_max"], d, K, r_star, 0.0, seed_sequence(ss, 0))
        s = nested_student(teacher, r, seed_sequence(ss, 2))
        start = starts_along(s.w_star, [lam], seed_sequence(ss, 1))
        for N in params["N_list"]:
            problems.append(Problem(X=s.X[:N], y=s.y[:N], omega=s.omega, w_star=s.w_star))
            starts.append(start)
            cells.append((N, t))
    res = run_agd_batched(problems, np.stack(starts), params["eta"], params["beta"], max_iter=params["max_iter"],
                          record_history=False, success_stop=SUCCESS_TOL, progress=False)
    return [dict(r=r, N=N, ratio=N / (r * K), trial=t, **res.record(b, 0, lam)) for b, (N, t) in enumerate(cells)]


@dataclass(kw_only=True)
class SampleComplexityResult(ChapterResult):
    """Runs of the Fig. 4 experiment: ``runs`` has one row per (r, N, teacher) with success and status."""

    TABLES: ClassVar[tuple[str, ...]] = ("runs",)
    config: SampleComplexityConfig
    runs: pd.DataFrame


def sweeps(config: SampleComplexityConfig) -> list[SweepPlan]:
    """One sweep over (r, N); the trial seed depends on the trial only, so every cell sees the same teachers.

    With ``batch_columns`` a task is a student size r with all its N (:func:`sample_complexity_column_task`),
    and a unit holds all teachers; the runs and their rows are the same.
    """
    c = config
    if c.batch_columns:
        tasks = tuple(dict(N_list=c.n_values(r), N_max=c.N_max, d=c.d, K=c.K, r=r, r_star=c.r_star, lam=c.lam,
                           eta=c.eta, beta=c.beta, max_iter=c.max_iter) for r in c.r_values)
        return [SweepPlan(f"samples-columns-{c.profile}", sample_complexity_column_task, tasks, c.trials, c.seed,
                          seed_keys=(), trials_per_unit=c.trials)]
    tasks = tuple(dict(N=N, N_max=c.N_max, d=c.d, K=c.K, r=r, r_star=c.r_star, lam=c.lam, eta=c.eta, beta=c.beta,
                       max_iter=c.max_iter) for r in c.r_values for N in c.n_values(r))
    return [SweepPlan(f"samples-{c.profile}", sample_complexity_task, tasks, c.trials, c.seed, seed_keys=(),
                      trials_per_unit=10)]


def run(config: SampleComplexityConfig, *, executor: Executor | None = None, cache_dir=None,
        progress: bool | None = None) -> SampleComplexityResult:
    """Run the sweep (tasks choose their device: ``$WT_DEVICE``, else CUDA when available)."""
    (plan,) = sweeps(config)
    sweep = plan.run(executor=executor, cache_dir=cache_dir, progress=progress)
    return SampleComplexityResult(config=config, runs=sweep.runs, seconds=sweep.seconds)


def success_map(result: SampleComplexityResult) -> pd.DataFrame:
    """Success rate per (r, N) with Wilson 95% intervals."""
    return success_summary(result.runs, by=["r", "N"])


def logistic_threshold(N, success, ridge: float = 1e-2) -> tuple[float, str]:
    r"""Where :math:`P(\text{success}) = \sigma(a + b\log N)` crosses 1/2, :math:`N^* = e^{-a/b}`.

    Fitted by Newton's method with a small ridge on :math:`b` (so data that separate perfectly
    still give the point between the last failure and the first success).  Returns
    ``(N*, status)`` with status ``"ok"``, ``"below-grid"`` (every run succeeds: :math:`N^*` is
    below the smallest N), ``"above-grid"`` (none succeeds, or the fit puts :math:`N^*` above the
    largest N), or ``"no-trend"`` (success does not rise with N).
    """
    x = np.log(np.asarray(N, dtype=float))
    s = np.asarray(success, dtype=float)
    if s.size == 0 or s.min() == s.max():
        return (float("nan"), "below-grid" if s.size and s.min() == 1 else "above-grid")
    xc = x - x.mean()
    beta = np.zeros(2)
    X = np.stack([np.ones_like(xc), xc], axis=1)
    penalty = np.diag([0.0, ridge])
    for _ in range(50):
        p = 1 / (1 + np.exp(-(X @ beta)))
        grad = X.T @ (s - p) - penalty @ beta
        hess = X.T @ (X * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    a, b = beta
    if b <= 0:
        return float("nan"), "no-trend"
    n_star = float(np.exp(min(x.mean() - a / b, 700.0)))
    if n_star < np.exp(x.min()):
        return n_star, "below-grid"
    if n_star > np.exp(x.max()):
        return n_star, "above-grid"
    return n_star, "ok"


def thresholds(runs: pd.DataFrame) -> pd.DataFrame:
    """Per r: N* (logistic 50% point) and its status."""
    rows = {r: dict(zip(("N_star", "status"), logistic_threshold(g["N"], g["success"]))) for r, g in runs.groupby("r")}
    return pd.DataFrame(rows).T


class _Teachers:
    """The runs split by teacher and student, so a bootstrap resample is a concatenation of arrays."""

    def __init__(self, runs: pd.DataFrame):
        self.ids = np.sort(runs["trial"].unique())
        self.r_values = sorted(runs["r"].unique())
        index = {t: i for i, t in enumerate(self.ids)}
        self.cells = {r: [None] * len(self.ids) for r in self.r_values}
        for (r, t), g in runs.groupby(["r", "trial"]):
            self.cells[r][index[t]] = (g["N"].to_numpy(float), g["success"].to_numpy(float))

    def thresholds(self, pick) -> dict:
        out = {}
        for r in self.r_values:
            parts = [self.cells[r][i] for i in pick if self.cells[r][i] is not None]
            n = np.concatenate([p[0] for p in parts]) if parts else np.array([])
            s = np.concatenate([p[1] for p in parts]) if parts else np.array([])
            out[r] = logistic_threshold(n, s)
        return out


def _statistics(th: dict, r_values) -> tuple[float, float]:
    """(log-log slope of N* on r over the r whose N* lies inside its grid (at least 3), and
    log N*(largest r) - log N*(smallest r), +inf when the largest r never reaches 50% on its grid)."""
    ok = [(r, n) for r, (n, status) in th.items() if status == "ok"]
    slope = float(np.polyfit(np.log([r for r, _ in ok]), np.log([n for _, n in ok]), 1)[0]) if len(ok) >= 3 else float("nan")
    (n_lo, st_lo), (n_hi, st_hi) = th[min(r_values)], th[max(r_values)]
    gap = float("nan")
    if st_lo == "ok":
        gap = float(np.log(n_hi) - np.log(n_lo)) if st_hi == "ok" else (float("inf") if st_hi == "above-grid" else gap)
    return slope, gap


def bootstrap(result: SampleComplexityResult, n_boot: int = BOOTSTRAP, seed_offset: int = 0) -> pd.DataFrame:
    """Per resample of the teachers (with replacement): N* of every r, the slope of log N* on log r and the gap log N*(largest r) - log N*(smallest r)."""
    c = result.config
    data = _Teachers(result.runs)
    rng = np.random.default_rng([c.seed, seed_offset])
    rows = []
    for _ in range(n_boot):
        th = data.thresholds(rng.integers(0, len(data.ids), len(data.ids)))
        slope, gap = _statistics(th, c.r_values)
        rows.append(dict(slope=slope, gap=gap, **{f"N_star_{r}": n if st == "ok" else np.nan for r, (n, st) in th.items()}))
    return pd.DataFrame(rows)


def _interval(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if v.size < 0.5 * np.size(values):  # most resamples give no value: the interval means nothing
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [2.5, 97.5])
    return float(lo), float(hi)


def threshold_table(result: SampleComplexityResult, boot: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per r: N*, N*/(rK), its status, and its bootstrap 95% interval over teachers."""
    c = result.config
    boot = bootstrap(result) if boot is None else boot
    th = thresholds(result.runs)
    th["N_star_per_unknown"] = th["N_star"].astype(float) / (th.index.to_numpy(float) * c.K)
    bounds = [_interval(boot[f"N_star_{r}"]) for r in th.index]
    th["low"], th["high"] = [b[0] for b in bounds], [b[1] for b in bounds]
    th["teachers"] = int(result.runs["trial"].nunique())
    return th


def check_claims(result: SampleComplexityResult) -> list[Claim]:
    """The claims of Fig. 4 on one sparse teacher, decided by a bootstrap over teachers.

    N*(r) is the 50% point of a logistic fit of success on log N over every run of student r.

    * ``threshold-linear-in-r``: the log-log slope of N* on r (over the r whose N* lies inside
      their N grid, at least 3) has a bootstrap 95% CI inside ``SLOPE_BAND`` (0.75, 1.25):
      SUPPORTED; entirely outside: NOT SUPPORTED; otherwise (or when fewer than 3 r have N*
      inside the grid in most resamples) INCONCLUSIVE.
    * ``pruned-needs-fewer-samples``: log N*(r = d) − log N*(r = r*) on the same teachers has a
      bootstrap 95% CI above 0 (a dense student that never reaches 50% on its grid counts as
      1e9): SUPPORTED; below 0: NOT SUPPORTED; otherwise INCONCLUSIVE.

    Both need at least 5 teachers.
    """
    c = result.config
    boot = bootstrap(result)
    data = _Teachers(result.runs)
    slope, gap = _statistics(data.thresholds(range(len(data.ids))), c.r_values)
    teachers = len(data.ids)
    lo, hi = _interval(boot["slope"])
    claims = [rules.within(slope, lo, hi, teachers, *SLOPE_BAND).claim(
        "threshold-linear-in-r",
        f"The samples needed for success, N*, grow linearly in the student's r (one teacher with r* = {c.r_star}).",
        f"bootstrap 95% CI (teachers resampled) of the log-log slope of N* on r inside {SLOPE_BAND}",
        "log-log slope", ".2f")]
    big = 1e9
    glo, ghi = _interval(boot["gap"].replace(np.inf, big))
    claims.append(rules.above(big if gap == np.inf else gap, glo, ghi, teachers, 0.0).claim(
        "pruned-needs-fewer-samples",
        f"The pruned student (r = {min(c.r_values)}) needs fewer samples than the dense student (r = {max(c.r_values)}) "
        "on the same teachers.",
        "bootstrap 95% CI of log N*(dense) - log N*(pruned) above 0 (1e9 stands for a dense student that never "
        "reaches 50%)", "log ratio", ".2f"))
    return claims


def plot_figure4(result: SampleComplexityResult, table: pd.DataFrame | None = None):
    """(a) success rate against N for every student r (Wilson intervals), N* marked; (b) N* against r, log axes."""
    c = result.config
    m = success_map(result).reset_index()
    th = threshold_table(result) if table is None else table
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11.5, 4.3))
    markers = "osD^v<>ph"
    for i, r in enumerate(c.r_values):
        g = m[m["r"] == r]
        color = PALETTE[i % len(PALETTE)]
        ax_a.errorbar(g["N"], g["rate"], yerr=[(g["rate"] - g["rate_low"]).clip(lower=0), (g["rate_high"] - g["rate"]).clip(lower=0)], marker=markers[i % 9],
                      ms=4, color=color, capsize=2, lw=1, label=f"r = {r}" + (" (dense)" if r == c.d else ""))
        if th.loc[r, "status"] == "ok":
            ax_a.axvline(th.loc[r, "N_star"], color=color, lw=0.8, ls=":")
    ax_a.axhline(0.5, color="0.5", lw=0.8)
    ax_a.set_xscale("log")
    ax_a.set_ylim(-0.03, 1.03)
    label_axes(ax_a, "number of samples N", f"success rate ({c.trials} teachers per point)",
               f"(a) students of one teacher (r* = {c.r_star}, K = {c.K}, d = {c.d})")
    ax_a.legend(fontsize=7, loc="lower right")
    ok = th[th["status"] == "ok"]
    ax_b.errorbar(ok.index.to_numpy(float), ok["N_star"].astype(float),
                  yerr=[(ok["N_star"] - ok["low"]).astype(float).clip(lower=0).fillna(0),
                        (ok["high"] - ok["N_star"]).astype(float).clip(lower=0).fillna(0)],
                  fmt="o", color=PALETTE[0], capsize=3, label="N* (logistic 50% point, bootstrap 95%)")
    rr = np.array([min(c.r_values), max(c.r_values)], dtype=float)
    if len(ok):
        ref = float(ok["N_star"].iloc[0]) * rr / float(ok.index[0])
        ax_b.plot(rr, ref, color="0.4", ls="--", lw=1, label="∝ r (through the first point)")
        ax_b.plot(rr, rr * c.K, color="0.6", ls=":", lw=1, label="N = rK (as many samples as unknowns)")
    ax_b.set_xscale("log")
    ax_b.set_yscale("log")
    ax_b.set_xticks(list(c.r_values))
    ax_b.set_xticklabels([str(r) for r in c.r_values])
    ax_b.xaxis.set_minor_locator(plt.NullLocator())
    label_axes(ax_b, "student's weights per neuron r", "samples needed N*", "(b) the transition against r", legend=True)
    return fig


CHAPTER = ChapterSpec("sample_complexity", "Sample complexity: samples proportional to the surviving weights",
                      SampleComplexityConfig, SampleComplexityResult, run, check_claims, {"Fig. 4": plot_figure4},
                      sweeps=sweeps)
