"""The margin loss keeps gradient attacks working where a saturated softmax gives none."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advrobust.attacks import BIM, PGD


def _overconfident_binary(
    seed: int = 0, d: int = 6, scale: float = 1e4
) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(2, d, generator=g) * scale)
        lin.bias.zero_()
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(16, d, generator=g) * 0.2 + 0.4
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    w = lin.weight.detach()
    dw = (w[1 - y] - w[y]).abs().sum(1)
    margin = (z.gather(1, y[:, None]) - z.gather(1, (1 - y)[:, None])).squeeze(1)
    return model, x, y, margin / dw  # exact minimal Linf distance per example


def test_attacks_ce_gradient_vanishes_on_saturated_softmax() -> None:
    model, x, y, _dist = _overconfident_binary()
    x_ce = BIM(model, eps=1.0, steps=20, rel_alpha=0.1, bounds=(-10.0, 10.0))(x, y)
    # Softmax saturates in float32: the cross-entropy gradient is exactly zero, nothing moves.
    assert torch.equal(x_ce, x)


@pytest.mark.parametrize("cls", [BIM, PGD])
def test_attacks_margin_loss_reaches_exact_linf_distance(cls: type) -> None:
    model, x, y, dist = _overconfident_binary()
    kwargs = {"random_start": False} if cls is PGD else {}
    eps = dist * 1.02
    atk = cls(model, steps=60, rel_alpha=0.05, loss="margin", bounds=(-10.0, 10.0), **kwargs)
    res = atk.run(x, y, eps=eps)
    assert bool(res.success.all())
    assert bool((res.linf <= eps + 1e-5).all())
    below = atk.run(x, y, eps=dist * 0.98)
    assert not bool(below.success.any())


def test_attacks_loss_is_validated_and_in_config() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    assert PGD(model, loss="margin").config()["loss"] == "margin"
    assert "loss='margin'" in repr(BIM(model, loss="margin"))
    with pytest.raises(ValueError, match="loss"):
        PGD(model, loss="hinge")
