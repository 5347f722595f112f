"""torch.distributed helpers: rank/world size, reductions, and rank-sharded in-memory batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "TensorBatches",
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "dist_info",
    "gather_objects",
]

Augment = Callable[..., Tensor]


def dist_info() -> tuple[bool, int, int]:
    """``(active, rank, world_size)``; active only when a process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over all ranks in place (no-op without a process group)."""
    active, _, world = dist_info()
    if active and world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    active, _, world = dist_info()
    if active and world > 1:
        dist.barrier()


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward pass, so after the last step of an
    epoch every rank holds statistics updated from its own shard; this makes them agree
    before evaluation and checkpointing.
    """
    active, _, world = dist_info()
    if active and world > 1:
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` as a list indexed by rank (a list of one without a process group)."""
    active, _, world = dist_info()
    if not active or world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


class TensorBatches:
    """Minibatches of in-memory tensors, shuffled per epoch, sharded over ranks.

    Shuffling follows :class:`advrobust.data.TensorLoader`: epoch ``e`` shuffles (and augments)
    with a generator seeded by ``base_seed + e``, so the order depends only on the base seed and
    the epoch number (:meth:`set_epoch`), which makes resuming exact. With ``world_size > 1``
    the permutation is padded by wrapping around to a multiple of ``world_size`` (as
    :class:`torch.utils.data.DistributedSampler` does) and rank ``r`` takes the positions
    ``r, r + W, r + 2W, ...``: batch ``j`` of all ranks together is then exactly batch ``j`` of a
    single process with batch size ``W * batch_size`` on the same permutation.
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
    ) -> None:
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(f"x and y must be tensors, got {type(x)} and {type(y)}")
        if x.dim() < 1 or y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x (N, ...) and y (N,) must have the same number of examples, got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        self.x = x if device is None else x.to(device)
        self.y = y if device is None else y.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.base_seed = base_seed
        self.drop_last = drop_last
        self.augment = augment
        self.rank = rank
        self.world_size = world_size
        self.sharded = world_size > 1
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch number that seeds the next pass."""
        self.epoch = epoch

    def _per_rank(self) -> int:
        n = int(self.x.shape[0])
        return -(-n // self.world_size) if self.world_size > 1 else n

    def __len__(self) -> int:
        per_rank = self._per_rank()
        if self.drop_last:
            return per_rank // self.batch_size
        return -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        gen = torch.Generator().manual_seed(self.base_seed + self.epoch)
        n = int(self.x.shape[0])
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        if self.world_size > 1 and n:
            pad = (-n) % self.world_size
            if pad:
                order = torch.cat([order, order[:pad]])
            order = order[self.rank :: self.world_size]
        order = order.to(self.x.device, non_blocking=True)
        for j in range(len(self)):
            idx = order[j * self.batch_size : (j + 1) * self.batch_size]
            xb = self.x.index_select(0, idx)
            yb = self.y.index_select(0, idx)
            if self.augment is not None:
                xb = self.augment(xb, generator=gen)
            yield xb, yb
        self.epoch += 1
