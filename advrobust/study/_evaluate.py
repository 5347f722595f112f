"""``advrobust evaluate``: a saved model measured by the study's own evaluation tasks.

The command checks every option first (each problem is one :class:`CLIError` line that names
the option and says what to do), loads the weights into the registered model, and then runs
a one-cell study in memory through the study's task table (:mod:`advrobust.study._tasks`):
the clean pass, then per attack the ``adversarial-accuracy`` task at every ``--eps`` (for
fixed-eps attacks) or the ``robustness-linf`` / ``robustness-l2`` task (minimal distortion),
and with ``--suite`` the ``adversarial-accuracy`` task with ``evaluation.robust_suite`` set.
There is no loop of its own over :mod:`advrobust.metrics`: the numbers are the ones a study
cell computes.

The cell's seed is ``--seed``: every task draws from ``part_seed(seed, task)``, as in a study.
With ``--seed`` set to a study cell's ``seed`` (its ``cell.json``) and ``--num-examples``
covering the whole split (the study's ``evaluation.num_examples`` equal to the split's size,
so that both samples are the whole split), ``evaluate`` on the cell's ``model.pt`` prints the
study's numbers for the same attacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advrobust.models import to_device

from ._build import StudyData, build_model, load_weights, resolve_device
from ._config import AttackSpec, DataSpec, EvalSpec, ModelSpec, StudyConfig
from ._errors import INSTALL_HINT, USAGE, CLIError, missing_packages
from ._grid import Cell
from ._tasks import CellEval, TaskOutput, clean_pass, run_task

__all__ = ["evaluate_command"]


def evaluate_command(args: argparse.Namespace, *, progress: bool) -> int:
    """Run ``advrobust evaluate`` for parsed ``args``; prints the metrics table to stdout.

    Args:
        args: the parsed options of the ``evaluate`` subcommand.
        progress: draw progress bars on stderr (the caller decides: a terminal, no
            ``--no-progress``).

    Returns:
        0 (every problem raises :class:`CLIError` before any attack runs).
    """
    from advrobust import metrics as M
    from advrobust.data import load_dataset

    if args.suite is not None and not args.eps:
        raise CLIError(
            f"--suite {args.suite} measures robust accuracy at a fixed eps: pass --eps E", USAGE
        )
    if args.suite is not None and getattr(M, "robust_accuracy", None) is None:
        raise CLIError(
            "--suite needs advrobust.metrics.robust_accuracy, which this version of advrobust "
            "lacks; upgrade advrobust, or pass --attack NAME --eps E instead"
        )
    if args.dataset == "digits":
        missing = missing_packages(["sklearn"])
        if missing:
            raise CLIError(
                f"the digits dataset needs {', '.join(missing)}, which is not installed; "
                f"run: {INSTALL_HINT}"
            )
    names = args.attack if args.attack is not None else ([] if args.suite else ["BIM", "CWL2"])
    attack_kwargs = _parse_attack_kwargs(args.attack_kwargs or [])
    weights = Path(args.weights)
    if weights.is_dir():
        raise CLIError(
            f"--weights {weights} is a folder; pass the weights file itself (e.g. "
            f"{weights / 'model.pt'})",
            USAGE,
        )
    if not weights.is_file():
        raise CLIError(f"--weights {weights} does not exist")
    spec = _model_record(args, weights)
    data = load_dataset(args.dataset, root=args.root, split=args.split)
    n = len(data.targets)
    if args.num_examples is not None and args.num_examples > n:
        raise CLIError(
            f"--num-examples {args.num_examples} is larger than the {args.split} split of "
            f"{args.dataset} ({n} examples); pass --num-examples {n} or fewer",
            USAGE,
        )
    num_examples = min(500, n) if args.num_examples is None else args.num_examples
    device = resolve_device(args.device)
    if args.model_kwargs is not None:
        try:
            spec["kwargs"] = json.loads(args.model_kwargs)
        except json.JSONDecodeError as error:
            raise CLIError(f"--model-kwargs is not valid JSON: {error}", USAGE) from None
        if not isinstance(spec["kwargs"], dict):
            raise CLIError("--model-kwargs must be a JSON object, e.g. '{\"width\": 0.5}'", USAGE)
    shape = tuple(data.data.shape)
    spec.update(
        name=args.model,
        num_classes=len(data.classes),
        in_channels=int(shape[1]),
        input_size=int(shape[-1]),
    )
    spec.setdefault("kwargs", {})
    if args.no_normalize:
        spec["normalize"] = None
    elif "normalize" not in spec:
        spec["normalize"] = [list(data.mean), list(data.std)]
    try:
        model = build_model(spec)
    except (TypeError, ValueError) as error:
        raise CLIError(f"--model {args.model!r} with kwargs {spec['kwargs']}: {error}") from None
    try:
        load_weights(model, weights)
    except Exception as error:  # any failure to read the file: explain it, never a traceback
        problem = _weights_problem(weights, model, spec)
        if problem is None:
            problem = (
                f"--weights: model {args.model!r} with kwargs {spec['kwargs']} "
                f"(normalize={spec['normalize'] is not None}): {error}"
            )
        raise CLIError(problem) from None
    model = to_device(model, device).eval()
    # every attack is built (its settings checked) and given its task before any work
    eps = tuple(args.eps or ())
    plans = [_plan(name, model, attack_kwargs.get(name, {}), eps) for name in names]
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.permutation(n)[:num_examples])
    study_data = StudyData(
        data, data, [], idx, np.arange(n), len(data.classes), int(shape[1]), int(shape[-1])
    )
    mspec = ModelSpec(args.model, dict(spec["kwargs"]), label="model")
    config = StudyConfig(
        name="evaluate",
        data=DataSpec(name=args.dataset, sizes=(1,), test_split=args.split, root=args.root),
        models=(mspec,),
        evaluation=EvalSpec(
            metrics=("accuracy",), num_examples=len(idx), batch_size=args.batch_size
        ),
        seed=args.seed,
    )
    cell = Cell(0, 0, 1, mspec, config.recipes[0], seed=args.seed)
    _report(args, weights, config, cell, model, device, study_data, plans, progress)
    return 0


@dataclasses.dataclass(frozen=True)
class _Plan:
    """One attack of the command line as a study task: its label and the evaluation fields."""

    label: str
    task: str
    changes: dict[str, Any]


def _plan(name: str, model: nn.Module, kwargs: dict[str, Any], eps: tuple[float, ...]) -> _Plan:
    """The study task that measures the attack ``name`` (built once here to check it).

    A fixed-eps attack with ``--eps`` runs as ``adversarial-accuracy`` at every eps; otherwise
    the ``robustness-<norm>`` task measures its minimal distortion (an eps search for a
    fixed-eps attack, the attack's own distances for a minimal-norm one).
    """
    spec, attack = _attack_spec(name, model, kwargs, eps)
    info = attack.spec()
    at_eps = _Plan(info.name, "adversarial-accuracy", {"delta_attack": spec, "deltas": eps})
    if eps and info.bounded:
        return at_eps
    if info.norm in ("linf", "l2"):
        return _Plan(info.name, f"robustness-{info.norm}", {f"{info.norm}_attack": spec})
    if eps:
        return at_eps
    raise CLIError(
        f"--attack {info.name}: minimal distortion is measured in linf or l2, and "
        f"{info.name} attacks in {info.norm}; pass --eps E for its adversarial accuracy",
        USAGE,
    )


def _report(
    args: argparse.Namespace,
    weights: Path,
    config: StudyConfig,
    cell: Cell,
    model: nn.Module,
    device: torch.device,
    data: StudyData,
    plans: Sequence[_Plan],
    progress: bool,
) -> None:
    """Run the clean pass and every plan through the study's tasks and print the table."""
    from tqdm.auto import tqdm

    steps = 1 + (args.suite is not None) + len(plans)
    bar = tqdm(total=steps, desc="evaluate", unit="metric", disable=not progress, leave=False)

    def emit(label: str, value: float, count: str) -> None:
        shown = "nan" if math.isnan(value) else f"{value:.4f}"
        line = f"{label:44s} {shown:>10s}  {count}"
        if progress:
            bar.write(line, file=sys.stdout)
        else:
            print(line)

    def run(task: str, **changes: Any) -> TaskOutput:
        """The study task ``task`` on this cell, with ``evaluation`` fields changed."""
        ev = dataclasses.replace(config.evaluation, **changes)
        ctx = CellEval(
            config.replace(evaluation=ev), cell, model, device, data, lambda: clean,
            progress=progress,
        )  # fmt: skip
        bar.set_postfix_str(task)
        output = run_task(task, ctx)
        bar.update(1)
        return output

    try:
        print(f"model {args.model} ({weights}) on {args.dataset}/{args.split}")
        print(f"{'metric':44s} {'value':>10s}  n")
        bar.set_postfix_str("accuracy")
        clean = clean_pass(config, model, device, data, progress=progress)
        bar.update(1)
        emit("accuracy", float(clean["accuracy"]), str(clean["n"]))
        if args.suite is not None:
            # the task takes the suite's norm from delta_attack (its attack is not run)
            carrier = AttackSpec("BIM", {"norm": args.norm})
            out = run(
                "adversarial-accuracy",
                delta_attack=carrier,
                deltas=tuple(args.eps),
                robust_suite=args.suite,
            )
            for row in out.rows:
                label = f"robust accuracy {row['norm']} eps={row['delta']:g} [{args.suite}]"
                emit(label, float(row["value"]), str(row["n"]))
        for plan in plans:
            out = run(plan.task, **plan.changes)
            if plan.task == "adversarial-accuracy":
                for row in out.rows:
                    label = f"adversarial accuracy {row['norm']} eps={row['delta']:g}"
                    emit(f"{label} [{plan.label}]", float(row["value"]), str(row["n"]))
                continue
            norm = plan.task.removeprefix("robustness-")
            found = np.asarray(out.arrays[f"{norm}_found"], dtype=bool)
            unbroken = int((np.asarray(clean["correct"], dtype=bool) & ~found).sum())
            emit(
                f"mean minimal {norm} distortion [{plan.label}]",
                float(out.rows[0]["value"]),
                f"{int(found.sum())} broken, {unbroken} unbroken",
            )
    finally:
        bar.close()


# --------------------------------------------------------------------------------------------
# checks of the options (each problem: one line naming the option)


def _parse_attack_kwargs(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Parse repeated ``NAME=JSON`` options into constructor kwargs per registry name."""
    from advrobust.attacks import attack_info, list_attacks

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        try:
            canonical = attack_info(name.strip()).name if sep else None
        except ValueError:
            canonical = None
        if canonical is None:
            raise CLIError(
                f"--attack-kwargs must look like NAME=JSON with NAME a registered attack "
                f"({', '.join(list_attacks())}), got {item!r}",
                USAGE,
            )
        try:
            kwargs = json.loads(text)
        except json.JSONDecodeError as error:
            raise CLIError(f"--attack-kwargs {item!r}: not valid JSON ({error})", USAGE) from None
        if not isinstance(kwargs, dict):
            raise CLIError(f"--attack-kwargs {item!r}: the JSON must be an object", USAGE)
        out.setdefault(canonical, {}).update(kwargs)
    return out


def _few(keys: Sequence[str], shown: int = 3) -> str:
    """``a, b, c (+4 more)``."""
    more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def _model_record(args: argparse.Namespace, weights: Path) -> dict[str, Any]:
    """The ``model.json`` beside the weights (or ``{}``), checked; errors name the file."""
    sidecar = (
        weights.with_name("model.json")
        if weights.name == "model.pt"
        else weights.with_suffix(".json")
    )
    if not sidecar.is_file():
        return {}
    what_to_do = (
        "restore it from the study folder, or delete it and pass --model-kwargs JSON (and "
        "--no-normalize if the model has no Normalize first layer)"
    )
    try:
        spec = json.loads(sidecar.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CLIError(
            f"{sidecar} (the model record of {weights.name}) is corrupt: not valid JSON "
            f"({error}); {what_to_do}"
        ) from None
    normalize = spec.get("normalize") if isinstance(spec, dict) else None
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("kwargs", {}), dict)
        or not isinstance(spec.get("name", ""), str)
        or not (normalize is None or (isinstance(normalize, list) and len(normalize) == 2))
    ):
        raise CLIError(
            f"{sidecar} is not a model record (a JSON object with name, kwargs and normalize); "
            f"{what_to_do}"
        )
    recorded = spec.get("name")
    if recorded is not None and recorded != args.model:
        raise CLIError(
            f"--model {args.model!r} does not match {sidecar}, which records the weights "
            f"as model {recorded!r}; pass --model {recorded}",
            USAGE,
        )
    return spec


def _weights_problem(path: Path, model: Any, spec: Mapping[str, Any]) -> str | None:
    """Why the weights file at ``path`` does not load into ``model`` (None: no reason found)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, KeyError, EOFError
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
        return (
            f"--weights {path} is not a readable weights file (truncated, or not written by "
            f"torch.save: {first}); pass the model.pt of a finished study cell, or a file "
            f"written by torch.save(model.state_dict(), PATH)"
        )
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        found = (
            f"a mapping with keys {_few([str(k) for k in state])}"
            if isinstance(state, Mapping)
            else f"a {type(state).__name__}"
        )
        return (
            f"--weights {path} holds {found}, not a model state_dict (parameter name -> tensor); "
            f"pass a file written by torch.save(model.state_dict(), PATH), e.g. a study "
            f"cell's model.pt"
        )
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    name = spec.get("name")
    normalized = spec.get("normalize") is not None
    if missing or unexpected:
        parts = [f"missing keys {_few(missing)}"] if missing else []
        parts += [f"unexpected keys {_few(unexpected)}"] if unexpected else []
        inner = {k[2:] for k in missing if k.startswith("1.")}
        outer = {k for k in missing if not k.startswith("1.")}
        extra = {k[2:] for k in unexpected if k.startswith("1.")}
        if normalized and inner == set(unexpected) and all(k.startswith("0.") for k in outer):
            hint = "the weights were saved without a Normalize first layer: pass --no-normalize"
        elif not normalized and extra and extra == set(missing):
            hint = "the weights were saved with a Normalize first layer: drop --no-normalize"
        else:
            hint = "check --model and --model-kwargs (the architecture of the weights)"
        return f"--weights {path} does not fit model {name!r}: {'; '.join(parts)}; {hint}"
    wrong = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        return (
            f"--weights {path} does not fit model {name!r}: {len(wrong)} tensor(s) differ in "
            f"shape, e.g. {k}: {tuple(state[k].shape)} in the file, {tuple(expected[k].shape)} "
            f"in the model; check --model-kwargs (e.g. width, hidden) and --dataset"
        )
    return None


def _attack_spec(
    name: str, model: nn.Module, kwargs: Mapping[str, Any], eps: Sequence[float] | None
) -> tuple[AttackSpec, Any]:
    """The config spec of the attack ``name`` and the attack built from it on ``model``.

    Building it checks ``--attack-kwargs``; an eps the constructor requires comes from the
    first ``--eps`` (the adversarial-accuracy task sets eps = Delta at each one).
    """
    import inspect

    from advrobust.attacks import attack_info, create_attack

    kwargs = dict(kwargs)
    param = inspect.signature(attack_info(name).cls.__init__).parameters.get("eps")
    if param is not None and param.default is inspect.Parameter.empty and "eps" not in kwargs:
        if not eps:
            raise CLIError(f"--attack {name} needs an eps: pass --eps E", USAGE)
        kwargs["eps"] = eps[0]
    try:
        attack = create_attack(name, model, **kwargs)
    except (TypeError, ValueError) as error:
        raise CLIError(f"--attack-kwargs for {name}: {error}", USAGE) from None
    return AttackSpec(name, kwargs), attack
