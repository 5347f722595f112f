"""From per-cell records to the tidy results table, its files and the printed summary.

Every finished cell leaves ``cells/<key>/cell.json`` (scalar metrics with the attack that
produced them) and ``cells/<key>/per_example.npz`` (per-example correctness and minimal
distortions on the fixed evaluation sample). The robustness score of paper 000 eq. 4 needs the
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

from ._config import StudyConfig
from ._grid import Cell, enumerate_cells
from ._state import atomic_write_json, atomic_write_text, load_arrays, read_json

__all__ = [
    "COLUMNS",
    "build_rows",
    "cell_dir",
    "finished_cells",
    "format_summary",
    "read_results",
    "turning_points",
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


def _robustness_rows(
    config: StudyConfig,
    out_dir: Path,
    cells: Sequence[Cell],
    records: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Eq. 4 over the commonly-correct set X, for every group whose cells are all finished."""
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
        common = np.logical_and.reduce([arrays[c.key]["correct"] for c in members])
        for norm, _metric in norms:
            found_all = np.logical_and.reduce([arrays[c.key][f"{norm}_found"] for c in members])
            usable = common & found_all
            for c in members:
                rec = records[c.key]
                dist = arrays[c.key][f"{norm}_distance"]
                unbroken = int((common & ~arrays[c.key][f"{norm}_found"]).sum())
                n = int(usable.sum())
                value = float(dist[usable].mean()) if n else math.nan
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
                rows.append(
                    _row(
                        config,
                        rec,
                        f"unbroken_{norm}",
                        float(unbroken),
                        norm=norm,
                        n=int(common.sum()),
                        attack=info["repr"],
                        attack_config=info["config"],
                    )
                )
    return rows


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


def _series(
    rows: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str], dict[str, dict[int, float]]]:
    """{(model, recipe): {metric label: {subset size: value}}} (transfer rows left out)."""
    out: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    for row in rows:
        if row.get("target"):
            continue
        key = (str(row["model"]), str(row["recipe"]))
        out.setdefault(key, {}).setdefault(_metric_label(row), {})[int(row["subset_size"])] = float(
            row["value"]
        )
    return out


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value == int(value) and abs(value) >= 10:
        return f"{int(value)}"
    return f"{value:.4f}"


def format_summary(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table: one line per (model, recipe, subset size), main metrics as columns."""
    series = _series(rows)
    labels: list[str] = []
    for metrics in series.values():
        for label in metrics:
            if label not in labels and not label.startswith(("unbroken", "deepsec")):
                labels.append(label)

    def rank(label: str) -> tuple[int, str]:
        base = label.split("@")[0]
        return (_SUMMARY_METRICS.index(base) if base in _SUMMARY_METRICS else 10, label)

    labels.sort(key=rank)
    header = ["model", "recipe", "train size", *labels]
    lines: list[list[str]] = []
    for (model, recipe), metrics in series.items():
        sizes = sorted({s for values in metrics.values() for s in values})
        for size in sizes:
            lines.append(
                [model, recipe, str(size)]
                + [_fmt(metrics.get(label, {}).get(size)) for label in labels]
            )
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
        for i, h in enumerate(header)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    for line in lines:
        out.append("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
    for tp in turning_points(rows):
        out.append(
            f"turning point: {tp['model']} ({tp['recipe']}) {tp['metric']} peaks at "
            f"{tp['size']} examples ({tp['peak']:.4f}) and falls to {tp['last']:.4f} at "
            f"{tp['last_size']} while accuracy rises {tp['accuracy_at_peak']:.4f} -> "
            f"{tp['accuracy_last']:.4f}"
        )
    return "\n".join(out)


def turning_points(
    rows: Sequence[Mapping[str, Any]], *, min_drop: float = 0.0
) -> list[dict[str, Any]]:
    """Paper 000's turning points: robustness peaks, then falls while accuracy keeps rising.

    For every (model, recipe) and robustness metric (``robustness_linf``/``robustness_l2``),
    with sizes s_1 < ... < s_n: let j be the size of largest robustness. A turning point is
    reported when j < n, robustness at s_n is below the peak by more than ``min_drop``
    (relative) and accuracy at s_n is above accuracy at s_j. ``rises_first`` tells whether
    robustness also rose before the peak (j > 1), the shape paper 000 describes.
    """
    out: list[dict[str, Any]] = []
    for (model, recipe), metrics in _series(rows).items():
        acc = metrics.get("accuracy", {})
        for name in ("robustness_linf", "robustness_l2"):
            rob = metrics.get(name, {})
            sizes = [s for s in sorted(rob) if s in acc and not math.isnan(rob[s])]
            if len(sizes) < 2:
                continue
            peak = max(sizes, key=lambda s: rob[s])
            last = sizes[-1]
            if peak == last:
                continue
            drop = (rob[peak] - rob[last]) / max(abs(rob[peak]), 1e-12)
            if drop > min_drop and acc[last] > acc[peak]:
                out.append(
                    {
                        "model": model,
                        "recipe": recipe,
                        "metric": name,
                        "size": peak,
                        "peak": rob[peak],
                        "last_size": last,
                        "last": rob[last],
                        "accuracy_at_peak": acc[peak],
                        "accuracy_last": acc[last],
                        "rises_first": peak != sizes[0],
                    }
                )
    return out
