"""Batches per second: advrobust.data.TensorLoader against torch's DataLoader on the same tensors.

Both loaders iterate over the same in-memory tensors (CIFAR-sized 3x32x32 images, or digits with
``--quick``); each configuration is timed for whole epochs in one run and reported as batches
per second and as the TensorLoader / DataLoader ratio. No assertions on time.

    python benchmarks/bench_data.py            # 10,000 CIFAR-sized images, several settings
    python benchmarks/bench_data.py --quick    # < 60 s on one core
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from advrobust.data import Compose, RandomFlip, RandomShift, TensorLoader


def _rate(make: Callable[[], Iterable[tuple[Tensor, Tensor]]], min_time: float) -> float:
    """Batches per second over whole epochs, running for at least ``min_time`` seconds."""
    loader = make()
    for _ in loader:  # warm-up epoch
        pass
    batches, start = 0, time.perf_counter()
    while True:
        for xb, _ in loader:
            xb.sum()  # touch the batch
            batches += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return batches / elapsed


def _torch_augment(
    aug: Callable[..., Tensor] | None,
) -> Callable[[list[tuple[Tensor, Tensor]]], tuple[Tensor, Tensor]] | None:
    """A collate_fn that stacks and then applies the same batched augmentation."""
    if aug is None:
        return None

    def collate(items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        x = torch.stack([i[0] for i in items])
        y = torch.stack([i[1] for i in items])
        return aug(x), y

    return collate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (< 60 s)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, shape = (2_000, (3, 32, 32)) if args.quick else (10_000, (3, 32, 32))
    min_time = 0.5 if args.quick else 2.0
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, *shape, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    aug = Compose([RandomShift(4), RandomFlip()])
    settings: list[tuple[int, bool, Callable[..., Tensor] | None]] = [
        (128, False, None),
        (128, True, None),
        (128, True, aug),
    ]
    if not args.quick:
        settings += [(32, True, None), (512, True, None)]
    print(f"{n} images of shape {shape} on {device}, 1 thread")
    header = (
        f"{'batch':>6} {'shuffle':>8} {'augment':>8} {'TensorLoader b/s':>17} "
        f"{'DataLoader b/s':>15} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for batch_size, shuffle, augment in settings:
        ours = functools.partial(
            TensorLoader,
            x,
            y,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(0),
            augment=augment,
        )
        theirs = functools.partial(
            DataLoader,
            TensorDataset(x, y),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=torch.Generator().manual_seed(0),
            collate_fn=_torch_augment(augment),
        )
        a = _rate(ours, min_time)
        b = _rate(theirs, min_time)
        flag = "yes" if augment is not None else "no"
        print(f"{batch_size:>6} {shuffle!s:>8} {flag:>8} {a:>17.1f} {b:>15.1f} {a / b:>7.1f}x")


if __name__ == "__main__":
    main()
