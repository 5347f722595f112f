"""``load_dataset``: digits (embedded), MNIST, CIFAR-10, STL-10 and Tiny ImageNet from files."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .._validate import describe
from ._dataset import ImageDataset
from ._subsets import train_test_split_balanced

__all__ = [
    "CorruptDatasetError",
    "DatasetNotFoundError",
    "default_root",
    "list_datasets",
    "load_dataset",
]

_SPLITS = ("train", "test")

#: Examples per class that the digits test split holds (400 test, 1,397 train images).
DIGITS_TEST_PER_CLASS = 40
#: Seed of the fixed digits and STL-10 splits.
SPLIT_SEED = 0
#: Fraction of each STL-10 class that goes to the test split: 300 of 1,300 (the ICLR 2019 study).
STL10_TEST_FRACTION = 3 / 13


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files were not found (the message says where it looked and what it needs)."""


class CorruptDatasetError(ValueError):
    """A dataset file exists but cannot be read completely or has inconsistent contents."""


def default_root() -> Path:
    """The default data directory: ``$ADVROBUST_DATA``, else ``~/.advrobust/data``."""
    env = os.environ.get("ADVROBUST_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".advrobust" / "data"


def _to_float_images(array: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` -> float32 in [0, 1]."""
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array).to(torch.float32).div_(255.0)


def _not_found(
    dataset: str, expected: list[str], looked: list[Path], where_to_get: str, layout: str
) -> DatasetNotFoundError:
    places = "\n".join(f"  - {p}" for p in looked)
    files = ", ".join(expected)
    return DatasetNotFoundError(
        f"{dataset}: dataset files not found. Expected {files}; looked in:\n{places}\n"
        f"Get them from {where_to_get} and unpack them so that {layout}. Pass root=... to "
        f"load_dataset or set the ADVROBUST_DATA environment variable to choose the directory."
    )


# --------------------------------------------------------------------------------------- digits


def _digits_file() -> Path | None:
    """scikit-learn's own copy of the digits, ``sklearn/datasets/data/digits.csv.gz`` (or None).

    Found without importing scikit-learn (``find_spec`` locates a top-level package without
    running it).
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images of scikit-learn's digits, ``(N, 8, 8)`` float32 in [0, 1], and labels.

    Read from the file ``sklearn.datasets.load_digits`` reads (one row per image: 64 pixel
    values 0..16, then the label), with the same parse, so the arrays equal ``load_digits()``'s
    images / 16 and targets; reading the file directly spares the second and a half that
    importing scikit-learn takes (a study pays it in every process). Falls back to
    ``load_digits`` when the file is not where scikit-learn keeps it. Parsed once per process
    (the arrays are read-only).
    """
    path = _digits_file()
    if path is not None:
        table = np.loadtxt(path, delimiter=",")
        pixels, labels = table[:, :-1].reshape(-1, 8, 8), table[:, -1]
    else:
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:  # pragma: no cover - scikit-learn is installed in tests
            raise ImportError(
                "the 'digits' dataset needs scikit-learn: pip install scikit-learn "
                "(or pip install 'advrobust[study]')"
            ) from exc
        bunch = load_digits()
        pixels, labels = bunch.images, bunch.target
    images = np.asarray(pixels, dtype=np.float32) / 16.0
    targets = np.asarray(labels).astype(np.int64)
    images.setflags(write=False)
    targets.setflags(write=False)
    return images, targets


def _load_digits(root: Path | None, split: str) -> ImageDataset:
    images, targets = digits_arrays()
    train_idx, test_idx = train_test_split_balanced(
        targets, DIGITS_TEST_PER_CLASS, seed=SPLIT_SEED, per_class=True
    )
    idx = train_idx if split == "train" else test_idx
    data = torch.from_numpy(images[idx]).unsqueeze(1).contiguous()
    return ImageDataset(
        data, torch.from_numpy(targets[idx]), [str(i) for i in range(10)], f"digits/{split}"
    )


# ---------------------------------------------------------------------------------------- MNIST

_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CorruptDatasetError(f"{path}: not a valid gzip file ({exc})") from exc
    return raw


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (MNIST format), checking header and length."""
    buf = _read_bytes(path)
    if len(buf) < 4 + 4 * ndim:
        raise CorruptDatasetError(f"{path}: file too short for an IDX header ({len(buf)} bytes)")
    if buf[0] != 0 or buf[1] != 0 or buf[2] != 0x08 or buf[3] != ndim:
        raise CorruptDatasetError(
            f"{path}: bad IDX magic number {buf[:4].hex()}; expected 000008{ndim:02x} "
            f"(unsigned bytes, {ndim} dimensions)"
        )
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(buf) != expected:
        raise CorruptDatasetError(
            f"{path}: header says shape {tuple(dims)} ({expected} bytes) but the file has "
            f"{len(buf)} bytes; it is truncated or corrupt"
        )
    return np.frombuffer(buf, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_mnist(root: Path | None, split: str) -> ImageDataset:
    assert root is not None
    image_base, label_base = _MNIST_FILES[split]
    candidates = [
        root / "MNIST" / "raw",
        root / "mnist" / "MNIST" / "raw",
        root / "mnist" / "raw",
        root / "mnist",
        root,
    ]
    for folder in candidates:
        images_path, labels_path = _find(folder, image_base), _find(folder, label_base)
        if images_path is not None and labels_path is not None:
            break
    else:
        raise _not_found(
            "mnist",
            [f"{image_base}[.gz]", f"{label_base}[.gz]"],
            candidates,
            "http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)",
            f"the IDX files (gzipped or not) sit in {root / 'MNIST' / 'raw'} (torchvision's "
            f"layout) or {root / 'mnist'}",
        )
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise CorruptDatasetError(
            f"mnist: {images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and labels.max() > 9:
        raise CorruptDatasetError(f"{labels_path}: labels must be 0..9, found {labels.max()}")
    data = _to_float_images(images[:, None])
    targets = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(data, targets, [str(i) for i in range(10)], f"mnist/{split}")


# ------------------------------------------------------------------------------------- CIFAR-10

_CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


class _SafeUnpickler(pickle.Unpickler):
    """Unpickle only builtin containers and numpy arrays (what the CIFAR batches contain)."""

    _ALLOWED: ClassVar[frozenset[tuple[str, str]]] = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            obj = _SafeUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CorruptDatasetError(f"{path}: cannot unpickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise CorruptDatasetError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    # Python 2 pickles (the official files) give str keys, Python 3 ones may give bytes keys.
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _load_cifar10(root: Path | None, split: str) -> ImageDataset:
    assert root is not None
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    candidates = [root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py"]
    folder = next((c for c in candidates if all((c / n).is_file() for n in names)), None)
    if folder is None:
        raise _not_found(
            "cifar10",
            [*names, "batches.meta (optional)"],
            candidates,
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            f"the python batches sit in {root / 'cifar-10-batches-py'}",
        )
    classes = list(_CIFAR10_CLASSES)
    if (folder / "batches.meta").is_file():
        meta = _unpickle(folder / "batches.meta")
        label_names = meta.get("label_names")
        if not isinstance(label_names, list) or len(label_names) != 10:
            raise CorruptDatasetError(f"{folder / 'batches.meta'}: label_names must list 10 names")
        classes = [str(n) for n in label_names]
    datas, labels = [], []
    for n in names:
        batch = _unpickle(folder / n)
        data, lab = batch.get("data"), batch.get("labels")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
            raise CorruptDatasetError(
                f"{folder / n}: 'data' must be a uint8 array (N, 3072), got {describe(data)}"
            )
        if data.shape[1] != 3072:
            raise CorruptDatasetError(f"{folder / n}: 'data' rows must have 3072 values")
        lab_arr = np.asarray(lab if lab is not None else [], dtype=np.int64)
        if lab_arr.shape != (data.shape[0],):
            raise CorruptDatasetError(
                f"{folder / n}: {data.shape[0]} images but {lab_arr.size} labels"
            )
        if lab_arr.size and (lab_arr.min() < 0 or lab_arr.max() > 9):
            raise CorruptDatasetError(f"{folder / n}: labels must be 0..9")
        datas.append(data)
        labels.append(lab_arr)
    images = np.concatenate(datas).reshape(-1, 3, 32, 32)
    targets = torch.from_numpy(np.concatenate(labels))
    return ImageDataset(_to_float_images(images), targets, classes, f"cifar10/{split}")


# ---------------------------------------------------------------------------------------- STL-10

_STL10_CLASSES = [
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
]
_STL10_IMAGE_BYTES = 3 * 96 * 96


def _read_stl_pair(x_path: Path, y_path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(x_path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _STL10_IMAGE_BYTES:
        raise CorruptDatasetError(
            f"{x_path}: size {raw.size} bytes is not a positive multiple of one 96x96x3 image "
            f"({_STL10_IMAGE_BYTES} bytes); the file is truncated or corrupt"
        )
    # Each image is stored channel by channel in column-major order.
    images = raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64)
    if labels.size != images.shape[0]:
        raise CorruptDatasetError(
            f"stl10: {x_path} holds {images.shape[0]} images but {y_path} holds "
            f"{labels.size} labels"
        )
    if labels.min() < 1 or labels.max() > 10:
        raise CorruptDatasetError(
            f"{y_path}: labels must be 1..10, got {labels.min()}..{labels.max()}"
        )
    return images, labels - 1


def _load_stl10(root: Path | None, split: str) -> ImageDataset:
    assert root is not None
    names = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    candidates = [root / "stl10_binary", root / "stl10" / "stl10_binary"]
    folder = next((c for c in candidates if all((c / n).is_file() for n in names)), None)
    if folder is None:
        raise _not_found(
            "stl10",
            [*names, "class_names.txt (optional)"],
            candidates,
            "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
            f"the binary files sit in {root / 'stl10_binary'}",
        )
    classes = list(_STL10_CLASSES)
    names_file = folder / "class_names.txt"
    if names_file.is_file():
        lines = [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
        if len(lines) != 10:
            raise CorruptDatasetError(f"{names_file}: expected 10 class names, got {len(lines)}")
        classes = lines
    x1, y1 = _read_stl_pair(folder / "train_X.bin", folder / "train_y.bin")
    x2, y2 = _read_stl_pair(folder / "test_X.bin", folder / "test_y.bin")
    images = np.concatenate([x1, x2])
    labels = np.concatenate([y1, y2])
    train_idx, test_idx = train_test_split_balanced(labels, STL10_TEST_FRACTION, seed=SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    return ImageDataset(
        _to_float_images(images[idx]),
        torch.from_numpy(labels[idx]),
        classes,
        f"stl10/{split}",
    )


# --------------------------------------------------------------------------------- Tiny ImageNet


def _read_images(paths: list[Path]) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - pillow is installed in tests
        raise ImportError(
            "loading 'tiny-imagenet' needs Pillow: pip install pillow (or 'advrobust[images]')"
        ) from exc
    out: np.ndarray | None = None
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise CorruptDatasetError(f"{p}: cannot decode image ({exc})") from exc
        if out is None:
            out = np.empty((len(paths), *arr.shape), dtype=np.uint8)
        if arr.shape != out.shape[1:]:
            raise CorruptDatasetError(
                f"{p}: image of shape {arr.shape[:2]}, expected {out.shape[1:3]} like the others"
            )
        out[i] = arr
    if out is None:
        return np.empty((0, 64, 64, 3), dtype=np.uint8)
    return out.transpose(0, 3, 1, 2)


def _load_tiny_imagenet(root: Path | None, split: str) -> ImageDataset:
    assert root is not None
    candidates = [root / "tiny-imagenet-200", root / "tiny-imagenet" / "tiny-imagenet-200"]
    needed = ["wnids.txt", "train", "val/images", "val/val_annotations.txt"]
    folder = next((c for c in candidates if all((c / n).exists() for n in needed)), None)
    if folder is None:
        raise _not_found(
            "tiny-imagenet",
            [
                "wnids.txt",
                "train/<wnid>/images/*.JPEG",
                "val/images/*.JPEG",
                "val/val_annotations.txt",
                "words.txt (optional)",
            ],
            candidates,
            "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
            f"the unzipped folder is {root / 'tiny-imagenet-200'}",
        )
    wnids = sorted(
        {ln.strip() for ln in (folder / "wnids.txt").read_text().splitlines() if ln.strip()}
    )
    if not wnids:
        raise CorruptDatasetError(f"{folder / 'wnids.txt'}: no class ids")
    index = {w: i for i, w in enumerate(wnids)}
    words: dict[str, str] = {}
    if (folder / "words.txt").is_file():
        for ln in (folder / "words.txt").read_text().splitlines():
            parts = ln.split("\t", 1)
            if len(parts) == 2:
                words[parts[0].strip()] = parts[1].strip()
    classes = [words.get(w, w) for w in wnids]
    paths: list[Path] = []
    labels: list[int] = []
    if split == "train":
        for w in wnids:
            img_dir = folder / "train" / w / "images"
            files = sorted(p for p in img_dir.glob("*") if p.is_file()) if img_dir.is_dir() else []
            if not files:
                raise CorruptDatasetError(f"tiny-imagenet: no training images in {img_dir}")
            paths += files
            labels += [index[w]] * len(files)
    else:
        ann = folder / "val" / "val_annotations.txt"
        for n, ln in enumerate(ann.read_text().splitlines(), 1):
            if not ln.strip():
                continue
            parts = ln.split("\t")
            if len(parts) < 2 or parts[1].strip() not in index:
                raise CorruptDatasetError(f"{ann}:{n}: expected '<file>\\t<wnid>...', got {ln!r}")
            p = folder / "val" / "images" / parts[0].strip()
            if not p.is_file():
                raise CorruptDatasetError(f"{ann}:{n}: annotated image {p} does not exist")
            paths.append(p)
            labels.append(index[parts[1].strip()])
        on_disk = sum(1 for p in (folder / "val" / "images").glob("*") if p.is_file())
        if on_disk != len(paths):
            raise CorruptDatasetError(
                f"{ann}: {len(paths)} annotations but {on_disk} files in "
                f"{folder / 'val' / 'images'}"
            )
        if not paths:
            raise CorruptDatasetError(f"{ann}: no validation annotations")
    images = _read_images(paths)
    return ImageDataset(
        _to_float_images(images),
        torch.tensor(labels, dtype=torch.int64),
        classes,
        f"tiny-imagenet/{split}",
    )


_LOADERS: dict[str, Callable[[Path | None, str], ImageDataset]] = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "cifar10": _load_cifar10,
    "stl10": _load_stl10,
    "tiny-imagenet": _load_tiny_imagenet,
}


def list_datasets() -> list[str]:
    """The names :func:`load_dataset` accepts.

    Returns:
        ``["cifar10", "digits", "mnist", "stl10", "tiny-imagenet"]``.
    """
    return sorted(_LOADERS)


def load_dataset(
    name: str, root: str | os.PathLike[str] | None = None, split: str = "train"
) -> ImageDataset:
    """Load a dataset split into memory as an :class:`ImageDataset` (float32 NCHW in [0, 1]).

    Datasets and their splits:

    - ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, 1x8x8, pixel values / 16);
      no files needed. A fixed stratified split (seed 0) puts 40 images of every class in
      ``test`` (400) and the other 1,397 in ``train``.
    - ``mnist``: the four IDX files, gzipped or not, in ``root/MNIST/raw`` (torchvision's
      layout), ``root/mnist`` or ``root``. 60,000 / 10,000 images, 1x28x28.
    - ``cifar10``: the python batches in ``root/cifar-10-batches-py``. 50,000 / 10,000, 3x32x32.
    - ``stl10``: the binary files in ``root/stl10_binary``. As in the ICLR 2019 study, the 13,000
      labelled images (train + test files) are split per class into 1,000 train and 300 test
      images (10,000 / 3,000; in general ``round(3/13 * n_c)`` of class ``c`` go to test),
      deterministically (seed 0). 3x96x96.
    - ``tiny-imagenet``: ``root/tiny-imagenet-200`` as unzipped; ``test`` is the validation
      set (labels from ``val/val_annotations.txt``). 100,000 / 10,000 images, 3x64x64,
      200 classes in sorted wnid order. Needs Pillow. The float32 train split takes ~4.9 GB.

    ``mean`` and ``std`` of the result are the per-channel statistics of the loaded split.

    Args:
        name: One of :func:`list_datasets`.
        root: Data directory; default ``$ADVROBUST_DATA`` or ``~/.advrobust/data``.
        split: ``"train"`` or ``"test"``.

    Returns:
        The split as an :class:`ImageDataset`.

    Raises:
        ValueError: On an unknown name or split (the message lists the valid ones).
        DatasetNotFoundError: If the files are missing (the message says where it looked,
            which files it expects and where to get them); a ``FileNotFoundError``.
        CorruptDatasetError: If a file is truncated or inconsistent; a ``ValueError``.

    Example:
        >>> ds = load_dataset("digits", split="test")
        >>> ds.data.shape, ds.targets.bincount().tolist()[:3]
        (torch.Size([400, 1, 8, 8]), [40, 40, 40])
    """
    if not isinstance(name, str) or name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {', '.join(_SPLITS)}, got {split!r}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path or None, got {describe(root)}")
    path = default_root() if root is None else Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"root must be a folder holding the dataset files, got the file {path}")
    return _LOADERS[name](None if name == "digits" else path, split)
