"""Where a model runs and in which memory layout: :func:`to_device`."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn

from .._device import check_device

__all__ = ["to_device"]


def to_device(model: nn.Module, device: torch.device | str) -> nn.Module:
    """Move ``model`` to ``device`` in the memory layout its convolutions run fastest in.

    On the CPU a model with 2-D convolutions gets its 4-D weights in ``channels_last`` (NHWC)
    layout, where torch's CPU (oneDNN) convolutions run faster, whatever the layout of the input
    (a convolution with ``channels_last`` weights gives ``channels_last`` activations and input
    gradients). Measured on one core with torch 2.13 (``benchmarks/bench_layout.py``, the median
    of paired ratios new / old), a training step at batch 32 and an input gradient (one attack
    step) at batch 200 take:

    - the Carlini-Wagner CNN at width 0.5 on 8x8 digits: 0.93 and 0.71 of the time;
    - the Carlini-Wagner CNN on 28x28 MNIST-sized images: 0.87 and 0.72;
    - ResNet-20 on 32x32 CIFAR-10-sized images: 0.86 and 0.74.

    Elsewhere (CUDA, MPS, meta) and for models without convolutions the model is moved with
    ``model.to(device)`` and keeps its layout: on a GPU the faster layout depends on the
    precision (``channels_last`` pays off with tensor-core AMP), which is the caller's choice.

    The layout changes no value a layer computes beyond float rounding (the sums run in
    another order), and ``state_dict`` files are interchangeable between layouts.

    Args:
        model: the model (moved in place, as ``nn.Module.to`` does, and returned).
        device: a ``torch.device`` or a device string (``cpu``, ``cuda``, ``cuda:N``, ``mps``,
            ``meta``).

    Returns:
        ``model``, on ``device``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``device`` is not a device string.

    Example:
        >>> from advrobust.models import create_model, to_device
        >>> cnn = to_device(create_model("simple-cnn", num_classes=10, in_channels=1,
        ...                              input_size=8), "cpu")
        >>> cnn.features[0].weight.is_contiguous(memory_format=torch.channels_last)
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    dev = check_device(device)
    moved = model.to(dev)
    if dev.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in moved.modules()):
        # (nn.Module.to takes memory_format at run time; its type stubs do not list it)
        cast(Any, moved).to(memory_format=torch.channels_last)
    return moved
