"""nested_balanced_subsets and train_test_split_balanced: properties and errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from advrobust.data import nested_balanced_subsets, train_test_split_balanced


@st.composite
def labelled_sets(draw: st.DrawFn) -> tuple[np.ndarray, list[int]]:
    """Any label distribution (class ids need not be contiguous) and valid per-class sizes."""
    num_classes = draw(st.integers(1, 6))
    class_ids = draw(
        st.lists(st.integers(0, 50), min_size=num_classes, max_size=num_classes, unique=True)
    )
    counts = draw(st.lists(st.integers(1, 30), min_size=num_classes, max_size=num_classes))
    labels = np.concatenate([np.full(n, c) for c, n in zip(class_ids, counts, strict=True)])
    order = draw(st.permutations(range(labels.size)))
    labels = labels[np.asarray(order, dtype=np.int64)]
    per = sorted(draw(st.sets(st.integers(1, min(counts)), min_size=1, max_size=4)))
    return labels.astype(np.int64), per


@settings(max_examples=60, deadline=None)
@given(data=labelled_sets(), seed=st.integers(0, 2**32 - 1))
def test_subsets_are_nested_balanced_and_deterministic(
    data: tuple[np.ndarray, list[int]], seed: int
) -> None:
    labels, per = data
    k = np.unique(labels).size
    subsets = nested_balanced_subsets(labels, [m * k for m in per], seed=seed)
    assert len(subsets) == len(per)
    for m, s in zip(per, subsets, strict=True):
        assert s.dtype == np.int64
        assert np.all(np.diff(s) > 0)  # sorted, no duplicates
        _, counts = np.unique(labels[s], return_counts=True)
        assert counts.tolist() == [m] * k  # every class, m examples each
    for small, large in itertools.pairwise(subsets):
        assert np.isin(small, large).all()  # S_i ⊂ S_{i+1}
    again = nested_balanced_subsets(labels, [m * k for m in per], seed=seed)
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again, strict=True))
    per_class = nested_balanced_subsets(torch.from_numpy(labels), per, seed=seed, per_class=True)
    assert all(np.array_equal(a, b) for a, b in zip(subsets, per_class, strict=True))


@settings(max_examples=40, deadline=None)
@given(data=labelled_sets(), seed=st.integers(0, 2**32 - 1))
def test_each_class_selection_depends_only_on_its_own_positions(
    data: tuple[np.ndarray, list[int]], seed: int
) -> None:
    # Each class's order depends on (seed, class id, its positions) only: adding a class, and
    # so changing which classes exist and in which order they appear, changes nothing else.
    labels, per = data
    classes = np.unique(labels)
    k = classes.size
    sizes = [m * k for m in per]
    subsets = nested_balanced_subsets(labels, sizes, seed=seed)
    # Extend the set with a new class: existing classes keep their selections.
    extra = np.concatenate([labels, np.full(max(per), classes.max() + 1)])
    bigger = nested_balanced_subsets(extra, [m * (k + 1) for m in per], seed=seed)
    for s, b in zip(subsets, bigger, strict=True):
        assert np.array_equal(b[b < labels.size], s)


def test_different_seeds_give_different_subsets() -> None:
    labels = np.repeat(np.arange(10), 100)
    a = nested_balanced_subsets(labels, [100], seed=0)[0]
    b = nested_balanced_subsets(labels, [100], seed=1)[0]
    assert not np.array_equal(a, b)


def test_subset_errors_are_clear() -> None:
    labels = np.repeat(np.arange(3), [5, 4, 6])
    with pytest.raises(ValueError, match=r"not divisible by the number of classes \(3\)"):
        nested_balanced_subsets(labels, [4], seed=0)
    with pytest.raises(ValueError, match=r"strictly increasing"):
        nested_balanced_subsets(labels, [6, 3], seed=0)
    with pytest.raises(ValueError, match=r"strictly increasing"):
        nested_balanced_subsets(labels, [3, 3], seed=0)
    with pytest.raises(ValueError, match=r"needs 5 examples per class.*\[1\].*only 4"):
        nested_balanced_subsets(labels, [15], seed=0)
    with pytest.raises(ValueError, match=r"1-D"):
        nested_balanced_subsets(labels.reshape(3, 5), [3], seed=0)
    with pytest.raises(TypeError, match=r"integer class labels"):
        nested_balanced_subsets(labels.astype(np.float32), [3], seed=0)
    with pytest.raises(TypeError, match=r"integer class labels"):
        nested_balanced_subsets(torch.rand(15), [3], seed=0)
    with pytest.raises(TypeError, match=r"integer class labels"):
        nested_balanced_subsets(["a", "b", "c"], [3], seed=0)
    with pytest.raises(ValueError, match=r"non-negative"):
        nested_balanced_subsets(np.array([-1, 0, 1]), [3], seed=0)
    with pytest.raises(TypeError, match=r"seed must be an int"):
        nested_balanced_subsets(labels, [3], seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"sizes must be a sequence"):
        nested_balanced_subsets(labels, 3, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"at least one size"):
        nested_balanced_subsets(labels, [], seed=0)
    with pytest.raises(ValueError, match=r"sizes\[0\] must be >= 1"):
        nested_balanced_subsets(labels, [0], seed=0)
    with pytest.raises(ValueError, match=r"empty"):
        nested_balanced_subsets(np.array([], dtype=np.int64), [3], seed=0)


@settings(max_examples=40, deadline=None)
@given(data=labelled_sets(), seed=st.integers(0, 2**32 - 1))
def test_train_test_split_partitions_and_balances(
    data: tuple[np.ndarray, list[int]], seed: int
) -> None:
    labels, _ = data
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        with pytest.raises(ValueError, match=r"none for training"):
            train_test_split_balanced(labels, 1, seed=seed, per_class=True)
        return
    train, test = train_test_split_balanced(labels, 1, seed=seed, per_class=True)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(labels.size))
    assert np.unique(labels[test], return_counts=True)[1].tolist() == [1] * classes.size
    train2, test2 = train_test_split_balanced(labels, 1, seed=seed, per_class=True)
    assert np.array_equal(train, train2) and np.array_equal(test, test2)


def test_train_test_split_sizes() -> None:
    labels = np.repeat(np.arange(10), 1300)
    train, test = train_test_split_balanced(labels, 3 / 13, seed=0)
    assert np.bincount(labels[train]).tolist() == [1000] * 10
    assert np.bincount(labels[test]).tolist() == [300] * 10
    _, test = train_test_split_balanced(labels, 50, seed=0)
    assert np.bincount(labels[test]).tolist() == [5] * 10
    with pytest.raises(ValueError, match=r"not divisible"):
        train_test_split_balanced(labels, 55, seed=0)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        train_test_split_balanced(labels, 1.5, seed=0)
