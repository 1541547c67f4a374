r"""The Initialization chapter: the tensor initialization of Lemma 1 at work.

Three experiments, all with the fourth-order moment (:mod:`winning_ticket.algorithms.tensor_init`):

* **error against N** (disjoint supports): the relative error
  :math:`\|W^{(0)} - W^*\|_F/\|W^*\|_F` and the subspace error of the :math:`\hat M_2` step;
  then AGD (the paper's :math:`\eta`, :math:`\beta`, success rule) on the first ``N_agd``
  samples from three starts on the same data: the tensor initialization, an independent
  random draw from the teacher's prior (Uniform[-0.5, 0.5] entries), and the paper's
  experimental start at relative distance :math:`\lambda = 0.5`;
* **error against r** at fixed :math:`N`;
* **overlapping supports** (the paper's random :math:`\Omega_j`): with and without the
  :math:`A_j`/:math:`\tilde\Sigma` correction of spec 3.4.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..experiments.validation import check_int
from ..algorithms.agd import SUCCESS_TOL, relative_error
from ..experiments.claims import Claim
from ..algorithms.engine import run_agd_batched
from ..algorithms.teacher_student import Problem, make_problem, starts_along
from ..experiments.seeding import numpy_rng, seed_sequence
from ..experiments.plotting import PALETTE, label_axes
from ..experiments.chapter import ChapterConfig, param, ChapterResult, ChapterSpec
from ..experiments.sweep import run_sweep
from ..algorithms.tensor_init import support_matrices, subspace_error, tensor_initialization

STARTS = ("tensor", "random", "lambda=0.5")


@dataclass(frozen=True)
class InitConfig(ChapterConfig):
    K: int = param(3, "hidden neurons", low=1)
    r: int = param(10, "weights per neuron (error against N)", low=1)
    N_values: tuple[int, ...] = param((100_000, 300_000, 1_000_000, 3_000_000), "samples of the moment estimates",
                                      low=30, item="N", min_len=2)
    r_values: tuple[int, ...] = param((5, 10, 20), "weights per neuron (error against r)", low=1, item="r",
                                      min_len=2)
    N_r: int = param(1_000_000, "samples for the error against r", low=1)
    d_overlap: int = param(40, "input dimension with overlapping supports", low="r")
    trials: int = param(20, "independent problems per cell", low=1)
    N_agd: int = param(1000, "samples of the AGD runs from each start", low=1)
    eta: float = param(0.5, "step size η", low=0.0, low_open=True)
    beta: float = param(0.2, "momentum β", low=0.0, high=1.0, high_open=True)
    seed: int = param(2021, "base seed of every random stream", low=0)
    profile: str = "custom"

    PROFILES: ClassVar[Mapping[str, Mapping[str, Any]]] = {
        "smoke": dict(N_values=(10_000, 400_000), r_values=(5, 10), N_r=100_000, trials=3, N_agd=500),
        "book": dict(N_values=(30_000, 100_000, 300_000, 1_000_000), N_r=300_000, trials=8),
    }

    def validate(self) -> None:
        for N in self.N_values:
            check_int("N", N, max(self.N_agd, 30))


def _init_row(p: Problem, ss, correct: bool = True) -> tuple[dict, np.ndarray]:
    res = tensor_initialization(p.X, p.y, p.omega, seed=seed_sequence(ss, 9), correct_overlaps=correct)
    A, _ = support_matrices(p.omega)
    C = np.einsum("jab,bj->aj", A, p.w_star)
    return dict(init_error=relative_error(res.W0, p.w_star), subspace_error=subspace_error(res.V, C),
                cp_residual=res.cp_residual), res.W0


def n_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """Tensor initialization at one N (disjoint supports), then AGD from three starts."""
    K, r, N = params["K"], params["r"], params["N"]
    rows, problems, starts = [], [], []
    for ss, t in zip(seeds, trials):
        p = make_problem(N, K * r, K, r, 0.0, seed_sequence(ss, 0), disjoint=True)
        row, W0 = _init_row(p, ss)
        rows.append(dict(N=N, r=r, trial=t, **row))
        n = params["N_agd"]
        sub = Problem(X=p.X[:n], y=p.y[:n], omega=p.omega, w_star=p.w_star)
        rand = numpy_rng(ss, 3).uniform(-0.5, 0.5, size=p.w_star.shape)
        starts.append(np.stack([W0, rand, starts_along(p.w_star, [0.5], seed_sequence(ss, 4))[0]]))
        problems.append(sub)
    res = run_agd_batched(problems, np.stack(starts), params["eta"], params["beta"], record_history=False,
                          progress=False, success_stop=SUCCESS_TOL)
    for b, row in enumerate(rows):
        for s, name in enumerate(STARTS):
            row[f"agd_success_{name}"] = bool(res.success[b, s])
            row[f"agd_iterations_{name}"] = int(res.iterations[b, s])
    return rows


def r_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """Tensor initialization at one r and the fixed N (disjoint supports)."""
    K, r, N = params["K"], params["r"], params["N"]
    rows = []
    for ss, t in zip(seeds, trials):
        p = make_problem(N, K * r, K, r, 0.0, seed_sequence(ss, 0), disjoint=True)
        rows.append(dict(N=N, r=r, trial=t, **_init_row(p, ss)[0]))
    return rows


def overlap_task(params: Mapping[str, Any], seeds: list, trials: list[int]) -> list[dict]:
    """The paper's random supports: the initialization with and without the overlap correction."""
    K, r, N, d = params["K"], params["r"], params["N"], params["d"]
    rows = []
    for ss, t in zip(seeds, trials):
        p = make_problem(N, d, K, r, 0.0, seed_sequence(ss, 0))
        for correct in (True, False):
            rows.append(dict(N=N, r=r, d=d, trial=t, corrected=correct, **_init_row(p, ss, correct)[0]))
    return rows


@dataclass(kw_only=True)
class InitResult(ChapterResult):
    """Errors against N (``by_n``), against r (``by_r``) and with overlapping supports (``overlap``), one row per run."""

    TABLES: ClassVar[tuple[str, ...]] = ("by_n", "by_r", "overlap")
    config: InitConfig
    by_n: pd.DataFrame
    by_r: pd.DataFrame
    overlap: pd.DataFrame


def run(config: InitConfig, *, executor: Executor | None = None, cache_dir=None, progress: bool | None = None) -> InitResult:
    """Run the three sweeps: error against N (with AGD from each start), against r, with overlapping supports."""
    c = config
    kw = dict(seed=c.seed, executor=executor, cache_dir=cache_dir, progress=progress)
    by_n = run_sweep(n_task, [dict(K=c.K, r=c.r, N=N, N_agd=c.N_agd, eta=c.eta, beta=c.beta) for N in c.N_values],
                     c.trials, name=f"init-n-{c.profile}", **kw)
    by_r = run_sweep(r_task, [dict(K=c.K, r=r, N=c.N_r) for r in c.r_values], c.trials,
                     name=f"init-r-{c.profile}", **kw)
    overlap = run_sweep(overlap_task, [dict(K=c.K, r=c.r, N=c.N_r, d=c.d_overlap)], c.trials,
                        name=f"init-overlap-{c.profile}", **kw)
    return InitResult(config=c, by_n=by_n.runs, by_r=by_r.runs, overlap=overlap.runs,
                      seconds=by_n.seconds + by_r.seconds + overlap.seconds)


def n_summary(result: InitResult) -> pd.DataFrame:
    """Per N: median/quartiles of the initialization error, subspace error, AGD success rate per start."""
    g = result.by_n.groupby("N")
    out = pd.DataFrame({
        "init_error_median": g["init_error"].median(),
        "init_error_q25": g["init_error"].quantile(0.25),
        "init_error_q75": g["init_error"].quantile(0.75),
        "subspace_error_median": g["subspace_error"].median(),
    })
    for name in STARTS:
        out[f"agd_success_{name}"] = g[f"agd_success_{name}"].mean()
    out["runs"] = g.size()
    return out


def r_summary(result: InitResult) -> pd.DataFrame:
    """Per r: median and quartiles of the initialization error, median subspace error."""
    g = result.by_r.groupby("r")
    return pd.DataFrame({"init_error_median": g["init_error"].median(),
                         "init_error_q25": g["init_error"].quantile(0.25),
                         "init_error_q75": g["init_error"].quantile(0.75),
                         "subspace_error_median": g["subspace_error"].median(), "runs": g.size()})


def overlap_summary(result: InitResult) -> pd.DataFrame:
    """Overlapping supports, with and without the correction: median errors."""
    g = result.overlap.groupby("corrected")
    return pd.DataFrame({"init_error_median": g["init_error"].median(),
                         "subspace_error_median": g["subspace_error"].median(), "runs": g.size()})


def check_claims(result: InitResult) -> list[Claim]:
    """The claims about the tensor initialization of Lemma 1, decided from the runs.

    * ``error-falls-with-N``: the ratio of the median error at the largest N to the smallest N
      is below 0.7 and the median subspace error decreases with every step in N.
    * ``lands-in-convergence-region``: at least 90% of the AGD runs from the tensor
      initialization at the largest N succeed.
    * ``error-grows-with-r``: the median error at the largest r exceeds the one at the smallest r.
    * ``overlap-correction-needed``: with overlapping supports the corrected median error is
      the smaller.
    """
    c = result.config
    s = n_summary(result)
    rs = r_summary(result)
    ov = overlap_summary(result)
    lo, hi = min(c.N_values), max(c.N_values)
    ratio = s.loc[hi, "init_error_median"] / s.loc[lo, "init_error_median"]
    success = s.loc[hi, "agd_success_tensor"]
    return [
        Claim(
            name="error-falls-with-N",
            statement="The initialization error falls as the number of samples grows.",
            holds=bool(ratio < 0.7 and s["subspace_error_median"].is_monotonic_decreasing),
            statistic=f"median error at N = {hi:,} / at N = {lo:,}: {ratio:.2f}; median subspace error by N: "
                      + ", ".join(f"{v:.3f}" for v in s["subspace_error_median"]),
            rule="the ratio is below 0.7 and the median subspace error decreases with every step in N",
        ),
        Claim(
            name="lands-in-convergence-region",
            statement="With enough samples the initialization lies where AGD converges (Lemma 1 + Theorem 2).",
            holds=bool(success >= 0.9),
            statistic=f"AGD success rate from the tensor initialization at N = {hi:,}: {success:.2f} "
                      f"(median initialization error {s.loc[hi, 'init_error_median']:.2f})",
            rule="at least 90% of the runs from the tensor initialization at the largest N succeed",
        ),
        Claim(
            name="error-grows-with-r",
            statement=f"At fixed N = {c.N_r:,} the initialization error grows with r (the weak fourth-order signal).",
            holds=bool(rs["init_error_median"].iloc[-1] > rs["init_error_median"].iloc[0]),
            statistic="median error by r: " + ", ".join(f"{r}: {v:.2f}" for r, v in rs["init_error_median"].items()),
            rule="the median error at the largest r exceeds the one at the smallest r",
        ),
        Claim(
            name="overlap-correction-needed",
            statement="With the paper's overlapping supports the plain x-tilde recipe is biased; the A_j correction helps.",
            holds=bool(ov.loc[True, "init_error_median"] < ov.loc[False, "init_error_median"]),
            statistic=f"median error with correction {ov.loc[True, 'init_error_median']:.2f}, "
                      f"without {ov.loc[False, 'init_error_median']:.2f}",
            rule="the corrected median error is the smaller",
        ),
    ]


def plot_initialization(result: InitResult):
    """(a) initialization and subspace error against N; (b) AGD success rate per start; (c) error against r."""
    c = result.config
    s = n_summary(result)
    rs = r_summary(result)
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(13, 3.8))
    ax_a.scatter(result.by_n["N"], result.by_n["init_error"], s=10, alpha=0.35, color=PALETTE[0], linewidths=0)
    ax_a.plot(s.index, s["init_error_median"], marker="o", color=PALETTE[0], label=r"$\|W^{(0)}-W^*\|_F/\|W^*\|_F$")
    ax_a.plot(s.index, s["subspace_error_median"], marker="s", color=PALETTE[1], label=r"subspace error $\|P_V-P_C\|_2$")
    ax_a.set_xscale("log")
    ax_a.set_yscale("log")
    label_axes(ax_a, "samples N", "error (median; dots: trials)", f"(a) K = {c.K}, r = {c.r}, disjoint supports", legend=True)
    styles = [("o", 10, "-"), ("^", 7, "--"), ("s", 4, ":")]  # sizes differ so that coinciding curves stay visible
    for i, name in enumerate(STARTS):
        marker, size, ls = styles[i]
        ax_b.plot(s.index, s[f"agd_success_{name}"], marker=marker, ms=size, ls=ls, color=PALETTE[i + 2],
                  label=f"start: {name}")
    ax_b.set_xscale("log")
    ax_b.set_ylim(-0.03, 1.03)
    label_axes(ax_b, "samples N used by the initialization", f"AGD success rate (N_agd = {c.N_agd})", "(b) does AGD converge from the start?", legend=True)
    ax_c.scatter(result.by_r["r"], result.by_r["init_error"], s=10, alpha=0.35, color=PALETTE[0], linewidths=0)
    ax_c.plot(rs.index, rs["init_error_median"], marker="o", color=PALETTE[0])
    ax_c.set_yscale("log")
    label_axes(ax_c, "non-pruned weights per neuron r", "relative initialization error", f"(c) against r at N = {c.N_r:,}")
    return fig


CHAPTER = ChapterSpec("initialization", "Initialization: the tensor method of Lemma 1", InitConfig, InitResult, run, check_claims,
                      {"Lemma 1": plot_initialization})
