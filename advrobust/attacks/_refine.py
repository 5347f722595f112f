"""Boundary refinement: the last step of every minimal-norm attack.

A minimal-norm attack returns, per example, the smallest adversarial point it visited. Its
iterates oscillate around the decision boundary (norm schedules, step sizes, an optimiser's
overshoot), so that point usually lies a little beyond the boundary. The template of
[`Attack`][advrobust.attacks.Attack] ends every attack with ``minimal_norm = True`` with
``refine_boundary``: a bisection along the segment from ``x`` to the adversarial point that
returns the closest point of the segment that is still adversarial. It spends forward passes only
(one to check the attack's output, then one per bisection step), on the whole batch at once,
with no host synchronisation.
"""

from __future__ import annotations

from typing import Final

import torch
from torch import Tensor, nn

from advrobust._validate import check_logits

__all__ = ["REFINE_STEPS", "adversarial_mask", "refine_boundary"]

REFINE_STEPS: Final = 12
"""Bisection steps: the answer lies within ``2**-12`` of the segment's length of the boundary."""


def adversarial_mask(logits: Tensor, label: Tensor, *, targeted: bool, kappa: float) -> Tensor:
    """Bool ``(B,)``: the prediction is adversarial (and beyond the margin ``kappa`` if > 0).

    Untargeted: ``argmax != label``; targeted: ``argmax == label``. With ``kappa > 0`` the
    logit margin ``m = z_label - max_{j != label} z_j`` must also satisfy ``m < -kappa``
    (untargeted) or ``m > kappa`` (targeted).
    """
    pred = logits.argmax(dim=1)
    ok = pred == label if targeted else pred != label
    if kappa > 0:
        own = logits.gather(1, label[:, None]).squeeze(1)
        others = logits.scatter(1, label[:, None], float("-inf")).amax(dim=1)
        margin = own - others
        ok = ok & (margin > kappa if targeted else margin < -kappa)
    return ok


def refine_boundary(
    model: nn.Module,
    x: Tensor,
    x_adv: Tensor,
    label: Tensor,
    *,
    targeted: bool,
    bounds: tuple[float, float],
    kappa: float = 0.0,
    steps: int = REFINE_STEPS,
) -> Tensor:
    """The closest point to ``x`` on the segment ``[x, x_adv]`` that is still adversarial.

    With ``d = x_adv - x`` and ``p(t) = clip(x + t d)``, the bisection keeps ``hi`` (adversarial,
    starting at ``t = 1``) and ``lo`` (starting at ``t = 0``, the clean input) and halves
    ``[lo, hi]`` ``steps`` times:

    ```text
    mid = (lo + hi) / 2
    hi, lo = (mid, lo) if adversarial(p(mid)) else (hi, mid)
    ```

    and returns ``p(hi)``, a point that was checked adversarial (``x_adv`` itself when no
    midpoint was). On a boundary crossed once by the segment (an affine classifier), ``p(hi)``
    lies within ``2**-steps * ||d||`` of the crossing. Examples whose ``x_adv`` is not
    adversarial come back equal to ``x``.

    "Adversarial" is the template's success criterion (``argmax != label``, or ``== label``
    when ``targeted``), and when ``kappa > 0`` also a logit margin beyond ``kappa``
    (Carlini-Wagner's confidence): ``z_label - max_{j != label} z_j < -kappa`` (untargeted) or
    ``> kappa`` (targeted).

    Args:
        model: The classifier (already in eval mode, under the template's state guard).
        x: Clean inputs ``(B, ...)``.
        x_adv: The attack's output, inside ``bounds``, same shape and dtype as ``x``.
        label: Long ``(B,)``: the true labels, or the targets when ``targeted``.
        targeted: Whether success means reaching ``label``.
        bounds: The input box; every evaluated point is clipped to it.
        kappa: Confidence margin in logit units (>= 0).
        steps: Number of bisection steps.

    Returns:
        The refined points, same shape and dtype as ``x``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> lin = nn.Linear(1, 2)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        ...     _ = lin.bias.zero_()
        >>> x, far = torch.tensor([[0.5]]), torch.tensor([[-0.5]])
        >>> out = refine_boundary(lin, x, far, torch.tensor([0]), targeted=False, bounds=(-1, 1))
        >>> bool(out.abs() < 1e-3) and bool(lin(out).argmax() == 1)
        True
    """
    b = x.shape[0]
    shape = (b,) + (1,) * (x.dim() - 1)
    lo_b, hi_b = bounds
    work = torch.promote_types(x.dtype, torch.float32)
    x0 = x.detach().to(work)
    d = x_adv.detach().to(work) - x0

    def point(t: Tensor) -> Tensor:
        return (x0 + t.reshape(shape) * d).clamp(lo_b, hi_b).to(x.dtype)

    def adversarial(p: Tensor) -> Tensor:
        logits = check_logits(model(p), b)
        return adversarial_mask(logits, label, targeted=targeted, kappa=kappa)

    with torch.no_grad():
        found = adversarial(x_adv)
        lo = torch.zeros(b, dtype=work, device=x.device)
        hi = torch.ones_like(lo)
        for _ in range(steps):
            mid = (lo + hi) / 2.0
            ok = adversarial(point(mid))
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
        moved = (hi < 1.0).reshape(shape)
        out = torch.where(moved, point(hi), x_adv)
        return torch.where(found.reshape(shape), out, x).detach()
