"""Label leaking (Kurakin et al. 2017, sec. 4.2) on scikit-learn's digits.

Two copies of the same network are trained with Kurakin's mixed batches (16 of 32 examples
replaced, lambda = 0.3, eps per example from a truncated normal), one on FGSM examples made
with the *true* labels, one on step l.l. examples (which never look at the label). Both are
then evaluated on the test split with FGSM run with the true labels and with the model's own
predicted labels.

The label of an example leaks when the model classifies the FGSM example made with the true
label correctly but misclassifies the one made from its predicted label: the FGSM-trained
model has learnt to read the label off the perturbation. What a correct implementation
reproduces (paper 002, table 3):

* for the FGSM-trained model, FGSM accuracy with true labels is above FGSM accuracy with
  predicted labels (and can exceed clean accuracy);
* its label-leak count is clearly above the step-l.l.-trained model's.

Run ``python examples/label_leaking.py`` (about 2 minutes on one CPU core) or with
``--quick`` (well under a minute).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from advrobust.attacks import FGSM
from advrobust.data import load_dataset
from advrobust.metrics import label_leak_count
from advrobust.models import create_model
from advrobust.training import AdversarialTrainer, TrainConfig

EPS = 0.3  # evaluation radius on the [0, 1] pixel scale (the MNIST radius of paper 002)


def make_model(mean: tuple[float, ...], std: tuple[float, ...], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(
        "simple-cnn", in_channels=1, input_size=8, num_classes=10, normalize=(mean, std)
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
        "eps": {"name": "truncated_normal", "std": eps / 2, "max": eps},
    }
    return {
        "FGSM-trained": TrainConfig.kurakin(
            **common, attack={"name": "FGSM"}, attack_labels="true"
        ),
        "step-l.l.-trained": TrainConfig.kurakin(**common, attack={"name": "StepLL"}),
    }


def run(
    quick: bool = False, seed: int = 0, progress: bool = False, eps: float = EPS
) -> dict[str, dict[str, float]]:
    """Train both models; return ``{model: {column: value}}`` on the test split."""
    torch.set_num_threads(1)
    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    epochs = 6 if quick else 20
    x_te, y_te = test.data, test.targets
    results: dict[str, dict[str, float]] = {}
    for name, cfg in configs(epochs, seed, eps).items():
        model = make_model(train.mean, train.std, seed)
        trainer = AdversarialTrainer(model, cfg)
        trainer.fit((train.data, train.targets), progress=progress)
        fgsm = FGSM(model, eps=eps)
        model.eval()
        with torch.no_grad():
            pred = model(x_te).argmax(1)
            clean = (pred == y_te).float().mean().item()
            true_acc = (model(fgsm(x_te, y_te)).argmax(1) == y_te).float().mean().item()
            pred_acc = (model(fgsm(x_te)).argmax(1) == y_te).float().mean().item()
        leak = label_leak_count(model, (x_te, y_te), eps=eps)
        results[name] = {
            "clean": clean,
            "FGSM (true labels)": true_acc,
            "FGSM (predicted labels)": pred_acc,
            "leaked labels": float(leak.count),
            "n": float(y_te.numel()),
        }
    return results


def format_table(results: dict[str, dict[str, float]], eps: float = EPS) -> str:
    cols = ["clean", "FGSM (true labels)", "FGSM (predicted labels)"]
    lines = [
        f"test accuracy on digits, FGSM at eps = {eps}",
        f"| {'model':<18} | " + " | ".join(f"{c:>23}" for c in cols) + " | leaked labels |",
        "|" + "-" * 20 + "|" + "|".join("-" * 25 for _ in cols) + "|---------------|",
    ]
    for name, row in results.items():
        cells = " | ".join(f"{100 * row[c]:>22.1f}%" for c in cols)
        leak = f"{int(row['leaked labels'])} / {int(row['n'])}"
        lines.append(f"| {name:<18} | {cells} | {leak:>13} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (< 60 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eps", type=float, default=EPS, help="training and attack radius")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args()
    results = run(quick=args.quick, seed=args.seed, progress=args.progress, eps=args.eps)
    print(format_table(results, args.eps))
    fg, ll = results["FGSM-trained"], results["step-l.l.-trained"]
    print()
    print(
        f"FGSM-trained: FGSM accuracy {100 * fg['FGSM (true labels)']:.1f}% with true labels vs "
        f"{100 * fg['FGSM (predicted labels)']:.1f}% with predicted labels (label leaking)"
    )
    print(
        f"leaked labels: FGSM-trained {int(fg['leaked labels'])}, step-l.l.-trained "
        f"{int(ll['leaked labels'])}"
    )


if __name__ == "__main__":
    main()
