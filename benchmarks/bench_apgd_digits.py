"""PGD vs APGD-CE vs APGD-DLR vs APGD-T on an MLP trained on scikit-learn's digits.

    python benchmarks/bench_apgd_digits.py                 # eps 0.05 and 0.1, 40 steps
    python benchmarks/bench_apgd_digits.py --eps 0.03 0.06 --steps 100

The MLP (64-256-256-10, ReLU) is trained for a few seconds on 1,400 digits (8x8, pixels in
[0, 1]); the attacks run on the held-out test images it classifies correctly. PGD uses
Madry's step 2.5 eps / steps from a random start; APGD/APGD-T take no step size. Printed per
attack: success rate (= 1 - robust accuracy on those images) and the forward passes spent
per example (APGD-T runs once per target class, on the examples still robust). Nothing here
asserts: it prints a table.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from advrobust.attacks import APGD, APGDT, PGD, Attack


class Rows(nn.Module):
    """Counts the rows of every forward pass (the attack's cost in passes)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows = 0

    def forward(self, x: Tensor) -> Tensor:
        self.rows += x.shape[0]
        out: Tensor = self.inner(x)
        return out


def digits_mlp(seed: int = 0) -> tuple[nn.Module, Tensor, Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x_all = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y_all = torch.tensor(data.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y_all), generator=g)
    train, test = perm[:1400], perm[1400:]
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(30):
        order = train[torch.randperm(len(train), generator=g)]
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x_all[idx]), y_all[idx]).backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        ok = model(x_all[test]).argmax(1) == y_all[test]
    print(f"clean test accuracy {float(ok.float().mean()):.3f} on {len(test)} images")
    return model, x_all[test][ok], y_all[test][ok]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model, x, y = digits_mlp(args.seed)
    n = len(y)
    steps = args.steps
    print(f"{n} correctly classified test images; {steps} steps per run\n")
    print(f"{'eps':>6} {'attack':<26} {'success':>8} {'passes/ex':>10} {'time s':>7}")
    for eps in args.eps:
        counted = Rows(model)
        attacks: dict[str, Attack] = {
            f"PGD-{steps} (2.5 eps/T)": PGD(counted, eps, steps=steps, rel_alpha=2.5 / steps),
            f"APGD-CE-{steps}": APGD(counted, eps, steps=steps),
            f"APGD-DLR-{steps}": APGD(counted, eps, loss="dlr", steps=steps),
            f"APGD-T-{steps} (9 targets)": APGDT(counted, eps, steps=steps),
        }
        for name, atk in attacks.items():
            counted.rows = 0
            t0 = time.perf_counter()
            res = atk.run(x, y, generator=torch.Generator().manual_seed(0))
            dt = time.perf_counter() - t0
            rate = float(res.success.float().mean())
            print(f"{eps:>6.3f} {name:<26} {rate:>8.3f} {counted.rows / n:>10.1f} {dt:>7.2f}")


if __name__ == "__main__":
    main()
