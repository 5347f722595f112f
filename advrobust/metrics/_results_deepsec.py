"""Results of the DeepSec utility metrics (Marchetti and Ho 2022, tables 3 and 4)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..attacks import AttackSpec
from ._result_base import Scalar, _frac, _mean, _Result

__all__ = ["DeepSecAttackResult", "DeepSecDefenceResult"]


@dataclass(frozen=True, repr=False)
class DeepSecAttackResult(_Result):
    """DeepSec attack utility metrics (Marchetti and Ho 2022, table 3), per example.

    Averages other than MR are over the successful adversarial examples among the evaluated
    ones (``evaluated``: the clean-correct examples by default, DeepSec's candidate selection).

    Attributes:
        evaluated: bool ``(N,)`` examples that count.
        success: bool ``(N,)`` misclassified (or on target) adversarial examples.
        adv_confidence: ``(N,)`` probability of the predicted adversarial class (ACAC).
        true_confidence: ``(N,)`` probability of the true class on the adversarial input (ACTC).
        l0, l2, linf: ``(N,)`` ``||x' - x||_p / ||x||_p`` (ALD_p).
        ssim: ``(N,)`` SSIM between ``x'`` and ``x`` (ASS).
        noise_tolerance: ``(N,)`` adversarial-class probability minus the largest other (NTE).
        blur_success: bool ``(N,)`` still successful after Gaussian blur (RGB).
        jpeg_success: bool ``(N,)`` still successful after JPEG compression (RIC), or None
            when no JPEG codec was usable (see ``jpeg_note``).
        seconds: ``(N,)`` attack wall time per example (its batch's time over the batch size).
        jpeg_note: why RIC is unavailable, or ``""``.
        attack: the spec of the attack that ran.
    """

    evaluated: Tensor
    success: Tensor
    adv_confidence: Tensor
    true_confidence: Tensor
    l0: Tensor
    l2: Tensor
    linf: Tensor
    ssim: Tensor
    noise_tolerance: Tensor
    blur_success: Tensor
    jpeg_success: Tensor | None
    seconds: Tensor
    jpeg_note: str = ""
    attack: AttackSpec | None = None

    @property
    def _succ(self) -> Tensor:
        return self.success & self.evaluated

    @property
    def mr(self) -> float:
        """Misclassification ratio over the evaluated examples."""
        return _frac(self.success, self.evaluated)

    @property
    def acac(self) -> float:
        """Average confidence of the adversarial class."""
        return _mean(self.adv_confidence, self._succ)

    @property
    def actc(self) -> float:
        """Average confidence of the true class."""
        return _mean(self.true_confidence, self._succ)

    @property
    def ald(self) -> dict[str, float]:
        """Average normalised Lp distortion for p = 0, 2, inf."""
        s = self._succ
        return {"l0": _mean(self.l0, s), "l2": _mean(self.l2, s), "linf": _mean(self.linf, s)}

    @property
    def ass(self) -> float:
        """Average structural similarity."""
        return _mean(self.ssim, self._succ)

    @property
    def nte(self) -> float:
        """Noise tolerance estimation."""
        return _mean(self.noise_tolerance, self._succ)

    @property
    def rgb(self) -> float:
        """Robustness to Gaussian blur."""
        return _frac(self.blur_success, self._succ)

    @property
    def ric(self) -> float | None:
        """Robustness to image (JPEG) compression, None when unavailable."""
        if self.jpeg_success is None:
            return None
        return _frac(self.jpeg_success, self._succ)

    @property
    def cc(self) -> float:
        """Computation cost: seconds of attack time per example."""
        return _mean(self.seconds)

    def summary(self) -> dict[str, Scalar]:
        """MR, ACAC, ACTC, ALD_p, ASS, NTE, RGB, RIC ("unavailable" if so) and CC."""
        ald = self.ald
        ric = self.ric
        return {
            "MR": self.mr,
            "ACAC": self.acac,
            "ACTC": self.actc,
            "ALD_0": ald["l0"],
            "ALD_2": ald["l2"],
            "ALD_inf": ald["linf"],
            "ASS": self.ass,
            "NTE": self.nte,
            "RGB": self.rgb,
            "RIC": ric if ric is not None else "unavailable",
            "CC": self.cc,
            "num_evaluated": int(self.evaluated.sum()),
        }


@dataclass(frozen=True, repr=False)
class DeepSecDefenceResult(_Result):
    """DeepSec defence utility metrics (Marchetti and Ho 2022, table 4), per example.

    Attributes:
        original_correct: bool ``(N,)`` original model correct.
        defended_correct: bool ``(N,)`` defence-enhanced model correct.
        original_confidence: ``(N,)`` original model's probability of the true class.
        defended_confidence: ``(N,)`` defended model's probability of the true class.
        js_divergence: ``(N,)`` Jensen-Shannon divergence (natural log) of the two output
            distributions.
    """

    original_correct: Tensor
    defended_correct: Tensor
    original_confidence: Tensor
    defended_confidence: Tensor
    js_divergence: Tensor

    @property
    def _both(self) -> Tensor:
        return self.original_correct & self.defended_correct

    @property
    def crr(self) -> float:
        """Rectify ratio: wrong before, correct after, over all examples."""
        return _frac(~self.original_correct & self.defended_correct)

    @property
    def csr(self) -> float:
        """Sacrifice ratio: correct before, wrong after, over all examples."""
        return _frac(self.original_correct & ~self.defended_correct)

    @property
    def cav(self) -> float:
        """Accuracy variance: defended accuracy - original accuracy (= CRR - CSR)."""
        return _frac(self.defended_correct) - _frac(self.original_correct)

    @property
    def ccv(self) -> float:
        """Confidence variance: mean |p_y - p^D_y| over examples both classify correctly."""
        return _mean((self.original_confidence - self.defended_confidence).abs(), self._both)

    @property
    def cos(self) -> float:
        """Output stability: mean JS divergence over examples both classify correctly."""
        return _mean(self.js_divergence, self._both)

    def summary(self) -> dict[str, Scalar]:
        """The five metrics and both accuracies."""
        return {
            "original_accuracy": _frac(self.original_correct),
            "defended_accuracy": _frac(self.defended_correct),
            "CAV": self.cav,
            "CRR": self.crr,
            "CSR": self.csr,
            "CCV": self.ccv,
            "COS": self.cos,
        }
