"""Closed-form oracles on affine classifiers z = W x + b, and the target rules of the presets."""

from __future__ import annotations

import math
from typing import Any as Affine

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust.attacks import BIM, CWL2, FGSM, PGD, IterLL, StepLL, StepRnd


def grad_ce(model: nn.Module, x: Tensor, label: Tensor) -> Tensor:
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xr), label, reduction="sum"), xr)
    return g


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


@pytest.mark.parametrize("fixture", ["affine_binary", "affine_blocks"])
def test_attacks_fgsm_is_exactly_the_sign_step(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    a: Affine = request.getfixturevalue(fixture)
    eps = 0.05
    expected = a.x + eps * grad_ce(a.model, a.x, a.y).sign()
    assert torch.equal(FGSM(a.model, eps, bounds=a.bounds)(a.x, a.y), expected)
    # y=None: the model's own predictions (here equal to y, which is the argmax)
    assert torch.equal(FGSM(a.model, eps, bounds=a.bounds)(a.x), expected)
    g = grad_ce(a.model, a.x, a.y)
    expected_l2 = a.x + eps * g / g.norm(dim=1, keepdim=True)
    got = FGSM(a.model, eps, norm="l2", bounds=a.bounds)(a.x, a.y)
    torch.testing.assert_close(got, expected_l2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fixture", ["affine_binary", "affine_blocks"])
def test_attacks_cwl2_within_one_percent_of_minimal_l2(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    a: Affine = request.getfixturevalue(fixture)
    res = CWL2(a.model, bounds=a.bounds).run(a.x, a.y)  # documented defaults
    assert res.success.all()
    assert (res.l2 >= a.l2_min * (1 - 1e-9)).all()  # nothing beats the exact minimum
    assert (res.l2 <= 1.01 * a.l2_min).all(), (res.l2 / a.l2_min).max()
    # the bounds do not bind: the answer lies strictly inside the box
    assert (res.x_adv > 0).all() and (res.x_adv < 1).all()


_LINF = {
    "BIM-kurakin": lambda m, b: BIM(m, bounds=b),  # Kurakin's defaults, steps from the largest eps
    "BIM": lambda m, b: BIM(m, steps=40, rel_alpha=0.05, bounds=b),
    "PGD": lambda m, b: PGD(m, steps=40, rel_alpha=0.05, bounds=b),
    "PGD-early": lambda m, b: PGD(m, steps=20, rel_alpha=0.1, early_stop=True, bounds=b),
    "IterLL": lambda m, b: IterLL(m, steps=40, rel_alpha=0.05, bounds=b),
}
# iter. l.l. heads for the least-likely class, not the closest boundary: with two classes
# those coincide, with more they do not, so it is checked on the binary model only.
_LINF_CASES = [
    (f, n)
    for f in ("affine_binary", "affine_blocks")
    for n in _LINF
    if (n, f) != ("IterLL", "affine_blocks")
]


@pytest.mark.parametrize(("fixture", "name"), _LINF_CASES)
def test_attacks_linf_iterative_succeed_just_above_minimal_linf(
    fixture: str, name: str, request: pytest.FixtureRequest
) -> None:
    a: Affine = request.getfixturevalue(fixture)
    atk = _LINF[name](a.model, a.bounds)
    above = atk.run(a.x, a.y, eps=1.02 * a.linf_min, generator=torch.Generator().manual_seed(0))
    assert above.success.all(), (~above.success).sum()
    assert (above.linf <= 1.02 * a.linf_min * (1 + 1e-9)).all()
    below = atk.run(a.x, a.y, eps=0.999 * a.linf_min, generator=torch.Generator().manual_seed(0))
    assert not below.success.any()


@pytest.mark.parametrize(
    "make",
    [
        lambda m, b: BIM(m, steps=40, rel_alpha=0.05, norm="l2", bounds=b),
        lambda m, b: PGD(m, steps=40, rel_alpha=0.1, norm="l2", bounds=b),
        lambda m, b: FGSM(m, norm="l2", bounds=b),
    ],
    ids=["BIM-l2", "PGD-l2", "FGM-l2"],
)
def test_attacks_l2_succeed_just_above_minimal_l2(affine_binary: Affine, make: object) -> None:
    a = affine_binary
    atk = make(a.model, a.bounds)  # type: ignore[operator]
    above = atk.run(a.x, a.y, eps=1.02 * a.l2_min, generator=torch.Generator().manual_seed(0))
    assert above.success.all()
    below = atk.run(a.x, a.y, eps=0.999 * a.l2_min, generator=torch.Generator().manual_seed(0))
    assert not below.success.any()


@pytest.mark.parametrize("fixture", ["affine_binary", "affine_blocks"])
def test_attacks_never_below_the_minimal_distance(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    a: Affine = request.getfixturevalue(fixture)
    g = torch.Generator().manual_seed(0)
    for atk in [
        FGSM(a.model),
        StepLL(a.model),
        StepRnd(a.model),
        BIM(a.model, steps=30, rel_alpha=0.1),
        IterLL(a.model, steps=30, rel_alpha=0.1),
        PGD(a.model, steps=30, rel_alpha=0.1, restarts=2),
    ]:
        res = atk.run(a.x, a.y, eps=0.999 * a.linf_min, generator=g)
        assert not res.success.any(), atk
    for atk in [FGSM(a.model, norm="l2"), PGD(a.model, steps=30, rel_alpha=0.1, norm="l2")]:
        res = atk.run(a.x, a.y, eps=0.999 * a.l2_min, generator=g)
        assert not res.success.any(), atk


def test_attacks_step_ll_targets_argmin_of_clean_logits(affine_blocks: Affine) -> None:
    a = affine_blocks
    eps = 0.05
    ll = a.model(a.x).argmin(dim=1)
    assert not torch.equal(ll, a.y)
    expected = a.x - eps * grad_ce(a.model, a.x, ll).sign()
    assert torch.equal(StepLL(a.model, eps)(a.x, a.y), expected)
    assert not torch.equal(expected, FGSM(a.model, eps)(a.x, a.y))


def test_attacks_iter_ll_keeps_the_target_fixed(affine_blocks: Affine) -> None:
    a = affine_blocks
    eps, alpha, steps = 0.2, 0.03, 8
    ll = a.model(a.x).argmin(dim=1)
    xk = a.x.clone()
    iterates = [xk]
    for _ in range(steps):
        xk = xk - alpha * grad_ce(a.model, xk, ll).sign()
        xk = torch.minimum(torch.maximum(xk, a.x - eps), a.x + eps).clamp(0, 1)
        iterates.append(xk)
    # the engine returns the best iterate of this trajectory: among the misclassified ones if
    # any, the one closest to the least-likely class (lowest J(., y_LL))
    traj = torch.stack(iterates)  # (T + 1, B, d)
    with torch.no_grad():
        z = a.model(traj)
    wrong = z.argmax(dim=2) != a.y
    closeness = -F.cross_entropy(z.transpose(1, 2), ll.expand(steps + 1, -1), reduction="none")
    rank = torch.where(wrong | ~wrong.any(0), closeness, -math.inf)
    best = rank.argmax(0)
    expected = traj[best, torch.arange(len(a.y))]
    assert bool((best < steps).any())  # an earlier iterate, not the last one, is returned
    assert torch.equal(IterLL(a.model, eps, alpha=alpha, steps=steps)(a.x, a.y), expected)
    # one step of size eps is exactly step l.l.
    one = IterLL(a.model, eps, steps=1, rel_alpha=1.0)(a.x, a.y)
    assert torch.equal(one, StepLL(a.model, eps)(a.x, a.y))


def test_attacks_step_rnd_never_picks_the_true_class(affine_blocks: Affine) -> None:
    a = affine_blocks
    eps, k = 0.05, 4
    candidates = torch.stack(
        [a.x - eps * grad_ce(a.model, a.x, torch.full_like(a.y, j)).sign() for j in range(k)], 1
    )
    assert all(
        not torch.equal(candidates[:, i], candidates[:, j]) for i in range(k) for j in range(i)
    )
    seen = torch.zeros(len(a.y), k, dtype=torch.bool)
    for seed in range(25):
        out = StepRnd(a.model, eps)(a.x, a.y, generator=torch.Generator().manual_seed(seed))
        match = (candidates == out[:, None]).all(dim=2)
        assert (match.sum(1) == 1).all()
        chosen = match.float().argmax(1)
        assert not (chosen == a.y).any()
        seen |= match
    # every other class gets picked for every example, the true class never
    assert torch.equal(seen, ~F.one_hot(a.y, k).bool())


@pytest.mark.parametrize(
    "make",
    [
        lambda m: FGSM(m, 0.5),
        lambda m: StepLL(m, 0.5),
        lambda m: StepRnd(m, 0.5),
        lambda m: BIM(m, 0.5, steps=20, rel_alpha=0.1),
        lambda m: IterLL(m, 0.5, steps=20, rel_alpha=0.1),
        lambda m: PGD(m, 0.5, steps=20, rel_alpha=0.1),
        lambda m: PGD(m, 2.0, steps=20, rel_alpha=0.1, norm="l2"),
        lambda m: CWL2(m, steps=200, binary_search_steps=5),
    ],
    ids=["FGSM", "StepLL", "StepRnd", "BIM", "IterLL", "PGD", "PGD-l2", "CWL2"],
)
def test_attacks_targeted_success_means_pred_equals_target(
    affine_blocks: Affine, make: object
) -> None:
    a = affine_blocks
    atk = make(a.model)  # type: ignore[operator]
    target = (a.y + 1 + torch.arange(len(a.y)) % 3) % 4
    res = atk.run(a.x, a.y, target=target, generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.target, target)
    assert torch.equal(res.success, res.adv_pred == target)
    if not isinstance(atk, (FGSM, StepLL, StepRnd)):
        assert res.success.all()  # iterative targeted attacks reach every target here
    # untargeted success is a different criterion
    un = atk.run(a.x, a.y, generator=torch.Generator().manual_seed(0))
    assert un.target is None and torch.equal(un.success, un.adv_pred != a.y)


def test_attacks_early_stop_same_success_set_and_less_work(affine_binary: Affine) -> None:
    a = affine_binary
    g = torch.Generator().manual_seed(3)
    eps = a.linf_min * (0.8 + 0.4 * torch.rand(len(a.y), generator=g, dtype=torch.float64))
    plain, early = Counter(a.model), Counter(a.model)
    r0 = BIM(plain, steps=30, rel_alpha=0.1).run(a.x, a.y, eps=eps)
    r1 = BIM(early, steps=30, rel_alpha=0.1, early_stop=True).run(a.x, a.y, eps=eps)
    assert 0 < int(r0.success.sum()) < len(a.y)
    assert torch.equal(r0.success, r1.success)
    assert early.rows < plain.rows
    # examples that succeeded stopped moving: not further from x than the full run
    assert (r1.linf[r1.success] <= r0.linf[r1.success]).all()
    # PGD as well, same generator: the same random start
    p0 = PGD(a.model, steps=30, rel_alpha=0.1).run(
        a.x, a.y, eps=eps, generator=torch.Generator().manual_seed(0)
    )
    p1 = PGD(a.model, steps=30, rel_alpha=0.1, early_stop=True).run(
        a.x, a.y, eps=eps, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(p0.success, p1.success)


def test_attacks_pgd_restarts_only_robust_examples_and_keep_successes(
    affine_blocks: Affine,
) -> None:
    a = affine_blocks
    eps = a.linf_min * 1.1
    one = PGD(a.model, steps=2, rel_alpha=0.5).run(
        a.x, a.y, eps=eps, generator=torch.Generator().manual_seed(0)
    )
    counter = Counter(a.model)
    many = PGD(counter, steps=2, rel_alpha=0.5, restarts=4).run(
        a.x, a.y, eps=eps, generator=torch.Generator().manual_seed(0)
    )
    n = len(a.y)
    assert 0 < int(one.success.sum()) < n
    # the first restart is the single run; restarts keep every success and add some
    assert (many.success | ~one.success).all()
    assert int(many.success.sum()) > int(one.success.sum())
    # rows: probe (1) + restart 1 (2 steps + check on all n) + later restarts on fewer rows + final
    assert counter.rows < 1 + 4 * 3 * n + n


@pytest.mark.parametrize(
    ("eps", "steps"), [(8 / 255, 10), (16 / 255, 20), (2 / 255, 3), (0.0, 1), (0.3, 81)]
)
def test_attacks_bim_kurakin_schedule(eps: float, steps: int) -> None:
    model = Counter(nn.Linear(4, 3))
    x = torch.rand(3, 4)
    BIM(model, eps)(x, torch.tensor([0, 1, 2]))
    # the first step reuses the clean forward pass; a multi-step run spends one more forward
    # pass (no backward) scoring its last iterate for the best-iterate bookkeeping
    passes = steps + 1 if steps > 1 else steps
    assert model.calls == passes
    model.calls = 0
    per_example = torch.tensor([0.0, eps / 2, eps])
    BIM(model)(x, torch.tensor([0, 1, 2]), eps=per_example)  # the largest eps sets the count
    assert model.calls == passes


def test_attacks_rel_alpha_is_per_example() -> None:
    model = nn.Linear(4, 3).double()
    x = torch.full((2, 4), 0.5, dtype=torch.float64)
    y = torch.tensor([0, 1])
    eps = torch.tensor([0.1, 0.2], dtype=torch.float64)
    out = BIM(model, steps=1, rel_alpha=0.5)(x, y, eps=eps)
    torch.testing.assert_close((out - x).abs().amax(dim=1), eps / 2)
