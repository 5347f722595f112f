"""FAB and Square: exact projections, affine oracles, query budgets and gradient masking."""

from __future__ import annotations

from typing import Any as Affine
from typing import Any as Digits

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog, minimize
from torch import Tensor, nn

from advrobust.attacks import (
    FAB,
    PGD,
    Square,
    attack_info,
    create_attack,
    list_attacks,
    project_hyperplane_box,
)
from advrobust.attacks._square import _l2_pattern, _window, p_schedule


class Counter(nn.Module):
    """Counts the rows of every forward pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows = 0

    def forward(self, x: Tensor) -> Tensor:
        self.rows += x.shape[0]
        out: Tensor = self.inner(x)
        return out


class Quantise(nn.Module):
    """``round(4 x) / 4``: a staircase whose gradient is zero almost everywhere."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * 4) / 4


# ----------------------------------------------------------------- oracles (scipy LPs)
def lp_min_norm(x: np.ndarray, g: np.ndarray, r: float, norm: str) -> float | None:
    """min ||d|| (l1 or linf) s.t. <g, d> >= r and 0 <= x + d <= 1, by linear programming.

    Variables d+ >= 0, d- >= 0 (and t for linf); None when infeasible.
    """
    d = x.size
    lo, hi = -x, 1.0 - x
    if norm == "l1":
        c = np.ones(2 * d)
        a_ub = np.concatenate([-g, g])[None, :]
        bounds = [(0, max(h, 0.0)) for h in hi] + [(0, max(-lo_i, 0.0)) for lo_i in lo]
        res = linprog(c, A_ub=a_ub, b_ub=[-r], bounds=bounds, method="highs")
        return float(res.fun) if res.status == 0 else None
    # linf: variables (d+, d-, t); d+_i + d-_i <= t
    c = np.zeros(2 * d + 1)
    c[-1] = 1.0
    rows = [np.concatenate([-g, g, [0.0]])]
    for i in range(d):
        row = np.zeros(2 * d + 1)
        row[i] = row[d + i] = 1.0
        row[-1] = -1.0
        rows.append(row)
    b_ub = [-r] + [0.0] * d
    bounds = [(0, max(h, 0.0)) for h in hi] + [(0, max(-lo_i, 0.0)) for lo_i in lo] + [(0, None)]
    res = linprog(c, A_ub=np.array(rows), b_ub=b_ub, bounds=bounds, method="highs")
    return float(res.fun) if res.status == 0 else None


def exact_affine(a: Affine, norm: str) -> Tensor:
    """Exact minimal distance (inside the box [0, 1]) to any other class of an affine model."""
    w = a.model.weight.detach().numpy()
    with torch.no_grad():
        z = a.model(a.x).numpy()
    out = []
    for i in range(a.x.shape[0]):
        yi = int(a.y[i])
        best = np.inf
        for j in range(w.shape[0]):
            if j == yi:
                continue
            g, r = w[j] - w[yi], z[i, yi] - z[i, j]
            if norm == "l2":
                best = min(best, r / np.linalg.norm(g))
            else:
                v = lp_min_norm(a.x[i].numpy(), g, r, norm)
                best = min(best, np.inf if v is None else v)
        out.append(best)
    return torch.tensor(out, dtype=torch.float64)


def distance(d: Tensor, norm: str) -> Tensor:
    d = d.flatten(1)
    if norm == "linf":
        return d.abs().amax(dim=1)
    if norm == "l2":
        return d.norm(dim=1)
    return d.abs().sum(dim=1)


# ------------------------------------------------------------- FAB: the projection
@settings(max_examples=20, deadline=None)
@given(
    d=st.integers(1, 7),
    seed=st.integers(0, 2**16),
    norm=st.sampled_from(["linf", "l2", "l1"]),
    scale=st.floats(0.01, 3.0),
)
def test_fab_projection_is_the_exact_minimiser(d: int, seed: int, norm: str, scale: float) -> None:
    g_ = torch.Generator().manual_seed(seed)
    x = torch.rand(1, d, generator=g_, dtype=torch.float64)
    x[0, 0] = 1.0 if d > 1 else x[0, 0]  # a coordinate on the box's face
    g = torch.randn(1, d, generator=g_, dtype=torch.float64)
    if d > 2:
        g[0, 1] = 0.0  # a coordinate that cannot help
    r = scale * torch.randn(1, generator=g_, dtype=torch.float64)
    delta = project_hyperplane_box(x, g, r, (0.0, 1.0), norm)
    assert bool(((x + delta) >= -1e-12).all() and ((x + delta) <= 1 + 1e-12).all())
    # reachable: exactly on the hyperplane; else the box point furthest along sign(r) g
    s = float(torch.sign(r))
    cap = torch.where(s * g > 0, 1 - x, x)
    reachable = float((g.abs() * cap).sum()) >= abs(float(r))
    got = float(distance(delta, norm)[0])
    if not reachable:
        far = torch.where(g == 0, 0.0, torch.where(s * g > 0, 1 - x, -x))
        torch.testing.assert_close(delta, far, rtol=0, atol=1e-12)
        return
    torch.testing.assert_close((g * delta).sum(dim=1), r, rtol=1e-9, atol=1e-12)
    gs, rs = (s * g[0]).numpy(), abs(float(r))
    if norm == "l2":
        ref = minimize(
            lambda v: float(v @ v),
            np.zeros(d),
            jac=lambda v: 2 * v,
            constraints=[{"type": "eq", "fun": lambda v: float(gs @ v) - rs}],
            bounds=[(-float(x[0, i]), 1 - float(x[0, i])) for i in range(d)],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        best = float(np.sqrt(ref.fun))
        assert got <= best * (1 + 1e-5) + 1e-9
    else:
        best = lp_min_norm(x[0].numpy(), gs, rs, norm)
        assert best is not None
        assert abs(got - best) <= 1e-9 * (1 + best)


# ------------------------------------------------------------- FAB: affine oracles
_CASES = [(f, n) for f in ("affine_binary", "affine_blocks") for n in ("linf", "l2", "l1")]


@pytest.mark.parametrize(("fixture", "norm"), _CASES)
def test_fab_affine_within_one_percent_of_the_exact_minimal_distance(
    fixture: str, norm: str, request: pytest.FixtureRequest
) -> None:
    a: Affine = request.getfixturevalue(fixture)
    exact = exact_affine(a, norm)
    if norm == "linf":  # the box does not bind: the closed form of the fixture holds
        torch.testing.assert_close(exact, a.linf_min, rtol=1e-7, atol=0)
    for targeted in (False, True):
        atk = FAB(a.model, 100.0, norm=norm, steps=20, targeted=targeted, bounds=a.bounds)
        res = atk.run(a.x, a.y)
        assert res.success.all()
        dist = distance(res.x_adv - a.x, norm)
        assert (dist >= exact * (1 - 1e-7)).all()  # nothing beats the exact minimum
        assert (dist <= 1.01 * exact).all(), (dist / exact).max()
    if norm == "l2":  # the L2 closed form ignores the box: check the answer lies inside it
        assert (res.x_adv > 0).all() and (res.x_adv < 1).all()


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_fab_fixed_eps_per_example(norm: str, affine_blocks: Affine) -> None:
    """Below the exact distance nothing is found (x comes back); 2% above, everything is."""
    a = affine_blocks
    exact = exact_affine(a, norm)
    low = FAB(a.model, norm=norm, steps=30, bounds=a.bounds).run(a.x, a.y, eps=0.99 * exact)
    assert not low.success.any()
    assert torch.equal(low.x_adv, a.x)
    high = FAB(a.model, norm=norm, steps=30, bounds=a.bounds).run(a.x, a.y, eps=1.02 * exact)
    assert high.success.all()
    assert (distance(high.x_adv - a.x, norm) <= 1.02 * exact * (1 + 1e-9)).all()


def test_fab_target_argument_and_targeted_spec(affine_blocks: Affine) -> None:
    a = affine_blocks
    target = (a.y + 2) % 4
    for targeted in (False, True):
        atk = FAB(a.model, 100.0, steps=50, targeted=targeted, bounds=a.bounds)
        res = atk.run(a.x, target=target)
        assert torch.equal(res.target, target) and res.success.all()
        assert torch.equal(res.adv_pred, target)
        assert atk.spec().targeted is targeted and atk.spec().kind == "bounded"
    # FAB-T with more target classes than the model has runner-ups
    res = FAB(a.model, 100.0, steps=20, targeted=True, n_target_classes=50).run(a.x, a.y)
    assert res.success.all()


def test_fab_misclassified_examples_come_back_unchanged(affine_blocks: Affine) -> None:
    a = affine_blocks
    wrong = (a.y + 1) % 4
    res = FAB(a.model, 100.0, steps=5, bounds=a.bounds).run(a.x, wrong)
    assert res.success.all() and torch.equal(res.x_adv, a.x)


def test_fab_random_restarts_are_seeded(digits: Digits) -> None:
    x, y = digits.x[:8], digits.y[:8]
    atk = FAB(digits.model, 0.3, steps=5, restarts=2)
    one = atk.run(x, y, eps=0.05, generator=torch.Generator().manual_seed(3))
    two = atk.run(x, y, eps=0.05, generator=torch.Generator().manual_seed(3))
    assert torch.equal(one.x_adv, two.x_adv)
    assert (one.linf <= 0.05 + 1e-6).all()


# -------------------------------------------------------------------------- Square
def test_square_p_schedule_and_windows() -> None:
    assert p_schedule(0.8, 10, 10_000) == 0.8 and p_schedule(0.8, 11, 10_000) == 0.4
    assert p_schedule(0.8, 9_000, 10_000) == 0.8 / 512
    # rescaled: iteration 5 of 1,000 is 50 of 10,000, iteration 6 is 60
    assert p_schedule(0.8, 5, 1_000) == 0.4 and p_schedule(0.8, 6, 1_000) == 0.2
    assert _window(0.8, 28, 28, 1) == (25, 25)
    assert _window(0.001, 28, 28, 1) == (1, 1)
    assert _window(0.25, 1, 40, 1) == (1, 10)  # (B, D) inputs: intervals
    assert _window(0.1, 28, 28, 3) == (9, 9)  # L2: odd sides, at least 3
    assert _window(0.9, 2, 3, 3) == (2, 2)
    pat = _l2_pattern(5, 5, torch.device("cpu"), torch.float64)
    torch.testing.assert_close(pat.norm(), torch.tensor(1.0, dtype=torch.float64))
    assert pat[:2].gt(0).all() and pat[2:].lt(0).all()  # two halves of opposite sign
    assert pat[3, 2] < pat[3, 0] < 0  # mass at the centre of each half


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.3), ("l2", 3.0)])
def test_square_breaks_the_digits_model_at_a_large_eps(
    norm: str, eps: float, digits: Digits
) -> None:
    x, y = digits.x[:16], digits.y[:16]
    model = Counter(digits.model)
    atk = Square(model, eps, norm=norm, queries=300)
    res = atk.run(x, y, generator=torch.Generator().manual_seed(0))
    assert res.success.all()
    dist = res.linf if norm == "linf" else res.l2
    assert (dist <= eps * (1 + 1e-5)).all()
    assert (res.x_adv >= 0).all() and (res.x_adv <= 1).all()
    again = atk(x, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, res.x_adv)
    other = atk(x, y, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(other, res.x_adv)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("restarts", [1, 2])
def test_square_spends_at_most_its_queries(norm: str, restarts: int, digits: Digits) -> None:
    """Every forward pass of a call, the clean one included, within queries per example."""
    x, y = digits.x[:12], digits.y[:12]
    model = Counter(digits.model)
    queries = 40
    Square(model, 0.02, norm=norm, queries=queries, restarts=restarts)(
        x, y, generator=torch.Generator().manual_seed(0)
    )
    assert 0 < model.rows <= restarts * queries * x.shape[0]
    # robust examples use the whole budget: at least one example ran every query
    assert model.rows > queries
    model.rows = 0
    Square(model, 0.5, norm=norm, queries=queries, restarts=restarts)(
        x, generator=torch.Generator().manual_seed(0)
    )
    assert model.rows < restarts * queries * x.shape[0]  # broken examples stop early


def test_square_on_vectors_and_bad_shapes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    x = torch.rand(5, 8)
    for norm in ("linf", "l2"):
        res = Square(model, 0.4, norm=norm, queries=50).run(
            x, generator=torch.Generator().manual_seed(0)
        )
        assert res.x_adv.shape == x.shape
        assert ((res.linf if norm == "linf" else res.l2) <= 0.4 + 1e-6).all()
    x3 = torch.rand(2, 2, 4)  # (B, H, W)
    Square(nn.Sequential(nn.Flatten(), nn.Linear(8, 3)), 0.1, queries=5)(x3)
    x5 = torch.rand(2, 1, 1, 2, 4)
    with pytest.raises(ValueError, match=r"x must be \(B, D\), \(B, H, W\) or \(B, C, H, W\)"):
        Square(model, 0.1, queries=5)(x5)


def test_square_targeted_call(digits: Digits) -> None:
    x, y = digits.x[:6], digits.y[:6]
    target = (y + 1) % 10
    res = Square(digits.model, 0.4, queries=400).run(
        x, target=target, generator=torch.Generator().manual_seed(0)
    )
    assert res.success.any()
    assert torch.equal(res.success, res.adv_pred == target)


# ---------------------------------------------------------------- gradient masking
def test_square_breaks_what_pgd_and_fab_miss_on_a_gradient_masking_model(
    affine_binary: Affine,
) -> None:
    """A quantising first layer (zero input gradient) hides the boundary from gradients.

    PGD (random start, 3 restarts) finds next to nothing; FAB's linearisation has a zero
    normal, so it makes no step and finds nothing at all; Square, which never looks at a
    gradient, breaks many of the examples both report robust.
    """
    a = affine_binary
    model = nn.Sequential(Quantise(), a.model)
    with torch.no_grad():
        y = model(a.x).argmax(dim=1)
    eps = 0.15

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    pgd = PGD(model, eps, steps=20, rel_alpha=0.1, restarts=3, bounds=a.bounds).run(
        a.x, y, generator=gen()
    )
    fab = FAB(model, eps, steps=20, restarts=2, bounds=a.bounds).run(a.x, y, generator=gen())
    square = Square(model, eps, queries=200, bounds=a.bounds).run(a.x, y, generator=gen())
    assert int(pgd.success.sum()) <= 2
    assert not fab.success.any()
    broken_by_square_only = square.success & ~pgd.success & ~fab.success
    assert int(broken_by_square_only.sum()) >= 10
    assert (square.linf <= eps + 1e-12).all()


# ------------------------------------------------------------------------- registry
def test_fab_and_square_are_registered() -> None:
    assert "FAB" in list_attacks() and "Square" in list_attacks()
    assert "Croce, Hein" in attack_info("fab").paper
    assert "Andriushchenko" in attack_info("square").paper
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    sq = create_attack("square", model, eps=0.1, queries=100)
    spec = sq.spec()
    assert spec.kind == "bounded" and spec.eps == 0.1 and not spec.targeted
    assert "queries=100" in spec.describe()
    assert spec.build(model).config() == sq.config()
    fab = create_attack("FAB", model, eps=0.2, norm="l1", targeted=True)
    assert fab.spec().norm == "l1" and fab.spec().targeted and fab.spec().eps == 0.2


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), targeted=st.booleans())
def test_fab_l1_stays_in_the_l1_ball(seed: int, targeted: bool) -> None:
    """No threat model clips the L1 output: FAB itself returns only points inside the ball."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(5, 6, generator=g)
    eps = 1.5 * torch.rand(5, generator=g)
    res = FAB(model, norm="l1", steps=10, targeted=targeted, n_target_classes=2).run(x, eps=eps)
    l1 = (res.x_adv - x).abs().sum(dim=1)
    assert (l1 <= eps * (1 + 1e-6)).all()
    assert torch.equal(res.x_adv[~res.success], x[~res.success])
