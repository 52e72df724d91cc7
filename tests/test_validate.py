"""Validation keeps every row: in = valid + quarantined, with a reason for each bad row."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licanom.data.columns import RAW
from licanom.data.schema import WebApiLog
from licanom.data.validate import EXACT_COPY, ValidationError, check_bad_fraction, validate_log
from tests.conftest import examples, make_raw_log


def test_good_log_is_all_valid(raw_log):
    result = validate_log(raw_log)
    assert result.quarantine.height == 0
    assert result.valid.height == raw_log.height
    assert result.valid.columns == list(RAW)
    WebApiLog.validate(result.valid, lazy=True)
    assert result.valid["Time"].is_sorted()


def test_each_kind_of_bad_row_is_quarantined_with_reason(raw_log):
    text = raw_log.head(8).with_columns(pl.all().cast(pl.String))
    bad = text.with_columns(
        pl.Series("Id", ["1", "2", "2", "x", "5", "6", "7", "8"]),
        pl.Series("Time", ["1735689600", "2025-01-01T00:00:01Z", "2025-01-01 00:00:02", "garbage",
                           "2025-01-01T00:00:03+02:00", "1735689600", "99999999999", "1735689600"]),
        pl.Series("IP", ["1.2.3.4", "::1", "10.0.0.1", "1.2.3.4", "1.2.3.4", "999.1.1.1", "", "1.2.3.4"]),
        pl.Series("State", ["1010", "2021", "1010", "1010", "1010", "1010", "1010", "5555"]),
        pl.Series("Key", ["A", "B", "C", "D", "", "E", "F", "G"]),
    )
    result = validate_log(bad)
    reasons = dict(zip(result.quarantine["_row"].to_list(), result.quarantine["reason"].to_list(), strict=True))
    assert set(result.valid["Id"].to_list()) == {1, 2}
    assert reasons[2] == "Id: duplicate (another value than its earlier row's in Key, IP, Time, State, MachineCode)"
    assert "Id: not an integer" in reasons[3] and "Time: unparsable" in reasons[3]
    assert reasons[4] == "Key: missing or empty"
    assert reasons[5] == "IP: malformed address"
    assert reasons[6].startswith("Time: outside")
    assert reasons[7] == "State: unknown state code"
    assert result.valid.height + result.quarantine.height == bad.height
    # the quarantine keeps the original text of the row
    assert result.quarantine.filter(pl.col("_row") == 3)["Time"].item() == "garbage"


def test_missing_required_column_names_it(raw_log):
    with pytest.raises(ValidationError, match="State"):
        validate_log(raw_log.drop("State"))


def test_bad_fraction_limit_names_columns_and_examples(raw_log):
    bad = raw_log.with_columns(pl.when(pl.int_range(pl.len()) < 100).then(9999).otherwise(pl.col("State")).alias("State"))
    result = validate_log(bad)
    assert result.quarantine.height == 100
    check_bad_fraction(result, 0.2)
    with pytest.raises(ValidationError, match="State: unknown state code") as err:
        check_bad_fraction(result, 0.05)
    # the examples name the input row, its Id and why, on the message's one line
    assert "\n" not in str(err.value) and "Examples (rows counted from 0 in the order read): row 0 (Id " in str(err.value)
    # the summary and the first row of the reason: one example, not five copies of it
    assert str(err.value).count("State: unknown state code") == 2


def test_a_header_read_with_another_separator_says_which_separator_it_holds():
    """A comma file read with ';' (or the other way round) is one long column: the refusal names the
    separator the header holds and shows a long name cut with an ellipsis."""
    names = "Id,ProductId,Key,IP,Time,State,MachineCode,FriendlyName,FloatingExpires,DOIntValue,DOId"
    with pytest.raises(ValidationError, match=r"split by ',': set the file's separator \(`source.separator: ','`") as e:
        validate_log(pl.DataFrame({names: ["1"]}))
    assert names[:79] + "…" in str(e.value) and names not in str(e.value)
    with pytest.raises(ValidationError, match=r"split by ';'"):
        validate_log(pl.DataFrame({"Id;ProductId;Key;IP;Time;State;MachineCode": ["1"]}))


def test_empty_log_is_a_clear_error():
    result = validate_log(make_raw_log(0))
    assert result.n_in == 0
    with pytest.raises(ValidationError, match="empty"):
        check_bad_fraction(result, 0.05)


def test_unix_seconds_and_datetimes_agree(raw_log):
    as_seconds = raw_log.with_columns((pl.col("Time").dt.epoch("us") / 1e6).alias("Time"))
    a, b = validate_log(raw_log).valid, validate_log(as_seconds).valid
    assert (a["Time"] == b["Time"]).all()


def test_unix_times_in_milliseconds_microseconds_or_nanoseconds_are_read_by_their_size(raw_log):
    """pandas' to_json and JavaScript write Unix milliseconds; some exports micro- or nanoseconds.
    In 1990-2100 the units' ranges do not overlap, so each value's size tells its unit, in numbers
    and in text alike; a number that is no time in any unit is out of range. So is a floating
    expiry far out (a report would fail on it), except Cryptolens' 0 for none."""
    us = raw_log["Time"].dt.epoch("us")
    want = validate_log(raw_log).valid["Time"]
    ns = raw_log.with_columns((pl.col("Time").dt.epoch("us") * 1000 + 499).alias("Time"))  # exactly, no float
    assert validate_log(ns).valid["Time"].equals(want) and validate_log(ns.with_columns(
        pl.col("Time").cast(pl.String))).valid["Time"].equals(want)
    for scale in (1e-3, 1.0, 1e3):  # ms, us, ns
        for col in (us * scale, (us * scale).cast(pl.Int64).cast(pl.String)):
            got = validate_log(raw_log.with_columns(col.alias("Time")))
            off = (got.valid["Time"] - want).abs().max()  # whole milliseconds lose the microseconds
            assert got.quarantine.height == 0 and off <= timedelta(microseconds=max(1, 1 / scale))
    between = raw_log.head(3).with_columns(pl.Series("Time", [5e10, 5e13, 1742343517.0]),
                                           pl.Series("FloatingExpires", ["253402300799000", "0", "1742343577000"]))
    result = validate_log(between)
    reasons = dict(zip(result.quarantine["Id"].cast(pl.Int64).to_list(), result.quarantine["reason"].to_list()))
    ids = between["Id"].to_list()
    assert reasons == {ids[0]: "Time: outside 1990-2100; FloatingExpires: outside 1990-2100",
                       ids[1]: "Time: outside 1990-2100"}
    assert result.valid["FloatingExpires"].dt.epoch("s").to_list() == [1742343577]


def test_iso_times_with_a_decimal_comma_or_to_the_minute_are_read(raw_log):
    """A European spreadsheet writes a decimal comma (ISO 8601 allows it); ISO 8601 also allows a
    time to the minute. A date with the day first is not ISO and stays unparsable."""
    text = raw_log.head(7).with_columns(pl.all().cast(pl.String)).with_columns(pl.Series("Time", [
        "2025-03-19 00:18:37,572", "2025-03-19T00:18:37.572Z", "1742343517,572", "2025-03-19 00:18",
        "2025-03-19T02:18+02:00", "2025-03-19T00:18:37,5+00:00", "19.03.2025 00:18:37"]))
    result = validate_log(text)
    times = dict(zip(result.valid["Id"].cast(pl.String), result.valid["Time"].dt.to_string("%Y-%m-%d %H:%M:%S%.3f")))
    ids = text["Id"].to_list()
    assert [times.get(i) for i in ids[:6]] == [
        "2025-03-19 00:18:37.572", "2025-03-19 00:18:37.572", "2025-03-19 00:18:37.572", "2025-03-19 00:18:00.000",
        "2025-03-19 00:18:00.000", "2025-03-19 00:18:37.500"]
    assert result.quarantine["reason"].to_list() == ["Time: unparsable"]


def test_whole_numbers_with_a_decimal_comma_are_integers_and_a_thousands_comma_is_not(raw_log):
    """A European spreadsheet writes a whole number as "3,0": the integer 3. "1,000" may be a
    thousand or one: quarantined, not guessed."""
    log = raw_log.head(6).with_columns(pl.Series("DOIntValue", ["3,0", "12,00", "1,000", "7", "1.000,00", "1,0,00"]),
                                       pl.Series("DOId", ["5", "5", "5", "5,0", "5", "5"]))
    result = validate_log(log)
    assert result.valid["DOIntValue"].to_list() == [3, 12, 7] and result.valid["DOId"].to_list() == [5, 5, 5]
    assert result.quarantine["reason"].to_list() == ["DOIntValue: not an integer"] * 3


def test_floating_expires_zero_means_none(raw_log):
    log = raw_log.with_columns(pl.lit(0).alias("FloatingExpires"))
    assert validate_log(log).valid["FloatingExpires"].null_count() == log.height


# --- property-based: generated malformed rows --------------------------------------------
cell = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(-10**12, 10**12).map(str),
    st.sampled_from(["1010", "2021", "1735689600", "2025-02-03T04:05:06Z", "8.8.8.8", "::1", "1.2.3", "", " "]),
)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(*[cell] * 7), min_size=0, max_size=30))
def test_every_row_is_accounted_for(rows):
    frame = pl.DataFrame(rows, schema={c: pl.String for c in RAW[:7]}, orient="row")
    result = validate_log(frame)
    assert result.valid.height + result.quarantine.height == frame.height
    assert result.quarantine["reason"].null_count() == 0
    kept = set(result.quarantine["_row"].to_list())
    assert len(kept) == result.quarantine.height
    if result.valid.height:
        WebApiLog.validate(result.valid, lazy=True)
        assert result.valid["Id"].is_unique().all()


# --- the contract and the fast paths --------------------------------------------------------
def _text(log: pl.DataFrame) -> pl.DataFrame:
    return log.with_columns(pl.all().cast(pl.String))


def _reasons(result) -> dict[int, str]:
    return dict(zip(result.quarantine["_row"].to_list(), result.quarantine["reason"].to_list(), strict=True))


def test_parse_failures_also_name_the_contract_failures(raw_log):
    bad = _text(raw_log.head(3)).with_columns(
        pl.Series("Id", ["1", "x", "3"]), pl.Series("State", ["1010", "5555", "1010"])
    )
    reasons = validate_log(bad).quarantine["reason"].to_list()
    assert reasons == ["Id: not an integer; State: unknown state code"]


def test_a_negative_id_is_quarantined(raw_log):
    text = raw_log.head(3).with_columns(pl.all().cast(pl.String))
    bad = text.with_columns(pl.Series("Id", ["1", "-5", "0"]))
    result = validate_log(bad)
    assert result.valid["Id"].to_list() == [1, 0]
    assert result.quarantine["reason"].to_list() == ["Id: negative"] and result.quarantine["_row"].to_list() == [1]


def test_duplicate_of_a_rejected_row_stays_valid(raw_log):
    # the first Id 2 fails the contract, so the next one is the first valid occurrence
    log = _text(raw_log.head(5)).with_columns(
        pl.Series("Id", ["1", "2", "2", "2", "5"]),
        pl.Series("State", ["1010", "5555", "1010", "1010", "1010"]),
    )
    result = validate_log(log)
    reasons = _reasons(result)
    assert reasons[1] == "State: unknown state code" and reasons[3].startswith("Id: duplicate (another value")
    assert len(reasons) == 2
    assert result.valid["Id"].to_list() == [1, 2, 5]
    assert result.valid["Time"].to_list() == raw_log["Time"].gather([0, 2, 4]).to_list()


def test_a_bad_repeat_is_quarantined_for_its_own_failure(raw_log):
    log = _text(raw_log.head(3)).with_columns(
        pl.Series("Id", ["1", "1", "1"]), pl.Series("IP", ["1.2.3.4", "1.2.3", "1.2.3.4"])
    )
    result = validate_log(log)
    reasons = _reasons(result)
    assert reasons == {1: "IP: malformed address",
                       2: "Id: duplicate (another value than its earlier row's in ProductId, Key, Time, MachineCode)"}


@pytest.mark.parametrize("order", ["shuffled", "reversed", "repeats_sorted"])
def test_unordered_logs_are_sorted_and_deduplicated(raw_log, order):
    log = raw_log.head(200)
    if order == "shuffled":
        log = log.sample(fraction=1.0, shuffle=True, seed=3)
    elif order == "reversed":
        log = log.reverse()
    else:  # Ids sorted but repeated: the repeats are neighbours
        log = pl.concat([log, log.head(20)]).sort("Id")
    result = validate_log(log)
    assert result.valid.height == 200 and result.quarantine.height == log.height - 200
    assert set(result.quarantine["reason"].to_list()) <= {EXACT_COPY}  # the repeats are copies of kept rows
    assert result.valid.equals(validate_log(raw_log.head(200)).valid)


def test_equal_times_are_ordered_by_id(raw_log):
    log = raw_log.head(6).with_columns(
        pl.lit(raw_log["Time"][0]).alias("Time"), pl.Series("Id", [6, 5, 4, 3, 2, 1])
    )
    assert validate_log(log).valid["Id"].to_list() == [1, 2, 3, 4, 5, 6]


def test_text_is_cleaned_before_the_contract(raw_log):
    log = raw_log.head(4).with_columns(
        pl.Series("IP", [" 8.8.8.8 ", None, "fe80::1%eth0", "1.1.1.1"]),
        pl.Series("MachineCode", [None, "m", None, ""]),
        pl.Series("Key", ["K", "  ", "K", None]),
    )
    result = validate_log(log)
    assert result.valid["IP"].to_list() == ["8.8.8.8", "fe80::1%eth0"]
    assert result.valid["MachineCode"].to_list() == ["", ""]
    assert result.quarantine["reason"].to_list() == ["Key: missing or empty"] * 2


def test_other_dtypes_are_coerced(raw_log):
    log = raw_log.head(5).with_columns(
        pl.Series("Id", [1.0, 2.0, 2.5, None, 5.0]),
        pl.col("ProductId").cast(pl.Int32),
        pl.col("State").cast(pl.UInt16),
        pl.col("Time").dt.cast_time_unit("ms").dt.replace_time_zone(None),
    )
    result = validate_log(log)
    assert result.valid["Id"].to_list() == [1, 2, 5]
    WebApiLog.validate(result.valid, lazy=True)
    assert result.quarantine["reason"].to_list() == ["Id: not an integer", "Id: missing"]


def test_floats_beyond_2_to_the_53_are_not_read_as_integers(raw_log):
    """A float column (JSON that also holds 2.5) cannot hold -9223372036854775809 or 2**53 + 1
    exactly: such a row is quarantined, never changed to the nearest float's integer."""
    log = raw_log.head(4).with_columns(
        pl.Series("ProductId", [3.0, 2.5, -9_223_372_036_854_775_809.0, float(2**53 + 2)]),
    )
    result = validate_log(log)
    assert result.valid["ProductId"].to_list() == [3]
    assert result.quarantine["reason"].to_list() == ["ProductId: not an integer"] * 3


def test_contract_checks_run_per_distinct_value_with_known_values(raw_log):
    import pandera.polars as pa

    from licanom.data.schema import known_values

    log = validate_log(raw_log).valid.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("1.2.3")).otherwise(pl.col("IP")).alias("IP")
    )
    # more values than the frame holds are harmless; the failing one is still found
    extra = pl.Series(["9.9.9.9", "not an address", *log["IP"].unique().to_list()])
    for values in (None, {"IP": extra}):
        with known_values(values or {}):
            with pytest.raises(pa.errors.SchemaErrors) as err:
                WebApiLog.validate(log, lazy=True)
        cases = err.value.failure_cases
        assert cases["index"].to_list() == [7] and cases["check"].to_list() == ["malformed address"]


def test_values_longer_than_a_real_key_address_or_machine_code_are_quarantined(raw_log):
    from licanom.data.validate import MAX_VALUE_CHARS

    n = MAX_VALUE_CHARS
    log = raw_log.head(6).with_columns(
        pl.Series("Key", ["K" * n, "K" * (n + 1), "é" * n, "KEY-OK", "KEY-OK", "KEY-OK"]),
        pl.Series("IP", ["1.1.1.1"] * 4 + ["1" * (n + 1), "8.8.8.8"]),
        pl.Series("MachineCode", ["mc"] * 5 + ["m" * (n + 5)]),
    )
    result = validate_log(log)
    reasons = dict(zip(result.quarantine["_row"].to_list(), result.quarantine["reason"].to_list(), strict=True))
    assert sorted(reasons) == [1, 4, 5]  # n characters (even of two bytes each) are fine, n + 1 are not
    assert reasons[1] == f"Key: longer than {n} characters"
    assert f"IP: longer than {n} characters" in reasons[4]
    assert reasons[5] == f"MachineCode: longer than {n} characters"


def test_rows_moved_to_the_quarantine_keep_their_input_position(raw_log):
    from licanom.data.validate import move_to_quarantine

    log = raw_log.head(10).with_columns(pl.when(pl.col("Id") == 1002).then(pl.lit(9999)).otherwise(pl.col("State"))
                                        .alias("State"))
    result = validate_log(log)
    moved = move_to_quarantine(result, log, result.valid["ProductId"] == 7, "ProductId: not this one")
    assert moved.n_in == 10 and moved.valid.height + moved.quarantine.height == 10
    assert moved.quarantine["_row"].is_sorted() and moved.quarantine["_row"].is_unique().all()
    sevens = log.with_row_index("_row").filter(pl.col("ProductId") == 7, pl.col("Id") != 1002)["_row"].to_list()
    assert moved.quarantine.filter(pl.col("reason") == "ProductId: not this one")["_row"].to_list() == sevens
    assert (moved.valid["ProductId"] == 3).all()


def _codes_match_texts(result) -> None:
    """The result's codes of Key and IP: one per valid row, equal codes for equal texts and only then."""
    assert set(result.codes.codes) == {"IP", "Key"}
    for column, codes in result.codes.codes.items():
        assert codes.dtype == np.uint32 and len(codes) == result.valid.height
        pairs = pl.DataFrame({"text": result.valid[column], "code": codes})
        assert pairs.n_unique() == pairs["text"].n_unique() == pairs["code"].n_unique()


@pytest.mark.parametrize("order", ["in_order", "shuffled"])
def test_codes_of_keys_and_addresses_follow_the_valid_rows(raw_log, order):
    log = raw_log.head(300).with_columns(  # padded and missing addresses, blank keys, a duplicate Id
        pl.when(pl.int_range(pl.len()) % 7 == 0).then(pl.lit(" 8.8.8.8 "))
        .when(pl.int_range(pl.len()) % 11 == 0).then(pl.lit(None, pl.String)).otherwise(pl.col("IP")).alias("IP"),
        pl.when(pl.int_range(pl.len()) % 13 == 0).then(pl.lit(" ")).otherwise(pl.col("Key")).alias("Key"),
        pl.when(pl.int_range(pl.len()) == 5).then(pl.lit(1003)).otherwise(pl.col("Id")).alias("Id"),
    )
    if order == "shuffled":
        log = log.sample(fraction=1.0, shuffle=True, seed=1)
    result = validate_log(log)
    assert result.quarantine.height > 0 and {"8.8.8.8", ""} <= set(result.valid["IP"].to_list())
    _codes_match_texts(result)


def test_a_clean_log_keeps_the_first_rows_of_its_codes(raw_log):
    """Where no row is dropped or moved, the codes come with the rows where each first appears
    (the encoder reuses them); a log that loses a row keeps the codes only."""
    result = validate_log(raw_log)
    assert result.quarantine.height == 0 and set(result.codes.first) == {"IP", "Key"}
    for column, first in result.codes.first.items():
        codes = pl.Series(result.codes.codes[column])
        assert first.to_list() == codes.arg_unique().to_list()
        assert result.valid[column].gather(first).n_unique() == first.len() == result.valid[column].n_unique()
    dropped = validate_log(raw_log.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(" "))
                                                .otherwise(pl.col("Key")).alias("Key")))
    assert dropped.quarantine.height == 1 and not dropped.codes.first
    _codes_match_texts(dropped)


def test_an_exact_copy_of_a_row_is_quarantined_but_not_counted_as_bad(raw_log):
    """An export part sent twice: each row is kept once; its copies go to the quarantine with their
    own reason and do not count towards validate.max_bad_fraction. A repeated Id whose row differs
    is still a bad row."""
    text = raw_log.with_columns(pl.all().cast(pl.String))
    part = text.head(40)
    changed = part.head(3).with_columns(pl.lit("1.2.3.4").alias("IP"))  # same Ids, another address
    twice = pl.concat([text, part, changed])
    result = validate_log(twice)
    assert result.valid.height == text.height and result.n_in == twice.height
    reasons = result.quarantine["reason"].value_counts().sort("reason")
    # which columns the two exports disagree in: only the address
    assert dict(reasons.iter_rows()) == {EXACT_COPY: 40, "Id: duplicate (another value than its earlier row's in IP)": 3}
    assert result.n_bad == 3 and result.bad_fraction == 3 / twice.height
    check_bad_fraction(result, 0.05)  # 43 of the rows are repeats; only 3 are bad
    with pytest.raises(ValidationError, match=r"^3 of \d+ rows"):
        check_bad_fraction(result, 0.001)


def test_the_header_lines_of_joined_exports_are_quarantined_but_not_counted_as_bad(raw_log, tmp_path):
    """A file of 25 small exports joined with `cat`, each with its header: its 24 header lines again
    were bad rows (24 of 524, 4.6%) and 3 bad rows more refused it (more than 5%). They still go to
    the quarantine with their reason and count as rows read, but not towards
    validate.max_bad_fraction, as exact copies of rows do not."""
    from licanom.config import ValidateConfig
    from licanom.data.extract.files import read_log
    from licanom.data.pipeline import validate

    text = raw_log.head(500).with_columns(pl.all().cast(pl.String))
    text = text.with_columns(pl.when(pl.int_range(pl.len()).is_in([7, 107, 207])).then(pl.lit("9999"))
                             .otherwise(pl.col("State")).alias("State"))  # 3 rows of an unknown state
    parts = [text.slice(20 * i, 20) for i in range(25)]
    parts[-1] = parts[-1].select(reversed(parts[-1].columns))  # an export whose columns moved
    path = tmp_path / "joined.csv"
    path.write_text("".join(part.write_csv() for part in parts))
    result = validate(read_log(path), ValidateConfig())
    assert (result.n_in, result.valid.height, result.quarantine.height) == (524, 497, 27)
    again = result.quarantine.filter(pl.col("reason").str.contains("the header line again", literal=True))
    assert again.height == 24 and again["reason"][0] == f"{path} line 22: the header line again (exports joined?)"
    assert result.n_bad == 3 and result.bad_fraction == 3 / 524
    with pytest.raises(ValidationError, match=r"^3 of 524 rows \(0\.6%\) failed validation"):
        check_bad_fraction(result, 0.005)


# a tiny CSV export: its header and rows of Ids 1, 2, ... (State 1010, known)
_HEADER = "Id,ProductId,Key,IP,Time,State,MachineCode"


def _csv_row(i: int, state: str = "1010") -> str:
    return f"{i},7,K{i},10.0.0.1,2025-03-01T00:00:{i % 60:02d}Z,{state},mc{i}"


def test_a_line_of_a_field_too_many_without_an_id_says_no_id_could_be_read(tmp_path):
    """A line of a field too many is quarantined naming its line and its fields; where no reading of
    it gives an integer Id (``1,000``: 1 or 1000?) its reason says so, as the empty Id shows; a line
    whose Id is sure keeps it, and its reason says that too."""
    from licanom.data.extract.files import read_log

    lines = [_HEADER, *(_csv_row(i) for i in range(1, 8))]
    lines[3] += ","  # Id 3: a separator too many at its end, its Id sure
    lines[5] = "1,000" + lines[5][1:]  # Id 5 written "1,000": two fields
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    q = validate_log(read_log(path)).quarantine
    assert q["Id"].to_list() == ["3", None]
    assert q["reason"].to_list() == [f"{path} line 4: cannot be read as CSV (8 fields, the header has 7, its Id kept)",
                                     f"{path} line 6: cannot be read as CSV (8 fields, the header has 7, "
                                     "no Id could be read from it)"]


def test_a_separator_at_the_end_of_every_data_line_is_named_in_the_refusal(tmp_path):
    """Every data line ending with a ';' that the header lacks refused the whole file with "cannot be
    read as CSV (12 fields, the header has 11, its Id kept)", which did not say why. Where every data
    line (or nine in ten) has one field more than the header and that field is empty, the reason
    says so, in the refusal's one line; the lines are quarantined all the same (a header that lacks
    a column's name reads the same way). A line of its own with a separator too many says nothing more."""
    from licanom.data.extract.files import read_log

    rows = [_csv_row(i).replace(",", ";") for i in range(1, 21)]
    path = tmp_path / "trailing.csv"
    path.write_text("\n".join([_HEADER.replace(",", ";"), *(row + ";" for row in rows)]) + "\n")
    result = validate_log(read_log(path))
    assert result.quarantine.height == 20 and result.valid.height == 0
    said = "every data line ends with a separator the header line lacks: a trailing ';'?"
    assert result.quarantine["reason"][0] == (f"{path} line 2: cannot be read as CSV (8 fields, the header has 7, "
                                              f"its Id kept, {said})")
    with pytest.raises(ValidationError) as err:
        check_bad_fraction(result, 0.05)
    assert said in str(err.value) and "\n" not in str(err.value)
    # nearly every line: how many; a tab named as a tab
    tabs = [row.replace(";", "\t") for row in rows]
    path.write_text("\n".join([_HEADER.replace(",", "\t"), *(row + "\t" for row in tabs[:19]), tabs[19]]) + "\n")
    result = validate_log(read_log(path, separator="\t"))
    assert result.valid["Id"].to_list() == [20]
    assert result.quarantine["reason"].str.ends_with(
        "19 of 20 data lines end with a separator the header line lacks: a trailing tab?)").all()
    # one line of its own: nothing more
    path.write_text("\n".join([_HEADER, *(_csv_row(i) + ("," if i == 3 else "") for i in range(1, 21))]) + "\n")
    assert validate_log(read_log(path)).quarantine["reason"].to_list() == [
        f"{path} line 4: cannot be read as CSV (8 fields, the header has 7, its Id kept)"]


def test_a_header_that_lacks_a_name_is_not_told_to_drop_a_trailing_separator(tmp_path):
    """A header line that lacks one column's name, its last column mostly empty (a simulated log
    whose header lacks FriendlyName: "194 of 200 data lines end with a separator the header line
    lacks: a trailing ','?"), was told to drop a separator it does not have. A line of one field more
    whose last field is not empty shows a column the header does not name: no hint then."""
    from licanom.data.extract.files import read_log

    header = _HEADER + ",DOId"  # FriendlyName's values written, its name not: DOId, empty but once, last
    lines = [f"{_csv_row(i)},Desk {i},{'5' if i == 7 else ''}" for i in range(1, 21)]
    path = tmp_path / "unnamed.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    result = validate_log(read_log(path))
    assert result.quarantine.height == 20 and result.valid.height == 0
    reasons = result.quarantine["reason"].to_list()
    assert not [r for r in reasons if "trailing" in r or "separator the header line lacks" in r], reasons[:2]
    assert reasons[0] == f"{path} line 2: cannot be read as CSV (9 fields, the header has 8, its Id kept)"


def test_a_line_cut_short_says_whether_it_kept_its_id(tmp_path):
    """A line of fewer fields than the header keeps the fields a separator closed: cut inside its
    Id (or its Id empty) it keeps none, and its reason says so as a line of a field too many's does;
    its Id whole, it keeps it and says that."""
    from licanom.data.extract.files import read_log

    lines = [_HEADER, *(_csv_row(i) for i in range(1, 8))]
    lines[2] = "2"  # Id 2 cut inside its Id: no separator closed it
    lines[4] = "4,7,K4"  # Id 4 cut after its key: its Id whole
    lines[6] = ",7,K6"  # Id 6 empty
    path = tmp_path / "short.csv"
    path.write_text("\n".join(lines) + "\n")
    q = validate_log(read_log(path)).quarantine
    assert q["Id"].to_list() == [None, "4", None]
    assert q["reason"].to_list() == [
        f"{path} line 3: cannot be read as CSV (1 fields, the header has 7, no Id could be read from it)",
        f"{path} line 5: cannot be read as CSV (3 fields, the header has 7, its Id kept)",
        f"{path} line 7: cannot be read as CSV (3 fields, the header has 7, no Id could be read from it)"]


def test_a_line_that_keeps_no_id_counts_as_one_reason_naming_its_file(tmp_path):
    """That a line of a field too many keeps no Id is part of its one reason, not a second one:
    the reasons counted (a refusal's failures) name the file once, not the file's reason cut at
    its fields and the words about its Id apart."""
    from licanom.data.extract.files import read_log

    lines = [_HEADER, *(_csv_row(i) for i in range(1, 8))]
    lines[5] = "1,000" + lines[5][1:]  # Id 5 written "1,000": two fields
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    counts = validate_log(read_log(path)).reason_counts()
    assert counts.rows() == [(f"{path}: cannot be read as CSV (8 fields, the header has 7, no Id could be read from it)", 1)]


def test_a_refusal_for_bad_rows_names_each_reason_once_with_its_first_row_not_the_header_lines(tmp_path):
    """Exports joined with `cat`, several of their rows bad: the refusal counts the bad rows' reasons
    and shows the first row of each, not the header lines again (no bad rows) nor the same reason
    row after row."""
    from licanom.data.extract.files import read_log

    parts = [[_HEADER, *(_csv_row(10 * k + i, "5555" if k % 2 and i < 4 else "1010") for i in range(10))]
             for k in range(6)]
    parts[4][3] = "x" + parts[4][3]  # Id "x42": not an integer
    path = tmp_path / "joined.csv"
    path.write_text("".join("\n".join(part) + "\n" for part in parts))
    result = validate_log(read_log(path))
    with pytest.raises(ValidationError) as err:
        check_bad_fraction(result, 0.05)
    message = str(err.value)
    assert "\n" not in message and "header line again" not in message, message
    assert message.startswith("13 of 65 rows (20.0%) failed validation")
    assert "Failures: State: unknown state code (12 rows), Id: not an integer (1 rows). " in message, message
    assert message.endswith("Examples (rows counted from 0 in the order read): "
                            "row 11 (Id 10): State: unknown state code (State '5555'); "
                            "row 46 (Id x42): Id: not an integer"), message


def test_a_header_line_of_other_columns_is_one_whatever_its_first_name(tmp_path):
    """Exports of two layouts joined with `cat`: a header line of other columns whose first name is
    none licanom knows (``Machine``, ``Vendor``) is a header line, and the file is refused, as one
    whose first name is known is, not read as a row of bad values with the rows after it read under
    the first line's columns. A row of bad values stays a quarantined row."""
    from licanom.data.extract.files import ExtractFileError, read_log

    first = "\n".join([_HEADER, *(_csv_row(i) for i in range(1, 4))]) + "\n"
    path = tmp_path / "ab.csv"
    for other, row in (("Machine,Id,ProductId,Key,IP,Time,State", "mc4,4,7,K4,10.0.0.1,2025-03-01T00:00:04Z,1010"),
                       ("Machine (name),Id,ProductId,Key,IP#,Time (UTC),State", "mc4,4,7,K4,10.0.0.1,2025-03-01T00:00:04Z,1010"),
                       (f"Vendor,{_HEADER}", f"acme,{_csv_row(4)}")):  # a field more: read line by line
        path.write_text(first + other + "\n" + row + "\n")
        with pytest.raises(ExtractFileError, match=r"ab\.csv: line 5 looks like a header line of other columns "
                                                   r"than its first line's: it names '(Machine|Vendor)"):
            read_log(path)
    path.write_text(first + "abc,7,K4,10.0.0.1,2025-03-01T00:00:04Z,1010,mc4\n" + "Vendor,ProductId,Key,a,b,c,d\n"
                    + "PC (work),8,K5,10.0.0.2,2025-03-01T00:00:05Z,1010,mc#5\n")
    q = validate_log(read_log(path)).quarantine
    assert q["reason"][0] == "Id: not an integer"  # a row of bad values, not a header
    assert q.height == 3  # nor a line of names of which fewer than half are the file's columns, nor a row of
    # words in brackets (a machine's name in the Id's place)


def test_a_file_of_one_line_that_is_no_header_is_refused_for_its_columns_not_as_empty(tmp_path):
    """An error page saved as the export, on one line: its line is the file's header, which lacks the
    log's columns; the refusal says so and names the file, as for the page on two lines, rather than
    calling the log empty. A header of the log's columns with no row under it stays an empty log."""
    from licanom.data.extract.files import read_log

    page = tmp_path / "logs" / "notcsv.csv"
    page.parent.mkdir()
    page.write_text("<html><body>502 Bad Gateway</body></html>\n")
    lacks = (r"notcsv\.csv: the log lacks required column\(s\) \['Id', 'ProductId', 'Key', 'IP', 'Time', 'State', "
             r"'MachineCode'\]; it has \['<html><body>502 Bad Gateway</body></html>'\]")
    for target in (page, page.parent):  # the file, or a folder of it alone
        with pytest.raises(ValidationError, match=lacks) as err:
            read_log(target)
        assert "empty" not in str(err.value) and "\n" not in str(err.value)
    (page.parent / "a.csv").write_text(_HEADER + "\n")  # beside a header with no rows: the page is named
    with pytest.raises(ValidationError, match=r"notcsv\.csv: the log file lacks required column\(s\) \['Id'"):
        read_log(page.parent)
    page.unlink()
    for target, named in ((page.parent, "logs"), (page.parent / "a.csv", r"a\.csv")):
        with pytest.raises(ValidationError, match=named + r": the log is empty \(a header, no rows\)$"):
            read_log(target)


def test_a_nights_read_of_a_file_of_one_line_that_is_no_header_is_refused_not_nothing_new(tmp_path):
    """A night reads after the watermark: an export replaced by an error page of one line is refused for
    the columns it lacks, naming the file, as the first read refuses it; it is not "nothing new", night
    after night, while the export is broken. A header of the log's columns with no row under it is."""
    from licanom.data.extract.files import read_new_rows

    page = tmp_path / "logs" / "notcsv.csv"
    page.parent.mkdir()
    page.write_text("<html><body>502 Bad Gateway</body></html>\n")
    for target in (page, page.parent):
        with pytest.raises(ValidationError, match=r"notcsv\.csv: the log lacks required column\(s\) \['Id'"):
            read_new_rows(target, after_id=41)
    page.write_text(_HEADER + "\n")
    frame, at_or_below = read_new_rows(page, after_id=41)
    assert frame.height == 0 and at_or_below == 0


def test_the_quarantines_reasons_are_counted_commonest_first_for_a_training_runs_line(raw_log) -> None:
    """`licanom run train` said only "9 quarantined" where `prepare` said why: the reasons with their
    counts (ValidationResult.reasons), as the night's report says them."""
    bad = _text(raw_log.head(12)).with_columns(
        pl.Series("Id", ["1", "x", "3", "4", "y", "6", "7", "8", "9", "10", "11", "12"]),
        pl.Series("State", ["1010", "1010", "5555", "1010", "1010", "5555", "5555", "1010", "1010", "1010", "1010", "1010"]))
    result = validate_log(bad)
    assert result.reasons() == "State: unknown state code (3), Id: not an integer (2)"
    assert result.reasons(top=1) == "State: unknown state code (3), Id: not an integer (2)"  # one more: no cut
    assert result.quarantine_note() == ("5 rows quarantined, not scored (quarantine.parquet, each with its reason): "
                                        "State: unknown state code (3), Id: not an integer (2)")
    assert validate_log(_text(raw_log.head(3))).reasons() == ""


def test_a_list_of_reasons_is_cut_only_where_it_leaves_out_several(raw_log) -> None:
    """A 5-row quarantine of 5 reasons read "... and 2 more reason(s)" (a cut that hides two reasons
    to save the room of two): the commonest few are listed, and the others named, only where at
    least REASONS_CUT_FROM would be left out; a line with no room for them names the commonest."""
    from licanom.data.validate import REASON, REASONS_CUT_FROM, ValidationResult, reasons_shown

    def result(n: int) -> ValidationResult:
        reasons = [f"C{i}: bad" for i in range(n) for _ in range(n - i)]  # C0 the commonest
        return ValidationResult(valid=raw_log.head(0), quarantine=pl.DataFrame({REASON: pl.Series(reasons, dtype=pl.String)}),
                                n_in=100)

    assert REASONS_CUT_FROM == 4 and [reasons_shown(n, 3) for n in range(1, 10)] == [1, 2, 3, 4, 5, 6, 3, 3, 3]
    six = result(6).reasons()
    assert six == "C0: bad (6), C1: bad (5), C2: bad (4), C3: bad (3), C4: bad (2), C5: bad (1)"
    assert result(7).reasons() == "C0: bad (7), C1: bad (6), C2: bad (5) and 4 more reasons"
    assert result(1).commonest_reason() == "C0: bad"
    assert result(2).commonest_reason() == "2 C0: bad, 1 other reason"
    assert result(7).commonest_reason() == "7 C0: bad, 6 other reasons"
    assert result(0).commonest_reason() is None and result(0).reasons() == ""
    # a pseudonymised vendor's line (the prepare flow's, into Prefect's log) names a broken line's file
    # by its base name, not the vendor's folders
    broken = ValidationResult(valid=raw_log.head(0), n_in=100, quarantine=pl.DataFrame({
        REASON: ["/srv/customer-x/exports/a.csv line 7: cannot be read as CSV (8 fields, the header has 7)"],
        "_file": ["/srv/customer-x/exports/a.csv"]}))
    assert "customer-x" in str(broken.commonest_reason())
    assert broken.commonest_reason(private=True) == "a.csv: cannot be read as CSV (8 fields, the header has 7)"
