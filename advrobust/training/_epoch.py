"""One training epoch of :class:`AdversarialTrainer`: steps, figures, the epoch's commit."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .._distributed import all_reduce_sum, broadcast_buffers
from ..attacks import Attack
from ._data import unpack_batch
from ._records import BatchInfo, Callback, EpochStats
from ._state import get_rng_state, set_rng_state
from ._step import StepFigures

if TYPE_CHECKING:
    from ._trainer import AdversarialTrainer

__all__ = ["run_epoch"]


def run_epoch(
    trainer: AdversarialTrainer,
    loader: Iterable[Any],
    val_loader: Iterable[Any] | None,
    val_attack: Attack | None,
    callbacks: Sequence[Callback],
    bar: Any,
) -> EpochStats:
    """One epoch of :meth:`AdversarialTrainer.fit`: the steps, the epoch's figures, validation.

    Continues an interrupted epoch from ``trainer._resume_partial`` (skipping the batches it
    already trained, restoring its sums and RNG state). Every step runs inside
    ``trainer._interrupts.critical()``, so SIGINT/SIGTERM act only between committed steps.
    """
    start = time.perf_counter()
    skip = 0
    resume = trainer._resume_partial
    if resume is not None:  # continue an interrupted epoch
        skip = int(resume["batch"])
        set_rng_state(resume["epoch_start_rng"], trainer.generator)
    set_epoch = getattr(loader, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(trainer.epoch)
    sampler: Any = getattr(loader, "sampler", None)
    if callable(getattr(sampler, "set_epoch", None)):
        sampler.set_epoch(trainer.epoch)
    trainer._epoch_start_rng = get_rng_state(trainer.generator)
    sums = StepFigures.zeros(trainer.device, trainer._acc_dtype)
    steps = 0
    if bar is not None:
        bar.reset()
        bar.set_description(f"epoch {trainer.epoch + 1}")
    iterator = iter(loader)
    if resume is not None:
        for _ in range(skip):
            next(iterator)
        sums = StepFigures(resume["sums"].to(trainer.device, trainer._acc_dtype))
        steps = int(resume["steps"])
        set_rng_state(resume["rng"], trainer.generator)
        trainer._resume_partial = None
        if bar is not None:
            bar.update(skip)
    if not trainer.model.training:  # keep the flags of deliberately frozen children (BN)
        trainer.model.train()
    trainer._committed_rng = get_rng_state(trainer.generator)
    batch_index = skip
    bs = getattr(loader, "batch_size", None)
    nominal: int | None = bs if isinstance(bs, int) and not isinstance(bs, bool) else None
    for batch in iterator:
        x, y = unpack_batch(
            batch, "train_loader", trainer.device, check_values=trainer._check_first_batch
        )
        trainer._check_first_batch = False
        if nominal is None:
            nominal = x.shape[0]
        # Ctrl-C and SIGTERM wait until the step and its counters are committed together.
        with trainer._interrupts.critical():
            out = trainer.train_step(x, y, nominal_batch=nominal)
            sums.add_(out.figures)
            steps += 1
            trainer.step += 1
            batch_index += 1
            trainer._batch_in_epoch = batch_index
            trainer._partial = (sums, steps)
            trainer._committed_rng = get_rng_state(trainer.generator)
        if callbacks:
            info = BatchInfo(
                epoch=trainer.epoch,
                batch=batch_index - 1,
                step=trainer.step,
                loss=out.loss,
                x=out.x,
                y=out.y,
                num_adv=out.num_adv,
                replaced=out.replaced,
            )
            for cb in callbacks:
                cb.on_batch_end(trainer, info)
        if trainer.step % trainer.config.log_every == 0:
            trainer._check_finite()
            if bar is not None:
                bar.set_postfix(sums.running(), refresh=False)
        if bar is not None:
            bar.update(1)
    if batch_index == 0:
        raise ValueError(
            f"train_loader yielded no batches in epoch {trainer.epoch + 1}; nothing was trained"
        )
    trainer._check_finite()
    if trainer.distributed:
        broadcast_buffers(trainer.model)
    lr = float(trainer.optimizer.param_groups[0]["lr"])
    total = StepFigures(all_reduce_sum(sums.values.clone())).totals()
    stats = EpochStats(
        epoch=trainer.epoch + 1,
        val_clean_acc=None,
        val_adv_acc=None,
        lr=lr,
        steps=steps,
        seconds=time.perf_counter() - start,
        **StepFigures.summary(total),
    )
    # The epoch's end (scheduler, counters, history) is committed as one piece, so that a
    # Ctrl-C during validation leaves a consistent state (the epoch without val figures).
    with trainer._interrupts.critical():
        if trainer.scheduler is not None:
            trainer.scheduler.step()
        trainer.epoch += 1
        trainer._batch_in_epoch = 0
        trainer._partial = None
        trainer.history.append(stats)
    if val_loader is not None:
        val_clean, val_adv = trainer.evaluate(val_loader, attack=val_attack)
        stats = dataclasses.replace(
            stats,
            val_clean_acc=val_clean,
            val_adv_acc=val_adv,
            seconds=time.perf_counter() - start,
        )
        trainer.history.epochs[-1] = stats
    if bar is not None:
        bar.set_postfix(sums.running(), refresh=True)
        bar.write(stats.summary_line(), file=sys.stderr)
    return stats
