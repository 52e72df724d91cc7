"""Figures for training runs (MLflow artifacts) and reports: error histograms with thresholds (thesis
Fig. 4.4), loss curves. The report's score histogram is inline SVG (:mod:`licanom.report.histogram`).

Each function returns the figure as PNG bytes. Figures are drawn with matplotlib's object API
(:class:`matplotlib.figure.Figure`, rendered by the Agg canvas): no pyplot, no global figure
state, no backend chosen at import, so threads (variants training in parallel, the nightly
fan-out) can draw at once without a lock.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from licanom.report.histogram import bin_edges

__all__ = ["error_histograms", "loss_curves", "png"]

_COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:purple", "tab:brown")


def png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (its own Agg canvas: nothing shared between figures)."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _hist(ax: Any, values: np.ndarray, bins: int | np.ndarray, **style: Any) -> None:
    """A filled histogram drawn as one step outline (``Axes.stairs``), not one rectangle per bin
    as ``Axes.hist`` draws: the same figure at a fraction of the drawing time. Empty bins are
    left out of the log scale (NaN), as ``hist`` leaves them. Values that are not finite are
    left out; an int ``bins`` is at most that many (:func:`~licanom.report.histogram.bin_edges`)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if isinstance(bins, (int, np.integer)):
        edges = bin_edges(values, int(bins))
        if edges is None:
            return
        bins = edges
    counts, edges = np.histogram(values, bins=bins)
    heights = np.where(counts > 0, counts.astype(np.float64), np.nan)
    ax.stairs(heights, edges, fill=True, **style)


def error_histograms(
    train_errors: np.ndarray, test_errors: np.ndarray, thresholds: Mapping[str, float | None], title: str = "",
    xlabel: str = "reconstruction error (MAE)",
) -> bytes:
    """Train (left) and test (right) score histograms, each threshold a vertical line (PNG).
    ``xlabel``: what the score is (the detector's, :func:`licanom.report.analysis.score_wording`)."""
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2, sharex=True)
    for ax, errors, name in ((axes[0], train_errors, "train"), (axes[1], test_errors, "test")):
        if len(errors):
            _hist(ax, errors, 50, color="tab:blue", alpha=0.8)
        ax.set_yscale("log")
        for (label, value), colour in zip(thresholds.items(), _COLOURS, strict=False):
            if value is not None:
                ax.axvline(value, color=colour, linestyle="--", linewidth=1.2, label=f"{label} {value:.4f}")
        ax.set_title(f"{name} scores ({len(errors)} chunks)", y=1.0, pad=6)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("chunks")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    # fixed margins: tight_layout measures every text on the figure (about a second per variant)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.14, top=0.82 if title else 0.9, wspace=0.15)
    return png(fig)


def loss_curves(curves: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]], title: str = "",
                ylabel: str = "loss") -> bytes:
    """train/loss (solid) and val/loss (dashed) per epoch for each model (PNG)."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    colours = colormaps["tab10"].colors  # type: ignore[attr-defined]
    for (model, (train, val)), colour in zip(curves.items(), colours, strict=False):
        if train:
            ax.plot(range(1, len(train) + 1), train, color=colour, label=f"{model} train")
        if val:
            ax.plot(range(1, len(val) + 1), val, color=colour, linestyle="--", label=f"{model} val")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if ax.get_lines():
        ax.legend(fontsize=8, loc="upper right")  # losses fall: that corner is free ("best" searches, slowly)
    else:  # the context models fit in one pass: no epochs to draw
        ax.text(0.5, 0.5, "no per-epoch losses: these models fit in one pass", ha="center", va="center",
                transform=ax.transAxes)
    if title:
        ax.set_title(title, y=1.0, pad=6)
    # fixed margins: tight_layout measures every text on the figure
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.12, top=0.92 if title else 0.97)
    return png(fig)
