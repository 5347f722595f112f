"""Fast Minimum-Norm attack (FMN), and the Lp norms and projections of the minimal-norm attacks."""

from __future__ import annotations

import math
from typing import Final, final

import torch
from torch import Tensor, nn

from advrobust._validate import check_int, check_logits

from ._base import Attack, CleanForward
from ._checks import check_annealed, check_norm, check_optional_positive, check_rate
from ._losses import logit_margin
from ._registry import register_attack
from ._threat import _per_example, lp_norm

__all__ = ["FMN", "dual_norm", "project_l0", "project_l1", "project_lp"]

_NORMS: Final = ("l2", "linf", "l1", "l0")
_DUAL: Final = {"l2": "l2", "linf": "l1", "l1": "linf"}
# Default first step size per norm, in units of the input box width (hi - lo).
_ALPHA_INIT: Final = {"l2": 1.0, "linf": 10.0, "l1": 5.0, "l0": 1.0}
_TINY: Final = 1e-12


def dual_norm(g: Tensor, norm: str) -> Tensor:
    """Per-example dual norm of ``g``: L2 for L2, L1 for Linf, Linf for L1."""
    return lp_norm(g, _DUAL[norm])


def project_l1(delta: Tensor, eps: Tensor) -> Tensor:
    """Euclidean projection of each example of ``delta`` onto the L1 ball of radius ``eps``.

    Sorting-based projection (Duchi, Shalev-Shwartz, Singer, Chandra, "Efficient projections
    onto the l1-ball for learning in high dimensions", ICML 2008): with ``u`` the magnitudes
    sorted in decreasing order and ``rho`` the largest ``j`` with
    ``u_j > (sum_{i <= j} u_i - eps) / j``, the projection is
    ``sign(delta) * max(|delta| - theta, 0)`` with ``theta = (sum_{i <= rho} u_i - eps) / rho``.
    Points inside the ball (and ``eps = inf``) are returned unchanged.

    Example:
        >>> import torch
        >>> project_l1(torch.tensor([[3.0, -1.0, 0.5]]), torch.tensor([2.0]))
        tensor([[2., -0., 0.]])
    """
    flat = delta.flatten(1)
    d = flat.shape[1]
    mag = flat.abs()
    inside = (mag.sum(dim=1) <= eps) | ~torch.isfinite(eps)
    radius = torch.where(torch.isfinite(eps), eps, torch.zeros_like(eps))[:, None]
    u = mag.sort(dim=1, descending=True).values
    css = u.cumsum(dim=1)
    j = torch.arange(1, d + 1, device=delta.device, dtype=delta.dtype)
    rho = (u * j > css - radius).sum(dim=1, keepdim=True).clamp_min(1)
    theta = (css.gather(1, rho - 1) - radius) / rho.to(delta.dtype)
    out = flat.sign() * (mag - theta).clamp_min(0.0)
    return torch.where(inside[:, None], flat, out).reshape(delta.shape)


def project_l0(delta: Tensor, k: Tensor) -> Tensor:
    """Keep the ``k`` largest-magnitude coordinates of each example of ``delta``, zero the rest.

    ``k`` is a ``(B,)`` tensor of (float) counts; ``k >= d`` keeps everything, ``k = 0`` nothing.
    Ties at the threshold are all kept.
    """
    flat = delta.flatten(1)
    d = flat.shape[1]
    mag = flat.abs()
    count = k.clamp(0, d).floor().to(torch.long)[:, None]
    u = mag.sort(dim=1, descending=True).values
    threshold = u.gather(1, (count - 1).clamp_min(0))
    keep = (mag >= threshold) & (count > 0)
    return torch.where(keep, flat, torch.zeros_like(flat)).reshape(delta.shape)


def project_lp(delta: Tensor, eps: Tensor, norm: str) -> Tensor:
    """Projection of each example of ``delta`` onto the ``norm`` ball of radius ``eps`` ``(B,)``.

    L2: rescaling; Linf: clamping; L1: [`project_l1`][advrobust.attacks._fmn.project_l1];
    L0: the ``eps`` largest coordinates ([`project_l0`][advrobust.attacks._fmn.project_l0]).
    """
    if norm == "l2":
        n = lp_norm(delta, "l2")
        factor = torch.where(n > eps, eps / n.clamp_min(_TINY), torch.ones_like(n))
        return delta * _per_example(factor, delta)
    if norm == "linf":
        e = _per_example(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)
    if norm == "l1":
        return project_l1(delta, eps)
    return project_l0(delta, eps)


def _cosine(i: int, steps: int, start: float, end: float) -> float:
    """Cosine annealing from ``start`` (step 0) towards ``end`` (step ``steps``)."""
    return end + (start - end) * (1.0 + math.cos(math.pi * i / steps)) / 2.0


@final
@register_attack(
    description="Fast Minimum-Norm: smallest L0/L1/L2/Linf perturbation, adaptive norm budget",
    paper=(
        'Pintor, Roli, Brendel, Biggio, "Fast Minimum-norm Adversarial Attacks through Adaptive '
        'Norm Constraints", NeurIPS 2021'
    ),
)
class FMN(Attack):
    """Fast Minimum-Norm attack: steepest ascent inside an Lp ball whose radius adapts per example.

    Pintor et al. (NeurIPS 2021, Algorithm 1). With ``L(x') = max_{j != y} z_j - z_y``
    (untargeted; ``z_t - max_{j != t} z_j`` towards a target ``t``), ``delta_0 = 0`` and
    ``eps_0 = inf``, each of the ``steps`` iterations takes one forward and one backward pass:

    ```text
    gamma_k = gamma_final + (gamma_init - gamma_final) (1 + cos(pi k / K)) / 2   (budget rate)
    alpha_k = alpha_final + (alpha_init - alpha_final) (1 + cos(pi k / K)) / 2   (step size)
    g = grad_delta L(x + delta_k)
    eps_k = min(eps_{k-1} (1 - gamma_k), best norm)        if x + delta_k is adversarial
          = eps_{k-1} (1 + gamma_k)                        elif an adversarial was found before
          = (||delta_k||_p + |L| / ||g||_q) (1 + gamma_k)  else (linear boundary estimate)
    eps_k = min(eps_k, largest norm the box allows)
    delta_{k+1} = Proj_{||.||_p <= eps_k}(clip_box(delta_k + alpha_k g / ||g||_2))
    ```

    ``q`` is the dual norm of ``p`` (L2 for L2, L1 for Linf, Linf for L1). Two changes to the
    paper's step keep the box from stalling it (digit images sit on the bounds): gradient
    coordinates that push a pixel already on a bound outwards are zeroed before ``g`` is
    normalised, and the step is clipped to the box before the projection (every projection
    here shrinks coordinates towards 0, so the result stays in the box). The linear estimate
    is the distance to the boundary of the model linearised at ``x + delta_k``; the factor
    ``1 + gamma_k`` (not in the paper) steps just past it, since on a model that is affine
    near the boundary the estimate is exact and iterates placed on it would never cross. The
    projection is a
    rescaling (L2), a clamp (Linf), the sorting-based projection onto the L1 ball (Duchi et al.
    2008) or the ``eps_k`` largest coordinates (L0, where ``eps_k`` is a count updated by
    ``min(eps - 1, floor(eps (1 - gamma)))`` when adversarial and
    ``max(eps + 1, floor(eps (1 + gamma)))`` otherwise). The smallest adversarial iterate of each
    example is kept, then moved to the decision boundary by the template's bisection along the
    segment from ``x``. Examples never broken come back equal to ``x``. ``eps`` is ignored.

    Args:
        model: Classifier returning logits ``(B, K)``.
        norm: ``"l2"``, ``"linf"``, ``"l1"`` or ``"l0"``.
        steps: Iterations ``K`` (one forward and one backward pass each).
        alpha_init: First step size, in input units. None: ``(hi - lo)`` times 1 (L2, L0),
            10 (Linf) or 5 (L1).
        alpha_final: Last step size. None: ``alpha_init / 100``.
        gamma_init: First rate of change of the norm budget.
        gamma_final: Last rate of change of the norm budget (<= ``gamma_init``).
        bounds: Input box ``(lo, hi)``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For an unknown norm, non-positive steps, step sizes or rates, rates >= 1,
            or ``gamma_final > gamma_init``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> res = FMN(model, norm="linf", steps=20).run(torch.rand(2, 4))
        >>> res.linf.shape
        torch.Size([2])

    Reference:
        Pintor, Roli, Brendel, Biggio, "Fast Minimum-norm Adversarial Attacks through Adaptive
        Norm Constraints", NeurIPS 2021.
    """

    minimal_norm = True

    def __init__(
        self,
        model: nn.Module,
        norm: str = "l2",
        *,
        steps: int = 100,
        alpha_init: float | None = None,
        alpha_final: float | None = None,
        gamma_init: float = 0.05,
        gamma_final: float = 0.001,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, bounds=bounds)
        self.norm = check_norm(norm, _NORMS)
        self.steps = check_int(steps, "steps", minimum=1)
        self.alpha_init = check_optional_positive(alpha_init, "alpha_init")
        self.alpha_final = check_optional_positive(alpha_final, "alpha_final")
        self.gamma_init, self.gamma_final = check_annealed(
            "gamma", gamma_init, gamma_final, check_rate
        )

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
        norm = self.norm
        b = x.shape[0]
        targeted = target is not None
        label = target if target is not None else y
        work = torch.promote_types(x.dtype, torch.float32)
        x0 = x.to(work)
        alpha_init = (
            self.alpha_init if self.alpha_init is not None else _ALPHA_INIT[norm] * (hi - lo)
        )
        alpha_final = self.alpha_final if self.alpha_final is not None else alpha_init / 100.0

        # the largest perturbation norm the box allows around each x
        worst = lp_norm(torch.maximum(x0 - lo, hi - x0), norm)
        delta = torch.zeros_like(x0)
        budget = (
            torch.ones(b, dtype=work, device=x.device)
            if norm == "l0"
            else torch.full((b,), math.inf, dtype=work, device=x.device)
        )
        best_norm = torch.full((b,), math.inf, dtype=work, device=x.device)
        best_adv = x.clone()
        found = torch.zeros(b, dtype=torch.bool, device=x.device)

        for k in range(self.steps):
            alpha = _cosine(k, self.steps, alpha_init, alpha_final)
            gamma = _cosine(k, self.steps, self.gamma_init, self.gamma_final)
            delta.requires_grad_(True)
            x_new = (x0 + delta).to(x.dtype)
            logits = check_logits(self.model(x_new), b)
            margin = logit_margin(logits, label).to(work)
            loss = margin if targeted else -margin  # grows towards success
            (g,) = torch.autograd.grad(loss.sum(), delta)
            with torch.no_grad():
                delta = delta.detach()
                pred = logits.detach().argmax(dim=1)
                is_adv = pred == label if targeted else pred != label
                dist = lp_norm(delta, norm)
                better = is_adv & (dist < best_norm)
                best_norm = torch.where(better, dist, best_norm)
                best_adv = torch.where(_per_example(better, x), x_new.detach(), best_adv)
                found = found | is_adv
                if norm == "l0":
                    shrink = torch.minimum(
                        torch.minimum(budget - 1.0, (budget * (1.0 - gamma)).floor()), best_norm
                    )
                    grow = torch.maximum(budget + 1.0, (budget * (1.0 + gamma)).floor())
                    budget = torch.where(is_adv, shrink, grow).clamp_min(0.0)
                else:
                    to_boundary = loss.detach().abs() / dual_norm(g, norm).clamp_min(_TINY)
                    budget = torch.where(
                        is_adv,
                        torch.minimum(budget * (1.0 - gamma), best_norm),
                        torch.where(found, budget, dist + to_boundary) * (1.0 + gamma),
                    )
                budget = torch.minimum(budget, worst)
                # coordinates on a bound that the gradient pushes outwards cannot move
                x_cur = x0 + delta
                g = g.masked_fill(((x_cur <= lo) & (g < 0)) | ((x_cur >= hi) & (g > 0)), 0.0)
                step = g / _per_example(lp_norm(g, "l2").clamp_min(_TINY), g)
                moved = (x_cur + alpha * step).clamp(lo, hi) - x0
                delta = project_lp(moved, budget, norm)
        return best_adv
