"""Attack speed against its floor, measured in one run (issue 2, section 6).

    python benchmarks/bench_attacks.py            # full: batch 256, best of 5 (~10 min, 1 core)
    python benchmarks/bench_attacks.py --quick    # small: batch 32, best of 3 (< 60 s)

Model: the Carlini-Wagner MNIST CNN (paper 000 table 1: conv32-conv32-pool-conv64-conv64-pool-
fc200-fc200-fc10, 3x3 kernels, no padding, 28x28x1, 312,202 parameters), from
``advrobust.models`` when available, else built here. There is no MNIST on this machine: the
model is trained for a few seconds on scikit-learn's 8x8 digits upsampled to 28x28 (bilinear),
and the attacks run on held-out upsampled digits. Absolute numbers are therefore not comparable
with MNIST figures; the ratios to the floor are what this script measures:

- floor = steps x (one forward + one backward-to-input) of the same batch;
- each gradient attack's time / its floor (goal <= 1.10), for ``atk(x, y)`` (tensor) and
  ``atk.run(x, y)`` (which adds one forward for predictions and success);
- PGD with ``early_stop`` vs without on the undefended model (goal >= 3x faster, same success);
- CWL2 with a 5 x 100 budget: success, median L2, time / floor (goal 1.05);
- advrobust PGD vs torchattacks PGD, only if torchattacks is importable.

Nothing here asserts on time: it prints a table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.attacks import (
    BIM,
    CWL2,
    FGSM,
    PGD,
    Attack,
    AttackResult,
    IterLL,
    StepLL,
    StepRnd,
)


def build_model() -> nn.Module:
    try:
        from advrobust.models import create_model

        model: nn.Module = create_model("simple-cnn", num_classes=10, in_channels=1, input_size=28)
        source = "advrobust.models.create_model('simple-cnn', in_channels=1, input_size=28)"
    except Exception:  # the models layer is not there: build the same network here
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 200),
            nn.ReLU(),
            nn.Linear(200, 200),
            nn.ReLU(),
            nn.Linear(200, 10),
        )
        source = "built locally"
    n = sum(p.numel() for p in model.parameters())
    print(f"model: Carlini-Wagner MNIST CNN ({source}), {n:,} parameters")
    return model


def digits28() -> tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(data.target, dtype=torch.long)


def train(model: nn.Module, x: Tensor, y: Tensor, epochs: int) -> None:
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


CLOCK: Callable[[], float] = time.perf_counter


def timeit(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` timed runs after a warm-up (the minimum is the least disturbed by
    other processes on a shared machine); ``repeats=0`` times a single run, no warm-up."""
    if repeats == 0:
        t = CLOCK()
        fn()
        return CLOCK() - t
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = CLOCK()
        fn()
        times.append(CLOCK() - t)
    return min(times)


def floor_step(model: nn.Module, x: Tensor, y: Tensor) -> Callable[[], object]:
    """One forward + one backward to the input: the unavoidable work of one attack step."""

    def step() -> Tensor:
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
        return g

    return step


def median_l2(res: AttackResult) -> float:
    """Median L2 over the successful examples (failures come back unchanged, at L2 0)."""
    ok = res.l2[res.success]
    return float(ok.median()) if ok.numel() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small settings, < 60 s")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    if args.threads == 1:
        # One intra-op thread: the process's CPU time is the compute time, and unlike wall
        # time it does not grow when other processes share the cores.
        CLOCK = time.process_time
    torch.manual_seed(0)
    batch = 32 if args.quick else 256
    repeats = 1 if args.quick else 3
    clock = "process CPU time" if CLOCK is time.process_time else "wall time"
    print(
        f"settings: batch {batch}, best of {max(3, repeats + 2)} rounds, each attack timed "
        f"alternately with its floor ({clock}), "
        f"{args.threads} thread(s), torch {torch.__version__}, CPU"
    )

    model = build_model()
    x_all, y_all = digits28()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y_all), generator=g)
    train_idx, test_idx = perm[:1400], perm[1400:]
    t0 = time.perf_counter()
    train(model, x_all[train_idx], y_all[train_idx], epochs=2 if args.quick else 4)
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        acc = float((model(x_all[test_idx]).argmax(1) == y_all[test_idx]).float().mean())
    print(
        f"trained on 1,400 upsampled digits in {time.perf_counter() - t0:.1f} s; "
        f"test accuracy {acc:.3f} on {len(test_idx)} images"
    )

    # attack the test images the model gets right (repeated if there are fewer than a batch)
    with torch.no_grad():
        right = test_idx[model(x_all[test_idx]).argmax(1) == y_all[test_idx]]
    reps = (batch + len(right) - 1) // len(right)
    x = x_all[right].repeat(reps, 1, 1, 1)[:batch].contiguous()
    y = y_all[right].repeat(reps)[:batch].contiguous()

    # Each attack is timed alternately with its floor (the same number of forward + backward
    # passes on the same batch), the same number of times, and the best of each is compared:
    # on a shared machine both are disturbed alike.
    def floor_loop(steps: int, xb: Tensor, yb: Tensor) -> Callable[[], object]:
        one = floor_step(model, xb, yb)

        def run() -> None:
            for _ in range(steps):
                one()

        return run

    step = timeit(floor_step(model, x, y), repeats + 2)
    print(f"floor: one forward + backward-to-input on {batch} images = {step * 1e3:.1f} ms\n")
    eps = 0.1
    attacks: list[tuple[str, Attack, int]] = [
        ("FGSM", FGSM(model, eps), 1),
        ("FGSM-l2", FGSM(model, 1.5, norm="l2"), 1),
        ("StepLL", StepLL(model, eps), 1),
        ("StepRnd", StepRnd(model, eps), 1),
        ("BIM (Kurakin: 30 steps)", BIM(model, eps), 30),
        ("IterLL (Kurakin: 30 steps)", IterLL(model, eps), 30),
        ("PGD (10 steps)", PGD(model, eps, alpha=0.025), 10),
        ("PGD-l2 (10 steps)", PGD(model, 1.5, alpha=0.3, norm="l2"), 10),
    ]
    print(
        f"{'attack':<28}{'steps':>6}{'floor [s]':>10}{'call [s]':>10}{'/floor':>8}"
        f"{'run [s]':>10}{'/floor':>8}{'success':>9}"
    )
    n_rounds = max(3, repeats + 2)
    for name, atk, steps in attacks:
        t_call = t_run = t_floor = float("inf")
        floor = floor_loop(steps, x, y)
        for _ in range(n_rounds):
            gen = torch.Generator().manual_seed(0)
            t_floor = min(t_floor, timeit(floor, 0))
            t_call = min(t_call, timeit(lambda atk=atk, gen=gen: atk(x, y, generator=gen), 0))
            t_run = min(t_run, timeit(lambda atk=atk, gen=gen: atk.run(x, y, generator=gen), 0))
        succ = atk.run(x, y, generator=torch.Generator().manual_seed(0)).success_rate
        print(
            f"{name:<28}{steps:>6}{t_floor:>10.3f}{t_call:>10.3f}{t_call / t_floor:>8.3f}"
            f"{t_run:>10.3f}{t_run / t_floor:>8.3f}{succ:>9.3f}"
        )
    print("(call: atk(x, y) returns the tensor; run: atk.run(x, y) adds one forward for success)")

    print(
        "\nPGD early stop on the undefended model (eps 0.3, alpha 0.01, 40 steps, as Madry MNIST):"
    )
    plain = PGD(model, 0.3, alpha=0.01, steps=40)
    early = plain.replace(early_stop=True)
    t_plain = timeit(lambda: plain.run(x, y, generator=torch.Generator().manual_seed(0)), repeats)
    t_early = timeit(lambda: early.run(x, y, generator=torch.Generator().manual_seed(0)), repeats)
    s_plain = plain.run(x, y, generator=torch.Generator().manual_seed(0)).success_rate
    s_early = early.run(x, y, generator=torch.Generator().manual_seed(0)).success_rate
    print(
        f"  without early_stop {t_plain:.3f} s (success {s_plain:.3f}); "
        f"with {t_early:.3f} s (success {s_early:.3f}); speed-up {t_plain / t_early:.1f}x"
    )

    n_cw = 16 if args.quick else 100
    budget = (5, 20) if args.quick else (5, 100)
    xc, yc = x[:n_cw], y[:n_cw]
    cw = CWL2(model, binary_search_steps=budget[0], steps=budget[1], abort_early=False)
    cw_floor_loop = floor_loop(budget[0] * budget[1], xc, yc)
    cw_floor = t_cw = float("inf")
    for _ in range(max(1, repeats - 1)):  # alternately, best of each
        cw_floor = min(cw_floor, timeit(cw_floor_loop, 0))
        t_cw = min(t_cw, timeit(lambda: cw.run(xc, yc), 0))
    res = cw.run(xc, yc)
    print(
        f"\nCWL2 {budget[0]} x {budget[1]} (abort_early off: the full budget) on {n_cw} images: "
        f"success {res.success_rate:.3f}, median L2 {median_l2(res):.3f}, "
        f"time {t_cw:.2f} s = {t_cw / cw_floor:.3f} x floor"
    )
    cw_default = CWL2(model, binary_search_steps=budget[0], steps=budget[1])
    t_cwd = timeit(lambda: cw_default.run(xc, yc), 0)
    res_d = cw_default.run(xc, yc)
    print(
        f"CWL2 {budget[0]} x {budget[1]} with abort_early: success {res_d.success_rate:.3f}, "
        f"median L2 {median_l2(res_d):.3f}, time {t_cwd:.2f} s = "
        f"{t_cwd / cw_floor:.3f} x the full-budget floor"
    )

    try:
        import torchattacks  # type: ignore[import-not-found]
    except ImportError:
        print("\ntorchattacks is not installed: comparison skipped")
    else:
        ta = torchattacks.PGD(model, eps=eps, alpha=0.025, steps=10, random_start=True)
        ours = PGD(model, eps, alpha=0.025, steps=10)
        t_ta = timeit(lambda: ta(x, y), repeats)
        t_ours = timeit(lambda: ours(x, y, generator=torch.Generator().manual_seed(0)), repeats)
        print(f"\nPGD advrobust {t_ours:.3f} s vs torchattacks {t_ta:.3f} s")
        print(f"ratio advrobust / torchattacks: {t_ours / t_ta:.3f}")


if __name__ == "__main__":
    main()
