"""``AdversarialTrainer``: Kurakin's algorithm 1, PGD adversarial training and clean training."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .._atomic import remove_stale_temporaries
from .._distributed import all_reduce_sum, barrier, dist_info
from .._validate import check_labels, check_logits, describe, model_state_guard
from ..attacks import Attack
from ._build import (
    build_attack,
    build_optimizer,
    build_scheduler,
    check_optimizer,
    resolve_device,
)
from ._checkpoint import load_checkpoint, save_checkpoint
from ._config import TrainConfig, _thaw
from ._data import TensorBatches, is_sharded, make_loader, preflight, unpack_batch
from ._epoch import run_epoch
from ._eps import EpsSampler
from ._interrupts import DeferredInterrupt
from ._loss import LossFn, mixed_batch_loss
from ._records import BatchInfo as BatchInfo
from ._records import Callback as Callback
from ._records import EpochStats as EpochStats
from ._records import History as History
from ._select import split_indices
from ._state import derive_seed, restore_trainer_state, trainer_state
from ._step import StepFigures as StepFigures
from ._step import StepOutput as StepOutput

__all__ = [
    "AdversarialTrainer",
    "BatchInfo",
    "Callback",
    "EpochStats",
    "History",
    "NonFiniteLossError",
    "StepFigures",
    "StepOutput",
]

Regularizer = Callable[[nn.Module, Tensor, Tensor], Tensor]
_CKPT_NAME = "last.pt"


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
        self.device = resolve_device(model, device)
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
            else build_attack(model, _thaw(config.attack))
        )
        self.eps_sampler: EpsSampler = config.eps_sampler()

        if optimizer is None:
            optimizer = build_optimizer(model, config)
        self.optimizer = check_optimizer(optimizer, params)
        if scheduler is None:
            scheduler = build_scheduler(optimizer, config)
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
        self._partial: tuple[StepFigures, int] | None = None
        self._epoch_start_rng: dict[str, Any] | None = None
        self._committed_rng: dict[str, Any] | None = None
        self._resume_partial: dict[str, Any] | None = None
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self._interrupts = DeferredInterrupt()
        self._check_first_batch = False

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
        return make_loader(
            data,
            batch_size=self.config.batch_size,
            seed=self.config.seed,
            rank=self.rank,
            world_size=self.world_size,
            shuffle=shuffle,
            name=name,
            evaluation=evaluation,
        )

    # ------------------------------------------------------------------ one step
    def _autocast(self) -> Any:
        amp = self.config.amp
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=amp != "none")

    def train_step(self, x: Tensor, y: Tensor, *, nominal_batch: int | None = None) -> StepOutput:
        """One step of algorithm 1 on a minibatch ``(x, y)`` (already on the training device).

        With an int ``config.k`` and a batch smaller than ``nominal_batch`` (the last batch of
        an epoch), ``k`` is scaled to the same share: ``round(k * m / nominal_batch)``.

        Returns:
            A :class:`StepOutput`: the detached loss, the batch fed to the model (``k``
            adversarial rows first) and its labels, ``k``, the indices of the replaced
            examples in ``x``, and the step's :class:`StepFigures` (on the device).

        Raises:
            TypeError: the model does not return a logits tensor (e.g. a tuple).
            ValueError: the model's logits are not ``(B, K)``, or a label lies outside
                ``[0, K)`` (found when the loss rejects it; no extra host sync per step).
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
            out = self._net(x_in)
        logits = check_logits(out, m, "model output").float()
        logits_adv, logits_clean = logits[:k], logits[k:]
        try:
            loss = mixed_batch_loss(
                logits_clean, y_clean, logits_adv, y_adv, cfg.adv_weight, loss_fn=self.loss_fn
            )
        except (IndexError, RuntimeError, ValueError):
            # a label >= K (torch's IndexError, or the loss's own check naming its parts): name
            # this method's argument; the check syncs, so it runs only on this error path
            check_labels(y, m, "y", num_classes=logits.shape[1])
            raise
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
            hit = (pred == y_in).to(self._acc_dtype)
            loss_d = loss.detach()
            figures = StepFigures.of_step(loss_d, hit, m, k)
            bad = ~torch.isfinite(loss_d)
            self._first_bad = torch.where(bad & (self._first_bad < 0), self.step, self._first_bad)
        return StepOutput(loss_d, x_in, y_in, k, replaced, figures)

    @property
    def _acc_dtype(self) -> torch.dtype:
        # float64 counts are exact to 2**53; MPS has no float64
        return torch.float64 if self.device.type != "mps" else torch.float32

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
        ``config.checkpoint_every`` epochs (no sooner than ``config.checkpoint_seconds``
        after the previous one) and at the end.

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
            ValueError: ``k`` larger than a batch, empty data, NaN/Inf in ``x``, labels
                outside ``[0, K)``, and other bad input (checked before the first step).
            TypeError: the model does not return a logits tensor.
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
        if self.epoch < total:
            self._check_first_batch = preflight(self.model, loader, "train_loader", self.device)
        self.stop_training = False
        if self.checkpoint_dir is not None and self.rank == 0:
            remove_stale_temporaries(self.checkpoint_dir)  # left by a killed writer
        bar = self._progress_bar(loader, total, progress)
        written_epoch = self.epoch
        written_at = time.monotonic()
        self._interrupts = DeferredInterrupt()
        try:
            self._interrupts.__enter__()
            while self.epoch < total and not self.stop_training:
                stats = run_epoch(self, loader, val_batches, val_attack, callbacks, bar)
                for cb in callbacks:
                    cb.on_epoch_end(self, stats)
                every = self.config.checkpoint_every
                due = every and self.epoch % every == 0
                waited = time.monotonic() - written_at >= self.config.checkpoint_seconds
                if self.checkpoint_dir is not None and due and waited:
                    self.save_checkpoint()
                    written_epoch, written_at = self.epoch, time.monotonic()
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

        Raises:
            ValueError: ``data`` holds no examples, ``x`` holds NaN/Inf, or a label lies
                outside ``[0, K)``.
            TypeError: the model does not return a logits tensor.
        """
        atk = self.attack if attack is None else self._check_attack(attack, "attack")
        loader = (
            data
            if isinstance(data, TensorBatches)
            else self.make_loader(data, shuffle=False, name="data", evaluation=True)
        )
        gen = torch.Generator(device=self.generator.device)
        gen.manual_seed(derive_seed(self.config.seed, f"eval{self.epoch}", self.rank))
        counts = torch.zeros(3, dtype=self._acc_dtype, device=self.device)
        with model_state_guard(self.model, train=False):
            for batch in loader:
                # evaluation syncs per batch anyway (the attack checks its input)
                x, y = unpack_batch(batch, "data", self.device, check_values=True)
                with torch.no_grad():
                    logits = check_logits(self.model(x), x.shape[0], "model output")
                check_labels(y, y.shape[0], "data batches: y", num_classes=logits.shape[1])
                clean = logits.argmax(dim=1) == y
                x_adv = atk(x, y, generator=gen)
                with torch.no_grad():
                    adv = self.model(x_adv).argmax(dim=1) == y
                n = torch.full((), y.shape[0], dtype=torch.long, device=y.device)
                counts += torch.stack([clean.sum(), adv.sum(), n]).to(counts.dtype)
        if is_sharded(loader):
            all_reduce_sum(counts)  # every rank saw its own shard
        c, a, n = counts.tolist()
        if n == 0:
            raise ValueError("data holds no examples: accuracy on an empty set is undefined")
        return c / n, a / n

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, *, _interrupted: bool = False) -> dict[str, Any]:
        """Everything needed to continue training exactly (see :meth:`save_checkpoint`)."""
        return trainer_state(self, interrupted=_interrupted)

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
                ``epochs``, ``checkpoint_every``, ``checkpoint_seconds`` and ``log_every``).
        """
        if path is None:
            if self.checkpoint_dir is None:
                raise ValueError("path is required when the trainer has no checkpoint_dir")
            path = self.checkpoint_dir / _CKPT_NAME
        ckpt = load_checkpoint(path, map_location="cpu")
        restore_trainer_state(self, ckpt, str(path))
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self._last_ckpt_epoch = self.epoch
        return self
