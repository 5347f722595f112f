"""Constructor checks the attacks share, on top of the package's ``advrobust._validate``.

Each raises the ``ValueError``/``TypeError`` its attacks have always raised, naming the
argument, what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Callable

from advrobust._validate import check_positive, describe

__all__ = [
    "check_annealed",
    "check_flag",
    "check_norm",
    "check_option",
    "check_optional_positive",
    "check_rate",
]


def check_flag(value: object, name: str) -> bool:
    """``value`` if it is a bool (not 0 or 1)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {describe(value)}")
    return value


def check_option(value: str, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices`` (a loss, a target rule).

    Example:
        >>> check_option("hinge", "loss", ("ce", "margin"))
        Traceback (most recent call last):
        ...
        ValueError: loss must be one of ('ce', 'margin'), got 'hinge'
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_norm(norm: object, allowed: tuple[str, ...]) -> str:
    """``norm`` if it is one of the ``allowed`` norm names of a minimal-norm attack."""
    if not isinstance(norm, str) or norm not in allowed:
        quoted = ", ".join(repr(n) for n in allowed)
        raise ValueError(f"norm must be one of {quoted}, got {norm!r}")
    return norm


def check_rate(value: object, name: str) -> float:
    """``value`` as a float if it lies in the open interval ``(0, 1)``."""
    out = check_positive(value, name)
    if out >= 1.0:
        raise ValueError(f"{name} must be < 1, got {out}")
    return out


def check_optional_positive(value: object, name: str) -> float | None:
    """None for None, else ``value`` as a float if it is a finite number > 0."""
    return None if value is None else check_positive(value, name)


def check_annealed(
    name: str, init: object, final: object, check: Callable[[object, str], float]
) -> tuple[float, float]:
    """Check the two ends of a schedule ``{name}_init`` -> ``{name}_final`` that only decays.

    Each end is checked with ``check`` (first ``init``, then ``final``), then
    ``final <= init`` is required; the message quotes both values as given.

    Returns:
        ``(init, final)`` as returned by ``check``.
    """
    first = check(init, f"{name}_init")
    last = check(final, f"{name}_final")
    if last > first:
        raise ValueError(
            f"{name}_final must be <= {name}_init, got {name}_final={final} and {name}_init={init}"
        )
    return first, last
