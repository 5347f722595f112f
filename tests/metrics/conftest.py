"""Fixtures of the metrics tests: hand-built models with known answers and a digits model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn


class Threshold1D(nn.Module):
    """Binary classifier on one input value: class 1 iff x > t (logits +-scale*(x - t))."""

    def __init__(self, t: float, scale: float = 10.0) -> None:
        super().__init__()
        self.t = t
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        s = (x.flatten(1).mean(1) - self.t) * self.scale
        return torch.stack([-s, s], dim=1)


class Sine1D(nn.Module):
    """Binary classifier whose class-1 score is sin(omega * x): not monotone, can leak labels."""

    def __init__(self, omega: float = 10 * math.pi) -> None:
        super().__init__()
        self.omega = omega

    def forward(self, x: Tensor) -> Tensor:
        s = torch.sin(self.omega * x.flatten(1)[:, 0]) * 5
        return torch.stack([-s, s], dim=1)


@pytest.fixture(scope="session")
def digits() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn digits as (x_train, y_train, x_test, y_test), images (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def train_digits_model(
    x: Tensor, y: Tensor, *, seed: int = 0, hidden: int = 64, epochs: int = 30, cnn: bool = False
) -> nn.Module:
    """A small undefended classifier trained on digits in about a second."""
    torch.manual_seed(seed)
    if cnn:
        model: nn.Module = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 16, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


@pytest.fixture(scope="session")
def digits_model(digits: tuple[Tensor, Tensor, Tensor, Tensor]) -> nn.Module:
    x, y, _, _ = digits
    return train_digits_model(x, y, epochs=15)


@pytest.fixture(scope="session")
def threshold() -> type[Threshold1D]:
    """The Threshold1D class (tests run with importmode=importlib: share through fixtures)."""
    return Threshold1D


@pytest.fixture(scope="session")
def sine() -> type[Sine1D]:
    return Sine1D


@pytest.fixture(scope="session")
def train_digits():  # type: ignore[no-untyped-def]
    return train_digits_model
