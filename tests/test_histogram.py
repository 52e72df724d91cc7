"""The report's score histogram: its geometry (licanom/report/histogram.py) and its inline SVG."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest

from licanom.report.histogram import BOTTOM, TOP, nice_ticks, score_histogram
from licanom.report.render import environment


def svg(h) -> str:
    return environment().from_string('{% include "histogram.svg.j2" %}').render(h=h)


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 40.0), (-0.3, 7.1), (1e8, 1e8 + 3.0), (0.004, 0.0051), (-5.0, -1.0)])
def test_nice_ticks_are_round_evenly_spaced_and_inside_the_range(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi)
    assert 3 <= len(ticks) <= 11 and all(lo <= t <= hi for t in ticks)
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert any(math.isclose(mantissa, m) for m in (1.0, 2.0, 2.5, 5.0))


def test_the_bars_hold_every_chunk_once_and_the_flagged_ones_lie_over_the_threshold() -> None:
    rng = np.random.default_rng(0)
    train, scored = rng.exponential(5, 400), rng.exponential(5, 120)
    flagged = scored[scored > 12]
    h = score_histogram(train, scored, flagged, 12.0, "severity", "severity")
    left, right = h.panels
    assert sum(b.count for b in left.bars) == 400 and sum(b.count for b in right.bars) == 120
    assert sum(b.count for b in right.flagged) == flagged.size and not left.flagged
    assert all(b.x >= h.threshold_x[1] - b.width for b in right.flagged)  # each flagged bin reaches past the line
    for panel, x in zip(h.panels, h.threshold_x, strict=True):
        assert panel.left < x < panel.right
        for b in panel.bars:  # inside the plot, taller for more chunks
            assert panel.left <= b.x and b.x + b.width <= panel.right + 1e-6 and TOP <= b.y < BOTTOM
        tallest = max(panel.bars, key=lambda b: b.count)
        assert all(b.height <= tallest.height for b in panel.bars)
    one = [b for b in right.bars if b.count == 1]
    ten = [b for b in right.bars if b.count >= 10]
    assert one and ten and max(b.height for b in one) < min(b.height for b in ten)  # log scale, one chunk still shows
    assert all(b.height > 0 for b in one)


def test_the_svg_escapes_its_words_and_draws_each_bar() -> None:
    h = score_histogram(np.arange(10.0), np.arange(5.0), np.array([4.0]), 3.5, "<b>M3</b>", 'score "x"')
    page = svg(h)
    assert "<b>M3</b>" not in page and "&lt;b&gt;M3&lt;/b&gt;" in page
    assert page.count("<title>") == 1 + len(h.panels[0].bars) + len(h.panels[1].bars) + len(h.panels[1].flagged)
    assert page.count('stroke-dasharray="5 3"') == 3  # the threshold in each panel and in the legend


def test_the_legend_says_which_flagged_chunks_the_night_rule_flagged_below_the_threshold() -> None:
    """The legend's red "flagged" read as "above the dashed threshold", while the night rule flags
    chunks below it too: with such chunks it counts them; without, it says "flagged" alone."""
    scored = np.arange(20.0)
    h = score_histogram(np.arange(30.0), scored, np.array([9.0, 15.0, 18.0, 19.0]), 14.0, "severity", "severity",
                        by_night_rule=1)
    assert h.flagged_label == "flagged (1 by the night rule, below the threshold)"
    assert ">flagged (1 by the night rule, below the threshold)</text>" in svg(h)
    assert h.legend_width >= 6.3 * len(h.flagged_label)  # the box holds the longer entry
    plain = score_histogram(np.arange(30.0), scored, np.array([15.0]), 14.0, "severity", "severity")
    assert plain.flagged_label == "flagged" and ">flagged</text>" in svg(plain)


def test_a_reports_histogram_counts_the_night_rules_flags() -> None:
    from licanom.report import render_html
    from tests.test_report import make_chunks, make_input, make_rows

    chunks, errors = make_chunks(make_rows(), flagged=(7,), by_night=(2,))  # chunk 2: below the threshold
    page = render_html(make_input(chunks=chunks, feature_errors=errors))
    assert ">flagged (1 by the night rule, below the threshold)</text>" in page
    assert ">flagged</text>" in render_html(make_input())


def test_a_threshold_that_is_not_finite_draws_no_line_and_an_empty_panel_says_none() -> None:
    h = score_histogram(np.arange(10.0), np.array([]), np.array([]), math.inf, "M1", "score")
    page = svg(h)
    assert h.threshold_x is None and 'stroke-dasharray="5 3"' not in page  # no line, nor its legend sample
    assert h.threshold_label == "threshold: none (M1)" and "inf" not in page  # no position is infinite
    assert h.panels[1].empty and re.search(r">none</text>", page)


def test_a_nights_report_imports_no_matplotlib(tmp_path) -> None:
    """The night of a context model (no loss curves) writes its page without matplotlib."""
    probe = ("import sys; from tests.test_report import make_input; from licanom.report import write_report; "
             f"write_report(make_input(train_loss=(), val_loss=()), {str(tmp_path)!r}); "
             "print(sorted(m for m in sys.modules if m.startswith('matplotlib')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]" and (tmp_path / "report.html").exists()


def test_a_count_axis_of_many_chunks_keeps_its_labels_short() -> None:
    """Labels of 100,000 chunks and more ran into the axis title in the left margin."""
    scores = np.concatenate([np.zeros(250_000), np.arange(10.0)])
    h = score_histogram(scores, scores[:5], scores[:0], 5.0, "M3", "score")
    assert [t.label for t in h.panels[0].y_ticks] == ["1", "10", "100", "1k", "10k", "100k"]
    assert all(len(t.label) <= 4 for p in h.panels for t in p.y_ticks)


@pytest.mark.parametrize("scores", [
    np.linspace(0.25, 0.25 + 3e-7, 9),  # a few training chunks a hair apart
    np.linspace(1e8, 1e8 + 3.0, 9),     # large scores, a small range
    np.linspace(0.0, 40.0, 9),
])
def test_the_tick_labels_and_the_bins_tooltips_tell_their_values_apart(scores: np.ndarray) -> None:
    """With four significant digits every tick read "0.25" (or "1e+08") and every bin "0.25 to 0.25"."""
    h = score_histogram(scores, scores, scores[:0], float(scores[-1]), "M3", "score")
    for ticks in h.x_ticks:
        labels = [t.label for t in ticks]
        assert len(set(labels)) == len(labels) >= 2 and max(map(len, labels)) <= 11
        assert np.all(np.diff([float(label) for label in labels]) > 0)  # each label its own value, in order
    for bar in h.panels[0].bars:
        assert bar.lo != bar.hi


def test_a_small_nights_count_axis_has_more_than_one_label() -> None:
    h = score_histogram(np.arange(4.0), np.array([1.0, 1.0, 1.0, 1.0, 2.0]), np.array([]), 3.0, "M3", "score")
    assert [t.label for t in h.panels[1].y_ticks] == ["1", "2"]
    assert [t.label for t in h.panels[0].y_ticks] == ["1"]


def test_the_legend_leaves_the_corner_that_the_tall_bars_reach() -> None:
    """On an anomalous night the tallest bars (flagged) lay at the high end, under the legend."""
    low, high = np.full(3, 1.0), np.full(300, 50.0)
    scored = np.concatenate([low, high])
    h = score_histogram(np.linspace(0.0, 50.0, 40), scored, high, 40.0, "severity", "severity")
    right = h.panels[1]
    assert h.legend_x == pytest.approx(right.left + 6)
    quiet = score_histogram(np.linspace(0.0, 50.0, 40), np.concatenate([np.full(300, 1.0), [50.0]]),
                            np.array([50.0]), 40.0, "severity", "severity")
    assert quiet.legend_x > quiet.panels[1].centre
