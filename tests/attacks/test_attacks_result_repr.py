"""AttackResult prints a one-line summary, not tensor dumps."""

from __future__ import annotations

import math

import torch
from torch import nn

from advrobust.attacks import PGD, AttackResult


def test_attack_result_repr_is_a_short_summary() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    x, y = torch.rand(300, 1, 8, 8), torch.randint(0, 10, (300,))
    res = PGD(model, eps=0.1, alpha=0.02, steps=3).run(x, y)
    text = repr(res)
    assert "\n" not in text and "tensor(" not in text and len(text) < 200
    n = int(res.success.sum())
    assert text.startswith(f"AttackResult({n}/300 succeeded") and "untargeted" in text
    summary = res.summary()
    assert summary["examples"] == 300 and summary["successes"] == n
    assert summary["max_linf"] <= 0.1 + 1e-6
    assert summary["x_adv"] == "(300, 1, 8, 8) float32" and summary["device"] == "cpu"


def test_attack_result_repr_without_successes_and_empty() -> None:
    x = torch.zeros(3, 2)
    none = AttackResult(
        x,
        torch.zeros(3, dtype=torch.bool),
        torch.zeros(3, dtype=torch.long),
        x[:, 0],
        x[:, 0],
        torch.zeros(3, dtype=torch.long),
        torch.ones(3, dtype=torch.long),
    )
    assert repr(none) == "AttackResult(0/3 succeeded (0.0%), targeted; x_adv (3, 2) float32 on cpu)"
    assert math.isnan(float(none.summary()["median_l2"]))
    empty = AttackResult(
        x[:0],
        torch.zeros(0, dtype=torch.bool),
        torch.zeros(0, dtype=torch.long),
        x[:0, 0],
        x[:0, 0],
        torch.zeros(0, dtype=torch.long),
        None,
    )
    assert repr(empty).startswith("AttackResult(0/0 succeeded (nan%)")
