"""Result records of the metrics: frozen dataclasses with per-example tensors.

Every result keeps the per-example evidence (boolean masks, distances, confidences) so results
can be merged, filtered and audited, plus ``summary()`` (scalars for a table row) and
``to_dict()`` (the summary and the per-example values as plain Python lists, JSON-friendly).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import torch
from torch import Tensor

from .._validate import describe
from ..attacks import AttackSpec

__all__ = [
    "AccuracyResult",
    "AccuracyRatioResult",
    "AdversarialAccuracyResult",
    "AttackBreakdown",
    "CommonSetScore",
    "DeepSecAttackResult",
    "DeepSecDefenceResult",
    "DistortionResult",
    "Finding",
    "LabelLeakResult",
    "RobustAccuracyResult",
    "RobustnessScoreResult",
    "SanityReport",
    "SuccessRateResult",
    "TransferMatrixResult",
    "TransferResult",
    "common_set_score",
]

Scalar = float | int | str | bool | None


def _mean(values: Tensor, mask: Tensor | None = None) -> float:
    """Mean of ``values[mask]`` as a float; NaN when the selection is empty."""
    if mask is not None:
        values = values[mask]
    if values.numel() == 0:
        return math.nan
    return float(values.double().mean())


def _frac(mask: Tensor, among: Tensor | None = None) -> float:
    if among is not None:
        mask = mask[among]
    if mask.numel() == 0:
        return math.nan
    return float(mask.double().mean())


def _plain(value: object) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (_Result, AttackSpec)):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


_R = TypeVar("_R", bound="_Result")

_DTYPES = {
    str(dt).removeprefix("torch."): dt
    for dt in (
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
    )
}


def _tensor_from(value: object, meta: object, where: str) -> Tensor:
    """A tensor from nested lists, with the dtype and shape recorded by ``to_dict``."""
    if isinstance(value, Tensor):
        return value
    if not isinstance(value, list):
        raise TypeError(f"{where} must be a list of numbers (a tensor), got {describe(value)}")
    dtype: torch.dtype | None = None
    shape: list[int] | None = None
    if isinstance(meta, Mapping):
        name = meta.get("dtype")
        if name is not None and name not in _DTYPES:
            raise ValueError(f"{where}: unknown dtype {name!r}; expected one of {list(_DTYPES)}")
        dtype = _DTYPES[name] if name is not None else None
        raw = meta.get("shape")
        shape = [int(d) for d in raw] if isinstance(raw, list) else None
    out = torch.tensor(value, dtype=dtype)
    if shape is not None:
        out = out.reshape(shape)
    return out


def _is_union(hint: object) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _restore(hint: Any, value: Any, meta: object, where: str) -> Any:
    """Inverse of :func:`_plain` for a value of the annotated type ``hint``."""
    if _is_union(hint):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _restore(rest[0], value, meta, where)
        return value  # a union of scalars (Scalar): JSON values as they are
    origin = typing.get_origin(hint)
    if hint is Tensor:
        return _tensor_from(value, meta, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where} must be a list, got {describe(value)}")
        (elem, *_) = typing.get_args(hint)
        return tuple(_restore(elem, v, None, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise TypeError(f"{where} must be a mapping, got {describe(value)}")
        _, elem = typing.get_args(hint)
        return {str(k): _restore(elem, v, None, f"{where}[{k!r}]") for k, v in value.items()}
    if hint is AttackSpec:
        return AttackSpec.from_dict(value)
    if isinstance(hint, type) and issubclass(hint, _Result):
        return hint.from_dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class _Result:
    """Shared ``to_dict`` and ``from_dict`` for the result dataclasses."""

    def summary(self) -> dict[str, Scalar]:
        raise TypeError(f"{type(self).__name__} must define summary()")

    def to_dict(self) -> dict[str, Any]:
        """The summary plus every field as plain Python values (tensors become lists).

        Attack specs become their ``AttackSpec.to_dict()``; the dtype and shape of every
        tensor field are kept under ``"tensors"`` so that :meth:`from_dict` restores them.
        """
        out: dict[str, Any] = {"summary": self.summary()}
        meta: dict[str, dict[str, Any]] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = _plain(value)
            if isinstance(value, Tensor):
                meta[f.name] = {
                    "dtype": str(value.dtype).removeprefix("torch."),
                    "shape": list(value.shape),
                }
        out["tensors"] = meta
        return out

    @classmethod
    def from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
        """Rebuild a result from :meth:`to_dict` output (also after a JSON round trip).

        Tensors come back on the CPU with their recorded dtype and shape; ``summary`` is
        recomputed, not read.

        Raises:
            TypeError: ``data`` is not a mapping, or a field has the wrong kind of value.
            ValueError: a required field is missing or a key is unknown.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping from to_dict(), got {describe(data)}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names) - {"summary", "tensors"})
        if unknown:
            raise ValueError(
                f"data has unknown key(s) for {cls.__name__}: {', '.join(unknown)}; expected "
                f"some of: {', '.join(names)}"
            )
        meta = data.get("tensors") or {}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name not in data:
                continue  # a field added later: its default applies
            kwargs[f.name] = _restore(hints[f.name], data[f.name], meta.get(f.name), f.name)
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"data lacks field(s) of {cls.__name__}: {exc}") from None


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Finding(_Result):
    """One problem found by :func:`advrobust.metrics.sanity_check`.

    Attributes:
        id: short stable identifier (also the anchor of its docs section).
        title: one line.
        explanation: what was measured and what it usually means, with the fix.
        docs: link to the section of the evaluation-pitfalls guide.
        details: the numbers behind the finding.
    """

    id: str
    title: str
    explanation: str
    docs: str
    details: dict[str, Scalar] = field(default_factory=dict)

    def summary(self) -> dict[str, Scalar]:
        """Id and title."""
        return {"id": self.id, "title": self.title}

    def __str__(self) -> str:
        return f"[{self.id}] {self.title}\n  {self.explanation}\n  see {self.docs}"


@dataclass(frozen=True)
class SanityReport(_Result):
    """Findings of :func:`advrobust.metrics.sanity_check` (empty when every check passed).

    Attributes:
        findings: the problems found.
        checks: ids of the checks that ran.
        attacks: the specs of the attacks the checks ran (iterative, single-step, and the
            gradient-free attack when it ran).
    """

    findings: tuple[Finding, ...]
    checks: tuple[str, ...]
    attacks: tuple[AttackSpec, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no check raised a finding."""
        return not self.findings

    @property
    def ids(self) -> tuple[str, ...]:
        """Ids of the findings."""
        return tuple(f.id for f in self.findings)

    def summary(self) -> dict[str, Scalar]:
        """``ok``, the number of findings and their ids."""
        return {"ok": self.ok, "num_findings": len(self.findings), "findings": ",".join(self.ids)}

    def __str__(self) -> str:
        if self.ok:
            return f"sanity_check: no finding ({len(self.checks)} checks ran)"
        return "\n".join(str(f) for f in self.findings)


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
