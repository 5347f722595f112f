"""The checks of :func:`~advrobust.metrics.sanity_check` on the model alone.

Each ``find_*`` function measures one thing an honest evaluation must satisfy from the model's
outputs or input gradients and returns its :class:`Finding` (``None`` when the check passes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import model_state_guard
from ..attacks import logit_margin
from ._result_base import _frac
from ._results_sanity import Finding, finding

__all__ = [
    "find_nonfinite_gradients",
    "find_probability_outputs",
    "find_randomness",
    "find_zero_gradients",
    "input_gradients",
]


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
