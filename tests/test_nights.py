"""The nightly job fed, corrupted and misconfigured as an operator would (issue: nights that never
lose, skip or double-count a row). One test per probe; the kills are in test_fault_injection.py.

Small: a Tail_context model on 600 rows, chunks of 20, a CSV export that grows, MLflow on SQLite.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest

from tests.night_harness import (
    check_ledger,
    make_bundle,
    new_vendor,
    published,
    rows,
    state_json,
    tracker_for,
)


@pytest.fixture(scope="module")
def bundle():
    return make_bundle()


@pytest.fixture
def vendor(tmp_path, bundle):
    v = new_vendor(tmp_path, "acme", bundle)
    v.start(1599)  # trained on Ids 1000-1599
    return v


def export_nights(vendor):  # type: ignore[no-untyped-def]
    """The vendor's folder export, its night and their MLflow store: ``night(name, frame, since)``
    writes ``frame`` as the folder's file ``name`` first where given, then scores a night."""
    folder = vendor.root / "export"
    folder.mkdir()
    tracker = tracker_for(vendor.root)

    def night(name: str | None = None, frame: pl.DataFrame | None = None, since: int | None = None):  # type: ignore[no-untyped-def]
        if name is not None and frame is not None:
            frame.write_csv(folder / name)
        return vendor.night(tracker, since=since, path=str(folder))

    return folder, night, tracker


def _quarantine(night) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    return pl.read_parquet(night.out_dir / "quarantine.parquet")


# --- the watermark ------------------------------------------------------------------------

@pytest.mark.parametrize("also_bad", [False, True])
def test_an_id_far_beyond_the_recent_ones_is_quarantined_and_the_watermark_stays(vendor, also_bad) -> None:
    hostile = rows(2**62, 1, start=rows(1600, 100)["Time"].str.to_datetime().max())
    if also_bad:
        hostile = hostile.with_columns(pl.lit("5555").alias("State"))  # itself quarantined for its state too
    vendor.append(pl.concat([rows(1600, 100), hostile]))
    night = vendor.night()
    assert night.watermark_after == 1699
    q = _quarantine(night)
    assert q["Id"].to_list() == [str(2**62)]
    if not also_bad:
        assert "far beyond" in q["reason"][0]
    # the night's reports say so, with the reason
    md = (night.out_dir / "report.md").read_text()
    assert "1 row quarantined, not scored (quarantine.parquet" in md and q["reason"][0].split("; ")[0] in md
    html = (night.out_dir / "report.html").read_text()
    assert "1 row quarantined, not scored" in html
    vendor.append(rows(1700, 100, seed=1))
    again = vendor.night()
    assert "quarantined" not in (again.out_dir / "report.md").read_text()
    assert again.rows_read == 100 and again.watermark_after == 1799  # later nights still read their rows
    assert again.rows_quarantined == 0  # the hostile row is reported once
    assert not any("late rows" in m for m in again.messages)  # nor counted as a late row
    check_ledger(vendor, [*range(1600, 1800), 2**62])


def test_a_night_report_rebuilt_elsewhere_names_the_nights_quarantine_by_its_path(vendor, tmp_path, capsys) -> None:
    """`licanom report --run <night> --out DIR` said "(quarantine.parquet, each with its reason)" in
    DIR, where no quarantine is: the rows stay in the night folder, named by their path."""
    import html

    from licanom.cli import main

    vendor.append(pl.concat([rows(1600, 100), rows(1700, 1).with_columns(pl.lit("5555").alias("State"))]))
    night = vendor.night()
    assert night.rows_quarantined == 1
    assert main(["report", "--run", str(night.out_dir), "--out", str(tmp_path / "elsewhere")]) == 0
    page = html.unescape((tmp_path / "elsewhere" / "report.html").read_text())
    assert f"1 row quarantined, not scored ({night.out_dir.absolute() / 'quarantine.parquet'}, each with its reason)" in page
    assert main(["report", "--run", str(night.out_dir)]) == 0  # beside it, the file is named as the night wrote it
    assert "not scored (quarantine.parquet, each with its reason)" in html.unescape((night.out_dir / "report.html").read_text())


def test_rows_that_arrive_below_the_watermark_are_named_not_silently_left_out(vendor) -> None:
    """A late part of the export (Ids the watermark has passed) is not read, but the night says
    how many rows appeared below the watermark since the last night counted them, once."""
    from licanom.ops.scoring_state import load_state

    vendor.append(pl.concat([rows(1600, 100), rows(1750, 50, seed=1)]))  # 1700-1749 not exported yet
    first = vendor.night()
    assert first.watermark_after == 1799 and not any("late rows" in m for m in first.messages)
    assert load_state(vendor.out, "acme").source_rows == 150  # as the next night should find them
    vendor.append(pl.concat([rows(1700, 5, seed=2), rows(1800, 100, seed=3)]))  # five late rows, then new ones
    second = vendor.night()
    assert second.rows_read == 100 and second.watermark_after == 1899
    late = [m for m in second.messages if m.startswith("late rows")]
    assert late and "5 rows with Ids at or below the watermark 1799" in late[0]
    assert f"since the last night, in {vendor.log.name}; they are not read" in late[0], late  # the file, by its name
    # a file that grew: where in it the late rows lie the counts cannot tell, so the note says how to choose N
    assert "run `licanom run score --vendor acme --since N`, N the first Id of the night folder (after-N-to-...) " \
        "that holds the lowest of their Ids, not before Id 1599, the first night's start (where in that file they " \
        "lie the counts cannot tell: the lowest is the lowest Id of that file at or below the watermark that no " \
        "night folder's ledger.parquet lists and that lies after Id 1599), which scores" in late[0], late
    assert "late rows: 5 rows" in (second.out_dir / "report.md").read_text()
    vendor.append(rows(1900, 100, seed=4))
    third = vendor.night()  # counted once: the next night finds what it expects
    assert not any("late rows" in m for m in third.messages)
    assert load_state(vendor.out, "acme").source_rows == 355


def test_late_rows_in_the_file_that_holds_the_training_rows_never_send_the_user_back_to_them(vendor) -> None:
    """One export file that grows, the training rows at its start: five rows arriving late in it made
    the note say ``--since 999`` (the file's first Id less one), which scores the training rows and every
    night again. A file that only grew gets no ``--since`` of its own (where in it the late rows lie the
    counts cannot tell) and never one before the first night's start."""
    vendor.append(pl.concat([rows(1000, 600), rows(1600, 100), rows(1705, 95, seed=1)]))  # 1700-1704 not yet
    assert vendor.night().watermark_after == 1799
    vendor.append(pl.concat([rows(1700, 5, seed=2), rows(1800, 100, seed=3)]))  # the five late, then new rows
    (late,) = [m for m in vendor.night().messages if m.startswith("late rows")]
    assert "late rows: 5 rows with Ids at or below the watermark 1799" in late and f"in {vendor.log.name};" in late
    assert "--since 999" not in late and not re.search(r"--since \d", late), late
    assert "not before Id 1599, the first night's start" in late, late


def test_a_new_late_file_that_starts_in_the_training_rows_is_scored_from_the_first_nights_start(vendor) -> None:
    """A new file whose first Id lies in the training rows (copies of them, then the late rows): the
    ``--since`` is the first night's start, not the file's first Id less one."""
    folder, night, _ = export_nights(vendor)
    night("a.csv", pl.concat([rows(1000, 600), rows(1600, 90, seed=1), rows(1695, 105, seed=1)]))  # 1690-1694 not yet
    third = night("late-part.csv", pl.concat([rows(1590, 5), rows(1690, 5, seed=2), rows(1800, 100, seed=3)]))
    (late,) = [m for m in third.messages if m.startswith("late rows")]
    assert "5 rows with Ids at or below the watermark 1799" in late and "in late-part.csv;" in late, late
    assert "run `licanom run score --vendor acme --since 1599` (the first night's start: Id 1590, the first of " \
        "that file, lies before it, in the champion's training rows, which no night scores)" in late, late


def test_an_empty_log_file_at_night_is_nothing_new(vendor) -> None:
    """A source of one file emptied (an export rotated: the file truncated, its next rows not yet
    written) failed the night with "the log lacks required column(s) [...]; it has []"; the docs
    say an empty file holds no new rows yet at night, as it does in a folder of files."""
    vendor.append(rows(1600, 100))
    assert vendor.night().watermark_after == 1699
    vendor.log.write_text("")  # emptied, not removed
    empty = vendor.night()
    assert empty.rows_read == 0 and empty.watermark_after == 1699
    assert any(m.startswith("source shrank") for m in empty.messages)  # its 100 Ids gone from the source
    vendor.log.unlink()
    vendor.append(rows(1700, 100, seed=1))  # the export's next rows, a header first
    assert vendor.night().rows_read == 100


def test_rows_delivered_again_are_not_late_and_a_source_that_shrank_says_so(vendor) -> None:
    """Copies of rows already counted (an export delivered again) are no late rows; a source that
    holds fewer Ids below the watermark than the last night counted (an old file moved away) is
    named, since late rows cannot be counted that night."""
    from licanom.ops.scoring_state import load_state

    first_rows = rows(1600, 100)
    vendor.append(first_rows)
    assert vendor.night().watermark_after == 1699
    vendor.append(pl.concat([first_rows.tail(50), rows(1700, 100, seed=1)]))  # the last 50 again, then new ones
    second = vendor.night()
    assert second.rows_read == 100 and not any("late rows" in m for m in second.messages)
    assert load_state(vendor.out, "acme").source_rows == 200  # distinct Ids: the copies count once
    # the export's older rows moved away, five late ones and new ones added
    kept = pl.read_csv(vendor.log, infer_schema=False).filter(pl.col("Id").cast(int) >= 1700)
    vendor.log.unlink()
    vendor.append(pl.concat([kept.cast(first_rows.schema), rows(1800, 100, seed=2)]))
    third = vendor.night()
    shrank = [m for m in third.messages if m.startswith("source shrank")]
    assert shrank and "100 Ids at or below the watermark 1799 fewer" in shrank[0]
    assert "source shrank" in (third.out_dir / "report.md").read_text()
    assert "source shrank" in (third.out_dir / "report.html").read_text()  # the vendor's report says so too
    assert load_state(vendor.out, "acme").source_rows == 200  # the new count: the next night compares with it
    vendor.append(rows(1900, 100, seed=3))
    assert not any(m.startswith(("source shrank", "late rows")) for m in vendor.night().messages)
    # a state written before the count was of distinct Ids held "source_rows" (rows): not read, no false note
    import json

    from licanom.ops.scoring_state import STATE_FILE, state_dir
    path = state_dir(vendor.out, "acme") / STATE_FILE
    meta = json.loads(path.read_text())
    meta["source_rows"] = meta.pop("source_ids") + 1000
    path.write_text(json.dumps(meta))
    assert load_state(vendor.out, "acme").source_rows is None
    vendor.append(rows(2000, 100, seed=4))
    assert not any(m.startswith(("source shrank", "late rows")) for m in vendor.night().messages)
    assert load_state(vendor.out, "acme").source_rows == 400  # Ids 1700-2099, counted afresh


def test_rows_delivered_again_below_the_watermark_are_counted_as_a_night_scored_again_quarantines_them(vendor) -> None:
    """An export that overlaps an earlier one (rows delivered again under their old Ids, which the
    watermark has passed): the nightly read left the copies out without a word, while a night scored
    again with --since quarantined them as duplicates, so the rows the nights accounted for differed
    by them. The night counts them and says so once (its messages, report.md, the MLflow run), naming
    the file, and the rows it counted are the ones a night scored again quarantines."""
    from licanom.ops.nightly import rows_accounted

    folder, night, tracker = export_nights(vendor)

    def again(result) -> list[str]:  # type: ignore[no-untyped-def]
        return [m for m in result.messages if m.startswith("delivered again")]

    def metrics() -> dict[str, float]:
        experiment = tracker.client.get_experiment_by_name("licanom/acme/nightly").experiment_id
        return tracker.client.search_runs([experiment], order_by=["attributes.start_time DESC"])[0].data.metrics

    first_rows = rows(1600, 200, seed=1)
    night("a.csv", first_rows)
    second = night("b.csv", rows(1800, 100, seed=2))
    assert second.delivered_again == 0 and metrics()["rows_delivered_again"] == 0  # counted, and none
    copies = first_rows.slice(150, 20)  # Ids 1750-1769 again, under the watermark 1899
    third = night("c.csv", pl.concat([copies, rows(1900, 100, seed=3)]))
    assert third.rows_read == 100 and third.watermark_after == 1999 and third.rows_quarantined == 0
    said = again(third)
    assert said and said[0].startswith("delivered again: 20 rows under Ids at or below the watermark 1899"), said
    assert "in c.csv" in said[0] and "not read" in said[0]
    assert not any(m.startswith("late rows") for m in third.messages)  # no Id is new: not late
    assert third.delivered_again == 20 and metrics()["rows_delivered_again"] == 20
    assert "delivered again: 20 rows" in (third.out_dir / "report.md").read_text()
    fourth = night("d.csv", rows(2000, 100, seed=4))
    assert not again(fourth) and fourth.delivered_again == 0  # said once

    forward = rows_accounted(vendor.out, "acme")
    assert int(forward["rows"].sum()) == 500 and forward["Id"].to_list() == list(range(1600, 2100))
    rescored = night(since=1599)  # every night scored again, the source as it is now: the copies quarantined
    q = pl.read_parquet(rescored.out_dir / "quarantine.parquet")
    assert sorted(int(i) for i in q["Id"]) == list(range(1750, 1770))
    assert set(q["reason"]) == {"Id: duplicate (an exact copy of an earlier row)"}
    accounted = rows_accounted(vendor.out, "acme")
    # the rows the nights read and the copies they counted are the rows the night scored again accounts for
    assert int(accounted["rows"].sum()) == int(forward["rows"].sum()) + third.delivered_again
    assert accounted.filter(pl.col("rows") > 1)["Id"].to_list() == list(range(1750, 1770))


def test_rows_delivered_again_on_a_run_that_writes_no_night_reach_the_next_nights_report(vendor) -> None:
    """Copies delivered again on a run with nothing new: said by its log, kept in the state and said by
    the next night's report, once; copies in a file that held their Ids already are counted too."""
    from licanom.ops.scoring_state import load_state

    first_rows = rows(1600, 100)
    vendor.append(first_rows)
    vendor.night()
    vendor.append(first_rows.slice(10, 3))  # appended to the one file again, nothing new
    quiet = vendor.night()
    assert quiet.out_dir is None and quiet.delivered_again == 3
    said = [m for m in quiet.messages if m.startswith("delivered again")]
    assert said and "3 rows under Ids at or below the watermark 1699" in said[0]
    assert "kept for the report of the next night" in said[0]
    assert load_state(vendor.out, "acme").source_copies == 3
    assert not any(m.startswith("delivered again") for m in vendor.night().messages)  # not said twice
    vendor.append(rows(1700, 100, seed=1))
    published_night = vendor.night()
    said = [m for m in published_night.messages if m.startswith("delivered again")]
    assert said and "which wrote no night" in said[0] and published_night.delivered_again == 0
    assert "delivered again: 3 rows" in (published_night.out_dir / "report.md").read_text()


def test_a_file_moved_away_and_back_is_not_late_and_each_note_is_given_once(vendor) -> None:
    """A folder source: a file moved away is "source shrank", the same file back is "source grew
    back", not late rows; Ids beyond the most the source ever held are late, named once even
    when the runs after it read nothing new."""
    folder = vendor.root / "export"
    folder.mkdir()
    away = vendor.root / "archive.csv"

    tracker = tracker_for(vendor.root)

    def night(name: str | None = None, frame: pl.DataFrame | None = None):  # type: ignore[no-untyped-def]
        if name is not None and frame is not None:
            frame.write_csv(folder / name)
        return vendor.night(tracker, path=str(folder))

    def said(result, start: str) -> list[str]:  # type: ignore[no-untyped-def]
        return [m for m in result.messages if m.startswith(start)]

    def metrics() -> dict[str, float]:  # the last night's MLflow run: what a dashboard of vendors reads
        experiment = tracker.client.get_experiment_by_name("licanom/acme/nightly").experiment_id
        return tracker.client.search_runs([experiment], order_by=["attributes.start_time DESC"])[0].data.metrics

    night("a.csv", rows(1600, 100))
    assert "late_rows" not in metrics() and "source_ids_gone" not in metrics()  # the first night: nothing to count against
    night("b.csv", rows(1700, 100, seed=1))
    assert metrics()["late_rows"] == 0 and metrics()["source_ids_gone"] == 0  # counted, and none: 0, not missing
    (folder / "a.csv").rename(away)
    shrank = night("c.csv", pl.concat([rows(1800, 90, seed=2), rows(1895, 5, seed=2)]))  # 1890-1894 not yet
    assert said(shrank, "source shrank: it holds 100 Ids") and not said(shrank, "late rows")
    assert metrics()["source_ids_gone"] == 100 and metrics()["late_rows"] == 0
    away.rename(folder / "a.csv")
    back = night("d.csv", rows(1900, 100, seed=3))
    assert said(back, "source grew back: 100 Ids") and not said(back, "late rows")
    late = night("late.csv", rows(1890, 5, seed=4))  # Ids the watermark passed, never in the source before
    assert said(late, "late rows: 5 rows") and not said(late, "source grew back")
    assert late.late_rows == 5 and metrics()["late_rows"] == 5 and metrics()["source_ids_gone"] == 0
    assert metrics()["rows_carried"] == late.rows_carried
    again = night()  # nothing new: no night, and no note given twice
    assert not said(again, "late rows") and not said(again, "source")


def test_the_late_rows_note_gives_the_command_that_scores_them(vendor) -> None:
    """The late-rows note said "look for a late file" after naming it, and not how to score its rows.
    It gives the ``licanom run score --since`` from the start of the night that holds the file's first
    Id, and what that costs; run, that night scores the late rows, and its run supersedes the nights
    it scored again."""
    import re

    from licanom.ops.nightly import LEDGER
    from tests.night_harness import rows

    folder, night, tracker = export_nights(vendor)

    night("a.csv", rows(1600, 100))
    night("b.csv", pl.concat([rows(1700, 90, seed=1), rows(1795, 5, seed=1)]))  # 1790-1794 not exported yet
    (folder / "late-part.csv").write_text(rows(1790, 5, seed=2).write_csv())
    third = night("c.csv", rows(1800, 100, seed=3))
    said = [m for m in third.messages if m.startswith("late rows")]
    assert len(said) == 1 and "in late-part.csv; they are not read (the watermark has passed them): to score them, " \
        "run `licanom run score --vendor acme --since 1699` (Id 1790, the first of that file, lies after it), which " \
        "scores the nights from there to the watermark again as one night, whose folder and MLflow run supersede " \
        "theirs" in said[0], said
    assert "look for a late file" not in said[0]  # it named the file
    since = re.search(r"--since (\d+)`", said[0])
    assert since is not None
    again = night(since=int(since.group(1)))
    assert again.out_dir.name == "after-1699-to-1899"
    ledger = pl.read_parquet(again.out_dir / LEDGER)
    late = ledger.filter(pl.col("Id").is_between(1790, 1794))
    assert sorted(late["Id"].to_list()) == [1790, 1791, 1792, 1793, 1794] and set(late["fate"]) == {"scored"}
    assert "2 earlier nightly runs tagged licanom.superseded_by" in " ".join(again.messages)
    # the next night does not find them late again (the source's count takes in the rows the re-score read
    # that no night had), and late rows that a re-score does not reach are said again
    fourth = night("d.csv", rows(1900, 100, seed=4))
    assert not [m for m in fourth.messages if m.startswith("late rows")], fourth.messages


def test_a_kept_late_rows_note_is_cleared_by_the_night_scored_again_that_reads_them(vendor) -> None:
    """Late rows found by a run that wrote no night: the note is kept for the next night's report. A
    night scored again from the note's --since read and scored them, and the next night still told the
    user to score them (which re-scored everything again). The night scored again clears the note and
    says so; one that does not reach all of them (from a later --since) leaves it."""
    from licanom.ops.scoring_state import load_state
    from tests.night_harness import rows

    folder, night, _ = export_nights(vendor)

    def late(result) -> list[str]:  # type: ignore[no-untyped-def]
        return [m for m in result.messages if m.startswith("late rows")]

    night("a.csv", rows(1600, 100))
    night("b.csv", pl.concat([rows(1700, 90, seed=1), rows(1795, 5, seed=1)]))  # 1790-1794 not exported yet
    found = night("late-part.csv", rows(1790, 5, seed=2))  # nothing else new: no night is written
    assert found.out_dir is None and "kept for the report of the next night" in late(found)[0]
    short = night(since=1795)  # does not reach the late rows: the note stays
    assert short.out_dir is not None and not late(short) and len(load_state(vendor.out, "acme").notes) == 1
    again = night(since=1699)
    [cleared] = late(again)
    assert cleared.startswith("late rows: 5 rows with Ids at or below the watermark 1799 appeared") and \
        cleared.endswith("; read and scored by this night (the note, kept for the next night's report, is cleared)")
    assert load_state(vendor.out, "acme").notes == ()
    next_night = night("c.csv", rows(1800, 100, seed=3))
    assert next_night.out_dir is not None and not late(next_night), next_night.messages


def test_late_rows_found_by_a_run_that_writes_no_night_reach_the_next_nights_report_once(vendor, monkeypatch) -> None:
    """A late file added on a night with nothing else new: the run's log named the late rows but no
    night folder was written, and the next night's report.md and report.html did not say it. The
    note names the file and its Ids, is kept in the state until a night is published (one killed
    before its commit loses none), goes into that night's messages and reports, and is said once."""
    from licanom.ops import nightly
    from licanom.ops.scoring_state import load_state

    folder = vendor.root / "export"
    folder.mkdir()

    def night(name: str | None = None, frame: pl.DataFrame | None = None):  # type: ignore[no-untyped-def]
        if name is not None and frame is not None:
            frame.write_csv(folder / name)
        return vendor.night(path=str(folder))

    def late(result) -> list[str]:  # type: ignore[no-untyped-def]
        return [m for m in result.messages if m.startswith("late rows")]

    night("a.csv", rows(1600, 100))
    night("b.csv", pl.concat([rows(1700, 90, seed=1), rows(1795, 5, seed=1)]))  # 1790-1794 not exported yet
    found = night("late-part.csv", rows(1790, 5, seed=2))  # nothing else new: no night is written
    assert found.out_dir is None and found.rows_read == 0
    said = late(found)
    assert said and "5 rows with Ids at or below the watermark 1799" in said[0], found.messages
    assert "since the last night, in late-part.csv; they are not read" in said[0], said  # relative to the folder
    assert "kept for the report of the next night" in said[0]
    assert len(load_state(vendor.out, "acme").notes) == 1
    assert not late(night())  # another run with nothing new: not said again

    # a night that fails before its commit: the note stays in the state for the next one
    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("MLflow down")

    monkeypatch.setattr(nightly, "log_night", fail)
    with pytest.raises(RuntimeError):
        night("c.csv", rows(1800, 100, seed=3))
    monkeypatch.undo()
    assert len(load_state(vendor.out, "acme").notes) == 1

    published_night = night()
    assert published_night.out_dir is not None
    said = late(published_night)
    assert said and "5 rows with Ids at or below the watermark 1799" in said[0] and "late-part.csv" in said[0]
    assert "which wrote no night" in said[0] and "kept for" not in said[0]
    for report in ("report.md", "report.html"):
        text = (published_night.out_dir / report).read_text()
        assert "late rows: 5 rows" in text and "late-part.csv" in text, report
    assert load_state(vendor.out, "acme").notes == ()
    assert not late(night("d.csv", rows(1900, 100, seed=4)))  # said once


def test_late_rows_name_the_files_whose_count_grew_by_their_names_in_the_source(vendor, monkeypatch) -> None:
    """The late-rows note named wrong files and Ids: a file renamed the same night counted as new
    (all its Ids "late"), a file regenerated in Id order gave its last Ids, not the late ones, and
    a folder moved made every file new. It names only the files whose count of Ids at or below the
    watermark grew, by their paths relative to the source folder, no Ids; where a file also left the
    count (renamed, moved away or back) it names none. A night holds counts, not the source's Ids."""
    from dataclasses import fields

    from licanom.ops import nightly
    from licanom.ops.scoring_state import load_state

    folder = vendor.root / "export"
    (folder / "2025").mkdir(parents=True)
    read: list[nightly.Night] = []
    read_night = nightly.read_night
    monkeypatch.setattr(nightly, "read_night",
                        lambda night, source, *tracker: read.append(read_night(night, source, *tracker)) or read[-1])

    def night(*files: tuple[str, pl.DataFrame]):  # type: ignore[no-untyped-def]
        for name, frame in files:
            frame.write_csv(folder / name)
        return vendor.night(path=str(folder))

    def late(result) -> str:  # type: ignore[no-untyped-def]
        said = [m for m in result.messages if m.startswith("late rows")]
        assert len(said) == 1, result.messages
        return said[0]

    night(("a.csv", rows(1600, 100)))
    night(("2025/b.csv", pl.concat([rows(1700, 90, seed=1), rows(1795, 5, seed=1)])))  # 1790-1794 not yet
    assert load_state(vendor.out, "acme").source_files == {"a.csv": 100, "2025/b.csv": 95}  # relative names
    # b.csv regenerated in Id order, the late rows inside it, not at its end
    regenerated = night(("2025/b.csv", rows(1700, 100, seed=1)),
                        ("c.csv", pl.concat([rows(1800, 90, seed=2), rows(1895, 5, seed=2)])))  # 1890-1894 not yet
    assert "5 rows with Ids at or below the watermark 1799" in late(regenerated)
    assert "since the last night, in 2025/b.csv; they are not read" in late(regenerated)
    # no Ids of the late rows, and no --since of its own: where in a file that grew they lie, counts cannot tell
    assert "Ids 17" not in late(regenerated) and "(Id" not in late(regenerated)
    assert "--since N`, N the first Id of the night folder (after-N-to-...) that holds the lowest of their Ids, " \
        "not before Id 1599, the first night's start" in late(regenerated)
    # a night holds the count per file, not a frame of the source's Ids
    frames = [f.name for f in fields(read[-1]) if isinstance(getattr(read[-1], f.name), pl.DataFrame)]
    assert frames == ["raw"] and read[-1].ids_below is not None
    assert read[-1].ids_below.per_file == {"a.csv": 100, "2025/b.csv": 100}
    # a.csv renamed the same night as a late file comes: the count grew, no file named
    (folder / "a.csv").rename(folder / "2025" / "a.csv")
    renamed = night(("late.csv", rows(1890, 5, seed=3)), ("d.csv", pl.concat([rows(1900, 90, seed=4),
                                                                             rows(1995, 5, seed=4)])))
    assert "5 rows with Ids at or below the watermark 1899" in late(renamed)
    assert ("in files of the export (a file was also renamed or moved: not named); they are not read"
            in late(renamed)), late(renamed)
    assert "a.csv" not in late(renamed) and "late.csv" not in late(renamed)
    assert set(load_state(vendor.out, "acme").source_files) == {"2025/a.csv", "2025/b.csv", "c.csv", "late.csv", "d.csv"}
    # the folder moved (source.path edited): the names stay, only the late file is named
    moved = vendor.root / "moved"
    folder.rename(moved)
    folder = moved
    in_moved = night(("late-2.csv", rows(1990, 5, seed=5)), ("e.csv", rows(2000, 100, seed=6)))
    assert "since the last night, in late-2.csv; they are not read" in late(in_moved), late(in_moved)
    # a file moved away on one night and back with a late file on the next: none named
    (folder / "e.csv").write_text(pl.concat([rows(2000, 100, seed=6), rows(2100, 90, seed=7),
                                             rows(2195, 5, seed=7)]).write_csv())
    away = vendor.root / "c.csv"
    (folder / "c.csv").rename(away)
    assert any(m.startswith("source shrank") for m in night(("f.csv", rows(2200, 100, seed=8))).messages)
    away.rename(folder / "c.csv")
    back = night(("late-3.csv", rows(2190, 5, seed=9)), ("g.csv", rows(2300, 100, seed=10)))
    assert "in files of the export (a file was also renamed or moved: not named)" in late(back), back.messages
    assert any(m.startswith("source grew back") for m in back.messages)


@pytest.mark.parametrize("kept", [3, 1000])
def test_the_count_per_file_keeps_the_newest_files_one_by_one_and_the_older_ones_together(vendor, monkeypatch,
                                                                                            kept) -> None:
    """An export of a file an hour grew ``source_files`` in state.json by an entry per file, for ever.
    The newest files (by their lowest Id) are kept one by one and the older ones counted together, so
    the state stays small; the nights say what they said with every file kept: no note on a quiet
    night, late rows in a newer file named, late rows in an older file counted and said, though not
    named, and a file moved away still a move."""
    from licanom.ops import nightly
    from licanom.ops.scoring_state import load_state

    monkeypatch.setattr(nightly, "SOURCE_FILES_KEPT", kept)
    folder = vendor.root / "export"
    folder.mkdir()

    def part(k: int, whole: bool = False) -> pl.DataFrame:  # file k: 20 Ids, the 19th not yet exported
        first = 1600 + 20 * k
        return rows(first, 20, seed=k) if whole else pl.concat([rows(first, 18, seed=k), rows(first + 19, 1, seed=k)])

    def night(*files: tuple[str, pl.DataFrame]) -> list[str]:
        for name, frame in files:
            frame.write_csv(folder / name)
        said = vendor.night(path=str(folder)).messages
        return [m for m in said if m.startswith(("late rows", "delivered again", "source shrank", "source grew"))]

    for k in range(6):
        assert night((f"f{k}.csv", part(k))) == []
    state = load_state(vendor.out, "acme")
    if kept == 3:  # f0-f2 (lowest Ids 1600-1640) counted together: 19 Ids each
        assert state.source_files == {"f3.csv": 19, "f4.csv": 19, "f5.csv": 19}
        assert state.source_settled == (1640, 57)
    else:
        assert len(state.source_files) == 6 and state.source_settled is None
    assert state.source_rows == 6 * 19
    assert night(("f6.csv", part(6))) == []  # a quiet night: nothing to say
    late = night(("f5.csv", part(5, whole=True)), ("f7.csv", part(7)))  # a newer file's missing Id
    assert len(late) == 1 and late[0].startswith("late rows: 1 row with Ids at or below the watermark 1739"), late
    assert "since the last night, in f5.csv; they are not read" in late[0]
    assert "run `licanom run score --vendor acme --since N`, N the first Id of the night folder" in late[0], late
    old = night(("f1.csv", part(1, whole=True)), ("f8.csv", part(8)))  # an older file's
    assert len(old) == 1 and old[0].startswith("late rows: 1 row with Ids at or below the watermark 1759"), old
    where = ("files whose first Id is at or below Id 1680 (counted together, not one by one: not named)" if kept == 3
             else "f1.csv")
    assert f"since the last night, in {where}; they are not read" in old[0], old
    unnamed = "look for a late file of the export; to score them, run `licanom run score --vendor acme --since N`, N"
    grown = "to score them, run `licanom run score --vendor acme --since N`, N the first Id of the night folder"
    assert (unnamed if kept == 3 else grown) in old[0], old
    assert night(("f9.csv", rows(1830, 20, seed=9))) == []  # said once; Ids 1780-1829 not exported yet
    (folder / "f0.csv").rename(vendor.root / "f0.csv")  # an older file moved away as 30 late rows come
    moved = night(("late.csv", rows(1780, 30, seed=10)), ("f10.csv", rows(1850, 20, seed=11)))
    assert len(moved) == 1 and moved[0].startswith("late rows: 11 rows"), moved  # 30 late, 19 gone
    assert "in files of the export (a file was also renamed or moved: not named)" in moved[0], moved
    assert unnamed in moved[0], moved
    state = load_state(vendor.out, "acme")
    assert len(state.source_files) == (3 if kept == 3 else 11)
    assert state.source_rows == sum(state.source_files.values()) + (state.source_settled or (0, 0))[1]


def test_a_night_scored_again_leaves_the_kept_note_to_the_next_forward_night(vendor) -> None:
    """A --since re-score below the watermark said the kept late-rows note ("they are not read",
    while its ledger scored those rows) and cleared it, so the next forward night did not say it.
    A night scored again neither says nor clears kept notes (but a late-rows note of rows it read and
    scored: test_a_kept_late_rows_note_is_cleared_by_the_night_scored_again_that_reads_them); the next
    forward night says them once."""
    from licanom.ops.scoring_state import load_state

    folder = vendor.root / "export"
    folder.mkdir()

    def night(name: str | None = None, frame: pl.DataFrame | None = None, since: int | None = None):  # type: ignore[no-untyped-def]
        if name is not None and frame is not None:
            frame.write_csv(folder / name)
        return vendor.night(since=since, path=str(folder))

    def late(result) -> list[str]:  # type: ignore[no-untyped-def]
        return [m for m in result.messages if m.startswith("late rows")]

    night("a.csv", rows(1600, 100))
    night("b.csv", pl.concat([rows(1700, 90, seed=1), rows(1795, 5, seed=1)]))  # 1790-1794 not exported yet
    found = night("late-part.csv", rows(1790, 5, seed=2))  # nothing else new: kept for the next night
    assert found.out_dir is None and late(found)
    assert len(load_state(vendor.out, "acme").notes) == 1
    again = night(since=1795)  # part of the last night scored again, not the late file's rows
    assert again.out_dir is not None and again.scored_again
    assert not late(again), again.messages
    assert "late rows" not in (again.out_dir / "report.md").read_text()
    assert len(load_state(vendor.out, "acme").notes) == 1  # left for the next forward night
    forward = night("c.csv", rows(1800, 100, seed=3))
    said = late(forward)
    assert said and "5 rows with Ids at or below the watermark 1799" in said[0] and "which wrote no night" in said[0]
    assert "late rows: 5 rows" in (forward.out_dir / "report.md").read_text()
    assert load_state(vendor.out, "acme").notes == ()
    assert not late(night("d.csv", rows(1900, 100, seed=4)))  # said once


def test_notes_kept_by_runs_without_a_night_keep_the_latest_of_each_kind(vendor) -> None:
    """A file moved away and back on run after run that read nothing new kept a note each time, the
    state growing without bound. Of each kind (late rows, source shrank, source grew back) the latest
    is kept, saying how many earlier ones it replaced; the next night says them once."""
    from licanom.ops.scoring_state import load_state

    folder = vendor.root / "export"
    folder.mkdir()
    away = vendor.root / "a.csv"

    def night(name: str | None = None, frame: pl.DataFrame | None = None):  # type: ignore[no-untyped-def]
        if name is not None and frame is not None:
            frame.write_csv(folder / name)
        return vendor.night(path=str(folder))

    night("a.csv", rows(1600, 100))
    night("b.csv", rows(1700, 100, seed=1))
    for _ in range(3):  # moved away and back, nothing new read
        (folder / "a.csv").rename(away)
        assert night().out_dir is None
        away.rename(folder / "a.csv")
        assert night().out_dir is None
    notes = load_state(vendor.out, "acme").notes
    assert [note.split(":")[0] for note, *_ in notes] == ["source shrank", "source grew back"], notes  # not 6
    assert [dropped for *_, dropped in notes] == [2, 2]
    published = night("c.csv", rows(1800, 100, seed=2))
    said = [m for m in published.messages if m.startswith(("source shrank", "source grew back"))]
    assert len(said) == 2 and all("2 earlier notes of the kind from such runs dropped, this the latest" in m
                                  for m in said), said
    assert load_state(vendor.out, "acme").notes == ()


def test_a_night_whose_ids_do_not_follow_time_says_so(vendor) -> None:
    """Rows exported late under new Ids (their times two nights back) sort before the night's own:
    the night says that its chunks' Id ranges are not the ranges of their rows."""
    vendor.append(rows(1600, 100))
    first = vendor.night()
    assert not any(m.startswith("Ids out of time order") for m in first.messages)
    old_times = rows(1700, 5, start=rows(1600, 100)["Time"].str.to_datetime().min())
    vendor.append(pl.concat([rows(1705, 100, seed=1), old_times.with_columns(pl.Series("Id", [str(i) for i in range(1805, 1810)]))]))
    second = vendor.night()
    said = [m for m in second.messages if m.startswith("Ids out of time order")]
    assert said and "fall back 1 time " in said[0]  # the five old rows first, then 1705
    assert "Ids out of time order" in (second.out_dir / "report.md").read_text()
    # a whole night older than the rows the last one carried in: those rows sort after it
    from licanom.ops.scoring_state import load_state

    vendor.append(rows(1810, 217, seed=2))
    third = vendor.night()
    assert load_state(vendor.out, "acme").tail.height  # some rows carried to the next night
    assert not any(m.startswith("Ids out of time order") for m in third.messages)
    vendor.append(rows(2100, 40, seed=3, start=rows(1600, 1)["Time"].str.to_datetime()[0]))  # times of the first night
    fourth = vendor.night()
    assert any(m.startswith("Ids out of time order") for m in fourth.messages)


def test_an_unfinished_last_line_is_left_for_the_next_night(vendor) -> None:
    from licanom.data.extract.files import read_log

    vendor.append(rows(1600, 100))
    line = rows(1700, 1).write_csv(include_header=False)
    with open(vendor.log, "a") as f:
        f.write(line[:25])  # the exporter is writing this line
    assert read_log(vendor.log, after_id=1599).height == 100
    night = vendor.night()
    assert night.rows_read == 100 and night.rows_quarantined == 0 and night.watermark_after == 1699
    with open(vendor.log, "a") as f:
        f.write(line[25:])  # ... and finished it
    vendor.append(rows(1701, 39, seed=2))
    again = vendor.night()
    assert again.rows_read == 40 and again.watermark_after == 1739
    check_ledger(vendor, list(range(1600, 1740)))


def test_a_parquet_file_still_being_written_is_left_for_the_next_read(tmp_path) -> None:
    """As an unfinished CSV line or gzip stream: a Parquet file cut short and changed within the
    settling time is read at the next read, whole; an old cut file is an error naming it."""
    import os

    from licanom.data.extract.files import ExtractFileError, read_log

    folder = tmp_path / "export"
    folder.mkdir()
    rows(1600, 50).write_csv(folder / "a.csv")
    whole = tmp_path / "b.parquet"
    rows(1650, 50).write_parquet(whole)
    (folder / "b.parquet").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert read_log(folder, after_id=1599).height == 50  # a's rows; b's next time
    with pytest.raises(ExtractFileError, match="b.parquet"):
        read_log(folder)  # a one-off read (no watermark) holds nothing back
    old = folder.stat().st_mtime - 3600
    os.utime(folder / "b.parquet", (old, old))
    with pytest.raises(ExtractFileError, match="b.parquet"):
        read_log(folder, after_id=1599)
    (folder / "b.parquet").write_bytes(whole.read_bytes())
    assert read_log(folder, after_id=1599).height == 100


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "cp1252"])
def test_an_unfinished_last_line_in_another_encoding_is_left_for_the_next_read(tmp_path, encoding) -> None:
    from licanom.data.extract.files import read_log

    text = rows(1600, 50).write_csv() + rows(1650, 1).write_csv(include_header=False)[:25]
    data = text.encode(encoding)
    path = tmp_path / "export.csv"
    path.write_bytes(data[:-1] if encoding.startswith("utf-16") else data)  # cut within a character too
    assert read_log(path, after_id=1599, encoding=encoding).height == 50
    path.write_bytes((text[:-25] + rows(1650, 1).write_csv(include_header=False)).encode(encoding))  # finished
    assert read_log(path, after_id=1599, encoding=encoding).height == 51


def test_a_finished_file_without_a_last_line_end_is_read_whole(tmp_path) -> None:
    import os

    from licanom.data.extract.files import SETTLE_SECONDS, read_log

    path = tmp_path / "old.csv"
    path.write_text(rows(1600, 10).write_csv().rstrip("\n"))
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime - SETTLE_SECONDS - 1))
    assert read_log(path, after_id=1599).height == 10


def test_blank_lines_are_no_rows_and_keep_a_file_on_the_fast_reader(tmp_path, monkeypatch) -> None:
    """Blank lines (an export's last line, often) are no rows, and the file is read whole by polars,
    not line by line (several times slower and larger on a big file); a line of separators only is
    a row for validation to quarantine, as the line reader keeps it."""
    import licanom.data.extract.files as files
    from licanom.data.validate import validate_log

    text = rows(1600, 30).write_csv()
    lines = text.splitlines(keepends=True)
    path = tmp_path / "blank.csv"
    path.write_text("".join([*lines[:10], "\n", "\n", *lines[10:], "\n"]))
    line_reader = files._read_csv_lines

    def refused(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("read line by line")

    monkeypatch.setattr(files, "_read_csv_lines", refused)
    frame = files.read_log(path)
    assert frame["Id"].to_list() == rows(1600, 30)["Id"].to_list()
    monkeypatch.setattr(files, "_read_csv_lines", line_reader)
    path.write_text("".join([*lines[:10], "\n", ",,,,,,\n", *lines[10:]]))
    result = validate_log(files.read_log(path))
    assert result.valid.height == 30 and result.quarantine["_row"].to_list() == [9]
    # an empty line within a quoted value is no blank line of the file: the line of separators stays a row
    quoted = rows(1600, 30).with_columns(pl.when(pl.col("Id") == "1603").then(pl.lit("Desk\n\nfloor 2"))
                                         .otherwise(None).alias("FriendlyName"))
    lines = quoted.write_csv().splitlines(keepends=True)
    path.write_text("".join([*lines[:5], *lines[5:10], ",,,,,,,\n", *lines[10:]]))
    result = validate_log(files.read_log(path))
    assert result.valid.height == 30 and result.quarantine.height == 1


def test_a_night_of_mostly_bad_rows_fails_by_the_training_limit_and_says_so(vendor) -> None:
    from licanom.data.validate import ValidationError

    night = rows(1600, 100).with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("x")).otherwise(pl.col("State")).alias("State"))
    vendor.append(night)
    tracker = tracker_for(vendor.root)
    with pytest.raises(ValidationError, match=r"validate\.max_bad_fraction") as err:
        vendor.night(tracker)
    assert "50 of 100" in str(err.value) and "watermark stays at 1599" in str(err.value)
    # its MLflow run says so, FAILED, where a dashboard of the vendors' nights looks
    experiment = tracker.client.get_experiment_by_name("licanom/acme/nightly").experiment_id
    (run,) = tracker.client.search_runs([experiment])
    # its counts under names of their own: the next try reads the rows again, and a sum of rows_read counts once
    assert run.info.status == "FAILED" and "rows_read" not in run.data.metrics
    assert run.data.metrics["refused_rows_quarantined"] == 50 and run.data.metrics["refused_rows_read"] == 100
    assert run.data.tags["licanom.refused"].endswith("after-1599-quarantine.parquet")
    assert "Examples" not in run.data.tags["licanom.refusal"] and "'x'" not in run.data.tags["licanom.refusal"]
    assert run.data.tags["licanom.refusal"].startswith("night of vendor 'acme' refused") and "50 of 100" in run.data.tags["licanom.refusal"]
    # the refused rows, each with its reason, are kept where the message says (not as a night)
    kept = vendor.out / "acme" / "refused" / "after-1599-quarantine.parquet"
    assert str(kept) in str(err.value) and "\n" not in str(err.value)
    assert err.value.result is None  # the rows are in the file, not in the error (a failed run stores its error)
    assert pl.read_parquet(kept).height == 50 and not (vendor.out / "acme" / "nights").exists()
    assert state_json(vendor)["watermark"] == 1599 and published(vendor.out, "acme") == []
    # an MLflow store that cannot be reached: a warning, and the refusal as it is
    def unreachable(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("Connection refused")

    tracker.start_run = unreachable  # type: ignore[method-assign]
    with pytest.raises(ValidationError, match=r"validate\.max_bad_fraction"):
        vendor.night(tracker)
    # fixed and run again: the night is scored and the refused rows' file goes with the refusal
    vendor.log.unlink()
    vendor.append(rows(1600, 100))
    assert vendor.night().watermark_after == 1699 and not kept.exists()


def _nightly_runs(tracker, vendor: str = "acme"):  # type: ignore[no-untyped-def]
    experiment = tracker.client.get_experiment_by_name(f"licanom/{vendor}/nightly").experiment_id
    return tracker.client.search_runs([experiment], order_by=["attributes.start_time ASC"])


def test_the_nightly_runs_are_named_by_their_nights_and_a_run_of_nothing_new_says_so(vendor) -> None:
    """Every nightly MLflow run was named "nightly score", and a run that read no row made a FINISHED
    run of zeros that looked like any other: each run is named by its night (its chunks' times and
    its folder), and a run of nothing new is kept (the vendor was scored) but named and tagged so."""
    tracker = tracker_for(vendor.root)
    vendor.append(rows(1600, 100))
    first = vendor.night(tracker)
    vendor.append(rows(1700, 50, seed=1))
    second = vendor.night(tracker)
    nothing = vendor.night(tracker)
    assert nothing.out_dir is None and second.out_dir is not None
    runs = _nightly_runs(tracker)
    names = [r.info.run_name for r in runs]
    assert len(set(names)) == 3, names
    start, end = first.chunks["start_time"].min(), first.chunks["end_time"].max()
    assert names[0] == f"nightly score {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC (after-1599-to-1699)"
    assert names[1].endswith(f"UTC ({second.out_dir.name})") and names[2] == "nightly score (nothing new after Id 1749)"
    assert [r.info.status for r in runs] == ["FINISHED"] * 3
    assert [r.data.tags.get("licanom.outcome") for r in runs] == [None, None, "nothing new"]
    assert runs[2].data.metrics["rows_read"] == 0 and runs[2].data.tags["licanom.night"] == ""
    check_ledger(vendor, list(range(1600, 1750)), tracker)


@pytest.mark.parametrize("source", ["file", "folder"])
def test_a_night_refused_for_a_missing_column_has_a_failed_mlflow_run(vendor, source) -> None:
    """A night refused for too many bad rows had a FAILED run, but one refused for a file that lacks a
    column (an export whose MachineCode became "Machine Code") had none: MLflow did not show that the
    vendor missed a night. Both are FAILED runs with the refusal."""
    from licanom.data.validate import ValidationError

    tracker = tracker_for(vendor.root)
    renamed = rows(1600, 100).rename({"MachineCode": "Machine Code"})
    if source == "file":  # refused as the night's rows are read: the one file named
        vendor.append(renamed)
        path = vendor.log
        with pytest.raises(ValidationError, match=r"lacks required column\(s\) \['MachineCode'\]") as err:
            vendor.night(tracker)
    else:  # a folder: the file of the export that lacks it
        path = vendor.root / "exports" / "b.csv"
        path.parent.mkdir()
        rows(1600, 50).write_csv(path.parent / "a.csv")
        renamed.slice(50).write_csv(path)
        with pytest.raises(ValidationError, match=r"lacks required column\(s\) \['MachineCode'\]") as err:
            vendor.night(tracker, path=str(path.parent))
    (run,) = _nightly_runs(tracker)
    assert run.info.status == "FAILED" and run.info.run_name == "nightly score (refused after Id 1599)"
    assert run.data.tags["licanom.outcome"] == "refused" and run.data.tags["licanom.night"] == ""
    assert run.data.tags["licanom.refusal"] == str(err.value).splitlines()[0] and str(path) in run.data.tags["licanom.refusal"]
    assert "licanom.refused" not in run.data.tags and not run.data.metrics  # no rows kept, none counted
    assert run.data.params["watermark_before"] == "1599"
    assert state_json(vendor)["watermark"] == 1599 and published(vendor.out, "acme") == []


def test_a_pseudonymised_vendors_refused_export_names_its_file_without_its_folders_in_mlflow(tmp_path, bundle,
                                                                                             monkeypatch) -> None:
    from dataclasses import replace

    from licanom.data.validate import ValidationError

    monkeypatch.setenv("LICANOM_TEST_REFUSAL_SECRET", "a-secret-of-more-than-16-characters")
    v = new_vendor(tmp_path, "private", replace(bundle, pseudonym_env="LICANOM_TEST_REFUSAL_SECRET"))
    v.start(1599)
    folder = tmp_path / "customer-x" / "exports"
    (folder / "march").mkdir(parents=True)
    rows(1600, 50).write_csv(folder / "march" / "a.csv")
    rows(1650, 50).rename({"MachineCode": "Machine Code"}).write_csv(folder / "march" / "b.csv")
    tracker = tracker_for(v.root)
    with pytest.raises(ValidationError, match="lacks required column") as refused:
        v.night(tracker, path=str(folder))
    (run,) = _nightly_runs(tracker, "private")
    said = run.data.tags["licanom.refusal"]
    assert run.info.status == "FAILED" and said.startswith("march/b.csv: the log file lacks required column(s)"), said
    assert "customer-x" not in said and str(tmp_path) not in said
    # the error raised too: it becomes the console line and the Prefect flow run's message
    raised = str(refused.value)
    assert raised.startswith("march/b.csv: the log file lacks required column(s)"), raised
    assert "customer-x" not in raised and str(tmp_path) not in raised


def test_a_pseudonymised_vendors_quarantined_line_is_told_without_its_folders(tmp_path, bundle, monkeypatch) -> None:
    """A line of a field too many in a pseudonymised vendor's folder export: its reason names the file
    by its full path, and the night's console line (printed into Prefect's log) and the report.md that
    goes to MLflow held the vendor's folders ("/srv/.../customer-x/..."). Both name it as in the source."""
    from dataclasses import replace

    from licanom.ops.nightly import TRACKING_COPY

    monkeypatch.setenv("LICANOM_TEST_LINE_SECRET", "a-secret-of-more-than-16-characters")
    v = new_vendor(tmp_path, "private", replace(bundle, pseudonym_env="LICANOM_TEST_LINE_SECRET"))
    v.start(1599)
    folder = tmp_path / "customer-x" / "exports"
    (folder / "march").mkdir(parents=True)
    lines = rows(1600, 100).write_csv().splitlines()
    lines[6] += ",a field too many"
    (folder / "march" / "a.csv").write_text("\n".join(lines) + "\n")
    night = v.night(path=str(folder))
    assert night.rows_quarantined == 1 and night.out_dir is not None
    kept = pl.read_parquet(night.out_dir / "quarantine.parquet")["reason"][0]
    assert "customer-x" in kept and "cannot be read as CSV" in kept  # the vendor's own file keeps the path
    console = " ".join(night.summary())
    assert "march/a.csv: cannot be read as CSV" in console, console
    tracked = (night.out_dir / TRACKING_COPY / "report.md").read_text()
    assert "march/a.csv: cannot be read as CSV" in tracked, tracked
    for said in (console, tracked):  # (the console line's own output folder is the operator's, not the vendor's)
        assert "customer-x" not in said and str(folder) not in said


def test_a_run_that_waited_for_another_runs_lock_says_so(vendor, monkeypatch) -> None:
    """Two nightly runs at once: the second waited for the first's lock and then said only "0 rows
    read ... nothing new". It says that it waited for another run of the vendor (the console and
    its MLflow run); a run that found the lock free says nothing of it."""
    import threading

    import licanom.ops.scoring_state as state_lib

    tracker = tracker_for(vendor.root)
    vendor.append(rows(1600, 100))
    alone = vendor.night(tracker)
    assert alone.waited is None and not any("another run" in line for line in alone.summary())
    blocked = threading.Event()
    sleep = state_lib.time.sleep

    def waiting(seconds: float) -> None:  # the second run found the lock held
        blocked.set()
        sleep(seconds)

    monkeypatch.setattr(state_lib.time, "sleep", waiting)
    done = []
    with state_lib.vendor_lock(vendor.out, "acme") as held:  # the other run, scoring the vendor
        assert held.waited is None
        second = threading.Thread(target=lambda: done.append(vendor.night(tracker)))
        second.start()
        assert blocked.wait(60)
    second.join(120)
    (night,) = done
    assert night.out_dir is None and night.waited is not None and night.waited >= 0
    summary = night.summary()
    assert "0 rows read" in summary[0] and "nothing new after the watermark, Id 1699" in summary[0]
    assert summary[1].startswith("  waited ") and "s for another run of vendor acme to end (the vendor's lock), " \
        "then read after the watermark that run left" in summary[1], summary
    run = _nightly_runs(tracker)[-1]
    assert run.data.metrics["rows_read"] == 0 and float(run.data.tags["licanom.waited_for_lock"]) >= 0
    assert "licanom.waited_for_lock" not in _nightly_runs(tracker)[0].data.tags


def test_a_since_run_that_waited_for_the_lock_says_it_read_after_its_since() -> None:
    """A ``--since`` run that waited for the lock said it "then read after the watermark that run left":
    it read after its ``--since``."""
    from licanom.ops.nightly import NightResult

    def night(since: int | None) -> NightResult:
        return NightResult("acme", "1", 1599, 1899, 300, 0, pl.DataFrame(), None, waited=2.0, since=since,
                           vendor_watermark=1899)

    (said,) = night(1599).waited_note()
    assert said.endswith("(the vendor's lock), then read after --since 1599"), said
    assert night(None).waited_note()[0].endswith("then read after the watermark that run left")


# --- unknown products --------------------------------------------------------------------------

def test_a_row_of_an_unknown_product_is_quarantined_and_the_night_goes_on(vendor, bundle) -> None:
    from licanom.ops.bundle import validate_rows
    from licanom.data.validate import UNKNOWN_PRODUCT

    night = rows(1600, 600).with_columns(
        pl.when(pl.col("Id") == "1900").then(pl.lit("99")).otherwise(pl.col("ProductId")).alias("ProductId"))
    checked = validate_rows(bundle, night, "acme")
    assert checked.valid.height == 599 and checked.quarantine["Id"].to_list() == ["1900"]
    assert UNKNOWN_PRODUCT in checked.quarantine["reason"][0] and "99" in checked.quarantine["reason"][0]

    vendor.append(night)
    tracker = tracker_for(vendor.root)
    result = vendor.night(tracker)
    assert result.rows_unknown_product == 1 and result.watermark_after == 2199 and result.chunks.height == 29
    assert not result.messages  # one row: no call to retrain
    assert "1 rows of products the model was not trained on" in (result.out_dir / "report.md").read_text()
    run = tracker.client.search_runs([tracker.client.get_experiment_by_name("licanom/acme/nightly").experiment_id])[0]
    assert run.data.metrics["rows_unknown_product"] == 1 and run.data.params["retrain"] == "False"


def test_many_rows_of_unknown_products_say_retrain(vendor) -> None:
    night = rows(1600, 100).with_columns(
        pl.when(pl.int_range(pl.len()) < 30).then(pl.lit("8")).otherwise(pl.col("ProductId")).alias("ProductId"))
    vendor.append(night)
    tracker = tracker_for(vendor.root)
    result = vendor.night(tracker)  # not refused: the rows are good, the model is behind
    assert result.rows_unknown_product == 30 and result.watermark_after == 1699
    assert result.messages and result.messages[0].startswith("retrain:")
    assert "licanom run train --vendor acme" in (result.out_dir / "report.md").read_text()
    run = tracker.client.search_runs([tracker.client.get_experiment_by_name("licanom/acme/nightly").experiment_id])[0]
    assert run.data.params["retrain"] == "True"


# --- state and model files -------------------------------------------------------------------

def test_a_missing_state_file_is_an_error_that_says_how_to_go_on(vendor) -> None:
    from licanom.ops.scoring_state import STATE_FILE, StateMissingError, state_dir

    vendor.append(rows(1600, 100))
    vendor.night()
    (state_dir(vendor.out, "acme") / STATE_FILE).unlink()
    vendor.append(rows(1700, 40, seed=3))
    with pytest.raises(StateMissingError) as err:
        vendor.night()
    text = str(err.value)
    assert STATE_FILE in text and "--since 1699" in text and "licanom run train --vendor acme" in text
    assert len(published(vendor.out, "acme")) == 1  # nothing re-scored
    resumed = vendor.night(since=1699)  # the way on that the message gives
    assert resumed.rows_read == 40 and state_json(vendor)["watermark"] == 1739


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-type", "tail"])
def test_a_damaged_state_names_its_file_and_what_to_do(vendor, damage) -> None:
    from licanom.ops.scoring_state import StateCorruptError, state_dir

    vendor.append(rows(1600, 90))
    vendor.night()
    d = state_dir(vendor.out, "acme")
    meta = d / "state.json"
    if damage == "garbage":
        meta.write_bytes(b"\x00\xffnot json")
    elif damage == "truncated":
        meta.write_text(meta.read_text()[:17])
    elif damage == "wrong-type":
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "watermark": "x"}))
    else:
        tail = next(d.glob("g-*/tail.parquet"))
        tail.write_bytes(tail.read_bytes()[:40])
    with pytest.raises(StateCorruptError) as err:
        vendor.night()
    text = str(err.value)
    assert str(d) in text and ("tail.parquet" in text if damage == "tail" else "state.json" in text)
    assert "backup" in text and "--since" in text
    assert "\n" not in text


def test_errors_that_a_retry_meets_again_are_not_retried() -> None:
    import pickle

    from prefect.states import Failed

    from licanom.ops.nightly import ModelLoadError
    from licanom.ops.scoring_state import StateCorruptError, StateMissingError
    from licanom.data.validate import ValidationError
    from tasks import scoring

    for task in (scoring.open_night, scoring.log_night):
        retry = task.retry_condition_fn
        for err in (ModelLoadError("x"), StateCorruptError("x"), StateMissingError("x"), ValidationError("x"),
                    LookupError("x")):
            assert not retry(None, None, Failed(data=err)), (task.name, err)
        chained = RuntimeError("load failed")
        chained.__cause__ = pickle.UnpicklingError("invalid load key")
        assert not retry(None, None, Failed(data=chained))
        assert retry(None, None, Failed(data=ConnectionError("reset by peer")))


def test_a_truncated_model_names_its_file_and_is_not_retried(tmp_path, bundle) -> None:
    from licanom.ops.nightly import ModelLoadError, load_champion

    tracker = tracker_for(tmp_path)
    run_id = tracker.start_run("acme", "train", "training")
    version = tracker.register_bundle("acme", run_id, bundle.save(tmp_path / "b"), "Tail_context", None)
    tracker.promote("acme", [version], "Tail_context")
    tracker.end_run(run_id)
    for pt in (tmp_path / "artifacts").rglob("detector.pt"):
        pt.write_bytes(pt.read_bytes()[:100])
    with pytest.raises(ModelLoadError) as err:
        load_champion(tracker, "acme")
    text = str(err.value)
    assert "detector.pt" in text and "licanom-acme version 1" in text and "retrain" in text


# --- input as it comes --------------------------------------------------------------------------

def _cp1252_export(path: Path) -> None:
    frame = rows(1600, 40).with_columns(
        pl.when(pl.col("Id") == "1601").then(pl.lit("KEY-Müller"))
        .when(pl.col("Id") == "1602").then(pl.lit("KEY-Mäller")).otherwise(pl.col("Key")).alias("Key"))
    path.write_bytes(frame.write_csv().encode("cp1252"))


def test_a_windows_1252_export_is_refused_until_declared_then_read_exactly(tmp_path) -> None:
    from licanom.data.extract.files import ExtractFileError, read_log

    path = tmp_path / "export.csv"
    _cp1252_export(path)
    with pytest.raises(ExtractFileError) as err:
        read_log(path)
    text = str(err.value)
    assert str(path) in text and "line 3" in text and "source.encoding: cp1252" in text and "\n" not in text
    keys = read_log(path, encoding="cp1252")["Key"].to_list()
    assert keys[1:3] == ["KEY-Müller", "KEY-Mäller"]  # two keys stay two


def test_the_declared_encoding_reaches_the_night(vendor) -> None:
    _cp1252_export(vendor.log)
    night = vendor.night(encoding="cp1252")
    assert night.rows_read == 40 and night.rows_quarantined == 0


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_separators_are_detected(tmp_path, sep) -> None:
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    path = tmp_path / "export.csv"
    rows(1600, 30).write_csv(path, separator=sep)
    raw = read_log(path)
    assert raw.columns[:3] == ["Id", "ProductId", "Key"]
    assert validate_log(raw).valid.height == 30


def test_a_json_array_or_the_apis_answer_saved_whole_is_read_as_its_rows(tmp_path) -> None:
    """A .json file of one array of rows (pretty-printed or on one line), or GetWebAPILog's answer
    saved as it came ({"logs": [...], "result": 0}), is read as those rows; JSON lines with a broken
    line are still read line by line, only that line quarantined."""
    import json

    from licanom.data.extract.files import ExtractFileError, read_log
    from licanom.data.validate import validate_log

    logged = rows(1600, 30)
    records = logged.to_dicts()
    texts = {"pretty.json": json.dumps(records, indent=2), "flat.json": json.dumps(records),
             "answer.json": json.dumps({"Logs": records, "Result": 0, "Message": ""}),
             "lines.json": '{"Id": "1599", "Key":\n' + "\n".join(json.dumps(r) for r in records) + "\n"}
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
        result = validate_log(read_log(tmp_path / name))
        assert result.valid["Id"].cast(pl.String).to_list() == logged["Id"].to_list(), name
        assert result.quarantine.height == (1 if name == "lines.json" else 0), name
    # an array that does not parse is named where it breaks, not read line by line into no rows
    broken = "[\n" + ",\n".join(json.dumps(r) for r in records) + ",\n{\"Id\": \n]\n"
    (tmp_path / "broken.json").write_text(broken)
    with pytest.raises(ExtractFileError, match=r"broken\.json as a JSON array: line 33, column 1: Expecting value"):
        read_log(tmp_path / "broken.json")
    # a row that holds a "logs" list is a row, not the API's answer
    (tmp_path / "row.json").write_text(json.dumps({**records[0], "logs": [1]}) + "\n")
    assert read_log(tmp_path / "row.json")["Id"].to_list() == [logged["Id"][0]]


def test_excels_sep_line_declares_the_separator(tmp_path) -> None:
    """Excel's first line "sep=;" names the separator; the header follows it, and a bad line is
    named by its line in the file."""
    from licanom.data.extract.files import ExtractFileError, read_log
    from licanom.data.validate import validate_log

    text = rows(1600, 20).write_csv(separator=";").replace("\n", "\r\n")
    (tmp_path / "excel.csv").write_text("sep=;\r\n" + text)
    frame = read_log(tmp_path / "excel.csv")
    assert frame.columns == rows(1600, 1).columns and validate_log(frame).valid.height == 20
    lines = text.splitlines(keepends=True)
    (tmp_path / "cut.csv").write_text("sep=;\r\n" + "".join([*lines[:5], "1604;3\r\n", *lines[5:]]))
    reasons = validate_log(read_log(tmp_path / "cut.csv")).quarantine["reason"].to_list()
    assert len(reasons) == 1 and "cut.csv line 7: cannot be read as CSV" in reasons[0]
    (tmp_path / "latin.csv").write_bytes(b"sep=;\r\n" + "".join(lines[:5]).encode() + "\u00e9".encode("cp1252"))
    with pytest.raises(ExtractFileError, match=r"latin\.csv line 7: byte 0xe9 is not UTF-8"):
        read_log(tmp_path / "latin.csv")


def test_exports_joined_into_one_file_are_read_by_each_ones_header(tmp_path) -> None:
    """`cat a.csv b.csv`: b's header line is quarantined with its reason, not read as a row, and
    b's rows are read by b's own order of columns; a header of other columns is refused."""
    from licanom.data.extract.files import ExtractFileError, read_log
    from licanom.data.validate import validate_log

    a, b = rows(1600, 50, seed=1), rows(1650, 50, seed=2)
    a.write_csv(tmp_path / "a.csv")
    moved_order = ["Id", "ProductId", "MachineCode", "IP", "Time", "State", "Key"]
    for order, moved, spelled in ((b.columns, False, str), (moved_order, True, str), (moved_order, True, str.upper),
                                  (moved_order, True, lambda h: "\ufeff" + h)):  # upper case; Excel's byte order mark
        text = b.select(order).write_csv()
        header, body = text.split("\n", 1)
        (tmp_path / "ab.csv").write_text((tmp_path / "a.csv").read_text() + spelled(header) + "\n" + body)
        result = validate_log(read_log(tmp_path / "ab.csv"))
        assert result.valid.height == 100 and result.quarantine["_row"].to_list() == [50]
        reason = result.quarantine["reason"][0]
        assert reason.endswith("the header line again (exports joined?)" + (
            ", the rows after it read by its order of columns" if moved else "")), spelled("Id")
        got = result.valid.select(pl.col("Id").cast(pl.String), "Key", "MachineCode", "IP").sort("Id")
        want = pl.concat([a, b]).select("Id", "Key", "MachineCode", "IP").sort("Id")
        assert got.equals(want), "a value read into another column"
    # a.csv without its last line end: its last row and b's header share a line
    (tmp_path / "ab.csv").write_text((tmp_path / "a.csv").read_text().rstrip("\n") + b.select(moved_order).write_csv())
    result = validate_log(read_log(tmp_path / "ab.csv"))
    assert result.valid.height == 100 and result.quarantine["_row"].to_list() == [50]
    got = result.valid.select(pl.col("Id").cast(pl.String), "Key", "MachineCode", "IP").sort("Id")
    assert got.equals(pl.concat([a, b]).select("Id", "Key", "MachineCode", "IP").sort("Id"))
    b.rename({"MachineCode": "Email"}).write_csv(tmp_path / "b.csv")
    (tmp_path / "ab.csv").write_text((tmp_path / "a.csv").read_text() + (tmp_path / "b.csv").read_text())
    with pytest.raises(ExtractFileError, match=r"ab\.csv: line 52 looks like a header line of other columns .*'Email'"):
        read_log(tmp_path / "ab.csv")


def test_a_repeated_header_line_is_named_by_its_line_and_counted_as_a_row_read(tmp_path) -> None:
    """A header line repeated within a file (exports joined) is quarantined with its file's line,
    which blank lines, a quoted value over two lines and Excel's "sep=" line do not shift, read
    whole by polars or line by line; it is a row read, so that rows read = valid + quarantined
    (600 rows and the header again: 601 read, 600 valid, 1 quarantined). A header line of other
    columns refuses the file naming its line and the names that differ, not every value."""
    from licanom.data.extract.files import ExtractFileError, read_log
    from licanom.data.validate import validate_log

    a = rows(1000, 300, seed=1).with_columns(
        pl.when(pl.col("Id") == "1005").then(pl.lit("Desk,\nfloor 2")).otherwise(None).alias("FriendlyName"))
    b = rows(1300, 300, seed=2).with_columns(pl.lit(None, pl.String).alias("FriendlyName"))
    text_a = a.write_csv()  # 301 records, 302 lines (a value over two lines)
    path = tmp_path / "ab.csv"
    for prefix, blank, broken in (("", "", False), ("", "\n\n", False), ("sep=,\n", "\n", False),
                                  ("", "\n", True)):  # the last read line by line (a line of a field too many)
        body_b = b.write_csv().split("\n", 1)[1]
        if broken:
            body_b = body_b.replace("\n1310,", "\n1310,x,", 1)
        path.write_text(prefix + text_a + blank + b.write_csv().split("\n", 1)[0] + "\n" + body_b)
        header_line = prefix.count("\n") + text_a.count("\n") + blank.count("\n") + 1
        result = validate_log(read_log(path))
        counts = (result.n_in, result.valid.height, result.quarantine.height)
        assert counts == ((601, 599, 2) if broken else (601, 600, 1)), (prefix, blank)
        reasons = result.quarantine["reason"].to_list()
        assert reasons[0] == f"{path} line {header_line}: the header line again (exports joined?)", (prefix, blank)
        if broken:
            assert reasons[1].startswith(f"{path} line {header_line + 11}: cannot be read as CSV")

    other = b.rename({"MachineCode": "Email"}).select("Id", "ProductId", "Key", "IP", "Time", "State", "Email")
    path.write_text(text_a + "\n" + other.write_csv())
    with pytest.raises(ExtractFileError) as err:
        read_log(path)
    message = str(err.value)
    assert message == (f"cannot read {path}: line 304 looks like a header line of other columns than its first "
                       "line's: it names 'Email' and lacks 'MachineCode', 'FriendlyName'; the file joins exports "
                       "of two layouts? Read them as separate files")


def test_a_joined_exports_header_in_mixed_case_is_the_header_line_again(tmp_path) -> None:
    """A repeated header line in any case (``productId,machineCode,...``, ``pRODUCTiD``), whatever
    its first column, is a header, as it is in the first line's case: quarantined as the header line
    again, not as a row of bad values, and the rows after it read by its order of columns."""
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    a, b = rows(1600, 20, seed=1), rows(1620, 20, seed=2)
    first = ["ProductId", "Id", "Key", "IP", "Time", "State", "MachineCode"]
    moved = ["ProductId", "MachineCode", "IP", "Time", "State", "Key", "Id"]
    for spelled in ("productId,machineCode,ip,time,state,key,id", "pRODUCTiD,MachineCODE,Ip,tIME,State,kEY,iD",
                    ' "productId" ,machineCode,ip,time,state,key,id'):
        body = b.select(moved).write_csv().split("\n", 1)[1]
        (tmp_path / "ab.csv").write_text(a.select(first).write_csv() + spelled + "\n" + body)
        result = validate_log(read_log(tmp_path / "ab.csv"))
        assert result.quarantine["_row"].to_list() == [20], spelled
        assert result.quarantine["reason"][0].endswith(
            "the header line again (exports joined?), the rows after it read by its order of columns")
        got = result.valid.select(pl.col("Id").cast(pl.String), "Key", "MachineCode", "IP").sort("Id")
        assert got.equals(pl.concat([a, b]).select("Id", "Key", "MachineCode", "IP").sort("Id"))


def test_a_header_in_another_case_or_with_spaces_is_read_as_the_log_columns(tmp_path) -> None:
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    good = rows(1600, 30)
    lower = tmp_path / "lower.csv"
    good.rename({c: c.lower() for c in good.columns}).write_csv(lower)
    spaced = tmp_path / "spaced.csv"
    text = good.write_csv()
    header, body = text.split("\n", 1)
    spaced.write_text(", ".join(header.split(",")) + "\n" + body)
    for path in (lower, spaced):
        raw = read_log(path, after_id=1610)  # the watermark reads the Id column too
        assert raw.columns[:3] == ["Id", "ProductId", "Key"]
        assert validate_log(raw).valid["Id"].to_list() == list(range(1611, 1630))
    # two columns that name one (an exact name and another spelling, or a name twice): refused, not guessed
    from licanom.data.validate import ValidationError

    both = tmp_path / "both.csv"
    good.with_columns(pl.col("Key").alias("key")).write_csv(both)
    with pytest.raises(ValidationError) as err:
        read_log(both)
    assert str(err.value) == f"{both}: the header names Key twice, as Key and key (columns 3 and 8); keep one of them"
    # a name twice: as the file writes it, not polars' name for the second (['Key', 'Key_duplicated_0'])
    twice = tmp_path / "twice.csv"
    header, body = good.write_csv().split("\n", 1)
    twice.write_text(header.replace("MachineCode", "Key") + "\n" + body)
    with pytest.raises(ValidationError) as err:
        read_log(twice)
    assert str(err.value) == f"{twice}: the header names Key twice (columns 3 and 7); keep one of them"


def test_a_file_written_with_a_space_after_each_separator_reads_as_the_plain_file(tmp_path) -> None:
    """``1, KEY, , 7``: a header padded with spaces says the rows are too; their values are read
    without the spaces and a value of spaces only as an empty field (not "not an integer")."""
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    good = rows(1600, 30).with_columns(
        pl.Series("DOIntValue", [str(i) if i % 3 else None for i in range(30)]),
        pl.Series("DOId", [None if i % 4 else "77" for i in range(30)]))
    plain, padded = tmp_path / "plain.csv", tmp_path / "padded.csv"
    good.write_csv(plain)
    padded.write_text("\n".join(", ".join(line.split(",")) for line in good.write_csv().splitlines()) + "\n")
    assert " , " in padded.read_text()  # empty fields written as a space
    want = validate_log(read_log(plain))
    got = validate_log(read_log(padded))
    assert got.quarantine.height == want.quarantine.height == 0
    assert got.valid.equals(want.valid) and got.valid["Key"].str.starts_with(" ").sum() == 0
    # a plain header over padded rows: the first row says so
    unpadded_header = tmp_path / "values-only.csv"
    text = padded.read_text()
    unpadded_header.write_text(",".join(f.strip() for f in text.split("\n", 1)[0].split(",")) + "\n" + text.split("\n", 1)[1])
    # a quoted value holding the separator, after the padding; a padded header's quoted names
    named = good.with_columns(pl.lit("Smith, John").alias("FriendlyName"))
    quoted = tmp_path / "quoted.csv"
    quoted.write_text("\n".join(", ".join(f'"{v}"' if v and "," in v else (v or " ") for v in row)
                                for row in [named.columns, *named.iter_rows()]) + "\n")
    assert read_log(quoted)["FriendlyName"].unique().to_list() == ["Smith, John"]
    header_quoted = tmp_path / "header-quoted.csv"
    header_quoted.write_text(", ".join(f'"{c}"' for c in good.columns) + "\n" + padded.read_text().split("\n", 1)[1])
    assert validate_log(read_log(header_quoted)).valid.equals(want.valid)
    # every value quoted, an empty number or time as "": read as missing, as an empty field is
    all_quoted = tmp_path / "all-quoted.csv"
    all_quoted.write_text("\n".join(",".join(f'"{v or ""}"' for v in row) for row in [good.columns, *good.iter_rows()]) + "\n")
    assert validate_log(read_log(all_quoted)).quarantine.height == 0
    # a plain file with Windows line ends is not padded: a quoted empty value stays empty text
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(good.write_csv().replace("\n", "\r\n").encode())
    assert validate_log(read_log(crlf)).valid.equals(want.valid)
    assert read_log(crlf).filter(pl.col("IP") == "").height == read_log(plain).filter(pl.col("IP") == "").height > 0
    assert validate_log(read_log(unpadded_header)).valid.equals(want.valid)


def test_a_declared_time_zone_reads_times_written_without_an_offset(tmp_path) -> None:
    """``source.timezone``: a naive time is the zone's local time (summer and winter alike); a time
    with an offset or Z and Unix seconds are read as written; an unknown zone is refused in words."""
    from datetime import UTC, datetime

    import pydantic

    from licanom.config import SourceConfig
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    good = rows(1600, 4)
    good = good.with_columns(pl.Series("Time", ["2025-01-15 10:00:00", "2025-07-15 10:00:00",
                                                "2025-07-15T10:00:00+02:00", "1752566400"]))
    path = tmp_path / "local.csv"
    good.write_csv(path)
    as_utc = validate_log(read_log(path)).valid.sort("Id")["Time"].to_list()
    berlin = validate_log(read_log(path, timezone="Europe/Berlin")).valid.sort("Id")["Time"].to_list()
    assert berlin == [datetime(2025, 1, 15, 9, tzinfo=UTC), datetime(2025, 7, 15, 8, tzinfo=UTC),
                      datetime(2025, 7, 15, 8, tzinfo=UTC), datetime(2025, 7, 15, 8, tzinfo=UTC)]
    assert as_utc[:2] == [datetime(2025, 1, 15, 10, tzinfo=UTC), datetime(2025, 7, 15, 10, tzinfo=UTC)]
    assert as_utc[2:] == berlin[2:]
    with pytest.raises(pydantic.ValidationError, match="unknown time zone 'Europe/Berln'"):
        SourceConfig(kind="files", path=str(path), timezone="Europe/Berln")


def test_a_declared_time_format_reads_a_spreadsheets_times(tmp_path) -> None:
    from licanom.config import SourceConfig
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    good = rows(1600, 30)
    times = validate_log(good).valid["Time"]
    local = good.with_columns(pl.Series("Time", times.dt.strftime("%d.%m.%Y %H:%M:%S").to_list()))
    local = local.with_columns(pl.when(pl.col("Id") == "1605").then(pl.lit("gestern")).otherwise(pl.col("Time")).alias("Time"))
    path = tmp_path / "export.csv"
    local.write_csv(path, separator=";")
    assert validate_log(read_log(path)).quarantine.height == 30  # not ISO: every time unparsable
    result = validate_log(read_log(path, time_format="%d.%m.%Y %H:%M:%S"))
    assert result.valid["Time"].to_list() == [t for i, t in enumerate(times.to_list()) if i != 5]  # all but Id 1605
    assert result.quarantine.select("Time", "reason").row(0) == ("gestern", "Time: unparsable")
    offset = local.with_columns(pl.Series("Time", (times.dt.convert_time_zone("Europe/Berlin")
                                                    .dt.strftime("%d.%m.%Y %H:%M:%S%z")).to_list()))
    offset.write_csv(path)
    assert validate_log(read_log(path, time_format="%d.%m.%Y %H:%M:%S%z")).valid["Time"].to_list() == times.to_list()
    zulu = local.with_columns(pl.Series("Time", times.dt.strftime("%d.%m.%Y %H:%M:%SZ").to_list()))
    zulu.write_csv(path)
    assert validate_log(read_log(path, time_format="%d.%m.%Y %H:%M:%S%z")).valid["Time"].to_list() == times.to_list()
    for bad, why in (("dd.mm.yyyy", "strftime codes"), ("%d.%m.%Y %H:%M:%S %Z", "%z"), ("%d.%m.%Y %H:%M:%S.%f", r"%\.f")):
        with pytest.raises(ValueError, match=why):
            SourceConfig(time_format=bad)
    # every time unreadable: the refusal says how to declare the layout
    from licanom.data.validate import ValidationError, check_bad_fraction
    local.write_csv(path)
    with pytest.raises(ValidationError, match="source.time_format") as err:
        check_bad_fraction(validate_log(read_log(path)), 0.05)
    # and the zone of times without an offset, or a column of UTC times beside them (a trial read local
    # times as UTC without a word, following the hint that named the layout alone)
    assert "source.timezone (or --timezone; else they are read as UTC)" in str(err.value)
    assert "map that one instead (source.columns, e.g. {TimeUTC: Time, Time: null})" in str(err.value)


def test_unreadable_lines_of_a_file_are_counted_as_one_reason_and_shown_with_their_lines(tmp_path) -> None:
    """The refusal's and prepare's reason counts group a file's unreadable lines (not one group
    of one row per line); the examples and the quarantine keep each line's number."""
    from licanom.data.extract.files import read_log
    from licanom.data.validate import ValidationError, check_bad_fraction, validate_log

    good = rows(1600, 40)
    path = tmp_path / "broken.csv"
    lines = good.write_csv().splitlines()
    for i in (5, 9, 17):
        lines[i] = lines[i].replace(",", ',"x"y', 1)  # text after a closing quote: not CSV
    path.write_text("\n".join(lines) + "\n")
    result = validate_log(read_log(path))
    assert result.quarantine.height == 3
    assert sorted(result.quarantine["reason"].str.extract(r"line (\d+):").cast(int).to_list()) == [6, 10, 18]
    [(reason, n)] = result.reason_counts().iter_rows()
    assert n == 3 and reason.startswith(f"{path}: cannot be read") and " line " not in reason
    with pytest.raises(ValidationError, match=r"Failures: \S*broken\.csv: cannot be read as CSV .*\(3 rows\)\. Examples \(rows counted from 0.*line 6:"):
        check_bad_fraction(result, 0.01)


def test_a_line_cut_short_is_quarantined_not_read_with_its_values_cut(tmp_path) -> None:
    """A line with fewer fields than the header (cut inside a value, as a copy that stopped) is
    unreadable, in the middle of a file and at its end; its neighbours and quoted separators are read."""
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    good = rows(400, 20).with_columns(pl.lit("Desk, 2nd floor").alias("FriendlyName"))
    lines = good.write_csv().splitlines()
    n_fields = len(lines[0].split(","))
    for i in (7, len(lines) - 1):  # the 7th row, and the last: cut inside the machine code
        cut = lines[i].split(",")[: lines[0].split(",").index("MachineCode") + 1]
        lines[i] = ",".join(cut)[:-4]
    path = tmp_path / "cut.csv"
    path.write_text("\n".join(lines) + "\n")
    result = validate_log(read_log(path))
    assert result.quarantine.height == 2 and result.valid.height == good.height - 2
    reasons = result.quarantine["reason"].to_list()
    assert all(f"fields, the header has {n_fields}" in r for r in reasons)
    assert sorted(int(r.split(" line ")[1].split(":")[0]) for r in reasons) == [8, len(lines)]
    # their fields before the cut are whole (a separator closed each): the Id accounts for the row
    assert sorted(result.quarantine["Id"].cast(pl.Int64).to_list()) == [406, 419]
    assert result.quarantine["MachineCode"].null_count() == 2  # the field the cut went through: none
    assert set(result.valid["FriendlyName"].to_list()) == {"Desk, 2nd floor"}  # quoted separators are no fields
    path.write_text(good.write_csv())  # the same file whole: every row read
    assert validate_log(read_log(path)).quarantine.height == 0
    # a quoted value over two lines is one value; a line cut short beside it is still refused
    two_lines = good.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("Desk,\nfloor 2"))
                                  .otherwise(pl.col("FriendlyName")).alias("FriendlyName"))
    path.write_text(two_lines.write_csv())
    assert validate_log(read_log(path)).valid["FriendlyName"].to_list()[3] == "Desk,\nfloor 2"
    lines = two_lines.write_csv().split("\n")
    lines[-2] = ",".join(lines[-2].split(",")[:5])  # the last row: five fields
    path.write_text("\n".join(lines))
    assert validate_log(read_log(path)).quarantine.height == 1


def test_an_id_with_a_comma_is_no_id_and_its_row_is_quarantined(tmp_path) -> None:
    """An Id is an integer: ``22080,0`` in a file written with a thousands separator is 220800, in
    one written with a decimal comma 22080; the reader cannot tell which. The row is quarantined
    for its Id, the value as written, and no reading of the number (22080 beside 22079 and 22081)
    places it or passes as valid."""
    from licanom.data.extract.files import read_log
    from licanom.data.validate import ValidationError, check_bad_fraction, validate_log

    good = rows(22070, 20)
    text = good.write_csv(separator=";").replace("\n22080;", "\n22080,0;", 1)
    path = tmp_path / "thousands.csv"
    path.write_text(text)
    result = validate_log(read_log(path))
    assert 22080 not in result.valid["Id"].to_list() and result.valid.height == 19
    assert result.quarantine.select("_row", "Id", "reason").rows() == [(10, "22080,0", "Id: not an integer")]
    with pytest.raises(ValidationError, match=r"row 10 \(Id 22080,0\): Id: not an integer"):
        check_bad_fraction(result, 0.0)
    # a watermark places it by the row before it, as a row without a readable Id
    assert read_log(path, after_id=22079)["Id"].to_list() == [str(i) for i in range(22081, 22090)]


def test_a_line_of_a_field_too_many_keeps_its_id_where_the_line_says_it_for_sure(tmp_path) -> None:
    """A line with one separator more than the header (an unquoted comma in a machine code, a
    separator too many at its end) is quarantined, naming its line and fields, with the Id it had
    in the file: the vendor finds the row, and a watermark places it by its own Id. An Id that the
    extra separator may be part of (``1,000``: 1 or 1000?) is not guessed."""
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    good = rows(400, 12)
    lines = good.write_csv().splitlines()
    lines[3] = lines[3].replace(",mc", ",mc,x", 1) if ",mc" in lines[3] else lines[3] + ",x"  # Id 402
    lines[6] += ","  # Id 405: a separator too many at its end
    lines[9] = "1,000" + lines[9][len("408"):]  # Id "1,000": read as two fields
    assert lines[0].startswith("Id,ProductId,")
    fields = lines[11].split(",")
    lines[11] = ",".join([*fields[:2], "", *fields[2:]])  # Id 410: an empty field after ProductId
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    result = validate_log(read_log(path))
    assert result.valid.height == good.height - 4
    q = result.quarantine
    # 410: "410,3" as the Id with an empty ProductId is no reading of the line (ProductId is required)
    assert q["Id"].to_list() == ["402", "405", None, "410"]
    long = "cannot be read as CSV (8 fields, the header has 7, {})"
    kept, none = long.format("its Id kept"), long.format("no Id could be read from it")
    assert [r.split(": ", 1)[1] for r in q["reason"]] == [kept, kept, none, kept]  # "1,000": no Id, and it says so
    assert [int(r.split(" line ")[1].split(":")[0]) for r in q["reason"]] == [4, 7, 10, 12]
    # the watermark reads the kept Id: the row before it is not read again, the row after it is
    assert read_log(path, after_id=404)["Id"].to_list() == [*map(str, range(405, 408)), None, "409", "410", "411"]


def test_a_line_of_two_fields_too_many_keeps_no_id_and_a_kept_id_is_an_integer(tmp_path) -> None:
    """A line of two separators too many (a machine code ``1,2`` and a friendly name ``Bob,2nd
    floor``) may be read, shifted, with its State as its Id (1010, not 405): a watermark moved there
    would pass rows 406 to 1010 by. It keeps no Id. A line of one field too many keeps an Id only
    as an integer: ``408.0`` is 408; ``406,0`` (406 with a decimal comma, 4060 with a thousands
    separator?) and ``407,239530`` no Id."""
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log
    from licanom.ops.nightly import new_watermark

    good = rows(400, 12).with_columns(FriendlyName=pl.lit("pc"))
    order = ["MachineCode", "ProductId", "State", "Id", "Key", "FriendlyName", "Time", "IP"]
    lines = good.select(order).write_csv().splitlines()
    state, key, time = good.row(5, named=True)["State"], good["Key"][5], good["Time"][5]
    lines[6] = f"1,2,7,{state},405,{key},Bob,2nd floor,{time},"  # Id 405, two fields too many
    path = tmp_path / "two.csv"
    path.write_text("\n".join(lines) + "\n")
    raw = read_log(path)
    assert validate_log(raw).quarantine["Id"].to_list() == [None]
    assert new_watermark(raw, 399) == 411

    order = ["Id", "IP", "ProductId", "Key", "Time", "State", "MachineCode", "FriendlyName"]
    lines = good.select(order).write_csv().splitlines()
    lines[7] = lines[7].replace("406,", "406,0,", 1)
    lines[8] = lines[8].replace("407,", "407,239530,", 1)  # the IP after it is no address: one way fits
    lines[9] = lines[9].replace("408,", "408.0,", 1) + ","  # a separator too many at its end
    path = tmp_path / "one.csv"
    path.write_text("\n".join(lines) + "\n")
    raw = read_log(path)
    assert validate_log(raw).quarantine["Id"].to_list() == [None, None, "408"]
    # the two rows without an Id are placed by the row before them
    assert read_log(path, after_id=405)["Id"].to_list() == [*map(str, range(408, 412))]


def test_only_a_files_first_lines_of_a_field_too_many_keep_their_ids(tmp_path, monkeypatch) -> None:
    """A file's lines of a field too many have their Ids read up to a bound (a file of many is one
    whose header lacks a column, not worth reading each line's fields three ways again): the first
    ones keep their Ids, those past it none, as a line of two fields too many."""
    from licanom.data.extract import files
    from licanom.data.validate import validate_log

    monkeypatch.setattr(files, "MAX_LONG_LINE_IDS", 2)
    lines = rows(400, 12).write_csv().splitlines()
    lines[2] += ",,"  # Id 401: two fields too many, not counted
    for n in (3, 5, 8, 9):  # Ids 402, 404, 407, 408
        lines[n] += ","
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    assert validate_log(files.read_log(path)).quarantine["Id"].to_list() == [None, "402", "404", None, None]


def test_a_tab_separated_line_of_a_field_too_many_is_quarantined_not_the_file_refused(tmp_path) -> None:
    """A tab-separated export's line with a tab too many at its end is quarantined with its Id, as
    a CSV line is; the file is read. Of columns empty on every such line (a tab is blank: the
    extra one read into an empty value leaves it empty), or empty on the first many and then not,
    none is guessed to be of another type than text."""
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    good = rows(400, 40).with_columns(DOIntValue=pl.lit(None, pl.String), DOId=pl.lit(None, pl.String))
    lines = good.with_columns(DOIntValue=pl.when(pl.col("Id") == "439").then(pl.lit("5")))\
        .write_csv(separator="\t").splitlines()
    path = tmp_path / "one.tsv"
    path.write_text("\n".join([*lines[:5], lines[5] + "\t", *lines[6:]]) + "\n")  # Id 404
    q = validate_log(read_log(path)).quarantine
    assert q["Id"].to_list() == ["404"]
    assert q["reason"].str.ends_with("cannot be read as CSV (10 fields, the header has 9, its Id kept)").all()
    many = [*lines[:1], *(line + "\t" for line in lines[1:])]  # every line: Id 439 the first of a DOIntValue, past the 100th reading
    path.write_text("\n".join(many) + "\n")
    assert validate_log(read_log(path)).quarantine["Id"].to_list() == [str(i) for i in range(400, 440)]


def test_a_json_line_cut_short_keeps_its_id_and_says_where_it_broke(tmp_path) -> None:
    """An NDJSON line cut short (a copy that stopped, CRLF line ends) is quarantined with the column
    where it broke, and keeps its Id where the line holds it whole, as a CSV line does: the row is
    then accounted for by its Id. A line cut inside its Id keeps none."""
    import json

    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    lines = [json.dumps(r) for r in rows(400, 10).to_dicts()]
    lines[3] = lines[3][:40]  # after the Id
    lines[6] = lines[6][:8]  # inside it
    lines[8] = '{"Meta": {"Id": 777}, ' + lines[8][1:60]  # an Id of a nested object is not the row's
    (tmp_path / "cut.ndjson").write_text("\r\n".join(lines) + "\r\n")
    result = validate_log(read_log(tmp_path / "cut.ndjson"))
    assert result.valid.height == 7 and result.quarantine["Id"].to_list() == ["403", None, None]
    reasons = result.quarantine["reason"].to_list()
    assert reasons[0].endswith("cut.ndjson line 4: not valid JSON (Invalid control character at column 41)")
    assert " at column " in reasons[1]


def test_a_quarantined_row_of_a_folder_names_its_file(tmp_path) -> None:
    from licanom.data.extract.files import read_log
    from licanom.data.schema import SOURCE_FILE
    from licanom.data.validate import ValidationError, check_bad_fraction, validate_log

    good = rows(1600, 60)
    (tmp_path / "parts").mkdir()
    good.head(30).write_csv(tmp_path / "parts" / "a.csv")
    later = good.slice(30).with_columns(pl.when(pl.col("Id") == "1650").then(pl.lit("9999")).otherwise(pl.col("State"))
                                        .alias("State"))
    later.write_csv(tmp_path / "parts" / "b.csv")
    result = validate_log(read_log(tmp_path / "parts"))
    assert result.valid.columns == validate_log(good).valid.columns  # the file is not a log column
    row = result.quarantine.row(0, named=True)
    assert row["Id"] == "1650" and row[SOURCE_FILE] == str(tmp_path / "parts" / "b.csv")
    assert (row["_row"], row["_file_row"]) == (50, 20)  # its place in the files joined, and in its own
    with pytest.raises(ValidationError, match=r"Examples \(rows of each file counted from 0, a CSV's first after its header\): row 20 \(Id 1650\) of .*b\.csv: State"):
        check_bad_fraction(result, 0.0)
    assert SOURCE_FILE not in read_log(tmp_path / "parts" / "a.csv").columns  # one file: its name is known
    # several examples (the first row of each reason): each file named once, at its first (a one-line
    # message, not a list of paths)
    broken = later.with_columns(pl.lit("9999").alias("State"),
                                pl.when(pl.col("Id") == "1631").then(None).otherwise(pl.col("Key")).alias("Key"))
    broken.write_csv(tmp_path / "parts" / "b.csv")
    good.head(30).with_columns(pl.when(pl.col("Id") == "1603").then(pl.lit("x")).otherwise(pl.col("State"))
                               .alias("State")).write_csv(tmp_path / "parts" / "a.csv")
    with pytest.raises(ValidationError) as err:
        check_bad_fraction(validate_log(read_log(tmp_path / "parts")), 0.0)
    examples = str(err.value).split("Examples ", 1)[1]
    assert examples.count("a.csv") == 1 and examples.count("b.csv") == 1, examples
    assert "row 3 (Id 1603) of " in examples and "row 0 (Id 1630) of " in examples and "row 1 (Id 1631): " in examples
    assert "row 2 (Id 1632)" not in examples  # its reason is row 0's: shown once


def test_a_nights_quarantined_row_of_a_one_file_log_names_its_place_in_the_file(tmp_path) -> None:
    """A night reads a log of one file after its watermark: ``_row`` counts from the night's first
    new row, so the row's place in the file (``_file_row``) and the file are kept, as a folder's are."""
    from licanom.data.extract.files import read_new_rows
    from licanom.data.schema import SOURCE_FILE, SOURCE_ROW
    from licanom.data.validate import ValidationError, check_bad_fraction, validate_log

    log = rows(1600, 60).with_columns(pl.when(pl.col("Id") == "1650").then(pl.lit("9999")).otherwise(pl.col("State"))
                                      .alias("State"))
    log.write_csv(tmp_path / "export.csv")
    frame, _ = read_new_rows(tmp_path / "export.csv", after_id=1639)
    row = validate_log(frame).quarantine.row(0, named=True)
    assert row["Id"] == "1650" and row[SOURCE_FILE] == str(tmp_path / "export.csv")
    assert (row["_row"], row[SOURCE_ROW]) == (10, 50)  # the night's eleventh row, the file's fifty-first
    with pytest.raises(ValidationError, match=rf"row 50 \(Id 1650\) of {re.escape(str(tmp_path / 'export.csv'))}: State"):
        check_bad_fraction(validate_log(frame), 0.0)
    assert SOURCE_FILE not in read_new_rows(tmp_path / "export.csv")[0].columns  # the whole file: its rows are its places


def test_a_pseudonymised_vendors_refusal_names_its_export_without_its_folders(tmp_path) -> None:
    """A refusal's examples and reasons named the export by its full path ("row 50 (Id 1650) of
    /srv/exports/<customer>/export.csv"), which for a pseudonymised vendor reaches Prefect's
    database. ``private``: the file by its name in the source where it is given, else by its base
    name; the others' refusals keep the full path."""
    from licanom.data.extract.files import read_new_rows
    from licanom.data.validate import ValidationError, check_bad_fraction, validate_log

    folder = tmp_path / "customer-x" / "march"
    folder.mkdir(parents=True)
    lines = rows(1600, 60).with_columns(pl.when(pl.col("Id") == "1650").then(pl.lit("9999")).otherwise(pl.col("State"))
                                        .alias("State")).write_csv().splitlines()
    lines[58] += ',"an unfinished quote'  # Id 1657: a line that cannot be read, its reason naming the file
    export = folder / "export.csv"
    export.write_text("\n".join(lines) + "\n")
    result = validate_log(read_new_rows(export, after_id=1639)[0])
    with pytest.raises(ValidationError) as err:
        check_bad_fraction(result, 0.0)
    assert f"row 50 (Id 1650) of {export}: State" in str(err.value) and f"{export} line 59: " in str(err.value)
    for names, shown in ((None, "export.csv"), ({str(export): "march/export.csv"}, "march/export.csv")):
        with pytest.raises(ValidationError) as err:
            check_bad_fraction(result, 0.0, private=True, file_names=names)
        said = str(err.value)
        assert str(tmp_path) not in said and f"row 50 (Id 1650) of {shown}: State" in said, said
        failures, examples = said.split(" Examples ")
        assert f" {shown}: cannot be read as CSV" in failures and f": {shown} line 59: cannot be read" in examples, said


def test_a_quarantined_rows_place_in_its_file_is_an_integer_as_its_place_in_the_log(tmp_path) -> None:
    """``_file_row`` is a position as ``_row`` is: an integer column in the quarantine (written to
    parquet and read back), also for a row moved there after validation, not the text "20"."""
    from licanom.data.extract.files import read_log
    from licanom.data.schema import SOURCE_ROW
    from licanom.data.validate import ROW, move_to_quarantine, validate_log

    good = rows(1600, 40)
    good.head(20).write_csv(tmp_path / "a.csv")
    good.slice(20).with_columns(pl.when(pl.col("Id") == "1625").then(pl.lit("x")).otherwise(pl.col("State"))
                                .alias("State")).write_csv(tmp_path / "b.csv")
    raw = read_log(tmp_path)
    result = validate_log(raw)
    q = result.quarantine
    assert q.schema[SOURCE_ROW] == q.schema[ROW] and q.schema[ROW].is_integer()
    assert q.select(ROW, SOURCE_ROW).row(0) == (25, 5)
    moved = move_to_quarantine(result, raw, result.valid["Id"] == 1630, "ProductId: not this one").quarantine
    assert moved.schema[SOURCE_ROW] == moved.schema[ROW] and moved.select(ROW, SOURCE_ROW).rows() == [(25, 5), (30, 10)]
    moved.write_parquet(tmp_path / "quarantine.parquet")
    assert pl.read_parquet(tmp_path / "quarantine.parquet").schema[SOURCE_ROW] == q.schema[ROW]


def test_an_undetected_separator_gets_a_hint(tmp_path) -> None:
    from licanom.data.validate import ValidationError, validate_log

    merged = pl.DataFrame({"Id;ProductId;Key;IP;Time;State": ["1;3;K;;2025-03-01T00:00:00Z;1010"]})
    with pytest.raises(ValidationError, match=r"source\.separator"):
        validate_log(merged)


def test_overlong_values_are_quarantined_and_the_report_stays_small(vendor) -> None:
    from licanom.data.validate import MAX_VALUE_CHARS

    huge = "K" * 1_000_000
    night = rows(1600, 600).with_columns(
        pl.when(pl.col("Id").is_in(["1610", "1620"])).then(pl.lit(huge)).otherwise(pl.col("Key")).alias("Key"),
        pl.when(pl.col("Id") == "1630").then(pl.lit("m" * 300)).otherwise(pl.col("MachineCode")).alias("MachineCode"),
    )
    vendor.append(night)
    result = vendor.night()
    q = _quarantine(result)
    assert sorted(q["Id"].to_list()) == ["1610", "1620", "1630"]
    assert all(f"longer than {MAX_VALUE_CHARS} characters" in r for r in q["reason"])
    page = (result.out_dir / "report.html").read_bytes()
    assert len(page) < 2_000_000 and b"K" * 1000 not in page


def test_the_report_never_repeats_a_long_value_in_full(tmp_path) -> None:
    """Rows given to the report directly (not through validation): three 1 MB keys."""
    from licanom.ops.bundle import make_windows, score_windows
    from licanom.report import detector_report_input, write_report
    from licanom.data.validate import validate_log

    bundle = make_bundle()
    valid = validate_log(rows(1600, 200)).valid
    huge = ["A" * 1_000_000, "B" * 1_000_000, "C" * 1_000_000]
    valid = valid.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(
        pl.Series(huge + [""] * (valid.height - 3))).otherwise(pl.col("Key")).alias("Key"))
    windows = make_windows(bundle, valid)
    chunks = score_windows(bundle, windows).with_columns(pl.lit(True).alias("is_anomaly"))
    inp = detector_report_input(bundle.detector, vendor="acme", run_id="r", model="Tail_context", chunks=chunks,
                                rows=windows.rows)
    write_report(inp, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert len(page) < 2_000_000
    for value in huge:
        assert page.count(value[:300]) <= 1


@pytest.mark.parametrize("name", ["acme\n", "acme\r\n", "ac/me", "../acme", "Acme", ""])
def test_vendor_names_are_matched_whole(name) -> None:
    from licanom.config import Config, load_config, validate_vendor_name

    with pytest.raises(ValueError):
        validate_vendor_name(name)
    with pytest.raises(ValueError):
        load_config(name)
    with pytest.raises(ValueError):
        Config(vendor=name)


def test_a_night_scored_again_from_its_start_is_judged_against_the_pairs_before_it(vendor) -> None:
    """The key pairs a night adds to the state are not held against its own rows when it is
    scored again (``since`` its start): each pair keeps the Id where a night first saw it, so the
    last night, or any older one, is judged as it was."""
    from licanom.data.context_vector import KeyHistory
    from licanom.ops.scoring_state import load_state
    from tests.night_harness import rows

    vendor.append(rows(1600, 200, seed=1))  # whole windows of 20: nothing carried between nights
    first = vendor.night()
    after_first = load_state(vendor.out, "acme")
    assert after_first.seen_before is None and after_first.seen_from == 1599  # the first night
    rerun_first = vendor.night(since=1599)  # against the training rows' pairs, as it was
    assert rerun_first.chunks.select("first_id", "score").equals(first.chunks.select("first_id", "score"))
    # the earlier folder of that night is replaced, and the night says so; a new night does not
    assert f"replaced the earlier night {first.out_dir.name}: the same rows scored again" in rerun_first.messages
    assert not any(m.startswith("replaced") for m in first.messages)
    vendor.append(rows(1800, 200, seed=2))
    second = vendor.night()
    state = load_state(vendor.out, "acme")
    assert state.seen_from == after_first.watermark and state.seen.marked and state.seen_before is None
    for value in KeyHistory.FILES:  # the pairs before the last night: the first night's
        before = state.seen.through(after_first.watermark).pairs(value)
        first_seen = after_first.seen.pairs(value).drop(KeyHistory.FIRST_ID)
        assert before.equals(first_seen)
        assert state.seen.through(1599).pairs(value).height == 0  # all of them after the training rows
    again = vendor.night(since=after_first.watermark)
    assert again.chunks.select("first_id", "score", "is_anomaly").equals(second.chunks.select("first_id", "score", "is_anomaly"))
    assert load_state(vendor.out, "acme").watermark == state.watermark  # re-scoring never moves it
    # from before the last night's start, or from within it, it is judged as the nights were: no note
    both = vendor.night(since=1599)
    within = vendor.night(since=after_first.watermark + 50)
    other = "not from the last night's start"
    assert not any(other in m for m in (*rerun_first.messages, *again.messages, *both.messages, *within.messages))


def test_a_night_scored_again_over_several_nights_flags_the_new_machines_they_flagged(vendor) -> None:
    """A re-score from before several nights (``--since``, e.g. to read late rows) judged them as one
    against every pair the nights after the training saw, its own nights' included: a key that got
    strangers' machine codes on the first night, flagged by that night, looked ordinary again (the
    new machines counted as seen). The pairs now keep the Id where a night first saw them, and a
    night scored again counts only those seen at or before its ``since``."""
    from licanom.ops.scoring_state import load_state
    from tests.night_harness import rows

    def shared(first_id: int, seed: int) -> pl.DataFrame:  # 40 rows of one known key on 20 machine codes new to it
        burst = rows(first_id, 200, seed=seed)
        strangers = pl.int_range(pl.len()).is_between(80, 119)
        return burst.with_columns(pl.when(strangers).then(pl.lit("KEY003-ABCDE")).otherwise(pl.col("Key")).alias("Key"),
                                  pl.when(strangers).then(pl.format("zz{}", pl.int_range(pl.len()) % 20))
                                  .otherwise(pl.col("MachineCode")).alias("MachineCode"))

    vendor.append(shared(1600, seed=1))
    first = vendor.night()
    flagged = first.chunks.filter(pl.col("is_anomaly") & pl.col("first_id").is_between(1680, 1719))
    assert flagged.height, first.chunks  # the night flags the strangers' chunks
    vendor.append(rows(1800, 200, seed=2))
    vendor.night()
    vendor.append(rows(2000, 200, seed=3))
    vendor.night()
    state = load_state(vendor.out, "acme")
    machines = state.seen.pairs("MachineCode").filter(pl.col("Key") == "KEY003-ABCDE", pl.col("MachineCode") == "zz0")
    assert machines["first_id"].to_list() == [1680]  # where the first night first saw it
    both = vendor.night(since=1599)  # the three nights again, as one
    assert both.out_dir.name == "after-1599-to-2199"
    again = both.chunks.filter(pl.col("first_id").is_in(flagged["first_id"].implode()))
    assert again["is_anomaly"].all(), (flagged, again)
    assert not any("not from the last night's start" in m for m in both.messages)
    later = vendor.night(since=1799)  # from after the first night: its pairs are seen, and it says nothing
    assert not any("not from the last night's start" in m for m in later.messages)


def test_pairs_saved_before_they_kept_their_first_ids_are_judged_as_before(vendor) -> None:
    """A state whose pairs keep no first Ids (written before they were kept) loads, judges a night
    scored again as it did (the pairs before the last night for a ``since`` at or before its start)
    and says so; its nights go on without the Ids until the model changes."""
    from dataclasses import replace

    from licanom.data.context_vector import KeyHistory
    from licanom.ops.scoring_state import commit, load_state
    from tests.night_harness import rows

    def plain(history: KeyHistory) -> KeyHistory:
        return KeyHistory._of({value: history.pairs(value).drop(KeyHistory.FIRST_ID) for value in KeyHistory.FILES})

    vendor.append(rows(1600, 200, seed=1))
    vendor.night()
    after_first = load_state(vendor.out, "acme")
    vendor.append(rows(1800, 200, seed=2))
    vendor.night()
    state = load_state(vendor.out, "acme")
    # as the code before wrote it: every pair of the nights, and those before the last night apart
    commit(vendor.out, "acme", replace(state, seen=plain(state.seen), seen_before=plain(after_first.seen)))
    old = load_state(vendor.out, "acme")
    assert not old.seen.marked and old.seen_before is not None
    assert old.seen_judging("1", 1599) is old.seen_before and old.seen_judging("1", 1799) is old.seen_before
    assert old.seen_judging("1", 1850) is old.seen  # within the last night
    both = vendor.night(since=1599)
    assert any(m.startswith("scored again from Id 1599, not from the last night's start (Id 1799)")
               for m in both.messages)
    vendor.append(rows(2000, 200, seed=3))
    vendor.night()
    after = load_state(vendor.out, "acme")
    assert not after.seen.marked and after.seen_before is not None  # unmarked, as its earlier pairs
    for value in KeyHistory.FILES:
        assert after.seen_before.pairs(value).equals(old.seen.pairs(value))


def test_the_runs_of_the_nights_scored_again_are_tagged_superseded(vendor) -> None:
    """A night scored again replaces or overlaps earlier nights' folders; their MLflow runs are
    tagged with its run, so that a sum of rows_read over the nightly runs counts each row once."""
    from licanom.ops.nightly import SCORED_AGAIN_TAG, SUPERSEDED_TAG
    from tests.night_harness import rows

    tracker = tracker_for(vendor.root)

    def runs() -> dict[str, tuple[str, str | None, float]]:  # night folder -> (run, superseded by, rows read)
        experiment = tracker.client.get_experiment_by_name("licanom/acme/nightly").experiment_id
        return {r.data.tags["licanom.night"]: (r.info.run_id, r.data.tags.get(SUPERSEDED_TAG), r.data.metrics["rows_read"])
                for r in tracker.client.search_runs([experiment])}

    def runs_again() -> list[tuple[str, str | None, float, bool]]:  # and whether the run scored its rows again
        experiment = tracker.client.get_experiment_by_name("licanom/acme/nightly").experiment_id
        return [(r.data.tags["licanom.night"], r.data.tags.get(SUPERSEDED_TAG), r.data.metrics["rows_read"],
                 r.data.tags.get(SCORED_AGAIN_TAG) == "true") for r in tracker.client.search_runs([experiment])]

    vendor.append(rows(1600, 200, seed=1))
    first = vendor.night(tracker)
    vendor.append(rows(1800, 200, seed=2))
    second = vendor.night(tracker)
    assert not any(m.startswith(("1 earlier", "2 earlier")) for m in (*first.messages, *second.messages))
    again = vendor.night(tracker, since=1599)  # both nights' rows, scored again in one
    assert again.out_dir.name == "after-1599-to-1999"
    assert "2 earlier nightly runs tagged licanom.superseded_by: this night scored all their rows again" in " ".join(again.messages)
    now = runs()
    mine = now["after-1599-to-1999"][0]
    assert now[first.out_dir.name][1] == now[second.out_dir.name][1] == mine and now["after-1599-to-1999"][1] is None
    assert sum(n for _, by, n in now.values() if by is None) == 400  # each row once
    # and a sum without the runs of nights scored again counts each row once whatever they covered
    assert sum(n for _, _, n, again in runs_again() if not again) == 400
    vendor.append(rows(2000, 200, seed=3))
    later = vendor.night(tracker)
    assert runs()[later.out_dir.name][1] is None and not any("tagged" in m for m in later.messages)
    # scored again from within a night: that night's first rows were scored by no later night, so
    # its run is not tagged (a sum without it would miss them)
    part = vendor.night(tracker, since=2099)
    assert part.out_dir.name == "after-2099-to-2199" and runs()[later.out_dir.name][1] is None
    assert sum(n for _, _, n, again in runs_again() if not again) == 600
    # an MLflow store that goes away once the night is published: a note, not a failed night
    search = tracker.client.search_runs

    def gone_after_the_start(experiments, filter_string="", *args, **kwargs):  # type: ignore[no-untyped-def]
        if "RUNNING" in filter_string:  # the night's start (recovery) still reaches it
            return search(experiments, filter_string, *args, **kwargs)
        raise ConnectionError("Connection refused")

    tracker.client.search_runs = gone_after_the_start  # type: ignore[method-assign]
    covered = vendor.night(tracker, since=1999)
    assert covered.out_dir.name == "after-1999-to-2199"
    assert any(m.startswith("the MLflow runs of the nights scored again are not tagged") for m in covered.messages)


def test_a_night_scored_again_scores_the_rows_carried_into_it_again(vendor) -> None:
    """The rows the night before carried (after its last full window) were scored first by the
    next night: scored again from its start, that night scores them again, and no Id is lost."""
    from licanom.ops.nightly import LEDGER
    from licanom.ops.scoring_state import load_state
    from tests.night_harness import check_ledger, rows

    first_rows, second_rows = rows(1600, 210, seed=1), rows(1810, 200, seed=2)
    vendor.append(first_rows)
    vendor.night()
    after_first = load_state(vendor.out, "acme")
    carried = sorted(after_first.tail["Id"].to_list())
    assert len(carried) == 10  # 210 rows: ten windows of 20 and ten rows carried
    vendor.append(second_rows)
    second = vendor.night()
    assert int(second.chunks["first_id"].min()) == carried[0]  # scored first by the next night
    again = vendor.night(since=after_first.watermark)
    assert again.out_dir == second.out_dir  # the same range of Ids: the same folder, written again
    assert again.chunks.select("first_id", "last_id", "score", "is_anomaly").equals(
        second.chunks.select("first_id", "last_id", "score", "is_anomaly"))
    ledger = pl.read_parquet(again.out_dir / LEDGER)
    assert set(carried) <= set(ledger.filter(pl.col("fate") == "scored")["Id"].to_list())
    check_ledger(vendor, [int(i) for i in pl.concat([first_rows, second_rows])["Id"].to_list()])
    # carried rows the source no longer holds are named, not silently left out
    vendor.log.unlink()
    vendor.append(pl.concat([first_rows, second_rows]).filter(~pl.col("Id").is_in([str(i) for i in carried[:3]])))
    short = vendor.night(since=after_first.watermark)
    assert any("3 of the rows carried into this night" in m for m in short.messages)
    assert "3 of the rows carried into this night" in (short.out_dir / "report.md").read_text()


def test_a_night_scored_again_leaves_the_rows_after_the_watermark_to_the_next_night(vendor) -> None:
    """Scored again from the last night's start while new rows already wait: the same folder is
    written again (the same Ids), the watermark and the late-row count stay, and the new rows are
    the next night's, each Id in one folder."""
    from licanom.ops.scoring_state import load_state
    from tests.night_harness import check_ledger, rows

    first_rows, second_rows, third_rows = rows(1600, 200, seed=1), rows(1800, 200, seed=2), rows(2000, 100, seed=3)
    vendor.append(first_rows)
    vendor.night()
    start = load_state(vendor.out, "acme").watermark
    vendor.append(second_rows)
    second = vendor.night()
    state = load_state(vendor.out, "acme")
    vendor.append(third_rows)  # new rows, not yet scored
    again = vendor.night(since=start)
    assert again.out_dir == second.out_dir and again.watermark_after == state.watermark
    assert again.chunks.select("first_id", "last_id", "score").equals(second.chunks.select("first_id", "last_id", "score"))
    assert any(m.startswith("100 rows after the watermark 1999 left for the next night") for m in again.messages)
    after = load_state(vendor.out, "acme")
    assert (after.watermark, after.source_rows) == (state.watermark, state.source_rows)
    third = vendor.night()
    assert third.rows_read == 100 and third.watermark_after == 2099
    assert not any("late rows" in m for m in third.messages)
    check_ledger(vendor, [int(i) for i in pl.concat([first_rows, second_rows, third_rows])["Id"].to_list()])


def test_every_row_the_nights_read_is_counted_once_though_a_night_scored_again_overlaps_them(vendor) -> None:
    """Two nights, a night scored again from an Id within the first (its windows fall elsewhere, so
    its tail is not the state's), a later night: the ledgers overlap, and ``rows_accounted`` still
    lists each row the source held once, a repeated Id once per copy, the state's tail as carried."""
    from licanom.ops.nightly import rows_accounted
    from licanom.ops.scoring_state import load_state

    first_rows, second_rows = rows(1600, 210, seed=1), rows(1810, 205, seed=2)
    bad = second_rows.slice(3, 1).with_columns(pl.lit("5555").alias("State"))  # quarantined for its state
    copy = second_rows.slice(7, 1)  # the same row again: its copy quarantined as a duplicate
    vendor.append(first_rows)
    vendor.night()
    vendor.append(pl.concat([second_rows.slice(0, 3), bad, second_rows.slice(4, 201), copy]))
    vendor.night()
    before = load_state(vendor.out, "acme")
    again = vendor.night(since=1700)
    assert again.out_dir.name == "after-1700-to-2014"
    assert set(again.ledger.filter(pl.col("fate") == "carried")["Id"]) != set(before.tail["Id"].cast(pl.Int64))
    third_rows = rows(2015, 150, seed=3)
    vendor.append(third_rows)
    vendor.night()
    state = load_state(vendor.out, "acme")
    counted = rows_accounted(str(vendor.out), "acme")  # a path as the user types it
    ids = [int(i) for i in pl.concat([first_rows, second_rows, third_rows])["Id"]]
    assert counted["Id"].to_list() == ids  # every Id, none twice
    assert int(counted["rows"].sum()) == len(ids) + 1  # and the repeated Id's two copies
    twice = counted.filter(pl.col("rows") > 1)
    assert twice["Id"].to_list() == [int(copy["Id"][0])] and twice.row(0)[1:] == (2, 1, 1, 0)  # scored, and its copy not
    assert counted.filter(pl.col("quarantined") > 0)["Id"].to_list() == [int(bad["Id"][0]), int(copy["Id"][0])]
    assert set(counted.filter(pl.col("carried") > 0)["Id"]) == set(state.tail["Id"].cast(pl.Int64))
    assert counted.select((pl.col("scored") + pl.col("quarantined") + pl.col("carried") == pl.col("rows")).all()).item()


def test_rows_of_no_product_the_model_knows_are_refused_not_answered_with_nothing(bundle) -> None:
    """The registered model's score_log: a batch of another vendor's product raises
    VendorMismatchError; the vendor's rows with a few foreign ones among them are scored."""
    from licanom.ops.bundle import VendorMismatchError, score_log
    from tests.night_harness import rows

    foreign = rows(1600, 60).with_columns(pl.lit("13301").alias("ProductId"))
    with pytest.raises(VendorMismatchError, match=r"none of the 60 rows .*\(it knows 3, 7; the rows have 13301\)"):
        score_log(bundle, foreign)
    mixed = pl.concat([rows(1600, 60), foreign.head(3).with_columns(pl.Series("Id", ["1700", "1701", "1702"]))])
    scored = score_log(bundle, mixed)
    assert scored.chunks.height == 3 and scored.validation.quarantine.height == 3


def test_the_nights_console_summary_says_what_the_night_rule_flagged(tmp_path: Path) -> None:
    from licanom.ops.nightly import NightResult

    chunks = pl.DataFrame({"is_anomaly": [True, True, False, True],
                           "flagged_by": ["threshold", "night", None, "night"]})
    ledger = pl.DataFrame({"Id": [1, 2, 3], "fate": ["scored", "carried", "carried"]})
    night = NightResult(vendor="acme", model_version="4", watermark_before=10, watermark_after=13, rows_read=3,
                        rows_quarantined=0, chunks=chunks, out_dir=tmp_path, messages=("retrain soon",), ledger=ledger)
    first, *rest = night.summary()
    assert first == (f"acme: 3 rows read, 0 quarantined, 4 chunks scored, 3 flagged (2 by the night rule) by champion "
                     f"version 4, 2 carried to the next night -> {tmp_path}")
    assert rest == ["  retrain soon"]
    quiet = NightResult(vendor="acme", model_version="4", watermark_before=10, watermark_after=10, rows_read=0,
                        rows_quarantined=0, chunks=pl.DataFrame(), out_dir=None)
    assert quiet.summary() == ["acme: 0 rows read, 0 quarantined, 0 chunks scored, 0 flagged by champion version 4 -> "
                               "no night written (nothing new after the watermark, Id 10; --since ID scores the rows "
                               "after an earlier Id again)"]
    # no row read, the earlier nights' tail kept: not "0 rows read ... 7 carried to the next night"
    waiting = NightResult(vendor="acme", model_version="4", watermark_before=10, watermark_after=10, rows_read=0,
                          rows_quarantined=0, chunks=pl.DataFrame(), out_dir=None,
                          ledger=pl.DataFrame({"Id": list(range(4, 11)), "fate": ["carried"] * 7}))
    assert waiting.summary() == ["acme: 0 rows read, 0 quarantined, 0 chunks scored, 0 flagged by champion version 4; "
                                 "the 7 rows read by earlier nights after their last full chunk are fewer than a chunk "
                                 "and wait for the next night -> no night written (nothing new after the watermark, Id "
                                 "10; --since ID scores the rows after an earlier Id again)"]


def test_the_nights_console_summary_counts_its_incidents_and_entities_as_its_report_does(tmp_path: Path) -> None:
    """report.md says "3 of 4 chunks flagged in 2 incident(s); 59 entities flagged": the console line
    too, not the chunks alone (a night of 0 flagged chunks and 59 flagged entities read "0 flagged")."""
    from licanom.ops.nightly import NightResult

    chunks = pl.DataFrame({"is_anomaly": [True, True, False, True], "flagged_by": ["threshold", "night", None, "night"]})
    night = NightResult(vendor="acme", model_version="4", watermark_before=10, watermark_after=13, rows_read=3,
                        rows_quarantined=0, chunks=chunks, out_dir=tmp_path, entities_flagged=59, incidents=2)
    assert night.summary() == [f"acme: 3 rows read, 0 quarantined, 4 chunks scored, 3 flagged (2 by the night rule) "
                               f"in 2 incidents, 59 entities flagged by champion version 4 -> {tmp_path}"]
    quiet = NightResult(vendor="acme", model_version="1", watermark_before=10, watermark_after=13, rows_read=7735,
                        rows_quarantined=3, chunks=pl.DataFrame({"is_anomaly": [False] * 4, "flagged_by": pl.Series([None] * 4, dtype=pl.String)}),
                        out_dir=tmp_path, entities_flagged=1)
    assert quiet.summary()[0].startswith("acme: 7,735 rows read, 3 quarantined, 4 chunks scored, 0 flagged, "
                                         "1 entity flagged by champion version 1 -> ")


def test_the_nights_console_line_names_the_commonest_reason_of_its_quarantine(vendor) -> None:
    """"gamma: 10,162 rows read, 3,387 quarantined, ..." gave no reason (all exact copies, harmless:
    only report.md said so); the line names the one reason, or the commonest with its count."""
    from licanom.ops.nightly import NightResult

    vendor.append(pl.concat([rows(1600, 100), rows(1700, 2).with_columns(pl.lit("5555").alias("State"))]))
    night = vendor.night()
    assert night.summary()[0].startswith("acme: 102 rows read, 2 quarantined (State: unknown state code), ")
    several = NightResult(vendor="acme", model_version="4", watermark_before=10, watermark_after=13, rows_read=10,
                          rows_quarantined=5, chunks=pl.DataFrame(), out_dir=None,
                          quarantine_reason="3 Id: not an integer, 2 other reasons")
    assert "10 rows read, 5 quarantined (3 Id: not an integer, 2 other reasons), 0 chunks scored" in several.summary()[0]


def test_a_since_past_the_watermark_says_that_it_skips_rows(vendor) -> None:
    """The rows up to ``--since`` that no night scored are counted in its note: those with Ids
    between the watermark and it, and those the last night carried to the next one."""
    vendor.append(rows(1600, 110))
    first = vendor.night()
    assert first.rows_carried > 0  # valid rows after the last full chunk
    vendor.append(rows(1710, 100, seed=1))
    ahead = vendor.night(since=1749)
    said = [m for m in ahead.messages if m.startswith("--since 1749 lies past the watermark 1709")]
    assert said and said[0].startswith(
        f"--since 1749 lies past the watermark 1709: 40 rows with Ids between them, and the {first.rows_carried} "
        "rows the last night carried to this one, are skipped")
    assert ahead.rows_read == 60


def test_a_since_past_every_row_skips_nothing_and_names_the_since_apart_from_the_watermark(vendor) -> None:
    """--since past the last row: the night said "nothing new after the watermark, Id 99999999" (the
    --since, not the watermark) and that the rows up to it were skipped, scored by no night; no night
    was written, the state stayed, and the next night scored them."""
    vendor.append(rows(1600, 110))
    first = vendor.night()
    assert first.rows_carried > 0
    vendor.append(rows(1710, 100, seed=1))
    ahead = vendor.night(since=99_999_999)
    assert ahead.out_dir is None and ahead.rows_read == 0
    line, *notes = ahead.summary()
    assert line.endswith("no night written (nothing new after --since 99999999; the vendor's watermark, Id 1709, "
                         "stays, and the next night reads after it)"), line
    assert notes == ["  --since 99999999 lies past the watermark 1709 and no row lies after it: no night is written "
                     "and nothing is skipped (the watermark stays); the next night reads the 100 rows with Ids between "
                     f"them and carries in the {first.rows_carried} rows the last night carried"], notes
    after = vendor.night()
    assert after.watermark_before == 1709 and after.rows_read == 100
    scored = set(after.ledger.filter(pl.col("fate") == "scored")["Id"].to_list())
    assert set(range(1710 - first.rows_carried, 1710)) <= scored  # the rows carried in, scored by this night


def test_a_row_without_an_id_is_placed_within_its_own_file_as_the_reads_after_a_watermark_place_it() -> None:
    """A night scored again keeps the rows up to the watermark; a row whose Id cannot be read goes
    with the readable Id before it in its file (at a file's start, the one after it), as
    read_log's rows after a watermark do, so the next night and the re-scored one never both read it."""
    from licanom.data.extract.files import _after
    from licanom.data.schema import SOURCE_FILE
    from licanom.ops.nightly import _ids, _until

    a = pl.DataFrame({"Id": ["1", "2", "3", "4", "5"]})
    b = pl.DataFrame({"Id": ["x", "10", "11"]})
    raw = pl.concat([a.with_columns(pl.lit("a").alias(SOURCE_FILE)), b.with_columns(pl.lit("b").alias(SOURCE_FILE))])
    kept = _until(raw, _ids(raw), 7).to_list()
    assert kept == [True] * 5 + [False] * 3
    after = pl.concat([_after(a, 7)[0], _after(b, 7)[0]])["Id"].to_list()  # what the next night reads
    assert after == ["x", "10", "11"] and not any(k for k, i in zip(kept, raw["Id"]) if i in after)


def test_a_night_refuses_pseudonyms_that_its_champion_was_trained_without(vendor, monkeypatch) -> None:
    """privacy.pseudonymise switched on after training: the champion's night would send real keys
    to MLflow (it did, exit 0). Refused in one line before anything is read; the watermark stays."""
    from licanom.config import PrivacyConfig
    from licanom.data.privacy import MissingSecretError, PrivacyMismatchError
    from licanom.ops.bundle import ModelBundle
    from licanom.ops.nightly import score_night

    vendor.append(rows(1600, 100))
    monkeypatch.setenv("LICANOM_PSEUDONYM_SECRET_ACME", "s" * 32)
    cfg = vendor.config().model_copy(update={"privacy": PrivacyConfig(pseudonymise=True)})
    before = state_json(vendor)
    with pytest.raises(PrivacyMismatchError, match=r"champion \(version 1\) was trained without it.*run train --vendor acme"):
        score_night(vendor.out, vendor.name, cfg, tracker_for(vendor.root), ModelBundle.load(vendor.model_dir), "1")
    assert issubclass(PrivacyMismatchError, MissingSecretError)  # exit 2, one line, as a missing secret
    assert not published(vendor.out, vendor.name) and state_json(vendor) == before
    assert vendor.night().rows_read == 100  # as configured when trained: scored


def test_a_night_says_when_the_configuration_decides_or_cuts_otherwise_than_its_champion(vendor) -> None:
    """An edit of the decision or the chunks takes effect at the next training: the night said
    nothing and decided as trained (min_severity 20 in the file, 55 in the model)."""
    from licanom.ops.bundle import ModelBundle
    from licanom.ops.nightly import score_night

    vendor.append(rows(1600, 100))
    cfg = vendor.config()
    edited = cfg.model_copy(update={
        "context": cfg.context.model_copy(update={"threshold": "severity", "threshold_params": {"min_severity": 20}}),
        "chunk": cfg.chunk.model_copy(update={"size": 50, "stride": 50})})
    model = ModelBundle.load(vendor.model_dir)
    # a model saved before the night rule last changed keeps the words it was trained with; it decides,
    # and the message speaks, by the rule as it is
    model.detector.threshold_method_ = "severity >= 55, or ... (a night under 30 chunks: the others' median)"
    night = score_night(vendor.out, vendor.name, edited, tracker_for(vendor.root), model, "1")
    said = [m for m in night.messages if "champion, version 1" in m]
    assert len(said) == 2 and "context.threshold severity with {'min_severity': 20}" in said[0], said
    assert f"({model.detector.night_rule().describe()})" in said[0] and "size 50, stride 50" in said[1], said
    assert "the others' median" not in said[0] and "with the latest training chunks" in said[0], said
    assert "Model version 1" in (night.out_dir / "report.md").read_text() and said[0] in (night.out_dir / "report.md").read_text()
    vendor.append(rows(1700, 100))
    assert not [m for m in vendor.night().messages if "champion" in m]  # as trained: nothing to say


def test_a_night_says_when_its_champion_was_trained_on_too_few_chunks(tmp_path) -> None:
    """A vendor of a few training chunks floods (each chunk's severity against a calibration of a
    handful of scores); nothing in its night said why. Each night says it, and the report with it."""
    small = new_vendor(tmp_path, "acme", make_bundle(n=180))  # 9 chunks of 20
    small.start(1179)
    small.append(rows(1180, 100))
    night = small.night()
    said = [m for m in night.messages if "champion, version" in m]
    assert len(said) == 1 and "calibrated on 9 training chunks, fewer than the 16" in said[0], night.messages
    assert said[0] in (night.out_dir / "report.md").read_text()


def test_a_pseudonymised_champions_refused_night_shows_no_address_in_its_refusal(tmp_path, bundle, monkeypatch) -> None:
    """A night refused for too many bad rows names the rows and the failing column; for a champion
    trained on pseudonyms it does not quote the addresses (the refusal is the flow run's error, kept
    in Prefect's database)."""
    from dataclasses import replace

    from licanom.data.validate import ValidationError

    monkeypatch.setenv("LICANOM_TEST_REFUSAL_SECRET", "a-secret-of-more-than-16-characters")
    v = new_vendor(tmp_path, "private", replace(bundle, pseudonym_env="LICANOM_TEST_REFUSAL_SECRET"))
    v.start(1599)
    night = rows(1600, 100).with_columns(
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.format("10.9.{}.777", pl.int_range(pl.len())))
        .otherwise(pl.col("IP")).alias("IP"))
    v.append(night)
    tracker = tracker_for(v.root)
    with pytest.raises(ValidationError, match=r"refused.* row \d+ \(Id 1600\) of private\.csv: IP: malformed address \(IP not shown") as err:
        v.night(tracker)
    assert "10.9." not in str(err.value)
    # the export by its name only: its folders ("/srv/exports/<customer>/...") are the vendor's
    assert str(v.log.parent) not in str(err.value).split(". The refused rows")[0], str(err.value)
    # a folder's export by its name in the source, in the refusal and in its MLflow run
    folder = v.root / "exports"
    (folder / "march").mkdir(parents=True)
    v.log.rename(folder / "march" / "private.csv")
    with pytest.raises(ValidationError, match=r"refused.* row \d+ \(Id 1600\) of march/private\.csv: IP: malformed") as err:
        v.night(tracker, path=str(folder))
    assert str(folder) not in str(err.value).split(". The refused rows")[0], str(err.value)
    experiment = tracker.client.get_experiment_by_name("licanom/private/nightly").experiment_id
    assert all(str(v.root) not in r.data.tags["licanom.refusal"] for r in tracker.client.search_runs([experiment]))


def test_a_line_whose_required_column_is_empty_keeps_no_other_readings_id(tmp_path) -> None:
    """A reading that leaves ProductId or State empty is no reading of the line's, but its Id still
    counts against another reading's: a line of an empty ProductId and a machine code ``590,1``
    (unquoted) may be read, shifted, with 590 as its Id; the line keeps none (a watermark moved to
    590 would pass rows 501 to 589 by)."""
    from licanom.data.extract.files import read_log
    from licanom.ops.nightly import new_watermark

    good = rows(400, 200)
    order = ["Time", "IP", "ProductId", "Id", "MachineCode", "Key", "State"]
    lines = good.select(order).write_csv().splitlines()
    time, ip, key = good["Time"][100], good["IP"][100], good["Key"][100]
    lines[101] = f"{time},{ip},,500,590,1,{key},1010"  # Id 500
    path = tmp_path / "shifted.csv"
    path.write_text("\n".join(lines) + "\n")
    raw = read_log(path)
    assert raw.filter(pl.col("_unreadable").is_not_null())["Id"].to_list() == [None]
    assert new_watermark(raw.head(101), 498) == 499


def test_a_line_of_a_field_too_many_without_its_product_keeps_its_id_where_no_reading_gives_another(tmp_path) -> None:
    """A row that lacks its ProductId (or State) has no reading that leaves every required column
    filled; its line of a field too many kept no Id, and the row was placed by the one before it.
    Where every reading of the line that fits gives one integer Id and no reading at all gives
    another integer (the Id the first column: each reading gives its first field, or that field
    joined with the next, no integer), the Id is kept; where one could, the row keeps none."""
    from licanom.data.extract.files import read_log
    from licanom.data.validate import validate_log

    good = rows(400, 12)
    order = ["Id", "ProductId", "Key", "IP", "Time", "State", "MachineCode"]
    lines = good.select(order).write_csv().splitlines()
    fields = lines[2].split(",")
    lines[2] = ",".join([fields[0], "", *fields[2:]]) + ","  # Id 401: ProductId empty, a separator too many at its end
    fields = lines[5].split(",")
    lines[5] = ",".join([fields[0], "", *fields[2:-1], "mc,7"])  # Id 404: ProductId empty, a machine code "mc,7"
    fields = lines[8].split(",")
    lines[8] = ",".join([*fields[:5], "", fields[6]]) + ","  # Id 407: State empty
    path = tmp_path / "empty.csv"
    path.write_text("\n".join(lines) + "\n")
    result = validate_log(read_log(path))
    assert result.quarantine["Id"].to_list() == ["401", "404", "407"]
    assert result.quarantine["reason"].str.ends_with("cannot be read as CSV (8 fields, the header has 7, its Id kept)").all()
    assert read_log(path, after_id=403)["Id"].to_list() == ["404", *map(str, range(405, 412))]

    # the Id after the key: a reading that puts the extra separator into the key reads the State as the Id
    order = ["Key", "Id", "State", "ProductId", "IP", "Time", "MachineCode"]
    lines = good.select(order).write_csv().splitlines()
    fields = lines[2].split(",")
    lines[2] = ",".join([*fields[:3], "", *fields[4:]]) + ","  # Id 401, ProductId empty
    path.write_text("\n".join(lines) + "\n")
    assert validate_log(read_log(path)).quarantine["Id"].to_list() == [None]


def test_a_found_id_out_of_its_neighbours_order_is_not_kept(tmp_path) -> None:
    """A usage value ``7`` written with a separator before it (``,7``) is no integer, so the line's
    own reading fits no way, and a shifted one reads 7 as its Id: amid Ids 995 to 1005 it is no
    line's Id there, and is not kept."""
    from licanom.data.extract.files import read_log

    header = "DOIntValue,Id,Time,Key,MachineCode,DOId,State,FriendlyName"
    lines = [header, *(f"3,{i},2025-03-01T00:00:00Z,K{i},mc,12,1010,pc" for i in range(995, 1006))]
    lines[6] = ",7,1000,2025-03-01T00:00:00Z,7,12,1000,,1000"  # Id 1000; read shifted, Id 7
    path = tmp_path / "shifted.csv"
    path.write_text("\n".join(lines) + "\n")
    raw = read_log(path)
    assert raw.filter(pl.col("_unreadable").is_not_null())["Id"].to_list() == [None]
    assert raw["Id"].to_list() == [*map(str, range(995, 1000)), None, *map(str, range(1001, 1006))]


def test_a_since_before_the_champions_training_rows_says_they_were_part_of_its_training(tmp_path, bundle) -> None:
    """`licanom run score --since 0` scored the rows the champion was trained on as a night, without
    a word: they look normal to it. A since before the last Id its training read says so in one line;
    from that Id on, or for a model that does not know it (saved before it was kept), nothing is said."""
    from dataclasses import replace

    from licanom.ops.bundle import ModelBundle

    vendor = new_vendor(tmp_path, "acme", replace(bundle, train_last_id=1599))
    assert ModelBundle.load(vendor.model_dir).train_last_id == 1599
    vendor.start(1599)
    vendor.append(rows(1000, 600))  # the training rows, still in the export
    vendor.append(rows(1600, 110))
    trained_on = "part of its training"
    assert not [m for m in vendor.night().messages if trained_on in m]
    again = vendor.night(since=0)
    assert [m for m in again.messages if trained_on in m] == [
        "--since 0 lies before Id 1599, the last the champion (version 1) was trained on: the rows after Id 0 up to "
        "Id 1599 were part of its training, and scored as a night they look normal to it"]
    assert sum(trained_on in line for line in again.summary()) == 1  # and among the night's printed lines
    assert not [m for m in vendor.night(since=1599).messages if trained_on in m]
    unknown = new_vendor(tmp_path / "old", "acme", bundle)  # a bundle.json without train_last_id
    assert ModelBundle.load(unknown.model_dir).train_last_id is None
    unknown.start(1599)
    unknown.append(rows(1000, 700))
    unknown.night()
    assert not [m for m in unknown.night(since=0).messages if trained_on in m]


def _bundle_without(field: str):  # type: ignore[no-untyped-def]
    """make_bundle's model, trained on rows whose ``field`` is empty in every row."""
    from licanom.config import ChunkConfig, EncodeConfig
    from licanom.data.context_vector import KeyHistory, chunk_context
    from licanom.data.derive import derive
    from licanom.data.encode import Vocabulary
    from licanom.data.validate import validate_log
    from licanom.detectors.context import ContextDetector
    from licanom.ops.bundle import ModelBundle, absent_fields
    import numpy as np

    from tests.night_harness import CHUNK

    train = validate_log(rows(1000, 600).with_columns(pl.lit("").alias(field))).valid
    derived = derive(train)
    starts = np.arange(0, derived.height - CHUNK + 1, CHUNK)
    return ModelBundle(vendor="acme", detector=ContextDetector().fit(chunk_context(derived, starts, CHUNK)),
                       vocabulary=Vocabulary.fit(derived), chunk=ChunkConfig(size=CHUNK, stride=CHUNK),
                       encode=EncodeConfig(), product_ids=(3, 7), key_history=KeyHistory.from_rows(derived, levels=True),
                       absent_fields=absent_fields(train))


@pytest.mark.parametrize("field", ["IP", "MachineCode"])
def test_a_field_the_training_rows_never_held_is_judged_as_trained_and_the_night_says_so(tmp_path, field) -> None:
    """A platform that begins to log addresses (machine codes): the model, trained on rows without
    them, would find each of a night's new (205 of 451 ordinary chunks flagged on a simulated floating
    vendor). It judges the night as it was trained, without them, and the night says so; the report
    keeps the real values."""
    from licanom.ops.bundle import ModelBundle

    bundle = _bundle_without(field)
    assert bundle.absent_fields == (field,)
    saved = new_vendor(tmp_path / "with", "acme", bundle)
    assert ModelBundle.load(saved.model_dir).absent_fields == (field,)  # kept with the model
    saved.start(1599)
    saved.append(rows(1600, 200, seed=3))
    night = saved.night()
    said = [m for m in night.messages if "was trained without" in m]
    assert len(said) == 1 and field in said[0] and "licanom run train" in said[0], night.messages
    blank = new_vendor(tmp_path / "blank", "acme", bundle)
    blank.start(1599)
    blank.append(rows(1600, 200, seed=3).with_columns(pl.lit("").alias(field)))
    as_trained = blank.night()
    assert night.chunks.select("first_id", "score", "is_anomaly").equals(as_trained.chunks.select("first_id", "score", "is_anomaly"))
    assert not [m for m in as_trained.messages if "was trained without" in m]  # nothing new to say


def test_absent_fields_are_those_empty_in_every_row() -> None:
    from licanom.ops.bundle import absent_fields, as_trained, present_fields

    frame = pl.DataFrame({"IP": ["", None, ""], "MachineCode": ["", "mc1", None], "Key": ["a", "b", "c"],
                          "country": ["US", "DE", "ZZ"]})
    assert absent_fields(frame) == ("IP",) and absent_fields(frame.head(0)) == ()
    assert absent_fields(frame.with_columns(pl.lit("  ").alias("MachineCode"))) == ("IP",)  # spaces: validation's machine code
    assert present_fields(("IP", "MachineCode"), frame) == ("MachineCode",)
    emptied = as_trained(frame, ("IP",))
    assert emptied["IP"].to_list() == ["", "", ""] and set(emptied["country"]) == {"ZZ"} and emptied["Key"].equals(frame["Key"])
    assert as_trained(frame, ()) is frame


@pytest.mark.parametrize("encoder", ["thesis", "frequency"])
def test_a_night_emptied_of_a_field_encodes_as_the_training_rows_without_it(encoder) -> None:
    """The autoencoders' encoders read a null otherwise than validation's "": a night's field emptied
    for a model trained without it encodes as the same rows validated without it."""
    from licanom.data.derive import derive
    from licanom.data.encode import Vocabulary, get_encoder
    from licanom.data.validate import validate_log
    from licanom.ops.bundle import absent_fields, as_trained

    for field in ("IP", "MachineCode"):
        train = validate_log(rows(1000, 300).with_columns(pl.lit("").alias(field))).valid
        vocabulary = Vocabulary.fit(derive(train))
        night = derive(validate_log(rows(1300, 100, seed=4)).valid)
        blank = derive(validate_log(rows(1300, 100, seed=4).with_columns(pl.lit("").alias(field))).valid)
        emptied = as_trained(night, absent_fields(train))
        enc = get_encoder(encoder)
        assert enc.encode(emptied, vocabulary).equals(enc.encode(blank, vocabulary)), (encoder, field)


def test_training_until_a_time_with_an_offset_keeps_the_rows_before_it(tmp_path) -> None:
    """`licanom run train --until 2025-03-01T03:00+01:00` failed ("time zone +01:00 does not match Series
    time zone 'UTC'"): the time is the instant it names, compared in UTC with the rows' times."""
    from datetime import datetime, timedelta, timezone

    from licanom.config import SourceConfig
    from licanom.data.pipeline import extract

    path = tmp_path / "log.csv"
    path.write_text("Id,ProductId,Key,IP,Time,State,MachineCode\n"
                    + "".join(f"{i},7,K{i},10.0.0.{i},2025-03-01T0{i}:00:00Z,1010,mc{i}\n" for i in range(1, 5)))
    source = SourceConfig(kind="files", path=str(path))
    plus_one = datetime(2025, 3, 1, 3, 0, tzinfo=timezone(timedelta(hours=1)))  # 02:00 UTC
    assert extract(source, until=plus_one)["Id"].cast(int).to_list() == [1]
    assert extract(source, until=datetime(2025, 3, 1, 3, 0))["Id"].cast(int).to_list() == [1, 2]  # naive: UTC


# --- the orchestrator's table --------------------------------------------------------------------

def test_the_nights_table_shows_severities_as_whole_numbers_as_the_report_does(tmp_path) -> None:
    """The orchestrator's table of a night showed an incident's severity as 57.38291 beside its
    report's 57; each severity there is now the report's whole number, rounded down."""
    from datetime import UTC, datetime

    from licanom.ops.nightly import NightResult, artifact_table

    when = datetime(2025, 3, 1, tzinfo=UTC)
    pl.DataFrame({"entity_kind": ["key"], "entity": ["K1"], "max_severity": [57.38291038], "start_time": [when],
                  "end_time": [when], "chunks": [2], "signal": ["new_ips"]}).write_parquet(tmp_path / "incidents.parquet")
    pl.DataFrame({"severity": ["low", "low"], "peak_severity": [59, None]}).write_csv(tmp_path / "anomalies.csv")
    night = NightResult("acme", None, None, None, 0, 0, pl.DataFrame(), out_dir=tmp_path)
    assert [r["severity"] for r in artifact_table(night)] == [57, 59, "low"]  # a frame without one: its band
