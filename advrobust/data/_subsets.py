"""Nested class-balanced subsets and balanced train/test splits (the ICLR 2019 study, section 3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .._validate import check_int, describe

__all__ = ["as_label_array", "nested_balanced_subsets", "train_test_split_balanced"]


def as_label_array(targets: object, name: str = "targets") -> np.ndarray:
    """Convert 1-D integer class labels (tensor, array or sequence) to an int64 numpy array."""
    if isinstance(targets, torch.Tensor):
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer class labels, got dtype {targets.dtype}")
        arr = targets.detach().cpu().numpy()
    else:
        try:
            arr = np.asarray(targets)
        except Exception as exc:  # pragma: no cover - numpy raises many types here
            raise TypeError(f"{name} must be 1-D integer labels, got {describe(targets)}") from exc
        if arr.dtype == object or arr.dtype.kind not in "iu":
            if arr.size == 0 and arr.ndim == 1 and arr.dtype.kind == "f":
                arr = arr.astype(np.int64)
            else:
                raise TypeError(
                    f"{name} must hold integer class labels, got dtype {arr.dtype} "
                    f"({describe(targets)})"
                )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per example), got shape {arr.shape}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must hold non-negative class indices, got minimum {arr.min()}")
    return arr


def _class_orders(labels: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    """For each class, its example indices in a seeded random order.

    The order of class ``c`` depends only on ``seed``, ``c`` and the positions of class ``c``,
    never on the other classes or on the order in which classes first appear.
    """
    orders: dict[int, np.ndarray] = {}
    for c in np.unique(labels).tolist():
        idx = np.flatnonzero(labels == c)
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(c)]))
        orders[int(c)] = idx[rng.permutation(idx.size)]
    return orders


def _as_int(value: object, name: str) -> int:
    """A positive int (numpy integers accepted)."""
    if isinstance(value, np.integer):
        value = int(value)
    return check_int(value, name, minimum=1)


def _check_seed(seed: object) -> int:
    if isinstance(seed, (np.integer,)):
        seed = int(seed)
    return check_int(seed, "seed", minimum=0)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {describe(value)}")
    return bool(value)


def nested_balanced_subsets(
    targets: object, sizes: Sequence[int], *, seed: int, per_class: bool = False
) -> list[np.ndarray]:
    """Nested, class-balanced subsets ``S_1 ⊂ S_2 ⊂ ... ⊂ S_n`` (ICLR 2019 study).

    Each class's examples are put in a random order fixed by ``(seed, class)``; ``S_i`` takes
    the first ``m_i`` examples of every class, so every subset holds the same number of
    examples per class and each subset contains the previous ones. The result depends only on
    ``targets`` and ``seed`` (not on the order in which classes first appear), and the order
    of class ``c`` does not depend on the other classes.

    Args:
        targets: 1-D integer class labels (tensor, numpy array or sequence) of the full set.
        sizes: Strictly increasing subset sizes: totals over all classes (each divisible by
            the number of classes), or per-class counts when ``per_class`` is true.
        seed: Non-negative integer seed.
        per_class: Interpret ``sizes`` as per-class counts.

    Returns:
        One sorted ``int64`` index array into ``targets`` per size.

    Raises:
        TypeError: If ``targets`` are not integer labels, ``sizes``/``seed`` are not ints or
            ``per_class`` is not a bool.
        ValueError: If ``targets`` is not 1-D or empty, a total is not divisible by the number
            of classes, sizes are not strictly increasing, or a class has too few examples.

    Example:
        >>> import numpy as np
        >>> y = np.array([0, 1, 0, 1, 0, 1, 2, 2, 2])
        >>> small, large = nested_balanced_subsets(y, [3, 6], seed=0)
        >>> set(small) <= set(large), np.bincount(y[large]).tolist()
        (True, [2, 2, 2])
    """
    labels = as_label_array(targets)
    seed = _check_seed(seed)
    per_class = _check_bool(per_class, "per_class")
    if isinstance(sizes, (int, np.integer)) or not isinstance(sizes, (Sequence, np.ndarray)):
        raise TypeError(f"sizes must be a sequence of ints, got {describe(sizes)}")
    if len(sizes) == 0:
        raise ValueError("sizes must contain at least one size")
    if labels.size == 0:
        raise ValueError("targets is empty; there is nothing to take subsets of")
    classes, counts = np.unique(labels, return_counts=True)
    k = classes.size
    per: list[int] = []
    for i, value in enumerate(list(sizes)):
        s = _as_int(value, f"sizes[{i}]")
        if per_class:
            per.append(s)
        else:
            if s % k:
                raise ValueError(
                    f"sizes[{i}]={s} is not divisible by the number of classes ({k}); "
                    f"balanced subsets need a multiple of {k} (or per_class=True)"
                )
            per.append(s // k)
    for i in range(1, len(per)):
        if per[i] <= per[i - 1]:
            raise ValueError(f"sizes must be strictly increasing, got {list(sizes)}")
    smallest = int(counts.min())
    if per[-1] > smallest:
        short = classes[counts < per[-1]].tolist()
        raise ValueError(
            f"the largest subset needs {per[-1]} examples per class, but class(es) {short[:10]} "
            f"have only {smallest} (smallest class); the largest balanced subset has "
            f"{smallest * k} examples ({smallest} per class)"
        )
    orders = _class_orders(labels, seed)
    out = []
    for m in per:
        idx = np.concatenate([orders[int(c)][:m] for c in classes])
        out.append(np.sort(idx).astype(np.int64))
    return out


def train_test_split_balanced(
    targets: object,
    test_size: int | float,
    *,
    seed: int,
    per_class: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a labelled set into train and test index arrays, stratified by class.

    Each class's examples are put in the same seeded order as :func:`nested_balanced_subsets`
    uses, and the first ``t_c`` of class ``c`` go to the test split:
    ``t_c = test_size`` with ``per_class=True``; ``t_c = test_size / num_classes`` for an int
    total (which must be divisible by the number of classes); ``t_c = round(test_size * n_c)``
    for a float fraction in (0, 1). Every other example goes to the train split.

    Args:
        targets: 1-D integer class labels.
        test_size: Per-class count, total count, or fraction of each class (see above).
        seed: Non-negative integer seed.
        per_class: Interpret an int ``test_size`` as a per-class count.

    Returns:
        ``(train_indices, test_indices)``, sorted ``int64`` arrays that partition the set.

    Raises:
        ValueError: If a class is too small or ``test_size`` is out of range.

    Example:
        >>> import numpy as np
        >>> y = np.repeat(np.arange(3), 5)
        >>> train, test = train_test_split_balanced(y, 2, seed=0, per_class=True)
        >>> len(train), np.bincount(y[test]).tolist()
        (9, [2, 2, 2])
    """
    labels = as_label_array(targets)
    seed = _check_seed(seed)
    per_class = _check_bool(per_class, "per_class")
    if labels.size == 0:
        raise ValueError("targets is empty; there is nothing to split")
    classes, counts = np.unique(labels, return_counts=True)
    k = classes.size
    if isinstance(test_size, float):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"a fractional test_size must be in (0, 1), got {test_size}")
        take = {int(c): round(test_size * int(n)) for c, n in zip(classes, counts, strict=True)}
    else:
        test_size = _as_int(test_size, "test_size")
        if per_class:
            t = test_size
        else:
            if test_size % k:
                raise ValueError(
                    f"test_size={test_size} is not divisible by the number of classes ({k})"
                )
            t = test_size // k
        take = {int(c): t for c in classes}
    for c, n in zip(classes.tolist(), counts.tolist(), strict=True):
        if take[c] >= n:
            raise ValueError(
                f"class {c} has {n} examples; a test split of {take[c]} would leave none for "
                f"training"
            )
    orders = _class_orders(labels, seed)
    test = np.concatenate([orders[c][: take[c]] for c in orders])
    mask = np.ones(labels.size, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask).astype(np.int64), np.sort(test).astype(np.int64)
