"""minimal_distortion and robustness_score against closed-form answers."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from advrobust.attacks import BIM, CWL2, FGSM, PGD
from advrobust.metrics import DistortionResult, minimal_distortion, robustness_score, search_attack

WIDE = (-100.0, 100.0)  # bounds too wide to bind
TOL = 1e-4


def affine(d: int, k: int, n: int, seed: int) -> tuple[nn.Module, Tensor, Tensor, Tensor, Tensor]:
    """Affine classifier z = Wx + b with the exact minimal Linf and L2 distances per example."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64) * 0.1)
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(n, 1, d, generator=g, dtype=torch.float64) * 0.2 + 0.4
    with torch.no_grad():
        z = model(x)
    y = z.argmax(1)
    w = lin.weight.detach()
    wd = w[y][:, None, :] - w[None]  # (n, k, d): w_y - w_j
    margin = z.gather(1, y[:, None]) - z  # z_y - z_j
    own = torch.nn.functional.one_hot(y, k).bool()
    linf = (margin / wd.abs().sum(-1)).masked_fill(own, math.inf).amin(1)
    l2 = (margin / wd.norm(dim=-1)).masked_fill(own, math.inf).amin(1)
    return model, x, y, linf, l2


@pytest.mark.parametrize(
    "make, norm",
    [
        (lambda m: BIM(m, steps=5, bounds=WIDE), "linf"),
        (lambda m: PGD(m, steps=10, bounds=WIDE), "linf"),
        (lambda m: FGSM(m, bounds=WIDE), "linf"),
        (lambda m: FGSM(m, norm="l2", bounds=WIDE), "l2"),
        (lambda m: PGD(m, norm="l2", steps=5, random_start=False, bounds=WIDE), "l2"),
    ],
    ids=["bim-linf", "pgd-linf", "fgsm-linf", "fgsm-l2", "pgd-l2"],
)
@pytest.mark.parametrize("method", ["bisection", "secant"])
def test_metrics_minimal_distortion_matches_exact_binary_affine(
    make, norm, method, generator
) -> None:
    model, x, y, linf, l2 = affine(d=6, k=2, n=24, seed=1)
    exact = linf if norm == "linf" else l2
    res = minimal_distortion(
        model, (x, y), make(model), hi=2.0, tol=TOL, method=method, generator=generator
    )
    assert isinstance(res, DistortionResult)
    assert res.norm == norm
    assert bool(res.found.all()) and res.num_unbroken == 0
    # the bracket [lower, upper] contains the exact distance and is at most TOL wide
    assert bool((res.distance - res.lower <= TOL + 1e-12).all())
    assert bool((res.distance >= exact - 1e-9).all()), (res.distance - exact).min()
    assert bool((res.lower <= exact + 1e-9).all())
    assert float((res.distance - exact).abs().max()) <= TOL + 1e-9
    assert res.mean == pytest.approx(float(res.distance.mean()))


def test_metrics_minimal_distortion_multiclass_bim_within_two_percent(generator) -> None:
    model, x, y, linf, _ = affine(d=6, k=4, n=24, seed=2)
    res = minimal_distortion(model, (x, y), BIM(model, steps=50, bounds=WIDE), hi=2.0, tol=TOL)
    assert bool(res.found.all())
    assert bool((res.distance >= linf - 1e-9).all())  # never below the exact distance
    assert bool((res.distance <= linf * 1.02 + TOL).all())


def test_metrics_minimal_distortion_cw_uses_its_own_l2(generator) -> None:
    model, x, y, _, l2 = affine(d=6, k=2, n=12, seed=3)
    atk = CWL2(model, steps=100, binary_search_steps=4, bounds=WIDE)
    res = minimal_distortion(model, (x, y), atk)
    direct = atk.run(x, y)
    assert bool(res.found.eq(direct.success).all())
    assert torch.allclose(res.distance[res.found], direct.l2[direct.success].to(res.distance.dtype))
    assert bool((res.distance[res.found] >= l2[res.found] * (1 - 1e-6)).all())
    assert int(res.evaluations.max()) == 1
    cap = float(direct.l2.max()) * 0.9  # CW distances above hi count as unbroken
    capped = minimal_distortion(model, (x, y), atk, hi=cap)
    assert bool((capped.found == (direct.success & (direct.l2 <= cap))).all())
    assert 0 < capped.num_unbroken == int((~capped.found).sum())


def test_metrics_minimal_distortion_active_set_same_answer_fewer_runs(generator) -> None:
    model, x, y, linf, _ = affine(d=6, k=2, n=16, seed=4)
    atk = BIM(model, steps=3, bounds=WIDE)
    kw = {"hi": 2.0, "tol": 1e-3, "method": "secant"}
    with_set = minimal_distortion(model, (x, y), atk, **kw)
    without = minimal_distortion(model, (x, y), atk, active_set=False, **kw)
    assert torch.equal(with_set.distance, without.distance)
    assert torch.equal(with_set.lower, without.lower)
    # the secant search converges at different rounds per example: the active set skips them
    assert int(with_set.evaluations.sum()) < int(without.evaluations.sum())
    assert bool((with_set.distance - with_set.lower <= 1e-3 + 1e-12).all())
    assert bool((with_set.distance >= linf - 1e-9).all())
    # and needs far fewer rounds than bisection from [0, 2] (11 rounds + the probe at hi)
    bis = minimal_distortion(model, (x, y), atk, hi=2.0, tol=1e-3)
    assert int(bis.evaluations.max()) == 12
    assert int(with_set.evaluations.sum()) * 2 < int(bis.evaluations.sum())


def test_metrics_minimal_distortion_relative_tolerance() -> None:
    model, x, y, linf, _ = affine(d=6, k=2, n=16, seed=6)
    res = minimal_distortion(model, (x, y), FGSM(model, bounds=WIDE), hi=2.0, tol=1e-6, rtol=0.01)
    width = res.distance - res.lower
    assert bool((width <= res.distance * 0.01 + 1e-12).all())
    assert bool((res.distance >= linf - 1e-9).all() & (res.lower <= linf + 1e-9).all())


def test_metrics_minimal_distortion_unbroken_and_misclassified_reported(threshold) -> None:
    model = threshold(0.5)
    x = torch.tensor([[0.1], [0.45], [0.9], [0.3]])
    y = torch.tensor([0, 0, 1, 1])  # last one is misclassified
    res = minimal_distortion(model, (x, y), BIM(model, steps=4), hi=0.2, tol=1e-3)
    # 0.45 is 0.05 from the boundary; 0.1 and 0.9 are 0.4 away: unbroken within hi = 0.2
    assert res.found.tolist() == [False, True, False, False]
    assert res.correct.tolist() == [True, True, True, False]
    assert math.isinf(float(res.distance[0])) and math.isinf(float(res.distance[2]))
    assert math.isnan(float(res.distance[3]))
    assert res.num_unbroken == 2
    assert res.unbroken.tolist() == [True, False, True, False]
    assert res.mean == pytest.approx(0.05, abs=1e-3)  # unbroken never averaged in
    s = res.summary()
    assert s["num_unbroken"] == 2 and s["num_misclassified"] == 1 and s["num_found"] == 1
    d = res.to_dict()
    assert d["summary"]["num_unbroken"] == 2 and len(d["distance"]) == 4


def test_metrics_minimal_distortion_bracket_already_converged(threshold) -> None:
    model = threshold(0.5)
    x, y = torch.tensor([[0.45], [0.1]]), torch.tensor([0, 0])
    res = minimal_distortion(model, (x, y), FGSM(model), hi=0.06, tol=0.1)
    assert res.found.tolist() == [True, False]
    assert res.distance[0] == pytest.approx(0.06) and int(res.evaluations.max()) == 1


def test_metrics_minimal_distortion_iterable_data_and_batching_agree() -> None:
    model, x, y, _, _ = affine(d=5, k=3, n=20, seed=5)
    atk = BIM(model, steps=4, bounds=WIDE)
    whole = minimal_distortion(model, (x, y), atk, hi=2.0, tol=1e-3, batch_size=64)
    parts = [(x[i : i + 6], y[i : i + 6]) for i in range(0, 20, 6)]
    chunked = minimal_distortion(model, parts, atk, hi=2.0, tol=1e-3)
    assert torch.equal(whole.distance, chunked.distance)


def test_metrics_search_attack_scales_step_with_eps(threshold) -> None:
    model = threshold(0.5)
    bim = search_attack(BIM(model, steps=8))
    assert bim.config()["rel_alpha"] == pytest.approx(1 / 8)
    assert search_attack(BIM(model)).config()["steps"] == 10
    pgd = search_attack(PGD(model, steps=10))
    assert pgd.config()["rel_alpha"] == pytest.approx(0.25)
    keep = BIM(model, steps=4, rel_alpha=0.5)
    assert search_attack(keep) is keep
    fgsm = FGSM(model)
    assert search_attack(fgsm) is fgsm


def test_metrics_minimal_distortion_bad_input(threshold) -> None:
    model = threshold(0.5)
    x = torch.tensor([[0.1], [0.45]])
    y = torch.tensor([0, 0])
    atk = FGSM(model)
    with pytest.raises(ValueError, match="tol"):
        minimal_distortion(model, (x, y), atk, tol=0.0)
    with pytest.raises(ValueError, match="hi"):
        minimal_distortion(model, (x, y), atk, lo=0.3, hi=0.2)
    with pytest.raises(ValueError, match="lo"):
        minimal_distortion(model, (x, y), atk, lo=-0.1)
    with pytest.raises(ValueError, match=r"lo=0\.1 does not bracket"):
        minimal_distortion(model, (x, y), atk, lo=0.1, hi=0.5)
    with pytest.raises(ValueError, match="data is empty"):
        minimal_distortion(model, (x[:0], y[:0]), atk)
    with pytest.raises(ValueError, match="data is empty"):
        minimal_distortion(model, [], atk)
    with pytest.raises(ValueError, match="method"):
        minimal_distortion(model, (x, y), atk, method="newton")
    with pytest.raises(TypeError, match="attack"):
        minimal_distortion(model, (x, y), "fgsm")  # type: ignore[arg-type]


def test_metrics_robustness_score_hand_computation(threshold) -> None:
    a, c = threshold(0.5), threshold(0.65)
    x = torch.tensor([[0.1], [0.2], [0.3], [0.55], [0.9]])
    y = torch.tensor([0, 0, 0, 1, 1])  # c misclassifies 0.55
    res = robustness_score({"a": a, "c": c}, (x, y), BIM(a, steps=4), hi=1.0, tol=1e-4)
    assert res.common.tolist() == [True, True, True, False, True]
    # eq. 4 by hand: mean |x - t| over X = {0.1, 0.2, 0.3, 0.9}
    assert res.scores["a"] == pytest.approx((0.4 + 0.3 + 0.2 + 0.4) / 4, abs=1e-4)
    assert res.scores["c"] == pytest.approx((0.55 + 0.45 + 0.35 + 0.25) / 4, abs=1e-4)
    assert res.num_unbroken == {"a": 0, "c": 0}
    assert math.isnan(float(res.distances["a"].distance[3]))
    assert res.summary()["num_common"] == 4
    seq = robustness_score([a, c], (x, y), BIM(a, steps=4), hi=1.0, tol=1e-4)
    assert seq.names == ("model_0", "model_1")
    assert seq.scores["model_1"] == pytest.approx(res.scores["c"])
    with pytest.raises(ValueError, match="models is empty"):
        robustness_score([], (x, y), BIM(a))


@pytest.mark.parametrize("method", ["bisection", "secant"])
def test_metrics_minimal_distortion_bracket_invariant_on_digits(
    digits_model, digits, method
) -> None:
    """On a trained MLP: the attack fails at `lower` and succeeds at `distance`, per example."""
    _, _, x, y = digits
    x, y = x[:32], y[:32]
    atk = search_attack(BIM(digits_model, steps=5))
    res = minimal_distortion(digits_model, (x, y), atk, tol=2e-3, method=method)
    assert res.num_unbroken == 0 and bool(res.found[res.correct].all())
    idx = res.found.nonzero().squeeze(1)
    at_upper = atk.run(x[idx], y[idx], eps=res.distance[idx].float())
    at_lower = atk.run(x[idx], y[idx], eps=res.lower[idx].float())
    assert bool(at_upper.success.all())
    assert not bool(at_lower.success.any())
    assert bool((res.distance[idx] - res.lower[idx] <= 2e-3 + 1e-7).all())


@pytest.mark.slow
def test_metrics_minimal_distortion_secant_agrees_with_bisection_cnn(digits, train_digits) -> None:
    x_tr, y_tr, x, y = digits
    cnn = train_digits(x_tr, y_tr, cnn=True, epochs=10)
    x, y = x[:200], y[:200]
    atk = BIM(cnn, steps=10)
    bis = minimal_distortion(cnn, (x, y), atk, tol=1e-3)
    sec = minimal_distortion(cnn, (x, y), atk, tol=1e-3, method="secant")
    assert torch.equal(bis.found, sec.found)
    # BIM is close to monotone in eps on this model: both searches land within a few tolerances
    diff = (bis.distance - sec.distance)[bis.found].abs()
    assert float(diff.median()) <= 1e-3
    assert int(sec.evaluations.sum()) < int(bis.evaluations.sum())
    score = robustness_score({"cnn": cnn}, (x, y), atk, tol=1e-3)
    assert score.scores["cnn"] == pytest.approx(bis.mean, rel=1e-6)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    d=st.integers(1, 8),
    norm=st.sampled_from(["linf", "l2"]),
    method=st.sampled_from(["bisection", "secant"]),
)
def test_metrics_minimal_distortion_property_binary_affine(seed, d, norm, method) -> None:
    """Any binary affine model: the bracket holds the exact distance and is <= tol wide."""
    model, x, y, linf, l2 = affine(d=d, k=2, n=8, seed=seed)
    exact = linf if norm == "linf" else l2
    atk = FGSM(model, norm=norm, bounds=WIDE)
    hi = float(exact.max()) * 2 + 0.1
    res = minimal_distortion(model, (x, y), atk, hi=hi, tol=1e-3, method=method)
    assert bool(res.found.all())
    assert bool((res.lower <= exact + 1e-9).all() & (res.distance >= exact - 1e-9).all())
    assert bool((res.distance - res.lower <= 1e-3 + 1e-12).all())


def test_metrics_robustness_score_l2_with_cw(threshold) -> None:
    a, c = threshold(0.5, scale=4.0), threshold(0.65, scale=4.0)
    x = torch.tensor([[0.1], [0.2], [0.3], [0.55], [0.9]])
    y = torch.tensor([0, 0, 0, 1, 1])
    res = robustness_score({"a": a, "c": c}, (x, y), CWL2(a, steps=300, initial_const=1.0))
    assert res.num_unbroken == {"a": 0, "c": 0}
    assert res.scores["a"] == pytest.approx((0.4 + 0.3 + 0.2 + 0.4) / 4, rel=0.02)
    assert res.scores["c"] == pytest.approx((0.55 + 0.45 + 0.35 + 0.25) / 4, rel=0.02)
    # CW runs only on the commonly-correct set X (x = 0.55 is outside it)
    assert res.common.tolist() == [True, True, True, False, True]
    for name in ("a", "c"):
        assert res.distances[name].evaluations.tolist() == [1, 1, 1, 0, 1]
        assert math.isnan(float(res.distances[name].distance[3]))


def test_metrics_distortion_median_of_even_count_averages_the_middle_pair() -> None:
    """torch.median returns the lower middle value; the median of 1, 2, 3, 4 is 2.5."""
    found = torch.tensor([True, True, True, True, False])
    res = DistortionResult(
        distance=torch.tensor([4.0, 1.0, 3.0, 2.0, math.inf]),
        lower=torch.zeros(5),
        found=found,
        correct=torch.ones(5, dtype=torch.bool),
        evaluations=torch.ones(5, dtype=torch.long),
        norm="l2",
        tol=0.0,
    )
    assert res.median == 2.5
    assert res.summary()["median_distance"] == 2.5
    assert (
        DistortionResult(
            res.distance[1:4], res.lower[:3], found[:3], found[:3], res.evaluations[:3], "l2", 0.0
        ).median
        == 2.0
    )
