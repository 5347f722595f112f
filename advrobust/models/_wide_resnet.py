"""Wide residual networks (Zagoruyko & Komodakis 2016), used by Madry et al. and Marchetti & Ho."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._validate import check_int, check_probability
from ._common import check_width, scaled
from ._registry import register_model

__all__ = ["WideBasicBlock", "WideResNet", "wide_resnet"]


class WideBasicBlock(nn.Module):
    """Pre-activation wide block: ``bn1-relu-conv1-bn2-relu-dropout-conv2`` plus a shortcut.

    The shortcut is the identity, or ``downsample`` (a bias-free 1x1 convolution applied to the
    pre-activated input) when the width or the stride changes.

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of ``conv1``.
        dropout: Dropout probability between the two convolutions.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.dropout(self.relu(self.bn2(out))))
        result: Tensor = out + shortcut
        return result


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``: three stages of ``(depth - 4) / 6`` wide blocks.

    Stem ``conv1`` (3x3, 16 filters, no bias); stages ``layer1``-``layer3`` with
    ``16k, 32k, 64k`` filters and strides 1, 2, 2; then ``bn``-``relu``, global average pool
    and ``fc``. Works for any input size (global pooling).

    Args:
        depth: ``6n + 4`` (16, 22, 28, 34, 40, ...).
        widen_factor: The widening factor ``k``.
        num_classes: Number of output logits.
        in_channels: Input channels.
        dropout: Dropout probability inside every block.
        width: Extra multiplier on every convolution width, stem included (Kurakin's rho).
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        dropout: float = 0.0,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        check_int(depth, "depth", minimum=10)
        check_int(widen_factor, "widen_factor", minimum=1)
        if (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 (16, 22, 28, 34, 40, ...), got {depth}")
        check_probability(dropout, "dropout")
        rho = check_width(width)
        n = (depth - 4) // 6
        stem = scaled(16, rho)
        widths = [scaled(c * widen_factor, rho) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, stem, 3, padding=1, bias=False)
        self.in_planes = stem
        self.layer1 = self._make_layer(widths[0], n, 1, dropout)
        self.layer2 = self._make_layer(widths[1], n, 2, dropout)
        self.layer3 = self._make_layer(widths[2], n, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[2])
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int, dropout: float) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            layers.append(WideBasicBlock(self.in_planes, planes, stride if i == 0 else 1, dropout))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        x = self.avgpool(self.relu(self.bn(x)))
        logits: Tensor = self.fc(torch.flatten(x, 1))
        return logits


_PAPER = "Zagoruyko & Komodakis 2016; Madry et al. 2018; Marchetti & Ho 2022"


@register_model(
    "wide-resnet",
    family="wide-resnet",
    description="Wide ResNet, configurable depth and widen factor (default WRN-16-4)",
    paper=_PAPER,
    num_params={"cifar10": 2_748_890},
)
def wide_resnet(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    depth: int = 16,
    widen_factor: int = 4,
    dropout: float = 0.0,
    width: float = 1.0,
) -> WideResNet:
    """A wide ResNet WRN-``depth``-``widen_factor`` (default WRN-16-4, 2,748,890 parameters).

    See :class:`WideResNet`. ``input_size`` is accepted for the common interface; any size
    works (global pooling).

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels.
        input_size: Input height and width (unused; any size works).
        depth: ``6n + 4``.
        widen_factor: The widening factor ``k``.
        dropout: Dropout probability inside every block.
        width: Extra multiplier on every convolution width (Kurakin's rho).

    Returns:
        A :class:`WideResNet`.
    """
    check_int(input_size, "input_size", minimum=1)
    return WideResNet(depth, widen_factor, num_classes, in_channels, dropout=dropout, width=width)


_FIXED_DOC = """WRN-{depth}-{widen}{who}: {count:,} parameters on CIFAR-10.

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels.
        input_size: Input height and width (unused; any size works).
        dropout: Dropout probability inside every block.
        width: Extra multiplier on every convolution width (Kurakin's rho).

    Returns:
        A :class:`WideResNet`.
    """


def _fixed(depth: int, widen: int, count: int, who: str, note: str) -> Callable[..., WideResNet]:
    """Register ``wide-resnet-{depth}-{widen}``, a WRN of fixed depth and widening factor."""

    def builder(
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        dropout: float = 0.0,
        width: float = 1.0,
    ) -> WideResNet:
        check_int(input_size, "input_size", minimum=1)
        return WideResNet(depth, widen, num_classes, in_channels, dropout=dropout, width=width)

    builder.__name__ = builder.__qualname__ = f"wide_resnet{depth}_{widen}"
    builder.__doc__ = _FIXED_DOC.format(depth=depth, widen=widen, who=who, count=count)
    return register_model(
        f"wide-resnet-{depth}-{widen}",
        family="wide-resnet",
        description=f"WRN-{depth}-{widen} ({note})",
        paper=_PAPER,
        num_params={"cifar10": count},
    )(builder)


wide_resnet28_10 = _fixed(28, 10, 36_479_194, "", "Zagoruyko & Komodakis; 36.5M parameters")
wide_resnet34_10 = _fixed(
    34,
    10,
    46_160_474,
    ", Madry et al.'s CIFAR-10 model",
    "Madry et al.'s CIFAR-10 model; 46.2M parameters",
)
