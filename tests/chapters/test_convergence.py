import dataclasses

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from winning_ticket.chapters import convergence as cv
from winning_ticket import claims_table, verdict_lines
from winning_ticket.experiments.profiles import current_profile

NAMES = ["linear-convergence", "rate-grows-with-sqrt-r", "rate-set-by-sample-ratio", "rate-matches-local-theory",
         "agd-is-gd-with-a-larger-step", "tuned-momentum-beats-tuned-gd", "momentum-gain-grows-like-sqrt-kappa"]


@pytest.fixture(scope="module")
def tiny():
    return cv.run(cv.ConvergenceConfig.for_profile("smoke"), progress=False)


def _verdicts(result):
    return dict(zip(NAMES, (c.verdict for c in cv.check_claims(result))))


def test_runs_tables(tiny):
    c = tiny.config
    assert len(tiny.runs) == len(c.r_values) * c.trials * len(cv.METHODS)
    assert len(tiny.ratio_runs) == len(c.ratio_r_values) * c.trials * len(cv.METHODS)
    assert set(tiny.runs["method"]) == set(cv.METHODS)
    assert tiny.all_runs()["success"].all() and (tiny.all_runs()["status"] == "converged").all()
    assert (tiny.ratio_runs["N"] == (c.ratio * tiny.ratio_runs["r"] * c.K).round()).all()
    # the tuned steps come from the Hessian at W*: GD's is 2/(L + mu), below the stability limit 2/L
    tuned = tiny.runs[tiny.runs["method"] == cv.GD_TUNED]
    assert np.allclose(tuned["eta"], 2 / (tuned["L"] + tuned["mu"])) and (tuned["eta"] < 2 / tuned["L"]).all()
    h = tiny.history(10)
    assert h.ndim == 1 and h[0] == pytest.approx(0.5) and h[-1] < 1e-4
    assert tiny.runs["history"].notna().sum() == len(cv.METHODS) * len(c.r_values)  # trial 0, every method
    assert tiny.flops > 0 and tiny.seconds > 0


def test_measured_rates_follow_the_local_theory(tiny):
    ratio = cv.theory_ratios(tiny.all_runs())["ratio"]
    assert ratio.between(0.85, 1.15).all()
    # tuned momentum converges in far fewer iterations than the paper's step
    it = tiny.runs.groupby("method")["iterations"].median()
    assert it[cv.HB_TUNED] < it[cv.GD_TUNED] < it[cv.AGD] < it[cv.GD]


def test_claims_on_a_clean_run(tiny):
    claims = cv.check_claims(tiny)
    assert [c.name for c in claims] == NAMES
    v = _verdicts(tiny)
    assert v["linear-convergence"] == v["rate-grows-with-sqrt-r"] == "SUPPORTED"
    assert v["agd-is-gd-with-a-larger-step"] == v["rate-matches-local-theory"] == "SUPPORTED"
    assert v["tuned-momentum-beats-tuned-gd"] == "INCONCLUSIVE"  # two problems per r: too few
    assert "the rule needs at least 5" in claims[5].statistic
    assert verdict_lines(claims).splitlines()[0] == "linear-convergence: SUPPORTED"
    assert list(claims_table(claims).columns) == ["claim", "verdict", "statistic", "decision rule"]


def _replicate(result, copies=3):
    """The runs repeated as independent problems (new trial numbers), to give the rules enough units."""
    def rep(df):
        return pd.concat([df.assign(trial=df["trial"] + k * 100) for k in range(copies)], ignore_index=True)
    return dataclasses.replace(result, runs=rep(result.runs), ratio_runs=rep(result.ratio_runs))


def test_claims_can_fail(tiny):
    big = _replicate(tiny)
    assert _verdicts(big)["tuned-momentum-beats-tuned-gd"] == "SUPPORTED"
    # rates that fall with r contradict the growth claim
    falling = big.runs.copy()
    falling["rate"] = 2 - falling["rate"]
    assert _verdicts(dataclasses.replace(big, runs=falling))["rate-grows-with-sqrt-r"] == "NOT SUPPORTED"
    # a rate gap 1 - nu that falls like 1/r at a fixed ratio contradicts the sample-ratio claim
    steep = big.ratio_runs.copy()
    steep["rate"] = 1 - 0.05 / steep["r"]
    assert _verdicts(dataclasses.replace(big, ratio_runs=steep))["rate-set-by-sample-ratio"] == "NOT SUPPORTED"
    # rates twice as fast as the theory's contradict the local-theory check
    fast = big.runs.copy()
    fast["rate"] = 1 - 2 * (1 - fast["predicted_rate"])
    assert _verdicts(dataclasses.replace(big, runs=fast))["rate-matches-local-theory"] == "NOT SUPPORTED"
    # AGD exactly as fast as GD contradicts the heavy-ball identity
    same = big.runs.copy()
    gd = same[same["method"] == cv.GD].set_index(["arm", "r", "trial"])["rate"]
    is_agd = same["method"] == cv.AGD
    same.loc[is_agd, "rate"] = gd.loc[list(zip(same.loc[is_agd, "arm"], same.loc[is_agd, "r"], same.loc[is_agd, "trial"]))].to_numpy()
    assert _verdicts(dataclasses.replace(big, runs=same))["agd-is-gd-with-a-larger-step"] == "NOT SUPPORTED"
    # tuned heavy ball slower than tuned GD (labels swapped) contradicts the momentum claims
    swapped = big.runs.copy()
    swapped["method"] = swapped["method"].map({cv.GD_TUNED: cv.HB_TUNED, cv.HB_TUNED: cv.GD_TUNED}).fillna(swapped["method"])
    ratio_swapped = big.ratio_runs.copy()
    ratio_swapped["method"] = ratio_swapped["method"].map({cv.GD_TUNED: cv.HB_TUNED, cv.HB_TUNED: cv.GD_TUNED}).fillna(ratio_swapped["method"])
    v = _verdicts(dataclasses.replace(big, runs=swapped, ratio_runs=ratio_swapped))
    assert v["tuned-momentum-beats-tuned-gd"] == "NOT SUPPORTED"
    assert v["momentum-gain-grows-like-sqrt-kappa"] == "NOT SUPPORTED"
    # a heavy ball that diverges everywhere has gain 0
    div = big.runs.copy()
    hb = div["method"] == cv.HB_TUNED
    div.loc[hb, "status"], div.loc[hb, "rate"] = "diverged", np.nan
    assert _verdicts(dataclasses.replace(big, runs=div))["tuned-momentum-beats-tuned-gd"] == "NOT SUPPORTED"
    # a run whose log-error is not a line contradicts linear convergence; one that never reaches the window: budget
    curved = big.runs.copy()
    curved.loc[0, "r2"] = 0.9
    assert _verdicts(dataclasses.replace(big, runs=curved))["linear-convergence"] == "NOT SUPPORTED"
    stalled = big.runs.copy()
    stalled.loc[0, ["rate", "r2"]] = np.nan
    assert _verdicts(dataclasses.replace(big, runs=stalled))["linear-convergence"] == "INCONCLUSIVE"


def test_claims_are_inconclusive_on_noisy_or_thin_data(tiny):
    big = _replicate(tiny)
    rng = np.random.default_rng(1)
    flat = big.ratio_runs.copy()
    # a gap 1 - nu that does not depend on r: SUPPORTED with little spread, INCONCLUSIVE with a wide spread
    flat["rate"] = 1 - 0.01 * np.exp(0.02 * rng.standard_normal(len(flat)))
    assert _verdicts(dataclasses.replace(big, ratio_runs=flat))["rate-set-by-sample-ratio"] == "SUPPORTED"
    flat["rate"] = 1 - 0.01 * np.exp(1.5 * rng.standard_normal(len(flat)))
    assert _verdicts(dataclasses.replace(big, ratio_runs=flat))["rate-set-by-sample-ratio"] == "INCONCLUSIVE"
    # one value of r in the ratio arm: no slope at all
    one = big.ratio_runs[big.ratio_runs["r"] == big.ratio_runs["r"].min()]
    assert _verdicts(dataclasses.replace(big, ratio_runs=one))["rate-set-by-sample-ratio"] == "INCONCLUSIVE"


def test_the_checks_and_the_momentum_rules_are_inconclusive_on_straddling_data(tiny):
    big = _replicate(tiny)
    rng = np.random.default_rng(3)
    assert _verdicts(big)["momentum-gain-grows-like-sqrt-kappa"] == "SUPPORTED"
    # measured 1 - nu at 1.25 times the theory's, with spread: the interval straddles the band's edge
    edge = big.runs.copy()
    edge["rate"] = 1 - 1.25 * (1 - edge["predicted_rate"]) * np.exp(0.1 * rng.standard_normal(len(edge)))
    ratio_edge = big.ratio_runs.copy()
    ratio_edge["rate"] = 1 - 1.25 * (1 - ratio_edge["predicted_rate"]) * np.exp(0.1 * rng.standard_normal(len(ratio_edge)))
    v = _verdicts(dataclasses.replace(big, runs=edge, ratio_runs=ratio_edge))
    assert v["rate-matches-local-theory"] == "INCONCLUSIVE"
    # AGD's speed-up spread around the band's upper edge 1.3
    sp = big.runs.copy()
    gd = sp[sp["method"] == cv.GD].set_index(["arm", "r", "trial"])["rate"]
    is_agd = sp["method"] == cv.AGD
    keys = list(zip(sp.loc[is_agd, "arm"], sp.loc[is_agd, "r"], sp.loc[is_agd, "trial"]))
    factor = 1.3 * np.exp(0.1 * rng.standard_normal(int(is_agd.sum())))
    sp.loc[is_agd, "rate"] = 1 - factor * (1 - gd.loc[keys].to_numpy())
    assert _verdicts(dataclasses.replace(big, runs=sp))["agd-is-gd-with-a-larger-step"] == "INCONCLUSIVE"
    # heavy ball about as fast as tuned GD, with spread: the gain's interval straddles 1 at some r
    hb = big.runs.copy()
    tuned = hb[hb["method"] == cv.GD_TUNED].set_index(["arm", "r", "trial"])["rate"]
    is_hb = hb["method"] == cv.HB_TUNED
    keys = list(zip(hb.loc[is_hb, "arm"], hb.loc[is_hb, "r"], hb.loc[is_hb, "trial"]))
    hb.loc[is_hb, "rate"] = 1 - (1 - tuned.loc[keys].to_numpy()) * np.exp(0.5 * rng.standard_normal(int(is_hb.sum())))
    v = _verdicts(dataclasses.replace(big, runs=hb))
    assert v["tuned-momentum-beats-tuned-gd"] == "INCONCLUSIVE"
    # gains with a wide spread: the slope on kappa cannot be pinned inside [0.3, 0.7]
    assert v["momentum-gain-grows-like-sqrt-kappa"] in ("INCONCLUSIVE", "NOT SUPPORTED")
    wide = big.runs.copy()
    wide.loc[is_hb, "rate"] = 1 - (1 - wide.loc[is_hb, "rate"]) * np.exp(1.0 * rng.standard_normal(int(is_hb.sum())))
    ratio_wide = big.ratio_runs.copy()
    is_hb_r = ratio_wide["method"] == cv.HB_TUNED
    ratio_wide.loc[is_hb_r, "rate"] = 1 - (1 - ratio_wide.loc[is_hb_r, "rate"]) * np.exp(1.0 * rng.standard_normal(int(is_hb_r.sum())))
    assert _verdicts(dataclasses.replace(big, runs=wide, ratio_runs=ratio_wide))["momentum-gain-grows-like-sqrt-kappa"] == "INCONCLUSIVE"


def test_claims_need_evidence():
    # two problems per r over a narrow r range: the slope's bootstrap interval includes 0
    config = cv.ConvergenceConfig(N=500, d=40, K=3, r_values=(4, 8, 16), ratio_r_values=(4, 8), trials=2, seed=3)
    claims = cv.check_claims(cv.run(config, progress=False))
    assert claims[1].verdict == "INCONCLUSIVE" and "overlaps the boundary 0" in claims[1].statistic


def test_speedup_is_close_to_the_heavy_ball_limit(tiny):
    s = cv.speedup(tiny)
    assert (s["speedup_mean"] > 1).all()
    assert np.allclose(s["speedup_mean"], 1 / (1 - 0.2), rtol=0.02)


def test_momentum_table_follows_the_quadratic_theory(tiny):
    m = cv.momentum_table(tiny)
    assert (m["gain"] > 1).all()
    assert np.allclose(m["gain"], m["theory_gain"], rtol=0.2)


def test_seeds_are_keyed_by_N_r_and_trial():
    common = dict(N=300, d=30, K=2, ratio_r_values=(4, 6), seed=1)
    a = cv.run(cv.ConvergenceConfig(r_values=(4, 6), trials=1, **common), progress=False)
    b = cv.run(cv.ConvergenceConfig(r_values=(6,), trials=2, **common), progress=False)
    cols = ["method", "iterations", "final_error", "rate", "mu"]
    row_a = a.runs[(a.runs.r == 6) & (a.runs.trial == 0)][cols].reset_index(drop=True)
    row_b = b.runs[(b.runs.r == 6) & (b.runs.trial == 0)][cols].reset_index(drop=True)
    assert row_a.equals(row_b)


def test_figures(tiny):
    fig = cv.plot_figure3(tiny)
    ax_a, ax_b = fig.axes
    assert ax_a.get_yscale() == "log"
    assert "iteration" in ax_a.get_xlabel() and "relative error" in ax_a.get_ylabel()
    assert "sqrt" in ax_b.get_xlabel() and "rate" in ax_b.get_ylabel()
    assert len(ax_a.get_lines()) >= 3
    (ax,) = cv.plot_rates_and_ratio(tiny).axes
    assert ax.get_xscale() == ax.get_yscale() == "log" and "r" in ax.get_xlabel()
    ax_a, ax_b = cv.plot_momentum(tiny).axes
    assert "condition number" in ax_b.get_xlabel() and "gain" in ax_b.get_ylabel()
    assert len(ax_a.get_lines()) == 2 * len(cv.METHODS)


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
    with pytest.raises(ValueError, match="^r "):
        cv.ConvergenceConfig(d=100, r_values=(5,), ratio_r_values=(50, 200))
    with pytest.raises(ValueError, match="^trials"):
        cv.ConvergenceConfig(trials=0)
    with pytest.raises(ValueError, match="^lam"):
        cv.ConvergenceConfig(lam=-1)
    with pytest.raises(ValueError, match="^ratio"):
        cv.ConvergenceConfig(ratio=0)
    with pytest.raises(ValueError, match="^ratio = 1.0 must be > 1"):
        cv.ConvergenceConfig(ratio=1.0)
    with pytest.raises(ValueError, match="^r_values .* must have r K < N"):
        cv.ConvergenceConfig(N=100, d=60, K=5, r_values=(10, 20), ratio_r_values=(10,))
    with pytest.raises(ValueError, match="r_values"):
        cv.ConvergenceConfig(r_values=())


def test_claims_are_inconclusive_when_no_run_reaches_the_fit_window():
    short = cv.run(cv.ConvergenceConfig(N=300, d=30, K=2, r_values=(4, 6), ratio_r_values=(4, 6), trials=2, max_iter=3),
                   progress=False)
    claims = cv.check_claims(short)
    assert [c.verdict for c in claims] == ["INCONCLUSIVE"] * len(NAMES)
    assert "none of the" in claims[0].statistic
    assert cv.speedup(short).empty


def test_a_diverged_run_has_no_rate():
    res = cv.run(cv.ConvergenceConfig(N=300, d=30, K=2, r_values=(4,), ratio_r_values=(4,), trials=1, eta=500.0),
                 progress=False)
    assert (res.runs["status"] == "diverged").any()
    assert res.runs.loc[res.runs["status"] == "diverged", "rate"].isna().all()
    assert cv.check_claims(res)[0].verdict == "NOT SUPPORTED"
