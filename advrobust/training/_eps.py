"""Per-example epsilon samplers (Kurakin et al. 2017 sec. 3: a random eps per training example)."""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._validate import check_int, check_nonnegative, check_positive, describe

__all__ = ["EpsSampler", "FixedEps", "TruncatedNormalEps", "UniformEps", "eps_sampler_from_spec"]


def _generator_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def _uniform(
    batch_size: int,
    device: torch.device | str | None,
    dtype: torch.dtype,
    generator: torch.Generator | None,
) -> Tensor:
    """``batch_size`` U[0, 1) draws on ``device``, drawn on the generator's device."""
    target = torch.device(device) if device is not None else torch.device("cpu")
    work = torch.float64 if _generator_device(generator, target).type == "cpu" else dtype
    u = torch.rand(
        batch_size, generator=generator, device=_generator_device(generator, target), dtype=work
    )
    return u.to(target, non_blocking=True)  # no host sync for a CPU generator's draws


class EpsSampler(abc.ABC):
    """Draws one epsilon per example: ``sampler(batch_size, device=, dtype=, generator=)``.

    Samplers hold no state of their own: all randomness comes from the ``generator`` (or the
    global torch RNG when it is None), so the same generator state gives the same draws.
    ``spec()`` returns a JSON-friendly dict that :func:`eps_sampler_from_spec` turns back into
    an equal sampler.
    """

    name: str

    def __call__(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw ``batch_size`` epsilons.

        Args:
            batch_size: number of examples (>= 0).
            device: device of the result (CPU by default). Draws are made on the generator's
                device and moved, so a CPU generator works for CUDA batches.
            dtype: floating dtype of the result.
            generator: source of randomness.

        Returns:
            A ``(batch_size,)`` tensor of non-negative epsilons.
        """
        check_int(batch_size, "batch_size", minimum=0)
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {describe(generator)}"
            )
        out = self._sample(batch_size, device, generator)
        return out.to(dtype=dtype)

    @abc.abstractmethod
    def _sample(
        self, batch_size: int, device: torch.device | str | None, generator: torch.Generator | None
    ) -> Tensor: ...

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-friendly description: ``{"name": ..., **parameters}``."""

    @property
    @abc.abstractmethod
    def max_eps(self) -> float:
        """The largest epsilon this sampler can return."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EpsSampler) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.spec().items())))

    def __repr__(self) -> str:
        spec = self.spec()
        args = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "name")
        return f"{type(self).__name__}({args})"


class TruncatedNormalEps(EpsSampler):
    r"""Kurakin's epsilon: ``|X|`` with ``X ~ N(0, std)`` truncated to ``[-max, max]``.

    Kurakin et al. 2017, sec. 3 (TensorFlow ``abs(truncated_normal(stddev=8))`` on the 0-255
    scale, which truncates at two standard deviations): the defaults ``std = 8/255`` and
    ``max = 16/255`` give epsilons in ``[0, 16/255]`` with density proportional to
    ``exp(-e^2 / (2 std^2))``.

    Sampled exactly by the inverse CDF, vectorised:
    ``eps = std * sqrt(2) * erfinv(U * erf(max / (std * sqrt(2))))`` with ``U ~ U[0, 1)``.
    The mean is ``std * sqrt(2/pi) * (1 - exp(-a^2/2)) / erf(a/sqrt(2))`` with ``a = max/std``
    (``0.7228 std`` for ``a = 2``).

    Args:
        std: standard deviation of the underlying normal (> 0), in input units.
        max: truncation point (> 0); None means ``2 * std``.

    Example:
        >>> import torch
        >>> eps = TruncatedNormalEps()(4, generator=torch.Generator().manual_seed(0))
        >>> bool((eps >= 0).all() and (eps <= 16 / 255).all())
        True
    """

    name = "truncated_normal"

    def __init__(self, std: float = 8 / 255, max: float | None = None) -> None:
        self.std = check_positive(std, "std")
        self.max = 2.0 * self.std if max is None else check_positive(max, "max")

    @property
    def max_eps(self) -> float:
        """The truncation point ``max``."""
        return self.max

    @property
    def mean(self) -> float:
        """The exact mean of the distribution (``scipy.stats.truncnorm`` on ``[0, max]``)."""
        from scipy import stats

        return float(stats.truncnorm(0.0, self.max / self.std, scale=self.std).mean())

    def _sample(
        self, batch_size: int, device: torch.device | str | None, generator: torch.Generator | None
    ) -> Tensor:
        u = _uniform(batch_size, device, torch.float32, generator)
        scale = math.erf(self.max / (self.std * math.sqrt(2.0)))
        eps = self.std * math.sqrt(2.0) * torch.erfinv(u * scale)
        return eps.clamp_(0.0, self.max)

    def spec(self) -> dict[str, Any]:
        """``{"name": "truncated_normal", "std": ..., "max": ...}``."""
        return {"name": self.name, "std": self.std, "max": self.max}


class UniformEps(EpsSampler):
    """Epsilon drawn uniformly from ``[lo, hi]``.

    Args:
        lo: smallest epsilon (>= 0).
        hi: largest epsilon (>= lo).
    """

    name = "uniform"

    def __init__(self, lo: float = 0.0, hi: float = 16 / 255) -> None:
        self.lo = check_nonnegative(lo, "lo")
        self.hi = check_nonnegative(hi, "hi")
        if self.hi < self.lo:
            raise ValueError(f"hi must be >= lo, got lo={self.lo}, hi={self.hi}")

    @property
    def max_eps(self) -> float:
        """The upper end ``hi``."""
        return self.hi

    def _sample(
        self, batch_size: int, device: torch.device | str | None, generator: torch.Generator | None
    ) -> Tensor:
        u = _uniform(batch_size, device, torch.float32, generator)
        return (self.lo + (self.hi - self.lo) * u).clamp_(self.lo, self.hi)

    def spec(self) -> dict[str, Any]:
        """``{"name": "uniform", "lo": ..., "hi": ...}``."""
        return {"name": self.name, "lo": self.lo, "hi": self.hi}


class FixedEps(EpsSampler):
    """The same epsilon for every example.

    Madry's PGD training uses a fixed eps; Kurakin et al. 2017 (sec. 3) warn that training with a
    fixed eps makes the network robust to that epsilon only.

    Args:
        eps: the epsilon (>= 0), in input units.
    """

    name = "fixed"

    def __init__(self, eps: float = 8 / 255) -> None:
        self.eps = check_nonnegative(eps, "eps")

    @property
    def max_eps(self) -> float:
        """The epsilon."""
        return self.eps

    def _sample(
        self, batch_size: int, device: torch.device | str | None, generator: torch.Generator | None
    ) -> Tensor:
        target = torch.device(device) if device is not None else torch.device("cpu")
        return torch.full(
            (batch_size,),
            self.eps,
            device=target,
            dtype=torch.float64 if target.type == "cpu" else torch.float32,
        )

    def spec(self) -> dict[str, Any]:
        """``{"name": "fixed", "eps": ...}``."""
        return {"name": self.name, "eps": self.eps}


_SAMPLERS: dict[str, type[EpsSampler]] = {
    TruncatedNormalEps.name: TruncatedNormalEps,
    UniformEps.name: UniformEps,
    FixedEps.name: FixedEps,
}


def eps_sampler_from_spec(spec: Mapping[str, Any] | EpsSampler, name: str = "eps") -> EpsSampler:
    """Build a sampler from its ``spec()`` dict (or return a sampler unchanged).

    Args:
        spec: ``{"name": "truncated_normal" | "uniform" | "fixed", **parameters}``.
        name: argument name used in error messages.

    Returns:
        The sampler.

    Raises:
        ValueError: unknown sampler name or bad parameters (the message lists the valid names).
        TypeError: ``spec`` is not a mapping, or has unexpected parameters.
    """
    if isinstance(spec, EpsSampler):
        return spec
    if not isinstance(spec, Mapping):
        raise TypeError(
            f"{name} must be a mapping like {{'name': 'fixed', 'eps': 0.03}}, got {describe(spec)}"
        )
    kind = spec.get("name")
    if kind not in _SAMPLERS:
        raise ValueError(f"{name}['name'] must be one of {sorted(_SAMPLERS)}, got {kind!r}")
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    try:
        return _SAMPLERS[kind](**kwargs)
    except TypeError as exc:
        raise TypeError(f"{name}: bad parameters for sampler {kind!r}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
