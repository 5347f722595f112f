"""Training throughput of AdversarialTrainer against its floor, measured in one run.

For three recipes on the same model and batch size m = 32:

* clean training (k = 0);
* Kurakin's step l.l. mixed batch (k = 16 of 32, lambda = 0.3, per-example eps);
* PGD-7 adversarial training (k = m = 32, 7 steps);

the script measures samples per second of ``AdversarialTrainer.fit`` and the *floor*: the time
of the forward and backward passes the recipe cannot avoid, timed as bare PyTorch loops in the
same process:

* clean: one training step (forward, backward, optimizer step) on 32 examples;
* step l.l.: that, plus one forward/backward to the input on the 16 replaced examples;
* PGD-7: that, plus seven forward/backward passes to the input on all 32 examples.

The ratio trainer time / floor time is the overhead of the trainer (and of the attack's
input checks and bookkeeping); the goal is at most 1.15. Each figure is the best of several
interleaved repeats (the least disturbed by other load on the machine, as ``timeit``
recommends).

Usage: ``python benchmarks/bench_training.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.models import create_model
from advrobust.training import AdversarialTrainer, TrainConfig

M = 32


def make_model(size: int) -> nn.Module:
    torch.manual_seed(0)
    return create_model("simple-cnn", in_channels=3, input_size=size, num_classes=10)


def bare_train_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
    model.train()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()


def input_grad(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    xr = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(xr), y)
    (g,) = torch.autograd.grad(loss, xr)
    return g


def timed(fn: Callable[[], object]) -> float:
    """Seconds of one call of ``fn``."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="finish in < 60 s")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = 16 if args.quick else 32
    steps = 6 if args.quick else 20
    repeats = 3 if args.quick else 5

    g = torch.Generator().manual_seed(0)
    n = M * steps
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)

    recipes = {
        "clean (k=0)": (TrainConfig.clean(batch_size=M, epochs=1), 0, 0),
        "step l.l. (m=32, k=16)": (TrainConfig.kurakin(batch_size=M, epochs=1), M // 2, 1),
        "PGD-7 (k=m=32)": (
            TrainConfig.pgd_at(
                batch_size=M,
                epochs=1,
                attack={"name": "PGD", "eps": 8 / 255, "alpha": 2 / 255, "steps": 7},
            ),
            M,
            7,
        ),
    }

    # floor components, on their own model copy
    floor_model = make_model(size)
    opt = torch.optim.SGD(floor_model.parameters(), lr=0.01, momentum=0.9)
    xb, yb = x[:M], y[:M]

    def floor(k: int, grads: int) -> Callable[[], None]:
        def run() -> None:
            for _ in range(steps):
                if grads:
                    floor_model.eval()
                    for p in floor_model.parameters():
                        p.requires_grad_(False)
                    for _ in range(grads):
                        input_grad(floor_model, xb[:k], yb[:k])
                    for p in floor_model.parameters():
                        p.requires_grad_(True)
                bare_train_step(floor_model, opt, xb, yb)

        return run

    def trainer_run(cfg: TrainConfig) -> Callable[[], None]:
        model = make_model(size)
        trainer = AdversarialTrainer(model, cfg)

        def run() -> None:
            trainer.epoch = 0  # one more epoch over the same data each call
            trainer.fit((x, y), epochs=1, progress=False)

        return run

    rows = []
    for name, (cfg, k, grads) in recipes.items():
        t_floor_runs, t_train_runs = [], []
        f_run, t_run = floor(k, grads), trainer_run(cfg)
        f_run()
        t_run()
        for _ in range(repeats):  # interleaved: the same machine load for both
            t_floor_runs.append(timed(f_run))
            t_train_runs.append(timed(t_run))
        t_floor = min(t_floor_runs)
        t_train = min(t_train_runs)
        rows.append((name, n / t_train, n / t_floor, t_train / t_floor))

    print(
        f"AdversarialTrainer throughput, simple-cnn on 3x{size}x{size}, batch {M}, "
        f"{steps} steps per run, {args.threads} thread(s), best of {repeats}"
    )
    print("| recipe | trainer samples/s | floor samples/s | ratio (trainer / floor time) |")
    print("|---|---:|---:|---:|")
    for name, s_train, s_floor, ratio in rows:
        print(f"| {name} | {s_train:.0f} | {s_floor:.0f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
