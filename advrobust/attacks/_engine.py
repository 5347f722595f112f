"""The iterative gradient engine behind FGSM, StepLL, StepRnd, BIM, IterLL and PGD.

The presets, named configurations of the engine, are in ``_presets``.
"""

from __future__ import annotations

import math
from typing import Final, final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust._validate import (
    check_int,
    check_logits,
    check_nonnegative,
)

from ._base import Attack, CleanForward, _succeeded
from ._checks import check_flag, check_option, check_optional_positive
from ._losses import logit_margin
from ._registry import register_attack
from ._threat import ThreatModel, _per_example, threat_from_norm

__all__ = ["IterativeGradientAttack"]

_TARGET_RULES: Final = ("none", "least_likely", "random")
_LOSSES: Final = ("ce", "margin")
_KURAKIN_ALPHA: Final = 1.0 / 255.0


def _objective(logits: Tensor, label: Tensor, loss: str) -> Tensor:
    """Per-example loss that grows as the prediction moves away from ``label``.

    ``"ce"``: cross-entropy ``J(x, l)``. ``"margin"``: ``max_{j != l} z_j - z_l`` on the logits
    (Carlini-Wagner's f without the clamp), whose gradient does not vanish when the softmax
    saturates, as the cross-entropy's does on over-confident models.
    """
    if loss == "ce":
        return F.cross_entropy(logits, label, reduction="none")
    return -logit_margin(logits, label)


def kurakin_steps(eps: float, alpha: float = _KURAKIN_ALPHA) -> int:
    """Kurakin et al.'s iteration count ``round(min(eps/alpha + 4, 1.25 * eps/alpha))``, >= 1.

    With ``alpha = 1/255`` this is ``min(eps*255 + 4, 1.25*eps*255)`` (Kurakin et al. 2017,
    sec. 2.2).
    """
    units = eps / alpha
    return max(1, math.floor(min(units + 4.0, 1.25 * units) + 0.5))


@register_attack(
    description="The iterative gradient engine (FGSM, BIM, PGD family) with every option exposed",
    paper=(
        'Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world",'
        " ICLR workshop 2017"
    ),
)
class IterativeGradientAttack(Attack):
    """The iterative gradient engine behind every gradient attack in advrobust.

    Starting from ``X_0`` (the clean ``X``, or a uniform random point of the eps-ball), each
    step takes one forward and one backward pass to the input and moves along the threat
    model's steepest-ascent direction of the cross-entropy ``J``, then clips back into the
    ball and the bounds (Kurakin et al. 2016 sec. 2.2; Madry et al. eq. 7):

    ```text
    X_{N+1} = Clip_{X,eps}( X_N + alpha * dir(grad_X J(X_N, y)) )   (untargeted)
    X_{N+1} = Clip_{X,eps}( X_N - alpha * dir(grad_X J(X_N, t)) )   (towards class t)
    ```

    with ``dir(g) = sign(g)`` (Linf) or ``g / ||g||_2`` (L2). ``t`` is the caller's
    ``target=`` or, for the least-likely and random presets, a class fixed from the clean input.
    With ``loss="margin"``, ``J(x, l)`` is the logit margin ``max_{j != l} z_j - z_l``
    instead of the cross-entropy (see [`logit_margin`][advrobust.attacks.logit_margin]).

    Multi-step runs return, per example, the best iterate among ``X_0 .. X_T`` (AutoAttack's
    bookkeeping, Croce & Hein, ICML 2020): a successful one whenever one was found (the
    successful one with the highest objective; with ``early_stop``, the first, after which the
    example stops), else the one with the highest objective (``J``, or ``-J(., t)`` towards a
    class ``t``). Scoring ``X_T`` costs one extra forward pass (no backward); single-step
    presets (FGSM, StepLL, StepRnd) return ``X_1`` as before.

    Args:
        model: Classifier returning logits ``(B, K)``.
        eps: Default radius of the ball in input units (call-time ``eps=`` overrides it).
        steps: Number of iterations. None: ``ceil(1 / rel_alpha)`` when ``rel_alpha`` is
            given, else Kurakin's ``round(min(eps/alpha + 4, 1.25 * eps/alpha))`` with the
            largest eps of the batch.
        alpha: Absolute step size in input units. None (with ``rel_alpha`` None): 1/255.
        rel_alpha: Step size relative to each example's eps (``alpha_i = rel_alpha * eps_i``).
            Mutually exclusive with ``alpha``.
        norm: ``"linf"`` or ``"l2"``.
        random_start: Start from a point drawn uniformly from the eps-ball.
        restarts: Number of random restarts; only examples still not broken restart, and each
            keeps its best iterate (a success, else the highest loss). Needs ``random_start``.
        early_stop: Stop updating (and computing) examples as soon as the attack succeeds on
            them; the forward and backward passes then run on the remaining examples only.
        loss: ``"ce"`` (cross-entropy, the papers' J) or ``"margin"`` (the logit margin
            ``max_{j != y} z_j - z_y``, which keeps a gradient where a saturated softmax
            gives none).
        target_rule: Class an untargeted call moves towards: ``"none"`` (away from ``y``),
            ``"least_likely"`` (argmin of the clean logits) or ``"random"`` (uniform among the
            classes other than ``y``, drawn with ``generator``).
        bounds: Input box ``(lo, hi)``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For out-of-range arguments, or both ``alpha`` and ``rel_alpha``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> atk = IterativeGradientAttack(model, eps=0.1, steps=5, alpha=0.03)
        >>> atk(torch.rand(2, 4)).shape
        torch.Size([2, 4])
    """

    _threat_model: ThreatModel

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        steps: int | None = 10,
        alpha: float | None = None,
        rel_alpha: float | None = None,
        norm: str = "linf",
        random_start: bool = False,
        restarts: int = 1,
        early_stop: bool = False,
        loss: str = "ce",
        target_rule: str = "none",
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, bounds=bounds)
        self.eps = check_nonnegative(eps, "eps")
        self.steps = None if steps is None else check_int(steps, "steps", minimum=1)
        self.alpha = check_optional_positive(alpha, "alpha")
        self.rel_alpha = check_optional_positive(rel_alpha, "rel_alpha")
        if self.alpha is not None and self.rel_alpha is not None:
            raise ValueError(
                f"give at most one of alpha and rel_alpha, got alpha={alpha} and "
                f"rel_alpha={rel_alpha}"
            )
        self._threat_model = threat_from_norm(norm)
        self.norm = self._threat_model.norm
        self.random_start = check_flag(random_start, "random_start")
        self.restarts = check_int(restarts, "restarts", minimum=1)
        if self.restarts > 1 and not self.random_start:
            raise ValueError(
                f"restarts > 1 needs random_start=True (restarts from the same start repeat "
                f"the same run), got restarts={restarts} and random_start={random_start}"
            )
        self.early_stop = check_flag(early_stop, "early_stop")
        self.target_rule = check_option(target_rule, "target_rule", _TARGET_RULES)
        self.loss = check_option(loss, "loss", _LOSSES)

    # -------------------------------------------------------------------- hooks
    @property
    def _default_eps(self) -> float | None:
        return self.eps

    @property
    def _threat(self) -> ThreatModel | None:
        return self._threat_model

    @property
    def _wants_clean_graph(self) -> bool:
        # Without a random start the first step is taken at the clean input: reuse that pass.
        return not self.random_start

    @property
    def _wants_clean_logits(self) -> bool:
        return self.target_rule != "none"

    @property
    def targets_classes(self) -> bool:
        """True for the least-likely and random-class presets (StepLL, StepRnd, IterLL)."""
        return self.target_rule != "none"

    def _auto_target(
        self, clean: CleanForward | None, y: Tensor, generator: torch.Generator | None
    ) -> Tensor | None:
        if self.target_rule == "none" or clean is None:
            return None
        logits = clean.logits.detach()
        if self.target_rule == "least_likely":
            return logits.argmin(dim=1)
        k = logits.shape[1]
        if k < 2:
            raise ValueError(
                f"a random target other than the true class needs a model with at least 2 "
                f"classes, got model output of shape {tuple(logits.shape)}"
            )
        device = generator.device if generator is not None else y.device
        shift = torch.randint(1, k, y.shape, generator=generator, device=device).to(y.device)
        return (y + shift) % k

    def _schedule(self, eps: Tensor) -> tuple[int, Tensor]:
        """Number of steps and the per-example step size for a batch with radii ``eps``."""
        if self.rel_alpha is not None:
            alpha = eps * self.rel_alpha
            steps = self.steps if self.steps is not None else max(1, math.ceil(1 / self.rel_alpha))
            return steps, alpha
        a = self.alpha if self.alpha is not None else _KURAKIN_ALPHA
        # Kurakin's count from the largest eps: one host sync per call, only when steps is None.
        steps = self.steps if self.steps is not None else kurakin_steps(float(eps.max()), a)
        return steps, torch.full_like(eps, a)

    # ------------------------------------------------------------------- engine
    @final
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
        steps, alpha = self._schedule(eps)
        targeted = target is not None
        goal = target if target is not None else y
        label = target if target is not None else (guide if guide is not None else y)
        descend = target is not None or guide is not None
        reuse = clean if clean is not None and clean.x.requires_grad else None
        lo, hi = self.bounds
        # Best-iterate bookkeeping needs the loss of every iterate; a single step has one
        # candidate only, so FGSM and the other one-step presets skip it (and its extra pass).
        track = steps > 1 or self.restarts > 1

        if self.restarts == 1:
            start = x
            if self.random_start:
                start = self._threat_model.random_start(x, eps, generator).clamp(lo, hi)
                reuse = None
            out, _, _ = self._iterate(
                x, start, label, goal, eps, alpha, steps, descend, targeted, reuse, track
            )
            return out

        b = x.shape[0]
        best = x.clone()
        best_obj = torch.full((b,), -math.inf, device=x.device, dtype=torch.float32)
        rem = torch.arange(b, device=x.device)
        for r in range(self.restarts):
            xs, es, als = x[rem], eps[rem], alpha[rem]
            ls, gs = label[rem], goal[rem]
            start = self._threat_model.random_start(xs, es, generator).clamp(lo, hi)
            out, obj, succ = self._iterate(
                xs, start, ls, gs, es, als, steps, descend, targeted, None, True
            )
            better = succ | (obj > best_obj[rem])
            upd = rem[better]
            best.index_copy_(0, upd, out[better])
            best_obj.index_copy_(0, upd, torch.where(succ, math.inf, obj)[better])
            rem = rem[~succ]
            if r + 1 < self.restarts and rem.numel() == 0:  # one host sync per restart
                break
        return best

    @final
    def _iterate(
        self,
        x: Tensor,
        start: Tensor,
        label: Tensor,
        goal: Tensor,
        eps: Tensor,
        alpha: Tensor,
        steps: int,
        descend: bool,
        targeted: bool,
        reuse: CleanForward | None,
        track: bool,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Run ``steps`` gradient steps from ``start``; returns the best iterate per example.

        With ``track``, every iterate ``X_0 .. X_steps`` is a candidate, ranked by success
        first and objective second: each example gets its highest-objective successful
        iterate, else its highest-objective one (AutoAttack's bookkeeping): the forward pass
        of each step scores the point it is taken at, and one forward pass without backward
        scores the last iterate. Masks and ``torch.where`` keep this free of host syncs.
        Without ``track`` the last iterate is returned (one-step presets).

        With ``early_stop`` the batch shrinks to the examples not yet broken (index
        subsetting, one host sync per step), so forward and backward passes run on those
        only; finished examples keep the iterate at which they first succeeded.

        Returns:
            ``(x_out, objective, success)``: the chosen point per example, its objective
            (float32, the ascended one: negated when descending towards a class) and whether
            it succeeded. Without ``track`` the last two are meaningless (-inf, False).
        """
        model, threat = self.model, self._threat_model
        lo, hi = self.bounds
        n = x.shape[0]
        step = alpha if not descend else -alpha
        cur_x, cur_label, cur_goal, cur_eps, cur_step = x, label, goal, eps, step
        x_adv = start
        best_x = start
        best_obj = torch.full((n,), -math.inf, device=x.device, dtype=torch.float32)
        best_succ = torch.zeros(n, dtype=torch.bool, device=x.device)
        full: tuple[Tensor, Tensor, Tensor] | None = None  # all examples' outputs, once shrunk
        active: Tensor | None = None  # indices into full of the examples still updated
        for t in range(steps + 1 if track else steps):
            last = t == steps  # only scores the final iterate
            if t == 0 and reuse is not None:
                xi, logits = reuse.x, reuse.logits
            else:
                xi = x_adv.detach().requires_grad_(not last)
                with torch.set_grad_enabled(not last):
                    logits = check_logits(model(xi), xi.shape[0])
            per_example = _objective(logits, cur_label, self.loss)
            cur = xi.detach()
            succ = _succeeded(logits.detach().argmax(dim=1), cur_goal, targeted)
            if track:
                obj = per_example.detach().float()
                obj = -obj if descend else obj
                better = (succ & ~best_succ) | ((succ == best_succ) & (obj > best_obj))
                best_x = torch.where(_per_example(better, cur), cur, best_x)
                best_obj = torch.where(better, obj, best_obj)
                best_succ = best_succ | succ
            if last:
                break
            (g,) = torch.autograd.grad(per_example.sum(), xi)
            if self.early_stop:
                keep = ~succ
                n_keep = int(keep.sum())  # the one host sync per step that early stopping costs
                if n_keep < keep.numel():
                    if full is None:
                        full = (cur.clone(), best_obj.clone(), best_succ.clone())
                        active = torch.arange(cur.shape[0], device=cur.device)
                    if active is None:  # pragma: no cover - set together with full
                        raise RuntimeError("internal error: active set lost")
                    gone = active[~keep]  # broken now: their output is this iterate
                    full[0].index_copy_(0, gone, cur[~keep])
                    full[1].index_fill_(0, gone, math.inf)
                    full[2].index_fill_(0, gone, True)
                    active = active[keep]
                    if n_keep == 0:
                        break
                    cur, g = cur[keep], g[keep]
                    cur_x, cur_label, cur_goal = cur_x[keep], cur_label[keep], cur_goal[keep]
                    cur_eps, cur_step = cur_eps[keep], cur_step[keep]
                    best_x, best_obj, best_succ = best_x[keep], best_obj[keep], best_succ[keep]
            new = cur + _per_example(cur_step, cur) * threat.ascent_direction(g)
            x_adv = threat.clip(new, cur_x, cur_eps).clamp(lo, hi)
        out_x = best_x if track else x_adv
        if full is None:
            return out_x, best_obj, best_succ
        if active is not None and active.numel() > 0:
            full[0].index_copy_(0, active, out_x)
            full[1].index_copy_(0, active, best_obj)
            full[2].index_copy_(0, active, best_succ)
        return full
