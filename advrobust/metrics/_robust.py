"""Robust accuracy at a fixed eps under an ensemble of attacks (AutoAttack's bookkeeping).

The attacks of a suite run in sequence; each one runs only on the examples that are still
robust, and an example, once broken, stays broken with the adversarial input that broke it
(the per-example worst case over the suite). The suites follow AutoAttack's standard and
fast versions (Croce and Hein, "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", ICML 2020) and are plain data: registry names
and constructor settings, built with :func:`advrobust.attacks.create_attack`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

import torch
from torch import Tensor, nn

from advrobust.attacks import lp_norm

from .._validate import check_bounds, check_positive, describe
from ..attacks import Attack, AttackSpec, attack_info, create_attack
from ._loop import (
    Batch,
    as_run,
    bind_attack,
    check_model,
    evaluate,
    is_minimal,
    predict_checked,
)
from ._results_robust import AttackBreakdown, RobustAccuracyResult

__all__ = ["ATTACK_SUITES", "SuiteEntry", "build_suite", "robust_accuracy"]

NORMS: Final = ("linf", "l2", "l1")

# A perturbation counts as inside the eps-ball when its norm is at most eps * (1 + _REL) + _ABS
# (attacks clip to the ball "within float tolerance"; minimal-norm attacks are not clipped).
_REL = 1e-5
_ABS = 1e-6


@dataclass(frozen=True)
class SuiteEntry:
    """One attack of a suite: a registry name and constructor settings.

    ``eps``, ``norm`` and ``bounds`` of the evaluation are passed to every attack whose
    constructor takes them; ``settings`` holds the rest.

    Attributes:
        name: The attack's registry name (see :func:`advrobust.attacks.list_attacks`).
        settings: Constructor arguments other than eps, norm and bounds.
    """

    name: str
    settings: Mapping[str, Any] = field(default_factory=dict)


ATTACK_SUITES: Final[Mapping[str, tuple[SuiteEntry, ...]]] = {
    # AutoAttack's standard version: APGD on the cross-entropy; targeted APGD on the DLR loss
    # towards each of the 9 runner-up classes; targeted FAB towards the same 9 classes; the
    # gradient-free Square attack with 5,000 queries. 100 steps and one restart each.
    "standard": (
        SuiteEntry("APGD", {"loss": "ce", "steps": 100, "restarts": 1}),
        SuiteEntry("APGDT", {"steps": 100, "restarts": 1, "n_target_classes": 9}),
        SuiteEntry("FAB", {"targeted": True, "steps": 100, "restarts": 1, "n_target_classes": 9}),
        SuiteEntry("Square", {"queries": 5000, "restarts": 1}),
    ),
    # The two APGD attacks only: AutoAttack's cheaper first look.
    "fast": (
        SuiteEntry("APGD", {"loss": "ce", "steps": 100, "restarts": 1}),
        SuiteEntry("APGDT", {"steps": 100, "restarts": 1, "n_target_classes": 9}),
    ),
}
"""The named suites: ``"standard"`` and ``"fast"``, each a tuple of :class:`SuiteEntry`."""


def _takes(name: str) -> set[str]:
    """The constructor arguments of the registered attack ``name``."""
    params = inspect.signature(attack_info(name).cls.__init__).parameters
    return set(params) - {"self", "model"}


def build_suite(
    suite: str | Sequence[object],
    model: nn.Module,
    *,
    eps: float,
    norm: str = "linf",
    bounds: tuple[float, float] = (0.0, 1.0),
) -> tuple[list[Attack], str]:
    """The attacks of ``suite`` bound to ``model``, and the suite's name.

    A named suite is built from :data:`ATTACK_SUITES` with ``create_attack``, passing
    ``eps``, ``norm`` and ``bounds`` to each attack that takes them. A sequence may hold
    attacks (re-bound to ``model``) and attack specs (built on ``model``); bounded ones are
    rebuilt with ``eps`` (``attack.replace(eps=eps)``), and every one must measure
    perturbations in ``norm``.

    Raises:
        TypeError: ``suite`` is neither a suite name nor a sequence of attacks or specs.
        ValueError: an unknown suite name, an empty sequence, an attack in another norm, or
            a suite attack that is not registered (the message names it).
    """
    if isinstance(suite, str):
        if suite not in ATTACK_SUITES:
            raise ValueError(
                f"suite must be one of {sorted(ATTACK_SUITES)} or a list of attacks, got {suite!r}"
            )
        attacks: list[Attack] = []
        for entry in ATTACK_SUITES[suite]:
            try:
                takes = _takes(entry.name)
            except ValueError as exc:
                raise ValueError(
                    f"suite {suite!r} needs the attack {entry.name!r}, which is not "
                    f"registered: {exc}"
                ) from None
            given = {"eps": eps, "norm": norm, "bounds": bounds}
            kwargs = {k: v for k, v in given.items() if k in takes}
            kwargs.update(entry.settings)
            try:
                attacks.append(create_attack(entry.name, model, **kwargs))
            except (TypeError, ValueError) as exc:
                raise type(exc)(
                    f"suite {suite!r} could not build {entry.name} with norm={norm!r}, "
                    f"eps={eps}: {exc}"
                ) from None
        return attacks, suite
    if not isinstance(suite, Sequence) or isinstance(suite, (bytes, Mapping)):
        raise TypeError(
            f"suite must be a suite name ({', '.join(map(repr, ATTACK_SUITES))}) or a list of "
            f"attacks, got {describe(suite)}"
        )
    if not suite:
        raise ValueError("suite is empty: pass at least one attack")
    out: list[Attack] = []
    for i, item in enumerate(suite):
        if isinstance(item, AttackSpec):
            atk = item.build(model)
        elif isinstance(item, Attack):
            atk = bind_attack(item, model, f"suite[{i}]")
        else:
            raise TypeError(
                f"suite[{i}] must be an advrobust.attacks.Attack or an AttackSpec, got "
                f"{describe(item)}"
            )
        spec_norm = atk.spec().norm
        if spec_norm != norm:
            raise ValueError(
                f"suite[{i}] ({atk.spec().name}) measures perturbations in {spec_norm!r} but "
                f"the evaluation's norm is {norm!r}"
            )
        out.append(as_run(atk, eps))
    return out, "custom"


class PassCounter:
    """Counts the forward and backward passes through a model, in examples, with hooks.

    A forward hook on the model adds the batch size of every call; when the output takes
    part in autograd, a gradient hook on it adds the batch size again when a backward pass
    reaches it. The hooks are removed on exit. Counting is host-side integer arithmetic on
    shapes, with no synchronisation.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.forwards = 0
        self.backwards = 0
        self._handle: Any = None

    def _on_forward(self, module: nn.Module, args: object, output: object) -> None:
        if not isinstance(output, Tensor):
            return
        n = int(output.shape[0]) if output.dim() else 1
        self.forwards += n
        if output.requires_grad:
            output.register_hook(self._on_backward(n))  # type: ignore[no-untyped-call]

    def _on_backward(self, n: int) -> Callable[[Tensor], None]:
        def hook(grad: Tensor) -> None:
            self.backwards += n

        return hook

    def __enter__(self) -> PassCounter:
        self._handle = self.model.register_forward_hook(self._on_forward)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def robust_accuracy(
    model: nn.Module,
    data: object,
    eps: float,
    *,
    norm: str = "linf",
    suite: str | Sequence[object] = "standard",
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> RobustAccuracyResult:
    """Robust accuracy at radius ``eps`` under an ensemble of attacks, AutoAttack style.

    The attacks of the suite run one after the other, each only on the examples still
    robust: an example counts as robust when the model classifies it correctly and no attack
    of the suite found an input within ``eps`` (in ``norm``) that the model misclassifies.
    Once broken, an example stays broken, with the adversarial input that broke it in
    ``x_adv``. Clean inputs the model already misclassifies count as not robust, as in
    AutoAttack, so ``value <= clean_accuracy``. Minimal-norm attacks in a suite
    (``spec().kind == "minimal"``) break an example only when their perturbation is within
    ``eps``.

    Suites (:data:`ATTACK_SUITES`):

    - ``"standard"``: APGD-CE, APGD-T (DLR loss, 9 target classes), FAB-T and Square with
      5,000 queries: AutoAttack's standard version (Linf and L2: Square has no L1 version).
    - ``"fast"``: APGD-CE and APGD-T.
    - a list of attacks or attack specs, run in the order given.

    The forward and backward passes of the whole evaluation are counted with hooks on the
    model (see :class:`PassCounter`): a forward hook adds the batch size of every call, a
    gradient hook on its output adds it again for every backward pass through it.

    Args:
        model: the classifier (evaluated in eval mode; its state is left as it came).
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches (a ``DataLoader``).
        eps: the radius, > 0, in input units.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        suite: ``"standard"``, ``"fast"`` or a list of attacks / attack specs.
        bounds: the input box of the named suites' attacks.
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar (only when stderr is a terminal).
        generator: the source of all the attacks' randomness; the same seed gives the same
            result.

    Returns:
        :class:`RobustAccuracyResult`: ``value``, ``robust``, ``x_adv``, ``broken_by``,
        the per-attack breakdown ``attacks`` (spec, examples attacked and broken, passes),
        ``clean_accuracy``, ``forwards`` and ``backwards``.

    Raises:
        TypeError, ValueError: bad model, data, eps, norm, suite or generator; labels
            outside ``[0, K)``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from advrobust.attacks import FGSM, PGD
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(8, 1, 2, 2), torch.zeros(8, dtype=torch.long)
        >>> suite = [FGSM(model), PGD(model, steps=5)]
        >>> res = robust_accuracy(model, (x, y), 0.1, suite=suite)
        >>> res.value <= res.clean_accuracy, [a.spec.name for a in res.attacks]
        (True, ['FGSM', 'PGD'])
    """
    model = check_model(model)
    eps = check_positive(eps, "eps")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}, got {norm!r}")
    bounds = check_bounds(bounds)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    attacks, suite_name = build_suite(suite, model, eps=eps, norm=norm, bounds=bounds)
    minimal = [is_minimal(a) for a in attacks]
    limit = eps * (1 + _REL) + _ABS
    k = len(attacks)
    attacked = [0] * k
    forwards = [0] * k
    backwards = [0] * k
    broken: list[Tensor | int] = [0] * k
    counter = PassCounter(model)

    def fn(b: Batch) -> dict[str, Tensor]:
        n = int(b.x.shape[0])
        correct = predict_checked(model, b).argmax(1) == b.y
        robust = correct.clone()
        x_adv = b.x.clone()
        broken_by = torch.full((n,), -1, dtype=torch.long, device=b.x.device)
        for i, atk in enumerate(attacks):
            idx = robust.nonzero().squeeze(1)  # one host sync per attack and batch
            if idx.numel() == 0:
                break
            attacked[i] += int(idx.numel())
            f0, b0 = counter.forwards, counter.backwards
            xi, yi = b.x[idx], b.y[idx]
            if minimal[i]:
                res = atk.run(xi, yi, generator=generator)
            else:
                res = atk.run(xi, yi, eps=eps, generator=generator)
            forwards[i] += counter.forwards - f0
            backwards[i] += counter.backwards - b0
            dist = lp_norm((res.x_adv - xi).double(), norm)
            ok = (res.adv_pred != yi) & (dist <= limit)
            hit = idx[ok]
            x_adv[hit] = res.x_adv[ok]
            robust[hit] = False
            broken_by[hit] = i
            broken[i] = broken[i] + ok.sum()
        return {
            "robust": robust,
            "correct": correct,
            "x_adv": x_adv,
            "broken_by": broken_by,
            "y": b.y.long(),
        }

    with counter:
        out = evaluate(
            data,
            fn,
            batch_size=batch_size,
            progress=progress,
            desc="robust accuracy",
            bounds=attacks[0].bounds,
        )
    breakdown = tuple(
        AttackBreakdown(
            spec=atk.spec(),
            attacked=attacked[i],
            broken=int(broken[i]),
            forwards=forwards[i],
            backwards=backwards[i],
        )
        for i, atk in enumerate(attacks)
    )
    return RobustAccuracyResult(
        robust=out["robust"],
        clean_correct=out["correct"],
        x_adv=out["x_adv"],
        broken_by=out["broken_by"],
        y=out["y"],
        eps=eps,
        norm=norm,
        attacks=breakdown,
        forwards=counter.forwards,
        backwards=counter.backwards,
        suite=suite_name,
    )
