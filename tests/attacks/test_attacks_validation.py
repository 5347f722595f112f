"""Bad input raises errors that name the argument; configuration, repr, replace, with_model."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import Tensor, nn

from advrobust.attacks import (
    ALMA,
    APGD,
    APGDT,
    BIM,
    CWL2,
    DDN,
    FAB,
    FGSM,
    FMN,
    PGD,
    Attack,
    AttackResult,
    IterativeGradientAttack,
    IterLL,
    L2Ball,
    LinfBall,
    Square,
    StepLL,
    StepRnd,
    logit_margin,
)

ALL = [
    lambda m: FGSM(m),
    lambda m: StepLL(m),
    lambda m: StepRnd(m),
    lambda m: BIM(m, steps=2),
    lambda m: IterLL(m, steps=2),
    lambda m: PGD(m, steps=2),
    lambda m: CWL2(m, steps=2, binary_search_steps=1),
    lambda m: FAB(m, steps=2),
    lambda m: FAB(m, norm="l1", steps=2, targeted=True),
    lambda m: Square(m, queries=4),
    lambda m: Square(m, norm="l2", queries=4),
    lambda m: FMN(m, steps=2),
    lambda m: DDN(m, steps=2),
    lambda m: ALMA(m, steps=2),
    lambda m: APGD(m, steps=2),
    lambda m: APGDT(m, steps=2),
]
IDS = [
    "FGSM",
    "StepLL",
    "StepRnd",
    "BIM",
    "IterLL",
    "PGD",
    "CWL2",
    "FAB",
    "FAB-T-l1",
    "Square",
    "Square-l2",
    "FMN",
    "DDN",
    "ALMA",
    "APGD",
    "APGDT",
]


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 3))


X = torch.rand(4, 6)
Y = torch.tensor([0, 1, 2, 0])


class BadOutput(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 3)
        self.kind = kind

    def forward(self, x: Tensor) -> Tensor:
        z = self.lin(x.flatten(1))
        if self.kind == "3d":
            return z[:, :, None]
        if self.kind == "1d":
            return z.sum(1)
        return z[:1]  # wrong batch size


@pytest.mark.parametrize("make", ALL, ids=IDS)
@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"x": torch.full((4, 6), float("nan"))}, ValueError, r"x contains NaN"),
        ({"x": torch.full((4, 6), float("inf"))}, ValueError, r"x contains NaN or Inf"),
        (
            {"x": torch.full((4, 6), 1.5)},
            ValueError,
            r"x must lie inside bounds \(0.0, 1.0\).*1\.5",
        ),
        (
            {"x": torch.ones(4, 6, dtype=torch.uint8)},
            TypeError,
            r"x must be a floating-point.*uint8",
        ),
        ({"x": [[0.5] * 6] * 4}, TypeError, r"x must be a torch.Tensor, got list"),
        ({"x": torch.rand(6)}, ValueError, r"x must have a batch dimension"),
        ({"y": torch.tensor([0, 1, 2])}, ValueError, r"y must have shape \(4,\), got \(3,\)"),
        (
            {"y": torch.tensor([[0, 1, 2, 0]])},
            ValueError,
            r"y must have shape \(4,\), got \(1, 4\)",
        ),
        (
            {"y": torch.tensor([0.0, 1.0, 2.0, 0.0])},
            TypeError,
            r"y must be an integer tensor.*float32",
        ),
        (
            {"y": torch.tensor([0, 1, 3, 0])},
            ValueError,
            r"y must hold class indices in \[0, 3\).*\[0, 3\]",
        ),
        ({"y": torch.tensor([0, -1, 2, 0])}, ValueError, r"y must hold class indices in \[0, 3\)"),
        (
            {"target": torch.tensor([0, 1, 5, 0])},
            ValueError,
            r"target must hold class indices in \[0, 3\)",
        ),
        (
            {"target": torch.tensor([0, 1])},
            ValueError,
            r"target must have shape \(4,\), got \(2,\)",
        ),
        ({"eps": -0.1}, ValueError, r"eps must be >= 0, got -0.1"),
        ({"eps": torch.tensor([0.1, -0.1, 0.1, 0.1])}, ValueError, r"eps must be finite and >= 0"),
        (
            {"eps": torch.tensor([0.1, 0.1])},
            ValueError,
            r"eps must be a float or a tensor of shape \(4,\), got shape \(2,\)",
        ),
        ({"eps": "0.1"}, TypeError, r"eps must be a real number, got str"),
        ({"generator": 0}, TypeError, r"generator must be a torch.Generator or None, got int"),
    ],
)
def test_attacks_bad_call_arguments(
    make: object, kwargs: dict[str, object], exc: type, pattern: str
) -> None:
    atk = make(model())  # type: ignore[operator]
    call = {"x": X, "y": Y, **kwargs}
    x = call.pop("x")
    with pytest.raises(exc, match=pattern):
        atk.run(x, **call)
    with pytest.raises(exc, match=pattern):
        atk(x, **call)


@pytest.mark.parametrize("make", ALL, ids=IDS)
@pytest.mark.parametrize("kind", ["3d", "1d", "batch"])
def test_attacks_model_output_not_b_by_k(make: object, kind: str) -> None:
    m = BadOutput(kind)
    atk = make(m)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"model output must have shape \(B, K\)"):
        atk.run(X, Y)
    with pytest.raises(ValueError, match=r"model output must have shape \(B, K\)"):
        atk.run(X)


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_attacks_model_and_input_on_different_devices(make: object) -> None:
    m = nn.Sequential(nn.Flatten(), nn.Linear(6, 3, device="meta"))
    atk = make(m)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"x is on cpu but the model's parameters are on meta"):
        atk.run(X, Y)


@pytest.mark.parametrize(
    ("build", "exc", "pattern"),
    [
        (lambda m: FGSM(m, eps=-1.0), ValueError, r"eps must be >= 0, got -1.0"),
        (lambda m: FGSM(m, norm="l1"), ValueError, r"norm must be 'linf' or 'l2', got 'l1'"),
        (
            lambda m: FGSM(m, bounds=(1.0, 0.0)),
            ValueError,
            r"bounds must satisfy lo < hi, got \(1.0, 0.0\)",
        ),
        (lambda m: FGSM(m, bounds=1.0), TypeError, r"bounds must be a pair \(lo, hi\), got float"),
        (lambda m: FGSM("model"), TypeError, r"model must be a torch.nn.Module, got str"),
        (lambda m: FGSM(m, epsilon=0.1), TypeError, r"unexpected keyword argument 'epsilon'"),
        (lambda m: BIM(m, alpha=0.0), ValueError, r"alpha must be > 0, got 0.0"),
        (lambda m: BIM(m, steps=0), ValueError, r"steps must be >= 1, got 0"),
        (lambda m: BIM(m, steps=2.5), TypeError, r"steps must be an int, got float"),
        (
            lambda m: BIM(m, alpha=0.1, rel_alpha=0.1),
            ValueError,
            r"at most one of alpha and rel_alpha.*alpha=0.1",
        ),
        (
            lambda m: PGD(m, alpha=0.1, rel_alpha=0.1),
            ValueError,
            r"at most one of alpha and rel_alpha.*alpha=0.1",
        ),
        (lambda m: PGD(m, restarts=0), ValueError, r"restarts must be >= 1, got 0"),
        (
            lambda m: PGD(m, restarts=2, random_start=False),
            ValueError,
            r"restarts > 1 needs random_start=True",
        ),
        (lambda m: PGD(m, early_stop=1), TypeError, r"early_stop must be a bool, got int"),
        (lambda m: PGD(m, random_start="yes"), TypeError, r"random_start must be a bool, got str"),
        (lambda m: PGD(m, stepz=3), TypeError, r"unexpected keyword argument 'stepz'"),
        (
            lambda m: IterativeGradientAttack(m, target_rule="ll"),
            ValueError,
            r"target_rule must be one of .*got 'll'",
        ),
        (lambda m: CWL2(m, kappa=-1.0), ValueError, r"kappa must be >= 0, got -1.0"),
        (lambda m: CWL2(m, lr=0.0), ValueError, r"lr must be > 0, got 0.0"),
        (
            lambda m: CWL2(m, binary_search_steps=0),
            ValueError,
            r"binary_search_steps must be >= 1, got 0",
        ),
        (lambda m: CWL2(m, initial_const=-1.0), ValueError, r"initial_const must be > 0, got -1.0"),
        (lambda m: CWL2(m, abort_early="no"), TypeError, r"abort_early must be a bool, got str"),
        (lambda m: CWL2(m, eps=0.1), TypeError, r"unexpected keyword argument 'eps'"),
        (lambda m: FAB(m, norm="l0"), ValueError, r"norm must be 'linf', 'l2' or 'l1', got 'l0'"),
        (lambda m: FAB(m, steps=0), ValueError, r"steps must be >= 1, got 0"),
        (lambda m: FAB(m, restarts=0), ValueError, r"restarts must be >= 1, got 0"),
        (lambda m: FAB(m, targeted=1), TypeError, r"targeted must be a bool, got int"),
        (
            lambda m: FAB(m, n_target_classes=0),
            ValueError,
            r"n_target_classes must be >= 1, got 0",
        ),
        (lambda m: FAB(m, alpha_max=1.5), ValueError, r"alpha_max must be in \[0, 1\], got 1.5"),
        (lambda m: FAB(m, eta=0.5), ValueError, r"eta must be >= 1, got 0.5"),
        (lambda m: FAB(m, beta=0.0), ValueError, r"beta must be in \(0, 1\], got 0.0"),
        (lambda m: FAB(m, eps=-0.1), ValueError, r"eps must be >= 0, got -0.1"),
        (lambda m: Square(m, queries=1), ValueError, r"queries must be >= 2, got 1"),
        (lambda m: Square(m, queries=2.0), TypeError, r"queries must be an int, got float"),
        (lambda m: Square(m, p_init=0.0), ValueError, r"p_init must be > 0, got 0.0"),
        (lambda m: Square(m, p_init=1.5), ValueError, r"p_init must be in \(0, 1\], got 1.5"),
        (lambda m: Square(m, loss="dlr"), ValueError, r"loss must be one of .*got 'dlr'"),
        (lambda m: Square(m, norm="l1"), ValueError, r"norm must be 'linf' or 'l2', got 'l1'"),
        (lambda m: Square(m, restarts=0), ValueError, r"restarts must be >= 1, got 0"),
        (lambda m: FMN(m, norm="l3"), ValueError, r"norm must be one of 'l2', 'linf', 'l1', 'l0'"),
        (lambda m: FMN(m, steps=0), ValueError, r"steps must be >= 1, got 0"),
        (lambda m: FMN(m, alpha_init=0.0), ValueError, r"alpha_init must be > 0, got 0.0"),
        (lambda m: FMN(m, alpha_final=-1.0), ValueError, r"alpha_final must be > 0, got -1.0"),
        (lambda m: FMN(m, gamma_init=1.0), ValueError, r"gamma_init must be < 1, got 1.0"),
        (lambda m: FMN(m, gamma_final="x"), TypeError, r"gamma_final must be a real number"),
        (
            lambda m: FMN(m, gamma_init=0.01, gamma_final=0.1),
            ValueError,
            r"gamma_final must be <= gamma_init",
        ),
        (lambda m: FMN(m, eps=0.1), TypeError, r"unexpected keyword argument 'eps'"),
        (lambda m: DDN(m, init_norm=0.0), ValueError, r"init_norm must be > 0, got 0.0"),
        (lambda m: DDN(m, gamma=1.5), ValueError, r"gamma must be < 1, got 1.5"),
        (lambda m: DDN(m, alpha_init=0.1, alpha_final=1.0), ValueError, r"alpha_final must be <="),
        (lambda m: DDN(m, levels=1), ValueError, r"levels must be >= 2, got 1"),
        (lambda m: DDN(m, levels=2.0), TypeError, r"levels must be an int or None, got float"),
        (lambda m: DDN(m, loss="hinge"), ValueError, r"loss must be one of .*got 'hinge'"),
        (lambda m: DDN(m, norm="linf"), TypeError, r"unexpected keyword argument 'norm'"),
        (lambda m: ALMA(m, norm="linf"), ValueError, r"norm must be one of 'l2', 'l1', got 'linf'"),
        (lambda m: ALMA(m, steps=1.5), TypeError, r"steps must be an int, got float"),
        (
            lambda m: ALMA(m, init_lr_distance=0.0),
            ValueError,
            r"init_lr_distance must be > 0, got 0.0",
        ),
        (lambda m: ALMA(m, lr_reduction=2.0), ValueError, r"lr_reduction must be < 1, got 2.0"),
        (lambda m: ALMA(m, lr_init=0.0), ValueError, r"lr_init must be > 0, got 0.0"),
        (lambda m: ALMA(m, lr_init="0.1"), TypeError, r"lr_init must be"),
        (lambda m: ALMA(m, mu_init=0.0), ValueError, r"mu_init must be > 0, got 0.0"),
        (lambda m: ALMA(m, rho_init=-1.0), ValueError, r"rho_init must be > 0, got -1.0"),
        (lambda m: ALMA(m, check_steps=0), ValueError, r"check_steps must be >= 1, got 0"),
        (lambda m: ALMA(m, tau=1.0), ValueError, r"tau must be < 1, got 1.0"),
        (lambda m: ALMA(m, gamma=1.0), ValueError, r"gamma must be > 1, got 1.0"),
        (lambda m: ALMA(m, alpha=0.0), ValueError, r"alpha must be > 0, got 0.0"),
        (
            lambda m: ALMA(m, logit_tolerance=-1.0),
            ValueError,
            r"logit_tolerance must be >= 0, got -1.0",
        ),
        (lambda m: APGD(m, eps=-0.1), ValueError, r"eps must be >= 0, got -0.1"),
        (
            lambda m: APGD(m, norm="l0"),
            ValueError,
            r"norm must be 'linf', 'l2' or 'l1', got 'l0'",
        ),
        (lambda m: APGD(m, loss="margin"), ValueError, r"loss must be one of .*got 'margin'"),
        (lambda m: APGD(m, steps=0), ValueError, r"steps must be >= 1, got 0"),
        (lambda m: APGD(m, restarts=0), ValueError, r"restarts must be >= 1, got 0"),
        (lambda m: APGD(m, rho=1.5), ValueError, r"rho must be in \[0, 1\], got 1.5"),
        (lambda m: APGD(m, steps=2.0), TypeError, r"steps must be an int, got float"),
        (
            lambda m: APGDT(m, n_target_classes=0),
            ValueError,
            r"n_target_classes must be >= 1, got 0",
        ),
        (lambda m: APGDT(m, loss="ce"), TypeError, r"unexpected keyword argument 'loss'"),
    ],
)
def test_attacks_bad_constructor_arguments(build: object, exc: type, pattern: str) -> None:
    with pytest.raises(exc, match=pattern):
        build(model())  # type: ignore[operator]


def test_attacks_step_rnd_needs_two_classes() -> None:
    m = nn.Sequential(nn.Flatten(), nn.Linear(6, 1))
    with pytest.raises(ValueError, match=r"at least 2 classes, got model output of shape \(4, 1\)"):
        StepRnd(m).run(X, torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("make", ALL, ids=IDS)
def test_attacks_config_repr_replace_with_model(make: object) -> None:
    m = model()
    atk: Attack = make(m)  # type: ignore[operator]
    cfg = atk.config()
    json.dumps(cfg)  # JSON-friendly
    assert repr(atk).startswith(type(atk).__name__ + "(")
    for key in cfg:
        assert re.search(rf"\b{key}=", repr(atk))
    rebuilt = type(atk)(m, **cfg)  # type: ignore[arg-type]
    assert rebuilt.config() == cfg and repr(rebuilt) == repr(atk)
    other = model()
    moved = atk.with_model(other)
    assert moved.model is other and moved.config() == cfg and atk.model is m
    key = "steps" if "steps" in cfg else "eps"
    changed = atk.replace(**{key: 3})
    assert changed.config()[key] == 3 and atk.config()[key] == cfg[key]
    assert changed.model is m and type(changed) is type(atk)
    with pytest.raises(
        TypeError, match=r"replace got unexpected keyword argument\(s\): nope; expected"
    ):
        atk.replace(nope=1)
    assert atk.norm in ("linf", "l2", "l1")


def test_attacks_specific_configs() -> None:
    m = model()
    assert BIM(m).config()["steps"] is None and BIM(m).config()["alpha"] is None
    assert PGD(m).config()["alpha"] == 2 / 255 and PGD(m).config()["steps"] == 10
    assert PGD(m, rel_alpha=0.25).config()["alpha"] is None  # rel_alpha takes precedence
    assert PGD(m, rel_alpha=0.25).replace(rel_alpha=None).config()["alpha"] == 2 / 255
    assert FGSM(m, norm="l2").norm == "l2" and CWL2(m).norm == "l2" and PGD(m).norm == "linf"
    assert repr(PGD(m, eps=0.5, steps=3)).startswith("PGD(eps=0.5, alpha=0.00784314, steps=3,")
    assert repr(LinfBall()) == "LinfBall()" and L2Ball() == L2Ball() and L2Ball() != LinfBall()


def test_attacks_result_is_frozen_and_y_none_uses_predictions() -> None:
    m = model()
    res = PGD(m, steps=2).run(X, generator=torch.Generator().manual_seed(0))
    assert isinstance(res, AttackResult)
    with pytest.raises(AttributeError):
        res.x_adv = X  # type: ignore[misc]
    with torch.no_grad():
        assert torch.equal(res.y, m(X).argmax(1))
    assert 0.0 <= res.success_rate <= 1.0


def test_attacks_cw_ignores_eps_and_uses_full_bounds() -> None:
    m = model()
    a = CWL2(m, steps=20, binary_search_steps=2).run(X, Y, eps=0.0)
    b = CWL2(m, steps=20, binary_search_steps=2).run(X, Y)
    assert torch.equal(a.x_adv, b.x_adv)


def test_attacks_threat_models() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(500, 3, 4, 4, generator=g)
    eps = torch.linspace(0.0, 0.5, 500)
    for ball in (LinfBall(), L2Ball()):
        start = ball.random_start(x, eps, torch.Generator().manual_seed(0))
        d = ball.distance(start, x)
        assert (d <= eps * (1 + 1e-5) + 1e-7).all()
        delta = torch.randn(500, 3, 4, 4, generator=g)
        p = ball.project(delta, eps)
        assert (ball.distance(x + p, x) <= eps * (1 + 1e-5) + 1e-6).all()
        assert torch.equal(ball.clip(x + p * 0.5, x, eps), x + p * 0.5) or ball.norm == "l2"
    # L2 start is uniform in the ball's volume: P(r <= eps * t) = t ** d
    d = 48
    r = L2Ball().distance(L2Ball().random_start(x, torch.ones(500), g), x)
    frac = float((r <= 0.95).float().mean())
    assert abs(frac - 0.95**d) < 0.05
    z = torch.zeros(1, 3)
    assert torch.equal(L2Ball().ascent_direction(z), z)


def test_attacks_input_requiring_grad_is_left_alone() -> None:
    m = model()
    x = X.clone().requires_grad_(True)
    out = PGD(m, steps=2)(x, Y, generator=torch.Generator().manual_seed(0))
    assert not out.requires_grad and x.grad is None
    res = CWL2(m, steps=3, binary_search_steps=1).run(x, Y)
    assert not res.x_adv.requires_grad and x.grad is None


def test_attacks_int32_labels_and_float64_inputs() -> None:
    m = model().double()
    x = X.double()
    res = BIM(m, steps=2).run(x, Y.int())
    assert res.x_adv.dtype == torch.float64 and res.l2.dtype == torch.float64
    assert res.y.dtype == torch.long and res.adv_pred.dtype == torch.long


def test_attacks_eps_requiring_grad_does_not_leak_into_the_output() -> None:
    eps = torch.full((4,), 0.1, requires_grad=True)
    out = BIM(model(), steps=2, rel_alpha=0.5)(X, Y, eps=eps)
    assert not out.requires_grad and eps.grad is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_attacks_cwl2_half_precision_inputs(dtype: torch.dtype) -> None:
    """CW's search constants overflowed float16 (1e10); pixels at the bounds must still move.

    z = (sum(x) - 12, 12 - sum(x)) on 16 pixels at 1: the exact minimal L2 distance is 1.
    """
    lin = nn.Linear(16, 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0] = 1.0
        lin.weight[1] = -1.0
        lin.bias.copy_(torch.tensor([-12.0, 12.0]))
    model = nn.Sequential(nn.Flatten(), lin).to(dtype)
    x = torch.ones(3, 1, 4, 4, dtype=dtype)
    res = CWL2(model, steps=300, lr=0.1, binary_search_steps=4, abort_early=False).run(x)
    assert res.x_adv.dtype == dtype
    assert bool(torch.isfinite(res.x_adv).all())
    assert bool(res.success.all())
    assert bool(((res.l2.float() - 1.0).abs() < 0.03).all()), res.l2


def test_attacks_logit_margin() -> None:
    logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, -1.0]])
    assert torch.equal(logit_margin(logits, torch.tensor([0, 0])), torch.tensor([1.0, -3.0]))


def test_attacks_default_config_reads_constructor_arguments() -> None:
    """A new attack gets config/repr/replace from its constructor arguments."""

    class Noise(Attack):
        norm = "linf"

        def __init__(self, model: nn.Module, eps: float = 0.1, *, bounds=(0.0, 1.0)) -> None:  # type: ignore[no-untyped-def]
            super().__init__(model, bounds=bounds)
            self.eps = eps

        @property
        def _default_eps(self) -> float:
            return self.eps

        @property
        def _threat(self) -> LinfBall:
            return LinfBall()

        def _perturb(self, x, y, eps, target, guide, generator, clean):  # type: ignore[no-untyped-def]
            return LinfBall().random_start(x, eps, generator)

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    atk = Noise(model, 0.2)
    assert atk.config() == {"eps": 0.2, "bounds": (0.0, 1.0)}
    assert repr(atk) == "Noise(eps=0.2, bounds=(0, 1))"
    assert atk.replace(eps=0.3).config()["eps"] == 0.3

    class Unstored(Noise):
        def __init__(self, model: nn.Module, eps: float = 0.1, *, scale: float = 1.0) -> None:
            super().__init__(model, eps)

    with pytest.raises(TypeError, match="scale is not stored"):
        Unstored(model).config()
