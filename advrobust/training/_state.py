"""The trainer's checkpoint state: what is saved, how it is checked and restored, RNG states."""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .._distributed import gather_objects
from ._checkpoint import CheckpointError
from ._config import TrainConfig
from ._records import History

if TYPE_CHECKING:
    from ._trainer import AdversarialTrainer

__all__ = [
    "RESUME_FREE_FIELDS",
    "check_state_dict_fits",
    "restore_trainer_state",
    "derive_seed",
    "get_rng_state",
    "set_rng_state",
    "trainer_state",
]

# Fields that may differ between a checkpoint's config and the resuming trainer's config.
RESUME_FREE_FIELDS = frozenset({"epochs", "checkpoint_every", "checkpoint_seconds", "log_every"})


def derive_seed(seed: int, stream: str, rank: int = 0) -> int:
    """An independent 63-bit seed for one random stream of one rank."""
    words = [seed, rank, *stream.encode()]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


# ---------------------------------------------------------------------------- RNG state
def get_rng_state(generator: torch.Generator) -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    generator.set_state(state["generator"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def check_state_dict_fits(model: nn.Module, sd: Mapping[str, Any], path: str) -> None:
    """Raise before touching the model if ``sd`` does not match its keys and shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and isinstance(sd[k], Tensor) and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if wrong:
            parts.append(f"shape mismatches {wrong[:3]}")
        raise CheckpointError(f"checkpoint {path!r} does not fit this model: " + "; ".join(parts))


# ---------------------------------------------------------------------------- trainer state
def trainer_state(trainer: AdversarialTrainer, *, interrupted: bool = False) -> dict[str, Any]:
    """Everything needed to continue ``trainer`` exactly (the content of a checkpoint).

    With ``interrupted`` (a checkpoint written on Ctrl-C/SIGTERM in the middle of an epoch) the
    RNG state is the one committed with the last completed step, and the epoch's partial sums
    and batch position are included so that :func:`restore_trainer_state` continues mid-epoch.
    Under DDP the non-interrupted state gathers every rank's generator state.
    """
    rng = trainer._committed_rng if interrupted else None
    own_rng = rng if rng is not None else get_rng_state(trainer.generator)
    rng_all = [own_rng] if interrupted else gather_objects(own_rng)
    partial: dict[str, Any] | None = None
    if interrupted and trainer._batch_in_epoch > 0 and trainer._partial is not None:
        sums, steps = trainer._partial
        partial = {
            "batch": trainer._batch_in_epoch,
            "sums": sums.values.cpu().clone(),
            "steps": steps,
            "epoch_start_rng": trainer._epoch_start_rng,
            "rng": own_rng,
        }
    return {
        "config": trainer.config.to_json(indent=None),
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        "rng": rng_all,
        "eps_sampler": trainer.eps_sampler.spec(),
        "counters": {
            "epoch": trainer.epoch,
            "step": trainer.step,
            "batch_in_epoch": trainer._batch_in_epoch if partial else 0,
        },
        "partial_epoch": partial,
        "history": trainer.history.to_dict(),
        "world_size": trainer.world_size,
    }


def restore_trainer_state(trainer: AdversarialTrainer, ckpt: Mapping[str, Any], where: str) -> None:
    """Load a checkpoint's content into ``trainer``, all of it or (on any error) nothing.

    Raises:
        CheckpointError: entries missing, an invalid config, or state that does not fit the
            model, optimizer, scheduler or scaler; the trainer is left unchanged.
        ValueError: the checkpoint was written with a different config (fields other than
            :data:`RESUME_FREE_FIELDS`).
    """
    required = ("config", "model", "optimizer", "rng", "counters", "history")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {where!r} lacks entries {missing}")
    try:
        saved = TrainConfig.from_json(ckpt["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {where!r} holds an invalid config: {exc}") from exc
    mine, theirs = trainer.config.to_dict(), saved.to_dict()
    diff = sorted(k for k in mine if mine[k] != theirs[k] and k not in RESUME_FREE_FIELDS)
    if diff:
        raise ValueError(
            f"checkpoint {where!r} was written with a different config: fields {diff} differ "
            f"(checkpoint: {[theirs[k] for k in diff]}, trainer: {[mine[k] for k in diff]})"
        )
    check_state_dict_fits(trainer.model, ckpt["model"], where)
    if (ckpt.get("scheduler") is None) != (trainer.scheduler is None):
        raise CheckpointError(
            f"checkpoint {where!r} and this trainer disagree on having an LR scheduler"
        )
    # Load everything or nothing: an optimizer/scheduler state that does not fit (other
    # parameter groups, say) must not leave the model already overwritten.
    model, optimizer, scheduler, scaler = (
        trainer.model,
        trainer.optimizer,
        trainer.scheduler,
        trainer.scaler,
    )
    backup = (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(optimizer.state_dict()),
        scheduler.state_dict() if scheduler is not None else None,
        scaler.state_dict() if scaler is not None else None,
        get_rng_state(trainer.generator),
    )
    try:
        rng_all = ckpt["rng"]
        rng = rng_all[trainer.rank] if trainer.rank < len(rng_all) else rng_all[0]
        counters = ckpt["counters"]
        epoch, step = int(counters["epoch"]), int(counters["step"])
        batch_in_epoch = int(counters.get("batch_in_epoch", 0))
        history = History.from_dict(ckpt["history"])
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler") is not None:
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(rng, trainer.generator)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        model.load_state_dict(backup[0])
        optimizer.load_state_dict(backup[1])
        if scheduler is not None and backup[2] is not None:
            scheduler.load_state_dict(backup[2])
        if scaler is not None and backup[3] is not None:
            scaler.load_state_dict(backup[3])
        set_rng_state(backup[4], trainer.generator)
        raise CheckpointError(
            f"checkpoint {where!r} does not fit this trainer ({type(exc).__name__}: "
            f"{str(exc)[:200]}); the trainer was left unchanged"
        ) from exc
    trainer.epoch, trainer.step = epoch, step
    trainer.history = history
    trainer._resume_partial = ckpt.get("partial_epoch")
    trainer._batch_in_epoch = batch_in_epoch
