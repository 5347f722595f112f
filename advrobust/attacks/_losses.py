"""Per-example losses the attacks ascend: the logit margin and the DLR loss."""

from __future__ import annotations

import math
from typing import Final

import torch
from torch import Tensor

from advrobust._validate import describe

__all__ = ["dlr_loss", "logit_margin"]

_DLR_EPS: Final = 1e-12


def logit_margin(logits: Tensor, label: Tensor) -> Tensor:
    """Per-example logit margin ``z_label - max_{j != label} z_j`` (negative: not ``label``).

    The quantity behind Carlini-Wagner's loss f and the engine's ``loss="margin"``. Unlike
    the cross-entropy, its gradient does not vanish when the softmax saturates.

    Args:
        logits: ``(B, K)`` logits.
        label: Long ``(B,)`` class per example.

    Returns:
        ``(B,)`` margins in the logits' dtype.

    Example:
        >>> import torch
        >>> logit_margin(torch.tensor([[2.0, 0.5, 1.0]]), torch.tensor([0]))
        tensor([1.])
    """
    own = logits.gather(1, label[:, None]).squeeze(1)
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, label[:, None], True)
    return own - logits.masked_fill(mask, -math.inf).amax(dim=1)


def dlr_loss(logits: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
    """Difference of Logits Ratio loss, per example (Croce & Hein 2020, eqs. 6-7).

    With ``z`` the logits sorted so that ``z_pi1 >= z_pi2 >= ...``:

    ```text
    DLR(z, y)    = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)
    DLR-T(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)
    ```

    It is invariant to shifting and (positively) rescaling the logits, so it does not
    saturate like the cross-entropy; it is positive exactly when ``y`` is not the top class
    (untargeted) or ``z_t > z_y`` (targeted). An attack maximises it.

    Args:
        logits: ``(B, K)`` logits, ``K >= 3`` (``K >= 4`` with ``target``).
        y: Long ``(B,)`` true classes.
        target: Long ``(B,)`` target classes for the targeted version, or None.

    Returns:
        ``(B,)`` losses in the logits' dtype.

    Raises:
        TypeError: For a non-tensor ``logits``, ``y`` or ``target``.
        ValueError: For logits that are not ``(B, K)`` or have too few classes, or labels of
            the wrong shape.

    Example:
        >>> import torch
        >>> dlr_loss(torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([0]))
        tensor([-0.6667])
    """
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a tensor of shape (B, K), got {describe(logits)}")
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, K), got {tuple(logits.shape)}")
    need = 3 if target is None else 4
    if logits.shape[1] < need:
        kind = "the DLR loss" if target is None else "the targeted DLR loss"
        raise ValueError(
            f"{kind} needs logits with at least {need} classes, got logits of shape "
            f"{tuple(logits.shape)} (use loss='ce' for models with fewer classes)"
        )
    b = logits.shape[0]
    for name, lab in (("y", y), ("target", target)):
        if lab is None:
            continue
        if not isinstance(lab, Tensor):
            raise TypeError(f"{name} must be a tensor of class indices, got {describe(lab)}")
        if tuple(lab.shape) != (b,):
            raise ValueError(f"{name} must have shape ({b},), got {tuple(lab.shape)}")
    top = logits.topk(need, dim=1).values
    if target is None:
        return -logit_margin(logits, y) / (top[:, 0] - top[:, 2] + _DLR_EPS)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + _DLR_EPS)
