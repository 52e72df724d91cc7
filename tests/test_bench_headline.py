"""The benches' headline records and the summary table of issue 24's rows (no bench is run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import headline, summary


@pytest.fixture()
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LICANOM_BENCH_RECORDS", str(tmp_path))
    return tmp_path


def test_a_record_reads_back_and_fills_its_row(records: Path) -> None:
    path = headline.write("score", headline.start(), figure=1.05e6, unit="rows/s", measured="1.05 M rows/s",
                          met=False, full_size=False, conditions="Tail_context, 100,000 rows")
    assert path == records / "score.json"
    record = headline.read(path)
    assert (record.row, record.figure, record.target, record.met) == ("score", 1.05e6, ">= 2 M rows/s", False)
    table = summary.table(records).splitlines()
    assert len(table) == 2 + len(headline.ROWS)
    assert "1.05 M rows/s" in table[2] and "NOT met (reduced size" in table[2]
    assert all("not measured" in line for line in table[3:])  # never a figure where none was written


def test_unknown_row_and_bad_record_are_named(records: Path) -> None:
    with pytest.raises(ValueError, match="unknown row 'nope'"):
        headline.write("nope", headline.start(), figure=1, unit="s", measured="1 s", met=True, full_size=True,
                       conditions="")
    bad = records / "data.json"
    bad.write_text('{"row": "data"}')
    with pytest.raises(ValueError, match=r"data\.json: not a headline record"):
        headline.read(bad)
    assert "unreadable" in summary.table(records).splitlines()[3]
