"""Guarantees every attack gives, checked by hypothesis over random small models and inputs.

Output inside the eps-ball and the bounds, finite, same shape/dtype/device; x and y not mutated;
parameters, buffers (BatchNorm running statistics) and parameter .grad bit-identical; every
submodule's training flag restored (also a frozen-BN child, also when the model raises); works
under torch.no_grad() and torch.inference_mode(); same generator seed, same output.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
    IterativeGradientAttack,
    IterLL,
    Square,
    StepLL,
    StepRnd,
)

Factory = Callable[[nn.Module, float, tuple[float, float]], Attack]

ATTACKS: dict[str, Factory] = {
    "FGSM": lambda m, e, b: FGSM(m, e, bounds=b),
    "FGSM-l2": lambda m, e, b: FGSM(m, e, norm="l2", bounds=b),
    "StepLL": lambda m, e, b: StepLL(m, e, bounds=b),
    "StepRnd": lambda m, e, b: StepRnd(m, e, bounds=b),
    "BIM": lambda m, e, b: BIM(m, e, steps=3, bounds=b),
    "BIM-l2-early": lambda m, e, b: BIM(
        m, e, steps=3, rel_alpha=0.5, norm="l2", early_stop=True, bounds=b
    ),
    "IterLL": lambda m, e, b: IterLL(m, e, steps=3, rel_alpha=0.4, bounds=b),
    "PGD": lambda m, e, b: PGD(m, e, steps=3, rel_alpha=0.4, bounds=b),
    "PGD-l2": lambda m, e, b: PGD(m, e, steps=3, norm="l2", alpha=0.1, bounds=b),
    "PGD-restarts-early": lambda m, e, b: PGD(
        m, e, steps=2, rel_alpha=0.5, restarts=3, early_stop=True, bounds=b
    ),
    "Engine-random-target": lambda m, e, b: IterativeGradientAttack(
        m, e, steps=2, rel_alpha=0.5, target_rule="random", random_start=True, bounds=b
    ),
    "CWL2": lambda m, e, b: CWL2(m, steps=6, binary_search_steps=2, initial_const=1.0, bounds=b),
    "FAB": lambda m, e, b: FAB(m, e, steps=3, bounds=b),
    "FAB-T-l2-restarts": lambda m, e, b: FAB(
        m, e, norm="l2", steps=3, restarts=2, targeted=True, n_target_classes=2, bounds=b
    ),
    "FAB-l1": lambda m, e, b: FAB(m, e, norm="l1", steps=3, bounds=b),
    "Square": lambda m, e, b: Square(m, e, queries=8, bounds=b),
    "Square-l2-ce-restarts": lambda m, e, b: Square(
        m, e, norm="l2", queries=8, loss="ce", restarts=2, bounds=b
    ),
    "FMN": lambda m, e, b: FMN(m, steps=6, bounds=b),
    "FMN-linf": lambda m, e, b: FMN(m, "linf", steps=6, bounds=b),
    "FMN-l1": lambda m, e, b: FMN(m, "l1", steps=6, bounds=b),
    "FMN-l0": lambda m, e, b: FMN(m, "l0", steps=6, bounds=b),
    "DDN": lambda m, e, b: DDN(m, steps=6, bounds=b),
    "DDN-levels-margin": lambda m, e, b: DDN(m, steps=6, levels=16, loss="margin", bounds=b),
    "ALMA": lambda m, e, b: ALMA(m, steps=6, bounds=b),
    "ALMA-l1": lambda m, e, b: ALMA(m, "l1", steps=6, bounds=b),
    "APGD": lambda m, e, b: APGD(m, e, steps=4, bounds=b),
    "APGD-l2-dlr": lambda m, e, b: APGD(m, e, norm="l2", loss="dlr", steps=4, bounds=b),
    "APGD-l1-restarts": lambda m, e, b: APGD(m, e, norm="l1", steps=3, restarts=2, bounds=b),
    "APGDT": lambda m, e, b: APGDT(m, e, steps=3, n_target_classes=2, bounds=b),
}
# Fewest classes an attack needs (untargeted call, targeted call): the DLR loss needs 3 (4 in
# its targeted form); with fewer it must raise a ValueError that says so.
NEEDS: dict[str, tuple[int, int]] = {"APGD-l2-dlr": (3, 4), "APGDT": (4, 4)}


def random_model(kind: str, in_shape: tuple[int, ...], k: int, seed: int) -> nn.Module:
    """A small random classifier with BatchNorm and Dropout, in train mode."""
    torch.manual_seed(seed)
    if kind == "conv":
        c = in_shape[0]
        model: nn.Module = nn.Sequential(
            nn.Conv2d(c, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Flatten(),
            nn.Linear(4 * in_shape[1] * in_shape[2], k),
        )
    else:
        d = in_shape[0]
        model = nn.Sequential(
            nn.Linear(d, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, k)
        )
    with torch.no_grad():  # non-trivial running statistics to detect any update
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.train()
    return model


@st.composite
def cases(draw: st.DrawFn) -> dict[str, object]:
    kind = draw(st.sampled_from(["conv", "mlp"]))
    b = draw(st.integers(1, 4))
    shape = (
        (draw(st.integers(1, 2)), draw(st.integers(2, 4)), draw(st.integers(2, 4)))
        if kind == "conv"
        else (draw(st.integers(2, 6)),)
    )
    k = draw(st.integers(2, 5))
    lo = draw(st.floats(-2.0, 0.5))
    hi = lo + draw(st.floats(0.5, 3.0))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    per_example = draw(st.booleans())
    eps_frac = draw(st.lists(st.floats(0.0, 0.5), min_size=b, max_size=b))
    seed = draw(st.integers(0, 2**16))
    labels = draw(st.booleans())
    return {
        "kind": kind,
        "b": b,
        "shape": shape,
        "k": k,
        "bounds": (lo, hi),
        "dtype": dtype,
        "per_example": per_example,
        "eps_frac": eps_frac,
        "seed": seed,
        "labels": labels,
    }


def build(case: dict[str, object]) -> tuple[nn.Module, Tensor, Tensor | None, float | Tensor]:
    lo, hi = case["bounds"]  # type: ignore[misc]
    shape = case["shape"]
    b = case["b"]
    dtype = case["dtype"]
    model = random_model(case["kind"], shape, case["k"], case["seed"]).to(dtype)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(case["seed"])  # type: ignore[arg-type]
    x = lo + (hi - lo) * torch.rand((b, *shape), generator=g, dtype=dtype)  # type: ignore[misc]
    # some pixels exactly on the bounds
    x.view(b, -1)[:, 0] = lo
    x.view(b, -1)[:, -1] = hi
    y = torch.randint(0, case["k"], (b,), generator=g) if case["labels"] else None  # type: ignore[call-overload]
    frac = torch.tensor(case["eps_frac"], dtype=dtype)
    eps: float | Tensor = frac * (hi - lo) if case["per_example"] else float(frac[0]) * (hi - lo)
    return model, x, y, eps


def snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "flags": {n: m.training for n, m in model.named_modules()},
        "grads": [(p.grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()],
        "requires": [p.requires_grad for p in model.parameters()],
    }


def assert_unchanged(model: nn.Module, before: dict[str, object]) -> None:
    after = model.state_dict()
    state = before["state"]
    assert isinstance(state, dict)
    assert state.keys() == after.keys()
    for k, v in state.items():
        assert torch.equal(v, after[k]), f"{k} changed"
    assert before["flags"] == {n: m.training for n, m in model.named_modules()}
    assert before["requires"] == [p.requires_grad for p in model.parameters()]
    grads = before["grads"]
    assert isinstance(grads, list)
    for p, (ref, val) in zip(model.parameters(), grads, strict=True):
        assert p.grad is ref
        if val is not None:
            assert torch.equal(p.grad, val)


def give_grads(model: nn.Module) -> None:
    for i, p in enumerate(model.parameters()):
        p.grad = torch.randn_like(p) if i % 2 == 0 else None


@pytest.mark.parametrize("name", sorted(ATTACKS))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_attacks_invariants(name: str, case: dict[str, object]) -> None:
    model, x, y, eps = build(case)
    lo, hi = case["bounds"]  # type: ignore[misc]
    # a frozen BatchNorm child inside a model in train mode keeps its own flag
    bn = next(m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
    bn.eval()
    give_grads(model)
    atk = ATTACKS[name](model, 0.1, (lo, hi))
    k = case["k"]
    assert isinstance(k, int)
    need, need_targeted = NEEDS.get(name, (2, 2))
    if k < need:
        with pytest.raises(ValueError, match=rf"at least {need} classes"):
            atk.run(x, y, eps=eps, generator=torch.Generator().manual_seed(1))
        return
    x0, y0 = x.clone(), None if y is None else y.clone()
    eps0 = eps.clone() if isinstance(eps, Tensor) else eps
    cfg0, repr0 = atk.config(), repr(atk)
    before = snapshot(model)

    res = atk.run(x, y, eps=eps, generator=torch.Generator().manual_seed(1))

    assert_unchanged(model, before)
    assert torch.equal(x, x0)
    if y is not None:
        assert y0 is not None and torch.equal(y, y0)
    if isinstance(eps, Tensor):
        assert torch.equal(eps, eps0)  # type: ignore[arg-type]
    assert atk.config() == cfg0 and repr(atk) == repr0
    xa = res.x_adv
    assert xa.shape == x.shape and xa.dtype == x.dtype and xa.device == x.device
    assert torch.isfinite(xa).all()
    assert (xa >= lo).all() and (xa <= hi).all()
    b = x.shape[0]
    e = eps if isinstance(eps, Tensor) else torch.full((b,), eps, dtype=x.dtype)
    tol = 1e-5 * (1 + e) if x.dtype == torch.float32 else 1e-10 * (1 + e)
    if atk.spec().bounded:  # minimal-norm attacks ignore eps
        l1 = (xa - x).flatten(1).abs().sum(dim=1)
        dist = {"l2": res.l2, "linf": res.linf, "l1": l1}[atk.norm]
        assert (dist <= e + tol).all(), (dist, e)
    d = (xa - x).flatten(1)
    torch.testing.assert_close(res.l2, d.norm(dim=1))
    torch.testing.assert_close(res.linf, d.abs().amax(dim=1))
    assert res.success.dtype == torch.bool and res.success.shape == (b,)
    assert res.adv_pred.dtype == torch.long and res.adv_pred.shape == (b,)
    with torch.no_grad():
        model.eval()
        pred = model(xa).argmax(1)
    model.train()
    bn.eval()
    assert torch.equal(res.adv_pred, pred)
    assert torch.equal(res.success, pred != res.y)
    if y is not None:
        assert torch.equal(res.y, y)

    # same generator seed, same output; also under no_grad and inference_mode; __call__ == run
    again = atk(x, y, eps=eps, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        nograd = atk(x, y, eps=eps, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        # inputs, labels and eps all made inside inference mode (labels are saved for
        # backward by the loss: they must not stay inference tensors inside the attack)
        xi = x.clone()
        yi = None if y is None else y.clone()
        ei = eps.clone() if isinstance(eps, torch.Tensor) else eps
        inf = atk(xi, yi, eps=ei, generator=torch.Generator().manual_seed(1))
        if y is not None and k >= need_targeted:
            tgt = (yi + 1) % case["k"]  # type: ignore[operator]
            targeted = atk.run(xi, target=tgt, eps=ei, generator=torch.Generator())
            assert targeted.target is not None
    assert torch.equal(again, xa)
    assert torch.equal(nograd, xa)
    assert torch.equal(inf.clone(), xa)
    assert_unchanged(model, before)


class Boom(nn.Module):
    """Raises on the n-th forward call."""

    def __init__(self, inner: nn.Module, n: int) -> None:
        super().__init__()
        self.inner = inner
        self.n = n
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls >= self.n:
            raise RuntimeError("boom")
        out: Tensor = self.inner(x)
        return out


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("n", [1, 2, 3])
def test_attacks_state_restored_when_model_raises(name: str, n: int) -> None:
    inner = random_model("mlp", (5,), 4, 0)  # 4 classes: APGDT's targeted DLR needs them
    model = Boom(inner, n)
    model.train()
    inner[1].eval()  # frozen BN child
    give_grads(model)
    before = snapshot(model)
    x = torch.rand(4, 5)
    atk = ATTACKS[name](model, 0.1, (0.0, 1.0))
    try:
        atk.run(x, torch.tensor([0, 1, 2, 0]), generator=torch.Generator().manual_seed(0))
    except RuntimeError as err:
        assert "boom" in str(err)
    assert_unchanged(model, before)
    assert model.training and not inner[1].training and inner[0].training


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attacks_empty_batch(name: str) -> None:
    model = random_model("mlp", (5,), 3, 0)
    atk = ATTACKS[name](model, 0.1, (0.0, 1.0))
    x = torch.rand(0, 5)
    res = atk.run(x, torch.zeros(0, dtype=torch.long), eps=torch.zeros(0))
    assert res.x_adv.shape == (0, 5) and res.success.shape == (0,) and res.l2.shape == (0,)
    assert res.adv_pred.dtype == torch.long
    assert atk(x).shape == (0, 5)
    assert atk.run(x).y.shape == (0,)
