"""The trainer's data plumbing: in-memory batches sharded over ranks, loaders, batch checks.

:func:`make_loader` turns whatever the user passes (``(x, y)`` tensors, an ``ImageDataset``, a
:class:`advrobust.data.TensorLoader`, a :class:`torch.utils.data.DataLoader`, or any iterable
of batches) into the batches a trainer iterates, sharded over ranks under ``torch.distributed``;
:func:`unpack_batch` checks one batch and moves it to the training device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from .._validate import check_images, check_labels, check_logits, describe, model_state_guard
from ..data import TensorLoader
from ._state import derive_seed

__all__ = [
    "EvalShardSampler",
    "TensorBatches",
    "is_sharded",
    "make_loader",
    "preflight",
    "unpack_batch",
]

Augment = Callable[..., Tensor]


class TensorBatches(TensorLoader):
    """Minibatches of in-memory tensors, shuffled per epoch, sharded over ranks.

    A :class:`advrobust.data.TensorLoader` with an explicit ``base_seed`` (epoch ``e`` shuffles
    with a generator seeded by ``base_seed + e``, so the order depends only on the base seed
    and the epoch number, which makes resuming exact) that yields only this rank's part of
    every epoch. With ``world_size > 1`` the permutation is padded by wrapping around to a
    multiple of ``world_size`` (as :class:`torch.utils.data.DistributedSampler` does) and rank
    ``r`` takes the positions ``r, r + W, r + 2W, ...``: batch ``j`` of all ranks together is
    then exactly batch ``j`` of a single process with batch size ``W * batch_size`` on the same
    permutation. Augmentation draws from a generator of ``(base_seed + e, rank)``, so ranks do
    not repeat each other's random shifts and flips.

    ``pad=False`` (evaluation) skips the padding: rank ``r`` takes ``r, r + W, ...`` of the
    unpadded order, so every example is counted exactly once when the ranks' counts are summed
    (ranks may then have different numbers of batches, which evaluation allows).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        batch_size: int,
        shuffle: bool,
        base_seed: int,
        drop_last: bool = False,
        augment: Augment | None = None,
        device: torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if isinstance(y, Tensor) and y.dim() != 1:
            raise ValueError(f"y must have shape (N,), got {tuple(y.shape)}")
        # a private generator for the (unused) drawn base seed: the global RNG is not touched
        super().__init__(
            x,
            y,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            generator=torch.Generator(),
            augment=augment,
            device=device,
        )
        self.base_seed = base_seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.sharded = world_size > 1

    def _num_examples(self) -> int:
        n = int(self.x.shape[0])
        if self.world_size == 1:
            return n
        if self.pad:
            return -(-n // self.world_size)
        return len(range(self.rank, n, self.world_size))

    def _order(self, generator: torch.Generator) -> Tensor | None:
        if self.world_size == 1:
            return super()._order(generator)
        n = int(self.x.shape[0])
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        padding = (-n) % self.world_size if self.pad and n else 0
        if padding:
            order = torch.cat([order, order[:padding]])
        return order[self.rank :: self.world_size].to(self.x.device, non_blocking=True)

    def _augment_generator(self, generator: torch.Generator) -> torch.Generator:
        if self.world_size == 1 or self.augment is None:
            return generator
        seq = np.random.SeedSequence([self.base_seed + self.epoch, self.rank])
        return torch.Generator().manual_seed(int(seq.generate_state(1)[0]))


class EvalShardSampler(torch.utils.data.Sampler[int]):
    """Indices ``rank, rank + W, rank + 2W, ...`` of a dataset of ``n``: an evaluation shard.

    Unlike :class:`torch.utils.data.DistributedSampler` it never pads, so summing the ranks'
    counts counts every example exactly once.
    """

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = range(rank, n, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(
    data: Any,
    *,
    batch_size: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
    name: str = "train_loader",
    evaluation: bool = False,
) -> Iterable[Any]:
    """The batches a trainer iterates for ``data`` (see :meth:`AdversarialTrainer.make_loader`).

    Raises:
        TypeError: ``data`` is none of the accepted kinds.
        ValueError: in-memory data with no examples, or a DataLoader with a custom batch
            sampler that cannot be sharded over ranks.
    """
    x_y: tuple[Tensor, Tensor] | None = None
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, Tensor) for t in data)
    ):
        x_y = (data[0], data[1])
    elif isinstance(getattr(data, "data", None), Tensor) and isinstance(
        getattr(data, "targets", None), Tensor
    ):
        x_y = (data.data, data.targets)
    if x_y is not None:
        x, y = x_y
        if x.dim() == 0 or x.shape[0] == 0:
            raise ValueError(f"{name} holds no examples (x has shape {tuple(x.shape)})")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"{name}: y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}"
            )
        return TensorBatches(
            x,
            y,
            batch_size=batch_size,
            shuffle=shuffle,
            base_seed=derive_seed(seed, "data"),
            rank=rank,
            world_size=world_size,
            pad=not evaluation,
        )
    if isinstance(data, TensorLoader):
        if data.x.shape[0] == 0:
            raise ValueError(f"{name} holds no examples (its x has shape {tuple(data.x.shape)})")
        if world_size > 1:
            return TensorBatches(
                data.x,
                data.y,
                batch_size=data.batch_size,
                shuffle=data.shuffle,
                base_seed=data.base_seed,
                drop_last=data.drop_last,
                augment=data.augment,
                rank=rank,
                world_size=world_size,
                pad=not evaluation,
            )
        return data
    if isinstance(data, torch.utils.data.DataLoader):
        if world_size > 1 and not isinstance(
            data.sampler, (torch.utils.data.DistributedSampler, EvalShardSampler)
        ):
            return cast(
                Iterable[Any], _sharded_dataloader(data, name, evaluation, seed, rank, world_size)
            )
        return data
    if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Tensor)):
        return data
    raise TypeError(
        f"{name} must be (x, y) tensors, an ImageDataset, a TensorLoader, a DataLoader or "
        f"an iterable of (x, y) batches, got {describe(data)}"
    )


def _sharded_dataloader(
    loader: Any, name: str, evaluation: bool, seed: int, rank: int, world_size: int
) -> Any:
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

    if loader.batch_size is None:
        raise ValueError(
            f"{name}: cannot shard a DataLoader with a custom batch_sampler over ranks; "
            f"give it a DistributedSampler yourself"
        )
    sampler: Sampler[Any]
    if evaluation:
        sampler = EvalShardSampler(len(loader.dataset), rank, world_size)
    else:
        sampler = DistributedSampler(
            loader.dataset,
            num_replicas=world_size,
            rank=rank,
            shuffle=isinstance(loader.sampler, RandomSampler),
            seed=seed,
            drop_last=loader.drop_last,
        )
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
    )


def is_sharded(loader: Iterable[Any]) -> bool:
    """Whether every rank iterates only its own part of ``loader`` (counts must be summed)."""
    sampler = getattr(loader, "sampler", None)
    return bool(getattr(loader, "sharded", False)) or isinstance(
        sampler, (torch.utils.data.DistributedSampler, EvalShardSampler)
    )


def unpack_batch(
    batch: Any,
    name: str,
    device: torch.device,
    *,
    num_classes: int | None = None,
    check_values: bool = False,
) -> tuple[Tensor, Tensor]:
    """Check one ``(x, y)`` batch and move it to ``device`` (labels as int64).

    With ``check_values`` the batch is also checked for NaN/Inf in ``x`` and, given
    ``num_classes``, for labels outside ``[0, num_classes)``; both cost a host sync, so the
    trainer asks for them on the first batch of each pass and where it syncs anyway.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(f"{name} must yield (x, y) batches, got {describe(batch)}")
    x, y = batch[0], batch[1]
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} batches: x must be a floating-point tensor, got {describe(x)}")
    if not isinstance(y, Tensor) or y.is_floating_point() or y.dim() != 1:
        raise TypeError(f"{name} batches: y must be a 1-D integer tensor, got {describe(y)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{name} batches: x has {x.shape[0]} examples but y has {y.shape[0]}")
    for label, t in (("x", x), ("y", y)):
        if t.device != device and "meta" in (t.device.type, device.type):
            raise ValueError(
                f"{name} batches: {label} is on {t.device} but the model is on {device}; a "
                f"meta tensor holds no data, so neither can be moved to the other"
            )
    if x.device != device:
        x = x.to(device, non_blocking=True)
    if y.device != device:
        y = y.to(device, non_blocking=True)
    if check_values:
        check_images(x, f"{name} batches: x")
        check_labels(y, y.shape[0], f"{name} batches: y", num_classes=num_classes)
    return x, y.long()


def preflight(model: nn.Module, loader: Iterable[Any], name: str, device: torch.device) -> bool:
    """Check the data and the model's output once, before the first step changes anything.

    In-memory data (a :class:`~advrobust.data.TensorLoader`, which includes
    :class:`TensorBatches`) is checked whole: finite ``x``, labels in ``[0, K)``, with ``K``
    from one forward of a single example in eval mode under ``no_grad`` (no statistics
    updated, no random number drawn). Other loaders are not iterated here (that could draw
    from the global RNG and break exact resumes): an empty one with a length is refused.

    Returns:
        Whether the first batch of the epoch still needs checking (loaders not in memory).

    Raises:
        ValueError: empty data, NaN/Inf in ``x``, labels outside ``[0, K)``.
        TypeError: the model does not return a logits tensor (e.g. a tuple).
    """
    if not isinstance(loader, TensorLoader):
        try:
            size = len(loader)  # type: ignore[arg-type]
        except TypeError:  # no len(): the epoch itself finds out
            return True
        if size == 0:
            raise ValueError(f"{name} is empty: it yields no batches")
        return True
    x_all, y_all = loader.x, loader.y
    if x_all.shape[0] == 0:
        raise ValueError(f"{name} holds no examples (x has shape {tuple(x_all.shape)})")
    x_one, _ = unpack_batch((x_all[:1], y_all[:1]), name, device)
    with torch.no_grad(), model_state_guard(model, train=False):
        out = model(x_one)
    logits = check_logits(out, 1, "model output")
    unpack_batch((x_all, y_all), name, x_all.device, num_classes=logits.shape[1], check_values=True)
    return False
