"""Input validation shared by every layer.

Every public entry point of advrobust checks its arguments through these helpers, so that
bad input raises a :class:`ValueError` or :class:`TypeError` whose message names the
argument, what was expected and what came. Nothing here asserts; nothing fixes input silently.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "check_bool",
    "check_bounds",
    "check_choice",
    "check_eps",
    "check_images",
    "check_labels",
    "check_logits",
    "check_model_device",
    "check_no_kwargs",
    "check_positive",
    "check_nonnegative",
    "check_probability",
    "check_real",
    "check_str",
    "check_int",
    "model_state_guard",
    "describe",
]


def describe(value: object) -> str:
    """A short description of ``value`` for error messages."""
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype} on {value.device}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


def check_no_kwargs(kwargs: Mapping[str, Any], where: str) -> None:
    """Reject unknown keyword arguments, naming them."""
    if kwargs:
        names = ", ".join(sorted(kwargs))
        raise TypeError(f"{where} got unexpected keyword argument(s): {names}")


def check_int(value: object, name: str, *, minimum: int | None = None) -> int:
    """Check that ``value`` is an integer (not a bool) and at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_real(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {describe(value)}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def check_positive(value: object, name: str) -> float:
    """Check that ``value`` is a finite number > 0."""
    out = _check_real(value, name)
    if out <= 0:
        raise ValueError(f"{name} must be > 0, got {out}")
    return out


def check_nonnegative(value: object, name: str) -> float:
    """Check that ``value`` is a finite number >= 0."""
    out = _check_real(value, name)
    if out < 0:
        raise ValueError(f"{name} must be >= 0, got {out}")
    return out


def check_probability(value: object, name: str) -> float:
    """Check that ``value`` is a number in [0, 1]."""
    out = _check_real(value, name)
    if not 0.0 <= out <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {out}")
    return out


def check_bounds(bounds: object, name: str = "bounds") -> tuple[float, float]:
    """Check a ``(lo, hi)`` box with finite ``lo < hi``."""
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise TypeError(f"{name} must be a pair (lo, hi), got {describe(bounds)}")
    lo = _check_real(bounds[0], f"{name}[0]")
    hi = _check_real(bounds[1], f"{name}[1]")
    if not lo < hi:
        raise ValueError(f"{name} must satisfy lo < hi, got ({lo}, {hi})")
    return lo, hi


def check_images(
    x: object, name: str = "x", *, bounds: tuple[float, float] | None = None, tol: float = 1e-6
) -> Tensor:
    """Check a floating-point image batch: finite, at least 2-D, optionally inside ``bounds``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(x)}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (images scaled to the bounds), got dtype "
            f"{x.dtype}; convert integer images with x.float() / 255"
        )
    if x.dim() < 2:
        raise ValueError(
            f"{name} must have a batch dimension and at least 2 dims, got {describe(x)}"
        )
    if x.numel() == 0 or x.device.type == "meta":
        return x
    finite = torch.isfinite(x).all()
    if bounds is not None:
        lo, hi = bounds
        inside = (x >= lo - tol).all() & (x <= hi + tol).all()
        ok = bool(finite & inside)  # one host sync per call, not per step
        if not ok:
            if not bool(finite):
                raise ValueError(f"{name} contains NaN or Inf values")
            raise ValueError(
                f"{name} must lie inside bounds ({lo}, {hi}), got values in "
                f"[{float(x.min()):.6g}, {float(x.max()):.6g}]"
            )
    elif not bool(finite):
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


def check_labels(
    y: object, batch_size: int, name: str = "y", *, num_classes: int | None = None
) -> Tensor:
    """Check integer class labels of shape ``(batch_size,)`` in ``[0, num_classes)``."""
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {describe(y)}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"{name} must be an integer tensor of class indices, got dtype {y.dtype}")
    if tuple(y.shape) != (batch_size,):
        raise ValueError(f"{name} must have shape ({batch_size},), got {tuple(y.shape)}")
    if num_classes is not None and y.numel() > 0 and y.device.type != "meta":
        lo_ok = bool(((y >= 0) & (y < num_classes)).all())
        if not lo_ok:
            raise ValueError(
                f"{name} must hold class indices in [0, {num_classes}), got values in "
                f"[{int(y.min())}, {int(y.max())}]"
            )
    return y


def check_logits(out: object, batch_size: int, name: str = "model output") -> Tensor:
    """Check that a model returned logits of shape ``(batch_size, K)``."""
    if not isinstance(out, Tensor):
        raise TypeError(f"{name} must be a tensor of logits (B, K), got {describe(out)}")
    if out.dim() != 2 or out.shape[0] != batch_size:
        raise ValueError(
            f"{name} must have shape (B, K) = ({batch_size}, K), got {tuple(out.shape)}"
        )
    return out


def check_eps(
    eps: object, batch_size: int, device: torch.device, dtype: torch.dtype, name: str = "eps"
) -> Tensor:
    """Broadcast a float or ``(B,)`` tensor epsilon to a ``(B,)`` tensor, checking it is >= 0."""
    if isinstance(eps, Tensor):
        if eps.dim() == 0:
            eps = eps.reshape(1).expand(batch_size)
        if tuple(eps.shape) != (batch_size,):
            raise ValueError(
                f"{name} must be a float or a tensor of shape ({batch_size},), got shape "
                f"{tuple(eps.shape)}"
            )
        if not eps.is_floating_point():
            eps = eps.to(dtype)
        out = eps.to(device=device, dtype=dtype)
        if out.numel() and out.device.type != "meta":
            bad = bool((~torch.isfinite(out) | (out < 0)).any())
            if bad:
                raise ValueError(f"{name} must be finite and >= 0, got values {out.tolist()[:8]}")
        return out
    value = check_nonnegative(eps, name)
    return torch.full((batch_size,), value, device=device, dtype=dtype)


def check_model_device(model: nn.Module, x: Tensor, name: str = "x") -> None:
    """Raise if any parameter or buffer of ``model`` is on another device than ``x``.

    Every parameter and buffer is looked at (a model half moved with ``.to`` fails here, not
    deep inside its forward). A floating-point parameter of another floating dtype than ``x``
    (a float16 model fed float32 input) is refused too, naming both dtypes, unless autocast
    is on for ``x``'s device (autocast casts inside the forward).
    """
    autocast = x.device.type != "meta" and torch.is_autocast_enabled(x.device.type)
    for kind, tensors in (
        ("parameters", model.named_parameters()),
        ("buffers", model.named_buffers()),
    ):
        for pname, p in tensors:
            if p.device != x.device and not (p.device.type == x.device.type == "meta"):
                raise ValueError(
                    f"{name} is on {x.device} but the model's {kind} are on {p.device} (first: "
                    f"{pname!r}); move one of them (advrobust never moves the model)"
                )
            if (
                kind == "parameters"
                and not autocast
                and p.is_floating_point()
                and x.is_floating_point()
                and p.dtype != x.dtype
            ):
                raise ValueError(
                    f"{name} has dtype {x.dtype} but the model's parameters have dtype {p.dtype} "
                    f"(first: {pname!r}); convert one of them, e.g. x.to({p.dtype}) or "
                    f"model.to({x.dtype})"
                )


@contextlib.contextmanager
def model_state_guard(model: nn.Module, *, train: bool = False) -> Iterator[nn.Module]:
    """Put every submodule in eval (or train) mode and restore each flag afterwards.

    The training flag of *every* submodule is recorded and restored in ``finally``, so a frozen
    BatchNorm child inside a model in train mode keeps its own flag, also when the body raises.
    Parameter ``requires_grad`` flags are restored too, and parameter ``.grad`` fields are saved
    and put back, so gradients computed inside the block never leak into the caller's.
    """
    flags = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    requires = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    try:
        model.train(train)
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
        for p, req, g in zip(params, requires, grads, strict=True):
            p.requires_grad_(req)
            p.grad = g


def check_real(value: object, name: str) -> float:
    """Check that ``value`` is a finite real number (not a bool)."""
    return _check_real(value, name)


def check_str(value: object, name: str) -> str:
    """Check that ``value`` is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty string, got {describe(value)}")
    return value


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of ``choices`` (the message lists them)."""
    text = check_str(value, name)
    if text not in choices:
        raise ValueError(f"{name}: unknown value {text!r}; valid values: {', '.join(choices)}")
    return text


def check_bool(value: object, name: str) -> bool:
    """Check that ``value`` is a bool (not 0/1)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, got {describe(value)}")
    return value
