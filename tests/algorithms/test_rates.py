import numpy as np
import pytest

from winning_ticket.algorithms.rates import fit_rate, fit_rates


def test_exact_geometric_history():
    h = 0.5 * 0.97 ** np.arange(600)
    fit = fit_rate(h)
    assert fit.rate == pytest.approx(0.97, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    # only iterates with 1e-7 < error < 1e-2 count
    assert fit.points == int(np.sum((h > 1e-7) & (h < 1e-2)))


def test_window_ignores_the_transient_and_the_floor():
    t = np.arange(2000)
    h = np.maximum(0.9 ** t + 0.3 * 0.5 ** t, 1e-9)  # fast transient, then rate 0.9, then a floor
    h = np.where(t < 5, 0.9, h)
    assert fit_rate(h).rate == pytest.approx(0.9, rel=1e-6)


def test_nan_padding_and_too_few_points():
    h = np.concatenate([1e-3 * 0.9 ** np.arange(50), np.full(20, np.nan)])
    assert fit_rate(h).rate == pytest.approx(0.9)
    short = fit_rate(np.array([1e-3, 5e-4, 2e-4]))
    assert np.isnan(short.rate) and short.points == 3


def test_nonlinear_decay_has_low_r2():
    t = np.arange(1, 400)
    h = 1e-2 / t**3  # sub-linear (polynomial) convergence
    assert fit_rate(h).r2 < 0.95


def test_fit_rates_shapes():
    h = np.stack([0.5 * 0.95 ** np.arange(400), 0.5 * 0.9 ** np.arange(400)]).reshape(1, 2, 400)
    rates, r2 = fit_rates(h)
    assert rates.shape == (1, 2)
    np.testing.assert_allclose(rates[0], [0.95, 0.9], rtol=1e-10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="history"):
        fit_rate(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"window\[1\]"):
        fit_rate(np.ones(5), window=(1e-2, 1e-7))
    with pytest.raises(ValueError, match="min_points"):
        fit_rate(np.ones(5), min_points=1)


def _simulated_rate(eta, beta, eigenvalues, steps=4000):
    """Run the recursion on a diagonal quadratic and measure its contraction per step."""
    rng = np.random.default_rng(0)
    x = x_prev = rng.standard_normal(len(eigenvalues))
    h = np.asarray(eigenvalues)
    norms = []
    for _ in range(steps):
        x, x_prev = x - eta * h * x + beta * (x - x_prev), x
        norms.append(np.linalg.norm(x))
    return (norms[-1] / norms[-501]) ** (1 / 500)


@pytest.mark.parametrize("eta,beta", [(0.5, 0.0), (0.5, 0.2), (1.8, 0.0), (1.5, 0.5)])
def test_heavy_ball_rate_matches_the_simulated_recursion(eta, beta):
    from winning_ticket.algorithms.rates import heavy_ball_rate

    eig = np.linspace(0.02, 1.0, 30)
    assert heavy_ball_rate(eta, beta, 0.02, 1.0) == pytest.approx(_simulated_rate(eta, beta, eig), rel=2e-3)


def test_tuned_parameters_reach_the_textbook_rates():
    from winning_ticket.algorithms.rates import best_gd_step, heavy_ball_rate, polyak_parameters

    mu, L = 0.01, 1.0  # kappa = 100
    assert heavy_ball_rate(best_gd_step(mu, L), 0.0, mu, L) == pytest.approx(99 / 101)
    eta, beta = polyak_parameters(mu, L)
    assert heavy_ball_rate(eta, beta, mu, L) == pytest.approx(9 / 11, rel=1e-6)
    # momentum at a small step is GD with step eta / (1 - beta) (the heavy-ball identity)
    small = heavy_ball_rate(1e-3, 0.2, mu, L)
    assert 1 - small == pytest.approx((1 - heavy_ball_rate(1e-3 / 0.8, 0.0, mu, L)), rel=1e-3)
    # past the stability limit the rate exceeds 1
    assert heavy_ball_rate(2.1 / L, 0.0, mu, L) > 1
    with pytest.raises(ValueError, match="^L"):
        best_gd_step(1.0, 0.5)
