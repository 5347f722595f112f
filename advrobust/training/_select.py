"""Which examples of a minibatch are replaced by adversarial ones (Kurakin et al. 2017, alg. 1)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validate import check_int, check_probability, describe

__all__ = ["num_replaced", "select_replaced", "split_indices"]

_MODES = ("first", "random")


def num_replaced(batch_size: int, k: int | None = None, fraction: float | None = None) -> int:
    """The number ``k`` of replaced examples in a batch of ``batch_size``.

    Exactly one of ``k`` (an int in ``[0, batch_size]``) and ``fraction`` (in ``[0, 1]``,
    rounded half-to-even: ``round(fraction * batch_size)``) must be given.

    Raises:
        ValueError: both or neither given, ``k > batch_size``, negative values.
    """
    check_int(batch_size, "batch_size", minimum=0)
    if (k is None) == (fraction is None):
        raise ValueError(f"give exactly one of k and fraction, got k={k!r}, fraction={fraction!r}")
    if k is not None:
        check_int(k, "k", minimum=0)
        if k > batch_size:
            raise ValueError(
                f"k must be <= the batch size {batch_size} (k of m examples are replaced), got "
                f"k={k}"
            )
        return k
    frac = check_probability(fraction, "fraction")
    return round(frac * batch_size)


def split_indices(
    batch_size: int,
    k: int,
    mode: str = "first",
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Indices ``(replaced, kept)`` of a batch (long tensors, no host synchronisation).

    ``mode="first"``: the first ``k`` examples (algorithm 1 reads a shuffled minibatch and
    replaces ``X_1..X_k``); ``mode="random"``: ``k`` drawn without replacement with
    ``generator``, both index sets sorted.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if mode == "first":
        idx = torch.arange(batch_size, device=dev)
        return idx[:k], idx[k:]
    gen_dev = generator.device if generator is not None else dev
    perm = torch.randperm(batch_size, generator=generator, device=gen_dev)
    perm = perm.to(dev, non_blocking=True)
    return perm[:k].sort().values, perm[k:].sort().values


def select_replaced(
    batch_size: int,
    k: int | None = None,
    *,
    fraction: float | None = None,
    mode: str = "first",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    return_mask: bool = False,
) -> Tensor:
    """Choose the examples of a batch that are replaced by adversarial versions.

    Args:
        batch_size: ``m``, the number of examples in the batch.
        k: number to replace (``0 <= k <= m``); give this or ``fraction``.
        fraction: share of the batch to replace, ``k = round(fraction * m)``.
        mode: ``"first"`` (the first ``k``, as in algorithm 1 on a shuffled batch) or
            ``"random"`` (``k`` distinct examples drawn with ``generator``).
        generator: randomness for ``mode="random"``.
        device: device of the result.
        return_mask: return a bool mask ``(m,)`` instead of sorted indices ``(k,)``.

    Returns:
        Sorted long indices of shape ``(k,)``, or a bool mask of shape ``(m,)``.

    Raises:
        ValueError: ``k > batch_size``, both/neither of ``k`` and ``fraction``, unknown ``mode``.

    Example:
        >>> select_replaced(4, k=2).tolist()
        [0, 1]
        >>> select_replaced(4, fraction=0.5, return_mask=True).tolist()
        [True, True, False, False]
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {describe(generator)}")
    n = num_replaced(batch_size, k, fraction)
    replaced, _ = split_indices(batch_size, n, mode, generator=generator, device=device)
    if not return_mask:
        return replaced
    mask = torch.zeros(batch_size, dtype=torch.bool, device=replaced.device)
    mask[replaced] = True
    return mask
