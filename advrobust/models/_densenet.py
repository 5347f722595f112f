"""DenseNets for small images (Huang et al. 2017): DenseNet-40 (ICLR 2019 study) and DenseNet-BC."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validate import check_int, check_positive, check_probability
from ._common import check_width, scaled
from ._registry import input_size_error, register_model

__all__ = ["DenseNet", "densenet", "densenet40"]


class _DenseLayer(nn.Module):
    """One dense layer: its new maps are concatenated to its input.

    ``norm1-relu1-conv1`` (3x3, ``growth`` maps), or with a bottleneck
    ``norm1-relu1-conv1 (1x1, 4 growth)-norm2-relu2-conv2 (3x3)``; then dropout.
    """

    def __init__(self, in_features: int, growth: int, bottleneck: bool, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2: nn.Conv2d | None = None
        if bottleneck:
            inter = 4 * growth
            self.conv1 = nn.Conv2d(in_features, inter, 1, bias=False)
            self.norm2 = nn.BatchNorm2d(inter)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(inter, growth, 3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_features, growth, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        if self.conv2 is not None:
            out = self.conv2(self.relu2(self.norm2(out)))
        return torch.cat([x, self.dropout(out)], dim=1)


class _Transition(nn.Sequential):
    """``norm-relu-conv (1x1, no bias)-pool (2x2 average)`` between dense blocks."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_features, out_features, 1, bias=False)
        self.pool = nn.AvgPool2d(2)


class DenseNet(nn.Module):
    """A three-block DenseNet for small images (CIFAR-style, Huang et al. 2017).

    ``features``: ``conv0`` (3x3, no bias), ``denseblock1``, ``transition1``, ``denseblock2``,
    ``transition2``, ``denseblock3``, ``norm5``; then ReLU, global average pooling and
    ``classifier`` (linear with bias). Submodule names follow torchvision. Any input of at least
    4x4 works (two 2x2 average pools); the parameter count does not depend on the input size.

    Args:
        depth: Total depth: ``3 L + 4`` (no bottleneck) or ``6 L + 4`` (bottleneck) for ``L``
            layers per block.
        growth_rate: Feature maps each dense layer adds (``k``).
        num_classes: Number of output logits.
        in_channels: Input channels.
        bottleneck: Use 1x1 bottleneck convolutions (DenseNet-B).
        compression: Fraction of feature maps a transition keeps (1.0: none, 0.5: DenseNet-C).
        init_features: Filters of ``conv0``; ``None`` means ``2 k`` with a bottleneck or a
            compression below 1 (DenseNet-BC), else 16.
        dropout: Dropout probability after every dense layer's convolution.
        width: Multiplier on ``growth_rate`` and ``init_features`` (Kurakin's rho).
    """

    def __init__(
        self,
        depth: int = 40,
        growth_rate: int = 12,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        bottleneck: bool = False,
        compression: float = 1.0,
        init_features: int | None = None,
        dropout: float = 0.0,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        check_int(depth, "depth", minimum=7)
        check_int(growth_rate, "growth_rate", minimum=1)
        check_probability(dropout, "dropout")
        check_positive(compression, "compression")
        if compression > 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        rho = check_width(width)
        per_block = 6 if bottleneck else 3
        if (depth - 4) % per_block:
            kind = "6L + 4 with a bottleneck" if bottleneck else "3L + 4 without a bottleneck"
            raise ValueError(f"depth must be {kind}, got {depth}")
        n_layers = (depth - 4) // per_block
        growth = scaled(growth_rate, rho)
        if init_features is None:
            init_features = 2 * growth_rate if (bottleneck or compression < 1) else 16
        check_int(init_features, "init_features", minimum=1)
        features = scaled(init_features, rho)
        self.features = nn.Sequential()
        self.features.add_module(
            "conv0", nn.Conv2d(in_channels, features, 3, padding=1, bias=False)
        )
        for b in range(3):
            block = nn.Sequential()
            for i in range(n_layers):
                block.add_module(
                    f"denselayer{i + 1}",
                    _DenseLayer(features + i * growth, growth, bottleneck, dropout),
                )
            self.features.add_module(f"denseblock{b + 1}", block)
            features += n_layers * growth
            if b < 2:
                out_features = int(features * compression)
                self.features.add_module(f"transition{b + 1}", _Transition(features, out_features))
                features = out_features
        self.features.add_module("norm5", nn.BatchNorm2d(features))
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(features, num_classes)
        self.num_features = features
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        x = self.avgpool(self.relu(self.features(x)))
        logits: Tensor = self.classifier(torch.flatten(x, 1))
        return logits


def _check_size(name: str, input_size: int) -> None:
    check_int(input_size, "input_size", minimum=1)
    if input_size < 4:
        raise input_size_error(name, 4, input_size, "its two transitions halve the map twice")


_PAPER = "Huang et al. 2017 (DenseNet); the ICLR 2019 study table 1"


@register_model(
    "densenet-40",
    family="densenet",
    description="DenseNet-40, growth 12, 16 initial filters, no bottleneck or compression",
    paper=_PAPER,
    min_input_size=4,
    num_params={
        "cifar10": 1_019_722,
        "stl10": 1_019_722,
        "digits": 1_019_434,
        "mnist": 1_019_434,
        "tiny-imagenet": 1_105_032,
    },
)
def densenet40(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    dropout: float = 0.0,
    width: float = 1.0,
) -> DenseNet:
    """DenseNet-40 (growth 12, ICLR 2019 study): 1,019,722 parameters (10 classes), 1,105,032 (200).

    ``conv0`` 3x3 with 16 filters, three dense blocks of 12 BN-ReLU-conv3x3 layers (no bias, no
    bottleneck), transitions BN-ReLU-conv1x1 (no bias, no compression: 160 and 304 maps)-avgpool,
    final BN-ReLU-global average pool to 448 features and a linear head. Global pooling makes
    the count independent of the input size (any input of at least 4x4).

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels.
        input_size: Input height and width (at least 4).
        dropout: Dropout after each dense layer (Huang et al. use 0.2 without augmentation).
        width: Multiplier on the growth rate and initial filters (Kurakin's rho).

    Returns:
        A :class:`DenseNet`.
    """
    _check_size("densenet-40", input_size)
    return DenseNet(40, 12, num_classes, in_channels, dropout=dropout, width=width)


@register_model(
    "densenet",
    family="densenet",
    description="DenseNet with configurable depth, growth, bottleneck, compression "
    "(default DenseNet-BC-100, k=12)",
    paper=_PAPER,
    min_input_size=4,
    num_params={"cifar10": 769_162},
)
def densenet(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    depth: int = 100,
    growth_rate: int = 12,
    bottleneck: bool = True,
    compression: float = 0.5,
    init_features: int | None = None,
    dropout: float = 0.0,
    width: float = 1.0,
) -> DenseNet:
    """A general three-block DenseNet; the default is DenseNet-BC-100 (k = 12, 769,162 params).

    See :class:`DenseNet` for the layout. ``densenet(depth=40, bottleneck=False,
    compression=1.0)`` is ``densenet-40``.

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels.
        input_size: Input height and width (at least 4).
        depth: ``3L + 4`` (no bottleneck) or ``6L + 4`` (bottleneck).
        growth_rate: Feature maps each dense layer adds.
        bottleneck: Use 1x1 bottleneck convolutions.
        compression: Fraction of feature maps a transition keeps.
        init_features: Filters of the first convolution (default ``2k`` for BC, else 16).
        dropout: Dropout after each dense layer.
        width: Multiplier on the growth rate and initial filters (Kurakin's rho).

    Returns:
        A :class:`DenseNet`.
    """
    _check_size("densenet", input_size)
    return DenseNet(
        depth,
        growth_rate,
        num_classes,
        in_channels,
        bottleneck=bool(bottleneck),
        compression=compression,
        init_features=init_features,
        dropout=dropout,
        width=width,
    )
