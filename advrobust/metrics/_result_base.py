"""The shared base of the metric results: ``repr``, ``to_dict`` and ``from_dict``, and averages.

Every result is a frozen dataclass deriving from :class:`_Result`. It keeps the per-example
evidence (boolean masks, distances, confidences) so results can be merged, filtered and audited,
plus ``summary()`` (scalars for a table row) and ``to_dict()`` (the summary and the per-example
values as plain Python lists, JSON-friendly). The stored form holds field values and the dtype
and shape of each tensor, never a class or module path: the reader names the class
(``DistortionResult.from_dict(data)``).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

import torch
from torch import Tensor
from typing_extensions import override

from .._validate import describe
from ..attacks import AttackSpec

__all__ = ["Scalar", "_Result", "_frac", "_mean"]


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
    """Shared ``to_dict``, ``from_dict`` and ``repr`` for the result dataclasses."""

    def summary(self) -> dict[str, Scalar]:
        raise TypeError(f"{type(self).__name__} must define summary()")

    @override
    def __repr__(self) -> str:
        """One line: the class name and its :meth:`summary`, never the per-example tensors."""
        parts = []
        for key, value in self.summary().items():
            if isinstance(value, float) and not isinstance(value, bool):
                parts.append(f"{key}={value:.4g}")
            else:
                parts.append(f"{key}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

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
