"""Records of a training run: per-epoch figures, the history, and the callback interface."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from ._trainer import AdversarialTrainer

__all__ = ["BatchInfo", "Callback", "EpochStats", "History"]


@dataclasses.dataclass(frozen=True)
class EpochStats:
    """Figures of one epoch (accuracies in [0, 1]; None where nothing was measured).

    Attributes:
        epoch: 1-based epoch number.
        loss: mean mixed-batch loss over the epoch's examples.
        train_clean_acc: accuracy on the clean part of the training batches.
        train_adv_acc: accuracy on the adversarial part (None without adversarial examples).
        val_clean_acc: validation accuracy on clean inputs (None without validation data).
        val_adv_acc: validation accuracy under the validation attack (None without validation).
        lr: learning rate of the first parameter group during the epoch.
        steps: optimisation steps in the epoch (summed over ranks: no, per rank).
        examples: training examples seen (over all ranks).
        adv_examples: adversarial examples among them.
        seconds: wall-clock time of the epoch (training and validation).
    """

    epoch: int
    loss: float
    train_clean_acc: float | None
    train_adv_acc: float | None
    val_clean_acc: float | None
    val_adv_acc: float | None
    lr: float
    steps: int
    examples: int
    adv_examples: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of the fields."""
        return dataclasses.asdict(self)

    def summary_line(self) -> str:
        """One line for the log: loss and accuracies in percent, and the time taken."""

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.1f}%"

        text = (
            f"epoch {self.epoch}: loss {self.loss:.4f}, train clean "
            f"{pct(self.train_clean_acc)}, adv {pct(self.train_adv_acc)}"
        )
        if self.val_clean_acc is not None:
            text += f" | val clean {pct(self.val_clean_acc)}, adv {pct(self.val_adv_acc)}"
        return text + f" ({self.seconds:.1f} s)"


class History:
    """Per-epoch :class:`EpochStats` of a training run (``history[i]``, ``len``, iteration).

    Column access: ``history.column("loss")`` or the shortcuts :attr:`loss`,
    :attr:`train_clean_acc`, :attr:`train_adv_acc`, :attr:`val_clean_acc`, :attr:`val_adv_acc`.
    """

    def __init__(self, epochs: Iterable[EpochStats] = ()) -> None:
        self.epochs: list[EpochStats] = list(epochs)

    def append(self, stats: EpochStats) -> None:
        """Add one epoch."""
        self.epochs.append(stats)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, i: int) -> EpochStats:
        return self.epochs[i]

    def __iter__(self) -> Iterator[EpochStats]:
        return iter(self.epochs)

    def column(self, name: str) -> list[Any]:
        """The values of one :class:`EpochStats` field over the epochs."""
        if name not in {f.name for f in dataclasses.fields(EpochStats)}:
            raise ValueError(
                f"name must be a field of EpochStats "
                f"{[f.name for f in dataclasses.fields(EpochStats)]}, got {name!r}"
            )
        return [getattr(e, name) for e in self.epochs]

    @property
    def loss(self) -> list[float]:
        """Mean training loss per epoch."""
        return self.column("loss")

    @property
    def train_clean_acc(self) -> list[float | None]:
        """Clean training accuracy per epoch."""
        return self.column("train_clean_acc")

    @property
    def train_adv_acc(self) -> list[float | None]:
        """Adversarial training accuracy per epoch."""
        return self.column("train_adv_acc")

    @property
    def val_clean_acc(self) -> list[float | None]:
        """Clean validation accuracy per epoch."""
        return self.column("val_clean_acc")

    @property
    def val_adv_acc(self) -> list[float | None]:
        """Adversarial validation accuracy per epoch."""
        return self.column("val_adv_acc")

    def to_dict(self) -> list[dict[str, Any]]:
        """One plain dict per epoch (JSON-friendly)."""
        return [e.to_dict() for e in self.epochs]

    @classmethod
    def from_dict(cls, rows: Iterable[Mapping[str, Any]]) -> History:
        """Inverse of :meth:`to_dict`."""
        return cls(EpochStats(**dict(r)) for r in rows)

    def __repr__(self) -> str:
        return f"History({len(self.epochs)} epochs)"


@dataclasses.dataclass(frozen=True)
class BatchInfo:
    """What a batch-end callback sees (tensors stay on the device; reading them syncs).

    Attributes:
        epoch: 0-based epoch index.
        batch: 0-based batch index in the epoch.
        step: number of optimisation steps done so far (including this one).
        loss: the batch's mixed-batch loss (detached scalar tensor).
        x: the training minibatch as fed to the model (adversarial examples first).
        y: the labels of ``x`` (row by row).
        num_adv: number of adversarial examples ``k`` (the first ``k`` rows of ``x``).
        replaced: indices (into the loader's batch) of the examples that were replaced.
    """

    epoch: int
    batch: int
    step: int
    loss: Tensor
    x: Tensor
    y: Tensor
    num_adv: int
    replaced: Tensor


class Callback:
    """Base class of trainer callbacks: override the hooks you need.

    A callback may set ``trainer.stop_training = True``; training then stops after the
    current epoch.
    """

    def on_batch_end(self, trainer: AdversarialTrainer, info: BatchInfo) -> None:
        """Called after every optimisation step."""

    def on_epoch_end(self, trainer: AdversarialTrainer, stats: EpochStats) -> None:
        """Called after every epoch (after validation, before the checkpoint is written)."""
