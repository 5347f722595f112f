"""The checks of :func:`~advrobust.metrics.sanity_check`, one function per check.

Each ``find_*`` function measures one thing an honest evaluation must satisfy and returns its
:class:`Finding` (``None`` when the check passes). The checks on the model alone read its
outputs and input gradients; the attack checks share one :class:`AttackRuns`, the outcome of
the iterative and single-step attacks on the batch. The gradient-free gap is in
:mod:`._sanity_gap`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import model_state_guard
from ..attacks import Attack, AttackResult, logit_margin
from ._loop import predict_labels
from ._result_base import _frac
from ._results_sanity import Finding

__all__ = [
    "SANITY_CHECKS",
    "AttackRuns",
    "finding",
    "find_accuracy_above_clean",
    "find_iterative_weaker",
    "find_noise_beats_attack",
    "find_nonfinite_gradients",
    "find_not_monotone",
    "find_probability_outputs",
    "find_randomness",
    "find_unbounded_below_100",
    "find_zero_gradients",
    "input_gradients",
    "run_attacks",
]

DOCS_PAGE = "docs/guide/evaluation-pitfalls.md"

SANITY_CHECKS: tuple[str, ...] = (
    "probability-outputs",
    "randomness",
    "zero-gradients",
    "nonfinite-gradients",
    "iterative-weaker-than-single-step",
    "accuracy-not-monotone-in-eps",
    "unbounded-attack-below-100",
    "noise-beats-attack",
    "adversarial-accuracy-above-clean",
    "gradient-free-gap",
)

_TITLES = {
    "probability-outputs": "the model outputs probabilities instead of logits",
    "randomness": "the model's output changes between identical forward passes",
    "zero-gradients": "the input gradient is exactly zero for many examples",
    "nonfinite-gradients": "the input gradient contains NaN or Inf",
    "iterative-weaker-than-single-step": "the iterative attack is weaker than the single-step one",
    "accuracy-not-monotone-in-eps": "adversarial accuracy increases with eps",
    "unbounded-attack-below-100": "an attack with unbounded eps does not reach 100% success",
    "noise-beats-attack": "random noise breaks examples the gradient attack does not",
    "adversarial-accuracy-above-clean": "accuracy on adversarial examples is above clean accuracy",
    "gradient-free-gap": "a gradient-free attack or the ensemble breaks what the gradient attack "
    "reports robust",
}


def finding(id_: str, explanation: str, **details: Any) -> Finding:
    """The :class:`Finding` of check ``id_``: its title and docs anchor, the numbers as details."""
    return Finding(
        id=id_,
        title=_TITLES[id_],
        explanation=explanation,
        docs=f"{DOCS_PAGE}#{id_}",
        details={k: (float(v) if isinstance(v, float) else v) for k, v in details.items()},
    )


# -- checks on the model alone ---------------------------------------------------------------


def find_probability_outputs(logits: Tensor) -> Finding | None:
    """``probability-outputs``: every row of ``logits`` is a distribution or its logarithm."""
    rows = logits.double()
    probs = bool(((rows >= 0) & (rows <= 1)).all()) and bool(((rows.sum(1) - 1).abs() < 1e-3).all())
    logprobs = bool((rows <= 0).all()) and bool((rows.logsumexp(1).abs() < 1e-3).all())
    if not (probs or logprobs):
        return None
    kind = "probabilities (softmax)" if probs else "log-probabilities (log_softmax)"
    return finding(
        "probability-outputs",
        f"Every output row looks like {kind}. advrobust expects logits: the "
        "attacks' cross-entropy applies softmax again, which flattens the loss and "
        "its gradients, and CW's margin loss is meaningless on probabilities. "
        "Remove the final softmax layer before evaluating.",
        kind=kind,
    )


def _forward_twice_keep_buffers(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Two forward passes in the model's current mode; buffers (BN statistics) restored.

    The passes run on a fork of the global RNG, so dropout here leaves the caller's random
    stream where it was.
    """
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            a, b2 = model(x), model(x)
    finally:
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)
    return a, b2


def _differs(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return math.inf
    scale = float(a.abs().max()) if a.numel() else 0.0
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    return diff / max(scale, 1e-12)


def find_randomness(model: nn.Module, x: Tensor) -> Finding | None:
    """``randomness``: two forward passes differ, in the model's current mode or in eval mode."""
    in_train = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    first, second = _forward_twice_keep_buffers(model, x)
    current = _differs(first, second)
    with model_state_guard(model):
        a_eval, b_eval = _forward_twice_keep_buffers(model, x)
    in_eval = _differs(a_eval, b_eval)
    if not (current > 1e-5 or in_eval > 1e-5):
        return None
    where = "in eval mode (a randomised model)" if in_eval > 1e-5 else "in its current mode"
    return finding(
        "randomness",
        f"Two forward passes on the same input differ {where} (relative "
        f"difference {max(current, in_eval):.3g}). Modules in training mode: "
        f"{', '.join(in_train[:8]) or 'none'}. Call model.eval() before evaluating "
        "(advrobust attacks and metrics do, but your own accuracy code may not); "
        "a model that is random in eval mode needs Expectation over "
        "Transformation, not a single-sample attack.",
        relative_difference_current_mode=current,
        relative_difference_eval_mode=in_eval,
        modules_in_training_mode=len(in_train),
    )


def input_gradients(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Input gradients of the logit margin (does not saturate) and of the cross-entropy.

    The model runs in eval mode; its modes, parameters and gradients are left as they came.
    """
    with model_state_guard(model), torch.inference_mode(False), torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        z = model(xr)
        (margin,) = torch.autograd.grad(logit_margin(z, y).sum(), xr, retain_graph=True)
        (ce,) = torch.autograd.grad(F.cross_entropy(z, y, reduction="sum"), xr)
    return margin, ce


def _finite(grad: Tensor) -> Tensor:
    """Bool ``(B,)``: the example's gradient is finite."""
    return torch.isfinite(grad.flatten(1)).all(1)


def _all_zero(grad: Tensor) -> Tensor:
    """Bool ``(B,)``: the example's gradient is finite and exactly zero."""
    flat = grad.flatten(1)
    return torch.isfinite(flat).all(1) & (flat.abs().amax(1) == 0)


def find_nonfinite_gradients(grad: Tensor) -> Finding | None:
    """``nonfinite-gradients``: the margin's input gradient ``grad`` has NaN or Inf entries."""
    finite = _finite(grad)
    if bool(finite.all()):
        return None
    return finding(
        "nonfinite-gradients",
        f"The input gradient is NaN or Inf for {int((~finite).sum())} of "
        f"{grad.shape[0]} examples. Gradient attacks then step in meaningless "
        "directions. Look for log(0), division by zero or a custom backward.",
        fraction=_frac(~finite),
    )


def find_zero_gradients(
    grad: Tensor, ce_grad: Tensor, *, uses_ce: bool, tolerance: float
) -> Finding | None:
    """``zero-gradients``: zero input gradients of the margin, or of the cross-entropy alone.

    A zero margin gradient is gradient masking; a zero cross-entropy gradient where the
    margin's is not is a saturated softmax, reported only for an attack on the cross-entropy
    (``uses_ce``).
    """
    zero = _all_zero(grad)
    # cross-entropy gradient zero where the margin's is not: a saturated softmax
    saturated = _all_zero(ce_grad) & ~zero & _finite(grad)
    masked = _frac(zero) > tolerance
    # the margin loss only helps attacks that would otherwise use the cross-entropy
    softmax_saturated = uses_ce and _frac(saturated) > tolerance
    if not (masked or softmax_saturated):
        return None
    b = grad.shape[0]
    parts = []
    if masked:
        parts.append(
            f"The gradient of the logit margin is exactly zero for {int(zero.sum())} "
            f"of {b} examples. A quantising or non-differentiable layer "
            "(rounding, thresholding, JPEG) masks the gradient: gradient attacks "
            "cannot move and robustness looks high. Attack through a differentiable "
            "approximation (BPDA) or with gradient-free attacks."
        )
    if softmax_saturated:
        parts.append(
            f"The cross-entropy gradient is exactly zero for {int(saturated.sum())} "
            f"of {b} examples although the logit margin's is not: the "
            "softmax saturates (an over-confident model), so cross-entropy attacks "
            'cannot move. Attack with the margin loss, e.g. BIM(model, loss="margin")'
            ' or PGD(model, loss="margin"), or with CWL2.'
        )
    return finding(
        "zero-gradients",
        " ".join(parts),
        fraction=_frac(zero | saturated) if uses_ce else _frac(zero),
        margin_zero_fraction=_frac(zero),
        cross_entropy_zero_fraction=_frac(saturated | zero),
        suggest_margin_loss=softmax_saturated,
    )


# -- checks on the attacks -------------------------------------------------------------------


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
