"""The 20-layer VGG-like CNN of the ICLR 2019 study (VGG-11 layout at half width)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._validate import check_probability
from ._common import check_width, scaled
from ._registry import input_size_error, register_model

__all__ = ["VGG", "vgg20"]

#: VGG-A (VGG-11) at half width: channels, with "M" for a 2x2 max-pool.
_VGG11_HALF: tuple[int | str, ...] = (32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M")


class VGG(nn.Module):
    """A VGG network: 3x3 'same' convolutions with bias and ReLU, 2x2 max-pools, 3 linear layers.

    Submodules: ``features`` (convolutions and pools) and ``classifier``
    (``Linear -> ReLU -> Dropout -> Linear -> ReLU -> Dropout -> Linear``), as in torchvision.

    Args:
        cfg: Convolution widths, with ``"M"`` marking a max-pool.
        num_classes: Number of output logits.
        in_channels: Input channels.
        input_size: Input height and width (sets the first linear layer's size).
        hidden: Width of the two hidden linear layers.
        dropout: Dropout probability after each hidden linear layer.
    """

    def __init__(
        self,
        cfg: Sequence[int | str],
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        *,
        hidden: int = 512,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, size = in_channels, input_size
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                size //= 2
            else:
                out = int(v)
                layers += [nn.Conv2d(prev, out, 3, padding=1), nn.ReLU(inplace=True)]
                prev = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(prev * size * size, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        logits: Tensor = self.classifier(torch.flatten(self.features(x), 1))
        return logits


@register_model(
    "vgg-20",
    family="vgg",
    description="VGG-11 layout at half width, FC512-FC512 head (approximates the ICLR 2019 count)",
    paper="the ICLR 2019 study table 1, 'simple CNN, 20 layers, VGG-like' (approximate)",
    min_input_size=32,
    num_params={"stl10": 7_293_642, "tiny-imagenet": 6_080_392, "cifar10": 5_196_490},
    exact=False,
)
def vgg20(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    width: float = 1.0,
    dropout: float = 0.5,
) -> VGG:
    """The 20-layer VGG-like CNN of the ICLR 2019 study for STL-10 and Tiny ImageNet (approximate).

    Layout: VGG-A (VGG-11) at half width, all convolutions 3x3 'same' with bias and ReLU, 2x2
    max-pools: conv32, pool, conv64, pool, conv128, conv128, pool, conv256, conv256, pool,
    conv512, conv512, pool; then Flatten, FC512 + ReLU + Dropout, FC512 + ReLU + Dropout,
    FC classes. Counting Keras layers (8 conv, 5 pool, flatten, 3 dense, 2 dropout, softmax)
    gives 20.

    No principled layout reproduces the paper's counts exactly. The classifier head is pinned
    down by the two counts; this conv stack is the closest regular one: 7,293,642 parameters on
    STL-10 (96x96x3, 10 classes; paper 7,257,322, +0.5%) and 6,080,392 on Tiny ImageNet
    (64x64x3, 200 classes; paper 6,044,072, +0.6%).

    Five pools need inputs of at least 32x32; the flattened features are ``512 * (s // 32)^2``.

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels.
        input_size: Input height and width (at least 32).
        width: Multiplier on every convolution and hidden linear width (Kurakin's rho).
        dropout: Dropout probability in the classifier.

    Returns:
        A :class:`VGG`.

    Raises:
        ValueError: If ``input_size`` < 32.
    """
    rho = check_width(width)
    check_probability(dropout, "dropout")
    if input_size < 32:
        raise input_size_error("vgg-20", 32, input_size, "its five 2x2 max-pools halve 32 to 1")
    cfg = [v if v == "M" else scaled(int(v), rho) for v in _VGG11_HALF]
    return VGG(
        cfg, num_classes, in_channels, input_size, hidden=scaled(512, rho), dropout=float(dropout)
    )
