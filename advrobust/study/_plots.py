"""Figures in the layout of paper 000 (figures 1-4): metrics against training-set size.

One figure per training recipe; one panel per metric (accuracy, CW-L2 robustness, I-FGSM Linf
robustness, adversarial accuracy); one line per model. Written as PNG and SVG with
matplotlib's object interface (an Agg canvas, no pyplot state and no display needed).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._results import turning_points
from ._state import atomic_write_bytes

__all__ = ["plot_results"]

_PANELS: tuple[tuple[str, str], ...] = (
    ("accuracy", "accuracy"),
    ("robustness_l2", "robustness: mean L2 distortion (CW)"),
    ("robustness_linf", "robustness: mean Linf distortion (I-FGSM)"),
    ("adversarial_accuracy", "adversarial accuracy (eq. 5)"),
)
_LINESTYLES = ("-", "--", ":", "-.")


def plot_results(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    title: str | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> list[Path]:
    """Plot accuracy and robustness against training-set size, one line per model.

    Args:
        rows: tidy result rows (:func:`advrobust.study.read_results`).
        out_dir: folder for the figures (created if missing).
        title: figure title prefix (default: the study name of the rows).
        formats: file formats to write.

    Returns:
        The paths written: ``<out_dir>/<study>-<recipe>.<format>`` for every recipe and format.
    """
    import matplotlib
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [r for r in rows if not r.get("target")]
    if not rows:
        return []
    study = str(rows[0]["study"])
    dataset = str(rows[0]["dataset"])
    turning = {(t["model"], t["recipe"], t["metric"]): t for t in turning_points(rows)}
    written: list[Path] = []
    recipes = list(dict.fromkeys(str(r["recipe"]) for r in rows))
    models = list(dict.fromkeys(str(r["model"]) for r in rows))
    colors = matplotlib.colormaps["tab10"]
    for recipe in recipes:
        sub = [r for r in rows if r["recipe"] == recipe]
        panels = [(m, t) for m, t in _PANELS if any(r["metric"] == m for r in sub)]
        if not panels:
            continue
        fig = Figure(figsize=(4.2 * len(panels), 3.6))
        axes = fig.subplots(1, len(panels), squeeze=False)
        for ax, (metric, label) in zip(axes[0], panels, strict=True):
            deltas = sorted(
                {r["delta"] for r in sub if r["metric"] == metric and r["delta"] is not None}
            )
            for mi, model in enumerate(models):
                for di, delta in enumerate(deltas or [None]):
                    points = sorted(
                        (int(r["subset_size"]), float(r["value"]))
                        for r in sub
                        if r["model"] == model and r["metric"] == metric and r["delta"] == delta
                    )
                    points = [(s, v) for s, v in points if not math.isnan(v)]
                    if not points:
                        continue
                    xs, ys = zip(*points, strict=True)
                    name = model if delta is None else f"{model}, Δ={delta:g}"
                    ax.plot(
                        xs,
                        ys,
                        marker="o",
                        markersize=4,
                        color=colors(mi % 10),
                        linestyle=_LINESTYLES[di % len(_LINESTYLES)],
                        label=name,
                    )
                    tp = turning.get((model, recipe, metric))
                    if tp is not None:
                        ax.plot(
                            [tp["size"]],
                            [tp["peak"]],
                            marker="*",
                            markersize=13,
                            color=colors(mi % 10),
                            markeredgecolor="black",
                            linestyle="none",
                        )
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("training-set size")
            sizes = sorted({int(r["subset_size"]) for r in sub})
            if len(sizes) > 1 and sizes[-1] >= 8 * sizes[0]:
                # nested subsets usually grow geometrically: a log axis spaces them evenly
                ax.set_xscale("log")
                ax.set_xticks(sizes, [str(s) for s in sizes], fontsize=7)
                ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6, loc="best")
        heading = title if title is not None else study
        fig.suptitle(
            f"{heading} ({dataset}), recipe {recipe}: accuracy and robustness against "
            f"training-set size (★ turning point)",
            fontsize=11,
        )
        fig.tight_layout()
        for fmt in formats:
            path = out_dir / f"{study}-{recipe}.{fmt}"
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=120)
            atomic_write_bytes(path, buffer.getvalue())
            written.append(path)
    return written
