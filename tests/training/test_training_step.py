"""StepOutput and StepFigures: what a training step returns, by name."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from advrobust.training import AdversarialTrainer, StepFigures, StepOutput, TrainConfig


def test_training_step_figures_of_one_mixed_batch():
    # k = 1 adversarial row first, then 3 clean rows; hits 0 | 1 1 0; mean loss 2.0
    figs = StepFigures.of_step(torch.tensor(2.0), torch.tensor([0.0, 1.0, 1.0, 0.0]), 4, 1)
    assert figs.totals() == {
        "loss_sum": 8.0,
        "examples": 4.0,
        "clean_correct": 2.0,
        "clean_examples": 3.0,
        "adv_correct": 0.0,
        "adv_examples": 1.0,
    }
    total = StepFigures.zeros(torch.device("cpu")).add_(figs).add_(figs)
    summary = StepFigures.summary(total.totals())
    assert summary == {
        "loss": 2.0,
        "train_clean_acc": 2 / 3,
        "train_adv_acc": 0.0,
        "examples": 8,
        "adv_examples": 2,
    }
    assert total.running() == {"loss": "2.0000", "clean": "0.667", "adv": "0.000"}
    assert (figs + figs).totals() == total.totals()


def test_training_step_figures_of_nothing():
    summary = StepFigures.summary(StepFigures.zeros(torch.device("cpu")).totals())
    assert math.isnan(summary["loss"]) and summary["train_clean_acc"] is None
    assert summary["train_adv_acc"] is None


def test_training_step_returns_named_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    trainer = AdversarialTrainer(model, TrainConfig.kurakin(batch_size=8, k=2))
    out = trainer.train_step(x, y)
    assert isinstance(out, StepOutput) and out.num_adv == 2
    assert out.x.shape == x.shape and out.y.shape == y.shape and out.replaced.shape == (2,)
    assert torch.equal(out.y[2:], y[[i for i in range(8) if i not in out.replaced.tolist()]])
    totals = out.figures.totals()
    assert totals["examples"] == 8 and totals["adv_examples"] == 2
    assert totals["loss_sum"] == pytest.approx(8 * float(out.loss))
    with pytest.warns(DeprecationWarning, match="out.num_adv"):
        loss, _, _, k, _, figures = out
    assert k == 2 and loss is out.loss and figures is out.figures.values
