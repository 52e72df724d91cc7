"""The licanom command line: detect writes its output contract; bad input gives exit codes."""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from licanom.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_SOURCE, EXIT_USAGE, main
from licanom.ops.detect import CHUNK_COLUMNS, RESULT_COLUMNS
from licanom.detectors.entities import ENTITY_COLUMNS
from tests.conftest import make_raw_log


@pytest.fixture(scope="module")
def csv_export(tmp_path_factory):
    """A plain CSV export of a log, as a vendor would download it (Unix-seconds Time)."""
    path = tmp_path_factory.mktemp("export") / "weblog.csv"
    log = make_raw_log(1200).with_columns(pl.col("Time").dt.epoch("s"))
    log.write_csv(path)
    return path


def test_detect_writes_contract_on_csv(csv_export, tmp_path, capsys):
    out = tmp_path / "det"
    code = main(["detect", "--logs", str(csv_export), "--model", "TCN_AE", "--epochs", "2", "--no-m1", "--out", str(out)])
    assert code == EXIT_OK
    chunks = pl.read_parquet(out / "chunks.parquet")
    assert tuple(chunks.columns) == CHUNK_COLUMNS
    assert chunks.height == 12 and set(chunks["split"]) == {"train", "test"}
    assert chunks["is_anomaly"].dtype == pl.Boolean
    # the decision is the detector's: the threshold and the severity decision's night rule
    from licanom.detectors import load
    from licanom.ops.detect import chunk_nights

    det = load("TCN_AE", out / "models" / "TCN_AE.pt")
    assert chunks["is_anomaly"].to_list() == det.flags(chunks["score"].to_numpy(), chunk_nights(chunks)).tolist()
    assert (out / "models" / "TCN_AE.pt").exists() and (out / "vocabulary.json").exists()
    assert not (out / "results.csv").exists()  # one model: no comparison table
    printed = capsys.readouterr().out
    assert "Model name" in printed
    # the decision's count, of all chunks and of the held-out ones, then the decision in words
    test = chunks.filter(pl.col("split") == "test")
    assert (f"{int(chunks['is_anomaly'].sum())} of 12 chunks flagged by TCN_AE ({int(test['is_anomaly'].sum())} of "
            f"the {test.height} held-out test chunks)") in printed
    assert "\ndecision: severity >= 55 (a score of " in printed
    # trained on a handful of chunks: its severities are said to be unreliable (a small vendor floods)
    caution = f"caution: TCN_AE: its severity is calibrated on {det.calibration_.n} training chunks, fewer than"
    assert f"\n{caution}" in printed and caution in (out / "report.html").read_text()
    # the entity results beside the chunks: every valid row in one key-day, and every row with an
    # address in one address-hour (the rows without one make none)
    entities = pl.read_parquet(out / "entities.parquet")
    assert tuple(entities.columns) == ENTITY_COLUMNS
    with_address = pl.read_csv(csv_export, infer_schema_length=0).filter(pl.col("IP").fill_null("") != "").height
    assert 0 < with_address < 1200
    for kind, rows in (("key-day", 1200), ("address-hour", with_address)):
        assert entities.filter(pl.col("entity_kind") == kind)["requests"].sum() == rows
    assert entities["severity"].is_between(0, 100).all()
    # the vendor report beside the chunks, and rebuilt later from the run folder alone
    page = (out / "report.html").read_text()
    assert "<html" in page and "detect det" in page
    anomalies = pl.read_csv(out / "anomalies.csv")
    assert anomalies.height <= int(chunks["is_anomaly"].sum())
    (out / "report.html").unlink()
    assert main(["report", "--run", str(out)]) == EXIT_OK
    assert (out / "report.html").read_text() == page
    assert main(["report", "--run", str(tmp_path / "nowhere")]) == EXIT_USAGE
    assert f"--run {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().err
    # the same --out again, another model: nothing of the earlier run stays beside the new outputs
    (out / "results.csv").write_text("model\nTCN_AE\n")  # as a run of several models leaves it
    (out / "notes.txt").write_text("mine")                 # not a name licanom writes: kept
    assert main(["detect", "--logs", str(csv_export), "--model", "Tail_context", "--out", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert f"--out {out}: an earlier run's " in printed and " output file(s) removed, replaced by this run's" in printed
    assert not (out / ".earlier-run").exists()  # where they waited until this run succeeded
    assert not (out / "models" / "TCN_AE.pt").exists() and (out / "models" / "Tail_context.pt").exists()
    assert not (out / "results.csv").exists() and (out / "notes.txt").read_text() == "mine"
    assert set(pl.read_parquet(out / "chunks.parquet")["model"].to_list()) == {"Tail_context"}
    assert (out / "incidents.parquet").exists()  # the context model's (the autoencoder's run above wrote none)


@pytest.mark.slow
def test_detect_several_models_writes_results_table(csv_export, tmp_path):
    out = tmp_path / "det"
    code = main(["detect", "--logs", str(csv_export), "--model", "TCN_AE,LSTM_AE_Small", "--epochs", "1",
                 "--out", str(out)])
    assert code == EXIT_OK
    results = pl.read_csv(out / "results.csv")
    assert tuple(results.columns) == RESULT_COLUMNS
    assert results["model"].to_list() == ["TCN_AE", "LSTM_AE_Small"]
    assert results["bottleneck"].to_list() == ["(12, 6)", "(3,)"]


def test_the_m1_column_tells_off_from_none_found(csv_export, tmp_path, capsys, monkeypatch):
    """The table's M1 column read "na" both where M1 was off (--no-m1) and where it ran and found no
    threshold, and results.csv left both empty: now the table says "off" or "none found" in place
    of the count, and results.csv's M1_status (its last column) says the same."""
    from licanom.detectors.context import ContextDetector

    def table_row(printed: str, model: str) -> str:
        return next(line for line in printed.splitlines() if line.startswith(f"{model} "))

    out = tmp_path / "off"
    assert main(["detect", "--logs", str(csv_export), "--model", "Tail_context,LOF_context", "--no-m1",
                 "--out", str(out)]) == EXIT_OK
    results = pl.read_csv(out / "results.csv")
    assert tuple(results.columns) == RESULT_COLUMNS and RESULT_COLUMNS[-1] == "M1_status"
    assert results["M1_status"].to_list() == ["off", "off"] and results["M1"].null_count() == 2
    printed = capsys.readouterr().out
    assert table_row(printed, "Tail_context").split()[3] == "off" and " na " not in table_row(printed, "LOF_context")
    # M1 run: it finds no threshold for one model and one for the other (stood in for: it retrains)
    monkeypatch.setattr(ContextDetector, "m1_threshold",
                        lambda self, X: None if self.model == "LOF_context" else float(np.median(self.decision_scores_)))
    out = tmp_path / "on"
    assert main(["detect", "--logs", str(csv_export), "--model", "Tail_context,LOF_context", "--out", str(out)]) == EXIT_OK
    results = pl.read_csv(out / "results.csv")
    assert results["M1_status"].to_list() == ["found", "none found"]
    assert results["M1"].is_null().to_list() == [False, True] and results["threshold_M1"].is_null().to_list() == [False, True]
    printed = capsys.readouterr().out
    assert table_row(printed, "Tail_context").split()[3] == str(results["M1"][0])
    assert "  none found " in table_row(printed, "LOF_context")


def test_the_results_table_prints_why_m1_gives_no_count():
    """Each state of M1 in its own words; a table written before M1_status (no such column), "na"."""
    from licanom.ops.detect import format_results, results_frame

    base = {"bottleneck": "(17,)", "depth": 0, "M2": 1, "M3": 2, "GMM": None, "KMeans": None, "quantile": 1, "pot": 1,
            "budget": 1, "threshold_M2": 0.5, "threshold_M3": 0.4, "test_chunks": 3, "train_seconds": 0.1, "epochs": 0,
            "train_loss": None, "val_loss": None, "converged": None, "convergence": None}
    results = results_frame([
        {**base, "model": "Tail_context", "M1": 2, "threshold_M1": 0.3, "M1_status": "found"},
        {**base, "model": "LOF_context", "M1": None, "threshold_M1": None, "M1_status": "none found"},
        {**base, "model": "TCN_AE", "M1": None, "threshold_M1": None, "M1_status": "off"},
        {**base, "model": "GRU_OCSVM", "M1": None, "threshold_M1": None, "M1_status": "n/a"},
    ])
    lines = format_results(results).splitlines()
    assert lines[0] == ("Model name     Bottleneck   Depth          M1     M2     M3    GMM  KMeans  Train [s]")
    assert [line[33:45] for line in lines[1:]] == ["           2", "  none found", "         off", "         n/a"]
    assert all(line[45:].split()[:4] == ["1", "2", "na", "na"] for line in lines[1:])  # no count of GMM, KMeans: na
    old = format_results(results.drop("M1_status")).splitlines()
    assert [line[33:45] for line in old[1:]] == ["           2", "          na", "          na", "          na"]


def test_simulate_then_prepare(tmp_path, capsys):
    assert main(["simulate", "--profile", "node-locked", "--seed", "3", "--days", "30", "--out", str(tmp_path / "sim")]) == EXIT_OK
    assert (tmp_path / "sim" / "labels.parquet").exists()
    assert main(["prepare", "--logs", str(tmp_path / "sim" / "log.parquet"), "--out", str(tmp_path / "prep")]) == EXIT_OK
    assert (tmp_path / "prep" / "chunks.npy").exists()
    assert "chunks" in capsys.readouterr().out


def test_simulate_writes_a_vendors_csv_export_that_detect_reads_back_and_its_labels_file(tmp_path, capsys):
    """`licanom simulate` wrote only log.parquet: a new user who wanted the CSV a vendor sends, or a
    --labels file for detect, converted them by hand. --format csv (or both) writes log.csv as a
    vendor's export (the Web API Log's columns in order, times ISO 8601 with Z) and labels.csv (Id,
    label: -1 anomaly, +1 normal), which `licanom detect` reads back to the same rows and labels."""
    import re

    from licanom.cli import read_labels
    from licanom.config import load_config
    from licanom.data.columns import RAW
    from licanom.data.pipeline import extract
    from licanom.data.validate import validate_log

    sim = tmp_path / "sim"
    assert main(["simulate", "--profile", "floating", "--seed", "3", "--days", "3", "--format", "both",
                 "--out", str(sim)]) == EXIT_OK
    assert "log.csv, labels.csv" in capsys.readouterr().out
    lines = (sim / "log.csv").read_text().splitlines()
    assert lines[0] == ",".join(RAW)
    time = lines[1].split(",")[RAW.index("Time")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", time), time
    # events.csv writes its times as log.csv does (not 2025-01-11T12:36:36.000000+0000)
    import csv

    with (sim / "events.csv").open(newline="") as f:
        events = list(csv.DictReader(f))
    times = [e[column] for e in events for column in ("start_time", "end_time")]
    assert times and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", t) for t in times), times[:4]
    assert pl.read_csv(sim / "events.csv", try_parse_dates=True)["start_time"].dtype == pl.Datetime("us", "UTC")
    # read as `licanom detect --logs log.csv` reads it: the same valid rows as log.parquet's
    source = load_config(overrides={"source": {"kind": "files", "path": str(sim / "log.csv")}}).source
    from_csv = validate_log(extract(source))
    from_parquet = validate_log(pl.read_parquet(sim / "log.parquet"))
    assert from_csv.quarantine.height == 0 and from_csv.valid.height == pl.read_parquet(sim / "log.parquet").height
    assert from_csv.valid.equals(from_parquet.valid)
    # labels.csv: every row, -1 where labels.parquet lists it, read as `detect --labels` reads it
    labels = read_labels(sim / "labels.csv")
    truth = pl.read_parquet(sim / "labels.parquet")
    assert labels.height == from_csv.valid.height
    assert sorted(labels.filter(pl.col("label") == -1)["Id"].to_list()) == sorted(truth["Id"].to_list())
    assert truth.height and set(labels["label"].to_list()) == {-1, 1}
    # csv alone: no Parquet files
    assert main(["simulate", "--days", "1", "--format", "csv", "--out", str(tmp_path / "csv")]) == EXIT_OK
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["events.csv", "labels.csv", "log.csv"]


def test_prepare_names_the_files_of_a_folder_it_read(tmp_path, capsys):
    log = make_raw_log(1200)
    for month, part in (("2025-01", log.head(700)), ("2025-02", log.tail(500)), ("2025-03", log.clear())):
        (tmp_path / "logs" / month).mkdir(parents=True)
        part.write_parquet(tmp_path / "logs" / month / "log.parquet")  # the same name in each month's folder
    (tmp_path / "logs" / "README.txt").write_text("exported by hand")  # not a log: not listed
    assert main(["prepare", "--logs", str(tmp_path / "logs"), "--out", str(tmp_path / "prep")]) == EXIT_OK
    out = capsys.readouterr().out
    # every file read, the empty one too, named from the folder given
    assert "log files                   3  (2025-01/log.parquet, 2025-02/log.parquet, 2025-03/log.parquet)" in out
    assert "rows read               1,200" in out
    # a glob: named from the folder the files share
    assert main(["prepare", "--logs", str(tmp_path / "logs" / "2025-0[12]" / "*.parquet"), "--out", str(tmp_path / "g")]) == EXIT_OK
    assert "log files                   2  (2025-01/log.parquet, 2025-02/log.parquet)" in capsys.readouterr().out
    # one file: no line of its own (the command named it)
    assert main(["prepare", "--logs", str(tmp_path / "logs" / "2025-01" / "log.parquet"), "--out", str(tmp_path / "one")]) == EXIT_OK
    assert "log files" not in capsys.readouterr().out


def test_bad_input_exit_codes(tmp_path, capsys):
    short = tmp_path / "short.csv"
    make_raw_log(30).write_csv(short)
    assert main(["prepare", "--logs", str(short), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    assert "fewer than one chunk" in capsys.readouterr().err
    assert main(["prepare", "--logs", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")]) == EXIT_SOURCE
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert main(["prepare", "--logs", str(empty), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    assert "empty.csv: the log is empty (no header, no rows)" in capsys.readouterr().err
    nostate = tmp_path / "nostate.csv"
    make_raw_log(200).drop("State").write_csv(nostate)
    assert main(["prepare", "--logs", str(nostate), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    assert "State" in capsys.readouterr().err
    # one chunk of training: the input cannot be used (not a usage error), and the line says what to give
    one = tmp_path / "one_chunk.csv"
    make_raw_log(150).write_csv(one)
    assert main(["detect", "--logs", str(one), "--model", "Tail_context", "--out", str(tmp_path / "d")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "at least 2 training chunks" in err and "give a longer log" in err and err.count("\n") == 1
    # --out naming a file is a usage error, not an unexpected one
    assert main(["prepare", "--logs", str(nostate), "--out", str(short)]) == EXIT_USAGE
    assert "is a file; give a folder" in capsys.readouterr().err
    # too many bad rows: refused in one line that shows a bad value, the quarantine kept where --out points
    many = tmp_path / "many_bad.csv"
    log = make_raw_log(300).with_columns(pl.col("Time").cast(pl.String))
    log.with_columns(pl.when(pl.int_range(pl.len()) < 30).then(pl.lit("01/02/2025 10:01")).otherwise(pl.col("Time"))
                     .alias("Time")).write_csv(many)
    assert main(["prepare", "--logs", str(many), "--out", str(tmp_path / "refused")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "validate.max_bad_fraction" in err and "(Time '01/02/2025 10:01')" in err
    kept = pl.read_parquet(tmp_path / "refused" / "quarantine.parquet")
    assert kept.height == 30 and str(tmp_path / "refused" / "quarantine.parquet") in err
    assert set(kept["reason"].to_list()) == {"Time: unparsable"}


def test_detect_prints_entity_severities_as_the_reports_show_them(tmp_path, capsys, monkeypatch):
    """`licanom detect` printed "severity  95.6" where the reports show 95: one rule, the reports'."""
    from types import SimpleNamespace

    import licanom.ops.detect
    from licanom.cli import write_entities
    from tests.test_report_templates import entity_frame

    entities = entity_frame([("key-day", "KEY-A", 95.6, True, "key KEY-A: why"),
                             ("key-day", "KEY-B", 54.96, True, "key KEY-B: why")])
    monkeypatch.setattr(licanom.ops.detect, "entity_results", lambda *args: entities)
    prepared = SimpleNamespace(encoded=SimpleNamespace(frame=None))
    write_entities(prepared, SimpleNamespace(chunks=None, sequences=None), None, tmp_path)
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2:] == ["  severity  95  key KEY-A: why", "  severity  54  key KEY-B: why"]


def test_a_log_without_addresses_is_judged_without_address_hours(tmp_path, capsys):
    path = tmp_path / "no_ip.csv"
    make_raw_log(2400).with_columns(pl.lit("").alias("IP")).write_csv(path)
    assert main(["detect", "--logs", str(path), "--model", "Tail_context", "--out", str(tmp_path / "d")]) == EXIT_OK
    assert "entities flagged (key-days, key-machines; no address-hours)" in capsys.readouterr().out
    entities = pl.read_parquet(tmp_path / "d" / "entities.parquet")
    assert set(entities["entity_kind"].unique()) == {"key-day", "key-machine"}
    incidents = tmp_path / "d" / "incidents.parquet"
    assert not incidents.exists() or "" not in pl.read_parquet(incidents)["entity"].to_list()


def test_ids_out_of_time_order_are_named(tmp_path, capsys):
    log = make_raw_log(600)
    log.write_csv(tmp_path / "ordered.csv")
    assert main(["prepare", "--logs", str(tmp_path / "ordered.csv"), "--out", str(tmp_path / "a")]) == EXIT_OK
    assert "do not follow time order" not in capsys.readouterr().out
    shuffled = log.with_columns(pl.Series("Id", np.random.default_rng(0).permutation(log["Id"].to_numpy())))
    shuffled.write_csv(tmp_path / "shuffled.csv")
    assert main(["prepare", "--logs", str(tmp_path / "shuffled.csv"), "--out", str(tmp_path / "b")]) == EXIT_OK
    assert "have a smaller Id than the row before them in time" in capsys.readouterr().out


def test_an_export_in_another_encoding_is_read_with_encoding(tmp_path, capsys):
    log = make_raw_log(300).with_columns(pl.col("Key").str.replace("KEY", "KÉY"))
    path = tmp_path / "cp1252.csv"
    path.write_bytes(log.write_csv(separator=";").encode("cp1252"))
    assert main(["prepare", "--logs", str(path), "--out", str(tmp_path / "o")]) == EXIT_SOURCE
    assert "line 2: byte 0xc9 is not UTF-8" in capsys.readouterr().err
    assert main(["prepare", "--logs", str(path), "--encoding", "cp1252", "--separator", ";",
                 "--out", str(tmp_path / "o")]) == EXIT_OK
    assert pl.read_parquet(tmp_path / "o" / "quarantine.parquet").height == 0
    assert main(["prepare", "--logs", str(path), "--encoding", "nonesuch", "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert "configuration error: source.encoding: unknown encoding 'nonesuch'" in capsys.readouterr().err
    # UTF-16, as Windows PowerShell writes it: named, with the setting that reads it
    wide = tmp_path / "utf16.csv"
    wide.write_bytes(log.write_csv().encode("utf-16"))
    assert main(["prepare", "--logs", str(wide), "--out", str(tmp_path / "w")]) == EXIT_SOURCE
    assert "utf16.csv: the file is UTF-16" in capsys.readouterr().err
    assert main(["prepare", "--logs", str(wide), "--encoding", "utf-16", "--out", str(tmp_path / "w")]) == EXIT_OK


def test_a_tab_typed_as_backslash_t_is_the_separator(tmp_path, capsys):
    """`--separator '\\t'` reaches the program as backslash and t, and was refused as not one
    character by a message that listed '\\t' among the separators it takes."""
    path = tmp_path / "export.tsv"
    make_raw_log(300).write_csv(path, separator="\t")
    assert main(["prepare", "--logs", str(path), "--separator", "\\t", "--out", str(tmp_path / "o")]) == EXIT_OK, \
        capsys.readouterr().err
    assert pl.read_parquet(tmp_path / "o" / "quarantine.parquet").height == 0


@pytest.mark.parametrize("command", ["prepare", "detect"])
def test_a_letter_or_digit_separator_is_refused_with_the_quoted_tab(command, tmp_path, capsys):
    """An unquoted `--separator \\t` reaches licanom as the letter t, which was taken as the
    separator (any one character was). A letter or digit separates no CSV: refused in one line
    that shows the quoted form, before the log is read; ',' ';' '|', a tab and '\\t' are taken."""
    path = tmp_path / "export.tsv"
    make_raw_log(300).write_csv(path, separator="\t")
    for written, what in (("t", "'t' is a letter, which separates no CSV (a shell reads an unquoted \\t as t)"),
                          ("7", "'7' is a digit, which separates no CSV")):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--logs", str(path), "--separator", written, "--out", str(tmp_path / "o")])
        assert exit_.value.code == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"licanom {command}: error: argument --separator: {what}: "
                                                        "write a tab as '\\t' in quotes (--separator '\\t')"), err
        assert not (tmp_path / "o").exists()
    for written in ("\t", "\\t"):  # a tab, and a tab as a shell passes '\t' on
        assert main(["prepare", "--logs", str(path), "--separator", written, "--out", str(tmp_path / "o")]) == EXIT_OK
    from licanom.cli import build_parser

    for written in (",", ";", "|"):
        assert build_parser("prepare").parse_args(["prepare", "--separator", written, "--out", "o"]).separator == written


def test_a_reader_that_goes_away_does_not_stop_the_command(tmp_path):
    """`licanom ... | head -1`: the pipe closes before the output is written; the command runs to
    its end, its files written, with no error line."""
    import subprocess

    proc = subprocess.Popen([sys.executable, "-m", "licanom.cli", "simulate", "--profile", "node-locked", "--days", "3",
                             "--out", str(tmp_path / "sim")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == ""
    assert (tmp_path / "sim" / "log.parquet").exists() and (tmp_path / "sim" / "events.csv").exists()


def test_detect_per_key_sequences_with_labels(csv_export, tmp_path, capsys):
    """--sequences key: one row per key and day with its Ids, requests and score; labels by key."""
    from licanom.detectors.sequence.sessions import SEQUENCE_COLUMNS

    labels = tmp_path / "labels.csv"
    pl.DataFrame({"Key": ["KEY001-ABCDE", "KEY002-ABCDE"], "label": [-1, 1]}).write_csv(labels)
    out = tmp_path / "seq"
    code = main(["detect", "--logs", str(csv_export), "--model", "GRU_SVDD", "--sequences", "key", "--solver", "qp",
                 "--epochs", "2", "--labels", str(labels), "--out", str(out)])
    assert code == EXIT_OK
    seqs = pl.read_parquet(out / "sequences.parquet")
    assert tuple(seqs.columns) == SEQUENCE_COLUMNS
    log = pl.read_csv(csv_export)
    assert seqs["requests"].sum() == log.height  # every request in exactly one sequence
    assert set(seqs["key"]) == set(log["Key"])
    assert (seqs["is_anomaly"] == (seqs["score"] > seqs["threshold"])).all()
    assert (seqs["first_id"] <= seqs["last_id"]).all()
    printed = capsys.readouterr().out
    assert "key sequences flagged by GRU_SVDD" in printed
    assert printed.count("warning: only 10 training chunk(s) (1,000 requests)") == 1  # no caution line said it
    bad = tmp_path / "bad.csv"
    pl.DataFrame({"Key": ["KEY001-ABCDE"], "label": [5]}).write_csv(bad)
    assert main(["detect", "--logs", str(csv_export), "--model", "GRU_SVDD", "--sequences", "key",
                 "--labels", str(bad), "--out", str(out)]) == EXIT_USAGE
    assert "label must be +1, -1 or 0" in capsys.readouterr().err
    assert main(["detect", "--logs", str(csv_export), "--model", "TCN_AE", "--sequences", "key",
                 "--out", str(out)]) == EXIT_USAGE
    assert "need fixed-size chunks" in capsys.readouterr().err


def test_labels_no_model_learns_from_are_refused_before_training(csv_export, tmp_path, capsys):
    """--labels with only autoencoders or context models (the chunk models) was read and then
    ignored in silence: they learn without labels. Refused in one line before any model is fitted;
    beside a sequence model they are taken, and a note says which models learnt from them."""
    labels = tmp_path / "labels.csv"
    pl.DataFrame({"Id": [1000, 1001, 1150], "label": [1, -1, 0]}).write_csv(labels)
    for model in ("Tail_context", "TCN_AE"):
        out = tmp_path / model
        assert main(["detect", "--logs", str(csv_export), "--model", model, "--labels", str(labels),
                     "--out", str(out)]) == EXIT_USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("licanom: labels are learnt by the sequence models only (") \
            and f"; {model} learns without them: leave the labels out, or train a sequence model" in err[0], err
        assert not (out / "models").exists()  # nothing trained
    out = tmp_path / "both"
    assert main(["detect", "--logs", str(csv_export), "--model", "GRU_OCSVM,Tail_context", "--epochs", "1",
                 "--labels", str(labels), "--out", str(out)]) == EXIT_OK
    assert "\nnote: --labels: learnt by GRU_OCSVM only; Tail_context learnt without them\n" in capsys.readouterr().out


def test_labels_of_no_row_are_named_and_labels_of_none_refused(csv_export, tmp_path, monkeypatch, capsys):
    """Labels whose Id (key) is in no row of the log were left unused without a word, and a labels
    file of another log (none of its Ids the log's) trained the models as if unlabelled. Some: a
    warning counting them and naming the first; none: refused in one line naming the file, before
    anything is trained. Under pseudonymisation the models see the keys' pseudonyms, which no real
    key matches: the refusal says so."""
    labels = tmp_path / "labels.csv"
    pl.DataFrame({"Id": [1000, 1001, 9000, 1002, 9001], "label": [1, -1, -1, 1, 1]}).write_csv(labels)
    out = tmp_path / "some"
    assert main(["detect", "--logs", str(csv_export), "--model", "GRU_OCSVM", "--epochs", "1", "--labels", str(labels),
                 "--out", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert (f"\nwarning: 2 of the 5 labelled Ids of labels file {labels} are in no valid row of the log trained on "
            "(9000, 9001): no model learns from them\n") in printed, printed
    other = tmp_path / "other.csv"  # another log's labels: none of its Ids is this log's
    pl.DataFrame({"Id": range(9000, 9007), "label": [1] * 7}).write_csv(other)
    out = tmp_path / "none"
    assert main(["detect", "--logs", str(csv_export), "--model", "GRU_OCSVM", "--labels", str(other),
                 "--out", str(out)]) == EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"licanom: labels file {other}: none of its 7 labelled Ids is in a valid row of the log trained on "
        "(first: 9000, 9001, 9002, 9003, 9004): are they this log's labels? Nothing was trained"]
    assert not (out / "models").exists()
    # and for models that learn no labels, that is the refusal, whatever the labels match
    for given in (other, labels):
        assert main(["detect", "--logs", str(csv_export), "--model", "TCN_AE", "--labels", str(given),
                     "--out", str(out)]) == EXIT_USAGE
        said = capsys.readouterr()
        assert said.err.splitlines()[0].startswith("licanom: labels are learnt by the sequence models only")
        assert "warning:" not in said.out
    # labels by key: the log's real keys, which a pseudonymising vendor's models never see
    keys = tmp_path / "keys.csv"
    pl.DataFrame({"Key": ["KEY001-ABCDE", "KEY002-ABCDE"], "label": [-1, 1]}).write_csv(keys)
    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((Path(__file__).parent.parent / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / "acme.yaml").write_text("privacy: {pseudonymise: true}\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    monkeypatch.setenv("LICANOM_PSEUDONYM_SECRET_ACME", "s" * 32)
    assert main(["detect", "--vendor", "acme", "--logs", str(csv_export), "--model", "GRU_SVDD", "--sequences", "key",
                 "--labels", str(keys), "--out", str(out)]) == EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"licanom: labels file {keys}: none of its 2 labelled keys is in a valid row of the log trained on "
        "(KEY001-ABCDE, KEY002-ABCDE): the vendor's keys are pseudonymised (privacy.pseudonymise) and the models see "
        "each key's pseudonym, which no real key matches: label by Id instead; nothing was trained"]
    assert not (out / "models").exists()


def test_labels_of_rows_after_the_last_full_chunk_are_not_counted_as_learnt(tmp_path, capsys):
    """Labels of valid rows after the last full chunk (rows no chunk holds: no model scores or
    learns from them) were counted as the log's, without a word. Some: the warning counts them
    apart from the Ids of no row; all of them: refused before anything is trained."""
    export = tmp_path / "weblog.csv"  # 1,250 rows: 12 chunks of 100, then 50 rows in no chunk (Ids 2200-2249)
    make_raw_log(1250).with_columns(pl.col("Time").dt.epoch("s")).write_csv(export)
    labels = tmp_path / "labels.csv"
    pl.DataFrame({"Id": [1000, 1001, 2210, 9000, 2230], "label": [1, -1, -1, 1, 1]}).write_csv(labels)
    out = tmp_path / "some"
    assert main(["detect", "--logs", str(export), "--model", "GRU_OCSVM", "--epochs", "1", "--labels", str(labels),
                 "--out", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert (f"\nwarning: 3 of the 5 labelled Ids of labels file {labels} are learnt by no model: 1 is in no valid "
            "row of the log trained on (9000); 2 are in valid rows no chunk holds, the 50 tail rows after the last "
            "full chunk (2210, 2230)\n") in printed, printed
    tail = tmp_path / "tail.csv"  # every label on a row after the last full chunk
    pl.DataFrame({"Id": [2200, 2249], "label": [-1, 1]}).write_csv(tail)
    out = tmp_path / "tail"
    assert main(["detect", "--logs", str(export), "--model", "GRU_OCSVM", "--labels", str(tail),
                 "--out", str(out)]) == EXIT_USAGE
    assert capsys.readouterr().err.splitlines() == [
        f"licanom: labels file {tail}: none of its 2 labelled Ids is in a chunk of the log trained on (2200, 2249): "
        "2 are in valid rows no chunk holds, the 50 tail rows after the last full chunk; nothing was trained"]
    assert not (out / "models").exists()


@pytest.mark.parametrize(("written", "parquet", "said"), [
    ("Id,label\n1000,1\n1001,5\n1002,7\n", False,
     "row 1 (Id 1001; rows counted from 0, the header not counted): label must be +1, -1 or 0, not '5' (2 rows in all)"),
    ("Id,label\n1000,1\n1001,\n", False, "row 1 (Id 1001; rows counted from 0, the header not counted): label must "
                                           "be +1, -1 or 0, not empty"),
    ("Id,label\n1000,1\n,1\n", False, "row 1 (rows counted from 0, the header not counted): no Id"),
    ("Id,label\n1000,1\nK7,1\n", False, "row 1 (Id K7; rows counted from 0, the header not counted): the Id is not "
                                         "a whole number"),
    ("Key,label\nK1,1\nK2,1\nK1,-1\n", False, "row 0 (Key K1; rows counted from 0, the header not counted): "
                                                "labelled 1, and row 2 labels it otherwise: keep one label"),
    ({"Id": [1000, 1001], "label": [1.0, 1.5]}, True, "row 1 (Id 1001; rows counted from 0): label must be +1, -1 or "
                                                      "0, not 1.5"),
    ({"Id": [1000, 1001], "label": [True, False]}, True, "label must be +1, -1 or 0; its column holds Boolean values"),
])
def test_a_bad_row_of_a_labels_file_is_named_counting_from_0(written, parquet, said, csv_export, tmp_path, capsys):
    """A labels file's bad row was named as its line ("row 3" for the second row after the header,
    of a Parquet file too), where licanom counts a log's rows from 0, the header not counted; an
    empty label, an Id that is no number or a key labelled twice otherwise passed unnamed."""
    path = tmp_path / ("labels.parquet" if parquet else "labels.csv")
    if parquet:
        pl.DataFrame(written).write_parquet(path)
    else:
        path.write_text(written)
    assert main(["detect", "--logs", str(csv_export), "--model", "GRU_OCSVM", "--labels", str(path),
                 "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert capsys.readouterr().err.strip().splitlines() == [f"licanom: {path}: {said}"]
    from licanom.cli import read_labels

    good = tmp_path / "good.csv"
    good.write_text("Id,label\n1000,+1\n1001, -1\n1002,0\n1003,1.0\n")  # as a spreadsheet may write them
    assert read_labels(good).rows() == [(1000, 1), (1001, -1), (1002, 0), (1003, 1)]
    floats = tmp_path / "floats.parquet"  # Ids in a float column, as an earlier version read them
    pl.DataFrame({"Id": [1000.0, 1001.0], "label": [1, -1]}).write_parquet(floats)
    assert read_labels(floats).rows() == [(1000, 1), (1001, -1)]
    (tmp_path / "half.csv").write_text("Id,label\n1000.0,1\n1000.5,1\n")
    with pytest.raises(ValueError, match="row 1 \\(Id 1000.5; .*the Id is not a whole number"):
        read_labels(tmp_path / "half.csv")


def _project_without_a_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder, the current one, whose MLflow store (project/mlflow.db) is not there yet."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("LICANOM_MLFLOW_CONFIG", str(project / "mlflow.yaml"))  # its store: project/mlflow.db
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(project)
    return project


def test_report_of_a_run_folder_that_is_not_there_names_it_and_creates_nothing(tmp_path, capsys, monkeypatch):
    """`licanom report --run /nonexistent` took the path for an MLflow run id and created the
    project's mlflow.db to look it up before failing."""
    project = _project_without_a_store(tmp_path, monkeypatch)
    (project / "notes.txt").write_text("not a run folder")
    for given, what in ((tmp_path / "nonexistent", "does not exist"), ("nonexistent", "does not exist"),
                        (project / "notes.txt", "is not a folder")):
        assert main(["report", "--run", str(given)]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith(f"licanom: --run {given} {what}: give a run folder") and err.count("\n") == 1, err
        assert sorted(p.name for p in project.iterdir()) == ["notes.txt"]


def test_report_of_an_unknown_run_id_says_so_in_one_line_and_creates_no_store(tmp_path, capsys, monkeypatch):
    """`licanom report --run <32 hex digits>` created the project's mlflow.db to look the id up, and
    its message named MLflow's exception class; an existing store without the run says the same."""
    project = _project_without_a_store(tmp_path, monkeypatch)
    run_id = "0123456789abcdef0123456789abcdef"
    store = f"sqlite:///{project / 'mlflow.db'}"
    expected = f"licanom: --run {run_id}: no such run in the tracking store {store}"
    assert main(["report", "--run", run_id]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1 and "Exception" not in err, err
    assert list(project.iterdir()) == []
    from tests.mlflow_store import empty_store

    empty_store(project / "mlflow.db")  # a store, without that run
    capsys.readouterr()  # MLflow's own lines where it made the template store here
    assert main(["report", "--run", run_id]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1 and "Exception" not in err, err


def test_report_of_a_sequence_model_on_chunks(csv_export, tmp_path, capsys):
    """A model without per-column errors: chunks.parquet keeps null error_* columns, and the
    report rebuilt from the folder says why without inventing column errors."""
    out = tmp_path / "gru"
    assert main(["detect", "--logs", str(csv_export), "--model", "GRU_OCSVM", "--epochs", "1", "--out", str(out)]) == EXIT_OK
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("GRU_OCSVM "))
    assert row.split()[3] == "n/a"  # M1 on, but a sequence model has none: neither off nor none found
    chunks = pl.read_parquet(out / "chunks.parquet")
    assert chunks["error_key"].null_count() == chunks.height and chunks["top_feature"].null_count() == chunks.height
    assert main(["report", "--run", str(out)]) == EXIT_OK
    import re

    page = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", (out / "report.html").read_text())
    assert not re.search(r"\bnan\b", page, re.IGNORECASE) and not re.search(r"\bNone\b", page)


def test_detect_with_the_context_model_names_the_signal(csv_export, tmp_path, monkeypatch):
    """IForest_context through `licanom detect`: the chunk contract, its model file, the context
    column of each chunk as top_feature, and the report saying why in words."""
    from pathlib import Path

    from licanom.data.context_vector import CONTEXT_COLUMNS, CONTEXT_LABELS
    from licanom.detectors.context import ContextDetector

    # a vendor whose forests have 50 trees (200 by default: each fit grows about 20 forests, M1 more)
    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((Path(__file__).parent.parent / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / "forest.yaml").write_text("context: {n_estimators: 50}\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    out = tmp_path / "ctx"
    assert main(["detect", "--vendor", "forest", "--logs", str(csv_export), "--model", "IForest_context",
                 "--threshold", "quantile", "--out", str(out)]) == EXIT_OK
    chunks = pl.read_parquet(out / "chunks.parquet")
    assert tuple(chunks.columns) == CHUNK_COLUMNS and chunks.height == 12
    assert set(chunks["top_feature"]) <= set(CONTEXT_COLUMNS) and chunks["error_key"].null_count() == 12
    det = ContextDetector.load(out / "models" / "IForest_context.pt")
    assert det.threshold_ == chunks["threshold"][0] and det.threshold_method_ == "quantile"
    assert det.n_estimators == 50  # the vendor's file reached the detector
    m2 = tmp_path / "ctx-m2"  # --threshold reaches the context models too
    assert main(["detect", "--vendor", "forest", "--logs", str(csv_export), "--model", "IForest_context",
                 "--threshold", "M2", "--no-m1", "--out", str(m2)]) == EXIT_OK
    assert ContextDetector.load(m2 / "models" / "IForest_context.pt").threshold_method_ == "M2"
    flagged = chunks.filter(pl.col("is_anomaly"))
    assert flagged.height >= 1  # quantile: the top 1% of the training scores, here one training chunk
    page = (out / "report.html").read_text()
    assert f"most unusual: {CONTEXT_LABELS[flagged['top_feature'][0]]}" in page
    # the frames table names its top signals in words, as the incidents table does
    import re

    rows = re.findall(r'<tr class="anomaly-row".*?</tr>', page, flags=re.S)
    assert rows and not [c for c in CONTEXT_COLUMNS if any(f">{c}" in r or f" {c}," in r for r in rows)], rows[0]


def test_detect_on_few_training_chunks_says_so_in_one_line(csv_export, tmp_path, capsys):
    """A tiny log printed "warning: only 10 training chunk(s) ..." and, after training, a caution
    saying much the same; now one line says both, and the report's header keeps the caution."""
    from licanom.detectors.context import ContextDetector

    out = tmp_path / "tail"
    assert main(["detect", "--logs", str(csv_export), "--model", "Tail_context", "--out", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out
    n = ContextDetector.load(out / "models" / "Tail_context.pt").calibration_.n
    caution = f"caution: Tail_context: its severity is calibrated on {n} training chunks, fewer than the 16"
    lines = [line for line in printed.splitlines() if "training chunk(s)" in line or line.startswith(("caution", "warning"))]
    assert len(lines) == 1 and lines[0].startswith(caution), lines
    assert lines[0].endswith("until it is trained on more days (the log holds only 10 training chunk(s), 1,000 "
                             "requests: judge flags with care, or give a longer log)"), lines
    assert caution in (out / "report.html").read_text()


# --- refusals: one line, the option's name, exit 2, no traceback ------------------------------

@pytest.mark.parametrize("argv, named", [
    (["detect", "--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (["detect", "--epochs", "-1"], "argument --epochs: must be at least 1, got -1"),
    (["prepare", "--chunk-size", "0"], "argument --chunk-size: must be at least 2, got 0"),
    (["prepare", "--stride", "-3"], "argument --stride: must be at least 1, got -3"),
    (["simulate", "--days", "0"], "argument --days: must be at least 1, got 0"),
    (["detect", "--contamination", "1.5"], "argument --contamination: must be > 0 and < 1, got 1.5"),
    (["detect", "--period-hours", "0"], "argument --period-hours: must be above 0, got 0"),
    (["detect", "--model", "NoSuchModel"], "argument --model: unknown model 'NoSuchModel'; valid: LSTM_AE"),
    (["detect", "--vendor", "nosuchvendor"], "argument --vendor: unknown vendor 'nosuchvendor'"),
])
def test_nonsense_is_refused_in_one_line(argv, named, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", str(tmp_path / "o")])
    assert exit_.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_an_unknown_vendor_lists_the_vendors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--vendor", "nosuchvendor", "--out", str(tmp_path)])
    assert "vendors: demo" in capsys.readouterr().err


def test_run_with_an_unknown_vendor_is_exit_2_in_one_line(tmp_path):
    """`licanom run score --vendor nosuchvendor`: refused before Prefect starts."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run([sys.executable, "-m", "licanom.cli", "run", "score", "--vendor", "nosuchvendor"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.count("\n") == 1 and "unknown vendor 'nosuchvendor'" in done.stderr and "vendors: demo" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "prefect").exists()  # nothing was started


@pytest.mark.parametrize(("flow", "shown", "not_shown"), [
    ("score", ("--vendor", "--since", "--api-attempts"), ("--until", "--models")),
    ("train", ("--vendor", "--api-attempts", "--until", "--models"), ("--since",)),
    ("nightly", ("--api-attempts",), ("--vendor", "--since", "--until", "--models")),
])
def test_each_run_flow_has_a_help_of_its_own(flow, shown, not_shown, capsys):
    """`licanom run score --help` printed `licanom run`'s help, every flow's options together."""
    from flows.run import main as run_main

    with pytest.raises(SystemExit) as exit_:
        run_main([flow, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: licanom run {flow} "), out
    for option in shown:
        assert option in out, (option, out)
    for option in not_shown:
        assert option not in out, (option, out)


@pytest.mark.parametrize(("argv", "expected"), [
    (["--vendor", "demo", "score"], ("score", "demo", None, 6)),
    (["--api-attempts", "2", "score"], ("score", None, None, 2)),
    (["--since", "4", "score"], ("score", None, 4, 6)),
    (["score", "--vendor", "demo", "--since", "4", "--api-attempts", "2"], ("score", "demo", 4, 2)),
    (["--vendor", "demo", "--api-attempts", "3", "train"], ("train", "demo", None, 3)),
    (["--api-attempts", "3", "nightly"], ("nightly", None, None, 3)),
    (["--api-attempts", "3", "--since", "1", "score", "--api-attempts", "5", "--since", "7"], ("score", None, 7, 5)),
])
def test_run_options_may_come_before_or_after_the_flow(argv, expected, monkeypatch):
    """`licanom run --vendor demo score` (as cron lines written before the sub-commands have it)
    exited 2, "argument FLOW: invalid choice: 'demo'"; given on both sides, the flow's own wins."""
    from flows.run import build_parser

    monkeypatch.delenv("LICANOM_API_ATTEMPTS", raising=False)
    args = build_parser().parse_args(argv)
    assert (args.flow, args.vendor, args.since, args.api_attempts) == expected


@pytest.mark.parametrize(("argv", "words"), [
    (["--vendor", "demo", "nightly"], "licanom run score --vendor demo"),
    (["--since", "4", "train"], "--since is for score"),
])
def test_run_refuses_an_option_before_a_flow_that_takes_none(argv, words, capsys):
    from flows.run import main as run_main

    with pytest.raises(SystemExit) as exit_:
        run_main(argv)
    assert exit_.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


def test_run_train_takes_the_flows_until_and_models():
    """The training flow takes ``until`` and ``models`` (as `make demo` and a deployment's run
    pass them), but `licanom run train` had no option for either."""
    from datetime import UTC, datetime

    from flows.run import _train_arguments, build_parser

    args = build_parser().parse_args(["train", "--vendor", "demo", "--until", "2024-05-01",
                                      "--models", "Tail_context,TCN_AE"])
    assert _train_arguments(args) == {"until": datetime(2024, 5, 1), "models": ["Tail_context", "TCN_AE"]}
    args = build_parser().parse_args(["--until", "2024-05-01T02:30+02:00", "--models", "all", "train"])
    assert _train_arguments(args) == {"until": datetime(2024, 5, 1, 0, 30, tzinfo=UTC), "models": ["all"]}
    assert _train_arguments(build_parser().parse_args(["train"])) == {"until": None, "models": None}


@pytest.mark.parametrize(("argv", "words"), [
    (["train", "--until", "May 1st"], "argument --until: expected an ISO 8601 date or time"),
    (["train", "--models", "TCN"], "argument --models: unknown model 'TCN'"),
    (["score", "--until", "2024-05-01"], "--until is for train"),
    (["--models", "TCN_AE", "nightly"], "--models is for train"),
])
def test_run_refuses_a_bad_until_or_models_and_either_outside_train(argv, words, capsys):
    from flows.run import main as run_main

    with pytest.raises(SystemExit) as exit_:
        run_main(argv)
    assert exit_.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


def test_a_configuration_error_is_one_sentence_naming_the_setting(tmp_path, monkeypatch, capsys, csv_export):
    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((Path(__file__).parent.parent / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / "acme.yaml").write_text("train:\n  epochs: 0\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    code = main(["detect", "--vendor", "acme", "--logs", str(csv_export), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err == ("licanom: configuration error: train.epochs: input should be greater than or equal to 1 (got 0) "
                   f"(settings from the command line over {conf / 'vendors' / 'acme.yaml'} over {conf / 'defaults.yaml'})\n")
    # a YAML syntax error names the file, the line and the column
    (conf / "vendors" / "acme.yaml").write_text("train:\n  epochs: 3\nsource:\n  path: [oops\n")
    code = main(["detect", "--vendor", "acme", "--logs", str(csv_export), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1
    assert err.startswith(f"licanom: configuration error: {conf / 'vendors' / 'acme.yaml'} line 5 column 1: YAML syntax error: ")


def test_a_configuration_error_names_the_files_when_a_vendor_gained_a_second_one(tmp_path, monkeypatch, capsys,
                                                                                 csv_export):
    """The message's vendor file is looked up again after the error: a conf/vendors/<vendor>.yml
    written beside its .yaml while the command ran made that look-up raise, a traceback in place
    of the configuration's one line."""
    import licanom.config

    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text((Path(__file__).parent.parent / "conf" / "defaults.yaml").read_text())
    (conf / "vendors" / "acme.yaml").write_text("train:\n  epochs: 0\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    load_config = licanom.config.load_config

    def load_then_a_second_file(*args, **kwargs):
        try:
            return load_config(*args, **kwargs)
        finally:
            (conf / "vendors" / "acme.yml").write_text("train:\n  epochs: 3\n")

    monkeypatch.setattr(licanom.config, "load_config", load_then_a_second_file)
    code = main(["detect", "--vendor", "acme", "--logs", str(csv_export), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err == ("licanom: configuration error: train.epochs: input should be greater than or equal to 1 (got 0) "
                   f"(settings from the command line over {conf / 'vendors' / 'acme.yaml'} or "
                   f"{conf / 'vendors' / 'acme.yml'} over {conf / 'defaults.yaml'})\n")


def test_a_conf_folder_without_defaults_yaml_is_exit_2_in_one_line(tmp_path, monkeypatch, capsys, csv_export):
    """With conf/defaults.yaml moved away, detect ran on the code's own defaults (another encoder)
    without a word, and `licanom run score` started Prefect and failed with a traceback and exit 4
    (the log source's code): both now refuse before reading anything, with 2 and one line."""
    import flows.run as run

    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "vendors" / "demo.yaml").write_text("source: {kind: simulate}\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    missing = f"{conf / 'defaults.yaml'} not found: a configuration folder needs its defaults.yaml"
    code = main(["detect", "--logs", str(csv_export), "--model", "TCN_AE", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and err.startswith(f"licanom: configuration error: {missing}"), err
    assert not (tmp_path / "o").exists()
    import tasks.api

    # what came next: Prefect's API, here a stand-in that stops the run (4) where it was not refused
    monkeypatch.setattr(tasks.api, "wait_for_api", lambda attempts: "not refused")
    assert run.main(["score", "--vendor", "demo"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"licanom: configuration error for vendor 'demo': {missing}"), err


def test_run_nightly_checks_the_defaults_once_before_any_vendor(tmp_path, monkeypatch, capsys):
    """`licanom run nightly` read no configuration before it started Prefect: a conf/defaults.yaml
    missing or broken failed each vendor in turn, and the run ended with 1. Now, as score and train
    do for a vendor, it is refused before anything runs: 2 and one line naming the file."""
    import flows.run as run
    import tasks.api

    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    for vendor in ("acme", "demo"):
        (conf / "vendors" / f"{vendor}.yaml").write_text("source: {kind: simulate}\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    # what came next: Prefect's API, here a stand-in that stops the run (4) where it was not refused
    monkeypatch.setattr(tasks.api, "wait_for_api", lambda attempts: "not refused")
    assert run.main(["nightly"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == (f"licanom: configuration error: {conf / 'defaults.yaml'} not found: a configuration folder needs "
                   "its defaults.yaml (copy the repository's conf/defaults.yaml there)\n"), err
    (conf / "defaults.yaml").write_text("train:\n  epochs: [\n")
    assert run.main(["nightly"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"licanom: configuration error: {conf / 'defaults.yaml'} line "), err
    (conf / "defaults.yaml").write_text("train: {models: Tail_context, IForest_context}\n")  # a list without brackets
    assert run.main(["nightly"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "configuration error: " in err and str(conf / "defaults.yaml") in err, err
    # the defaults' settings are judged with each vendor's own: a Cryptolens source whose product each
    # vendor's file names is no error of the defaults alone (the whole nightly run was refused for it)
    (conf / "defaults.yaml").write_text("source:\n  kind: cryptolens\n")
    for vendor in ("acme", "demo"):
        (conf / "vendors" / f"{vendor}.yaml").write_text("source: {product_id: 123}\n")
    assert run.main(["nightly"]) == EXIT_SOURCE and "not refused; nothing was run" in capsys.readouterr().err


def test_run_nightly_with_no_vendor_is_refused_naming_the_folder(tmp_path, monkeypatch, capsys):
    """`licanom run nightly` with conf/vendors/ empty or missing scored nothing and ended with 0: a
    scheduled night that silently did nothing. Refused before anything runs, as a configuration
    error (2), in one line naming the folder it looked in."""
    import flows.run as run
    import tasks.api

    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "defaults.yaml").write_text((Path(__file__).resolve().parent.parent / "conf" / "defaults.yaml").read_text())
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    # what came next: Prefect's API, here a stand-in that stops the run (4) where it was not refused
    monkeypatch.setattr(tasks.api, "wait_for_api", lambda attempts: "not refused")
    folder = conf / "vendors"
    assert run.main(["nightly"]) == EXIT_USAGE
    assert capsys.readouterr().err == (f"licanom: configuration error: no vendors configured: {folder} does not exist "
                                       "(add one file per vendor)\n")
    folder.mkdir()
    (folder / "Acme.yaml").write_text("source: {kind: simulate}\n")  # no vendor's name: no vendor
    assert run.main(["nightly"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"licanom: configuration error: no vendors configured: no <vendor>.yaml or .yml in {folder} "
                          f"(add one file per vendor); ignored, not vendors: {folder / 'Acme.yaml'} (") and \
        err.count("\n") == 1, err
    (folder / "acme.yaml").write_text("source: {kind: simulate}\n")
    assert run.main(["nightly"]) == EXIT_SOURCE and "not refused; nothing was run" in capsys.readouterr().err


def test_run_nightly_ends_with_the_exit_code_its_vendors_failures_share(monkeypatch, capsys):
    """`licanom run nightly` ended with 1 whatever its vendors failed on, where `licanom run score`
    ends with 4 for a missing log file (3 for a log that cannot be used, 2 for a setting or no
    champion). Each vendor's failure now has the code score gives it, and nightly ends with the
    code they share, or 1 where they differ."""
    from prefect.states import Completed, Failed

    import flows.run as run
    from licanom.config import VendorConfigError, report_outcomes
    from licanom.data.extract.files import ExtractFileError
    from licanom.data.validate import ValidationError
    from tasks.vendors import vendor_outcome

    def failed(err: Exception) -> Failed:
        return Failed(message=str(err), data=err)

    gone = ExtractFileError("log file /data/acme.csv does not exist")
    outcomes = [vendor_outcome("alpha", Completed()), vendor_outcome("acme", failed(gone)),
                vendor_outcome("beta", failed(ExtractFileError("log file /data/beta.csv does not exist")))]
    assert [code for *_, code in outcomes] == [0, 4, 4]
    assert vendor_outcome("typo", failed(VendorConfigError("configuration error for vendor 'typo': ...")))[3] == 2
    assert vendor_outcome("bad", failed(ValidationError("too many bad rows")))[3] == 3
    from licanom.data.extract.cryptolens import ExtractError

    assert vendor_outcome("remote", failed(ExtractError("the Cryptolens API answered 503")))[3] == 4  # as prepare
    assert vendor_outcome("bug", failed(ZeroDivisionError("a bug")))[3] == 1
    assert vendor_outcome("crashed", Failed(message="the process died"))[3] == 1  # no error to read
    report = report_outcomes(outcomes)
    assert report.failed == ("acme", "beta") and report.exit_code == 4
    night = {"state": Failed(message=report.message, data=report.error)}
    monkeypatch.setattr(run, "_run", lambda args, interrupt: night["state"])
    assert run.main(["nightly"]) == EXIT_SOURCE
    assert capsys.readouterr().err == "licanom: nightly flow failed: 2 of 3 vendors failed: acme, beta\n"
    # failures of different kinds: 1, each vendor's own line says what it failed on
    mixed = report_outcomes([*outcomes, vendor_outcome("bad", failed(ValidationError("too many bad rows")))])
    assert mixed.exit_code == 1
    night["state"] = Failed(message=mixed.message, data=mixed.error)
    assert run.main(["nightly"]) == 1
    assert capsys.readouterr().err == "licanom: nightly flow failed: 3 of 4 vendors failed: acme, beta, bad\n"
    assert report_outcomes(outcomes[:1]).exit_code == 0


def test_version_help_defaults_and_subcommand_usage(capsys):
    from licanom import __version__
    from licanom.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"licanom {__version__}"
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: licanom evaluate ") and "(default: 21)" in out
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, sub in subparsers.choices.items():
        if name == "run":
            continue
        text = sub.format_help()
        assert text.startswith(f"usage: licanom {name} "), name
        # each option's help says its default once (simulate --format read "(default: parquet) (default: parquet)")
        for option in re.split(r"\n  (?=-)", text):
            assert " ".join(option.split()).count("(default:") <= 1, f"{name}: {option}"
        for action in sub._actions:
            if action.option_strings and action.help not in (None, "==SUPPRESS==") and action.dest != "help":
                shown = " ".join(sub.format_help().split())
                help_text = " ".join((action.help or "").split())
                assert action.default is False or "default" in help_text or "(default:" in shown, \
                    f"{name} {action.option_strings}: no default shown"


def test_evaluate_help_names_every_encoder_and_says_mlflow_logs_unless_told_not_to(capsys):
    """`licanom evaluate --help` offered thesis and frequency only, refusing the rows encoder the
    configuration takes, and said "(default: True)" for --no-mlflow, as if MLflow were off unless
    asked for; the encoders are now the library's own list, and a flag says its default in words."""
    from licanom.cli import build_parser
    from licanom.data.encode import ENCODERS
    from licanom.evaluation.cli import settings_from

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "rows" in ENCODERS and f"--encoder {{{','.join(ENCODERS)}}} " in out, out
    assert "(default: True)" not in out and "mlflow.yaml (by default it is logged)" in out, out
    args = build_parser().parse_args(["evaluate", "--encoder", "rows", "--no-mlflow"])
    assert (args.mlflow, settings_from(args).encode.encoder) == (False, "rows")
    assert build_parser().parse_args(["evaluate"]).mlflow is True


# --- train on one log, score another -----------------------------------------------------------

@pytest.fixture(scope="module")
def two_logs(tmp_path_factory):
    """Two days of one vendor's log, as two files: train on the first, score the second."""
    from datetime import datetime, UTC

    folder = tmp_path_factory.mktemp("two")
    first = make_raw_log(1500, seed=1)
    second = make_raw_log(900, seed=2, start=datetime(2025, 3, 3, tzinfo=UTC)).with_columns(pl.col("Id") + 10_000)
    first.write_parquet(folder / "a.parquet")
    second.write_parquet(folder / "b.parquet")
    return folder / "a.parquet", folder / "b.parquet", second


def test_train_on_one_log_and_score_another(two_logs, tmp_path, capsys):
    from licanom.detectors.context import ContextDetector

    a, b, second = two_logs
    out = tmp_path / "ab"
    assert main(["detect", "--train-logs", str(a), "--logs", str(b), "--model", "Tail_context", "--threshold", "quantile",
                 "--out", str(out)]) == EXIT_OK
    chunks = pl.read_parquet(out / "chunks.parquet")
    assert tuple(chunks.columns) == CHUNK_COLUMNS
    assert chunks.height == second.height // 100 and set(chunks["split"]) == {"score"}
    assert chunks["first_id"].min() == second["Id"].min()  # the second log's rows, all of them in order
    assert chunks["last_id"].max() <= second["Id"].max()
    det = ContextDetector.load(out / "models" / "Tail_context.pt")
    assert (chunks["threshold"] == det.threshold_).all()
    assert (chunks["is_anomaly"] == (chunks["score"] > det.threshold_)).all()
    printed = capsys.readouterr().out
    assert "scored log" in printed and "entities flagged" in printed
    # where each log's quarantined rows went (the training log's apart)
    assert f"-> {out / 'train-quarantine.parquet'}" in printed and f"quarantined ({out / 'quarantine.parquet'})" in printed
    assert (out / "train-quarantine.parquet").exists() and (out / "quarantine.parquet").exists()
    assert "held-out" not in printed and "\ndecision: quantile" in printed  # every chunk of the other log scored
    assert "the training log does not hold" not in printed  # the same products
    # entities of the scored log's rows, judged by a model fitted on the training log
    entities = pl.read_parquet(out / "entities.parquet")
    assert tuple(entities.columns) == ENTITY_COLUMNS
    assert entities["first_id"].min() >= second["Id"].min() and entities["last_id"].max() <= second["Id"].max()
    assert entities.filter(pl.col("entity_kind") == "key-day")["requests"].sum() == second.height
    page = (out / "report.html").read_text()
    assert "<html" in page
    # the incidents name whom the model counted: above the levels, usual days and hours it learned
    # from the training log
    from licanom.data.context_vector import entity_levels
    from licanom.data.derive import derive
    from licanom.data.validate import validate_log
    from licanom.ops.nightly import night_incidents

    levels = entity_levels(derive(validate_log(pl.read_parquet(a)).valid))
    expected = night_incidents(chunks, derive(validate_log(second).valid), levels)
    incidents = pl.read_parquet(out / "incidents.parquet")
    assert incidents.height and incidents.equals(expected)
    assert levels.filter(pl.col("signal") == "key_requests_day").height  # the usual days were there to count with


def test_rows_of_a_product_the_training_log_lacks_are_scored_and_counted(two_logs, tmp_path, capsys):
    a, _, second = two_logs
    other = tmp_path / "other_product.parquet"
    unseen = 987_654
    second.with_columns(pl.when(pl.int_range(pl.len()) < 150).then(unseen).otherwise(pl.col("ProductId"))
                        .cast(second.schema["ProductId"]).alias("ProductId")).write_parquet(other)
    out = tmp_path / "mixed"
    assert main(["detect", "--train-logs", str(a), "--logs", str(other), "--model", "Tail_context", "--out", str(out)]) == EXIT_OK
    printed = capsys.readouterr().out
    assert f"note: 150 of its valid rows are of product(s) the training log does not hold ({unseen})" in printed
    assert pl.read_parquet(out / "chunks.parquet").height == second.height // 100  # scored all the same


def test_train_on_one_log_and_score_another_per_key(two_logs, tmp_path):
    from licanom.detectors.sequence.sessions import SEQUENCE_COLUMNS

    a, b, second = two_logs
    out = tmp_path / "keys"
    assert main(["detect", "--train-logs", str(a), "--logs", str(b), "--model", "GRU_SVDD", "--sequences", "key",
                 "--period-hours", "12", "--contamination", "0.05", "--epochs", "1", "--out", str(out)]) == EXIT_OK
    seqs = pl.read_parquet(out / "sequences.parquet")
    assert tuple(seqs.columns) == SEQUENCE_COLUMNS and set(seqs["split"]) == {"score"}
    assert seqs["requests"].sum() == second.height and set(seqs["key"]) == set(second["Key"])
    assert seqs["first_id"].min() == second["Id"].min()
    # 12-hour periods: every sequence within half a day
    assert ((seqs["end_time"] - seqs["start_time"]).dt.total_hours() < 12).all()
    entities = pl.read_parquet(out / "entities.parquet")
    assert tuple(entities.columns) == ENTITY_COLUMNS and entities["first_id"].min() >= second["Id"].min()


def test_the_command_line_imports_no_benchmark() -> None:
    """`licanom` (and its evaluate command) is library code: nothing of benchmarks/ comes with it."""
    import subprocess
    import sys

    code = ("import sys, licanom.cli, licanom.evaluation.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('benchmarks', 'flows', 'tasks', 'prefect')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_prepare_says_how_many_reasons_it_does_not_list(tmp_path, capsys):
    """Five quarantine reasons are listed, and the count of the others with their rows, where those
    are several: 7 reasons read "and 2 more reason(s)", a line that took the room of the two it hid;
    they are all listed now, and 9 are cut to 5 and "and 4 more reasons"."""
    def listed(extra: bool) -> list[str]:
        raw = make_raw_log(2000).with_columns(pl.all().cast(pl.String))
        bad = {"State": "9999", "IP": "not-an-address", "Key": "", "Time": "1800-01-01T00:00:00Z",
               "ProductId": "abc", "Id": "xyz", "MachineCode": "m" * 5000}
        if extra:  # the data objects' columns, each with a bad value
            raw = raw.with_columns(pl.lit("1").alias("DOIntValue"), pl.lit("2").alias("DOId"))
            bad |= {"DOIntValue": "abc", "DOId": "x"}
        raw = raw.with_columns(pl.when(pl.int_range(pl.len()) == i).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
                               for i, (c, v) in enumerate(bad.items()))
        path = tmp_path / f"log-{extra}.csv"
        raw.write_csv(path)
        assert main(["prepare", "--logs", str(path), "--out", str(tmp_path / f"o-{extra}")]) == EXIT_OK
        out = capsys.readouterr().out
        return out.split("rows quarantined", 1)[1].split("chunks", 1)[0].strip().splitlines()[1:]

    seven = listed(extra=False)
    assert len(seven) == 7 and not any("more reason" in line for line in seven), seven
    nine = listed(extra=True)
    assert len(nine) == 6 and nine[-1].strip() == "and 4 more reasons, on 4 rows in all", nine


def test_prepare_warns_when_the_log_gives_too_few_training_chunks(tmp_path, capsys):
    from licanom.cli import FEW_TRAINING_CHUNKS

    small, enough = tmp_path / "small.csv", tmp_path / "enough.csv"
    make_raw_log(500).write_csv(small)  # 5 chunks: 4 to train
    make_raw_log(100 * (FEW_TRAINING_CHUNKS + 6)).write_csv(enough)
    assert main(["prepare", "--logs", str(small), "--out", str(tmp_path / "a")]) == EXIT_OK
    assert "warning: only 4 training chunk(s) (400 requests)" in capsys.readouterr().out
    assert main(["prepare", "--logs", str(enough), "--out", str(tmp_path / "b")]) == EXIT_OK
    assert "warning: only" not in capsys.readouterr().out


def test_prepare_reads_the_time_format_it_is_given(tmp_path, capsys, monkeypatch):
    raw = make_raw_log(1200)
    local = raw.with_columns(pl.col("Time").dt.strftime("%m/%d/%Y %I:%M:%S %p"))
    path = tmp_path / "us.csv"
    local.write_csv(path)
    assert main(["prepare", "--logs", str(path), "--out", str(tmp_path / "a")]) == EXIT_BAD_INPUT
    assert "Time: unparsable" in capsys.readouterr().err
    assert main(["prepare", "--logs", str(path), "--time-format", "%m/%d/%Y %I:%M:%S %p",
                 "--out", str(tmp_path / "b")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "rows valid" in out and f"{raw.height:>12,}" in out.split("rows valid", 1)[1].splitlines()[0]
    # a vendor's own files: the option applies without --logs
    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "defaults.yaml").write_text("source: {kind: files}\n")
    (conf / "vendors" / "acme.yaml").write_text(f"source: {{path: '{path}'}}\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    assert main(["prepare", "--vendor", "acme", "--out", str(tmp_path / "c")]) == EXIT_BAD_INPUT
    capsys.readouterr()
    assert main(["prepare", "--vendor", "acme", "--time-format", "%m/%d/%Y %I:%M:%S %p",
                 "--out", str(tmp_path / "d")]) == EXIT_OK


def test_prepare_reads_times_in_the_time_zone_it_is_given(tmp_path, capsys):
    """--timezone: the log's naive times are that zone's; the prepared rows hold them in UTC."""
    raw = make_raw_log(1200)
    path = tmp_path / "local.csv"
    raw.with_columns(pl.col("Time").dt.strftime("%Y-%m-%d %H:%M:%S")).write_csv(path)
    assert main(["prepare", "--logs", str(path), "--out", str(tmp_path / "utc")]) == EXIT_OK
    assert main(["prepare", "--logs", str(path), "--timezone", "Asia/Tokyo", "--out", str(tmp_path / "tokyo")]) == EXIT_OK
    from datetime import timedelta

    utc = pl.read_parquet(tmp_path / "utc" / "chunk_meta.parquet")
    tokyo = pl.read_parquet(tmp_path / "tokyo" / "chunk_meta.parquet")
    assert (utc["start_time"] - tokyo["start_time"]).unique().to_list() == [timedelta(hours=9)]
    capsys.readouterr()
    assert main(["prepare", "--logs", str(path), "--timezone", "Mars/Olympus", "--out", str(tmp_path / "x")]) == EXIT_USAGE
    assert "unknown time zone 'Mars/Olympus'" in capsys.readouterr().err


def test_a_log_reader_that_goes_away_does_not_end_the_run() -> None:
    """Standard error as `licanom` hands it on: the console handler Prefect's logs are written with
    (rich) exits the process on a broken pipe; through the wrapper the rest goes to the null device."""
    import os

    from rich.console import Console

    from licanom.cli import ReaderMayGo

    for wrapped in (False, True):
        read, write = os.pipe()
        os.close(read)  # the reader went away (`licanom run ... 2>&1 | head -1`)
        stream = os.fdopen(write, "w")
        console = Console(file=ReaderMayGo(stream) if wrapped else stream, force_terminal=False)
        try:
            if wrapped:
                for _ in range(3):
                    console.print("a night's log line")  # goes nowhere, and the run goes on
            else:
                with pytest.raises(SystemExit):
                    console.print("a night's log line")
        finally:
            with contextlib.suppress(OSError):
                stream.close()


def test_licanom_run_hands_its_flows_standard_error_that_outlives_its_reader(monkeypatch) -> None:
    """`licanom run` (flows.run.main) wraps standard output and error before Prefect is imported, and
    puts them back after."""
    import flows.run as run
    from licanom.cli import ReaderMayGo

    seen = {}

    def inside(argv):  # type: ignore[no-untyped-def]
        seen["wrapped"] = isinstance(sys.stderr, ReaderMayGo) and isinstance(sys.stdout, ReaderMayGo)
        return 0

    before = sys.stderr
    monkeypatch.setattr(run, "_main", inside)
    assert run.main(["score"]) == 0 and seen["wrapped"] and sys.stderr is before


def test_a_command_without_a_log_says_what_to_give(tmp_path, capsys, monkeypatch):
    """Neither --logs nor a vendor whose files source has a path: one line saying what to give,
    not the configuration's own words."""
    assert main(["prepare", "--out", str(tmp_path / "o")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("licanom: no log to read: give --logs FILE") and "source.path" not in err
    assert main(["detect", "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert "no log to read" in capsys.readouterr().err
    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    from licanom.config import default_conf_dir

    (conf / "defaults.yaml").write_text((default_conf_dir() / "defaults.yaml").read_text())
    (conf / "vendors" / "beta.yaml").write_text("source:\n  kind: files\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    assert main(["prepare", "--vendor", "beta", "--out", str(tmp_path / "o")]) == EXIT_USAGE
    assert f"vendor beta's source.path is not set ({conf / 'vendors' / 'beta.yaml'})" in capsys.readouterr().err


def test_detect_takes_every_decision_by_name_severity_first():
    """--threshold offered the thesis's thresholds only, though severity is every family's default."""
    from licanom.cli import build_parser
    from licanom.detectors.decision import DECISIONS

    detect = build_parser()._subparsers._group_actions[0].choices["detect"]  # type: ignore[union-attr]
    option = next(a for a in detect._actions if "--threshold" in a.option_strings)
    assert list(option.choices) == list(DECISIONS) and DECISIONS[0] == "severity"
    assert "severity for both" in " ".join((option.help or "").split())


def test_an_unknown_model_and_the_models_help_say_what_all_and_sequence_are_from_the_catalog():
    """--model's refusal said "sequence (the four Ergen models and DeepLog)" and its help "the eight
    autoencoders", written by hand: the counts and names now come from the catalog, as the
    configuration's do."""
    import argparse

    from licanom.cli import build_parser, model_names
    from licanom.detectors.catalog import AUTOENCODERS, ERGEN_MODELS, NEXT_EVENT_MODELS

    sequence = (*ERGEN_MODELS, *NEXT_EVENT_MODELS)
    with pytest.raises(argparse.ArgumentTypeError) as err:
        model_names("Nope")
    assert str(err.value).endswith(f"all (the {len(AUTOENCODERS)} autoencoders), sequence (the {len(sequence)} "
                                   f"sequence models: {', '.join(sequence)}) or auto"), err.value
    detect = build_parser()._subparsers._group_actions[0].choices["detect"]  # type: ignore[union-attr]
    option = next(a for a in detect._actions if "--model" in a.option_strings)
    assert (f"'all' (the {len(AUTOENCODERS)} autoencoders), 'sequence' (the {len(sequence)} sequence models: "
            f"{', '.join(sequence)})" in " ".join((option.help or "").split())), option.help


@pytest.mark.parametrize("flow", ["score", "train"])
def test_run_without_a_vendor_takes_the_demo_only_where_it_is_the_only_vendor(flow, tmp_path, monkeypatch, capsys):
    """`licanom run score` without --vendor scored the demo vendor in silence, whatever else was
    configured (a cron line that lost its --vendor scored the demo every night). With the demo alone
    it still does, and says so; beside other vendors --vendor is needed, refused in one line (2)."""
    import flows.run as run

    conf = tmp_path / "conf"
    (conf / "vendors").mkdir(parents=True)
    (conf / "vendors" / "demo.yaml").write_text("source: {kind: simulate}\n")
    monkeypatch.setenv("LICANOM_CONF_DIR", str(conf))
    ran: list[str] = []
    monkeypatch.setattr(run, "_run", lambda args, interrupt: ran.append(args.vendor) or 0)
    assert run.main([flow]) == 0 and ran == ["demo"]
    assert capsys.readouterr().out == f"licanom run {flow}: vendor demo, the only one in conf/vendors/ (--vendor V for another)\n"
    (conf / "vendors" / "acme.yaml").write_text("source: {kind: simulate}\n")
    for argv in ([flow], ["--api-attempts", "2", flow]):
        with pytest.raises(SystemExit) as exit_:
            run.main(argv)
        assert exit_.value.code == EXIT_USAGE and ran == ["demo"]
        assert capsys.readouterr().err == (f"licanom run: error: {flow} needs --vendor V: vendors: acme, demo "
                                           "(see licanom run --help)\n")
    assert run.main([flow, "--vendor", "demo"]) == 0 and ran == ["demo", "demo"]
    assert capsys.readouterr().out == ""  # named: nothing to say
    (conf / "vendors" / "demo.yaml").unlink()
    (conf / "vendors" / "acme.yaml").unlink()
    with pytest.raises(SystemExit):
        run.main([flow])
    assert "needs --vendor V: vendors: none yet (add conf/vendors/<vendor>.yaml)" in capsys.readouterr().err


def test_a_log_of_one_file_without_a_required_column_is_refused_naming_the_file(csv_export, tmp_path, capsys):
    """A folder's file without a column was named; a log of one file was "the log", whatever its path."""
    short = tmp_path / "short.csv"
    pl.read_csv(csv_export).drop("MachineCode").write_csv(short)
    assert main(["prepare", "--logs", str(short), "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{short}: the log lacks required column(s) ['MachineCode']" in err[0], err
