"""``advrobust evaluate``: a saved model through the study's own evaluation tasks.

The command builds a one-cell study in memory (the dataset's test split, the model, the
attacks named on the command line) and runs the same tasks as a study cell: one clean pass
shared by every attack, then per attack the adversarial-accuracy task at each ``--eps`` (for
bounded attacks) or the minimal-distortion task of its norm.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from ._build import StudyData, build_model, load_weights, resolve_device
from ._config import AttackSpec, DataSpec, EvalSpec, ModelSpec, StudyConfig
from ._grid import Cell
from ._tasks import CellEval, clean_pass, get_task

__all__ = ["evaluate_saved_model"]


def _model_record(
    model: str,
    weights: Path,
    data: Any,
    model_kwargs: str | None,
    no_normalize: bool,
) -> dict[str, Any]:
    sidecar = (
        weights.with_name("model.json")
        if weights.name == "model.pt"
        else weights.with_suffix(".json")
    )
    spec: dict[str, Any] = {}
    if sidecar.is_file():
        spec = json.loads(sidecar.read_text(encoding="utf-8"))
        recorded = spec.get("name")
        if recorded is not None and recorded != model:
            raise ValueError(
                f"--model {model!r} does not match {sidecar}, which records the weights "
                f"as model {recorded!r}; pass --model {recorded}"
            )
    if model_kwargs is not None:
        try:
            spec["kwargs"] = json.loads(model_kwargs)
        except json.JSONDecodeError as error:
            raise ValueError(f"--model-kwargs is not valid JSON: {error}") from None
    shape = tuple(data.data.shape)
    spec.update(
        name=model,
        num_classes=len(data.classes),
        in_channels=int(shape[1]),
        input_size=int(shape[-1]),
    )
    spec.setdefault("kwargs", {})
    if no_normalize:
        spec["normalize"] = None
    elif "normalize" not in spec:
        spec["normalize"] = [list(data.mean), list(data.std)]
    return spec


def evaluate_saved_model(
    *,
    model: str,
    weights: Path,
    dataset: str,
    root: str | None,
    split: str,
    attacks: Sequence[str],
    attack_kwargs: Mapping[str, Mapping[str, Any]],
    eps: Sequence[float] | None,
    model_kwargs: str | None,
    no_normalize: bool,
    num_examples: int,
    batch_size: int,
    device: str,
    seed: int,
    stream: TextIO,
) -> None:
    """Load ``weights`` into ``model`` and print clean accuracy and each attack's metric."""
    from advrobust.attacks import create_attack
    from advrobust.data import load_dataset

    if num_examples < 1:
        raise ValueError(f"--num-examples must be >= 1, got {num_examples}")
    if not weights.is_file():
        raise FileNotFoundError(f"--weights {weights} does not exist")
    data = load_dataset(dataset, root=root, split=split)
    dev = resolve_device(device)
    record = _model_record(model, weights, data, model_kwargs, no_normalize)
    net = build_model(record)
    try:
        load_weights(net, weights)
    except ValueError as error:
        raise ValueError(
            f"--weights: model {model!r} with kwargs {record['kwargs']} "
            f"(normalize={record['normalize'] is not None}): {error}"
        ) from None
    net = net.to(dev).eval()
    n = len(data.targets)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(n)[: min(num_examples, n)])
    shape = tuple(data.data.shape)
    study_data = StudyData(
        data, data, [], idx, np.arange(n), len(data.classes), int(shape[1]), int(shape[-1])
    )
    mspec = ModelSpec(model, dict(record["kwargs"]), label="model")
    config = StudyConfig(
        name="evaluate",
        data=DataSpec(name=dataset, sizes=(1,), test_split=split),
        models=(mspec,),
        evaluation=EvalSpec(metrics=("accuracy",), num_examples=len(idx), batch_size=batch_size),
        seed=seed,
    )
    cell = Cell(0, 0, 1, mspec, config.recipes[0], seed=seed)
    clean = clean_pass(config, net, dev, study_data)
    print(f"model {model} ({weights}) on {dataset}/{split}", file=stream)
    print(f"{'metric':40s} {'value':>10s}  n", file=stream)
    print(f"{'accuracy':40s} {clean['accuracy']:10.4f}  {clean['n']}", file=stream)
    for name in attacks:
        spec = AttackSpec(name, dict(attack_kwargs.get(AttackSpec(name).name, {})))
        try:
            attack = create_attack(spec.name, net, **spec.kwargs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"--attack-kwargs for {spec.name}: {error}") from None
        info = attack.spec()
        label_name = spec.name
        if eps and info.bounded:
            ev = dataclasses.replace(config.evaluation, delta_attack=spec, deltas=tuple(eps))
            task = "adversarial-accuracy"
        elif info.norm in ("linf", "l2"):
            changes: dict[str, Any] = {f"{info.norm}_attack": spec}
            ev = dataclasses.replace(config.evaluation, **changes)
            task = f"robustness-{info.norm}"
        else:
            raise ValueError(
                f"--attack {spec.name}: minimal distortion is measured in linf or l2, and "
                f"{spec.name} attacks in {info.norm}; pass --eps for its adversarial accuracy"
            )
        ctx = CellEval(config.replace(evaluation=ev), cell, net, dev, study_data, lambda: clean)
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            run = get_task(task).run
            assert run is not None  # (per-cell tasks)
            output = run(ctx)
        if task == "adversarial-accuracy":
            for row in output.rows:
                label = f"adversarial accuracy {row['norm']} eps={row['delta']:g} [{label_name}]"
                print(f"{label:40s} {row['value']:10.4f}  {row['n']}", file=stream)
        else:
            found = output.arrays[f"{info.norm}_found"]
            dist = output.arrays[f"{info.norm}_distance"]
            unbroken = int((np.asarray(clean["correct"]) & ~found).sum())
            mean = float(dist[found].mean()) if found.any() else math.nan
            label = f"mean minimal {info.norm} distortion [{label_name}]"
            shown = "nan" if math.isnan(mean) else f"{mean:.4f}"
            print(
                f"{label:40s} {shown:>10s}  {int(found.sum())} broken, {unbroken} unbroken",
                file=stream,
            )
