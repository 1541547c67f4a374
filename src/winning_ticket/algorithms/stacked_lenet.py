r"""Several LeNet-5 networks trained as one computation: stacked parameters, one optimizer step for all.

The IMP-on-MNIST chapter trains, at every pruning round, the winning ticket and its two controls
(the same mask with a fresh initialization, a random mask at the same layer-wise sparsity) on the
same minibatches.  Here their parameters are *stacked*: every tensor of
:class:`~winning_ticket.algorithms.networks.LeNet5` gets a leading dimension ``S`` (one index per
network), and

* :func:`forward` evaluates all ``S`` networks on a shared minibatch (or one minibatch each);
* :class:`StackedAdam` is PyTorch's Adam (with L2 weight decay, as ``torch.optim.Adam``) written
  once for the stacked tensors, so one step updates every network;
* :func:`train_stacked` is the reference repository's training loop (Adam, batch 60, pruned weights
  held at zero by their masks) for all ``S`` networks at once, with checkpoints at fixed fractions
  of an epoch for early stopping.

Speed.  On one CPU thread these networks are too small for PyTorch's grouped convolutions (a
grouped or wider convolution is 2-8 times *slower* per network than ``S`` separate ones in the
oneDNN build measured here), so the two convolutions run once per network; everything else (the
three fully connected layers as batched matrix products, the loss, masking, Adam) runs once for
all.  ``F.max_pool2d`` followed by ``torch.relu`` costs about 2 ms forward and backward on a
60-image batch of the first layer (a slow CPU path of this build); :func:`pool_relu` does both in
one compiled pass (:func:`~winning_ticket.algorithms.pooling.pool_relu_forward`, about 4 times
faster) with ``max_pool2d``'s tie-breaking and ReLU's handling of NaN, so its values and gradients
are the same to the bit (tested).
Evaluation uses batches of 100 images: the first convolution is 4 times slower per image at 1000.
``benchmarks/bench_lenet.py`` measures the whole against the plain loop.

Equivalence.  Network ``s`` of a stack computes what it would compute alone (``S = 1``): the
convolutions are the same calls on the same shapes, the batched products and Adam treat each
index independently (tested bit for bit).  Against the plain ``nn.Module`` + ``torch.optim.Adam``
loop (:func:`train_reference`) the results agree to float32 rounding (the matrix products are
reassociated), which training then amplifies slowly (tested after a few dozen steps).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..experiments.validation import check_int, check_real
from . import pooling
from .networks import LeNet5

NAMES = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
         "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias")
"""The parameters of :class:`~winning_ticket.algorithms.networks.LeNet5`, in its order."""
WEIGHTS = tuple(n for n in NAMES if n.endswith("weight"))
"""The prunable tensors (biases are never pruned)."""

Stack = dict[str, torch.Tensor]


def default_device() -> torch.device:
    """``$WT_DEVICE`` if set, else CUDA when available, else the CPU: the convention of
    :func:`~winning_ticket.algorithms.engine.default_device`, kept here so that the MNIST chapter
    does not depend on the engine's modules."""
    name = os.environ.get("WT_DEVICE", "").strip()
    if name:
        try:
            return torch.device(name)
        except (RuntimeError, TypeError):
            raise ValueError(f"WT_DEVICE = {name!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def flops_per_image() -> dict[str, int]:
    """Floating-point operations of one LeNet-5 image: ``forward``, ``train`` (forward, backward and
    the weight gradients; the input image needs no gradient) and ``eval`` (forward only).

    A multiply-add counts 2.  Forward: conv1 117,600 multiply-adds, conv2 240,000, the fully
    connected layers 58,920: 833,040 flops.  Backward: every layer's weight gradient (as many
    flops as its forward) and every layer's input gradient except conv1's.
    """
    conv1 = 6 * 28 * 28 * 25
    conv2 = 16 * 10 * 10 * 150
    fc = 400 * 120 + 120 * 84 + 84 * 10
    fwd = 2 * (conv1 + conv2 + fc)
    return {"forward": fwd, "train": fwd + fwd + 2 * (conv2 + fc), "eval": fwd}


class _PoolReLU(torch.autograd.Function):
    """``relu(max_pool2d(x, 2))`` by the compiled kernels of :mod:`~winning_ticket.algorithms.pooling`."""

    @staticmethod
    def forward(ctx, x):
        shape = x.shape
        flat = x.detach().reshape(-1, *shape[-2:]).contiguous().numpy()
        out, idx = pooling.pool_relu_forward(flat)
        ctx.save_for_backward(torch.from_numpy(idx))
        ctx.in_shape = shape
        return torch.from_numpy(out).reshape(*shape[:-2], shape[-2] // 2, shape[-1] // 2)

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        shape = ctx.in_shape
        flat = (int(idx.shape[0]), int(shape[-2]), int(shape[-1]))
        grad = pooling.pool_relu_backward(g.reshape(idx.shape).contiguous().numpy(), idx.numpy(), flat)
        return torch.from_numpy(grad).reshape(shape)


def pool_relu(x: torch.Tensor) -> torch.Tensor:
    """``torch.relu(F.max_pool2d(x, 2))`` for float32 CPU tensors with even spatial sizes, in one pass
    (gradients too; ties go where ``max_pool2d`` sends them).  Falls back to the torch operations
    where the compiled kernel cannot run (other devices or dtypes, numba missing)."""
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"pool_relu needs even spatial sizes, got {tuple(x.shape[-2:])}")
    if x.device.type != "cpu" or x.dtype != torch.float32 or not pooling.available():
        return torch.relu(F.max_pool2d(x, 2))
    return _PoolReLU.apply(x)


def stack(states: list[Mapping[str, torch.Tensor]]) -> Stack:
    """Stack ``S`` LeNet-5 state dicts (parameter name -> tensor) into one: every tensor gets a leading ``S``."""
    if not states:
        raise ValueError("stack needs at least one network")
    for i, s in enumerate(states):
        if set(s) != set(NAMES):
            raise ValueError(f"network {i} has parameters {sorted(s)}; a LeNet-5 has {list(NAMES)}")
    return {n: torch.stack([s[n].detach() for s in states]).contiguous() for n in NAMES}


def unstack(params: Stack) -> list[dict[str, torch.Tensor]]:
    """The ``S`` state dicts of a stack (copies)."""
    S = params[NAMES[0]].shape[0]
    return [{n: params[n][s].detach().clone() for n in NAMES} for s in range(S)]


def forward(params: Stack, x: torch.Tensor) -> torch.Tensor:
    """Logits ``(S, B, 10)`` of the ``S`` stacked networks.

    ``x`` is ``(B, 784)`` (one minibatch shared by all networks) or ``(S, B, 784)`` (one each),
    standardized pixels.  The architecture is read from the shapes: :class:`~winning_ticket.algorithms.networks.LeNet5`
    (5x5 first convolution) or :class:`~winning_ticket.algorithms.networks.Conv2Net` (3x3).
    """
    S = params["conv1.weight"].shape[0]
    if x.dim() == 2:
        xs = [x] * S
    elif x.dim() == 3 and x.shape[0] == S:
        xs = list(x)
    else:
        raise ValueError(f"x must be (B, 784) or ({S}, B, 784), got {tuple(x.shape)}")
    lenet = params["conv1.weight"].shape[-1] == 5
    feats = []
    for s in range(S):
        h = xs[s].reshape(-1, 1, 28, 28)
        if lenet:  # conv 5x5 (pad 2) - pool - ReLU - conv 5x5 - pool - ReLU
            h = pool_relu(F.conv2d(h, params["conv1.weight"][s], params["conv1.bias"][s], padding=2))
            h = pool_relu(F.conv2d(h, params["conv2.weight"][s], params["conv2.bias"][s]))
        else:  # Conv-2: conv 3x3 - ReLU - conv 3x3 - pool - ReLU (all padded)
            h = torch.relu(F.conv2d(h, params["conv1.weight"][s], params["conv1.bias"][s], padding=1))
            h = pool_relu(F.conv2d(h, params["conv2.weight"][s], params["conv2.bias"][s], padding=1))
        feats.append(h.flatten(1))
    h = torch.stack(feats)  # (S, B, features)
    for layer in ("fc1", "fc2"):
        h = torch.relu(torch.baddbmm(params[f"{layer}.bias"].unsqueeze(1), h,
                                     params[f"{layer}.weight"].transpose(1, 2)))
    return torch.baddbmm(params["fc3.bias"].unsqueeze(1), h, params["fc3.weight"].transpose(1, 2))


def select(params: Stack, index) -> Stack:
    """The sub-stack of the networks at ``index`` (an int keeps a stack of one)."""
    if isinstance(index, int):
        index = slice(index, index + 1)
    return {n: p[index] for n, p in params.items()}


class StackedAdam:
    """``torch.optim.Adam`` (L2 weight decay added to the gradient, bias-corrected moments) on stacked tensors.

    The arithmetic is PyTorch's single-tensor Adam applied to each stacked tensor once; every
    operation is elementwise, so network ``s`` is updated exactly as it would be alone in a stack
    of one.  One difference from ``torch.optim.Adam`` 2.13: the bias correction's square root is
    ``math.sqrt`` where torch computes ``** 0.5``; the two differ in the last bit at about 0.4% of
    the steps (the chapter's archive was made this way, so it stays; the test against torch's Adam
    allows 1e-7).
    """

    def __init__(self, params: Stack, lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = params
        self.lr = check_real("lr", lr, 0.0, low_open=True)
        self.weight_decay = check_real("weight_decay", weight_decay, 0.0)
        self.beta1, self.beta2 = (check_real("betas", b, 0.0, 1.0, high_open=True) for b in betas)
        self.eps = check_real("eps", eps, 0.0, low_open=True)
        self.exp_avg = {n: torch.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in params.items()}
        self.steps = 0

    @torch.no_grad()
    def step(self, grads: Mapping[str, torch.Tensor]) -> None:
        """One update of every network from its gradients (``grads[name]`` stacked like the parameters)."""
        self.steps += 1
        bias1 = 1 - self.beta1 ** self.steps
        bias2_sqrt = math.sqrt(1 - self.beta2 ** self.steps)
        step_size = self.lr / bias1
        for n, p in self.params.items():
            g = grads[n]
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            self.exp_avg[n].lerp_(g, 1 - self.beta1)
            self.exp_avg_sq[n].mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (self.exp_avg_sq[n].sqrt() / bias2_sqrt).add_(self.eps)
            p.addcdiv_(self.exp_avg[n], denom, value=-step_size)


@dataclass
class Checkpoint:
    """What :func:`train_stacked` hands to its ``checkpoint`` callback: the position in training
    (``epoch`` counted in fractions, ``step`` in minibatches) and the current stacked parameters."""

    epoch: float
    step: int
    params: Stack


def checkpoint_steps(n: int, batch_size: int, epochs: int, per_epoch: int) -> list[int]:
    """The minibatch counts after which :func:`train_stacked` checkpoints: ``per_epoch`` evenly spaced
    points in every epoch, the last at the epoch's end."""
    steps = math.ceil(n / batch_size)
    per_epoch = check_int("per_epoch", per_epoch, 1, steps)
    return [e * steps + math.ceil(k * steps / per_epoch) for e in range(epochs) for k in range(1, per_epoch + 1)]


def train_stacked(
    params: Stack,
    masks: Mapping[str, torch.Tensor],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    generator: torch.Generator,
    checkpoint: Callable[[Checkpoint], None] | None = None,
    per_epoch: int = 1,
) -> Stack:
    """Train ``S`` stacked LeNet-5 networks on the same minibatches; returns the trained stack (a copy).

    * ``params``: stacked initial parameters (not modified); ``masks``: stacked bool masks of the
      prunable tensors (:data:`WEIGHTS`), ``True`` = kept; pruned weights must be 0 in ``params``.
    * Each epoch draws one permutation from ``generator`` (shared by the ``S`` networks), then
      Adam steps on minibatches of ``batch_size`` (the last one smaller), cross-entropy averaged
      over the minibatch, gradients of pruned weights zeroed and the weights re-masked after every
      step (so they stay exactly 0).
    * ``checkpoint`` is called ``per_epoch`` times per epoch (:func:`checkpoint_steps`).
    """
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    n = check_int("training set size", len(X), 1)
    if len(y) != n:
        raise ValueError(f"X has {n} rows, y has {len(y)}")
    if set(masks) != set(WEIGHTS):
        raise ValueError(f"masks must name {list(WEIGHTS)}, got {sorted(masks)}")
    for name in WEIGHTS:
        if masks[name].shape != params[name].shape or masks[name].dtype != torch.bool:
            raise ValueError(f"mask {name!r} must be a bool tensor of shape {tuple(params[name].shape)}")
        if bool((params[name][~masks[name]] != 0).any()):
            raise ValueError(f"{name!r}: pruned weights must start at 0")
    at = set(checkpoint_steps(n, batch_size, epochs, per_epoch)) if checkpoint is not None else set()
    steps_per_epoch = math.ceil(n / batch_size)
    device = X.device  # the networks train where the data are (results come back to the CPU)
    P = {k: v.detach().to(device, copy=True).requires_grad_() for k, v in params.items()}
    fmask = {k: masks[k].to(device=device, dtype=P[k].dtype) for k in WEIGHTS}
    opt = StackedAdam({k: v for k, v in P.items()}, lr, weight_decay)
    S = P[NAMES[0]].shape[0]
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        for s in range(0, n, batch_size):
            b = perm[s:s + batch_size]
            logits = forward(P, X[b])
            # each network's own mean loss; their sum has each network's gradient as its own part
            loss = F.cross_entropy(logits.reshape(-1, 10), y[b].repeat(S), reduction="sum") / len(b)
            grads = dict(zip(P, torch.autograd.grad(loss, list(P.values()))))
            for k in WEIGHTS:
                grads[k].mul_(fmask[k])
            opt.step(grads)
            with torch.no_grad():
                for k in WEIGHTS:
                    P[k].mul_(fmask[k])
            step += 1
            if step in at:
                checkpoint(Checkpoint(epoch=step / steps_per_epoch, step=step,
                                      params={k: v.detach() for k, v in P.items()}))
    return {k: v.detach().to("cpu", copy=True) for k, v in P.items()}


@torch.no_grad()
def evaluate(params: Stack, X: torch.Tensor, y: torch.Tensor, batch_size: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Per network: (mean cross-entropy, accuracy) on all of ``X`` (float64 CPU tensors of length ``S``),
    computed on ``X``'s device.

    Batches of 100: the first convolution runs 4 times slower per image at 1000 (cache misses).
    """
    S = params[NAMES[0]].shape[0]
    params = {n: p.to(X.device) for n, p in params.items()}
    loss = torch.zeros(S, dtype=torch.float64, device=X.device)
    correct = torch.zeros(S, dtype=torch.float64, device=X.device)
    for s in range(0, len(X), batch_size):
        logits = forward(params, X[s:s + batch_size])  # (S, b, 10)
        yb = y[s:s + batch_size]
        loss += F.cross_entropy(logits.transpose(1, 2), yb.expand(S, -1), reduction="none").double().sum(1)
        correct += (logits.argmax(-1) == yb).double().sum(1)
    return (loss / len(X)).cpu(), (correct / len(X)).cpu()


def train_reference(
    state: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    generator: torch.Generator,
    max_steps: int | None = None,
    arch: type[nn.Module] = LeNet5,
) -> dict[str, torch.Tensor]:
    """The plain loop for one network: ``nn.Module`` (``arch``, LeNet-5 by default), ``torch.optim.Adam``, ``max_pool2d``.

    What :func:`train_stacked` computes for each of its networks, written the obvious way (the
    reference repository's loop with its gradient-freezing bug fixed); tests compare the two.
    """
    model = arch()
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(state[n])
    named = dict(model.named_parameters())
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    fmask = {k: masks[k].to(named[k].dtype) for k in WEIGHTS}
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=generator)
        for s in range(0, len(X), batch_size):
            if max_steps is not None and step >= max_steps:
                break
            b = perm[s:s + batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(model(X[b]), y[b]).backward()
            for k in WEIGHTS:
                named[k].grad.mul_(fmask[k])
            opt.step()
            with torch.no_grad():
                for k in WEIGHTS:
                    named[k].mul_(fmask[k])
            step += 1
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@dataclass
class EarlyStopping:
    """What :func:`train_early_stopping` returns for ``S`` networks trained together.

    * ``epoch``: ``(C,)`` the checkpoints' positions in epochs (fractions, the last one = ``epochs``);
    * ``val_loss``, ``val_accuracy``: ``(C, S)`` on the validation set at every checkpoint;
    * ``test_accuracy``: ``(E, S)`` on the test set at the end of every epoch;
    * ``stop``: ``(S,)`` index of each network's early-stopping checkpoint (the first minimum of
      its validation loss; the last checkpoint if the loss was never finite);
    * ``stop_test_accuracy``: ``(S,)`` test accuracy at that checkpoint;
    * ``trained``: the stack after the last step (what IMP prunes).
    """

    epoch: torch.Tensor
    val_loss: torch.Tensor
    val_accuracy: torch.Tensor
    test_accuracy: torch.Tensor
    stop: torch.Tensor
    stop_test_accuracy: torch.Tensor
    trained: Stack


def train_early_stopping(
    params: Stack,
    masks: Mapping[str, torch.Tensor],
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    per_epoch: int = 2,
    **train_kwargs,
) -> EarlyStopping:
    """Frankle & Carbin's protocol for ``S`` networks at once: train (:func:`train_stacked`), score
    the validation set ``per_epoch`` times per epoch, stop (in hindsight) at the minimum validation
    loss and report the test accuracy there; the test set is also scored at every epoch's end
    (the reference repository reports the best of those).  The validation set never touches training."""
    epochs = check_int("epochs", train_kwargs.get("epochs", 0), 1)
    positions, vloss, vacc, test_acc = [], [], [], []
    steps_per_epoch = math.ceil(len(train[0]) / check_int("batch_size", train_kwargs.get("batch_size", 0), 1))
    best_loss: torch.Tensor | None = None
    best: dict[int, Stack] = {}  # network -> its parameters at its best mid-epoch checkpoint so far

    def checkpoint(c: Checkpoint) -> None:
        nonlocal best_loss
        loss, acc = evaluate(c.params, *validation)
        positions.append(c.epoch)
        vloss.append(loss)
        vacc.append(acc)
        at_epoch_end = c.step % steps_per_epoch == 0
        if at_epoch_end:
            test_acc.append(evaluate(c.params, *test)[1])
        finite = torch.where(torch.isfinite(loss), loss, torch.full_like(loss, math.inf))
        better = finite < best_loss if best_loss is not None else torch.isfinite(finite)
        best_loss = finite if best_loss is None else torch.minimum(best_loss, finite)
        for s in torch.nonzero(better).flatten().tolist():  # a new first minimum: keep what the test needs
            if at_epoch_end:
                best.pop(s, None)  # scored with the epoch's test accuracy already
            else:
                best[s] = {n: p.clone() for n, p in select(c.params, s).items()}

    trained = train_stacked(params, masks, *train, checkpoint=checkpoint, per_epoch=per_epoch, **train_kwargs)
    val_loss = torch.stack(vloss)
    S = val_loss.shape[1]
    finite = torch.where(torch.isfinite(val_loss), val_loss, torch.full_like(val_loss, math.inf))
    stop = torch.tensor([int(torch.argmin(finite[:, s])) if bool(torch.isfinite(finite[:, s]).any())
                         else len(positions) - 1 for s in range(S)])
    per = len(positions) // epochs
    stop_test = torch.empty(S, dtype=torch.float64)
    for s in range(S):
        c = int(stop[s])
        if (c + 1) % per == 0:  # an epoch's end: already scored
            stop_test[s] = test_acc[(c + 1) // per - 1][s]
        else:
            stop_test[s] = evaluate(best[s], *test)[1][0]
    return EarlyStopping(torch.tensor(positions, dtype=torch.float64), val_loss, torch.stack(vacc),
                         torch.stack(test_acc), stop, stop_test, trained)
