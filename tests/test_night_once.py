"""A night computes each prepared value once: the rows' derived columns (one country look-up),
the context vectors, the pseudonymised rows; no window array for a model that never reads it;
the markdown summary and the report once per copy.

Counted over one tiny night (a Tail_context champion with entity results, 200 rows) by wrapping
the library's functions with counters.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from tests.night_harness import make_bundle, new_vendor, rows, tracker_for

SECRET_ENV = "LICANOM_TEST_ONCE_SECRET"


@pytest.fixture(scope="module")
def bundle():
    from licanom.ops.bundle import fit_entities
    from licanom.data.derive import derive
    from licanom.data.validate import validate_log

    return replace(make_bundle(), entity_model=fit_entities(derive(validate_log(rows(1000, 600)).valid)))


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    """One MLflow store for the module (creating one costs seconds); each test its own vendor."""
    return tracker_for(tmp_path_factory.mktemp("mlflow"))


@pytest.fixture
def calls(monkeypatch) -> Counter[str]:
    import licanom.ops.bundle
    import licanom.data.chunk
    import licanom.data.context_vector
    import licanom.data.derive
    import licanom.ops.nightly
    import licanom.data.privacy
    import licanom.report.render

    counts: Counter[str] = Counter()

    def count(module, name: str, as_name: str | None = None) -> None:  # type: ignore[no-untyped-def]
        real = getattr(module, name)

        @functools.wraps(real)
        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            counts[as_name or name] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    count(licanom.data.derive, "distinct_countries", "countries")  # every derivation looks the countries up
    count(licanom.data.context_vector, "_row_counts", "row_context")  # every computation of context vectors
    count(licanom.data.chunk, "_feature_windows", "window array")
    count(licanom.data.chunk, "_row_windows", "window array")
    count(licanom.data.privacy, "pseudonymise")
    count(licanom.ops.bundle, "pseudonymise")
    count(licanom.ops.nightly, "anomaly_report")    # the markdown summary
    count(licanom.report.render, "analyse")  # the HTML report's analysis
    return counts


def test_a_night_derives_and_computes_context_once(tmp_path, bundle, tracker, calls) -> None:
    v = new_vendor(tmp_path, "acme", bundle)
    v.start(1599)
    v.append(rows(1600, 200, seed=3))
    calls.clear()
    night = v.night(tracker)
    assert night.chunks.height == 10 and (night.out_dir / "entities.parquet").exists()
    assert (night.out_dir / "report.html").exists() and (night.out_dir / "incidents.parquet").exists()
    assert dict(calls) == {"countries": 1, "row_context": 1, "anomaly_report": 1, "analyse": 1}


def test_a_pseudonymised_night_makes_its_private_copy_from_the_same_prepared_rows(tmp_path, bundle, tracker, calls,
                                                                                 monkeypatch) -> None:
    """The copy for MLflow reuses the rows derived and pseudonymised once for the model. One
    context computation: the model's (pseudonymised rows, its key history and levels), which the
    report shows too (counts: the same for the real rows); two markdown summaries and two reports,
    of different contents (real and pseudonymised names)."""
    import licanom.ops.nightly

    monkeypatch.setenv(SECRET_ENV, "a-secret-of-more-than-16-characters")
    attributed = []
    real_incidents = licanom.ops.nightly.night_incidents

    def night_incidents(chunks, rows, levels=None):  # type: ignore[no-untyped-def]
        attributed.append((rows, levels))
        return real_incidents(chunks, rows, levels)

    monkeypatch.setattr(licanom.ops.nightly, "night_incidents", night_incidents)
    from licanom.data.context_vector import KeyHistory
    from licanom.data.derive import derive
    from licanom.data.privacy import pseudonymise, read_secret
    from licanom.data.validate import validate_log

    # the model of a pseudonymised vendor learned its levels from pseudonymised rows
    training = derive(pseudonymise(validate_log(rows(1000, 600)).valid, read_secret("private", SECRET_ENV)))
    pseudonymous = replace(bundle, pseudonym_env=SECRET_ENV, key_history=KeyHistory.from_rows(training, levels=True))
    v = new_vendor(tmp_path, "private", pseudonymous)
    v.start(1599)
    night_rows = rows(1600, 200, seed=3)  # the last 60 of them one machine's flood within a minute
    flood = night_rows.tail(60).with_columns(pl.lit("KEY001-ABCDE").alias("Key"), pl.lit("mc01").alias("MachineCode"),
                                             pl.col("Time").head(1).first().alias("Time"))
    v.append(pl.concat([night_rows.head(140), flood]))
    calls.clear()
    night = v.night(tracker)
    assert (night.out_dir / "for-tracking" / "report.html").exists()
    assert dict(calls) == {"countries": 1, "pseudonymise": 1, "row_context": 1, "anomaly_report": 2, "analyse": 2}
    # both copies' incidents count with the model's usual days (its levels), each in its own values
    assert night.chunks["is_anomaly"].any() and len(attributed) == 2
    real, private = attributed
    for (named_rows, levels), other in ((real, private[0]), (private, real[0])):
        keys = levels.filter(pl.col("Key") != "")["Key"]
        assert keys.len() and keys.is_in(named_rows["Key"].cast(pl.String).implode()).any()
        assert not keys.is_in(other["Key"].cast(pl.String).implode()).any()


def test_the_window_array_is_built_for_a_model_that_reads_it_only(bundle, calls) -> None:
    from licanom.ops.bundle import make_windows
    from licanom.data.validate import validate_log

    valid = validate_log(rows(1600, 200, seed=3)).valid
    context_windows = make_windows(bundle, valid)
    assert calls["window array"] == 0 and context_windows.chunks.X.shape == (10, 20, 0)

    class ReadsChunks:  # the protocol's ``reads``: what make_windows looks at
        reads = "chunks"

    windows = make_windows(replace(bundle, detector=ReadsChunks()), valid)
    assert calls["window array"] == 1 and windows.chunks.X.shape == (10, 20, 8)
    assert windows.chunks.meta.equals(context_windows.chunks.meta)


def test_the_demo_simulates_its_vendor_once(monkeypatch) -> None:
    """The demo's cut-off, its training and its night read one simulated log."""
    import licanom.sim
    from flows.demo import demo_cutoff
    from licanom.config import load_config
    from licanom.data.pipeline import extract, simulated_log

    real = licanom.sim.simulate
    runs = []

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        runs.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(licanom.sim, "simulate", counted)
    simulated_log.cache_clear()
    cfg = load_config(overrides={"vendor": "demo", "source": {"kind": "simulate", "profile": "floating", "seed": 11,
                                                              "days": 4}})
    until = demo_cutoff(cfg)
    training, night = extract(cfg.source, until=until), extract(cfg.source, after_id=int(extract(cfg.source)["Id"][0]))
    assert len(runs) == 1 and training.height > 0 and night.height > 0
    simulated_log.cache_clear()


def test_the_nights_console_line_counts_the_entities_its_report_flags(tmp_path, bundle, tracker) -> None:
    """A night that flags no chunk but an address-hour (40 keys new to the vendor from one address)
    says so on the console and in the demo's line, as its report.md does: not "0 flagged" alone."""
    from flows.demo import night_line

    v = new_vendor(tmp_path, "counted", bundle)
    v.start(1599)
    night_rows = rows(1600, 200, seed=3)
    guesses = night_rows.slice(80, 60).with_columns(pl.Series("Key", [f"NEW{i:03d}-ZZZZZ" for i in range(60)]),
                                                     pl.lit("9.9.9.9").alias("IP"), pl.lit("2010").alias("State"))
    v.append(pl.concat([night_rows.head(80), guesses, night_rows.slice(140)]))
    night = v.night(tracker)
    flagged = pl.read_parquet(night.out_dir / "entities.parquet")["is_anomaly"].sum()
    assert flagged > 0 and night.entities_flagged == flagged
    md = (night.out_dir / "report.md").read_text()
    said = f"{flagged} entit{'y' if flagged == 1 else 'ies'} flagged"
    assert f"; {said}" in md
    chunks = f"{night.n_anomalies} flagged"
    assert f"10 chunks scored, {chunks}, {said} by champion version 1 -> " in night.summary()[0]
    assert night_line(night) == f"nightly scoring: 200 new rows, 10 chunks, {chunks}, {said} (champion version 1)"
    # its MLflow run counts them too, beside the chunks (it counted the chunks only), under the
    # report's names: its flagged entities and its incidents
    experiment = tracker.client.get_experiment_by_name("licanom/counted/nightly").experiment_id
    (run,) = tracker.client.search_runs([experiment])
    metrics = run.data.metrics
    assert (metrics["flagged_entities"], metrics["incidents"]) == (flagged, night.incidents), metrics
    assert metrics["anomalies"] == night.n_anomalies and metrics["chunks_scored"] == 10


def _flagged_entities_night(v):  # type: ignore[no-untyped-def]
    """A night whose address-hour (60 keys new to the vendor from one address) is flagged."""
    v.start(1599)
    night_rows = rows(1600, 200, seed=3)
    guesses = night_rows.slice(80, 60).with_columns(pl.Series("Key", [f"NEW{i:03d}-ZZZZZ" for i in range(60)]),
                                                     pl.lit("9.9.9.9").alias("IP"), pl.lit("2010").alias("State"))
    v.append(pl.concat([night_rows.head(80), guesses, night_rows.slice(140)]))


def test_a_nights_flagged_entities_are_in_a_csv_beside_anomalies_csv_and_in_its_mlflow_run(tmp_path, bundle,
                                                                                            tracker) -> None:
    """The flagged entities that lead a night's report were in entities.parquet only: a user who opens
    anomalies.csv "for spreadsheets" saw none. flagged_entities.csv lists them as the report does
    (most severe first, severity a whole number, the reasons as why), and goes to MLflow with the report."""
    import math

    from mlflow.artifacts import download_artifacts

    v = new_vendor(tmp_path, "sheets", bundle)
    _flagged_entities_night(v)
    night = v.night(tracker)
    entities = pl.read_parquet(night.out_dir / "entities.parquet")
    flagged = entities.filter("is_anomaly").sort("severity", descending=True)
    assert flagged.height > 0 and night.entities_flagged == flagged.height
    sheet = pl.read_csv(night.out_dir / "flagged_entities.csv", try_parse_dates=True)
    assert sheet.columns == ["vendor", "run_id", "severity", "entity_kind", "entity", "start_time", "end_time",
                             "requests", "first_id", "last_id", "why"]
    assert sheet.height == flagged.height and set(sheet["vendor"]) == {"sheets"}
    assert set(sheet["run_id"]) == {night.out_dir.name}
    assert sheet["severity"].to_list() == [math.floor(s) for s in flagged["severity"]]
    assert sorted(zip(sheet["entity_kind"], sheet["entity"], sheet["why"], strict=True)) == sorted(
        zip(flagged["entity_kind"], flagged["entity"], flagged["reasons"], strict=True))
    md = (night.out_dir / "report.md").read_text()
    assert all(f"| {kind} {entity} |" in md for kind, entity in zip(sheet["entity_kind"], sheet["entity"], strict=True))
    experiment = tracker.client.get_experiment_by_name("licanom/sheets/nightly").experiment_id
    (run,) = tracker.client.search_runs([experiment])
    logged = Path(download_artifacts(run_id=run.info.run_id, artifact_path="flagged_entities.csv",
                                     tracking_uri=tracker.config.tracking_uri, dst_path=str(tmp_path / "logged")))
    assert logged.read_text() == (night.out_dir / "flagged_entities.csv").read_text()


def test_a_pseudonymised_nights_flagged_entities_csv_in_mlflow_names_no_real_key(tmp_path, bundle, tracker,
                                                                               monkeypatch) -> None:
    from mlflow.artifacts import download_artifacts

    monkeypatch.setenv(SECRET_ENV, "a-secret-of-more-than-16-characters")
    v = new_vendor(tmp_path, "hidden", replace(bundle, pseudonym_env=SECRET_ENV))
    _flagged_entities_night(v)
    night = v.night(tracker)
    own = pl.read_csv(night.out_dir / "flagged_entities.csv")
    private = pl.read_csv(night.out_dir / "for-tracking" / "flagged_entities.csv")
    assert own.height == private.height > 0
    assert own["entity"].str.contains("9.9.9.9", literal=True).any()  # the vendor's own copy: real values
    experiment = tracker.client.get_experiment_by_name("licanom/hidden/nightly").experiment_id
    (run,) = tracker.client.search_runs([experiment])
    logged = Path(download_artifacts(run_id=run.info.run_id, artifact_path="flagged_entities.csv",
                                     tracking_uri=tracker.config.tracking_uri, dst_path=str(tmp_path / "logged")))
    text = logged.read_text()
    assert text == (night.out_dir / "for-tracking" / "flagged_entities.csv").read_text()
    assert "9.9.9.9" not in text and "NEW0" not in text
