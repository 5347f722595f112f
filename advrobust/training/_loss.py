"""Kurakin's mixed-minibatch loss (paper 002, sec. 3, algorithm 1)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_labels, check_logits, check_nonnegative

__all__ = ["mixed_batch_loss"]

LossFn = Callable[[Tensor, Tensor], Tensor]


def _per_example_ce(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _check_part(logits: object, y: object, name: str) -> tuple[Tensor, Tensor]:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits_{name} must be a tensor of logits (n, K), got {type(logits)}")
    n = logits.shape[0] if logits.dim() > 0 else -1
    check_logits(logits, n, name=f"logits_{name}")
    if not isinstance(y, Tensor):
        raise TypeError(f"y_{name} must be a tensor of class indices, got {type(y)}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"y_{name} must be an integer tensor of class indices, got dtype {y.dtype}")
    if tuple(y.shape) != (n,):
        raise ValueError(
            f"y_{name} must have shape ({n},) to match logits_{name}, got {tuple(y.shape)}"
        )
    return logits, y.long()


def mixed_batch_loss(
    logits_clean: Tensor,
    y_clean: Tensor,
    logits_adv: Tensor,
    y_adv: Tensor,
    adv_weight: float = 0.3,
    *,
    loss_fn: LossFn | None = None,
) -> Tensor:
    """Loss of a minibatch in which ``k`` of ``m`` examples were replaced by adversarial ones.

    Kurakin, Goodfellow and Bengio, "Adversarial Machine Learning at Scale" (2017), sec. 3:

        Loss = 1 / ((m - k) + lambda * k)
               * (sum_{i in CLEAN} L(X_i | y_i) + lambda * sum_{i in ADV} L(X_i^adv | y_i))

    with ``m - k`` clean and ``k`` adversarial examples and ``lambda = adv_weight``. ``k = 0``
    is plain training (the mean clean loss), ``k = m`` with ``lambda = 1`` is Madry's PGD
    adversarial training (the mean adversarial loss) and ``k = m`` with any ``lambda > 0`` gives
    the same mean adversarial loss.

    Args:
        logits_clean: logits ``(m - k, K)`` of the clean part of the batch (may be empty).
        y_clean: labels ``(m - k,)`` of the clean part.
        logits_adv: logits ``(k, K)`` of the adversarial part (may be empty).
        y_adv: labels ``(k,)`` of the adversarial part (the true labels of their clean sources).
        adv_weight: ``lambda >= 0``, the relative weight of adversarial examples (paper: 0.3).
        loss_fn: per-example loss ``(logits, y) -> (n,)``; cross-entropy by default.

    Returns:
        A scalar tensor (differentiable) in the dtype of the per-example losses.

    Raises:
        ValueError: ``adv_weight`` is negative or not finite, shapes disagree, a label lies
            outside ``[0, K)`` (checked when the loss rejects it), or the normaliser
            ``(m - k) + lambda * k`` is zero (an all-adversarial batch with ``adv_weight=0``, or
            an empty batch), where the loss is undefined.
        TypeError: arguments are not tensors of the right dtype.

    Example:
        >>> import torch
        >>> lc, la = torch.zeros(2, 3), torch.zeros(2, 3)
        >>> y = torch.tensor([0, 1])
        >>> round(float(mixed_batch_loss(lc, y, la, y, 0.3)), 4)  # every example log(3)
        1.0986
    """
    lam = check_nonnegative(adv_weight, "adv_weight")
    logits_clean, y_clean = _check_part(logits_clean, y_clean, "clean")
    logits_adv, y_adv = _check_part(logits_adv, y_adv, "adv")
    n_clean = logits_clean.shape[0]
    k = logits_adv.shape[0]
    if n_clean and k and logits_clean.shape[1] != logits_adv.shape[1]:
        raise ValueError(
            f"logits_clean and logits_adv must have the same number of classes, got "
            f"{logits_clean.shape[1]} and {logits_adv.shape[1]}"
        )
    denom = n_clean + lam * k
    if denom <= 0:
        raise ValueError(
            f"the mixed-batch normaliser (m - k) + adv_weight * k is 0 (m - k = {n_clean} clean, "
            f"k = {k} adversarial, adv_weight = {lam}); the loss is undefined: use adv_weight > 0 "
            f"or keep some clean examples"
        )
    fn = loss_fn if loss_fn is not None else _per_example_ce
    total: Tensor | None = None
    try:
        if n_clean:
            total = fn(logits_clean, y_clean).sum()
        if k and lam > 0:
            adv = fn(logits_adv, y_adv).sum() * lam
            total = adv if total is None else total + adv
    except (IndexError, RuntimeError):
        # torch's own error for a label >= K; the label check costs a host sync, so it runs
        # only on this error path
        num_classes = (logits_clean if n_clean else logits_adv).shape[1]
        check_labels(y_clean, n_clean, "y_clean", num_classes=num_classes)
        check_labels(y_adv, k, "y_adv", num_classes=num_classes)
        raise
    if total is None:  # k > 0 with lambda == 0 and no clean part is excluded above
        raise ValueError("mixed_batch_loss got an empty batch")
    return total / denom
