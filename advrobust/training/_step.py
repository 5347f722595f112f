"""What one training step returns: :class:`StepOutput` and its named :class:`StepFigures`."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = ["StepFigures", "StepOutput"]


@dataclasses.dataclass(frozen=True)
class StepFigures:
    """Named counts of one step, or summed over many, kept on the device.

    The six figures live in one device tensor so that summing them per step costs one kernel
    and no host sync; :meth:`totals` reads them once (at the end of an epoch, or every
    ``log_every`` steps for the progress bar).

    Attributes:
        values: float tensor ``[loss_sum, examples, clean_correct, clean_examples,
            adv_correct, adv_examples]`` where ``loss_sum`` is the mean loss times the number
            of examples (so that sums over batches give the example-weighted mean).
    """

    values: Tensor

    FIELDS: ClassVar[tuple[str, ...]] = (
        "loss_sum",
        "examples",
        "clean_correct",
        "clean_examples",
        "adv_correct",
        "adv_examples",
    )

    @classmethod
    def zeros(cls, device: torch.device, dtype: torch.dtype = torch.float64) -> StepFigures:
        """All six figures zero (the start of an epoch)."""
        return cls(torch.zeros(len(cls.FIELDS), dtype=dtype, device=device))

    @classmethod
    def of_step(cls, loss: Tensor, correct: Tensor, num_examples: int, num_adv: int) -> StepFigures:
        """Figures of one mixed batch whose first ``num_adv`` rows are adversarial.

        ``correct`` is a float ``(m,)`` tensor of 0/1 hits; the counts are device fills, not
        host-to-device copies.
        """

        def count(v: int) -> Tensor:
            return torch.full((), float(v), dtype=correct.dtype, device=correct.device)

        m, k = num_examples, num_adv
        values = torch.stack(
            [
                loss.to(correct.dtype) * m,
                count(m),
                correct[k:].sum(),
                count(m - k),
                correct[:k].sum(),
                count(k),
            ]
        )
        return cls(values)

    def __add__(self, other: StepFigures) -> StepFigures:
        return StepFigures(self.values + other.values)

    def add_(self, other: StepFigures) -> StepFigures:
        """Add ``other`` in place (on the device) and return ``self``."""
        self.values.add_(other.values)
        return self

    def totals(self) -> dict[str, float]:
        """The figures as Python floats by name (one host sync)."""
        return dict(zip(self.FIELDS, self.values.tolist(), strict=True))

    def running(self) -> dict[str, str]:
        """Progress-bar text: mean loss, clean and adversarial accuracy so far."""
        t = self.totals()
        out = {"loss": f"{t['loss_sum'] / max(t['examples'], 1):.4f}"}
        if t["clean_examples"]:
            out["clean"] = f"{t['clean_correct'] / t['clean_examples']:.3f}"
        if t["adv_examples"]:
            out["adv"] = f"{t['adv_correct'] / t['adv_examples']:.3f}"
        return out

    @staticmethod
    def summary(totals: dict[str, float]) -> dict[str, Any]:
        """Mean loss and accuracies from :meth:`totals` (None where nothing was counted)."""
        n, n_clean, n_adv = totals["examples"], totals["clean_examples"], totals["adv_examples"]
        return {
            "loss": totals["loss_sum"] / n if n else math.nan,
            "train_clean_acc": totals["clean_correct"] / n_clean if n_clean else None,
            "train_adv_acc": totals["adv_correct"] / n_adv if n_adv else None,
            "examples": int(n),
            "adv_examples": int(n_adv),
        }


@dataclasses.dataclass(frozen=True)
class StepOutput:
    """The result of :meth:`AdversarialTrainer.train_step` (tensors stay on the device).

    Attributes:
        loss: the detached mixed-batch loss (a scalar tensor).
        x: the batch fed to the model, its ``num_adv`` adversarial rows first.
        y: the labels of ``x`` row by row.
        num_adv: ``k``, the number of adversarial examples in the batch.
        replaced: indices (into the input batch) of the examples that were replaced.
        figures: the step's :class:`StepFigures`.
    """

    loss: Tensor
    x: Tensor
    y: Tensor
    num_adv: int
    replaced: Tensor
    figures: StepFigures

    def __iter__(self) -> Iterator[Any]:
        """Deprecated: unpack as the old ``(loss, x, y, k, replaced, figures_tensor)`` tuple."""
        warnings.warn(
            "unpacking the result of train_step as a tuple is deprecated; use its fields "
            "(out.loss, out.x, out.y, out.num_adv, out.replaced, out.figures)",
            DeprecationWarning,
            stacklevel=2,
        )
        return iter((self.loss, self.x, self.y, self.num_adv, self.replaced, self.figures.values))
