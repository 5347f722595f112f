"""``advrobust evaluate`` computes its numbers with the study's own cell code.

A study cell's ``model.pt`` evaluated with the cell's seed, the whole test split and the
cell's attack settings prints exactly the values of the study's results rows: the command
runs the study's tasks (one-cell study in memory), not a loop of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from advrobust.data import load_dataset
from advrobust.study import AttackSpec, DataSpec, EvalSpec, StudyConfig, enumerate_cells, run_study
from advrobust.study._cli import main

N_TEST = len(load_dataset("digits", split="test").targets)  # the whole split: the same sample
BIM = {"steps": 5, "rel_alpha": 0.2}


def _study(
    make_config: Callable[..., StudyConfig], out: Path, evaluation: EvalSpec
) -> tuple[Path, int, list[dict[str, Any]]]:
    """Run a one-cell digits study; ``(weights, cell seed, results rows)``."""
    from advrobust.study import ModelSpec, TrainingSpec

    config = make_config(
        data=DataSpec(name="digits", sizes=(40,)),
        models=(ModelSpec("mlp", {"hidden": 16}, label="mlp"),),
        training=TrainingSpec(epochs=3, batch_size=16, lr=1e-2),
        evaluation=evaluation,
    )
    result = run_study(config, out, progress=False, stream=None)
    cell = enumerate_cells(config)[0]
    return out / "cells" / cell.key / "model.pt", cell.seed, result.rows


def _printed(out: str) -> dict[str, str]:
    """The table of ``evaluate``: metric label -> value as printed."""
    table = {}
    for line in out.splitlines()[2:]:
        table[line[:44].strip()] = line[44:55].strip()
    return table


def _evaluate(weights: Path, seed: int, *options: str) -> list[str]:
    return [
        "evaluate", "--model", "mlp", "--weights", str(weights), "--dataset", "digits",
        "--device", "cpu", "--num-examples", str(N_TEST), "--seed", str(seed), "--no-progress",
        *options,
    ]  # fmt: skip


def _row(rows: list[dict[str, Any]], metric: str, delta: float | None = None) -> float:
    (value,) = [
        r["value"] for r in rows if r["metric"] == metric and (delta is None or r["delta"] == delta)
    ]
    return float(value)


@pytest.mark.slow  # a study cell and evaluate, each with an eps search over 400 test digits
def test_evaluate_prints_the_numbers_of_the_study_cell(
    make_config: Callable[..., StudyConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluation = EvalSpec(
        metrics=("accuracy", "adversarial-accuracy", "robustness-linf"),
        num_examples=N_TEST,
        deltas=(0.05, 0.1),
        delta_attack=AttackSpec("BIM", BIM),
        linf_attack=AttackSpec("BIM", BIM),
    )  # linf_max, linf_tol and batch_size: the defaults, which evaluate uses too
    weights, seed, rows = _study(make_config, tmp_path / "study", evaluation)
    kwargs = f'BIM={{"steps": {BIM["steps"]}, "rel_alpha": {BIM["rel_alpha"]}}}'
    argv = _evaluate(weights, seed, "--attack", "BIM", "--attack-kwargs", kwargs)
    assert main([*argv, "--eps", "0.05", "--eps", "0.1"]) == 0
    table = _printed(capsys.readouterr().out)
    assert table["accuracy"] == f"{_row(rows, 'accuracy'):.4f}"
    values = []
    for delta in (0.05, 0.1):
        label = f"adversarial accuracy linf eps={delta:g} [BIM]"
        assert table[label] == f"{_row(rows, 'adversarial_accuracy', delta):.4f}"
        values.append(float(table[label]))
    # (numbers that depend on the attack: the comparison is not one of zeros)
    assert 0.0 < values[0] < float(table["accuracy"]) and values[1] <= values[0]
    assert main(argv) == 0  # without --eps: BIM's minimal distortion by eps search
    table = _printed(capsys.readouterr().out)
    distortion = _row(rows, "mean_distortion_linf")
    assert table["mean minimal linf distortion [BIM]"] == f"{distortion:.4f}"
    assert 0.0 < distortion < 1.0


@pytest.mark.slow  # an APGD ensemble over the 400 test digits, in the study and in evaluate
def test_evaluate_suite_fast_end_to_end_matches_the_study(
    make_config: Callable[..., StudyConfig], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evaluation = EvalSpec(
        metrics=("accuracy", "adversarial-accuracy"),
        num_examples=N_TEST,
        deltas=(0.05, 0.2),
        robust_suite="fast",
    )
    weights, seed, rows = _study(make_config, tmp_path / "study", evaluation)
    argv = _evaluate(weights, seed, "--suite", "fast", "--eps", "0.05", "--eps", "0.2")
    assert main(argv) == 0
    out = capsys.readouterr().out
    table = _printed(out)
    assert "[BIM]" not in out and "[CWL2]" not in out  # --suite alone runs no default attacks
    values = []
    for delta in (0.05, 0.2):
        shown = table[f"robust accuracy linf eps={delta:g} [fast]"]
        assert shown == f"{_row(rows, 'adversarial_accuracy', delta):.4f}"
        values.append(float(shown))
    # robust at a larger eps implies robust at a smaller one; never above clean accuracy
    assert 0.0 < values[0] < float(table["accuracy"]) and values[1] <= values[0]
