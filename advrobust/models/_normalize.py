"""``Normalize``: per-channel standardisation as a model's first layer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._validate import describe

__all__ = ["Normalize"]


def _as_floats(values: object, name: str) -> list[float]:
    if isinstance(values, Tensor):
        values = values.detach().cpu().reshape(-1).tolist()
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) == 0:
        raise TypeError(f"{name} must be a non-empty sequence of floats, got {describe(values)}")
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must contain real numbers, got {describe(v)}")
        if not math.isfinite(float(v)):
            raise ValueError(f"{name} must be finite, got {list(values)}")
        out.append(float(v))
    return out


class Normalize(nn.Module):
    """Per-channel standardisation ``(x - mean) / std`` as a model layer.

    Putting normalisation inside the model keeps attacks and epsilons in input space
    (images in [0, 1]). ``mean`` and ``std`` are buffers (saved in the ``state_dict``, moved
    by ``.to()``), not parameters. The computation follows the input's dtype.

    Args:
        mean: One value per channel (or one value for all channels).
        std: One positive value per channel (or one value), same length as ``mean``.

    Raises:
        ValueError: If lengths differ, a value is not finite, or a std is not positive.

    Example:
        >>> import torch
        >>> norm = Normalize([0.5], [0.25])
        >>> norm(torch.full((1, 1, 2, 2), 0.75))[0, 0, 0, 0].item()
        1.0
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        m = _as_floats(mean, "mean")
        s = _as_floats(std, "std")
        if len(m) != len(s):
            raise ValueError(f"mean and std must have the same length, got {len(m)} and {len(s)}")
        if any(v <= 0 for v in s):
            raise ValueError(f"std must be > 0 everywhere, got {s}")
        self.register_buffer("mean", torch.tensor(m, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Standardise ``x`` of shape ``(B, C, H, W)``."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        if self.mean.device.type == "meta":
            return f"channels={self.mean.numel()}"
        mean = ", ".join(f"{v:.4g}" for v in self.mean.flatten().tolist())
        std = ", ".join(f"{v:.4g}" for v in self.std.flatten().tolist())
        return f"mean=({mean}), std=({std})"
