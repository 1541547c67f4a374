"""Masked AGD, the dense student, and the Initialization and IMP chapter modules on their smoke profiles."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from winning_ticket import imp_synthetic as imp
from winning_ticket import initialization as init
from winning_ticket.agd import run_agd
from winning_ticket.engine import run_agd_batched
from winning_ticket.model import dense_student, make_problem, teacher_output


def test_dense_student_computes_the_teacher():
    p = make_problem(200, 30, 3, 6, 0.0, seed=2)
    q = dense_student(p)
    assert q.w_star.shape == (30, 3) and int((q.w_star != 0).sum()) == int((p.w_star != 0).sum())
    assert np.allclose(teacher_output(q.X, q.omega, q.w_star), teacher_output(p.X, p.omega, p.w_star))


def test_disjoint_supports():
    p = make_problem(10, 30, 3, 10, 0.0, seed=1, disjoint=True)
    assert len(set(p.omega.ravel().tolist())) == 30
    with pytest.raises(ValueError, match="K\\*r <= d"):
        make_problem(10, 29, 3, 10, 0.0, seed=1, disjoint=True)


def test_masked_engine_equals_masked_reference_and_keeps_zeros():
    problems = [dense_student(make_problem(150, 12, 2, 4, 1e-3, seed=s)) for s in range(2)]
    rng = np.random.default_rng(0)
    mask = (rng.random((2, 1, 12, 2)) < 0.5).astype(float)
    W0 = rng.normal(0, 0.3, (2, 1, 12, 2)) * mask
    res = run_agd_batched(problems, W0, 0.5, 0.2, max_iter=300, device="cpu", record_history=False, mask=mask)
    for b, p in enumerate(problems):
        ref = run_agd(p.sub_inputs(), p.y, p.w_star, W0[b, 0], 0.5, 0.2, max_iter=300, mask=mask[b, 0])
        assert np.allclose(res.W[b, 0], ref.W, rtol=1e-9, atol=1e-12)
        assert np.all(res.W[b, 0][mask[b, 0] == 0] == 0)
        assert np.any(res.W[b, 0][mask[b, 0] == 1] != W0[b, 0][mask[b, 0] == 1])
    with pytest.raises(ValueError, match="zero wherever mask"):
        run_agd_batched(problems, W0 + 0.1, 0.5, 0.2, max_iter=3, mask=mask)
    with pytest.raises(ValueError, match="0 or 1"):
        run_agd_batched(problems, W0, 0.5, 0.2, max_iter=3, mask=mask * 0.5)


@pytest.fixture(scope="module")
def imp_result():
    return imp.run_imp_synthetic(imp.IMPConfig.for_profile("smoke"), progress=False)


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
    fake = imp.IMPSyntheticResult(imp_result.config, imp_result.imp.copy(), imp_result.support, 0.0)
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


def test_initialization_chapter_smoke():
    res = init.run_initialization(init.InitConfig.for_profile("smoke"), progress=False)
    s = init.n_summary(res)
    assert list(s.index) == list(res.config.N_values)
    assert (s["subspace_error_median"] < 1).all()
    assert set(res.overlap["corrected"]) == {True, False}
    assert len(init.check_claims(res)) == 4
    init.plot_initialization(res)
