"""Adversarial accuracy reuses the minimal-norm examples of the robustness task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advrobust.study import (
    AttackSpec,
    ConfigError,
    DataSpec,
    EvalSpec,
    ModelSpec,
    StudyConfig,
    run_study,
)


def _config(make_config: Callable[..., StudyConfig], **settings: Any) -> StudyConfig:
    return make_config(
        name="reuse",
        data=DataSpec(name="digits", sizes=(60,)),
        models=(ModelSpec("mlp", {"hidden": 16}, label="mlp"),),
        evaluation=EvalSpec(
            metrics=("accuracy", "robustness-linf", "adversarial-accuracy"),
            num_examples=24,
            accuracy_examples=64,
            linf_attack=AttackSpec("FMN", {"norm": "linf", "steps": 20}),
            delta_attack=AttackSpec("BIM", {"steps": 5, "rel_alpha": 0.2}),
            deltas=(0.3, 0.05, 0.15),
            robust_suite="fast",
            settings={"adversarial-accuracy": {"steps": 5, "n_target_classes": 1, **settings}},
        ),
    )


def _rows(result: Any) -> dict[float, dict[str, Any]]:
    return {r["delta"]: r for r in result.rows if r["metric"] == "adversarial_accuracy"}


@pytest.mark.slow
def test_study_adversarial_accuracy_counts_the_minimal_norm_examples_as_broken(
    tmp_path: Path, make_config: Callable[..., StudyConfig]
) -> None:
    config = _config(make_config)
    out = tmp_path / "reuse"
    result = run_study(config, out, progress=False, stream=None)
    (key,) = result.cells_run
    arrays = np.load(out / "cells" / key / "per_example.npz")
    correct, verified = arrays["correct"], arrays["linf_verified_distance"]
    found, distance = arrays["linf_found"], arrays["linf_distance"]
    assert np.isnan(verified[~correct]).all()
    # a verified distance is the measured distance of a found example, recomputed in float64
    ok = np.isfinite(verified)
    assert ok.any() and (found[ok]).all()
    np.testing.assert_allclose(verified[ok], distance[ok], rtol=1e-6)
    rows = _rows(result)
    n = len(correct)
    previous = -1
    for delta in sorted(rows):
        row = rows[delta]
        reused = row["attack_config"]["minimal_norm"]
        assert reused["task"] == "robustness-linf" and "FMN" in reused["attack"]
        # nested balls: the examples within Delta are exactly those at distance <= Delta
        assert reused["broken"] == int((verified[correct] <= delta).sum()) >= previous
        previous = reused["broken"]
        # an upper bound: every counted break is an adversarial example within Delta
        assert row["value"] <= (correct.sum() - reused["broken"]) / n
        assert row["attack_config"]["overrides"] == {"steps": 5, "n_target_classes": 1}
        for spec in row["attack_config"]["attacks"]:
            assert spec["config"]["steps"] == 5
    assert rows[0.3]["value"] <= rows[0.15]["value"] <= rows[0.05]["value"]
    # resumable: the reloaded robustness part gives the same adversarial accuracy
    before = {d: r["value"] for d, r in rows.items()}
    (out / "cells" / key / "eval-adversarial-accuracy.json").unlink()
    (out / "cells" / key / "cell.json").unlink()
    again = run_study(config, out, progress=False, stream=None)
    assert {d: r["value"] for d, r in _rows(again).items()} == before


@pytest.mark.slow
def test_study_reuse_can_be_switched_off(
    tmp_path: Path, make_config: Callable[..., StudyConfig]
) -> None:
    result = run_study(
        _config(make_config, reuse_minimal=False), tmp_path / "off", progress=False, stream=None
    )
    (key,) = result.cells_run
    arrays = np.load(tmp_path / "off" / "cells" / key / "per_example.npz")
    assert "linf_verified_distance" not in arrays
    for row in _rows(result).values():
        assert "minimal_norm" not in row["attack_config"]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"n_targets": 3}, "n_targets"),
        ({"steps": 0}, "steps"),
        ({"reuse_minimal": "yes"}, "reuse_minimal"),
    ],
)
def test_study_adversarial_accuracy_settings_are_checked(
    tmp_path: Path,
    make_config: Callable[..., StudyConfig],
    settings: dict[str, Any],
    field: str,
) -> None:
    config = make_config(
        name="bad",
        data=DataSpec(name="digits", sizes=(40,)),
        models=(ModelSpec("mlp", {"hidden": 16}, label="mlp"),),
        evaluation=EvalSpec(
            metrics=("accuracy", "adversarial-accuracy"),
            robust_suite="fast",
            settings={"adversarial-accuracy": settings},
        ),
    )
    with pytest.raises(ConfigError) as info:
        run_study(config, tmp_path / "bad", progress=False, stream=None)
    assert field in str(info.value)
