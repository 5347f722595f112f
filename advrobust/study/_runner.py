"""Running a study: train and evaluate every cell, resumably and shardably.

Layout of an output folder::

    study.json            state record: config fingerprint, full config, library version
    config.toml           the config, human-readable
    cells/<key>/          one folder per cell (subset size x model x recipe)
        model.json        create_model arguments (rebuild the model for the weights)
        checkpoints/      the trainer's resumable checkpoint while the cell trains
        model.pt          trained weights (state_dict), written when training finished
        eval-*.json|npz   evaluation parts, each written when it finished
        per_example.npz   correctness and minimal distortions on the fixed evaluation sample
        cell.json         the cell's record, written last: its presence means "finished"
    groups/<key>/group.json   cross-model tasks (transfer matrices), written when finished
    results.csv, results.json, figures/<study>-<recipe>.png|svg

Every record is written atomically. A rerun skips finished cells, resumes an interrupted cell
from its trainer checkpoint (or from its finished evaluation parts), and refuses to reuse a
folder that holds another config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import Tensor, nn

from ._config import AttackSpec, ConfigError, RecipeSpec, StudyConfig, config_diff
from ._grid import Cell, Shard, cell_seed, enumerate_cells, shard_cells
from ._plots import plot_results
from ._results import build_rows, cell_dir, finished_cells, format_summary, write_results
from ._state import (
    atomic_write_json,
    atomic_write_text,
    load_arrays,
    read_json,
    save_arrays,
    save_state_dict,
)

__all__ = [
    "StudyConfigMismatchError",
    "StudyResult",
    "evaluation_sample",
    "finalize_study",
    "load_cell_model",
    "merge_studies",
    "run_study",
]

_STATE = "study.json"
_FORMAT = 1


class StudyConfigMismatchError(ValueError):
    """The output folder holds a study with a different config."""


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` (or :func:`merge_studies`) produced.

    Attributes:
        out_dir: the study folder.
        rows: the tidy result rows (as in ``results.json``).
        figures: figure files written.
        summary: the printed summary table.
        cells_run: keys of the cells trained/evaluated by this call.
        cells_skipped: keys of the cells that were already finished.
        complete: whether every cell of the grid is finished in ``out_dir``.
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    figures: list[Path]
    summary: str
    cells_run: list[str] = field(default_factory=list)
    cells_skipped: list[str] = field(default_factory=list)
    complete: bool = False


# --------------------------------------------------------------------------------------------
# output folder and state record


def _prepare_out_dir(config: StudyConfig, out_dir: Path) -> None:
    state_path = out_dir / _STATE
    if not state_path.is_file():
        # (hidden temporary files of a concurrent shard creating the same folder do not count)
        visible = (
            [p for p in out_dir.iterdir() if not p.name.startswith(".")] if out_dir.exists() else []
        )
        if not visible:
            _write_state(config, out_dir)
            return
        if not state_path.is_file():  # (not just written by a shard sharing the folder)
            raise StudyConfigMismatchError(
                f"{out_dir} is not empty and holds no {_STATE}; refusing to write a study into "
                f"it. Choose an empty or new --out folder."
            )
    state = read_json(state_path)
    # compare the recorded config itself, so that a folder stays usable when what counts as
    # the identity changes between versions (the recorded fingerprint is informative)
    old = StudyConfig.from_dict(state["config"]) if "config" in state else None
    if old is None or old.fingerprint() != config.fingerprint():
        diffs = config_diff(old.identity(), config.identity()) if old else ["<unknown>"]
        shown = "\n  ".join(diffs[:12]) + ("\n  ..." if len(diffs) > 12 else "")
        raise StudyConfigMismatchError(
            f"{out_dir} already holds study {state.get('name')!r} with a different config; "
            f"refusing to mix results. Changed fields:\n  {shown}\n"
            f"Use another --out folder, or delete {out_dir} to start over."
        )


def _write_state(config: StudyConfig, out_dir: Path) -> None:
    from advrobust import __version__

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out_dir / _STATE,
        {
            "format": _FORMAT,
            "name": config.name,
            "fingerprint": config.fingerprint(),
            "advrobust": __version__,
            "config": config.to_dict(),
        },
    )
    atomic_write_text(out_dir / "config.toml", config.to_toml())


def _load_state_config(out_dir: Path) -> StudyConfig:
    path = Path(out_dir) / _STATE
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir} is not a study folder: {path} is missing")
    state = read_json(path)
    return StudyConfig.from_dict(state["config"])


# --------------------------------------------------------------------------------------------
# torch.distributed (torchrun): every rank trains each cell together (the trainer's DDP);
# rank 0 alone evaluates and writes records; the others wait at a barrier.


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


# --------------------------------------------------------------------------------------------
# devices, data, models


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Under torchrun (an initialised process group with several ranks) a plain ``cuda`` becomes
    ``cuda:LOCAL_RANK``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    is_cuda = str(dev.type) == "cuda"
    if is_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available")
    return _per_rank(dev)


def _per_rank(dev: torch.device) -> torch.device:
    import os

    if str(dev) == "cuda" and _dist()[1] > 1:  # no explicit index given
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


@dataclass
class _Data:
    train: Any
    test: Any
    subsets: list[np.ndarray]
    eval_idx: np.ndarray
    acc_idx: np.ndarray
    num_classes: int
    in_channels: int
    input_size: int


def _load_data(config: StudyConfig) -> _Data:
    from advrobust.data import load_dataset, nested_balanced_subsets

    spec = config.data
    try:
        train = load_dataset(spec.name, root=spec.root, split="train")
        test = load_dataset(spec.name, root=spec.root, split=spec.test_split)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}\n(study {config.name!r} uses data.name={spec.name!r} with "
            f"data.root={spec.root!r}; set data.root in the config or pass --root DIR)"
        ) from None
    try:
        subsets = nested_balanced_subsets(
            train.targets, list(spec.sizes), seed=spec.seed, per_class=spec.per_class
        )
    except ValueError as error:
        raise ConfigError("data.sizes", str(error)) from None
    n_test = len(test.targets)
    for field_name in ("num_examples", "accuracy_examples"):
        wanted = getattr(config.evaluation, field_name)
        if wanted is not None and wanted > n_test:
            raise ConfigError(
                f"evaluation.{field_name}",
                f"{wanted} examples asked, but the {spec.test_split} split of {spec.name} has "
                f"{n_test}; set it to {n_test} or fewer",
            )
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 1]))
    order = rng.permutation(n_test)
    eval_idx = np.sort(order[: min(config.evaluation.num_examples, n_test)])
    n_acc = config.evaluation.accuracy_examples
    acc_idx = np.arange(n_test) if n_acc is None else np.sort(order[: min(n_acc, n_test)])
    shape = tuple(train.data.shape)
    return _Data(
        train=train,
        test=test,
        subsets=[np.asarray(s, dtype=np.int64) for s in subsets],
        eval_idx=eval_idx,
        acc_idx=acc_idx,
        num_classes=len(train.classes),
        in_channels=int(shape[1]),
        input_size=int(shape[-1]),
    )


def evaluation_sample(config: StudyConfig, *, accuracy_set: bool = False) -> tuple[Tensor, Tensor]:
    """The fixed test examples a study evaluates (the same for every cell).

    Args:
        config: the study.
        accuracy_set: the clean-accuracy examples (``evaluation.accuracy_examples``) instead of
            the attack sample (``evaluation.num_examples``).

    Returns:
        ``(x, y)`` on the CPU, e.g. to evaluate :func:`load_cell_model` models further.
    """
    data = _load_data(config)
    idx = torch.as_tensor(data.acc_idx if accuracy_set else data.eval_idx)
    return data.test.data[idx], data.test.targets[idx]


def _model_args(config: StudyConfig, cell: Cell, data: _Data) -> dict[str, Any]:
    args: dict[str, Any] = {
        "name": cell.model.name,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "input_size": data.input_size,
        "kwargs": dict(cell.model.kwargs),
        "normalize": None,
    }
    if cell.model.normalize:
        args["normalize"] = [list(data.train.mean), list(data.train.std)]
    return args


def build_model(args: Mapping[str, Any], *, seed: int | None = None) -> nn.Module:
    """Build a model from a ``model.json`` record (seeded, without touching the global RNG)."""
    from advrobust.models import create_model

    normalize = args.get("normalize")
    norm = (tuple(normalize[0]), tuple(normalize[1])) if normalize else None
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model: nn.Module = create_model(
            args["name"],
            num_classes=int(args["num_classes"]),
            in_channels=int(args["in_channels"]),
            input_size=int(args["input_size"]),
            normalize=norm,
            **args.get("kwargs", {}),
        )
    return model


def load_cell_model(out_dir: str | Path, key: str, *, device: str = "cpu") -> nn.Module:
    """The trained model of a finished cell of a study folder, in eval mode.

    Args:
        out_dir: the study folder.
        key: the cell key (``n0000100-mlp-clean``; see ``cells/`` in the folder).
        device: where to put the model.

    Returns:
        The model with its trained weights.
    """
    folder = cell_dir(Path(out_dir), key)
    weights = folder / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist (is the cell finished?)")
    model = load_weights(build_model(read_json(folder / "model.json")), weights)
    return model.to(resolve_device(device)).eval()


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``state_dict`` file into ``model`` (``weights_only``); errors name the file."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} does not fit the model: {first}") from None
    return model


def _augment(names: Sequence[str], input_size: int) -> Any:
    if not names:
        return None
    from advrobust.data import Compose, RandomFlip, RandomRotation, RandomShift

    table: dict[str, Callable[[], Any]] = {
        "shift": lambda: RandomShift(max(1, round(input_size / 8))),
        "flip": lambda: RandomFlip(),
        "rotation": lambda: RandomRotation(15.0),
    }
    return Compose([table[n]() for n in names])


def train_config(config: StudyConfig, recipe: RecipeSpec, seed: int) -> Any:
    """The :class:`advrobust.training.TrainConfig` of one recipe (errors name the field)."""
    from advrobust.training import TrainConfig

    t = config.training
    base: dict[str, Any] = {
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "optimizer": t.optimizer,
        "lr": t.lr,
        "momentum": t.momentum,
        "weight_decay": t.weight_decay,
        "checkpoint_every": t.checkpoint_every,
        "seed": seed % (2**31),
    }
    base.update(t.settings)
    base.update(recipe.settings)
    factory = {
        "clean": TrainConfig.clean,
        "kurakin": TrainConfig.kurakin,
        "pgd-at": TrainConfig.pgd_at,
    }[recipe.kind]
    index = config.recipes.index(recipe)
    try:
        return factory(**base)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"recipes[{index}].settings", f"recipe {recipe.name!r}: {error}"
        ) from None


def make_attack(spec: AttackSpec, model: nn.Module, field_name: str, **overrides: Any) -> Any:
    """Build an attack of :mod:`advrobust.attacks` from a spec (errors name the config field)."""
    from advrobust import attacks

    cls = getattr(attacks, spec.name)
    kwargs = {**spec.kwargs, **overrides}
    try:
        return cls(model, **kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"evaluation.{field_name}", f"{spec.name}: {error}") from None


def attack_at(attack: Any, delta: float) -> Any:
    """The attack run for eq. 5 at threshold Delta: ``eps = Delta`` (CW-L2 has no eps: as is)."""
    return attack.replace(eps=delta) if "eps" in attack.config() else attack


def adversarial_accuracies(
    model: nn.Module,
    data: tuple[Tensor, Tensor],
    attack: Any,
    deltas: Sequence[float],
    *,
    batch_size: int,
    generator: torch.Generator | None,
) -> list[float]:
    """The ICLR 2019 study eq. 5 (:func:`advrobust.metrics.adversarial_accuracy`) at every Delta."""
    from advrobust import metrics as M

    return [
        float(
            M.adversarial_accuracy(
                model,
                data,
                attack_at(attack, delta),
                delta=delta,
                norm=attack.norm,
                batch_size=batch_size,
                generator=generator,
            ).value
        )
        for delta in deltas
    ]


def _attack_info(attack: Any) -> dict[str, Any]:
    return {"repr": repr(attack), "config": json.loads(json.dumps(attack.config(), default=str))}


def _check_config_buildable(config: StudyConfig, data: _Data) -> None:
    """Fail before anything is written if a model, recipe or attack spec cannot be built."""
    from advrobust.models import create_model

    for i, mspec in enumerate(config.models):
        try:
            with torch.device("meta"):
                create_model(
                    mspec.name,
                    num_classes=data.num_classes,
                    in_channels=data.in_channels,
                    input_size=data.input_size,
                    **mspec.kwargs,
                )
        except (TypeError, ValueError) as error:
            raise ConfigError(f"models[{i}].kwargs", f"model {mspec.key!r}: {error}") from None
    for i, recipe in enumerate(config.recipes):
        tcfg = train_config(config, recipe, 0)
        try:
            tcfg.num_replaced(tcfg.batch_size)  # k of m: not more than the batch
        except ValueError as error:
            raise ConfigError(
                f"recipes[{i}].settings", f"recipe {recipe.name!r}: {error}"
            ) from None
    probe = nn.Sequential(nn.Flatten(), nn.Linear(data.in_channels * data.input_size**2, 2))
    ev = config.evaluation
    wanted = {
        "robustness-linf": ("linf_attack", ev.linf_attack),
        "robustness-l2": ("l2_attack", ev.l2_attack),
        "adversarial-accuracy": ("delta_attack", ev.delta_attack),
        "transfer-matrix": ("transfer_attack", ev.transfer_attack),
        "deepsec": ("deepsec_attack", ev.deepsec_attack),
    }
    for metric, (name, spec) in wanted.items():
        if metric in ev.metrics:
            make_attack(spec, probe, name)


# --------------------------------------------------------------------------------------------
# progress


class _Progress:
    """An overall bar over cells and a nested bar for the stages of the current cell."""

    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        self.enabled = enabled
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                desc=desc,
                unit="cell",
                position=0,
                dynamic_ncols=True,
                disable=None,  # no bar when stderr is not a terminal (a log file, a pipe)
            )

    def stage(self, cell: Cell, total: int) -> Any:
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            desc=f"  {cell.key}",
            unit="stage",
            position=1,
            leave=False,
            dynamic_ncols=True,
            disable=None,
        )

    def advance(self, key: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(key, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------
# one cell


def _subset_tensors(dataset: Any, idx: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    index = torch.as_tensor(idx, dtype=torch.long)
    return dataset.data[index].to(device), dataset.targets[index].to(device)


@dataclass(frozen=True)
class _CellJob:
    """What training and evaluating one cell read: the study, the cell and where it runs."""

    config: StudyConfig
    cell: Cell
    folder: Path
    data: _Data
    device: torch.device
    seed: int
    progress: bool


def _train_cell(job: _CellJob, model: nn.Module) -> None:
    from advrobust.data import TensorLoader
    from advrobust.training import AdversarialTrainer

    config, cell, folder, data, device, seed = (
        job.config,
        job.cell,
        job.folder,
        job.data,
        job.device,
        job.seed,
    )
    x, y = _subset_tensors(data.train, data.subsets[cell.size_index], device)
    names = cell.model.augmentation
    if names is None:
        names = config.training.augmentation
    loader = TensorLoader(
        x,
        y,
        batch_size=config.training.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        augment=_augment(names, data.input_size),
    )
    tcfg = train_config(config, cell.recipe, seed)
    ckpt_dir = folder / "checkpoints"
    trainer = AdversarialTrainer(model, tcfg, checkpoint_dir=ckpt_dir)
    last = ckpt_dir / "last.pt"
    if last.is_file():
        trainer.resume(last)
    trainer.fit(loader, progress=job.progress)
    if _dist()[0] == 0:
        save_state_dict(folder / "model.pt", model.state_dict())
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    _barrier()


@contextlib.contextmanager
def _eval_part(folder: Path, name: str) -> Iterator[dict[str, Any]]:
    """Collect one evaluation part into a dict; persisted atomically when the block ends."""
    part: dict[str, Any] = {}
    yield part
    atomic_write_json(folder / f"eval-{name}.json", part)


def _done(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"eval-{name}.json"
    if path.is_file():
        out: dict[str, Any] = read_json(path)
        return out
    return None


def _evaluate_cell(
    job: _CellJob, model: nn.Module, bar: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every per-cell metric; per-example arrays for the cross-model robustness score."""
    from advrobust import metrics as M

    folder, data, device, seed = job.folder, job.data, job.device, job.seed
    ev = job.config.evaluation
    model.eval()
    bs = ev.batch_size
    rows: list[dict[str, Any]] = []
    attacks: dict[str, Any] = {}
    gen = torch.Generator(device=device).manual_seed(seed % (2**63))

    def tick() -> None:
        if bar is not None:
            bar.update(1)

    # clean accuracy on the accuracy set
    part = _done(folder, "accuracy")
    if part is None:
        with _eval_part(folder, "accuracy") as part:
            xa, ya = _subset_tensors(data.test, data.acc_idx, device)
            res = M.accuracy(model, (xa, ya), batch_size=bs)
            part["value"], part["n"] = float(res.value), int(res.num_examples)
    if "accuracy" in ev.metrics:
        rows.append({"metric": "accuracy", "value": part["value"], "n": part["n"]})
    tick()

    xe, ye = _subset_tensors(data.test, data.eval_idx, device)
    n_eval = int(ye.shape[0])
    arrays_path = folder / "eval-per-example.npz"
    arrays: dict[str, np.ndarray] = load_arrays(arrays_path) if arrays_path.is_file() else {}
    if "correct" not in arrays:
        res = M.accuracy(model, (xe, ye), batch_size=bs)
        arrays["correct"] = res.correct.cpu().numpy().astype(bool)
        save_arrays(arrays_path, arrays)
    correct = torch.as_tensor(arrays["correct"], device=device)

    # minimal distortions (per example, on the clean-correct examples of the sample)
    for norm, metric in (("linf", "robustness-linf"), ("l2", "robustness-l2")):
        if metric not in ev.metrics:
            continue
        spec_name = f"{norm}_attack"
        attack = make_attack(getattr(ev, spec_name), model, spec_name)
        info = _attack_info(M.search_attack(attack))
        if "eps" in info["config"]:
            # the eps of a fixed-eps attack is searched per example by bisection
            if norm == "linf":
                info["config"]["eps"] = {"search": [0.0, ev.linf_max], "tol": ev.linf_tol}
                info["repr"] += f" with eps searched per example in [0, {ev.linf_max:g}]"
            else:
                info["config"]["eps"] = {"search": "whole input box"}
                info["repr"] += " with eps searched per example"
        attacks[norm] = info
        if f"{norm}_distance" not in arrays:
            dist = np.full(n_eval, np.nan)
            found = np.zeros(n_eval, dtype=bool)
            if bool(correct.any()):
                sel = correct.nonzero().flatten()
                if norm == "linf":
                    dres = M.minimal_distortion(
                        model,
                        (xe[sel], ye[sel]),
                        attack,
                        hi=ev.linf_max,
                        tol=ev.linf_tol,
                        batch_size=bs,
                        generator=gen,
                    )
                else:
                    dres = M.minimal_distortion(
                        model, (xe[sel], ye[sel]), attack, batch_size=bs, generator=gen
                    )
                idx = sel.cpu().numpy()
                f = dres.found.cpu().numpy().astype(bool)
                d = dres.distance.double().cpu().numpy()
                dist[idx] = np.where(f, d, np.nan)
                found[idx] = f
            arrays[f"{norm}_distance"], arrays[f"{norm}_found"] = dist, found
            save_arrays(arrays_path, arrays)
        dist, found = arrays[f"{norm}_distance"], arrays[f"{norm}_found"]
        mean = float(dist[found].mean()) if found.any() else math.nan
        rows.append(
            {
                "metric": f"mean_distortion_{norm}",
                "value": mean,
                "norm": norm,
                "n": int(found.sum()),
                "attack": attacks[norm]["repr"],
                "attack_config": attacks[norm]["config"],
            }
        )
        tick()

    if "adversarial-accuracy" in ev.metrics:
        base = make_attack(ev.delta_attack, model, "delta_attack")
        # the attack at eps = Delta, as run and as logged (CW-L2 has no eps: run as is)
        per_delta = [attack_at(base, delta) for delta in ev.deltas]
        part = _done(folder, "adversarial-accuracy")
        if part is None:
            with _eval_part(folder, "adversarial-accuracy") as part:
                part["values"] = adversarial_accuracies(
                    model, (xe, ye), base, ev.deltas, batch_size=bs, generator=gen
                )
                part["norm"] = base.norm
        for delta, value, attack in zip(ev.deltas, part["values"], per_delta, strict=True):
            info = _attack_info(attack)
            rows.append(
                {
                    "metric": "adversarial_accuracy",
                    "value": value,
                    "delta": delta,
                    "norm": part["norm"],
                    "n": n_eval,
                    "attack": info["repr"],
                    "attack_config": info["config"],
                }
            )
        tick()

    if "label-leak" in ev.metrics:
        from advrobust.attacks import FGSM

        # Kurakin sec. 4.2: FGSM with the true labels against FGSM with the predicted ones
        leak = FGSM(model, eps=ev.leak_eps)
        info = _attack_info(leak)
        part = _done(folder, "label-leak")
        if part is None:
            with _eval_part(folder, "label-leak") as part:
                lres = M.label_leak_count(
                    model, (xe, ye), attack_true=leak, attack_pred=leak, batch_size=bs
                )
                part["count"] = int(lres.count)
        rows.append(
            {
                "metric": "label_leak_count",
                "value": float(part["count"]),
                "n": n_eval,
                "norm": leak.norm,
                "delta": ev.leak_eps,
                "attack": info["repr"] + " with true vs predicted labels",
                "attack_config": info["config"],
            }
        )
        tick()

    if "deepsec" in ev.metrics:
        attack = make_attack(ev.deepsec_attack, model, "deepsec_attack")
        info = _attack_info(attack)
        part = _done(folder, "deepsec")
        if part is None:
            with _eval_part(folder, "deepsec") as part:
                sres = M.deepsec_attack_metrics(
                    model, (xe, ye), attack, batch_size=bs, generator=gen
                )
                part["summary"] = {
                    k: float(v)
                    for k, v in sres.summary().items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
        for name, value in part["summary"].items():
            rows.append(
                {
                    "metric": f"deepsec_{name}",
                    "value": value,
                    "n": n_eval,
                    "norm": getattr(attack, "norm", ""),
                    "attack": info["repr"],
                    "attack_config": info["config"],
                }
            )
        tick()

    per_example = {k: arrays[k] for k in arrays}
    return rows, {"attacks": attacks, "per_example": per_example}


def _stages(config: StudyConfig) -> int:
    ev = config.evaluation.metrics
    n = 2  # training + accuracy
    n += sum(
        m in ev
        for m in (
            "robustness-linf",
            "robustness-l2",
            "adversarial-accuracy",
            "label-leak",
            "deepsec",
        )
    )
    return n


def _run_cell(
    config: StudyConfig,
    cell: Cell,
    out_dir: Path,
    data: _Data,
    device: torch.device,
    progress: bool,
    bar: Any,
) -> None:
    folder = cell_dir(out_dir, cell)
    rank = _dist()[0]
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    seed = cell_seed(config.seed, cell.key)
    args = _model_args(config, cell, data)
    if rank == 0:
        atomic_write_json(folder / "model.json", args)
    _barrier()
    model = build_model(args, seed=seed).to(device)
    weights = folder / "model.pt"
    # Everything drawn from torch's global RNG inside the cell (dropout masks, ...) is seeded
    # from the cell's own seed, so a cell gives the same result in a full run and in any
    # shard; fork_rng restores the caller's RNG state afterwards.
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        job = _CellJob(config, cell, folder, data, device, seed, progress)
        if weights.is_file():
            model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
            if rank == 0:  # (a crash between writing the weights and this cleanup)
                shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        else:
            _train_cell(job, model)
        if bar is not None:
            bar.update(1)
        if rank != 0:
            _barrier()  # rank 0 evaluates and writes the record
            return
        torch.manual_seed(seed + 1)
        rows, extra = _evaluate_cell(job, model, bar)
    save_arrays(folder / "per_example.npz", extra["per_example"])
    record = {
        "key": cell.key,
        "index": cell.index,
        "size": cell.size,
        "size_index": cell.size_index,
        "train_size": len(data.subsets[cell.size_index]),
        "model": cell.model.key,
        "model_name": cell.model.name,
        "recipe": cell.recipe.name,
        "fingerprint": config.fingerprint(),
        "attacks": extra["attacks"],
        "rows": rows,
        "seconds": time.perf_counter() - start,
        "device": str(device),
    }
    atomic_write_json(folder / "cell.json", record)
    _barrier()


# --------------------------------------------------------------------------------------------
# cross-model tasks (need every model of a group): transfer matrices


def _transfer_groups(config: StudyConfig, cells: Sequence[Cell]) -> list[tuple[str, list[Cell]]]:
    if "transfer-matrix" not in config.evaluation.metrics:
        return []
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(f"transfer-n{cell.size:07d}-{cell.recipe.name}", []).append(cell)
    return list(groups.items())


def _run_transfer(
    config: StudyConfig,
    key: str,
    members: Sequence[Cell],
    out_dir: Path,
    data: _Data,
    device: torch.device,
) -> None:
    from advrobust import metrics as M

    models = {c.model.key: load_cell_model(out_dir, c.key, device=str(device)) for c in members}
    first = next(iter(models.values()))
    attack = make_attack(config.evaluation.transfer_attack, first, "transfer_attack")
    info = _attack_info(attack)
    xe, ye = _subset_tensors(data.test, data.eval_idx, device)
    res = M.transfer_matrix(models, (xe, ye), attack, batch_size=config.evaluation.batch_size)
    by_label = {c.model.key: c.key for c in members}
    names = list(res.names)
    rates, absolute = res.rates, res.absolute
    rows = []
    for i, src in enumerate(names):
        for j, dst in enumerate(names):
            if src == dst:
                continue
            for metric, table in (("transfer_rate", rates), ("transfer_error", absolute)):
                rows.append(
                    {
                        "cell": by_label[src],
                        "metric": metric,
                        "value": float(table[i, j]),
                        "target": dst,
                        "norm": attack.norm,
                        "n": int(ye.shape[0]),
                        "attack": info["repr"],
                        "attack_config": info["config"],
                    }
                )
    atomic_write_json(out_dir / "groups" / key / "group.json", {"key": key, "rows": rows})


def _pending_groups(
    config: StudyConfig, out_dir: Path, shard: Shard | None
) -> list[tuple[str, list[Cell]]]:
    cells = enumerate_cells(config)
    done = finished_cells(out_dir, cells)
    out = []
    for position, (key, members) in enumerate(_transfer_groups(config, cells)):
        if shard is not None and not shard.owns(position):
            continue
        if (out_dir / "groups" / key / "group.json").is_file():
            continue
        if all(c.key in done for c in members):
            out.append((key, members))
    return out


# --------------------------------------------------------------------------------------------
# entry points


def finalize_study(
    out_dir: str | Path,
    *,
    device: str | None = None,
    root: str | None = None,
    progress: bool = False,
    stream: TextIO | None = None,
) -> StudyResult:
    """Run the pending cross-model tasks, then write the results table, figures and summary.

    Called at the end of :func:`run_study` and by :func:`merge_studies`; also useful after
    copying shard folders together by hand. ``root`` overrides the recorded ``data.root`` (the
    transfer matrices load the test data) on a machine that keeps the data elsewhere.
    """
    out_dir = Path(out_dir)
    config = _load_state_config(out_dir)
    if root is not None:
        config = config.replace(data=dataclasses.replace(config.data, root=root))
    pending = _pending_groups(config, out_dir, None)
    if pending:
        dev = resolve_device(device or config.device)
        data = _load_data(config)
        for key, members in pending:
            _run_transfer(config, key, members, out_dir, data, dev)
    return _write_outputs(config, out_dir, [], [], stream)


def _write_outputs(
    config: StudyConfig,
    out_dir: Path,
    ran: list[str],
    skipped: list[str],
    stream: TextIO | None,
) -> StudyResult:
    rows = build_rows(config, out_dir)
    write_results(out_dir, rows)
    figures = plot_results(rows, out_dir / "figures") if rows else []
    cells = enumerate_cells(config)
    complete = len(finished_cells(out_dir, cells)) == len(cells)
    summary = format_summary(rows)
    if stream is not None:
        done = len(finished_cells(out_dir, cells))
        print(
            f"\nstudy {config.name!r}: {done}/{len(cells)} cells finished in {out_dir}", file=stream
        )
        print(summary, file=stream)
        print(f"results: {out_dir / 'results.csv'}, {out_dir / 'results.json'}", file=stream)
        if figures:
            print(
                "figures: " + ", ".join(str(p) for p in figures if p.suffix == ".png"), file=stream
            )
    return StudyResult(out_dir, rows, figures, summary, ran, skipped, complete)


def run_study(
    config: StudyConfig,
    out_dir: str | Path,
    *,
    shard: Shard | str | None = None,
    progress: bool = True,
    device: str | None = None,
    stream: TextIO | None = sys.stdout,
) -> StudyResult:
    """Train and evaluate every cell of the grid and write the tables and figures.

    Args:
        config: the study.
        out_dir: output folder (created; an existing folder must hold the same study).
        shard: run only a deterministic slice of the cells, ``Shard(i, n)`` or ``"i/n"``
            (0-based); the shards of one ``n`` partition the grid. Join shards with
            :func:`merge_studies`.
        progress: show an overall bar over cells and a nested one inside each cell.
        device: override ``config.device`` (not part of the study's identity).
        stream: where the summary table is printed (None: print nothing).

    Returns:
        A :class:`StudyResult` with the rows, the figure paths and the summary.

    Raises:
        StudyConfigMismatchError: ``out_dir`` holds a study with another config.
        ConfigError: a recipe or attack setting cannot be built (names the field).
        FileNotFoundError: the dataset files are missing (says where to put them).

    Example:
        >>> from advrobust.study import load_preset, run_study
        >>> result = run_study(load_preset("digits"), "study-digits")  # doctest: +SKIP
    """
    if not isinstance(config, StudyConfig):
        raise TypeError(f"config must be a StudyConfig, got {type(config).__name__}")
    if isinstance(shard, str):
        from ._grid import parse_shard

        shard = parse_shard(shard)
    out_dir = Path(out_dir)
    with _threads(config.threads):
        return _run_study(config, out_dir, shard, progress, device, stream)


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count for the block and restore it afterwards."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _run_study(
    config: StudyConfig,
    out_dir: Path,
    shard: Shard | None,
    progress: bool,
    device: str | None,
    stream: TextIO | None,
) -> StudyResult:
    data = _load_data(config)
    _check_config_buildable(config, data)
    dev = resolve_device(device or config.device)
    rank, _world = _dist()
    if rank == 0:
        _prepare_out_dir(config, out_dir)
    _barrier()
    progress = progress and rank == 0
    cells = shard_cells(enumerate_cells(config), shard)
    done = finished_cells(out_dir, cells)
    bars = _Progress(len(cells), progress, f"{config.name}" + (f" shard {shard}" if shard else ""))
    ran: list[str] = []
    skipped: list[str] = []
    try:
        for cell in cells:
            if cell.key in done:
                skipped.append(cell.key)
                bars.advance(cell.key)
                continue
            stage = bars.stage(cell, _stages(config))
            try:
                _run_cell(config, cell, out_dir, data, dev, progress, stage)
            finally:
                if stage is not None:
                    stage.close()
            ran.append(cell.key)
            bars.advance(cell.key)
        if rank == 0:
            for key, members in _pending_groups(config, out_dir, shard):
                _run_transfer(config, key, members, out_dir, data, dev)
    finally:
        bars.close()
    if rank != 0:
        _barrier()
        return StudyResult(out_dir, [], [], "", ran, skipped, False)
    result = _write_outputs(config, out_dir, ran, skipped, stream)
    _barrier()
    return result


def merge_studies(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    *,
    device: str | None = None,
    root: str | None = None,
    stream: TextIO | None = sys.stdout,
) -> StudyResult:
    """Join the folders of shards (or partial runs) of one study into ``out_dir``.

    Finished cells are copied (a cell present in several sources is taken from the first);
    every source must hold the same config. Cross-model tasks that became possible are run,
    and the results table, figures and summary are written for the merged grid.

    Raises:
        StudyConfigMismatchError: the sources hold different studies.
    """
    if not sources:
        raise ValueError("sources must name at least one study folder")
    configs = [_load_state_config(Path(s)) for s in sources]
    config = configs[0]
    for src, other in zip(sources[1:], configs[1:], strict=True):
        if other.fingerprint() != config.fingerprint():
            diffs = config_diff(config.identity(), other.identity())
            raise StudyConfigMismatchError(
                f"{src} holds another config than {sources[0]}; cannot merge. Changed fields:\n  "
                + "\n  ".join(diffs[:12])
            )
    out = Path(out_dir)
    resolved_sources = {Path(s).resolve() for s in sources}
    if out.resolve() not in resolved_sources:
        _prepare_out_dir(config, out)
    cells = enumerate_cells(config)
    for src in sources:
        src_path = Path(src)
        if src_path.resolve() == out.resolve():
            continue
        for key in finished_cells(src_path, cells):
            target = cell_dir(out, key)
            if not (target / "cell.json").is_file():
                _copy_folder_atomic(cell_dir(src_path, key), target)
        groups = src_path / "groups"
        if groups.is_dir():
            for group in sorted(groups.iterdir()):
                target = out / "groups" / group.name
                if (group / "group.json").is_file() and not (target / "group.json").is_file():
                    _copy_folder_atomic(group, target)
    return finalize_study(out, device=device, root=root, stream=stream)


def _copy_folder_atomic(src: Path, target: Path) -> None:
    """Copy a folder so that ``target`` appears whole or not at all.

    A crash mid-copy leaves only a hidden ``.<name>.partial`` folder, redone by the next merge.
    """
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(src, partial)
    if target.exists():  # an unfinished run of the same cell: the finished copy wins
        shutil.rmtree(target)
    os.replace(partial, target)
