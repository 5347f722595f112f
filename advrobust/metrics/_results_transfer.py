"""Results of the transfer metrics: one source-target pair, and all ordered pairs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..attacks import AttackSpec
from ._result_base import Scalar, _frac, _Result

__all__ = ["TransferMatrixResult", "TransferResult"]


@dataclass(frozen=True, repr=False)
class TransferResult(_Result):
    """Transfer of one source model's adversarial examples to a target model.

    Attributes:
        source_correct: bool ``(N,)``, the source classifies the clean input correctly.
        source_fooled: bool ``(N,)``, the source misclassifies the adversarial input.
        target_wrong: bool ``(N,)``, the target misclassifies the adversarial input.
        attack: the spec of the attack that ran on the source.
    """

    source_correct: Tensor
    source_fooled: Tensor
    target_wrong: Tensor
    attack: AttackSpec | None = None

    @property
    def candidates(self) -> Tensor:
        """Bool ``(N,)``: Kurakin's prefilter, clean correct and adversarial wrong on the source."""
        return self.source_correct & self.source_fooled

    @property
    def value(self) -> float:
        """Kurakin's transfer rate: target error rate over the prefiltered examples."""
        return _frac(self.target_wrong, self.candidates)

    @property
    def absolute(self) -> float:
        """Absolute variant: target error rate over all adversarial examples of the source."""
        return _frac(self.target_wrong)

    def summary(self) -> dict[str, Scalar]:
        """Both rates and the number of prefiltered examples."""
        return {
            "transfer_rate": self.value,
            "absolute_error_rate": self.absolute,
            "num_candidates": int(self.candidates.sum()),
            "num_examples": int(self.target_wrong.numel()),
        }


@dataclass(frozen=True, repr=False)
class TransferMatrixResult(_Result):
    """Transfer rates over all ordered pairs of a dict of models.

    Attributes:
        names: model names, the order of rows (sources) and columns (targets).
        source_correct: bool ``(S, N)``, source ``s`` classifies the clean input correctly.
        source_fooled: bool ``(S, N)``, source ``s`` misclassifies its adversarial input.
        target_wrong: bool ``(S, T, N)``: target ``t`` misclassifies source ``s``'s example.
        sources: names of the models used as sources (rows of the others are NaN).
        attack: the spec of the attack that ran on every source.
    """

    names: tuple[str, ...]
    source_correct: Tensor
    source_fooled: Tensor
    target_wrong: Tensor
    sources: tuple[str, ...] = ()
    attack: AttackSpec | None = None

    def _row_mask(self) -> Tensor:
        srcs = self.sources or self.names
        return torch.tensor([n in srcs for n in self.names], dtype=torch.bool)

    @property
    def rates(self) -> Tensor:
        """``(S, T)`` Kurakin transfer rates (NaN where a source has no candidate)."""
        cand = (self.source_correct & self.source_fooled).unsqueeze(1).double().cpu()
        num = (self.target_wrong.double().cpu() * cand).sum(-1)
        den = cand.sum(-1).expand_as(num)
        out = torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, math.nan))
        out[~self._row_mask()] = math.nan
        return out

    @property
    def absolute(self) -> Tensor:
        """``(S, T)`` target error rates on all adversarial examples of the source."""
        out = self.target_wrong.double().cpu().mean(-1)
        out[~self._row_mask()] = math.nan
        return out

    def pair(self, source: str, target: str) -> TransferResult:
        """The :class:`TransferResult` of one ordered pair."""
        for name, label in ((source, "source"), (target, "target")):
            if name not in self.names:
                raise ValueError(f"{label} {name!r} is not among {list(self.names)}")
        if self.sources and source not in self.sources:
            raise ValueError(f"source {source!r} was not used as a source: {list(self.sources)}")
        s, t = self.names.index(source), self.names.index(target)
        return TransferResult(
            self.source_correct[s], self.source_fooled[s], self.target_wrong[s, t], self.attack
        )

    def summary(self) -> dict[str, Scalar]:
        """One entry per ordered pair, ``rate[source->target]`` and ``absolute[...]``."""
        out: dict[str, Scalar] = {}
        rates, absolute = self.rates, self.absolute
        for i, s in enumerate(self.names):
            for j, t in enumerate(self.names):
                out[f"rate[{s}->{t}]"] = float(rates[i, j])
                out[f"absolute[{s}->{t}]"] = float(absolute[i, j])
        return out

    def table(self, *, absolute: bool = False, digits: int = 3) -> str:
        """The matrix as aligned text, sources as rows and targets as columns."""
        values = self.absolute if absolute else self.rates
        width = max(max(len(n) for n in self.names), digits + 3, 8)
        head = "src \\ tgt".ljust(width + 2) + "".join(n.rjust(width + 2) for n in self.names)
        rows = [head]
        for i, s in enumerate(self.names):
            cells = "".join(f"{float(v):.{digits}f}".rjust(width + 2) for v in values[i])
            rows.append(s.ljust(width + 2) + cells)
        return "\n".join(rows)
