"""Metric results carry the spec of the attack that ran and round-trip through to_dict/from_dict."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor, nn

from advrobust.attacks import BIM, CWL2, FGSM, Attack, AttackSpec
from advrobust.metrics import (
    AccuracyRatioResult,
    AccuracyResult,
    AdversarialAccuracyResult,
    CommonSetScore,
    DeepSecAttackResult,
    DeepSecDefenceResult,
    DistortionResult,
    LabelLeakResult,
    RobustnessScoreResult,
    SanityReport,
    SuccessRateResult,
    TransferMatrixResult,
    TransferResult,
    accuracy,
    accuracy_ratio,
    adversarial_accuracy,
    common_set_score,
    deepsec_attack_metrics,
    deepsec_defence_metrics,
    label_leak_count,
    minimal_distortion,
    robustness_score,
    sanity_check,
    search_attack,
    success_rate,
    transfer_matrix,
    transfer_rate,
)

EPS = 0.1


@pytest.fixture(scope="module")
def data(digits) -> tuple[Tensor, Tensor]:
    _, _, x, y = digits
    return x[:24], y[:24]


def _same(a: object, b: object) -> bool:
    """Field-by-field equality with tensors compared by value, dtype and shape (NaN == NaN)."""
    if isinstance(a, Tensor):
        return (
            isinstance(b, Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(
                torch.equal(a.cpu(), b.cpu()) or torch.allclose(a.cpu(), b.cpu(), equal_nan=True)
            )
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=True))  # type: ignore[arg-type]
    if hasattr(a, "__dataclass_fields__") and not isinstance(a, AttackSpec):
        return type(a) is type(b) and all(
            _same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__
        )
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def _round_trip(res: object) -> object:
    cls = type(res)
    text = json.dumps(res.to_dict())  # type: ignore[attr-defined]
    back = cls.from_dict(json.loads(text))  # type: ignore[attr-defined]
    assert _same(res, back), cls.__name__
    assert json.dumps(back.to_dict()) == text
    return back


def test_metrics_results_every_result_round_trips_with_its_spec(digits_model, data) -> None:
    x, y = data
    m = digits_model
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    g = torch.Generator().manual_seed(0)
    fgsm = FGSM(m, eps=0.3)
    cases = {
        "accuracy": accuracy(m, (x, y)),
        "success_rate": success_rate(m, (x, y), fgsm, eps=EPS),
        "accuracy_ratio": accuracy_ratio(m, (x, y), fgsm, eps=EPS),
        "adversarial_accuracy": adversarial_accuracy(m, (x, y), fgsm, delta=EPS),
        "minimal_distortion": minimal_distortion(m, (x, y), BIM(m, steps=3), tol=1e-2),
        "robustness_score": robustness_score({"a": m, "b": other}, (x, y), FGSM(m), tol=1e-2),
        "transfer_rate": transfer_rate(m, other, (x, y), fgsm, eps=EPS),
        "transfer_matrix": transfer_matrix({"a": m, "b": other}, (x, y), fgsm, eps=EPS),
        "label_leak": label_leak_count(m, (x, y), eps=EPS),
        "deepsec_attack": deepsec_attack_metrics(m, (x, y), fgsm, eps=EPS),
        "deepsec_defence": deepsec_defence_metrics(m, other, (x, y)),
        "sanity": sanity_check(
            m, x, y, eps=EPS, checks=["randomness", "noise-beats-attack"], generator=g
        ),
    }
    expected_types = {
        "accuracy": AccuracyResult,
        "success_rate": SuccessRateResult,
        "accuracy_ratio": AccuracyRatioResult,
        "adversarial_accuracy": AdversarialAccuracyResult,
        "minimal_distortion": DistortionResult,
        "robustness_score": RobustnessScoreResult,
        "transfer_rate": TransferResult,
        "transfer_matrix": TransferMatrixResult,
        "label_leak": LabelLeakResult,
        "deepsec_attack": DeepSecAttackResult,
        "deepsec_defence": DeepSecDefenceResult,
        "sanity": SanityReport,
    }
    for key, res in cases.items():
        assert type(res) is expected_types[key]
        _round_trip(res)
    # the spec recorded is the attack as it ran: the metric's eps, not the attack's own 0.3
    for key in (
        "success_rate",
        "accuracy_ratio",
        "transfer_rate",
        "transfer_matrix",
        "deepsec_attack",
    ):
        spec = cases[key].attack  # type: ignore[attr-defined]
        assert isinstance(spec, AttackSpec) and spec.name == "FGSM" and spec.eps == EPS, key
    assert cases["adversarial_accuracy"].attack.eps == EPS  # type: ignore[attr-defined]
    leak = cases["label_leak"]
    assert leak.attack_true.eps == EPS and leak.attack_pred.eps == EPS  # type: ignore[attr-defined]
    # the eps search records the rewritten attack (step proportional to eps)
    dist = cases["minimal_distortion"]
    assert dist.attack == search_attack(BIM(m, steps=3)).spec()  # type: ignore[attr-defined]
    assert dist.attack.config["rel_alpha"] is not None  # type: ignore[attr-defined]
    rs = cases["robustness_score"]
    assert rs.attack.name == "FGSM"  # type: ignore[attr-defined]
    assert all(d.attack.name == "FGSM" for d in rs.distances.values())  # type: ignore[attr-defined]
    assert [s.name for s in cases["sanity"].attacks] == ["BIM", "FGSM"]  # type: ignore[attr-defined]
    # a spec rebuilds the attack that ran
    rebuilt = cases["success_rate"].attack.build(m)  # type: ignore[attr-defined]
    assert isinstance(rebuilt, FGSM) and rebuilt.eps == EPS


def test_metrics_results_minimal_norm_attack_used_directly(threshold) -> None:
    """A minimal-norm attack runs once, in its own norm, with no eps search."""
    model = threshold(0.5, scale=4.0)
    x = torch.tensor([[0.1], [0.3], [0.45], [0.8]])
    y = torch.tensor([0, 0, 0, 1])
    cw = CWL2(model, steps=100, initial_const=1.0)
    res = minimal_distortion(model, (x, y), cw)
    assert res.evaluations.tolist() == [1, 1, 1, 1]  # one run each, no bisection
    assert res.tol == 0.0 and res.norm == "l2"
    assert res.attack == cw.spec() and res.attack.kind == "minimal"
    assert res.distance.tolist() == pytest.approx([0.4, 0.2, 0.05, 0.3], rel=0.02)
    back = DistortionResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.attack == cw.spec()


def test_metrics_results_from_dict_refuses_bad_input() -> None:
    with pytest.raises(TypeError, match="data must be a mapping"):
        AccuracyResult.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown key"):
        AccuracyResult.from_dict({"correct": [True], "pred": [0], "y": [0], "colour": 1})
    with pytest.raises(ValueError, match="lacks field"):
        AccuracyResult.from_dict({"correct": [True]})
    with pytest.raises(TypeError, match="correct must be a list"):
        AccuracyResult.from_dict({"correct": 3, "pred": [0], "y": [0]})
    # a dict without dtype records (written before they existed) still loads
    old = AccuracyResult.from_dict({"correct": [True, False], "pred": [1, 2], "y": [1, 1]})
    assert old.value == 0.5 and old.correct.dtype == torch.bool


def test_metrics_eq4_unbroken_example_left_out_for_every_model() -> None:
    """An example of X unbroken for one model leaves every model's mean, not only its own."""
    ok = torch.ones(4, dtype=torch.bool)
    res = common_set_score(
        {"a": ok, "b": ok},
        {"a": torch.tensor([True, True, True, False]), "b": ok},
        {"a": torch.tensor([1.0, 2.0, 3.0, math.inf]), "b": torch.tensor([2.0, 4.0, 6.0, 8.0])},
    )
    assert isinstance(res, CommonSetScore)
    assert res.common.tolist() == [True] * 4
    assert res.used.tolist() == [True, True, True, False]
    # b's score averages over the same three examples as a's: (2 + 4 + 6) / 3, not 20 / 4
    assert res.scores == {"a": 2.0, "b": 4.0}
    assert res.num_unbroken == {"a": 1, "b": 0}
    assert res.summary()["num_used"] == 3
    back = CommonSetScore.from_dict(json.loads(json.dumps(res.to_dict(), allow_nan=True)))
    assert back.scores == res.scores


def test_metrics_eq4_robustness_score_with_an_unbroken_example(threshold) -> None:
    """Models a (t = 0.5) and c (t = 0.2): x = 0.95 is beyond hi for a, within it for c."""
    a, c = threshold(0.5), threshold(0.2)
    x = torch.tensor([[0.95], [0.6]])
    y = torch.tensor([1, 1])
    res = robustness_score({"a": a, "c": c}, (x, y), BIM(a, steps=4), hi=0.5, tol=1e-4)
    # X = {0.95, 0.6}; a needs 0.45 at 0.95 (found within hi = 0.5) and 0.1 at 0.6;
    # c needs 0.75 at 0.95 (beyond hi: unbroken) and 0.4 at 0.6
    assert res.common.tolist() == [True, True]
    assert res.num_unbroken == {"a": 0, "c": 1}
    assert res.num_used == 1
    # both models are averaged over the example broken for both (x = 0.6) only
    assert res.scores["a"] == pytest.approx(0.1, abs=1e-3)
    assert res.scores["c"] == pytest.approx(0.4, abs=1e-3)
    # the per-model DistortionResult keeps its own mean over its own broken examples
    assert res.distances["a"].mean == pytest.approx((0.45 + 0.1) / 2, abs=1e-3)
    assert res.summary()["score[a]"] == res.scores["a"]


class _ExactLinfMinimal(Attack):
    """A test minimal-norm attack (kind "minimal", Linf) for the mean-threshold model.

    It moves every coordinate by ``1.001 * |mean(x) - t|`` towards the threshold: Linf distance
    ``1.001 |mean - t|``, L2 distance ``sqrt(d)`` times that.
    """

    minimal_norm = True

    def __init__(self, model: nn.Module, t: float = 0.5, *, bounds=(0.0, 1.0)) -> None:  # type: ignore[no-untyped-def]
        super().__init__(model, bounds=bounds)
        self.t = t
        self.norm = "linf"

    def _perturb(self, x, y, eps, target, guide, generator, clean):  # type: ignore[no-untyped-def]
        gap = x.flatten(1).mean(1) - self.t
        step = (-gap * 1.001).view(-1, *([1] * (x.dim() - 1)))
        return x + step


def test_metrics_results_minimal_norm_distance_in_the_attacks_own_norm(threshold) -> None:
    model = threshold(0.5)
    x = torch.tensor([[0.1, 0.1, 0.1, 0.1], [0.3, 0.3, 0.3, 0.3], [0.8, 0.8, 0.8, 0.8]])
    y = torch.tensor([0, 0, 1])
    atk = _ExactLinfMinimal(model)
    assert atk.spec().kind == "minimal" and atk.spec().norm == "linf"
    res = minimal_distortion(model, (x, y), atk)
    assert res.norm == "linf" and res.evaluations.tolist() == [1, 1, 1]
    # Linf distances (0.1% above the boundary, or on it once the template's boundary refinement
    # bisects back to it), not the L2 norms (twice as large here)
    exact = torch.tensor([0.4, 0.2, 0.3])
    assert bool((res.distance >= exact - 1e-6).all())
    assert bool((res.distance <= exact * 1.001 + 1e-6).all())
    assert res.attack == atk.spec()
    # beyond hi: unbroken (no eps search)
    capped = minimal_distortion(model, (x, y), atk, hi=0.25)
    assert capped.found.tolist() == [False, True, False]
    assert capped.num_unbroken == 2
    # adversarial_accuracy thresholds a minimal-norm attack's perturbations at delta
    adv = adversarial_accuracy(model, (x, y), atk, delta=0.25)
    assert adv.success.tolist() == [False, True, False] and adv.attack == atk.spec()
