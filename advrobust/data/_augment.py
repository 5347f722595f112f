"""Batched data augmentation on tensors (ICLR 2019 study: shift, flip; rotation for DenseNet).

Every transform takes a whole batch ``(B, C, H, W)`` on any device and draws one random value
per example from an optional ``torch.Generator`` (CPU or on the data's device). There is no PIL
and no per-example Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_int, check_nonnegative, check_probability, describe

__all__ = ["Compose", "RandomFlip", "RandomRotation", "RandomShift"]


def _check_batch(x: object) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {describe(x)}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    return x


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")


def _rand(n: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` uniform [0, 1) draws on ``x``'s device (drawn where the generator lives).

    A CPU generator with CUDA data is the usual case (``TensorLoader``): the draws are copied
    with ``non_blocking=True``, which from pageable memory stages the copy without waiting for
    the device, so augmenting a batch never synchronises the host with the GPU.
    """
    _check_generator(generator)
    device = x.device if generator is None else generator.device
    return torch.rand(n, generator=generator, device=device).to(x.device, non_blocking=True)


def _randint(high: int, n: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    _check_generator(generator)
    device = x.device if generator is None else generator.device
    draws = torch.randint(0, high, (n,), generator=generator, device=device)
    return draws.to(x.device, non_blocking=True)


class RandomShift:
    """Shift every image by an independent random offset of up to ``pad`` pixels (pad and crop).

    Each image is zero-padded (or edge-padded) by ``pad`` pixels on every side and a random
    ``H x W`` window is cut out, i.e. it moves by ``(dy, dx)`` with ``dy, dx`` uniform in
    ``{-pad, ..., pad}``. All crops are gathered with one advanced-indexing operation on the
    sliding-window view of the padded batch.

    Args:
        pad: Largest shift in pixels (4 is the CIFAR convention).
        fill: ``"zeros"`` or ``"edge"`` (replicate the border, as Keras' ``fill_mode="nearest"``).

    Example:
        >>> import torch
        >>> x = torch.rand(8, 3, 32, 32)
        >>> RandomShift(4)(x, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """

    def __init__(self, pad: int, *, fill: str = "zeros") -> None:
        self.pad = check_int(pad, "pad", minimum=0)
        if fill not in ("zeros", "edge"):
            raise ValueError(f"fill must be 'zeros' or 'edge', got {describe(fill)}")
        self.fill = fill

    def shift(self, x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
        """Shift image ``i`` down by ``dy[i]`` and right by ``dx[i]`` pixels (``|d| <= pad``)."""
        x = _check_batch(x)
        b, _, h, w = x.shape
        p = self.pad
        if p == 0 or b == 0:
            return x.clone()
        mode = "constant" if self.fill == "zeros" else "replicate"
        padded = F.pad(x, (p, p, p, p), mode=mode)
        # Output pixel (r, c) of image i reads padded pixel (r + p - dy, c + p - dx): the
        # (p - dy, p - dx) window of all (2p + 1)^2 sliding windows (a view, no copy), picked for
        # every image by one advanced-indexing gather.
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (B, C, 2p + 1, 2p + 1, H, W)
        batch = torch.arange(b, device=x.device)
        rows = p - dy.to(device=x.device, dtype=torch.long)
        cols = p - dx.to(device=x.device, dtype=torch.long)
        return windows[batch, :, rows, cols]

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A randomly shifted copy of the batch ``x``."""
        x = _check_batch(x)
        b = x.shape[0]
        span = 2 * self.pad + 1
        dy = _randint(span, b, x, generator) - self.pad
        dx = _randint(span, b, x, generator) - self.pad
        return self.shift(x, dy, dx)

    def __repr__(self) -> str:
        return f"RandomShift(pad={self.pad}, fill={self.fill!r})"


class RandomFlip:
    """Flip each image horizontally with probability ``p`` (independently per example).

    Args:
        p: Flip probability.

    Example:
        >>> import torch
        >>> x = torch.rand(4, 1, 5, 5)
        >>> torch.equal(RandomFlip(p=1.0)(RandomFlip(p=1.0)(x)), x)
        True
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_probability(p, "p")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A copy of ``x`` with a random subset of images mirrored left-right."""
        x = _check_batch(x)
        flip = _rand(x.shape[0], x, generator) < self.p
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p})"


class RandomRotation:
    """Rotate each image by an angle drawn uniformly from ``[-degrees, degrees]``.

    Uses ``affine_grid`` and bilinear ``grid_sample`` about the image centre; pixels rotated in
    from outside the image are zero. A rotation by 0 reproduces the input up to float rounding.

    Args:
        degrees: Largest rotation angle in degrees.

    Example:
        >>> import torch
        >>> x = torch.rand(2, 3, 16, 16)
        >>> torch.allclose(RandomRotation(0)(x), x, atol=1e-6)
        True
    """

    def __init__(self, degrees: float) -> None:
        self.degrees = check_nonnegative(degrees, "degrees")

    def rotate(self, x: Tensor, angles: Tensor) -> Tensor:
        """Rotate image ``i`` about its centre by ``angles[i]`` degrees."""
        x = _check_batch(x)
        if x.shape[0] == 0:
            return x.clone()
        rad = angles.to(device=x.device, dtype=x.dtype) * (math.pi / 180.0)
        cos, sin = torch.cos(rad), torch.sin(rad)
        zero = torch.zeros_like(cos)
        h, w = x.shape[-2:]
        # affine_grid works in normalised coordinates; correct for non-square images.
        theta = torch.stack(
            [
                torch.stack([cos, -sin * h / w, zero], dim=1),
                torch.stack([sin * w / h, cos, zero], dim=1),
            ],
            dim=1,
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A randomly rotated copy of the batch ``x``."""
        x = _check_batch(x)
        angles = (_rand(x.shape[0], x, generator) * 2.0 - 1.0) * self.degrees
        return self.rotate(x, angles)

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={self.degrees})"


class Compose:
    """Apply batched transforms in order, passing the same generator to each.

    Args:
        transforms: Callables ``t(x, generator=None) -> x``.

    Example:
        >>> import torch
        >>> aug = Compose([RandomShift(2), RandomFlip()])
        >>> aug(torch.rand(3, 1, 8, 8), generator=torch.Generator().manual_seed(1)).shape
        torch.Size([3, 1, 8, 8])
    """

    def __init__(self, transforms: Sequence[Callable[..., Tensor]]) -> None:
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] must be callable, got {describe(t)}")
        self.transforms = transforms

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Apply every transform to ``x`` in order."""
        for t in self.transforms:
            x = t(x, generator=generator)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"
