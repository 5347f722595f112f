"""Quickstart: train a small CNN on scikit-learn's digits and attack it.

    python examples/quickstart.py           # a few minutes on a laptop CPU
    python examples/quickstart.py --quick   # a few seconds

Trains the Carlini-Wagner "simple CNN" on the 8x8 digits (bundled with scikit-learn: nothing to
download), then runs FGSM, BIM, PGD (Linf and L2) and Carlini-Wagner L2 on the test images the
model classifies correctly, and prints a table of success rates and distortions.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from advrobust.attacks import BIM, CWL2, FGSM, PGD, Attack
from advrobust.data import load_dataset
from advrobust.models import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description="Train a digits CNN and attack it.")
    parser.add_argument("--quick", action="store_true", help="tiny settings (a few seconds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)

    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    model = create_model("simple-cnn", num_classes=10, in_channels=1, input_size=8)

    epochs = 3 if args.quick else 10
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(train.targets), generator=g)
        for i in range(0, len(perm), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            F.cross_entropy(model(train.data[idx]), train.targets[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        correct = model(test.data).argmax(1) == test.targets
    print(
        f"trained {epochs} epochs in {time.perf_counter() - t0:.1f} s; "
        f"clean test accuracy {correct.float().mean():.3f} on {len(test.targets)} images"
    )

    n = 64 if args.quick else 200
    x, y = test.data[correct][:n], test.targets[correct][:n]
    eps = 0.1  # in pixel units of [0, 1] images
    cw = (
        CWL2(model, steps=100, binary_search_steps=5, lr=0.05)
        if args.quick
        else CWL2(model)  # the documented defaults
    )
    attacks: list[Attack] = [
        FGSM(model, eps),
        # Kurakin's defaults: alpha = 1/255 and round(min(eps*255 + 4, 1.25*eps*255)) steps
        BIM(model, eps),
        PGD(model, eps, alpha=0.025, steps=20),
        PGD(model, 1.0, alpha=0.2, steps=20, norm="l2"),
        cw,
    ]
    print(f"\nattacking {len(y)} correctly classified test images")
    print(f"{'attack':<70} {'success':>8} {'mean L2':>8} {'mean Linf':>9} {'time':>7}")
    for atk in attacks:
        t = time.perf_counter()
        # CW's defaults spend up to 9 x 1,000 steps: on the full run it sees the first 25 images
        xs, ys = (x[:25], y[:25]) if isinstance(atk, CWL2) and not args.quick else (x, y)
        res = atk.run(xs, ys, generator=torch.Generator().manual_seed(args.seed))
        dt = time.perf_counter() - t
        ok = res.success
        l2 = res.l2[ok].mean().item() if ok.any() else float("nan")
        linf = res.linf[ok].mean().item() if ok.any() else float("nan")
        name = repr(atk)
        name = name if len(name) <= 70 else name[:67] + "..."
        print(f"{name:<70} {res.success_rate:>8.3f} {l2:>8.3f} {linf:>9.3f} {dt:>6.1f}s")
    print("\n(mean L2 / Linf over the successful examples; CWL2 is unbounded and minimises L2)")
    if not args.quick:
        print("(CWL2 with its documented defaults ran on the first 25 of the images)")


if __name__ == "__main__":
    main()
