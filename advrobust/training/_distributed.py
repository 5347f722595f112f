"""Rank-sharded in-memory batches for training and evaluation under torch.distributed.

The rank, world-size, barrier and reduction helpers live in :mod:`advrobust._distributed`
(shared with the study) and are re-exported here for the trainer's existing imports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from .._distributed import all_reduce_sum as all_reduce_sum
from .._distributed import barrier as barrier
from .._distributed import broadcast_buffers as broadcast_buffers
from .._distributed import dist_info as dist_info
from .._distributed import gather_objects as gather_objects
from ..data import TensorLoader

__all__ = [
    "EvalShardSampler",
    "TensorBatches",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "dist_info",
    "gather_objects",
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
