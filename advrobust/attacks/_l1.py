"""The L1 ball: the exact projection onto its intersection with a box, and its threat model.

Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on image classifiers",
ICML 2021 (sec. 3.1). APGD's ``norm="l1"`` and FAB's norm check use it.
"""

from __future__ import annotations

import math
from typing import ClassVar, final

import torch
from torch import Tensor

from ._threat import L2Ball, LinfBall, ThreatModel, _draw, _per_example

__all__ = ["L1Ball", "ball_for", "project_l1_box"]


def project_l1_box(
    v: Tensor, eps: Tensor, lower: Tensor | None = None, upper: Tensor | None = None
) -> Tensor:
    """Euclidean projection of ``v`` onto ``{d: ||d||_1 <= eps, lower <= d <= upper}``.

    Per example (``eps`` of shape ``(B,)``; ``lower <= 0 <= upper`` elementwise, e.g. the box
    ``[lo - x, hi - x]`` around an input ``x`` inside it; None: no box). The solution is
    ``d_i = sign(v_i) * min(max(|v_i| - lam, 0), c_i)`` with ``c_i`` the room the box leaves in
    the direction of ``v_i`` and ``lam >= 0`` the root of the piecewise-linear, non-increasing
    ``sum_i min(max(|v_i| - lam, 0), c_i) = eps`` (``lam = 0`` when the box projection is
    already inside the ball), found exactly from the sorted breakpoints in ``O(d log d)``
    (Croce & Hein 2021, sec. 3.1).
    """
    b = v.shape[0]
    work = torch.promote_types(v.dtype, torch.float32)
    vf = v.reshape(b, -1).to(work)
    a = vf.abs()
    if lower is None or upper is None:
        cap = torch.full_like(a, math.inf)
    else:
        up = upper.reshape(b, -1).to(work)
        down = -lower.reshape(b, -1).to(work)
        cap = torch.where(vf >= 0, up, down).clamp_min(0.0)
    e = eps.to(work)
    s0 = torch.minimum(a, cap).sum(dim=1)
    # breakpoints of the sum: each term starts decreasing at |v_i| - c_i and stops at |v_i|
    brk = torch.cat([(a - cap).clamp_min(0.0), a], dim=1)
    dslope = torch.cat([-torch.ones_like(a), torch.ones_like(a)], dim=1)
    brk, order = brk.sort(dim=1)
    slope = dslope.gather(1, order).cumsum(dim=1)  # slope on (brk_k, brk_{k+1})
    rise = (brk[:, 1:] - brk[:, :-1]) * slope[:, :-1]
    value = torch.cat([s0[:, None], s0[:, None] + rise.cumsum(dim=1)], dim=1)  # sum at brk_k
    k = ((value > e[:, None]).sum(dim=1) - 1).clamp_min(0)[:, None]
    lam = brk.gather(1, k) + (value.gather(1, k) - e[:, None]) / (-slope.gather(1, k)).clamp_min(
        1.0
    )
    lam = torch.where((s0 <= e)[:, None], torch.zeros_like(lam), lam)
    d = torch.minimum((a - lam).clamp_min(0.0), cap) * vf.sign()
    return d.to(v.dtype).reshape(v.shape)


@final
class L1Ball(ThreatModel):
    """The L1 ball ``{x': sum_i |x'_i - x_i| <= eps}`` (APGD's ``norm="l1"``).

    Example:
        >>> import torch
        >>> L1Ball().project(torch.tensor([[3.0, 1.0]]), torch.tensor([2.0]))
        tensor([[2., 0.]])
    """

    norm: ClassVar[str] = "l1"

    def random_start(self, x: Tensor, eps: Tensor, generator: torch.Generator | None) -> Tensor:
        """A Gaussian draw projected onto the ball: a sparse point on (or in) its surface."""
        return x + self.project(_draw("randn", tuple(x.shape), x, generator), eps)

    def ascent_direction(self, g: Tensor) -> Tensor:
        """The steepest L1 ascent: ``sign(g_i)`` on the largest ``|g_i|``, split among ties."""
        a = g.flatten(1).abs()
        top = (a == a.amax(dim=1, keepdim=True)) & (a > 0)
        count = top.sum(dim=1, keepdim=True).clamp_min(1)
        out: Tensor = (g.flatten(1).sign() * top / count).reshape(g.shape)
        return out

    def project(self, delta: Tensor, eps: Tensor) -> Tensor:
        """The closest perturbation to ``delta`` with L1 norm at most ``eps``."""
        return project_l1_box(delta, eps)

    def clip(self, x_adv: Tensor, x: Tensor, eps: Tensor) -> Tensor:
        """Project ``x_adv - x`` onto the ball; points inside are returned unchanged."""
        delta = x_adv - x
        outside = _per_example(delta.flatten(1).abs().sum(dim=1) > eps, x)
        return torch.where(outside, x + self.project(delta, eps), x_adv)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """``sum_i |x_adv_i - x_i|`` per example."""
        out: Tensor = (x_adv - x).flatten(1).abs().sum(dim=1)
        return out


def ball_for(norm: object) -> ThreatModel:
    """The threat model of ``norm``: ``"linf"``, ``"l2"`` or ``"l1"``, raising on anything else."""
    if norm == "linf":
        return LinfBall()
    if norm == "l2":
        return L2Ball()
    if norm == "l1":
        return L1Ball()
    raise ValueError(f"norm must be 'linf', 'l2' or 'l1', got {norm!r}")
