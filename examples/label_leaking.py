"""Label leaking (Kurakin et al. 2017, sec. 4.2) on scikit-learn's digits.

Two copies of the same network are trained with mixed batches on 500 digits (a balanced
subset), one on FGSM examples made with the *true* labels, one on step l.l. examples (which
never look at the label); both with 24 of every 32 examples replaced, lambda = 1 and a fixed
eps = 0.5, like the FGSM-trained MNIST model of Goodfellow et al. in which Kurakin et al.
found leaked labels. Both models are then attacked on the remaining 1,297 digits with FGSM,
run once with the true labels and once with the model's own predicted labels.

The label of an example leaks when the model classifies the FGSM example made with the true
label correctly but misclassifies the one made from its predicted label: the FGSM-trained
model has learnt to read the label off the perturbation. A leak needs a clean mistake (with a
correct prediction both attacks coincide), so counts are bounded by the clean errors. What a
correct implementation reproduces (Kurakin et al. 2017, sec. 4.2 and table 3):

* for the FGSM-trained model at large eps, FGSM accuracy with the true labels is above FGSM
  accuracy with predicted labels, and it *rises* with eps (a defective construction: a real
  attack never gets weaker as eps grows);
* its label-leak count is clearly above the step-l.l.-trained model's.

Run ``python examples/label_leaking.py`` (about a minute on one CPU core) or with
``--quick`` (fewer epochs: well under a minute).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from torch import nn

from advrobust.attacks import FGSM
from advrobust.data import load_dataset, nested_balanced_subsets
from advrobust.metrics import label_leak_count
from advrobust.models import Normalize
from advrobust.training import AdversarialTrainer, TrainConfig

TRAIN_EPS = 0.5
EVAL_EPS = (0.2, 0.3, 0.4, 0.5)


def make_model(mean: tuple[float, ...], std: tuple[float, ...], seed: int) -> nn.Module:
    """A one-hidden-layer perceptron on the 8x8 digits."""
    torch.manual_seed(seed)
    return nn.Sequential(
        Normalize(mean, std), nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)
    )


def configs(epochs: int, seed: int) -> dict[str, TrainConfig]:
    common: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": 32,
        "lr": 0.05,
        "scheduler": {"name": "cosine"},
        "seed": seed,
        "fraction": 0.75,
        "adv_weight": 1.0,
        "eps": {"name": "fixed", "eps": TRAIN_EPS},
    }
    return {
        "FGSM-trained": TrainConfig.kurakin(
            **common, attack={"name": "FGSM"}, attack_labels="true"
        ),
        "step-l.l.-trained": TrainConfig.kurakin(**common, attack={"name": "StepLL"}),
    }


def run(quick: bool = False, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Train both models; return ``{model: {eps: {column: value}}}`` on the held-out digits."""
    torch.set_num_threads(1)
    train = load_dataset("digits", split="train")
    test = load_dataset("digits", split="test")
    keep = torch.as_tensor(nested_balanced_subsets(train.targets, [500], seed=seed)[0])
    rest = torch.ones(len(train), dtype=torch.bool)
    rest[keep] = False
    x_tr, y_tr = train.data[keep], train.targets[keep]
    x_ev = torch.cat([test.data, train.data[rest]])
    y_ev = torch.cat([test.targets, train.targets[rest]])
    epochs = 30 if quick else 60
    results: dict[str, Any] = {"n": int(y_ev.numel())}
    for name, cfg in configs(epochs, seed).items():
        model = make_model(train.mean, train.std, seed)
        AdversarialTrainer(model, cfg).fit((x_tr, y_tr), progress=progress)
        model.eval()
        with torch.no_grad():
            clean = (model(x_ev).argmax(1) == y_ev).float().mean().item()
        rows = {}
        for eps in EVAL_EPS:
            fgsm = FGSM(model, eps=eps)
            with torch.no_grad():
                acc_true = (model(fgsm(x_ev, y_ev)).argmax(1) == y_ev).float().mean().item()
                acc_pred = (model(fgsm(x_ev)).argmax(1) == y_ev).float().mean().item()
            leak = label_leak_count(model, (x_ev, y_ev), eps=eps)
            rows[eps] = {
                "clean": clean,
                "FGSM (true labels)": acc_true,
                "FGSM (predicted labels)": acc_pred,
                "leaked labels": int(leak.count),
            }
        results[name] = rows
    return results


def format_table(results: dict[str, Any]) -> str:
    cols = ["clean", "FGSM (true labels)", "FGSM (predicted labels)"]
    n = results["n"]
    lines = [
        f"accuracy on {n} held-out digits; models trained on 500 with eps = {TRAIN_EPS}",
        f"| {'model':<18} | eps  | " + " | ".join(f"{c:>23}" for c in cols) + " | leaked labels |",
        "|" + "-" * 20 + "|------|" + "|".join("-" * 25 for _ in cols) + "|---------------|",
    ]
    for name in ("FGSM-trained", "step-l.l.-trained"):
        for eps, row in results[name].items():
            cells = " | ".join(f"{100 * row[c]:>22.1f}%" for c in cols)
            lines.append(f"| {name:<18} | {eps:.2f} | {cells} | {row['leaked labels']:>13} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs (< 60 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args()
    results = run(quick=args.quick, seed=args.seed, progress=args.progress)
    print(format_table(results))
    fg, ll = results["FGSM-trained"], results["step-l.l.-trained"]
    top = max(EVAL_EPS)
    print()
    print(
        f"FGSM-trained at eps {top}: FGSM accuracy {100 * fg[top]['FGSM (true labels)']:.1f}% "
        f"with true labels vs {100 * fg[top]['FGSM (predicted labels)']:.1f}% with predicted "
        f"labels (clean {100 * fg[top]['clean']:.1f}%)"
    )
    total_fg = sum(r["leaked labels"] for r in fg.values())
    total_ll = sum(r["leaked labels"] for r in ll.values())
    print(
        f"leaked labels over eps {EVAL_EPS}: FGSM-trained {total_fg}, step-l.l.-trained {total_ll}"
    )


if __name__ == "__main__":
    main()
