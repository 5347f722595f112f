"""Results of the accuracy metrics.

Clean accuracy, attack success rate, Kurakin's accuracy ratio, the adversarial accuracy of the
training-data study (eq. 5) and Kurakin's label leaking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from ..attacks import AttackSpec
from ._result_base import Scalar, _frac, _mean, _Result

__all__ = [
    "AccuracyRatioResult",
    "AccuracyResult",
    "AdversarialAccuracyResult",
    "LabelLeakResult",
    "SuccessRateResult",
]


@dataclass(frozen=True, repr=False)
class AccuracyResult(_Result):
    """Clean accuracy with the per-example evidence.

    Attributes:
        correct: bool ``(N,)``, prediction equals the label.
        pred: long ``(N,)`` predictions.
        y: long ``(N,)`` labels.
    """

    correct: Tensor
    pred: Tensor
    y: Tensor

    @property
    def value(self) -> float:
        """Fraction of examples classified correctly."""
        return _frac(self.correct)

    @property
    def num_examples(self) -> int:
        """Number of evaluated examples."""
        return int(self.correct.numel())

    def summary(self) -> dict[str, Scalar]:
        """``accuracy`` and ``num_examples``."""
        return {"accuracy": self.value, "num_examples": self.num_examples}


@dataclass(frozen=True, repr=False)
class SuccessRateResult(_Result):
    """Attack success with per-example evidence.

    Attributes:
        success: bool ``(N,)`` as reported by the attack (prediction differs from the label,
            or equals the target for targeted attacks).
        correct: bool ``(N,)``, clean prediction equals the label.
        adv_pred: long ``(N,)`` predictions on the adversarial examples.
        l2: ``(N,)`` L2 norm of each perturbation.
        linf: ``(N,)`` Linf norm of each perturbation.
        only_correct: whether ``value`` counts only the clean-correct examples (as the
            training-data study does).
        attack: the spec of the attack that ran (its eps is the metric's eps when one float
            eps was given), or None for a result built by hand.
    """

    success: Tensor
    correct: Tensor
    adv_pred: Tensor
    l2: Tensor
    linf: Tensor
    only_correct: bool = True
    attack: AttackSpec | None = None

    @property
    def value(self) -> float:
        """Success rate over the clean-correct examples (or over all, see ``only_correct``)."""
        return _frac(self.success, self.correct if self.only_correct else None)

    def summary(self) -> dict[str, Scalar]:
        """``success_rate``, mean norms of the successful perturbations, counts."""
        sel = self.success & self.correct if self.only_correct else self.success
        return {
            "success_rate": self.value,
            "mean_l2": _mean(self.l2, sel),
            "mean_linf": _mean(self.linf, sel),
            "num_examples": int(self.success.numel()),
            "num_attacked": int(self.correct.sum())
            if self.only_correct
            else int(self.success.numel()),
        }


@dataclass(frozen=True, repr=False)
class AccuracyRatioResult(_Result):
    """Kurakin's accuracy ratio (sec. 4.3): adversarial accuracy over clean accuracy.

    Attributes:
        clean_correct: bool ``(N,)`` on the clean inputs.
        adv_correct: bool ``(N,)`` on the adversarial inputs.
        attack: the spec of the attack that ran.
    """

    clean_correct: Tensor
    adv_correct: Tensor
    attack: AttackSpec | None = None

    @property
    def clean_accuracy(self) -> float:
        """Accuracy on the clean inputs."""
        return _frac(self.clean_correct)

    @property
    def adversarial_accuracy(self) -> float:
        """Accuracy on the adversarial inputs."""
        return _frac(self.adv_correct)

    @property
    def value(self) -> float:
        """Adversarial accuracy / clean accuracy (NaN when clean accuracy is 0)."""
        clean = self.clean_accuracy
        return self.adversarial_accuracy / clean if clean > 0 else math.nan

    def summary(self) -> dict[str, Scalar]:
        """Clean and adversarial accuracy and their ratio."""
        return {
            "clean_accuracy": self.clean_accuracy,
            "adversarial_accuracy": self.adversarial_accuracy,
            "accuracy_ratio": self.value,
            "num_examples": int(self.clean_correct.numel()),
        }


@dataclass(frozen=True, repr=False)
class AdversarialAccuracyResult(_Result):
    """Adversarial accuracy of the training-data study, eq. (5).

    ``1 - (wrong predictions + successful attacks) / |T|``, an attack on a correctly classified
    ``x`` being successful when ``M(x') != M(x)`` and ``||x - x'||_p <= delta``.

    Attributes:
        correct: bool ``(N,)``, clean prediction equals the label.
        success: bool ``(N,)``, successful attack in the sense above (False where not correct).
        distance: ``(N,)`` p-norm of each perturbation.
        delta: the threshold Delta.
        norm: ``"linf"`` or ``"l2"``.
        attack: the spec of the attack that ran (a bounded attack with ``eps = delta``).
    """

    correct: Tensor
    success: Tensor
    distance: Tensor
    delta: float
    norm: str
    attack: AttackSpec | None = None

    @property
    def value(self) -> float:
        """Adversarial accuracy, eq. (5)."""
        return _frac(self.correct & ~self.success)

    def summary(self) -> dict[str, Scalar]:
        """The value with its parts."""
        n = int(self.correct.numel())
        return {
            "adversarial_accuracy": self.value,
            "clean_accuracy": _frac(self.correct),
            "wrong_predictions": n - int(self.correct.sum()),
            "successful_attacks": int(self.success.sum()),
            "num_examples": n,
            "delta": self.delta,
            "norm": self.norm,
        }


@dataclass(frozen=True, repr=False)
class LabelLeakResult(_Result):
    """Kurakin sec. 4.2 label leaking.

    Attributes:
        mask: bool ``(N,)``: leaked labels.
        correct_true: bool ``(N,)``: correct on the example built with the true label.
        correct_pred: bool ``(N,)``: correct on the example built without it.
        clean_correct: bool ``(N,)``.
        attack_true: the spec of the attack run with the true labels.
        attack_pred: the spec of the attack run with the predicted labels.
    """

    mask: Tensor
    correct_true: Tensor
    correct_pred: Tensor
    clean_correct: Tensor
    attack_true: AttackSpec | None = None
    attack_pred: AttackSpec | None = None

    @property
    def count(self) -> int:
        """Number of leaked labels."""
        return int(self.mask.sum())

    def summary(self) -> dict[str, Scalar]:
        """Count, and accuracies on each kind of adversarial example."""
        return {
            "label_leak_count": self.count,
            "num_examples": int(self.mask.numel()),
            "clean_accuracy": _frac(self.clean_correct),
            "accuracy_true_label_attack": _frac(self.correct_true),
            "accuracy_predicted_label_attack": _frac(self.correct_pred),
        }
