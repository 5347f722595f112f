"""Shared setup of the distributed training test and its worker processes."""

from __future__ import annotations

import torch
from torch import nn

from advrobust.training import TrainConfig


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :8].sum(1) > x.flatten(1)[:, 8:].sum(1)).long()
    return x, y


def build(mode: str) -> nn.Module:
    torch.manual_seed(1)
    if mode == "bn":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2)
        )
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))


def config(mode: str, per_rank_batch: int) -> TrainConfig:
    if mode == "bn":  # Kurakin's recipe: random selection and random eps per rank
        return TrainConfig.kurakin(epochs=2, batch_size=per_rank_batch, lr=0.1, selection="random")
    # deterministic adversarial examples (FGSM at a fixed eps on every example), so that the
    # DDP run and a single process on the global batch take the same steps
    return TrainConfig(
        epochs=2,
        batch_size=per_rank_batch,
        lr=0.1,
        momentum=0.9,
        weight_decay=1e-3,
        attack={"name": "FGSM"},
        fraction=1.0,
        adv_weight=1.0,
        eps={"name": "fixed", "eps": 0.05},
    )
