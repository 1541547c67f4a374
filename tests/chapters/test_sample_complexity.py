"""The Sample-complexity chapter (Fig. 4) on its smoke profile, and its rules."""

import matplotlib

matplotlib.use("Agg")
import pandas as pd
import pytest

from winning_ticket.chapters import sample_complexity as sc


@pytest.fixture(scope="module")
def samples():
    return sc.run(sc.SampleComplexityConfig.for_profile("smoke"), progress=False)



def test_sample_complexity(samples):
    th = sc.threshold(samples)
    assert th["found"].all()
    assert th["N_star"].is_monotonic_increasing
    fit = sc.fit_threshold(samples)
    assert fit["points"] >= 3 and fit["a"] > 0
    assert [c.holds for c in sc.check_claims(samples)] == [True, True]
    sc.plot_figure4(samples)



def test_sample_complexity_threshold_rule():
    c = sc.SampleComplexityConfig(d=10, K=1, r_values=(2, 4), N_values=(10, 20, 40), trials=1)
    rows = [dict(r=2, N=n, success=s) for n, s in ((10, False), (20, True), (40, True))]
    rows += [dict(r=4, N=n, success=s) for n, s in ((10, True), (20, False), (40, True))]
    res = sc.SampleComplexityResult(config=c, runs=pd.DataFrame(rows), seconds=0)
    th = sc.threshold(res)
    assert th.loc[2, "N_star"] == 20 and th.loc[4, "N_star"] == 40  # success must hold from N* upwards
