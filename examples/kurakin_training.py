"""Kurakin's mixed-batch adversarial training on digits (Kurakin et al. 2017, sec. 3-4).

Trains three copies of the same network on the digits training split:

* undefended (clean training, k = 0);
* step l.l. mixed-batch training (Kurakin's algorithm 1: 16 of every 32 examples replaced by
  step l.l. examples, lambda = 0.3, eps per example from |N(0, std)| truncated at 2 std);
* PGD adversarial training (Madry; k = m, lambda = 1, fixed eps);

and prints their test accuracy on clean inputs and under step l.l., iter. l.l. and PGD at the
same eps. What a correct implementation reproduces
(Kurakin et al. 2017, tables 1-2; Marchetti & Ho 2022):

* step l.l. training raises step l.l. accuracy well above the undefended model's, at a small
  cost in clean accuracy;
* it confers little robustness to the iterative iter. l.l. attack;
* PGD training gives the highest PGD accuracy.

The network is a small CNN with batch normalisation, which Kurakin et al. recommend for
adversarial training. Run ``python examples/kurakin_training.py`` (a few minutes on one CPU
core) or with ``--quick`` (500 training images, 5 epochs: under a minute).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch import nn

from advrobust.attacks import PGD, IterLL, StepLL
from advrobust.data import load_dataset, nested_balanced_subsets
from advrobust.models import Normalize
from advrobust.training import AdversarialTrainer, TrainConfig

EPS = 0.2  # default radius on the [0, 1] pixel scale of digits (16 grey levels; MNIST uses 0.3)


def make_model(mean: tuple[float, ...], std: tuple[float, ...], seed: int) -> nn.Module:
    """A small CNN with batch normalisation (Kurakin recommends BatchNorm, sec. 3)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        Normalize(mean, std),
        nn.Conv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 2 * 2, 10),
    )


def configs(epochs: int, seed: int, eps: float = EPS) -> dict[str, TrainConfig]:
    common: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": 32,
        "lr": 0.05,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": {"name": "cosine"},
        "seed": seed,
    }
    return {
        "undefended": TrainConfig.clean(**common),
        # Kurakin's recipe with the eps distribution scaled to this data set: std = EPS,
        # truncated at 2 std, so that training covers the evaluation radius.
        "step l.l. (k=16/32)": TrainConfig.kurakin(
            **common, eps={"name": "truncated_normal", "std": eps, "max": 2 * eps}
        ),
        "PGD-AT (k=m)": TrainConfig.pgd_at(
            **common,
            attack={"name": "PGD", "eps": eps, "alpha": eps / 4, "steps": 7},
            eps={"name": "fixed", "eps": eps},
        ),
    }


def run(
    quick: bool = False, seed: int = 0, progress: bool = False, eps: float = EPS
) -> dict[str, dict[str, float]]:
    """Train the three models and return ``{model: {column: accuracy}}`` on the test split."""
    torch.set_num_threads(1)
    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    epochs = 5 if quick else 15
    x_tr, y_tr = train.data, train.targets
    x_te, y_te = test.data, test.targets
    if quick:  # a balanced subset of 500 training and the first 200 test images
        keep = torch.as_tensor(nested_balanced_subsets(y_tr, [500], seed=seed)[0])
        x_tr, y_tr = x_tr[keep], y_tr[keep]
        x_te, y_te = x_te[:200], y_te[:200]
    results: dict[str, dict[str, float]] = {}
    for name, cfg in configs(epochs, seed, eps).items():
        model = make_model(train.mean, train.std, seed)
        start = time.perf_counter()
        trainer = AdversarialTrainer(model, cfg)
        trainer.fit((x_tr, y_tr), progress=progress)
        seconds = time.perf_counter() - start
        attacks = {
            "step l.l.": StepLL(model, eps=eps),
            "iter. l.l.": IterLL(model, eps=eps),
            "PGD": PGD(model, eps=eps, alpha=eps / 8, steps=20),
        }
        row: dict[str, float] = {}
        for col, atk in attacks.items():
            clean, adv = trainer.evaluate((x_te, y_te), attack=atk)
            row["clean"] = clean
            row[col] = adv
        row["train s"] = seconds
        results[name] = row
    return results


def format_table(results: dict[str, dict[str, float]], eps: float = EPS) -> str:
    cols = ["clean", "step l.l.", "iter. l.l.", "PGD"]
    lines = [
        f"test accuracy on digits, eps = {eps} (attacks at the same eps)",
        f"| {'model':<20} | " + " | ".join(f"{c:>10}" for c in cols) + " | train s |",
        "|" + "-" * 22 + "|" + "|".join("-" * 12 for _ in cols) + "|---------|",
    ]
    for name, row in results.items():
        cells = " | ".join(f"{100 * row[c]:>9.1f}%" for c in cols)
        lines.append(f"| {name:<20} | {cells} | {row['train s']:>7.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (< 60 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, default=EPS, help="attack radius")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args()
    results = run(quick=args.quick, seed=args.seed, progress=args.progress, eps=args.eps)
    print(format_table(results, args.eps))
    und, kur, pgd = (results[k] for k in results)
    print()
    print(
        f"step l.l. accuracy: {100 * und['step l.l.']:.1f}% undefended -> "
        f"{100 * kur['step l.l.']:.1f}% step-l.l.-trained "
        f"(clean {100 * und['clean']:.1f}% -> {100 * kur['clean']:.1f}%)"
    )
    print(
        f"iterative attacks on the step-l.l.-trained model: iter. l.l. "
        f"{100 * kur['iter. l.l.']:.1f}% (PGD-AT: {100 * pgd['iter. l.l.']:.1f}%), PGD "
        f"{100 * kur['PGD']:.1f}% (PGD-AT: {100 * pgd['PGD']:.1f}%): single-step training "
        f"does not confer iterative robustness"
    )
    print(
        f"PGD accuracy: undefended {100 * und['PGD']:.1f}%, step l.l. {100 * kur['PGD']:.1f}%, "
        f"PGD-AT {100 * pgd['PGD']:.1f}%"
    )


if __name__ == "__main__":
    main()
