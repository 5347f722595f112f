"""CIFAR-style ResNets (depth 6n+2): Keras v1 layout (ICLR 2019 study) and He et al. option A."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .._validate import check_int, describe
from ._common import check_width, scaled
from ._registry import register_model

__all__ = ["BasicBlock", "ResNet"]

Layout = Literal["keras", "he"]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=bias)


class _ZeroPadShortcut(nn.Module):
    """He et al. option A: subsample by ``stride`` and zero-pad the extra channels."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_front = (out_planes - in_planes) // 2
        self.pad_back = out_planes - in_planes - self.pad_front

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.pad_front, self.pad_back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_front}, {self.pad_back})"


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual connection (post-activation).

    ``conv1 -> bn1 -> relu -> conv2 -> bn2 -> (+ shortcut) -> relu``. The shortcut is the
    identity, or ``downsample`` when the shape changes: a 1x1 strided convolution with bias and
    no BatchNorm (Keras resnet v1), or subsampling plus zero channels (He et al. option A).

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of ``conv1`` (2 at the first block of stages 2 and 3).
        layout: ``"keras"`` (conv biases, projection shortcut) or ``"he"`` (no biases, option A).
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, layout: Layout = "keras"):
        super().__init__()
        bias = layout == "keras"
        self.conv1 = _conv3x3(in_planes, planes, stride, bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            if layout == "keras":
                self.downsample = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=True)
            else:
                self.downsample = _ZeroPadShortcut(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.relu(out + identity)
        return result


class ResNet(nn.Module):
    """A CIFAR-style ResNet of depth ``6n + 2`` with three stages of ``n`` basic blocks.

    Stem ``conv1 -> bn1 -> relu`` (16 filters), stages ``layer1``-``layer3`` (16, 32, 64
    filters, strides 1, 2, 2), then ``avgpool`` and ``fc`` on the flattened pooled map.

    With ``layout="keras"`` (default; the Keras ``cifar10_resnet.py`` resnet v1 example, which
    reproduces the ICLR 2019 study's counts exactly) every convolution has a bias, the downsampling
    shortcuts are 1x1 strided convolutions with bias and no BatchNorm, and the pool is a fixed
    8x8 average pool with stride 8 (global when the last map is smaller than 8x8), so at 96x96
    the last 24x24 map gives 3x3x64 features. With ``layout="he"`` (He et al. 2016, option A)
    convolutions have no bias, shortcuts are parameter-free (subsample + zero channels) and the
    pool is global.

    Args:
        depth: ``6n + 2`` (20, 32, 44, 56, 110, ...).
        num_classes: Number of output logits.
        in_channels: Input channels.
        input_size: Input height and width (sets the classifier's input size).
        layout: ``"keras"`` or ``"he"``.
        width: Multiplier on every stage width (Kurakin's rho).
        global_pool: Pool globally instead of the Keras 8x8 pool; ``None`` follows ``layout``.
    """

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        *,
        layout: Layout = "keras",
        width: float = 1.0,
        global_pool: bool | None = None,
    ) -> None:
        super().__init__()
        check_int(depth, "depth", minimum=8)
        if (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {depth}")
        if layout not in ("keras", "he"):
            raise ValueError(f"layout must be 'keras' or 'he', got {describe(layout)}")
        rho = check_width(width)
        n = (depth - 2) // 6
        widths = [scaled(c, rho) for c in (16, 32, 64)]
        bias = layout == "keras"
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.in_planes = widths[0]
        self.layer1 = self._make_layer(widths[0], n, 1, layout)
        self.layer2 = self._make_layer(widths[1], n, 2, layout)
        self.layer3 = self._make_layer(widths[2], n, 2, layout)
        final = (input_size + 3) // 4  # ceil(ceil(s / 2) / 2): two stride-2 convs with padding 1
        if global_pool is None:
            global_pool = layout == "he"
        if global_pool or final < 8:
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d(1)
            pooled = 1
        else:
            self.avgpool = nn.AvgPool2d(8)
            pooled = final // 8
        self.fc = nn.Linear(widths[2] * pooled * pooled, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int, layout: Layout) -> nn.Sequential:
        layers = [BasicBlock(self.in_planes, planes, stride, layout)]
        self.in_planes = planes
        layers += [BasicBlock(planes, planes, 1, layout) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        logits: Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
        return logits


def _resnet(
    depth: int,
    num_classes: int,
    in_channels: int,
    input_size: int,
    layout: Layout,
    width: float,
    global_pool: bool | None,
) -> ResNet:
    return ResNet(
        depth,
        num_classes,
        in_channels,
        input_size,
        layout=layout,
        width=width,
        global_pool=global_pool,
    )


_PAPER = "He et al. 2016 (CIFAR ResNets); Keras cifar10_resnet.py v1; the ICLR 2019 study table 1"
_DOC = """ResNet-{depth} (CIFAR style, {n} basic blocks per stage; see :class:`ResNet`).

    The default Keras v1 layout reproduces the ICLR 2019 study exactly{counts}.
    ``layout="he"`` gives He et al.'s option A (zero-padding shortcuts, no conv biases, global
    pooling).

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels.
        input_size: Input height and width.
        layout: ``"keras"`` (default) or ``"he"``.
        width: Multiplier on every stage width (Kurakin's rho).
        global_pool: Global instead of 8x8 average pooling; ``None`` follows ``layout``.

    Returns:
        A :class:`ResNet`.
    """


def _register(depth: int, counts: dict[str, int], counts_text: str) -> None:
    def builder(
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        input_size: int = 32,
        layout: Layout = "keras",
        width: float = 1.0,
        global_pool: bool | None = None,
    ) -> ResNet:
        return _resnet(depth, num_classes, in_channels, input_size, layout, width, global_pool)

    builder.__name__ = builder.__qualname__ = f"resnet{depth}"
    builder.__doc__ = _DOC.format(depth=depth, n=(depth - 2) // 6, counts=counts_text)
    register_model(
        f"resnet-{depth}",
        family="resnet",
        description=f"CIFAR ResNet-{depth} (6n+2, 16-32-64 filters, Keras v1 layout)",
        paper=_PAPER,
        num_params=counts,
    )(builder)


_register(
    20,
    {"mnist": 272_778, "cifar10": 273_066, "stl10": 278_186, "digits": 272_778},
    ": 272,778 parameters on MNIST (28x28x1) and 278,186 on STL-10 (96x96x3, 3x3x64 pooled "
    "features); 273,066 on CIFAR-10",
)
_register(32, {"cifar10": 467_946}, ": 467,946 parameters on CIFAR-10")
# Each extra block per stage adds 2 * (18 p^2 + 6 p) for p = 16, 32, 64: 97,440 parameters.
_register(44, {"cifar10": 662_826}, " for ResNet-20 and ResNet-32; 662,826 parameters on CIFAR-10")
_register(56, {"cifar10": 857_706}, " for ResNet-20 and ResNet-32; 857,706 parameters on CIFAR-10")
_register(
    110, {"cifar10": 1_734_666}, " for ResNet-20 and ResNet-32; 1,734,666 parameters on CIFAR-10"
)
