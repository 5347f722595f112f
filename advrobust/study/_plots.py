"""Figures of a study: curves against training-set size, scaling law and Pareto frontier.

The curves follow the layout of the figures of "How training data affect the accuracy and
robustness of neural networks for image classification" (ICLR 2019 submission); the other two
draw the analyses of Su et al., "Is Robustness the Cost of Accuracy?" (ECCV 2018):

* ``<study>-curves``: one row per model (one colour each, the same in every figure), columns
  accuracy, L2 robustness and Linf robustness against training-set size (log scale), mean
  over replicates with its 95% confidence interval as a band, turning points starred;
* ``<study>-adversarial-accuracy``: one row per model, one column per Delta (eq. 5);
* ``<study>-scaling-law``: distortion against classification error (log scale) with the fit;
* ``<study>-pareto``: robustness against accuracy with the Pareto frontier.

Recipes other than the first get their own line style. Every figure is written as PNG, SVG and
PDF with matplotlib's object interface (an Agg canvas, no pyplot state and no display needed),
each file atomically.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._analysis import (
    find_turning_points,
    pareto_frontier,
    scaling_law,
    summarize,
)
from ._state import atomic_write_bytes

__all__ = ["plot_results"]

_CURVE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "Accuracy", "clean accuracy (fraction correct)"),
    ("robustness_l2", "L2 robustness (eq. 4)", "mean minimal L2 distortion\n(input units)"),
    ("robustness_linf", "Linf robustness (eq. 4)", "mean minimal Linf distortion\n(input units)"),
)
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_NORM_TITLE = {"l2": "L2", "linf": "Linf"}


def preload() -> None:
    """Import what drawing and saving the figures needs (about a second of CPU).

    The study calls it in the parent process while its last cells still run in the workers and a
    core is free (see :meth:`advrobust.study._parallel.CellPool.run`), so that the results
    stage afterwards does not pay for the imports. Only imports: nothing is drawn or written.
    """
    import matplotlib
    import matplotlib.backends.backend_agg
    import matplotlib.backends.backend_pdf
    import matplotlib.backends.backend_svg
    import matplotlib.figure
    import matplotlib.ticker
    from scipy import special

    matplotlib.colormaps["tab10"]  # (builds the colormap registry's entry)
    special.stdtrit(5, 0.975)  # (the t quantile of the summary's intervals)


def _colors(models: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {m: cmap(i % 10) for i, m in enumerate(models)}


def _size_axis(ax: Any, sizes: Sequence[int]) -> None:
    """Training-set size on a log axis, ticks at the sizes of the grid."""
    ax.set_xscale("log")
    if sizes:
        ax.set_xticks(list(sizes), [str(s) for s in sizes], fontsize=7)
        ax.minorticks_off()
    ax.set_xlabel("training-set size (images, log scale)", fontsize=8)


def _error_axis(ax: Any, lo: float, hi: float) -> None:
    """Classification error on a log axis with a few plain-number ticks (no 10^k clutter)."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    nice = [m * 10.0**e for e in range(-4, 1) for m in (1, 2, 5)]
    ticks = [t for t in nice if lo * 0.9 <= t <= hi * 1.1] or [lo, hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("classification error (1 - accuracy, log scale)", fontsize=8)


def _ordered(handles: Mapping[str, Any], models: Sequence[str]) -> tuple[list[Any], list[str]]:
    """Legend entries in the order of the models (their colour order), other entries last."""

    def rank(label: str) -> int:
        head = label.split(",")[0]
        return models.index(head) if head in models else len(models)

    labels = sorted(handles, key=rank)
    return [handles[k] for k in labels], labels


def _save(fig: Any, out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    written: list[Path] = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=150)
        atomic_write_bytes(path, buffer.getvalue())
        written.append(path)
    return written


def _series(
    summary: Sequence[Mapping[str, Any]], model: str, recipe: str, metric: str, delta: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pts = sorted(
        (int(r["subset_size"]), float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]))
        for r in summary
        if r["model"] == model
        and r["recipe"] == recipe
        and r["metric"] == metric
        and r["delta"] == delta
        and not math.isnan(float(r["mean"]))
    )
    if not pts:
        empty = np.zeros(0)
        return empty, empty, empty, empty
    arr = np.array(pts, dtype=float)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]


def _draw(
    ax: Any, xs: np.ndarray, ys: np.ndarray, lo: np.ndarray, hi: np.ndarray, **kw: Any
) -> None:
    ax.plot(xs, ys, marker="o", markersize=3.5, linewidth=1.4, **kw)
    band = ~(np.isnan(lo) | np.isnan(hi))
    if band.any():
        ax.fill_between(xs[band], lo[band], hi[band], color=kw["color"], alpha=0.18, linewidth=0)


def _draw_recipe(
    ax: Any,
    summary: Sequence[Mapping[str, Any]],
    model: str,
    recipes: Sequence[str],
    k: int,
    metric: str,
    delta: Any,
    color: Any,
    handles: dict[str, Any],
) -> bool:
    """Draw the curve of ``recipes[k]`` for ``model`` with its band; False if it has no points."""
    xs, ys, lo, hi = _series(summary, model, recipes[k], metric, delta)
    if not xs.size:
        return False
    label = model if len(recipes) == 1 else f"{model}, {recipes[k]}"
    _draw(ax, xs, ys, lo, hi, color=color, linestyle=_LINESTYLES[k % len(_LINESTYLES)], label=label)
    handles.setdefault(label, ax.get_lines()[-1])
    return True


def _grid(
    nrows: int,
    ncols: int,
    *,
    panel: tuple[float, float],
    gap: tuple[float, float],
    sharex: bool | Literal["none", "all", "row", "col"] = False,
    sharey: bool | Literal["none", "all", "row", "col"] = False,
) -> tuple[Any, Any]:
    """A figure of nrows x ncols panels with fixed margins in inches.

    The margins leave room for the labels, the title and a legend strip below; there is no
    tight-layout pass, so each save draws the figure once.
    """
    from matplotlib.figure import Figure

    left, right, top, bottom = 1.0, 0.2, 0.7, 0.95
    pw, ph = panel
    gw, gh = gap
    width = left + ncols * pw + (ncols - 1) * gw + right
    height = top + nrows * ph + (nrows - 1) * gh + bottom
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=gw / pw,
        hspace=gh / ph,
    )
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex, sharey=sharey)
    fig.suptitle("", y=1 - 0.12 / height)
    return fig, axes


def _title(fig: Any, text: str) -> None:
    height = fig.get_size_inches()[1]
    fig.suptitle(text, fontsize=10, y=1 - 0.12 / height)


def _legend(fig: Any, handles: list[Any], labels: list[str]) -> None:
    """One legend for the figure, in the strip below the panels (never over the data)."""
    if handles:
        fig.legend(
            handles,
            labels,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(len(labels), 4),
            fontsize=8,
            frameon=False,
        )


def _curves(
    summary: Sequence[Mapping[str, Any]],
    models: list[str],
    recipes: list[str],
    colors: Mapping[str, Any],
    heading: str,
) -> Any:
    columns = [c for c in _CURVE_COLUMNS if any(r["metric"] == c[0] for r in summary)]
    if not columns:
        return None
    sizes = sorted({int(r["subset_size"]) for r in summary})
    turning = {(t["model"], t["recipe"], t["metric"]): t for t in find_turning_points(summary)}
    fig, axes = _grid(
        len(models), len(columns), panel=(2.6, 1.8), gap=(0.95, 0.3), sharex=True, sharey="col"
    )
    handles: dict[str, Any] = {}
    for i, model in enumerate(models):
        for j, (metric, title, ylabel) in enumerate(columns):
            ax = axes[i][j]
            for k, recipe in enumerate(recipes):
                drawn = _draw_recipe(
                    ax, summary, model, recipes, k, metric, None, colors[model], handles
                )
                if not drawn:
                    continue
                tp = turning.get((model, recipe, metric))
                if tp is not None:
                    (star,) = ax.plot(
                        [tp["size"]],
                        [tp["peak"]],
                        marker="*",
                        markersize=12,
                        color=colors[model],
                        markeredgecolor="black",
                        linestyle="none",
                    )
                    handles.setdefault("turning point (rule in the guide)", star)
            if i == 0:
                ax.set_title(title, fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{model}\n{ylabel}", fontsize=8)
            else:
                ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
            _size_axis(ax, sizes)
            if i < len(models) - 1:
                ax.set_xlabel("")
    _title(fig, heading)
    _legend(fig, list(handles.values()), list(handles))
    return fig


def _adversarial(
    summary: Sequence[Mapping[str, Any]],
    models: list[str],
    recipes: list[str],
    colors: Mapping[str, Any],
    heading: str,
) -> Any:
    rows = [r for r in summary if r["metric"] == "adversarial_accuracy"]
    deltas = sorted({float(r["delta"]) for r in rows if r["delta"] is not None})
    if not deltas:
        return None
    norm = _NORM_TITLE.get(str(rows[0]["norm"]), str(rows[0]["norm"]))
    sizes = sorted({int(r["subset_size"]) for r in summary})
    fig, axes = _grid(
        len(models), len(deltas), panel=(2.5, 1.7), gap=(0.3, 0.3), sharex=True, sharey=True
    )
    handles: dict[str, Any] = {}
    for i, model in enumerate(models):
        for j, delta in enumerate(deltas):
            ax = axes[i][j]
            for k in range(len(recipes)):
                metric = "adversarial_accuracy"
                _draw_recipe(ax, summary, model, recipes, k, metric, delta, colors[model], handles)
            if i == 0:
                ax.set_title(f"{norm} budget Δ = {delta:g}", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{model}\nadversarial accuracy\n(fraction, eq. 5)", fontsize=8)
            ax.set_ylim(-0.03, 1.03)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
            _size_axis(ax, sizes)
            if i < len(models) - 1:
                ax.set_xlabel("")
    _title(fig, heading)
    _legend(fig, list(handles.values()), list(handles))
    return fig


def _scaling(
    summary: Sequence[Mapping[str, Any]],
    models: list[str],
    colors: Mapping[str, Any],
    heading: str,
) -> Any:
    norms = [n for n in ("l2", "linf") if scaling_law(summary, n) is not None]
    if not norms:
        return None
    fig, axes = _grid(1, len(norms), panel=(3.4, 2.5), gap=(1.0, 0.3))
    handles: dict[str, Any] = {}
    for ax, norm in zip(axes[0], norms, strict=True):
        fit = scaling_law(summary, norm)
        assert fit is not None
        pts = [p for p in pareto_frontier(summary, norm) if p["accuracy"] < 1.0]
        recipes = list(dict.fromkeys(p["recipe"] for p in pts))
        for p in pts:
            label = p["model"] if len(recipes) == 1 else f"{p['model']}, {p['recipe']}"
            (h,) = ax.plot(
                [1.0 - p["accuracy"]],
                [p["robustness"]],
                marker=_MARKERS[recipes.index(p["recipe"]) % len(_MARKERS)],
                color=colors[p["model"]],
                linestyle="none",
                markersize=5,
            )
            handles.setdefault(label, h)
        err = np.array([1.0 - p["accuracy"] for p in pts])
        grid = np.geomspace(err.min(), err.max(), 50)
        (line,) = ax.plot(
            grid, fit["intercept"] + fit["slope"] * np.log(grid), color="0.2", linewidth=1.2
        )
        handles.setdefault("least-squares fit", line)
        _error_axis(ax, float(err.min()), float(err.max()))
        ax.set_ylabel(f"mean minimal {_NORM_TITLE[norm]} distortion (input units)", fontsize=8)
        ax.set_title(
            f"{_NORM_TITLE[norm]}: slope {fit['slope']:.3g} "
            f"[{fit['slope_ci_low']:.3g}, {fit['slope_ci_high']:.3g}], r² = {fit['r2']:.2f}",
            fontsize=9,
        )
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3, which="both")
    _title(fig, heading)
    _legend(fig, *_ordered(handles, models))
    return fig


def _pareto(
    summary: Sequence[Mapping[str, Any]],
    models: list[str],
    colors: Mapping[str, Any],
    heading: str,
) -> Any:
    norms = [n for n in ("l2", "linf") if pareto_frontier(summary, n)]
    if not norms:
        return None
    fig, axes = _grid(1, len(norms), panel=(3.4, 2.5), gap=(1.0, 0.3))
    handles: dict[str, Any] = {}
    for ax, norm in zip(axes[0], norms, strict=True):
        pts = pareto_frontier(summary, norm)
        recipes = list(dict.fromkeys(p["recipe"] for p in pts))
        for p in pts:
            label = p["model"] if len(recipes) == 1 else f"{p['model']}, {p['recipe']}"
            (h,) = ax.plot(
                [p["accuracy"]],
                [p["robustness"]],
                marker=_MARKERS[recipes.index(p["recipe"]) % len(_MARKERS)],
                color=colors[p["model"]],
                markeredgecolor="black" if p["on_frontier"] else "none",
                linestyle="none",
                markersize=6 if p["on_frontier"] else 4.5,
            )
            handles.setdefault(label, h)
            ax.annotate(
                str(p["subset_size"]),
                (p["accuracy"], p["robustness"]),
                textcoords="offset points",
                xytext=(3, 3),
                fontsize=6,
                color="0.35",
            )
        front = sorted((p["accuracy"], p["robustness"]) for p in pts if p["on_frontier"])
        fx, fy = zip(*front, strict=True)
        (line,) = ax.plot(fx, fy, color="0.2", linewidth=1.0, linestyle="--")
        handles.setdefault("Pareto frontier (outlined points)", line)
        ax.set_xlabel("clean accuracy (fraction correct)", fontsize=8)
        ax.set_ylabel(f"mean minimal {_NORM_TITLE[norm]} distortion (input units)", fontsize=8)
        ax.set_title(f"{_NORM_TITLE[norm]} robustness against accuracy", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
    _title(fig, heading + " (labels: training-set size)")
    _legend(fig, *_ordered(handles, models))
    return fig


def plot_results(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg", "pdf"),
    examples: Mapping[str, np.ndarray] | None = None,
    summary: Sequence[Mapping[str, Any]] | None = None,
    executor: Executor | None = None,
) -> list[Path]:
    """Draw the study's figures: curves, adversarial accuracy, scaling law, Pareto frontier.

    Args:
        rows: tidy result rows (:func:`advrobust.study.read_results`).
        out_dir: folder for the figures (created if missing).
        title: figure title prefix (default: the study name of the rows).
        formats: file formats to write.
        examples: per-example values (:func:`advrobust.study.example_values`) for the
            intervals of single-replicate robustness scores.
        summary: rows of :func:`advrobust.study.summarize` (computed from ``rows`` and
            ``examples`` when not given).
        executor: worker processes to draw in (a study's own, when its cells ran in
            parallel): every figure but the first is drawn and saved by a worker while this
            process draws the first, so the figures take about half the time on two cores.
            The files are the same.

    Returns:
        The paths written, ``<out_dir>/<study>-<figure>.<format>`` with figure ``curves``,
        ``adversarial-accuracy``, ``scaling-law`` and ``pareto`` (each when the table has
        what it needs).
    """
    out_dir = Path(out_dir)
    rows = [r for r in rows if not r.get("target")]
    if not rows:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    summ = list(summary) if summary is not None else summarize(rows, examples)
    study = str(rows[0]["study"])
    dataset = str(rows[0]["dataset"])
    heading = title if title is not None else study
    models = list(dict.fromkeys(str(r["model"]) for r in rows))
    recipes = list(dict.fromkeys(str(r["recipe"]) for r in rows))
    colors = _colors(models)
    where = heading if heading == dataset else f"{heading} ({dataset})"
    reps = max((int(r["replicates"]) for r in summ), default=1)
    band = (
        f"bands: 95% t-interval over {reps} replicates"
        if reps > 1
        else "bands: 95% bootstrap interval over evaluation examples"
    )
    jobs: dict[str, tuple[Any, ...]] = {
        "curves": (summ, models, recipes, colors, f"{where}: accuracy and robustness; {band}"),
        "adversarial-accuracy": (
            summ,
            models,
            recipes,
            colors,
            f"{where}: adversarial accuracy; {band}",
        ),
        "scaling-law": (summ, models, colors, f"{where}: distortion against classification error"),
        "pareto": (summ, models, colors, f"{where}: accuracy-robustness trade-off"),
    }
    names = list(jobs)
    remote: dict[str, Future[list[Path]]] = {}
    if executor is not None:
        for name in names[1:]:
            remote[name] = executor.submit(
                draw_figure, name, jobs[name], out_dir, f"{study}-{name}", tuple(formats)
            )
    written: list[Path] = []
    for name in names:
        if name in remote:
            written.extend(remote[name].result())
        else:
            written.extend(draw_figure(name, jobs[name], out_dir, f"{study}-{name}", formats))
    return written


_FIGURES: dict[str, Any] = {
    "curves": _curves,
    "adversarial-accuracy": _adversarial,
    "scaling-law": _scaling,
    "pareto": _pareto,
}


def draw_figure(
    name: str, args: tuple[Any, ...], out_dir: Path, stem: str, formats: Sequence[str]
) -> list[Path]:
    """Build figure ``name`` from ``args`` and save it as ``<out_dir>/<stem>.<format>``.

    Returns the paths written (none when the table lacks what the figure shows). A module-level
    function, so that a worker process can run it.
    """
    fig = _FIGURES[name](*args)
    return [] if fig is None else _save(fig, out_dir, stem, formats)
