"""The result of an attack on a batch: what it produced, per example, and how it saves.

``AttackResult`` lived in ``advrobust.attacks._base`` until the template and its result were
split; files saved then name that module, and still load (see ``_allow_in_weights_only_load``).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Final, final

import torch
from torch import Tensor
from typing_extensions import override

from advrobust._validate import describe

__all__ = ["AttackResult"]

# Where the class was defined before, as pickles of that time name it (module.qualname).
_LEGACY_PATHS: Final = ("advrobust.attacks._base.AttackResult",)


@final
@dataclass(frozen=True)
class AttackResult:
    """What an attack produced for a batch, one entry per example.

    Attributes:
        x_adv: Adversarial inputs, same shape, dtype and device as ``x``, inside the eps-ball
            (within float tolerance) and inside ``bounds``.
        success: Bool ``(B,)``. Untargeted: ``adv_pred != y``; targeted (a ``target=`` was
            passed): ``adv_pred == target``.
        adv_pred: Long ``(B,)``, the model's prediction on ``x_adv``.
        l2: ``(B,)`` L2 norm of ``x_adv - x`` per example, in ``x``'s dtype.
        linf: ``(B,)`` L-infinity norm of ``x_adv - x`` per example.
        y: Long ``(B,)``, the labels used: the given ``y`` or, when ``y`` was None, the
            model's predictions on the clean ``x``.
        target: Long ``(B,)`` target classes of a targeted call, else None.

    Saving: ``torch.save(result, path)`` and ``torch.load(path)`` work with torch's default
    ``weights_only=True`` (the class is registered as a safe global: it holds only tensors).
    ``to_dict``/``from_dict`` give the same as a plain dict of tensors, for files that must
    load without advrobust installed.

    Example:
        >>> import io, torch
        >>> from torch import nn
        >>> from advrobust.attacks import FGSM
        >>> res = FGSM(nn.Linear(4, 3), eps=0.1).run(torch.rand(2, 4))
        >>> buf = io.BytesIO()
        >>> torch.save(res, buf)
        >>> _ = buf.seek(0)
        >>> torch.equal(torch.load(buf).x_adv, res.x_adv)
        True
        >>> torch.equal(AttackResult.from_dict(res.to_dict()).adv_pred, res.adv_pred)
        True
    """

    x_adv: Tensor
    success: Tensor
    adv_pred: Tensor
    l2: Tensor
    linf: Tensor
    y: Tensor
    target: Tensor | None

    @property
    def success_rate(self) -> float:
        """Fraction of examples the attack succeeded on (``nan`` for an empty batch)."""
        n = self.success.numel()
        return float(self.success.float().mean()) if n else math.nan

    def summary(self) -> dict[str, float | int | bool | str]:
        """Batch figures: counts, success rate and norms of the successful perturbations.

        Keys: examples, successes, success_rate, targeted, median_l2, max_l2, median_linf,
        max_linf (``nan`` when nothing succeeded), x_adv (shape and dtype) and device.
        """
        ok = self.success.bool()
        out: dict[str, float | int | bool | str] = {
            "examples": int(self.success.numel()),
            "successes": int(ok.sum()),
            "success_rate": self.success_rate,
            "targeted": self.target is not None,
        }
        for name, norms in (("l2", self.l2), ("linf", self.linf)):
            hit = norms[ok].double()
            out[f"median_{name}"] = float(hit.median()) if hit.numel() else math.nan
            out[f"max_{name}"] = float(hit.max()) if hit.numel() else math.nan
        out["x_adv"] = f"{tuple(self.x_adv.shape)} {str(self.x_adv.dtype).removeprefix('torch.')}"
        out["device"] = str(self.x_adv.device)
        return out

    @override
    def __repr__(self) -> str:
        """A one-line summary (:meth:`summary`) instead of the tensors.

        Example:
            >>> import torch
            >>> x = torch.zeros(2, 3)
            >>> AttackResult(x, torch.tensor([True, False]), torch.tensor([1, 0]),
            ...              torch.tensor([0.5, 0.0]), torch.tensor([0.25, 0.0]),
            ...              torch.tensor([0, 0]), None)  # doctest: +NORMALIZE_WHITESPACE
            AttackResult(1/2 succeeded (50.0%), untargeted; successes: L2 median 0.5 max 0.5,
            Linf median 0.25 max 0.25; x_adv (2, 3) float32 on cpu)
        """
        s = self.summary()
        kind = "targeted" if s["targeted"] else "untargeted"
        text = (
            f"AttackResult({s['successes']}/{s['examples']} succeeded "
            f"({100 * float(s['success_rate']):.1f}%), {kind}"
        )
        if int(s["successes"]):
            text += (
                f"; successes: L2 median {s['median_l2']:.4g} max {s['max_l2']:.4g}, "
                f"Linf median {s['median_linf']:.4g} max {s['max_linf']:.4g}"
            )
        return text + f"; x_adv {s['x_adv']} on {s['device']})"

    def to_dict(self) -> dict[str, Tensor | None]:
        """The fields as a dict of tensors (``target`` may be None)."""
        return {
            "x_adv": self.x_adv,
            "success": self.success,
            "adv_pred": self.adv_pred,
            "l2": self.l2,
            "linf": self.linf,
            "y": self.y,
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, data: object) -> AttackResult:
        """Inverse of :meth:`to_dict`.

        Raises:
            TypeError: ``data`` is not a mapping, or a field is not a tensor.
            ValueError: a key is missing or unknown.
        """
        if not isinstance(data, dict):
            raise TypeError(
                f"data must be a dict from AttackResult.to_dict(), got {describe(data)}"
            )
        names = ("x_adv", "success", "adv_pred", "l2", "linf", "y", "target")
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names[:-1] if n not in data]
        if unknown or missing:
            raise ValueError(
                f"data must have the keys {', '.join(names)}; missing: {missing or 'none'}, "
                f"unknown: {unknown or 'none'}"
            )
        for n in names:
            value = data.get(n)
            if not isinstance(value, Tensor) and not (n == "target" and value is None):
                raise TypeError(f"data[{n!r}] must be a tensor, got {describe(value)}")
        target = data.get("target")
        return cls(
            x_adv=data["x_adv"],
            success=data["success"],
            adv_pred=data["adv_pred"],
            l2=data["l2"],
            linf=data["linf"],
            y=data["y"],
            target=target if isinstance(target, Tensor) else None,
        )


def _allow_in_weights_only_load() -> None:
    """Let ``torch.load(weights_only=True)`` rebuild ``AttackResult`` (it holds only tensors).

    The weights-only unpickler never imports: it looks a pickled class up by the
    ``module.qualname`` the file names, among the globals marked safe. Files written before
    the class moved name ``advrobust.attacks._base.AttackResult``, so that path is marked safe
    too, where ``add_safe_globals`` takes ``(class, "module.qualname")`` pairs (its declared
    parameter type says so; the torch releases that made ``weights_only=True`` the default
    have them). Without them, such files load with ``weights_only=False``: the plain
    unpickler imports ``advrobust.attacks._base``, which still has the class.
    """
    add = torch.serialization.add_safe_globals
    add([AttackResult])
    if "tuple" in str(inspect.signature(add)).lower():
        add([(AttackResult, path) for path in _LEGACY_PATHS])


_allow_in_weights_only_load()
