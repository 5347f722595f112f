"""``AdversarialTrainer``: Kurakin's algorithm 1, PGD adversarial training and clean training."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .._validate import describe, model_state_guard
from ..attacks import Attack
from ._checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ._config import TrainConfig, _thaw
from ._distributed import (
    EvalShardSampler,
    TensorBatches,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    dist_info,
    gather_objects,
)
from ._eps import EpsSampler
from ._loss import LossFn, mixed_batch_loss
from ._records import BatchInfo as BatchInfo
from ._records import Callback as Callback
from ._records import EpochStats as EpochStats
from ._records import History as History
from ._select import split_indices
from ._state import (
    DeferredInterrupt,
    check_state_dict_fits,
    derive_seed,
    get_rng_state,
    set_rng_state,
)

__all__ = [
    "AdversarialTrainer",
    "BatchInfo",
    "Callback",
    "EpochStats",
    "History",
    "NonFiniteLossError",
]

Regularizer = Callable[[nn.Module, Tensor, Tensor], Tensor]
_CKPT_NAME = "last.pt"
# Fields that may differ between a checkpoint's config and the resuming trainer's config.
_RESUME_FREE_FIELDS = frozenset({"epochs", "checkpoint_every", "log_every"})


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stopped (see the message for the step)."""


# ---------------------------------------------------------------------------- trainer
class AdversarialTrainer:
    """Adversarial training by Kurakin's algorithm 1, PGD training as k = m, clean as k = 0.

    Kurakin et al., "Adversarial Machine Learning at Scale" (2017), sec. 3; PGD adversarial
    training (Madry et al. 2018) is the ``k = m``, ``lambda = 1`` case.

    For every minibatch of ``m`` examples: ``k`` examples are chosen (:func:`select_replaced`),
    an epsilon is drawn for each of them from the eps sampler, the attack makes their
    adversarial versions from the *current* weights with the model in eval mode (the attack's
    state guard: BatchNorm running statistics and ``.grad`` are untouched), the ``k`` clean
    examples are replaced, and one optimisation step is taken in train mode on the mixed batch
    with :func:`mixed_batch_loss` (``lambda = adv_weight``). The first ``delay`` steps use
    clean batches only.

    Randomness: the data order is a function of ``(seed, epoch)`` (see
    :meth:`make_loader`); selection, epsilons and the attack's randomness come from
    :attr:`generator`, seeded from ``config.seed`` (and the rank). Checkpoints save these states
    and the global torch/CUDA/numpy/Python RNGs, so :meth:`resume` continues exactly.

    Distributed: when ``torch.distributed`` is initialised (e.g. under ``torchrun``) the model
    is wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, in-memory data is
    sharded over ranks, adversarial examples are made on the underlying module, reported
    figures are all-reduced and only rank 0 writes checkpoints.

    Args:
        model: the classifier to train (an ``nn.Module`` returning logits; a DDP-wrapped
            model is accepted and unwrapped).
        config: the :class:`TrainConfig` (Kurakin's defaults if None).
        optimizer: an optimizer over the model's parameters; built from ``config`` if None.
        scheduler: an LR scheduler stepped once per epoch; built from ``config.scheduler``
            if None.
        attack: the attack that makes training examples; it must attack ``model`` itself
            (``attack.model is model``). Built from ``config.attack`` if None.
        checkpoint_dir: directory for ``last.pt`` (None: no automatic checkpoints).
        device: device to train on; the model is moved there (default: the device of the
            model's parameters).
        loss_fn: per-example loss ``(logits, y) -> (n,)`` (cross-entropy by default).
        regularizer: optional ``regularizer(model, x, y) -> scalar`` added to the loss.

    Raises:
        TypeError: wrong argument types.
        ValueError: an attack or optimizer that does not belong to ``model``, ``amp="fp16"``
            without CUDA.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from advrobust.training import AdversarialTrainer, TrainConfig
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(16, 1, 2, 2), torch.randint(0, 3, (16,))
        >>> cfg = TrainConfig.kurakin(epochs=1, batch_size=8, lr=0.1)
        >>> history = AdversarialTrainer(model, cfg).fit((x, y), progress=False)
        >>> len(history)
        1
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig | None = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        attack: Attack | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        device: torch.device | str | None = None,
        loss_fn: LossFn | None = None,
        regularizer: Regularizer | None = None,
    ) -> None:
        ddp_given: DistributedDataParallel | None = None
        if isinstance(model, DistributedDataParallel):
            ddp_given, model = model, model.module
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
        if config is None:
            config = TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {describe(config)}")
        self.config = config
        params = list(model.parameters())
        if not params:
            raise ValueError("model has no parameters to train")
        if device is None:
            self.device = params[0].device
        else:
            self.device = torch.device(device)
            if any(p.device != self.device for p in params):
                model.to(self.device)
        if config.amp == "fp16" and self.device.type != "cuda":
            raise ValueError(
                f"amp='fp16' needs a CUDA device (training on {self.device}); use amp='bf16' "
                f"on the CPU or amp='none'"
            )
        self.model = model
        self.distributed, self.rank, self.world_size = dist_info()
        self._net: nn.Module = model
        if self.distributed:
            if ddp_given is not None:
                self._net = ddp_given
            else:
                ids = [self.device.index] if self.device.type == "cuda" else None
                self._net = DistributedDataParallel(model, device_ids=ids)
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {describe(loss_fn)}")
        if regularizer is not None and not callable(regularizer):
            raise TypeError(f"regularizer must be callable, got {describe(regularizer)}")
        self.loss_fn = loss_fn
        self.regularizer = regularizer

        #: The attack that makes the training examples (it attacks :attr:`model`).
        self.attack: Attack = (
            self._check_attack(attack, "attack")
            if attack is not None
            else self._build_attack(_thaw(config.attack))
        )
        self.eps_sampler: EpsSampler = config.eps_sampler()

        if optimizer is None:
            optimizer = self._build_optimizer()
        elif not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {describe(optimizer)}")
        else:
            own = {id(p) for p in params}
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if id(p) not in own:
                        raise ValueError(
                            "optimizer holds parameters that are not the model's; build it "
                            "from model.parameters()"
                        )
        self.optimizer = optimizer
        if scheduler is None:
            scheduler = self._build_scheduler()
        self.scheduler = scheduler
        self.scaler: torch.amp.GradScaler | None = (
            torch.amp.GradScaler("cuda") if config.amp == "fp16" else None
        )
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None

        gen_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        #: Source of selection, eps and attack randomness (saved in checkpoints).
        self.generator = torch.Generator(device=gen_device)
        self.generator.manual_seed(derive_seed(config.seed, "train", self.rank))
        self.epoch = 0
        self.step = 0
        self.history = History()
        self.stop_training = False
        self._batch_in_epoch = 0
        self._partial: tuple[Tensor, int] | None = None
        self._epoch_start_rng: dict[str, Any] | None = None
        self._committed_rng: dict[str, Any] | None = None
        self._resume_partial: dict[str, Any] | None = None
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self._interrupts = DeferredInterrupt()

    # ------------------------------------------------------------------ construction helpers
    def _check_attack(self, attack: object, name: str) -> Attack:
        if not isinstance(attack, Attack):
            raise TypeError(f"{name} must be an advrobust Attack, got {describe(attack)}")
        if attack.model is not self.model:
            raise ValueError(
                f"{name} attacks a different model ({type(attack.model).__name__} at "
                f"{id(attack.model):#x}) than the one being trained ({type(self.model).__name__} "
                f"at {id(self.model):#x}); use {name}.with_model(model)"
            )
        return attack

    def _build_attack(self, spec: dict[str, Any]) -> Attack:
        from .. import attacks

        name = spec.pop("name")
        cls = getattr(attacks, name, None)
        if not (isinstance(cls, type) and issubclass(cls, Attack)):
            raise ValueError(f"config.attack names an unknown attack {name!r}")
        built: Attack = cls(self.model, **spec)
        return built

    def _build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(
                params,
                lr=cfg.lr,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                nesterov=cfg.nesterov,
            )
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _build_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        spec = self.config.scheduler
        if spec is None:
            return None
        sched = torch.optim.lr_scheduler
        name = spec["name"]
        if name == "cosine":
            return sched.CosineAnnealingLR(
                self.optimizer, T_max=self.config.epochs, eta_min=float(spec.get("eta_min", 0.0))
            )
        if name == "step":
            return sched.StepLR(
                self.optimizer,
                step_size=int(spec["step_size"]),
                gamma=float(spec.get("gamma", 0.1)),
            )
        return sched.MultiStepLR(
            self.optimizer,
            milestones=[int(m) for m in spec["milestones"]],
            gamma=float(spec.get("gamma", 0.1)),
        )

    # ------------------------------------------------------------------ data
    def make_loader(
        self,
        data: Any,
        *,
        shuffle: bool = True,
        name: str = "train_loader",
        evaluation: bool = False,
    ) -> Iterable[Any]:
        """The batches the trainer iterates for ``data``.

        ``evaluation=True`` (validation data, :meth:`evaluate`) shards in-memory data and
        DataLoaders over ranks under DDP *without* padding, so that the all-reduced counts
        count every example exactly once; training shards are padded to the same number of
        batches on every rank, as DDP needs.

        * ``(x, y)`` tensors or an object with ``data``/``targets`` tensors (an
          ``ImageDataset``): in-memory batches of ``config.batch_size``, shuffled per epoch with
          a seed derived from ``config.seed`` and the epoch, sharded over ranks under DDP.
        * an :class:`advrobust.data.TensorLoader`: used as is (the trainer calls ``set_epoch``
          every epoch); under DDP it is re-sharded over ranks with its own seed, batch size,
          augmentation and ``drop_last``.
        * a :class:`torch.utils.data.DataLoader`: used as is; under DDP one whose sampler is
          not a ``DistributedSampler`` is rebuilt with one (``set_epoch`` every epoch).
        * any other iterable of ``(x, y)`` batches: used as is (``set_epoch`` is called if it
          exists).
        """
        from ..data import TensorLoader

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
            return TensorBatches(
                x_y[0],
                x_y[1],
                batch_size=self.config.batch_size,
                shuffle=shuffle,
                base_seed=derive_seed(self.config.seed, "data"),
                rank=self.rank,
                world_size=self.world_size,
                pad=not evaluation,
            )
        if isinstance(data, TensorLoader):
            if self.world_size > 1:
                return TensorBatches(
                    data.x,
                    data.y,
                    batch_size=data.batch_size,
                    shuffle=data.shuffle,
                    base_seed=data.base_seed,
                    drop_last=data.drop_last,
                    augment=data.augment,
                    rank=self.rank,
                    world_size=self.world_size,
                    pad=not evaluation,
                )
            return data
        if isinstance(data, torch.utils.data.DataLoader):
            if self.world_size > 1 and not isinstance(
                data.sampler, (torch.utils.data.DistributedSampler, EvalShardSampler)
            ):
                return cast(Iterable[Any], self._distributed_dataloader(data, name, evaluation))
            return data
        if isinstance(data, Iterable) and not isinstance(data, (str, bytes, Tensor)):
            return data
        raise TypeError(
            f"{name} must be (x, y) tensors, an ImageDataset, a TensorLoader, a DataLoader or "
            f"an iterable of (x, y) batches, got {describe(data)}"
        )

    def _distributed_dataloader(self, loader: Any, name: str, evaluation: bool) -> Any:
        from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler

        if loader.batch_size is None:
            raise ValueError(
                f"{name}: cannot shard a DataLoader with a custom batch_sampler over ranks; "
                f"give it a DistributedSampler yourself"
            )
        sampler: Sampler[Any]
        if evaluation:
            sampler = EvalShardSampler(len(loader.dataset), self.rank, self.world_size)
        else:
            sampler = DistributedSampler(
                loader.dataset,
                num_replicas=self.world_size,
                rank=self.rank,
                shuffle=isinstance(loader.sampler, RandomSampler),
                seed=self.config.seed,
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

    def _unpack(self, batch: Any, name: str) -> tuple[Tensor, Tensor]:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError(f"{name} must yield (x, y) batches, got {describe(batch)}")
        x, y = batch[0], batch[1]
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} batches: x must be a floating-point tensor, got {describe(x)}")
        if not isinstance(y, Tensor) or y.is_floating_point() or y.dim() != 1:
            raise TypeError(f"{name} batches: y must be a 1-D integer tensor, got {describe(y)}")
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{name} batches: x has {x.shape[0]} examples but y has {y.shape[0]}")
        if x.device != self.device:
            x = x.to(self.device, non_blocking=True)
        if y.device != self.device:
            y = y.to(self.device, non_blocking=True)
        return x, y.long()

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> Any:
        amp = self.config.amp
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=amp != "none")

    def train_step(
        self, x: Tensor, y: Tensor, *, nominal_batch: int | None = None
    ) -> tuple[Tensor, Tensor, Tensor, int, Tensor, Tensor]:
        """One step of algorithm 1 on a minibatch ``(x, y)``.

        With an int ``config.k`` and a batch smaller than ``nominal_batch`` (the last batch of
        an epoch), ``k`` is scaled to the same share: ``round(k * m / nominal_batch)``.

        Returns:
            ``(loss, x_mixed, y_mixed, k, replaced, figures)``: the detached loss, the batch
            fed to the model (``k`` adversarial rows first) and its labels, the indices of the
            replaced examples in ``x``, and ``figures``, a device tensor
            ``[loss * m, m, clean correct, m - k, adversarial correct, k]``.
        """
        cfg = self.config
        m = x.shape[0]
        if self.step < cfg.delay:
            k = 0
        elif cfg.k is not None and nominal_batch is not None and m < nominal_batch:
            k = round(cfg.num_replaced(nominal_batch) * m / nominal_batch)
        else:
            k = cfg.num_replaced(m)
        replaced, kept = split_indices(
            m, k, cfg.selection, generator=self.generator, device=x.device
        )
        y_clean = y.index_select(0, kept) if k else y
        if k:
            y_adv = y.index_select(0, replaced)
            x_sel = x.index_select(0, replaced)
            eps = self.eps_sampler(k, device=x.device, dtype=x.dtype, generator=self.generator)
            labels = y_adv if cfg.attack_labels == "true" else None
            x_adv = self.attack(x_sel, labels, eps=eps, generator=self.generator).detach()
            x_in = torch.cat([x_adv, x.index_select(0, kept)]) if k < m else x_adv
            y_in = torch.cat([y_adv, y_clean]) if k < m else y_adv
        else:
            y_adv = y[:0]
            x_in, y_in = x, y
        with self._autocast():
            logits = self._net(x_in)
        logits = logits.float()
        logits_adv, logits_clean = logits[:k], logits[k:]
        loss = mixed_batch_loss(
            logits_clean, y_clean, logits_adv, y_adv, cfg.adv_weight, loss_fn=self.loss_fn
        )
        if self.regularizer is not None:
            loss = loss + self.regularizer(self.model, x_in, y_in)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            torch.autograd.backward(self.scaler.scale(loss))
            if cfg.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            torch.autograd.backward(loss)
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
        with torch.no_grad():
            pred = logits.argmax(dim=1)
            hit = (pred == y_in).to(torch.float64 if self.device.type != "mps" else torch.float32)
            loss_d = loss.detach()

            def count(v: int) -> Tensor:  # a device fill: no host-to-device copy, no sync
                return torch.full((), float(v), dtype=hit.dtype, device=hit.device)

            figures = torch.stack(
                [
                    loss_d.to(hit.dtype) * m,
                    count(m),
                    hit[k:].sum(),
                    count(m - k),
                    hit[:k].sum(),
                    count(k),
                ]
            )
            bad = ~torch.isfinite(loss_d)
            self._first_bad = torch.where(bad & (self._first_bad < 0), self.step, self._first_bad)
        return loss_d, x_in, y_in, k, replaced, figures

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        train_loader: Any,
        epochs: int | None = None,
        val_loader: Any = None,
        *,
        val_attack: Attack | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
    ) -> History:
        """Train until ``epochs`` epochs are complete in total and return the history.

        ``epochs`` counts every epoch of this trainer, including those restored by
        :meth:`resume`: after resuming from epoch 2, ``fit(data, epochs=4)`` trains epochs 3
        and 4. A checkpoint ``last.pt`` is written to ``checkpoint_dir`` every
        ``config.checkpoint_every`` epochs and at the end.

        Args:
            train_loader: training data (see :meth:`make_loader`).
            epochs: total number of epochs (``config.epochs`` if None).
            val_loader: optional validation data, evaluated after every epoch.
            val_attack: attack for the validation adversarial accuracy (must attack the
                trained model); default: the training attack at its construction eps.
            callbacks: :class:`Callback` objects (batch and epoch ends).
            progress: show a tqdm bar with the running loss and accuracies (rank 0 only).

        Returns:
            The :class:`History` of all epochs so far.

        Raises:
            NonFiniteLossError: the loss became NaN/Inf; the message names the step. No
                checkpoint is written after that step, so ``last.pt`` stays the last good one
                (the in-memory weights are not usable).
            KeyboardInterrupt: re-raised after a checkpoint of the last completed step was
                written (when ``checkpoint_dir`` is set); :meth:`resume` continues from there.
            ValueError: ``k`` larger than a batch, and other bad input.
        """
        total = self.config.epochs if epochs is None else epochs
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"epochs must be an int >= 1, got {describe(epochs)}")
        if val_attack is not None:
            val_attack = self._check_attack(val_attack, "val_attack")
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {describe(cb)}")
        loader = self.make_loader(train_loader, shuffle=True, name="train_loader")
        val_batches = (
            self.make_loader(val_loader, shuffle=False, name="val_loader", evaluation=True)
            if val_loader is not None
            else None
        )
        self.stop_training = False
        bar = self._progress_bar(loader, total, progress)
        written_epoch = self.epoch
        self._interrupts = DeferredInterrupt()
        try:
            self._interrupts.__enter__()
            while self.epoch < total and not self.stop_training:
                stats = self._run_epoch(loader, val_batches, val_attack, callbacks, bar)
                for cb in callbacks:
                    cb.on_epoch_end(self, stats)
                every = self.config.checkpoint_every
                if self.checkpoint_dir is not None and every and self.epoch % every == 0:
                    self.save_checkpoint()
                    written_epoch = self.epoch
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
                bar = None
            if self.checkpoint_dir is not None and self._committed_rng is not None:
                self._check_finite()
                self.save_checkpoint(_interrupted=True)
            raise
        finally:
            self._interrupts.__exit__()
            if bar is not None:
                bar.close()
        if self.checkpoint_dir is not None and written_epoch != self.epoch:
            self.save_checkpoint()
        return self.history

    def _progress_bar(self, loader: Iterable[Any], total: int, progress: bool) -> Any:
        if not progress or self.rank != 0:
            return None
        from tqdm import tqdm

        try:
            per_epoch: int | None = len(loader)  # type: ignore[arg-type]
        except TypeError:
            per_epoch = None
        # disable=None: no bar when stderr is not a terminal (a log file, a pipe)
        return tqdm(total=per_epoch, leave=False, dynamic_ncols=True, unit="batch", disable=None)

    def _check_finite(self) -> None:
        bad = int(self._first_bad)
        if bad >= 0:
            where = (
                f" ({self.checkpoint_dir / _CKPT_NAME} from epoch {self._last_ckpt_epoch} is the "
                f"last good checkpoint; it was left untouched)"
                if self.checkpoint_dir is not None and self._last_ckpt_epoch is not None
                else ""
            )
            raise NonFiniteLossError(
                f"the training loss became non-finite (NaN or Inf) at step {bad + 1} "
                f"(epoch {self.epoch + 1}); training stopped and the weights in memory are not "
                f"usable{where}. Lower the learning rate, enable grad_clip, or check the data."
            )

    _last_ckpt_epoch: int | None = None

    def _run_epoch(
        self,
        loader: Iterable[Any],
        val_loader: Iterable[Any] | None,
        val_attack: Attack | None,
        callbacks: Sequence[Callback],
        bar: Any,
    ) -> EpochStats:
        start = time.perf_counter()
        skip = 0
        if self._resume_partial is not None:  # continue an interrupted epoch
            skip = int(self._resume_partial["batch"])
            set_rng_state(self._resume_partial["epoch_start_rng"], self.generator)
        set_epoch = getattr(loader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.epoch)
        sampler: Any = getattr(loader, "sampler", None)
        if callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(self.epoch)
        self._epoch_start_rng = get_rng_state(self.generator)
        acc_dtype = torch.float64 if self.device.type != "mps" else torch.float32
        sums = torch.zeros(6, dtype=acc_dtype, device=self.device)
        steps = 0
        if bar is not None:
            bar.reset()
            bar.set_description(f"epoch {self.epoch + 1}")
        iterator = iter(loader)
        if self._resume_partial is not None:
            for _ in range(skip):
                next(iterator)
            sums = self._resume_partial["sums"].to(self.device, acc_dtype)
            steps = int(self._resume_partial["steps"])
            set_rng_state(self._resume_partial["rng"], self.generator)
            self._resume_partial = None
            if bar is not None:
                bar.update(skip)
        if not self.model.training:  # keep the flags of deliberately frozen children (BN)
            self.model.train()
        self._committed_rng = get_rng_state(self.generator)
        batch_index = skip
        bs = getattr(loader, "batch_size", None)
        nominal: int | None = bs if isinstance(bs, int) and not isinstance(bs, bool) else None
        for batch in iterator:
            x, y = self._unpack(batch, "train_loader")
            if nominal is None:
                nominal = x.shape[0]
            # Ctrl-C waits until the step and its counters are committed together.
            with self._interrupts.critical():
                loss, x_in, y_in, k, replaced, figures = self.train_step(
                    x, y, nominal_batch=nominal
                )
                sums += figures
                steps += 1
                self.step += 1
                batch_index += 1
                self._batch_in_epoch = batch_index
                self._partial = (sums, steps)
                self._committed_rng = get_rng_state(self.generator)
            if callbacks:
                info = BatchInfo(
                    epoch=self.epoch,
                    batch=batch_index - 1,
                    step=self.step,
                    loss=loss,
                    x=x_in,
                    y=y_in,
                    num_adv=k,
                    replaced=replaced,
                )
                for cb in callbacks:
                    cb.on_batch_end(self, info)
            if self.step % self.config.log_every == 0:
                self._check_finite()
                if bar is not None:
                    bar.set_postfix(self._running(sums), refresh=False)
            if bar is not None:
                bar.update(1)
        self._check_finite()
        if self.distributed:
            broadcast_buffers(self.model)
        lr = float(self.optimizer.param_groups[0]["lr"])
        total = all_reduce_sum(sums.clone()).tolist()
        loss_sum, n, clean_hit, n_clean, adv_hit, n_adv = total
        stats = EpochStats(
            epoch=self.epoch + 1,
            loss=loss_sum / n if n else math.nan,
            train_clean_acc=clean_hit / n_clean if n_clean else None,
            train_adv_acc=adv_hit / n_adv if n_adv else None,
            val_clean_acc=None,
            val_adv_acc=None,
            lr=lr,
            steps=steps,
            examples=int(n),
            adv_examples=int(n_adv),
            seconds=time.perf_counter() - start,
        )
        # The epoch's end (scheduler, counters, history) is committed as one piece, so that a
        # Ctrl-C during validation leaves a consistent state (the epoch without val figures).
        with self._interrupts.critical():
            if self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            self._batch_in_epoch = 0
            self._partial = None
            self.history.append(stats)
        if val_loader is not None:
            val_clean, val_adv = self.evaluate(val_loader, attack=val_attack)
            stats = dataclasses.replace(
                stats,
                val_clean_acc=val_clean,
                val_adv_acc=val_adv,
                seconds=time.perf_counter() - start,
            )
            self.history.epochs[-1] = stats
        if bar is not None:
            bar.set_postfix(self._running(sums), refresh=True)
            bar.write(self._summary(stats), file=sys.stderr)
        return stats

    def _summary(self, s: EpochStats) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.1f}%"

        text = (
            f"epoch {s.epoch}: loss {s.loss:.4f}, train clean {pct(s.train_clean_acc)}, "
            f"adv {pct(s.train_adv_acc)}"
        )
        if s.val_clean_acc is not None:
            text += f" | val clean {pct(s.val_clean_acc)}, adv {pct(s.val_adv_acc)}"
        return text + f" ({s.seconds:.1f} s)"

    @staticmethod
    def _running(sums: Tensor) -> dict[str, str]:
        loss_sum, n, clean_hit, n_clean, adv_hit, n_adv = sums.tolist()
        out = {"loss": f"{loss_sum / max(n, 1):.4f}"}
        if n_clean:
            out["clean"] = f"{clean_hit / n_clean:.3f}"
        if n_adv:
            out["adv"] = f"{adv_hit / n_adv:.3f}"
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, data: Any, *, attack: Attack | None = None) -> tuple[float, float]:
        """Clean and adversarial accuracy of the model on ``data`` (eval mode).

        Adversarial examples use ``attack`` (default: the training attack at its
        construction eps) with the true labels and a generator seeded from
        ``(config.seed, epoch)``, so evaluation never disturbs the training random stream.
        Under DDP, in-memory data and DataLoaders are evaluated in unpadded shards (a
        DataLoader with a ``DistributedSampler`` in its own shards) and the counts all-reduced,
        so every rank returns the figures of the whole set.

        Args:
            data: evaluation data (see :meth:`make_loader`).
            attack: an attack on the trained model, or None.

        Returns:
            ``(clean_accuracy, adversarial_accuracy)``.
        """
        atk = self.attack if attack is None else self._check_attack(attack, "attack")
        loader = (
            data
            if isinstance(data, TensorBatches)
            else self.make_loader(data, shuffle=False, name="data", evaluation=True)
        )
        gen = torch.Generator(device=self.generator.device)
        gen.manual_seed(derive_seed(self.config.seed, f"eval{self.epoch}", self.rank))
        counts = torch.zeros(
            3,
            dtype=torch.float64 if self.device.type != "mps" else torch.float32,
            device=self.device,
        )
        with model_state_guard(self.model, train=False):
            for batch in loader:
                x, y = self._unpack(batch, "data")
                with torch.no_grad():
                    clean = self.model(x).argmax(dim=1) == y
                x_adv = atk(x, y, generator=gen)
                with torch.no_grad():
                    adv = self.model(x_adv).argmax(dim=1) == y
                n = torch.full((), y.shape[0], dtype=torch.long, device=y.device)
                counts += torch.stack([clean.sum(), adv.sum(), n]).to(counts.dtype)
        sampler = getattr(loader, "sampler", None)
        if getattr(loader, "sharded", False) or isinstance(
            sampler, (torch.utils.data.DistributedSampler, EvalShardSampler)
        ):
            all_reduce_sum(counts)  # every rank saw its own shard
        c, a, n = counts.tolist()
        return (c / n if n else math.nan), (a / n if n else math.nan)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, *, _interrupted: bool = False) -> dict[str, Any]:
        """Everything needed to continue training exactly (see :meth:`save_checkpoint`)."""
        rng = self._committed_rng if _interrupted else None
        own_rng = rng if rng is not None else get_rng_state(self.generator)
        rng_all = [own_rng] if _interrupted else gather_objects(own_rng)
        partial: dict[str, Any] | None = None
        if _interrupted and self._batch_in_epoch > 0 and self._partial is not None:
            partial = {
                "batch": self._batch_in_epoch,
                "sums": self._partial[0].cpu().clone(),
                "steps": self._partial[1],
                "epoch_start_rng": self._epoch_start_rng,
                "rng": own_rng,
            }
        return {
            "config": self.config.to_json(indent=None),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_all,
            "eps_sampler": self.eps_sampler.spec(),
            "counters": {
                "epoch": self.epoch,
                "step": self.step,
                "batch_in_epoch": self._batch_in_epoch if partial else 0,
            },
            "partial_epoch": partial,
            "history": self.history.to_dict(),
            "world_size": self.world_size,
        }

    def save_checkpoint(
        self, path: str | os.PathLike[str] | None = None, *, _interrupted: bool = False
    ) -> Path | None:
        """Write a checkpoint atomically (default: ``checkpoint_dir/last.pt``).

        The file holds the model, optimizer, scheduler and GradScaler ``state_dict``s, the
        RNG states (torch, CUDA, numpy, Python and the trainer's generator, per rank), the eps
        sampler spec, the step counters, the history and the config. It is written to a
        temporary file in the same directory, fsync-ed and moved into place with
        ``os.replace``, so a crash never leaves a half-written ``path``. Under DDP every rank
        must call this; only rank 0 writes.

        Returns:
            The path written (None on ranks other than 0).

        Raises:
            ValueError: no ``path`` and no ``checkpoint_dir``.
        """
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("path is required when the trainer has no checkpoint_dir")
            path = self.checkpoint_dir / _CKPT_NAME
        state = self.state_dict(_interrupted=_interrupted)
        written: Path | None = None
        if self.rank == 0:
            written = save_checkpoint(path, state)
            self._last_ckpt_epoch = self.epoch
        if not _interrupted:
            barrier()
        return written

    def resume(self, path: str | os.PathLike[str] | None = None) -> AdversarialTrainer:
        """Restore a checkpoint written by :meth:`save_checkpoint` and continue from it.

        Restores the model, optimizer, scheduler, scaler, every RNG, the counters and the
        history. Training 4 epochs in one go and 2, then resume, then 2 more gives
        bit-identical weights on the CPU; a checkpoint written on Ctrl-C continues in the
        middle of its epoch (exactly, for in-memory data and loaders whose order depends only
        on ``set_epoch``).

        Args:
            path: the checkpoint (default: ``checkpoint_dir/last.pt``).

        Returns:
            ``self``.

        Raises:
            FileNotFoundError: no such file.
            CheckpointError: a corrupt or foreign file, or one that does not fit the model,
                the optimizer (e.g. other parameter groups) or the scheduler. Nothing of the
                trainer is changed then.
            ValueError: the checkpoint was written with a different config (fields other than
                ``epochs``, ``checkpoint_every`` and ``log_every``).
        """
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("path is required when the trainer has no checkpoint_dir")
            path = self.checkpoint_dir / _CKPT_NAME
        ckpt = load_checkpoint(path, map_location="cpu")
        where = str(path)
        required = ("config", "model", "optimizer", "rng", "counters", "history")
        missing = [k for k in required if k not in ckpt]
        if missing:
            raise CheckpointError(f"checkpoint {where!r} lacks entries {missing}")
        try:
            saved = TrainConfig.from_json(ckpt["config"])
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {where!r} holds an invalid config: {exc}") from exc
        mine, theirs = self.config.to_dict(), saved.to_dict()
        diff = sorted(k for k in mine if mine[k] != theirs[k] and k not in _RESUME_FREE_FIELDS)
        if diff:
            raise ValueError(
                f"checkpoint {where!r} was written with a different config: fields {diff} differ "
                f"(checkpoint: {[theirs[k] for k in diff]}, trainer: {[mine[k] for k in diff]})"
            )
        check_state_dict_fits(self.model, ckpt["model"], where)
        if (ckpt.get("scheduler") is None) != (self.scheduler is None):
            raise CheckpointError(
                f"checkpoint {where!r} and this trainer disagree on having an LR scheduler"
            )
        # Load everything or nothing: an optimizer/scheduler state that does not fit (other
        # parameter groups, say) must not leave the model already overwritten.
        backup = (
            copy.deepcopy(self.model.state_dict()),
            copy.deepcopy(self.optimizer.state_dict()),
            self.scheduler.state_dict() if self.scheduler is not None else None,
            self.scaler.state_dict() if self.scaler is not None else None,
            get_rng_state(self.generator),
        )
        try:
            rng_all = ckpt["rng"]
            rng = rng_all[self.rank] if self.rank < len(rng_all) else rng_all[0]
            counters = ckpt["counters"]
            epoch, step = int(counters["epoch"]), int(counters["step"])
            batch_in_epoch = int(counters.get("batch_in_epoch", 0))
            history = History.from_dict(ckpt["history"])
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(ckpt["scheduler"])
            if self.scaler is not None and ckpt.get("scaler") is not None:
                self.scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(rng, self.generator)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
            self.model.load_state_dict(backup[0])
            self.optimizer.load_state_dict(backup[1])
            if self.scheduler is not None and backup[2] is not None:
                self.scheduler.load_state_dict(backup[2])
            if self.scaler is not None and backup[3] is not None:
                self.scaler.load_state_dict(backup[3])
            set_rng_state(backup[4], self.generator)
            raise CheckpointError(
                f"checkpoint {where!r} does not fit this trainer ({type(exc).__name__}: "
                f"{str(exc)[:200]}); the trainer was left unchanged"
            ) from exc
        self.epoch, self.step = epoch, step
        self.history = history
        self._resume_partial = ckpt.get("partial_epoch")
        self._batch_in_epoch = batch_in_epoch
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self._last_ckpt_epoch = self.epoch
        return self
