"""Statistics of study tables: intervals, the turning-point rule, Su et al.'s analyses, report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from advrobust.study import (
    DataSpec,
    EvalSpec,
    ModelSpec,
    StudyConfig,
    build_rows,
    enumerate_cells,
    example_key,
    example_values,
    find_turning_points,
    pareto_frontier,
    scaling_law,
    summarize,
    turning_points,
    write_report,
    write_results,
)
from advrobust.study._analysis import bootstrap_interval, t_interval
from advrobust.study._cli import main
from advrobust.study._results import cell_dir
from advrobust.study._state import atomic_write_json, save_arrays

SIZES = (100, 200, 400, 800, 1600, 3200)


def _rows(
    robustness: dict[int, list[float]],
    accuracy: dict[int, list[float]],
    *,
    model: str = "m",
    n: int = 500,
) -> list[dict[str, Any]]:
    """Tidy rows, one per replicate, of one model's accuracy and L2 robustness."""
    out: list[dict[str, Any]] = []
    for size in robustness:
        for rep, (rob, acc) in enumerate(zip(robustness[size], accuracy[size], strict=True)):
            base = {
                "study": "s",
                "dataset": "digits",
                "model": model,
                "recipe": "clean",
                "subset_size": size,
                "replicate": rep,
                "delta": None,
                "target": "",
                "n": n,
            }
            out.append({**base, "metric": "accuracy", "value": acc})
            out.append({**base, "metric": "robustness_l2", "value": rob})
    return out


def test_t_interval_is_students_interval() -> None:
    values = [1.0, 1.2, 0.9, 1.1]
    low, high = t_interval(values)
    mean, sd = np.mean(values), np.std(values, ddof=1)
    half = stats.t.ppf(0.975, df=3) * sd / math.sqrt(4)
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert t_interval([2.0, 2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError, match="values"):
        t_interval([1.0])


def test_bootstrap_interval_covers_the_mean_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, size=400)
    low, high = bootstrap_interval(x)
    assert low < x.mean() < high
    # close to the normal-theory interval of a mean of 400 draws
    assert high - low == pytest.approx(2 * 1.96 * x.std(ddof=1) / 20, rel=0.15)
    assert bootstrap_interval(x) == (low, high)
    assert bootstrap_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert all(math.isnan(v) for v in bootstrap_interval([]))


def test_summarize_t_across_replicates_and_bootstrap_for_one() -> None:
    rows = _rows({100: [1.0, 1.2, 1.1]}, {100: [0.8, 0.82, 0.81]})
    by_metric = {r["metric"]: r for r in summarize(rows)}
    rob = by_metric["robustness_l2"]
    assert rob["method"] == "t" and rob["replicates"] == 3
    assert rob["mean"] == pytest.approx(1.1)
    assert (rob["ci_low"], rob["ci_high"]) == pytest.approx(t_interval([1.0, 1.2, 1.1]))

    single = _rows({100: [1.0]}, {100: [0.8]}, n=400)
    by_metric = {r["metric"]: r for r in summarize(single)}
    # a proportion: the bootstrap over its 0/1 outcomes, close to the binomial interval
    acc = by_metric["accuracy"]
    assert acc["method"] == "bootstrap"
    half = 1.96 * math.sqrt(0.8 * 0.2 / 400)
    assert acc["ci_low"] == pytest.approx(0.8 - half, abs=0.01)
    assert acc["ci_high"] == pytest.approx(0.8 + half, abs=0.01)
    # a robustness score without per-example values has no interval ...
    assert by_metric["robustness_l2"]["method"] == "none"
    assert math.isnan(by_metric["robustness_l2"]["ci_low"])
    # ... and gets one from them
    rob_row = next(r for r in single if r["metric"] == "robustness_l2")
    dist = np.random.default_rng(1).uniform(0.5, 1.5, size=200)
    by_metric = {r["metric"]: r for r in summarize(single, {example_key(rob_row): dist})}
    assert by_metric["robustness_l2"]["method"] == "bootstrap"
    assert (
        by_metric["robustness_l2"]["ci_low"] < dist.mean() < by_metric["robustness_l2"]["ci_high"]
    )


def _curve(means: list[float], noise: float, seed: int, reps: int = 5) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rob = {
        s: list(m + noise * rng.standard_normal(reps)) for s, m in zip(SIZES, means, strict=True)
    }
    acc = {s: list(0.6 + 0.05 * i + 0.005 * rng.standard_normal(reps)) for i, s in enumerate(SIZES)}
    return _rows(rob, acc)


def test_turning_point_rule_does_not_fire_on_a_flat_curve_plus_noise() -> None:
    for seed in range(50):
        assert turning_points(_curve([1.0] * 6, noise=0.1, seed=seed)) == [], seed


def test_turning_point_rule_fires_on_a_rise_and_fall_larger_than_the_noise() -> None:
    means = [0.6, 0.9, 1.2, 1.0, 0.8, 0.7]  # peak at 400, fall of 0.5 against noise 0.05
    for seed in range(10):
        found = turning_points(_curve(means, noise=0.05, seed=seed))
        assert len(found) == 1, seed
        tp = found[0]
        assert (tp["model"], tp["metric"], tp["size"], tp["fall_size"]) == (
            "m",
            "robustness_l2",
            400,
            3200,
        )
        assert tp["rise_size"] == 100
        assert tp["peak_ci"][0] > tp["fall_ci"][1]


def test_turning_point_rule_needs_accuracy_above_chance_and_intervals() -> None:
    means = [0.6, 0.9, 1.2, 1.0, 0.8, 0.7]
    rows = _curve(means, noise=0.05, seed=0)
    # the same curves on a model near chance accuracy (10 classes), rising slowly from 0.09:
    # no turning point unless chance is lower
    at_chance = [
        {**r, "value": 0.09 + 0.002 * SIZES.index(r["subset_size"]) + 0.001 * r["replicate"]}
        if r["metric"] == "accuracy"
        else r
        for r in rows
    ]
    assert turning_points(at_chance) == []
    assert len(turning_points(at_chance, chance=0.05)) == 1
    # one replicate and no per-example values: no interval, so no turning point
    single = [r for r in rows if r["replicate"] == 0]
    assert turning_points(single) == []
    # a fall within the noise: the intervals overlap
    assert turning_points(_curve([0.6, 0.9, 1.2, 1.15, 1.12, 1.1], noise=0.1, seed=3)) == []


def test_scaling_law_recovers_a_known_slope_within_its_interval() -> None:
    rng = np.random.default_rng(0)
    slope, intercept = 0.3, 2.0
    rows: list[dict[str, Any]] = []
    for m in range(6):
        acc = np.linspace(0.5, 0.98, 6)
        err = 1.0 - acc
        dist = intercept + slope * np.log(err) + 0.03 * rng.standard_normal(err.size)
        rows += _rows(
            {s: [d] for s, d in zip(SIZES, dist, strict=True)},
            {s: [a] for s, a in zip(SIZES, acc, strict=True)},
            model=f"m{m}",
        )
    fit = scaling_law(summarize(rows), "l2")
    assert fit is not None and fit["points"] == 36
    assert fit["slope_ci_low"] < slope < fit["slope_ci_high"]
    assert fit["slope_ci_high"] - fit["slope_ci_low"] < 0.05
    assert fit["intercept"] == pytest.approx(intercept, abs=0.05)
    assert fit["r2"] > 0.95
    # the interval is scipy's: slope -/+ t(0.975, N-2) * stderr
    x = np.log(1.0 - np.array([r["value"] for r in rows if r["metric"] == "accuracy"]))
    y = np.array([r["value"] for r in rows if r["metric"] == "robustness_l2"])
    ref = stats.linregress(x, y)
    half = stats.t.ppf(0.975, df=34) * ref.stderr
    assert fit["slope_ci_low"] == pytest.approx(ref.slope - half)
    # too few points: no fit
    assert scaling_law(summarize(rows[:4]), "l2") is None


def test_pareto_frontier_of_a_hand_made_set() -> None:
    # (accuracy, robustness): a (0.9, 1.0), b (0.8, 2.0), c (0.7, 1.5) dominated by b,
    # d (0.95, 0.5), e (0.9, 0.8) dominated by a
    points = {"a": (0.9, 1.0), "b": (0.8, 2.0), "c": (0.7, 1.5), "d": (0.95, 0.5), "e": (0.9, 0.8)}
    rows: list[dict[str, Any]] = []
    for name, (acc, rob) in points.items():
        rows += _rows({100: [rob]}, {100: [acc]}, model=name)
    front = pareto_frontier(summarize(rows), "l2")
    assert {p["model"] for p in front if p["on_frontier"]} == {"a", "b", "d"}
    assert [p["model"] for p in front] == ["c", "b", "e", "a", "d"]  # by accuracy
    assert pareto_frontier(summarize(rows), "linf") == []


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


def _write_cells(out: Path, config: StudyConfig) -> None:
    """Cell records of 40 evaluation examples with random correctness and Linf distances."""
    rng = np.random.default_rng(0)
    attack = {"repr": "BIM(eps=0.1, steps=10)", "config": {"eps": 0.1, "steps": 10}}
    for cell in enumerate_cells(config):
        correct = rng.random(40) < 0.9
        dist = np.where(correct, rng.uniform(0.05, 0.3, 40), np.nan)
        save_arrays(
            cell_dir(out, cell) / "per_example.npz",
            {"correct": correct, "linf_distance": dist, "linf_found": correct.copy()},
        )
        atomic_write_json(
            cell_dir(out, cell) / "cell.json",
            {
                "key": cell.key,
                "size": cell.size,
                "train_size": cell.size,
                "model": cell.model.key,
                "recipe": cell.recipe.name,
                "seconds": 1.5,
                "attacks": {"linf": attack},
                "rows": [
                    {"metric": "accuracy", "value": float(correct.mean()), "n": 40},
                    {
                        "metric": "adversarial_accuracy",
                        "value": 0.25,
                        "delta": 0.1,
                        "norm": "linf",
                        "n": 40,
                        "attack": attack["repr"],
                        "attack_config": attack["config"],
                    },
                ],
            },
        )


def test_example_values_feed_the_bootstrap_of_robustness_scores(tmp_path: Path) -> None:
    cfg = _config("sizes")
    _write_cells(tmp_path, cfg)
    rows = build_rows(cfg, tmp_path)
    values = example_values(cfg, tmp_path)
    row = next(r for r in rows if r["metric"] == "robustness_linf" and r["model"] == "a")
    sample = values[example_key(row)]
    assert sample.size == row["n"] and sample.mean() == pytest.approx(row["value"])
    summary = summarize(rows, values)
    rob = next(
        s
        for s in summary
        if s["metric"] == "robustness_linf" and s["model"] == "a" and s["subset_size"] == 10
    )
    assert rob["method"] == "bootstrap"
    assert rob["ci_low"] <= rob["mean"] <= rob["ci_high"]
    assert find_turning_points(summary) == []


def test_study_report_writes_markdown_latex_and_figures(tmp_path: Path) -> None:
    cfg = _config("sizes")
    _write_cells(tmp_path, cfg)
    write_results(tmp_path, build_rows(cfg, tmp_path))
    # the report reads the study's config from study.json, as a run writes it
    atomic_write_json(tmp_path / "study.json", {"name": "r", "config": cfg.to_dict()})
    assert main(["study", "report", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "# Study report: r" in text and "## Turning points" in text
    assert "| a | clean | 10 |" in text
    assert "[" in text.split("| a | clean | 10 |")[1].splitlines()[0]  # intervals
    summary_tex = (tmp_path / "tables" / "summary.tex").read_text()
    assert "\\begin{tabular}" in summary_tex and "\\bottomrule" in summary_tex
    for ext in ("png", "svg", "pdf"):
        assert (tmp_path / "figures" / f"r-curves.{ext}").is_file()
    assert (tmp_path / "figures" / "r-adversarial-accuracy.pdf").read_bytes()[:4] == b"%PDF"
    assert (tmp_path / "summary.csv").is_file() and (tmp_path / "analysis.json").is_file()
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("tables/.*.tmp"))
    # the report is the same when written twice (fixed bootstrap seed)
    first = text
    write_report(tmp_path, formats=("png",))
    assert (tmp_path / "report.md").read_text() == first


def test_study_report_cli_errors_name_the_problem(tmp_path: Path, capsys: Any) -> None:
    assert main(["study", "report", str(tmp_path / "missing")]) == 1
    assert "results.json" in capsys.readouterr().err
    assert main(["study", "report", str(tmp_path), "--confidence", "1.5"]) == 2  # usage
    assert "--confidence" in capsys.readouterr().err


@pytest.mark.parametrize("seed", range(6))
def test_study_statistics_agree_with_scipy_stats(seed: int) -> None:
    """The numpy statistics give scipy.stats' numbers (bootstrap: the very same interval)."""
    from advrobust.study._analysis import _least_squares

    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    values = rng.exponential(size=n) if seed % 2 else (rng.random(n) < 0.7).astype(float)
    ours = bootstrap_interval(values, 0.9 if seed == 3 else 0.95, n_resamples=500, seed=seed)
    ref = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=0.9 if seed == 3 else 0.95,
        n_resamples=500,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    ).confidence_interval
    # the same draw and the same percentiles (to the last bits of the means' summation order)
    assert ours == pytest.approx((ref.low, ref.high), rel=1e-13, abs=1e-15)
    reps = rng.normal(size=int(rng.integers(2, 9)))
    low, high = stats.t.interval(0.95, df=reps.size - 1, loc=reps.mean(), scale=stats.sem(reps))
    assert t_interval(reps) == pytest.approx((low, high), rel=1e-12, abs=1e-12)
    x = rng.normal(size=int(rng.integers(3, 40)))
    y = 0.7 * x + rng.normal(size=x.size) * (0.1 + seed)
    fit, lr = _least_squares(x, y), stats.linregress(x, y)
    assert fit["slope"] == pytest.approx(lr.slope, rel=1e-10)
    assert fit["intercept"] == pytest.approx(lr.intercept, rel=1e-10, abs=1e-12)
    assert fit["r"] == pytest.approx(lr.rvalue, rel=1e-10)
    assert fit["stderr"] == pytest.approx(lr.stderr, rel=1e-9)
    assert fit["intercept_stderr"] == pytest.approx(lr.intercept_stderr, rel=1e-9)
    assert fit["p_value"] == pytest.approx(lr.pvalue, rel=1e-7, abs=1e-300)
