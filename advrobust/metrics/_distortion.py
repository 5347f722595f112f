"""Minimal distortion (minimal-norm attacks, or a batched per-example eps bisection) and eq. 4.

Eq. (4) is the robustness score of "How training data affect the accuracy and robustness of
neural networks for image classification" (ICLR 2019 submission), the training-data study.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from advrobust.attacks import lp_norm

from .._validate import check_nonnegative, check_positive, describe
from ..attacks import Attack, logit_margin
from ._loop import (
    Batch,
    bind_attack,
    check_batch_labels,
    check_model,
    evaluate,
    is_minimal,
    named_models,
    predict_checked,
    predict_eval,
)
from ._results_distortion import DistortionResult, RobustnessScoreResult

__all__ = ["minimal_distortion", "robustness_score", "search_attack"]

# The training-data study (sec. 3.2): I-FGSM with T iterations of eps / T. With a random start
# (PGD) the iterate may begin anywhere in the ball, so it gets Madry's 2.5 * eps / T.
_DEFAULT_STEPS = 10


def search_attack(attack: Attack) -> Attack:
    """The configuration of ``attack`` used inside the eps search.

    Iterative gradient attacks with an absolute step size get a step proportional to eps
    (``rel_alpha``): ``1 / steps`` (``2.5 / steps`` with a random start), the training-data
    study's schedule of T steps of eps / T, so that the attack at eps ``e`` is the same attack
    scaled by ``e``. Attacks already configured with ``rel_alpha``, single-step attacks and
    minimal-norm attacks (``attack.spec().kind == "minimal"``: CW-L2, FMN, DDN, ALMA) are used
    as they are.
    """
    if not isinstance(attack, Attack):
        raise TypeError(f"attack must be an advrobust.attacks.Attack, got {describe(attack)}")
    if is_minimal(attack):
        return attack
    cfg = attack.spec().config
    if "rel_alpha" not in cfg or cfg["rel_alpha"] is not None:
        return attack
    raw_steps = cfg.get("steps")
    steps = _DEFAULT_STEPS if raw_steps is None else int(raw_steps)
    if steps <= 1:
        return attack
    rel = (2.5 if cfg.get("random_start") else 1.0) / steps
    changes: dict[str, object] = {"rel_alpha": rel, "steps": steps}
    if "alpha" in cfg:
        changes["alpha"] = None
    return attack.replace(**changes)


def _default_hi(attack: Attack, x: Tensor) -> float:
    lo_b, hi_b = attack.bounds
    width = float(hi_b - lo_b)
    norm = attack.spec().norm
    d = x[0].numel()
    if norm == "l2":
        return width * math.sqrt(d)
    if norm == "l1":
        return width * d
    if norm == "l0":
        return float(d)
    return width


def _margin(model: nn.Module, x: Tensor, y: Tensor, logits: Tensor | None = None) -> Tensor:
    """Logit margin z_y - max_{j != y} z_j (negative: misclassified)."""
    if logits is None:
        logits = predict_eval(model, x)
    return logit_margin(logits.to(torch.float64), y.long())


def _search_batch(
    model: nn.Module,
    attack: Attack,
    x: Tensor,
    y: Tensor,
    *,
    lo: float,
    hi: float,
    tol: float,
    rtol: float,
    active_set: bool,
    method: str,
    generator: torch.Generator | None,
    consider: Tensor | None = None,
    check: Callable[[int], None] | None = None,
) -> dict[str, Tensor]:
    """Per-example eps search for one batch; see :func:`minimal_distortion`."""
    n = x.shape[0]
    dev = x.device
    logits = predict_eval(model, x)
    if check is not None:
        check(int(logits.shape[1]))  # the labels' range, before anything indexes with them
    correct = logits.argmax(1) == y
    if consider is not None:
        correct = correct & consider
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    nan = torch.full((n,), math.nan, dtype=dtype, device=dev)
    evaluations = torch.zeros(n, dtype=torch.long, device=dev)

    if is_minimal(attack):
        # A minimal-norm attack runs once, only on the examples that count (one host sync
        # per batch); its distances are measured in its own norm (the spec's).
        idx = correct.nonzero().squeeze(1)
        dist = torch.full_like(nan, math.inf)
        broken = torch.zeros_like(correct)
        if idx.numel():
            res = attack.run(x[idx], y[idx], generator=generator)
            evaluations[idx] += 1
            delta = (res.x_adv - x[idx]).to(dtype)
            measured = lp_norm(delta, attack.spec().norm)
            dist[idx] = torch.where(res.success, measured, torch.full_like(measured, math.inf))
            broken[idx] = res.success
        found = correct & broken & (dist <= hi * (1 + 1e-6))
        distance = torch.where(found | correct, dist, nan)
        lower = torch.where(correct, torch.zeros_like(nan), nan)
        return {
            "distance": distance,
            "lower": lower,
            "found": found,
            "correct": correct,
            "evaluations": evaluations,
        }

    secant = method == "secant"
    upper = torch.where(correct, torch.full_like(nan, math.inf), nan)
    lower = torch.where(correct, torch.full_like(nan, lo), nan)
    # margins at the bracket ends (secant only): positive at lower, <= 0 at upper
    m_lo = torch.zeros(n, dtype=torch.float64, device=dev)
    m_hi = torch.zeros(n, dtype=torch.float64, device=dev)
    bisect_next = torch.zeros(n, dtype=torch.bool, device=dev)
    active = correct.nonzero().squeeze(1)  # one host sync per search round, never per step
    if active.numel():
        eps = torch.full((active.numel(),), hi, dtype=x.dtype, device=dev)
        res = attack.run(x[active], y[active], eps=eps, generator=generator)
        evaluations[active] += 1
        if secant:
            m_hi[active] = _margin(model, res.x_adv, y[active]).clamp(max=0.0)
        active = active[res.success]
        upper[active] = hi
    if secant and lo == 0:
        m_lo = _margin(model, x, y, logits).clamp(min=0.0)  # the clean input is eps = 0
    if lo > 0 and active.numel():
        eps = torch.full((active.numel(),), lo, dtype=x.dtype, device=dev)
        res = attack.run(x[active], y[active], eps=eps, generator=generator)
        evaluations[active] += 1
        if bool(res.success.any()):
            raise ValueError(
                f"lo={lo} does not bracket the minimal distortion: the attack already succeeds "
                f"at eps=lo on {int(res.success.sum())} correctly classified example(s); "
                f"lower lo (0 always brackets)"
            )
        if secant:
            m_lo[active] = _margin(model, res.x_adv, y[active]).clamp(min=0.0)
    searched = active.clone()
    active = active[(upper[active] - lower[active]) > torch.clamp(upper[active] * rtol, min=tol)]
    while active.numel():
        a_lo, a_hi = lower[active], upper[active]
        width = a_hi - a_lo
        probe = (a_lo + a_hi) / 2
        if secant:
            # safeguarded false position: interpolate the margin's zero, stay at least
            # 0.45 * tolerance inside the bracket, and bisect after a round that did not halve it
            num, den = m_lo[active], m_lo[active] - m_hi[active]
            frac = torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, 0.5))
            guess = a_lo + width * frac.to(dtype)
            tol_i = torch.clamp(a_hi * rtol, min=tol)
            gap = torch.minimum(0.45 * tol_i, width / 4)
            guess = torch.minimum(torch.maximum(guess, a_lo + gap), a_hi - gap)
            probe = torch.where(bisect_next[active], probe, guess)
        if active_set:
            run_idx, run_eps = active, probe
        else:
            # Same search without the active set: every example that entered the search is
            # attacked in every round (converged ones at their bracket's midpoint, ignored).
            run_idx = searched
            run_eps = (lower[searched] + upper[searched]) / 2
            pos = torch.full((n,), -1, dtype=torch.long, device=dev)
            pos[active] = torch.arange(active.numel(), device=dev)
            inside = pos[searched] >= 0
            run_eps[inside] = probe[pos[searched][inside]]
        res = attack.run(x[run_idx], y[run_idx], eps=run_eps.to(x.dtype), generator=generator)
        evaluations[run_idx] += 1
        success = res.success
        margin = _margin(model, res.x_adv, y[run_idx]) if secant else None
        if not active_set:
            pos = torch.full((n,), -1, dtype=torch.long, device=dev)
            pos[run_idx] = torch.arange(run_idx.numel(), device=dev)
            success = success[pos[active]]
            margin = None if margin is None else margin[pos[active]]
        upper[active] = torch.where(success, probe, a_hi)
        lower[active] = torch.where(success, a_lo, probe)
        if margin is not None:
            m_hi[active] = torch.where(success, margin.clamp(max=0.0), m_hi[active])
            m_lo[active] = torch.where(success, m_lo[active], margin.clamp(min=0.0))
        new_width = upper[active] - lower[active]
        bisect_next[active] = new_width > width / 2
        done = new_width <= torch.clamp(upper[active] * rtol, min=tol)
        active = active[~done]
    found = correct & upper.isfinite()
    return {
        "distance": upper,
        "lower": lower,
        "found": found,
        "correct": correct,
        "evaluations": evaluations,
    }


class _SearchRange:
    """The validated search settings; ``hi`` and ``tol`` defaults resolve on the first batch."""

    def __init__(self, lo: object, hi: object, tol: object, rtol: object, method: object) -> None:
        self.lo = check_nonnegative(lo, "lo")
        self._hi = None if hi is None else check_positive(hi, "hi")
        if self._hi is not None and not self._hi > self.lo:
            raise ValueError(f"hi must be > lo to bracket the search, got lo={self.lo}, hi={hi}")
        self._tol = None if tol is None else check_positive(tol, "tol")
        self.rtol = check_nonnegative(rtol, "rtol")
        if method not in ("bisection", "secant"):
            raise ValueError(f"method must be 'bisection' or 'secant', got {method!r}")
        self.method = str(method)
        self.hi = math.nan
        self.tol = math.nan

    def resolve(self, attack: Attack, x: Tensor) -> None:
        """Fix ``hi`` (default: the whole box) and ``tol`` (default: ``(hi - lo) / 1024``)."""
        if not math.isnan(self.hi):
            return
        h = _default_hi(attack, x) if self._hi is None else self._hi
        if not h > self.lo:
            raise ValueError(f"hi must be > lo, got lo={self.lo}, hi={h}")
        self.hi = h
        self.tol = (h - self.lo) / 1024 if self._tol is None else self._tol

    def search(
        self,
        model: nn.Module,
        attack: Attack,
        b: Batch,
        *,
        active_set: bool = True,
        generator: torch.Generator | None,
        consider: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """:func:`_search_batch` on one batch with these settings."""
        self.resolve(attack, b.x)
        return _search_batch(
            model,
            attack,
            b.x,
            b.y,
            lo=self.lo,
            hi=self.hi,
            tol=self.tol,
            rtol=self.rtol,
            active_set=active_set,
            method=self.method,
            generator=generator,
            consider=consider,
            check=lambda k: check_batch_labels(b, k),
        )

    def result(self, out: dict[str, Tensor], attack: Attack, prefix: str = "") -> DistortionResult:
        """The :class:`DistortionResult` of the loop's outputs (keys ``prefix + field``)."""
        return DistortionResult(
            out[prefix + "distance"],
            out[prefix + "lower"],
            out[prefix + "found"],
            out[prefix + "correct"],
            out[prefix + "evaluations"],
            attack.spec().norm,
            0.0 if is_minimal(attack) else self.tol,
            self.rtol,
            attack.spec(),
        )


def minimal_distortion(
    model: nn.Module,
    data: object,
    attack: Attack,
    *,
    lo: float = 0.0,
    hi: float | None = None,
    tol: float | None = None,
    rtol: float = 0.0,
    method: str = "bisection",
    active_set: bool = True,
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> DistortionResult:
    """Per-example smallest eps at which an attack succeeds, by batched bisection.

    For a fixed-eps attack (FGSM, BIM, PGD, ... in Linf or L2) every correctly classified
    example keeps a bracket ``[lower, upper]``: the attack failed at ``lower`` and succeeded at
    ``upper``. The search first runs the attack at ``hi`` (examples it cannot break there are
    *unbroken*, reported with distance ``inf`` and never averaged in), then halves every
    bracket with one batched attack call per round, passing the midpoints as a per-example
    eps tensor, until ``upper - lower <= max(tol, rtol * upper)``. With ``active_set=True``
    examples whose bracket converged leave the batch, so later rounds only pay for the
    examples still being searched. The distance reported is ``upper``.

    Iterative attacks run with a step proportional to eps (see :func:`search_attack`: the
    paper's T steps of eps / T), so the attack at each eps is the same attack, scaled.

    A minimal-norm attack (``attack.spec().kind == "minimal"``: CW-L2, FMN, DDN, ALMA) is
    unbounded: it runs once per example and its own distances are reported, measured in its
    own norm (``attack.spec().norm``); there is no bisection (``lo``, ``tol``, ``rtol``,
    ``method`` and ``active_set`` do not apply, and distances above ``hi`` count as
    unbroken).

    Which to use when: a minimal-norm attack is the default choice for a distortion metric:
    one run instead of about ``log2((hi - lo) / tol)`` attack runs, and it finds smaller
    distances than a bisection over a fixed-schedule attack. The bisection over a fixed-eps
    attack is the paper's own procedure (I-FGSM with T steps of eps / T) and the way to
    report a distortion for a threat model that has no minimal-norm attack, or to check
    that a minimal-norm attack did not miss closer adversarial examples.

    Clean inputs the model
    misclassifies are excluded (distance ``nan``), as in the training-data study.

    Args:
        model: the attacked classifier (the attack is re-bound to it if built for another).
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        attack: an :class:`advrobust.attacks.Attack`.
        lo: lower end of the search range (the attack must fail there; 0 always does on a
            correctly classified input).
        hi: upper end; None uses the whole box: ``bounds[1] - bounds[0]`` for Linf and that
            times ``sqrt(d)`` for L2 (``d`` input elements).
        tol: absolute bracket width at convergence; None uses ``(hi - lo) / 1024``.
        rtol: relative bracket width at convergence (0: only ``tol``).
        method: ``"bisection"`` (probe the bracket's midpoint) or ``"secant"`` (probe where
            the logit margin of the adversarial examples at the bracket ends interpolates to
            zero, safeguarded: at least ``0.45 * tol`` inside the bracket, and a bisection
            round after any round that did not halve it; one extra forward pass per round).
            Both keep the invariant "fails at ``lower``, succeeds at ``upper``"; the secant
            search usually converges in a few rounds, at different rounds per example.
        active_set: drop converged examples from the batch (True) or keep attacking every
            example until all converged (False, for comparison).
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.
        generator: random generator passed to the attack.

    Returns:
        :class:`DistortionResult` (``distance``, ``found``, ``mean``, ``num_unbroken`` ...).

    Raises:
        ValueError: ``lo`` negative, ``hi <= lo``, ``tol`` not positive, or an example the
            attack already breaks at ``eps=lo`` (the range does not bracket).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from advrobust.attacks import FGSM
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> x = torch.rand(6, 1, 2, 2)
        >>> y = model(x).argmax(1)
        >>> res = minimal_distortion(model, (x, y), FGSM(model), tol=1e-3)
        >>> bool((res.distance[res.found] <= 1.0).all())
        True
    """
    model = check_model(model)
    attack = search_attack(bind_attack(attack, model))
    settings = _SearchRange(lo, hi, tol, rtol, method)

    def fn(b: Batch) -> dict[str, Tensor]:
        return settings.search(model, attack, b, active_set=active_set, generator=generator)

    out = evaluate(
        data,
        fn,
        batch_size=batch_size,
        progress=progress,
        desc="minimal distortion",
        bounds=attack.bounds,
    )
    return settings.result(out, attack)


def robustness_score(
    models: Sequence[nn.Module] | Mapping[str, nn.Module],
    data: object,
    attack: Attack,
    *,
    lo: float = 0.0,
    hi: float | None = None,
    tol: float | None = None,
    rtol: float = 0.0,
    method: str = "bisection",
    batch_size: int = 256,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> RobustnessScoreResult:
    r"""Eq. (4) of the training-data study: mean minimal distortion over the common set.

    $$\mathrm{Robustness}(M_i) = \frac{1}{|X|} \sum_{x \in X} \|x - x'\|_p$$

    ("How training data affect the accuracy and robustness of neural networks for image
    classification", ICLR 2019 submission, sec. 4.1.) X holds the examples that *every* model
    classifies correctly; ``x'`` is the attack's minimal adversarial example (a minimal-norm
    attack, or a bisection over a fixed-eps attack such as the paper's I-FGSM; see
    :func:`minimal_distortion`). The attack is applied to each model with
    ``attack.with_model``.

    Unbroken examples: eq. (4) assumes the attack reaches 100% success. An example of X that
    some model's attack never broke is left out of *every* model's mean, so all models are
    still averaged over the same examples (``num_used`` of them); ``num_unbroken`` counts
    the misses per model. The rule lives in :func:`common_set_score`, which the study calls
    too.

    Args:
        models: a sequence (named ``model_0``, ``model_1``, ...) or a mapping of models.
        data: ``(x, y)`` tensors or an iterable of ``(x, y)`` batches.
        attack: an :class:`advrobust.attacks.Attack` (built for any of the models).
        lo: see :func:`minimal_distortion`.
        hi: see :func:`minimal_distortion`.
        tol: see :func:`minimal_distortion`.
        rtol: see :func:`minimal_distortion`.
        method: see :func:`minimal_distortion`.
        batch_size: batch size when ``data`` is a pair of tensors.
        progress: show a progress bar.
        generator: random generator passed to the attack.

    Returns:
        :class:`RobustnessScoreResult` with ``scores`` per model and the set ``common``.
    """
    named = named_models(models)
    attacks = {name: search_attack(bind_attack(attack, m)) for name, m in named.items()}
    first = next(iter(attacks.values()))
    settings = _SearchRange(lo, hi, tol, rtol, method)

    def fn(b: Batch) -> dict[str, Tensor]:
        settings.resolve(first, b.x)
        common = torch.ones(b.x.shape[0], dtype=torch.bool, device=b.x.device)
        for name, m in named.items():
            common &= predict_checked(m, b, f"models[{name!r}]").argmax(1) == b.y
        out: dict[str, Tensor] = {"common": common}
        for name, m in named.items():
            part = settings.search(m, attacks[name], b, generator=generator, consider=common)
            for key, value in part.items():
                out[f"{name}\0{key}"] = value
        return out

    out = evaluate(
        data,
        fn,
        batch_size=batch_size,
        progress=progress,
        desc="robustness score",
        bounds=first.bounds,
    )
    results = {name: settings.result(out, attacks[name], f"{name}\0") for name in named}
    return RobustnessScoreResult(tuple(named), out["common"], results, first.spec())
