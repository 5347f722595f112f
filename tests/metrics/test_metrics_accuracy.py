"""accuracy, success_rate, accuracy_ratio, adversarial_accuracy and the shared loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advrobust.attacks import CWL2, FGSM
from advrobust.metrics import (
    AccuracyResult,
    accuracy,
    accuracy_ratio,
    adversarial_accuracy,
    success_rate,
)

X = torch.tensor([[0.1], [0.45], [0.55], [0.9], [0.3]])
Y = torch.tensor([0, 0, 1, 1, 1])  # threshold 0.5 misclassifies the last one


def test_metrics_accuracy_per_example_and_modes(threshold) -> None:
    model = threshold(0.5)
    res = accuracy(model, (X, Y))
    assert isinstance(res, AccuracyResult)
    assert res.correct.tolist() == [True, True, True, True, False]
    assert res.pred.tolist() == [0, 0, 1, 1, 0]
    assert res.value == pytest.approx(0.8)
    assert res.summary() == {"accuracy": pytest.approx(0.8), "num_examples": 5}
    assert res.to_dict()["correct"] == [True, True, True, True, False]
    # evaluated in eval mode, every flag restored afterwards
    net = nn.Sequential(nn.Flatten(), nn.Linear(1, 2), nn.Dropout(0.5), nn.Linear(2, 2))
    net.train()
    net[2].eval()
    a, b = accuracy(net, (X, Y)), accuracy(net, (X, Y))
    assert torch.equal(a.pred, b.pred)
    assert net.training and net[1].training and not net[2].training


def test_metrics_loop_accepts_iterables_and_batches(threshold) -> None:
    model = threshold(0.5)
    batches = [(X[:2], Y[:2]), (X[2:], Y[2:])]
    assert accuracy(model, batches).correct.tolist() == accuracy(model, (X, Y)).correct.tolist()
    assert accuracy(model, (X, Y), batch_size=2).value == pytest.approx(0.8)
    gen = ((X[i : i + 1], Y[i : i + 1]) for i in range(5))
    assert accuracy(model, gen, progress=True).value == pytest.approx(0.8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=2)
    assert accuracy(model, loader).value == pytest.approx(0.8)


def test_metrics_loop_bad_input(threshold) -> None:
    model = threshold(0.5)
    with pytest.raises(ValueError, match="data is empty"):
        accuracy(model, (X[:0], Y[:0]))
    with pytest.raises(ValueError, match="data is empty"):
        accuracy(model, [])
    with pytest.raises(TypeError, match="data"):
        accuracy(model, X)
    with pytest.raises(TypeError, match="data"):
        accuracy(model, 3)
    with pytest.raises(ValueError, match="shape"):
        accuracy(model, (X, Y[:3]))
    with pytest.raises(TypeError, match="floating-point"):
        accuracy(model, (X.long(), Y))
    with pytest.raises(TypeError, match="model"):
        accuracy("model", (X, Y))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        accuracy(model, (X, Y), batch_size=0)
    with pytest.raises(ValueError, match="eps has 3 values but data has"):
        success_rate(model, (X, Y), FGSM(model), eps=torch.full((3,), 0.1))
    with pytest.raises(ValueError, match="NaN"):
        accuracy(model, (torch.full_like(X, float("nan")), Y))


def test_metrics_success_rate_and_accuracy_ratio(threshold) -> None:
    model = threshold(0.5)
    atk = FGSM(model, eps=0.1)
    res = success_rate(model, (X, Y), atk)
    # FGSM with true labels moves x by 0.1 away from its class: 0.45->0.55, 0.55->0.45 succeed
    assert res.success.tolist()[:4] == [False, True, True, False]
    assert res.value == pytest.approx(2 / 4)  # only the 4 clean-correct examples count
    assert success_rate(model, (X, Y), atk, only_correct=False).value == pytest.approx(3 / 5)
    per = success_rate(model, (X, Y), atk, eps=torch.tensor([0.5, 0.01, 0.01, 0.5, 0.0]))
    assert per.success.tolist()[:4] == [True, False, False, True]
    ratio = accuracy_ratio(model, (X, Y), atk)
    assert ratio.clean_accuracy == pytest.approx(0.8)
    # adversarial: 0.2->0, 0.55->1(wrong), 0.45->0(wrong), 0.8->1, 0.2->0 (y=1, wrong)
    assert ratio.adversarial_accuracy == pytest.approx(2 / 5)
    assert ratio.value == pytest.approx((2 / 5) / 0.8)
    assert ratio.summary()["accuracy_ratio"] == pytest.approx(0.5)


def test_metrics_adversarial_accuracy_eq5_by_hand(threshold) -> None:
    model = threshold(0.5)
    res = adversarial_accuracy(model, (X, Y), FGSM(model), delta=0.1)
    # 1 wrong prediction + 2 successful attacks (0.45, 0.55) out of 5
    assert res.value == pytest.approx(1 - (1 + 2) / 5)
    assert res.success.tolist() == [False, True, True, False, False]
    assert res.summary()["wrong_predictions"] == 1 and res.summary()["successful_attacks"] == 2
    # the wrong prediction is never counted as a successful attack, whatever delta
    big = adversarial_accuracy(model, (X, Y), FGSM(model), delta=0.6)
    assert big.success.tolist() == [True, True, True, True, False]
    assert big.value == 0.0


def test_metrics_adversarial_accuracy_inside_inference_mode(threshold) -> None:
    """The model's predictions (inference tensors there) serve as the attack's labels."""
    model = threshold(0.5)
    expected = adversarial_accuracy(model, (X, Y), FGSM(model), delta=0.1)
    with torch.inference_mode():
        res = adversarial_accuracy(model, (X, Y), FGSM(model), delta=0.1)
    assert res.success.tolist() == expected.success.tolist() == [False, True, True, False, False]


def test_metrics_adversarial_accuracy_uses_model_prediction_not_label(threshold) -> None:
    """Success means M(x') != M(x): with wrong labels the attack still moves off M(x)."""
    model = threshold(0.5)
    y_wrong = 1 - Y  # every label wrong except the last example's
    res = adversarial_accuracy(model, (X, y_wrong), FGSM(model), delta=0.1)
    assert res.correct.tolist() == [False, False, False, False, True]
    # x = 0.3 predicted 0 (= label): the attack pushes it up to 0.4, still 0: not a success
    assert res.success.tolist() == [False] * 5
    assert res.value == pytest.approx(1 / 5)


def test_metrics_adversarial_accuracy_delta_threshold_with_cw(threshold) -> None:
    model = threshold(0.5, scale=4.0)
    x = torch.tensor([[0.1], [0.45], [0.58], [0.9]])
    y = torch.tensor([0, 0, 1, 1])
    cw = CWL2(model, steps=200, binary_search_steps=6, initial_const=1.0)
    dist = cw.run(x, y).l2  # CW's own distances: about |x - 0.5|
    assert bool((dist[1:3] < 0.1).all()) and bool((dist[[0, 3]] > 0.35).all())
    res = adversarial_accuracy(model, (x, y), cw, delta=0.2)
    assert res.success.tolist() == [False, True, True, False]
    assert res.value == pytest.approx(0.5)
    tight = adversarial_accuracy(model, (x, y), cw, delta=float(dist[1:3].min()) * 0.5)
    assert tight.value == pytest.approx(1.0)


def test_metrics_adversarial_accuracy_bad_input(threshold) -> None:
    model = threshold(0.5)
    with pytest.raises(ValueError, match="delta"):
        adversarial_accuracy(model, (X, Y), FGSM(model), delta=0.0)
    with pytest.raises(ValueError, match="norm"):
        adversarial_accuracy(model, (X, Y), FGSM(model), delta=0.1, norm="l1")


def test_metrics_results_are_frozen_and_json_friendly(threshold) -> None:
    import dataclasses
    import json

    model = threshold(0.5)
    res = adversarial_accuracy(model, (X, Y), FGSM(model), delta=0.1)
    text = json.dumps(res.to_dict())
    assert '"adversarial_accuracy"' in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.delta = 0.2  # type: ignore[misc]


def test_metrics_loop_accepts_advrobust_tensor_loader(threshold) -> None:
    from advrobust.data import TensorLoader

    model = threshold(0.5)
    loader = TensorLoader(X, Y, batch_size=2)
    res = success_rate(model, loader, FGSM(model, eps=0.1), progress=True)
    assert res.success.tolist()[:4] == [False, True, True, False]
