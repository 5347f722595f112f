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
``results.csv``. Nothing of the runner changes. The built-in tasks are written the same way,
in :mod:`advrobust.study._builtin_tasks`; this module holds the machinery.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ._build import StudyData, make_attack, subset_tensors
from ._config import StudyConfig
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


# The built-in tasks register themselves when their module is imported; importing it here, once
# the machinery above exists, makes every import of the table see them, built-ins first.
from . import _builtin_tasks as _builtin_tasks  # noqa: E402
