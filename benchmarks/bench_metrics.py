"""Benchmark of minimal_distortion: passes spent per search strategy at the same tolerance.

On an undefended CNN trained on scikit-learn digits (advrobust's "simple-cnn", MNIST widths),
every strategy searches the per-example minimal Linf distortion of BIM (10 steps of eps/10)
in [0, 1] to the same absolute tolerance, and the model is wrapped in a module that counts
forward and backward passes (per example). Strategies:

- bisection + active set (``minimal_distortion`` default);
- the same bisection without the active set (every example attacked every round);
- secant (safeguarded false position on the logit margin) with and without the active set;
- bisection with BIM's own ``early_stop`` (examples stop stepping at their first success);
- fixed schedule: a sweep over eps = tol, 2 tol, 3 tol, ... that attacks every example not
  yet broken at each eps (it already drops broken examples, its best case).

Usage: python benchmarks/bench_metrics.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from advrobust.attacks import BIM
from advrobust.data import load_dataset
from advrobust.metrics import accuracy, minimal_distortion, search_attack
from advrobust.models import create_model


class Counting(nn.Module):
    """Counts per-example forward passes and backward passes through the wrapped model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forward_passes = 0
        self.backward_passes = 0

    def reset(self) -> None:
        self.forward_passes = 0
        self.backward_passes = 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.inner(x)
        n = int(x.shape[0])
        self.forward_passes += n
        if out.requires_grad:

            def hook(grad: Tensor) -> None:
                self.backward_passes += n

            out.register_hook(hook)
        return out


def train(x: Tensor, y: Tensor, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    model = create_model("simple-cnn", num_classes=10, in_channels=1, input_size=8, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def fixed_schedule(model: nn.Module, atk, x: Tensor, y: Tensor, tol: float, hi: float) -> Tensor:
    """Sweep eps = tol, 2 tol, ... until every example is broken; returns the distances."""
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    dist = torch.full((len(y),), float("inf"))
    dist[~correct] = float("nan")
    active = correct.nonzero().squeeze(1)
    k = 1
    while active.numel() and k * tol <= hi + 1e-12:
        eps = torch.full((active.numel(),), k * tol)
        res = atk.run(x[active], y[active], eps=eps)
        dist[active[res.success]] = k * tol
        active = active[~res.success]
        k += 1
    return dist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (< 60 s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, epochs, tol = (96, 8, 2e-3) if args.quick else (400, 20, 1e-3)
    hi = 1.0

    train_set = load_dataset("digits", split="train")
    test_set = load_dataset("digits", split="test")
    model = train(train_set.data, train_set.targets, epochs)
    x, y = test_set.data[:n], test_set.targets[:n]
    acc = accuracy(model, (x, y)).value
    counted = Counting(model)
    atk = search_attack(BIM(counted, steps=10))
    print(f"digits simple-cnn, clean accuracy {acc:.3f} on {n} test images; attack {atk!r}")
    print(f"search range [0, {hi}], tolerance {tol}\n")

    rows = []
    reference = None
    early = search_attack(BIM(counted, steps=10, early_stop=True))
    for label, attack, kwargs in [
        ("bisection + active set", atk, {"method": "bisection", "active_set": True}),
        ("bisection, no active set", atk, {"method": "bisection", "active_set": False}),
        ("secant + active set", atk, {"method": "secant", "active_set": True}),
        ("secant, no active set", atk, {"method": "secant", "active_set": False}),
        ("bisection + set, early_stop", early, {"method": "bisection", "active_set": True}),
    ]:
        counted.reset()
        t0 = time.perf_counter()
        res = minimal_distortion(counted, (x, y), attack, hi=hi, tol=tol, **kwargs)
        seconds = time.perf_counter() - t0
        if reference is None:
            reference = res.distance
        agree = (res.distance - reference)[res.found].abs().max().item() if res.found.any() else 0
        rows.append(
            (label, counted.forward_passes, counted.backward_passes, seconds, res.mean, agree)
        )

    counted.reset()
    t0 = time.perf_counter()
    dist = fixed_schedule(counted, atk, x, y, tol, hi)
    seconds = time.perf_counter() - t0
    found = dist.isfinite()
    mean = dist[found].mean().item()
    assert reference is not None
    agree = (dist - reference)[found].abs().max().item()
    rows.append(
        (
            "fixed schedule (sweep)",
            counted.forward_passes,
            counted.backward_passes,
            seconds,
            mean,
            agree,
        )
    )

    fixed_total = rows[-1][1] + rows[-1][2]
    plain_total = rows[1][1] + rows[1][2]
    head = (
        f"{'strategy':28s} {'forward':>9s} {'backward':>9s} {'f+b':>9s} {'fixed/this':>10s} "
        f"{'no-set/this':>11s} {'seconds':>8s} {'mean dist':>9s} {'max |d-bis|':>11s}"
    )
    print(head)
    print("-" * len(head))
    for label, fwd, bwd, sec, mean, agree in rows:
        total = fwd + bwd
        same_family = rows[1] if label.startswith("bisection") else rows[3]
        if "early_stop" in label:
            same_family = rows[1]
        no_set = (
            (same_family[1] + same_family[2]) / total
            if not label.startswith("fixed")
            else float("nan")
        )
        print(
            f"{label:28s} {fwd:9d} {bwd:9d} {total:9d} {fixed_total / total:10.2f} "
            f"{no_set:11.2f} {sec:8.2f} {mean:9.4f} {agree:11.4f}"
        )
    best = min(r[1] + r[2] for r in rows[:5])
    print(
        f"\nfixed schedule / default bisection: {fixed_total / (rows[0][1] + rows[0][2]):.1f}x "
        f"passes; fixed schedule / best search: {fixed_total / best:.1f}x; "
        f"bisection without / with active set: {plain_total / (rows[0][1] + rows[0][2]):.2f}x"
    )
    print(
        "(max |d-bis|: largest difference to the default bisection's distances; the fixed "
        "schedule and the searches agree to within the tolerance where BIM is monotone in eps)"
    )


if __name__ == "__main__":
    main()
