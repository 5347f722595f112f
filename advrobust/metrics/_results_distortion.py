"""Results of the distortion metrics: minimal distortion and the eq. (4) robustness score.

:func:`common_set_score` is the one definition of eq. (4) over the commonly-correct set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._validate import describe
from ..attacks import AttackSpec
from ._result_base import Scalar, _mean, _Result

__all__ = ["CommonSetScore", "DistortionResult", "RobustnessScoreResult", "common_set_score"]


@dataclass(frozen=True, repr=False)
class DistortionResult(_Result):
    """Per-example minimal distortion.

    For fixed-eps attacks, ``distance`` is the upper end of the converged bisection bracket:
    the smallest eps (to within ``tol``) at which the attack was seen to succeed; ``lower`` is
    the largest eps at which it failed. For CW-L2 it is the L2 norm of its adversarial example.

    Attributes:
        distance: ``(N,)``; ``inf`` where the attack never succeeded inside the search range
            (``unbroken``), ``nan`` where the clean input is already misclassified.
        lower: ``(N,)`` lower end of the final bracket (``0`` for CW-L2).
        found: bool ``(N,)``, correctly classified and broken inside the search range.
        correct: bool ``(N,)``, clean prediction equals the label (and, inside
            :func:`robustness_score`, in the commonly-correct set).
        evaluations: long ``(N,)``, how many attack runs each example took part in.
        norm: ``"linf"`` or ``"l2"``.
        tol: absolute bracket width at convergence.
        rtol: relative bracket width at convergence (width <= max(tol, rtol * upper)).
        attack: the spec of the attack that ran: a minimal-norm attack as given, or the
            bounded attack as the eps search ran it (see
            :func:`~advrobust.metrics.search_attack`; its eps varies per call).
    """

    distance: Tensor
    lower: Tensor
    found: Tensor
    correct: Tensor
    evaluations: Tensor
    norm: str
    tol: float
    rtol: float = 0.0
    attack: AttackSpec | None = None

    @property
    def mean(self) -> float:
        """Mean distance over the examples that were broken (NaN if none)."""
        return _mean(self.distance, self.found)

    @property
    def median(self) -> float:
        """Median distance over the examples that were broken (NaN if none)."""
        d = self.distance[self.found]
        # torch.median returns the lower middle value; the median of an even count is the
        # mean of the two middle values (numpy, statistics.median).
        return float(d.double().quantile(0.5)) if d.numel() else math.nan

    @property
    def unbroken(self) -> Tensor:
        """Bool ``(N,)``: correctly classified but never broken inside the search range."""
        return self.correct & ~self.found

    @property
    def num_unbroken(self) -> int:
        """How many correctly classified examples the attack never broke."""
        return int(self.unbroken.sum())

    def summary(self) -> dict[str, Scalar]:
        """Mean and median distance over broken examples, and the counts around them."""
        n = int(self.correct.numel())
        return {
            "mean_distance": self.mean,
            "median_distance": self.median,
            "num_found": int(self.found.sum()),
            "num_unbroken": self.num_unbroken,
            "num_misclassified": n - int(self.correct.sum()),
            "num_examples": n,
            "norm": self.norm,
            "tol": self.tol,
            "rtol": self.rtol,
            "attack_evaluations": int(self.evaluations.sum()),
        }


@dataclass(frozen=True, repr=False)
class CommonSetScore(_Result):
    r"""The robustness score of several models over one common set (eq. 4).

    The score of "How training data affect the accuracy and robustness of neural networks for
    image classification" (ICLR 2019 submission), sec. 4.1, eq. (4):

    $$\mathrm{Robustness}(M_i) = \frac{1}{|X|} \sum_{x \in X} \|x - x'_i\|_p$$

    where X is the set of examples that *every* model classifies correctly, so that all models
    are averaged over the same examples. The paper's attacks reach 100% success; when an
    attack leaves an example of X unbroken for some model, that model has no distance for it,
    and a mean over each model's own broken examples would average the models over different
    sets (dropping exactly the examples that make a model look robust). The rule here: an
    example of X unbroken for *any* model is left out of *every* model's mean; the score
    averages over ``used`` = X minus those examples, and ``num_unbroken`` says how many each
    model's attack missed. With 100% success ``used`` is X and the score is eq. (4) exactly.

    Attributes:
        names: model names.
        common: bool ``(N,)``, the set X.
        used: bool ``(N,)``, the examples of X broken for every model (the mean's support).
        distance: per model, ``(N,)`` distances (read only on ``used``).
        unbroken: per model, bool ``(N,)``: in X but not broken by that model's attack.
    """

    names: tuple[str, ...]
    common: Tensor
    used: Tensor
    distance: dict[str, Tensor] = field(default_factory=dict)
    unbroken: dict[str, Tensor] = field(default_factory=dict)

    @property
    def scores(self) -> dict[str, float]:
        """Eq. (4) per model: mean distance over ``used`` (NaN when it is empty)."""
        return {n: _mean(self.distance[n], self.used) for n in self.names}

    @property
    def num_unbroken(self) -> dict[str, int]:
        """Examples of X each model's attack left unbroken."""
        return {n: int(self.unbroken[n].sum()) for n in self.names}

    def summary(self) -> dict[str, Scalar]:
        """``|X|``, the number of examples averaged over, and per model its score and misses."""
        out: dict[str, Scalar] = {
            "num_common": int(self.common.sum()),
            "num_used": int(self.used.sum()),
        }
        scores, unbroken = self.scores, self.num_unbroken
        for name in self.names:
            out[f"score[{name}]"] = scores[name]
            out[f"unbroken[{name}]"] = unbroken[name]
        return out


def common_set_score(
    correct: Mapping[str, Tensor], found: Mapping[str, Tensor], distance: Mapping[str, Tensor]
) -> CommonSetScore:
    """Eq. (4) over the commonly-correct set, from per-model per-example evidence.

    The one definition of the robustness score (see :class:`CommonSetScore` for the rule on
    unbroken examples); :func:`~advrobust.metrics.robustness_score` and the study call it.

    Args:
        correct: per model, bool ``(N,)``: the clean example is classified correctly.
        found: per model, bool ``(N,)``: the attack broke the example (inside its range).
        distance: per model, ``(N,)`` distance of the adversarial example found.

    Returns:
        :class:`CommonSetScore`.

    Raises:
        TypeError, ValueError: not mappings of tensors, different model names or shapes.

    Example:
        >>> import torch
        >>> ok = torch.tensor([True, True, True])
        >>> res = common_set_score(
        ...     {"a": ok, "b": torch.tensor([True, True, False])},
        ...     {"a": torch.tensor([True, True, True]), "b": torch.tensor([True, False, True])},
        ...     {"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([4.0, 9.0, 6.0])},
        ... )
        >>> res.common.tolist(), res.used.tolist(), res.scores
        ([True, True, False], [True, False, False], {'a': 1.0, 'b': 4.0})
    """
    for arg, value in (("correct", correct), ("found", found), ("distance", distance)):
        if not isinstance(value, Mapping) or not value:
            raise TypeError(
                f"{arg} must be a non-empty mapping of model name -> tensor, got {describe(value)}"
            )
    names = tuple(str(k) for k in correct)
    for arg, value in (("found", found), ("distance", distance)):
        if tuple(str(k) for k in value) != names:
            raise ValueError(
                f"{arg} must have the same model names as correct ({list(names)}), got "
                f"{[str(k) for k in value]}"
            )
    shape: tuple[int, ...] | None = None
    for arg, value in (("correct", correct), ("found", found), ("distance", distance)):
        for name, t in value.items():
            if not isinstance(t, Tensor) or t.dim() != 1:
                raise TypeError(f"{arg}[{name!r}] must be a 1-D tensor (N,), got {describe(t)}")
            if shape is None:
                shape = tuple(t.shape)
            elif tuple(t.shape) != shape:
                raise ValueError(
                    f"{arg}[{name!r}] has shape {tuple(t.shape)}, expected {shape} as the others"
                )
            if arg != "distance" and t.dtype != torch.bool:
                raise TypeError(f"{arg}[{name!r}] must be a bool tensor, got dtype {t.dtype}")
    keys = list(correct)
    common = correct[keys[0]].clone()
    for k in keys[1:]:
        common &= correct[k].to(common.device)
    broken_all = common.clone()
    for k in keys:
        broken_all &= found[k].to(common.device)
    unbroken = {str(k): common & ~found[k].to(common.device) for k in keys}
    dist = {str(k): distance[k] for k in keys}
    return CommonSetScore(names, common, broken_all, dist, unbroken)


@dataclass(frozen=True, repr=False)
class RobustnessScoreResult(_Result):
    """Eq. (4) for several models over their commonly-correct set X (see :class:`CommonSetScore`).

    Attributes:
        names: model names (keys of the mapping, or ``"model_0"``... for a sequence).
        common: bool ``(N,)``, the set X: examples every model classifies correctly.
        distances: per model, a :class:`DistortionResult` restricted to X (entries outside X
            are ``nan`` and not ``found``); each carries the spec of the attack that ran.
        attack: the spec of the attack as given (before binding to each model).
    """

    names: tuple[str, ...]
    common: Tensor
    distances: dict[str, DistortionResult] = field(default_factory=dict)
    attack: AttackSpec | None = None

    @property
    def score(self) -> CommonSetScore:
        """The scores with their support (see :func:`common_set_score` for the rule)."""
        return common_set_score(
            {n: self.distances[n].correct & self.common for n in self.names},
            {n: self.distances[n].found for n in self.names},
            {n: self.distances[n].distance for n in self.names},
        )

    @property
    def scores(self) -> dict[str, float]:
        """Eq. (4) per model: the mean distance over the examples of X broken for every model.

        Examples of X that some model's attack never broke are left out of every model's
        mean (see :class:`CommonSetScore`); ``num_unbroken`` counts them per model.
        """
        return self.score.scores

    @property
    def num_used(self) -> int:
        """How many examples the scores average over (X minus examples unbroken anywhere)."""
        return int(self.score.used.sum())

    @property
    def num_unbroken(self) -> dict[str, int]:
        """Examples of X each model's attack never broke (eq. 4 assumes 100% success)."""
        return {name: self.distances[name].num_unbroken for name in self.names}

    def summary(self) -> dict[str, Scalar]:
        """One score and one unbroken count per model, ``|X|`` and the examples averaged over."""
        score = self.score
        out: dict[str, Scalar] = {
            "num_common": int(self.common.sum()),
            "num_used": int(score.used.sum()),
        }
        scores = score.scores
        for name in self.names:
            out[f"score[{name}]"] = scores[name]
            out[f"unbroken[{name}]"] = self.distances[name].num_unbroken
        return out
