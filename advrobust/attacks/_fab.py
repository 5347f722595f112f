"""FAB: the fast adaptive boundary attack (untargeted and FAB-T)."""

from __future__ import annotations

import math
from typing import Final, final

import torch
from torch import Tensor, nn

from advrobust._validate import (
    check_int,
    check_logits,
    check_nonnegative,
    check_positive,
    check_probability,
)

from ._base import Attack, CleanForward, _succeeded
from ._checks import check_flag
from ._l1 import ball_for
from ._registry import register_attack
from ._square import _rows_left
from ._threat import ThreatModel, _per_example, lp_norm, threat_from_norm

__all__ = ["FAB", "project_hyperplane_box"]

_DUAL: Final = {"linf": 1.0, "l2": 2.0, "l1": math.inf}


def project_hyperplane_box(
    x: Tensor, g: Tensor, r: Tensor, bounds: tuple[float, float], norm: str
) -> Tensor:
    """The smallest ``delta`` (in ``norm``) with ``<g, delta> = r`` and ``x + delta`` in the box.

    The projection of ``x`` onto the hyperplane ``{z: <g, z - x> = r}`` intersected with the
    box ``[lo, hi]^D`` (Croce & Hein 2020, sec. 3.1), exact for each norm. With ``r >= 0``
    (else flip ``g`` and ``r``), the optimal ``delta_i = sign(g_i) t_i``, ``0 <= t_i <= u_i``
    with the capacity ``u_i`` towards the box's face, and ``sum_i |g_i| t_i = r``:

    ```text
    linf: t_i = min(lam, u_i)          (smallest lam meeting the constraint)
    l2:   t_i = min(lam |g_i|, u_i)    (KKT conditions)
    l1:   fill the coordinates by decreasing |g_i| up to u_i (a fractional knapsack)
    ```

    ``lam`` solves a monotone piecewise-linear equation, found exactly by sorting the
    breakpoints. Where the box leaves the hyperplane out of reach, every useful coordinate
    moves to its face (the box point furthest along ``g``).

    Args:
        x: ``(B, D)`` points inside the box.
        g: ``(B, D)`` normals.
        r: ``(B,)`` right-hand sides.
        bounds: The box ``(lo, hi)``.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.

    Returns:
        ``delta`` of shape ``(B, D)``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.5, 0.5]])
        >>> g = torch.tensor([[1.0, 2.0]])
        >>> project_hyperplane_box(x, g, torch.tensor([0.6]), (0.0, 1.0), "l1")
        tensor([[0.0000, 0.3000]])
        >>> project_hyperplane_box(x, g, torch.tensor([0.6]), (0.0, 1.0), "linf")
        tensor([[0.2000, 0.2000]])
    """
    lo, hi = bounds
    flip = r < 0
    g = torch.where(flip[:, None], -g, g)
    r = r.abs()
    a = g.abs()
    useful = a > 0
    cap = torch.where(g > 0, hi - x, x - lo).clamp_min(0.0)
    cap = torch.where(useful, cap, 0.0)
    sat = a * cap  # what a coordinate contributes once it reaches its face
    if norm == "l1":
        a_sorted, order = a.sort(dim=1, descending=True)
        sat_sorted = sat.gather(1, order)
        cum = sat_sorted.cumsum(dim=1)
        k = (cum < r[:, None]).sum(dim=1, keepdim=True)
        rank = torch.arange(a.shape[1], device=a.device)[None, :]
        before = torch.where(k > 0, cum.gather(1, (k - 1).clamp_min(0)), 0.0)
        a_k = a_sorted.gather(1, k.clamp_max(a.shape[1] - 1))
        partial = (r[:, None] - before) / a_k.clamp_min(torch.finfo(a.dtype).tiny)
        cap_sorted = cap.gather(1, order)
        t_sorted = torch.where(
            rank < k, cap_sorted, torch.where(rank == k, partial.clamp_max(cap_sorted), 0.0)
        )
        t = torch.empty_like(t_sorted).scatter_(1, order, t_sorted)
    else:
        big = torch.finfo(a.dtype).max
        if norm == "linf":
            breaks, slope, scale = cap, a, torch.ones_like(a)
        else:
            breaks = torch.where(useful, cap / torch.where(useful, a, 1.0), big)
            slope, scale = a * a, a
        breaks = torch.where(useful, breaks, big)
        b_sorted, order = breaks.sort(dim=1)
        cum_sat = sat.gather(1, order).cumsum(dim=1)
        cum_slope = slope.gather(1, order).cumsum(dim=1)
        total = cum_slope[:, -1:]
        rest = (total - cum_slope).clamp_min(0.0)
        # constraint value at lam = each breakpoint (monotone in lam)
        value = cum_sat + torch.where(rest > 0, b_sorted * rest, 0.0)
        k = (value < r[:, None]).sum(dim=1, keepdim=True)
        d = a.shape[1]
        prev = (k - 1).clamp_min(0)
        sat_before = torch.where(k > 0, cum_sat.gather(1, prev), 0.0)
        slope_before = torch.where(k > 0, cum_slope.gather(1, prev), 0.0)
        denom = (total - slope_before).clamp_min(torch.finfo(a.dtype).tiny)
        lam = torch.where(k < d, (r[:, None] - sat_before) / denom, math.inf)
        t = torch.where(useful, torch.minimum(lam * scale, cap), 0.0)
    return torch.sign(g) * t


def _unit(shape: tuple[int, ...], like: Tensor, norm: str, gen: torch.Generator | None) -> Tensor:
    """A random direction of unit ``norm`` per row: uniform (linf) or Gaussian (l2, l1)."""
    device = gen.device if gen is not None else like.device
    if norm == "linf":
        t = 2.0 * torch.rand(shape, generator=gen, device=device, dtype=like.dtype) - 1.0
    else:
        t = torch.randn(shape, generator=gen, device=device, dtype=like.dtype)
    t = t.to(like.device)
    n = lp_norm(t, norm)
    return t / n.clamp_min(torch.finfo(t.dtype).tiny)[:, None]


@final
@register_attack(
    description="FAB: fast adaptive boundary attack (linearised boundary projections), FAB-T",
    paper=(
        'Croce, Hein, "Minimally distorted adversarial examples with a fast adaptive boundary '
        'attack", ICML 2020'
    ),
)
class FAB(Attack):
    """FAB: projections onto the linearised decision boundary, biased towards the clean input.

    At the iterate ``x_i`` (Croce & Hein 2020, sec. 3), the boundary between the label ``y``
    and class ``j`` is linearised, ``pi_j = {z: f_j(x_i) - f_y(x_i) + <grad(f_j - f_y), z - x_i>
    = 0}``, with ``f`` the logits. The untargeted attack takes the closest one,
    ``s = argmin_{j != y} |f_j - f_y| / ||grad(f_j - f_y)||_q`` (``q`` the dual norm: 1 for
    Linf, 2 for L2, inf for L1; ``K - 1`` backward passes per step); FAB-T uses the one
    hyperplane of its target (one backward pass). With ``P(z)`` the exact projection of ``z``
    onto ``pi_s`` intersected with the box (see
    [`project_hyperplane_box`][advrobust.attacks.project_hyperplane_box]):

    ```text
    d_i = P(x_i) - x_i,   d_0 = P(x_0) - x_0
    alpha = min(||d_i|| / (||d_i|| + ||d_0||), alpha_max)
    x_{i+1} = clip_box((1 - alpha) (x_i + eta d_i) + alpha (x_0 + eta d_0))
    if x_{i+1} is adversarial:  keep it if it is the smallest so far;
                                x_{i+1} <- (1 - beta) x_0 + beta x_{i+1}   (backward step)
    ```

    ``eta > 1`` extrapolates past the boundary; ``alpha`` biases the step towards the clean
    input ``x_0`` so the attack stays close to it; the backward step after a success restarts
    the search closer to ``x_0``. On an affine model the first step lands at ``eta`` times
    the exact minimal distance and the next ones close in on it. The first run starts at
    ``x_0``; further ``restarts`` start from ``x_0`` plus a random point of norm
    ``min(best, eps) / 2`` (``best`` the smallest adversarial norm found so far), clipped to
    the box.

    As used by AutoAttack it is a fixed-eps attack: per example it returns the smallest
    adversarial point found if its norm is at most eps, else ``x`` (a failure; examples the
    model misclassifies already are returned unchanged). Restarts and the targets of FAB-T
    run only on the examples not yet broken inside the ball. With ``targeted=True``, FAB-T
    runs once towards each of the ``n_target_classes`` classes with the highest clean logits
    after ``y``; success stays untargeted (``adv_pred != y``) unless the caller passes
    ``target=``, in which case the attack (targeted or not) heads for that class ``t`` and
    succeeds when ``adv_pred == target``: each step then linearises ``f_t - f_j`` with ``j``
    the strongest class other than ``t`` at ``x_i`` (one backward pass), since crossing
    ``f_t = f_y`` alone does not make ``t`` the prediction.

    Args:
        model: Classifier returning logits ``(B, K)``.
        eps: Default radius of the ball in input units (call-time ``eps=`` overrides it); a
            large eps makes FAB a minimal-norm attack.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        steps: Iterations per run.
        restarts: Runs per target class (the first from ``x``, the others random).
        targeted: FAB-T over the top ``n_target_classes`` runner-up classes.
        n_target_classes: Number of runner-up classes FAB-T tries (capped at ``K - 1``).
        alpha_max: Largest bias towards the clean input, in [0, 1].
        eta: Extrapolation factor (>= 1).
        beta: Backward-step factor, in (0, 1].
        bounds: Input box ``(lo, hi)``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For out-of-range arguments.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> res = FAB(model, eps=1.0, steps=10).run(torch.rand(2, 4))
        >>> bool((res.linf <= 1.0).all())
        True

    Reference:
        Croce, Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
        attack", ICML 2020.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        targeted: bool = False,
        n_target_classes: int = 9,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, bounds=bounds)
        self.eps = check_nonnegative(eps, "eps")
        self.norm = ball_for(norm).norm
        self.steps = check_int(steps, "steps", minimum=1)
        self.restarts = check_int(restarts, "restarts", minimum=1)
        self.targeted = check_flag(targeted, "targeted")
        self.n_target_classes = check_int(n_target_classes, "n_target_classes", minimum=1)
        self.alpha_max = check_probability(alpha_max, "alpha_max")
        self.eta = check_positive(eta, "eta")
        if self.eta < 1.0:
            raise ValueError(f"eta must be >= 1, got {self.eta}")
        self.beta = check_probability(beta, "beta")
        if self.beta == 0.0:
            raise ValueError(f"beta must be in (0, 1], got {self.beta}")

    # -------------------------------------------------------------------- hooks
    @property
    def _default_eps(self) -> float | None:
        return self.eps

    @property
    def _threat(self) -> ThreatModel | None:
        # L1: the attack only ever returns points of L1 norm <= eps (or x); no clip needed.
        return None if self.norm == "l1" else threat_from_norm(self.norm)

    @property
    def _wants_clean_logits(self) -> bool:
        return True

    @property
    def targets_classes(self) -> bool:
        """True for FAB-T (``targeted=True``): it heads for the runner-up classes."""
        return self.targeted

    # ------------------------------------------------------------------- attack
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
        if clean is None:  # pragma: no cover - _wants_clean_logits is True
            raise RuntimeError("internal error: FAB needs the clean logits")
        logits = clean.logits.detach()
        b, k = logits.shape
        targeted_call = target is not None
        goal = target if target is not None else y
        # per example: the best point inside the ball so far, its norm, and the best norm
        # found at all (the radius of the random restarts)
        done = _succeeded(logits.argmax(dim=1), goal, targeted_call)
        best = x.clone()
        work = torch.promote_types(x.dtype, torch.float32)
        best_any = torch.where(done, 0.0, math.inf).to(work)
        heads: list[Tensor | None]
        if target is not None:
            heads = [target]
        elif self.targeted:
            runner_up = logits.scatter(1, y[:, None], -math.inf).argsort(dim=1, descending=True)
            heads = [runner_up[:, i] for i in range(min(self.n_target_classes, k - 1))]
        else:
            heads = [None]
        for head in heads:
            for r in range(self.restarts):
                idx = _rows_left(~done)
                if idx is not None and idx.numel() == 0:
                    return best
                rows = idx if idx is not None else torch.arange(b, device=x.device)

                def sub(t: Tensor, idx: Tensor | None = idx) -> Tensor:
                    return t if idx is None else t[idx]

                adv, dist = self._run(
                    sub(x),
                    sub(y),
                    None if head is None else sub(head),
                    sub(goal),
                    targeted_call,
                    sub(best_any),
                    sub(eps),
                    generator if r > 0 else None,
                    random_start=r > 0,
                )
                inside = dist <= sub(eps).to(dist.dtype)
                best.index_copy_(0, rows, torch.where(_per_example(inside, adv), adv, sub(best)))
                best_any.index_copy_(0, rows, torch.minimum(sub(best_any), dist.to(work)))
                done.index_copy_(0, rows, sub(done) | inside)
        return best

    def _run(
        self,
        x0: Tensor,
        y: Tensor,
        head: Tensor | None,
        goal: Tensor,
        targeted_call: bool,
        known: Tensor,
        eps: Tensor,
        generator: torch.Generator | None,
        *,
        random_start: bool,
    ) -> tuple[Tensor, Tensor]:
        """One FAB run: the smallest adversarial point per example and its norm.

        Where no adversarial point was found: ``x0`` and ``inf``.
        """
        lo, hi = self.bounds
        n = x0.shape[0]
        flat0 = x0.flatten(1)
        cur = flat0.clone()
        if random_start:
            radius = torch.minimum(known.to(x0.dtype), eps) / 2.0
            cur = flat0 + radius[:, None] * _unit(tuple(flat0.shape), flat0, self.norm, generator)
            cur = cur.clamp(lo, hi)
        best = flat0.clone()
        best_d = torch.full((n,), math.inf, device=x0.device, dtype=x0.dtype)
        q = _DUAL[self.norm]
        for _ in range(self.steps):
            f, g = self._boundary(cur, x0.shape, y, head, q, rival=targeted_call)
            with torch.no_grad():
                # the hyperplane f + <g, z - cur> = 0, reached from cur and from x0
                d_cur = project_hyperplane_box(cur, g, -f, self.bounds, self.norm)
                r0 = -f - (g * (flat0 - cur)).sum(dim=1)
                d_0 = project_hyperplane_box(flat0, g, r0, self.bounds, self.norm)
                n_cur, n_0 = lp_norm(d_cur, self.norm), lp_norm(d_0, self.norm)
                total = n_cur + n_0
                ratio = torch.where(total > 0, n_cur / torch.where(total > 0, total, 1.0), 0.0)
                alpha = ratio.clamp(0.0, self.alpha_max)[:, None]
                cur = (1 - alpha) * (cur + self.eta * d_cur) + alpha * (flat0 + self.eta * d_0)
                cur = cur.clamp(lo, hi)
                out = check_logits(self.model(cur.reshape(x0.shape)), n)
                adv = _succeeded(out.argmax(dim=1), goal, targeted_call)
                dist = lp_norm(cur - flat0, self.norm)
                better = adv & (dist < best_d)
                best = torch.where(better[:, None], cur, best)
                best_d = torch.where(better, dist, best_d)
                back = (1 - self.beta) * flat0 + self.beta * cur
                cur = torch.where(adv[:, None], back, cur)
        return best.reshape(x0.shape), best_d

    def _boundary(
        self,
        cur: Tensor,
        shape: torch.Size,
        y: Tensor,
        head: Tensor | None,
        q: float,
        *,
        rival: bool,
    ) -> tuple[Tensor, Tensor]:
        """The closest linearised boundary at ``cur``: ``f_s - f_y`` and its gradient ``(n, D)``.

        Untargeted: ``K - 1`` backward passes, one per class other than ``y``; towards
        ``head``: one, for ``f_head - f_y`` (FAB-T) or, with ``rival``, for ``f_head - f_j``
        with ``j`` the strongest class other than ``head`` at ``cur`` (a targeted call).
        """
        n = cur.shape[0]
        xg = cur.detach().reshape(shape).requires_grad_(True)
        logits = check_logits(self.model(xg), n)
        if head is not None and rival:
            # towards the caller's target t: the boundary between t and its strongest rival
            y = logits.detach().scatter(1, head[:, None], -math.inf).argmax(dim=1)
        onehot_y = torch.zeros_like(logits).scatter_(1, y[:, None], 1.0)
        if head is not None:
            sel = torch.zeros_like(logits).scatter_(1, head[:, None], 1.0) - onehot_y
            (g,) = torch.autograd.grad(logits, xg, grad_outputs=sel)
            f = (logits.detach() * sel).sum(dim=1)
            return f, g.flatten(1)
        k = logits.shape[1]
        best_f = torch.zeros(n, device=cur.device, dtype=cur.dtype)
        best_g = torch.zeros_like(cur)
        best_dist = torch.full((n,), math.inf, device=cur.device, dtype=cur.dtype)
        z = logits.detach()
        for m in range(k - 1):
            other = m + (m >= y).long()  # the m-th class other than y
            sel = torch.zeros_like(logits).scatter_(1, other[:, None], 1.0) - onehot_y
            (g,) = torch.autograd.grad(logits, xg, grad_outputs=sel, retain_graph=m < k - 2)
            g = g.flatten(1)
            f = (z * sel).sum(dim=1)
            dist = f.abs() / (torch.linalg.vector_norm(g, ord=q, dim=1) + 1e-12)
            closer = dist < best_dist
            best_dist = torch.where(closer, dist, best_dist)
            best_f = torch.where(closer, f, best_f)
            best_g = torch.where(closer[:, None], g, best_g)
        return best_f, best_g
