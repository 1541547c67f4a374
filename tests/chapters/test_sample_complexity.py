"""The Sample-complexity chapter (Fig. 4): students of one sparse teacher, the threshold estimate, and its rules."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import pytest

from winning_ticket.algorithms.teacher_student import make_problem, teacher_output
from winning_ticket.chapters import sample_complexity as sc
from winning_ticket.experiments.claims import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED


@pytest.fixture(scope="module")
def samples():
    return sc.run(sc.SampleComplexityConfig.for_profile("smoke"), progress=False)


def test_sample_complexity_smoke(samples):
    c = samples.config
    assert set(samples.runs["r"]) == set(c.r_values)
    for r in c.r_values:
        assert set(samples.runs[samples.runs["r"] == r]["N"]) == set(c.n_values(r))
    assert [cl.name for cl in sc.check_claims(samples)] == ["threshold-linear-in-r", "pruned-needs-fewer-samples"]
    sc.plot_figure4(samples)


def test_students_contain_the_teacher_and_compute_it_exactly():
    teacher = make_problem(200, 30, 3, 4, 0.0, seed=5)
    small = sc.nested_student(teacher, 6, seed=1)
    big = sc.nested_student(teacher, 12, seed=1)
    dense = sc.nested_student(teacher, 30, seed=1)
    for s in (small, big, dense):
        assert all(set(teacher.omega[j]) <= set(s.omega[j]) for j in range(3))
        assert all(len(set(row)) == len(row) for row in s.omega)  # no input twice in a neuron
        np.testing.assert_allclose(teacher_output(s.X, s.omega, s.w_star), teacher.y, atol=1e-12)
    assert all(set(small.omega[j]) <= set(big.omega[j]) for j in range(3))  # nested in r
    assert all(sorted(dense.omega[j]) == list(range(30)) for j in range(3))
    with pytest.raises(ValueError, match="r = 3 must lie in"):
        sc.nested_student(teacher, 3, seed=1)


def test_logistic_threshold_cases():
    N = np.repeat([10, 20, 40, 80], 5)
    s = (N >= 40).astype(float)
    n_star, status = sc.logistic_threshold(N, s)
    assert status == "ok" and 20 < n_star < 40  # between the last failure and the first success
    assert sc.logistic_threshold(N, np.ones_like(N))[1] == "below-grid"
    assert sc.logistic_threshold(N, np.zeros_like(N))[1] == "above-grid"
    assert sc.logistic_threshold(N, (N <= 20).astype(float))[1] == "no-trend"


CONFIG = sc.SampleComplexityConfig.for_profile("evidence")


def _synthetic(alpha=1.0, c0=2.5, dense_factor=1.0, teachers=20, seed=0):
    """Runs where teacher t's student r succeeds iff N > m_t * c0 * K * r_star * (r / r_star)**alpha (m_t: the
    teacher's own difficulty); ``dense_factor`` multiplies the threshold of the dense student."""
    rng = np.random.default_rng(seed)
    c = CONFIG.replace(trials=teachers)
    rows = []
    for t in range(teachers):
        m = np.exp(0.15 * rng.standard_normal())
        for r in c.r_values:
            n_star = m * c0 * c.K * c.r_star * (r / c.r_star) ** alpha * (dense_factor if r == max(c.r_values) else 1)
            for N in c.n_values(r):
                jitter = np.exp(0.1 * rng.standard_normal())
                rows.append(dict(r=r, N=N, trial=t, success=bool(N > n_star * jitter)))
    return sc.SampleComplexityResult(config=c, runs=pd.DataFrame(rows), seconds=0.0)


def _v(result):
    return {cl.name: cl.verdict for cl in sc.check_claims(result)}


def test_rules_support_a_linear_threshold_and_a_cheaper_pruned_student():
    assert set(_v(_synthetic()).values()) == {SUPPORTED}


def test_rules_fail_when_the_claims_are_false():
    assert _v(_synthetic(alpha=0.4, c0=5.0))["threshold-linear-in-r"] == NOT_SUPPORTED
    v = _v(_synthetic(alpha=0.0, c0=4.0, dense_factor=0.5))
    assert v["pruned-needs-fewer-samples"] == NOT_SUPPORTED


def test_rules_are_inconclusive_with_too_few_teachers():
    assert set(_v(_synthetic(teachers=3)).values()) == {INCONCLUSIVE}


@pytest.mark.parametrize("kernel", ["fused", "torch"])
def test_batched_columns_give_the_cells_runs(samples, kernel, monkeypatch):
    """The `paper` profile's layout (all N of a student in one zero-padded engine call) runs the same
    runs as the cell-by-cell sweep: with the fused kernel every field bit for bit, with the torch
    kernel (the GPU's) every status, success and iteration count, the errors to rounding."""
    from winning_ticket.algorithms import kernels

    if kernel == "fused" and not kernels.available():
        pytest.skip("numba is not installed")
    monkeypatch.setenv("WT_KERNEL", kernel)
    config = samples.config.replace(batch_columns=True)
    (plan,) = sc.sweeps(config)
    assert plan.fn is sc.sample_complexity_column_task and len(plan.tasks) == len(config.r_values)
    columns = sc.run(config, progress=False).runs
    cells = sc.run(samples.config, progress=False).runs
    key = ["r", "N", "trial"]
    fields = ["status", "success", "iterations", "final_error", "rate"]
    a = cells.sort_values(key).reset_index(drop=True)
    b = columns.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) == sum(len(config.n_values(r)) for r in config.r_values) * config.trials
    pd.testing.assert_frame_equal(a[key + fields[:3]], b[key + fields[:3]])
    assert set(a["success"]) == {True, False}  # both outcomes: the comparison has teeth
    if kernel == "fused":
        pd.testing.assert_frame_equal(a[fields], b[fields])
    else:
        np.testing.assert_allclose(b["final_error"], a["final_error"], rtol=1e-7)
