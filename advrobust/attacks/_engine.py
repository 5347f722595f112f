"""One iterative gradient engine; FGSM, StepLL, StepRnd, BIM, IterLL and PGD are its presets."""

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
    check_positive,
)

from ._base import Attack, CleanForward, _check_bool, _succeeded, logit_margin
from ._registry import register_attack
from ._threat import ThreatModel, _per_example, threat_from_norm

__all__ = ["BIM", "FGSM", "PGD", "IterLL", "IterativeGradientAttack", "StepLL", "StepRnd"]

_TARGET_RULES: Final = ("none", "least_likely", "random")
_LOSSES: Final = ("ce", "margin")
_KURAKIN_ALPHA: Final = 1.0 / 255.0
_MADRY_ALPHA: Final = 2.0 / 255.0


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

    With ``alpha = 1/255`` this is the paper's ``min(eps*255 + 4, 1.25*eps*255)`` (002 sec. 2.2).
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
        self.alpha = None if alpha is None else check_positive(alpha, "alpha")
        self.rel_alpha = None if rel_alpha is None else check_positive(rel_alpha, "rel_alpha")
        if self.alpha is not None and self.rel_alpha is not None:
            raise ValueError(
                f"give at most one of alpha and rel_alpha, got alpha={alpha} and "
                f"rel_alpha={rel_alpha}"
            )
        self._threat_model = threat_from_norm(norm)
        self.norm = self._threat_model.norm
        self.random_start = _check_bool(random_start, "random_start")
        self.restarts = check_int(restarts, "restarts", minimum=1)
        if self.restarts > 1 and not self.random_start:
            raise ValueError(
                f"restarts > 1 needs random_start=True (restarts from the same start repeat "
                f"the same run), got restarts={restarts} and random_start={random_start}"
            )
        self.early_stop = _check_bool(early_stop, "early_stop")
        if target_rule not in _TARGET_RULES:
            raise ValueError(f"target_rule must be one of {_TARGET_RULES}, got {target_rule!r}")
        self.target_rule = target_rule
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
        self.loss = loss

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


_BOUNDS_DEFAULT: Final = (0.0, 1.0)


class _Preset(IterativeGradientAttack):
    """A named configuration of the engine.

    ``config`` (from [`Attack`][advrobust.attacks.Attack]) lists the preset's own constructor
    arguments only, read from the engine's attributes of the same names.
    """


@final
@register_attack(
    description="Fast gradient sign method, one step of size eps (Linf) or the L2 fast gradient",
    paper=(
        'Goodfellow, Shlens, Szegedy, "Explaining and harnessing adversarial examples", ICLR 2015'
    ),
)
class FGSM(_Preset):
    """Fast gradient sign method: one step of size eps (Goodfellow et al. 2015).

    Update rule (Kurakin et al. 2016 sec. 2.2 and appendix A):

    ```text
    X_adv = Clip( X + eps * sign(grad_X J(X, y)) )          norm="linf"
    X_adv = Clip( X + eps * g / ||g||_2 ), g = grad_X J     norm="l2" (fast gradient L2)
    ```

    With ``y=None`` the labels are the model's predictions on ``X`` ("FGSM with predicted
    class"), which avoids label leaking.

    Args:
        model: Classifier returning logits ``(B, K)``.
        eps: Radius in input units (e.g. 8/255 for images in [0, 1]).
        norm: ``"linf"`` (sign step) or ``"l2"`` (normalised gradient step).
        bounds: Input box ``(lo, hi)``.

    Result: Calling the attack returns ``x_adv`` (same shape, dtype, device as ``x``); ``run``
    returns an [`AttackResult`][advrobust.attacks.AttackResult].

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For a negative eps or an unknown norm.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x = torch.full((2, 4), 0.5)
        >>> x_adv = FGSM(model, eps=0.1)(x, torch.tensor([0, 1]))
        >>> bool(((x_adv - x).abs() <= 0.1 + 1e-6).all())
        True

    Reference:
        Goodfellow, Shlens, Szegedy, "Explaining and harnessing adversarial examples", 2015.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        norm: str = "linf",
        bounds: tuple[float, float] = _BOUNDS_DEFAULT,
    ) -> None:
        super().__init__(model, eps, steps=1, rel_alpha=1.0, norm=norm, bounds=bounds)


@final
@register_attack(
    description="One step away from the least-likely class (step l.l.)",
    paper=('Kurakin, Goodfellow, Bengio, "Adversarial machine learning at scale", ICLR 2017'),
)
class StepLL(_Preset):
    """Single-step least-likely class method (Kurakin et al. 2016 sec. 2.2, "step l.l.").

    Update rule:

    ```text
    X_adv = Clip( X - eps * sign(grad_X J(X, y_LL)) ),   y_LL = argmin_k logits(X)_k
    ```

    ``y_LL`` is fixed from the clean input. The attack is untargeted in purpose: success means
    ``adv_pred != y`` (a call-time ``target=`` makes it a targeted step towards ``target``).

    Args:
        model: Classifier returning logits ``(B, K)``.
        eps: Radius in input units.
        bounds: Input box ``(lo, hi)``.

    Result: ``x_adv`` when called; an [`AttackResult`][advrobust.attacks.AttackResult] from ``run``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For a negative eps.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> StepLL(model, eps=0.1)(torch.rand(2, 4)).shape
        torch.Size([2, 4])

    Reference:
        Kurakin, Goodfellow, Bengio, "Adversarial machine learning at scale", ICLR 2017.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        bounds: tuple[float, float] = _BOUNDS_DEFAULT,
    ) -> None:
        super().__init__(
            model, eps, steps=1, rel_alpha=1.0, target_rule="least_likely", bounds=bounds
        )


@final
@register_attack(
    description="One step towards a random other class (step rnd.)",
    paper=('Kurakin, Goodfellow, Bengio, "Adversarial machine learning at scale", ICLR 2017'),
)
class StepRnd(_Preset):
    """Single-step random-class method (Kurakin et al. 2016 sec. 2.2, "step rnd.").

    Update rule:

    ```text
    X_adv = Clip( X - eps * sign(grad_X J(X, y_rnd)) )
    ```

    ``y_rnd`` is drawn uniformly among the classes other than ``y`` with the call's
    ``generator``. Success means ``adv_pred != y`` (or ``== target`` with ``target=``).

    Args:
        model: Classifier returning logits ``(B, K)`` with ``K >= 2``.
        eps: Radius in input units.
        bounds: Input box ``(lo, hi)``.

    Result: ``x_adv`` when called; an [`AttackResult`][advrobust.attacks.AttackResult] from ``run``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For a negative eps, or (at call time) a model with fewer than 2 classes.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> g = torch.Generator().manual_seed(0)
        >>> StepRnd(model, eps=0.1)(torch.rand(2, 4), generator=g).shape
        torch.Size([2, 4])

    Reference:
        Kurakin, Goodfellow, Bengio, "Adversarial machine learning at scale", ICLR 2017.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        bounds: tuple[float, float] = _BOUNDS_DEFAULT,
    ) -> None:
        super().__init__(model, eps, steps=1, rel_alpha=1.0, target_rule="random", bounds=bounds)


@final
@register_attack(
    description="Basic iterative method, I-FGSM, with the Kurakin schedule",
    paper=(
        'Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world",'
        " ICLR workshop 2017"
    ),
)
class BIM(_Preset):
    """Basic iterative method, I-FGSM (Kurakin et al. 2016 sec. 2.2, "iter. basic").

    Update rule:

    ```text
    X_0 = X;  X_{N+1} = Clip_{X,eps}( X_N + alpha * sign(grad_X J(X_N, y)) )
    ```

    (``g / ||g||_2`` instead of ``sign`` for ``norm="l2"``). Defaults are Kurakin's:
    ``alpha = 1/255`` and ``round(min(eps*255 + 4, 1.25*eps*255))`` iterations (with
    per-example eps, the largest one sets the count). Paper 000's schedule is
    ``steps=T, rel_alpha=1/T``.

    Args:
        model: Classifier returning logits ``(B, K)``.
        eps: Radius in input units.
        alpha: Step size in input units; None for Kurakin's 1/255.
        steps: Iterations; None for Kurakin's count (``ceil(1/rel_alpha)`` with ``rel_alpha``).
        rel_alpha: Step size as a fraction of each example's eps (exclusive with ``alpha``).
        norm: ``"linf"`` or ``"l2"``.
        early_stop: Stop updating examples once they are misclassified.
        loss: ``"ce"`` (the papers' cross-entropy J) or ``"margin"`` (logit margin, for
            over-confident models whose saturated softmax gives zero gradients).
        bounds: Input box ``(lo, hi)``.

    Result: ``x_adv`` when called; an [`AttackResult`][advrobust.attacks.AttackResult] from ``run``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For negative eps, non-positive alpha, steps < 1, or alpha with rel_alpha.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> BIM(model, eps=4 / 255).config()["steps"] is None
        True
        >>> BIM(model, eps=0.1, steps=5, rel_alpha=0.2).run(torch.rand(2, 4)).x_adv.shape
        torch.Size([2, 4])

    Reference:
        Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world", 2016.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        alpha: float | None = None,
        steps: int | None = None,
        rel_alpha: float | None = None,
        norm: str = "linf",
        early_stop: bool = False,
        loss: str = "ce",
        bounds: tuple[float, float] = _BOUNDS_DEFAULT,
    ) -> None:
        super().__init__(
            model,
            eps,
            steps=steps,
            alpha=alpha,
            rel_alpha=rel_alpha,
            norm=norm,
            early_stop=early_stop,
            loss=loss,
            bounds=bounds,
        )


@final
@register_attack(
    description="Iterative least-likely class method (iter. l.l.)",
    paper=(
        'Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world",'
        " ICLR workshop 2017"
    ),
)
class IterLL(_Preset):
    """Iterative least-likely class method (Kurakin et al. 2016 sec. 2.2, "iter. l.l.").

    Update rule:

    ```text
    X_0 = X;  X_{N+1} = Clip_{X,eps}( X_N - alpha * sign(grad_X J(X_N, y_LL)) )
    ```

    with ``y_LL = argmin_k logits(X)_k`` fixed from the clean input, and BIM's defaults for
    ``alpha`` and the number of iterations. Success means ``adv_pred != y``.

    Args:
        model: Classifier returning logits ``(B, K)``.
        eps: Radius in input units.
        alpha: Step size in input units; None for Kurakin's 1/255.
        steps: Iterations; None for Kurakin's count.
        rel_alpha: Step size as a fraction of each example's eps (exclusive with ``alpha``).
        early_stop: Stop updating examples once they are misclassified.
        bounds: Input box ``(lo, hi)``.

    Result: ``x_adv`` when called; an [`AttackResult`][advrobust.attacks.AttackResult] from ``run``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For negative eps, non-positive alpha, steps < 1, or alpha with rel_alpha.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> IterLL(model, eps=0.1, steps=3)(torch.rand(2, 4)).shape
        torch.Size([2, 4])

    Reference:
        Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world", 2016.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        alpha: float | None = None,
        steps: int | None = None,
        rel_alpha: float | None = None,
        early_stop: bool = False,
        bounds: tuple[float, float] = _BOUNDS_DEFAULT,
    ) -> None:
        super().__init__(
            model,
            eps,
            steps=steps,
            alpha=alpha,
            rel_alpha=rel_alpha,
            early_stop=early_stop,
            target_rule="least_likely",
            bounds=bounds,
        )


@final
@register_attack(
    description="Projected gradient descent with a random start and restarts",
    paper=(
        'Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards deep learning models resistant to "'
        'adversarial attacks",'
        " ICLR 2018"
    ),
)
class PGD(_Preset):
    """Projected gradient descent with a uniform random start (Madry et al. 2018).

    Update rule (003 eq. 7):

    ```text
    X_0 ~ U(ball(X, eps));  X_{N+1} = Proj_{ball(X,eps) ∩ bounds}( X_N + alpha * dir(g_N) )
    ```

    ``dir(g) = sign(g)`` for ``norm="linf"``, ``g / ||g||_2`` for ``"l2"``; the L2 random
    start is uniform in the ball's volume. With ``restarts > 1`` only the examples not yet
    broken restart and each keeps its best iterate. Madry's CIFAR-10 setting is the default:
    eps 8/255, step 2/255, 10 steps.

    Args:
        model: Classifier returning logits ``(B, K)``.
        eps: Radius in input units.
        alpha: Step size in input units; None (without ``rel_alpha``): Madry's 2/255.
        steps: Iterations per restart.
        rel_alpha: Step size as a fraction of each example's eps (exclusive with ``alpha``).
        norm: ``"linf"`` or ``"l2"``.
        random_start: Start from a uniform point of the ball (False gives BIM with projection).
        restarts: Number of random restarts (>= 1).
        early_stop: Stop updating examples once the attack succeeds on them.
        loss: ``"ce"`` (the papers' cross-entropy J) or ``"margin"`` (logit margin, for
            over-confident models whose saturated softmax gives zero gradients).
        bounds: Input box ``(lo, hi)``.

    Result: ``x_adv`` when called; an [`AttackResult`][advrobust.attacks.AttackResult] from ``run``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For negative eps, non-positive alpha, steps or restarts < 1,
            restarts > 1 without random start, or both ``alpha`` and ``rel_alpha``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> atk = PGD(model, eps=0.1, steps=5)
        >>> atk.config()["alpha"] == 2 / 255
        True
        >>> g = torch.Generator().manual_seed(0)
        >>> atk.run(torch.rand(2, 4), generator=g).success.shape
        torch.Size([2])

    Reference:
        Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards deep learning models resistant to
        adversarial attacks", ICLR 2018.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        alpha: float | None = None,
        steps: int = 10,
        rel_alpha: float | None = None,
        norm: str = "linf",
        random_start: bool = True,
        restarts: int = 1,
        early_stop: bool = False,
        loss: str = "ce",
        bounds: tuple[float, float] = _BOUNDS_DEFAULT,
    ) -> None:
        if alpha is None and rel_alpha is None:
            alpha = _MADRY_ALPHA  # the default; an explicit alpha with rel_alpha is an error
        super().__init__(
            model,
            eps,
            steps=steps,
            alpha=alpha,
            rel_alpha=rel_alpha,
            norm=norm,
            random_start=random_start,
            restarts=restarts,
            early_stop=early_stop,
            loss=loss,
            bounds=bounds,
        )
