"""Small helpers shared by the model modules."""

from __future__ import annotations

import math

from .._validate import check_positive, describe

__all__ = ["check_width", "scaled"]


def check_width(width: object) -> float:
    """Validate a width multiplier (Kurakin's rho): a finite number > 0."""
    return check_positive(width, "width")


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to the nearest integer, at least 1."""
    return max(1, math.floor(channels * width + 0.5))


def check_int_tuple(values: object, name: str, length: int | None = None) -> tuple[int, ...]:
    """Validate a sequence of positive ints (optionally of a given length)."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, (tuple, list)):
        raise TypeError(f"{name} must be a sequence of positive ints, got {describe(values)}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must contain positive ints, got {list(values)}")
        out.append(int(v))
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must have {length} values, got {len(out)}: {out}")
    return tuple(out)
