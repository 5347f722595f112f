"""Tidy results from per-cell records: eq. 4 over the common set, files, summary, plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from advrobust.study import (
    COLUMNS,
    DataSpec,
    EvalSpec,
    ModelSpec,
    StudyConfig,
    build_rows,
    enumerate_cells,
    format_summary,
    plot_results,
    read_results,
    turning_points,
    write_results,
)
from advrobust.study._results import cell_dir
from advrobust.study._state import atomic_write_json, save_arrays

ATTACK = {"repr": "BIM(eps=0.1, steps=10)", "config": {"eps": 0.1, "steps": 10}}


def _config(common_set: str = "sizes") -> StudyConfig:
    return StudyConfig(
        name="r",
        data=DataSpec(sizes=(10, 20)),
        models=(ModelSpec("mlp", label="a"), ModelSpec("mlp", label="b")),
        evaluation=EvalSpec(
            metrics=("accuracy", "robustness-linf", "adversarial-accuracy"),
            deltas=(0.1,),
            common_set=common_set,
        ),
    )


# per-example records of 5 evaluation examples: correctness and Linf distances
CORRECT = {
    "n0000010-a-clean": [1, 1, 0, 1, 1],
    "n0000020-a-clean": [1, 1, 1, 0, 1],
    "n0000010-b-clean": [1, 0, 1, 1, 1],
    "n0000020-b-clean": [1, 1, 1, 1, 1],
}
DIST = {
    "n0000010-a-clean": [0.1, 0.2, np.nan, 0.4, 0.5],
    "n0000020-a-clean": [0.3, 0.1, 0.2, np.nan, 0.7],
    "n0000010-b-clean": [0.2, np.nan, 0.1, 0.1, 0.1],
    "n0000020-b-clean": [0.6, 0.6, 0.6, 0.6, np.nan],  # example 4 unbroken
}
ACC = {
    "n0000010-a-clean": 0.5,
    "n0000020-a-clean": 0.8,
    "n0000010-b-clean": 0.6,
    "n0000020-b-clean": 0.9,
}


def _write_cells(out: Path, config: StudyConfig, keys: set[str] | None = None) -> None:
    for cell in enumerate_cells(config):
        if keys is not None and cell.key not in keys:
            continue
        folder = cell_dir(out, cell)
        correct = np.array(CORRECT[cell.key], dtype=bool)
        dist = np.array(DIST[cell.key])
        found = correct & ~np.isnan(dist)
        save_arrays(
            folder / "per_example.npz",
            {"correct": correct, "linf_distance": dist, "linf_found": found},
        )
        atomic_write_json(
            folder / "cell.json",
            {
                "key": cell.key,
                "size": cell.size,
                "train_size": cell.size,
                "model": cell.model.key,
                "recipe": cell.recipe.name,
                "attacks": {"linf": ATTACK},
                "rows": [
                    {"metric": "accuracy", "value": ACC[cell.key], "n": 100},
                    {
                        "metric": "adversarial_accuracy",
                        "value": 0.25,
                        "delta": 0.1,
                        "norm": "linf",
                        "n": 5,
                        "attack": ATTACK["repr"],
                        "attack_config": ATTACK["config"],
                    },
                ],
            },
        )


def _value(rows: list[dict[str, object]], model: str, size: int, metric: str) -> float:
    hits = [
        r
        for r in rows
        if r["model"] == model and r["subset_size"] == size and r["metric"] == metric
    ]
    assert len(hits) == 1, (model, size, metric, hits)
    return float(hits[0]["value"])  # type: ignore[arg-type]


def test_study_results_robustness_score_over_commonly_correct_set(tmp_path: Path) -> None:
    cfg = _config("sizes")
    _write_cells(tmp_path, cfg)
    rows = build_rows(cfg, tmp_path)
    # model a: common correct over sizes = {0, 1, 4}; all broken -> X = {0, 1, 4}
    assert _value(rows, "a", 10, "robustness_linf") == pytest.approx((0.1 + 0.2 + 0.5) / 3)
    assert _value(rows, "a", 20, "robustness_linf") == pytest.approx((0.3 + 0.1 + 0.7) / 3)
    # model b: common = {0, 2, 3, 4}; example 4 unbroken at size 20 -> X = {0, 2, 3}
    assert _value(rows, "b", 10, "robustness_linf") == pytest.approx((0.2 + 0.1 + 0.1) / 3)
    assert _value(rows, "b", 20, "robustness_linf") == pytest.approx(0.6)
    assert _value(rows, "b", 20, "unbroken_linf") == 1
    assert _value(rows, "b", 10, "unbroken_linf") == 0
    row = next(r for r in rows if r["metric"] == "robustness_linf")
    assert row["n"] == 3 and row["attack"] == ATTACK["repr"] and row["norm"] == "linf"
    assert row["attack_config"] == ATTACK["config"]


def test_study_results_common_set_over_models(tmp_path: Path) -> None:
    cfg = _config("models")
    _write_cells(tmp_path, cfg)
    rows = build_rows(cfg, tmp_path)
    # size 10: common over models a, b = {0, 3, 4}
    assert _value(rows, "a", 10, "robustness_linf") == pytest.approx((0.1 + 0.4 + 0.5) / 3)
    assert _value(rows, "b", 10, "robustness_linf") == pytest.approx((0.2 + 0.1 + 0.1) / 3)


def test_study_results_incomplete_group_has_no_score(tmp_path: Path) -> None:
    cfg = _config("sizes")
    _write_cells(tmp_path, cfg, keys={"n0000010-a-clean", "n0000010-b-clean", "n0000020-b-clean"})
    rows = build_rows(cfg, tmp_path)
    metrics_a = {r["metric"] for r in rows if r["model"] == "a"}
    assert metrics_a == {"accuracy", "adversarial_accuracy"}  # a's size-20 cell is missing
    assert any(r["metric"] == "robustness_linf" and r["model"] == "b" for r in rows)


def test_study_results_tidy_files_round_trip(tmp_path: Path) -> None:
    cfg = _config()
    _write_cells(tmp_path, cfg)
    rows = build_rows(cfg, tmp_path)
    csv_path, json_path = write_results(tmp_path, rows)
    with csv_path.open() as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == COLUMNS
    assert len(table) == len(rows)
    # one row per (subset size, model, recipe, metric, delta)
    keys = [(r["subset_size"], r["model"], r["recipe"], r["metric"], r["delta"]) for r in table]
    assert len(keys) == len(set(keys))
    for r in table:
        assert r["study"] == "r" and r["dataset"] == "digits"
        float(r["value"])
        json.loads(r["attack_config"])
    back = read_results(tmp_path)
    assert len(back) == len(rows)
    assert back[0].keys() == set(COLUMNS)
    assert json.loads(json_path.read_text())[0]["study"] == "r"


def test_study_results_turning_point_detection() -> None:
    # three replicates per size with small spread: the intervals are narrow, so the rise to
    # 1.5 and the fall after it exceed them (the rule of find_turning_points)
    def rows_for(acc: list[float], rob: list[float]) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for size, a, r in zip((10, 20, 40, 80), acc, rob, strict=True):
            for rep, jitter in enumerate((-0.01, 0.0, 0.01)):
                base = {
                    "study": "s",
                    "dataset": "d",
                    "model": "m",
                    "recipe": "clean",
                    "subset_size": size,
                    "replicate": rep,
                    "delta": None,
                    "target": "",
                }
                out.append({**base, "metric": "accuracy", "value": a + jitter})
                out.append({**base, "metric": "robustness_l2", "value": r + jitter})
        return out

    found = turning_points(rows_for([0.5, 0.7, 0.8, 0.9], [1.0, 1.5, 1.2, 1.1]))
    assert len(found) == 1
    tp = found[0]
    assert (tp["model"], tp["metric"], tp["size"], tp["rise_size"], tp["fall_size"]) == (
        "m",
        "robustness_l2",
        20,
        10,
        80,
    )
    assert turning_points(rows_for([0.5, 0.7, 0.8, 0.9], [1.0, 1.1, 1.2, 1.3])) == []
    # robustness falls but accuracy falls too: no turning point
    assert turning_points(rows_for([0.9, 0.8, 0.7, 0.6], [1.0, 1.5, 1.2, 1.1])) == []
    text = format_summary(rows_for([0.5, 0.7, 0.8, 0.9], [1.0, 1.5, 1.2, 1.1]))
    assert "turning point: m (clean) robustness_l2 peaks at 20" in text
    assert text.splitlines()[0].split()[:5] == ["model", "recipe", "train", "size", "accuracy"]


def test_study_results_plots_png_svg_and_pdf(tmp_path: Path) -> None:
    cfg = _config()
    _write_cells(tmp_path, cfg)
    rows = build_rows(cfg, tmp_path)
    paths = plot_results(rows, tmp_path / "fig")
    # the curves, the adversarial accuracy and Su et al.'s two analyses, in three formats
    names = {p.name for p in paths}
    assert {"r-curves.png", "r-curves.svg", "r-curves.pdf"} <= names
    assert {"r-adversarial-accuracy.png", "r-pareto.pdf"} <= names
    png, svg = tmp_path / "fig" / "r-curves.png", tmp_path / "fig" / "r-curves.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in svg.read_text()[:500]
    assert (tmp_path / "fig" / "r-curves.pdf").read_bytes()[:4] == b"%PDF"
    # nan values (no common examples) do not break plotting
    rows[0]["value"] = math.nan
    assert len(plot_results(rows, tmp_path / "fig2", formats=("png",))) >= 2
