"""LeNet-5 IMP on MNIST: the unit of work (masks, rewinding, controls, validation split, seeds), the
claims' rules on tables where they hold, fail and cannot decide, and the audit of a unit's first rounds.

Uses random images in place of MNIST (the loader is replaced), so no data download is needed.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from winning_ticket import chapters
from winning_ticket.algorithms import networks as models, pruning
from winning_ticket.algorithms import stacked_lenet as sl
from winning_ticket.chapters import imp_mnist as im
from winning_ticket.experiments import archive
from winning_ticket.experiments.seeding import seed_sequence


def test_model_shapes_and_sizes():
    assert sum(p.numel() for p in models.LeNet5().parameters()) == 61_706
    assert sum(p.numel() for p in models.Conv2Net().parameters()) == 3_317_450
    for M in models.ARCHS.values():
        assert M()(torch.zeros(2, 784)).shape == (2, 10)


def test_reference_init_is_seeded_and_xavier():
    a = models.reference_init(models.LeNet5(), torch.Generator().manual_seed(1))
    b = models.reference_init(models.LeNet5(), torch.Generator().manual_seed(1))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    big = models.reference_init(models.Conv2Net(), torch.Generator().manual_seed(2))
    assert float(big.fc1.weight.detach().std()) == pytest.approx((2 / (12544 + 256)) ** 0.5, rel=0.02)
    assert float(big.fc1.bias.detach().std()) == pytest.approx(1.0, rel=0.2)  # N(0, 1) biases as in the reference


@pytest.fixture
def fake_mnist(monkeypatch):
    rng = np.random.default_rng(0)
    data = {"train_images": rng.integers(0, 256, (600, 28, 28)).astype(np.uint8),
            "train_labels": (np.arange(600) % 10).astype(np.uint8),
            "test_images": rng.integers(0, 256, (50, 28, 28)).astype(np.uint8),
            "test_labels": (np.arange(50) % 10).astype(np.uint8)}
    monkeypatch.setattr(im, "load_mnist", lambda: data)
    return data


PARAMS = dict(arch="lenet5", N=120, controls=True, rounds=3, rate=0.2, epochs=1, lr=1.2e-3, weight_decay=1e-4,
              batch_size=60, n_val=100, checkpoints=2, n_test=50, split_seed=7)


def test_validation_split_is_balanced_fixed_and_disjoint_from_training():
    labels = (np.arange(600) % 10).astype(np.uint8)
    val, rest = im.validation_split(labels, 100, seed=3)
    assert np.bincount(labels[val]).tolist() == [10] * 10
    assert np.array_equal(val, im.validation_split(labels, 100, seed=3)[0])
    assert not set(val) & set(rest) and len(val) + len(rest) == 600
    for t in range(3):
        idx = im.training_subset(labels, rest, 200, seed_sequence(1, t))
        assert not set(idx) & set(val) and len(set(idx)) == 200


def test_random_masks_keep_the_layerwise_counts():
    g = torch.Generator().manual_seed(0)
    masks = {"a": torch.rand(30, 20, generator=g) < 0.3, "b": torch.rand(50, generator=g) < 0.8}
    r = im.random_masks(masks, torch.Generator().manual_seed(1))
    assert all(int(r[n].sum()) == int(masks[n].sum()) for n in masks)
    assert not torch.equal(r["a"], masks["a"])


def test_a_unit_prunes_rewinds_and_trains_both_controls(fake_mnist, monkeypatch):
    seen = []
    real = sl.train_early_stopping

    def spy(params, masks, *args, **kwargs):
        rec = real(params, masks, *args, **kwargs)
        seen.append(({n: p.clone() for n, p in params.items()}, {n: m.clone() for n, m in masks.items()}, rec))
        return rec

    monkeypatch.setattr(im.sl, "train_early_stopping", spy)
    rows = im.imp_mnist_task(PARAMS, [seed_sequence(5, 0)], [0])
    assert [(r["round"], r["arm"]) for r in rows] == [(0, "ticket")] + [
        (k, arm) for k in (1, 2, 3) for arm in im.ARMS]
    theta0 = {n: p[0] for n, p in seen[0][0].items()}
    for k, (start, masks, rec) in enumerate(seen):
        assert start["conv1.weight"].shape[0] == (1 if k == 0 else 3)
        for n in sl.WEIGHTS:
            m = masks[n][0]
            assert int(m.sum()) == pruning.remaining_counts(m.numel(), 0.2, k)[k]  # per-layer exact rate
            assert torch.equal(start[n][0][m], theta0[n][m])  # the ticket: survivors exactly rewound
            assert bool((start[n][:2, ~m] == 0).all())  # ticket and reinit: pruned entries are 0
            assert bool((rec.trained[n][masks[n] == 0] == 0).all())  # pruned stay 0
            if k:
                assert torch.equal(masks[n][1], m)  # reinit: the ticket's mask ...
                assert not torch.equal(start[n][1][m], theta0[n][m])  # ... with a fresh initialization
                assert int(masks[n][2].sum()) == int(m.sum()) and not torch.equal(masks[n][2], m)  # random mask
                assert torch.equal(start[n][2][masks[n][2]], theta0[n][masks[n][2]])  # original init
                assert bool((start[n][2][~masks[n][2]] == 0).all())
        for n in ("fc1.bias", "conv2.bias"):
            assert torch.equal(start[n][0], theta0[n])  # biases rewound, never pruned
    for r in rows:
        assert 0.0 <= r["es_accuracy"] <= 1.0 and r["final_accuracy"] <= r["best_accuracy"]
        assert r["es_epoch"] in (0.5, 1.0) and not r["diverged"]
    last = [r for r in rows if r["round"] == 3 and r["arm"] == "ticket"][0]
    fc3 = pruning.remaining_counts(840, 0.2, 3)[3] / 840
    assert last["kept_fc3.weight"] == pytest.approx(fc3)  # the output layer is pruned too
    assert last["remaining"] == pytest.approx(im.remaining_by_round(im.MNISTIMPConfig(rounds=3))[3])


def test_a_unit_is_deterministic_and_its_seed_is_shared_across_sizes(fake_mnist):
    p = dict(PARAMS, rounds=1, controls=False)
    a = im.imp_mnist_task(p, [seed_sequence(9, 1)], [0])
    assert a == im.imp_mnist_task(p, [seed_sequence(9, 1)], [0])
    plans = im.sweeps(im.MNISTIMPConfig.for_profile("evidence"))
    assert plans[0].seed_keys == () and plans[0].audit_prefix == ("rounds", 1, "round")
    assert [t["N"] for t in plans[0].tasks][0] == 40_000  # the largest unit first


def test_config_validation():
    with pytest.raises(ValueError, match="arch"):
        im.MNISTIMPConfig(arch="resnet")
    with pytest.raises(ValueError, match="n_test"):
        im.MNISTIMPConfig(n_test=20_000)
    with pytest.raises(ValueError, match="control_N"):
        im.MNISTIMPConfig(N_values=(10_000,), control_N=(20_000,))
    with pytest.raises(ValueError, match="n_val"):
        im.MNISTIMPConfig(N_values=(55_000,), control_N=(), n_val=6_000)
    assert im.MNISTIMPConfig(N_values=(49_210,), control_N=()).n_val == 5_000
    with pytest.raises(ValueError, match="digit 5"):  # 5,421 fives, 500 of them in the validation set
        im.MNISTIMPConfig(N_values=(49_220,), control_N=())
    assert im.moderate_rounds(im.MNISTIMPConfig()) == [3, 4, 5, 6, 7]
    assert im.sparse_rounds(im.MNISTIMPConfig()) == [11, 12]
    assert im.sparse_rounds(im.MNISTIMPConfig(rounds=3)) == [2]  # round 3 (51%) is moderate, not over-pruned


def test_too_few_rounds_make_every_claim_inconclusive():
    res = _runs()
    res.config = res.config.replace(rounds=2)
    res.runs = res.runs[res.runs["round"] <= 2]
    claims = im.check_claims(res)
    assert {c.verdict for c in claims} == {"INCONCLUSIVE"} and len(claims) == len(im.CLAIM_STATEMENTS)
    assert "moderate band" in claims[0].statistic


def test_a_prefix_audit_needs_seeds_that_do_not_depend_on_the_prefix():
    from winning_ticket.experiments.chapter import SweepPlan

    with pytest.raises(ValueError, match="seed_keys"):
        SweepPlan("x", im.imp_mnist_task, (), 1, 0, audit_prefix=("rounds", 1, "round"))
    with pytest.raises(ValueError, match="seed_keys"):
        SweepPlan("x", im.imp_mnist_task, (), 1, 0, seed_keys=("rounds",), audit_prefix=("rounds", 1, "round"))


# --- the claims' rules -------------------------------------------------------------------------------


def _runs(seeds=5, Ns=(1000, 2000), controls=(1000,), bump=0.004, drop=-0.01, gap=0.01, ticket_edge=0.003,
          es_shift=-0.5, noise=0.001, seed=0):
    """A synthetic evidence table: dense accuracy 0.95 + gap per size, +bump in the moderate band,
    +drop at the sparsest rounds, controls ticket_edge below the ticket."""
    cfg = im.MNISTIMPConfig(N_values=Ns, control_N=controls, trials=seeds, epochs=5)
    rem = im.remaining_by_round(cfg)
    mid, sparse = im.moderate_rounds(cfg), im.sparse_rounds(cfg)
    rng = np.random.default_rng(seed)
    rows = []
    for i, N in enumerate(Ns):
        for t in range(seeds):
            base = 0.95 + gap * i + rng.normal(0, noise)
            for k in range(cfg.rounds + 1):
                shift = bump if k in mid else drop if k in sparse else 0.0
                arms = ("ticket",) + (("reinit", "random_mask") if (N in controls and k) else ())
                for arm in arms:
                    acc = base + shift + rng.normal(0, noise) - (ticket_edge if arm != "ticket" else 0.0)
                    rows.append(dict(N=N, trial=t, round=k, arm=arm, remaining=rem[k], es_accuracy=acc,
                                     best_accuracy=acc + 0.001, final_accuracy=acc,
                                     es_epoch=5.0 + (es_shift if k in mid and arm == "ticket" else 0.0)
                                     + rng.normal(0, 0.05)))
    return im.MNISTIMPResult(config=cfg, runs=pd.DataFrame(rows))


def _verdicts(result, metric="es_accuracy"):
    return {c.name: c.verdict for c in im.claims_for_metric(result, metric)}


def test_claims_hold_on_a_table_where_they_are_true():
    v = _verdicts(_runs())
    assert set(v.values()) == {"SUPPORTED"}, v
    assert set(_verdicts(_runs(), "best_accuracy").values()) == {"SUPPORTED"}


def test_claims_fail_on_a_table_where_they_are_false():
    v = _verdicts(_runs(bump=-0.004, drop=0.01, gap=-0.01, ticket_edge=-0.003, es_shift=0.5))
    assert set(v.values()) == {"NOT SUPPORTED"}, v


def test_claims_cannot_decide_with_too_few_seeds_or_no_effect():
    assert set(_verdicts(_runs(seeds=3)).values()) == {"INCONCLUSIVE"}
    v = _verdicts(_runs(bump=0.0, drop=0.0, gap=0.0, ticket_edge=0.0, es_shift=0.0, noise=0.003, seed=4))
    assert v["moderate-pruning-raises-accuracy"] == "INCONCLUSIVE"
    assert v["ticket-beats-reinit"] == "INCONCLUSIVE"
    one_round_wrong = _runs()
    r = one_round_wrong.runs
    r.loc[(r["N"] == 2000) & (r["round"] == 4), "es_accuracy"] -= 0.05  # 2000 below 1000 at one sparsity
    assert _verdicts(one_round_wrong)["more-data-higher-accuracy"] == "NOT SUPPORTED"


def test_claims_without_controls_say_so():
    v = {c.name: c for c in im.check_claims(_runs(controls=()))}
    assert v["ticket-beats-reinit"].verdict == "INCONCLUSIVE" and "control_N" in v["ticket-beats-reinit"].statistic
    with pytest.raises(ValueError, match="metric"):
        im.claims_for_metric(_runs(), "accuracy")


def test_figures_draw_from_a_result():
    import matplotlib.pyplot as plt

    res = _runs()
    for fn in im.CHAPTER.figures.values():
        plt.close(fn(res))
    table = im.paired_vs_dense(res)
    assert table.loc[(1000, 4), "mean"] == pytest.approx(0.004, abs=0.002) and table["seeds"].min() == 5


# --- archive and audit of a unit's first rounds ------------------------------------------------------


def test_audit_reexecutes_the_first_two_rounds(fake_mnist, tmp_path, monkeypatch):
    spec = chapters.get("imp_mnist")
    cfg = im.MNISTIMPConfig(N_values=(100, 120), control_N=(100,), rounds=2, epochs=1, n_val=100, n_test=50,
                            trials=1, workers=1, profile="smoke")
    result = spec.run(cfg, progress=False)
    archive.save(spec, result, root=tmp_path)
    seen = []
    real = archive._run_unit

    def spy(fn, params, *args, **kwargs):
        seen.append(params["rounds"])
        return real(fn, params, *args, **kwargs)

    monkeypatch.setattr(archive, "_run_unit", spy)
    assert archive.audit(spec, samples=5, root=tmp_path).ok
    assert seen == [1, 1]  # every unit, its first two rounds only
    quick = archive.audit(spec, samples=5, root=tmp_path, quick=True)
    assert quick.ok and quick.checked == 2
    runs = result.runs.copy()
    runs.loc[runs["round"] == 1, "es_accuracy"] += 1e-9  # a changed number in an audited round
    archive.save(spec, dataclasses.replace(result, runs=runs), root=tmp_path / "b")
    bad = archive.audit(spec, samples=5, root=tmp_path / "b")
    assert not bad.ok and any("es_accuracy" in m for m in bad.mismatches)
