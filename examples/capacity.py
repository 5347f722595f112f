"""Kurakin et al. 2016 sec. 4.5 on digits: does model capacity help adversarial training?

Kurakin scales the number of filters of every layer by a width multiplier rho and finds that
bigger models gain more robustness from adversarial training. This study trains the
Carlini-Wagner CNN with rho in {0.25, 0.5, 1} (``width=rho``), cleanly and with Kurakin's
mixed-batch recipe (step l.l. examples replacing half of each batch, lambda = 0.3, per-example
eps from the truncated normal), and reports clean accuracy and adversarial accuracy against a
one-step (FGSM) and an iterative (I-FGSM) attack.

Run: ``python examples/capacity.py [--quick] [--out DIR]``. The same grid on CIFAR-10 is the
``capacity`` preset: ``advrobust study run --preset capacity --root DIR``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from advrobust.attacks import BIM
from advrobust.metrics import adversarial_accuracy
from advrobust.study import (
    AttackSpec,
    DataSpec,
    EvalSpec,
    ModelSpec,
    RecipeSpec,
    StudyConfig,
    TrainingSpec,
    enumerate_cells,
    evaluation_sample,
    load_cell_model,
    run_study,
)


def config(quick: bool) -> StudyConfig:
    rhos = (0.25, 1.0) if quick else (0.25, 0.5, 1.0)
    kurakin = {"eps": {"name": "truncated_normal", "std": 0.08, "max": 0.16}}
    return StudyConfig(
        name="capacity-digits" + ("-quick" if quick else ""),
        data=DataSpec(name="digits", sizes=(600,) if quick else (1200,)),
        models=tuple(ModelSpec("simple-cnn", {"width": rho}, label=f"rho={rho:g}") for rho in rhos),
        recipes=(
            RecipeSpec("clean", "clean"),
            RecipeSpec("kurakin-stepll", "kurakin", kurakin),
        ),
        training=TrainingSpec(epochs=6 if quick else 25, batch_size=32, lr=2e-3),
        evaluation=EvalSpec(
            metrics=("accuracy", "adversarial-accuracy"),
            num_examples=100 if quick else 400,
            deltas=(0.1,),
            delta_attack=AttackSpec("FGSM", {}),
        ),
        threads=1,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (< 1 minute)")
    parser.add_argument("--out", help="output folder (default: a temporary folder)")
    args = parser.parse_args(argv)
    one_step = config(args.quick)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / one_step.name
        result = run_study(one_step, out, progress=not args.quick, stream=None)
        # the iterative attack on the same trained weights and the same examples
        x, y = evaluation_sample(one_step)
        table: dict[tuple[str, str], dict[str, float]] = {}
        for row in result.rows:
            entry = table.setdefault((row["model"], row["recipe"]), {})
            if row["metric"] == "accuracy":
                entry["clean"] = row["value"]
            elif row["metric"] == "adversarial_accuracy":
                entry["fgsm"] = row["value"]
        for cell in enumerate_cells(one_step):
            model = load_cell_model(out, cell.key)
            res = adversarial_accuracy(
                model, (x, y), BIM(model, steps=10, rel_alpha=0.1), delta=0.1
            )
            table[(cell.model.key, cell.recipe.name)]["ifgsm"] = res.value
        print(f"{'model':10s} {'recipe':16s} {'clean':>7s} {'FGSM@0.1':>9s} {'I-FGSM@0.1':>11s}")
        for (model, recipe), v in table.items():
            print(
                f"{model:10s} {recipe:16s} {v['clean']:7.3f} {v['fgsm']:9.3f} "
                f"{v.get('ifgsm', math.nan):11.3f}"
            )
        gains = {
            m: table[(m, "kurakin-stepll")]["fgsm"] - table[(m, "clean")]["fgsm"]
            for m in dict.fromkeys(k[0] for k in table)
        }
        print(
            "\nFGSM accuracy gained by adversarial training, per width: "
            + ", ".join(f"{m}: {g:+.3f}" for m, g in gains.items())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
