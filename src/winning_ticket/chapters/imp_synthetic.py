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
from ..algorithms.engine import batched_hessian, run_agd_batched, stack_problems
from ..algorithms.pruning import remaining_counts, run_imp
from ..algorithms.teacher_student import dense_student, make_problem, starts_along, teacher_output
from ..experiments import rules
from ..experiments.chapter import ChapterConfig, ChapterResult, ChapterSpec, SweepPlan, param, run_plans
from ..experiments.claims import NOT_SUPPORTED, SUPPORTED, Claim
from ..experiments.plotting import sequential_colors
from ..experiments.seeding import numpy_rng, seed_sequence

ORACLE_BAND = (-float(np.log(2.0)), float(np.log(2.0)))
"""IMP's ticket as good as the oracle mask: the mean log error ratio must lie in this band (a factor of 2)."""
RECOVERY_LEVEL = 0.9
"""Support recovery at the largest N: the rate must be at least this."""
HIGH_ERROR = 0.1
"""The smallest N "stays high": its best error over the rounds stays above this fraction of E_y^2."""


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
    long_N_values: tuple[int, ...] = param((1000, 2000), "N of the cap check: IMP rerun with a longer cap", low=1,
                                           item="N", min_len=0)
    long_trials: int = param(5, "problems per N of the cap check (the first of the main run's)", low=1)
    long_max_iter: int = param(ITERATION_CAP, "iteration cap per round of the cap check", low=1)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(d=40, K=3, r_star=8, N_values=(60, 400), trials=3, max_iter=1500, n_test=2000,
                      support_N_values=(100, 800), support_trials=3, long_N_values=(400,), long_trials=1,
                      long_max_iter=3000),
        "book": dict(N_values=(100, 500, 1000, 2000), trials=4, max_iter=3000,
                     support_N_values=(250, 500, 1000, 2000), support_trials=8, long_N_values=(1000,), long_trials=2),
        "evidence": dict(N_values=(100, 500, 1000, 2000), trials=10, max_iter=3000,
                         support_N_values=(250, 500, 1000, 2000, 5000), support_trials=40),
    }

    def validate(self) -> None:
        if self.long_trials > self.trials:
            raise ValueError(f"long_trials = {self.long_trials} must be at most trials = {self.trials}")
        if not set(self.long_N_values) <= set(self.N_values):
            raise ValueError(f"long_N_values = {self.long_N_values} must be a subset of N_values = {self.N_values}")


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


def control_masks(omega: np.ndarray, d: int, counts, seed) -> tuple[np.ndarray, np.ndarray]:
    """The two control masks of every round (``counts[k]`` weights each, ``(len(counts), d, K)``).

    * *random*: the first ``counts[k]`` of one random permutation of the :math:`dK` positions
      (stream 0 of ``seed``), so the masks of successive rounds are nested, as IMP's are;
    * *oracle*: the teacher's positions first (a random order of them), then the other positions
      in a random order (stream 1): above the teacher's size it contains the whole support, below
      it a random part of it.
    """
    K = omega.shape[0]
    teacher = np.zeros((d, K), dtype=bool)
    for j in range(K):
        teacher[omega[j], j] = True
    flat_teacher = np.flatnonzero(teacher.ravel())
    flat_other = np.flatnonzero(~teacher.ravel())
    order_random = numpy_rng(seed_sequence(seed, 0)).permutation(d * K)
    rng = numpy_rng(seed_sequence(seed, 1))
    order_oracle = np.concatenate([rng.permutation(flat_teacher), rng.permutation(flat_other)])
    out = []
    for order in (order_random, order_oracle):
        masks = np.zeros((len(counts), d * K))
        for k, n in enumerate(counts):
            masks[k, order[:n]] = 1.0
        out.append(masks.reshape(len(counts), d, K))
    return out[0], out[1]


def control_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    r"""The controls of every IMP round (1 to ``rounds``) at the same number of weights, for one ``N``.

    The same problems, initialization :math:`\theta_0` and test data as :func:`imp_task` (streams
    0, 1 and 2 of the trial seed); the masks from stream 3 (:func:`control_masks`).  Every masked
    network is trained from :math:`\theta_0 \odot M` with the same protocol as IMP's rounds.
    """
    N, d, K, r_star = params["N"], params["d"], params["K"], params["r_star"]
    counts = remaining_counts(d * K, params["rate"], params["rounds"])[1:]
    teachers = [make_problem(N, d, K, r_star, params["noise_level"], seed_sequence(ss, 0)) for ss in seeds]
    problems = [dense_student(p) for p in teachers]
    dense_omega = problems[0].omega
    rows = []
    for control in ("random", "oracle"):
        masks, starts = [], []
        for ss, p in zip(seeds, teachers):
            m = control_masks(p.omega, d, counts, seed_sequence(ss, 3))[control == "oracle"]
            theta0 = numpy_rng(ss, 1).normal(0.0, params["init_scale"], (d, K))
            masks.append(m)
            starts.append(theta0[None] * m)
        masks, starts = np.stack(masks), np.stack(starts)
        res = run_agd_batched(problems, starts, params["eta"], params["beta"], max_iter=params["max_iter"],
                              record_history=False, progress=False, mask=masks)
        for b, (ss, p, t) in enumerate(zip(seeds, teachers, trials)):
            X = numpy_rng(ss, 2).standard_normal((params["n_test"], d))
            y = teacher_output(X, p.omega, p.w_star)
            Ey2 = float(np.mean(y**2))
            for k, n in enumerate(counts):
                err = float(np.mean((teacher_output(X, dense_omega, res.W[b, k]) - y) ** 2) / Ey2)
                rows.append(dict(N=N, trial=t, round=k + 1, control=control, remaining=100.0 * n / (d * K),
                                 test_error=err, teacher_kept=_matched_overlap(masks[b, k], p.omega) / p.omega.size,
                                 iterations=int(res.iterations[b, k]), status=STATUS_NAMES[res.status[b, k]]))
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
    """IMP rounds (``imp``: one row per (N, trial, round)), the controls at the same sparsity (``controls``: one
    row per (N, trial, round, control)), support recovery (``support``: one row per (N, trial)) and the cap
    check (``imp_long``: IMP on the first problems with the longer cap ``long_max_iter``)."""

    TABLES: ClassVar[tuple[str, ...]] = ("imp", "controls", "support", "imp_long")
    config: IMPConfig
    imp: pd.DataFrame
    controls: pd.DataFrame
    support: pd.DataFrame
    imp_long: pd.DataFrame


def sweeps(config: IMPConfig) -> list[SweepPlan]:
    """IMP and its controls (one unit per N and up to 5 problems; the controls and the cap check see IMP's
    problems, starts and test data: trial seeds keyed by N only) and the support-recovery sweep."""
    c = config
    common = dict(d=c.d, K=c.K, r_star=c.r_star, noise_level=c.noise_level, eta=c.eta, beta=c.beta,
                  max_iter=c.max_iter)
    imp = tuple(dict(common, N=N, rounds=c.rounds, rate=c.rate, init_scale=c.init_scale, n_test=c.n_test)
                for N in c.N_values)
    per = max(1, min(c.trials, 5))
    long = tuple(dict(t, max_iter=c.long_max_iter) for t in imp if t["N"] in c.long_N_values)
    return [SweepPlan(f"imp-synthetic-{c.profile}", imp_task, imp, c.trials, c.seed, ("N",), per, "imp"),
            SweepPlan(f"imp-long-{c.profile}", imp_task, long, c.long_trials, c.seed, ("N",), 1, "imp_long"),
            SweepPlan(f"imp-controls-{c.profile}", control_task, imp, c.trials, c.seed, ("N",), per, "controls"),
            SweepPlan(f"imp-support-{c.profile}", support_task, tuple(dict(common, N=N, lam=c.lam)
                                                                     for N in c.support_N_values),
                      c.support_trials, c.seed, ("N",), max(1, min(c.support_trials, 10)), "support")]


def run(config: IMPConfig, *, executor: Executor | None = None, cache_dir=None,
        progress: bool | None = None) -> IMPSyntheticResult:
    """Run IMP, its controls and the support-recovery experiment."""
    return run_plans(sweeps(config), IMPSyntheticResult, config, executor=executor, cache_dir=cache_dir, progress=progress)


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


def paired_log_ratios(result: IMPSyntheticResult, a: tuple[str, int], b: tuple[str, int]) -> pd.DataFrame:
    """Per (N, problem): log(test error of ``a``) - log(test error of ``b``), each given as
    ``(kind, round)`` with kind ``"imp"``, ``"random"`` or ``"oracle"`` (the same problem, so paired)."""
    imp = result.imp.assign(kind="imp")[["N", "trial", "round", "kind", "test_error"]]
    ctl = result.controls.rename(columns={"control": "kind"})[["N", "trial", "round", "kind", "test_error"]]
    table = pd.concat([imp, ctl]).set_index(["kind", "round", "N", "trial"])["test_error"].sort_index()
    return (np.log(table.loc[a]) - np.log(table.loc[b])).rename("log_ratio").reset_index()


def _per_n(result: IMPSyntheticResult, a, b, N_values, **bounds) -> dict[int, rules.Decision]:
    lr = paired_log_ratios(result, a, b)
    out = {}
    for N in N_values:
        d = lr[lr["N"] == N]["log_ratio"].to_numpy()
        out[N] = rules.paired_difference(d, np.zeros_like(d), **bounds)
    return out


def _all_of(decisions: Mapping[int, rules.Decision]) -> bool | None:
    """An "at every N" claim: SUPPORTED when every N is, NOT SUPPORTED when any N is, otherwise INCONCLUSIVE."""
    verdicts = {d.verdict for d in decisions.values()}
    if NOT_SUPPORTED in verdicts:
        return False
    return True if verdicts == {SUPPORTED} else None


def _describe(decisions: Mapping[int, rules.Decision]) -> str:
    return "; ".join(f"N={N}: {d.estimate:+.2f} [{d.low:+.2f}, {d.high:+.2f}] ({d.units})" for N, d in decisions.items())


def check_claims(result: IMPSyntheticResult) -> list[Claim]:
    """The claims of Fig. 6 and Section 4.1, judged over independent problems (paired by problem).

    k20 is the last round that keeps at least the teacher's share of weights; a log ratio is
    log(error a) - log(error b) on the same problem, with a Student-t 95% interval over problems.

    * ``ticket-beats-dense``: for every N above the smallest, the log ratio of IMP's error at k20 to
      the dense error has its interval below 0 (SUPPORTED if at every N; NOT SUPPORTED if above 0
      at any N; INCONCLUSIVE otherwise).
    * ``ticket-beats-random-mask``: the same for IMP's ticket against a random mask with as many
      weights, trained from the same start.
    * ``ticket-matches-oracle``: at the largest N, the log ratio of IMP's error at k20 to the oracle
      mask's (the teacher's support plus random weights up to the same count) inside
      ``ORACLE_BAND`` (within a factor of 2): SUPPORTED; outside: NOT SUPPORTED.
    * ``error-rises-below-teacher-size`` (a check; it must hold once the mask cannot hold the
      teacher): the log ratio of the last round's error to k20's is above 0 at every N.
    * ``small-N-stays-high``: at the smallest N the per-problem lowest error over the rounds has a mean
      log10 above log10(``HIGH_ERROR``) (t interval): SUPPORTED; below: NOT SUPPORTED.
    * ``magnitude-pruning-finds-proper-student``: at the largest N of the support experiment, the
      Wilson interval of the exact recovery rate at or above ``RECOVERY_LEVEL``: SUPPORTED; below:
      NOT SUPPORTED.

    Every rule needs at least 5 problems per N (INCONCLUSIVE otherwise).
    """
    c = result.config
    k20 = _round_at_teacher(c)
    rem = expected_remaining(c)
    small = min(c.N_values)
    big = [N for N in c.N_values if N > small]
    dense = _per_n(result, ("imp", k20), ("imp", 0), big, upper=0.0)
    rand = _per_n(result, ("imp", k20), ("random", k20), big, upper=0.0)
    oracle = _per_n(result, ("imp", k20), ("oracle", k20), [max(c.N_values)], lower=ORACLE_BAND[0],
                    upper=ORACLE_BAND[1])[max(c.N_values)]
    rises = _per_n(result, ("imp", c.rounds), ("imp", k20), list(c.N_values), lower=0.0)
    lowest = result.imp[result.imp["N"] == small].groupby("trial")["test_error"].min()
    est, lo, hi = rules.mean_interval(np.log10(lowest.to_numpy()))
    high = rules.above(est, lo, hi, len(lowest), float(np.log10(HIGH_ERROR)))
    sup = result.support[result.support["N"] == max(c.support_N_values)]
    rec = rules.rate_at_least(int(sup["recovered"].sum()), len(sup), RECOVERY_LEVEL)
    where = f"at {rem[k20]:.1f}% remaining (round {k20}, the last that keeps the teacher's {c.teacher_fraction:.0%})"
    return [
        Claim(name="ticket-beats-dense",
              statement=f"For every N > {small}, IMP's ticket {where} has a lower test error than the dense network "
                        "(paper Fig. 6).",
              holds=_all_of(dense), statistic="mean log(error ticket / error dense) [95% CI] (problems): " + _describe(dense),
              rule=f"paired t 95% CI below 0 at every N > {small}; above 0 at any: NOT SUPPORTED"),
        Claim(name="ticket-beats-random-mask",
              statement=f"For every N > {small}, IMP's ticket {where} beats a random mask with as many weights trained "
                        "from the same start (the control).",
              holds=_all_of(rand), statistic="mean log(error ticket / error random mask): " + _describe(rand),
              rule=f"paired t 95% CI below 0 at every N > {small}; above 0 at any: NOT SUPPORTED"),
        oracle.claim("ticket-matches-oracle",
                     f"At N = {max(c.N_values)}, IMP's ticket {where} is as good as the oracle mask (the teacher's "
                     "support plus random weights up to the same count) trained from the same start.",
                     f"paired t 95% CI of the mean log error ratio inside {tuple(round(v, 3) for v in ORACLE_BAND)} "
                     "(a factor of 2)", "mean log(error ticket / error oracle)", ".2f"),
        Claim(name="error-rises-below-teacher-size",
              statement=f"Below the teacher's {c.teacher_fraction:.0%} the test error rises, for every N (a check: a mask "
                        "that cannot hold the teacher cannot fit it).",
              holds=_all_of(rises), statistic=f"mean log(error at {rem[-1]:.1f}% / at {rem[k20]:.1f}%): " + _describe(rises),
              rule="paired t 95% CI above 0 at every N"),
        high.claim("small-N-stays-high",
                   f"At N = {small} the test error stays high at every sparsity (paper Fig. 6).",
                   f"mean over problems of log10(lowest error over the rounds), t 95% CI above log10({HIGH_ERROR:g})",
                   "mean log10 lowest error", ".2f"),
        rec.claim("magnitude-pruning-finds-proper-student",
                  f"With enough samples (N = {max(c.support_N_values)}), pruning the dense AGD solution to "
                  f"1 - r*/d = {1 - c.teacher_fraction:.0%} keeps every teacher weight (Section 4.1).",
                  f"Wilson 95% CI of the exact recovery rate at or above {RECOVERY_LEVEL:g}", "recovery rate", ".2f"),
    ]


def cap_effect(result: IMPSyntheticResult) -> pd.DataFrame:
    """The cap check: per (N, round), the test error of the same problems' IMP with the main cap and the longer
    one (geometric means), their mean log ratio, and how many trainings each cap stopped."""
    c = result.config
    if result.imp_long.empty:
        return pd.DataFrame()
    key = ["N", "trial", "round"]
    both = result.imp_long.merge(result.imp, on=key, suffixes=("_long", ""))
    rows = []
    for (N, k), g in both.groupby(["N", "round"]):
        lr = np.log(g["test_error_long"].to_numpy()) - np.log(g["test_error"].to_numpy())
        rows.append(dict(N=N, round=k, remaining=g["remaining"].iloc[0], problems=len(g),
                         error_geomean=float(np.exp(np.log(g["test_error"]).mean())),
                         error_long_geomean=float(np.exp(np.log(g["test_error_long"]).mean())),
                         mean_log_ratio=float(lr.mean()),
                         at_cap=int((g["status"] == "max_iter").sum()),
                         at_long_cap=int((g["status_long"] == "max_iter").sum())))
    out = pd.DataFrame(rows).set_index(["N", "round"])
    out.attrs["caps"] = (c.max_iter, c.long_max_iter)
    return out


def control_summary(result: IMPSyntheticResult) -> pd.DataFrame:
    """Per (N, round, kind): the geometric mean test error with its t 95% interval over problems, and the
    teacher weights the mask keeps; kind is the IMP ticket or one of the two controls."""
    imp = result.imp.assign(kind="imp ticket")
    ctl = result.controls.assign(kind=result.controls["control"] + " mask")
    rows = []
    for (N, k, kind), g in pd.concat([imp, ctl]).groupby(["N", "round", "kind"]):
        est, lo, hi = rules.mean_interval(np.log10(g["test_error"].to_numpy()))
        rows.append(dict(N=N, round=k, kind=kind, remaining=g["remaining"].iloc[0], error_geomean=10**est,
                         error_low=10**lo, error_high=10**hi, teacher_kept=g["teacher_kept"].mean(),
                         at_cap=int((g["status"] == "max_iter").sum()), problems=len(g)))
    return pd.DataFrame(rows).set_index(["N", "round", "kind"])


def plot_figure6(result: IMPSyntheticResult):
    """(a) IMP's test error against remaining % per N (geometric mean, 95% band over problems); (b) IMP against
    the random and oracle masks at the two largest N; (c) teacher weights kept by IMP's and the random masks."""
    c = result.config
    s = control_summary(result).reset_index()
    colors = sequential_colors(len(c.N_values))
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(16, 4.6))
    for color, N in zip(colors, c.N_values):
        g = s[(s["N"] == N) & (s["kind"] == "imp ticket")]
        ax_a.plot(g["remaining"], g["error_geomean"], marker="o", ms=3.5, color=color, label=f"N = {N}")
        ax_a.fill_between(g["remaining"], g["error_low"], g["error_high"], color=color, alpha=0.2, linewidth=0)
        ax_c.plot(g["remaining"], g["teacher_kept"] * 100, marker="o", ms=3.5, color=color, label=f"IMP, N = {N}")
    r = s[(s["kind"] == "random mask") & (s["N"] == max(c.N_values))]
    ax_c.plot(r["remaining"], r["teacher_kept"] * 100, color="0.3", ls=":", label="random mask")
    styles = {"imp ticket": ("-", "o"), "random mask": (":", "x"), "oracle mask": ("--", "s")}
    for color, N in zip(colors[-2:], c.N_values[-2:]):
        for kind, (ls, marker) in styles.items():
            g = s[(s["N"] == N) & (s["kind"] == kind)]
            ax_b.plot(g["remaining"], g["error_geomean"], ls=ls, marker=marker, ms=3.5, color=color,
                      label=f"{kind}, N = {N}")
            ax_b.fill_between(g["remaining"], g["error_low"], g["error_high"], color=color, alpha=0.12, linewidth=0)
    for ax in (ax_a, ax_b, ax_c):
        ax.axvline(c.teacher_fraction * 100, color="0.3", ls="--", lw=1)
        ax.set_xlim(102, 0)
        ax.set_xlabel("remaining weights (% of the dense network)")
    for ax in (ax_a, ax_b):
        ax.set_yscale("log")
        ax.set_ylabel(r"test error (MSE / $E_y^2$)")
    ax_a.set_title("(a) IMP tickets (geometric mean, 95% band)", loc="left")
    ax_b.set_title("(b) ticket vs random and oracle masks", loc="left")
    ax_a.legend(fontsize=8)
    ax_b.legend(fontsize=7)
    ax_c.set_ylabel("teacher weights kept by the mask (%)")
    ax_c.set_title(f"(c) teacher weights in the mask (r*/d = {c.teacher_fraction:.0%})", loc="left")
    ax_c.set_ylim(-2, 102)
    ax_c.legend(fontsize=7)
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


CHAPTER = ChapterSpec("imp_synthetic", "Lottery tickets on synthetic data: magnitude pruning and IMP", IMPConfig,
                      IMPSyntheticResult, run, check_claims, {"Fig. 6": plot_figure6, "support recovery": plot_support},
                      sweeps=sweeps)
