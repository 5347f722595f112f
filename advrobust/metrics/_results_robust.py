"""Results of :func:`~advrobust.metrics.robust_accuracy`: the evaluation and each attack's part."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ..attacks import AttackSpec
from ._result_base import Scalar, _frac, _Result

__all__ = ["AttackBreakdown", "RobustAccuracyResult"]


@dataclass(frozen=True, repr=False)
class AttackBreakdown(_Result):
    """What one attack of a :func:`~advrobust.metrics.robust_accuracy` suite did.

    Attributes:
        spec: the spec of the attack as it ran (norm and eps of the evaluation).
        attacked: examples it was run on (those still robust when its turn came).
        broken: examples it broke among those (misclassified within eps).
        forwards: forward passes it spent, counted in examples.
        backwards: backward passes it spent, counted in examples.
    """

    spec: AttackSpec
    attacked: int
    broken: int
    forwards: int
    backwards: int

    def summary(self) -> dict[str, Scalar]:
        """The attack's one-line description and its counts."""
        return {
            "attack": self.spec.describe(),
            "attacked": self.attacked,
            "broken": self.broken,
            "forwards": self.forwards,
            "backwards": self.backwards,
        }


@dataclass(frozen=True, repr=False)
class RobustAccuracyResult(_Result):
    """Robust accuracy at a fixed eps under an ensemble of attacks (per-example worst case).

    Attributes:
        robust: bool ``(N,)``: classified correctly and no attack of the suite broke it.
        clean_correct: bool ``(N,)``: the clean input is classified correctly.
        x_adv: per example the adversarial input found, else the clean input.
        broken_by: long ``(N,)``: index into ``attacks`` of the attack that broke the
            example, ``-1`` where none did (robust, or misclassified when clean).
        y: long ``(N,)`` labels.
        eps: the radius.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        attacks: per attack, in the order they ran, its spec and what it did.
        forwards: forward passes of the whole evaluation (clean predictions included),
            counted in examples: a forward of a batch of B counts B.
        backwards: backward passes through the model, counted the same way.
        suite: the suite's name (``"standard"``, ``"fast"``) or ``"custom"``.
    """

    robust: Tensor
    clean_correct: Tensor
    x_adv: Tensor
    broken_by: Tensor
    y: Tensor
    eps: float
    norm: str
    attacks: tuple[AttackBreakdown, ...]
    forwards: int
    backwards: int
    suite: str = "custom"

    @property
    def value(self) -> float:
        """Robust accuracy over all examples (misclassified clean inputs count as broken)."""
        return _frac(self.robust)

    @property
    def clean_accuracy(self) -> float:
        """Accuracy on the clean inputs."""
        return _frac(self.clean_correct)

    @property
    def specs(self) -> tuple[AttackSpec, ...]:
        """The specs of the attacks, in the order they ran."""
        return tuple(a.spec for a in self.attacks)

    @property
    def passes(self) -> int:
        """Forward plus backward passes, counted in examples."""
        return self.forwards + self.backwards

    @property
    def passes_per_example(self) -> float:
        """``passes`` divided by the number of examples."""
        n = int(self.robust.numel())
        return self.passes / n if n else math.nan

    def summary(self) -> dict[str, Scalar]:
        """Robust and clean accuracy, eps, norm, suite, passes, and per attack its breaks."""
        out: dict[str, Scalar] = {
            "robust_accuracy": self.value,
            "clean_accuracy": self.clean_accuracy,
            "num_examples": int(self.robust.numel()),
            "eps": self.eps,
            "norm": self.norm,
            "suite": self.suite,
            "forwards": self.forwards,
            "backwards": self.backwards,
            "passes_per_example": self.passes_per_example,
        }
        for i, a in enumerate(self.attacks):
            out[f"broken[{i}:{a.spec.name}]"] = a.broken
        return out
