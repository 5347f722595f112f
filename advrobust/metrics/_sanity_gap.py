"""The ``gradient-free-gap`` check of :func:`~advrobust.metrics.sanity_check`.

A gradient-free attack (Square by default) or the attacks of an ensemble evaluation
(:func:`~advrobust.metrics.robust_accuracy`) that break examples the gradient attack reports
robust show that the gradient attack is misled by its gradients: gradient masking.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from advrobust.attacks import lp_norm

from .._validate import describe
from ..attacks import Attack, create_attack, list_attacks
from ._loop import bind_attack
from ._result_base import _frac
from ._results_robust import RobustAccuracyResult
from ._results_sanity import Finding, finding

__all__ = ["find_gradient_free_gap", "gap_inputs"]


def gap_inputs(
    model: nn.Module,
    x: Tensor,
    eps: float,
    norm: str,
    bounds: tuple[float, float],
    gradient_free: object,
    ensemble: object,
) -> tuple[Attack | None, RobustAccuracyResult | None]:
    """The gradient-free attack and the ensemble result of ``gradient-free-gap``, checked."""
    gf: Attack | None = None
    if gradient_free is None:
        if "Square" in list_attacks():
            gf = create_attack("Square", model, eps=eps, norm=norm, queries=1000, bounds=bounds)
    elif gradient_free is not False:
        gf = bind_attack(gradient_free, model, "gradient_free")
    if ensemble is None:
        return gf, None
    if not isinstance(ensemble, RobustAccuracyResult):
        raise TypeError(
            f"ensemble must be a RobustAccuracyResult from robust_accuracy, got "
            f"{describe(ensemble)}"
        )
    b = int(x.shape[0])
    if tuple(ensemble.robust.shape) != (b,):
        raise ValueError(
            f"ensemble must be computed on this batch: it has {ensemble.robust.numel()} "
            f"examples, x has {b}"
        )
    if ensemble.norm != norm or not math.isclose(ensemble.eps, eps, rel_tol=1e-6):
        raise ValueError(
            f"ensemble was computed at eps={ensemble.eps:.6g} in {ensemble.norm!r}, but the "
            f"checks run at eps={eps:.6g} in {norm!r}; pass the same eps and norm"
        )
    return gf, ensemble


def find_gradient_free_gap(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: str,
    correct: Tensor,
    gradient_broken: Tensor,
    gf: Attack | None,
    ens: RobustAccuracyResult | None,
    tolerance: float,
    generator: torch.Generator | None,
) -> Finding | None:
    """The ``gradient-free-gap`` finding, or None when no source beats the gradient attack."""
    b = int(x.shape[0])
    limit = eps * (1 + 1e-5) + 1e-6
    details: dict[str, Any] = {"gradient_attack_robust_accuracy": _frac(correct & ~gradient_broken)}
    parts: list[str] = []
    worst = 0.0
    if gf is not None:
        spec = gf.spec()
        res = (
            gf.run(x, y, eps=eps, generator=generator)
            if spec.bounded
            else gf.run(x, y, generator=generator)
        )
        dist = lp_norm((res.x_adv - x).double(), norm)
        broken = (res.adv_pred != y) & correct & (dist <= limit)
        gap = broken & ~gradient_broken
        details[f"{spec.name}_robust_accuracy"] = _frac(correct & ~broken)
        details[f"{spec.name}_only"] = int(gap.sum())
        worst = max(worst, _frac(gap))
        if _frac(gap) > tolerance:
            parts.append(
                f"the gradient-free {spec.name} attack breaks {int(gap.sum())} of {b} examples "
                f"the gradient attack reports robust (robust accuracy "
                f"{_frac(correct & ~gradient_broken):.3f} under the gradient attack, "
                f"{_frac(correct & ~broken):.3f} under {spec.name})"
            )
    if ens is not None:
        robust = ens.robust.to(x.device)
        broken = ~robust & correct
        gap = broken & ~gradient_broken
        by = ens.broken_by.to(x.device)[gap]
        names = [a.spec.name for a in ens.attacks]
        counts = {names[i]: int((by == i).sum()) for i in range(len(names))}
        details["ensemble_robust_accuracy"] = ens.value
        details["ensemble_only"] = int(gap.sum())
        for name, c in counts.items():
            details[f"ensemble_only[{name}]"] = c
        worst = max(worst, _frac(gap))
        if _frac(gap) > tolerance:
            who = ", ".join(f"{c} by {n}" for n, c in counts.items() if c)
            parts.append(
                f"the ensemble ({', '.join(names)}) breaks {int(gap.sum())} of {b} examples the "
                f"gradient attack reports robust ({who}; robust accuracy "
                f"{_frac(correct & ~gradient_broken):.3f} under the gradient attack, "
                f"{ens.value:.3f} under the ensemble)"
            )
    if not parts:
        return None
    details["gap"] = worst
    return finding(
        "gradient-free-gap",
        "At eps={:.4g}, {}. A gradient attack should do at least as well as random search; "
        "when it does not, its gradients mislead it: gradient masking (a quantising or "
        "non-differentiable layer, a saturated softmax, randomness). Report the ensemble's "
        "number (robust_accuracy with the standard suite), and attack through a "
        "differentiable approximation (BPDA) before trusting the gradient attack.".format(
            eps, "; ".join(parts)
        ),
        **details,
    )
