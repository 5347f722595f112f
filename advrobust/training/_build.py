"""Building the trainer's attack, optimizer and LR scheduler from a :class:`TrainConfig`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..attacks import Attack
from ._config import TrainConfig

__all__ = ["build_attack", "build_optimizer", "build_scheduler"]


def build_attack(model: nn.Module, spec: dict[str, Any]) -> Attack:
    """The attack named by ``spec["name"]`` on ``model``, with the other entries as arguments."""
    from .. import attacks

    spec = dict(spec)
    name = spec.pop("name")
    cls = getattr(attacks, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Attack)):
        raise ValueError(f"config.attack names an unknown attack {name!r}")
    built: Attack = cls(model, **spec)
    return built


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay, Nesterov) or Adam over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov,
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch LR scheduler of ``cfg.scheduler`` (cosine, step, multistep) or None."""
    spec = cfg.scheduler
    if spec is None:
        return None
    sched = torch.optim.lr_scheduler
    name = spec["name"]
    if name == "cosine":
        return sched.CosineAnnealingLR(
            optimizer, T_max=cfg.epochs, eta_min=float(spec.get("eta_min", 0.0))
        )
    if name == "step":
        return sched.StepLR(
            optimizer, step_size=int(spec["step_size"]), gamma=float(spec.get("gamma", 0.1))
        )
    return sched.MultiStepLR(
        optimizer,
        milestones=[int(m) for m in spec["milestones"]],
        gamma=float(spec.get("gamma", 0.1)),
    )
