"""Fixtures of the attacks tests: affine classifiers with exact answers and a trained digits CNN."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Affine:
    """An affine classifier z = W x + b with the exact minimal distances of its examples."""

    model: nn.Linear
    x: Tensor
    y: Tensor
    l2_min: Tensor  # min_j (z_y - z_j) / ||w_y - w_j||_2
    linf_min: Tensor  # min_j (z_y - z_j) / ||w_y - w_j||_1
    bounds: tuple[float, float]


def make_affine(kind: str, *, d: int = 12, k: int = 4, b: int = 32, seed: int = 0) -> Affine:
    """Affine classifiers in float64 on which gradient attacks have an exact answer.

    ``binary``: random W with two classes. ``blocks``: k classes, each reading its own block of
    features with weight 1, so ||w_y - w_j|| is the same for every pair and the closest
    boundary (L2 and Linf) is the one of the runner-up class. For a general multi-class affine
    model the CW objective and the cross-entropy ascent are non-convex (z_y - max_j z_j is
    concave), so no gradient attack is guaranteed to find the global minimum there.
    """
    g = torch.Generator().manual_seed(seed)
    if kind == "binary":
        lin = nn.Linear(d, 2).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(2, d, generator=g, dtype=torch.float64))
            lin.bias.copy_(0.3 * torch.randn(2, generator=g, dtype=torch.float64))
    elif kind == "blocks":
        lin = nn.Linear(d, k).double()
        w = torch.zeros(k, d, dtype=torch.float64)
        m = d // k
        for c in range(k):
            w[c, c * m : (c + 1) * m] = 1.0
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(0.1 * torch.randn(k, generator=g, dtype=torch.float64))
    else:
        raise ValueError(kind)
    x = 0.3 + 0.4 * torch.rand(b, d, generator=g, dtype=torch.float64)
    with torch.no_grad():
        z = lin(x)
    y = z.argmax(dim=1)
    w = lin.weight.detach()
    diff = w[y][:, None, :] - w[None, :, :]
    margin = z.gather(1, y[:, None]) - z
    own = torch.nn.functional.one_hot(y, w.shape[0]).bool()
    l2_min = (margin / diff.norm(dim=2)).masked_fill(own, float("inf")).amin(dim=1)
    linf_min = (margin / diff.abs().sum(dim=2)).masked_fill(own, float("inf")).amin(dim=1)
    return Affine(lin, x, y, l2_min, linf_min, (0.0, 1.0))


@pytest.fixture(scope="session")
def affine_binary() -> Affine:
    return make_affine("binary")


@pytest.fixture(scope="session")
def affine_blocks() -> Affine:
    return make_affine("blocks")


class DigitsCNN(nn.Module):
    """A small CNN for the 8x8 scikit-learn digits (with BatchNorm and Dropout)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(32 * 4, 10))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(self.features(x))
        return out


@dataclass(frozen=True)
class Digits:
    model: nn.Module
    x: Tensor  # correctly classified test images (N, 1, 8, 8) in [0, 1]
    y: Tensor
    accuracy: float


@pytest.fixture(scope="session")
def digits() -> Digits:
    """A CNN trained for a few seconds on scikit-learn's digits; test images it gets right."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x_all = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    y_all = torch.tensor(data.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y_all), generator=g)
    train, test = perm[:1400], perm[1400:]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(12):
            order = train[torch.randperm(len(train), generator=g)]
            for i in range(0, len(order), 64):
                idx = order[i : i + 64]
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
                loss.backward()
                opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        pred = model(x_all[test]).argmax(dim=1)
    correct = pred == y_all[test]
    acc = float(correct.float().mean())
    keep = test[correct][:96]
    return Digits(model, x_all[keep], y_all[keep], acc)
