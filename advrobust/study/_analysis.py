"""Statistics over the tidy results table: intervals, turning points, Su et al.'s analyses.

Everything here reads the tidy rows of :func:`advrobust.study.read_results` (one row per model,
recipe, training-set size, replicate and metric). The statistics are written here with
numpy, as :mod:`scipy.stats` computes them (the tests check the agreement), with Student's t
distribution from :mod:`scipy.special` (importing :mod:`scipy.stats` would take a second of
the study's time):

* :func:`summarize` gives, per (model, recipe, training-set size, metric), the mean and a 95%
  confidence interval: Student's t-interval across replicates when there are at least two
  (as ``scipy.stats.t.interval``), otherwise a percentile bootstrap over the evaluation
  examples (as ``scipy.stats.bootstrap``). For proportions (accuracy, adversarial accuracy) the
  per-example values are the 0/1 outcomes, recovered exactly from the value and ``n``; for the
  robustness score the per-example distances come from :func:`advrobust.study.example_values`.
* :func:`find_turning_points` applies the turning-point rule stated in the guide ("Running a
  study"): robustness peaks and then falls by more than the confidence intervals allow, on a
  model above chance accuracy.
* :func:`scaling_law` and :func:`pareto_frontier` are the two analyses of Su, Zhang, Chen, Yi,
  Chen and Gao, "Is Robustness the Cost of Accuracy? A Comprehensive Study on the Robustness of
  18 Deep Image Classification Models", ECCV 2018: the linear fit of the L2 / Linf distortion
  against the logarithm of the classification error across models, and the models that no
  other model beats in both accuracy and robustness.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CONFIDENCE",
    "PROPORTION_METRICS",
    "SUMMARY_COLUMNS",
    "bootstrap_interval",
    "chance_accuracy",
    "example_key",
    "find_turning_points",
    "pareto_frontier",
    "scaling_law",
    "summarize",
    "t_interval",
]

#: Confidence level of every interval the study reports.
CONFIDENCE = 0.95

#: Metrics whose value is a fraction of ``n`` examples (per-example outcomes are 0 or 1).
PROPORTION_METRICS: frozenset[str] = frozenset({"accuracy", "adversarial_accuracy"})

#: Metrics that get no interval (counts of examples, not estimates of a mean).
_COUNT_PREFIXES = ("unbroken_", "label_leak", "deepsec_")

#: Keys of every row :func:`summarize` returns.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "study",
    "dataset",
    "model",
    "recipe",
    "subset_size",
    "metric",
    "delta",
    "norm",
    "replicates",
    "mean",
    "ci_low",
    "ci_high",
    "method",
    "n",
)

_NUM_CLASSES = {"digits": 10, "mnist": 10, "cifar10": 10, "stl10": 10, "tiny-imagenet": 200}


def _t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t distribution with ``df`` degrees of freedom.

    ``scipy.special.stdtrit``, the function behind ``scipy.stats.t.ppf``: importing
    :mod:`scipy.special` takes a third of the time of :mod:`scipy.stats`, which the study's
    summary needs nothing else from.
    """
    from scipy import special

    return float(special.stdtrit(df, q))


def _t_sf2(t: float, df: int) -> float:
    """Two-sided p-value of a t statistic: ``2 * P(T_df > |t|)`` (``scipy.special.stdtr``)."""
    from scipy import special

    return float(2.0 * special.stdtr(df, -abs(t)))


def chance_accuracy(dataset: str) -> float:
    """Accuracy of guessing uniformly: 1 / (number of classes) of a known dataset.

    Unknown datasets count as 10 classes (pass ``chance=`` to the functions that use it).
    """
    return 1.0 / _NUM_CLASSES.get(dataset.split("/")[0], 10)


def example_key(row: Mapping[str, Any]) -> str:
    """The key of a row's per-example values in ``example_values.npz``.

    ``dataset|model|recipe|subset size|replicate|metric|delta`` (an empty field for no delta).
    """
    delta = row.get("delta")
    return "|".join(
        str(v)
        for v in (
            row.get("dataset", ""),
            row["model"],
            row["recipe"],
            int(row["subset_size"]),
            int(row.get("replicate") or 0),
            row["metric"],
            "" if delta is None else f"{float(delta):g}",
        )
    )


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student's t-interval of the mean of ``values`` (at least two, independent replicates).

    ``mean -/+ t_{(1+confidence)/2, N-1} * s / sqrt(N)`` with ``s`` the sample standard
    deviation (``scipy.stats.t.interval`` and ``scipy.stats.sem``).
    """
    arr = np.asarray(values, dtype=float)
    if arr.size < 2:
        raise ValueError(f"values must hold at least 2 replicates for a t-interval, got {arr.size}")
    mean = float(arr.mean())
    sem = float(arr.std(ddof=1)) / math.sqrt(arr.size)
    if sem == 0.0:
        return mean, mean
    half = _t_quantile((1.0 + confidence) / 2.0, arr.size - 1) * sem
    return mean - half, mean + half


def bootstrap_interval(
    values: Sequence[float] | np.ndarray,
    confidence: float = CONFIDENCE,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over examples.

    Resamples the ``n`` examples with replacement ``n_resamples`` times from a fixed ``seed``
    (the same table gives the same interval): the resampled indices are one
    ``(n_resamples, n)`` draw of ``numpy.random.default_rng(seed).integers(0, n)``, and the
    interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles (linear
    interpolation) of the resampled means: the same draw and the same percentiles as
    ``scipy.stats.bootstrap(..., method="percentile")`` with that generator, so the same
    interval, without importing :mod:`scipy.stats`. Constant values give the degenerate
    interval ``(v, v)``; no values give ``(nan, nan)``.
    """
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return math.nan, math.nan
    if np.all(arr == arr[0]):
        return float(arr[0]), float(arr[0])
    n = arr.size
    index = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    means = arr[index].mean(axis=-1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def _proportion_outcomes(value: float, n: int) -> np.ndarray:
    """The 0/1 per-example outcomes behind a proportion (their order does not matter)."""
    k = round(value * n)
    out = np.zeros(n)
    out[:k] = 1.0
    return out


def _is_count(metric: str) -> bool:
    return metric.startswith(_COUNT_PREFIXES)


def summarize(
    rows: Iterable[Mapping[str, Any]],
    examples: Mapping[str, np.ndarray] | None = None,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = 2000,
) -> list[dict[str, Any]]:
    """Mean and confidence interval per (model, recipe, training-set size, metric, delta).

    Args:
        rows: tidy result rows; rows of different ``replicate`` (missing: replicate 0) are
            the replicates of one cell. Transfer rows (with a ``target``) are left out.
        examples: per-example values by :func:`example_key` (from
            :func:`advrobust.study.example_values`), used for the bootstrap when a cell has a
            single replicate.
        confidence: confidence level of the intervals.
        n_resamples: bootstrap resamples.

    Returns:
        Rows with the keys :data:`SUMMARY_COLUMNS`, in the order the groups first appear.
        ``method`` says how the interval was made: ``"t"`` (replicates), ``"bootstrap"``
        (examples), or ``"none"`` (one replicate and no per-example values, or a count such as
        ``unbroken_l2``: ``ci_low``/``ci_high`` are then nan).
    """
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("target"):
            continue
        delta = row.get("delta")
        key = (
            str(row.get("study", "")),
            str(row.get("dataset", "")),
            str(row["model"]),
            str(row["recipe"]),
            int(row["subset_size"]),
            str(row["metric"]),
            None if delta is None else float(delta),
        )
        groups.setdefault(key, []).append(row)
    out: list[dict[str, Any]] = []
    for (study, dataset, model, recipe, size, metric, delta), members in groups.items():
        values = [float(r["value"]) for r in members]
        finite = [v for v in values if not math.isnan(v)]
        mean = float(np.mean(finite)) if finite else math.nan
        low = high = math.nan
        method = "none"
        ns = [r.get("n") for r in members]
        if _is_count(metric) or not finite:
            pass
        elif len(finite) >= 2:
            low, high = t_interval(finite, confidence)
            method = "t"
        else:
            row = members[0]
            n = row.get("n")
            sample: np.ndarray | None = None
            if metric in PROPORTION_METRICS and isinstance(n, int) and n > 0:
                sample = _proportion_outcomes(finite[0], n)
            elif examples is not None:
                sample = examples.get(example_key(row))
            if sample is not None and sample.size:
                low, high = bootstrap_interval(sample, confidence, n_resamples=n_resamples)
                method = "bootstrap"
        out.append(
            {
                "study": study,
                "dataset": dataset,
                "model": model,
                "recipe": recipe,
                "subset_size": size,
                "metric": metric,
                "delta": delta,
                "norm": str(members[0].get("norm") or ""),
                "replicates": len(finite),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "method": method,
                "n": ns[0] if len(set(ns)) == 1 else None,
            }
        )
    return out


def _summary_series(
    summary: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str, str], dict[str, dict[int, Mapping[str, Any]]]]:
    """{(dataset, model, recipe): {metric: {size: summary row}}} for rows without a delta."""
    out: dict[tuple[str, str, str], dict[str, dict[int, Mapping[str, Any]]]] = {}
    for row in summary:
        if row.get("delta") is not None:
            continue
        key = (str(row["dataset"]), str(row["model"]), str(row["recipe"]))
        out.setdefault(key, {}).setdefault(str(row["metric"]), {})[int(row["subset_size"])] = row
    return out


def _floor(row: Mapping[str, Any]) -> float:
    """The lower end of a summary row's interval (its mean when it has no interval)."""
    low = float(row["ci_low"])
    return float(row["mean"]) if math.isnan(low) else low


def find_turning_points(
    summary: Iterable[Mapping[str, Any]],
    *,
    chance: float | None = None,
    metrics: Sequence[str] = ("robustness_linf", "robustness_l2"),
) -> list[dict[str, Any]]:
    """Turning points (robustness rises, then falls with more data) that the intervals support.

    For one (model, recipe) and robustness metric with training-set sizes s_1 < ... < s_n,
    means m_i and confidence intervals [lo_i, hi_i] (:func:`summarize`): let p be the size
    of the largest mean, r the size before p with the smallest mean and f the size after p
    with the smallest mean. A turning point is reported when all of these hold:

    1. s_1 < p < s_n (there are sizes before and after the peak);
    2. the fall is larger than its confidence interval: ``lo_p > hi_f`` (the two intervals do
       not overlap, a conservative test of ``m_p - m_f > 0``), and so is the rise before it:
       ``lo_p > hi_r``;
    3. accuracy is above chance at p and at f: the lower end of the accuracy interval (the
       mean when there is no interval) exceeds ``chance``;
    4. accuracy keeps rising: mean accuracy at f is above mean accuracy at p.

    A series without intervals (one replicate, no per-example values) never shows a turning
    point. Requiring the rise as well as the fall (the shape described in "How training data
    affect the accuracy and robustness of neural networks for image classification", ICLR
    2019 submission) keeps the rule quiet on flat noisy curves: the largest and smallest of
    six noisy means differ by more than one interval width a few times in a hundred, but
    rarely both ways around a peak (about 2 in 1,000 series of six sizes in simulation).

    Args:
        summary: rows of :func:`summarize`.
        chance: chance accuracy (default: :func:`chance_accuracy` of each row's dataset).
        metrics: the robustness metrics to examine.

    Returns:
        One dict per turning point: dataset, model, recipe, metric, size (of the peak), peak
        and peak_ci, rise_size, rise and rise_ci (the low point before the peak), fall_size,
        fall and fall_ci (the low point after it), accuracy_at_peak, accuracy_at_fall.
    """
    out: list[dict[str, Any]] = []
    for (dataset, model, recipe), series in _summary_series(summary).items():
        acc = series.get("accuracy", {})
        floor = chance if chance is not None else chance_accuracy(dataset)
        for name in metrics:
            rob = series.get(name, {})
            sizes = [s for s in sorted(rob) if s in acc and not math.isnan(rob[s]["mean"])]
            if len(sizes) < 3:
                continue
            peak = max(sizes, key=lambda s: rob[s]["mean"])
            before = [s for s in sizes if s < peak]
            after = [s for s in sizes if s > peak]
            if not before or not after:
                continue
            rise = min(before, key=lambda s: rob[s]["mean"])
            fall = min(after, key=lambda s: rob[s]["mean"])
            lo_p = rob[peak]["ci_low"]
            hi_r, hi_f = rob[rise]["ci_high"], rob[fall]["ci_high"]
            if any(math.isnan(v) for v in (lo_p, hi_r, hi_f)):
                continue
            if not (lo_p > hi_f and lo_p > hi_r):
                continue
            if not (_floor(acc[peak]) > floor and _floor(acc[fall]) > floor):
                continue
            if not acc[fall]["mean"] > acc[peak]["mean"]:
                continue
            out.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "recipe": recipe,
                    "metric": name,
                    "size": peak,
                    "peak": rob[peak]["mean"],
                    "peak_ci": (rob[peak]["ci_low"], rob[peak]["ci_high"]),
                    "rise_size": rise,
                    "rise": rob[rise]["mean"],
                    "rise_ci": (rob[rise]["ci_low"], rob[rise]["ci_high"]),
                    "fall_size": fall,
                    "fall": rob[fall]["mean"],
                    "fall_ci": (rob[fall]["ci_low"], rob[fall]["ci_high"]),
                    "accuracy_at_peak": acc[peak]["mean"],
                    "accuracy_at_fall": acc[fall]["mean"],
                }
            )
    return out


def _points(
    summary: Iterable[Mapping[str, Any]], norm: str
) -> list[tuple[str, str, int, float, float]]:
    """(model, recipe, size, accuracy, distortion) of every cell with both (mean over replicates).

    The distortion is the eq. 4 robustness score ``robustness_<norm>`` where the table has it,
    else the mean minimal distortion ``mean_distortion_<norm>``.
    """
    series = _summary_series(summary)
    out: list[tuple[str, str, int, float, float]] = []
    for (_dataset, model, recipe), metrics in series.items():
        acc = metrics.get("accuracy", {})
        dist = metrics.get(f"robustness_{norm}") or metrics.get(f"mean_distortion_{norm}") or {}
        for size in sorted(dist):
            if size in acc:
                a, d = float(acc[size]["mean"]), float(dist[size]["mean"])
                if not (math.isnan(a) or math.isnan(d)):
                    out.append((model, recipe, size, a, d))
    return out


def scaling_law(
    summary: Iterable[Mapping[str, Any]],
    norm: str,
    *,
    confidence: float = CONFIDENCE,
) -> dict[str, Any] | None:
    """Su et al.'s linear scaling law: distortion = intercept + slope * ln(classification error).

    Su, Zhang, Chen, Yi, Chen and Gao, "Is Robustness the Cost of Accuracy?", ECCV 2018
    (sec. 4) find that the L2 and Linf distortions of 18 ImageNet models scale linearly with
    the logarithm of the classification error. The fit is ordinary least squares
    (``scipy.stats.linregress``) across every (model, recipe, training-set size) of the
    table, with ``x = ln(1 - accuracy)`` and ``y`` the distortion (the eq. 4 robustness
    score, or the mean minimal distortion). The slope's interval is
    ``slope -/+ t_{(1+confidence)/2, N-2} * SE(slope)``. Cells with zero error (where the
    logarithm is undefined) are left out.

    Returns:
        None when fewer than three points remain, else a dict: norm, points, slope,
        slope_ci_low, slope_ci_high, intercept, intercept_stderr, r2, p_value.
    """
    pts = [p for p in _points(summary, norm) if p[3] < 1.0]
    if len(pts) < 3:
        return None
    x = np.log(1.0 - np.array([p[3] for p in pts]))
    y = np.array([p[4] for p in pts])
    if np.all(x == x[0]):
        return None
    fit = _least_squares(x, y)
    half = _t_quantile((1 + confidence) / 2, len(pts) - 2) * fit["stderr"]
    return {
        "norm": norm,
        "points": len(pts),
        "slope": fit["slope"],
        "slope_ci_low": fit["slope"] - half,
        "slope_ci_high": fit["slope"] + half,
        "intercept": fit["intercept"],
        "intercept_stderr": fit["intercept_stderr"],
        "r2": fit["r"] ** 2,
        "p_value": fit["p_value"],
    }


def _least_squares(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Ordinary least squares of ``y`` on ``x`` with the standard errors of a simple regression.

    ``slope = S_xy / S_xx``, ``intercept = mean(y) - slope * mean(x)``,
    ``r = S_xy / sqrt(S_xx S_yy)``, ``SE(slope) = sqrt((1 - r^2) S_yy / S_xx / (N - 2))``,
    ``SE(intercept) = SE(slope) * sqrt(sum(x^2) / N)`` and the two-sided p-value of
    ``t = slope / SE(slope)`` with ``N - 2`` degrees of freedom: the quantities of
    ``scipy.stats.linregress`` (``S`` are the centred sums of squares and products). A
    perfect fit has ``SE = 0`` and ``p = 0``.
    """
    n = x.size
    xm, ym = float(x.mean()), float(y.mean())
    sxx = float(((x - xm) ** 2).sum())
    syy = float(((y - ym) ** 2).sum())
    sxy = float(((x - xm) * (y - ym)).sum())
    slope = sxy / sxx
    r = 0.0 if syy == 0.0 else max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    df = n - 2
    stderr = math.sqrt(max(0.0, (1.0 - r * r) * syy / sxx / df)) if df > 0 else math.nan
    p_value = 0.0 if stderr == 0.0 else _t_sf2(slope / stderr, df)
    return {
        "slope": slope,
        "intercept": ym - slope * xm,
        "r": r,
        "stderr": stderr,
        "intercept_stderr": stderr * math.sqrt(float((x**2).sum()) / n),
        "p_value": p_value,
    }


def pareto_frontier(summary: Iterable[Mapping[str, Any]], norm: str) -> list[dict[str, Any]]:
    """The accuracy-robustness Pareto frontier (Su et al., ECCV 2018, sec. 4).

    Every (model, recipe, training-set size) with an accuracy and a ``norm`` distortion is a
    point; a point is on the frontier when no other point is at least as accurate and at least
    as robust and strictly better in one of the two.

    Returns:
        One dict per point (model, recipe, subset_size, accuracy, robustness, on_frontier),
        sorted by accuracy.
    """
    pts = _points(summary, norm)
    out: list[dict[str, Any]] = []
    for i, (model, recipe, size, a, d) in enumerate(pts):
        dominated = any(
            a2 >= a and d2 >= d and (a2 > a or d2 > d)
            for j, (_m, _r, _s, a2, d2) in enumerate(pts)
            if j != i
        )
        out.append(
            {
                "norm": norm,
                "model": model,
                "recipe": recipe,
                "subset_size": size,
                "accuracy": a,
                "robustness": d,
                "on_frontier": not dominated,
            }
        )
    out.sort(key=lambda r: (r["accuracy"], r["robustness"]))
    return out
