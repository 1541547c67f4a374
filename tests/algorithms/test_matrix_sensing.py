"""Matrix sensing with group Lasso: gradients, population loss, pruning and fine-tuning."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from winning_ticket.algorithms import matrix_sensing as ms


def _autograd(f, U):
    t = torch.tensor(U, requires_grad=True)
    f(t).backward()
    return t.grad.numpy()



@pytest.mark.parametrize("kind", ms.KINDS)
def test_empirical_gradient_matches_autograd(kind):
    p = ms.make_sensing_problem(50, ms.ground_truth(6, 2, 0), 0.1, 1, kind)
    U = np.random.default_rng(2).normal(size=(6, 5))
    if kind == "gaussian":
        A, y = torch.tensor(p.A), torch.tensor(p.y)
        f = lambda V: torch.mean((torch.einsum("nij,ij->n", A, V @ V.T) - y) ** 2)  # noqa: E731
    else:
        X, y = torch.tensor(p.X), torch.tensor(p.y)
        f = lambda V: torch.mean((((X @ V) ** 2).sum(1) - y) ** 2)  # noqa: E731
    assert np.allclose(p.gradient(U), _autograd(f, U), rtol=1e-10, atol=1e-12)
    assert p.loss(U) == pytest.approx(float(f(torch.tensor(U))))



@pytest.mark.parametrize("form", list(ms.SMOOTHINGS))
def test_group_lasso_gradient_matches_autograd(form):
    U = np.random.default_rng(3).normal(size=(5, 4))
    U[:, 1] *= 1e-4  # one nearly dead column
    beta = 1e-3
    if form == "sqrt":
        f = lambda V: torch.sqrt((V**2).sum(0) + beta).sum()  # noqa: E731
    else:
        f = lambda V: ((V**2).sum(0) / torch.sqrt((V**2).sum(0) + beta)).sum()  # noqa: E731
    value, grad = ms.group_lasso(U, beta, form)
    assert value == pytest.approx(float(f(torch.tensor(U))))
    assert np.allclose(grad, _autograd(f, U), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="form"):
        ms.group_lasso(U, beta, "huber")
    with pytest.raises(ValueError, match="beta"):
        ms.group_lasso(U, 0.0)



@pytest.mark.parametrize("kind", ms.KINDS)
def test_population_loss_and_gradient(kind):
    U_star = ms.ground_truth(5, 2, 4)
    U = U_star + 0.3 * np.random.default_rng(5).normal(size=(5, 2))
    p = ms.make_sensing_problem(200_000, U_star, 0.2, 6, kind)
    mc = p.loss(U)  # the empirical loss on many fresh measurements estimates the population loss
    exact = ms.population_loss(U, p.M_star, kind, 0.2)
    assert mc == pytest.approx(exact, rel=0.03)
    f = (lambda V: ((V @ V.T - torch.tensor(p.M_star)) ** 2).sum()) if kind == "gaussian" else \
        (lambda V: 2 * ((V @ V.T - torch.tensor(p.M_star)) ** 2).sum() + torch.trace(V @ V.T - torch.tensor(p.M_star)) ** 2)
    assert np.allclose(ms.population_gradient(U, p.M_star, kind), _autograd(f, U))



def test_prune_keeps_exactly_the_columns_above_the_threshold():
    U = np.array([[1.0, 0.0, 0.3, 0.002], [0.0, 0.0, 0.4, 0.0]])
    assert ms.prune_columns(U, 0.002).tolist() == [True, False, True, False]
    assert ms.prune_columns(U, 0.5).tolist() == [True, False, False, False]



def test_fine_tuning_never_touches_pruned_columns():
    p = ms.make_sensing_problem(300, ms.ground_truth(6, 2, 7), 0.05, 8)
    U = np.random.default_rng(9).normal(0, 0.5, (6, 5))
    keep = np.array([True, False, True, False, False])
    res = ms.fine_tune(p, U, keep, 0.01, 200)
    assert np.all(res.U[:, ~keep] == 0)
    assert not np.allclose(res.U[:, keep], U[:, keep])
    assert len(res.history) == 201 and res.history[-1][1] < res.history[0][1]



def test_divergence_is_recorded():
    p = ms.make_sensing_problem(100, ms.ground_truth(6, 2, 7), 0.05, 8)
    res = ms.gradient_descent(p.gradient, np.ones((6, 3)), eta=10.0, steps=100)
    assert res.status == "diverged" and np.all(np.isfinite(res.U))



def test_bad_inputs():
    with pytest.raises(ValueError, match="r = 7"):
        ms.ground_truth(5, 7, 0)
    with pytest.raises(ValueError, match="sigma"):
        ms.make_sensing_problem(10, ms.ground_truth(5, 2, 0), -0.1, 0)
    with pytest.raises(ValueError, match="kind"):
        ms.make_sensing_problem(10, ms.ground_truth(5, 2, 0), 0.1, 0, "bernoulli")
