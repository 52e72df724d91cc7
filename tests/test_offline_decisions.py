"""The offline re-decision tool groups stored night chunks as the night rule did when they were scored."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl

from benchmarks.offline_decisions import _night_chunks
from licanom.detectors.decision import DEFAULT_MIN_SEVERITY, stands_out


def test_nights_cut_at_two_are_grouped_by_pass_and_utc_day(tmp_path):
    # two passes cut at 02:00: each holds 22 hours of one UTC day and two of the next; the second
    # pass's day 2 is not the first pass's two hours of it
    t0 = datetime(2025, 1, 1, 2, 0, tzinfo=timezone.utc)
    starts = [t0 + timedelta(hours=h) for h in (*range(0, 24), *range(24, 48))]
    chunk = [*range(24), *range(24)]
    severity = np.full(48, 5.0)
    # the first pass's 00:00 and 01:00 hours of day 2: a small night of two chunks, 45 only 15 above the other
    severity[22], severity[23] = 45.0, 30.0
    frame = pl.DataFrame({
        "world": "w", "profile": "p", "seed": 1, "chunk": chunk, "start_time": starts, "severity": severity,
        "truth": False, "events": [[] for _ in range(48)], "is_anomaly": severity >= DEFAULT_MIN_SEVERITY,
    }, schema_overrides={"events": pl.List(pl.Int64)})
    frame.write_parquet(tmp_path / "w-p-1-Tail_context.parquet")
    got = _night_chunks([tmp_path / "w-p-1-Tail_context.parquet"])
    nights = got["night"].to_numpy()
    assert len(np.unique(nights)) == 4  # (pass 1, day 1), (pass 1, day 2), (pass 2, day 2), (pass 2, day 3)
    assert nights[22] == nights[23] != nights[24]
    assert (nights[:22] == nights[0]).all() and (nights[24:46] == nights[24]).all()
    # grouped by UTC day alone, the two hours would join the next pass's 22 and be judged with them
    by_day = got["start_time"].dt.epoch("d").to_numpy()
    assert by_day[22] == by_day[24]
    assert not stands_out(severity, nights)[22] and stands_out(severity, by_day)[22]


def test_calibration_anchor_reads_the_stored_calibration_and_reproduces_the_stored_severities(tmp_path, capsys):
    from benchmarks.offline_decisions import _anchors, calibration_anchor
    from licanom.detectors.context import TAIL_SCALE_NATS
    from licanom.detectors.decision import Calibration

    rng = np.random.default_rng(0)
    # a calibration whose first block (the log's first days) scores a little higher, within the bulk:
    # without it the bulk's median lies lower
    scores = np.concatenate([rng.normal(15.0, 0.5, 25), rng.normal(10.0, 2.0, 75)])
    anchors = _anchors(scores)
    assert anchors["the bulk's median without the first block"] < anchors["the bulk's median (as is)"] - 0.5
    night = np.array([10.0, 12.0, 11.0, 60.0])
    severity = Calibration.fit(scores, scale=TAIL_SCALE_NATS).severity(night)
    t0 = datetime(2025, 1, 1, 2, 0, tzinfo=timezone.utc)
    frame = pl.DataFrame({
        "world": "w", "profile": "p", "seed": 1, "chunk": range(4), "start_time": [t0 + timedelta(hours=h) for h in range(4)],
        "score": night, "severity": severity, "truth": [False, False, False, True], "events": [[], [], [], [1]],
    }, schema_overrides={"events": pl.List(pl.Int64)})
    frame.write_parquet(tmp_path / "w-p-1-Tail_context.parquet")
    np.save(tmp_path / "w-p-1-Tail_context.calibration.npy", scores)
    calibration_anchor([tmp_path / "w-p-1-Tail_context.parquet"])
    out = capsys.readouterr().out
    assert "reproduces the stored severities to 0" in out
    assert out.count("| the bulk's median") == 8  # two anchors at four levels
