"""The rows encoder's state and features against their plain definitions (group-bys, windows
over each entity, joins of every row), and the rows mode's windows and summaries.

The encoder answers these from integer codes and first-row flags; here the same answers come
from the definitions written out, on small logs in time order, out of it, and with texts missing.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from licanom.data.chunk import _text_codes, make_chunks
from licanom.data.columns import SUMMARY_COLUMNS, SUMMARY_SOURCES, UNKNOWN_COUNTRY
from licanom.data.derive import derive
from licanom.data.encode import ROW_FEATURE_COLUMNS, RowsEncoder, RowsState, Vocabulary
from licanom.data.validate import validate_log
from tests.conftest import make_raw_log

ENTITIES = (
    ("Key", "key", ""), ("MachineCode", "machine", ""), ("IP", "ip", ""), ("country", "country", UNKNOWN_COUNTRY),
)
PAIRS = ENTITIES[1:]


def _rows(derived: pl.DataFrame) -> pl.DataFrame:
    return derived.select(
        pl.col("Time").dt.epoch("us").alias("_t"),
        *(pl.col(c).cast(pl.String).fill_null("") for c, _, _ in ENTITIES),
    ).with_row_index("_row").with_columns(
        (pl.col("_t") - pl.col("_t").shift(1)).alias("_gap"),
        (pl.col("_t") - pl.col("_t").shift(1).over("Key")).alias("_key_gap"),
    )


def _log1p_seconds(us: pl.Expr) -> pl.Expr:
    return (us.cast(pl.Float64).clip(lower_bound=0.0) / 1e6).log1p()


def reference_state(derived: pl.DataFrame) -> RowsState:
    """RowsEncoder.state by its definition: the earliest time of each value and pair, each key's
    latest, in order of first appearance; the medians of the log gaps."""
    frame = _rows(derived)
    first_seen = {
        e: tuple(frame.filter(pl.col(e) != unknown).group_by(e, maintain_order=True)
                 .agg(pl.col("_t").min()).iter_rows())
        for e, _, unknown in ENTITIES
    }
    pairs = {
        e: tuple(frame.filter((pl.col(e) != unknown) & (pl.col("Key") != ""))
                 .group_by("Key", e, maintain_order=True).agg(pl.col("_t").min()).iter_rows())
        for e, _, unknown in PAIRS
    }
    last = frame.filter(pl.col("Key") != "").group_by("Key", maintain_order=True).agg(pl.col("_t").max())
    fills = frame.select(_log1p_seconds(pl.col("_gap")).median(), _log1p_seconds(pl.col("_key_gap")).median()).row(0)
    return RowsState(first_seen=first_seen, pairs=pairs, key_last=tuple(last.iter_rows()),
                     gap_fill=tuple(float(v) if v is not None else 0.0 for v in fills))


def reference_news(derived: pl.DataFrame, state: RowsState) -> pl.DataFrame:
    """The new_* flags and log_key_gap by their definition, joining every row with the state."""
    frame = _rows(derived)
    last = pl.DataFrame(state.key_last, schema={"Key": pl.String, "_last": pl.Int64}, orient="row")
    frame = frame.join(last, on="Key", how="left", maintain_order="left")
    before = pl.when(pl.col("_last") < pl.col("_t")).then(pl.col("_t") - pl.col("_last"))
    out = [_log1p_seconds(pl.col("_key_gap").fill_null(before)).fill_null(state.gap_fill[1]).alias("log_key_gap")]
    for e, short, unknown in ENTITIES:
        frame = frame.join(state.known(e), on=e, how="left", maintain_order="left")
        first = pl.col("_row") == pl.col("_row").min().over(e)
        frame = frame.with_columns(
            (first & ~(pl.col("_t0") < pl.col("_t")).fill_null(False) & (pl.col(e) != unknown)).alias(f"new_{short}")
        ).drop("_t0")
    for e, short, unknown in PAIRS:
        frame = frame.join(state.known_pairs(e), on=["Key", e], how="left", maintain_order="left")
        first = pl.col("_row") == pl.col("_row").min().over("Key", e)
        valid = (pl.col(e) != unknown) & (pl.col("Key") != "")
        frame = frame.with_columns(
            (first & ~(pl.col("_t0") < pl.col("_t")).fill_null(False) & valid).alias(f"new_{short}_to_key")
        ).drop("_t0")
    names = [f"new_{s}" for _, s, _ in ENTITIES] + [f"new_{s}_to_key" for _, s, _ in PAIRS]
    return frame.select(*out, *(pl.col(n).cast(pl.Float32) for n in names)).with_columns(
        pl.col("log_key_gap").cast(pl.Float32)
    ).rename(lambda c: f"r_{c}")


def _derived(n: int, seed: int) -> pl.DataFrame:
    return derive(validate_log(make_raw_log(n, seed=seed)).valid)


def _planted(derived: pl.DataFrame, at: list[int]) -> pl.DataFrame:
    """A key, machine and address never seen before at rows ``at``."""
    hit = pl.int_range(pl.len()).is_in(at)
    return derived.with_columns(
        *(pl.when(hit).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
          for c, v in (("Key", "KNEW"), ("MachineCode", "mcNEW"), ("IP", "9.9.9.9")))
    )


@pytest.mark.parametrize("order", ["time", "shuffled"])
def test_state_and_features_are_those_of_their_definitions(order):
    derived = _derived(900, seed=4)
    train, night = derived.head(600), _planted(derived.tail(300), [10, 11, 200])
    if order == "shuffled":  # out of time order: the group-bys, not first rows
        train, night = (f.sample(fraction=1.0, shuffle=True, seed=2) for f in (train, night))
    vocabulary = RowsEncoder().fit(train)
    assert vocabulary.rows == reference_state(train)
    assert RowsEncoder().state(night) == reference_state(night)
    features = RowsEncoder().encode(night, vocabulary)
    expected = reference_news(night, vocabulary.rows)
    assert features.select(expected.columns).equals(expected)
    if order == "time":  # the planted key is new at its first row only
        assert features["r_new_key"].gather([10, 11, 200]).to_list() == [1.0, 0.0, 0.0]


def test_a_missing_text_and_a_missing_time_read_as_their_definitions():
    derived = _derived(500, seed=5).with_columns(
        pl.when(pl.int_range(pl.len()) % 9 == 2).then(None).otherwise(pl.col("MachineCode")).alias("MachineCode"),
        pl.when(pl.int_range(pl.len()) == 77).then(None).otherwise(pl.col("Time")).alias("Time"),
    )
    assert RowsEncoder().state(derived) == reference_state(derived)
    vocabulary = RowsEncoder().fit(derived)
    assert vocabulary.values == Vocabulary.fit(derived).values  # nulls are no value


def test_fit_encode_is_fit_then_encode():
    derived = _planted(_derived(700, seed=6), [3, 500])
    frame, vocabulary = RowsEncoder().fit_encode(derived)
    fitted = RowsEncoder().fit(derived)
    assert vocabulary == fitted and vocabulary.digest() == fitted.digest()
    assert vocabulary.values == Vocabulary.fit(derived).values
    assert frame.equals(RowsEncoder().encode(derived, fitted))


@pytest.mark.parametrize(("size", "stride", "partial"), [(50, 50, "drop"), (40, 15, "overlap")])
def test_rows_windows_hold_their_rows_and_count_distinct_values(size, stride, partial):
    derived = _derived(640, seed=7)
    encoded = RowsEncoder().encode(derived, RowsEncoder().fit(derived)).with_columns(
        pl.when(pl.int_range(pl.len()) % 4 == 1).then(None).otherwise(pl.col("Key")).alias("Key")
    )
    chunks = make_chunks(encoded, size=size, stride=stride, partial=partial)
    starts = chunks.meta["start_row"].to_numpy()
    rows = encoded.select(ROW_FEATURE_COLUMNS).to_numpy().astype(np.float32)
    assert chunks.X.shape == (len(starts), size, len(ROW_FEATURE_COLUMNS)) and chunks.X.flags["C_CONTIGUOUS"]
    for c, s in enumerate(starts):
        np.testing.assert_array_equal(chunks.X[c], rows[s:s + size])
    expected = pl.DataFrame(
        [[encoded.slice(int(s), size)[src].n_unique() for _, src in SUMMARY_SOURCES] for s in starts],
        schema={c: pl.Int32 for c in SUMMARY_COLUMNS}, orient="row",
    )
    assert chunks.meta.select(SUMMARY_COLUMNS).equals(expected)


def test_text_codes_are_equal_exactly_for_equal_texts():
    texts = pl.Series(["b", "a", None, "b", "", None, "a", "c"])
    codes = _text_codes(texts)
    for i in range(len(texts)):
        for j in range(len(texts)):
            assert (codes[i] == codes[j]) == (texts[i] == texts[j] or (texts[i] is None and texts[j] is None))

