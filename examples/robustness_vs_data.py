"""The ICLR 2019 study through the API: how do accuracy and robustness change with more data?

Trains an MLP and the Carlini-Wagner CNN on nested class-balanced subsets S_1 ⊂ ... ⊂ S_n of
scikit-learn's digits, measures clean accuracy, the robustness score of eq. 4 (mean minimal
I-FGSM Linf and CW-L2 distortion over the examples every subset's model classifies correctly)
and adversarial accuracy (eq. 5), then prints the table with 95% confidence intervals, the
turning points the intervals support (see the study guide for the rule) and writes the report.

Run: ``python examples/robustness_vs_data.py [--quick] [--out DIR]``. Rerunning with the same
``--out`` resumes (finished cells are skipped). The same study from the shell:
``advrobust study run --preset digits``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from advrobust.study import (
    AttackSpec,
    DataSpec,
    EvalSpec,
    ModelSpec,
    RecipeSpec,
    StudyConfig,
    TrainingSpec,
    example_values,
    load_preset,
    run_study,
    turning_points,
    write_report,
)


def quick_config() -> StudyConfig:
    """Tiny settings for CI: three subset sizes, few epochs, few evaluation examples."""
    return StudyConfig(
        name="robustness-vs-data-quick",
        data=DataSpec(name="digits", sizes=(60, 150, 400)),
        models=(
            ModelSpec("mlp", {"hidden": 64}, label="mlp"),
            ModelSpec("simple-cnn", {"width": 0.25}, label="simple-cnn"),
        ),
        recipes=(RecipeSpec("clean"),),
        training=TrainingSpec(epochs=8, batch_size=32, lr=3e-3),
        evaluation=EvalSpec(
            num_examples=40,
            linf_tol=0.005,
            linf_attack=AttackSpec("BIM", {"steps": 5, "rel_alpha": 0.2}),
            l2_attack=AttackSpec("CWL2", {"steps": 20, "binary_search_steps": 3, "lr": 0.05}),
            deltas=(0.05, 0.1),
            delta_attack=AttackSpec("BIM", {"steps": 5, "rel_alpha": 0.2}),
        ),
        threads=1,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (< 1 minute)")
    parser.add_argument("--out", help="output folder (default: a temporary folder)")
    args = parser.parse_args(argv)
    config = quick_config() if args.quick else load_preset("digits")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / config.name
        result = run_study(config, out, progress=not args.quick)
        # intervals for single-replicate robustness scores come from the per-example values
        found = turning_points(result.rows, examples=example_values(config, out))
        if not found:
            print(
                "no turning point on these settings (no rise and fall of robustness larger "
                "than its 95% confidence intervals while accuracy rose)"
            )
        for tp in found:
            print(
                f"{tp['model']}: {tp['metric']} rises from {tp['rise_size']} to "
                f"{tp['size']} training examples, then falls by {tp['fall_size']}"
            )
        write_report(out, formats=("png",))
        print(f"report: {out / 'report.md'}")
        if not args.out:
            print("(temporary output folder; pass --out DIR to keep the table and figures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
