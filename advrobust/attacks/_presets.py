"""The engine's presets: FGSM, StepLL, StepRnd, BIM, IterLL and PGD.

Each preset is a named configuration of
[`IterativeGradientAttack`][advrobust.attacks.IterativeGradientAttack] that exposes only the
arguments its paper varies and fixes the rest (step count, step size, random start, target
rule).
"""

from __future__ import annotations

from typing import Final, final

from torch import nn

from ._engine import IterativeGradientAttack
from ._registry import register_attack

__all__ = ["BIM", "FGSM", "PGD", "IterLL", "StepLL", "StepRnd"]

_MADRY_ALPHA: Final = 2.0 / 255.0
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
    per-example eps, the largest one sets the count). The ICLR 2019 study's schedule is
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
        "Madry, Makelov, Schmidt, Tsipras, Vladu, "
        '"Towards deep learning models resistant to adversarial attacks", ICLR 2018'
    ),
)
class PGD(_Preset):
    """Projected gradient descent with a uniform random start (Madry et al. 2018).

    Update rule (Madry et al. 2018 eq. 7):

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
