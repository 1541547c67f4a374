import dataclasses

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from winning_ticket.chapters import convergence as cv
from winning_ticket import claims_table, verdict_lines
from winning_ticket.experiments.profiles import current_profile


@pytest.fixture(scope="module")
def tiny():
    return cv.run(cv.ConvergenceConfig.for_profile("smoke"), progress=False)


def test_runs_table(tiny):
    runs = tiny.runs
    assert len(runs) == 4 * 2 * 2
    assert set(runs["method"]) == {cv.AGD, cv.GD}
    assert runs["success"].all() and (runs["status"] == "converged").all()
    h = tiny.history(10)
    assert h.ndim == 1 and h[0] == pytest.approx(0.5) and h[-1] < 1e-4
    assert tiny.runs["history"].notna().sum() == 2 * len(tiny.config.r_values)  # trial 0, start 0, AGD and GD
    assert tiny.flops > 0 and tiny.seconds > 0


def test_claims_need_evidence():
    # two problems per r over a narrow r range: the slope's bootstrap interval includes 0
    config = cv.ConvergenceConfig(N=500, d=40, K=3, r_values=(4, 8, 16), trials=2, starts=1, seed=3)
    claims = cv.check_claims(cv.run(config, progress=False))
    assert claims[1].verdict == "INCONCLUSIVE" and "overlaps the boundary 0" in claims[1].statistic


def test_claims_hold_on_a_clean_run(tiny):
    claims = cv.check_claims(tiny)
    assert [c.holds for c in claims] == [True, True, True]
    assert verdict_lines(claims).splitlines()[0] == "linear-convergence: SUPPORTED"
    assert list(claims_table(claims).columns) == ["claim", "verdict", "statistic", "decision rule"]


def test_claims_can_fail(tiny):
    # swap the method labels: now "AGD" is the slower method and the third claim must fail
    swapped = tiny.runs.copy()
    swapped["method"] = swapped["method"].map({cv.AGD: cv.GD, cv.GD: cv.AGD})
    fake = dataclasses.replace(tiny, runs=swapped)
    assert [c.holds for c in cv.check_claims(fake)] == [True, True, False]
    # rates that fall with r contradict the second claim
    falling = tiny.runs.copy()
    falling["rate"] = 2 - falling["rate"]
    assert cv.check_claims(dataclasses.replace(tiny, runs=falling))[1].verdict == "NOT SUPPORTED"
    # a run that never reaches the fit window breaks the first
    stalled = tiny.runs.copy()
    stalled.loc[0, ["rate", "r2"]] = np.nan
    assert cv.check_claims(dataclasses.replace(tiny, runs=stalled))[0].verdict == "INCONCLUSIVE"  # budget, not data
    # a run whose log-error is not a line contradicts the first
    curved = tiny.runs.copy()
    curved.loc[0, "r2"] = 0.9
    assert cv.check_claims(dataclasses.replace(tiny, runs=curved))[0].verdict == "NOT SUPPORTED"


def test_speedup_is_close_to_the_heavy_ball_limit(tiny):
    s = cv.speedup(tiny)
    assert (s["speedup_mean"] > 1).all()
    assert np.allclose(s["speedup_mean"], 1 / (1 - 0.2), rtol=0.05)


def test_seeds_are_keyed_by_r_and_trial():
    a = cv.run(cv.ConvergenceConfig(N=300, d=30, K=2, r_values=(4, 6), trials=1, seed=1), progress=False)
    b = cv.run(cv.ConvergenceConfig(N=300, d=30, K=2, r_values=(6,), trials=2, seed=1), progress=False)
    row_a = a.runs[(a.runs.r == 6) & (a.runs.trial == 0)].reset_index(drop=True)
    row_b = b.runs[(b.runs.r == 6) & (b.runs.trial == 0)].reset_index(drop=True)
    assert row_a[["iterations", "final_error", "rate"]].equals(row_b[["iterations", "final_error", "rate"]])


def test_figure(tiny):
    fig = cv.plot_figure3(tiny)
    ax_a, ax_b = fig.axes
    assert ax_a.get_yscale() == "log"
    assert "iteration" in ax_a.get_xlabel() and "relative error" in ax_a.get_ylabel()
    assert "sqrt" in ax_b.get_xlabel() and "rate" in ax_b.get_ylabel()
    assert len(ax_a.get_lines()) >= 3


def test_profiles(monkeypatch):
    monkeypatch.delenv("WT_PROFILE", raising=False)
    assert current_profile() == "book"
    monkeypatch.setenv("WT_PROFILE", "Smoke")
    assert current_profile() == "smoke"
    assert cv.ConvergenceConfig.for_profile().profile == "smoke"
    paper = cv.ConvergenceConfig.for_profile("paper")
    assert (paper.N, paper.d, paper.K, paper.eta, paper.beta) == (3000, 300, 5, 0.5, 0.2)
    assert paper.trials >= 20 and max(paper.r_values) == 300
    monkeypatch.setenv("WT_PROFILE", "huge")
    with pytest.raises(ValueError, match="WT_PROFILE"):
        current_profile()


def test_config_validation():
    with pytest.raises(ValueError, match="^r "):
        cv.ConvergenceConfig(d=10, r_values=(5, 20))
    with pytest.raises(ValueError, match="^trials"):
        cv.ConvergenceConfig(trials=0)
    with pytest.raises(ValueError, match="^lam"):
        cv.ConvergenceConfig(lam=-1)
    with pytest.raises(ValueError, match="r_values"):
        cv.ConvergenceConfig(r_values=())


def test_claims_are_inconclusive_when_no_run_reaches_the_fit_window():
    short = cv.run(cv.ConvergenceConfig(N=300, d=30, K=2, r_values=(4, 6), trials=2, max_iter=3), progress=False)
    claims = cv.check_claims(short)
    assert [c.verdict for c in claims] == ["INCONCLUSIVE"] * 3
    assert "none of the" in claims[0].statistic
    assert cv.speedup(short).empty


def test_a_diverged_run_has_no_rate():
    res = cv.run(cv.ConvergenceConfig(N=300, d=30, K=2, r_values=(4,), trials=1, eta=500.0), progress=False)
    assert (res.runs["status"] == "diverged").any()
    assert res.runs.loc[res.runs["status"] == "diverged", "rate"].isna().all()
    assert cv.check_claims(res)[0].verdict == "NOT SUPPORTED"
