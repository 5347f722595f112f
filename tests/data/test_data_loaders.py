"""load_dataset: digits, and every file format written here in miniature and read back."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from advrobust.data import (
    CorruptDatasetError,
    DatasetNotFoundError,
    ImageDataset,
    default_root,
    list_datasets,
    load_dataset,
)

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_balanced_and_scaled() -> None:
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert (len(train), len(test)) == (1397, 400)
    assert train.data.shape == (1397, 1, 8, 8) and train.data.dtype == torch.float32
    assert train.targets.dtype == torch.int64
    assert test.targets.bincount().tolist() == [40] * 10
    assert float(train.data.min()) == 0.0 and float(train.data.max()) == 1.0
    assert train.classes == [str(i) for i in range(10)]
    assert train.name == "digits/train"
    # The two splits partition the 1,797 images: compare as rows.
    from sklearn.datasets import load_digits

    all_images = torch.from_numpy(load_digits().images.astype(np.float32) / 16).view(1797, -1)
    rows = torch.cat([train.data, test.data]).view(1797, -1)
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, all_images.tolist()))
    assert torch.equal(load_dataset("digits").data, train.data)  # deterministic
    torch.testing.assert_close(
        torch.tensor(train.mean, dtype=torch.float64),
        train.data.double().mean(dim=(0, 2, 3)),
        rtol=1e-6,
        atol=1e-6,
    )


def test_digits_read_from_scikit_learns_file_equal_load_digits_and_need_no_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from advrobust.data import _datasets

    bunch = load_digits()
    images, targets = _datasets.digits_arrays()
    assert _datasets._digits_file() is not None  # (the file scikit-learn ships is found)
    np.testing.assert_array_equal(images, bunch.images.astype(np.float32) / 16)
    np.testing.assert_array_equal(targets, bunch.target)
    assert not images.flags.writeable  # (shared by every load in the process)
    # without the file (another layout of scikit-learn): load_digits itself, the same arrays
    monkeypatch.setattr(_datasets, "_digits_file", lambda: None)
    _datasets.digits_arrays.cache_clear()
    try:
        again, labels = _datasets.digits_arrays()
    finally:
        _datasets.digits_arrays.cache_clear()
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(labels, targets)
    # the point of reading the file: loading the digits does not import scikit-learn
    code = (
        "import sys; from advrobust.data import load_dataset; load_dataset('digits'); "
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_image_dataset_subset_and_validation() -> None:
    ds = load_dataset("digits", split="test")
    sub = ds.subset(np.array([0, 5, 7]))
    assert len(sub) == 3 and sub.mean == ds.mean and sub.classes == ds.classes
    assert torch.equal(sub.data[1], ds.data[5])
    x, y = ds[5]
    assert x.shape == (1, 8, 8) and int(y) == int(ds.targets[5])
    assert ds.num_classes == 10 and ds.shape == (1, 8, 8)
    with pytest.raises(IndexError):
        ds.subset([400])
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        ImageDataset(torch.rand(3, 8, 8), torch.zeros(3, dtype=torch.long), ["a"])
    with pytest.raises(ValueError, match=r"targets must lie in"):
        ImageDataset(torch.rand(2, 1, 2, 2), torch.tensor([0, 2]), ["a", "b"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ImageDataset(torch.rand(2, 1, 2, 2) * 255, torch.tensor([0, 1]), ["a", "b"])
    with pytest.raises(TypeError, match=r"floating-point"):
        ImageDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"])


def test_unknown_names_and_splits() -> None:
    assert list_datasets() == ["cifar10", "digits", "mnist", "stl10", "tiny-imagenet"]
    with pytest.raises(ValueError, match=r"unknown dataset 'imagenet'.*cifar10, digits"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"split must be one of train, test"):
        load_dataset("digits", split="val")


def test_default_root_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ADVROBUST_DATA", str(tmp_path))
    assert default_root() == tmp_path
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path)):
        load_dataset("mnist")
    monkeypatch.delenv("ADVROBUST_DATA")
    assert default_root() == Path.home() / ".advrobust" / "data"


# -------------------------------------------------------------------------------------- MNIST


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = RNG.integers(0, 10, n, dtype=np.uint8)
        for kind, arr in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
            name = f"{prefix}-{kind}"
            data = _idx_bytes(arr)
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize(("layout", "gz"), [("MNIST/raw", True), ("mnist", False), ("", True)])
def test_mnist_round_trip(tmp_path: Path, layout: str, gz: bool) -> None:
    arrays = _write_mnist(tmp_path / layout if layout else tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_dataset("mnist", root=tmp_path, split=split)
        images, labels = arrays[prefix]
        assert ds.data.shape == (len(labels), 1, 28, 28)
        assert torch.equal(ds.data[:, 0], torch.from_numpy(images).float() / 255)
        assert torch.equal(ds.targets, torch.from_numpy(labels).long())
        assert ds.name == f"mnist/{split}"


def test_mnist_missing_files_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", root=tmp_path, split="test")
    message = str(info.value)
    assert "t10k-images-idx3-ubyte[.gz]" in message
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "yann.lecun.com" in message
    assert isinstance(info.value, FileNotFoundError)


def test_mnist_corrupt_files(tmp_path: Path) -> None:
    folder = tmp_path / "MNIST" / "raw"
    _write_mnist(folder, gz=False)
    path = folder / "train-images-idx3-ubyte"
    full = path.read_bytes()
    path.write_bytes(full[:-100])  # truncated: never a silently short dataset
    with pytest.raises(CorruptDatasetError, match=r"truncated"):
        load_dataset("mnist", root=tmp_path)
    path.write_bytes(b"\x00\x00\x08\x01" + full[4:])  # wrong number of dimensions
    with pytest.raises(CorruptDatasetError, match=r"magic"):
        load_dataset("mnist", root=tmp_path)
    path.write_bytes(full)
    labels = folder / "train-labels-idx1-ubyte"
    labels.write_bytes(_idx_bytes(np.zeros(11, dtype=np.uint8)))
    with pytest.raises(CorruptDatasetError, match=r"12 images but .* 11 labels"):
        load_dataset("mnist", root=tmp_path)
    labels.unlink()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(CorruptDatasetError, match=r"gzip"):
        load_dataset("mnist", root=tmp_path)


# ----------------------------------------------------------------------------------- CIFAR-10


def _write_cifar(root: Path, per_batch: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = RNG.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = RNG.integers(0, 10, per_batch).tolist()
        with (folder / name).open("wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"data": data, b"labels": labels}, fh)
        batches[name] = (data, labels)
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return batches


def test_cifar10_round_trip(tmp_path: Path) -> None:
    batches = _write_cifar(tmp_path)
    train = load_dataset("cifar10", root=tmp_path)
    assert train.data.shape == (20, 3, 32, 32)
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(train.data, torch.from_numpy(expected.reshape(-1, 3, 32, 32)).float() / 255)
    assert train.targets.tolist() == [v for i in range(1, 6) for v in batches[f"data_batch_{i}"][1]]
    assert train.classes == [f"class{i}" for i in range(10)]
    test = load_dataset("cifar10", root=tmp_path, split="test")
    assert test.targets.tolist() == batches["test_batch"][1]
    # The red channel is the first 1024 values of a row, in row-major order.
    assert float(test.data[0, 0, 0, 1]) == pytest.approx(int(batches["test_batch"][0][0, 1]) / 255)


def test_cifar10_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"(?s)data_batch_1.*cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path)
    _write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CorruptDatasetError, match=r"data_batch_3"):
        load_dataset("cifar10", root=tmp_path)
    with path.open("wb") as fh:
        pickle.dump({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2]}, fh)
    with pytest.raises(CorruptDatasetError, match=r"4 images but 3 labels"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar10_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    _write_cifar(tmp_path)

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(CorruptDatasetError, match=r"refusing to load builtins.print"):
        load_dataset("cifar10", root=tmp_path, split="test")


# ------------------------------------------------------------------------------------- STL-10


def _write_stl(root: Path, per_class: tuple[int, int] = (5, 8)) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    all_images, all_labels = [], []
    for prefix, n in zip(("train", "test"), per_class, strict=True):
        labels = np.repeat(np.arange(1, 11, dtype=np.uint8), n)
        images = RNG.integers(0, 256, (labels.size, 3, 96, 96), dtype=np.uint8)
        # STL-10 stores each channel in column-major order.
        images.transpose(0, 1, 3, 2).tofile(folder / f"{prefix}_X.bin")
        labels.tofile(folder / f"{prefix}_y.bin")
        all_images.append(images)
        all_labels.append(labels.astype(np.int64) - 1)
    (folder / "class_names.txt").write_text("\n".join(f"name{i}" for i in range(10)) + "\n")
    return np.concatenate(all_images), np.concatenate(all_labels)


def test_stl10_merges_labelled_files_and_splits_10_to_3(tmp_path: Path) -> None:
    images, labels = _write_stl(tmp_path)  # 13 labelled images per class
    train = load_dataset("stl10", root=tmp_path)
    test = load_dataset("stl10", root=tmp_path, split="test")
    assert train.targets.bincount().tolist() == [10] * 10
    assert test.targets.bincount().tolist() == [3] * 10
    assert train.data.shape[1:] == (3, 96, 96)
    assert train.classes[0] == "name0"
    # Every loaded image is one of the written ones, with its label, and no image is in both.
    flat = torch.from_numpy(images.reshape(len(images), -1)).float() / 255
    seen = []
    for ds in (train, test):
        for img, y in zip(ds.data.view(len(ds), -1), ds.targets, strict=True):
            match = torch.nonzero((flat == img).all(dim=1)).flatten().tolist()
            assert len(match) == 1 and labels[match[0]] == int(y)
            seen.append(match[0])
    assert sorted(seen) == list(range(len(images)))
    again = load_dataset("stl10", root=tmp_path, split="test")
    assert torch.equal(again.data, test.data)


def test_stl10_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"(?s)train_X.bin.*stl10_binary.tar.gz"):
        load_dataset("stl10", root=tmp_path)
    _write_stl(tmp_path, per_class=(1, 1))
    x_path = tmp_path / "stl10_binary" / "test_X.bin"
    x_path.write_bytes(x_path.read_bytes()[:-10])
    with pytest.raises(CorruptDatasetError, match=r"not a positive multiple"):
        load_dataset("stl10", root=tmp_path)
    x_path.write_bytes(bytes(2 * 3 * 96 * 96 * 10))
    with pytest.raises(CorruptDatasetError, match=r"20 images but .* 10 labels"):
        load_dataset("stl10", root=tmp_path)


# ------------------------------------------------------------------------------ Tiny ImageNet


def _write_tiny(root: Path, wnids: list[str], per_class: int = 2, n_val: int = 3) -> dict:
    from PIL import Image

    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(reversed(wnids)) + "\n")
    (folder / "words.txt").write_text("".join(f"{w}\tname of {w}\n" for w in wnids))
    written: dict[str, list[tuple[np.ndarray, str]]] = {"train": [], "val": []}
    for w in wnids:
        img_dir = folder / "train" / w / "images"
        img_dir.mkdir(parents=True)
        for i in range(per_class):
            arr = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(arr).save(img_dir / f"{w}_{i}.png")  # lossless for an exact check
            written["train"].append((arr, w))
    lines = []
    for i in range(n_val):
        arr = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        w = wnids[i % len(wnids)]
        Image.fromarray(arr).save(folder / "val" / "images" / f"val_{i}.png")
        lines.append(f"val_{i}.png\t{w}\t0\t0\t63\t63")
        written["val"].append((arr, w))
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return written


def test_tiny_imagenet_round_trip(tmp_path: Path) -> None:
    wnids = ["n02", "n01", "n03"]
    written = _write_tiny(tmp_path, wnids)
    train = load_dataset("tiny-imagenet", root=tmp_path)
    assert train.classes == ["name of n01", "name of n02", "name of n03"]  # sorted wnids
    assert train.data.shape == (6, 3, 64, 64)
    assert train.targets.tolist() == [0, 0, 1, 1, 2, 2]
    expected = {w: [a for a, ww in written["train"] if ww == w] for w in wnids}
    assert torch.equal(
        train.data[0], torch.from_numpy(expected["n01"][0]).permute(2, 0, 1).float() / 255
    )
    test = load_dataset("tiny-imagenet", root=tmp_path, split="test")
    assert test.targets.tolist() == [1, 0, 2]  # n02, n01, n03
    assert torch.equal(
        test.data[1], torch.from_numpy(written["val"][1][0]).permute(2, 0, 1).float() / 255
    )


def test_tiny_imagenet_reads_jpeg(tmp_path: Path) -> None:
    from PIL import Image

    _write_tiny(tmp_path, ["n01"], per_class=1, n_val=1)
    img_dir = tmp_path / "tiny-imagenet-200" / "train" / "n01" / "images"
    for p in img_dir.iterdir():
        p.unlink()
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (64, 1, 3))
    Image.fromarray(smooth).save(img_dir / "n01_0.JPEG", quality=95)
    ds = load_dataset("tiny-imagenet", root=tmp_path)
    expected = torch.from_numpy(smooth).permute(2, 0, 1).float() / 255
    assert (ds.data[0] - expected).abs().max() < 0.05  # lossy, but the same picture


def test_tiny_imagenet_missing_and_corrupt(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"(?s)wnids.txt.*tiny-imagenet-200.zip"):
        load_dataset("tiny-imagenet", root=tmp_path)
    _write_tiny(tmp_path, ["n01", "n02"])
    folder = tmp_path / "tiny-imagenet-200"
    (folder / "train" / "n02" / "images" / "n02_1.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CorruptDatasetError, match=r"n02_1.png: cannot decode"):
        load_dataset("tiny-imagenet", root=tmp_path)
    (folder / "val" / "images" / "val_0.png").unlink()
    with pytest.raises(CorruptDatasetError, match=r"val_0.png does not exist"):
        load_dataset("tiny-imagenet", root=tmp_path, split="test")
    ann = folder / "val" / "val_annotations.txt"
    ann.write_text("val_1.png\tn01\t0\t0\t1\t1\n")  # val_2.png is not annotated
    with pytest.raises(CorruptDatasetError, match=r"1 annotations but 2 files"):
        load_dataset("tiny-imagenet", root=tmp_path, split="test")
    ann.write_text("val_1.png\tn99\n")
    with pytest.raises(CorruptDatasetError, match=r"expected"):
        load_dataset("tiny-imagenet", root=tmp_path, split="test")
    for p in (folder / "train" / "n01" / "images").iterdir():
        p.unlink()
    with pytest.raises(CorruptDatasetError, match=r"no training images"):
        load_dataset("tiny-imagenet", root=tmp_path)


def test_channel_stats_match_torch_in_chunks() -> None:
    from advrobust.data._dataset import channel_stats

    x = torch.rand(37, 3, 5, 4, dtype=torch.float64).float()
    mean, std = channel_stats(x, chunk=5)
    flat = x.double().transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), flat.mean(1))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), flat.std(1, correction=0))
