"""Torch models for the MNIST chapters, their training loop, and an atomic cache of trained weights."""

from __future__ import annotations

import hashlib
import math
import json
import os
import tempfile
from pathlib import Path
import numpy as np
import torch
from torch import nn

from ..experiments.validation import check_int, check_real
from ..experiments.progress import progress_bar

DEFAULT_CACHE = Path(os.environ.get("WT_CACHE_DIR", Path(__file__).resolve().parents[2] / ".wt-cache"))
"""Where trained weights are cached (``$WT_CACHE_DIR``, default ``.wt-cache`` at the repository root)."""


class BiasFreeMLP(nn.Sequential):
    """Fully connected ReLU network without biases, ``784-500-10`` by default (Pensia et al.'s target)."""

    def __init__(self, widths: tuple[int, ...] = (784, 500, 10), generator: torch.Generator | None = None):
        """Layers of ``widths``; with ``generator`` the weights are drawn from it (torch's default
        ``nn.Linear`` initialization, layer by layer), so no global seed is needed."""
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b, bias=False))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)
        self.widths = tuple(widths)
        if generator is not None:
            with torch.no_grad():
                for m in self:
                    if isinstance(m, nn.Linear):
                        nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)

    def weight_matrices(self) -> list[np.ndarray]:
        """The weight matrices as float64 numpy arrays, input layer first."""
        return [m.weight.detach().cpu().numpy().astype(np.float64) for m in self if isinstance(m, nn.Linear)]


def train_classifier(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool | None = None,
) -> nn.Module:
    """SGD with momentum, weight decay and cosine annealing on cross-entropy; shuffles with ``seed``."""
    check_int("epochs", epochs, 1)
    check_real("lr", lr, 0.0, low_open=True)
    check_int("batch_size", batch_size, 1)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    steps = epochs * ((len(X) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    g = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    with progress_bar(total=steps, desc="training", enable=progress) as bar:
        for _ in range(epochs):
            perm = torch.randperm(len(X), generator=g)
            for s in range(0, len(X), batch_size):
                idx = perm[s:s + batch_size]
                opt.zero_grad()
                loss_fn(model(X[idx]), y[idx]).backward()
                opt.step()
                sched.step()
                if bar is not None:
                    bar.update(1)
    model.eval()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    """Fraction of correctly classified examples (all of them; no batch is dropped)."""
    model.eval()
    correct = 0
    for s in range(0, len(X), batch_size):
        correct += int((model(X[s:s + batch_size]).argmax(dim=1) == y[s:s + batch_size]).sum())
    return correct / len(X)


def cache_key(**params) -> str:
    """A short stable hash of JSON-serializable parameters."""
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_state_atomic(path: Path, state: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``{"state": ..., "meta": ...}`` to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"state": {k: v.detach().cpu() for k, v in state.items()}, "meta": meta}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The cached ``(state, meta)`` at ``path``, or ``None`` when there is none."""
    if not path.is_file():
        return None
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return blob["state"], blob["meta"]


class LeNet5(nn.Module):
    """The classic LeCun LeNet-5 for 28x28 inputs: conv 6 and 16 channels (5x5), then 120-84-10; 61,706 parameters.

    Conv(1->6, 5x5, pad 2) - ReLU - MaxPool 2 - Conv(6->16, 5x5) - ReLU - MaxPool 2 - FC 400->120 - ReLU -
    FC 120->84 - ReLU - FC 84->10 (ReLU and max pooling in place of the original tanh and subsampling).
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


class Conv2Net(nn.Module):
    """The network the reference IMP repository calls "LeNet5" for MNIST (3,317,450 parameters).

    Conv(1->64, 3x3, pad 1) - ReLU - Conv(64->64, 3x3, pad 1) - ReLU - MaxPool 2 - FC 12544->256 - ReLU -
    FC 256->256 - ReLU - FC 256->10: the Conv-2 network of the lottery-ticket paper adapted to 28x28.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc1 = nn.Linear(12544, 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 2)
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(torch.relu(self.fc2(x)))


ARCHS = {"lenet5": LeNet5, "conv2": Conv2Net}


def reference_init(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """The reference repository's initialization: Xavier-normal weights, N(0, 1) biases (seeded)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                fan_out = m.weight.shape[0] * m.weight[0, 0].numel() if m.weight.dim() > 2 else m.weight.shape[0]
                std = math.sqrt(2.0 / (fan_in + fan_out))
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * std)
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator))
    return model
