"""The sparse teacher-student model and its data."""

from winning_ticket.algorithms.teacher_student import dense_student
import numpy as np
import pytest

from winning_ticket.algorithms.teacher_student import (
    Problem,
    initial_point,
    make_problem,
    sample_supports,
    teacher_output,
)
from winning_ticket.experiments.seeding import seed_sequence


def test_supports_are_sorted_distinct_and_may_overlap():
    rng = np.random.default_rng(0)
    omega = sample_supports(d=20, K=50, r=6, rng=rng)
    assert omega.shape == (50, 6)
    assert np.all(np.diff(omega, axis=1) > 0)  # sorted, no repeats within a neuron
    assert omega.min() >= 0 and omega.max() < 20
    shared = [len(set(a) & set(b)) for a, b in zip(omega[:-1], omega[1:])]
    assert max(shared) > 0  # independent draws share inputs


def test_supports_are_uniform():
    rng = np.random.default_rng(1)
    counts = np.bincount(sample_supports(d=10, K=20000, r=3, rng=rng).ravel(), minlength=10)
    expected = 20000 * 3 / 10
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_data_statistics():
    p = make_problem(N=20000, d=40, K=4, r=10, noise_level=0.1, seed=3)
    assert np.all(np.abs(p.w_star) <= 0.5)
    assert abs(p.w_star.mean()) < 0.1 and abs(p.w_star.var() - 1 / 12) < 0.03
    assert abs(p.X.mean()) < 0.01 and abs(p.X.var() - 1) < 0.01
    clean = teacher_output(p.X, p.omega, p.w_star)
    assert p.E_y == pytest.approx(np.sqrt(np.mean(clean**2)), rel=1e-12)
    assert p.sigma == pytest.approx(0.1 * p.E_y)
    noise = p.y - clean
    assert noise.std() == pytest.approx(p.sigma, rel=0.03)
    assert abs(noise.mean()) < 4 * p.sigma / np.sqrt(p.N)


def test_noiseless_labels_are_the_teacher():
    p = make_problem(N=50, d=12, K=2, r=4, seed=0)
    np.testing.assert_array_equal(p.y, teacher_output(p.X, p.omega, p.w_star))


def test_teacher_output_matches_dense_form():
    p = make_problem(N=64, d=15, K=3, r=5, seed=2)
    W_dense = np.zeros((p.d, p.K))
    for j in range(p.K):
        W_dense[p.omega[j], j] = p.w_star[:, j]
    dense = np.maximum(p.X @ W_dense, 0).mean(axis=1)
    np.testing.assert_allclose(teacher_output(p.X, p.omega, p.w_star), dense, rtol=1e-13)


def test_sub_inputs_layout():
    p = make_problem(N=7, d=9, K=2, r=3, seed=4)
    Xs = p.sub_inputs()
    assert Xs.shape == (2, 7, 3) and Xs.flags.c_contiguous
    np.testing.assert_array_equal(Xs[1], p.X[:, p.omega[1]])


def test_same_seed_same_problem_and_streams_are_independent():
    a = make_problem(N=30, d=10, K=2, r=4, seed=seed_sequence(9, 1, 2))
    b = make_problem(N=30, d=10, K=2, r=4, seed=seed_sequence(9, 1, 2))
    c = make_problem(N=30, d=10, K=2, r=4, seed=seed_sequence(9, 1, 3))
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.w_star, b.w_star)
    assert not np.array_equal(a.X, c.X)
    # the stream of a key does not depend on streams made before it
    seed_sequence(9, 0)
    d = make_problem(N=30, d=10, K=2, r=4, seed=seed_sequence(9, 1, 2))
    np.testing.assert_array_equal(a.y, d.y)


def test_initial_point_is_at_exact_relative_distance():
    p = make_problem(N=10, d=10, K=3, r=4, seed=0)
    for lam in (0.0, 0.3, 2.5):
        W0 = initial_point(p.w_star, lam, seed=1)
        assert np.linalg.norm(W0 - p.w_star) / np.linalg.norm(p.w_star) == pytest.approx(lam, abs=1e-14)
    directions = [initial_point(p.w_star, 1.0, seed=s) - p.w_star for s in range(3)]
    assert not np.allclose(directions[0], directions[1])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(N=10, d=5, K=2, r=6), "r"),
        (dict(N=10, d=5, K=0, r=2), "K"),
        (dict(N=0, d=5, K=2, r=2), "N"),
        (dict(N=10, d=0, K=2, r=1), "d"),
        (dict(N=10, d=5, K=2, r=0), "r"),
        (dict(N=10, d=5, K=2, r=2, noise_level=-0.1), "noise_level"),
        (dict(N=10, d=5, K=2, r=2, noise_level=float("nan")), "noise_level"),
        (dict(N=10.5, d=5, K=2, r=2), "N"),
        (dict(N=10, d=5, K=2, r=2, seed=-1), "seed"),
    ],
)
def test_bad_problem_parameters_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        make_problem(**kwargs)


def test_bad_initial_point_inputs():
    with pytest.raises(ValueError, match="^lam"):
        initial_point(np.ones((3, 2)), -0.1, seed=0)
    with pytest.raises(ValueError, match="w_star"):
        initial_point(np.ones(3), 0.1, seed=0)


def test_problem_validates_arrays():
    X = np.zeros((5, 4))
    omega = np.array([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="^y"):
        Problem(X=X, y=np.zeros(4), omega=omega, w_star=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="^w_star"):
        Problem(X=X, y=np.zeros(5), omega=omega, w_star=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="^X contains NaN"):
        Problem(X=np.full((5, 4), np.nan), y=np.zeros(5), omega=omega, w_star=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="^omega"):
        Problem(X=X, y=np.zeros(5), omega=np.array([[0, 4], [1, 2]]), w_star=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="^omega"):
        Problem(X=X, y=np.zeros(5), omega=np.array([[1, 1], [1, 2]]), w_star=np.zeros((2, 2)))


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
