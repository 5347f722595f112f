"""The study's timing table: one row per cell and stage, written as ``timings.csv``/``.json``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._config import StudyConfig
from ._grid import enumerate_cells
from ._results import finished_cells
from ._state import atomic_write_json, atomic_write_text

__all__ = ["format_timings", "timing_rows", "write_timings"]


_TIMING_COLUMNS = ("cell", "model", "recipe", "subset_size", "replicate", "stage", "seconds")


def timing_rows(config: StudyConfig, out_dir: Path) -> list[dict[str, Any]]:
    """One row per finished cell and stage (data, training, clean, each task), grid order."""
    cells = enumerate_cells(config)
    records = finished_cells(out_dir, cells)
    rows = []
    for cell in cells:
        record = records.get(cell.key)
        if record is None:
            continue
        for stage, seconds in record.get("timings", {}).items():
            rows.append(
                {
                    "cell": cell.key,
                    "model": cell.model.key,
                    "recipe": cell.recipe.name,
                    "subset_size": record["train_size"],
                    "replicate": cell.replicate,
                    "stage": stage,
                    "seconds": float(seconds),
                }
            )
    return rows


def write_timings(out_dir: Path, rows: Sequence[dict[str, Any]], extra: dict[str, float]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_TIMING_COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in _TIMING_COLUMNS])
    atomic_write_text(out_dir / "timings.csv", buffer.getvalue())
    atomic_write_json(out_dir / "timings.json", {"study": extra, "cells": list(rows)})


def format_timings(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: one line per cell, one column per stage, in seconds."""
    stages: list[str] = []
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["stage"] not in stages:
            stages.append(row["stage"])
        table.setdefault(row["cell"], {})[row["stage"]] = row["seconds"]
    header = ["cell", *stages, "total"]
    lines = [
        [key, *(f"{values.get(s, 0.0):.2f}" for s in stages), f"{sum(values.values()):.2f}"]
        for key, values in table.items()
    ]
    totals = [sum(v.get(s, 0.0) for v in table.values()) for s in stages]
    lines.append(["all cells", *(f"{t:.2f}" for t in totals), f"{sum(totals):.2f}"])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = [
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    for line in lines:
        out.append(
            "  ".join(
                v.rjust(w) if i else v.ljust(w)
                for i, (v, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    return "\n".join(out)
