"""Transfer of adversarial examples between models trained on digits (Kurakin et al. sec. 4.4).

Trains three small undefended models on scikit-learn's digits (two MLPs of different widths
and seeds, and the Carlini-Wagner "simple CNN"), then prints the transfer matrix for FGSM,
BIM (basic iterative) and IterLL (iterative least-likely): rows are the source models the
adversarial examples are made on, columns the target models. Kurakin's rate (the fraction
of the source's successful adversarial examples that also fool the target) and the
absolute error rate of the target on all of the source's adversarial examples are shown.
Kurakin reports FGSM > BIM > IterLL for transfer.

Usage: python examples/transfer_matrix.py [--quick] [--eps 0.15]
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor, nn

from advrobust.attacks import BIM, FGSM, IterLL
from advrobust.data import load_dataset
from advrobust.metrics import accuracy, transfer_matrix
from advrobust.models import create_model


def train(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (< 60 s)")
    parser.add_argument("--eps", type=float, default=0.15, help="Linf radius in [0, 1] units")
    args = parser.parse_args()
    torch.set_num_threads(1)
    epochs, n_eval = (6, 150) if args.quick else (30, 400)

    train_set = load_dataset("digits", split="train")
    test_set = load_dataset("digits", split="test")
    kw = {"num_classes": 10, "in_channels": 1, "input_size": 8}
    torch.manual_seed(0)
    models = {
        "mlp-256": create_model("mlp", hidden=256, **kw),
        "mlp-64": create_model("mlp", hidden=64, **kw),
        "simple-cnn": create_model("simple-cnn", dropout=0.0, **kw),
    }
    for seed, model in enumerate(models.values()):
        train(model, train_set.data, train_set.targets, epochs=epochs, seed=seed)

    x, y = test_set.data[:n_eval], test_set.targets[:n_eval]
    print(f"clean accuracy on {n_eval} digits test images:")
    for name, model in models.items():
        print(f"  {name:11s} {accuracy(model, (x, y)).value:.3f}")

    first = next(iter(models.values()))
    attacks = {
        "FGSM": FGSM(first, eps=args.eps),
        "BIM": BIM(first, eps=args.eps, steps=10, rel_alpha=0.25),
        "IterLL": IterLL(first, eps=args.eps, steps=10, rel_alpha=0.25),
    }
    mean_off_diagonal = {}
    for name, atk in attacks.items():
        res = transfer_matrix(models, (x, y), atk)
        print(f"\n{name} (eps={args.eps}), Kurakin transfer rate (source rows, target columns):")
        print(res.table())
        print(f"{name}, absolute error rate of the target on the source's examples:")
        print(res.table(absolute=True))
        off = ~torch.eye(len(models), dtype=torch.bool)
        mean_off_diagonal[name] = float(res.rates[off].nanmean())
    print(
        "\nmean off-diagonal transfer rate: "
        + ", ".join(f"{k} {v:.3f}" for k, v in mean_off_diagonal.items())
    )


if __name__ == "__main__":
    main()
