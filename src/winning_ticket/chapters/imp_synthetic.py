r"""The IMP chapter, part 1: magnitude pruning on the teacher-student model (Section 4.1, Fig. 6).

Two experiments.

*Magnitude pruning finds a proper student* (Section 4.1).  Train the dense student
(:math:`r = d`, every neuron sees every input) with AGD from a start at relative distance
``lam`` from the zero-padded teacher :math:`\tilde W^*`, rank all :math:`dK` weights by
:math:`|W_{ij}|` and ask how far one can prune before a teacher weight is lost.  The section's
argument (via the entry-wise bound (10)) says: once :math:`N` is above the dense sample
complexity, every teacher weight is larger than every non-teacher weight, so pruning the
fraction :math:`1 - r^*/d` returns exactly the teacher's supports.

*IMP* (Fig. 6).  Dense student from a random start :math:`\theta_0`, trained with masked
full-batch AGD (problem (4): the gradient times the mask), then 20% of the remaining weights
pruned globally by magnitude, survivors rewound to :math:`\theta_0`, retrained; one curve of
test error against the remaining percentage per training-set size :math:`N`.  Test error is
the mean squared error on fresh noiseless test inputs divided by :math:`E_y^2` (the mean
squared teacher output on those inputs).  The student's neurons are exchangeable (all output
weights are :math:`1/K`), so a trained student may hold the teacher's neurons in another order;
support statistics therefore match student and teacher neurons first (Hungarian algorithm on
the overlap of supports).

Training and pruning details are not in the paper; the choices are in :class:`IMPConfig` and
discussed in the chapter.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from ..algorithms.agd import ITERATION_CAP, STATUS_NAMES
from ..experiments.claims import Claim
from ..algorithms.engine import batched_hessian, run_agd_batched, stack_problems
from ..algorithms.teacher_student import dense_student, make_problem, starts_along, teacher_output
from ..experiments.seeding import numpy_rng, seed_sequence
from ..experiments.plotting import sequential_colors
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec
from ..algorithms.pruning import remaining_counts, run_imp
from ..experiments.sweep import run_sweep


@dataclass(frozen=True)
class IMPConfig(ChapterConfig):
    d: int = param(100, "input dimension", low=1)
    K: int = param(5, "hidden neurons", low=1)
    r_star: int = param(20, "the teacher's weights per neuron r*", low=1, high="d")
    noise_level: float = param(1e-3, "label noise σ/E_y", low=0.0)
    N_values: tuple[int, ...] = param((100, 500, 1000, 2000, 5000), "training-set sizes (Fig. 6)", low=1,
                                      item="N", min_len=2)
    trials: int = param(20, "independent problems per N", low=1)
    rounds: int = param(12, "pruning rounds", low=1)
    rate: float = param(0.2, "fraction of remaining weights pruned per round", low=0.0, high=1.0,
                        low_open=True, high_open=True)
    init_scale: float = param(0.1, "standard deviation of the random initialization", low=0.0, low_open=True)
    eta: float = param(5.0, "step size η", low=0.0, low_open=True)
    beta: float = param(0.2, "momentum β", low=0.0, high=1.0, high_open=True)
    max_iter: int = param(ITERATION_CAP, "iteration cap per round", low=1)
    n_test: int = param(10_000, "test samples", low=1)
    support_N_values: tuple[int, ...] = param((250, 500, 1000, 2000, 5000), "training-set sizes (support recovery)",
                                              low=1, item="N")
    support_trials: int = param(20, "independent problems per N (support recovery)", low=1)
    lam: float = param(0.5, "relative distance of the dense student's start", low=0.0)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(d=40, K=3, r_star=8, N_values=(60, 400), trials=3, max_iter=1500, n_test=2000,
                      support_N_values=(100, 800), support_trials=3),
        "book": dict(N_values=(100, 500, 1000, 2000), trials=4, max_iter=3000,
                     support_N_values=(250, 500, 1000, 2000), support_trials=8),
    }


    @property
    def teacher_fraction(self) -> float:
        """The teacher's share of the dense weights, :math:`r^*/d`."""
        return self.r_star / self.d


def _matched_overlap(mask: np.ndarray, omega: np.ndarray) -> int:
    """Teacher weights covered by a ``(d, K)`` student mask after the best neuron matching."""
    K = omega.shape[0]
    overlap = np.array([[mask[omega[t], j].sum() for t in range(K)] for j in range(K)])
    rows, cols = linear_sum_assignment(-overlap)
    return int(overlap[rows, cols].sum())


def imp_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """IMP for one training-set size ``N``: all trials of the task at once (one network per trial)."""
    N, d, K, r_star = params["N"], params["d"], params["K"], params["r_star"]
    teachers = [make_problem(N, d, K, r_star, params["noise_level"], seed_sequence(ss, 0)) for ss in seeds]
    problems = [dense_student(p) for p in teachers]
    theta0 = np.stack([numpy_rng(ss, 1).normal(0.0, params["init_scale"], (d, K))
                       for ss in seeds])
    dense_omega = problems[0].omega
    tests = []
    for ss, p in zip(seeds, teachers):
        X = numpy_rng(ss, 2).standard_normal((params["n_test"], d))
        y = teacher_output(X, p.omega, p.w_star)
        tests.append((X, y, float(np.mean(y**2))))
    runs: list = []

    def train(start, masks, k):
        mask = masks["W"].numpy()[:, None].astype(np.float64)
        res = run_agd_batched(problems, start["W"].numpy()[:, None], params["eta"], params["beta"],
                              max_iter=params["max_iter"], record_history=False, progress=False, mask=mask)
        runs.append(res)
        return {"W": torch.from_numpy(res.W[:, 0])}

    def evaluate(trained, masks, k):
        W, M = trained["W"].numpy(), masks["W"].numpy()
        errs = [float(np.mean((teacher_output(X, dense_omega, W[b]) - y) ** 2) / Ey2)
                for b, (X, y, Ey2) in enumerate(tests)]
        kept = [_matched_overlap(M[b], p.omega) / p.omega.size for b, p in enumerate(teachers)]
        return dict(test_error=errs, teacher_kept=kept)

    imp = run_imp({"W": torch.from_numpy(theta0)}, train, params["rounds"], params["rate"], "global",
                  evaluate=evaluate, batch_dims=1, keep_trained=False)
    rows = []
    for k, (metrics, rem, res) in enumerate(zip(imp.metrics, imp.remaining, runs)):
        for b, t in enumerate(trials):
            rows.append(dict(N=N, trial=t, round=k, remaining=float(rem[b]) * 100,
                             test_error=metrics["test_error"][b], teacher_kept=metrics["teacher_kept"][b],
                             iterations=int(res.iterations[b, 0]), status=STATUS_NAMES[res.status[b, 0]]))
    return rows


def support_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """Section 4.1: dense AGD from a start near the padded teacher, then the magnitude ranking."""
    N, d, K, r_star = params["N"], params["d"], params["K"], params["r_star"]
    problems = [dense_student(make_problem(N, d, K, r_star, params["noise_level"], seed_sequence(ss, 0)))
                for ss in seeds]
    W0 = np.stack([starts_along(p.w_star, [params["lam"]], seed_sequence(ss, 1)) for p, ss in zip(problems, seeds)])
    res = run_agd_batched(problems, W0, params["eta"], params["beta"], max_iter=params["max_iter"],
                          record_history=False, progress=False)
    rows = []
    for b, (p, t) in enumerate(zip(problems, trials)):
        W = res.W[b, 0]
        teacher = p.w_star != 0
        order = np.argsort(-np.abs(W).ravel(), kind="stable")  # largest first
        rank = np.empty(W.size, dtype=np.int64)
        rank[order] = np.arange(W.size)
        worst = int(rank[teacher.ravel()].max())  # position of the smallest teacher weight
        top = np.zeros(W.size, dtype=bool)
        top[order[: teacher.sum()]] = True
        rows.append(dict(N=N, trial=t, recovered=bool(worst < teacher.sum()),
                         safe_prune=1.0 - (worst + 1) / W.size,
                         kept_at_teacher_size=float((top & teacher.ravel()).sum() / teacher.sum()),
                         final_error=float(res.final_error[b, 0]), status=STATUS_NAMES[res.status[b, 0]],
                         min_teacher_weight=float(np.abs(p.w_star[teacher]).min())))
    return rows


@dataclass(kw_only=True)
class IMPSyntheticResult(ChapterResult):
    """IMP rounds (``imp``: one row per (N, trial, round)) and support recovery (``support``: one row per (N, trial))."""

    TABLES: ClassVar[tuple[str, ...]] = ("imp", "support")
    config: IMPConfig
    imp: pd.DataFrame
    support: pd.DataFrame


def run(config: IMPConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> IMPSyntheticResult:
    """Run both experiments (each training-set size is one unit of work)."""
    c = config
    common = dict(d=c.d, K=c.K, r_star=c.r_star, noise_level=c.noise_level, eta=c.eta, beta=c.beta,
                  max_iter=c.max_iter)
    imp = run_sweep(imp_task, [dict(common, N=N, rounds=c.rounds, rate=c.rate, init_scale=c.init_scale,
                                    n_test=c.n_test) for N in c.N_values],
                    c.trials, seed=c.seed, name=f"imp-synthetic-{c.profile}", executor=executor,
                    cache_dir=cache_dir, progress=progress)
    support = run_sweep(support_task, [dict(common, N=N, lam=c.lam) for N in c.support_N_values],
                        c.support_trials, seed=c.seed, name=f"imp-support-{c.profile}", executor=executor,
                        cache_dir=cache_dir, progress=progress)
    return IMPSyntheticResult(config=c, imp=imp.runs, support=support.runs, seconds=imp.seconds + support.seconds)


def expected_remaining(config: IMPConfig) -> np.ndarray:
    """The remaining percentage after each round, known before training (exact counts)."""
    total = config.d * config.K
    return np.array(remaining_counts(total, config.rate, config.rounds)) / total * 100


def imp_summary(result: IMPSyntheticResult) -> pd.DataFrame:
    """Per (N, round): remaining %, median and quartiles of the test error, teacher weights kept."""
    g = result.imp.groupby(["N", "round"])
    out = pd.DataFrame({
        "remaining": g["remaining"].first(),
        "error_median": g["test_error"].median(),
        "error_q25": g["test_error"].quantile(0.25),
        "error_q75": g["test_error"].quantile(0.75),
        "teacher_kept": g["teacher_kept"].mean(),
        "at_cap": g["status"].apply(lambda s: int((s == "max_iter").sum())),
        "runs": g.size(),
    })
    return out


def support_summary(result: IMPSyntheticResult) -> pd.DataFrame:
    """Per N: rate of exact support recovery, safe pruning fraction, final error of the dense fit."""
    g = result.support.groupby("N")
    return pd.DataFrame({
        "recovery_rate": g["recovered"].mean(),
        "safe_prune_median": g["safe_prune"].median(),
        "kept_at_teacher_size": g["kept_at_teacher_size"].mean(),
        "dense_error_median": g["final_error"].median(),
        "runs": g.size(),
    })


def curvature_check(config: IMPConfig, N: int = 2000, seed: int = 0) -> pd.Series:
    r"""Largest Hessian eigenvalue of the dense student's risk at :math:`\tilde W^*`, against the step size.

    Heavy-ball AGD on a quadratic is stable when :math:`\eta\lambda_{\max} < 2(1+\beta)`; the
    chapter uses this to choose :math:`\eta`.
    """
    c = config
    p = dense_student(make_problem(N, c.d, c.K, c.r_star, c.noise_level, seed_sequence(seed, 5)))
    XT, _, w_star = stack_problems([p], device="cpu")
    H = batched_hessian(XT, w_star.unsqueeze(1))[0, 0]
    lam = float(torch.linalg.eigvalsh(H)[-1])
    return pd.Series({"N": N, "lambda_max": lam, "eta": c.eta, "eta*lambda_max": c.eta * lam,
                      "paper eta*lambda_max": 0.5 * lam, "stability limit 2(1+beta)": 2 * (1 + c.beta)})


def _round_at_teacher(config: IMPConfig) -> int:
    """The last round that still keeps at least the teacher's share of weights."""
    rem = expected_remaining(config)
    return int(np.nonzero(rem >= config.teacher_fraction * 100 - 1e-9)[0].max())


def check_claims(result: IMPSyntheticResult) -> list[Claim]:
    """The claims of Fig. 6 and Section 4.1, decided from the runs.

    * ``error-falls-to-teacher-size``: the ratio of the median test error at the round nearest
      the teacher's size to the dense one is below 1 for every N above the smallest.
    * ``error-rises-below-teacher-size``: the ratio of the error at the last round to the one
      at the teacher's size is above 1 for every N.
    * ``small-N-stays-high``: at the smallest N the error stays at or above 0.1 of the output's
      mean square.
    * ``magnitude-pruning-finds-proper-student``: at the largest N at least 90% of the trials
      recover the teacher's support exactly.
    """
    c = result.config
    s = imp_summary(result)["error_median"].unstack("round")
    k20 = _round_at_teacher(c)
    rem = expected_remaining(c)
    big = [N for N in c.N_values if N > min(c.N_values)]
    small = min(c.N_values)
    falls = {N: s.loc[N, k20] / s.loc[N, 0] for N in big}
    rises = {N: s.loc[N, c.rounds] / s.loc[N, k20] for N in c.N_values}
    best_small = float(s.loc[small].min())
    sup = support_summary(result)
    top_N = max(c.support_N_values)
    return [
        Claim(
            name="error-falls-to-teacher-size",
            statement=f"For every N > {small}, test error falls as pruning proceeds down to the teacher's "
                      f"{c.teacher_fraction:.0%} (paper Fig. 6).",
            holds=bool(all(v < 1 for v in falls.values())),
            statistic=f"median error at {rem[k20]:.1f}% / at 100%: "
                      + ", ".join(f"N={N}: {v:.2g}" for N, v in falls.items()),
            rule=f"the ratio is below 1 for every N > {small}",
        ),
        Claim(
            name="error-rises-below-teacher-size",
            statement=f"Below {c.teacher_fraction:.0%} remaining the test error rises, for every N.",
            holds=bool(all(v > 1 for v in rises.values())),
            statistic=f"median error at {rem[-1]:.1f}% / at {rem[k20]:.1f}%: "
                      + ", ".join(f"N={N}: {v:.3g}" for N, v in rises.items()),
            rule="the ratio is above 1 for every N",
        ),
        Claim(
            name="small-N-stays-high",
            statement=f"At N = {small} the test error stays high at every sparsity.",
            holds=bool(best_small >= 0.1),
            statistic=f"lowest median error over all rounds at N = {small}: {best_small:.3g}",
            rule="it stays at or above 0.1 (10% of the output's mean square)",
        ),
        Claim(
            name="magnitude-pruning-finds-proper-student",
            statement=f"With enough samples, pruning the dense AGD solution to 1 - r*/d = {1 - c.teacher_fraction:.0%} "
                      "keeps every teacher weight (Section 4.1).",
            holds=bool(sup.loc[top_N, "recovery_rate"] >= 0.9),
            statistic="exact support recovery rate by N: "
                      + ", ".join(f"{N}: {v:.2f}" for N, v in sup["recovery_rate"].items()),
            rule=f"at the largest N ({top_N}) at least 90% of trials recover the support exactly",
        ),
    ]


def plot_figure6(result: IMPSyntheticResult):
    """(a) median test error against remaining % per N (band: quartiles); (b) teacher weights kept."""
    c = result.config
    s = imp_summary(result).reset_index()
    colors = sequential_colors(len(c.N_values))
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10.5, 4))
    for color, N in zip(colors, c.N_values):
        g = s[s["N"] == N]
        ax_a.plot(g["remaining"], g["error_median"], marker="o", ms=3.5, color=color, label=f"N = {N}")
        ax_a.fill_between(g["remaining"], g["error_q25"], g["error_q75"], color=color, alpha=0.2, linewidth=0)
        ax_b.plot(g["remaining"], g["teacher_kept"] * 100, marker="o", ms=3.5, color=color, label=f"N = {N}")
    for ax in (ax_a, ax_b):
        ax.axvline(c.teacher_fraction * 100, color="0.3", ls="--", lw=1)
        ax.set_xlim(102, 0)
        ax.set_xlabel("remaining weights (% of the dense network)")
    ax_a.set_yscale("log")
    ax_a.set_ylabel(r"test error (MSE / $E_y^2$)")
    ax_a.set_title("(a) test error of IMP tickets (median, quartile band)", loc="left")
    ax_a.legend(fontsize=8)
    ax_b.set_ylabel("teacher weights kept by the mask (%)")
    ax_b.set_title(f"(b) mask vs teacher support (dashed: r*/d = {c.teacher_fraction:.0%})", loc="left")
    ax_b.set_ylim(-2, 102)
    return fig


def plot_support(result: IMPSyntheticResult):
    """Section 4.1: exact support recovery rate and the safe pruning fraction against N."""
    c = result.config
    sup = support_summary(result)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(sup.index, sup["recovery_rate"], marker="o", label="exact support recovery rate")
    ax.plot(sup.index, sup["safe_prune_median"], marker="s", label="largest safe pruned fraction (median)")
    ax.axhline(1 - c.teacher_fraction, color="0.3", ls="--", lw=1, label=f"1 - r*/d = {1 - c.teacher_fraction:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("training samples N")
    ax.set_ylabel("rate / fraction")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    return fig


CHAPTER = ChapterSpec("imp_synthetic", "Lottery tickets on synthetic data: magnitude pruning and IMP", IMPConfig, IMPSyntheticResult, run, check_claims,
                      {"Fig. 6": plot_figure6, "support recovery": plot_support})
