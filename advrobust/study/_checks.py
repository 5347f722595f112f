"""The study config's checks and the (de)serialisation helpers of its sections.

The checks are those of :mod:`advrobust._validate`, raised as :class:`ConfigError` naming the
config field.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
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

__all__ = ["ConfigError"]

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
