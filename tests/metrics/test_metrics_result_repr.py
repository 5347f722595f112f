"""Metric results print their summary on one line, not tensor dumps."""

from __future__ import annotations

import torch
from torch import nn

from advrobust import metrics as M
from advrobust.attacks import PGD


def test_metric_results_repr_is_the_summary() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x, y = torch.rand(200, 1, 8, 8), torch.randint(0, 10, (200,))
    results = [
        M.accuracy(model, (x, y)),
        M.adversarial_accuracy(model, (x, y), PGD(model, eps=0.1, alpha=0.02, steps=3), delta=0.1),
        M.success_rate(model, (x, y), PGD(model, eps=0.1, alpha=0.02, steps=3)),
    ]
    for res in results:
        text = repr(res)
        assert text.startswith(type(res).__name__ + "(")
        assert "\n" not in text and "tensor(" not in text and len(text) < 300
        for key in res.summary():
            assert f"{key}=" in text
    assert repr(results[0]) == f"AccuracyResult(accuracy={results[0].value:.4g}, num_examples=200)"
