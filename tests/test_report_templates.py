"""The report's templates: hostile log values stay text, each detector family's score is named
as its own, who comes before when, and what the caller computed is not computed again."""

from __future__ import annotations

import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import numpy as np
import polars as pl
import pytest

from licanom.data.context_vector import CONTEXT_COLUMNS, CONTEXT_LABELS
from licanom.detectors.entities import ENTITY_SCHEMA
from licanom.detectors.incidents import INCIDENT_COLUMNS
from licanom.report import (
    Computed,
    ReportInput,
    anomaly_report,
    load_run,
    render_html,
    save_run,
    score_wording,
)
from tests.test_report import FLAGGED, SIZE, make_chunks, make_input, make_rows

SCRIPT_KEY = "<script>alert(1)</script>"
QUOTE_MACHINE = "mc\"' onmouseover=\"alert(2)"
AMP_ADDRESS = "10.0.0.1&amp;<b>bold</b>"
UNICODE_KEY = "ключ-🔑-キー"
HOSTILE = (SCRIPT_KEY, QUOTE_MACHINE, AMP_ADDRESS, UNICODE_KEY)
T0 = datetime(2025, 3, 1, tzinfo=UTC)


def hostile_rows() -> pl.DataFrame:
    """The test log with chunk 7 (flagged) from hostile keys, a quoting machine code and address."""
    rows = make_rows()
    i = pl.int_range(pl.len())
    in7 = (i >= 7 * SIZE) & (i < 8 * SIZE)
    return rows.with_columns(
        pl.when(in7).then(pl.when(i % 2 == 0).then(pl.lit(SCRIPT_KEY)).otherwise(pl.lit(UNICODE_KEY)))
        .otherwise(pl.col("Key")).alias("Key"),
        pl.when(in7).then(pl.lit(QUOTE_MACHINE)).otherwise(pl.col("MachineCode")).alias("MachineCode"),
        pl.when(in7).then(pl.lit(AMP_ADDRESS)).otherwise(pl.col("IP")).alias("IP"),
        pl.lit("SE").alias("country"),  # not derived from the hostile address
    )


def entity_frame(rows: list[tuple[str, str, float, bool, str]]) -> pl.DataFrame:
    """Entity results (ENTITY_SCHEMA) of (kind, entity, severity, is_anomaly, reasons)."""
    return pl.DataFrame([
        {"entity_kind": kind, "entity": who, "key": who if kind == "key-day" else None,
         "machine_code": who if kind == "key-machine" else None, "address": who if kind == "address-hour" else None,
         "first_id": 570, "last_id": 579, "start_time": T0 + timedelta(hours=1), "end_time": T0 + timedelta(hours=8),
         "requests": 10, "score": sev / 10, "severity": sev, "is_anomaly": flagged, "reasons": reasons}
        for kind, who, sev, flagged, reasons in rows
    ], schema=ENTITY_SCHEMA)


def incident_frame(who: str) -> pl.DataFrame:
    return pl.DataFrame([{"incident": 1, "entity_kind": "key", "entity": who, "first_id": 570, "last_id": 579,
                          "start_time": T0, "end_time": T0 + timedelta(minutes=9), "chunks": 1,
                          "max_severity": 88.0, "signal": "key_machines_hour", "description": "x"}]
                        ).select(INCIDENT_COLUMNS).cast({"start_time": pl.Datetime("us", "UTC"),
                                                         "end_time": pl.Datetime("us", "UTC")})


class _Tags(HTMLParser):
    """Every start tag and attribute of a page, and its text (entities resolved)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hostile_keys_machines_and_addresses_render_as_text() -> None:
    rows = hostile_rows()
    chunks, errors = make_chunks(rows)
    entities = entity_frame([
        ("key-day", SCRIPT_KEY, 95.0, True, f"key {SCRIPT_KEY}: 55 machine codes new to it (usually 0)"),
        ("key-machine", QUOTE_MACHINE, 85.0, True, f"machine code {QUOTE_MACHINE} under key {UNICODE_KEY}"),
        ("address-hour", AMP_ADDRESS, 70.0, True, f"address {AMP_ADDRESS}: 9 keys (usually 1)"),
    ])
    inp = make_input(rows=rows, chunks=chunks, feature_errors=errors,
                     computed=Computed(entities=entities, incidents=incident_frame(SCRIPT_KEY)))
    page = render_html(inp)
    parsed = _Tags()
    parsed.feed(page)
    tags = {t for t, _ in parsed.tags}
    assert "script" not in tags and "b" in tags  # the page's own <b>, never the log's
    assert not any(name.startswith("on") for _, attrs in parsed.tags for name, _ in attrs)
    assert "<script" not in page.lower() and "<b>bold</b>" not in page
    text = "".join(parsed.text)
    titles = [v or "" for _, attrs in parsed.tags for name, v in attrs if name == "title"]
    for value in HOSTILE:  # each value reads as itself (a tooltip holds the whole value where it is cut)
        assert value in text or value in titles, value
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp;amp;&lt;b&gt;bold&lt;/b&gt;" in page  # the log's "&amp;" is text, not an entity
    assert UNICODE_KEY in page


def test_markdown_cells_cannot_break_the_table() -> None:
    entities = entity_frame([("key-day", "K|1\nX", 90.0, True, "key K|1: a | b")])
    md = anomaly_report("acme", make_input().chunks, "3", entities=entities)
    row = next(line for line in md.splitlines() if line.startswith("| 90 |"))
    assert row.count("|") == 7 and "K/1 X" in row


def test_an_entitys_reason_is_shown_whole_in_the_page_as_in_report_md_and_a_long_one_cut_at_a_word() -> None:
    """report.html cut a 322-character reason at 256 ("... 2025-0... (322 characters)"), losing its
    "(judged against product 29409, floating keys)" that report.md showed and cutting "UTC" to "U...";
    both show it whole now, and a longer one is cut at a word, the page keeping the whole in a tooltip."""
    import html
    import re

    from licanom.report.analysis import REASON_LIMIT

    reason = ("key TRJNZ-QLIXR-BXMUR: 14 machine codes new to it (usually 0), 5 countries (usually 1), "
              "3 jumps to a far country within an hour (its peers' median key-day: 0), 9 failed requests "
              "(usually 0), 4 countries within one hour (its peers' median key-day: 1); 345 requests, "
              "2025-01-29 21:02-23:32 UTC (judged against product 29409, floating keys)")
    assert 256 < len(reason) <= REASON_LIMIT
    long = reason.replace("; 345", "; " + "7 machine codes new to it in a far country, " * 12 + "345")
    assert len(long) > REASON_LIMIT
    entities = entity_frame([("key-day", "KEY-A", 90.0, True, reason), ("key-day", "KEY-B", 85.0, True, long)])
    md = anomaly_report("acme", make_input().chunks, "3", entities=entities)
    page = render_html(make_input(computed=Computed(entities=entities)))
    cells = re.findall(r'<tr class="entity-row">.*?<td>((?:(?!<td>).)*?)</td></tr>', page)
    assert len(cells) == 2 and html.unescape(cells[0]) == reason and f"| {reason} |" in md
    (whole, shown), = re.findall(r'^<span title="([^"]*)">([^<]*)</span>$', cells[1])
    whole, shown = html.unescape(whole), html.unescape(shown)
    (md_cut,) = [line.split(" | ")[-1].removesuffix(" |") for line in md.splitlines() if "KEY-B" in line]
    assert whole == long and shown == md_cut and len(shown) <= REASON_LIMIT and shown.endswith("\u2026")
    assert long.startswith(shown[:-1]) and long[len(shown) - 1] == " "  # cut between words


def test_a_severity_just_below_the_level_never_reads_as_the_level() -> None:
    entities = entity_frame([("key-day", "KEY-A", 54.6, True, "a"), ("key-day", "KEY-B", 99.99, True, "b")])
    md = anomaly_report("acme", make_input().chunks, "3", entities=entities)
    assert any(line.startswith("| 54 | key-day KEY-A") for line in md.splitlines())
    assert any(line.startswith("| 99 | key-day KEY-B") for line in md.splitlines())
    assert "| 55 |" not in md and "| 100 |" not in md
    page = render_html(make_input(computed=Computed(entities=entities)))
    assert ">54</span>" in page and ">55</span>" not in page


def test_the_guides_say_an_incidents_severity_is_its_chunks_not_its_entitys() -> None:
    """The incident's "top severity 83" stood beside the same key's entity at 95 with no word on why:
    both reports say that an incident's severity is its chunks', an entity's its own."""
    import html

    entities = entity_frame([("key-day", "KEY-X", 95.6, True, "x")])
    md = anomaly_report("acme", make_input().chunks, "3", incidents=incident_frame("KEY-X"), entities=entities)
    said = "top severity is the highest severity of its flagged chunks"
    lines = md.splitlines()
    table_end = max(i for i, line in enumerate(lines) if line.startswith("| 1 | key KEY-X"))
    assert said in lines[table_end + 2], md  # under the incidents' table
    page = html.unescape(render_html(make_input(computed=Computed(entities=entities, incidents=incident_frame("KEY-X")))))
    assert said in page[page.index("How to read this report"):]
    assert "| 95 | key-day KEY-X" in md and ">95</span>" in page  # one rule: a whole number, rounded down


def test_markdown_times_say_utc() -> None:
    """The tables' time columns say UTC (their times are, whatever the vendor's timezone), as the page's do."""
    entities = entity_frame([("key-day", "KEY-X", 90.0, True, "x")])
    md = anomaly_report("acme", make_input().chunks, "3", incidents=incident_frame("KEY-X"), entities=entities)
    lines = md.splitlines()
    heads = [line for line, below in zip(lines, lines[1:]) if below.startswith("| --- |")]
    assert heads == ["| severity | who | from (UTC) | to (UTC) | requests | why |",
                     "| incident | who | chunks | from (UTC) | to (UTC) | top severity | signal |",
                     "| start (UTC) | end (UTC) | first Id | last Id | score | threshold | severity | top signal |"]


def test_the_reports_give_the_period_their_chunks_and_entities_cover_and_signals_in_words() -> None:
    """report.md names the night's period (the folder's name holds only Ids), to the last request of a
    flagged entity that runs past the last chunk (a night's entities read the rows it carries on);
    its frames table names the top signal in words; a page whose chunks are all below the
    threshold but with flagged entities does not say "nothing anomalous"."""
    chunks = make_input().chunks.with_columns(pl.lit("ip_failures_hour").alias("top_feature"))
    late = entity_frame([("key-day", "KEY-X", 90.0, True, "x")]).with_columns(
        (pl.col("end_time") + timedelta(days=3)).alias("end_time"))
    md = anomaly_report("acme", chunks, "3", entities=late)
    period = next(line for line in md.splitlines() if line.startswith("Period (UTC): "))
    assert period.endswith(f" to {late['end_time'][0]:%Y-%m-%d %H:%M:%S}.")
    assert period.startswith(f"Period (UTC): {chunks['start_time'].min():%Y-%m-%d %H:%M:%S}")
    assert chunks["is_anomaly"].any() and CONTEXT_LABELS["ip_failures_hour"] in md.split("| top signal |")[1]
    calm = make_input(chunks=make_input().chunks.with_columns(pl.lit(False).alias("is_anomaly")),
                      computed=Computed(entities=late))
    page = render_html(calm)
    assert "nothing anomalous in this run" not in page and "this run&rsquo;s findings" in page
    assert f"to {late['end_time'][0]:%Y-%m-%d %H:%M:%S}" in page
    # the chunk's rate is a multiple of its day's typical rate, not requests per second
    from licanom.report.analysis import context_value

    assert context_value("rate", math.log(40.8)) == "40.8\u00d7" and "/s" not in context_value("rate", 0.0)


def test_markdown_explains_its_severity_bands_as_the_page_does() -> None:
    """report.md showed severities (entities, incidents, chunks) with no word on their bands; only
    report.html had the guide. report.md says the bands from the same definitions, for a
    calibrated model, one without a calibration and one with a chunk of none."""
    def md_guide(md: str) -> str:
        (line,) = [line for line in md.splitlines() if "severity bands from" in line.lower()]
        return line

    def page_guide(page: str) -> str:
        guide = page[page.index("How to read this report"):]
        return next(item for item in guide.split("<li>") if "everity bands from" in item)

    entities = entity_frame([("key-day", "KEY-X", 90.0, True, "x")])
    chunks = make_input().chunks
    severities = [10.0] * chunks.height
    severities[3] = 91.2
    calibrated = chunks.with_columns(pl.Series("severity", severities))
    severities[3] = float("nan")
    mixed = chunks.with_columns(pl.Series("severity", severities))
    calibrated_bands = "the calibrated severity (0-100): high from 80, medium from 60, low below"
    ratio_bands = "score / threshold: high from 1.5×, medium from 1.2×, low below"
    for frame, said in ((calibrated, (calibrated_bands,)), (chunks, (calibrated_bands, ratio_bands)),
                        (mixed, (calibrated_bands, ratio_bands))):
        md = md_guide(anomaly_report("acme", frame, "3", incidents=incident_frame("KEY-X"), entities=entities))
        page = page_guide(render_html(make_input(chunks=frame)))
        for bands in said:
            assert bands in md and bands in page, (md, page)
    assert md_guide(anomaly_report("acme", calibrated, "3")).startswith(
        f"Severity bands from {calibrated_bands}, for the chunks as for the entities and incidents")


def test_markdown_incidents_name_their_signal_in_words() -> None:
    ip = incident_frame("KEY-X").with_columns(pl.lit("ip_failures_hour").alias("signal"))
    none = incident_frame("KEY-Y").with_columns(pl.lit(2).alias("incident"), pl.lit(None).alias("signal"))
    incidents = pl.concat([ip, none], how="vertical_relaxed")
    md = anomaly_report("acme", make_input().chunks, "3", incidents=incidents)
    rows = [line for line in md.splitlines() if line.startswith(("| 1 | key KEY-X", "| 2 | key KEY-Y"))]
    assert rows[0].endswith(f"| {CONTEXT_LABELS['ip_failures_hour']} |") and "ip_failures_hour" not in md
    assert rows[1].endswith("| its score |")  # as the page says it


def test_markdown_headline_counts_chunks_and_entities_apart() -> None:
    quiet, _ = make_chunks(make_rows(), flagged=())
    entities = entity_frame([("key-day", "KEY-X", 90.0, True, "x"), ("address-hour", "9.9.9.9", 20.0, False, None)])
    md = anomaly_report("acme", quiet, "3", entities=entities)
    assert f"Model version 3; 0 of {quiet.height} chunks flagged; 1 entity flagged (see below)." in md.splitlines()
    assert "anomalous" not in md
    flagged = make_input().chunks
    md = anomaly_report("acme", flagged, "3", incidents=incident_frame("KEY-X"), entities=entities.head(0))
    n = int(flagged["is_anomaly"].sum())
    assert f"Model version 3; {n} of {flagged.height} chunks flagged in 1 incident(s); 0 entities flagged." in md
    assert f"Model version 3; {n} of {flagged.height} chunks flagged.\n" in anomaly_report("acme", flagged, "3")


@pytest.mark.parametrize(("model", "family", "own", "not_this"), [
    ("LSTM_AE", "autoencoder", "reconstruction error (MAE)", "surprisal"),
    ("Tail_context", "context", "summed surprisal (nats) of the context vector", "reconstruction error"),
    ("IForest_context", "context", "isolation score of the context vector", "reconstruction error"),
    ("GRU_SVDD", "sequence", "squared distance beyond the SVDD sphere", "reconstruction error"),
    ("LSTM_OCSVM", "sequence", "margin beyond the one-class SVM boundary", "reconstruction error"),
    ("DeepLog", "sequence", "next-event miss margin", "reconstruction error"),
])
def test_each_family_names_its_own_score(model: str, family: str, own: str, not_this: str) -> None:
    wording = score_wording(model)
    assert wording.family == family and own in wording.score
    base = make_input()
    chunks = base.chunks.with_columns(pl.lit(model).alias("model"))
    page = render_html(make_input(chunks=chunks, model=model, feature_errors=None if family != "autoencoder"
                                  else base.feature_errors))
    assert f"its score is {model}&rsquo;s {wording.score}" in page
    assert not_this not in page.lower().split("<h2>how to read")[0].split("<h2>scores and training")[1]


def test_loss_note_says_what_happened_in_this_run() -> None:
    rows = make_rows()
    chunks, errors = make_chunks(rows, flagged=())
    ctx = chunks.with_columns(pl.lit("Tail_context").alias("model"))
    one_pass = render_html(make_input(chunks=ctx, feature_errors=None, train_loss=(), val_loss=(), trained_in_run=True))
    assert "Tail_context fits in one pass (no epochs)" in one_pass and "not trained in this run" not in one_pass
    loaded = render_html(make_input(chunks=ctx, feature_errors=None, train_loss=(), val_loss=(), trained_in_run=False))
    assert "No loss curves: the model was not trained in this run." in loaded
    unknown = render_html(make_input(chunks=chunks, feature_errors=errors, train_loss=(), val_loss=()))
    assert "not trained in this run" not in unknown and "No loss curves" in unknown
    champion = render_html(make_input(chunks=chunks, feature_errors=errors, trained_in_run=False))
    assert "from the model&rsquo;s training, not this run" in champion  # its curves, from when it was trained


def test_the_report_leads_with_the_flagged_entities_then_incidents_then_chunks() -> None:
    entities = entity_frame([
        ("key-day", "KEY-LOW", 60.0, True, "key KEY-LOW: 3 countries (usually 1)"),
        ("key-day", "KEY-X", 97.0, True, "key KEY-X: 55 machine codes new to it (usually 0), 3 countries (usually 1)"),
        ("address-hour", "9.9.9.9", 20.0, False, None),
    ])
    inp = make_input(computed=Computed(entities=entities))
    page = render_html(inp)
    order = [page.index(marker) for marker in ('id="entities"', 'id="incidents"', 'id="frames"', 'id="frame-1"')]
    assert order == sorted(order)
    listed = page[order[0]:order[1]]
    assert listed.index("KEY-X: 55 machine codes new to it") < listed.index("KEY-LOW")  # most severe first
    assert "9.9.9.9" not in listed and listed.count('class="entity-row"') == 2  # only the flagged ones
    assert page[order[1]:order[2]].count('class="incident-row"') >= 1  # grouped from the rows: none given
    md = anomaly_report("acme", inp.chunks, "3", incidents=incident_frame("KEY-X"), entities=entities)
    assert md.index("flagged entities") < md.index("| incident |") < md.index("| start (UTC) |")
    without = render_html(make_input())
    assert "No entity results in this run" in without


def test_what_the_caller_computed_is_not_computed_again(monkeypatch) -> None:
    """Countries (the rows' column), context vectors and incidents, when given, are read as given."""
    import licanom.data.derive
    import licanom.detectors.incidents
    import licanom.report.analysis as analysis

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("computed again")

    base = make_input()
    context = np.zeros((base.chunks.height, len(CONTEXT_COLUMNS)))
    context[:, CONTEXT_COLUMNS.index("failure_share")] = 0.25
    context[7, CONTEXT_COLUMNS.index("failure_share")] = 0.875
    rows = base.rows.with_columns(pl.lit("SE").alias("country"))
    monkeypatch.setattr(analysis, "chunk_context", refuse)
    monkeypatch.setattr(licanom.data.derive, "countries", refuse)
    monkeypatch.setattr(licanom.detectors.incidents, "attribute", refuse)
    page = render_html(make_input(rows=rows, computed=Computed(context=context, incidents=incident_frame("KEY-2"))))
    assert '<td>share of failed requests</td><td class="num out">88%</td><td class="num">25%</td>' in page
    with pytest.raises(ValueError, match="computed.context has shape"):
        make_input(computed=Computed(context=context[:3]))
    with pytest.raises(ValueError, match="computed.entities lack"):
        make_input(computed=Computed(entities=pl.DataFrame({"entity": ["k"]})))


def test_a_saved_run_with_entities_and_context_gives_the_same_page(tmp_path) -> None:
    base = make_input()
    context = np.full((base.chunks.height, len(CONTEXT_COLUMNS)), 0.5)
    entities = entity_frame([("key-day", "KEY-X", 97.0, True, "key KEY-X: 55 machine codes new to it")])
    incidents = incident_frame("KEY-X")
    inp = make_input(trained_in_run=True, wording=score_wording("LSTM_AE"),
                     computed=Computed(entities=entities, incidents=incidents, context=context))
    save_run(inp, tmp_path)
    inp.chunks.write_parquet(tmp_path / "chunks.parquet")
    entities.write_parquet(tmp_path / "entities.parquet")  # a night writes these beside its report
    incidents.write_parquet(tmp_path / "incidents.parquet")
    again = load_run(tmp_path)
    assert again.trained_in_run is True and again.wording == inp.wording
    assert render_html(again) == render_html(inp)


def test_figures_draw_in_threads_without_pyplot() -> None:
    from licanom.report.plots import error_histograms, loss_curves

    def draw(i: int) -> bytes:
        if i % 2:
            return loss_curves({f"m{i}": ((0.3, 0.2, 0.1 * i), ())}, ylabel="MAE")
        scores = np.linspace(0, 1 + i, 50)
        return error_histograms(scores, scores[-3:], {"M3": 0.9}, xlabel="reconstruction error (MAE)")

    with ThreadPoolExecutor(4) as pool:
        pngs = list(pool.map(draw, range(8)))
    assert all(p.startswith(b"\x89PNG") for p in pngs) and len(set(pngs)) == 8
    probe = "import sys, licanom.report.plots, licanom.report.render; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_inputs_are_typed() -> None:
    with pytest.raises(ValueError, match="computed.incidents lack"):
        ReportInput(vendor="v", run_id="r", model="m", threshold_name="M3", threshold=1.0, chunks=make_input().chunks,
                    rows=make_rows(), computed=Computed(incidents=pl.DataFrame({"incident": [1]})))


def test_a_frames_why_names_the_entity_of_its_peak_chunks_incident_not_one_that_overlaps_it() -> None:
    """Incidents list their chunks: the frame's why names the incident holding its peak chunk, even
    where a more severe incident of another entity spans the same time; none without the list."""
    from licanom.detectors.incidents import INCIDENT_CHUNKS, attribute, group_incidents

    rows = make_rows()
    chunks, _ = make_chunks(rows)
    chunks = chunks.with_columns(pl.lit("Tail_context").alias("model"), pl.lit("key_requests_hour").alias("top_feature"))
    context = np.zeros((chunks.height, len(CONTEXT_COLUMNS)))
    context[:, CONTEXT_COLUMNS.index("key_requests_hour")] = np.log1p(3.0)
    context[7, CONTEXT_COLUMNS.index("key_requests_hour")] = np.log1p(9.0)
    base = incident_frame("KEY-CULPRIT").with_columns(pl.lit(2, pl.Int64).alias("incident"),
                                                       pl.lit(60.0).alias("max_severity"))
    other = incident_frame("KEY-BYSTANDER").with_columns(  # more severe, and its span holds chunk 7's time
        pl.lit(T0 - timedelta(hours=1)).alias("start_time"), pl.lit(T0 + timedelta(hours=5)).alias("end_time"))
    listed = pl.concat([other.with_columns(pl.lit([3, 4]).alias(INCIDENT_CHUNKS)),
                        base.with_columns(pl.lit([7]).alias(INCIDENT_CHUNKS))])

    def why(incidents: pl.DataFrame) -> str:
        inp = make_input(rows=rows, chunks=chunks, feature_errors=None, model="Tail_context",
                         computed=Computed(context=context, incidents=incidents))
        md = anomaly_report("acme", chunks, "1", incidents=incidents)
        assert md  # the short summary takes the listed incidents as they are
        from licanom.report.analysis import analyse
        a = analyse(inp)
        k = next(k for k in range(a.frames.height) if a.inp.chunks["chunk"][a.peak(k)] == 7)
        return a.reasons[k][0]

    assert why(listed).endswith(", by key KEY-CULPRIT"), why(listed)
    assert ", by " not in why(pl.concat([other, base]))  # written before incidents listed their chunks
    # group_incidents lists each incident's chunk numbers, as attribute() gave them
    flagged = chunks.filter("is_anomaly").with_columns(pl.lit(50.0).alias("severity"))
    from licanom.data.derive import derive

    grouped = group_incidents(attribute(flagged, derive(rows)))
    assert sorted(n for ns in grouped[INCIDENT_CHUNKS].to_list() for n in ns) == list(FLAGGED)


def test_the_guide_says_what_each_entity_kind_is_judged_against() -> None:
    """"each judged against its own past and against its peers" was not true of an address-hour
    (the vendor's address-hours only) nor of the reasons' medians: the guide says it per kind."""
    page = render_html(make_input(computed=Computed(entities=entity_frame([
        ("address-hour", "9.9.9.9", 90.0, True, "address 9.9.9.9: 9 keys (the vendor's median address-hour: 1)")]))))
    guide = page[page.index("How to read this report"):]
    assert "each judged against its own past and against its peers" not in guide
    assert "an address&rsquo;s hour against the whole vendor&rsquo;s address-hours only" in guide
    assert "A key&rsquo;s day is judged against the key&rsquo;s own past" in guide
    assert "&ldquo;usually&rdquo; is the key&rsquo;s own usual day" in guide


def test_a_page_without_entity_results_does_not_say_only_a_night_scores_them() -> None:
    """`licanom detect` writes entities.parquet and its page lists them: a page without any said
    "(a night scores keys, machines and addresses too)", as if detect never did."""
    without = render_html(make_input())
    assert "No entity results in this run: only the chunks were scored" in without
    assert "a night scores keys" not in without
    assert "a log too small for it" in without
