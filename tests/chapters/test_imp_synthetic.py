"""The IMP-on-synthetic-data chapter (Fig. 6)."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from winning_ticket.chapters import imp_synthetic as imp


@pytest.fixture(scope="module")
def imp_result():
    return imp.run(imp.IMPConfig.for_profile("smoke"), progress=False)



def test_imp_rounds_have_the_exact_remaining_fractions(imp_result):
    c = imp_result.config
    s = imp.imp_summary(imp_result)
    for N in c.N_values:
        assert np.allclose(s.loc[N, "remaining"].to_numpy(), imp.expected_remaining(c))
    assert (imp_result.imp.groupby(["N", "round"]).size() == c.trials).all()
    assert np.isfinite(imp_result.imp["test_error"]).all()



def test_imp_claims_are_computed_from_the_data(imp_result):
    claims = imp.check_claims(imp_result)
    assert [c.name for c in claims] == ["error-falls-to-teacher-size", "error-rises-below-teacher-size",
                                        "small-N-stays-high", "magnitude-pruning-finds-proper-student"]
    # tamper with the data: if the small-N error were tiny the claim must flip
    fake = imp.IMPSyntheticResult(config=imp_result.config, imp=imp_result.imp.copy(), support=imp_result.support)
    small = fake.imp["N"] == min(imp_result.config.N_values)
    fake.imp.loc[small, "test_error"] = 1e-6
    assert not imp.check_claims(fake)[2].holds
    imp.plot_figure6(imp_result)
    imp.plot_support(imp_result)



def test_imp_matched_overlap_ignores_neuron_order():
    omega = np.array([[0, 1], [2, 3]])
    mask = np.zeros((4, 2), dtype=bool)
    mask[[2, 3], 0] = True  # student neuron 0 holds teacher neuron 1's support
    mask[[0, 1], 1] = True
    assert imp._matched_overlap(mask, omega) == 4
