"""The sections of a study config: frozen, validated dataclasses built from TOML/JSON tables.

Every value is checked when the dataclass is built; an error names the field of the config
(``data.sizes``, ``models[1].name``, ``evaluation.deltas`` ...).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._checks import (
    _LABEL_RE,
    ConfigError,
    _bool,
    _build,
    _choice,
    _desc,
    _float,
    _floats,
    _int,
    _kwargs,
    _names,
    _str,
)

__all__ = [
    "AUGMENTATIONS",
    "COMMON_SETS",
    "METRICS",
    "RECIPE_KINDS",
    "STUDY_TRAINING_DEFAULTS",
    "AttackSpec",
    "DataSpec",
    "EvalSpec",
    "ModelSpec",
    "RecipeSpec",
    "TrainingSpec",
]

#: The built-in evaluation tasks (``evaluation.metrics``); more are added with
#: :func:`advrobust.study.register_task`, and the config accepts every registered name.
METRICS: tuple[str, ...] = (
    "accuracy",
    "robustness-linf",
    "robustness-l2",
    "adversarial-accuracy",
    "transfer-matrix",
    "label-leak",
    "deepsec",
)
#: Training recipes (``recipes[i].kind``): clean training, Kurakin's mixed batch, PGD-AT (Madry).
RECIPE_KINDS: tuple[str, ...] = ("clean", "kurakin", "pgd-at")
#: Augmentations by name (``training.augmentation`` / ``models[i].augmentation``).
AUGMENTATIONS: tuple[str, ...] = ("shift", "flip", "rotation")
#: Sets X over which the robustness score (paper 000 eq. 4) is averaged.
COMMON_SETS: tuple[str, ...] = ("sizes", "models", "all")

# --------------------------------------------------------------------------------------------
# the spec dataclasses

_SpecT = TypeVar("_SpecT", bound="_Spec")


class _Spec:
    """Base of the section dataclasses: built from a mapping read from TOML/JSON."""

    @classmethod
    def from_dict(cls: type[_SpecT], data: Mapping[str, Any]) -> _SpecT:
        """Build from a mapping (as read from TOML/JSON); every value is validated."""
        return cls(**dict(data))


@dataclass(frozen=True)
class AttackSpec(_Spec):
    """An attack of the registry (:func:`advrobust.attacks.list_attacks`) in a study config.

    This is the config's reference to an attack (what to build); the results record the
    :class:`advrobust.attacks.AttackSpec` of the attack that actually ran.

    Args:
        name: a registered attack name (case-insensitive; stored as registered, e.g. ``BIM``).
        kwargs: constructor keyword arguments except the model (e.g. ``{"steps": 10}``).
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from advrobust.attacks import attack_info, list_attacks

        _str(self.name, "name")
        try:
            object.__setattr__(self, "name", attack_info(self.name).name)
        except ValueError:
            raise ConfigError(
                "name",
                f"unknown attack {self.name!r}; registered attacks: {', '.join(list_attacks())}",
            ) from None
        object.__setattr__(self, "kwargs", _kwargs(self.kwargs, "kwargs"))
        if "model" in self.kwargs:
            raise ConfigError("kwargs.model", "the model is supplied by the study, leave it out")


@dataclass(frozen=True)
class DataSpec(_Spec):
    """Dataset, nested subset sizes and the evaluation split.

    Args:
        name: dataset name of :func:`advrobust.data.load_dataset` (``digits`` needs no files).
        root: folder holding the dataset files (None: the loader's default).
        sizes: strictly increasing sizes of the nested balanced subsets S_1 ⊂ ... ⊂ S_n (total
            number of training examples, or examples per class when ``per_class`` is true).
        per_class: interpret ``sizes`` as per-class counts.
        seed: seed of the subset draw (the same subsets for every model and recipe).
        test_split: split used for evaluation.
    """

    name: str = "digits"
    root: str | None = None
    sizes: tuple[int, ...] = (100, 200, 400)
    per_class: bool = False
    seed: int = 0
    test_split: str = "test"

    def __post_init__(self) -> None:
        _str(self.name, "name")
        if self.root is not None:
            _str(self.root, "root")
        sizes: object = self.sizes
        if isinstance(sizes, str) or not isinstance(sizes, Sequence) or len(sizes) == 0:
            raise ConfigError("sizes", f"must be a non-empty list of integers, got {_desc(sizes)}")
        sizes = tuple(_int(s, f"sizes[{i}]", minimum=1) for i, s in enumerate(sizes))
        if any(b <= a for a, b in itertools.pairwise(sizes)):
            raise ConfigError(
                "sizes", f"must be strictly increasing (nested subsets), got {list(sizes)}"
            )
        object.__setattr__(self, "sizes", sizes)
        _bool(self.per_class, "per_class")
        _int(self.seed, "seed", minimum=0)
        _str(self.test_split, "test_split")


@dataclass(frozen=True)
class ModelSpec(_Spec):
    """One architecture of the grid.

    Args:
        name: registered model name (:func:`advrobust.models.list_models`).
        kwargs: extra keyword arguments of :func:`advrobust.models.create_model`
            (``width``, ``hidden``, ``depth`` ...).
        label: the model's name in tables, file names and legends (default: ``name`` plus
            the kwargs, e.g. ``simple-cnn-width=2``); must be unique within a study.
        normalize: prepend ``Normalize(mean, std)`` of the dataset as the first layer.
        augmentation: per-model augmentation overriding ``training.augmentation`` (paper 000's
            "ResNet+D" models); None means the training default.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    normalize: bool = True
    augmentation: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _str(self.name, "name")
        object.__setattr__(self, "kwargs", _kwargs(self.kwargs, "kwargs"))
        label = self.label
        if label is None:
            parts = [self.name] + [f"{k}={v}" for k, v in sorted(self.kwargs.items())]
            label = "-".join(parts)
            if self.augmentation:
                label += "+D"
        if not isinstance(label, str) or not _LABEL_RE.match(label):
            raise ConfigError(
                "label",
                f"must be a name of letters, digits and . _ + = - (it is used in file names), "
                f"got {label!r}",
            )
        object.__setattr__(self, "label", label)
        _bool(self.normalize, "normalize")
        if self.augmentation is not None:
            object.__setattr__(
                self, "augmentation", _names(self.augmentation, "augmentation", AUGMENTATIONS)
            )

    @property
    def key(self) -> str:
        """The model's unique label (never None after validation)."""
        assert self.label is not None  # set in __post_init__
        return self.label


@dataclass(frozen=True)
class RecipeSpec(_Spec):
    """A training recipe.

    Args:
        name: the recipe's name in tables and file names (e.g. ``clean``, ``kurakin-stepll``).
        kind: ``clean`` (k = 0), ``kurakin`` (mixed batch, k of m replaced, loss weighted by
            lambda, per-example random eps; Kurakin et al. 2016 algorithm 1) or ``pgd-at``
            (Madry / paper 004 PAT: k = m, lambda = 1, PGD eps 8/255, 10 steps of 2/255).
        settings: further :class:`advrobust.training.TrainConfig` fields for this recipe
            (``k``, ``fraction``, ``adv_weight``, ``attack``, ``eps``, ``delay`` ...); they
            override the defaults of ``kind``.
    """

    name: str = "clean"
    kind: str = "clean"
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _LABEL_RE.match(self.name):
            raise ConfigError(
                "name", f"must be a name of letters, digits and . _ + = -, got {self.name!r}"
            )
        _choice(self.kind, "kind", RECIPE_KINDS)
        object.__setattr__(self, "settings", _kwargs(self.settings, "settings"))


#: Where the study's training defaults differ from :class:`advrobust.training.TrainConfig`'s
#: (which are the ImageNet-scale recipes of the papers): small models trained for a few epochs
#: on small subsets train best with Adam at 1e-3 and no weight decay. Every other default is
#: read from ``TrainConfig`` itself, so there is one source of defaults.
STUDY_TRAINING_DEFAULTS: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}
#: A study's cells train for seconds to hours: a checkpoint every epoch (with its read-back and
#: SHA-256) cost a third of the digits preset's training time, so a study checkpoints at most
#: once a minute (a crash loses at most about a minute of a cell's training).
STUDY_TRAINING_DEFAULTS["checkpoint_seconds"] = 60.0

# the TrainConfig fields a study's ``training`` section sets directly
_TRAIN_FIELDS = (
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "checkpoint_every",
    "checkpoint_seconds",
)


def _train_default(name: str) -> Any:
    from advrobust.training import TrainConfig

    if name in STUDY_TRAINING_DEFAULTS:
        return STUDY_TRAINING_DEFAULTS[name]
    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)


def _train_error(error: Exception) -> ConfigError:
    """A :class:`TrainConfig` error as a ConfigError naming the field it is about."""
    text = str(error)
    for name in _TRAIN_FIELDS:
        if text.startswith(f"{name} "):
            return ConfigError(name, text[len(name) + 1 :])
    return ConfigError("settings", text)


@dataclass(frozen=True)
class TrainingSpec(_Spec):
    """Training settings shared by every recipe: the study's view of ``TrainConfig``.

    Each field is the :class:`advrobust.training.TrainConfig` field of the same name, with
    ``TrainConfig``'s default except where :data:`STUDY_TRAINING_DEFAULTS` says otherwise, and
    is validated by ``TrainConfig`` itself (errors name the field, e.g. ``training.epochs``).

    Args:
        epochs: passes over each training subset.
        batch_size: minibatch size m.
        optimizer: ``adam`` or ``sgd``.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        augmentation: names of on-device augmentations (``shift``, ``flip``, ``rotation``).
        checkpoint_every: write a resumable trainer checkpoint every this many epochs.
        checkpoint_seconds: but no sooner than this many seconds after the previous one (not
            part of the study's identity: it does not change results).
        settings: further :class:`advrobust.training.TrainConfig` fields for every recipe.
    """

    epochs: int = _train_default("epochs")
    batch_size: int = _train_default("batch_size")
    optimizer: str = _train_default("optimizer")
    lr: float = _train_default("lr")
    momentum: float = _train_default("momentum")
    weight_decay: float = _train_default("weight_decay")
    augmentation: tuple[str, ...] = ()
    checkpoint_every: int = _train_default("checkpoint_every")
    checkpoint_seconds: float = _train_default("checkpoint_seconds")
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from advrobust.training import TrainConfig

        try:
            TrainConfig.clean(**self.train_fields())
        except (TypeError, ValueError) as error:
            raise _train_error(error) from None
        _int(self.checkpoint_every, "checkpoint_every", minimum=1)
        object.__setattr__(
            self, "augmentation", _names(self.augmentation, "augmentation", AUGMENTATIONS)
        )
        object.__setattr__(self, "settings", _kwargs(self.settings, "settings"))

    def train_fields(self) -> dict[str, Any]:
        """The :class:`TrainConfig` fields this section sets (before settings and recipes)."""
        return {name: getattr(self, name) for name in _TRAIN_FIELDS}


def _default_ifgsm() -> AttackSpec:
    return AttackSpec("BIM", {"steps": 10, "rel_alpha": 0.1})


def _default_cw() -> AttackSpec:
    return AttackSpec("CWL2", {"steps": 100, "binary_search_steps": 6})


@dataclass(frozen=True)
class EvalSpec(_Spec):
    """What is measured on every trained model.

    Args:
        metrics: names from ``accuracy``, ``robustness-linf`` (I-FGSM minimal Linf distortion,
            robustness score of paper 000 eq. 4), ``robustness-l2`` (CW-L2 distortion, eq. 4),
            ``adversarial-accuracy`` (eq. 5 at each of ``deltas``), ``transfer-matrix``,
            ``label-leak`` and ``deepsec``.
        num_examples: size of the fixed, seeded sample of the test split used by the attack
            metrics (the same examples for every model).
        accuracy_examples: number of test examples for clean accuracy (None: the whole split).
        batch_size: evaluation batch size.
        common_set: the set X of eq. 4: ``sizes`` (paper 000: the examples that every subset
            size's model of one architecture and recipe classifies correctly), ``models`` (every
            model of one subset size and recipe) or ``all`` (every model of the study).
        linf_attack: the fixed-eps attack whose smallest successful eps is searched by bisection
            (I-FGSM with T steps of eps/T, paper 000 sec. 3.2).
        linf_max: upper end of the Linf search range.
        linf_tol: bisection tolerance.
        l2_attack: the unbounded L2 attack (Carlini-Wagner L2).
        deltas: the Delta thresholds of adversarial accuracy (eq. 5).
        delta_attack: attack run at eps = Delta for adversarial accuracy.
        transfer_attack: attack of the transfer matrix (Kurakin sec. 4.4).
        leak_eps: eps of the label-leak count (FGSM with true vs predicted labels).
        deepsec_attack: attack evaluated by the DeepSec attack metrics.
        robust_suite: when set (``fast`` or ``standard``), adversarial accuracy is
            :func:`advrobust.metrics.robust_accuracy` with that suite at eps = Delta, in the
            norm of ``delta_attack``, instead of eq. 5 with ``delta_attack`` alone.
        settings: settings of further evaluation tasks by task name (a table per task, e.g.
            ``[evaluation.settings.my-metric]``), read by tasks added with
            :func:`advrobust.study.register_task`.
    """

    metrics: tuple[str, ...] = (
        "accuracy",
        "robustness-linf",
        "robustness-l2",
        "adversarial-accuracy",
    )
    num_examples: int = 200
    accuracy_examples: int | None = None
    batch_size: int = 256
    common_set: str = "sizes"
    linf_attack: AttackSpec = field(default_factory=_default_ifgsm)
    linf_max: float = 1.0
    linf_tol: float = 1e-3
    l2_attack: AttackSpec = field(default_factory=_default_cw)
    deltas: tuple[float, ...] = (0.05, 0.1, 0.2)
    delta_attack: AttackSpec = field(default_factory=_default_ifgsm)
    transfer_attack: AttackSpec = field(default_factory=lambda: AttackSpec("FGSM", {"eps": 0.1}))
    leak_eps: float = 0.3
    deepsec_attack: AttackSpec = field(default_factory=lambda: AttackSpec("PGD", {"eps": 0.1}))
    settings: dict[str, Any] = field(default_factory=dict)
    robust_suite: str | None = None

    def __post_init__(self) -> None:
        from ._tasks import task_names

        tasks = task_names()
        object.__setattr__(self, "metrics", _names(self.metrics, "metrics", tasks))
        if not self.metrics:
            raise ConfigError("metrics", f"must name at least one of {', '.join(tasks)}")
        settings = _kwargs(self.settings, "settings")
        for name, value in settings.items():
            _choice(name, f"settings.{name}", tasks)
            _kwargs(value, f"settings.{name}")
        object.__setattr__(self, "settings", settings)
        _int(self.num_examples, "num_examples", minimum=1)
        if self.accuracy_examples is not None:
            _int(self.accuracy_examples, "accuracy_examples", minimum=1)
        _int(self.batch_size, "batch_size", minimum=1)
        _choice(self.common_set, "common_set", COMMON_SETS)
        for name in ("linf_attack", "l2_attack", "delta_attack", "transfer_attack"):
            object.__setattr__(self, name, _build(AttackSpec, getattr(self, name), name))
        object.__setattr__(
            self, "deepsec_attack", _build(AttackSpec, self.deepsec_attack, "deepsec_attack")
        )
        _float(self.linf_max, "linf_max", positive=True)
        _float(self.linf_tol, "linf_tol", positive=True)
        if self.linf_tol >= self.linf_max:
            raise ConfigError("linf_tol", f"must be below linf_max={self.linf_max}")
        object.__setattr__(self, "deltas", _floats(self.deltas, "deltas"))
        if "adversarial-accuracy" in self.metrics and not self.deltas:
            raise ConfigError("deltas", "adversarial-accuracy needs at least one Delta")
        _float(self.leak_eps, "leak_eps", positive=True)
        if self.robust_suite is not None:
            _choice(self.robust_suite, "robust_suite", ("fast", "standard"))
