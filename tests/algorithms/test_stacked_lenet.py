"""The stacked LeNet-5 trainer: each network of a stack computes what it computes alone (bit for bit),
and what the plain nn.Module + torch.optim.Adam loop computes (to float32 rounding)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from winning_ticket.algorithms import pooling
from winning_ticket.algorithms import stacked_lenet as sl
from winning_ticket.algorithms.networks import Conv2Net, LeNet5, reference_init

pytestmark = pytest.mark.skipif(not pooling.available(), reason="numba missing")


def _state(seed, arch=LeNet5):
    model = reference_init(arch(), torch.Generator().manual_seed(seed))
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _ones(params):
    return {k: torch.ones_like(params[k], dtype=torch.bool) for k in sl.WEIGHTS}


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(240, 784, generator=g)
    X[:, :100] = -0.4242  # a constant border, as in MNIST: ties inside the pooling windows
    return X, torch.randint(0, 10, (240,), generator=g)


def test_flops_per_image():
    f = sl.flops_per_image()
    assert f["forward"] == 2 * (117_600 + 240_000 + 58_920)
    assert f["eval"] == f["forward"] and f["forward"] < f["train"] < 3 * f["forward"]


@pytest.mark.parametrize("shape", [(7, 6, 28, 28), (2, 3, 16, 10, 10)])
def test_pool_relu_equals_max_pool_then_relu_with_ties_and_nan(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g)
    x[..., :4, :6] = 0.25  # ties
    x[..., 4:6, 6:8] = -1.0  # a window with a negative tie: the ReLU blocks it
    x.view(-1)[5] = float("nan")  # a diverged value: passed on, and its gradient too (as torch's ReLU does)
    x.view(-1)[60] = -float("inf")
    g_out = torch.randn(*shape[:-2], shape[-2] // 2, shape[-1] // 2, generator=g)
    a = x.clone().reshape(-1, *shape[-3:]).requires_grad_()
    b = x.clone().requires_grad_()
    ref = torch.relu(F.max_pool2d(a, 2))
    out = sl.pool_relu(b)
    assert torch.equal(torch.nan_to_num(ref.reshape(out.shape), 7.0), torch.nan_to_num(out.detach(), 7.0))
    ref.backward(g_out.reshape(ref.shape))
    out.backward(g_out)
    assert torch.equal(torch.nan_to_num(a.grad.reshape(shape), 7.0), torch.nan_to_num(b.grad, 7.0))


def test_pool_relu_propagates_nan():
    x = torch.randn(1, 2, 4, 4)
    x[0, 1, 2, 3] = float("nan")
    out = sl.pool_relu(x)
    assert bool(out[0, 1, 1, 1].isnan()) and int(out.isnan().sum()) == 1  # a diverged run stays visible


def test_pool_relu_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even"):
        sl.pool_relu(torch.zeros(1, 1, 5, 4))
    with pytest.raises(ValueError, match="float32"):
        pooling.pool_relu_forward(np.zeros((1, 4, 4)))


@pytest.mark.parametrize("arch", [LeNet5, Conv2Net])
def test_forward_matches_the_module(arch, data):
    X, _ = data
    states = [_state(s, arch) for s in (1, 2)]
    out = sl.forward(sl.stack(states), X[:16])
    for s, st in enumerate(states):
        m = arch()
        m.load_state_dict(st)
        torch.testing.assert_close(out[s], m(X[:16]), rtol=1e-5, atol=1e-5)
    own = sl.forward(sl.stack(states), torch.stack([X[:16], X[16:32]]))  # one minibatch per network
    assert torch.equal(own[0], out[0])
    assert torch.equal(own[1], sl.forward(sl.stack(states[1:]), X[16:32])[0])


def test_stack_checks_names_and_round_trips():
    st = _state(3)
    back = sl.unstack(sl.stack([st, st]))
    assert len(back) == 2 and all(torch.equal(back[1][n], st[n]) for n in sl.NAMES)
    with pytest.raises(ValueError, match="LeNet-5"):
        sl.stack([{"w": torch.zeros(1)}])
    with pytest.raises(ValueError, match="at least one"):
        sl.stack([])
    with pytest.raises(ValueError, match="x must be"):
        sl.forward(sl.stack([st]), torch.zeros(2, 3, 784))


def _train(states, masks, data, steps_epochs=1, **kw):
    X, y = data
    P = sl.stack(states)
    M = {k: torch.stack([m[k] for m in masks]) for k in sl.WEIGHTS}
    return sl.train_stacked(P, M, X, y, epochs=steps_epochs, lr=1.2e-3, weight_decay=1e-4, batch_size=60,
                            generator=torch.Generator().manual_seed(9), **kw)


def _pruned(st, seed, keep=0.6):
    g = torch.Generator().manual_seed(seed)
    masks = {k: torch.rand(st[k].shape, generator=g) < keep for k in sl.WEIGHTS}
    return {n: st[n] * masks[n] if n in masks else st[n] for n in st}, masks


def test_a_network_trains_alike_alone_and_in_a_stack(data):
    """The batching invariance the chapter's determinism rests on: bit for bit."""
    (a, ma), (b, mb), (c, mc) = _pruned(_state(4), 1), _pruned(_state(5), 2), _pruned(_state(6), 3, 0.3)
    together = _train([a, b, c], [ma, mb, mc], data, steps_epochs=2)
    alone = _train([b], [mb], data, steps_epochs=2)
    assert all(torch.equal(together[n][1], alone[n][0]) for n in sl.NAMES)
    assert not torch.equal(together["fc1.weight"][0], together["fc1.weight"][1])


def test_stacked_training_agrees_with_the_plain_loop(data):
    """Against nn.Module + torch.optim.Adam + max_pool2d: the same arithmetic up to float32
    reassociation in the matrix products (observed 1e-7 after one epoch of 4 steps; the bound
    leaves room for the amplification by training)."""
    X, y = data
    st, masks = _pruned(_state(7), 4)
    stacked = _train([st], [masks], data)
    plain = sl.train_reference(st, masks, X, y, epochs=1, lr=1.2e-3, weight_decay=1e-4, batch_size=60,
                               generator=torch.Generator().manual_seed(9))
    for n in sl.NAMES:
        torch.testing.assert_close(stacked[n][0], plain[n], rtol=0, atol=2e-5)
        if n in masks:
            assert bool((stacked[n][0][~masks[n]] == 0).all()) and bool((plain[n][~masks[n]] == 0).all())
    start = sl.stack([st])
    assert max(float((stacked[n] - start[n]).abs().max()) for n in sl.NAMES) > 1e-3  # it did train


def test_stacked_adam_is_torch_adam():
    g = torch.Generator().manual_seed(3)
    p = torch.randn(2, 5, 4, generator=g)
    grads = [torch.randn(2, 5, 4, generator=g) for _ in range(4)]
    ours = {"w": p.clone()}
    opt = sl.StackedAdam(ours, lr=1e-2, weight_decay=1e-3)
    theirs = [torch.nn.Parameter(p[i].clone()) for i in range(2)]
    topt = torch.optim.Adam(theirs, lr=1e-2, weight_decay=1e-3)
    for gr in grads:
        opt.step({"w": gr})
        for i in range(2):
            theirs[i].grad = gr[i].clone()
        topt.step()
    for i in range(2):
        torch.testing.assert_close(ours["w"][i], theirs[i].detach(), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="lr"):
        sl.StackedAdam(ours, lr=0.0)


def test_train_stacked_rejects_bad_input(data):
    X, y = data
    st = _state(1)
    P = sl.stack([st])
    with pytest.raises(ValueError, match="masks must name"):
        sl.train_stacked(P, {}, X, y, epochs=1, lr=1e-3, weight_decay=0, batch_size=60, generator=torch.Generator())
    bad = _ones(P)
    bad["fc1.weight"][0, 0, 0] = False  # pruned but not zero
    with pytest.raises(ValueError, match="start at 0"):
        sl.train_stacked(P, bad, X, y, epochs=1, lr=1e-3, weight_decay=0, batch_size=60, generator=torch.Generator())
    with pytest.raises(ValueError, match="epochs"):
        sl.train_stacked(P, _ones(P), X, y, epochs=0, lr=1e-3, weight_decay=0, batch_size=60, generator=torch.Generator())
    with pytest.raises(ValueError, match="rows"):
        sl.train_stacked(P, _ones(P), X, y[:10], epochs=1, lr=1e-3, weight_decay=0, batch_size=60,
                         generator=torch.Generator())


def test_checkpoint_steps():
    assert sl.checkpoint_steps(240, 60, 2, 2) == [2, 4, 6, 8]
    assert sl.checkpoint_steps(250, 60, 1, 2) == [3, 5]  # 5 steps per epoch, the last one smaller
    with pytest.raises(ValueError, match="per_epoch"):
        sl.checkpoint_steps(100, 60, 1, 3)


def test_early_stopping_picks_the_minimum_validation_loss(data, monkeypatch):
    X, y = data
    st = _state(2)
    P = sl.stack([st, st])
    losses = iter([[0.5, 0.9], [0.3, 0.8], [0.4, 0.7], [0.2, float("nan")]])  # per checkpoint, per network
    real = sl.evaluate
    calls = []
    Xv, yv = X[:60].clone(), y[:60].clone()

    def fake(params, Xe, ye, batch_size=100):
        if Xe is Xv:  # the validation set: scripted losses
            loss = torch.tensor(next(losses), dtype=torch.float64)
            return loss, 1 - loss
        calls.append(params["fc1.weight"].shape[0])
        return real(params, Xe, ye, batch_size)

    monkeypatch.setattr(sl, "evaluate", fake)
    rec = sl.train_early_stopping(P, _ones(P), (X, y), (Xv, yv), (X[60:120], y[60:120]), per_epoch=2,
                                  epochs=2, lr=1e-3, weight_decay=0.0, batch_size=60,
                                  generator=torch.Generator().manual_seed(1))
    assert rec.epoch.tolist() == [0.5, 1.0, 1.5, 2.0]
    assert rec.stop.tolist() == [3, 2]  # network 1: NaN at the end is never the minimum
    assert rec.test_accuracy.shape == (2, 2)
    assert float(rec.stop_test_accuracy[0]) == float(rec.test_accuracy[1, 0])  # an epoch's end: reused
    assert calls == [2, 2, 1]  # two epoch ends, then network 1's mid-epoch checkpoint alone
    assert math.isfinite(float(rec.stop_test_accuracy[1]))


def test_default_device_reads_the_environment(monkeypatch):
    monkeypatch.setenv("WT_DEVICE", "cpu")
    assert sl.default_device() == torch.device("cpu")
    monkeypatch.setenv("WT_DEVICE", "tpu9")
    with pytest.raises(ValueError, match="WT_DEVICE"):
        sl.default_device()
