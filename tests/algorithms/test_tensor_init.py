"""Tensor initialization (Lemma 1): constants, moment estimators against closed forms, decompositions, pipeline."""

import math

import numpy as np
import pytest

from winning_ticket.algorithms import tensor_init as ti
from winning_ticket.algorithms.teacher_student import make_problem


def test_relu_constants_match_numerical_integrals():
    z = np.linspace(-12, 12, 400001)
    dens = np.exp(-z**2 / 2) / math.sqrt(2 * math.pi)
    sigma = 1.7
    c = ti.relu_hermite_constants(sigma)
    for j in range(5):
        assert c[f"gamma{j}"] == pytest.approx(np.trapezoid(np.maximum(sigma * z, 0) * z**j * dens, z), rel=1e-6)
    assert c["m3"] == 0.0
    assert c["m2"] == pytest.approx(sigma / math.sqrt(2 * math.pi))
    assert c["m4"] == pytest.approx(-sigma / math.sqrt(2 * math.pi))


def test_support_matrices_disjoint_and_shared():
    A, S = ti.support_matrices(np.array([[0, 1], [2, 3]]))
    assert np.allclose(A, np.eye(2) / math.sqrt(2)) and np.allclose(S, np.eye(2))
    # both neurons read input 5 in position 1
    A, S = ti.support_matrices(np.array([[0, 5], [2, 5]]))
    assert A[0][1, 1] == pytest.approx(2 / math.sqrt(2)) and S[1, 1] == pytest.approx(2.0)


@pytest.fixture(scope="module")
def mc():
    """Overlapping supports, large sample: Monte Carlo checks of every estimator."""
    p = make_problem(1_000_000, 9, 3, 4, 0.0, seed=3)
    A, S = ti.support_matrices(p.omega)
    assert np.abs(A - np.eye(4) / math.sqrt(3)).max() > 0.1  # the supports really overlap
    return p, ti.x_tilde(p.X, p.omega), S


def test_first_and_second_moments_match_closed_forms(mc):
    p, Xt, S = mc
    M1, M2, _ = ti.population_moments(p.w_star, p.omega)
    yc = p.y - p.y.mean()
    # standard errors are about 1e-3 here; 4e-3 is 4 of them
    assert np.abs(ti.estimate_m1(Xt, yc) - M1).max() < 4e-3
    assert np.abs(ti.estimate_m2(Xt, yc, S) - M2).max() < 4e-3
    assert np.abs(M1).max() > 0.05 and np.abs(M2).max() > 0.03


def test_fourth_moment_matches_closed_form(mc):
    p, Xt, S = mc
    _, _, M4 = ti.population_moments(p.w_star, p.omega)
    M4_hat = ti.estimate_m4(Xt, p.y - p.y.mean(), S)
    # the fourth-order estimate is noisy entry by entry; its projection on the closed form is not
    scale = np.vdot(M4_hat, M4) / np.vdot(M4, M4)
    cosine = np.vdot(M4_hat, M4) / (np.linalg.norm(M4_hat) * np.linalg.norm(M4))
    assert abs(scale - 1) < 0.2 and cosine > 0.85


def test_projected_fourth_moment_is_the_contracted_full_one(mc):
    p, Xt, S = mc
    rng = np.random.default_rng(0)
    V = np.linalg.qr(rng.standard_normal((4, 3)))[0]
    alpha = rng.standard_normal(4)
    y = p.y[:50_000] - p.y.mean()
    full = ti.estimate_m4(Xt[:50_000], y, S)
    R = ti.estimate_m4_projected(Xt[:50_000], y, V, alpha, S, chunk=7_000)
    assert np.allclose(R, np.einsum("abcd,ap,bq,cs,d->pqs", full, V, V, V, alpha), atol=1e-12)


def test_third_moment_vanishes_for_relu():
    p = make_problem(400_000, 6, 2, 3, 0.0, seed=5, disjoint=True)
    Xt, y = ti.x_tilde(p.X, p.omega), p.y - p.y.mean()
    He3 = (np.einsum("n,na,nb,nc->abc", y, Xt, Xt, Xt)
           - sum(np.einsum(s, np.einsum("n,na->a", y, Xt), np.eye(3)) for s in ("a,bc->abc", "b,ac->abc", "c,ab->abc")))
    assert np.abs(He3 / len(y)).max() < 5e-3


@pytest.mark.parametrize("method", ["jennrich", "power"])
def test_decompositions_recover_exact_components(method):
    rng = np.random.default_rng(1)
    k = 4
    U = np.linalg.qr(rng.standard_normal((k, k)))[0] if method == "power" else rng.standard_normal((k, k))
    U /= np.linalg.norm(U, axis=0)
    lam = np.array([-2.0, 1.5, 0.7, -1.1])
    T = np.einsum("j,aj,bj,cj->abc", lam, U, U, U)
    V, lam_hat, res = (ti.jennrich if method == "jennrich" else ti.power_method)(T, rng)
    assert res < 1e-8
    match = np.abs(U.T @ V)
    assert np.allclose(np.sort(match.max(axis=1)), 1.0, atol=1e-6)


def test_pipeline_recovers_w_star_on_disjoint_supports():
    errors = []
    for seed in range(5):
        p = make_problem(600_000, 10, 2, 5, 0.0, seed=seed, disjoint=True)
        res = ti.tensor_initialization(p.X, p.y, p.omega, seed=seed)
        errors.append(np.linalg.norm(res.W0 - p.w_star) / np.linalg.norm(p.w_star))
        assert sorted(res.permutation) == [0, 1]
    # measured 0.10-0.40 with these seeds; a random guess has error about sqrt(2)
    assert np.median(errors) < 0.35 and max(errors) < 0.6


def test_pipeline_is_deterministic_and_validates():
    p = make_problem(3_000, 6, 2, 3, 0.0, seed=1, disjoint=True)
    a = ti.tensor_initialization(p.X, p.y, p.omega, seed=4)
    b = ti.tensor_initialization(p.X, p.y, p.omega, seed=4)
    assert np.array_equal(a.W0, b.W0)
    with pytest.raises(ValueError, match="method"):
        ti.tensor_initialization(p.X, p.y, p.omega, method="kcl")
    with pytest.raises(ValueError, match="N = 5"):
        ti.tensor_initialization(p.X[:5], p.y[:5], p.omega)
    with pytest.raises(ValueError, match="K"):
        q = make_problem(100, 16, 8, 2, 0.0, seed=1)
        ti.tensor_initialization(q.X, q.y, q.omega)
