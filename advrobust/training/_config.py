"""The frozen, validated, JSON round-trippable configuration of :class:`AdversarialTrainer`."""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping
from typing import Any

from .._validate import check_int, check_nonnegative, check_positive, check_probability, describe
from ._eps import EpsSampler, eps_sampler_from_spec
from ._select import num_replaced

__all__ = ["TrainConfig", "attack_names"]

_OPTIMIZERS = ("sgd", "adam")
_SCHEDULERS = ("cosine", "step", "multistep")
_AMP = ("none", "bf16", "fp16")
_LABELS = ("true", "predicted")
_SELECTION = ("first", "random")
KURAKIN_FRACTION = 0.5  # k = 16 of m = 32 (Kurakin et al. 2017, sec. 3 and appendix E)


def attack_names() -> list[str]:
    """Names of the attacks a spec may use (the concrete attack classes of advrobust.attacks)."""
    from .. import attacks

    base = getattr(attacks, "Attack", None)
    names = []
    for name in getattr(attacks, "__all__", []):
        obj = getattr(attacks, name, None)
        if isinstance(obj, type) and base is not None and issubclass(obj, base) and obj is not base:
            if name in ("IterativeGradientAttack",):
                continue
            names.append(name)
    return sorted(names)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return types.MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _check_json(value: Any, name: str) -> Any:
    """Deep-copy ``value`` through JSON, so that only JSON-friendly specs are accepted."""
    try:
        text = json.dumps(_thaw(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be JSON-serialisable (numbers, strings, lists, dicts): {exc}"
        ) from None
    return json.loads(text)


def _check_spec(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping like {{'name': ...}}, got {describe(value)}")
    spec = _check_json(value, name)
    if not isinstance(spec.get("name"), str):
        raise ValueError(f"{name} must have a string 'name' entry, got {describe(dict(value))}")
    return dict(spec)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Configuration of adversarial training (Kurakin et al. 2017, algorithm 1; Madry et al. 2018).

    Every field is validated on construction (errors name the field), the instance is immutable
    (spec fields are read-only mappings), and ``TrainConfig.from_json(c.to_json()) == c``.
    The defaults are Kurakin's recipe: step l.l. examples replacing half of every minibatch
    (``k = 16`` of ``m = 32``), ``lambda = 0.3`` and per-example ``eps`` from
    ``|N(0, 8/255)|`` truncated at ``16/255``.

    Attributes:
        epochs: number of epochs :meth:`AdversarialTrainer.fit` trains in total (>= 1).
        batch_size: minibatch size ``m`` per process, used when the trainer builds the loader
            from tensors (with DDP the global batch is ``world_size * batch_size``).
        optimizer: ``"sgd"`` or ``"adam"``.
        lr: learning rate (> 0).
        momentum: SGD momentum (>= 0; ignored by Adam).
        weight_decay: L2 weight decay (>= 0).
        nesterov: Nesterov momentum for SGD (needs ``momentum > 0``).
        scheduler: None, or ``{"name": "cosine"}`` (cosine annealing to 0 over ``epochs``),
            ``{"name": "step", "step_size": int, "gamma": float}`` or
            ``{"name": "multistep", "milestones": [int, ...], "gamma": float}``; stepped once per
            epoch. ``"none"`` is accepted and stored as None.
        attack: the attack that makes training examples, ``{"name": "StepLL", **kwargs}``, where
            ``name`` is a class of :mod:`advrobust.attacks` and ``kwargs`` its constructor
            arguments (``eps`` there is only the default: the eps sampler sets it per example).
        k: number of replaced examples per batch (int); give ``k`` or ``fraction``, not both.
        fraction: share of each batch replaced, ``k = round(fraction * m)``; when both ``k`` and
            ``fraction`` are None the fraction is 0.5 (Kurakin: 16 of 32).
        adv_weight: ``lambda >= 0`` of :func:`mixed_batch_loss` (paper: 0.3).
        eps: eps sampler spec, ``{"name": "truncated_normal", "std": ..., "max": ...}``,
            ``{"name": "uniform", "lo": ..., "hi": ...}`` or ``{"name": "fixed", "eps": ...}``
            (an :class:`EpsSampler` instance is accepted and stored as its spec).
        selection: ``"first"`` (the first ``k`` of each shuffled batch, as in algorithm 1) or
            ``"random"``.
        delay: number of initial optimisation steps with clean batches only (paper: 10k).
        attack_labels: ``"true"`` (the attack sees the true labels) or ``"predicted"`` (it
            uses the model's predictions, which avoids label leaking, Kurakin et al. 2017 sec. 4.2).
        grad_clip: max global gradient L2 norm, or None for no clipping.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"``: ``torch.autocast`` for the training forward
            pass. fp16 needs CUDA and uses a GradScaler; bf16 works on CUDA and on the CPU.
            Attacks always run in the input dtype.
        seed: seed of the trainer's generators (data order, selection, eps, attack randomness).
        checkpoint_every: write ``last.pt`` every this many epochs (0: only on demand, at the
            end of :meth:`AdversarialTrainer.fit` and on Ctrl-C).
        checkpoint_seconds: a checkpoint due by ``checkpoint_every`` is skipped while fewer
            than this many seconds (wall clock) have passed since the last one was written, or
            since :meth:`AdversarialTrainer.fit` started (0: never skipped). Bounds the work a
            crash loses to about this long, without paying a checkpoint per epoch on short
            epochs; the end of ``fit`` and Ctrl-C always write one. Does not change results.
        log_every: host synchronisations (progress bar figures, the non-finite loss check)
            every this many steps.
    """

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    scheduler: Mapping[str, Any] | None = None
    attack: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"name": "StepLL"})
    k: int | None = None
    fraction: float | None = None
    adv_weight: float = 0.3
    eps: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {"name": "truncated_normal", "std": 8 / 255, "max": 16 / 255}
    )
    selection: str = "first"
    delay: int = 0
    attack_labels: str = "true"
    grad_clip: float | None = None
    amp: str = "none"
    seed: int = 0
    checkpoint_every: int = 1
    checkpoint_seconds: float = 0.0
    log_every: int = 10

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        check_int(self.epochs, "epochs", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        set_(self, "lr", check_positive(self.lr, "lr"))
        set_(self, "momentum", check_nonnegative(self.momentum, "momentum"))
        set_(self, "weight_decay", check_nonnegative(self.weight_decay, "weight_decay"))
        if not isinstance(self.nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {describe(self.nesterov)}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov=True needs optimizer='sgd' and momentum > 0")
        set_(self, "scheduler", self._check_scheduler(self.scheduler))
        attack = _check_spec(self.attack, "attack")
        names = attack_names()
        if names and attack["name"] not in names:
            raise ValueError(f"attack['name'] must be one of {names}, got {attack['name']!r}")
        set_(self, "attack", _freeze(attack))
        if self.k is not None and self.fraction is not None:
            raise ValueError(
                f"give k or fraction, not both (got k={self.k!r}, fraction={self.fraction!r})"
            )
        if self.k is not None:
            check_int(self.k, "k", minimum=0)
        if self.fraction is not None:
            set_(self, "fraction", check_probability(self.fraction, "fraction"))
        set_(self, "adv_weight", check_nonnegative(self.adv_weight, "adv_weight"))
        if self.adv_weight == 0 and (self.k == self.batch_size or self.fraction == 1.0):
            raise ValueError(
                "adv_weight must be > 0 when every example is replaced (k = m): the mixed-batch "
                "loss 1/((m-k) + adv_weight*k) is undefined"
            )
        eps = self.eps.spec() if isinstance(self.eps, EpsSampler) else self.eps
        spec = eps_sampler_from_spec(_check_spec(eps, "eps"), name="eps").spec()
        set_(self, "eps", _freeze(spec))
        if self.selection not in _SELECTION:
            raise ValueError(f"selection must be one of {_SELECTION}, got {self.selection!r}")
        check_int(self.delay, "delay", minimum=0)
        if self.attack_labels not in _LABELS:
            raise ValueError(f"attack_labels must be one of {_LABELS}, got {self.attack_labels!r}")
        if self.grad_clip is not None:
            set_(self, "grad_clip", check_positive(self.grad_clip, "grad_clip"))
        if self.amp not in _AMP:
            raise ValueError(f"amp must be one of {_AMP}, got {self.amp!r}")
        check_int(self.seed, "seed", minimum=0)
        check_int(self.checkpoint_every, "checkpoint_every", minimum=0)
        set_(
            self,
            "checkpoint_seconds",
            check_nonnegative(self.checkpoint_seconds, "checkpoint_seconds"),
        )
        check_int(self.log_every, "log_every", minimum=1)

    @staticmethod
    def _check_scheduler(value: Any) -> Any:
        if value is None or value == "none":
            return None
        spec = _check_spec(value, "scheduler")
        name = spec["name"]
        if name == "none":
            return None
        if name not in _SCHEDULERS:
            raise ValueError(
                f"scheduler['name'] must be one of {(*_SCHEDULERS, 'none')}, got {name!r}"
            )
        allowed = {
            "cosine": {"eta_min"},
            "step": {"step_size", "gamma"},
            "multistep": {"milestones", "gamma"},
        }[name]
        extra = set(spec) - allowed - {"name"}
        if extra:
            raise TypeError(
                f"scheduler {name!r} got unexpected parameter(s) {sorted(extra)}; allowed: "
                f"{sorted(allowed)}"
            )
        if "gamma" in spec:
            check_positive(spec["gamma"], "scheduler['gamma']")
        if "eta_min" in spec:
            check_nonnegative(spec["eta_min"], "scheduler['eta_min']")
        if name == "step":
            check_int(spec.get("step_size"), "scheduler['step_size']", minimum=1)
        if name == "multistep":
            ms = spec.get("milestones")
            if not isinstance(ms, list) or not ms:
                raise ValueError(
                    f"scheduler['milestones'] must be a non-empty list of ints, got {ms!r}"
                )
            for m in ms:
                check_int(m, "scheduler['milestones'][i]", minimum=1)
        return _freeze(spec)

    # ------------------------------------------------------------------ derived values
    @property
    def replaced_fraction(self) -> float | None:
        """The fraction replaced per batch, or None when ``k`` is given as an int."""
        if self.k is not None:
            return None
        return KURAKIN_FRACTION if self.fraction is None else self.fraction

    def num_replaced(self, batch_size: int) -> int:
        """``k`` for a batch of ``batch_size`` (``ValueError`` naming ``k`` if it exceeds it)."""
        if self.k is not None:
            return num_replaced(batch_size, k=self.k)
        return num_replaced(batch_size, fraction=self.replaced_fraction)

    def eps_sampler(self) -> EpsSampler:
        """The eps sampler described by :attr:`eps`."""
        return eps_sampler_from_spec(_thaw(self.eps))

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-friendly dict of every field."""
        return {f.name: _thaw(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``TypeError`` naming them."""
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping, got {describe(data)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TypeError(f"TrainConfig got unknown field(s): {', '.join(unknown)}")
        return cls(**dict(data))

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"text is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def __hash__(self) -> int:
        return hash(self.to_json(indent=None))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"TrainConfig({args})"

    # ------------------------------------------------------------------ presets
    @classmethod
    def kurakin(cls, **changes: Any) -> TrainConfig:
        """Kurakin's mixed-batch recipe (Kurakin et al. 2017): step l.l., 16 of 32, lambda 0.3.

        Per-example eps from the truncated normal (std 8/255, max 16/255). ``changes`` override
        any field.
        """
        base: dict[str, Any] = {
            "batch_size": 32,
            "attack": {"name": "StepLL"},
            "fraction": KURAKIN_FRACTION,
            "adv_weight": 0.3,
            "eps": {"name": "truncated_normal", "std": 8 / 255, "max": 16 / 255},
        }
        if "k" in changes:
            base.pop("fraction")
        base.update(changes)
        return cls(**base)

    @classmethod
    def pgd_at(cls, **changes: Any) -> TrainConfig:
        """Madry's PGD adversarial training (PAT of Marchetti & Ho 2022): all examples replaced.

        ``lambda = 1``, PGD with eps 8/255, 10 steps of 2/255 with a random start, and a fixed
        eps of 8/255 for every example. ``changes`` override any field.
        """
        base: dict[str, Any] = {
            "attack": {"name": "PGD", "eps": 8 / 255, "alpha": 2 / 255, "steps": 10},
            "fraction": 1.0,
            "adv_weight": 1.0,
            "eps": {"name": "fixed", "eps": 8 / 255},
        }
        if "k" in changes:
            base.pop("fraction")
        base.update(changes)
        return cls(**base)

    @classmethod
    def clean(cls, **changes: Any) -> TrainConfig:
        """Standard training (k = 0): no adversarial examples. ``changes`` override any field."""
        base: dict[str, Any] = {"fraction": 0.0}
        if "k" in changes:
            base.pop("fraction")
        base.update(changes)
        return cls(**base)
