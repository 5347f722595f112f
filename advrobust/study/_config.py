"""Study configuration: frozen, validated dataclasses with TOML and JSON round trips.

A study is one dataset, a list of nested subset sizes, a list of models, a list of training
recipes and an evaluation section. Every value is checked when the dataclass is built; an error
names the field of the config (``data.sizes``, ``models[1].name``, ``evaluation.deltas`` ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from advrobust._validate import (
    check_bool,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_real,
    check_str,
    describe,
)

__all__ = [
    "AUGMENTATIONS",
    "COMMON_SETS",
    "METRICS",
    "RECIPE_KINDS",
    "AttackSpec",
    "ConfigError",
    "DataSpec",
    "EvalSpec",
    "ModelSpec",
    "RecipeSpec",
    "StudyConfig",
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

_T = TypeVar("_T")
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")


class ConfigError(ValueError):
    """A study config value is invalid; ``field`` names the offending config field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


# --------------------------------------------------------------------------------------------
# the checks of advrobust._validate, raising ConfigError naming the config field


def _desc(value: object) -> str:
    return describe(value)


def _checked(check: Callable[..., _T], value: object, name: str, *args: Any, **kw: Any) -> _T:
    """Run a check of :mod:`advrobust._validate` and raise its error as a ConfigError."""
    try:
        return check(value, name, *args, **kw)
    except (TypeError, ValueError) as error:
        text = str(error)
        for prefix in (f"{name}: ", f"{name} "):
            if text.startswith(prefix):
                text = text[len(prefix) :]
                break
        raise ConfigError(name, text) from None


def _int(value: object, name: str, minimum: int | None = None) -> int:
    return _checked(check_int, value, name, minimum=minimum)


def _float(value: object, name: str, *, positive: bool = False, nonnegative: bool = False) -> float:
    check = check_positive if positive else check_nonnegative if nonnegative else check_real
    return _checked(check, value, name)


def _str(value: object, name: str) -> str:
    return _checked(check_str, value, name)


def _choice(value: object, name: str, choices: Sequence[str]) -> str:
    return _checked(check_choice, value, name, choices)


def _bool(value: object, name: str) -> bool:
    return _checked(check_bool, value, name)


def _plain(value: object, name: str) -> object:
    """Check a JSON/TOML-friendly value (no None, finite numbers) and return a tuple-free copy."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(name, f"must be finite, got {value}")
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return _kwargs(value, name)
    raise ConfigError(
        name,
        f"must be a number, string, bool, list or table (None is not allowed: leave the key "
        f"out instead), got {_desc(value)}",
    )


def _kwargs(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(name, f"must be a table/dict of keyword arguments, got {_desc(value)}")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ConfigError(name, f"keys must be strings, got {_desc(key)}")
        out[key] = _plain(item, f"{name}.{key}")
    return out


def _names(value: object, name: str, choices: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(name, f"must be a list of names, got {_desc(value)}")
    out = tuple(_choice(v, f"{name}[{i}]", choices) for i, v in enumerate(value))
    if len(set(out)) != len(out):
        raise ConfigError(name, f"contains duplicates: {list(out)}")
    return out


def _floats(value: object, name: str, *, positive: bool = True) -> tuple[float, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(name, f"must be a list of numbers, got {_desc(value)}")
    return tuple(_float(v, f"{name}[{i}]", positive=positive) for i, v in enumerate(value))


def _prefixed(prefix: str, error: ConfigError) -> ConfigError:
    new = ConfigError(f"{prefix}.{error.field}", str(error).split(": ", 1)[1])
    return new


def _build(cls: type[Any], data: object, name: str) -> Any:
    """Build a spec dataclass from a mapping, rejecting unknown keys and naming the field."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(name, f"must be a table/dict, got {_desc(data)}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"{name}.{unknown[0]}", f"unknown key; valid keys of {name}: {', '.join(names)}"
        )
    try:
        return cls.from_dict(data)
    except ConfigError as error:
        raise _prefixed(name, error) from None
    except TypeError as error:  # a missing required key
        raise ConfigError(name, str(error)) from None


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_strip_none(v) for v in value]
    return value


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


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

# the TrainConfig fields a study's ``training`` section sets directly
_TRAIN_FIELDS = (
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "checkpoint_every",
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


# --------------------------------------------------------------------------------------------


def _known_models() -> list[str] | None:
    try:
        from advrobust.models import list_models
    except ImportError:  # pragma: no cover - the models layer is part of the package
        return None
    return list(list_models())


def _known_datasets() -> list[str] | None:
    try:
        from advrobust.data import list_datasets
    except ImportError:  # pragma: no cover
        return None
    return list(list_datasets())


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: the grid (subset sizes x models x recipes) and what is measured.

    Build it in Python, or load it from TOML/JSON with :meth:`load` (or a shipped preset with
    :func:`advrobust.study.load_preset`). Every field is validated on construction and the error
    names the field.

    Args:
        name: the study's name (titles, default output folder).
        data: dataset and subsets, see :class:`DataSpec`.
        models: the architectures, see :class:`ModelSpec`.
        recipes: the training recipes, see :class:`RecipeSpec`.
        training: shared training settings, see :class:`TrainingSpec`.
        evaluation: metrics and attacks, see :class:`EvalSpec`.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1`` ...; not part of
            the study's identity, so a study may be resumed on another device (nor is
            ``data.root``, so it may be resumed on a machine that keeps the data elsewhere).
        threads: torch intra-op CPU threads while the study runs (None: torch's default).
            Small models on small batches run fastest with 1 thread per process; the previous
            setting is restored afterwards. Not part of the study's identity.
        seed: master seed; every cell derives its own seed from it and the cell's key, so a cell
            gives the same result in a full run and in any shard.
        description: free text (not part of the study's identity).

    Example:
        >>> cfg = StudyConfig(
        ...     name="tiny",
        ...     data=DataSpec(name="digits", sizes=(50, 100)),
        ...     models=(ModelSpec("mlp", {"hidden": 64}),),
        ... )
        >>> StudyConfig.from_toml(cfg.to_toml()) == cfg
        True
    """

    name: str
    data: DataSpec
    models: tuple[ModelSpec, ...]
    recipes: tuple[RecipeSpec, ...] = (RecipeSpec(),)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    evaluation: EvalSpec = field(default_factory=EvalSpec)
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    description: str = ""
    replicates: int = 1
    seeds: tuple[int, ...] | None = None
    paper: bool = False

    def __post_init__(self) -> None:
        _int(self.replicates, "replicates", minimum=1)
        if self.seeds is not None:
            seeds: object = self.seeds
            if isinstance(seeds, str) or not isinstance(seeds, Sequence) or not seeds:
                raise ConfigError(
                    "seeds", f"must be a non-empty list of integers, got {_desc(seeds)}"
                )
            seeds = tuple(_int(v, f"seeds[{i}]", minimum=0) for i, v in enumerate(seeds))
            if len(set(seeds)) != len(seeds):
                raise ConfigError("seeds", f"contains duplicates: {list(seeds)}")
            if self.replicates not in (1, len(seeds)):
                raise ConfigError(
                    "replicates",
                    f"is {self.replicates} but seeds lists {len(seeds)}; give one of them",
                )
            object.__setattr__(self, "seeds", seeds)
        _bool(self.paper, "paper")
        if not isinstance(self.name, str) or not _LABEL_RE.match(self.name):
            raise ConfigError(
                "name", f"must be a name of letters, digits and . _ + = -, got {self.name!r}"
            )
        object.__setattr__(self, "data", _build(DataSpec, self.data, "data"))
        object.__setattr__(self, "models", self._specs(ModelSpec, self.models, "models"))
        object.__setattr__(self, "recipes", self._specs(RecipeSpec, self.recipes, "recipes"))
        object.__setattr__(self, "training", _build(TrainingSpec, self.training, "training"))
        object.__setattr__(self, "evaluation", _build(EvalSpec, self.evaluation, "evaluation"))
        if not isinstance(self.device, str) or not re.match(
            r"^(auto|cpu|cuda(:\d+)?|mps)$", self.device
        ):
            raise ConfigError(
                "device", f"must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}"
            )
        if self.threads is not None:
            _int(self.threads, "threads", minimum=1)
        _int(self.seed, "seed", minimum=0)
        if not isinstance(self.description, str):
            raise ConfigError("description", f"must be a string, got {_desc(self.description)}")
        labels = [m.key for m in self.models]
        for i, label in enumerate(labels):
            if labels.index(label) != i:
                raise ConfigError(
                    f"models[{i}].label",
                    f"duplicate model label {label!r}; give models with the same name "
                    f"different labels",
                )
        names = [r.name for r in self.recipes]
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise ConfigError(f"recipes[{i}].name", f"duplicate recipe name {name!r}")
        known = _known_models()
        if known is not None:
            for i, m in enumerate(self.models):
                if m.name not in known:
                    raise ConfigError(
                        f"models[{i}].name",
                        f"unknown model {m.name!r}; registered models: {', '.join(known)}",
                    )
        datasets = _known_datasets()
        if datasets is not None and self.data.name not in datasets:
            raise ConfigError(
                "data.name",
                f"unknown dataset {self.data.name!r}; valid datasets: {', '.join(datasets)}",
            )
        if "transfer-matrix" in self.evaluation.metrics and len(self.models) < 2:
            raise ConfigError("evaluation.metrics", "transfer-matrix needs at least two models")

    @staticmethod
    def _specs(cls: type[Any], value: object, name: str) -> tuple[Any, ...]:
        if isinstance(value, str | Mapping) or not isinstance(value, Sequence) or not value:
            raise ConfigError(name, f"must be a non-empty list, got {_desc(value)}")
        return tuple(_build(cls, v, f"{name}[{i}]") for i, v in enumerate(value))

    @property
    def num_replicates(self) -> int:
        """How many times every cell is trained and evaluated (``len(seeds)`` or ``replicates``)."""
        return len(self.seeds) if self.seeds is not None else self.replicates

    # ---------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly nested dict (lists for tuples).

        Fields added after the first release are left out while they hold their defaults
        (``replicates = 1``, no ``seeds``, ``paper = false``, no ``evaluation.settings``), so
        configs and fingerprints of studies written before them are unchanged.
        """
        out: dict[str, Any] = _to_plain(self)
        for key, default in (("replicates", 1), ("seeds", None), ("paper", False)):
            if out.get(key) == default:
                out.pop(key)
        if not out["evaluation"].get("settings"):
            out["evaluation"].pop("settings", None)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyConfig:
        """Build from a nested mapping; unknown keys are errors naming the key."""
        if not isinstance(data, Mapping):
            raise ConfigError("config", f"must be a table/dict, got {_desc(data)}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(unknown[0], f"unknown key; valid top-level keys: {', '.join(names)}")
        for required in ("name", "data", "models"):
            if required not in data:
                raise ConfigError(required, "missing (required)")
        values = dict(data)
        if values.get("paper") is True:
            # the paper's procedures for every evaluation field the config leaves out
            evaluation = values.get("evaluation", {})
            if isinstance(evaluation, Mapping):
                values["evaluation"] = {**paper_evaluation(), **evaluation}
        return cls(**values)

    def to_json(self, *, indent: int | None = 2) -> str:
        """Serialise to JSON text."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> StudyConfig:
        """Parse JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError("config", f"invalid JSON: {error}") from None
        return cls.from_dict(data)

    def to_toml(self) -> str:
        """Serialise to TOML text (None values are left out, as TOML has no null)."""
        import tomli_w

        text: str = tomli_w.dumps(_strip_none(self.to_dict()))
        return text

    @classmethod
    def from_toml(cls, text: str) -> StudyConfig:
        """Parse TOML text."""
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10 (tomli is tomllib's backport)
            import tomli as tomllib
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError("config", f"invalid TOML: {error}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (``.toml`` or ``.json``) atomically."""
        from ._state import atomic_write_text

        path = Path(path)
        text = self.to_json() if path.suffix == ".json" else self.to_toml()
        if path.suffix not in (".json", ".toml"):
            raise ValueError(f"path must end in .toml or .json, got {str(path)!r}")
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> StudyConfig:
        """Read a ``.toml`` or ``.json`` study config."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"study config {str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            return cls.from_json(text)
        if path.suffix == ".toml":
            return cls.from_toml(text)
        raise ValueError(f"path must end in .toml or .json, got {str(path)!r}")

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with some top-level fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict[str, Any]:
        """The part of the config that defines the results.

        Not part of it: ``device``, ``threads``, ``description`` and ``data.root`` (where the
        dataset files are, which differs between machines but not the data).
        """
        out = self.to_dict()
        out.pop("device")
        out.pop("threads")
        out.pop("description")
        out.pop("paper", None)  # (the evaluation it chose is part of the identity)
        out["data"].pop("root")
        return out

    def fingerprint(self) -> str:
        """SHA-256 of :meth:`identity` in canonical JSON: equal iff the results would be equal."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def paper_evaluation() -> dict[str, Any]:
    """The papers' own evaluation procedures, which ``paper = true`` selects.

    Paper 000 ("How training data affect the accuracy and robustness of neural networks for
    image classification", ICLR 2019 submission), sec. 3: the Linf robustness is the smallest
    eps at which I-FGSM with T steps of eps/T succeeds (bisected), the L2 robustness the
    Carlini-Wagner L2 distance, and adversarial accuracy (eq. 5) I-FGSM at eps = Delta.
    """
    return {
        "linf_attack": {"name": "BIM", "kwargs": {"steps": 10, "rel_alpha": 0.1}},
        "l2_attack": {"name": "CWL2", "kwargs": {"steps": 100, "binary_search_steps": 6}},
        "delta_attack": {"name": "BIM", "kwargs": {"steps": 10, "rel_alpha": 0.1}},
    }


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the fields that differ between two config dicts."""
    out: list[str] = []
    keys = list(dict.fromkeys([*old, *new]))
    for key in keys:
        path = f"{prefix}.{key}" if prefix else str(key)
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(config_diff(a, b, path))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                if isinstance(x, Mapping) and isinstance(y, Mapping):
                    out.extend(config_diff(x, y, f"{path}[{i}]"))
                elif x != y:
                    out.append(f"{path}[{i}]: {x!r} -> {y!r}")
        elif a != b:
            out.append(f"{path}: {a!r} -> {b!r}")
    return out
