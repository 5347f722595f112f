"""Decoupled Direction and Norm attack (DDN), L2."""

from __future__ import annotations

import math
from typing import Final, final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust._validate import check_int, check_logits, check_positive, describe

from ._base import Attack, CleanForward
from ._checks import check_annealed, check_option, check_rate
from ._fmn import _cosine
from ._losses import logit_margin
from ._registry import register_attack
from ._threat import _draw, _per_example, lp_norm

__all__ = ["DDN"]

_TINY = 1e-12
_LOSSES: Final = ("ce", "margin")


@final
@register_attack(
    description="Decoupled Direction and Norm: minimal L2 perturbation with a multiplicative norm",
    paper=(
        'Rony, Hafemann, Oliveira, Ben Ayed, Sabourin, Granger, "Decoupling Direction and Norm '
        'for Efficient Gradient-Based L2 Adversarial Attacks and Defenses", CVPR 2019'
    ),
)
class DDN(Attack):
    """Decoupled Direction and Norm: a gradient step for the direction, a schedule for the norm.

    Rony et al. (CVPR 2019, Algorithm 1). With ``J`` the cross-entropy (or, with
    ``loss="margin"``, the logit margin ``max_{j != y} z_j - z_y``), ``delta_0 = 0`` and a
    norm ``eps_0 = init_norm`` per example, each of the ``steps`` iterations takes one forward
    and one backward pass:

    ```text
    alpha_k = alpha_final + (alpha_init - alpha_final) (1 + cos(pi k / K)) / 2   (cosine)
    g = grad_delta J(x + delta_k, y)          (untargeted; -J(x + delta_k, t) towards t)
    delta' = delta_k + alpha_k g / ||g||_2
    eps_k = eps_{k-1} (1 - gamma) if x + delta_k is adversarial else eps_{k-1} (1 + gamma)
    eps_k = min(eps_k, largest L2 norm the box allows)
    delta_{k+1} = clip_box(eps_k delta' / ||delta'||_2)      (then quantised if ``levels``)
    ```

    A zero gradient is replaced by a random unit direction drawn with ``generator``. The
    smallest adversarial iterate of each example is kept, then moved to the decision
    boundary by the template's bisection along the segment from ``x``; with ``levels`` that
    refinement is skipped so the output stays on the quantisation grid. Examples never broken
    come back equal to ``x``. ``eps`` is ignored.

    Args:
        model: Classifier returning logits ``(B, K)``.
        steps: Iterations ``K``.
        init_norm: Starting norm ``eps_0``, in input units.
        gamma: Multiplicative norm change per step (in (0, 1)).
        alpha_init: First step size (L2, input units).
        alpha_final: Last step size (<= ``alpha_init``).
        levels: Number of quantisation levels of the box (e.g. 256 for 8-bit images), or None.
        loss: ``"ce"`` (the paper's cross-entropy) or ``"margin"``. Near the boundary the
            iterate goes to the point of the sphere where the loss is largest; for the margin
            that is the closest boundary point of a locally affine model, for the
            cross-entropy it is pulled towards every class with a non-negligible probability
            (a few percent further when several classes are close in logit).
        bounds: Input box ``(lo, hi)``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For non-positive values, ``gamma >= 1``, ``alpha_final > alpha_init``,
            ``levels < 2`` or an unknown loss.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> res = DDN(model, steps=20).run(torch.rand(2, 4))
        >>> res.l2.shape
        torch.Size([2])

    Reference:
        Rony, Hafemann, Oliveira, Ben Ayed, Sabourin, Granger, "Decoupling Direction and Norm
        for Efficient Gradient-Based L2 Adversarial Attacks and Defenses", CVPR 2019.
    """

    norm = "l2"
    minimal_norm = True

    def __init__(
        self,
        model: nn.Module,
        *,
        steps: int = 100,
        init_norm: float = 1.0,
        gamma: float = 0.05,
        alpha_init: float = 1.0,
        alpha_final: float = 0.01,
        levels: int | None = None,
        loss: str = "ce",
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, bounds=bounds)
        self.steps = check_int(steps, "steps", minimum=1)
        self.init_norm = check_positive(init_norm, "init_norm")
        self.gamma = check_rate(gamma, "gamma")
        self.alpha_init, self.alpha_final = check_annealed(
            "alpha", alpha_init, alpha_final, check_positive
        )
        if levels is not None and (isinstance(levels, bool) or not isinstance(levels, int)):
            raise TypeError(f"levels must be an int or None, got {describe(levels)}")
        self.levels = None if levels is None else check_int(levels, "levels", minimum=2)
        self.loss = check_option(loss, "loss", _LOSSES)

    @property
    def _refine_kappa(self) -> float | None:
        # a refined point would leave the quantisation grid
        return 0.0 if self.levels is None else None

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
        lo, hi = self.bounds
        b = x.shape[0]
        targeted = target is not None
        label = target if target is not None else y
        work = torch.promote_types(x.dtype, torch.float32)
        x0 = x.to(work)
        worst = lp_norm(torch.maximum(x0 - lo, hi - x0), "l2")
        delta = torch.zeros_like(x0)
        radius = torch.full((b,), self.init_norm, dtype=work, device=x.device)
        best_norm = torch.full((b,), math.inf, dtype=work, device=x.device)
        best_adv = x.clone()

        for k in range(self.steps):
            alpha = _cosine(k, self.steps, self.alpha_init, self.alpha_final)
            delta.requires_grad_(True)
            x_new = (x0 + delta).to(x.dtype)
            logits = check_logits(self.model(x_new), b)
            if self.loss == "ce":
                objective = -F.cross_entropy(logits.to(work), label, reduction="none")
            else:
                objective = logit_margin(logits, label).to(work)
            loss = objective if targeted else -objective  # grows towards success
            (g,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                delta = delta.detach()
                pred = logits.detach().argmax(dim=1)
                is_adv = pred == label if targeted else pred != label
                dist = lp_norm(delta, "l2")
                better = is_adv & (dist < best_norm)
                best_norm = torch.where(better, dist, best_norm)
                best_adv = torch.where(_per_example(better, x), x_new.detach(), best_adv)

                g_norm = lp_norm(g, "l2")
                noise = _draw("randn", tuple(g.shape), g, generator)
                noise = noise / _per_example(lp_norm(noise, "l2").clamp_min(_TINY), noise)
                step = torch.where(
                    _per_example(g_norm > 0, g), g / _per_example(g_norm.clamp_min(_TINY), g), noise
                )
                moved = delta + alpha * step
                radius = radius * torch.where(is_adv, 1.0 - self.gamma, 1.0 + self.gamma)
                radius = torch.minimum(radius, worst)
                scale = radius / lp_norm(moved, "l2").clamp_min(_TINY)
                delta = moved * _per_example(scale, moved)
                x_next = (x0 + delta).clamp(lo, hi)
                if self.levels is not None:
                    grid = (self.levels - 1) / (hi - lo)
                    x_next = lo + ((x_next - lo) * grid).round() / grid
                delta = x_next - x0
        return best_adv
