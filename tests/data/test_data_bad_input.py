"""Bad-input matrix of the data layer's public entry points.

Every case asserts the exception type and that the message names the argument (and, where it
helps, what was expected). Cases marked "was:" failed differently before this file: silently
accepted, or a raw torch/numpy error that named nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from advrobust.data import (
    Compose,
    ImageDataset,
    RandomFlip,
    RandomRotation,
    RandomShift,
    TensorLoader,
    load_dataset,
    nested_balanced_subsets,
    train_test_split_balanced,
)

Y = np.array([0, 1, 0, 1, 0, 1])


def _ds() -> ImageDataset:
    return ImageDataset(torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]), ["a", "b"])


def _loader(**kw: object) -> TensorLoader:
    return TensorLoader(torch.rand(4, 3), torch.arange(4), **{"batch_size": 2, **kw})  # type: ignore[arg-type]


CASES: list[tuple[str, Callable[[], object], type[Exception], tuple[str, ...]]] = [
    # load_dataset
    ("load_dataset unknown name", lambda: load_dataset("svhn"), ValueError, ("svhn", "digits")),
    ("load_dataset name not a str", lambda: load_dataset(5), ValueError, ("5", "valid names")),  # type: ignore[arg-type]
    ("load_dataset split", lambda: load_dataset("digits", split="val"), ValueError, ("split",)),
    ("load_dataset root type", lambda: load_dataset("mnist", root=5), TypeError, ("root",)),  # type: ignore[arg-type]
    # nested_balanced_subsets
    ("subsets sizes empty", lambda: nested_balanced_subsets(Y, [], seed=0), ValueError, ("sizes",)),
    ("subsets sizes int", lambda: nested_balanced_subsets(Y, 4, seed=0), TypeError, ("sizes",)),  # type: ignore[arg-type]
    (
        "subsets sizes float",
        lambda: nested_balanced_subsets(Y, [2.0], seed=0),
        TypeError,
        ("sizes[0]",),
    ),  # type: ignore[list-item]
    (
        "subsets sizes bool",
        lambda: nested_balanced_subsets(Y, [True], seed=0),
        TypeError,
        ("sizes[0]",),
    ),
    (
        "subsets sizes zero",
        lambda: nested_balanced_subsets(Y, [0], seed=0),
        ValueError,
        ("sizes[0]", ">= 1"),
    ),
    (
        "subsets sizes odd",
        lambda: nested_balanced_subsets(Y, [3], seed=0),
        ValueError,
        ("sizes[0]", "divisible"),
    ),
    (
        "subsets sizes order",
        lambda: nested_balanced_subsets(Y, [4, 2], seed=0),
        ValueError,
        ("strictly increasing",),
    ),
    (
        "subsets too large",
        lambda: nested_balanced_subsets(Y, [8], seed=0),
        ValueError,
        ("largest", "6 examples"),
    ),
    (
        "subsets seed negative",
        lambda: nested_balanced_subsets(Y, [2], seed=-1),
        ValueError,
        ("seed", ">= 0"),
    ),
    ("subsets seed float", lambda: nested_balanced_subsets(Y, [2], seed=1.5), TypeError, ("seed",)),  # type: ignore[arg-type]
    ("subsets seed None", lambda: nested_balanced_subsets(Y, [2], seed=None), TypeError, ("seed",)),  # type: ignore[arg-type]
    (
        "subsets targets float",
        lambda: nested_balanced_subsets(torch.rand(4), [2], seed=0),
        TypeError,
        ("targets", "integer"),
    ),
    (
        "subsets targets 2-D",
        lambda: nested_balanced_subsets(np.zeros((2, 2), int), [2], seed=0),
        ValueError,
        ("targets", "1-D"),
    ),
    (
        "subsets targets negative",
        lambda: nested_balanced_subsets([-1, 0], [2], seed=0),
        ValueError,
        ("targets", "non-negative"),
    ),
    (
        "subsets targets None",
        lambda: nested_balanced_subsets(None, [2], seed=0),
        TypeError,
        ("targets",),
    ),
    (
        "subsets targets empty",
        lambda: nested_balanced_subsets(np.array([], int), [2], seed=0),
        ValueError,
        ("targets is empty",),
    ),
    # was: per_class="no" accepted as True
    (
        "subsets per_class str",
        lambda: nested_balanced_subsets(Y, [2], seed=0, per_class="no"),
        TypeError,
        ("per_class", "bool"),
    ),  # type: ignore[arg-type]
    (
        "split per_class str",
        lambda: train_test_split_balanced(Y, 2, seed=0, per_class="no"),
        TypeError,
        ("per_class",),
    ),  # type: ignore[arg-type]
    (
        "split test_size zero",
        lambda: train_test_split_balanced(Y, 0, seed=0),
        ValueError,
        ("test_size",),
    ),
    (
        "split test_size fraction",
        lambda: train_test_split_balanced(Y, 1.0, seed=0),
        ValueError,
        ("test_size", "(0, 1)"),
    ),
    (
        "split test_size str",
        lambda: train_test_split_balanced(Y, "2", seed=0),
        TypeError,
        ("test_size",),
    ),  # type: ignore[arg-type]
    (
        "split leaves no train",
        lambda: train_test_split_balanced(Y, 3, seed=0, per_class=True),
        ValueError,
        ("class 0", "none for"),
    ),
    # TensorLoader
    (
        "loader x not a tensor",
        lambda: TensorLoader([1, 2], torch.arange(2), batch_size=1),
        TypeError,
        ("x",),
    ),  # type: ignore[arg-type]
    (
        "loader y not a tensor",
        lambda: TensorLoader(torch.rand(2), [0, 1], batch_size=1),
        TypeError,
        ("y",),
    ),  # type: ignore[arg-type]
    (
        "loader lengths",
        lambda: TensorLoader(torch.rand(2, 3), torch.arange(3), batch_size=1),
        ValueError,
        ("same number of examples",),
    ),
    ("loader batch_size zero", lambda: _loader(batch_size=0), ValueError, ("batch_size", ">= 1")),
    ("loader batch_size float", lambda: _loader(batch_size=1.5), TypeError, ("batch_size",)),
    ("loader generator", lambda: _loader(generator=1), TypeError, ("generator",)),
    ("loader augment", lambda: _loader(augment=3), TypeError, ("augment",)),
    # was: RuntimeError "Invalid device string: 'gpu0'" (and 5.5 accepted)
    (
        "loader device string",
        lambda: _loader(device="gpu0"),
        ValueError,
        ("device", "cpu, cuda, cuda:N"),
    ),
    ("loader device type", lambda: _loader(device=5.5), TypeError, ("device",)),
    ("loader set_epoch", lambda: _loader().set_epoch(-1), ValueError, ("epoch", ">= 0")),
    (
        "loader from_dataset",
        lambda: TensorLoader.from_dataset(None, batch_size=1),
        TypeError,
        ("dataset",),
    ),
    # ImageDataset
    (
        "dataset data 3-D",
        lambda: ImageDataset(torch.rand(2, 8, 8), torch.arange(2), ["a", "b"]),
        ValueError,
        ("data", "(N, C, H, W)"),
    ),
    (
        "dataset data uint8",
        lambda: ImageDataset(
            torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.arange(2), ["a", "b"]
        ),
        TypeError,
        ("data", "floating"),
    ),
    (
        "dataset data range",
        lambda: ImageDataset(torch.rand(2, 1, 2, 2) * 255, torch.arange(2), ["a", "b"]),
        ValueError,
        ("data", "[0, 1]"),
    ),
    # was: NaN pixels accepted (min/max comparisons are False for NaN)
    (
        "dataset data NaN",
        lambda: ImageDataset(torch.full((2, 1, 2, 2), float("nan")), torch.arange(2), ["a", "b"]),
        ValueError,
        ("data", "NaN"),
    ),
    (
        "dataset targets float",
        lambda: ImageDataset(torch.rand(2, 1, 2, 2), torch.rand(2), ["a", "b"]),
        TypeError,
        ("targets",),
    ),
    (
        "dataset targets shape",
        lambda: ImageDataset(torch.rand(2, 1, 2, 2), torch.arange(3), ["a", "b"]),
        ValueError,
        ("targets", "(2,)"),
    ),
    (
        "dataset targets range",
        lambda: ImageDataset(torch.rand(2, 1, 2, 2), torch.tensor([0, 5]), ["a", "b"]),
        ValueError,
        ("targets", "[0, 2)"),
    ),
    # was: classes="ab" accepted as two classes "a" and "b"
    (
        "dataset classes str",
        lambda: ImageDataset(torch.rand(2, 1, 2, 2), torch.arange(2), "ab"),
        TypeError,
        ("classes",),
    ),  # type: ignore[arg-type]
    ("subset 2-D", lambda: _ds().subset([[1]]), ValueError, ("indices", "1-D")),  # type: ignore[list-item]
    ("subset out of range", lambda: _ds().subset([10]), IndexError, ("indices", "4 examples")),
    # was: float indices truncated silently, a boolean mask read as indices 0/1
    ("subset float", lambda: _ds().subset([1.5]), TypeError, ("indices", "float")),  # type: ignore[list-item]
    (
        "subset bool mask",
        lambda: _ds().subset(np.array([True, False, True, False])),
        TypeError,
        ("indices", "mask"),
    ),
    ("subset str", lambda: _ds().subset(["a"]), TypeError, ("indices",)),  # type: ignore[list-item]
    # was: RuntimeError "Invalid device string"
    ("dataset.to device", lambda: _ds().to("gpu0"), ValueError, ("device", "cpu, cuda")),
    # augmentation
    ("shift pad negative", lambda: RandomShift(-1), ValueError, ("pad",)),
    ("shift pad float", lambda: RandomShift(1.5), TypeError, ("pad",)),  # type: ignore[arg-type]
    ("rotation NaN", lambda: RandomRotation(float("nan")), ValueError, ("degrees",)),
    ("flip p", lambda: RandomFlip(p=2), ValueError, ("p", "[0, 1]")),
    ("compose item", lambda: Compose([1]), TypeError, ("transforms[0]",)),  # type: ignore[list-item]
    ("shift x 2-D", lambda: RandomShift(1)(torch.rand(3, 3)), ValueError, ("x", "(B, C, H, W)")),
    # was: AttributeError "'int' object has no attribute 'device'"
    (
        "flip generator",
        lambda: RandomFlip()(torch.rand(1, 1, 3, 3), generator=5),
        TypeError,
        ("generator",),
    ),  # type: ignore[arg-type]
    (
        "shift generator",
        lambda: RandomShift(1)(torch.rand(1, 1, 3, 3), generator="x"),
        TypeError,
        ("generator",),
    ),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("case", "call", "kind", "words"), CASES, ids=[c[0] for c in CASES])
def test_data_bad_input_names_the_argument(
    case: str, call: Callable[[], object], kind: type[Exception], words: tuple[str, ...]
) -> None:
    with pytest.raises(kind) as info:
        call()
    for word in words:
        assert word in str(info.value), (case, str(info.value))


def test_load_dataset_root_that_is_a_file_is_named(tmp_path: Path) -> None:
    # was: "dataset files not found ... looked in <file>/MNIST/raw", as if a folder
    path = tmp_path / "mnist.tar"
    path.write_bytes(b"not a folder")
    with pytest.raises(ValueError, match=r"root must be a folder .* got the file .*mnist\.tar"):
        load_dataset("mnist", root=path)


def test_subset_keeps_integer_and_negative_positions() -> None:
    # the checks refuse floats and masks but keep what worked: ints, numpy ints, tensors,
    # negative positions counted from the end
    ds = _ds()
    assert torch.equal(ds.subset(torch.tensor([3, 0])).data, ds.data[[3, 0]])
    assert torch.equal(ds.subset(np.array([-1], dtype=np.int32)).data, ds.data[[3]])
    assert len(ds.subset([])) == 0
