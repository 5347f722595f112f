"""Automatic checks for evaluations that fool their author (Carlini et al. 2019, AutoAttack).

Each check measures something an honest evaluation must satisfy; a violation becomes a
:class:`Finding` with an explanation and a link to its section of the evaluation-pitfalls
guide (``docs/guide/evaluation-pitfalls.md#<id>``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import (
    check_bounds,
    check_images,
    check_int,
    check_labels,
    check_model_device,
    check_nonnegative,
    check_positive,
    model_state_guard,
)
from ..attacks import logit_margin
from ._loop import (
    bind_attack,
    check_model,
    check_norm,
    predict_eval,
    predict_labels,
)
from ._results import Finding, SanityReport, _frac

__all__ = ["SANITY_CHECKS", "sanity_check"]

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
}


def _finding(id_: str, explanation: str, **details: Any) -> Finding:
    return Finding(
        id=id_,
        title=_TITLES[id_],
        explanation=explanation,
        docs=f"{DOCS_PAGE}#{id_}",
        details={k: (float(v) if isinstance(v, float) else v) for k, v in details.items()},
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


def _input_grads(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Input gradients of the logit margin (does not saturate) and of the cross-entropy."""
    with torch.inference_mode(False), torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        z = model(xr)
        (margin,) = torch.autograd.grad(logit_margin(z, y).sum(), xr, retain_graph=True)
        (ce,) = torch.autograd.grad(F.cross_entropy(z, y, reduction="sum"), xr)
    return margin, ce


def _all_zero(grad: Tensor) -> Tensor:
    """Bool ``(B,)``: the example's gradient is finite and exactly zero."""
    flat = grad.flatten(1)
    return torch.isfinite(flat).all(1) & (flat.abs().amax(1) == 0)


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


def sanity_check(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float = 8 / 255,
    norm: str = "linf",
    bounds: tuple[float, float] = (0.0, 1.0),
    attack: object = None,
    single_step: object = None,
    eps_grid: Iterable[float] | None = None,
    noise_samples: int = 8,
    tolerance: float = 0.02,
    checks: Iterable[str] | None = None,
    generator: torch.Generator | None = None,
) -> SanityReport:
    """Run the automatic checks of a robustness evaluation on one batch.

    The checks (ids in :data:`SANITY_CHECKS`; each finding links to its section of
    ``docs/guide/evaluation-pitfalls.md``):

    - ``probability-outputs``: rows in [0, 1] summing to 1 (or log-probabilities): attacks on
      the cross-entropy of probabilities see vanishing gradients.
    - ``randomness``: two identical forward passes disagree (dropout left in train mode, a
      randomised defence); buffers such as BatchNorm statistics are restored afterwards.
    - ``zero-gradients`` / ``nonfinite-gradients``: the gradient of the logit margin with
      respect to the input is exactly zero for more than ``tolerance`` of the examples, or
      not finite (quantisation, non-differentiable preprocessing: gradient masking); or,
      when ``attack`` uses the cross-entropy, the cross-entropy gradient alone is zero (a
      saturated softmax), and the finding suggests ``loss="margin"``.
    - ``iterative-weaker-than-single-step``: the iterative ``attack`` succeeds less often
      than ``single_step`` at the same ``eps``.
    - ``accuracy-not-monotone-in-eps``: adversarial accuracy of ``attack`` rises along
      ``eps_grid``.
    - ``unbounded-attack-below-100``: ``attack`` with eps covering the whole box leaves some
      correctly classified example unbroken.
    - ``noise-beats-attack``: ``noise_samples`` random perturbations of size ``eps`` break
      examples that ``attack`` does not.
    - ``adversarial-accuracy-above-clean``: accuracy under attack (built with the true labels)
      above clean accuracy: the label-leaking signature.

    Differences count as findings when they exceed ``tolerance`` (a fraction of the batch).

    Args:
        model: the classifier to check (left as it came: modes, parameters, buffers).
        x: a batch of inputs inside ``bounds``.
        y: its labels.
        eps: attack radius for the attack checks.
        norm: ``"linf"`` or ``"l2"``: threat model of the default attacks and the noise.
        bounds: input box.
        attack: the iterative attack (default ``BIM(model, eps, steps=20, rel_alpha=0.1)``
            in ``norm``); it should scale its step with eps (``rel_alpha``).
        single_step: the single-step attack (default ``FGSM(model, eps, norm=norm)``).
        eps_grid: eps values of the monotonicity check (default ``eps`` times 1/4, 1/2, 1, 2).
        noise_samples: random perturbations per example.
        tolerance: fraction of the batch a comparison may be off before it is reported.
        checks: ids of the checks to run (default all).
        generator: random generator for the attacks and the noise.

    Returns:
        :class:`SanityReport`; ``report.ok`` is True when nothing was found.

    Raises:
        ValueError: unknown check ids, bad input.
    """
    from ..attacks import BIM, FGSM

    model = check_model(model)
    bounds = check_bounds(bounds)
    norm = check_norm(norm)
    check_images(x, "x", bounds=bounds)
    if x.shape[0] == 0:
        raise ValueError("x is empty: sanity_check needs at least one example")
    check_labels(y, int(x.shape[0]), "y")
    check_model_device(model, x)
    eps = check_positive(eps, "eps")
    tolerance = check_nonnegative(tolerance, "tolerance")
    check_int(noise_samples, "noise_samples", minimum=0)
    selected = SANITY_CHECKS if checks is None else tuple(checks)
    unknown = [c for c in selected if c not in SANITY_CHECKS]
    if unknown:
        raise ValueError(f"checks {unknown} are unknown; valid ids: {', '.join(SANITY_CHECKS)}")
    grid = [eps / 4, eps / 2, eps, 2 * eps] if eps_grid is None else [float(e) for e in eps_grid]
    for i, e in enumerate(grid):
        check_nonnegative(e, f"eps_grid[{i}]")
    y = y.long()
    iterative = bind_attack(
        BIM(model, eps, steps=20, rel_alpha=0.1, norm=norm, bounds=bounds)
        if attack is None
        else attack,
        model,
    )
    single = bind_attack(
        FGSM(model, eps, norm=norm, bounds=bounds) if single_step is None else single_step,
        model,
        "single_step",
    )
    findings: list[Finding] = []
    run = set(selected)

    logits = predict_eval(model, x)
    if logits.shape[1] < 2:
        raise ValueError(f"model must output at least 2 classes, got {tuple(logits.shape)}")
    check_labels(y, int(x.shape[0]), "y", num_classes=int(logits.shape[1]))
    correct = logits.argmax(1) == y
    n_correct = int(correct.sum())
    clean_acc = _frac(correct)

    if "probability-outputs" in run:
        rows = logits.double()
        probs = bool(((rows >= 0) & (rows <= 1)).all()) and bool(
            ((rows.sum(1) - 1).abs() < 1e-3).all()
        )
        logprobs = bool((rows <= 0).all()) and bool((rows.logsumexp(1).abs() < 1e-3).all())
        if probs or logprobs:
            kind = "probabilities (softmax)" if probs else "log-probabilities (log_softmax)"
            findings.append(
                _finding(
                    "probability-outputs",
                    f"Every output row looks like {kind}. advrobust expects logits: the "
                    "attacks' cross-entropy applies softmax again, which flattens the loss and "
                    "its gradients, and CW's margin loss is meaningless on probabilities. "
                    "Remove the final softmax layer before evaluating.",
                    kind=kind,
                )
            )

    if "randomness" in run:
        in_train = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
        first, second = _forward_twice_keep_buffers(model, x)
        current = _differs(first, second)
        with model_state_guard(model):
            a_eval, b_eval = _forward_twice_keep_buffers(model, x)
        in_eval = _differs(a_eval, b_eval)
        if current > 1e-5 or in_eval > 1e-5:
            where = "in eval mode (a randomised model)" if in_eval > 1e-5 else "in its current mode"
            findings.append(
                _finding(
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
            )

    if "zero-gradients" in run or "nonfinite-gradients" in run:
        with model_state_guard(model):
            grad, ce_grad = _input_grads(model, x, y)
        finite = torch.isfinite(grad.flatten(1)).all(1)
        zero = _all_zero(grad)
        # cross-entropy gradient zero where the margin's is not: a saturated softmax
        saturated = _all_zero(ce_grad) & ~zero & finite
        if "nonfinite-gradients" in run and not bool(finite.all()):
            findings.append(
                _finding(
                    "nonfinite-gradients",
                    f"The input gradient is NaN or Inf for {int((~finite).sum())} of "
                    f"{x.shape[0]} examples. Gradient attacks then step in meaningless "
                    "directions. Look for log(0), division by zero or a custom backward.",
                    fraction=_frac(~finite),
                )
            )
        masked = _frac(zero) > tolerance
        # the margin loss only helps attacks that would otherwise use the cross-entropy
        uses_ce = getattr(iterative, "loss", None) == "ce"
        softmax_saturated = uses_ce and _frac(saturated) > tolerance
        if "zero-gradients" in run and (masked or softmax_saturated):
            parts = []
            if masked:
                parts.append(
                    f"The gradient of the logit margin is exactly zero for {int(zero.sum())} "
                    f"of {x.shape[0]} examples. A quantising or non-differentiable layer "
                    "(rounding, thresholding, JPEG) masks the gradient: gradient attacks "
                    "cannot move and robustness looks high. Attack through a differentiable "
                    "approximation (BPDA) or with gradient-free attacks."
                )
            if softmax_saturated:
                parts.append(
                    f"The cross-entropy gradient is exactly zero for {int(saturated.sum())} "
                    f"of {x.shape[0]} examples although the logit margin's is not: the "
                    "softmax saturates (an over-confident model), so cross-entropy attacks "
                    'cannot move. Attack with the margin loss, e.g. BIM(model, loss="margin")'
                    ' or PGD(model, loss="margin"), or with CWL2.'
                )
            findings.append(
                _finding(
                    "zero-gradients",
                    " ".join(parts),
                    fraction=_frac(zero | saturated) if uses_ce else _frac(zero),
                    margin_zero_fraction=_frac(zero),
                    cross_entropy_zero_fraction=_frac(saturated | zero),
                    suggest_margin_loss=softmax_saturated,
                )
            )

    need_attacks = run & {
        "iterative-weaker-than-single-step",
        "accuracy-not-monotone-in-eps",
        "unbounded-attack-below-100",
        "noise-beats-attack",
        "adversarial-accuracy-above-clean",
    }
    if not need_attacks:
        return SanityReport(tuple(findings), selected)

    # One batched call of the iterative attack: the eps grid, eps itself and the whole box.
    b = int(x.shape[0])
    box = bounds[1] - bounds[0]
    unbounded_eps = box if norm == "linf" else box * math.sqrt(x[0].numel())
    eps_values = [*grid, eps, unbounded_eps]
    xs = x.repeat(len(eps_values), *([1] * (x.dim() - 1)))
    ys = y.repeat(len(eps_values))
    es = torch.tensor(eps_values, dtype=x.dtype, device=x.device).repeat_interleave(b)
    res = iterative.run(xs, ys, eps=es, generator=generator)
    adv_correct = (res.adv_pred == ys).reshape(len(eps_values), b)
    succ = res.success.reshape(len(eps_values), b)
    iter_success_at_eps = succ[len(grid)] & correct
    single_res = single.run(x, y, eps=eps, generator=generator)
    single_success = single_res.success & correct

    if "iterative-weaker-than-single-step" in run and n_correct:
        gap = (int(single_success.sum()) - int(iter_success_at_eps.sum())) / b
        if gap > tolerance:
            findings.append(
                _finding(
                    "iterative-weaker-than-single-step",
                    f"At eps={eps:.4g} the single-step attack breaks {int(single_success.sum())}"
                    f" examples, the iterative attack only {int(iter_success_at_eps.sum())}. An "
                    "iterative attack includes the single step as a special case; when it does "
                    "worse its step size or iteration count is wrong, or the loss surface is "
                    "masked (iterates get stuck). Tune the attack before trusting its number.",
                    single_step_success=_frac(single_success),
                    iterative_success=_frac(iter_success_at_eps),
                )
            )

    if "accuracy-not-monotone-in-eps" in run:
        order = sorted(range(len(grid)), key=lambda i: grid[i])
        accs = [clean_acc] + [_frac(adv_correct[i]) for i in order]
        epss = [0.0] + [grid[i] for i in order]
        rises = [
            (epss[i], epss[i + 1], accs[i], accs[i + 1])
            for i in range(len(accs) - 1)
            if accs[i + 1] > accs[i] + tolerance
        ]
        if rises:
            e0, e1, a0, a1 = rises[0]
            findings.append(
                _finding(
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
            )

    if "unbounded-attack-below-100" in run and n_correct:
        broken = succ[-1] & correct
        unbroken = n_correct - int(broken.sum())
        if unbroken > 0:
            findings.append(
                _finding(
                    "unbounded-attack-below-100",
                    f"With eps={unbounded_eps:.4g} (the whole input box) the attack leaves "
                    f"{unbroken} of {n_correct} correctly classified examples unbroken. Any "
                    "image can be reached at this eps, so a sound attack reaches 100%: the "
                    "attack is not optimising properly (masked or zero gradients, too few "
                    "steps) and its numbers at small eps are not trustworthy either.",
                    success=int(broken.sum()) / max(n_correct, 1),
                    unbroken=unbroken,
                )
            )

    if "noise-beats-attack" in run and noise_samples > 0 and n_correct:
        delta = _noise(x, eps, norm, noise_samples, generator)
        xn = (x.unsqueeze(0) + delta).clamp(bounds[0], bounds[1]).flatten(0, 1)
        pn = predict_labels(model, xn).reshape(noise_samples, b)
        noise_broken = (pn != y).any(0) & correct
        beats = noise_broken & ~iter_success_at_eps
        if _frac(beats) > tolerance:
            findings.append(
                _finding(
                    "noise-beats-attack",
                    f"Random perturbations of size eps={eps:.4g} break {int(beats.sum())} "
                    "examples the gradient attack does not break. The gradient is not "
                    "pointing anywhere useful (gradient masking, wrong loss, wrong labels) "
                    "and the attack's success rate overstates robustness.",
                    noise_only=int(beats.sum()),
                    noise_success=_frac(noise_broken),
                    attack_success=_frac(iter_success_at_eps),
                )
            )

    if "adversarial-accuracy-above-clean" in run:
        single_acc = _frac(single_res.adv_pred == y)
        iter_acc = _frac(adv_correct[len(grid)])
        worst = max(single_acc, iter_acc)
        if worst > clean_acc + tolerance:
            findings.append(
                _finding(
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
            )

    return SanityReport(tuple(findings), selected)
