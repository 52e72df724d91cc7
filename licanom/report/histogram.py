"""The report's score histogram (thesis Fig. 4.4) as the geometry of an inline SVG figure.

Why not matplotlib here: the nightly report draws one histogram per vendor and night, and
matplotlib took 0.2-0.3 s of CPU a figure (its ticks, text layout and PNG encoding; with
threads, under the GIL), a quarter to a half of scoring a small vendor's night, plus a second to
import in a fresh process. This figure is two panels of bars on shared bins, a log count axis, a dashed
threshold and a legend: its geometry is a few lines of arithmetic, and the markup is a Jinja
template (``templates/histogram.svg.j2``, escaped like the rest of the page). The page stays
one self-contained file; the figure is sharp at any zoom, and each bar says its bin and count
when the pointer rests on it. The training's figures (MLflow artifacts: error histograms, loss
curves) stay matplotlib PNGs (:mod:`licanom.report.plots`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Bar", "Histogram", "Panel", "Tick", "bin_edges", "nice_ticks", "score_histogram"]

WIDTH, HEIGHT = 1000, 340
PANELS_X = ((70.0, 490.0), (575.0, 990.0))  # each panel's plot area, left and right
TOP, BOTTOM = 34.0, 290.0
Y_FLOOR = 0.7  # the log axis starts below one chunk, so a bin of one chunk shows
BINS = 50
LEGEND_HEIGHT = 58


@dataclass(frozen=True)
class Tick:
    at: float  # position in the figure (x or y)
    label: str


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    lo: str  # the bin's edges, as shown in the bar's tooltip
    hi: str


@dataclass(frozen=True)
class Panel:
    title: str
    left: float
    right: float
    bars: tuple[Bar, ...]
    flagged: tuple[Bar, ...]  # drawn over ``bars`` (right panel only)
    y_ticks: tuple[Tick, ...]
    empty: bool  # no chunk: the panel says "none"

    @property
    def centre(self) -> float:
        return (self.left + self.right) / 2


@dataclass(frozen=True)
class Histogram:
    """What ``histogram.svg.j2`` draws: sizes and positions in the figure's own units."""

    width: int
    height: int
    top: float
    bottom: float
    panels: tuple[Panel, Panel]
    x_ticks: tuple[tuple[Tick, ...], tuple[Tick, ...]]  # per panel (shared bins, own positions)
    threshold_x: tuple[float, float] | None  # per panel; None where the threshold is not finite
    threshold_label: str
    xlabel: str
    legend_x: float  # the legend's left edge: the right panel's upper corner its bars leave freer
    # the red bars' entry: "flagged", with how many of them the night rule flagged below the threshold
    flagged_label: str = "flagged"

    @property
    def legend_width(self) -> float:
        return legend_width(self.threshold_label, self.flagged_label)

    @property
    def legend_height(self) -> float:
        return LEGEND_HEIGHT


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) inside ``[lo, hi]``, about
    ``target`` of them; ``[lo]`` where the range is empty."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(target - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    ticks = [(first + i) * step for i in range(int(math.floor(hi / step + 1e-9)) - first + 1)]
    return [0.0 if abs(t) < step * 1e-9 else t for t in ticks]  # no "-0"


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray | None:
    """``bins`` equal bins over the finite ``values``; fewer (down to one) where their range is too
    narrow for ``bins`` distinct edges (scores equal but for their last digits: numpy refuses
    "too many bins for data range"); one bin around them when all are equal; None where no value
    is finite. A figure never fails a run."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    while bins > 1 and hi > lo:
        edges = np.linspace(lo, hi, bins + 1)
        if np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0):
            return edges
        bins //= 2
    pad = max(abs(lo), abs(hi)) * 1e-3 or 0.5  # one bin around the values (all equal, or nearly)
    return np.array([lo - pad, hi + pad])


def _count_label(count: int) -> str:
    """A power of ten of chunks, short enough for the margin: 1, 10, 100, 1k, 10k, 100k, 1M, ..."""
    for size, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if count >= size:
            return f"{count // size}{suffix}"
    return str(count)


def _digits(step: float, magnitude: float) -> int:
    """Significant digits that tell values ``step`` apart at ``magnitude`` (scores a hair apart
    around 1e8 need ten: with four, every tick read "1e+08")."""
    if not (step > 0 and math.isfinite(step) and math.isfinite(magnitude)):
        return 4
    return max(1, math.ceil(math.log10(max(abs(magnitude), step) / step) - 1e-9) + 1)


def _fmt(value: float, width: float, magnitude: float) -> str:
    """A bin's edge for its tooltip: at least four digits, enough for bins ``width`` apart."""
    return f"{value:.{max(4, _digits(width, magnitude) + 1)}g}"


def _x_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Round ticks and their labels, with the digits that tell them apart; fewer ticks where the
    labels are long (they would overlap)."""
    for target in (6, 3):
        ticks = nice_ticks(lo, hi, target)
        step = ticks[1] - ticks[0] if len(ticks) > 1 else 0.0
        digits = _digits(step, max(abs(lo), abs(hi))) + (1 if step and f"{step:.1e}".startswith("2.5") else 0)
        labelled = [(t, f"{t:.{digits}g}") for t in ticks]
        if max((len(label) for _, label in labelled), default=0) <= 7:
            break
    return labelled


def _count_ticks(peak: int) -> list[int]:
    """The count axis's labels: powers of ten up to the peak, with 2 and 5 where the peak is under
    ten (a small night's bars otherwise had "1" alone beside them)."""
    decades = [10**d for d in range(0, int(math.floor(math.log10(peak) + 0.2)) + 1)]
    return decades if peak >= 10 else [c for c in (1, 2, 5) if c <= peak * 1.2]


def legend_width(threshold_label: str, flagged_label: str = "flagged") -> float:
    """The legend's box, wide enough for its longest entry (about 6.3 units a character)."""
    return 34 + 6.3 * max(len(threshold_label), len(flagged_label))


def _legend_x(panel: Panel, width: float) -> float:
    """The legend's left edge in ``panel``'s upper right corner, or its upper left where the bars
    reach less far into the legend's box there (the right corner hid a night's flagged bars)."""
    box_bottom = TOP + 6 + LEGEND_HEIGHT

    def covered(left: float) -> float:
        return sum(max(0.0, box_bottom - b.y) for b in (*panel.bars, *panel.flagged)
                   if b.x < left + width and b.x + b.width > left)

    right, left = panel.right - 6 - width, panel.left + 6
    return right if covered(right) <= covered(left) else left


def score_histogram(train: np.ndarray, scored: np.ndarray, flagged: np.ndarray, threshold: float,
                    threshold_name: str, xlabel: str, by_night_rule: int = 0) -> Histogram:
    """The training scores (left) and the report's chunks (right, the flagged ones in red), the
    threshold dashed, on shared bins and a log count scale. Scores that are not finite are left
    out (:func:`licanom.report.analysis.score_distributions` leaves them out already).
    ``by_night_rule``: how many of ``flagged`` the night rule flagged, below the threshold; the
    legend's red entry counts them, as a red bar left of the dashed line is theirs."""
    values = [np.asarray(v, dtype=np.float64) for v in (train, scored, flagged)]
    values = [v[np.isfinite(v)] for v in values]
    edges = bin_edges(np.concatenate([*values, [threshold]]), BINS)
    if edges is None:  # no finite score, nor threshold: nothing to bin
        edges = np.array([0.0, 1.0])
    lo, hi = float(edges[0]), float(edges[-1])
    margin = (hi - lo) * 0.03
    width, magnitude = float(edges[1] - edges[0]), max(abs(lo), abs(hi))

    counts = [np.histogram(v, bins=edges)[0] for v in values]
    ticks = _x_ticks(lo - margin, hi + margin)  # the same values and labels in both panels
    panels, x_ticks, threshold_x = [], [], []
    for i, (left, right) in enumerate(PANELS_X):
        def x(v: float, left: float = left, right: float = right) -> float:
            return left + (v - lo + margin) / (hi - lo + 2 * margin) * (right - left)

        own = counts[i]
        peak = max(int(own.max()) if own.size else 0, int(counts[2].max()) if i == 1 and counts[2].size else 0, 1)
        log_lo, log_hi = math.log10(Y_FLOOR), math.log10(peak) + 0.12 + 0.08 * math.log10(peak + 1)

        def y(v: float, log_lo: float = log_lo, log_hi: float = log_hi) -> float:
            return BOTTOM - (math.log10(v) - log_lo) / (log_hi - log_lo) * (BOTTOM - TOP)

        def bars(c: np.ndarray, x=x, y=y) -> tuple[Bar, ...]:
            return tuple(Bar(x=round(x(edges[b]), 2), y=round(y(int(n)), 2), width=round(x(edges[b + 1]) - x(edges[b]), 2),
                             height=round(BOTTOM - y(int(n)), 2), count=int(n), lo=_fmt(edges[b], width, magnitude),
                             hi=_fmt(edges[b + 1], width, magnitude))
                         for b, n in enumerate(c) if n > 0)

        y_ticks = tuple(Tick(round(y(float(c)), 2), _count_label(c)) for c in _count_ticks(peak))
        title = ("training chunks", "all chunks of this report")[i]
        n = int(values[i].size)
        panels.append(Panel(title=f"{title} ({n:,})", left=left, right=right, bars=bars(own),
                            flagged=bars(counts[2]) if i == 1 else (), y_ticks=y_ticks, empty=n == 0))
        x_ticks.append(tuple(Tick(round(x(t), 2), label) for t, label in ticks))
        threshold_x.append(round(x(threshold), 2))
    finite = math.isfinite(threshold)
    label = (f"threshold {_fmt(threshold, width, magnitude)} ({threshold_name})" if finite
             else f"threshold: none ({threshold_name})")
    flagged_label = (f"flagged ({by_night_rule:,} by the night rule, below the threshold)" if by_night_rule
                     else "flagged")
    return Histogram(
        width=WIDTH, height=HEIGHT, top=TOP, bottom=BOTTOM, panels=(panels[0], panels[1]),
        x_ticks=(x_ticks[0], x_ticks[1]), threshold_x=(threshold_x[0], threshold_x[1]) if finite else None,
        threshold_label=label, xlabel=xlabel, legend_x=_legend_x(panels[1], legend_width(label, flagged_label)),
        flagged_label=flagged_label,
    )
