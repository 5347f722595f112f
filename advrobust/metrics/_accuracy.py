"""Accuracy, success rate, Kurakin's accuracy ratio and the adversarial accuracy of eq. (5).

Eq. (5) and the success rate over correctly classified inputs come from "How training data
affect the accuracy and robustness of neural networks for image classification" (ICLR 2019
submission), the training-data study.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validate import check_positive, model_state_guard
from ..attacks import Attack
from ._loop import (
    Batch,
    as_run,
    bind_attack,
    check_eps_arg,
    check_model,
    check_norm,
    evaluate,
    predict_checked,
    run_attack,
)
from ._results_accuracy import (
    AccuracyRatioResult,
    AccuracyResult,
    AdversarialAccuracyResult,
    SuccessRateResult,
)

__all__ = ["accuracy", "accuracy_ratio", "adversarial_accuracy", "success_rate"]

# Attacks keep x_adv inside the eps-ball "within float tolerance"; a perturbation counts as
# within Delta when its norm is at most Delta * (1 + _REL) + _ABS.
_REL = 1e-5
_ABS = 1e-6


def accuracy(
    model: nn.Module, data: object, *, batch_size: int = 256, progress: bool = False
) -> AccuracyResult:
    """Clean accuracy of ``model`` on ``data``, in eval mode.

    Args:
        model: classifier returning logits ``(B, K)``; evaluated in eval mode (every
            submodule's training flag is restored afterwards).
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.

    Returns:
        :class:`AccuracyResult` with per-example ``correct`` and ``pred``.

    Raises:
        TypeError, ValueError: bad model output, labels or data (empty data included).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long)
        >>> 0.0 <= accuracy(model, (x, y)).value <= 1.0
        True
    """
    check_model(model)

    def fn(b: Batch) -> dict[str, Tensor]:
        pred = predict_checked(model, b).argmax(1)
        return {"correct": pred == b.y, "pred": pred, "y": b.y}

    with model_state_guard(model):
        out = evaluate(data, fn, batch_size=batch_size, progress=progress, desc="accuracy")
    return AccuracyResult(out["correct"], out["pred"], out["y"])


def success_rate(
    model: nn.Module,
    data: object,
    attack: Attack,
    *,
    eps: float | Tensor | None = None,
    only_correct: bool = True,
    use_labels: bool = True,
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> SuccessRateResult:
    """Fraction of examples the attack breaks.

    As in the training-data study, only clean inputs the model classifies correctly count by default
    (``only_correct=False`` counts every example).

    Args:
        model: the attacked classifier (the attack is re-bound to it if built for another).
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        attack: an :class:`advrobust.attacks.Attack`.
        eps: call-time eps, a float or a tensor ``(N,)`` with one value per example; None
            uses the attack's own eps.
        only_correct: count only the clean-correct examples in ``value``.
        use_labels: attack with the true labels (True) or the model's predictions (False).
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.
        generator: random generator passed to the attack.

    Returns:
        :class:`SuccessRateResult`.

    Raises:
        TypeError, ValueError: bad arguments or data.
    """
    eps = check_eps_arg(eps)
    attack = as_run(bind_attack(attack, check_model(model)), eps)

    def fn(b: Batch) -> dict[str, Tensor]:
        pred = predict_checked(model, b).argmax(1)
        res = run_attack(attack, b, b.y if use_labels else None, eps, generator)
        return {
            "success": res.success,
            "correct": pred == b.y,
            "adv_pred": res.adv_pred,
            "l2": res.l2,
            "linf": res.linf,
        }

    out = evaluate(
        data,
        fn,
        batch_size=batch_size,
        progress=progress,
        desc="success rate",
        bounds=attack.bounds,
        eps=eps,
    )
    return SuccessRateResult(
        out["success"],
        out["correct"],
        out["adv_pred"],
        out["l2"],
        out["linf"],
        only_correct,
        attack.spec(),
    )


def accuracy_ratio(
    model: nn.Module,
    data: object,
    attack: Attack,
    *,
    eps: float | Tensor | None = None,
    use_labels: bool = True,
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> AccuracyRatioResult:
    """Kurakin's accuracy ratio (sec. 4.3): adversarial accuracy / clean accuracy.

    Adversarial examples are built from every example (as in the paper), with the true labels
    by default. A ratio above 1 signals a defective evaluation such as label leaking.

    Args:
        model: the attacked classifier.
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        attack: an :class:`advrobust.attacks.Attack`.
        eps: call-time eps (float or ``(N,)`` tensor); None uses the attack's eps.
        use_labels: attack with the true labels (True) or the model's predictions (False).
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.
        generator: random generator passed to the attack.

    Returns:
        :class:`AccuracyRatioResult`.
    """
    eps = check_eps_arg(eps)
    attack = as_run(bind_attack(attack, check_model(model)), eps)

    def fn(b: Batch) -> dict[str, Tensor]:
        pred = predict_checked(model, b).argmax(1)
        res = run_attack(attack, b, b.y if use_labels else None, eps, generator)
        return {"clean": pred == b.y, "adv": res.adv_pred == b.y}

    out = evaluate(
        data,
        fn,
        batch_size=batch_size,
        progress=progress,
        desc="accuracy ratio",
        bounds=attack.bounds,
        eps=eps,
    )
    return AccuracyRatioResult(out["clean"], out["adv"], attack.spec())


def adversarial_accuracy(
    model: nn.Module,
    data: object,
    attack: Attack,
    *,
    delta: float,
    norm: str | None = None,
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> AdversarialAccuracyResult:
    r"""Adversarial accuracy of the training-data study, eq. (5) (appendix).

    $$\mathrm{Robustness}(M) = 1 - \frac{\text{wrong predictions} +
    \text{successful attacks}}{|T|}$$

    Only correctly classified inputs are attacked; an attack on ``x`` is successful when
    ``M(x') != M(x)`` and ``||x - x'||_p <= delta``. Fixed-eps attacks run with
    ``eps=delta`` (the result's spec records it) and the model's own predictions as labels;
    minimal-norm attacks (``attack.spec().kind == "minimal"``, e.g. CW-L2) run as they are and
    their perturbations are thresholded at ``delta``.

    Args:
        model: the attacked classifier.
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        attack: an :class:`advrobust.attacks.Attack`.
        delta: the distortion threshold Delta (> 0), in input units.
        norm: ``"linf"`` or ``"l2"``: the p of ``||x - x'||_p``; None uses the attack's norm.
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.
        generator: random generator passed to the attack.

    Returns:
        :class:`AdversarialAccuracyResult`.

    Raises:
        ValueError: ``delta`` not positive, unknown ``norm``, bad data.
    """
    attack = bind_attack(attack, check_model(model))
    delta = check_positive(delta, "delta")
    norm = check_norm(attack.spec().norm if norm is None else norm)
    attack = as_run(attack, delta)
    limit = delta * (1 + _REL) + _ABS

    def fn(b: Batch) -> dict[str, Tensor]:
        pred = predict_checked(model, b).argmax(1)
        correct = pred == b.y
        res = run_attack(attack, b, pred, delta, generator)
        dist = res.l2 if norm == "l2" else res.linf
        success = correct & (res.adv_pred != pred) & (dist <= limit)
        return {"correct": correct, "success": success, "distance": dist}

    out = evaluate(
        data,
        fn,
        batch_size=batch_size,
        progress=progress,
        desc="adversarial accuracy",
        bounds=attack.bounds,
    )
    return AdversarialAccuracyResult(
        out["correct"], out["success"], out["distance"], delta, norm, attack.spec()
    )
