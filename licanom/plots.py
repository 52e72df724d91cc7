"""Figures for runs and reports: error histograms with thresholds (thesis Fig. 4.4), loss curves.

Each function returns the figure as PNG bytes. Matplotlib is not thread-safe (variants train in
parallel threads), so figures are drawn and rendered under one lock.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:purple", "tab:brown")


_LOCK = threading.Lock()


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def figure_png(draw: Callable[[], Figure]) -> bytes:
    """The figure that ``draw`` makes, as PNG bytes. pyplot's state is shared between threads
    (flows may run in threads, such as the nightly fan-out), so one figure is drawn at a time."""
    with _LOCK:
        return _png(draw())


def error_histograms(
    train_errors: np.ndarray, test_errors: np.ndarray, thresholds: Mapping[str, float | None], title: str = ""
) -> bytes:
    """Train (left) and test (right) error histograms, each threshold a vertical line (PNG)."""
    return figure_png(lambda: _error_histograms(train_errors, test_errors, thresholds, title))


def _error_histograms(
    train_errors: np.ndarray, test_errors: np.ndarray, thresholds: Mapping[str, float | None], title: str
) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for ax, errors, name in ((axes[0], train_errors, "train"), (axes[1], test_errors, "test")):
        if len(errors):
            ax.hist(errors, bins=50, color="tab:blue", alpha=0.8)
        ax.set_yscale("log")
        for (label, value), colour in zip(thresholds.items(), _COLOURS, strict=False):
            if value is not None:
                ax.axvline(value, color=colour, linestyle="--", linewidth=1.2, label=f"{label} {value:.4f}")
        ax.set_title(f"{name} errors ({len(errors)} chunks)")
        ax.set_xlabel("reconstruction error (MAE)")
    axes[0].set_ylabel("chunks")
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def loss_curves(curves: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]], title: str = "") -> bytes:
    """train/loss (solid) and val/loss (dashed) per epoch for each model (PNG)."""
    return figure_png(lambda: _loss_curves(curves, title))


def _loss_curves(curves: Mapping[str, tuple[tuple[float, ...], tuple[float, ...]]], title: str) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    for (model, (train, val)), colour in zip(curves.items(), plt.cm.tab10.colors, strict=False):
        if train:
            ax.plot(range(1, len(train) + 1), train, color=colour, label=f"{model} train")
        if val:
            ax.plot(range(1, len(val) + 1), val, color=colour, linestyle="--", label=f"{model} val")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MAE")
    if ax.get_lines():
        ax.legend(fontsize=8)
    else:  # the context models fit in one pass: no epochs to draw
        ax.text(0.5, 0.5, "no per-epoch losses: these models fit in one pass", ha="center", va="center",
                transform=ax.transAxes)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig

