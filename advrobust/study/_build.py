"""Building a study's components from its config: device, data, models, training, attacks.

:func:`check_buildable` builds every one of them (models on the meta device) before anything is
written to the output folder, so a bad setting fails first, with the config field named.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from advrobust._distributed import local_device
from advrobust.models import to_device

from ._config import AttackSpec, ConfigError, RecipeSpec, StudyConfig
from ._folder import cell_dir
from ._state import read_json

__all__ = [
    "StudyData",
    "attack_record",
    "build_model",
    "check_buildable",
    "evaluation_sample",
    "load_cell_model",
    "load_data",
    "load_weights",
    "make_attack",
    "model_args",
    "resolve_device",
    "subset_tensors",
    "train_config",
]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Under torchrun (an initialised process group with several ranks) a plain ``cuda`` becomes
    ``cuda:LOCAL_RANK``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available")
    return local_device(dev)


# --------------------------------------------------------------------------------------------
# data


@dataclass
class StudyData:
    """The loaded dataset, the nested subsets and the fixed evaluation samples."""

    train: Any
    test: Any
    subsets: list[np.ndarray]
    eval_idx: np.ndarray
    acc_idx: np.ndarray
    num_classes: int
    in_channels: int
    input_size: int


def load_data(config: StudyConfig) -> StudyData:
    """Load the dataset and draw the subsets and evaluation samples (errors name the field)."""
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
    return StudyData(
        train=train,
        test=test,
        subsets=[np.asarray(s, dtype=np.int64) for s in subsets],
        eval_idx=eval_idx,
        acc_idx=acc_idx,
        num_classes=len(train.classes),
        in_channels=int(shape[1]),
        input_size=int(shape[-1]),
    )


def subset_tensors(dataset: Any, idx: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    """``(x, y)`` of the examples ``idx`` of a dataset, on ``device``."""
    index = torch.as_tensor(idx, dtype=torch.long)
    return dataset.data[index].to(device), dataset.targets[index].to(device)


def evaluation_sample(config: StudyConfig, *, accuracy_set: bool = False) -> tuple[Tensor, Tensor]:
    """The fixed test examples a study evaluates (the same for every cell).

    Args:
        config: the study.
        accuracy_set: the clean-accuracy examples (``evaluation.accuracy_examples``) instead of
            the attack sample (``evaluation.num_examples``).

    Returns:
        ``(x, y)`` on the CPU, e.g. to evaluate :func:`load_cell_model` models further.
    """
    data = load_data(config)
    idx = data.acc_idx if accuracy_set else data.eval_idx
    return subset_tensors(data.test, idx, torch.device("cpu"))


# --------------------------------------------------------------------------------------------
# models


def model_args(config: StudyConfig, model: Any, data: StudyData) -> dict[str, Any]:
    """The ``model.json`` record of a :class:`ModelSpec` on the study's data."""
    args: dict[str, Any] = {
        "name": model.name,
        "num_classes": data.num_classes,
        "in_channels": data.in_channels,
        "input_size": data.input_size,
        "kwargs": dict(model.kwargs),
        "normalize": None,
    }
    if model.normalize:
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


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a ``state_dict`` file into ``model`` (``weights_only``); errors name the file."""
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} does not fit the model: {first}") from None
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
    return to_device(model, resolve_device(device)).eval()


def augmentation(names: Sequence[str], input_size: int) -> Any:
    """The on-device augmentation pipeline of ``training.augmentation`` (None if empty)."""
    if not names:
        return None
    from advrobust.data import Compose, RandomFlip, RandomRotation, RandomShift

    table: dict[str, Callable[[], Any]] = {
        "shift": lambda: RandomShift(max(1, round(input_size / 8))),
        "flip": lambda: RandomFlip(),
        "rotation": lambda: RandomRotation(15.0),
    }
    return Compose([table[n]() for n in names])


# --------------------------------------------------------------------------------------------
# training and attacks


def _field_of(error: Exception, prefix: str, keys: Sequence[str]) -> str:
    """The config field an error of a constructor is about: ``prefix.key`` when it names one."""
    text = str(error)
    for key in sorted(keys, key=len, reverse=True):
        if re.search(rf"(^|[\s'\"(\[]){re.escape(key)}([\s'\")\]=;,:.]|$)", text):
            return f"{prefix}.{key}"
    return prefix


def train_config(config: StudyConfig, recipe: RecipeSpec, seed: int) -> Any:
    """The :class:`advrobust.training.TrainConfig` of one recipe (errors name the field).

    The fields of ``training`` are the study's defaults; ``training.settings`` and the recipe's
    ``settings`` override them, then the recipe's kind (clean, kurakin, pgd-at) fills the rest.
    """
    from advrobust.training import TrainConfig

    base = config.training.train_fields()
    base["seed"] = seed % (2**31)
    base.update(config.training.settings)
    base.update(recipe.settings)
    factory = {
        "clean": TrainConfig.clean,
        "kurakin": TrainConfig.kurakin,
        "pgd-at": TrainConfig.pgd_at,
    }[recipe.kind]
    index = config.recipes.index(recipe)
    prefix = f"recipes[{index}].settings"
    try:
        return factory(**base)
    except (TypeError, ValueError) as error:
        where = _field_of(error, prefix, list(recipe.settings))
        if where == prefix and config.training.settings:
            where = _field_of(error, "training.settings", list(config.training.settings))
        raise ConfigError(where, f"recipe {recipe.name!r}: {error}") from None


def make_attack(spec: AttackSpec, model: nn.Module, field_name: str, **overrides: Any) -> Any:
    """Build an attack through the registry from a config spec (errors name the config field).

    Args:
        spec: the config's attack (registry name, constructor keyword arguments).
        model: the model to attack.
        field_name: the config field, e.g. ``evaluation.linf_attack``.
        **overrides: constructor arguments set by the study (e.g. ``eps``).
    """
    from advrobust.attacks import create_attack

    kwargs = {**spec.kwargs, **overrides}
    try:
        return create_attack(spec.name, model, **kwargs)
    except (TypeError, ValueError) as error:
        where = _field_of(error, f"{field_name}.kwargs", list(spec.kwargs))
        raise ConfigError(where, f"{spec.name}: {error}") from None


def attack_record(attack: Any, note: str = "") -> dict[str, Any]:
    """What the results say of an attack that ran.

    A readable line (``repr``) and, as ``config``, the attack's
    :meth:`advrobust.attacks.Attack.spec` verbatim (``AttackSpec.to_dict``).
    """
    return {
        "repr": repr(attack) + (f" {note}" if note else ""),
        "config": attack.spec().to_dict(),
    }


def _training_attack(config: StudyConfig, i: int, tcfg: Any, probe: nn.Module) -> None:
    """Build recipe ``i``'s training attack once (fields ``recipes[i].settings.attack.*``)."""
    from advrobust.attacks import create_attack

    spec = dict(tcfg.attack)
    name = spec.pop("name")
    recipe = config.recipes[i]
    origin = (
        f"recipes[{i}].settings.attack"
        if "attack" in recipe.settings or "attack" not in config.training.settings
        else "training.settings.attack"
    )
    try:
        create_attack(name, probe, **spec)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            _field_of(error, origin, list(spec)), f"recipe {recipe.name!r}: {error}"
        ) from None


def check_buildable(config: StudyConfig, data: StudyData) -> None:
    """Build every component the config names, before anything is written.

    Every model is built on the meta device (no memory, no arithmetic), every recipe's
    :class:`TrainConfig` and training attack, and every attack of every evaluation task, on the
    study's own first model (on the meta device: an attack's constructor only stores the model
    and validates its own settings). Errors are :class:`ConfigError` naming the field, e.g.
    ``recipes[0].settings.attack.steps`` or ``evaluation.linf_attack.kwargs.steps``.
    """
    from advrobust.models import create_model

    from ._tasks import get_task

    metas: list[nn.Module] = []
    for i, mspec in enumerate(config.models):
        try:
            with torch.device("meta"):
                metas.append(
                    create_model(
                        mspec.name,
                        num_classes=data.num_classes,
                        in_channels=data.in_channels,
                        input_size=data.input_size,
                        **mspec.kwargs,
                    )
                )
        except (TypeError, ValueError) as error:
            where = _field_of(error, f"models[{i}].kwargs", list(mspec.kwargs))
            raise ConfigError(where, f"model {mspec.key!r}: {error}") from None
    probe = metas[0]
    for i, recipe in enumerate(config.recipes):
        tcfg = train_config(config, recipe, 0)
        try:
            tcfg.num_replaced(tcfg.batch_size)  # k of m: not more than the batch
        except ValueError as error:
            where = _field_of(error, f"recipes[{i}].settings", list(recipe.settings))
            raise ConfigError(where, f"recipe {recipe.name!r}: {error}") from None
        if tcfg.num_replaced(tcfg.batch_size) > 0:
            _training_attack(config, i, tcfg, probe)
    for name in config.evaluation.metrics:
        get_task(name).check(config, probe)
