"""FAB and Square next to PGD on a small digits CNN, and under gradient masking (issue 9).

    python benchmarks/bench_fab_square.py            # 100 test digits, Square 5,000 queries
    python benchmarks/bench_fab_square.py --quick    # 32 digits, Square 1,000 queries

Model: a small CNN (conv16-BN-pool-conv32-pool-fc10) trained for a few seconds on 1,400 of
scikit-learn's 8x8 digits; the attacks run on held-out digits it classifies correctly. The
masked model puts ``round(4 x) / 4`` (zero input gradient) in front of the same CNN.

Per attack: success rate, median norm of the successful perturbations, forward rows per
example (every forward pass the model saw, clean ones included) and wall time. Nothing here
asserts: it prints a table.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn

from advrobust.attacks import FAB, PGD, Attack, Square


class Counter(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows = 0

    def forward(self, x: Tensor) -> Tensor:
        self.rows += x.shape[0]
        out: Tensor = self.inner(x)
        return out


class Quantise(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * 4) / 4


def digits_cnn() -> tuple[nn.Module, Tensor, Tensor]:
    data = load_digits()
    x_all = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    y_all = torch.tensor(data.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y_all), generator=g)
    train, test = perm[:1400], perm[1400:]
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(12):
        order = train[torch.randperm(len(train), generator=g)]
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x_all[idx]), y_all[idx]).backward()
            opt.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, x_all[test], y_all[test]


def report(name: str, atk: Attack, counter: Counter, x: Tensor, y: Tensor) -> None:
    counter.rows = 0
    t0 = time.perf_counter()
    res = atk.run(x, y, generator=torch.Generator().manual_seed(0))
    dt = time.perf_counter() - t0
    d = (res.x_adv - x).flatten(1)
    dist = {"linf": d.abs().amax(1), "l2": d.norm(dim=1), "l1": d.abs().sum(1)}[atk.norm]
    med = float(dist[res.success].median()) if bool(res.success.any()) else float("nan")
    rows = counter.rows / x.shape[0]
    print(f"{name:34s} {res.success_rate:8.3f} {med:10.4f} {rows:10.0f} {dt:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 digits, 1,000 queries")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, queries = (32, 1000) if args.quick else (100, 5000)

    model, x_test, y_test = digits_cnn()
    with torch.no_grad():
        keep = model(x_test).argmax(1) == y_test
    x, y = x_test[keep][:n], y_test[keep][:n]
    print(f"digits CNN, {x.shape[0]} correctly classified test digits, 8x8, {queries} queries")
    print(f"{'attack':34s} {'success':>8s} {'med dist':>10s} {'rows/ex':>10s} {'time s':>8s}")
    for norm, eps in (("linf", 0.1), ("linf", 0.2), ("l2", 1.0)):
        m = Counter(model)
        pgd = PGD(m, eps, norm=norm, steps=40, alpha=eps / 10)
        report(f"PGD-40 {norm} eps={eps}", pgd, m, x, y)
        report(f"FAB-100 {norm} eps={eps}", FAB(m, eps, norm=norm), m, x, y)
        report(f"FAB-T-100 {norm} eps={eps}", FAB(m, eps, norm=norm, targeted=True), m, x, y)
        report(f"Square {norm} eps={eps}", Square(m, eps, norm=norm, queries=queries), m, x, y)
    m = Counter(model)
    report("FAB-100 l1 eps=4 (unbounded-ish)", FAB(m, 4.0, norm="l1"), m, x, y)

    masked = nn.Sequential(Quantise(), model)
    with torch.no_grad():
        keep = masked(x).argmax(1) == y
    xm, ym = x[keep], y[keep]
    print(f"\ngradient masking: round(4x)/4 in front of the CNN, {xm.shape[0]} digits")
    m = Counter(masked)
    eps = 0.2
    report(f"PGD-40 linf eps={eps}", PGD(m, eps, steps=40, alpha=eps / 10), m, xm, ym)
    report(f"PGD-40 x5 restarts linf eps={eps}", PGD(m, eps, steps=40, restarts=5), m, xm, ym)
    report(f"FAB-100 linf eps={eps}", FAB(m, eps), m, xm, ym)
    report(f"FAB-100 x5 restarts linf eps={eps}", FAB(m, eps, restarts=5), m, xm, ym)
    report(f"FAB-T-100 linf eps={eps}", FAB(m, eps, targeted=True), m, xm, ym)
    report(f"Square linf eps={eps}", Square(m, eps, queries=queries), m, xm, ym)


if __name__ == "__main__":
    main()
