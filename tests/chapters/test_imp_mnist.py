"""LeNet-5 IMP on MNIST: model shapes, per-layer pruning rates, masks through training, exact rewinding.

Uses random images in place of MNIST (the loader is replaced), so no data download is needed.
"""

import numpy as np
import pytest
import torch

from winning_ticket.chapters import imp_mnist as im
from winning_ticket.algorithms import networks as models, pruning
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
    data = {"train_images": rng.integers(0, 256, (300, 28, 28)).astype(np.uint8),
            "train_labels": (np.arange(300) % 10).astype(np.uint8),
            "test_images": rng.integers(0, 256, (50, 28, 28)).astype(np.uint8),
            "test_labels": (np.arange(50) % 10).astype(np.uint8)}
    monkeypatch.setattr(im, "load_mnist", lambda: data)
    return data


def test_imp_round_trip_keeps_masks_rewinds_and_prunes_exactly(fake_mnist, monkeypatch):
    seen = []
    real_run_imp = pruning.run_imp

    def spy(init, train, *args, **kwargs):
        def wrapped(start, masks, k):
            trained = train(start, masks, k)
            seen.append((init, {n: t.clone() for n, t in start.items()}, masks, trained))
            return trained
        return real_run_imp(init, wrapped, *args, **kwargs)

    monkeypatch.setattr(im, "run_imp", spy)
    params = dict(arch="lenet5", N=100, rounds=3, rate=0.2, epochs=1, lr=1.2e-3, weight_decay=1e-4, batch_size=20,
                  n_test=50)
    rows = im.imp_mnist_task(params, [seed_sequence(5, 0)], [0])
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    for k, (init, start, masks, trained) in enumerate(seen):
        for n in init:
            if n.endswith("weight"):
                size = init[n].numel()
                assert int(masks[n].sum()) == pruning.remaining_counts(size, 0.2, k)[k]  # per-layer exact rate
                assert torch.equal(start[n][masks[n]], init[n][masks[n]])  # survivors exactly rewound
                assert bool((start[n][~masks[n]] == 0).all()) and bool((trained[n][~masks[n]] == 0).all())
                assert not torch.equal(trained[n][masks[n]], start[n][masks[n]])  # survivors did train
            else:
                assert bool(masks[n].all()) and torch.equal(start[n], init[n])  # biases rewound, never pruned
    for r in rows:
        assert 0.0 <= r["final_accuracy"] <= r["best_accuracy"] <= 1.0
    expected = {n: pruning.remaining_counts(t.numel(), 0.2, 3)[3] / t.numel() for n, t in seen[0][0].items()
                if n.endswith("weight")}
    assert rows[-1]["kept_fc3.weight"] == pytest.approx(expected["fc3.weight"])  # the output layer is pruned too


def test_task_is_deterministic(fake_mnist):
    params = dict(arch="lenet5", N=60, rounds=1, rate=0.2, epochs=1, lr=1.2e-3, weight_decay=1e-4, batch_size=30,
                  n_test=50)
    a = im.imp_mnist_task(params, [seed_sequence(9, 1)], [0])
    b = im.imp_mnist_task(params, [seed_sequence(9, 1)], [0])
    assert a == b


def test_config_validation():
    with pytest.raises(ValueError, match="arch"):
        im.MNISTIMPConfig(arch="resnet")
    with pytest.raises(ValueError, match="n_test"):
        im.MNISTIMPConfig(n_test=20_000)


def test_claims_on_synthetic_curves():
    import pandas as pd

    rows = []
    for N, base in ((1000, 0.90), (2000, 0.93)):
        for k, bump in enumerate([0.0, 0.01, 0.02, 0.01, -0.05]):
            rows.append(dict(N=N, trial=0, round=k, remaining=100 * 0.8**k, best_accuracy=base + bump,
                             final_accuracy=base + bump - 0.002, best_epoch=1))
    res = im.MNISTIMPResult(config=im.MNISTIMPConfig(N_values=(1000, 2000), rounds=4), runs=pd.DataFrame(rows), computed=1, cached=0)
    assert all(c.holds for c in im.check_claims(res))
    rows[7]["best_accuracy"] = 0.80  # N = 2000 worse than N = 1000 at one round
    res.runs = pd.DataFrame(rows)
    assert not im.check_claims(res)[2].holds
