"""``ImageDataset``: an in-memory labelled image set."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._device import check_device
from .._validate import describe

__all__ = ["ImageDataset", "channel_stats"]


def channel_stats(data: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``(N, C, H, W)`` images.

    Accumulates float64 sums over chunks of ``chunk`` images, so the memory overhead stays
    small for large datasets (Tiny ImageNet's train split is 4.9 GB as float32).
    """
    n, c = int(data.shape[0]), int(data.shape[1])
    if data.numel() == 0:
        return (0.0,) * c, (1.0,) * c
    total = torch.zeros(c, dtype=torch.float64, device=data.device)
    squares = torch.zeros(c, dtype=torch.float64, device=data.device)
    for start in range(0, n, chunk):
        part = data[start : start + chunk].to(torch.float64)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = n * data.shape[2] * data.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0.0).sqrt().clamp_min(1e-12)
    return tuple(mean.tolist()), tuple(std.tolist())


class ImageDataset(torch.utils.data.Dataset[tuple[Tensor, Tensor]]):
    """A labelled image set held in memory as two tensors.

    Attributes:
        data: ``(N, C, H, W)`` float32 images in [0, 1].
        targets: ``(N,)`` int64 class indices.
        classes: Class names; ``targets`` index into this list.
        mean: Per-channel mean of ``data`` (for :class:`advrobust.models.Normalize`).
        std: Per-channel standard deviation of ``data``.
        name: Dataset name and split, e.g. ``"digits/train"``.

    Args:
        data: Images ``(N, C, H, W)``, floating point, values in [0, 1].
        targets: Labels ``(N,)``, integer, in ``[0, len(classes))``.
        classes: Class names.
        name: A name for messages and tables.
        mean: Per-channel mean; computed from ``data`` when ``None``.
        std: Per-channel std; computed from ``data`` when ``None``.

    Raises:
        TypeError: If ``data`` is not floating point or ``targets`` not integer.
        ValueError: If shapes disagree or values are out of range.

    Example:
        >>> import torch
        >>> ds = ImageDataset(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]), ["a", "b"])
        >>> len(ds), ds.subset([1, 3]).targets.tolist()
        (4, [1, 1])
    """

    def __init__(
        self,
        data: Tensor,
        targets: Tensor,
        classes: Sequence[str],
        name: str = "dataset",
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if not isinstance(data, Tensor) or not data.is_floating_point():
            raise TypeError(f"data must be a floating-point tensor, got {describe(data)}")
        if data.dim() != 4:
            raise ValueError(f"data must have shape (N, C, H, W), got {tuple(data.shape)}")
        if not isinstance(targets, Tensor) or targets.is_floating_point():
            raise TypeError(f"targets must be an integer tensor, got {describe(targets)}")
        if tuple(targets.shape) != (data.shape[0],):
            raise ValueError(
                f"targets must have shape ({data.shape[0]},) to match data, got "
                f"{tuple(targets.shape)}"
            )
        if isinstance(classes, (str, bytes)) or not isinstance(classes, (Sequence, np.ndarray)):
            raise TypeError(f"classes must be a sequence of class names, got {describe(classes)}")
        classes = [str(c) for c in classes]
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= len(classes)):
            raise ValueError(
                f"targets must lie in [0, {len(classes)}) (one per class name), got "
                f"[{int(targets.min())}, {int(targets.max())}]"
            )
        if data.numel() and bool(torch.isnan(data).any()):
            raise ValueError("data must not contain NaN (pixel values lie in [0, 1])")
        if data.numel() and (float(data.min()) < 0.0 or float(data.max()) > 1.0):
            raise ValueError(
                f"data must lie in [0, 1], got values in [{float(data.min()):g}, "
                f"{float(data.max()):g}]"
            )
        self.data = data.to(torch.float32)
        self.targets = targets.to(torch.int64)
        self.classes = classes
        self.name = name
        if mean is None or std is None:
            m, s = channel_stats(self.data)
        self.mean: tuple[float, ...] = tuple(float(v) for v in (m if mean is None else mean))
        self.std: tuple[float, ...] = tuple(float(v) for v in (s if std is None else std))

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.data[index], self.targets[index]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape ``(C, H, W)``."""
        c, h, w = self.data.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> ImageDataset:
        """A new dataset with the examples at ``indices`` (same classes, mean and std).

        Args:
            indices: 1-D integer indices (e.g. from :func:`nested_balanced_subsets`).

        Returns:
            The subset; its tensors are copies.
        """
        array = indices.detach().cpu().numpy() if isinstance(indices, Tensor) else indices
        array = np.asarray(array)
        if array.dtype == bool:
            raise TypeError(
                "indices must be integer positions, got a boolean mask; pass "
                "np.flatnonzero(mask) to select by mask"
            )
        if array.size and array.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers, got dtype {array.dtype}")
        idx = torch.as_tensor(array.astype(np.int64, copy=False))
        if idx.dim() != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"indices out of range for a dataset of {len(self)} examples")
        return ImageDataset(
            self.data[idx.to(self.data.device)],
            self.targets[idx.to(self.targets.device)],
            self.classes,
            self.name,
            mean=self.mean,
            std=self.std,
        )

    def to(self, device: torch.device | str) -> ImageDataset:
        """A copy of the dataset with its tensors on ``device``."""
        dev = check_device(device, "device")
        return ImageDataset(
            self.data.to(dev),
            self.targets.to(dev),
            self.classes,
            self.name,
            mean=self.mean,
            std=self.std,
        )

    def __repr__(self) -> str:
        c, h, w = self.shape
        return (
            f"ImageDataset(name={self.name!r}, n={len(self)}, shape=({c}, {h}, {w}), "
            f"classes={len(self.classes)})"
        )
