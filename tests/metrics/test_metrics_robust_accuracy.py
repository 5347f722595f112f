"""robust_accuracy: ensemble bookkeeping, closed-form oracles, passes, loaders, seeds, specs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from advrobust.attacks import BIM, CWL2, FGSM, PGD, StepLL, list_attacks
from advrobust.metrics import (
    ATTACK_SUITES,
    RobustAccuracyResult,
    robust_accuracy,
)
from advrobust.metrics._robust import build_suite

WIDE = (-100.0, 100.0)  # bounds too wide to bind


def affine_binary(d: int, n: int, seed: int) -> tuple[nn.Module, Tensor, Tensor, Tensor, Tensor]:
    """z = (w.x + b) * (-1, 1): exact minimal Linf distance |w.x + b| / ||w||_1, L2 over ||w||_2."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(1, d, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(1, generator=g, dtype=torch.float64) * 0.1)

    class TwoClass(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = lin

        def forward(self, x: Tensor) -> Tensor:
            s = self.lin(x.flatten(1))
            return torch.cat([-s, s], dim=1)

    model = TwoClass()
    x = torch.rand(n, 1, d, generator=g, dtype=torch.float64) * 0.2 + 0.4
    with torch.no_grad():
        s = lin(x.flatten(1)).squeeze(1)
    y = (s > 0).long()
    w = lin.weight.detach().squeeze(0)
    linf = s.abs() / w.abs().sum()
    l2 = s.abs() / w.norm()
    return model, x, y, linf, l2


@pytest.fixture(scope="module")
def batch(digits) -> tuple[Tensor, Tensor]:
    _, _, x, y = digits
    return x[:120], y[:120]


def test_metrics_robust_accuracy_fgsm_is_exact_on_affine_binary() -> None:
    """On a two-class affine model FGSM-Linf succeeds exactly when eps exceeds the distance."""
    model, x, y, linf, _ = affine_binary(d=12, n=64, seed=0)
    eps = float(linf.median())
    far = (linf - eps).abs() > 1e-6  # keep away from float ties at the boundary
    res = robust_accuracy(model, (x[far], y[far]), eps, suite=[FGSM(model, bounds=WIDE)])
    assert res.robust.tolist() == (linf[far] > eps).tolist()
    assert res.clean_accuracy == 1.0
    assert res.value == pytest.approx(float((linf[far] > eps).double().mean()))


def test_metrics_robust_accuracy_minimal_norm_attack_counts_only_within_eps() -> None:
    """CW-L2 (kind "minimal") breaks an example only when its distance is within eps."""
    model, x, y, _, l2 = affine_binary(d=6, n=24, seed=1)
    cw = CWL2(model, steps=200, initial_const=1.0, bounds=WIDE)
    eps = float(l2.median())
    res = robust_accuracy(model, (x, y), eps, norm="l2", suite=[cw])
    assert res.attacks[0].spec.kind == "minimal"
    # CW lands within a few percent above the exact distance: far examples are decided
    clear_below = l2 < eps / 1.1
    clear_above = l2 > eps
    assert bool((~res.robust[clear_below]).all())
    assert bool(res.robust[clear_above].all())
    dist = (res.x_adv - x).flatten(1).norm(dim=1)
    assert bool((dist[~res.robust] <= eps * (1 + 1e-5) + 1e-6).all())


def _deterministic_members(model: nn.Module, eps: float) -> list[object]:
    return [
        StepLL(model, eps),
        FGSM(model, eps),
        BIM(model, eps, steps=10, rel_alpha=0.25),
        PGD(model, eps, steps=20, rel_alpha=0.1, loss="margin", random_start=False),
    ]


def test_metrics_robust_accuracy_ensemble_is_per_example_worst_case(digits_model, batch) -> None:
    """The ensemble's robust set is the intersection of its members' (deterministic attacks)."""
    x, y = batch
    eps = 0.08
    members = _deterministic_members(digits_model, eps)
    ens = robust_accuracy(digits_model, (x, y), eps, suite=members, batch_size=50)
    alone = [robust_accuracy(digits_model, (x, y), eps, suite=[m], batch_size=50) for m in members]
    expected = ens.clean_correct.clone()
    for r in alone:
        expected &= r.robust
        assert ens.value <= r.value  # never above any single member
    assert ens.robust.tolist() == expected.tolist()
    # something for the test to bite on: more than one member breaks examples
    assert sum(a.broken > 0 for a in ens.attacks) >= 3
    # each example is broken by the first member that breaks it alone
    first = torch.full_like(ens.broken_by, -1)
    for i in reversed(range(len(alone))):
        first = torch.where(ens.clean_correct & ~alone[i].robust, i, first)
    assert ens.broken_by.tolist() == first.tolist()


def test_metrics_robust_accuracy_result_evidence(digits_model, batch) -> None:
    x, y = batch
    y = y.clone()
    y[0] = (y[0] + 1) % 10  # a wrong label: misclassified when clean, never robust
    eps = 0.08
    res = robust_accuracy(
        digits_model, (x, y), eps, suite=_deterministic_members(digits_model, eps)
    )
    assert isinstance(res, RobustAccuracyResult)
    assert not bool(res.clean_correct[0]) and not bool(res.robust[0])
    assert int(res.broken_by[0]) == -1
    broken = res.clean_correct & ~res.robust
    with torch.no_grad():
        pred = digits_model(res.x_adv).argmax(1)
    assert bool((pred[broken] != y[broken]).all())  # every broken example is misclassified
    assert bool((pred[res.robust] == y[res.robust]).all())
    delta = (res.x_adv - x).flatten(1).abs().amax(1)
    assert bool((delta <= eps + 1e-6).all())
    assert torch.equal(res.x_adv[~broken], x[~broken])  # no adversarial found: the clean input
    assert bool((res.broken_by[broken] >= 0).all())
    assert int(broken.sum()) == sum(a.broken for a in res.attacks)
    # each attack only saw the examples still robust when its turn came
    remaining = int(res.clean_correct.sum())
    for a in res.attacks:
        assert a.attacked == remaining
        remaining -= a.broken
    assert res.value == pytest.approx(float(res.robust.double().mean()))
    assert res.value <= res.clean_accuracy
    s = res.summary()
    assert s["robust_accuracy"] == res.value and s["suite"] == "custom"


def test_metrics_robust_accuracy_counts_passes_with_hooks(digits_model, batch) -> None:
    """Forward passes match a counting wrapper; FGSM spends one backward per attacked example."""

    class Counting(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self.examples = 0

        def forward(self, x: Tensor) -> Tensor:
            self.examples += int(x.shape[0])
            out: Tensor = self.inner(x)
            return out

    x, y = batch
    model = Counting(digits_model)
    res = robust_accuracy(model, (x, y), 0.08, suite=[FGSM(model, 0.08)], batch_size=40)
    assert res.forwards == model.examples
    assert res.backwards == res.attacks[0].attacked
    assert res.attacks[0].backwards == res.attacks[0].attacked
    assert res.passes == res.forwards + res.backwards
    assert res.passes_per_example == pytest.approx(res.passes / len(y))
    assert not model._forward_hooks  # the counting hooks are gone


def test_metrics_robust_accuracy_dataloader_equals_tensors_and_seed_repeats(
    digits_model, batch
) -> None:
    x, y = batch
    suite = [PGD(digits_model, 0.06, steps=5, random_start=True)]

    def run(data: object, seed: int) -> RobustAccuracyResult:
        return robust_accuracy(
            digits_model,
            data,
            0.06,
            suite=suite,
            batch_size=32,
            generator=torch.Generator().manual_seed(seed),
        )

    a = run((x, y), 0)
    b = run(DataLoader(TensorDataset(x, y), batch_size=32), 0)
    c = run((x, y), 0)
    assert torch.equal(a.robust, b.robust) and torch.equal(a.x_adv, b.x_adv)
    assert torch.equal(a.robust, c.robust) and torch.equal(a.x_adv, c.x_adv)
    assert a.forwards == b.forwards and a.backwards == b.backwards
    # the generator is really used: another seed moves the random starts
    assert not torch.equal(run((x, y), 1).x_adv, a.x_adv)


def test_metrics_robust_accuracy_spec_round_trip(digits_model, batch) -> None:
    x, y = batch
    pgd = PGD(digits_model, eps=0.3, steps=3)  # rebuilt with the evaluation's eps
    res = robust_accuracy(digits_model, (x[:20], y[:20]), 0.05, suite=[pgd, FGSM(digits_model)])
    assert [s.eps for s in res.specs] == [0.05, 0.05]
    assert res.specs[0].name == "PGD" and res.specs[0].config["steps"] == 3
    back = RobustAccuracyResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.specs == res.specs
    assert back.attacks == res.attacks
    assert torch.equal(back.robust, res.robust) and torch.equal(back.x_adv, res.x_adv)
    assert back.x_adv.dtype == res.x_adv.dtype and back.broken_by.dtype == torch.long
    assert back.summary() == res.summary()
    # a spec in the suite is built on the model
    again = robust_accuracy(digits_model, (x[:20], y[:20]), 0.05, suite=list(res.specs))
    assert torch.equal(again.robust, res.robust)


def test_metrics_robust_accuracy_bad_suites(digits_model, batch) -> None:
    x, y = batch
    data = (x[:8], y[:8])
    with pytest.raises(ValueError, match="suite must be one of"):
        robust_accuracy(digits_model, data, 0.1, suite="strong")
    with pytest.raises(ValueError, match="suite is empty"):
        robust_accuracy(digits_model, data, 0.1, suite=[])
    with pytest.raises(TypeError, match=r"suite\[1\] must be an advrobust.attacks.Attack"):
        robust_accuracy(digits_model, data, 0.1, suite=[FGSM(digits_model), "PGD"])
    with pytest.raises(ValueError, match=r"suite\[0\] \(FGSM\) measures perturbations in 'l2'"):
        robust_accuracy(digits_model, data, 0.1, suite=[FGSM(digits_model, norm="l2")])
    with pytest.raises(TypeError, match="suite must be a suite name"):
        robust_accuracy(digits_model, data, 0.1, suite=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="norm must be one of"):
        robust_accuracy(digits_model, data, 0.1, norm="l3", suite=[FGSM(digits_model)])
    with pytest.raises(ValueError, match="eps must be > 0"):
        robust_accuracy(digits_model, data, 0.0, suite=[FGSM(digits_model)])
    with pytest.raises(TypeError, match="generator"):
        robust_accuracy(digits_model, data, 0.1, suite=[FGSM(digits_model)], generator=0)  # type: ignore[arg-type]


def test_metrics_robust_accuracy_suites_are_data() -> None:
    assert set(ATTACK_SUITES) == {"standard", "fast"}
    assert [e.name for e in ATTACK_SUITES["standard"]] == ["APGD", "APGDT", "FAB", "Square"]
    assert [e.name for e in ATTACK_SUITES["fast"]] == ["APGD", "APGDT"]
    assert dict(ATTACK_SUITES["standard"][3].settings)["queries"] == 5000


@pytest.mark.parametrize("suite", ["standard", "fast"])
def test_metrics_robust_accuracy_named_suites_build(suite: str) -> None:
    names = [e.name for e in ATTACK_SUITES[suite]]
    assert set(names) <= set(list_attacks())  # every member of a named suite is registered
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    attacks, name = build_suite(suite, model, eps=0.1, norm="linf")
    assert name == suite
    specs = [a.spec() for a in attacks]
    assert [s.name for s in specs] == names
    assert all(s.norm == "linf" for s in specs)
    assert all(s.eps == 0.1 for s in specs if s.bounded)


@pytest.mark.slow
def test_metrics_robust_accuracy_fast_suite_not_above_pgd(digits_model, batch) -> None:
    x, y = batch
    g = torch.Generator().manual_seed(0)
    res = robust_accuracy(digits_model, (x, y), 0.08, suite="fast", generator=g)
    pgd = robust_accuracy(
        digits_model, (x, y), 0.08, suite=[PGD(digits_model, 0.08, steps=20)], generator=g
    )
    assert res.value <= pgd.value + 1 / len(y)
    assert res.suite == "fast" and not math.isnan(res.value)


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    k=st.integers(2, 5),
    eps=st.floats(0.01, 0.2),
)
def test_metrics_robust_accuracy_ensemble_never_above_a_member_property(
    seed: int, k: int, eps: float
) -> None:
    """On random affine models the ensemble's robust set is the members' intersection."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(8, k).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, 8, generator=g, dtype=torch.float64))
        lin.bias.copy_(torch.randn(k, generator=g, dtype=torch.float64) * 0.1)
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(16, 1, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (16,), generator=g)  # some clean inputs are misclassified
    members = [
        FGSM(model, eps),
        BIM(model, eps, steps=5, rel_alpha=0.3),
        PGD(model, eps, steps=5, rel_alpha=0.3, random_start=False, loss="margin"),
    ]
    ens = robust_accuracy(model, (x, y), eps, suite=members, batch_size=7)
    expected = ens.clean_correct.clone()
    for m in members:
        alone = robust_accuracy(model, (x, y), eps, suite=[m], batch_size=7)
        assert ens.value <= alone.value
        expected &= alone.robust
    assert ens.robust.tolist() == expected.tolist()
    assert ens.value <= ens.clean_accuracy
