"""Study configuration: the whole study, validated, with TOML and JSON round trips.

A study is one dataset, a list of nested subset sizes, a list of models, a list of training
recipes and an evaluation section. Every value is checked when the dataclass is built; an error
names the field of the config (``data.sizes``, ``models[1].name``, ``evaluation.deltas`` ...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._checks import _LABEL_RE, ConfigError, _bool, _build, _desc, _int, _strip_none, _to_plain
from ._specs import AUGMENTATIONS as AUGMENTATIONS
from ._specs import COMMON_SETS as COMMON_SETS
from ._specs import METRICS as METRICS
from ._specs import RECIPE_KINDS as RECIPE_KINDS
from ._specs import STUDY_TRAINING_DEFAULTS as STUDY_TRAINING_DEFAULTS
from ._specs import AttackSpec as AttackSpec
from ._specs import DataSpec as DataSpec
from ._specs import EvalSpec as EvalSpec
from ._specs import ModelSpec as ModelSpec
from ._specs import RecipeSpec as RecipeSpec
from ._specs import TrainingSpec as TrainingSpec

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
        jobs: cells run at the same time, each in its own worker process (``1``: one after
            the other in this process; ``"auto"``: one per CPU core, ``threads`` cores each,
            on the CPU, and 1 on an accelerator). Every cell draws from its own seeds, so the
            results are the same for any ``jobs``; not part of the study's identity.
        seed: master seed; every cell derives its own seed from it and the cell's key, so a cell
            gives the same result in a full run and in any shard.
        description: free text (not part of the study's identity).
        replicates: train and evaluate every cell this many times with independent seeds (a
            grid dimension: cell keys end in ``-r0``, ``-r1`` ...; the data subsets and the
            evaluation sample stay the same, so replicates measure training noise).
        seeds: the master seed of each replicate instead of ``replicates`` (one replicate per
            seed).
        paper: which procedures fill the evaluation fields the config leaves out when read
            from TOML/JSON: ``true`` the papers' own (:func:`paper_evaluation`: I-FGSM with T
            steps of eps/T bisected, CW-L2, eq. 5 with I-FGSM), ``false`` the state of the art
            (:func:`modern_evaluation`: minimal-norm attacks and the
            :func:`advrobust.metrics.robust_accuracy` ensemble); left out, :class:`EvalSpec`'s
            defaults.

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
    jobs: int | str = 1
    seed: int = 0
    description: str = ""
    replicates: int = 1
    seeds: tuple[int, ...] | None = None
    paper: bool | None = None

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
        if self.paper is not None:
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
        if self.jobs != "auto":
            if isinstance(self.jobs, str):
                raise ConfigError("jobs", f"must be an integer >= 1 or 'auto', got {self.jobs!r}")
            _int(self.jobs, "jobs", minimum=1)
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
        (``replicates = 1``, ``jobs = 1``, no ``seeds``, no ``paper``, no
        ``evaluation.settings``, no ``evaluation.robust_suite``), so configs and fingerprints of
        studies written before them are unchanged.
        """
        out: dict[str, Any] = _to_plain(self)
        for key, default in (("replicates", 1), ("seeds", None), ("paper", None), ("jobs", 1)):
            if out.get(key) == default:
                out.pop(key)
        for key in ("settings", "robust_suite"):
            if not out["evaluation"].get(key):
                out["evaluation"].pop(key, None)
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
        if isinstance(values.get("paper"), bool):
            # every evaluation procedure the config leaves out: the papers' (paper = true) or
            # the state of the art (paper = false); without the key, EvalSpec's defaults
            procedures = paper_evaluation() if values["paper"] else modern_evaluation()
            evaluation = values.get("evaluation", {})
            if isinstance(evaluation, Mapping):
                values["evaluation"] = {**procedures, **evaluation}
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

        Not part of it: ``device``, ``threads``, ``jobs``, ``description``, ``data.root`` (where the
        dataset files are, which differs between machines but not the data) and
        ``training.checkpoint_seconds`` (how often a cell's training is checkpointed).
        """
        out = self.to_dict()
        out.pop("device")
        out.pop("threads")
        out.pop("jobs", None)
        out.pop("description")
        out.pop("paper", None)  # (the evaluation it chose is part of the identity)
        out["data"].pop("root")
        out["training"].pop("checkpoint_seconds", None)
        return out

    def fingerprint(self) -> str:
        """SHA-256 of :meth:`identity` in canonical JSON: equal iff the results would be equal."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def paper_evaluation() -> dict[str, Any]:
    """The papers' own evaluation procedures, which ``paper = true`` selects.

    They fill the evaluation fields a config leaves out (a field the config sets wins).

    Paper 000 ("How training data affect the accuracy and robustness of neural networks for
    image classification", ICLR 2019 submission), sec. 3: the Linf robustness is the smallest
    eps at which I-FGSM with T steps of eps/T succeeds (bisected), the L2 robustness the
    Carlini-Wagner L2 distance, and adversarial accuracy (eq. 5) I-FGSM at eps = Delta.
    """
    return {
        "linf_attack": {"name": "BIM", "kwargs": {"steps": 10, "rel_alpha": 0.1}},
        # Adam at 0.05 for 5 x 50 steps: the digits preset's CW-L2 before the minimal-norm
        # attacks (at CWL2's defaults of 0.01 some examples stay unbroken in 100 steps)
        "l2_attack": {
            "name": "CWL2",
            "kwargs": {"steps": 50, "binary_search_steps": 5, "lr": 0.05},
        },
        "delta_attack": {"name": "BIM", "kwargs": {"steps": 10, "rel_alpha": 0.1}},
        "robust_suite": None,
    }


def modern_evaluation() -> dict[str, Any]:
    """The state-of-the-art evaluation procedures, which ``paper = false`` selects.

    They fill the evaluation fields a config leaves out (a field the config sets wins):
    minimal-norm attacks for the Linf and L2 robustness (FMN-Linf; DDN for L2, which found
    smaller L2 distances than ALMA and FMN-L2 at 100 steps on the digits preset's models, at
    the same cost) and the AutoAttack-style ensemble of
    :func:`advrobust.metrics.robust_accuracy` for adversarial accuracy (suite ``fast``:
    APGD-CE and APGD-T, for speed; set ``evaluation.robust_suite = "standard"`` for
    AutoAttack's standard version).
    """
    return {
        "linf_attack": {"name": "FMN", "kwargs": {"norm": "linf", "steps": 100}},
        "l2_attack": {"name": "DDN", "kwargs": {"steps": 100}},
        "delta_attack": {"name": "BIM", "kwargs": {"steps": 10, "rel_alpha": 0.1}},
        "robust_suite": "fast",
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
