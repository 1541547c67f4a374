import numpy as np
import torch

from winning_ticket.algorithms.teacher_student import initial_point, make_problem
from winning_ticket.algorithms.risk import gradient, hessian, preactivations, risk


def _torch_risk(Xs, y, W):
    Z = torch.einsum("knr,rk->nk", Xs, W)
    return 0.5 * ((torch.relu(Z).mean(dim=1) - y) ** 2).mean()


def _setup(seed=0, noise=0.1):
    p = make_problem(N=200, d=20, K=3, r=6, noise_level=noise, seed=seed)
    W = initial_point(p.w_star, 0.7, seed=seed + 1)
    return p, p.sub_inputs(), W


def test_risk_is_zero_at_the_truth_without_noise():
    p = make_problem(N=100, d=10, K=2, r=4, seed=0)
    assert risk(p.sub_inputs(), p.y, p.w_star) == 0.0
    np.testing.assert_array_equal(gradient(p.sub_inputs(), p.y, p.w_star), 0.0)


def test_gradient_matches_finite_differences():
    p, Xs, W = _setup()
    G = gradient(Xs, p.y, W)
    h = 1e-6
    for i, j in [(0, 0), (3, 1), (5, 2)]:
        E = np.zeros_like(W)
        E[i, j] = h
        fd = (risk(Xs, p.y, W + E) - risk(Xs, p.y, W - E)) / (2 * h)
        assert abs(fd - G[i, j]) < 1e-7 * max(1.0, abs(G[i, j]))


def test_gradient_and_hessian_match_autograd():
    p, Xs, W = _setup(seed=3)
    Xt, yt = torch.from_numpy(Xs), torch.from_numpy(p.y)
    Wt = torch.from_numpy(W).requires_grad_(True)
    _torch_risk(Xt, yt, Wt).backward()
    np.testing.assert_allclose(gradient(Xs, p.y, W), Wt.grad.numpy(), rtol=1e-10, atol=1e-14)

    # torch's Hessian of vec(W) in row-major (r, K) order; ours is column-major (w_1 first).
    H_t = torch.autograd.functional.hessian(lambda w: _torch_risk(Xt, yt, w), torch.from_numpy(W)).numpy()
    r, K = W.shape
    H_t = H_t.reshape(r, K, r, K).transpose(1, 0, 3, 2).reshape(r * K, r * K)
    np.testing.assert_allclose(hessian(Xs, W), H_t, rtol=1e-10, atol=1e-14)


def test_hessian_matches_finite_differences_of_the_gradient():
    p, Xs, W = _setup(seed=5)
    H = hessian(Xs, W)
    r, K = W.shape
    h = 1e-7
    col = 2 * r + 1  # entry (1, 2) of W
    E = np.zeros_like(W)
    E[1, 2] = h
    fd = (gradient(Xs, p.y, W + E) - gradient(Xs, p.y, W - E)) / (2 * h)
    np.testing.assert_allclose(fd.T.ravel(), H[:, col], rtol=1e-5, atol=1e-9)


def test_hessian_is_symmetric_psd_and_positive_at_the_truth():
    p = make_problem(N=2000, d=30, K=3, r=8, seed=1)
    H = hessian(p.sub_inputs(), p.w_star)
    np.testing.assert_allclose(H, H.T, atol=1e-15)
    assert np.linalg.eigvalsh(H)[0] > 0  # Theorem 1: locally strictly convex with enough samples


def test_preactivations_shape():
    p, Xs, W = _setup()
    Z = preactivations(Xs, W)
    assert Z.shape == (p.N, p.K)
    np.testing.assert_allclose(Z[:, 1], p.X[:, p.omega[1]] @ W[:, 1])
