"""Square Attack: a gradient-free random search with square-shaped updates."""

from __future__ import annotations

import functools
import math
from typing import Final, final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advrobust._validate import check_int, check_logits, check_nonnegative, check_positive

from ._base import Attack, CleanForward, _succeeded
from ._checks import check_option
from ._losses import logit_margin
from ._registry import register_attack
from ._threat import ThreatModel, threat_from_norm

__all__ = ["Square"]

_LOSSES: Final = ("margin", "ce")
# The paper's schedule of p for a budget of 10,000 queries: p = p_init / 2**k after the
# iteration counts below (Andriushchenko et al. 2020, sec. 4 and the supplementary material).
_P_STEPS: Final = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_P_BUDGET: Final = 10_000
_INIT_TILES: Final = 5


def _rows_left(keep: Tensor) -> Tensor | None:
    """Indices of the ``True`` rows of ``keep``; None when every row is kept.

    One host sync. On the ``meta`` device (no data) every row is kept.
    """
    if keep.device.type == "meta" or bool(keep.all()):
        return None
    return keep.nonzero().squeeze(1)


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, moved to ``like``'s device."""
    device = generator.device if generator is not None else like.device
    out = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return out.to(like.device)


def _randint(high: int, n: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` integers uniform in ``[0, high)`` (on ``like``'s device)."""
    device = generator.device if generator is not None else like.device
    out = torch.randint(0, high, (n,), generator=generator, device=device)
    return out.to(like.device)


def _signs(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform random signs ``+-1`` in ``like``'s dtype."""
    u = _uniform(shape, like, generator)
    return torch.where(u < 0.5, -1.0, 1.0).to(like.dtype)


def p_schedule(p_init: float, it: int, queries: int) -> float:
    """The fraction ``p`` of pixels a square covers at iteration ``it`` of a ``queries`` budget.

    The paper's piecewise-constant schedule for 10,000 queries, halving ``p`` after
    iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000, rescaled to ``queries``.

    Example:
        >>> p_schedule(0.8, 0, 10_000), p_schedule(0.8, 60, 10_000), p_schedule(0.8, 30, 1_000)
        (0.8, 0.2, 0.1)
    """
    scaled = int(it * _P_BUDGET / queries)
    halvings = sum(1 for s in _P_STEPS if scaled > s)
    return p_init * 0.5**halvings


def _window(p: float, h: int, w: int, min_side: int) -> tuple[int, int]:
    """Side lengths ``(sh, sw)`` of a window covering a fraction ``p`` of an ``h x w`` grid.

    A square of side ``round(sqrt(p h w))`` on 2-D grids; on a 1-D grid (``h == 1`` or
    ``w == 1``) an interval of length ``round(p * n)``. At least ``min_side``, at most the grid.
    """
    area = p * h * w
    if h > 1 and w > 1:
        side = max(round(math.sqrt(area)), min_side)
        if min_side > 1 and side % 2 == 0:
            side += 1  # odd sides give the centre-mass pattern a centre pixel
        side = min(side, h, w)
        return side, side
    length = max(round(area), min_side)
    return (1, min(length, w)) if h == 1 else (min(length, h), 1)


def _centre_mass(a: int, b: int) -> Tensor:
    """Nested rectangles around the centre of an ``a x b`` grid, unit L2 norm (float64, CPU).

    A pixel at Chebyshev distance ``m`` from the centre gets ``sum_{k >= m} 1 / (k + 1)**2``
    (the paper's eq. 2 for the L2 attack): the mass concentrates at the centre.
    """
    rings = max(a // 2, b // 2) + 1
    weights = 1.0 / torch.arange(1, rings + 1, dtype=torch.float64) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[m] = sum_{k >= m} weights[k]
    i = (torch.arange(a) - a // 2).abs()
    j = (torch.arange(b) - b // 2).abs()
    out: Tensor = tail[torch.maximum(i[:, None], j[None, :])]
    total: Tensor = out.norm()
    return out / total


@functools.lru_cache(maxsize=128)
def _l2_pattern_cpu(sh: int, sw: int) -> Tensor:
    """The L2 update's square (see ``_l2_pattern``), cached per size; never modified."""
    if sh >= sw and sh >= 2:
        out = torch.cat([_centre_mass(sh // 2, sw), -_centre_mass(sh - sh // 2, sw)], dim=0)
    elif sw >= 2:
        out = torch.cat([_centre_mass(sh, sw // 2), -_centre_mass(sh, sw - sw // 2)], dim=1)
    else:
        return torch.ones(1, 1, dtype=torch.float64)
    unit: Tensor = out / out.norm()
    return unit


def _l2_pattern(sh: int, sw: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The L2 update's square: two centre-mass halves of opposite sign, unit L2 norm.

    The halves split the longer side (rows on a square); a ``1 x 1`` window is ``[[1]]``.
    """
    return _l2_pattern_cpu(sh, sw).to(device=device, dtype=dtype)


def _as_grid(x: Tensor) -> Tensor:
    """``x`` as ``(B, C, H, W)``: ``(B, D)`` as ``(B, 1, 1, D)``, ``(B, H, W)`` with C = 1."""
    if x.dim() == 2:
        return x[:, None, None, :]
    if x.dim() == 3:
        return x[:, None]
    return x


def _per(v: Tensor) -> Tensor:
    return v.reshape(-1, 1, 1, 1)


@final
@register_attack(
    description="Square Attack: gradient-free random search with square-shaped updates",
    paper=(
        'Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box '
        'adversarial attack via random search", ECCV 2020'
    ),
)
class Square(Attack):
    """Square Attack: a query-efficient random search that needs no gradients.

    Random search on the loss ``L`` (Andriushchenko et al. 2020, Algorithm 1): from an
    initial point on the boundary of the eps-ball, each iteration proposes
    ``x_new = Proj(x_best + delta)`` where ``delta`` changes one window of ``sh x sw`` pixels
    (all channels), queries the model once and keeps ``x_new`` when ``L`` decreased:

    ```text
    L(x) = z_y(x) - max_{j != y} z_j(x)       (loss="margin", untargeted)
    L(x) = max_{j != t} z_j(x) - z_t(x)       (loss="margin", towards target t)
    L(x) = -CE(z(x), y)  /  CE(z(x), t)       (loss="ce")
    sh = sw = round(sqrt(p * H * W)),   p = p_init / 2**k   (k halvings after iterations
             10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000, rescaled to ``queries``)
    ```

    - Linf (Algorithm 2): start from vertical stripes ``x + eps * s`` with one random sign
      ``s`` per column and channel; a proposal sets the window of each channel to
      ``x + rho * eps``, one random ``rho in {-1, 1}`` per channel (a proposal that would
      leave the window unchanged has its signs flipped, so no query is wasted).
    - L2 (Algorithm 3): start from a grid of up to 5 x 5 tiles, each a "square with a centre
      mass" (two halves of nested rectangles with weights ``sum_{k >= m} 1/(k+1)**2``, opposite
      signs) with a random sign per channel, scaled to norm eps. A proposal picks two windows
      W1 and W2, replaces W1 by the normalised sum of the current W1 and a new centre-mass
      square, scaled to ``sqrt(||delta_{W1 u W2}||**2 + (eps**2 - ||delta||**2)/C)`` per
      channel, zeroes W2 (its mass moves to W1), and rescales the whole perturbation to eps.

    Every proposal is clipped to ``bounds``. Only examples not broken yet are queried: an
    example stops at its first success (one host sync per iteration shrinks the batch), and
    ``restarts`` runs the search again from a new random start on the examples still robust
    (each example then returns its success, else its lowest-loss point). All forward passes
    run under ``torch.no_grad()``; all randomness comes from ``generator``.

    Budget: each restart spends at most ``queries`` model evaluations per example; the
    template's evaluation of the clean input (examples it misclassifies are returned
    unchanged) is the first query of the first restart.

    Inputs: ``(B, C, H, W)`` images; ``(B, D)`` vectors are searched as ``(B, 1, 1, D)``
    (windows become intervals of ``round(p * D)`` coordinates) and ``(B, H, W)`` as
    ``(B, 1, H, W)``; other shapes raise ``ValueError``. Windows on non-square images are
    squares of the side above, capped to the smaller side.

    Args:
        model: Classifier returning logits ``(B, K)``.
        eps: Default radius of the ball in input units (call-time ``eps=`` overrides it).
        norm: ``"linf"`` or ``"l2"``.
        queries: Model evaluations per example and restart (>= 2).
        p_init: Initial fraction of the pixels a window covers, in (0, 1].
        restarts: Runs from new random starts on the examples not yet broken.
        loss: ``"margin"`` (the logit margin, the paper's choice) or ``"ce"``.
        bounds: Input box ``(lo, hi)``.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For out-of-range arguments, or inputs that are not 2-, 3- or 4-D.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> atk = Square(model, eps=0.1, queries=20)
        >>> x = torch.rand(2, 1, 4, 4)
        >>> out = atk(x, generator=torch.Generator().manual_seed(0))
        >>> bool(((out - x).abs() <= 0.1 + 1e-6).all())
        True

    Reference:
        Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box
        adversarial attack via random search", ECCV 2020.
    """

    _threat_model: ThreatModel

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        *,
        norm: str = "linf",
        queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        loss: str = "margin",
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, bounds=bounds)
        self.eps = check_nonnegative(eps, "eps")
        self._threat_model = threat_from_norm(norm)
        self.norm = self._threat_model.norm
        self.queries = check_int(queries, "queries", minimum=2)
        self.p_init = check_positive(p_init, "p_init")
        if self.p_init > 1.0:
            raise ValueError(f"p_init must be in (0, 1], got {self.p_init}")
        self.restarts = check_int(restarts, "restarts", minimum=1)
        self.loss = check_option(loss, "loss", _LOSSES)

    # -------------------------------------------------------------------- hooks
    @property
    def _default_eps(self) -> float | None:
        return self.eps

    @property
    def _threat(self) -> ThreatModel | None:
        return self._threat_model

    @property
    def _wants_clean_logits(self) -> bool:
        return True

    def _loss(self, logits: Tensor, label: Tensor, targeted: bool) -> Tensor:
        """The loss the search minimises, per example (float32 or wider)."""
        work = torch.promote_types(logits.dtype, torch.float32)
        z = logits.to(work)
        if self.loss == "margin":
            margin = logit_margin(z, label)
            return -margin if targeted else margin
        ce = F.cross_entropy(z, label, reduction="none")
        return ce if targeted else -ce

    # ------------------------------------------------------------------- search
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
        if x.dim() > 4:
            raise ValueError(
                f"x must be (B, D), (B, H, W) or (B, C, H, W) for Square, got {tuple(x.shape)}"
            )
        if clean is None:  # pragma: no cover - _wants_clean_logits is True
            raise RuntimeError("internal error: Square needs the clean logits")
        targeted = target is not None
        goal = target if target is not None else y
        with torch.no_grad():
            done = _succeeded(clean.logits.detach().argmax(dim=1), goal, targeted)
            best = _as_grid(x).clone()
            work = torch.promote_types(x.dtype, torch.float32)
            best_loss = torch.full(done.shape, math.inf, device=x.device, dtype=work)
            for r in range(self.restarts):
                # the clean evaluation was the first query of the first restart
                budget = self.queries - 1 if r == 0 else self.queries
                idx = _rows_left(~done)
                if idx is not None and idx.numel() == 0:
                    break
                self._search(x, goal, eps, targeted, generator, budget, idx, best, best_loss, done)
        return best.reshape(x.shape)

    def _search(
        self,
        x_all: Tensor,
        goal_all: Tensor,
        eps_all: Tensor,
        targeted: bool,
        generator: torch.Generator | None,
        budget: int,
        idx: Tensor | None,
        best: Tensor,
        best_loss: Tensor,
        done: Tensor,
    ) -> None:
        """One random-search run of ``budget`` queries on the rows ``idx`` (None: all).

        Writes into ``best``, ``best_loss`` and ``done`` (full-batch tensors, grid view).
        """
        lo, hi = self.bounds
        x = _as_grid(x_all)
        rows = idx if idx is not None else torch.arange(x.shape[0], device=x.device)
        xs, goal, eps = x, goal_all, eps_all
        if idx is not None:
            xs, goal, eps = x[idx], goal_all[idx], eps_all[idx]
        cur = self._init(xs, eps, generator).clamp(lo, hi)
        logits = self._query(cur, x_all)
        cur_loss = self._loss(logits, goal, targeted).to(best_loss.dtype)
        succ = _succeeded(logits.argmax(dim=1), goal, targeted)
        for it in range(budget - 1):
            # record finished examples and drop them from the batch (one host sync)
            keep = _rows_left(~succ)
            if keep is not None:
                self._record(rows, cur, cur_loss, succ, best, best_loss, done)
                if keep.numel() == 0:
                    return
                rows, xs, goal, eps = rows[keep], xs[keep], goal[keep], eps[keep]
                cur, cur_loss, succ = cur[keep], cur_loss[keep], succ[keep]
            p = p_schedule(self.p_init, it, self.queries)
            if self.norm == "linf":
                new = self._propose_linf(xs, cur, eps, p, generator)
            else:
                new = self._propose_l2(xs, cur, eps, p, generator)
            new = new.clamp(lo, hi)
            logits = self._query(new, x_all)
            new_loss = self._loss(logits, goal, targeted).to(cur_loss.dtype)
            new_succ = _succeeded(logits.argmax(dim=1), goal, targeted)
            accept = new_succ | (new_loss < cur_loss)
            cur = torch.where(_per(accept), new, cur)
            cur_loss = torch.where(accept, new_loss, cur_loss)
            succ = succ | new_succ
        self._record(rows, cur, cur_loss, succ, best, best_loss, done)

    def _query(self, grid: Tensor, like: Tensor) -> Tensor:
        """The model's logits on ``grid`` (the ``(n, C, H, W)`` view) in ``like``'s layout."""
        n = grid.shape[0]
        return check_logits(self.model(grid.reshape((n, *like.shape[1:]))), n)

    @staticmethod
    def _record(
        rows: Tensor,
        cur: Tensor,
        cur_loss: Tensor,
        succ: Tensor,
        best: Tensor,
        best_loss: Tensor,
        done: Tensor,
    ) -> None:
        """Write each row's success, or its point when the loss beat the row's best so far."""
        loss = torch.where(succ, -math.inf, cur_loss)
        better = succ | (loss < best_loss[rows])
        old = best[rows]
        best.index_copy_(0, rows, torch.where(_per(better), cur, old))
        best_loss.index_copy_(0, rows, torch.where(better, loss, best_loss[rows]))
        done.index_copy_(0, rows, done[rows] | succ)

    # ------------------------------------------------------------ distributions
    def _init(self, x: Tensor, eps: Tensor, generator: torch.Generator | None) -> Tensor:
        """The starting point: vertical stripes (Linf) or a grid of centre-mass tiles (L2)."""
        n, c, h, w = x.shape
        if self.norm == "linf":
            return x + _per(eps) * _signs((n, c, 1, w), x, generator)
        th, tw = max(h // _INIT_TILES, 1), max(w // _INIT_TILES, 1)
        nh, nw = min(_INIT_TILES, h // th), min(_INIT_TILES, w // tw)
        oh, ow = (h - nh * th) // 2, (w - nw * tw) // 2
        tile = _l2_pattern(th, tw, x.device, x.dtype)
        signs = _signs((n, c, nh, nw), x, generator)
        grid = signs.repeat_interleave(th, dim=2).repeat_interleave(tw, dim=3)
        grid = grid * tile.repeat(nh, nw)
        delta = torch.zeros_like(x)
        delta[:, :, oh : oh + nh * th, ow : ow + nw * tw] = grid
        return x + self._scale_to(delta, eps)

    @staticmethod
    def _scale_to(delta: Tensor, eps: Tensor) -> Tensor:
        """``delta`` rescaled to L2 norm ``eps`` per example (zero stays zero)."""
        norm = delta.flatten(1).norm(dim=1)
        safe = torch.where(norm > 0, norm, 1.0)
        return delta * _per(torch.where(norm > 0, eps / safe, 0.0))

    def _windows(
        self, x: Tensor, sh: int, sw: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """A random window per example: its mask ``(n, 1, H, W)`` and row/column offsets."""
        n, _, h, w = x.shape
        top = _randint(h - sh + 1, n, x, generator)
        left = _randint(w - sw + 1, n, x, generator)
        ii = torch.arange(h, device=x.device)[None, :] - top[:, None]
        jj = torch.arange(w, device=x.device)[None, :] - left[:, None]
        mask = ((ii >= 0) & (ii < sh))[:, :, None] & ((jj >= 0) & (jj < sw))[:, None, :]
        return mask[:, None], ii, jj

    def _propose_linf(
        self, x: Tensor, cur: Tensor, eps: Tensor, p: float, generator: torch.Generator | None
    ) -> Tensor:
        lo, hi = self.bounds
        n, c, h, w = x.shape
        sh, sw = _window(p, h, w, 1)
        mask, _, _ = self._windows(x, sh, sw, generator)
        sign = _signs((n, c, 1, 1), x, generator)
        vertex = (x + _per(eps) * sign).clamp(lo, hi)
        unchanged = ((vertex == cur) | ~mask).flatten(1).all(dim=1)
        sign = torch.where(_per(unchanged), -sign, sign)
        vertex = (x + _per(eps) * sign).clamp(lo, hi)
        return torch.where(mask, vertex, cur)

    def _propose_l2(
        self, x: Tensor, cur: Tensor, eps: Tensor, p: float, generator: torch.Generator | None
    ) -> Tensor:
        n, c, h, w = x.shape
        sh, sw = _window(p, h, w, 3)
        m1, ii, jj = self._windows(x, sh, sw, generator)
        m2, _, _ = self._windows(x, sh, sw, generator)
        delta = cur - x
        tiny = torch.finfo(x.dtype).tiny
        # the new square, placed at W1, with a random sign per channel (random transpose too)
        pattern = _l2_pattern(sh, sw, x.device, x.dtype)
        if sh == sw:
            flip = _uniform((n,), x, generator) < 0.5
            choices = torch.stack([pattern, pattern.T])
            pick = flip.long()[:, None, None]
        else:
            choices = pattern[None]
            pick = torch.zeros(n, 1, 1, dtype=torch.long, device=x.device)
        placed = choices[pick, ii.clamp(0, sh - 1)[:, :, None], jj.clamp(0, sw - 1)[:, None, :]]
        new = placed[:, None] * _signs((n, c, 1, 1), x, generator)
        w1 = delta * m1
        norm_w1 = w1.flatten(2).norm(dim=2)[:, :, None, None]
        new = torch.where(m1, new + w1 / norm_w1.clamp_min(tiny), 0.0)
        norm_new = new.flatten(2).norm(dim=2)[:, :, None, None]
        norm_img = delta.flatten(1).norm(dim=1)
        spare = (eps.to(norm_img.dtype) ** 2 - norm_img**2).clamp_min(0.0) / c
        norm_union = (delta * (m1 | m2)).flatten(2).norm(dim=2)[:, :, None, None]
        budget = (norm_union**2 + _per(spare)).sqrt()
        new = new / norm_new.clamp_min(tiny) * budget
        delta = torch.where(m2, 0.0, delta)
        delta = torch.where(m1, new, delta)
        return x + self._scale_to(delta, eps)
