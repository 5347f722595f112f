"""torch.distributed helpers shared by every layer: rank, world size, barrier, reductions.

Every helper is a no-op (or returns the single-process answer) when no process group is
initialised, so code written for ``torchrun`` runs unchanged in one process.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_reduce_sum",
    "barrier",
    "broadcast_buffers",
    "dist_info",
    "gather_objects",
    "is_main",
    "local_device",
    "rank",
    "world_size",
]


def dist_info() -> tuple[bool, int, int]:
    """``(active, rank, world_size)``; active only when a process group is initialised.

    Example:
        >>> dist_info()
        (False, 0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist_info()[1]


def world_size() -> int:
    """The number of ranks (1 without a process group)."""
    return dist_info()[2]


def is_main() -> bool:
    """Whether this process is rank 0 (the one that writes shared files)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without a process group or with one rank)."""
    active, _, world = dist_info()
    if active and world > 1:
        dist.barrier()


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over all ranks in place and return it (no-op without a process group)."""
    active, _, world = dist_info()
    if active and world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


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


def local_device(device: torch.device) -> torch.device:
    """Under several ranks, a bare ``cuda`` becomes ``cuda:LOCAL_RANK``; otherwise unchanged.

    Example:
        >>> local_device(torch.device("cpu"))
        device(type='cpu')
    """
    index: int | None = device.index  # None for a bare "cuda" (the stubs say int)
    if device.type == "cuda" and index is None and world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
