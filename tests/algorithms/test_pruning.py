"""Magnitude pruning and the IMP loop: exact counts, binary masks, exact rewinding, frozen pruned weights."""

import numpy as np
import pytest
import torch

from winning_ticket.algorithms import pruning as pr


def _ticket(seed=0, batch=()):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(*batch, 7, 5, generator=g, dtype=torch.float64),
            "b": torch.randn(*batch, 13, generator=g, dtype=torch.float64)}


def test_remaining_counts_are_exact():
    assert pr.remaining_counts(500, 0.2, 4) == [500, 400, 320, 256, 205]
    assert pr.remaining_counts(10, 0.2, 3) == [10, 8, 6, 5]
    with pytest.raises(ValueError, match="rate"):
        pr.remaining_counts(10, 1.0, 1)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_removes_exact_counts_of_the_smallest(scope):
    w = _ticket()
    masks = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
    for _ in range(5):
        before = {n: int(m.sum()) for n, m in masks.items()}
        new = pr.magnitude_prune(w, masks, 0.2, scope)
        for n in w:
            assert new[n].dtype == torch.bool
            assert not bool((new[n] & ~masks[n]).any())  # pruned weights never come back
        if scope == "layer":
            for n in w:
                assert int(new[n].sum()) == pr.remaining_counts(before[n], 0.2, 1)[1]
        else:
            total = sum(before.values())
            assert sum(int(m.sum()) for m in new.values()) == pr.remaining_counts(total, 0.2, 1)[1]
        # every kept weight is at least as large as every weight pruned this round
        kept = torch.cat([w[n][new[n]].abs() for n in w])
        dropped = torch.cat([w[n][masks[n] & ~new[n]].abs() for n in w])
        if scope == "global":
            assert kept.min() >= dropped.max()
        masks = new


def test_ties_are_broken_by_position():
    w = {"a": torch.ones(10, dtype=torch.float64)}
    m = pr.magnitude_prune(w, {"a": torch.ones(10, dtype=torch.bool)}, 0.3)
    assert m["a"].tolist() == [False] * 3 + [True] * 7


def test_batched_networks_are_pruned_independently():
    w = _ticket(1, batch=(3,))
    masks = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
    together = pr.magnitude_prune(w, masks, 0.2, "global", batch_dims=1)
    for b in range(3):
        alone = pr.magnitude_prune({n: t[b] for n, t in w.items()}, {n: m[b] for n, m in masks.items()}, 0.2)
        for n in w:
            assert torch.equal(together[n][b], alone[n])


def test_rewind_is_exact():
    init = _ticket(2)
    masks = pr.magnitude_prune(init, {n: torch.ones_like(t, dtype=torch.bool) for n, t in init.items()}, 0.5)
    start = pr.rewind(init, masks)
    for n in init:
        assert torch.equal(start[n][masks[n]], init[n][masks[n]])
        assert bool((start[n][~masks[n]] == 0).all())


def test_run_imp_rewinds_keeps_zeros_and_tracks_fractions():
    init = _ticket(3)
    seen = []

    def train(start, masks, k):
        seen.append({n: t.clone() for n, t in start.items()})
        # a fake training step that moves every surviving weight and respects the mask
        return {n: torch.where(masks[n], start[n] * (1.5 + k) + 0.1, torch.zeros_like(start[n])) for n in start}

    res = pr.run_imp(init, train, rounds=4, rate=0.2, scope="global",
                     evaluate=lambda t, m, k: {"norm": float(sum(x.abs().sum() for x in t.values()))})
    total = sum(t.numel() for t in init.values())
    expected = np.array(pr.remaining_counts(total, 0.2, 4)) / total
    assert np.allclose([float(r) for r in res.remaining], expected)
    for k, (start, masks) in enumerate(zip(seen, res.masks)):
        for n in init:
            assert torch.equal(start[n][masks[n]], init[n][masks[n]])  # exact rewind to theta_0
            assert bool((start[n][~masks[n]] == 0).all())
            assert bool((res.trained[k][n][~masks[n]] == 0).all())
    assert len(res.metrics) == 5
    for k in range(5):  # evaluate saw each round's trained weights
        assert res.metrics[k]["norm"] == pytest.approx(float(sum(x.abs().sum() for x in res.trained[k].values())))


def test_run_imp_catches_training_that_revives_pruned_weights():
    init = _ticket(4)
    with pytest.raises(RuntimeError, match="pruned weights"):
        pr.run_imp(init, lambda s, m, k: {n: t + 1.0 for n, t in s.items()}, rounds=2)


def test_unprunable_tensors_keep_full_masks():
    init = _ticket(5)
    res = pr.run_imp(init, lambda s, m, k: s, rounds=3, prunable={"a": True, "b": False}, scope="layer")
    assert bool(res.masks[-1]["b"].all())
    assert int(res.masks[-1]["a"].sum()) == pr.remaining_counts(35, 0.2, 3)[3]
    assert float(res.remaining[-1]) == pytest.approx(pr.remaining_counts(35, 0.2, 3)[3] / 35)


def test_bad_inputs():
    w = _ticket()
    m = {n: torch.ones_like(t, dtype=torch.bool) for n, t in w.items()}
    with pytest.raises(ValueError, match="scope"):
        pr.magnitude_prune(w, m, 0.2, "neuron")
    with pytest.raises(ValueError, match="bool"):
        pr.magnitude_prune(w, {n: t.double() for n, t in m.items()}, 0.2)
    with pytest.raises(ValueError, match="same tensors"):
        pr.magnitude_prune(w, {"a": m["a"]}, 0.2)
    with pytest.raises(ValueError, match="rate"):
        pr.magnitude_prune(w, m, 0.0)


def test_magnitude_prune_on_empty_input_says_so():
    import torch

    with pytest.raises(ValueError, match="at least one tensor"):
        pr.magnitude_prune({}, {}, 0.2)
    with pytest.raises(ValueError, match="no entries"):
        pr.magnitude_prune({"w": torch.zeros(0)}, {"w": torch.zeros(0, dtype=torch.bool)}, 0.2)
