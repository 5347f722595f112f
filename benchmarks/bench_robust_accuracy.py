"""Benchmark of robust_accuracy: the ensemble suites against PGD and AutoAttack itself.

On scikit-learn digits (8x8, in [0, 1]) two of advrobust's "simple-cnn" models are evaluated
at the same Linf eps on the same test images:

- an undefended model (clean training);
- an adversarially trained model (PGD adversarial training with advrobust's own PGD).

For each: robust accuracy of PGD-40 alone, of ``robust_accuracy(suite="fast")`` and
``suite="standard"``, and, when the ``pyautoattack`` package is importable, of AutoAttack's
standard version (Croce and Hein, ICML 2020) on the same model. Passes are forward plus
backward passes counted per example by a wrapper around the model (the same wrapper for
every method), divided by the number of images.

Usage: python benchmarks/bench_robust_accuracy.py [--quick] [--n N] [--eps EPS]
       [--autoattack-path DIR]   (a folder holding the pyautoattack package, e.g. installed
                                  with pip install --no-deps --target DIR pyautoattack)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from torch import Tensor, nn

from advrobust.attacks import PGD
from advrobust.data import load_dataset
from advrobust.metrics import accuracy, robust_accuracy
from advrobust.models import create_model


class Counting(nn.Module):
    """Counts per-example forward passes and backward passes through the wrapped model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.passes = 0

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.inner(x)
        n = int(x.shape[0])
        self.passes += n
        if out.requires_grad:

            def hook(grad: Tensor) -> None:
                self.passes += n

            out.register_hook(hook)
        return out


def train(x: Tensor, y: Tensor, epochs: int, adv_eps: float | None) -> nn.Module:
    """simple-cnn on digits; with ``adv_eps``, PGD adversarial training (7 steps, Madry)."""
    torch.manual_seed(0)
    model = create_model("simple-cnn", num_classes=10, in_channels=1, input_size=8, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    atk = None if adv_eps is None else PGD(model, adv_eps, steps=7, rel_alpha=2.5 / 7)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            xb, yb = x[idx], y[idx]
            if atk is not None:
                xb = atk(xb, yb, generator=g)
            model.train()
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


def autoattack_standard(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> float | None:
    try:
        from pyautoattack import AutoAttack  # type: ignore[import-not-found]
    except ImportError:
        return None
    import logging

    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    aa = AutoAttack(model, eps=eps, norm="Linf", version="standard", seed=0)
    aa.verbose = False
    out = aa.run_standard_evaluation(x, y, batch_size=len(y))
    x_adv = out[0] if isinstance(out, tuple) else out  # some versions return (x_adv, y_adv)
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings")
    parser.add_argument("--n", type=int, default=None, help="test images (default 200)")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--autoattack-path", default=None)
    args = parser.parse_args()
    if args.autoattack_path:
        sys.path.insert(0, args.autoattack_path)
    torch.set_num_threads(1)
    n = args.n or (64 if args.quick else 200)
    epochs = 6 if args.quick else 15
    eps = args.eps
    train_set = load_dataset("digits", split="train")
    test_set = load_dataset("digits", split="test")
    x, y = test_set.data[:n], test_set.targets[:n]
    print(f"digits simple-cnn, {n} test images, Linf eps = {eps}\n")
    header = f"{'model':<14} {'method':<26} {'robust acc':>10} {'passes/img':>11} {'seconds':>8}"
    print(header)
    print("-" * len(header))
    for label, adv_eps in (("undefended", None), ("PGD-AT", eps)):
        model = train(train_set.data, train_set.targets, epochs, adv_eps)
        clean = accuracy(model, (x, y)).value
        print(f"{label:<14} {'clean':<26} {clean:>10.3f}")
        counted = Counting(model)
        runs: list[tuple[str, object]] = [
            ("PGD-40 (alone)", [PGD(counted, eps, steps=40, rel_alpha=2.5 / 40)]),
            ("robust_accuracy fast", "fast"),
            ("robust_accuracy standard", "standard"),
        ]
        for name, suite in runs:
            counted.passes = 0
            t0 = time.perf_counter()
            res = robust_accuracy(
                counted,
                (x, y),
                eps,
                suite=suite,  # type: ignore[arg-type]
                generator=torch.Generator().manual_seed(0),
            )
            sec = time.perf_counter() - t0
            per = counted.passes / n
            print(f"{label:<14} {name:<26} {res.value:>10.3f} {per:>11.1f} {sec:>8.1f}")
            if suite == "standard":
                broken = ", ".join(f"{a.spec.name} {a.broken}" for a in res.attacks)
                print(f"{'':<14}   broken per attack: {broken}")
        counted.passes = 0
        t0 = time.perf_counter()
        aa = autoattack_standard(counted, x, y, eps)
        sec = time.perf_counter() - t0
        if aa is None:
            print(f"{label:<14} {'AutoAttack standard':<26} {'(pyautoattack not importable)':>30}")
        else:
            print(
                f"{label:<14} {'AutoAttack standard':<26} {aa:>10.3f} {counted.passes / n:>11.1f} "
                f"{sec:>8.1f}"
            )


if __name__ == "__main__":
    main()
