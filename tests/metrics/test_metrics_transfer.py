"""transfer_rate, transfer_matrix and label_leak_count on hand-built models with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from advrobust.attacks import BIM, FGSM, IterLL
from advrobust.metrics import label_leak_count, transfer_matrix, transfer_rate

# Threshold models: class 1 iff x > t. FGSM with the true label moves x by eps away from its
# class, so every source produces the same adversarial points x' = x -+ eps.
X = torch.tensor([[0.1], [0.4], [0.45], [0.55], [0.6], [0.9]])
Y = torch.tensor([0, 0, 0, 1, 1, 1])
EPS = 0.15
X_ADV = torch.tensor([0.25, 0.55, 0.6, 0.4, 0.45, 0.75])


def expected(t_src: float, t_tgt: float) -> tuple[float, float]:
    """Kurakin and absolute transfer rates computed from the closed form."""
    src_clean = (X[:, 0] > t_src).long() == Y
    src_fooled = (t_src < X_ADV).long() != Y
    tgt_wrong = (t_tgt < X_ADV).long() != Y
    cand = src_clean & src_fooled
    rate = float(tgt_wrong[cand].double().mean()) if bool(cand.any()) else math.nan
    return rate, float(tgt_wrong.double().mean())


def test_metrics_transfer_rate_both_variants(threshold) -> None:
    a, c = threshold(0.5), threshold(0.58)
    res = transfer_rate(a, c, (X, Y), FGSM(a, eps=EPS))
    # by hand: a's candidates are 0.4, 0.45, 0.55, 0.6; c (t=0.58) misclassifies
    # x' = 0.6 (from 0.45, y=0), 0.4 and 0.45 (y=1): 3 of the 4 candidates, 3 of all 6
    assert res.candidates.tolist() == [False, True, True, True, True, False]
    assert res.value == pytest.approx(0.75)
    assert res.absolute == pytest.approx(0.5)
    assert res.summary()["num_candidates"] == 4
    # the attack given for another model is applied to the source
    again = transfer_rate(a, c, (X, Y), FGSM(c, eps=EPS))
    assert again.value == pytest.approx(0.75)


def test_metrics_transfer_matrix_diagonal_and_off_diagonal(threshold) -> None:
    ts = {"a": 0.5, "b": 0.35, "c": 0.58}
    models = {k: threshold(t) for k, t in ts.items()}
    res = transfer_matrix(models, (X, Y), FGSM(models["a"], eps=EPS))
    assert res.names == ("a", "b", "c")
    rates, absolute = res.rates, res.absolute
    for i, s in enumerate(ts):
        for j, t in enumerate(ts):
            rate, ab = expected(ts[s], ts[t])
            if math.isnan(rate):
                assert math.isnan(float(rates[i, j]))
            else:
                assert float(rates[i, j]) == pytest.approx(rate), (s, t)
            assert float(absolute[i, j]) == pytest.approx(ab), (s, t)
    # diagonal: the source misclassifies all its candidates by construction
    assert float(rates[0, 0]) == 1.0 and float(rates[2, 2]) == 1.0
    assert float(rates[0, 2]) == pytest.approx(0.75)
    assert res.pair("a", "c").value == pytest.approx(0.75)
    assert "rate[a->c]" in res.summary()
    assert "a" in res.table()
    with pytest.raises(ValueError, match="source"):
        res.pair("z", "a")


class Counting(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.examples = 0

    def forward(self, x: Tensor) -> Tensor:
        self.examples += int(x.shape[0])
        return self.inner(x)


def test_metrics_transfer_matrix_generates_each_source_once(threshold) -> None:
    models = {k: Counting(threshold(t)) for k, t in {"a": 0.5, "b": 0.35, "c": 0.58}.items()}
    transfer_matrix(models, (X, Y), BIM(models["a"], eps=EPS, steps=3))
    probe = Counting(threshold(0.5))
    BIM(probe, eps=EPS, steps=3).run(X, Y)
    attack_cost = probe.examples
    # per model: one clean pass, one attack run as a source, and one forward pass on each of
    # the two other sources' adversarial examples as a target
    n = len(Y)
    for m in models.values():
        assert m.examples == n + attack_cost + 2 * n, m.examples


def test_metrics_transfer_bad_input(threshold) -> None:
    two = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    three = nn.Sequential(nn.Flatten(), nn.Linear(1, 3))
    with pytest.raises(ValueError, match="same number of classes"):
        transfer_matrix({"two": two, "three": three}, (X, Y), FGSM(two, eps=EPS))
    with pytest.raises(ValueError, match="data is empty"):
        transfer_rate(two, two, (X[:0], Y[:0]), FGSM(two))
    with pytest.raises(ValueError, match="models is empty"):
        transfer_matrix({}, (X, Y), FGSM(two))
    with pytest.raises(ValueError, match="sources"):
        transfer_matrix({"two": two}, (X, Y), FGSM(two), sources=["nope"])


def test_metrics_transfer_matrix_iterll_runs(threshold) -> None:
    models = {"a": threshold(0.5), "b": threshold(0.4)}
    res = transfer_matrix(models, (X, Y), IterLL(models["a"], eps=EPS, steps=3))
    assert res.rates.shape == (2, 2) and res.absolute.shape == (2, 2)


def test_metrics_label_leak_count_by_hand(sine) -> None:
    """score = sin(10 pi x): at x0 = 0.175 it is negative (class 0) but increasing.

    True label 1: FGSM(true) steps down to 0.025 where the score is positive: correct.
    FGSM(predicted = 0) steps up to 0.325 where the score is negative: wrong. Leaked.
    """
    model = sine()
    x = torch.tensor([[0.175], [0.05], [0.175], [0.42], [0.85]])
    y = torch.tensor([1, 1, 0, 0, 1])
    res = label_leak_count(model, (x, y), eps=0.15)
    # closed form: for label l the loss gradient has the sign of -(2l - 1) * cos(omega x)
    omega, xs = 10 * math.pi, x[:, 0].double()
    pred = (torch.sin(omega * xs) > 0).long()

    def fgsm(label: Tensor) -> Tensor:
        step = -(2 * label - 1).double() * torch.sign(torch.cos(omega * xs))
        return (xs + 0.15 * step).clamp(0, 1)

    cls = lambda v: (torch.sin(omega * v) > 0).long()  # noqa: E731
    oracle = (cls(fgsm(y)) == y) & (cls(fgsm(pred)) != y)
    assert oracle.tolist() == [True, False, False, True, False]
    assert res.mask.tolist() == oracle.tolist()
    assert res.count == 2
    assert res.clean_correct.tolist() == [False, True, True, False, True]
    assert res.summary()["label_leak_count"] == 2
    # clean-correct examples cannot leak: both attacks use the same label
    assert not bool((res.mask & res.clean_correct).any())
    # any pair of attacks; the same attack with true labels on both sides never leaks
    pair = label_leak_count(
        model,
        (x, y),
        attack_true=BIM(model, eps=0.15, steps=1, rel_alpha=1.0),
        attack_pred=FGSM(model, eps=0.15),
    )
    assert pair.count == 2
    per_example = label_leak_count(model, (x, y), eps=torch.tensor([0.15, 0.15, 0.15, 0.0, 0.15]))
    assert per_example.count == 1
    with pytest.raises(ValueError, match="eps is required"):
        label_leak_count(model, (x, y))
