"""Study time of the digits preset and of a real-MNIST-sized grid, with the per-stage table.

Two studies, each run from scratch into a temporary folder with the presets' default
(state-of-the-art) evaluation, ``paper = false``:

* ``digits``: the ``digits`` preset as shipped (``advrobust study run --preset digits``);
* ``mnist-sized``: sizes 250, 500, 1,000, 2,000, 4,000 and 7,000 drawn from 8,000 training
  images (2,000 held out), the MLP and the Carlini-Wagner simple CNN, 8 epochs, 200
  evaluation images; accuracy, Linf and L2 robustness and adversarial accuracy with the
  digits preset's attacks and ensemble settings. It reads real MNIST (the first 8,000 training
  and 2,000 test images) when ``--mnist-root`` holds the files, and otherwise *generated*
  28x28 data of the same shape: scikit-learn's digits upscaled to 20x20, placed at a random
  offset in a 28x28 frame, with a little pixel noise (learnable, MNIST-like, no download).

For each study it prints the study's own timing table (per cell and stage: data, training,
the clean pass, each metric), then the totals: the sum of the stages, the wall time and the
CPU time of the whole run (its worker processes and threads included: with ``jobs = 2`` or
``OMP_NUM_THREADS=2`` CPU time can exceed wall time).

Usage: ``python benchmarks/bench_study.py [--quick] [--only digits|mnist] [--mnist-root DIR]
[--jobs N|auto]``. ``--quick`` runs a smaller grid (digits: two sizes; MNIST-sized: sizes 250
and 1,000, 2 epochs, 50 evaluation images).
"""

from __future__ import annotations

import argparse
import gzip
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from advrobust.data import load_dataset
from advrobust.study import StudyConfig, load_preset, preset_text, run_study

MNIST_SIZES = (250, 500, 1000, 2000, 4000, 7000)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (MNIST's format), gzipped."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", n) for n in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def generated_mnist(root: Path, n_train: int = 8000, n_test: int = 2000, seed: int = 0) -> Path:
    """MNIST-shaped IDX files (1x28x28 bytes, 10 classes) made from scikit-learn's digits."""
    gen = torch.Generator().manual_seed(seed)
    src = torch.cat([load_dataset("digits", split=s).data for s in ("train", "test")])
    labels = torch.cat([load_dataset("digits", split=s).targets for s in ("train", "test")])
    n = n_train + n_test
    pick = torch.randint(len(src), (n,), generator=gen)
    small = F.interpolate(src[pick], size=(20, 20), mode="bilinear", align_corners=False)
    frame = torch.zeros(n, 1, 28, 28)
    offsets = torch.randint(0, 9, (n, 2), generator=gen)
    for i in range(n):
        r, c = int(offsets[i, 0]), int(offsets[i, 1])
        frame[i, :, r : r + 20, c : c + 20] = small[i]
    frame = (frame + 0.05 * torch.randn(frame.shape, generator=gen)).clamp(0, 1)
    images = (frame * 255).round().squeeze(1).numpy()
    y = labels[pick].numpy()
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    _write_idx(folder / "train-images-idx3-ubyte.gz", images[:n_train])
    _write_idx(folder / "train-labels-idx1-ubyte.gz", y[:n_train])
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", images[n_train:])
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", y[n_train:])
    return root


def mnist_sized(root: Path, quick: bool) -> StudyConfig:
    """The MNIST-sized grid on the files in ``root``, evaluated as the digits preset."""
    text = preset_text("digits")
    digits = StudyConfig.from_toml(text).to_dict()
    digits["name"] = "mnist-sized"
    digits["data"] = {
        "name": "mnist",
        "root": str(root),
        "sizes": [250, 1000] if quick else list(MNIST_SIZES),
        "seed": 0,
    }
    digits["models"] = [
        {"name": "mlp", "label": "mlp", "kwargs": {"hidden": 256}},
        {"name": "simple-cnn", "label": "simple-cnn", "kwargs": {"width": 0.5}},
    ]
    digits["training"] = {**digits["training"], "epochs": 2 if quick else 8}
    digits["evaluation"] = {**digits["evaluation"], "num_examples": 50 if quick else 200}
    return StudyConfig.from_dict(digits)


def _truncate_mnist(real: Path, root: Path) -> Path:
    """The first 8,000 training and 2,000 test images of real MNIST, as IDX files in ``root``."""
    train = load_dataset("mnist", real, "train")
    test = load_dataset("mnist", real, "test")
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    for name, ds, n in (("train", train, 8000), ("t10k", test, 2000)):
        _write_idx(folder / f"{name}-images-idx3-ubyte.gz", (ds.data[:n, 0] * 255).round().numpy())
        _write_idx(folder / f"{name}-labels-idx1-ubyte.gz", ds.targets[:n].numpy())
    return root


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the ``jobs`` workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(name: str, config: StudyConfig, work: Path, jobs: str | None) -> dict[str, Any]:
    if jobs is not None:
        config = config.replace(jobs=jobs if jobs == "auto" else int(jobs))
    print(
        f"\n=== {name}: {len(config.data.sizes)} sizes x {len(config.models)} models, "
        f"jobs {config.jobs}",
        flush=True,
    )
    wall, cpu = time.perf_counter(), _cpu()
    result = run_study(config, work / name, progress=False, stream=sys.stdout)
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    stages: dict[str, float] = {}
    for row in result.timings:
        stages[row["stage"]] = stages.get(row["stage"], 0.0) + float(row["seconds"])
    summary = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
    print(f"{name}: stages (s): {summary}")
    print(
        f"{name}: study time {sum(stages.values()):.1f} s (sum of stages), "
        f"wall {wall:.1f} s, CPU {cpu:.1f} s (workers included), "
        f"threads {config.threads or torch.get_num_threads()} per process"
    )
    table: dict[tuple[str, int], list[str]] = {}
    for row in result.rows:
        metric = row["metric"]
        if metric in ("accuracy", "robustness_linf", "robustness_l2", "adversarial_accuracy"):
            label = metric if row.get("delta") in (None, "") else f"{metric}@{row['delta']:g}"
            key = (row["model"], int(row["subset_size"]))
            table.setdefault(key, []).append(f"{label}={float(row['value']):.3f}")
    for (model, size), values in sorted(table.items()):
        print(f"  {model:>10} {size:>5}: {' '.join(values)}")
    return {"wall": wall, "cpu": cpu, "stages": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid")
    parser.add_argument("--only", choices=("digits", "mnist"), default=None)
    parser.add_argument("--mnist-root", default=None, help="folder with the MNIST files")
    parser.add_argument(
        "--jobs", default=None, help="worker processes: N or auto (default: the preset's, auto)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "digits"):
            config = load_preset("digits")
            if args.quick:
                data = {**config.to_dict()["data"], "sizes": [50, 400]}
                config = StudyConfig.from_dict({**config.to_dict(), "data": data})
            run("digits", config, work, args.jobs)
        if args.only in (None, "mnist"):
            root = work / "data"
            source = "generated 28x28 data"
            if args.mnist_root is not None:
                try:
                    _truncate_mnist(Path(args.mnist_root), root)
                    source = "real MNIST"
                except FileNotFoundError:
                    generated_mnist(root)
            else:
                generated_mnist(root)
            print(f"\nMNIST-sized grid on {source} (8,000 train / 2,000 held out)")
            run("mnist-sized", mnist_sized(root, args.quick), work, args.jobs)


if __name__ == "__main__":
    main()
