"""Result dicts stored by earlier versions still load: the stored form names no class or module.

The two records below are ``json.dumps(result.to_dict(), sort_keys=True)`` as written when every
result class lived in one ``advrobust.metrics._results`` module, before the split by metric
family. They nest results in results and carry attack specs, tensors of several dtypes and a
dict of scalars: every path of ``from_dict``.
"""

from __future__ import annotations

import json

import torch

from advrobust.metrics import AttackBreakdown, Finding, RobustAccuracyResult, SanityReport

ROBUST = (
    '{"attacks": [{"attacked": 2, "backwards": 2, "broken": 0, "forwards": 2, "spec": {"config": '
    '{"bounds": [0.0, 1.0], "eps": 0.25, "norm": "linf"}, "kind": "bounded", "name": "FGSM", '
    '"norm": "linf", "targeted": false}, "summary": {"attack": "FGSM (linf, bounded, eps=0.25)", '
    '"attacked": 2, "backwards": 2, "broken": 0, "forwards": 2}, "tensors": {}}, {"attacked": 2, '
    '"backwards": 10, "broken": 1, "forwards": 12, "spec": {"config": {"alpha": null, "bounds": '
    '[0.0, 1.0], "early_stop": false, "eps": 0.25, "loss": "ce", "norm": "linf", "rel_alpha": '
    'null, "steps": 5}, "kind": "bounded", "name": "BIM", "norm": "linf", "targeted": false}, '
    '"summary": {"attack": "BIM (linf, bounded, eps=0.25, steps=5, loss=ce)", "attacked": 2, '
    '"backwards": 10, "broken": 1, "forwards": 12}, "tensors": {}}], "backwards": 12, '
    '"broken_by": [-1, 1, -1], "clean_correct": [true, true, false], "eps": 0.25, "forwards": 17, '
    '"norm": "linf", "robust": [true, false, false], "suite": "fast", "summary": {"backwards": 12, '
    '"broken[0:FGSM]": 0, "broken[1:BIM]": 1, "clean_accuracy": 0.6666666666666666, "eps": 0.25, '
    '"forwards": 17, "norm": "linf", "num_examples": 3, "passes_per_example": 9.666666666666666, '
    '"robust_accuracy": 0.3333333333333333, "suite": "fast"}, "tensors": {"broken_by": {"dtype": '
    '"int64", "shape": [3]}, "clean_correct": {"dtype": "bool", "shape": [3]}, "robust": '
    '{"dtype": "bool", "shape": [3]}, "x_adv": {"dtype": "float32", "shape": [3, 2]}, "y": '
    '{"dtype": "int64", "shape": [3]}}, "x_adv": [[0.0, 1.0], [0.25, 0.5], [1.0, 0.0]], "y": '
    "[0, 1, 1]}"
)

SANITY = (
    '{"attacks": [{"config": {"bounds": [0.0, 1.0], "eps": 0.25, "norm": "linf"}, "kind": '
    '"bounded", "name": "FGSM", "norm": "linf", "targeted": false}], "checks": ["randomness"], '
    '"findings": [{"details": {"modules_in_training_mode": 1, "relative_difference_eval_mode": '
    '0.5}, "docs": "docs/guide/evaluation-pitfalls.md#randomness", "explanation": "Call '
    'model.eval().", "id": "randomness", "summary": {"id": "randomness", "title": "the model\'s '
    'output changes between identical forward passes"}, "tensors": {}, "title": "the model\'s '
    'output changes between identical forward passes"}], "summary": {"findings": "randomness", '
    '"num_findings": 1, "ok": false}, "tensors": {}}'
)


def test_metrics_results_stored_robust_accuracy_loads_and_writes_the_same_text() -> None:
    res = RobustAccuracyResult.from_dict(json.loads(ROBUST))
    assert res.robust.tolist() == [True, False, False] and res.robust.dtype == torch.bool
    assert res.x_adv.shape == (3, 2) and res.x_adv.dtype == torch.float32
    assert res.broken_by.dtype == torch.int64
    assert all(isinstance(a, AttackBreakdown) for a in res.attacks)
    assert [a.spec.name for a in res.attacks] == ["FGSM", "BIM"]
    assert res.attacks[1].spec.config["steps"] == 5
    assert res.value == 1 / 3 and res.passes == 29
    assert json.dumps(res.to_dict(), sort_keys=True) == ROBUST


def test_metrics_results_stored_sanity_report_loads_and_writes_the_same_text() -> None:
    rep = SanityReport.from_dict(json.loads(SANITY))
    assert rep.ids == ("randomness",) and not rep.ok
    (finding,) = rep.findings
    assert isinstance(finding, Finding)
    assert finding.details == {"modules_in_training_mode": 1, "relative_difference_eval_mode": 0.5}
    assert rep.attacks[0].name == "FGSM" and rep.attacks[0].eps == 0.25
    assert json.dumps(rep.to_dict(), sort_keys=True) == SANITY
