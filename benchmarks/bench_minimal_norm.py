"""Minimal-norm attacks on a digits MLP: success, median distances and wall time (issue 9).

    OMP_NUM_THREADS=1 python benchmarks/bench_minimal_norm.py            # 100 test images
    OMP_NUM_THREADS=1 python benchmarks/bench_minimal_norm.py --n 32     # quicker

Model: an MLP 64-128-10 trained for a few seconds on advrobust's digits (``load_dataset``,
seed 0); the attacks run on the first ``--n`` correctly classified test images. FMN, DDN and
ALMA run 100 steps (one forward and one backward pass each, plus the 13 forward passes of the
boundary refinement); CWL2 runs its defaults (up to 9 x 1,000 steps). Median distances are over
all images (every attack succeeds on every image here). Nothing asserts on time: it prints a
table.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.attacks import ALMA, CWL2, DDN, FMN, Attack
from advrobust.data import load_dataset


def train_mlp(n: int) -> tuple[nn.Module, Tensor, Tensor, float]:
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        perm = torch.randperm(len(train.targets), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(train.data[idx]), train.targets[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        ok = model(test.data).argmax(1) == test.targets
    return model, test.data[ok][:n], test.targets[ok][:n], float(ok.float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="number of test images")
    args = parser.parse_args()
    model, x, y, acc = train_mlp(args.n)
    print(f"digits MLP: test accuracy {acc:.3f}; {len(y)} correctly classified test images")
    attacks: dict[str, Attack] = {
        "CWL2 (defaults)": CWL2(model),
        "FMN-L2": FMN(model),
        "DDN": DDN(model),
        "ALMA-L2": ALMA(model),
        "FMN-Linf": FMN(model, "linf"),
        "FMN-L1": FMN(model, "l1"),
        "ALMA-L1": ALMA(model, "l1"),
        "FMN-L0": FMN(model, "l0"),
    }
    print(
        f"{'attack':16s} {'success':>7s} {'med L2':>8s} {'med Linf':>8s} {'med L1':>7s} "
        f"{'med L0':>6s} {'time s':>7s}"
    )
    for name, atk in attacks.items():
        t0 = time.perf_counter()
        res = atk.run(x, y, generator=torch.Generator().manual_seed(0))
        dt = time.perf_counter() - t0
        d = (res.x_adv - x).flatten(1)
        print(
            f"{name:16s} {res.success_rate:7.3f} {float(res.l2.median()):8.4f} "
            f"{float(res.linf.median()):8.4f} {float(d.abs().sum(1).median()):7.3f} "
            f"{float((d != 0).sum(1).float().median()):6.0f} {dt:7.2f}"
        )


if __name__ == "__main__":
    main()
