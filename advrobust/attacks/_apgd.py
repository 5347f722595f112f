"""Auto-PGD: APGD and APGD-T with their step-size schedule.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (Linf and L2), and Croce & Hein, "Mind the box: l1-APGD for
sparse adversarial attacks on image classifiers", ICML 2021 (L1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final, final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust._validate import check_int, check_logits, check_nonnegative, check_probability

from ._base import Attack, CleanForward, _succeeded
from ._checks import check_option
from ._l1 import ball_for, project_l1_box
from ._losses import dlr_loss
from ._registry import register_attack
from ._threat import ThreatModel, _draw, _per_example

__all__ = ["APGD", "APGDT", "checkpoints"]

_LOSSES: Final = ("ce", "dlr")
_MOMENTUM: Final = 0.75
# Checkpoint schedule in hundredths of the step budget: p_1 = 0.22, minimum gap 0.06,
# the gap shrinking by 0.03 per checkpoint (Croce & Hein 2020, sec. 3.2).
_P1: Final = 22
_P_MIN_GAP: Final = 6
_P_SHRINK: Final = 3
# l1-APGD (Croce & Hein 2021): initial sparsity of the update, its adaptation, and the step
# size schedule of the authors' implementation (checked every 4% of the steps).
_L1_TOPK0: Final = 0.2
_L1_TOPK_DIV: Final = 1.5
_L1_STEP_DIV: Final = 1.5
_L1_MIN_STEP: Final = 10.0
_L1_CHECK: Final = 0.04
_L1_SPARSER: Final = 0.95

LossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


# --------------------------------------------------------------------- the schedule
def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step size (Croce & Hein 2020, sec. 3.2).

    ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, keeping ``0 < w_j <= steps`` (and each
    iteration once). The arithmetic is exact (hundredths), so ``0.22 * 100`` is 22, not 23.

    Example:
        >>> checkpoints(100)
        [22, 41, 57, 70, 80, 87, 93, 99]
    """
    out: list[int] = []
    prev, cur = 0, _P1
    while True:
        w = -((-cur * steps) // 100)  # ceil(cur * steps / 100) in integers
        if w > steps:
            return out
        if w > 0 and (not out or w > out[-1]):
            out.append(w)
        prev, cur = cur, cur + max(cur - prev - _P_SHRINK, _P_MIN_GAP)


def _objective(loss: str) -> LossFn:
    """The per-example loss APGD maximises: CE or DLR, towards ``target`` when given."""

    def ce(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if target is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, target, reduction="none")

    def dlr(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        return dlr_loss(logits, y, target)

    return ce if loss == "ce" else dlr


# ------------------------------------------------------------------------- the attack
class _APGDBase(Attack):
    """The APGD iteration shared by APGD and APGDT (one run from one random start)."""

    eps: float
    steps: int
    restarts: int
    rho: float
    _ball: ThreatModel

    def _setup(self, eps: float, norm: str, steps: int, restarts: int, rho: float) -> None:
        self.eps = check_nonnegative(eps, "eps")
        self._ball = ball_for(norm)
        self.norm = norm
        self.steps = check_int(steps, "steps", minimum=1)
        self.restarts = check_int(restarts, "restarts", minimum=1)
        self.rho = check_probability(rho, "rho")

    @property
    def _default_eps(self) -> float | None:
        return self.eps

    @property
    def _threat(self) -> ThreatModel | None:
        return self._ball

    def _start(self, x: Tensor, eps: Tensor, generator: torch.Generator | None) -> Tensor:
        lo, hi = self.bounds
        if self.norm == "l1":
            noise = _draw("randn", tuple(x.shape), x, generator)
            return x + project_l1_box(noise, eps, lo - x, hi - x)
        return self._ball.random_start(x, eps, generator).clamp(lo, hi)

    def _evaluate(
        self,
        x_in: Tensor,
        y: Tensor,
        target: Tensor | None,
        goal: Tensor,
        targeted: bool,
        loss_fn: LossFn,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Loss, input gradient and success at ``x_in``: one forward and one backward pass."""
        xi = x_in.detach().requires_grad_(True)
        logits = check_logits(self.model(xi), xi.shape[0])
        loss = loss_fn(logits, y, target)
        (g,) = torch.autograd.grad(loss.sum(), xi)
        work = torch.promote_types(loss.dtype, torch.float32)
        succ = _succeeded(logits.detach().argmax(dim=1), goal, targeted)
        return loss.detach().to(work), g.detach(), succ

    def _run(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        goal: Tensor,
        targeted: bool,
        loss_fn: LossFn,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One APGD run from a random start: ``(x_out, loss_out, success)`` per example.

        ``x_out`` is the successful iterate with the highest loss where one exists, else the
        iterate with the highest loss; ``loss_out`` is ``+inf`` where the run succeeded. No
        host syncs: every per-example decision (best point, step-size halving, restart from
        the best point) is a mask.
        """
        lo, hi = self.bounds
        ball, steps, l1 = self._ball, self.steps, self.norm == "l1"

        def shaped(v: Tensor) -> Tensor:
            return _per_example(v, x)

        x_cur = self._start(x, eps, generator)
        f, g, succ = self._evaluate(x_cur, y, target, goal, targeted, loss_fn)
        adv, adv_f, found = x_cur, f, succ
        best_x, best_f, best_g = x_cur, f, g
        x_prev, f_last = x_cur, f
        eta = (1.0 if l1 else 2.0) * eps
        n_incr = torch.zeros_like(f)
        f_best_check = best_f
        reduced = torch.zeros_like(succ)
        marks = set(checkpoints(steps))
        last_mark = 0
        if l1:
            d = x[0].numel()
            topk = torch.full_like(f, _L1_TOPK0)
            sp_old = torch.full_like(f, float(d))
            l1_every = max(int(_L1_CHECK * steps), 1)
        for k in range(steps):
            with torch.no_grad():
                if l1:
                    new = self._l1_step(x, x_cur, g, eps, eta, topk)
                else:
                    z = ball.clip(x_cur + shaped(eta) * ball.ascent_direction(g), x, eps)
                    z = z.clamp(lo, hi)
                    a = 1.0 if k == 0 else _MOMENTUM
                    new = x_cur + a * (z - x_cur) + (1.0 - a) * (x_cur - x_prev)
                    new = ball.clip(new, x, eps).clamp(lo, hi)
            x_prev, x_cur = x_cur, new
            f, g, succ = self._evaluate(x_cur, y, target, goal, targeted, loss_fn)
            with torch.no_grad():
                n_incr = n_incr + (f > f_last).to(f.dtype)
                f_last = f
                take = succ & (~found | (f > adv_f))
                adv = torch.where(shaped(take), x_cur, adv)
                adv_f = torch.where(take, f, adv_f)
                found = found | succ
                better = f > best_f
                best_x = torch.where(shaped(better), x_cur, best_x)
                best_g = torch.where(shaped(better), g, best_g)
                best_f = torch.where(better, f, best_f)
                it = k + 1
                if not l1 and it in marks:
                    # halve where fewer than rho of the steps since the last checkpoint raised
                    # the loss, or where neither the step size nor the best loss changed
                    few = n_incr < self.rho * (it - last_mark)
                    stuck = ~reduced & (best_f <= f_best_check)
                    cut = few | stuck
                    eta = torch.where(cut, eta / 2.0, eta)
                    x_cur = torch.where(shaped(cut), best_x, x_cur)
                    x_prev = torch.where(shaped(cut), best_x, x_prev)
                    g = torch.where(shaped(cut), best_g, g)
                    f_last = torch.where(cut, best_f, f_last)
                    reduced, f_best_check, last_mark = cut, best_f, it
                    n_incr = torch.zeros_like(n_incr)
                elif l1 and it % l1_every == 0:
                    # l1-APGD: the update follows the sparsity of the best point; a sparser
                    # best point resets the step size and restarts there, else it shrinks
                    sp = (best_x != x).flatten(1).sum(dim=1).to(f.dtype)
                    sparser = sp < _L1_SPARSER * sp_old
                    topk = sp / d / _L1_TOPK_DIV
                    full = eps.to(eta.dtype)
                    eta = torch.where(sparser, full, eta / _L1_STEP_DIV)
                    eta = torch.minimum(torch.maximum(eta, full / _L1_MIN_STEP), full)
                    sp_old = sp
                    x_cur = torch.where(shaped(sparser), best_x, x_cur)
                    g = torch.where(shaped(sparser), best_g, g)
        out = torch.where(shaped(found), adv, best_x)
        return out, torch.where(found, math.inf, best_f), found

    def _l1_step(
        self, x: Tensor, x_cur: Tensor, g: Tensor, eps: Tensor, eta: Tensor, topk: Tensor
    ) -> Tensor:
        """l1-APGD's sparse step, projected onto the L1 ball intersected with the box.

        The step moves the ``ceil(topk * d)`` coordinates with the largest ``|g_i|`` (among
        those the box lets move in the direction of ``sign(g_i)``) by ``eta / k`` each, so the
        step has L1 norm ``eta`` (Croce & Hein 2021, sec. 3.2).
        """
        lo, hi = self.bounds
        b = x.shape[0]
        blocked = ((x_cur >= hi) & (g > 0)) | ((x_cur <= lo) & (g < 0))
        gf = torch.where(blocked, torch.zeros_like(g), g).flatten(1)
        mag = gf.abs()
        d = mag.shape[1]
        idx = ((1.0 - topk) * d).long().clamp(0, d - 1)[:, None]
        thr = mag.sort(dim=1).values.gather(1, idx)
        direction = gf.sign() * (mag >= thr)
        count = direction.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
        step = (eta.reshape(b, 1).to(gf.dtype) * direction / count).reshape(x.shape)
        delta = project_l1_box(x_cur + step - x, eps, lo - x, hi - x)
        return x + delta

    def _attack(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        runs: list[Tensor | None],
        goal: Tensor,
        targeted: bool,
        loss_fn: LossFn,
        generator: torch.Generator | None,
    ) -> Tensor:
        """``restarts`` runs per entry of ``runs`` (a target per example, or None).

        Every run after the first takes only the examples not yet broken; each example keeps
        its success, else its highest loss over all runs.
        """
        best = x
        best_f = torch.full((x.shape[0],), -math.inf, device=x.device)
        done: Tensor | None = None
        for tgt in runs:
            for _ in range(self.restarts):
                if done is None:  # the first run takes the whole batch: no sync
                    out, f, succ = self._run(x, y, eps, tgt, goal, targeted, loss_fn, generator)
                    best, best_f, done = out, f.to(best_f.dtype), succ
                    continue
                rem = (~done).nonzero().squeeze(1)  # one host sync per run
                if rem.numel() == 0:
                    return best
                ts = None if tgt is None else tgt[rem]
                out, f, succ = self._run(
                    x[rem], y[rem], eps[rem], ts, goal[rem], targeted, loss_fn, generator
                )
                better = succ | (f.to(best_f.dtype) > best_f[rem])
                upd = rem[better]
                best = best.index_copy(0, upd, out[better])
                best_f = best_f.index_copy(0, upd, f.to(best_f.dtype)[better])
                done = done.index_copy(0, rem, succ)
        return best


@final
@register_attack(
    description="Auto-PGD: step-size-free PGD with momentum and checkpoints, CE or DLR loss",
    paper=(
        'Croce, Hein, "Reliable evaluation of adversarial robustness with an ensemble of '
        'diverse parameter-free attacks", ICML 2020'
    ),
)
class APGD(_APGDBase):
    """Auto-PGD (Croce & Hein 2020, Algorithm 1): PGD without a step size to tune.

    From a random start ``x_0`` in the ball ``S`` (intersected with the box), step size
    ``eta = 2 eps`` and momentum ``a = 0.75`` (``a = 1`` for the first step):

    ```text
    z_{k+1} = P_S( x_k + eta * dir(grad f(x_k)) )
    x_{k+1} = P_S( x_k + a (z_{k+1} - x_k) + (1 - a) (x_k - x_{k-1}) )
    ```

    with ``dir(g) = sign(g)`` (Linf) or ``g / ||g||_2`` (L2). At the checkpoints
    ``w_j = ceil(p_j N)``, ``p_0 = 0``, ``p_1 = 0.22``,
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (22, 41, 57, 70, 80, 87, 93 and 99
    for ``N = 100``; sec. 3.2 of the paper), the step size of an example is
    halved, and it restarts from its highest-loss point (without momentum), when fewer than a
    fraction ``rho = 0.75`` of the steps since the last checkpoint raised the loss, or when
    neither its step size nor its best loss changed since the last checkpoint.

    ``norm="l1"`` is l1-APGD (Croce & Hein 2021): the step moves the top-k coordinates of the
    gradient (those the box lets move) by ``eta / k`` each, the iterate is projected exactly
    onto the intersection of the L1 ball and the box, ``eta`` starts at ``eps``, and every 4%
    of the steps ``k`` follows the sparsity of the best point (``||x_best - x||_0 / 1.5``),
    ``eta`` resets to ``eps`` with a restart from the best point when that point got sparser,
    else shrinks by 1.5 (within ``[eps/10, eps]``); there is no momentum (as in the
    authors' implementation).

    ``loss="ce"`` maximises the cross-entropy, ``loss="dlr"`` the DLR loss
    ([`dlr_loss`][advrobust.attacks.dlr_loss]; needs >= 3 classes). A targeted call
    (``target=``) maximises ``-CE(x, t)`` or the targeted DLR loss (>= 4 classes). Each example
    gets a successful iterate whenever one was found (the one with the highest loss), else its
    highest-loss iterate (AutoAttack's bookkeeping); ``restarts > 1``
    runs again from new random starts on the examples not yet broken only. Every step is one
    forward and one backward pass (``steps + 1`` per run, the start included); the loop has no
    host syncs (one per restart).

    Args:
        model: Classifier returning logits ``(B, K)``.
        eps: Radius in input units (a ``(B,)`` tensor at call time for per-example radii).
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        loss: ``"ce"`` or ``"dlr"``.
        steps: Iterations ``N`` per run.
        restarts: Runs from random starts (later ones on the still-robust examples only).
        rho: Fraction of loss-increasing steps below which the step size is halved.
        bounds: Input box ``(lo, hi)``.

    Result: ``x_adv`` when called; an [`AttackResult`][advrobust.attacks.AttackResult] from ``run``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For negative eps, an unknown norm or loss, steps or restarts < 1, rho
            outside [0, 1], or (at call time) ``loss="dlr"`` on a model with fewer than 3
            classes.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> atk = APGD(model, eps=0.1, steps=10, loss="dlr")
        >>> res = atk.run(torch.rand(2, 4), generator=torch.Generator().manual_seed(0))
        >>> bool((res.linf <= 0.1 + 1e-6).all())
        True

    Reference:
        Croce, Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
        parameter-free attacks", ICML 2020; Croce, Hein, "Mind the box: l1-APGD for sparse
        adversarial attacks on image classifiers", ICML 2021.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        norm: str = "linf",
        loss: str = "ce",
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, bounds=bounds)
        self._setup(eps, norm, steps, restarts, rho)
        self.loss = check_option(loss, "loss", _LOSSES)

    def _perturb(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        guide: Tensor | None,
        generator: torch.Generator | None,
        clean: CleanForward | None,
    ) -> Tensor:
        targeted = target is not None
        goal = target if target is not None else y
        loss_fn = _objective(self.loss)
        return self._attack(x, y, eps, [target], goal, targeted, loss_fn, generator)


@final
@register_attack(
    description="Auto-PGD on the targeted DLR loss, once per top-k runner-up class",
    paper=(
        'Croce, Hein, "Reliable evaluation of adversarial robustness with an ensemble of '
        'diverse parameter-free attacks", ICML 2020'
    ),
)
class APGDT(_APGDBase):
    """APGD-T: APGD on the targeted DLR loss over the top runner-up classes (Croce & Hein 2020).

    For ``j = 1 .. n_target_classes``, APGD (same schedule as
    [`APGD`][advrobust.attacks.APGD]) maximises the targeted DLR loss

    ```text
    DLR-T(z, y, t_j) = -(z_y - z_{t_j}) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)
    ```

    towards ``t_j``, the class with the j-th highest clean logit other than ``y``, on the
    examples not broken by the earlier targets (``restarts`` runs per target). Success stays
    untargeted (``adv_pred != y``): the targets only guide the search. A call-time
    ``target=`` runs the targeted DLR loss towards that class only, and success then means
    ``adv_pred == target``. Needs a model with at least 4 classes.

    Args:
        model: Classifier returning logits ``(B, K)`` with ``K >= 4``.
        eps: Radius in input units.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        steps: Iterations per run.
        restarts: Runs per target class.
        n_target_classes: How many runner-up classes to try (at most ``K - 1`` are used).
        rho: Fraction of loss-increasing steps below which the step size is halved.
        bounds: Input box ``(lo, hi)``.

    Result: ``x_adv`` when called; an [`AttackResult`][advrobust.attacks.AttackResult] from ``run``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For negative eps, an unknown norm, steps, restarts or n_target_classes
            < 1, rho outside [0, 1], or (at call time) a model with fewer than 4 classes.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 5))
        >>> atk = APGDT(model, eps=0.1, steps=5, n_target_classes=2)
        >>> atk.spec().targeted
        True
        >>> atk(torch.rand(3, 4), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 4])

    Reference:
        Croce, Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
        parameter-free attacks", ICML 2020.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        n_target_classes: int = 9,
        rho: float = 0.75,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, bounds=bounds)
        self._setup(eps, norm, steps, restarts, rho)
        self.n_target_classes = check_int(n_target_classes, "n_target_classes", minimum=1)

    @property
    def targets_classes(self) -> bool:
        """True: an untargeted call moves towards the top runner-up classes in turn."""
        return True

    @property
    def _wants_clean_logits(self) -> bool:
        return True

    def _perturb(
        self,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        target: Tensor | None,
        guide: Tensor | None,
        generator: torch.Generator | None,
        clean: CleanForward | None,
    ) -> Tensor:
        if clean is None:  # pragma: no cover - _wants_clean_logits asks the template for it
            raise RuntimeError("internal error: APGDT needs the clean logits")
        logits = clean.logits.detach()
        k = logits.shape[1]
        if k < 4:
            raise ValueError(
                f"APGDT's targeted DLR loss needs a model with at least 4 classes, got model "
                f"output of shape {tuple(logits.shape)} (use APGD for fewer classes)"
            )
        loss_fn = _objective("dlr")
        if target is not None:
            return self._attack(x, y, eps, [target], target, True, loss_fn, generator)
        own = F.one_hot(y, k).bool()
        n = min(self.n_target_classes, k - 1)
        runners = logits.masked_fill(own, -math.inf).topk(n, dim=1).indices
        runs: list[Tensor | None] = [runners[:, j] for j in range(n)]
        return self._attack(x, y, eps, runs, y, False, loss_fn, generator)
