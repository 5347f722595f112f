"""The built-in tasks of the study's evaluation table (:mod:`advrobust.study._tasks`).

Each registers itself under its name in ``evaluation.metrics``, in this order (the order of
:func:`~advrobust.study.task_names`): ``accuracy`` (clean accuracy), ``robustness-linf`` and
``robustness-l2`` (minimal distortion per example: eq. 4 of "How training data affect the
accuracy and robustness of neural networks for image classification", ICLR 2019 submission, at
aggregation), ``adversarial-accuracy`` (eq. 5 at every Delta, by one attack or by the
:func:`~advrobust.metrics.robust_accuracy` ensemble, which may reuse the minimal adversarial
examples of the robustness task), ``label-leak`` (Kurakin, Goodfellow, Bengio, "Adversarial
Machine Learning at Scale", ICLR 2017, sec. 4.2), ``deepsec`` (attack utility metrics) and
``transfer-matrix`` (Kurakin et al. sec. 4.4; run by the study once per group of cells).

Every task computes its numbers by calling :mod:`advrobust.metrics`. The module is imported by
:mod:`advrobust.study._tasks` once its machinery exists, so importing the table gives the
built-ins first.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._build import attack_record
from ._config import ConfigError, StudyConfig
from ._tasks import CellEval, TaskOutput, register_task

__all__ = ["attack_at"]


# --------------------------------------------------------------------------------------------
# clean accuracy


@register_task("accuracy", description="clean accuracy on the accuracy set")
def _accuracy(ctx: CellEval) -> TaskOutput:
    clean = ctx.clean
    return TaskOutput([{"metric": "accuracy", "value": float(clean["accuracy"]), "n": clean["n"]}])


# --------------------------------------------------------------------------------------------
# eq. 4: minimal distortion per example (robustness-linf, robustness-l2)


def _reused(ctx: CellEval, norm: str) -> bool:
    """Adversarial accuracy will reuse this norm's minimal adversarial examples.

    True when the cell runs the ensemble (``evaluation.robust_suite``) in ``norm`` after the
    robustness task of that norm, with a minimal-norm attack, and
    ``evaluation.settings.adversarial-accuracy.reuse_minimal`` is not false.
    """
    ev = ctx.config.evaluation
    metrics = list(ev.metrics)
    task = f"robustness-{norm}"
    if ev.robust_suite is None or "adversarial-accuracy" not in metrics or task not in metrics:
        return False
    if metrics.index(task) > metrics.index("adversarial-accuracy"):
        return False
    if not bool(ctx.settings("adversarial-accuracy").get("reuse_minimal", True)):
        return False
    return bool(ctx.attack("delta_attack").norm == norm)


def _minimal_with_examples(
    ctx: CellEval, attack: Any, xs: Tensor, ys: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Run a minimal-norm attack once per example, as :func:`~advrobust.metrics.minimal_distortion`.

    The same batches (``evaluation.batch_size``), the same generator and the same rule:
    the distance is the norm of ``x_adv - x`` in the attack's norm, an example counts as
    found when the attack succeeded within the whole input box. Also returns a *verified*
    distance per example, for reuse by adversarial accuracy: the norm of ``x_adv - x``
    computed in float64 from the tensors themselves, kept only where ``x_adv`` lies inside
    the input box and a fresh inference-mode forward pass misclassifies it (``inf``
    elsewhere). Returns ``(distance, found, verified)``.
    """
    from advrobust.attacks import lp_norm

    norm = attack.spec().norm
    lo, hi = (float(b) for b in attack.bounds)
    limit = (hi - lo) * (math.sqrt(xs[0].numel()) if norm == "l2" else 1.0)
    dist, found, verified = [], [], []
    for start in range(0, len(xs), ctx.batch_size):
        xb, yb = xs[start : start + ctx.batch_size], ys[start : start + ctx.batch_size]
        res = attack.run(xb, yb, generator=gen)
        measured = lp_norm(res.x_adv - xb, norm)
        d = torch.where(res.success, measured, torch.full_like(measured, math.inf))
        dist.append(d)
        found.append(res.success & (d <= limit * (1 + 1e-6)))
        with torch.inference_mode():
            wrong = ctx.model(res.x_adv).argmax(1) != yb
        inside = (res.x_adv >= lo).flatten(1).all(1) & (res.x_adv <= hi).flatten(1).all(1)
        exact = lp_norm(res.x_adv.double() - xb.double(), norm)
        ok = res.success & wrong & inside
        verified.append(torch.where(ok, exact, torch.full_like(exact, math.inf)))
    return torch.cat(dist), torch.cat(found), torch.cat(verified)


def _distortion(norm: str) -> Callable[[CellEval], TaskOutput]:
    def run(ctx: CellEval) -> TaskOutput:
        from advrobust import metrics as M

        ev = ctx.config.evaluation
        field_name = f"{norm}_attack"
        attack = M.search_attack(ctx.attack(field_name))
        spec = attack.spec()
        note = ""
        kwargs: dict[str, Any] = {}
        if spec.bounded:  # the eps of a fixed-eps attack is searched per example
            if norm == "linf":
                kwargs = {"hi": ev.linf_max, "tol": ev.linf_tol}
                note = f"with eps searched per example in [0, {ev.linf_max:g}]"
            else:
                note = "with eps searched per example"
        keep = spec.kind == "minimal" and spec.norm == norm and _reused(ctx, norm)
        n_eval = len(ctx.data.eval_idx)
        dist = np.full(n_eval, np.nan)
        verified = np.full(n_eval, np.nan)
        found = np.zeros(n_eval, dtype=bool)
        index, xs, ys = ctx.correct_subset()
        if len(index):
            gen = ctx.generator(f"robustness-{norm}")
            idx = index.cpu().numpy()
            if keep:  # the adversarial examples themselves are needed: run the attack here
                d, fd, v = _minimal_with_examples(ctx, attack, xs, ys, gen)
                verified[idx] = v.cpu().numpy()
            else:
                res = M.minimal_distortion(
                    ctx.model,
                    (xs, ys),
                    attack,
                    batch_size=ctx.batch_size,
                    progress=ctx.progress,
                    generator=gen,
                    **kwargs,
                )
                d, fd = res.distance, res.found
            f = fd.cpu().numpy().astype(bool)
            dist[idx] = np.where(f, d.double().cpu().numpy(), np.nan)
            found[idx] = f
        record = attack_record(attack, note)
        mean = float(dist[found].mean()) if found.any() else math.nan
        row = {
            "metric": f"mean_distortion_{norm}",
            "value": mean,
            "norm": norm,
            "n": int(found.sum()),
            "attack": record["repr"],
            "attack_config": record["config"],
        }
        arrays = {f"{norm}_distance": dist, f"{norm}_found": found}
        if keep:
            arrays[f"{norm}_verified_distance"] = verified
        return TaskOutput([row], arrays, {norm: record})

    return run


register_task(
    "robustness-linf",
    description="minimal Linf distortion per example (ICLR 2019 study, eq. 4 at aggregation)",
    attack_fields=("linf_attack",),
)(_distortion("linf"))
register_task(
    "robustness-l2",
    description="minimal L2 distortion per example (ICLR 2019 study, eq. 4 at aggregation)",
    attack_fields=("l2_attack",),
)(_distortion("l2"))


# --------------------------------------------------------------------------------------------
# eq. 5: adversarial accuracy at each Delta, by one attack or by the ensemble


_ADV_SETTINGS = ("reuse_minimal", "steps", "n_target_classes", "restarts")


def _check_deltas(config: StudyConfig, probe: nn.Module) -> None:
    if not config.evaluation.deltas:
        raise ConfigError("evaluation.deltas", "adversarial-accuracy needs at least one Delta")
    where = "evaluation.settings.adversarial-accuracy"
    for key, value in config.evaluation.settings.get("adversarial-accuracy", {}).items():
        if key not in _ADV_SETTINGS:
            raise ConfigError(f"{where}.{key}", f"unknown; expected one of {_ADV_SETTINGS}")
        if key == "reuse_minimal":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}", f"must be true or false, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}.{key}", f"must be an integer >= 1, got {value!r}")


def attack_at(attack: Any, delta: float) -> Any:
    """The attack run for eq. 5 at threshold Delta: ``eps = Delta`` (minimal-norm: as is)."""
    return attack.replace(eps=delta) if attack.spec().bounded else attack


@register_task(
    "adversarial-accuracy",
    description="ICLR 2019 study, eq. 5 at every Delta of evaluation.deltas",
    attack_fields=("delta_attack",),
    validate=_check_deltas,
)
def _adversarial_accuracy(ctx: CellEval) -> TaskOutput:
    from advrobust import metrics as M

    ev = ctx.config.evaluation
    base = ctx.attack("delta_attack")
    if ev.robust_suite is not None:
        return _robust_accuracy(ctx, ev.robust_suite, base.norm)
    n_eval = len(ctx.data.eval_idx)
    index, xs, ys = ctx.correct_subset()
    gen = ctx.generator("adversarial-accuracy")
    rows = []
    for delta in ev.deltas:
        attack = attack_at(base, delta)
        # misclassified examples count as wrong without an attack: only the correct ones run
        if len(index):
            res = M.adversarial_accuracy(
                ctx.model,
                (xs, ys),
                attack,
                delta=delta,
                norm=base.norm,
                batch_size=ctx.batch_size,
                progress=ctx.progress,
                generator=gen,
            )
            value = (len(index) - int(res.success.sum())) / n_eval
        else:
            value = 0.0
        record = attack_record(attack)
        rows.append(
            {
                "metric": "adversarial_accuracy",
                "value": value,
                "delta": delta,
                "norm": base.norm,
                "n": n_eval,
                "attack": repr(attack),
                "attack_config": record["config"],
            }
        )
    return TaskOutput(rows)


def _suite(ctx: CellEval, suite: str, norm: str, delta: float) -> tuple[Any, dict[str, Any]]:
    """The ensemble at ``delta`` and the overrides applied (the suite's name when none).

    The overrides of ``evaluation.settings.adversarial-accuracy`` (``steps``,
    ``n_target_classes``, ``restarts``) apply to every member of the named suite that takes
    them.
    """
    from advrobust import metrics as M
    from advrobust.attacks import attack_info, create_attack

    overrides = {
        k: v for k, v in ctx.settings("adversarial-accuracy").items() if k != "reuse_minimal"
    }
    if not overrides:
        return suite, {}
    members = []
    for entry in M.ATTACK_SUITES[suite]:
        params = set(inspect.signature(attack_info(entry.name).cls.__init__).parameters)
        given = {"eps": delta, "norm": norm}
        kwargs = {k: v for k, v in given.items() if k in params}
        kwargs.update(entry.settings)
        kwargs.update({k: v for k, v in overrides.items() if k in params})
        members.append(create_attack(entry.name, ctx.model, **kwargs))
    return members, overrides


def _robust_accuracy(ctx: CellEval, suite: str, norm: str) -> TaskOutput:
    """Adversarial accuracy at each Delta as :func:`advrobust.metrics.robust_accuracy`.

    The ensemble runs on the correctly classified examples only (the others count as broken,
    as in eq. 5), and the Deltas run in increasing order, each on the examples still robust
    at the Delta before: a perturbation within Delta_1 lies within every Delta_2 > Delta_1,
    so an example broken at Delta_1 is broken at Delta_2 (the per-example worst case over the
    nested balls, as the ensemble keeps it over its attacks).

    Reuse across metrics: when the robustness task of the same norm ran before with a
    minimal-norm attack on the same evaluation sample, its adversarial example of each
    correctly classified example is an attack of its own: an example whose *verified*
    distance (the norm of ``x_adv - x`` computed in float64 from the tensors, ``x_adv``
    inside the box and misclassified by a fresh forward pass) is at most Delta is broken at
    Delta, exactly, without running the ensemble on it. The result stays an upper bound on
    the robust accuracy (every example counted as broken has an adversarial input within
    Delta). The row records the suite, every member's spec as it ran and how many examples
    the minimal-norm attack broke (``attack_config.minimal_norm``).
    """
    from advrobust import metrics as M

    n_eval = len(ctx.data.eval_idx)
    index, xs, ys = ctx.correct_subset()
    gen = ctx.generator("adversarial-accuracy")
    prior = ctx.outputs.get(f"robustness-{norm}")
    verified: Tensor | None = None
    source: dict[str, Any] = {}
    key = f"{norm}_verified_distance"
    if (
        prior is not None
        and key in prior.arrays
        and bool(ctx.settings("adversarial-accuracy").get("reuse_minimal", True))
        and len(prior.arrays[key]) == n_eval
    ):
        column = np.asarray(prior.arrays[key], dtype=np.float64)[index.cpu().numpy()]
        verified = torch.as_tensor(column, dtype=torch.float64, device=ctx.device)
        source = {"task": f"robustness-{norm}", "attack": prior.attacks.get(norm, {}).get("repr")}
    by_delta: dict[float, dict[str, Any]] = {}
    alive = torch.ones(len(index), dtype=torch.bool, device=ctx.device)
    overrides: dict[str, Any] = {}
    for delta in sorted(set(ctx.config.evaluation.deltas)):
        specs: list[dict[str, Any]] = []
        minimal = 0
        if verified is not None:
            hit = verified <= delta  # exact: float64 norms of the stored examples, no tolerance
            minimal = int(hit.sum())
            alive &= ~hit
        if bool(alive.any()):
            members, overrides = _suite(ctx, suite, norm, delta)
            res = M.robust_accuracy(
                ctx.model,
                (xs[alive], ys[alive]),
                delta,
                norm=norm,
                suite=members,
                batch_size=ctx.batch_size,
                progress=ctx.progress,
                generator=gen,
            )
            alive[alive.clone()] = res.robust.to(alive.device)
            specs = [b.spec.to_dict() for b in res.attacks]
        by_delta[delta] = {"robust": int(alive.sum()), "specs": specs, "minimal": minimal}
    rows = []
    for delta in ctx.config.evaluation.deltas:
        robust, specs = by_delta[delta]["robust"], by_delta[delta]["specs"]
        config: dict[str, Any] = {"suite": suite, "attacks": specs}
        if overrides:
            config["overrides"] = dict(overrides)
        if source:
            config["minimal_norm"] = {**source, "broken": by_delta[delta]["minimal"]}
        name = f"robust_accuracy(suite={suite!r}, eps={delta:g}, norm={norm!r})"
        if overrides:
            name += " with " + ", ".join(f"{k}={v}" for k, v in overrides.items())
        if source:
            name += f" after {source['task']}'s minimal-norm examples"
        rows.append(
            {
                "metric": "adversarial_accuracy",
                "value": robust / n_eval,
                "delta": delta,
                "norm": norm,
                "n": n_eval,
                "attack": name,
                "attack_config": config,
            }
        )
    return TaskOutput(rows)


# --------------------------------------------------------------------------------------------
# label leaking, DeepSec, transfer


@register_task("label-leak", description="Kurakin sec. 4.2: FGSM with true vs predicted labels")
def _label_leak(ctx: CellEval) -> TaskOutput:
    from advrobust import metrics as M
    from advrobust.attacks import create_attack

    ev = ctx.config.evaluation
    leak = create_attack("FGSM", ctx.model, eps=ev.leak_eps)
    res = M.label_leak_count(
        ctx.model,
        ctx.eval_data,
        attack_true=leak,
        attack_pred=leak,
        batch_size=ctx.batch_size,
        generator=ctx.generator("label-leak"),
    )
    record = attack_record(leak)
    row = {
        "metric": "label_leak_count",
        "value": float(res.count),
        "n": len(ctx.data.eval_idx),
        "norm": leak.norm,
        "delta": ev.leak_eps,
        "attack": repr(leak) + " with true vs predicted labels",
        "attack_config": record["config"],
    }
    return TaskOutput([row])


@register_task(
    "deepsec",
    description="DeepSec attack utility metrics of evaluation.deepsec_attack",
    attack_fields=("deepsec_attack",),
)
def _deepsec(ctx: CellEval) -> TaskOutput:
    from advrobust import metrics as M

    attack = ctx.attack("deepsec_attack")
    res = M.deepsec_attack_metrics(
        ctx.model,
        ctx.eval_data,
        attack,
        batch_size=ctx.batch_size,
        generator=ctx.generator("deepsec"),
    )
    record = attack_record(attack)
    rows = [
        {
            "metric": f"deepsec_{name}",
            "value": float(value),
            "n": len(ctx.data.eval_idx),
            "norm": attack.norm,
            "attack": repr(attack),
            "attack_config": record["config"],
        }
        for name, value in res.summary().items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    return TaskOutput(rows)


def _check_transfer(config: StudyConfig, probe: nn.Module) -> None:
    if len(config.models) < 2:
        raise ConfigError("evaluation.metrics", "transfer-matrix needs at least two models")


register_task(
    "transfer-matrix",
    description="Kurakin sec. 4.4: transfer rates between the models of a (size, recipe)",
    attack_fields=("transfer_attack",),
    validate=_check_transfer,
    per_cell=False,
)(lambda ctx: TaskOutput())
