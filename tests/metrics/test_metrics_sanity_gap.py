"""sanity_check's gradient-free-gap: a quantising input layer masks the gradient of PGD/BIM.

The model rounds its input to multiples of 1/4 before a linear layer: the gradient is exactly
zero everywhere, so gradient attacks cannot move and report every example robust, while a
search that needs no gradient (Square, or random signs) breaks most of them.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advrobust.attacks import BIM, Attack, LinfBall, ThreatModel, create_attack
from advrobust.attacks import list_attacks as registered
from advrobust.attacks._base import CleanForward
from advrobust.metrics import robust_accuracy, sanity_check

EPS = 0.25
D = 16


class Quantise(nn.Module):
    """Round to multiples of 1/4: a piecewise-constant layer whose gradient is zero."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * 4) / 4


class MeanAbove(nn.Module):
    """Class 1 iff the mean of the (quantised) input exceeds ``t``."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = t

    def forward(self, x: Tensor) -> Tensor:
        s = (x.flatten(1).mean(1) - self.t) * 40
        return torch.stack([-s, s], dim=1)


def masked_model() -> nn.Module:
    return nn.Sequential(Quantise(), MeanAbove(0.26))


def smooth_model() -> nn.Module:
    return MeanAbove(0.26)


def batch() -> tuple[Tensor, Tensor]:
    """Class-0 inputs at 0.3 +- 0.02 (quantised to 0.25: mean 0.25 < 0.26)."""
    g = torch.Generator().manual_seed(0)
    x = 0.3 + (torch.rand(32, 1, D, generator=g) - 0.5) * 0.04
    return x, torch.zeros(32, dtype=torch.long)


class RandomSigns(Attack):
    """A gradient-free test attack: ``trials`` random corners of the Linf ball, first hit kept."""

    def __init__(
        self,
        model: nn.Module,
        eps: float = EPS,
        *,
        trials: int = 24,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, bounds=bounds)
        self.eps = eps
        self.trials = trials
        self.norm = "linf"

    @property
    def _default_eps(self) -> float | None:
        return self.eps

    @property
    def _threat(self) -> ThreatModel | None:
        return LinfBall()

    def _perturb(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        guide: Tensor | None,
        generator: torch.Generator | None,
        clean: CleanForward | None,
    ) -> Tensor:
        best = x.clone()
        done = torch.zeros(x.shape[0], dtype=torch.bool)
        e = eps.view(-1, *([1] * (x.dim() - 1)))
        for _ in range(self.trials):
            u = torch.rand(x.shape, generator=generator)
            cand = (x + e * torch.sign(u - 0.5)).clamp(*self.bounds)
            with torch.no_grad():
                new = (self.model(cand).argmax(1) != y) & ~done
            best[new] = cand[new]
            done |= new
        return best


def test_metrics_sanity_gap_ensemble_breaks_what_bim_reports_robust() -> None:
    model = masked_model()
    x, y = batch()
    g = torch.Generator().manual_seed(0)
    bim = BIM(model, EPS, steps=10, rel_alpha=0.25)
    ens = robust_accuracy(model, (x, y), EPS, suite=[bim, RandomSigns(model)], generator=g)
    assert ens.clean_accuracy == 1.0
    assert ens.attacks[0].broken == 0  # the gradient is zero: BIM cannot move
    assert ens.attacks[1].broken >= 16  # random signs break most examples
    report = sanity_check(
        model,
        x,
        y,
        eps=EPS,
        attack=bim,
        gradient_free=False,
        ensemble=ens,
        checks=["gradient-free-gap", "zero-gradients"],
        generator=g,
    )
    assert "gradient-free-gap" in report.ids and "zero-gradients" in report.ids
    f = report.findings[report.ids.index("gradient-free-gap")]
    assert f.details["ensemble_only"] == ens.attacks[1].broken
    assert f.details["ensemble_only[RandomSigns]"] == ens.attacks[1].broken
    assert f.details["gradient_attack_robust_accuracy"] == 1.0
    assert "gradient masking" in f.explanation and "RandomSigns" in f.explanation
    assert f.docs.endswith("#gradient-free-gap")
    # the same comparison with the gradient-free attack given directly
    direct = sanity_check(
        model,
        x,
        y,
        eps=EPS,
        attack=bim,
        gradient_free=RandomSigns(model),
        checks=["gradient-free-gap"],
        generator=torch.Generator().manual_seed(1),
    )
    assert direct.ids == ("gradient-free-gap",)
    assert direct.findings[0].details["RandomSigns_only"] >= 16
    assert [s.name for s in direct.attacks] == ["BIM", "FGSM", "RandomSigns"]


def test_metrics_sanity_gap_quiet_when_gradients_are_faithful() -> None:
    """Without the quantiser BIM breaks every example random signs break: no finding."""
    model = smooth_model()
    x, y = batch()
    g = torch.Generator().manual_seed(0)
    bim = BIM(model, EPS, steps=10, rel_alpha=0.25)
    ens = robust_accuracy(model, (x, y), EPS, suite=[bim, RandomSigns(model)], generator=g)
    assert ens.attacks[1].broken == 0
    report = sanity_check(
        model,
        x,
        y,
        eps=EPS,
        attack=bim,
        ensemble=ens,
        gradient_free=False,
        checks=["gradient-free-gap"],
        generator=g,
    )
    assert report.ok and report.checks == ("gradient-free-gap",)
    # with neither an ensemble nor a gradient-free attack the check does not run
    skipped = sanity_check(model, x, y, eps=EPS, gradient_free=False, checks=["gradient-free-gap"])
    assert skipped.checks == ()


def test_metrics_sanity_gap_refuses_an_ensemble_of_another_batch_or_eps() -> None:
    model = masked_model()
    x, y = batch()
    ens = robust_accuracy(model, (x, y), EPS, suite=[RandomSigns(model)])
    with pytest.raises(ValueError, match="ensemble must be computed on this batch"):
        sanity_check(model, x[:8], y[:8], eps=EPS, ensemble=ens, gradient_free=False)
    with pytest.raises(ValueError, match=r"ensemble was computed at eps=0\.25"):
        sanity_check(model, x, y, eps=0.1, ensemble=ens, gradient_free=False)


def test_metrics_sanity_gap_square_breaks_what_pgd_reports_robust() -> None:
    assert "Square" in registered()
    model = masked_model()
    x, y = batch()
    g = torch.Generator().manual_seed(0)
    bim = BIM(model, EPS, steps=10, rel_alpha=0.25)
    square = create_attack("Square", model, eps=EPS, norm="linf", queries=1000)
    ens = robust_accuracy(model, (x, y), EPS, suite=[bim, square], generator=g)
    assert ens.attacks[0].broken == 0 and ens.attacks[1].broken >= 16
    assert ens.attacks[1].backwards == 0  # gradient-free: forward passes only
    report = sanity_check(model, x, y, eps=EPS, attack=bim, generator=g)  # default: Square
    assert "gradient-free-gap" in report.ids
    assert report.findings[report.ids.index("gradient-free-gap")].details["Square_only"] >= 16
