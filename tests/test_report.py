"""The vendor report on a tiny synthetic run: frames, explanations, escaping, CSV, no external assets."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from licanom.data.columns import FEATURES, SUMMARY_COLUMNS
from licanom.ops.detect import CHUNK_COLUMNS
from licanom.report import (
    CSV_COLUMNS,
    FRAME_COLUMNS,
    ReportInput,
    anomalies_csv,
    anomaly_frames,
    render_html,
    severity,
    write_report,
)

SIZE = 10           # requests per chunk
N_CHUNKS = 10
FLAGGED = (3, 4, 7)  # 3 and 4 are neighbours: one frame; 7 alone
THRESHOLD = 0.45     # ratios 1.5 (chunk 7: high) and 1.11 (chunks 3-4: low)
EVIL_KEY = "<script>alert('x')</script>"
FORMULA_KEY = "=HYPERLINK(\"http://evil\")"


def make_rows(n: int = SIZE * N_CHUNKS) -> pl.DataFrame:
    """Valid log rows: 4 known keys and machines from two IPs; chunk 7 from a new key, machine and IP."""
    start = datetime(2025, 3, 1, tzinfo=UTC)
    ids = np.arange(500, 500 + n)
    key = [f"KEY-{i % 4}" for i in range(n)]
    machine = [f"mc{i % 4}" for i in range(n)]
    ip = ["8.8.8.8" if i % 2 else "1.1.1.1" for i in range(n)]
    state = [1011 if i % 5 else 2012 for i in range(n)]
    for i in range(7 * SIZE, 8 * SIZE):  # chunk 7: a new key (hostile text) from a new machine and IP, failing
        key[i] = EVIL_KEY if i % 2 else FORMULA_KEY
        machine[i] = "mc-new"
        ip[i] = "81.2.69.160"
        state[i] = 2022
    return pl.DataFrame(
        {
            "Id": ids,
            "ProductId": [3] * n,
            "Key": key,
            "IP": ip,
            "Time": [start + timedelta(minutes=int(i)) for i in range(n)],
            "State": state,
            "MachineCode": machine,
        },
        schema_overrides={"Time": pl.Datetime("us", "UTC")},
    )


def make_chunks(rows: pl.DataFrame, flagged: tuple[int, ...] = FLAGGED, threshold: float = THRESHOLD,
                size: int = SIZE, stride: int = SIZE, by_night: tuple[int, ...] = ()) -> tuple[pl.DataFrame, np.ndarray]:
    """Chunks in the CHUNK_COLUMNS contract and their per-column errors (the key column drives
    the flagged ones); ``by_night``: chunks flagged below the threshold, as the night rule does."""
    starts = list(range(0, rows.height - size + 1, stride))
    errors = np.full((len(starts), len(FEATURES)), 0.2)
    records = []
    for c, s in enumerate(starts):
        window = rows.slice(s, size)
        if c in flagged:
            errors[c, FEATURES.index("key")] = 4.0 if c == 7 else 2.6  # scores 0.675 and 0.5
        score = float(errors[c].mean())
        records.append({
            "chunk": c, "first_id": window["Id"][0], "last_id": window["Id"][-1],
            "start_time": window["Time"][0], "end_time": window["Time"][-1],
            "split": "test" if c % 3 == 0 else "train", "model": "LSTM_AE",
            "score": score, "threshold": threshold, "is_anomaly": score > threshold or c in by_night,
            "top_feature": FEATURES[int(errors[c].argmax())],
            **{col: int(window.select(pl.col(src).n_unique()).item()) for col, src in zip(
                SUMMARY_COLUMNS, ("Time", "State", "IP", "Key", "ProductId", "State", "MachineCode", "IP"),
                strict=True)},
            **{f"error_{f}": float(errors[c, j]) for j, f in enumerate(FEATURES)},
            "severity": None,  # scored without a calibration: the report falls back on the ratio
            "flagged_by": "threshold" if score > threshold else "night" if c in by_night else None,
        })
    chunks = pl.DataFrame(records, schema_overrides={
        "start_time": pl.Datetime("us", "UTC"), "end_time": pl.Datetime("us", "UTC"),
        **{c: pl.Int32 for c in SUMMARY_COLUMNS}, "severity": pl.Float64, "flagged_by": pl.String,
    }).select(CHUNK_COLUMNS)
    return chunks, errors


def make_input(**changes: object) -> ReportInput:
    rows = make_rows()
    chunks, errors = make_chunks(rows)
    fields: dict[str, object] = dict(
        vendor="acme", run_id="run-1", model="LSTM_AE", threshold_name="M3", threshold=THRESHOLD,
        chunks=chunks, rows=rows, feature_errors=errors,
        train_errors=np.linspace(0.1, 0.45, 20), train_loss=(0.4, 0.3, 0.25), val_loss=(0.42, 0.33, 0.3),
    )
    fields.update(changes)
    return ReportInput(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def inp() -> ReportInput:
    return make_input()


@pytest.fixture(scope="module")
def page(inp: ReportInput) -> str:
    return render_html(inp)


def test_adjacent_chunks_merge_into_one_frame(inp: ReportInput) -> None:
    frames = anomaly_frames(inp)
    assert frames.columns == list(FRAME_COLUMNS)
    assert frames["chunks"].to_list() == [2, 1]
    assert frames["requests"].to_list() == [2 * SIZE, SIZE]
    rows = inp.rows
    assert frames["first_id"].to_list() == [rows["Id"][3 * SIZE], rows["Id"][7 * SIZE]]
    assert frames["last_id"].to_list() == [rows["Id"][5 * SIZE - 1], rows["Id"][8 * SIZE - 1]]
    assert frames["start_time"][0] == rows["Time"][3 * SIZE]
    assert frames["end_time"][0] == rows["Time"][5 * SIZE - 1]
    assert frames["peak_chunk"].to_list() == [3, 7]
    assert frames["score"].to_list() == pytest.approx([0.5, 0.675])
    assert frames["ratio"].to_list() == pytest.approx([0.5 / THRESHOLD, 0.675 / THRESHOLD])
    assert frames["severity"].to_list() == ["low", "high"]


def test_overlapping_chunks_merge_and_requests_count_once() -> None:
    rows = make_rows()
    chunks, errors = make_chunks(rows, flagged=(6, 7), stride=5)  # windows of 10 every 5 rows
    frames = anomaly_frames(make_input(chunks=chunks, feature_errors=errors))
    assert frames["chunks"].to_list() == [2]
    assert frames["requests"].to_list() == [15]  # rows 30..44, the overlap counted once


def test_unordered_chunks_and_rows_give_the_same_frames(inp: ReportInput) -> None:
    shuffled = make_input(chunks=inp.chunks.reverse(), rows=inp.rows.reverse(),
                          feature_errors=inp.feature_errors[::-1])  # type: ignore[index]
    assert anomaly_frames(shuffled).equals(anomaly_frames(inp))


def test_new_key_machine_and_ip_are_named(inp: ReportInput, page: str) -> None:
    csv = anomalies_csv(inp)
    new_frame = csv.filter(pl.col("first_id") == inp.rows["Id"][7 * SIZE]).row(0, named=True)
    assert new_frame["new_keys"] == 2 and new_frame["new_machine_codes"] == 1 and new_frame["new_ips"] == 1
    assert "new" in new_frame["top_keys"] and "mc-new (10, new)" in new_frame["top_machine_codes"]
    assert "100% of the frame's requests failed" in new_frame["why"]
    old_frame = csv.filter(pl.col("first_id") == inp.rows["Id"][3 * SIZE]).row(0, named=True)
    assert old_frame["new_keys"] == 0
    assert "2 new keys" in page and '<span class="tag new">new</span>' in page
    assert "mc-new" in page


def test_a_key_the_models_history_knows_is_not_new_though_only_this_frame_holds_it() -> None:
    """A nightly report's rows are one night: a key and machine code the model's history knows
    (training, earlier nights) are not "new" for being absent from the night's other rows."""
    from licanom.data.context_vector import KeyHistory

    history = KeyHistory(machines=pl.DataFrame({"Key": [EVIL_KEY], "MachineCode": ["mc-new"]}),
                         countries=pl.DataFrame({"Key": [EVIL_KEY], "country": ["GB"]}))
    csv = anomalies_csv(make_input(key_history=history))
    frame = csv.filter(pl.col("first_id") == make_rows()["Id"][7 * SIZE]).row(0, named=True)
    assert (frame["new_keys"], frame["new_machine_codes"], frame["new_ips"]) == (1, 0, 1)  # FORMULA_KEY is new
    assert "new machine code" not in frame["why"] and "new key" in frame["why"]


def test_top_columns_come_from_feature_errors(inp: ReportInput) -> None:
    csv = anomalies_csv(inp)
    assert all(t.startswith("key ") for t in csv["top_columns"])
    without = anomalies_csv(make_input(feature_errors=None))
    assert all(t == "key" for t in without["top_columns"])  # from chunks.top_feature


def test_log_values_are_escaped(page: str) -> None:
    assert "<script" not in page.lower()
    assert "&lt;script&gt;" in page
    assert "alert(&#39;x&#39;)" in page  # the quote as an entity (markupsafe's)
    hostile = render_html(make_input(vendor="<img src=x onerror=alert(1)>", run_id='"><b>'))
    assert "<img src=x" not in hostile and '"><b>' not in hostile
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile


def test_page_has_no_external_references(page: str) -> None:
    lowered = page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", lowered)
    assert "<link" not in lowered and "@import" not in lowered and "url(" not in lowered
    images = re.findall(r"<img [^>]*src=\"([^\"]*)\"", page)
    assert len(images) == 1 and images[0].startswith("data:image/png;base64,")  # the loss curves
    assert page.count('<svg class="histogram"') == 1  # the score histogram, inline


def test_csv_columns_order_and_formula_guard(inp: ReportInput, tmp_path) -> None:
    csv = anomalies_csv(inp)
    assert csv.columns == list(CSV_COLUMNS)
    assert csv.height == 2
    assert csv["severity"].to_list() == ["high", "low"]  # most severe first
    assert set(csv["vendor"]) == {"acme"} and set(csv["run_id"]) == {"run-1"}
    paths = write_report(inp, tmp_path / "out")
    assert paths.html.name == "report.html" and paths.csv.name == "anomalies.csv"
    text = paths.csv.read_text()
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS)
    back = pl.read_csv(paths.csv)
    assert back.height == 2
    assert not any(str(v).startswith(("=", "+", "-", "@")) for col in back.columns
                   if back.schema[col] == pl.String for v in back[col].drop_nulls())
    assert "'=HYPERLINK" in text or "=HYPERLINK" not in text.split("\n", 1)[1].split(",")[0]


def test_each_frame_says_why_it_was_flagged(inp: ReportInput) -> None:
    assert anomaly_frames(inp)["flagged_by"].to_list() == ["threshold", "threshold"]
    rows = make_rows()
    chunks, errors = make_chunks(rows, flagged=(7,), by_night=(2,))  # chunk 2: below the threshold
    night = make_input(chunks=chunks, feature_errors=errors)
    frames = anomaly_frames(night)
    assert frames["first_chunk"].to_list() == [2, 7] and frames["flagged_by"].to_list() == ["night", "threshold"]
    assert anomalies_csv(night)["flagged_by"].to_list() == ["threshold", "night"]  # most severe first
    page = render_html(night)
    assert page.count("flagged because it stands out from the rest of its night") == 2  # the table's tooltip, the detail
    assert page.count("(night rule)</span>") == 1  # the frame table marks its row
    # a frame of chunks flagged by the threshold and by the night rule is the threshold's
    chunks, errors = make_chunks(rows, flagged=(3,), by_night=(4,))
    assert anomaly_frames(make_input(chunks=chunks, feature_errors=errors))["flagged_by"].to_list() == ["threshold"]
    # chunks stored before the column: no reason, the rest as before
    old = anomaly_frames(make_input(chunks=inp.chunks.drop("flagged_by")))
    assert old["flagged_by"].to_list() == [None, None] and old["chunks"].to_list() == [2, 1]


def test_the_night_rules_chunks_are_marked_in_a_frame_of_the_threshold_and_in_report_md() -> None:
    """A night of 5 flagged chunks, 3 by the night rule: report.md listed the chunks at score 35.09
    against threshold 40.47 as flagged without saying why, and report.html marked "(night rule)"
    only on a frame of night-rule chunks alone, not on one that holds two of them beside a chunk
    above the threshold. Both mark them now."""
    from licanom.report import anomaly_report

    rows = make_rows()
    chunks, errors = make_chunks(rows, flagged=(3, 7), by_night=(1, 4, 5))  # frames: 1; 3-5 (the threshold's); 7
    night = make_input(chunks=chunks, feature_errors=errors)
    frames = anomaly_frames(night)
    assert frames["first_chunk"].to_list() == [1, 3, 7] and frames["flagged_by"].to_list() == ["night", "threshold", "threshold"]
    page = render_html(night)
    assert page.count("(night rule)</span>") == 1 and page.count("(2 of its 3 chunks by the night rule)</span>") == 1
    assert "2 of its chunks lie below the threshold, flagged by the night rule" in page  # the frame's detail
    md = anomaly_report("acme", chunks, "3")
    table = [line for line in md.splitlines() if line.startswith("| 2025-")]
    marked = [line for line in table if " (night rule) |" in line]
    assert len(table) == 5 and len(marked) == 3, md
    assert all(float(line.split(" | ")[4].split()[0]) <= float(line.split(" | ")[5]) for line in marked)
    assert "(night rule): below the threshold, flagged because the chunk stands out from the rest of its night (3 of the 5)." in md
    assert "night rule" not in anomaly_report("acme", make_input().chunks, "3")  # none: no mark, no note


def test_each_frame_carries_its_peak_chunks_calibrated_severity(inp: ReportInput) -> None:
    assert anomaly_frames(inp)["peak_severity"].to_list() == [None, None]  # scored without a calibration
    severities = [10.0] * N_CHUNKS
    severities[3], severities[4], severities[7] = 62.5, 58.0, 91.2  # frame 1's peak is chunk 3 (its score is higher)
    calibrated = make_input(chunks=inp.chunks.with_columns(pl.Series("severity", severities)))
    frames = anomaly_frames(calibrated)
    assert frames["peak_severity"].to_list() == [62.5, 91.2]
    assert frames["severity"].to_list() == ["medium", "high"]  # the bands follow the calibrated severity
    assert anomalies_csv(calibrated)["peak_severity"].to_list() == [91, 62]  # most severe first, as the page shows them
    page = render_html(calibrated)
    assert '<span class="sev high">high</span> 91</td>' in page and '<span class="sev medium">medium</span> 62</td>' in page


def test_the_guide_explains_the_bands_the_frames_were_given(inp: ReportInput) -> None:
    """A calibrated model's frame read "medium 62 ... 1.11×" under a guide that said the bands come
    from score / threshold (1.5× and 1.2×): the guide names the bands the report used."""
    def guide(page: str) -> str:
        return page[page.index("How to read this report"):]

    severities = [10.0] * N_CHUNKS
    severities[3], severities[7] = 62.5, 91.2
    calibrated = guide(render_html(make_input(chunks=inp.chunks.with_columns(pl.Series("severity", severities)))))
    assert "Severity bands from the calibrated severity (0-100): high from 80, medium from 60, low below" in calibrated
    assert "1.5×" not in calibrated and "Severity from score / threshold" not in calibrated
    ratio = guide(render_html(inp))  # scored without a calibration
    assert "severity bands from score / threshold: high from 1.5×, medium from 1.2×, low below" in ratio
    assert "the entities’ and incidents’ from the calibrated severity (0-100): high from 80" in ratio
    severities[3] = float("nan")  # one frame's peak chunk without one
    mixed = guide(render_html(make_input(chunks=inp.chunks.with_columns(pl.Series("severity", severities)))))
    assert "high from 80" in mixed and "no calibrated severity from score / threshold: high from 1.5×" in mixed


def test_the_csvs_peak_severity_is_a_whole_number_as_the_page_shows_it(inp: ReportInput) -> None:
    """anomalies.csv wrote the peak severity unrounded (57.38291038) where the page, the incidents
    and the entities show every severity as a whole number rounded down (57; 59.99 is 59, below 60)."""
    severities = [10.0] * N_CHUNKS
    severities[3], severities[7] = 57.38291038, 59.999
    calibrated = make_input(chunks=inp.chunks.with_columns(pl.Series("severity", severities)))
    csv = anomalies_csv(calibrated)
    assert csv.schema["peak_severity"] == pl.Int64 and csv["peak_severity"].to_list() == [59, 57]
    assert "57.38" not in csv.write_csv()
    assert anomalies_csv(inp)["peak_severity"].to_list() == [None, None]  # scored without a calibration


def test_caps_on_frames_and_requests() -> None:
    page = render_html(make_input(max_frames=1, max_requests=5))
    assert page.count('class="anomaly-row"') == 1
    assert "1 omitted" in page
    assert "more request(s) not shown" in page
    assert len(anomalies_csv(make_input(max_frames=1))) == 2  # the CSV lists every frame


def test_run_without_anomalies() -> None:
    rows = make_rows()
    chunks, errors = make_chunks(rows, flagged=())
    inp = make_input(chunks=chunks, feature_errors=errors, train_loss=(), val_loss=(), train_errors=None)
    assert anomaly_frames(inp).height == 0
    csv = anomalies_csv(inp)
    assert csv.height == 0 and csv.columns == list(CSV_COLUMNS)
    page = render_html(inp)
    assert "nothing anomalous" in page and "No loss curves" in page


def test_bad_input_is_refused() -> None:
    rows = make_rows()
    chunks, errors = make_chunks(rows)
    with pytest.raises(ValueError, match="feature_errors has shape"):
        make_input(feature_errors=errors[:, :3])
    with pytest.raises(ValueError, match="chunks lack"):
        make_input(chunks=chunks.drop("score"))
    with pytest.raises(ValueError, match="rows lack"):
        make_input(rows=rows.drop("Key"))


@pytest.mark.parametrize(("ratio", "expected"), [(1.0, "low"), (1.19, "low"), (1.2, "medium"), (1.49, "medium"),
                                                 (1.5, "high"), (float("inf"), "high")])
def test_severity_bands(ratio: float, expected: str) -> None:
    assert severity(ratio) == expected


def test_a_model_without_column_errors_gets_reasons_without_them():
    """The sequence models score a chunk as a whole: no "None column" anywhere."""
    base = make_input()
    chunks = base.chunks.with_columns(pl.lit(None, dtype=pl.String).alias("top_feature"))
    inp = make_input(chunks=chunks, feature_errors=None)
    page = render_html(inp)
    assert "None" not in page and "scores a chunk as a whole" in page
    csv = anomalies_csv(inp)
    assert csv.height >= 1
    assert not any("None" in (w or "") for w in csv["why"].to_list())
    assert csv["top_columns"].to_list() == [""] * csv.height or csv["top_columns"].null_count() == csv.height


def test_each_frame_shows_its_context_signals(page: str) -> None:
    """Any model's report: the peak chunk's context vector against the normal chunks'."""
    assert page.count("<h3>Context (the chunk") == 2  # one per frame
    second = page[page.index('id="frame-2"'):]  # chunk 7: every request failed, none of the others
    row = re.search(r"<td>share of failed requests</td><td class=\"num out\">(\d+)%</td>"
                    r"<td class=\"num\">(\d+)%</td>", second)
    assert row is not None and row.groups() == ("100", "0")


def test_a_context_model_names_its_signal_with_the_values():
    """Its failed share is its peak chunk's, and the frame's own share (over all its requests) is
    said apart: "share of failed requests: 71% (typical 1%)" then "47% of requests failed (normally
    1%)" read as two values of one share."""
    base = make_input()
    chunks = base.chunks.with_columns(pl.lit("failure_share").alias("top_feature"), pl.lit("Tail_context").alias("model"))
    page = render_html(make_input(chunks=chunks, feature_errors=None, model="Tail_context"))
    assert "most unusual: share of failed requests in its peak chunk: 100% (typical 0%)" in page
    assert "100% of the frame's requests failed (normally 0%)" in page.replace("&#39;", "'")
    assert "per-column errors" not in page and page.count("<h3>Context (the chunk") == 2


def test_a_saved_run_keeps_the_key_history_of_its_rows(tmp_path) -> None:
    """`licanom report --run` writes the nightly page again, "new to the key" counts included."""
    from licanom.data.context_vector import KeyHistory
    from licanom.report import load_run, save_run

    # KEY-1 is known from training with another machine: its mc1 is new to it at its first row
    history = KeyHistory(machines=pl.DataFrame({"Key": ["KEY-1", "KEY-OTHER"], "MachineCode": ["mc-old", "mcX"]}),
                         countries=pl.DataFrame({"Key": ["KEY-1", "KEY-OTHER"], "country": ["SE", "SE"]}))
    inp = replace(make_input(key_history=history), notes=("3 rows quarantined, not scored",))
    assert render_html(inp) != render_html(replace(make_input(), notes=inp.notes))  # the history changes the context table
    assert "3 rows quarantined, not scored" in render_html(inp)
    save_run(inp, tmp_path)
    inp.chunks.write_parquet(tmp_path / "chunks.parquet")
    again = load_run(tmp_path)
    assert again.key_history is not None and again.key_history.machines["Key"].to_list() == ["KEY-1"]
    assert render_html(again) == render_html(inp) and again.notes == inp.notes


def test_a_sequences_run_folder_is_named_as_such(tmp_path) -> None:
    from licanom.report import load_run

    pl.DataFrame({"key": ["K"]}).write_parquet(tmp_path / "sequences.parquet")
    with pytest.raises(ValueError, match="per-key sequences run"):
        load_run(tmp_path)
    with pytest.raises(ValueError, match="is not a scored run folder"):
        load_run(tmp_path / "elsewhere")


def test_loss_curves_of_models_without_epochs_draw_a_note_not_a_warning() -> None:
    import warnings

    from licanom.report.plots import loss_curves

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warned "No artists with labels found"
        empty = loss_curves({"Tail_context": ((), ())})
        drawn = loss_curves({"TCN_AE": ((0.3, 0.2), (0.31, 0.22)), "Tail_context": ((), ())})
    assert empty.startswith(b"\x89PNG") and drawn.startswith(b"\x89PNG") and empty != drawn


def test_a_run_saved_before_a_context_column_was_added_still_loads(tmp_path) -> None:
    import numpy as np

    from licanom.data.context_vector import CONTEXT_COLUMNS, CONTEXT_LABELS
    from licanom.report import load_run, save_run
    from licanom.report.store import CONTEXT_FILE

    from licanom.report.analysis import Computed

    base = make_input()
    context = np.random.default_rng(0).gamma(2.0, 1.0, (base.chunks.height, len(CONTEXT_COLUMNS)))
    inp = make_input(chunks=base.chunks.with_columns(pl.lit("Tail_context").alias("model")),
                     feature_errors=None, model="Tail_context", computed=Computed(context=context))
    save_run(inp, tmp_path)
    inp.chunks.write_parquet(tmp_path / "chunks.parquet")
    stored = pl.read_parquet(tmp_path / CONTEXT_FILE)
    stored.drop(CONTEXT_COLUMNS[-1]).write_parquet(tmp_path / CONTEXT_FILE)  # as an older version wrote it
    again = load_run(tmp_path)
    assert again.computed.context is not None
    np.testing.assert_array_equal(again.computed.context[:, :-1], stored.drop(CONTEXT_COLUMNS[-1]).to_numpy())
    assert np.isnan(again.computed.context[:, -1]).all()
    page = render_html(again)
    # the frames' signal tables stay, without the column the older run lacks
    assert CONTEXT_LABELS[CONTEXT_COLUMNS[1]] in page and CONTEXT_LABELS[CONTEXT_COLUMNS[-1]] not in page


def test_the_report_names_the_severity_decisions_night_rule_and_keeps_it_with_the_run(tmp_path) -> None:
    import json

    import numpy as np

    from licanom.data.context_vector import CONTEXT_COLUMNS
    from licanom.detectors.context import ContextDetector
    from licanom.report import decision_name, decision_note, load_run, save_run
    from licanom.report.store import RUN_FILE

    det = ContextDetector().fit(np.random.default_rng(0).gamma(2.0, 1.0, (200, len(CONTEXT_COLUMNS))))
    assert decision_name(det) == "severity >= 55" and "90th percentile of its night" in decision_note(det)
    det.threshold_params = (("stand_out_gap", None),)
    assert decision_note(det) == ""
    assert decision_note(ContextDetector(threshold="M2").fit(np.ones((50, len(CONTEXT_COLUMNS))) + np.arange(50)[:, None])) == ""

    inp = make_input(decision_note="also flagged: what stands out")
    assert "also flagged: what stands out" in render_html(inp) and "also flagged" not in render_html(make_input())
    save_run(inp, tmp_path)
    inp.chunks.write_parquet(tmp_path / "chunks.parquet")
    assert load_run(tmp_path).decision_note == "also flagged: what stands out"
    meta = json.loads((tmp_path / RUN_FILE).read_text())
    del meta["decision_note"]  # a run stored before the night rule
    (tmp_path / RUN_FILE).write_text(json.dumps(meta))
    assert load_run(tmp_path).decision_note == ""


def test_a_frames_per_chunk_figures_are_named_as_its_peak_chunks(page: str, inp: ReportInput) -> None:
    """The summary vector and the context signals are the peak chunk's, not the whole frame's
    (whose keys and machines the value tables count): their columns and reasons say so."""
    assert page.count(">peak chunk</th>") >= anomaly_frames(inp).height and ">this frame</th>" not in page
    from licanom.report.analysis import analyse

    reasons = [r for rs in analyse(inp).reasons for r in rs if " distinct " in r]
    assert reasons and all(" values in its peak chunk (typical " in r for r in reasons), reasons


def test_a_frames_reasons_name_up_to_three_of_its_new_values() -> None:
    """Two new addresses are both named (the reasons named the first only), four: three and "..."."""
    from licanom.report.analysis import NEW_NAMED, analyse

    rows = make_rows()
    i = pl.int_range(pl.len())
    for n_new in (2, NEW_NAMED + 1):
        ips = rows.with_columns(pl.when((i >= 7 * SIZE) & (i < 8 * SIZE))
                                .then(pl.format("81.2.69.{}", 160 + i % n_new)).otherwise(pl.col("IP")).alias("IP"))
        chunks, errors = make_chunks(ips)
        reasons = [r for rs in analyse(make_input(rows=ips, chunks=chunks, feature_errors=errors)).reasons
                   for r in rs if " new IP" in r]
        named = [ip for ip in (f"81.2.69.{160 + j}" for j in range(n_new)) if ip in "".join(reasons)]
        assert len(reasons) == 1 and len(named) == min(n_new, NEW_NAMED), reasons
        assert reasons[0].endswith(", ...)") == (n_new > NEW_NAMED), reasons


@pytest.mark.parametrize("scores", [
    np.full(5, 0.25),                                                          # all equal
    np.array([0.3, np.nextafter(np.float32(0.3), np.float32(1))], np.float32),  # one float32 step apart
    np.array([1e8, 1e8 + 1e-7, 1e8]),                                          # a range below the values' precision
    np.array([0.2, np.nan, np.inf, 0.2]),                                      # scores that are not finite among them
    np.array([np.nan]),                                                        # none finite
])
def test_a_score_histogram_of_equal_or_nearly_equal_scores_is_drawn(scores: np.ndarray) -> None:
    """A training of a few chunks gave scores a hair apart: numpy's 50 bins failed ("Too many bins
    for data range") and the figure failed the training with it."""
    from licanom.report.histogram import score_histogram
    from licanom.report.plots import error_histograms

    histograms = error_histograms(scores, scores, {"M1": None, "M3": 0.25}, title="t")
    report = score_histogram(scores, scores, scores[:1], 0.25, "M3", "score")
    assert histograms.startswith(b"\x89PNG")
    finite = int(np.isfinite(scores).sum())
    for panel in report.panels:  # every finite score in a bar of positive width, none twice
        assert sum(bar.count for bar in panel.bars) == finite and all(bar.width > 0 for bar in panel.bars)
