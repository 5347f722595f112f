"""The multilayer perceptron of the ICLR 2019 study (one hidden layer of 1024 units by default)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._validate import check_int, check_probability
from ._common import check_int_tuple
from ._registry import register_model

__all__ = ["MLP", "mlp"]


class MLP(nn.Module):
    """A fully connected network on flattened images: ``Flatten -> [Linear -> ReLU]* -> Linear``.

    Submodules: ``features`` (the hidden ``Linear``/``ReLU``/``Dropout`` stack) and ``classifier``.

    Args:
        in_features: Number of input features (``C * H * W``).
        hidden: Sizes of the hidden layers.
        num_classes: Number of output logits.
        dropout: Dropout probability after each hidden ReLU (0 disables dropout).
    """

    def __init__(
        self, in_features: int, hidden: Sequence[int], num_classes: int, *, dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_features
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for images ``(B, C, H, W)``."""
        x = torch.flatten(x, 1)
        logits: Tensor = self.classifier(self.features(x))
        return logits


@register_model(
    "mlp",
    family="mlp",
    description="2-layer perceptron: Flatten -> Linear(1024) -> ReLU -> Linear(classes)",
    paper="the ICLR 2019 study, table 1",
    num_params={"mnist": 814_090, "cifar10": 3_157_002, "digits": 76_810},
)
def mlp(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    hidden: int | Sequence[int] = 1024,
    depth: int = 1,
    dropout: float = 0.0,
) -> MLP:
    """The 2-layer perceptron of the ICLR 2019 study: one hidden layer of 1024 ReLU units.

    Parameter counts (exact, ICLR 2019 study table 1): 814,090 on MNIST (28x28x1) and 3,157,002 on
    CIFAR-10 (32x32x3). Works for any input size.

    Args:
        num_classes: Number of output logits.
        in_channels: Number of input channels.
        input_size: Input height and width.
        hidden: Width of each hidden layer (an int, repeated ``depth`` times) or a sequence of
            widths (then ``depth`` must be left at 1 or equal its length).
        depth: Number of hidden layers when ``hidden`` is an int.
        dropout: Dropout probability after each hidden layer.

    Returns:
        An :class:`MLP`.
    """
    check_int(depth, "depth", minimum=1)
    check_probability(dropout, "dropout")
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        sizes = check_int_tuple(hidden, "hidden") * depth
    else:
        sizes = check_int_tuple(hidden, "hidden")
        if depth not in (1, len(sizes)):
            raise ValueError(
                f"depth={depth} conflicts with hidden={list(sizes)}; give one or the other"
            )
    return MLP(in_channels * input_size * input_size, sizes, num_classes, dropout=float(dropout))
