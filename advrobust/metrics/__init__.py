"""Robustness metrics: accuracy, robust accuracy, distortion, transfer, leaking, sanity checks.

Every function takes a model (or models), data as ``(x, y)`` tensors or any iterable of
``(x, y)`` batches, and an attack from :mod:`advrobust.attacks`; each returns a frozen
dataclass with per-example tensors, ``summary()`` and ``to_dict()``::

    from advrobust.attacks import BIM
    from advrobust.metrics import minimal_distortion

    res = minimal_distortion(model, (x, y), BIM(model, steps=10), tol=1e-3)
    res.mean, res.num_unbroken, res.distance
"""

from ._accuracy import accuracy as accuracy
from ._accuracy import accuracy_ratio as accuracy_ratio
from ._accuracy import adversarial_accuracy as adversarial_accuracy
from ._accuracy import success_rate as success_rate
from ._deepsec import deepsec_attack_metrics as deepsec_attack_metrics
from ._deepsec import deepsec_defence_metrics as deepsec_defence_metrics
from ._deepsec import gaussian_blur as gaussian_blur
from ._deepsec import jpeg_available as jpeg_available
from ._deepsec import jpeg_compress as jpeg_compress
from ._deepsec import ssim as ssim
from ._distortion import minimal_distortion as minimal_distortion
from ._distortion import robustness_score as robustness_score
from ._distortion import search_attack as search_attack
from ._leak import label_leak_count as label_leak_count
from ._results_accuracy import AccuracyRatioResult as AccuracyRatioResult
from ._results_accuracy import AccuracyResult as AccuracyResult
from ._results_accuracy import AdversarialAccuracyResult as AdversarialAccuracyResult
from ._results_accuracy import LabelLeakResult as LabelLeakResult
from ._results_accuracy import SuccessRateResult as SuccessRateResult
from ._results_deepsec import DeepSecAttackResult as DeepSecAttackResult
from ._results_deepsec import DeepSecDefenceResult as DeepSecDefenceResult
from ._results_distortion import CommonSetScore as CommonSetScore
from ._results_distortion import DistortionResult as DistortionResult
from ._results_distortion import RobustnessScoreResult as RobustnessScoreResult
from ._results_distortion import common_set_score as common_set_score
from ._results_robust import AttackBreakdown as AttackBreakdown
from ._results_robust import RobustAccuracyResult as RobustAccuracyResult
from ._results_sanity import Finding as Finding
from ._results_sanity import SanityReport as SanityReport
from ._results_transfer import TransferMatrixResult as TransferMatrixResult
from ._results_transfer import TransferResult as TransferResult
from ._robust import ATTACK_SUITES as ATTACK_SUITES
from ._robust import PassCounter as PassCounter
from ._robust import SuiteEntry as SuiteEntry
from ._robust import robust_accuracy as robust_accuracy
from ._sanity import SANITY_CHECKS as SANITY_CHECKS
from ._sanity import sanity_check as sanity_check
from ._transfer import transfer_matrix as transfer_matrix
from ._transfer import transfer_rate as transfer_rate

__all__ = [
    "ATTACK_SUITES",
    "SANITY_CHECKS",
    "AccuracyRatioResult",
    "AccuracyResult",
    "AdversarialAccuracyResult",
    "AttackBreakdown",
    "CommonSetScore",
    "DeepSecAttackResult",
    "DeepSecDefenceResult",
    "DistortionResult",
    "Finding",
    "LabelLeakResult",
    "PassCounter",
    "RobustAccuracyResult",
    "RobustnessScoreResult",
    "SanityReport",
    "SuccessRateResult",
    "SuiteEntry",
    "TransferMatrixResult",
    "TransferResult",
    "accuracy",
    "accuracy_ratio",
    "adversarial_accuracy",
    "common_set_score",
    "deepsec_attack_metrics",
    "deepsec_defence_metrics",
    "gaussian_blur",
    "jpeg_available",
    "jpeg_compress",
    "label_leak_count",
    "minimal_distortion",
    "robust_accuracy",
    "robustness_score",
    "sanity_check",
    "search_attack",
    "ssim",
    "success_rate",
    "transfer_matrix",
    "transfer_rate",
]
