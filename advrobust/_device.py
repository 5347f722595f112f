"""Device arguments shared by every layer: parse and check them with messages that name them.

``torch.device("gpu0")`` fails with a bare ``RuntimeError: Invalid device string``; here the
same input gives a ``ValueError`` that names the argument and lists the valid forms, and a
device the machine lacks (``cuda`` without CUDA) is named with what to use instead.
"""

from __future__ import annotations

import torch

from ._validate import describe

__all__ = ["DEVICE_FORMS", "check_device", "device_available"]

DEVICE_FORMS = "cpu, cuda, cuda:N, mps, meta"
"""The device strings advrobust accepts (``auto`` too where a function says so)."""

_TYPES = ("cpu", "cuda", "mps", "meta")


def check_device(device: object, name: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device`, or an error naming ``name``.

    Args:
        device: A ``torch.device`` or a string of one of the forms in :data:`DEVICE_FORMS`.
        name: The argument name used in messages.

    Returns:
        The device.

    Raises:
        TypeError: If ``device`` is neither a string nor a ``torch.device``.
        ValueError: If the string is not a device (the message lists the valid forms).

    Example:
        >>> check_device("cuda:1")
        device(type='cuda', index=1)
        >>> check_device("gpu0")
        Traceback (most recent call last):
        ...
        ValueError: device must be one of cpu, cuda, cuda:N, mps, meta, got 'gpu0'
    """
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"{name} must be a str or torch.device, got {describe(device)}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in _TYPES or device != device.strip():
        raise ValueError(f"{name} must be one of {DEVICE_FORMS}, got {device!r}")
    return dev


def device_available(device: torch.device) -> str | None:
    """None when ``device`` can be used on this machine, else the reason it cannot."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available on this machine"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
    if device.type == "mps" and not torch.backends.mps.is_available():
        return "MPS is not available on this machine"
    return None
