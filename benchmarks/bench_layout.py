"""CPU speed of the two layout choices the study makes: channels_last weights, foreach optimizers.

For each model (the Carlini-Wagner CNN at width 0.5 on 8x8 digits, as in the ``digits``
preset; the same CNN at full width on 28x28 MNIST-sized inputs; ResNet-20 on 32x32
CIFAR-10-sized inputs) it times, on one thread:

* a training step (forward, backward, Adam step) at batch 32 and an input-gradient evaluation
  (what every attack step costs) at batch 200, with the model's weights in the default
  (contiguous, NCHW) layout and in ``channels_last`` (NHWC), as
  :func:`advrobust.models.to_device` puts them on the CPU;
* the Adam step alone with torch's per-tensor loop and with ``foreach=True`` (as
  :func:`advrobust.training.AdversarialTrainer` asks for on the CPU), and checks that the two
  give bit-identical parameters.

The machine's speed drifts by tens of percent over seconds (a shared host), so each pair is
timed in alternating short chunks and the table reports the median of the paired ratios
(new / old: below 1 is faster) beside the median times.

Usage: ``python benchmarks/bench_layout.py [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from advrobust.models import create_model, to_device

MODELS = [
    ("simple-cnn w0.5, 8x8", "simple-cnn", {"width": 0.5}, 1, 8),
    ("simple-cnn, 28x28", "simple-cnn", {}, 1, 28),
    ("resnet-20, 32x32", "resnet-20", {}, 3, 32),
]


def _model(name: str, kwargs: dict[str, object], channels: int, size: int) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=10, in_channels=channels, input_size=size, **kwargs)


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def _input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def step() -> None:
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xi), y), xi)

    return step


def _paired(old: Callable[[], None], new: Callable[[], None], chunk: int, rounds: int) -> tuple:
    """Median ms per call of each, and the median of the paired ratios new / old."""
    for f in (old, new):
        f()
    t_old, t_new = [], []
    for _ in range(rounds):
        for f, out in ((old, t_old), (new, t_new)):
            start = time.perf_counter()
            for _ in range(chunk):
                f()
            out.append((time.perf_counter() - start) / chunk * 1e3)
    ratio = statistics.median(b / a for a, b in zip(t_old, t_new, strict=True))
    return statistics.median(t_old), statistics.median(t_new), ratio


def _adam_only(model: nn.Module, foreach: bool) -> tuple[Callable[[], None], nn.Module]:
    for p in model.parameters():
        p.grad = torch.full_like(p, 1e-3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=foreach)
    return opt.step, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, the small CNN only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = 5 if args.quick else 15
    models = MODELS[:1] if args.quick else MODELS
    print(f"torch {torch.__version__}, 1 thread, {rounds} alternating rounds per pair")
    print(f"{'model':24s} {'work':32s} {'old ms':>8s} {'new ms':>8s} {'new/old':>8s}")
    for label, name, kwargs, c, s in models:
        g = torch.Generator().manual_seed(1)
        small = s <= 8
        for work, batch, make in (
            ("train step, batch 32", 32, _train_step),
            ("input gradient, batch 200", 200, _input_gradient),
        ):
            x = torch.rand(batch, c, s, s, generator=g)
            y = torch.randint(0, 10, (batch,), generator=g)
            old = make(_model(name, kwargs, c, s), x, y)
            new = make(to_device(_model(name, kwargs, c, s), "cpu"), x, y)
            chunk = (20 if small else 2) if batch == 32 else (10 if small else 1)
            a, b, r = _paired(old, new, chunk, rounds)
            print(f"{label:24s} {work + ', NHWC':32s} {a:8.2f} {b:8.2f} {r:8.3f}")
        # equal models and gradients, one step each: the two updates must agree bit for bit
        (s1, m1), (s2, m2) = (_adam_only(_model(name, kwargs, c, s), f) for f in (False, True))
        s1()
        s2()
        same = all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters(), strict=True))
        a, b, r = _paired(s1, s2, 20, rounds)
        print(
            f"{label:24s} {'Adam step, foreach':32s} {a:8.2f} {b:8.2f} {r:8.3f}",
            f" bit-identical: {same}",
        )


if __name__ == "__main__":
    main()
