"""Exact subset sum against brute force; the pruned random network against its target."""

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from winning_ticket.algorithms import subset_sum as ss


@pytest.mark.parametrize("n", [1, 2, 5, 8, 11])
def test_meet_in_the_middle_equals_brute_force(n):
    rng = np.random.default_rng(n)
    values = rng.uniform(-1, 1, (40, n))
    targets = rng.uniform(-1.5, 1.5, 40)
    sel, err = ss.solve_subset_sum(values, targets, chunk=7)
    for i in range(40):
        _, best = ss.brute_force_subset_sum(values[i], targets[i])
        assert abs(err[i]) == pytest.approx(abs(best), abs=1e-12)
        assert err[i] == pytest.approx(targets[i] - values[i][sel[i]].sum(), abs=1e-12)



def test_absent_values_are_never_chosen():
    values = np.array([[0.5, np.nan, 0.25], [np.nan, np.nan, 0.1]])
    sel, err = ss.solve_subset_sum(values, [0.75, 0.3])
    assert sel.tolist() == [[True, False, True], [False, False, True]]
    assert err == pytest.approx([0.0, 0.2])



def test_single_unit_takes_the_closest_or_nothing():
    sel, err = ss.single_unit(np.array([[0.1, 0.5, -0.4], [0.9, 0.8, 0.7]]), [0.45, 0.1])
    assert sel.tolist() == [[False, True, False], [False, False, False]]
    assert err == pytest.approx([-0.05, 0.1])



def test_bad_inputs():
    with pytest.raises(ValueError, match="values must be"):
        ss.solve_subset_sum(np.zeros((3, 4)), [0.0, 1.0])
    with pytest.raises(ValueError, match="n \\(values per problem\\)"):
        ss.solve_subset_sum(np.zeros((1, 41)), [0.0])
    with pytest.raises(ValueError, match="method"):
        ss.prune_random_network(ss.random_target((3, 3), 0), 4, 0, "greedy")



@pytest.mark.parametrize("method", ["subset_sum", "single_unit"])
def test_pruned_network_matches_target_within_reported_errors(method):
    target = ss.random_target((6, 5, 4), 1)
    layers = ss.prune_random_network(target, 12, 2, method)
    for L, W in zip(layers, target):
        P, Q = L.realised_weights()
        # the forward pass computes P relu(x) + Q relu(-x); the construction aims at P = W, Q = -W
        assert np.max(np.maximum(np.abs(P - W), np.abs(Q + W)) - L.errors) < 1e-12
        # the first random layer is block diagonal: each unit reads one input
        assert np.all((L.first != 0).sum(axis=1) == 1)
    x = torch.randn(500, 6, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    gap = (ss.target_forward(target, x) - ss.pruned_forward(layers, x)).norm(dim=1).max()
    # a first-order bound from the per-weight errors (layer norms <= 1, ReLU 1-Lipschitz)
    bound = sum(np.linalg.norm(np.abs(L.errors), 2) * 2 for L in layers) * 1.5
    assert float(gap) <= bound



def test_sup_error_finds_the_supremum_of_a_known_gap():
    # target x -> w.x against the fully pruned (zero) network: the gap's supremum on the sphere is ||w||
    w = np.array([[0.3, -0.4, 1.2, 0.1, 0.0, -0.5]])
    empty = ss.PrunedLayer(first=np.ones((12, 6)), second=np.ones((1, 12)), mask_first=np.zeros((12, 6), bool),
                           mask_second=np.zeros((1, 12), bool), errors=np.abs(w))
    few = ss.sup_error([w], [empty], 0, samples=3, starts=3, steps=0)
    best = ss.sup_error([w], [empty], 0, samples=3, starts=3, steps=200, lr=0.1)
    assert few < 0.95 * np.linalg.norm(w)  # three random points miss the maximum
    assert best == pytest.approx(np.linalg.norm(w), rel=1e-4)  # the ascent finds it



def test_subset_sum_beats_single_unit_at_large_n():
    target = ss.random_target((8, 8, 8), 3)
    sub = ss.sup_error(target, ss.prune_random_network(target, 18, 4, "subset_sum"), 5, samples=2000)
    one = ss.sup_error(target, ss.prune_random_network(target, 18, 4, "single_unit"), 5, samples=2000)
    assert sub < 0.1 * one


def test_an_infinite_value_is_an_error_not_an_absent_value():
    with pytest.raises(ValueError, match="infinite"):
        ss.solve_subset_sum(np.array([[0.1, np.inf, 0.3]]), np.array([0.4]))
