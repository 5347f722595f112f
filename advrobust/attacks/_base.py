"""The attack template: validation, label resolution, mode guard, final clip and the result.

Every attack in advrobust subclasses ``Attack`` and implements only the protected ``_perturb``
hook. The public ``__call__`` and ``run`` are final: they validate the inputs, resolve labels and
targets, broadcast eps to one value per example, enter ``model_state_guard``, call
``_perturb``, then clip the result to the eps-ball and the bounds, refine minimal-norm results
to the decision boundary (a bisection along the segment from ``x``, forward passes only),
compute success and norms and build an ``AttackResult``.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, final

import torch
from torch import Tensor, nn

from advrobust._validate import (
    check_bounds,
    check_eps,
    check_images,
    check_labels,
    check_logits,
    check_model_device,
    describe,
    model_state_guard,
)

from ._refine import refine_boundary
from ._registry import AttackSpec
from ._result import AttackResult  # old pickles name advrobust.attacks._base.AttackResult
from ._threat import L2Ball, LinfBall, ThreatModel

__all__ = ["Attack", "AttackResult", "CleanForward"]


@dataclass(frozen=True)
class CleanForward:
    """The model's logits on the clean batch, computed once by the template.

    When ``x`` requires grad, ``logits`` carries its autograd graph, so an attack whose first
    step is taken at the clean input can reuse this forward pass instead of running another.
    """

    x: Tensor
    logits: Tensor


def _succeeded(pred: Tensor, goal: Tensor, targeted: bool) -> Tensor:
    """Success per example: ``pred == goal`` (targeted) or ``pred != goal`` (untargeted)."""
    return pred == goal if targeted else pred != goal


def _check_generator(generator: object) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")


def _normal(t: Tensor) -> Tensor:
    """``t``, or a normal copy of it when it is an inference tensor."""
    return t.clone() if t.is_inference() else t


@contextlib.contextmanager
def _grad_enabled() -> Iterator[None]:
    """Enable autograd even inside a caller's ``torch.no_grad()`` or ``inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


class Attack(abc.ABC):
    """Base class of every attack: a template method around the protected ``_perturb`` hook.

    Subclasses implement ``_perturb`` (``config`` reads the constructor arguments back from
    the attributes of the same names); ``__call__`` and ``run`` are final and
    give every attack the same guarantees: inputs are validated (``ValueError``/``TypeError``
    naming the argument), ``x`` and ``y`` are never mutated, the model runs in eval mode and
    every submodule's training flag, parameter, buffer and parameter ``.grad`` is restored
    (also when the model raises), the output lies inside the eps-ball and ``bounds``, and it
    works inside a caller's ``torch.no_grad()`` or ``torch.inference_mode()``.

    Attributes:
        model: The attacked classifier, returning logits of shape ``(B, K)``.
        bounds: The input box ``(lo, hi)``.
        norm: ``"linf"``, ``"l2"``, ``"l1"`` or ``"l0"``, the norm of the attack's threat model.
        minimal_norm: Class attribute, True for minimal-norm (unbounded) attacks that return
            the smallest adversarial perturbation they find (CWL2, FMN, DDN, ALMA). The
            template refines their output to the decision boundary: per example, a bisection
            along the segment from ``x`` to ``_perturb``'s point returns the closest point of
            the segment that is still adversarial (examples never broken come back as ``x``).
    """

    model: nn.Module
    bounds: tuple[float, float]
    norm: str
    minimal_norm: ClassVar[bool] = False

    def __init__(self, model: nn.Module, *, bounds: tuple[float, float]) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
        self.model = model
        self.bounds = check_bounds(bounds)

    # ----------------------------------------------------------------- configuration
    def config(self) -> dict[str, object]:
        """The constructor arguments (without the model), JSON-friendly.

        ``type(atk)(atk.model, **atk.config())`` rebuilds an equal attack. The default reads
        every ``__init__`` argument after ``model`` from the attribute of the same name, in
        signature order; override it when an argument is stored under another name.
        """
        names = _init_args(type(self))
        missing = [n for n in names if not hasattr(self, n)]
        if missing:
            raise TypeError(
                f"{type(self).__name__}.config() reads the constructor arguments from the "
                f"attributes of the same names, but {', '.join(missing)} is not stored; store "
                "it or override config()"
            )
        return {name: getattr(self, name) for name in names}

    @property
    def targets_classes(self) -> bool:
        """True when an untargeted call moves towards classes the attack picks itself."""
        return False

    @final
    def spec(self) -> AttackSpec:
        """The attack's public description: name, norm, kind, targeting and configuration.

        The name is the registry name of the class (its class name), so
        ``spec.build(model)`` rebuilds an equal attack for a registered class.

        Example:
            >>> from torch import nn
            >>> from advrobust.attacks import CWL2
            >>> spec = CWL2(nn.Linear(4, 3), steps=10).spec()
            >>> spec.kind, spec.norm, spec.eps
            ('minimal', 'l2', None)
        """
        return AttackSpec(
            name=type(self).__name__,
            norm=self.norm,
            kind="minimal" if self.minimal_norm else "bounded",
            targeted=self.targets_classes,
            config=self.config(),
        )

    @final
    def replace(self, **changes: Any) -> Attack:
        """A new attack of the same type and model with some constructor arguments changed.

        Args:
            **changes: Constructor arguments to change, e.g. ``eps=0.1, steps=20``.

        Returns:
            A new attack; ``self`` is unchanged.

        Raises:
            TypeError: If a name is not a constructor argument of this attack.
        """
        cfg = self.config()
        unknown = sorted(set(changes) - set(cfg))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.replace got unexpected keyword argument(s): "
                f"{', '.join(unknown)}; expected some of: {', '.join(cfg)}"
            )
        cfg.update(changes)
        factory: Callable[..., Attack] = type(self)
        return factory(self.model, **cfg)

    @final
    def with_model(self, model: nn.Module) -> Attack:
        """The same attack configuration applied to another model."""
        factory: Callable[..., Attack] = type(self)
        return factory(model, **self.config())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    # --------------------------------------------------------------------- hooks
    @property
    def _default_eps(self) -> float | None:
        """The construction-time eps, or None for unbounded attacks (CW)."""
        return None

    @property
    def _threat(self) -> ThreatModel | None:
        """The threat model whose ball the output is clipped to (None: unbounded)."""
        return None

    @property
    def _refine_kappa(self) -> float | None:
        """Margin the boundary refinement of a minimal-norm result keeps (None: no refinement).

        The template ends every attack with ``minimal_norm = True`` with
        [`refine_boundary`][advrobust.attacks._refine.refine_boundary] unless this is None.
        """
        return 0.0

    @property
    def _wants_clean_graph(self) -> bool:
        """True if ``_perturb`` reuses the clean forward pass with its autograd graph."""
        return False

    @property
    def _wants_clean_logits(self) -> bool:
        """True if ``_perturb`` or ``_auto_target`` needs the clean logits of the full batch."""
        return False

    def _auto_target(
        self, clean: CleanForward | None, y: Tensor, generator: torch.Generator | None
    ) -> Tensor | None:
        """The class an untargeted call moves towards (least-likely, random), or None."""
        return None

    @abc.abstractmethod
    def _perturb(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        guide: Tensor | None,
        generator: torch.Generator | None,
        clean: CleanForward | None,
    ) -> Tensor:
        """Compute adversarial examples for a validated, non-empty batch.

        Called inside the model-state guard with autograd enabled. ``y`` are the resolved
        labels, ``eps`` has shape ``(B,)``, ``target`` the caller's targets (targeted call) or
        None, ``guide`` the class an untargeted attack moves towards (from ``_auto_target``) or
        None. Must not modify ``x``. The template clips the returned tensor afterwards.
        """

    # ------------------------------------------------------------------ template
    @final
    def __call__(
        self,
        x: Tensor,
        y: Tensor | None = None,
        *,
        eps: float | Tensor | None = None,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Adversarial examples for ``x``: the same tensor as ``run(...).x_adv``.

        Skips the final forward pass that ``run`` spends on predictions and success.
        """
        return self._execute(x, y, eps, target, generator, with_result=False)[0]

    @final
    def run(
        self,
        x: Tensor,
        y: Tensor | None = None,
        *,
        eps: float | Tensor | None = None,
        target: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AttackResult:
        """Attack a batch and return the full [`AttackResult`][advrobust.attacks.AttackResult].

        Args:
            x: Inputs ``(B, ...)``, floating point, inside ``bounds``.
            y: Long labels ``(B,)``; None uses the model's predictions on ``x`` (no label
                leaking).
            eps: Radius in input units, a float or a ``(B,)`` tensor; overrides the
                construction-time eps. Ignored by unbounded attacks (CWL2).
            target: Long ``(B,)`` target classes for a targeted attack; success then means
                ``adv_pred == target``.
            generator: Source of all randomness (random start, random targets).

        Returns:
            The [`AttackResult`][advrobust.attacks.AttackResult].

        Raises:
            TypeError: For a non-tensor or integer ``x``, labels or targets of the wrong dtype,
                or a non-generator ``generator``.
            ValueError: For NaN/Inf or out-of-bounds ``x``, labels or targets of the wrong
                shape or range, negative or wrongly shaped ``eps``, model output that is not
                ``(B, K)``, or model and input on different devices.
        """
        _, result = self._execute(x, y, eps, target, generator, with_result=True)
        if result is None:  # pragma: no cover - with_result=True always builds one
            raise RuntimeError("internal error: no result was built")
        return result

    @final
    def _execute(
        self,
        x: Tensor,
        y: Tensor | None,
        eps: float | Tensor | None,
        target: Tensor | None,
        generator: torch.Generator | None,
        *,
        with_result: bool,
    ) -> tuple[Tensor, AttackResult | None]:
        x = check_images(x, "x", bounds=self.bounds)
        generator = _check_generator(generator)
        b = x.shape[0]
        eps_value: float | Tensor | None = self._default_eps if eps is None else eps
        eps_t = check_eps(0.0 if eps_value is None else eps_value, b, x.device, x.dtype).detach()
        if y is not None:
            y = check_labels(y, b, "y")
        if target is not None:
            target = check_labels(target, b, "target")
        if b == 0:
            return self._empty(x, y, target, with_result)
        check_model_device(self.model, x)

        with _grad_enabled(), model_state_guard(self.model, train=False):
            # Tensors made in a caller's inference_mode cannot take part in autograd (the loss
            # saves the labels for backward): work on normal copies of x, y, target and eps.
            x, eps_t = _normal(x).detach(), _normal(eps_t)
            y = None if y is None else _normal(y)
            target = None if target is None else _normal(target)
            clean: CleanForward | None = None
            if self._wants_clean_graph or self._wants_clean_logits or y is None:
                xc = x.clone().requires_grad_(True) if self._wants_clean_graph else x
                with torch.set_grad_enabled(self._wants_clean_graph):
                    logits = self.model(xc)
                check_logits(logits, b)
                clean = CleanForward(xc, logits)
                num_classes = logits.shape[1]
            else:
                with torch.no_grad():
                    probe = self.model(x[:1])
                check_logits(probe, 1)
                num_classes = probe.shape[1]

            if clean is not None and y is None:
                y_used = clean.logits.detach().argmax(dim=1)
            elif y is not None:
                y_used = check_labels(y, b, "y", num_classes=num_classes).to(
                    device=x.device, dtype=torch.long
                )
            else:  # pragma: no cover - y is None implies a clean forward above
                raise RuntimeError("internal error: labels could not be resolved")
            tgt: Tensor | None = None
            guide: Tensor | None = None
            if target is not None:
                tgt = check_labels(target, b, "target", num_classes=num_classes).to(
                    device=x.device, dtype=torch.long
                )
            else:
                guide = self._auto_target(clean, y_used, generator)

            x_adv = self._perturb(x, y_used, eps_t, tgt, guide, generator, clean)
            del clean
            x_adv = self._final_clip(x_adv.detach(), x, eps_t)
            kappa = self._refine_kappa
            if self.minimal_norm and kappa is not None:
                # the closest still-adversarial point on the segment [x, x_adv]; failures -> x
                x_adv = refine_boundary(
                    self.model,
                    x,
                    x_adv,
                    y_used if tgt is None else tgt,
                    targeted=tgt is not None,
                    bounds=self.bounds,
                    kappa=kappa,
                )
            if not with_result:
                return x_adv, None
            with torch.no_grad():
                logits = self.model(x_adv)
            check_logits(logits, b)
            pred = logits.argmax(dim=1)
            success = _succeeded(pred, y_used if tgt is None else tgt, tgt is not None)
            result = AttackResult(
                x_adv=x_adv,
                success=success,
                adv_pred=pred,
                l2=L2Ball().distance(x_adv, x),
                linf=LinfBall().distance(x_adv, x),
                y=y_used,
                target=tgt,
            )
        return x_adv, result

    @final
    def _final_clip(self, x_adv: Tensor, x: Tensor, eps: Tensor) -> Tensor:
        threat = self._threat
        if threat is not None:
            x_adv = threat.clip(x_adv, x, eps)
        lo, hi = self.bounds
        return x_adv.clamp(lo, hi).to(dtype=x.dtype)

    @final
    def _empty(
        self, x: Tensor, y: Tensor | None, target: Tensor | None, with_result: bool
    ) -> tuple[Tensor, AttackResult | None]:
        x_adv = x.detach().clone()
        if not with_result:
            return x_adv, None
        long = torch.empty(0, dtype=torch.long, device=x.device)
        zero = torch.empty(0, dtype=x.dtype, device=x.device)
        result = AttackResult(
            x_adv=x_adv,
            success=torch.empty(0, dtype=torch.bool, device=x.device),
            adv_pred=long,
            l2=zero,
            linf=zero.clone(),
            y=y.to(device=x.device, dtype=torch.long) if y is not None else long.clone(),
            target=target.to(device=x.device, dtype=torch.long) if target is not None else None,
        )
        return x_adv, result


@functools.cache
def _init_args(cls: type) -> tuple[str, ...]:
    """Names of the constructor arguments of ``cls`` after ``self`` and ``model``."""
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(n for n, p in params.items() if p.kind in kinds and n not in ("self", "model"))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return repr(value)
