import numpy as np
import pytest

from winning_ticket.algorithms.agd import (
    SUCCESS_TOL,
    RunStatus,
    AGDResult,
    relative_error,
    run_agd,
)
from winning_ticket.algorithms.teacher_student import initial_point
from winning_ticket.algorithms.risk import gradient


def test_beta_zero_is_plain_gradient_descent(small_problem):
    p = small_problem
    Xs = p.sub_inputs()
    W0 = initial_point(p.w_star, 0.5, seed=1)
    res = run_agd(Xs, p.y, p.w_star, W0, eta=0.5, beta=0.0, max_iter=25, tol=0.0)
    W = W0.copy()
    for _ in range(25):
        W = W - 0.5 * gradient(Xs, p.y, W)
    np.testing.assert_array_equal(res.W, W)
    assert res.iterations == 25 and res.status == RunStatus.MAX_ITER


def test_momentum_step_and_first_step(small_problem):
    p = small_problem
    Xs = p.sub_inputs()
    W0 = initial_point(p.w_star, 0.5, seed=2)
    W1 = W0 - 0.4 * gradient(Xs, p.y, W0)  # W^(-1) = W^(0): the first step has no momentum
    W2 = W1 - 0.4 * gradient(Xs, p.y, W1) + 0.3 * (W1 - W0)
    res = run_agd(Xs, p.y, p.w_star, W0, eta=0.4, beta=0.3, max_iter=2, tol=0.0)
    np.testing.assert_allclose(res.W, W2, rtol=1e-15)
    np.testing.assert_allclose(res.rel_error, [relative_error(W, p.w_star) for W in (W0, W1, W2)])


def test_stopping_rule_and_success(small_problem):
    p = small_problem
    Xs = p.sub_inputs()
    res = run_agd(Xs, p.y, p.w_star, initial_point(p.w_star, 0.5, seed=3), eta=0.5, beta=0.2)
    assert res.status == RunStatus.CONVERGED and res.success
    assert res.final_error < SUCCESS_TOL
    assert res.rel_error.shape == (res.iterations + 1,)
    # the rule fired at the last step and not before
    prev = run_agd(Xs, p.y, p.w_star, initial_point(p.w_star, 0.5, seed=3), eta=0.5, beta=0.2, max_iter=res.iterations - 1)
    assert prev.status == RunStatus.MAX_ITER
    change = np.linalg.norm(res.W - prev.W) / np.linalg.norm(prev.W)
    assert change < 1e-8
    # a looser tolerance stops earlier
    loose = run_agd(Xs, p.y, p.w_star, initial_point(p.w_star, 0.5, seed=3), eta=0.5, beta=0.2, tol=1e-4)
    assert loose.iterations < res.iterations and loose.status == RunStatus.CONVERGED


def test_iteration_cap_is_a_failure_when_not_converged(small_problem):
    p = small_problem
    res = run_agd(p.sub_inputs(), p.y, p.w_star, initial_point(p.w_star, 0.5, seed=3), eta=0.5, beta=0.2, max_iter=20)
    assert res.status == RunStatus.MAX_ITER and res.iterations == 20 and not res.success


def test_divergence_is_recorded_not_raised(small_problem):
    p = small_problem
    W0 = initial_point(p.w_star, 0.5, seed=4)
    res = run_agd(p.sub_inputs(), p.y, p.w_star, W0, eta=1e4, beta=0.9)
    assert res.status == RunStatus.DIVERGED and res.status_name == "diverged" and not res.success
    assert np.all(np.isfinite(res.W)) and np.all(np.isfinite(res.rel_error))


def test_success_requires_small_error():
    r = AGDResult(W=np.zeros((2, 2)), iterations=3, rel_error=np.array([1, 0.1, 2e-4, 1.5e-4]), status=RunStatus.CONVERGED)
    assert not r.success
    r = AGDResult(W=np.zeros((2, 2)), iterations=1, rel_error=np.array([1, 5e-5]), status=RunStatus.CONVERGED)
    assert r.success


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(eta=0.0), "eta"), (dict(eta=-1.0), "eta"), (dict(beta=1.0), "beta"), (dict(beta=-0.1), "beta"),
     (dict(max_iter=0), "max_iter"), (dict(tol=-1.0), "tol")],
)
def test_bad_hyper_parameters(small_problem, kwargs, name):
    p = small_problem
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        run_agd(p.sub_inputs(), p.y, p.w_star, p.w_star, **kwargs)


def test_bad_shapes_and_nan(small_problem):
    p = small_problem
    Xs = p.sub_inputs()
    with pytest.raises(ValueError, match="^W0"):
        run_agd(Xs, p.y, p.w_star, p.w_star.T)
    with pytest.raises(ValueError, match="^y"):
        run_agd(Xs, p.y[:-1], p.w_star, p.w_star)
    with pytest.raises(ValueError, match="^Xs"):
        run_agd(p.X, p.y, p.w_star, p.w_star)
    bad = p.w_star.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="^W0 contains NaN"):
        run_agd(Xs, p.y, p.w_star, bad)


def test_nan_and_complex_inputs_are_rejected_not_run(small_problem):
    p = small_problem
    Xs = p.sub_inputs().copy()
    Xs[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="Xs contains NaN"):
        run_agd(Xs, p.y, p.w_star, p.w_star, max_iter=5)
    with pytest.raises(ValueError, match="y must be real"):
        run_agd(p.sub_inputs(), p.y + 1j, p.w_star, p.w_star, max_iter=5)
