"""One cell of a study: train the model (resumably), then run every evaluation task of the table.

Each task's output is a part of the cell's record, written when the task finished; a rerun
skips finished parts. Every part draws its randomness from its own generator (and its own seed
of torch's global generator), seeded from the cell's seed and the part's name, so resuming after
any part gives bit for bit the numbers of an uninterrupted run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from advrobust._distributed import barrier
from advrobust._distributed import rank as _rank
from advrobust.models import to_device

from ._build import (
    StudyData,
    augmentation,
    build_model,
    model_args,
    subset_tensors,
    train_config,
)
from ._config import StudyConfig
from ._folder import cell_dir
from ._grid import Cell
from ._state import atomic_write_json, load_arrays, read_json, save_arrays, save_state_dict
from ._tasks import CellEval, TaskOutput, clean_pass, get_task, run_task

__all__ = ["run_cell", "stage_count"]

_CLEAN = "clean"  # the shared clean pass: a part of its own (not a metric)


def stage_count(config: StudyConfig) -> int:
    """Stages of a cell's progress bar: training plus one per per-cell task."""
    return 1 + sum(get_task(name).run is not None for name in config.evaluation.metrics)


def load_part(folder: Path, name: str) -> TaskOutput | None:
    """A task's finished part of a cell, or None (absent, or written by an older version)."""
    path = folder / f"eval-{name}.json"
    if not path.is_file():
        return None
    part = read_json(path)
    if not isinstance(part, dict) or part.get("format") != 2:
        return None  # an older version's part: redo it
    arrays_path = folder / f"eval-{name}.npz"
    arrays = load_arrays(arrays_path) if arrays_path.is_file() else {}
    return TaskOutput(list(part["rows"]), arrays, dict(part["attacks"]))


def save_part(folder: Path, name: str, output: TaskOutput, seconds: float) -> None:
    """Persist a task's output (arrays first: the JSON's presence means "finished")."""
    if output.arrays:
        save_arrays(folder / f"eval-{name}.npz", output.arrays)
    atomic_write_json(
        folder / f"eval-{name}.json",
        {"format": 2, "rows": output.rows, "attacks": output.attacks, "seconds": seconds},
    )


def _train(
    config: StudyConfig,
    cell: Cell,
    folder: Path,
    data: StudyData,
    device: torch.device,
    model: nn.Module,
    progress: bool,
    timings: dict[str, float],
) -> None:
    from advrobust.data import TensorLoader
    from advrobust.training import AdversarialTrainer

    start = time.perf_counter()
    x, y = subset_tensors(data.train, data.subsets[cell.size_index], device)
    names = cell.model.augmentation
    if names is None:
        names = config.training.augmentation
    loader = TensorLoader(
        x,
        y,
        batch_size=config.training.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(cell.seed),
        augment=augmentation(names, data.input_size),
    )
    timings["data"] = time.perf_counter() - start
    start = time.perf_counter()
    tcfg = train_config(config, cell.recipe, cell.seed)
    ckpt_dir = folder / "checkpoints"
    trainer = AdversarialTrainer(model, tcfg, checkpoint_dir=ckpt_dir)
    last = ckpt_dir / "last.pt"
    if last.is_file():
        trainer.resume(last)
    trainer.fit(loader, progress=progress)
    timings["training"] = time.perf_counter() - start
    if _rank() == 0:
        atomic_write_json(folder / "training.json", dict(timings))
        save_state_dict(folder / "model.pt", model.state_dict())
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    barrier()


def _clean_part(
    config: StudyConfig, folder: Path, model: nn.Module, device: torch.device, data: StudyData
) -> dict[str, Any]:
    path = folder / f"eval-{_CLEAN}.json"
    if path.is_file() and (folder / f"eval-{_CLEAN}.npz").is_file():
        record = read_json(path)
        if record.get("format") == 2:
            arrays = load_arrays(folder / f"eval-{_CLEAN}.npz")
            return {"accuracy": record["accuracy"], "n": record["n"], "correct": arrays["correct"]}
    start = time.perf_counter()
    out = clean_pass(config, model, device, data)
    save_arrays(folder / f"eval-{_CLEAN}.npz", {"correct": out["correct"]})
    atomic_write_json(
        path,
        {
            "format": 2,
            "accuracy": out["accuracy"],
            "n": out["n"],
            "seconds": time.perf_counter() - start,
        },
    )
    return out


def _evaluate(
    config: StudyConfig,
    cell: Cell,
    folder: Path,
    data: StudyData,
    device: torch.device,
    model: nn.Module,
    bar: Any,
    timings: dict[str, float],
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, np.ndarray]]:
    model.eval()

    def clean() -> dict[str, Any]:
        start = time.perf_counter()
        out = _clean_part(config, folder, model, device, data)
        timings["clean"] = time.perf_counter() - start
        return out

    ctx = CellEval(config, cell, model, device, data, clean)
    rows: list[dict[str, Any]] = []
    attacks: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {"correct": np.asarray(ctx.clean["correct"], dtype=bool)}
    for name in config.evaluation.metrics:
        task = get_task(name)
        if task.run is None:
            continue  # a cross-model task: run per group by the study
        output = load_part(folder, name)
        if output is None:
            start = time.perf_counter()
            output = run_task(name, ctx)  # under the task's own seed of torch's generator
            seconds = time.perf_counter() - start
            save_part(folder, name, output, seconds)
        else:
            seconds = float(read_json(folder / f"eval-{name}.json").get("seconds", 0.0))
        timings[name] = seconds
        ctx.outputs[name] = output
        rows.extend(output.rows)
        attacks.update(output.attacks)
        arrays.update(output.arrays)
        if bar is not None:
            bar.update(1)
    return rows, attacks, arrays


def run_cell(
    config: StudyConfig,
    cell: Cell,
    out_dir: Path,
    data: StudyData,
    device: torch.device,
    progress: bool,
    bar: Any,
) -> None:
    """Train (or reload) and evaluate one cell, then write its record ``cell.json``."""
    folder = cell_dir(out_dir, cell)
    rank = _rank()
    if rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    args = model_args(config, cell.model, data)
    if rank == 0:
        atomic_write_json(folder / "model.json", args)
    barrier()
    model = to_device(build_model(args, seed=cell.seed), device)
    weights = folder / "model.pt"
    timings: dict[str, float] = {}
    # Everything drawn from torch's global RNG inside the cell (dropout masks, ...) is seeded
    # from the cell's own seed, so a cell gives the same result in a full run and in any
    # shard; fork_rng restores the caller's RNG state afterwards.
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cell.seed)
        if weights.is_file():
            model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
            if rank == 0:  # (a crash between writing the weights and this cleanup)
                shutil.rmtree(folder / "checkpoints", ignore_errors=True)
            if (folder / "training.json").is_file():
                timings.update(read_json(folder / "training.json"))
        else:
            _train(config, cell, folder, data, device, model, progress, timings)
        if bar is not None:
            bar.update(1)
        if rank != 0:
            barrier()  # rank 0 evaluates and writes the record
            return
        rows, attacks, arrays = _evaluate(config, cell, folder, data, device, model, bar, timings)
    save_arrays(folder / "per_example.npz", arrays)
    record = {
        "key": cell.key,
        "index": cell.index,
        "size": cell.size,
        "size_index": cell.size_index,
        "train_size": len(data.subsets[cell.size_index]),
        "model": cell.model.key,
        "model_name": cell.model.name,
        "recipe": cell.recipe.name,
        "replicate": cell.replicate,
        "seed": cell.seed,
        "fingerprint": config.fingerprint(),
        "attacks": attacks,
        "rows": rows,
        "timings": timings,
        "seconds": time.perf_counter() - start,
        "device": str(device),
    }
    atomic_write_json(folder / "cell.json", record)
    barrier()
