"""The Landscape chapter (Fig. 2, Theorem 1) on its smoke profile, and its rules on tables where the claims fail."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest
import torch

from winning_ticket.algorithms.agd import run_agd
from winning_ticket.algorithms.engine import batched_gradient, stack_problems
from winning_ticket.algorithms.teacher_student import make_problem, starts_along
from winning_ticket.chapters import landscape as ls
from winning_ticket.experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from winning_ticket.experiments.seeding import seed_sequence


@pytest.fixture(scope="module")
def land():
    return ls.run(ls.LandscapeConfig.for_profile("smoke"), progress=False)


def _params(c, r=20, lams=(0.5, 2.0), eta=5.0):
    return dict(arm="fixed N", N=c.N, d=c.d, K=c.K, r=r, lams=lams, eta=eta, beta=c.beta, max_iter=c.max_iter,
                n_fresh=c.n_fresh, early_success=True)


def test_landscape_task_equals_reference_runs():
    """One cell of the map, recomputed with the plain numpy reference (full protocol, no early stop)."""
    c = ls.LandscapeConfig.for_profile("smoke")
    for eta in (0.5, 5.0):
        params = _params(c, eta=eta)
        ss = seed_sequence(c.seed, 1, 2)
        rows = ls.landscape_task(params, [ss], [0])
        p = make_problem(c.N, c.d, c.K, 20, 0.0, seed_sequence(ss, 0))
        starts = starts_along(p.w_star, [0.5, 2.0], seed_sequence(ss, 1))
        for row, W0 in zip(rows, starts):
            ref = run_agd(p.sub_inputs(), p.y, p.w_star, W0, eta, c.beta, max_iter=c.max_iter)
            assert row["success"] == ref.success
            if row["success"]:
                assert row["train_risk"] < 1e-6 and row["fresh_risk"] < 1e-6
            assert row["train_risk"] >= 0 and row["fresh_risk"] >= 0 and row["grad_ratio"] >= 0


def test_secant_curvature_at_w_star_is_the_limit_along_the_direction():
    c = ls.LandscapeConfig.for_profile("smoke")
    params = dict(arm="fixed N", N=c.N, d=c.d, K=c.K, r=20, lams=(1e-6, 0.5))
    ss = seed_sequence(c.seed, 3)
    rows = ls.curvature_task(params, [ss], [0])
    assert [r["lam"] for r in rows] == [0.0, 1e-6, 0.5]
    assert rows[0]["secant"] == pytest.approx(rows[1]["secant"], rel=1e-3)
    assert all(0 < r["min_eig"] <= r["secant"] <= r["max_eig"] for r in rows)  # a Rayleigh quotient at W*
    # the secant curvature is <grad f(W), W - W*> / |W - W*|^2, recomputed here
    p = make_problem(c.N, c.d, c.K, 20, 0.0, seed_sequence(ss, 0))
    W = starts_along(p.w_star, [0.5], seed_sequence(ss, 1))[0]
    XT, y, _ = stack_problems([p], "cpu")
    g = batched_gradient(XT, y, torch.as_tensor(W[None, None]))[0, 0].numpy()
    assert rows[2]["secant"] == pytest.approx(float((g * (W - p.w_star)).sum() / ((W - p.w_star) ** 2).sum()), rel=1e-12)


def test_landscape_tables_and_claims(land):
    assert set(land.runs["arm"]) == {"fixed N"} and set(land.ratio_runs["arm"]) == {"fixed ratio"}
    c = land.config
    assert (land.ratio_runs["N"] == [c.ratio_N(r) for r in land.ratio_runs["r"]]).all()
    # the paper-step arm runs the fixed-N arm's problems from the same starts: same problem, same distance
    both = land.paper_runs.merge(land.runs, on=["r", "lam", "trial"], suffixes=("_p", "_m"))
    assert len(both) == len(land.paper_runs)
    m = ls.success_map(land.all_runs())
    assert ((m["rate_low"] <= m["rate"]) & (m["rate"] <= m["rate_high"])).all()
    b = ls.problem_boundaries(land.all_runs())
    assert len(b) == c.trials * (len(c.r_values) + len(c.ratio_r_values)) + c.paper_trials * len(c.paper_r_values)
    rad = ls.curvature_radii(land.curvature)
    assert (rad["min_eig_at_star"] > 0).all()
    names = [cl.name for cl in ls.check_claims(land)]
    assert names == ["boundary-falls-with-sqrt-r", "boundary-linear-in-sqrt-r", "boundary-falls-with-sqrt-r-paper-step",
                     "boundary-falls-with-sqrt-r-at-fixed-ratio", "curvature-radius-falls-with-sqrt-r",
                     "strong-convexity-at-W*-falls-at-fixed-N", "strong-convexity-at-W*-set-by-sample-ratio",
                     "failures-are-overfitting", "paper-step-failures-are-the-cap"]
    assert set(ls.failure_diagnosis(land)["kind"]) <= {"overfitting valley", "still descending", "stationary", "other"}
    assert ls.plot_figure2(land).axes[0].get_xlabel() == r"$\sqrt{r}$"


def test_boundary_is_a_prefix_of_successes():
    rows = []
    for r, ok in ((1, [True, True, False]), (4, [True, False, True]), (9, [True, True, True]), (16, [False, True, True])):
        rows += [dict(arm="fixed N", N=10, r=r, lam=lam, trial=0, success=s) for lam, s in zip((0.5, 1.0, 2.0), ok)]
    b = ls.problem_boundaries(pd.DataFrame(rows)).set_index("r")
    assert list(b["lam_star"]) == [1.0, 0.5, 2.0, 0.0]  # a success beyond the first failure does not count
    assert list(b["status"]) == ["ok", "ok", "above-grid", "below-grid"]


def _per_problem(values_by_r, status="ok", arm="fixed N"):
    return pd.DataFrame([dict(arm=arm, N=100, r=r, sqrt_r=np.sqrt(r), trial=t, lam_star=v, radius=v, status=status)
                         for r, vals in values_by_r.items() for t, v in enumerate(vals)])


def test_falls_rule_supports_refutes_and_abstains():
    rng = np.random.default_rng(0)
    r_values = (25, 100, 225, 400)
    falling = _per_problem({r: 4 - 0.15 * np.sqrt(r) + 0.05 * rng.standard_normal(5) for r in r_values})
    rising = _per_problem({r: 1 + 0.15 * np.sqrt(r) + 0.05 * rng.standard_normal(5) for r in r_values})
    flat = _per_problem({r: 2 + 0.5 * rng.standard_normal(5) for r in r_values})
    assert ls.falls_with_sqrt_r(falling, "lam_star", seed=0).verdict == SUPPORTED
    assert ls.falls_with_sqrt_r(rising, "lam_star", seed=0).verdict == NOT_SUPPORTED
    assert ls.falls_with_sqrt_r(flat, "lam_star", seed=0).verdict == INCONCLUSIVE
    few = _per_problem({25: [3.0, 2.9], 400: [0.5]})
    assert ls.falls_with_sqrt_r(few, "lam_star", seed=0).verdict == INCONCLUSIVE  # 3 problems
    censored = falling.assign(status="above-grid")
    d = ls.falls_with_sqrt_r(censored, "lam_star", seed=0)
    assert d.verdict == INCONCLUSIVE and "censors" in d.reason


def test_linear_rule_supports_refutes_and_abstains():
    rng = np.random.default_rng(1)
    r_values = (25, 100, 225, 400, 625)
    linear = _per_problem({r: 3 - 0.1 * np.sqrt(r) + 0.02 * rng.standard_normal(6) for r in r_values})
    assert ls.linear_in_sqrt_r(linear, seed=0).verdict == SUPPORTED
    convex = _per_problem({r: 40 / r + 0.001 * rng.standard_normal(6) for r in r_values})  # like 1/r: strongly curved
    assert ls.linear_in_sqrt_r(convex, seed=0).verdict == NOT_SUPPORTED
    two = _per_problem({r: [3 - 0.1 * np.sqrt(r)] * 6 for r in (25, 100)} | {400: [8.0] * 6})
    two.loc[two["r"] == 400, "status"] = "above-grid"
    assert ls.linear_in_sqrt_r(two, seed=0).verdict == INCONCLUSIVE


def _result(runs_fail_kind: str, rescued: bool, trials: int = 6):
    """A synthetic result: two r, three λ, failures at the largest λ of the larger r."""
    c = ls.LandscapeConfig(N=100, d=20, K=2, r_values=(4, 9), lams=(0.5, 1.0, 2.0), trials=trials,
                           ratio_r_values=(4, 9), paper_r_values=(9,), paper_lams=(0.5, 2.0), paper_trials=trials)
    def rows(arm, r_values, lams, eta, ntr, N):
        out = []
        for r in r_values:
            for t in range(ntr):
                for lam in lams:
                    fail = r == 9 and lam == 2.0
                    train, fresh = (1e-4, 0.2) if runs_fail_kind == "overfit" else (0.3, 0.31)
                    out.append(dict(arm=arm, N=N(r), r=r, sqrt_r=np.sqrt(r), lam=lam, eta=eta, trial=t,
                                    success=(not fail) or (arm == "fixed N" and rescued), status="max_iter",
                                    final_error=0.5 if fail else 0.0, iterations=10, train_risk=train if fail else 0.0,
                                    fresh_risk=fresh if fail else 0.0, grad_ratio=0.5))
        return pd.DataFrame(out)
    curv = pd.DataFrame([dict(arm=a, N=100, r=r, sqrt_r=np.sqrt(r), lam=lam, trial=t, min_eig=1.0 / r, max_eig=1.0,
                              secant=0.5) for a in ("fixed N", "fixed ratio") for r in (4, 9) for t in range(trials)
                         for lam in (0.0, 0.5, 1.0, 2.0)])
    return ls.LandscapeResult(config=c, runs=rows("fixed N", (4, 9), c.lams, 5.0, trials, lambda r: 100),
                              ratio_runs=rows("fixed ratio", (4, 9), c.lams, 5.0, trials, lambda r: 3 * r * 2),
                              paper_runs=rows("paper step", (9,), c.paper_lams, 0.5, trials, lambda r: 100),
                              curvature=curv)


def test_failure_claims_refute_and_abstain():
    verdicts = lambda res: {cl.name: cl.verdict for cl in ls.check_claims(res)}  # noqa: E731
    v = verdicts(_result("overfit", rescued=True))
    assert v["failures-are-overfitting"] == SUPPORTED and v["paper-step-failures-are-the-cap"] == SUPPORTED
    v = verdicts(_result("stationary", rescued=False))
    assert v["failures-are-overfitting"] == NOT_SUPPORTED and v["paper-step-failures-are-the-cap"] == NOT_SUPPORTED
    # min_eig = 1/r at a fixed ratio: a log-log slope of -1, outside the band
    assert v["strong-convexity-at-W*-set-by-sample-ratio"] == NOT_SUPPORTED
    v = verdicts(_result("overfit", rescued=True, trials=2))
    assert v["failures-are-overfitting"] == INCONCLUSIVE and v["paper-step-failures-are-the-cap"] == INCONCLUSIVE
