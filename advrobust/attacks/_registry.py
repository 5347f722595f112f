"""Attack specs and the attack registry.

Every attack class is registered under its class name (``"PGD"``, ``"CWL2"``, ...). The
registry builds attacks from a name and keyword arguments with the same strictness as the
model registry: an unknown name or keyword is an error that lists the valid ones. An attack
describes itself with an [`AttackSpec`][advrobust.attacks.AttackSpec] (its name, norm, whether it
is bounded or minimal-norm, whether it moves towards chosen classes, and its configuration), a
frozen record that round-trips through JSON and TOML and rebuilds the attack on any model.
Layers above the attacks read facts about an attack from its spec, never from a list of
names of their own.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

from torch import nn

from advrobust._validate import describe

if TYPE_CHECKING:
    from ._base import Attack

__all__ = [
    "KINDS",
    "AttackInfo",
    "AttackSpec",
    "attack_info",
    "create_attack",
    "list_attacks",
    "register_attack",
]

KINDS: Final = ("bounded", "minimal")
"""An attack is ``"bounded"`` (a fixed eps budget) or ``"minimal"`` (smallest perturbation)."""

_A = TypeVar("_A", bound="type[Attack]")


@dataclass(frozen=True)
class AttackInfo:
    """What the registry knows of an attack class.

    Attributes:
        name: The registry name (the class name).
        cls: The attack class.
        description: One line saying what the attack is.
        paper: The paper that introduced it (authors, title, venue, year).
    """

    name: str
    cls: type[Attack]
    description: str
    paper: str


_REGISTRY: dict[str, AttackInfo] = {}


def register_attack(*, description: str, paper: str = "") -> Callable[[_A], _A]:
    """Class decorator registering an [`Attack`][advrobust.attacks.Attack] under its class name.

    Args:
        description: One line saying what the attack is.
        paper: The paper that introduced it.

    Returns:
        The decorator; it returns the class unchanged.

    Raises:
        ValueError: If another attack of the same name (case-insensitively) is registered
            already. Re-importing the module that defines a registered class (a reload, or
            pytest collecting the file on its own) keeps the first entry.
    """

    def deco(cls: _A) -> _A:
        name = cls.__name__
        clash = _lookup(name)
        reimport = clash is not None and (clash.cls.__module__, clash.cls.__qualname__) == (
            cls.__module__,
            cls.__qualname__,
        )
        if reimport:
            return cls
        if clash is not None:
            raise ValueError(
                f"an attack named {clash.name!r} is registered already ({clash.cls.__module__}."
                f"{clash.cls.__qualname__}); choose another class name"
            )
        _REGISTRY[name] = AttackInfo(name=name, cls=cls, description=description, paper=paper)
        return cls

    return deco


def _lookup(name: str) -> AttackInfo | None:
    folded = name.casefold()
    for key, info in _REGISTRY.items():
        if key.casefold() == folded:
            return info
    return None


def attack_info(name: str) -> AttackInfo:
    """The registry record of the attack ``name`` (case-insensitive).

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: On an unknown name; the message lists the registered ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"attack name must be a str, got {describe(name)}")
    info = _lookup(name)
    if info is None:
        raise ValueError(
            f"unknown attack {name!r}; registered attacks: {', '.join(list_attacks())}"
        )
    return info


def list_attacks(pattern: str | None = None) -> list[str]:
    """The sorted names of the registered attacks, optionally filtered by a shell pattern.

    Args:
        pattern: An ``fnmatch`` pattern, matched case-insensitively (``"apgd*"``); ``None``
            lists every attack.

    Returns:
        The matching names, sorted.

    Example:
        >>> list_attacks("*GD")
        ['APGD', 'PGD']
    """
    if pattern is not None and not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str or None, got {describe(pattern)}")
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatch(n.casefold(), pattern.casefold())]


def create_attack(name: str, model: nn.Module, **kwargs: Any) -> Attack:
    """Build the registered attack ``name`` on ``model``.

    Args:
        name: A registered attack name, case-insensitive (see
            [`list_attacks`][advrobust.attacks.list_attacks]).
        model: The classifier to attack.
        **kwargs: Constructor arguments of the attack (e.g. ``eps=0.1, steps=20``).

    Returns:
        The attack.

    Raises:
        ValueError: On an unknown name (the message lists the registered ones), or a value
            the attack refuses.
        TypeError: On a keyword the attack does not take (the message lists those it takes).

    Example:
        >>> from torch import nn
        >>> atk = create_attack("pgd", nn.Linear(4, 3), eps=0.1, steps=5)
        >>> type(atk).__name__, atk.steps
        ('PGD', 5)
    """
    from ._base import _init_args

    info = attack_info(name)
    valid = _init_args(info.cls)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(
            f"attack {info.name!r} got unexpected keyword argument(s): {', '.join(unknown)}; "
            f"it takes: {', '.join(valid)}"
        )
    factory: Callable[..., Attack] = info.cls
    return factory(model, **kwargs)


def _jsonable(value: object, where: str) -> object:
    """``value`` as plain JSON data (tuples become lists); raise on anything else."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite to be written as a spec, got {value}")
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(
        f"{where} must be JSON data (number, string, bool, list), got {describe(value)}"
    )


@dataclass(frozen=True)
class AttackSpec:
    """A public, typed description of an attack: what every layer above the attacks reads.

    Attributes:
        name: The registry name (e.g. ``"PGD"``).
        norm: The norm the attack measures perturbations in: ``"linf"``, ``"l2"``, ``"l1"``
            or ``"l0"``.
        kind: ``"bounded"`` (a fixed eps budget; returns the best iterate inside the ball) or
            ``"minimal"`` (unbounded; returns the smallest adversarial perturbation found).
        targeted: True when an untargeted call moves towards classes the attack chooses
            (least-likely, random, the top-k runner-up classes), as StepLL, IterLL and APGDT do.
        config: The constructor arguments (without the model), JSON data.

    Example:
        >>> from torch import nn
        >>> from advrobust.attacks import PGD
        >>> spec = PGD(nn.Linear(4, 3), eps=0.1, steps=5).spec()
        >>> spec.name, spec.norm, spec.bounded, spec.eps
        ('PGD', 'linf', True, 0.1)
        >>> AttackSpec.from_json(spec.to_json()) == spec
        True
    """

    name: str
    norm: str
    kind: str
    targeted: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {describe(self.name)}")
        if self.norm not in ("linf", "l2", "l1", "l0"):
            raise ValueError(f"norm must be 'linf', 'l2', 'l1' or 'l0', got {self.norm!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.targeted, bool):
            raise TypeError(f"targeted must be a bool, got {describe(self.targeted)}")
        if not isinstance(self.config, Mapping):
            raise TypeError(f"config must be a mapping, got {describe(self.config)}")
        object.__setattr__(self, "config", _jsonable(dict(self.config), "config"))

    @property
    def bounded(self) -> bool:
        """True for fixed-eps attacks, False for minimal-norm (unbounded) ones."""
        return self.kind == "bounded"

    @property
    def eps(self) -> float | None:
        """The construction-time eps of a bounded attack, None for a minimal-norm one."""
        value = self.config.get("eps")
        return float(value) if self.bounded and value is not None else None

    def build(self, model: nn.Module) -> Attack:
        """The attack this spec describes, bound to ``model``."""
        cfg = dict(self.config)
        if isinstance(cfg.get("bounds"), list):
            cfg["bounds"] = tuple(cfg["bounds"])
        return create_attack(self.name, model, **cfg)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: ``{"name", "norm", "kind", "targeted", "config"}``."""
        return {
            "name": self.name,
            "norm": self.norm,
            "kind": self.kind,
            "targeted": self.targeted,
            "config": dict(self.config),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AttackSpec:
        """Inverse of [`to_dict`][advrobust.attacks.AttackSpec.to_dict]; unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise TypeError(f"an attack spec must be a mapping, got {describe(data)}")
        known = {"name", "norm", "kind", "targeted", "config", "unset"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown attack spec key(s): {', '.join(unknown)}; "
                f"expected: {', '.join(sorted(known))}"
            )
        missing = sorted({"name", "norm", "kind"} - set(data))
        if missing:
            raise ValueError(f"attack spec lacks key(s): {', '.join(missing)}")
        config = dict(data.get("config", {}))
        unset = data.get("unset", [])
        if not isinstance(unset, (list, tuple)) or not all(isinstance(k, str) for k in unset):
            raise TypeError(f"unset must be a list of setting names, got {describe(unset)}")
        config.update(dict.fromkeys(unset))
        return cls(
            name=data["name"],
            norm=data["norm"],
            kind=data["kind"],
            targeted=data.get("targeted", False),
            config=config,
        )

    def to_toml_dict(self) -> dict[str, Any]:
        """Data for a TOML writer: TOML has no null, so None settings are listed under ``unset``.

        [`from_dict`][advrobust.attacks.AttackSpec.from_dict] reads both forms back.
        """
        data = self.to_dict()
        config = data["config"]
        unset = sorted(k for k, v in config.items() if v is None)
        data["config"] = {k: v for k, v in config.items() if v is not None}
        if unset:
            data["unset"] = unset
        return data

    def to_json(self) -> str:
        """The spec as a JSON string (keys sorted)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AttackSpec:
        """Inverse of [`to_json`][advrobust.attacks.AttackSpec.to_json]."""
        return cls.from_dict(json.loads(text))

    def describe(self) -> str:
        """A one-line summary, e.g. ``PGD (linf, bounded, eps=0.1, steps=10)``."""
        keys = ("eps", "steps", "restarts", "loss", "queries")
        parts = [
            f"{k}={self.config[k]:.4g}"
            if isinstance(self.config[k], float)
            else f"{k}={self.config[k]}"
            for k in keys
            if self.config.get(k) is not None
        ]
        return f"{self.name} ({', '.join([self.norm, self.kind, *parts])})"
