"""From per-cell records to the tidy results table, its files and the printed summary.

Every finished cell leaves ``cells/<key>/cell.json`` (scalar metrics with the attack that
produced them) and ``cells/<key>/per_example.npz`` (per-example correctness and minimal
distortions on the fixed evaluation sample). The robustness score of eq. 4 of "How training data
affect the accuracy and robustness of neural networks for image classification" (ICLR 2019
submission) needs the
set X of examples that *every* model of a group classifies correctly, so it is computed here, at
aggregation time, from the per-example records: this is what lets shards run independently and
:func:`advrobust.study.merge_studies` reproduce a full run's table exactly.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advrobust.metrics import common_set_score

from ._analysis import example_key, find_turning_points, summarize
from ._config import StudyConfig
from ._grid import Cell, enumerate_cells
from ._state import atomic_write_json, atomic_write_text, load_arrays, read_json, save_arrays

__all__ = [
    "COLUMNS",
    "build_rows",
    "cell_dir",
    "example_values",
    "finished_cells",
    "format_summary",
    "read_example_values",
    "read_results",
    "turning_points",
    "write_example_values",
    "write_results",
]

#: Columns of ``results.csv`` / keys of every row of ``results.json``.
COLUMNS: tuple[str, ...] = (
    "study",
    "dataset",
    "subset_size",
    "size_param",
    "model",
    "recipe",
    "replicate",
    "seed",
    "metric",
    "value",
    "norm",
    "delta",
    "target",
    "n",
    "attack",
    "attack_config",
)

# Display order of metrics in summaries.
_SUMMARY_METRICS = ("accuracy", "robustness_linf", "robustness_l2")


def cell_dir(out_dir: Path, cell: Cell | str) -> Path:
    """The folder of one cell inside a study folder."""
    key = cell if isinstance(cell, str) else cell.key
    return Path(out_dir) / "cells" / key


def finished_cells(out_dir: Path, cells: Iterable[Cell]) -> dict[str, dict[str, Any]]:
    """Records (``cell.json``) of the finished cells among ``cells``, by key."""
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        path = cell_dir(out_dir, cell) / "cell.json"
        if path.is_file():
            out[cell.key] = read_json(path)
    return out


def _row(
    config: StudyConfig, record: Mapping[str, Any], metric: str, value: float, **extra: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "study": config.name,
        "dataset": config.data.name,
        "subset_size": record["train_size"],
        "size_param": record["size"],
        "model": record["model"],
        "recipe": record["recipe"],
        "replicate": record.get("replicate", 0),
        "seed": record.get("seed"),
        "metric": metric,
        "value": value,
        "norm": "",
        "delta": None,
        "target": "",
        "n": None,
        "attack": "",
        "attack_config": {},
    }
    row.update(extra)
    return row


def _group_key(config: StudyConfig, cell: Cell) -> tuple[object, ...]:
    mode = config.evaluation.common_set
    if mode == "sizes":
        return ("sizes", cell.model.key, cell.recipe.name, cell.replicate)
    if mode == "models":
        return ("models", cell.size, cell.recipe.name, cell.replicate)
    return ("all", cell.replicate)


def _column(arrays: Mapping[str, np.ndarray], name: str, dtype: torch.dtype) -> Tensor:
    return torch.as_tensor(np.asarray(arrays[name]), dtype=dtype)


def _robustness_rows(
    config: StudyConfig,
    out_dir: Path,
    cells: Sequence[Cell],
    records: Mapping[str, Mapping[str, Any]],
    samples: dict[str, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Eq. 4 over the commonly-correct set X, for every group whose cells are all finished.

    With ``samples`` given, it also receives each score's per-example distances (the values
    whose mean is the score) under :func:`advrobust.study.example_key` of its row.
    """
    norms = [
        (norm, metric)
        for norm, metric in (("linf", "robustness-linf"), ("l2", "robustness-l2"))
        if metric in config.evaluation.metrics
    ]
    if not norms:
        return []
    groups: dict[tuple[object, ...], list[Cell]] = {}
    for cell in cells:
        groups.setdefault(_group_key(config, cell), []).append(cell)
    rows: list[dict[str, Any]] = []
    for members in groups.values():
        if not all(c.key in records for c in members):
            continue  # incomplete group (another shard's cells): no score yet
        arrays = {c.key: load_arrays(cell_dir(out_dir, c) / "per_example.npz") for c in members}

        for norm, _metric in norms:
            # eq. 4 by its one definition in advrobust.metrics (the rule on unbroken examples
            # is documented there): the same examples X' for every model of the group
            score = common_set_score(
                {c.key: _column(arrays[c.key], "correct", torch.bool) for c in members},
                {c.key: _column(arrays[c.key], f"{norm}_found", torch.bool) for c in members},
                {c.key: _column(arrays[c.key], f"{norm}_distance", torch.float64) for c in members},
            )
            usable = score.used.numpy()
            scores, misses = score.scores, score.num_unbroken
            for c in members:
                rec = records[c.key]
                dist = arrays[c.key][f"{norm}_distance"]
                unbroken = misses[c.key]
                n = int(usable.sum())
                value = scores[c.key]
                info = rec["attacks"][norm]
                rows.append(
                    _row(
                        config,
                        rec,
                        f"robustness_{norm}",
                        value,
                        norm=norm,
                        n=n,
                        attack=info["repr"],
                        attack_config=info["config"],
                    )
                )
                if samples is not None:
                    samples[example_key(rows[-1])] = np.asarray(dist[usable], dtype=np.float64)
                rows.append(
                    _row(
                        config,
                        rec,
                        f"unbroken_{norm}",
                        float(unbroken),
                        norm=norm,
                        n=int(score.common.sum()),
                        attack=info["repr"],
                        attack_config=info["config"],
                    )
                )
    return rows


def example_values(config: StudyConfig, out_dir: str | Path) -> dict[str, np.ndarray]:
    """Per-example values behind the mean-valued rows of a study folder, by row key.

    The robustness scores (eq. 4: the distances over the commonly-correct set X) and the mean
    minimal distortions (each cell's distances of its broken examples), keyed by
    :func:`advrobust.study.example_key` of their rows. These are what the bootstrap intervals
    of single-replicate cells resample (:func:`advrobust.study.summarize`); proportions
    (accuracy, adversarial accuracy) need no store, their 0/1 outcomes follow from value
    and ``n``. :func:`write_example_values` keeps them in ``example_values.npz``.
    """
    out_dir = Path(out_dir)
    cells = enumerate_cells(config)
    records = finished_cells(out_dir, cells)
    samples: dict[str, np.ndarray] = {}
    _robustness_rows(config, out_dir, cells, records, samples)
    for cell in cells:
        rec = records.get(cell.key)
        path = cell_dir(out_dir, cell) / "per_example.npz"
        if rec is None or not path.is_file():
            continue
        arrays = load_arrays(path)
        for item in rec["rows"]:
            metric = str(item["metric"])
            if metric.startswith("mean_distortion_"):
                norm = metric.removeprefix("mean_distortion_")
                if f"{norm}_found" in arrays:
                    found = arrays[f"{norm}_found"].astype(bool)
                    dist = np.asarray(arrays[f"{norm}_distance"], dtype=np.float64)[found]
                    samples[example_key(_row(config, rec, **item))] = dist
    return samples


def write_example_values(out_dir: str | Path, values: Mapping[str, np.ndarray]) -> Path:
    """Write ``example_values.npz`` (one array per row key) atomically; returns its path."""
    path = Path(out_dir) / "example_values.npz"
    save_arrays(path, dict(values))
    return path


def read_example_values(out_dir: str | Path) -> dict[str, np.ndarray]:
    """The per-example values of ``example_values.npz`` in a study folder ({} if absent)."""
    path = Path(out_dir) / "example_values.npz"
    return dict(load_arrays(path)) if path.is_file() else {}


def build_rows(config: StudyConfig, out_dir: str | Path) -> list[dict[str, Any]]:
    """The tidy rows of every finished cell (and group task) in ``out_dir``, in grid order.

    One row per dataset, subset size, model, recipe and metric (and Delta or target) with the
    attack's ``repr`` and constructor config. Robustness scores (eq. 4) appear only for groups
    whose cells are all finished.
    """
    out_dir = Path(out_dir)
    cells = enumerate_cells(config)
    records = finished_cells(out_dir, cells)
    rows: list[dict[str, Any]] = []
    for cell in cells:
        rec = records.get(cell.key)
        if rec is None:
            continue
        for item in rec["rows"]:
            rows.append(_row(config, rec, **item))
    rows.extend(_robustness_rows(config, out_dir, cells, records))
    groups_dir = out_dir / "groups"
    if groups_dir.is_dir():
        for path in sorted(groups_dir.glob("*/group.json")):
            group = read_json(path)
            for item in group["rows"]:
                rec = records.get(item.pop("cell"))
                if rec is not None:
                    rows.append(_row(config, rec, **item))
    order = {c.key: c.index for c in cells}
    keyed = {(c.size, c.model.key, c.recipe.name, c.replicate): c.key for c in cells}

    def sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
        index = order[keyed[(row["size_param"], row["model"], row["recipe"], row["replicate"])]]
        delta = row["delta"] if row["delta"] is not None else -1.0
        return (index, row["metric"], delta, row["target"])

    rows.sort(key=sort_key)
    return rows


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def write_results(out_dir: str | Path, rows: Sequence[Mapping[str, Any]]) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` atomically; returns both paths."""
    out_dir = Path(out_dir)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_csv_value(row.get(c)) for c in COLUMNS])
    csv_path, json_path = out_dir / "results.csv", out_dir / "results.json"
    atomic_write_text(csv_path, buffer.getvalue())
    clean = [
        {
            c: (None if isinstance(row.get(c), float) and math.isnan(row[c]) else row.get(c))
            for c in COLUMNS
        }
        for row in rows
    ]
    atomic_write_json(json_path, clean)
    return csv_path, json_path


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Read ``results.json`` (or the ``results.json`` inside a study folder)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "results.json").is_file():
            raise FileNotFoundError(
                f"{path} holds no results.json: is it a study folder whose run (or merge) has "
                f"finished at least one cell?"
            )
        path = path / "results.json"
    elif not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (give a study folder or its results.json)")
    rows = read_json(path)
    if not isinstance(rows, list):
        raise ValueError(f"{path} does not hold a list of result rows")
    for row in rows:
        if row.get("value") is None:
            row["value"] = math.nan
    return rows


# --------------------------------------------------------------------------------------------
# summaries


def _metric_label(row: Mapping[str, Any]) -> str:
    metric = str(row["metric"])
    if row.get("delta") is not None:
        return f"{metric}@{row['delta']:g}"
    return metric


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value == int(value) and abs(value) >= 10:
        return f"{int(value)}"
    return f"{value:.4f}"


def _fmt_interval(row: Mapping[str, Any] | None) -> str:
    """``mean [low, high]`` (or the mean alone when there is no interval)."""
    if row is None:
        return "-"
    text = _fmt(row["mean"])
    if not math.isnan(row["ci_low"]):
        text += f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"
    return text


def format_summary(
    rows: Sequence[Mapping[str, Any]],
    examples: Mapping[str, np.ndarray] | None = None,
    *,
    summary: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """A plain-text table: one line per (model, recipe, subset size), main metrics as columns.

    Each entry is the mean over replicates with its 95% confidence interval in brackets
    (:func:`advrobust.study.summarize`; ``examples`` feeds the bootstrap of single-replicate
    robustness scores), followed by the turning points the intervals support
    (:func:`advrobust.study.find_turning_points`). ``summary``: the rows' summary when it is
    already computed (``summarize(rows, examples)``; it is not recomputed).
    """
    summary = list(summary) if summary is not None else summarize(rows, examples)
    table: dict[tuple[str, str], dict[str, dict[int, Mapping[str, Any]]]] = {}
    labels: list[str] = []
    for row in summary:
        label = _metric_label(row)
        if label.startswith(("unbroken", "deepsec")):
            continue
        if label not in labels:
            labels.append(label)
        key = (str(row["model"]), str(row["recipe"]))
        table.setdefault(key, {}).setdefault(label, {})[int(row["subset_size"])] = row

    def rank(label: str) -> tuple[int, str]:
        base = label.split("@")[0]
        return (_SUMMARY_METRICS.index(base) if base in _SUMMARY_METRICS else 10, label)

    labels.sort(key=rank)
    replicates = max((int(r["replicates"]) for r in summary), default=1)
    header = ["model", "recipe", "train size", *labels]
    lines: list[list[str]] = []
    for (model, recipe), metrics in table.items():
        sizes = sorted({s for values in metrics.values() for s in values})
        for size in sizes:
            lines.append(
                [model, recipe, str(size)]
                + [_fmt_interval(metrics.get(label, {}).get(size)) for label in labels]
            )
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
        for i, h in enumerate(header)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    for line in lines:
        out.append("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
    how = (
        f"t-interval over {replicates} replicates"
        if replicates > 1
        else "bootstrap over evaluation examples"
    )
    out.append(f"[brackets]: 95% confidence interval ({how})")
    for tp in find_turning_points(summary):
        out.append(
            f"turning point: {tp['model']} ({tp['recipe']}) {tp['metric']} peaks at "
            f"{tp['size']} examples ({tp['peak']:.4f}, interval {tp['peak_ci'][0]:.4f} to "
            f"{tp['peak_ci'][1]:.4f}) and falls to {tp['fall']:.4f} (interval "
            f"{tp['fall_ci'][0]:.4f} to {tp['fall_ci'][1]:.4f}) at {tp['fall_size']} while "
            f"accuracy rises {tp['accuracy_at_peak']:.4f} -> {tp['accuracy_at_fall']:.4f}"
        )
    return "\n".join(out)


def turning_points(
    rows: Sequence[Mapping[str, Any]],
    *,
    examples: Mapping[str, np.ndarray] | None = None,
    chance: float | None = None,
) -> list[dict[str, Any]]:
    """Turning points of a results table that its confidence intervals support.

    Shorthand for ``find_turning_points(summarize(rows, examples), chance=chance)``: robustness
    peaks at some training-set size and then falls by more than the 95% intervals allow
    (non-overlapping intervals), on a model above chance accuracy whose accuracy keeps rising.
    See :func:`advrobust.study.find_turning_points` for the rule.
    """
    return find_turning_points(summarize(rows, examples), chance=chance)
