"""The study's evaluation as a table of tasks, registered by name.

A task is what one name of ``evaluation.metrics`` computes on one trained model: a function of
a :class:`CellEval` (the cell's model, its fixed evaluation sample and what every task shares:
the clean predictions, the set of correctly classified examples, attacks built from the config,
a generator of the task's own) that calls :mod:`advrobust.metrics` and returns a
:class:`TaskOutput` (tidy rows, per-example arrays, the records of the attacks that ran).
Adding a metric to studies is one registration::

    from advrobust.study import TaskOutput, register_task

    @register_task("mean-confidence", description="mean top-1 softmax probability")
    def mean_confidence(ctx):
        x, _ = ctx.eval_data
        with torch.inference_mode():
            p = ctx.model(x).softmax(1).amax(1)
        return TaskOutput([{"metric": "mean_confidence", "value": float(p.mean()), "n": len(p)}])

after which ``metrics = ["accuracy", "mean-confidence"]`` in a study config runs it in every
cell, resumably (each task's output is one part of the cell's record), and its rows appear in
``results.csv``. Nothing of the runner changes.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ._build import StudyData, attack_record, make_attack, subset_tensors
from ._config import ConfigError, StudyConfig
from ._grid import Cell, part_seed

if TYPE_CHECKING:
    from advrobust.metrics import AccuracyResult

__all__ = [
    "CellEval",
    "EvalTask",
    "TaskOutput",
    "get_task",
    "register_task",
    "run_task",
    "task_names",
]


@dataclass
class TaskOutput:
    """What one task produced in one cell.

    Attributes:
        rows: tidy rows, each with at least ``metric`` and ``value`` (and optionally ``n``,
            ``norm``, ``delta``, ``target``, ``attack``, ``attack_config``); the study adds
            the cell's columns (dataset, size, model, recipe, replicate, seed).
        arrays: per-example arrays over the evaluation sample, kept in ``per_example.npz``.
        attacks: records of the attacks that ran (:func:`attack_record`), by a short name.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    attacks: dict[str, Any] = field(default_factory=dict)


class CellEval:
    """What the tasks of one cell share; everything is computed once, when first asked for.

    Attributes:
        config: the study.
        cell: the cell.
        model: the trained model (in eval mode).
        device: where the model and data are.
        data: the study's data.
        outputs: the outputs of the cell's tasks that finished before (run or reloaded), by
            task name; a task may reuse what an earlier one computed (adversarial accuracy
            reads the minimal Linf/L2 adversarial examples of the robustness task).
    """

    def __init__(
        self,
        config: StudyConfig,
        cell: Cell,
        model: nn.Module,
        device: torch.device,
        data: StudyData,
        clean: Callable[[], Mapping[str, Any]],
        *,
        progress: bool = False,
    ) -> None:
        self.config = config
        self.cell = cell
        self.model = model
        self.device = device
        self.data = data
        self.progress = progress
        self._clean_loader = clean
        self._clean: Mapping[str, Any] | None = None
        self._eval: tuple[Tensor, Tensor] | None = None
        self.outputs: dict[str, TaskOutput] = {}

    @property
    def batch_size(self) -> int:
        """``evaluation.batch_size``: the batch of the attacks."""
        return self.config.evaluation.batch_size

    @property
    def inference_batch_size(self) -> int:
        """A larger batch for forward passes without gradients."""
        return max(self.batch_size, 1024)

    @property
    def eval_data(self) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of the fixed evaluation sample, on the device."""
        if self._eval is None:
            self._eval = subset_tensors(self.data.test, self.data.eval_idx, self.device)
        return self._eval

    @property
    def clean(self) -> Mapping[str, Any]:
        """The clean pass, computed once per cell (and kept across a resume).

        ``accuracy`` and ``n`` on the accuracy set, ``correct`` (bool numpy array) on the
        evaluation sample.
        """
        if self._clean is None:
            self._clean = self._clean_loader()
        return self._clean

    @property
    def correct(self) -> Tensor:
        """Bool ``(N,)``: the model classifies the evaluation example correctly."""
        return torch.as_tensor(self.clean["correct"], device=self.device)

    def correct_subset(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(index, x, y)`` of the correctly classified evaluation examples."""
        x, y = self.eval_data
        index = self.correct.nonzero().flatten()
        return index, x[index], y[index]

    def generator(self, part: str) -> torch.Generator:
        """A generator of the task's own, seeded from (cell seed, part name)."""
        return torch.Generator(device=self.device).manual_seed(part_seed(self.cell.seed, part))

    def attack(self, field_name: str, **overrides: Any) -> Any:
        """The attack of ``evaluation.<field_name>`` built on the model through the registry."""
        spec = getattr(self.config.evaluation, field_name)
        return make_attack(spec, self.model, f"evaluation.{field_name}", **overrides)

    def settings(self, task: str) -> dict[str, Any]:
        """``evaluation.settings.<task>`` (empty when the config gives none)."""
        out: dict[str, Any] = dict(self.config.evaluation.settings.get(task, {}))
        return out


def clean_pass(
    config: StudyConfig,
    model: nn.Module,
    device: torch.device,
    data: StudyData,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """One :func:`advrobust.metrics.accuracy` call for the accuracy set and evaluation sample.

    When the evaluation sample lies inside the accuracy set (the default: the whole split), its
    correctness is read from the same predictions instead of a second pass.
    """
    from advrobust import metrics as M

    batch = max(config.evaluation.batch_size, 1024)
    position = np.searchsorted(data.acc_idx, data.eval_idx)
    inside = position < len(data.acc_idx)
    inside[inside] = data.acc_idx[position[inside]] == data.eval_idx[inside]
    with torch.inference_mode():  # no gradient: large batches, no autograd bookkeeping
        xa, ya = subset_tensors(data.test, data.acc_idx, device)
        res: AccuracyResult = M.accuracy(model, (xa, ya), batch_size=batch, progress=progress)
        if inside.all():
            correct = res.correct.cpu().numpy()[position]
        else:
            xe, ye = subset_tensors(data.test, data.eval_idx, device)
            correct = M.accuracy(model, (xe, ye), batch_size=batch).correct.cpu().numpy()
    return {"accuracy": res.value, "n": res.num_examples, "correct": correct.astype(bool)}


# --------------------------------------------------------------------------------------------
# the registry


def _default_check(task: EvalTask, config: StudyConfig, probe: nn.Module) -> None:
    for name in task.attack_fields:
        make_attack(getattr(config.evaluation, name), probe, f"evaluation.{name}")


@dataclass(frozen=True)
class EvalTask:
    """One evaluation task of the table.

    Attributes:
        name: the name in ``evaluation.metrics``.
        run: computes the task in one cell; None for cross-model tasks that the study runs
            once per group of cells (the transfer matrix).
        description: one line for listings and docs.
        attack_fields: the ``evaluation`` fields holding the attacks it builds (built on a
            model on the meta device before the study writes anything).
        validate: further checks of the config before anything is written (raise
            :class:`ConfigError` naming the field).
    """

    name: str
    run: Callable[[CellEval], TaskOutput] | None
    description: str = ""
    attack_fields: tuple[str, ...] = ()
    validate: Callable[[StudyConfig, nn.Module], None] | None = None

    def check(self, config: StudyConfig, probe: nn.Module) -> None:
        """Build the task's attacks on ``probe`` and run its ``validate``."""
        _default_check(self, config, probe)
        if self.validate is not None:
            self.validate(config, probe)


_TASKS: dict[str, EvalTask] = {}


def register_task(
    name: str,
    *,
    description: str = "",
    attack_fields: Sequence[str] = (),
    validate: Callable[[StudyConfig, nn.Module], None] | None = None,
    per_cell: bool = True,
) -> Callable[[Callable[[CellEval], TaskOutput]], Callable[[CellEval], TaskOutput]]:
    """Decorator registering a function ``run(ctx: CellEval) -> TaskOutput`` as a study task.

    Args:
        name: the name in ``evaluation.metrics`` (letters, digits, ``-``).
        description: one line saying what it measures.
        attack_fields: ``evaluation`` fields naming the attacks it builds (checked early).
        validate: further config checks before anything is written.
        per_cell: False for a cross-model task the study runs itself (only the transfer
            matrix); its function is not called per cell.

    Raises:
        ValueError: a task of that name exists already.
    """

    def deco(fn: Callable[[CellEval], TaskOutput]) -> Callable[[CellEval], TaskOutput]:
        if name in _TASKS:
            raise ValueError(f"a study task named {name!r} is registered already")
        _TASKS[name] = EvalTask(
            name, fn if per_cell else None, description, tuple(attack_fields), validate
        )
        return fn

    return deco


def unregister_task(name: str) -> None:
    """Remove a registered task (for tests and interactive sessions)."""
    _TASKS.pop(name, None)


def task_names() -> list[str]:
    """The registered task names, built-ins first."""
    return list(_TASKS)


def get_task(name: str) -> EvalTask:
    """The task registered as ``name`` (the message lists the valid names)."""
    if name not in _TASKS:
        raise ValueError(f"unknown study task {name!r}; registered tasks: {', '.join(_TASKS)}")
    return _TASKS[name]


def run_task(name: str, ctx: CellEval) -> TaskOutput:
    """Run the per-cell task ``name`` on ``ctx`` as a study cell does.

    The task draws from torch's global generator (dropout, default generators) under a seed
    of its own, ``part_seed(cell.seed, name)``, and the caller's generator state is restored
    afterwards: the same cell seed gives the same numbers in a study, after a resume and in
    ``advrobust evaluate --seed``.

    Raises:
        ValueError: ``name`` is unknown, or a cross-model task (run per group of cells).
        TypeError: the task returned something other than a :class:`TaskOutput`.
    """
    run = get_task(name).run
    if run is None:
        raise ValueError(f"study task {name!r} runs once per group of cells, not per cell")
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(part_seed(ctx.cell.seed, name))
        output: object = run(ctx)  # (a user task may return anything)
    if not isinstance(output, TaskOutput):
        got = type(output).__name__
        raise TypeError(f"study task {name!r} must return a TaskOutput, got {got}")
    return output


# --------------------------------------------------------------------------------------------
# the built-in tasks


@register_task("accuracy", description="clean accuracy on the accuracy set")
def _accuracy(ctx: CellEval) -> TaskOutput:
    clean = ctx.clean
    return TaskOutput([{"metric": "accuracy", "value": float(clean["accuracy"]), "n": clean["n"]}])


def _norms(delta: Tensor, norm: str) -> Tensor:
    """Per-example ``linf`` or ``l2`` norm of a batch of perturbations (in their dtype)."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(1)
    l2: Tensor = torch.linalg.vector_norm(flat, ord=2, dim=1)
    return l2


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
    norm = attack.spec().norm
    lo, hi = (float(b) for b in attack.bounds)
    limit = (hi - lo) * (math.sqrt(xs[0].numel()) if norm == "l2" else 1.0)
    dist, found, verified = [], [], []
    for start in range(0, len(xs), ctx.batch_size):
        xb, yb = xs[start : start + ctx.batch_size], ys[start : start + ctx.batch_size]
        res = attack.run(xb, yb, generator=gen)
        measured = _norms(res.x_adv - xb, norm)
        d = torch.where(res.success, measured, torch.full_like(measured, math.inf))
        dist.append(d)
        found.append(res.success & (d <= limit * (1 + 1e-6)))
        with torch.inference_mode():
            wrong = ctx.model(res.x_adv).argmax(1) != yb
        inside = (res.x_adv >= lo).flatten(1).all(1) & (res.x_adv <= hi).flatten(1).all(1)
        exact = _norms(res.x_adv.double() - xb.double(), norm)
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
    description="minimal Linf distortion per example (paper 000 eq. 4 at aggregation)",
    attack_fields=("linf_attack",),
)(_distortion("linf"))
register_task(
    "robustness-l2",
    description="minimal L2 distortion per example (paper 000 eq. 4 at aggregation)",
    attack_fields=("l2_attack",),
)(_distortion("l2"))


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
    description="paper 000 eq. 5 at every Delta of evaluation.deltas",
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
