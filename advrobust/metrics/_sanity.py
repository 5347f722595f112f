"""Automatic checks for evaluations that fool their author (Carlini et al. 2019, AutoAttack).

Each check measures something an honest evaluation must satisfy; a violation becomes a
:class:`Finding` with an explanation and a link to its section of the evaluation-pitfalls
guide (``docs/guide/evaluation-pitfalls.md#<id>``). :func:`sanity_check` validates its
arguments, builds the attacks and runs the selected checks in the order of
:data:`SANITY_CHECKS`; the checks themselves are in :mod:`._sanity_model`,
:mod:`._sanity_attacks` and :mod:`._sanity_gap`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .._validate import (
    check_bounds,
    check_images,
    check_int,
    check_labels,
    check_model_device,
    check_nonnegative,
    check_positive,
)
from ._loop import bind_attack, check_model, check_norm, predict_eval
from ._results_sanity import ATTACK_CHECKS, SANITY_CHECKS, Finding, SanityReport
from ._sanity_attacks import (
    find_accuracy_above_clean,
    find_iterative_weaker,
    find_noise_beats_attack,
    find_not_monotone,
    find_unbounded_below_100,
    run_attacks,
)
from ._sanity_gap import find_gradient_free_gap, gap_inputs
from ._sanity_model import (
    find_nonfinite_gradients,
    find_probability_outputs,
    find_randomness,
    find_zero_gradients,
    input_gradients,
)

__all__ = ["SANITY_CHECKS", "sanity_check"]


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
    gf, ens = gap_inputs(
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
    run = set(selected)

    logits = predict_eval(model, x)
    if logits.shape[1] < 2:
        raise ValueError(f"model must output at least 2 classes, got {tuple(logits.shape)}")
    check_labels(y, int(x.shape[0]), "y", num_classes=int(logits.shape[1]))
    correct = logits.argmax(1) == y
    n_correct = int(correct.sum())

    found: list[Finding | None] = []
    if "probability-outputs" in run:
        found.append(find_probability_outputs(logits))
    if "randomness" in run:
        found.append(find_randomness(model, x))
    if "zero-gradients" in run or "nonfinite-gradients" in run:
        grad, ce_grad = input_gradients(model, x, y)
        if "nonfinite-gradients" in run:
            found.append(find_nonfinite_gradients(grad))
        if "zero-gradients" in run:
            uses_ce = iterative.spec().config.get("loss") == "ce"
            found.append(find_zero_gradients(grad, ce_grad, uses_ce=uses_ce, tolerance=tolerance))
    if run & set(ATTACK_CHECKS):  # the iterative and single-step attacks run once for all
        runs = run_attacks(
            x,
            y,
            correct,
            iterative,
            single,
            eps=eps,
            grid=grid,
            norm=norm,
            bounds=bounds,
            generator=generator,
        )
        if "iterative-weaker-than-single-step" in run and n_correct:
            found.append(find_iterative_weaker(runs, eps, tolerance))
        if "accuracy-not-monotone-in-eps" in run:
            found.append(find_not_monotone(runs, tolerance))
        if "unbounded-attack-below-100" in run and n_correct:
            found.append(find_unbounded_below_100(runs))
        if "noise-beats-attack" in run and noise_samples > 0 and n_correct:
            found.append(
                find_noise_beats_attack(
                    model,
                    x,
                    y,
                    runs,
                    eps=eps,
                    norm=norm,
                    bounds=bounds,
                    samples=noise_samples,
                    tolerance=tolerance,
                    generator=generator,
                )
            )
        if "adversarial-accuracy-above-clean" in run:
            found.append(find_accuracy_above_clean(runs, y, tolerance))
        if "gradient-free-gap" in run and n_correct:
            found.append(
                find_gradient_free_gap(
                    model,
                    x,
                    y,
                    eps,
                    norm,
                    correct,
                    runs.iterative_at_eps,
                    gf,
                    ens,
                    tolerance,
                    generator,
                )
            )
    findings = tuple(f for f in found if f is not None)
    return SanityReport(findings, selected, specs)
