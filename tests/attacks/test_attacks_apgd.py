"""APGD and APGD-T: closed-form oracles, the step-size schedule, the DLR loss, bookkeeping.

Also the engine's best-iterate bookkeeping (BIM/PGD/IterLL return the first successful
iterate, else the highest-loss one, not the last one).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.attacks import APGD, APGDT, BIM, PGD, create_attack, dlr_loss, list_attacks
from advrobust.attacks._apgd import checkpoints
from advrobust.attacks._l1 import L1Ball, project_l1_box

Digits = Any


class Counter(nn.Module):
    """Counts forward calls and the rows they processed."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.rows = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        out: Tensor = self.inner(x)
        return out


# ----------------------------------------------------------------------------- oracles
def _exact(lin: nn.Linear, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Labels, and per example and class the Linf / L2 distance to the boundary with y."""
    with torch.no_grad():
        z = lin(x)
    y = z.argmax(dim=1)
    w = lin.weight.detach()
    diff = w[y][:, None, :] - w[None, :, :]
    margin = z.gather(1, y[:, None]) - z
    own = F.one_hot(y, w.shape[0]).bool()
    linf = (margin / diff.abs().sum(dim=2)).masked_fill(own, math.inf)
    l2 = (margin / diff.norm(dim=2)).masked_fill(own, math.inf)
    return y, linf, l2, margin


def affine(k: int, far: int, seed: int, b: int = 48, d: int = 12) -> tuple[nn.Linear, Tensor]:
    """``z = W x + b`` with random Gaussian ``W``; the biases of the last ``far`` classes are
    lowered by 20, so those classes stay far from every input (inputs in [0.3, 0.7])."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(d, k).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(k, d, generator=g, dtype=torch.float64))
        bias = 0.3 * torch.randn(k, generator=g, dtype=torch.float64)
        if far:
            bias[k - far :] -= 20.0
        lin.bias.copy_(bias)
    x = 0.3 + 0.4 * torch.rand(b, d, generator=g, dtype=torch.float64)
    return lin, x


def _inside_box(lin: nn.Linear, x: Tensor, y: Tensor, linf: Tensor, l2: Tensor) -> Tensor:
    """Examples whose closest boundary point (Linf and L2, 1.01 x further) is inside [0, 1]."""
    w = lin.weight.detach()
    j = linf.argmin(dim=1)
    step_inf = 1.01 * linf.amin(dim=1)[:, None] * (w[j] - w[y]).sign()
    j2 = l2.argmin(dim=1)
    c = w[j2] - w[y]
    step_2 = 1.01 * l2.amin(dim=1)[:, None] * c / c.norm(dim=1, keepdim=True)
    ok = torch.ones(len(y), dtype=torch.bool)
    for s in (step_inf, step_2):
        ok &= ((x + s) > 0).all(dim=1) & ((x + s) < 1).all(dim=1)
    return ok


def _check_threshold(atk: Any, x: Tensor, y: Tensor, dist: Tensor) -> None:
    """Broken at 1.01 x the exact distance, never at 0.99 x; per-example eps, mixed batch."""
    g = torch.Generator
    above = atk.run(x, y, eps=1.01 * dist, generator=g().manual_seed(0))
    assert above.success.all(), (~above.success).sum()
    below = atk.run(x, y, eps=0.99 * dist, generator=g().manual_seed(0))
    assert not below.success.any()
    # one batch, half of the examples just above their distance, half just below
    up = torch.arange(len(y)) % 2 == 0
    eps = torch.where(up, 1.01 * dist, 0.99 * dist)
    mixed = atk.run(x, y, eps=eps, generator=g().manual_seed(1))
    assert torch.equal(mixed.success, up)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_succeeds_exactly_above_the_minimal_distance(norm: str, loss: str) -> None:
    """Five classes with random weights; three of them are far from every input.

    On a general multi-class affine model the untargeted CE/DLR maximiser over the ball need
    not cross the closest boundary (maximising a convex function of ``x``; the CE ascent also
    spreads the budget over all classes), so no untargeted gradient attack is exact there; with
    the far classes the closest class is the only competitor and the oracle is exact.
    APGD-T, which tries every class in turn, is checked on fully random models below.
    """
    lin, x = affine(k=5, far=3, seed=0)
    y, linf, l2, _ = _exact(lin, x)
    keep = _inside_box(lin, x, y, linf, l2)
    assert int(keep.sum()) >= 32
    x, y = x[keep], y[keep]
    dist = (linf if norm == "linf" else l2)[keep].amin(dim=1)
    _check_threshold(APGD(lin, norm=norm, loss=loss, steps=100), x, y, dist)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("seed", [0, 1])
def test_apgdt_succeeds_exactly_above_the_minimal_distance(norm: str, seed: int) -> None:
    """Fully random five-class affine models: the closest class is often not the runner-up,
    and APGD-T, running the targeted DLR loss towards each runner-up class, finds it."""
    lin, x = affine(k=5, far=0, seed=seed)
    y, linf, l2, _ = _exact(lin, x)
    keep = _inside_box(lin, x, y, linf, l2)
    x, y = x[keep], y[keep]
    table = (linf if norm == "linf" else l2)[keep]
    with torch.no_grad():
        runner = lin(x).masked_fill(F.one_hot(y, 5).bool(), -math.inf).argmax(dim=1)
    if seed == 0:  # the closest class is not always the runner-up
        assert bool((table.argmin(dim=1) != runner).any())
    _check_threshold(APGDT(lin, norm=norm, steps=100), x, y, table.amin(dim=1))


def test_apgd_never_leaves_the_ball_on_the_oracle() -> None:
    lin, x = affine(k=5, far=3, seed=2)
    y, linf, l2, _ = _exact(lin, x)
    for norm, table in (("linf", linf), ("l2", l2)):
        eps = 2.0 * table.amin(dim=1)
        res = APGD(lin, norm=norm, steps=30).run(x, y, eps=eps)
        dist = res.linf if norm == "linf" else res.l2
        assert (dist <= eps * (1 + 1e-12)).all()
        assert res.success.all()


# --------------------------------------------------------------------------- L1 (mind the box)
def test_project_l1_box_matches_bisection() -> None:
    """The exact sort-based projection agrees with a bisection on the threshold lambda."""
    g = torch.Generator().manual_seed(0)
    v = 0.5 * torch.randn(20, 15, generator=g, dtype=torch.float64)
    x = torch.rand(20, 15, generator=g, dtype=torch.float64)
    x[:, :3] = 0.0  # pixels on the bounds
    x[:, 3:5] = 1.0
    eps = 1.5 * torch.rand(20, generator=g, dtype=torch.float64)
    eps[0] = 0.0
    eps[1] = 100.0  # inactive ball: the box projection alone
    got = project_l1_box(v, eps, -x, 1.0 - x)
    for i in range(20):
        cap = torch.where(v[i] >= 0, 1.0 - x[i], x[i])
        a = v[i].abs()

        def mass(lam: float, a: Tensor = a, cap: Tensor = cap) -> float:
            return float(torch.minimum((a - lam).clamp_min(0.0), cap).sum())

        lo, hi = 0.0, float(a.max())
        if mass(0.0) > float(eps[i]):
            for _ in range(80):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if mass(mid) > float(eps[i]) else (lo, mid)
        lam = hi if mass(0.0) > float(eps[i]) else 0.0
        ref = torch.minimum((a - lam).clamp_min(0.0), cap) * v[i].sign()
        torch.testing.assert_close(got[i], ref, rtol=0, atol=1e-12)
    assert (got.abs().sum(dim=1) <= eps * (1 + 1e-12) + 1e-15).all()
    assert ((x + got) >= 0).all() and ((x + got) <= 1).all()
    # without a box: the plain L1-ball projection
    torch.testing.assert_close(
        L1Ball().project(torch.tensor([[3.0, -1.0, 0.5]]), torch.tensor([2.0])),
        torch.tensor([[2.0, 0.0, 0.0]]),
    )


def test_apgd_l1_minds_the_box() -> None:
    """``z_1 = 2 sum(x_S) + sum(x_R)``, ``z_0 = c``: the steep coordinates S sit at the upper
    bound, so the exact minimal L1 distance is the margin ``c - z_1`` itself, bought on R at 1
    per unit (room >= 0.3 on each of 10 coordinates); an attack that ignored the box would
    push on S and never move.
    """
    d = 16
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(24, d, generator=g, dtype=torch.float64)
    x[:, :6] = 1.0
    lin = nn.Linear(d, 2).double()
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1, :6] = 2.0
        lin.weight[1, 6:] = 1.0
        lin.bias.zero_()
        c = float(lin(x)[:, 1].max()) + 0.05
        lin.bias[0] = c
        z = lin(x)
    y = torch.zeros(24, dtype=torch.long)
    dist = z[:, 0] - z[:, 1]
    assert (dist > 0).all() and (dist < 2.5).all()
    for loss in ("ce", "dlr-free"):
        if loss == "ce":
            _check_threshold(APGD(lin, norm="l1", steps=100), x, y, dist)
    res = APGD(lin, norm="l1", steps=100).run(x, y, eps=1.01 * dist)
    assert (res.x_adv[:, :6] == 1.0).all()
    assert (res.x_adv.sub(x).abs().sum(dim=1) <= 1.01 * dist * (1 + 1e-9)).all()


# ------------------------------------------------------------------------------ schedule
def _checkpoints_by_the_formula(steps: int) -> list[int]:
    """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); w_j = ceil(p_j N)."""
    p = [Fraction(0), Fraction(22, 100)]
    while p[-1] <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)))
    out: list[int] = []
    for pj in p[1:]:
        w = math.ceil(pj * steps)
        if 0 < w <= steps and w not in out:
            out.append(w)
    return out


def test_apgd_checkpoints_follow_the_formula() -> None:
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]
    for steps in range(1, 400):
        got = checkpoints(steps)
        assert got == _checkpoints_by_the_formula(steps), steps
        assert got == sorted(set(got)) and all(0 < w <= steps for w in got)


def test_apgd_one_forward_backward_per_step() -> None:
    lin, x = affine(k=5, far=3, seed=0, b=8)
    y, linf, _, _ = _exact(lin, x)
    model = Counter(lin)
    APGD(model, steps=20).run(x, y, eps=0.5 * linf.amin(dim=1))
    # template probe + start + 20 steps + the template's final prediction
    assert model.calls == 1 + 21 + 1


def test_apgd_step_size_halves_towards_an_interior_maximum() -> None:
    """The loss peaks at 0.6, inside the ball [0.2, 0.8]: steps of the initial size 2 eps = 0.6
    bounce between the faces of the ball; only the halvings at the checkpoints (with restarts
    from the best point) bring the best iterate within the last step size of the peak."""
    x = torch.full((4, 1), 0.5, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.long)
    res = APGD(Band(-0.01), eps=0.3, steps=100).run(x, y, generator=torch.Generator())
    assert not res.success.any()
    assert ((res.x_adv - 0.6).abs() < 0.6 / 2**7).all(), res.x_adv


# ------------------------------------------------------------------------------ DLR loss
def test_dlr_loss_formula_and_invariances() -> None:
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0], [1.0, 4.0, 2.0, 0.0]])
    y = torch.tensor([0, 0])
    # -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)
    expected = torch.tensor([-(3.0 - 1.0) / (3.0 - 0.0), -(1.0 - 4.0) / (4.0 - 1.0)])
    torch.testing.assert_close(dlr_loss(z, y), expected)
    t = torch.tensor([2, 2])
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    expected_t = torch.tensor([-(3.0 - 0.0) / (3.0 + 0.5), -(1.0 - 2.0) / (4.0 - 0.5)])
    torch.testing.assert_close(dlr_loss(z, y, t), expected_t)
    # shift and positive scale invariant; positive exactly when misclassified
    torch.testing.assert_close(dlr_loss(7.0 * z - 3.0, y), dlr_loss(z, y))
    g = torch.Generator().manual_seed(0)
    zz = torch.randn(200, 6, generator=g)
    yy = torch.randint(0, 6, (200,), generator=g)
    assert torch.equal(dlr_loss(zz, yy) > 0, zz.argmax(dim=1) != yy)


@pytest.mark.parametrize(
    ("logits", "target", "exc", "pattern"),
    [
        (
            torch.zeros(2, 2),
            None,
            ValueError,
            r"DLR loss needs logits with at least 3 classes.*\(2, 2\)",
        ),
        (
            torch.zeros(2, 3),
            torch.tensor([1, 2]),
            ValueError,
            r"targeted DLR loss needs logits with at least 4",
        ),
        (torch.zeros(2, 3, 1), None, ValueError, r"logits must have shape \(B, K\)"),
        ([[0.0, 1.0, 2.0]], None, TypeError, r"logits must be a tensor"),
        (torch.zeros(3, 5), None, ValueError, r"y must have shape \(3,\), got \(2,\)"),
        (torch.zeros(2, 5), torch.tensor([1]), ValueError, r"target must have shape \(2,\)"),
    ],
)
def test_dlr_loss_bad_input(logits: object, target: Tensor | None, exc: type, pattern: str) -> None:
    with pytest.raises(exc, match=pattern):
        dlr_loss(logits, torch.tensor([0, 1]), target)  # type: ignore[arg-type]


def test_apgd_dlr_and_apgdt_need_enough_classes() -> None:
    x = torch.rand(4, 6)
    two = nn.Sequential(nn.Flatten(), nn.Linear(6, 2))
    with pytest.raises(ValueError, match=r"at least 3 classes, got logits of shape \(4, 2\)"):
        APGD(two, loss="dlr", steps=2).run(x)
    APGD(two, loss="ce", steps=2).run(x)  # the cross-entropy works with 2 classes
    three = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    with pytest.raises(ValueError, match=r"APGDT.*at least 4 classes, got model output of shape"):
        APGDT(three, steps=2).run(x)
    with pytest.raises(ValueError, match=r"targeted DLR loss needs logits with at least 4"):
        APGD(three, loss="dlr", steps=2).run(x, target=torch.zeros(4, dtype=torch.long))


# --------------------------------------------------------------------- bookkeeping, APGDT
def test_apgd_restarts_only_on_robust_examples() -> None:
    lin, x = affine(k=5, far=3, seed=0)
    y, linf, _, _ = _exact(lin, x)
    eps = linf.amin(dim=1) * torch.where(torch.arange(len(y)) % 2 == 0, 1.5, 0.5)
    counter = Counter(lin)
    res = APGD(counter, steps=10, restarts=3).run(x, y, eps=eps)
    n = len(y)
    assert torch.equal(res.success, torch.arange(n) % 2 == 0)
    # probe + run 1 on all n rows, runs 2-3 on the n/2 robust rows only, + final prediction
    assert counter.rows == 1 + 11 * n + 2 * 11 * (n // 2) + n


def test_apgdt_targets_runner_up_classes_and_success_is_untargeted() -> None:
    lin, x = affine(k=5, far=0, seed=0)
    y, linf, _, _ = _exact(lin, x)
    eps = 1.05 * linf.amin(dim=1)
    counter = Counter(lin)
    atk = APGDT(counter, steps=20, n_target_classes=2)
    res = atk.run(x, y, eps=eps, generator=torch.Generator().manual_seed(0))
    assert res.target is None and torch.equal(res.success, res.adv_pred != y)
    assert atk.spec().targeted and atk.targets_classes and not APGD(lin).spec().targeted
    # at most two targets: probe-free clean pass + <= 2 runs of 21 passes + final prediction
    assert counter.rows <= n_rows(len(y), 2, 21)
    # a call-time target: success means reaching it
    tgt = (y + 1) % 5
    tres = APGDT(lin, steps=50).run(x, y, eps=torch.full_like(eps, 0.5), target=tgt)
    assert torch.equal(tres.success, tres.adv_pred == tgt) and tres.success.all()


def n_rows(n: int, runs: int, passes: int) -> int:
    return n + runs * passes * n + n


def test_apgd_registered_and_rebuilt_from_spec() -> None:
    assert {"APGD", "APGDT"} <= set(list_attacks("apgd*"))
    lin = nn.Linear(4, 5)
    atk = create_attack("apgd", lin, eps=0.1, norm="l2", loss="dlr", steps=7)
    assert isinstance(atk, APGD) and atk.norm == "l2" and atk.steps == 7
    spec = atk.spec()
    assert spec.kind == "bounded" and spec.eps == 0.1 and spec.build(lin).config() == atk.config()
    t = APGDT(lin, norm="l1", n_target_classes=3)
    assert t.spec().norm == "l1" and t.spec().build(lin).config() == t.config()


# ------------------------------------------------------------- the engine's best iterate
class Band(nn.Module):
    """One input in [0, 1]: class 1 wins only in a narrow band around 0.6 (or nowhere).

    ``z_0 = 0``, ``z_1 = 1000 * (h - (x - 0.6)^2)``: with ``h = 0.0009`` the band is
    ``|x - 0.6| < 0.03``; with ``h < 0`` class 1 never wins and the cross-entropy of class 0
    peaks at 0.6.
    """

    def __init__(self, h: float) -> None:
        super().__init__()
        self.h = h

    def forward(self, x: Tensor) -> Tensor:
        z1 = 1000.0 * (self.h - (x[:, :1] - 0.6) ** 2)
        return torch.cat([torch.zeros_like(z1), z1], dim=1)


@pytest.mark.parametrize("early_stop", [False, True])
def test_engine_returns_the_first_success_not_the_last_iterate(early_stop: bool) -> None:
    """From 0.5 with steps of 0.08: X_1 = 0.58 is in the band, X_2 = 0.66 overshoots it."""
    x = torch.full((1, 1), 0.5, dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    model = Band(0.0009)
    with torch.no_grad():
        assert model(torch.tensor([[0.66]], dtype=torch.float64)).argmax(1).item() == 0
    res = BIM(model, eps=0.2, alpha=0.08, steps=2, early_stop=early_stop).run(x, y)
    assert res.success.all()
    torch.testing.assert_close(res.x_adv, torch.full((1, 1), 0.58, dtype=torch.float64))


def test_engine_returns_the_highest_loss_iterate_when_none_succeeds() -> None:
    x = torch.full((1, 1), 0.5, dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    res = BIM(Band(-0.01), eps=0.2, alpha=0.08, steps=2).run(x, y)
    assert not res.success.any()
    torch.testing.assert_close(res.x_adv, torch.full((1, 1), 0.58, dtype=torch.float64))
    # PGD with restarts: each restart's best iterate competes on its loss
    pgd = PGD(Band(-0.01), eps=0.2, alpha=0.08, steps=2, restarts=3)
    out = pgd.run(x, y, generator=torch.Generator().manual_seed(0)).x_adv
    assert (out - 0.6).abs().item() <= 0.08


def test_engine_early_stop_first_success_plain_run_highest_loss_success(
    affine_binary: Any,
) -> None:
    """Same success set; early stop keeps the first success, the plain run the successful
    iterate with the highest loss (on this affine model: the last one, as before)."""
    a = affine_binary
    g = torch.Generator().manual_seed(3)
    eps = a.linf_min * (0.8 + 0.4 * torch.rand(len(a.y), generator=g, dtype=torch.float64))
    plain = BIM(a.model, steps=30, rel_alpha=0.1).run(a.x, a.y, eps=eps)
    early = BIM(a.model, steps=30, rel_alpha=0.1, early_stop=True).run(a.x, a.y, eps=eps)
    s = plain.success
    assert 0 < int(s.sum()) < len(a.y) and torch.equal(s, early.success)
    ce = F.cross_entropy(a.model(plain.x_adv), a.y, reduction="none").detach()
    ce_early = F.cross_entropy(a.model(early.x_adv), a.y, reduction="none").detach()
    assert (ce[s] >= ce_early[s]).all() and (ce[s] > ce_early[s]).any()
    assert (early.linf[s] <= plain.linf[s]).all()
    # on the affine model the loss grows along the path: the unbroken ones end at the last step
    last = a.x
    e = eps[:, None]
    for _ in range(30):
        xr = last.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(a.model(xr), a.y, reduction="sum"), xr)
        last = torch.minimum(torch.maximum(last + 0.1 * e * grad.sign(), a.x - e), a.x + e)
        last = last.clamp(0.0, 1.0)
    torch.testing.assert_close(plain.x_adv[~s], last[~s], rtol=0, atol=1e-12)


# -------------------------------------------------------------------------- digits model
def test_apgd_ce_at_least_as_strong_as_pgd_on_digits(digits: Digits) -> None:
    m, x, y = digits.model, digits.x, digits.y
    for eps in (0.1, 0.15):
        pgd = PGD(m, eps, steps=20, rel_alpha=0.1).run(
            x, y, generator=torch.Generator().manual_seed(0)
        )
        apgd = APGD(m, eps, steps=20).run(x, y, generator=torch.Generator().manual_seed(0))
        assert float(apgd.success.float().mean()) >= float(pgd.success.float().mean())
        assert (apgd.linf <= eps + 1e-6).all()
