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
    describe,
    model_state_guard,
)
from ..attacks import Attack, create_attack, list_attacks, logit_margin
from ._loop import (
    bind_attack,
    check_model,
    check_norm,
    perturbation_norm,
    predict_eval,
    predict_labels,
)
from ._result_base import _frac
from ._results_robust import RobustAccuracyResult
from ._results_sanity import Finding, SanityReport

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
    gradient_free: object = None,
    ensemble: object = None,
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
    - ``gradient-free-gap``: a gradient-free attack (``gradient_free``, by default Square
      with 1,000 queries when it is registered) or the attacks of an ensemble evaluation
      (``ensemble``, a :func:`~advrobust.metrics.robust_accuracy` result on this batch) break
      examples that the gradient attack ``attack`` reports robust at ``eps``. A gradient
      attack beaten by random search is misled by its gradients: the sign of gradient
      masking. The check is skipped (and left out of ``checks``) when there is neither a
      gradient-free attack nor an ensemble.

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
        gradient_free: the gradient-free attack of ``gradient-free-gap``; None uses
            ``create_attack("Square", model, eps=eps, norm=norm, queries=1000)`` when Square
            is registered, False skips it.
        ensemble: a :class:`~advrobust.metrics.RobustAccuracyResult` computed on this very
            batch ``(x, y)`` at ``eps`` in ``norm``, compared with the gradient attack.
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
    wants_gap = "gradient-free-gap" in selected
    # arguments are checked even when the check is not selected; Square is built only for it
    gf, ens = _gap_inputs(
        model,
        x,
        eps,
        norm,
        bounds,
        gradient_free if wants_gap else gradient_free or False,
        ensemble,
    )
    if not wants_gap:
        gf, ens = None, None
    elif gf is None and ens is None:
        selected = tuple(c for c in selected if c != "gradient-free-gap")
    specs = (iterative.spec(), single.spec(), *(() if gf is None else (gf.spec(),)))
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
        uses_ce = iterative.spec().config.get("loss") == "ce"
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
        "gradient-free-gap",
    }
    if not need_attacks:
        return SanityReport(tuple(findings), selected, specs)

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

    if "gradient-free-gap" in run and n_correct:
        finding = _gap_finding(
            model, x, y, eps, norm, correct, iter_success_at_eps, gf, ens, tolerance, generator
        )
        if finding is not None:
            findings.append(finding)

    return SanityReport(tuple(findings), selected, specs)


def _gap_inputs(
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


def _gap_finding(
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
        dist = perturbation_norm((res.x_adv - x).double(), norm)
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
    return _finding(
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
