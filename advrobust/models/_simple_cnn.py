"""The Carlini-Wagner 7-layer CNN ("simple CNN" of the ICLR 2019 study)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .._validate import check_probability, describe
from ._common import check_int_tuple, check_width, scaled
from ._registry import input_size_error, register_model

__all__ = ["SimpleCNN", "simple_cnn"]

_VARIANTS = {
    "mnist": ((32, 32, 64, 64), (200, 200)),
    "cifar": ((64, 64, 128, 128), (256, 256)),
}


def _feature_size(input_size: int, padding: str) -> int:
    """Spatial size after conv-conv-pool-conv-conv-pool (0 when the input is too small)."""
    s = input_size
    for _ in range(2):
        if padding == "valid":
            s -= 4
        if s < 2:
            return 0
        s //= 2
    return s


class SimpleCNN(nn.Module):
    """The Carlini-Wagner CNN: four 3x3 convolutions, two max-pools, three linear layers.

    Layout: ``conv(c1) -> ReLU -> conv(c2) -> ReLU -> maxpool 2 -> conv(c3) -> ReLU ->
    conv(c4) -> ReLU -> maxpool 2 -> Flatten -> Linear(h1) -> ReLU -> Dropout ->
    Linear(h2) -> ReLU -> Linear(classes)``. Convolutions have biases and no BatchNorm.

    Submodules: ``features`` (convolutions and pools) and ``classifier`` (linear layers).

    Args:
        in_channels: Number of input channels.
        num_classes: Number of output logits.
        input_size: Input height and width (the first linear layer depends on it).
        channels: The four convolution widths.
        hidden: The two hidden linear widths.
        padding: ``"valid"`` (no padding, the paper) or ``"same"`` (padding 1).
        dropout: Dropout probability between the two hidden linear layers.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_size: int,
        channels: Sequence[int],
        hidden: Sequence[int],
        *,
        padding: Literal["valid", "same"] = "valid",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        pad = 0 if padding == "valid" else 1
        c1, c2, c3, c4 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=pad),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 3, padding=pad),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=pad),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=pad),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        s = _feature_size(input_size, padding)
        h1, h2 = hidden
        self.classifier = nn.Sequential(
            nn.Linear(c4 * s * s, h1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(h1, h2),
            nn.ReLU(inplace=True),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        logits: Tensor = self.classifier(torch.flatten(self.features(x), 1))
        return logits


@register_model(
    "simple-cnn",
    family="simple-cnn",
    description="Carlini-Wagner 7-layer CNN: 4 3x3 convs, 2 max-pools, 3 linear layers",
    paper="Carlini & Wagner 2017 (setup_mnist.py / setup_cifar.py); the ICLR 2019 study table 1",
    min_input_size=4,
    num_params={"mnist": 312_202, "cifar10": 1_147_978, "digits": 158_602},
)
def simple_cnn(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    variant: Literal["mnist", "cifar"] | None = None,
    channels: Sequence[int] | None = None,
    hidden: Sequence[int] | None = None,
    padding: Literal["valid", "same", "auto"] = "auto",
    dropout: float = 0.5,
    width: float = 1.0,
) -> SimpleCNN:
    """The Carlini-Wagner 7-layer CNN ("simple CNN" of the ICLR 2019 study).

    Widths: the ``"mnist"`` variant is 32-32-64-64 / 200-200, the ``"cifar"`` variant
    64-64-128-128 / 256-256. By default the variant follows ``in_channels`` (1 channel: MNIST,
    otherwise CIFAR). Exact counts with ``padding="valid"`` (ICLR 2019 study table 1): 312,202 on
    MNIST (28x28x1), 1,147,978 on CIFAR-10 (32x32x3).

    Padding: the paper's layout uses unpadded ("valid") convolutions, which needs inputs of at
    least 16x16 (16 -> 14 -> 12 -> 6 -> 4 -> 2 -> 1). On 8x8 digits it would fail (8 -> 6 -> 4
    -> 2 -> 0). ``padding="auto"`` (the default) therefore uses "valid" for inputs of 16x16 and
    larger (the paper's model, exact counts) and "same" (padding 1, smallest input 4x4) for
    smaller inputs: on 8x8 digits, 8 -> 8 -> 8 -> 4 -> 4 -> 4 -> 2 and 2x2x64 = 256 flattened
    features (158,602 parameters). Pass ``padding="valid"`` or ``"same"`` to choose explicitly;
    "valid" on an input smaller than 16 raises an error naming the smallest size.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input channels.
        input_size: Input height and width.
        variant: ``"mnist"`` or ``"cifar"`` widths; ``None`` chooses from ``in_channels``.
        channels: Four convolution widths (overrides the variant).
        hidden: Two hidden linear widths (overrides the variant).
        padding: ``"valid"``, ``"same"`` or ``"auto"`` (see above).
        dropout: Dropout probability between the hidden linear layers (0.5 in the paper).
        width: Multiplier (Kurakin's rho) on every convolution and hidden linear width.

    Returns:
        A :class:`SimpleCNN`.

    Raises:
        ValueError: If the input is smaller than the layout supports.
    """
    if variant is None:
        variant = "mnist" if in_channels == 1 else "cifar"
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be 'mnist', 'cifar' or None, got {describe(variant)}")
    rho = check_width(width)
    check_probability(dropout, "dropout")
    default_channels, default_hidden = _VARIANTS[variant]
    chans = check_int_tuple(default_channels if channels is None else channels, "channels", 4)
    hid = check_int_tuple(default_hidden if hidden is None else hidden, "hidden", 2)
    chans = tuple(scaled(c, rho) for c in chans)
    hid = tuple(scaled(h, rho) for h in hid)
    if padding == "auto":
        padding = "valid" if input_size >= 16 else "same"
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid', 'same' or 'auto', got {describe(padding)}")
    if _feature_size(input_size, padding) < 1:
        smallest = 16 if padding == "valid" else 4
        hint = "pass padding='same' (or 'auto') for smaller inputs" if padding == "valid" else ""
        raise input_size_error(f"simple-cnn (padding={padding!r})", smallest, input_size, hint)
    return SimpleCNN(
        in_channels, num_classes, input_size, chans, hid, padding=padding, dropout=float(dropout)
    )
