"""Threat models: the norm ball an attack lives in, as a small strategy object.

A threat model answers four questions for the gradient engine, all with one epsilon per
example (a tensor of shape ``(B,)``):

- ``random_start(x, eps, generator)``: a point drawn uniformly from the ball around ``x``;
- ``ascent_direction(g)``: the unit-norm steepest-ascent direction for a gradient ``g``
  (``sign(g)`` for Linf, ``g / ||g||_2`` for L2);
- ``project(delta, eps)``: the closest perturbation inside the ball;
- ``clip(x_adv, x, eps)``: ``x_adv`` moved into the ball around ``x`` (used every step and by
  the final clip of [`Attack`][advrobust.attacks.Attack]).

Bounds are not the threat model's business: the engine clips to ``bounds`` after ``clip``.
"""

from __future__ import annotations

import abc
from typing import ClassVar, final

import torch
from torch import Tensor

__all__ = ["L2Ball", "LinfBall", "ThreatModel", "lp_norm", "threat_from_norm"]


def _per_example(v: Tensor, like: Tensor) -> Tensor:
    """Reshape a ``(B,)`` tensor so it broadcasts against ``like`` of shape ``(B, ...)``."""
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def lp_norm(delta: Tensor, norm: str) -> Tensor:
    """Per-example Lp norm of ``delta`` over all non-batch dimensions, shape ``(B,)``.

    With ``d`` the flattened perturbation of one example:

    - ``"linf"``: ``max_i |d_i|`` (0 for an example with no coordinates);
    - ``"l2"``: ``sqrt(sum_i d_i^2)``;
    - ``"l1"``: ``sum_i |d_i|``;
    - ``"l0"``: ``#{i : d_i != 0}``, the count of non-zero coordinates.

    Computed in ``delta``'s dtype and on its device (``"l0"`` too), with no host sync; pass
    ``delta.double()`` for float64 norms.

    Args:
        delta: perturbations of shape ``(B, ...)``.
        norm: ``"linf"``, ``"l2"``, ``"l1"`` or ``"l0"``.

    Returns:
        The ``(B,)`` tensor of norms.

    Raises:
        ValueError: ``norm`` is none of the four.

    Example:
        >>> import torch
        >>> d = torch.tensor([[3.0, -4.0, 0.0]])
        >>> tuple(float(lp_norm(d, n)) for n in ("l2", "linf", "l1", "l0"))
        (5.0, 4.0, 7.0, 2.0)
    """
    flat = delta.flatten(1)
    if norm == "l2":
        out: Tensor = torch.linalg.vector_norm(flat, ord=2, dim=1)
        return out
    if norm == "l1":
        return flat.abs().sum(dim=1)
    if norm == "l0":
        return (flat != 0).sum(dim=1).to(delta.dtype)
    if norm != "linf":
        raise ValueError(f"norm: unknown value {norm!r}; valid values: linf, l2, l1, l0")
    if flat.shape[1] == 0:
        return flat.new_zeros(flat.shape[0])
    return flat.abs().amax(dim=1)


def _draw(
    kind: str, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Draw uniform (``"rand"``) or normal (``"randn"``) numbers with ``generator``.

    The numbers are drawn on the generator's device (so a CPU generator works for CUDA inputs
    and the stream does not depend on where ``x`` lives) and moved to ``like``'s device.
    """
    device = generator.device if generator is not None else like.device
    fn = torch.rand if kind == "rand" else torch.randn
    out = fn(shape, generator=generator, device=device, dtype=like.dtype)
    return out.to(like.device)


class ThreatModel(abc.ABC):
    """An Lp ball of per-example radius ``eps`` around each clean input."""

    norm: ClassVar[str]

    @abc.abstractmethod
    def random_start(self, x: Tensor, eps: Tensor, generator: torch.Generator | None) -> Tensor:
        """A point drawn uniformly from the ball of radius ``eps`` (shape ``(B,)``) around ``x``."""

    @abc.abstractmethod
    def ascent_direction(self, g: Tensor) -> Tensor:
        """The steepest-ascent direction of unit norm for the gradient ``g``."""

    @abc.abstractmethod
    def project(self, delta: Tensor, eps: Tensor) -> Tensor:
        """The closest perturbation to ``delta`` inside the ball of radius ``eps``."""

    @abc.abstractmethod
    def clip(self, x_adv: Tensor, x: Tensor, eps: Tensor) -> Tensor:
        """``x_adv`` moved into the ball of radius ``eps`` around ``x``."""

    @abc.abstractmethod
    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """Per-example distance ``||x_adv - x||`` in this norm, shape ``(B,)``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


@final
class LinfBall(ThreatModel):
    """The L-infinity ball ``{x': max_i |x'_i - x_i| <= eps}``.

    Example:
        >>> import torch
        >>> ball = LinfBall()
        >>> ball.ascent_direction(torch.tensor([[0.5, -2.0, 0.0]]))
        tensor([[ 1., -1.,  0.]])
    """

    norm: ClassVar[str] = "linf"

    def random_start(self, x: Tensor, eps: Tensor, generator: torch.Generator | None) -> Tensor:
        """Uniform noise in ``[-eps, eps]`` per coordinate added to ``x``."""
        u = _draw("rand", tuple(x.shape), x, generator)
        return x + (2.0 * u - 1.0) * _per_example(eps, x)

    def ascent_direction(self, g: Tensor) -> Tensor:
        """``sign(g)``: the steepest-ascent direction under the Linf norm."""
        return g.sign()

    def project(self, delta: Tensor, eps: Tensor) -> Tensor:
        """Clamp every coordinate of ``delta`` to ``[-eps, eps]``."""
        e = _per_example(eps, delta)
        return torch.maximum(torch.minimum(delta, e), -e)

    def clip(self, x_adv: Tensor, x: Tensor, eps: Tensor) -> Tensor:
        """Clamp ``x_adv`` elementwise to ``[x - eps, x + eps]``.

        The box is computed from ``x`` directly, so a point already written as ``x + eps * s``
        with ``|s| <= 1`` is returned bit-for-bit unchanged.
        """
        e = _per_example(eps, x)
        return torch.minimum(torch.maximum(x_adv, x - e), x + e)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """``max_i |x_adv_i - x_i|`` per example."""
        return lp_norm(x_adv - x, "linf")


@final
class L2Ball(ThreatModel):
    """The L2 ball ``{x': ||x' - x||_2 <= eps}`` (norm over all non-batch dimensions).

    Example:
        >>> import torch
        >>> ball = L2Ball()
        >>> ball.ascent_direction(torch.tensor([[3.0, 4.0]]))
        tensor([[0.6000, 0.8000]])
    """

    norm: ClassVar[str] = "l2"

    def random_start(self, x: Tensor, eps: Tensor, generator: torch.Generator | None) -> Tensor:
        """A point uniform in the volume of the L2 ball of radius ``eps`` around ``x``.

        Direction: a normalised Gaussian vector; radius: ``eps * u**(1/d)`` with ``u``
        uniform in [0, 1] and ``d`` the number of coordinates per example.
        """
        b = x.shape[0]
        d = x[0].numel() if b else 1
        z = _draw("randn", tuple(x.shape), x, generator).flatten(1)
        u = _draw("rand", (b,), x, generator)
        direction = z / z.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        radius: Tensor = eps * u.pow(1.0 / max(d, 1))
        step: Tensor = (direction * radius[:, None]).reshape(x.shape)
        return x + step

    def ascent_direction(self, g: Tensor) -> Tensor:
        """``g / ||g||_2`` per example (zero where the gradient is zero)."""
        n = g.flatten(1).norm(dim=1).clamp_min(torch.finfo(g.dtype).tiny)
        return g / _per_example(n, g)

    def project(self, delta: Tensor, eps: Tensor) -> Tensor:
        """Scale ``delta`` down to norm ``eps`` where it is longer."""
        n = delta.flatten(1).norm(dim=1)
        factor = torch.where(n > eps, eps / n.clamp_min(torch.finfo(delta.dtype).tiny), 1.0)
        return delta * _per_example(factor.to(delta.dtype), delta)

    def clip(self, x_adv: Tensor, x: Tensor, eps: Tensor) -> Tensor:
        """Project ``x_adv - x`` onto the ball; points inside are returned unchanged."""
        delta = x_adv - x
        n = delta.flatten(1).norm(dim=1)
        outside = _per_example(n > eps, x)
        return torch.where(outside, x + self.project(delta, eps), x_adv)

    def distance(self, x_adv: Tensor, x: Tensor) -> Tensor:
        """``||x_adv - x||_2`` per example."""
        return lp_norm(x_adv - x, "l2")


def threat_from_norm(norm: object, name: str = "norm") -> ThreatModel:
    """The threat model for ``norm`` (``"linf"`` or ``"l2"``), raising on anything else."""
    if norm == "linf":
        return LinfBall()
    if norm == "l2":
        return L2Ball()
    raise ValueError(f"{name} must be 'linf' or 'l2', got {norm!r}")
