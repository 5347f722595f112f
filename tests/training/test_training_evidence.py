"""The phenomena of paper 002 reproduced by examples/kurakin_training.py on digits."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _example(name):
    spec = importlib.util.spec_from_file_location(
        f"_training_example_{name}", EXAMPLES / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(results, *, gain, pgd_gap):
    und = results["undefended"]
    kur = results["step l.l. (k=16/32)"]
    pgd = results["PGD-AT (k=m)"]
    # step l.l. mixed-batch training raises step l.l. accuracy well above the undefended model's
    assert kur["step l.l."] >= und["step l.l."] + gain
    # ... at a small cost in clean accuracy (at most 3 points)
    assert kur["clean"] >= und["clean"] - 0.03
    # single-step training does not confer iterative robustness: far below PGD training
    assert kur["PGD"] <= pgd["PGD"] - pgd_gap
    assert kur["iter. l.l."] <= pgd["iter. l.l."]
    # PGD adversarial training gives the highest PGD accuracy of the three
    assert pgd["PGD"] == max(r["PGD"] for r in results.values())


def test_training_evidence_kurakin_quick():
    results = _example("kurakin_training").run(quick=True, seed=0)
    _check(results, gain=0.15, pgd_gap=0.2)


@pytest.mark.slow
def test_training_evidence_kurakin_full():
    results = _example("kurakin_training").run(quick=False, seed=0)
    _check(results, gain=0.3, pgd_gap=0.3)
    assert (
        results["step l.l. (k=16/32)"]["iter. l.l."] <= results["PGD-AT (k=m)"]["iter. l.l."] - 0.05
    )


def _check_leaking(results):
    fg, ll = results["FGSM-trained"], results["step-l.l.-trained"]
    # FGSM-trained, FGSM-evaluated: accuracy with the true labels above the predicted-label
    # attack's at large eps, and rising with eps (the construction is defective)
    assert fg[0.5]["FGSM (true labels)"] > fg[0.5]["FGSM (predicted labels)"]
    assert fg[0.5]["FGSM (true labels)"] > fg[0.3]["FGSM (true labels)"] + 0.3
    # label-leak count clearly above the step-l.l.-trained model's
    total_fg = sum(r["leaked labels"] for r in fg.values())
    total_ll = sum(r["leaked labels"] for r in ll.values())
    assert total_fg >= 3 * total_ll + 10


def test_training_evidence_label_leaking_quick():
    _check_leaking(_example("label_leaking").run(quick=True, seed=0))


@pytest.mark.slow
def test_training_evidence_label_leaking_full():
    _check_leaking(_example("label_leaking").run(quick=False, seed=0))
