"""examples/linear_regression.py reproduces paper 000 sec. 2 (test MSE 0.0450 and 0.0396)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "linear_regression.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("advrobust_example_linear_regression", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_linear_regression_reproduces_paper_000_mse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _load().main(["--quick"])
    assert round(out["M_1"]["mse"], 4) == 0.0450
    assert round(out["M_2"]["mse"], 4) == 0.0396
    # the paper's conclusion: M_2 more accurate, M_1 more robust
    assert out["M_1"]["robustness"] > out["M_2"]["robustness"]
    # enumeration on the 1e-4 grid agrees with the closed form within one grid step
    for name in ("M_1", "M_2"):
        assert out[name]["robustness"] == pytest.approx(out[name]["robustness_exact"], abs=1e-4)
    assert "0.0450" in capsys.readouterr().out


def test_study_linear_regression_fit_matches_numpy_lstsq() -> None:
    mod = _load()
    for train in (mod.S1, mod.S2):
        a, b = mod.fit_line(train)
        (a2, b2), *_ = np.linalg.lstsq(
            np.c_[train[:, 0], np.ones(len(train))], train[:, 1], rcond=None
        )
        assert (a, b) == pytest.approx((a2, b2))


def test_study_linear_regression_robustness_definition() -> None:
    mod = _load()
    a, b = 2.0, 0.0
    # y = 10 at x = 5 is predicted exactly; relative error crosses 0.025 when |2 d| > 0.25
    assert mod.robustness_closed_form(a, b, 5.0, 10.0) == pytest.approx(0.125)
    assert mod.robustness_enumerated(a, b, 5.0, 10.0) == pytest.approx(0.1251, abs=1e-9)
    # a pair that is already wrong has no robustness
    assert np.isnan(mod.robustness_enumerated(a, b, 5.0, 20.0))
