"""``TensorLoader``: batches sliced from in-memory tensors on their device."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from .._device import check_device
from .._validate import check_int, describe

__all__ = ["TensorLoader"]

Augment = Callable[..., Tensor]


class TensorLoader:
    """Iterate over ``(x, y)`` mini-batches of in-memory tensors without per-example overhead.

    The tensors are moved to ``device`` once; every batch is a slice (no shuffle) or one
    ``index_select`` (shuffle) on that device, then optionally augmented as a whole batch.
    There are no worker processes, no collation and no per-example Python calls, which makes
    it much faster than ``torch.utils.data.DataLoader`` for data that fits in memory.

    Reproducibility: the loader draws one base seed at construction (from ``generator``, or
    torch's global RNG when ``generator`` is ``None``). Epoch ``e`` shuffles and augments with
    a generator seeded by ``base_seed + e``, so the order of an epoch depends only on the base
    seed and the epoch number. The epoch counter advances after each complete pass;
    :meth:`set_epoch` sets it (e.g. when resuming training), as for ``DistributedSampler``.

    Args:
        x: Inputs ``(N, ...)``.
        y: Labels ``(N,)``.
        batch_size: Examples per batch.
        shuffle: Reshuffle every epoch.
        drop_last: Drop the last incomplete batch.
        generator: Source of the base seed (a ``torch.Generator``); ``None`` uses the global RNG.
        augment: Batched augmentation ``augment(x, generator=...) -> x`` applied to inputs.
        device: Where batches live; ``None`` keeps the tensors where they are.

    Raises:
        TypeError: If ``x``/``y`` are not tensors.
        ValueError: If their lengths differ or ``batch_size`` < 1.

    Example:
        >>> import torch
        >>> loader = TensorLoader(torch.rand(10, 1, 8, 8), torch.arange(10), batch_size=4)
        >>> last_x, last_y = list(loader)[-1]
        >>> len(loader), last_y.tolist()
        (3, [8, 9])
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        augment: Augment | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {describe(x)}")
        if not isinstance(y, Tensor):
            raise TypeError(f"y must be a torch.Tensor, got {describe(y)}")
        if x.dim() < 1 or y.dim() < 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y must have the same number of examples, got {tuple(x.shape)} and "
                f"{tuple(y.shape)}"
            )
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {describe(generator)}"
            )
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be callable or None, got {describe(augment)}")
        dev = None if device is None else check_device(device, "device")
        self.x = x if dev is None else x.to(dev)
        self.y = y if dev is None else y.to(dev)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.augment = augment
        self.base_seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        self.epoch = 0

    @classmethod
    def from_dataset(cls, dataset: object, **kwargs: object) -> TensorLoader:
        """A loader over an object with ``data`` and ``targets`` tensors (an ``ImageDataset``)."""
        data = getattr(dataset, "data", None)
        targets = getattr(dataset, "targets", None)
        if not isinstance(data, Tensor) or not isinstance(targets, Tensor):
            raise TypeError(
                f"dataset must have tensor attributes data and targets, got {describe(dataset)}"
            )
        return cls(data, targets, **kwargs)  # type: ignore[arg-type]

    @property
    def device(self) -> torch.device:
        """The device batches live on."""
        return self.x.device

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch number that seeds the next pass (shuffle order and augmentation)."""
        self.epoch = check_int(epoch, "epoch", minimum=0)

    def __len__(self) -> int:
        n = self._num_examples()
        if self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)

    # Hooks for loaders that iterate a part of the data (the trainer's rank shards).
    def _num_examples(self) -> int:
        """Number of examples one pass yields."""
        return int(self.x.shape[0])

    def _order(self, generator: torch.Generator) -> Tensor | None:
        """This epoch's example indices on the data's device; None means ``0..n-1`` (slices)."""
        if not self.shuffle:
            return None
        perm = torch.randperm(int(self.x.shape[0]), generator=generator)
        return perm.to(self.x.device, non_blocking=True)

    def _augment_generator(self, generator: torch.Generator) -> torch.Generator:
        """The generator this epoch's augmentation draws from."""
        return generator

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator().manual_seed(self.base_seed + self.epoch)
        order = self._order(gen)
        aug_gen = self._augment_generator(gen)
        n = self._num_examples()
        stop = min(len(self) * self.batch_size, n)
        for start in range(0, stop, self.batch_size):
            end = min(start + self.batch_size, n)
            if order is None:
                xb, yb = self.x[start:end], self.y[start:end]
            else:
                idx = order[start:end]
                xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if self.augment is not None:
                xb = self.augment(xb, generator=aug_gen)
            yield xb, yb
        self.epoch += 1

    def __repr__(self) -> str:
        return (
            f"TensorLoader(n={int(self.x.shape[0])}, batch_size={self.batch_size}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.device})"
        )
