"""The full `digits` preset (the README's main command): slow, runs in a few minutes."""

from __future__ import annotations

from pathlib import Path

import pytest

from advrobust.study import load_preset, run_study


@pytest.mark.slow
def test_study_digits_preset_full_run(tmp_path: Path) -> None:
    config = load_preset("digits")
    result = run_study(config, tmp_path / "digits", progress=False, stream=None)
    assert result.complete
    # every figure in PNG, SVG and PDF (the report's formats), the curves figure among them
    stems: dict[str, set[str]] = {}
    for p in result.figures:
        stems.setdefault(p.stem, set()).add(p.suffix)
    assert stems and all(s == {".png", ".svg", ".pdf"} for s in stems.values()), stems
    assert any(stem.endswith("-curves") for stem in stems), stems
    rows = result.rows
    sizes = sorted({r["subset_size"] for r in rows})
    assert sizes == list(config.data.sizes)
    for model in ("mlp", "simple-cnn"):

        def value(metric: str, size: int, model: str = model) -> float:
            return next(
                float(r["value"])
                for r in rows
                if r["model"] == model and r["metric"] == metric and r["subset_size"] == size
            )

        # more data, more accuracy (the ICLR 2019 study's first finding), and well above chance
        assert value("accuracy", sizes[-1]) > value("accuracy", sizes[0]) + 0.05
        assert value("accuracy", sizes[-1]) > 0.9
        for metric in ("robustness_linf", "robustness_l2"):
            for size in sizes:
                assert value(metric, size) > 0
        # adversarial accuracy never exceeds clean accuracy on the same model
        for size in sizes:
            for r in rows:
                if (r["model"], r["subset_size"], r["metric"]) == (
                    model,
                    size,
                    "adversarial_accuracy",
                ):
                    assert r["value"] <= 1.0
        # a stronger eps never gives a higher adversarial accuracy (eq. 5 is monotone)
        for size in sizes:
            adv = sorted(
                (r["delta"], r["value"])
                for r in rows
                if (r["model"], r["subset_size"], r["metric"])
                == (model, size, "adversarial_accuracy")
            )
            values = [v for _, v in adv]
            assert values == sorted(values, reverse=True)
