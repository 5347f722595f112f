"""Label leaking (Kurakin, Goodfellow, Bengio 2016, sec. 4.2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validate import check_bounds, describe
from ._loop import (
    Batch,
    as_run,
    bind_attack,
    check_eps_arg,
    check_model,
    evaluate,
    predict_checked,
    run_attack,
)
from ._results_accuracy import LabelLeakResult

__all__ = ["label_leak_count"]


def label_leak_count(
    model: nn.Module,
    data: object,
    *,
    eps: float | Tensor | None = None,
    attack_true: object = None,
    attack_pred: object = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> LabelLeakResult:
    """Count the examples whose label leaks through the attack (Kurakin sec. 4.2).

    The label of an example is leaked iff the model classifies correctly the adversarial
    example generated *with* the true label (``attack_true`` run with ``y``) but misclassifies
    the one generated *without* it (``attack_pred`` run with ``y=None``, i.e. on the model's
    own predictions). The default pair is FGSM vs FGSM with predicted labels.

    Args:
        model: the classifier.
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        eps: attack radius (float or ``(N,)`` tensor). Required when a default attack is
            used; otherwise it overrides the attacks' own eps when given.
        attack_true: attack run with the true labels (default ``FGSM(model, bounds=bounds)``).
        attack_pred: attack run with the predicted labels (default: the same as
            ``attack_true``).
        bounds: input box of the default attacks.
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.
        generator: random generator passed to the attacks.

    Returns:
        :class:`LabelLeakResult` with ``count`` and the per-example ``mask``.

    Raises:
        TypeError: ``attack_true`` or ``attack_pred`` not an attack (nor None).
        ValueError: ``eps`` missing with a default attack, bad data.
    """
    from ..attacks import FGSM, Attack

    model = check_model(model)
    for arg, value in (("attack_true", attack_true), ("attack_pred", attack_pred)):
        if value is not None and not isinstance(value, Attack):
            raise TypeError(
                f"{arg} must be an advrobust.attacks.Attack or None, got {describe(value)}"
            )
    eps = check_eps_arg(eps)
    if (attack_true is None or attack_pred is None) and eps is None:
        raise ValueError(
            "eps is required when attack_true or attack_pred is left to the FGSM default"
        )
    bounds = check_bounds(bounds)
    default = FGSM(model, bounds=bounds)
    atk_true = bind_attack(default if attack_true is None else attack_true, model, "attack_true")
    atk_pred = bind_attack(atk_true if attack_pred is None else attack_pred, model, "attack_pred")
    atk_true, atk_pred = as_run(atk_true, eps), as_run(atk_pred, eps)

    def fn(b: Batch) -> dict[str, Tensor]:
        clean = predict_checked(model, b).argmax(1) == b.y
        adv_true = run_attack(atk_true, b, b.y, eps, generator)
        adv_pred = run_attack(atk_pred, b, None, eps, generator)
        correct_true = adv_true.adv_pred == b.y
        correct_pred = adv_pred.adv_pred == b.y
        return {
            "mask": correct_true & ~correct_pred,
            "correct_true": correct_true,
            "correct_pred": correct_pred,
            "clean": clean,
        }

    out = evaluate(
        data,
        fn,
        batch_size=batch_size,
        progress=progress,
        desc="label leaking",
        bounds=atk_true.bounds,
        eps=eps,
    )
    return LabelLeakResult(
        out["mask"],
        out["correct_true"],
        out["correct_pred"],
        out["clean"],
        atk_true.spec(),
        atk_pred.spec(),
    )
