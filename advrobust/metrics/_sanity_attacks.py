"""The checks of :func:`~advrobust.metrics.sanity_check` that run attacks.

The iterative and single-step attacks run once on the batch (:func:`run_attacks`); each
``find_*`` function reads their shared outcome, :class:`AttackRuns`, and returns its
:class:`Finding` (``None`` when the check passes). The gradient-free gap is in
:mod:`._sanity_gap`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..attacks import Attack, AttackResult
from ._loop import predict_labels
from ._result_base import _frac
from ._results_sanity import Finding, finding

__all__ = [
    "AttackRuns",
    "find_accuracy_above_clean",
    "find_iterative_weaker",
    "find_noise_beats_attack",
    "find_not_monotone",
    "find_unbounded_below_100",
    "run_attacks",
]


@dataclass(frozen=True)
class AttackRuns:
    """What the attack checks share: the attacks' outcomes on one batch of ``B`` examples.

    Attributes:
        correct: bool ``(B,)``: the clean input is classified correctly.
        grid: the eps values of the monotonicity check, as given.
        unbounded_eps: an eps covering the whole input box.
        adv_correct: bool ``(len(grid) + 2, B)``: the iterative attack's example is classified
            correctly, at each eps of ``grid``, then at eps, then at ``unbounded_eps``.
        success: bool, same shape: the iterative attack succeeded.
        iterative_at_eps: bool ``(B,)``: the iterative attack broke a correct example at eps.
        single: the single-step attack's result at eps.
        single_success: bool ``(B,)``: the single-step attack broke a correct example.
    """

    correct: Tensor
    grid: list[float]
    unbounded_eps: float
    adv_correct: Tensor
    success: Tensor
    iterative_at_eps: Tensor
    single: AttackResult
    single_success: Tensor


def run_attacks(
    x: Tensor,
    y: Tensor,
    correct: Tensor,
    iterative: Attack,
    single: Attack,
    *,
    eps: float,
    grid: list[float],
    norm: str,
    bounds: tuple[float, float],
    generator: torch.Generator | None,
) -> AttackRuns:
    """Run the attacks the attack checks share.

    One batched call of the iterative attack (the eps grid, eps itself and the whole box),
    then the single-step attack at eps.
    """
    b = int(x.shape[0])
    box = bounds[1] - bounds[0]
    unbounded_eps = box if norm == "linf" else box * math.sqrt(x[0].numel())
    eps_values = [*grid, eps, unbounded_eps]
    xs = x.repeat(len(eps_values), *([1] * (x.dim() - 1)))
    ys = y.repeat(len(eps_values))
    es = torch.tensor(eps_values, dtype=x.dtype, device=x.device).repeat_interleave(b)
    res = iterative.run(xs, ys, eps=es, generator=generator)
    succ = res.success.reshape(len(eps_values), b)
    single_res = single.run(x, y, eps=eps, generator=generator)
    return AttackRuns(
        correct=correct,
        grid=grid,
        unbounded_eps=unbounded_eps,
        adv_correct=(res.adv_pred == ys).reshape(len(eps_values), b),
        success=succ,
        iterative_at_eps=succ[len(grid)] & correct,
        single=single_res,
        single_success=single_res.success & correct,
    )


def find_iterative_weaker(runs: AttackRuns, eps: float, tolerance: float) -> Finding | None:
    """``iterative-weaker-than-single-step``: the single step breaks more examples at eps."""
    single, iterative = runs.single_success, runs.iterative_at_eps
    gap = (int(single.sum()) - int(iterative.sum())) / int(runs.correct.shape[0])
    if not gap > tolerance:
        return None
    return finding(
        "iterative-weaker-than-single-step",
        f"At eps={eps:.4g} the single-step attack breaks {int(single.sum())}"
        f" examples, the iterative attack only {int(iterative.sum())}. An "
        "iterative attack includes the single step as a special case; when it does "
        "worse its step size or iteration count is wrong, or the loss surface is "
        "masked (iterates get stuck). Tune the attack before trusting its number.",
        single_step_success=_frac(single),
        iterative_success=_frac(iterative),
    )


def find_not_monotone(runs: AttackRuns, tolerance: float) -> Finding | None:
    """``accuracy-not-monotone-in-eps``: adversarial accuracy rises from one eps to the next."""
    grid = runs.grid
    order = sorted(range(len(grid)), key=lambda i: grid[i])
    accs = [_frac(runs.correct)] + [_frac(runs.adv_correct[i]) for i in order]
    epss = [0.0] + [grid[i] for i in order]
    rises = [
        (epss[i], epss[i + 1], accs[i], accs[i + 1])
        for i in range(len(accs) - 1)
        if accs[i + 1] > accs[i] + tolerance
    ]
    if not rises:
        return None
    e0, e1, a0, a1 = rises[0]
    return finding(
        "accuracy-not-monotone-in-eps",
        f"Adversarial accuracy rises from {a0:.3f} at eps={e0:.4g} to {a1:.3f} at "
        f"eps={e1:.4g}. A larger ball contains the smaller one, so a working attack "
        "can only do better. Typical causes: a fixed absolute step size that "
        "overshoots at small eps, too few iterations, or gradient masking.",
        eps_from=e0,
        eps_to=e1,
        accuracy_from=a0,
        accuracy_to=a1,
    )


def find_unbounded_below_100(runs: AttackRuns) -> Finding | None:
    """``unbounded-attack-below-100``: at an eps covering the box, a correct example survives."""
    n_correct = int(runs.correct.sum())
    broken = runs.success[-1] & runs.correct
    unbroken = n_correct - int(broken.sum())
    if not unbroken > 0:
        return None
    return finding(
        "unbounded-attack-below-100",
        f"With eps={runs.unbounded_eps:.4g} (the whole input box) the attack leaves "
        f"{unbroken} of {n_correct} correctly classified examples unbroken. Any "
        "image can be reached at this eps, so a sound attack reaches 100%: the "
        "attack is not optimising properly (masked or zero gradients, too few "
        "steps) and its numbers at small eps are not trustworthy either.",
        success=int(broken.sum()) / max(n_correct, 1),
        unbroken=unbroken,
    )


def _noise(
    x: Tensor, eps: float, norm: str, samples: int, generator: torch.Generator | None
) -> Tensor:
    shape = (samples, *x.shape)
    dev = generator.device if generator is not None else x.device
    u = torch.rand(shape, generator=generator, dtype=x.dtype, device=dev).to(x.device)
    if norm == "linf":
        delta = eps * torch.sign(u - 0.5)
    else:
        g = torch.randn(shape, generator=generator, dtype=x.dtype, device=dev).to(x.device)
        flat = g.flatten(2)
        delta = (eps * flat / flat.norm(dim=2, keepdim=True).clamp_min(1e-12)).reshape(shape)
    return delta


def find_noise_beats_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    runs: AttackRuns,
    *,
    eps: float,
    norm: str,
    bounds: tuple[float, float],
    samples: int,
    tolerance: float,
    generator: torch.Generator | None,
) -> Finding | None:
    """``noise-beats-attack``: random perturbations of size eps break what the attack does not."""
    delta = _noise(x, eps, norm, samples, generator)
    xn = (x.unsqueeze(0) + delta).clamp(bounds[0], bounds[1]).flatten(0, 1)
    pn = predict_labels(model, xn).reshape(samples, int(x.shape[0]))
    noise_broken = (pn != y).any(0) & runs.correct
    beats = noise_broken & ~runs.iterative_at_eps
    if not _frac(beats) > tolerance:
        return None
    return finding(
        "noise-beats-attack",
        f"Random perturbations of size eps={eps:.4g} break {int(beats.sum())} "
        "examples the gradient attack does not break. The gradient is not "
        "pointing anywhere useful (gradient masking, wrong loss, wrong labels) "
        "and the attack's success rate overstates robustness.",
        noise_only=int(beats.sum()),
        noise_success=_frac(noise_broken),
        attack_success=_frac(runs.iterative_at_eps),
    )


def find_accuracy_above_clean(runs: AttackRuns, y: Tensor, tolerance: float) -> Finding | None:
    """``adversarial-accuracy-above-clean``: either attack's accuracy beats the clean one."""
    clean_acc = _frac(runs.correct)
    single_acc = _frac(runs.single.adv_pred == y)
    iter_acc = _frac(runs.adv_correct[len(runs.grid)])
    worst = max(single_acc, iter_acc)
    if not worst > clean_acc + tolerance:
        return None
    return finding(
        "adversarial-accuracy-above-clean",
        f"Accuracy under attack ({worst:.3f}) is above clean accuracy "
        f"({clean_acc:.3f}). Attacks built with the true label can leak it: a model "
        "trained on such examples learns to read the label from the perturbation "
        "(Kurakin et al. 2016 sec. 4.2). Attack with the model's predicted labels "
        "(y=None) and count leaks with label_leak_count.",
        clean_accuracy=clean_acc,
        single_step_accuracy=single_acc,
        iterative_accuracy=iter_acc,
    )
