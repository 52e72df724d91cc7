"""Deriving, encoding and chunking (thesis 3.1.2) and the summary vector (3.4)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from licanom.data.chunk import NotEnoughDataError, make_chunks, split_chunks, window_starts
from licanom.data.columns import FEATURE_COLUMNS, SUMMARY_COLUMNS, UNKNOWN_COUNTRY
from licanom.config import load_config
from licanom.data.derive import countries, derive
from licanom.data.encode import Vocabulary, get_encoder
from licanom.data.pipeline import encode, prepare
from licanom.data.validate import validate_log
from tests.conftest import make_raw_log


def _thesis_config():  # the thesis's encoder by name (conf/defaults.yaml chooses the rows mode)
    return load_config(overrides={"encode": {"encoder": "thesis"}})


def test_countries_offline_and_unknown():
    got = countries(pl.Series(["8.8.8.8", "192.168.1.10", "", "10.0.0.1", "2001:4860::1", "8.8.8.8"]))
    assert got.to_list() == ["US", UNKNOWN_COUNTRY, UNKNOWN_COUNTRY, UNKNOWN_COUNTRY, "US", "US"]


def test_derive_success_action():
    log = validate_log(make_raw_log(50)).valid
    d = derive(log)
    expect_success = ((d["State"] // 10) % 10 == 1).cast(pl.Int8)
    assert (d["success"] == expect_success).all()
    assert (d["action"] == (d["State"] // 100) * 10 + d["State"] % 10).all()


def test_thesis_encoding_by_first_appearance():
    derived = pl.DataFrame({
        "Id": [1, 2, 3, 4], "Time": [0, 1, 2, 3],
        "IP": ["a", "a", "b", "c"], "Key": ["k", "k", "k", "k"], "ProductId": [1, 2, 1, 2],
        "action": [100, 100, 100, 101], "MachineCode": ["AAA", "BBB", "CCC", "AAA"],
        "country": ["SE", "SE", "SE", "SE"], "success": [1, 0, 1, 1],
    }).with_columns(pl.col("Time").cast(pl.Datetime("us", "UTC")), pl.col("success").cast(pl.Int8))
    vocab = Vocabulary.fit(derived)
    enc = get_encoder("thesis").encode(derived, vocab)
    np.testing.assert_allclose(enc["f_machine_code"].to_numpy(), [1 / 3, 2 / 3, 1.0, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(enc["f_key"].to_numpy(), [1.0] * 4)
    np.testing.assert_allclose(enc["f_product"].to_numpy(), [0.5, 1.0, 0.5, 1.0])


def test_encoding_is_stable_from_one_night_to_the_next(tmp_path):
    cfg = _thesis_config()
    log = validate_log(make_raw_log(600)).valid
    first = encode(log.head(400), cfg.encode)
    first.vocabulary.save(tmp_path / "vocab.json")
    reloaded = Vocabulary.load(tmp_path / "vocab.json")
    assert reloaded.digest() == first.vocabulary.digest()
    night = log.tail(200).vstack(
        log.tail(1).with_columns(pl.lit("NEW-KEY").alias("Key"), pl.lit(99_999, dtype=pl.Int64).alias("Id"))
    )
    again = encode(night, cfg.encode, reloaded).frame
    # a value known from training encodes as it did then
    known = first.frame.select("Key", "f_key").unique()
    joined = again.join(known, on="Key", how="inner", suffix="_then")
    assert joined.height > 0 and (joined["f_key"] == joined["f_key_then"]).all()
    # a value first seen after training encodes as 0.0
    assert again.filter(pl.col("Key") == "NEW-KEY")["f_key"].to_list() == [0.0]


def _encoded(n: int) -> pl.DataFrame:
    return encode(validate_log(make_raw_log(n)).valid, _thesis_config().encode).frame


def test_chunk_shapes_and_boundaries():
    enc = _encoded(1050)
    chunks = make_chunks(enc, size=100)
    assert chunks.X.shape == (10, 100, 8) and chunks.X.dtype == np.float32
    assert chunks.tail_rows == 50
    ids = enc["Id"].to_numpy()
    assert chunks.meta["first_id"].to_list() == ids[0:1000:100].tolist()
    assert chunks.meta["last_id"].to_list() == ids[99:1000:100].tolist()
    np.testing.assert_array_equal(chunks.X[3, :, 1:], enc.select(FEATURE_COLUMNS[1:]).to_numpy()[300:400])


def test_time_normalised_per_window():
    chunks = make_chunks(_encoded(500), size=50, stride=25)
    t = chunks.X[:, :, 0]
    assert np.allclose(t[:, 0], 0.0) and np.allclose(t[:, -1], 1.0)
    assert (np.diff(t, axis=1) >= 0).all()


def test_stride_and_overlap_partial():
    assert window_starts(250, 100, 50, "drop").tolist() == [0, 50, 100, 150]
    assert window_starts(260, 100, 100, "overlap").tolist() == [0, 100, 160]
    with pytest.raises(NotEnoughDataError, match="fewer than one chunk"):
        window_starts(99, 100, 100, "drop")
    with pytest.raises(NotEnoughDataError, match="no valid rows"):
        window_starts(0, 100, 100, "drop")


def test_summary_vector_counts_distinct_raw_values():
    enc = _encoded(400)
    chunks = make_chunks(enc, size=100)
    for c in range(4):
        window = enc.slice(c * 100, 100)
        assert chunks.meta["distinct_key"][c] == window["Key"].n_unique()
        assert chunks.meta["distinct_machine_code"][c] == window["MachineCode"].n_unique()
        assert chunks.meta["distinct_success"][c] == window["success"].n_unique()
    # the overlapping path computes the same vectors
    overlapping = make_chunks(enc, size=100, stride=50)
    same = overlapping.meta.filter(pl.col("chunk") % 2 == 0).select(SUMMARY_COLUMNS)
    assert same.equals(chunks.meta.select(SUMMARY_COLUMNS))


def test_split_is_seeded_80_20_or_time_ordered():
    a, b = split_chunks(100, "shuffle", 0.2, seed=1), split_chunks(100, "shuffle", 0.2, seed=1)
    assert a.sum() == 20 and (a == b).all()
    assert not (split_chunks(100, "shuffle", 0.2, seed=2) == a).all()
    t = split_chunks(100, "time", 0.2)
    assert t[80:].all() and not t[:80].any()


def test_prepare_short_log_is_a_clear_error():
    with pytest.raises(NotEnoughDataError, match="fewer than one chunk"):
        prepare(make_raw_log(60), load_config())


# --- the fast paths agree with the plain definitions ---------------------------------------
def _window_counts(enc: pl.DataFrame, starts, size: int) -> pl.DataFrame:
    """The summary vector by its definition: n_unique of each raw column in each window."""
    from licanom.data.columns import SUMMARY_SOURCES

    rows = [
        [enc.slice(int(s), size)[src].n_unique() for _, src in SUMMARY_SOURCES] for s in starts
    ]
    return pl.DataFrame(rows, schema={c: pl.Int32 for c in SUMMARY_COLUMNS}, orient="row")


@pytest.mark.parametrize("seed", [0, 1])
def test_derive_fit_encode_equals_the_three_steps(seed):
    from licanom.data.encode import ThesisEncoder, derive_fit_encode
    from licanom.sim import simulate

    for valid in (validate_log(make_raw_log(700, seed=seed)).valid,
                  validate_log(simulate("mixed", seed=seed, days=3).log).valid):
        derived = derive(valid)
        vocabulary = Vocabulary.fit(derived)
        frame, fitted = derive_fit_encode(valid)
        assert fitted == vocabulary and fitted.digest() == vocabulary.digest()
        assert frame.equals(ThesisEncoder().encode(derived, vocabulary))


@pytest.mark.parametrize(
    ("size", "stride", "partial"), [(50, 50, "drop"), (50, 20, "drop"), (40, 40, "overlap"), (30, 7, "overlap")]
)
def test_summary_counts_distinct_raw_values_also_unseen_ones(size, stride, partial):
    cfg = _thesis_config()
    log = validate_log(make_raw_log(400, seed=2)).valid
    vocabulary = encode(log.head(150), cfg.encode).vocabulary
    # rows 150.. hold values the vocabulary has not seen: several of them per window
    night = log.with_columns(
        pl.when(pl.int_range(pl.len()) >= 150)
        .then(pl.format("new-{}", pl.int_range(pl.len()) % 7))
        .otherwise(pl.col("Key"))
        .alias("Key")
    )
    enc = encode(night, cfg.encode, vocabulary).frame
    assert (enc["f_key"] == 0.0).sum() == 250
    chunks = make_chunks(enc, size=size, stride=stride, partial=partial)
    starts = chunks.meta["start_row"].to_numpy()
    assert chunks.meta.select(SUMMARY_COLUMNS).equals(_window_counts(enc, starts, size))
    # the windows hold the rows they say they hold
    rows = enc.select(FEATURE_COLUMNS[1:]).to_numpy()
    for c, s in enumerate(starts):
        np.testing.assert_array_equal(chunks.X[c, :, 1:], rows[s:s + size])


def test_summary_of_an_unsorted_frame():
    enc = _encoded(300).sample(fraction=1.0, shuffle=True, seed=1)
    chunks = make_chunks(enc, size=60, stride=45, partial="overlap")
    starts = chunks.meta["start_row"].to_numpy()
    assert chunks.meta.select(SUMMARY_COLUMNS).equals(_window_counts(enc, starts, 60))


def test_windows_of_one_timestamp_are_zero_time():
    enc = _encoded(200).with_columns(pl.lit(5.0).alias("f_time"))
    chunks = make_chunks(enc, size=50)
    assert (chunks.X[:, :, 0] == 0.0).all()


def test_countries_of_nothing():
    assert countries(pl.Series("IP", [], dtype=pl.String)).to_list() == []
    assert countries(pl.Series("IP", [None, None], dtype=pl.String)).to_list() == [UNKNOWN_COUNTRY] * 2


def test_too_large_a_vocabulary_is_refused(monkeypatch):
    import licanom.data.encode as enc_mod

    monkeypatch.setattr(enc_mod, "MAX_VOCABULARY", 3)
    derived = derive(validate_log(make_raw_log(100)).valid)
    with pytest.raises(ValueError, match="float32 features can tell at most"):
        get_encoder("thesis").encode(derived, Vocabulary.fit(derived))


def test_frequency_encoder_orders_values_from_rarest_to_commonest():
    from licanom.config import EncodeConfig
    from licanom.data.derive import derive
    from licanom.data.encode import FrequencyEncoder, Vocabulary, get_encoder
    from licanom.data.pipeline import encode

    raw = make_raw_log(400, seed=3)
    derived = derive(raw)
    vocab = FrequencyEncoder().fit(derived)
    assert vocab.encoder == "frequency"
    counts = dict(derived.group_by("Key").len().iter_rows())
    keys = vocab.values["Key"]
    assert [counts[k] for k in keys] == sorted(counts[k] for k in keys)  # rarest first
    assert set(keys) == set(Vocabulary.fit(derived).values["Key"])  # the same values as the thesis's
    enc = encode(raw, EncodeConfig(encoder="frequency")).frame
    by_key = dict(enc.select("Key", "f_key").unique().iter_rows())
    commonest = max(counts, key=lambda k: (counts[k], -keys.index(k)))
    assert by_key[commonest] == pytest.approx(1.0)
    assert len(set(by_key.values())) == len(by_key)  # distinct values keep distinct features
    # a value never seen in training encodes below every known one
    unseen = get_encoder("frequency").encode(derive(raw.with_columns(pl.lit("NEW-KEY").alias("Key"))), vocab)
    assert (unseen["f_key"] == 0.0).all()


@pytest.mark.parametrize("ids_in_row_order", [True, False])
def test_first_appearance_positions(monkeypatch, ids_in_row_order):
    from licanom.data.encode import _first_appearance

    text = pl.Series("Key", ["k2", "k1", "k2", "k3", "k1", "k1", "k4"])
    if not ids_in_row_order:  # categories that already hold some texts: ids not in row order
        taken = pl.Categories.random()
        keep = pl.Series(["k3", "k1"]).cast(pl.Categorical(taken))
        monkeypatch.setattr(pl.Categories, "random", staticmethod(lambda *a, **k: taken))
    values, at = _first_appearance(text)
    assert values.to_list() == ["k2", "k1", "k3", "k4"]
    assert at.to_list() == [0, 1, 0, 2, 1, 1, 3]
    if not ids_in_row_order:
        assert keep.len() == 2


@pytest.mark.parametrize("order", ["in_order", "shuffled"])
def test_validation_codes_give_the_same_encoding(order):
    """The texts' codes validation found (ids not in order of first appearance once rows are
    dropped or sorted) encode the same frame and vocabulary as the texts hashed afresh."""
    raw = make_raw_log(600, seed=4).with_columns(
        pl.when(pl.int_range(pl.len()) % 9 == 0).then(pl.lit(" ")).otherwise(pl.col("Key")).alias("Key"))
    if order == "shuffled":
        raw = raw.sample(fraction=1.0, shuffle=True, seed=2)
    validation = validate_log(raw)
    assert validation.quarantine.height > 0 and validation.codes is not None
    cfg = _thesis_config().encode
    fresh, reused = encode(validation.valid, cfg), encode(validation.valid, cfg, codes=validation.codes)
    assert reused.frame.equals(fresh.frame) and reused.vocabulary == fresh.vocabulary
    # codes of another frame are not used
    head = validation.valid.head(100)
    assert encode(head, cfg, codes=validation.codes).frame.equals(encode(head, cfg).frame)


@pytest.mark.parametrize("order", ["in_order", "shuffled"])
def test_the_rows_encoder_and_its_chunks_are_the_same_with_the_codes_reused(order):
    """The rows path codes each text once (validation's codes of keys and addresses reused, the
    encoder's codes handed to the windows' summary): same frame, state, chunks and codes as
    each step hashing the texts itself."""
    from licanom.data.derive import derive, derive_coded
    from licanom.data.encode import RowsEncoder
    from licanom.data.pipeline import chunk
    from licanom.sim import simulate

    raw = simulate("mixed", seed=2, days=4).log.with_columns(
        pl.when(pl.int_range(pl.len()) % 50 == 0).then(pl.lit(" ")).otherwise(pl.col("Key")).alias("Key"))
    if order == "shuffled":
        raw = raw.sample(fraction=1.0, shuffle=True, seed=2)
    validation = validate_log(raw)
    assert validation.quarantine.height > 0
    derived, codes = derive_coded(validation.valid, validation.codes)
    plain, plain_codes = derive_coded(validation.valid)
    assert derived.equals(plain) and derived.equals(derive(validation.valid))
    assert all(np.array_equal(codes.codes[c], plain_codes.codes[c]) for c in plain_codes.codes)
    cfg = load_config(overrides={"encode": {"encoder": "rows"}})
    reused = encode(validation.valid, cfg.encode, codes=validation.codes)
    frame, vocabulary = RowsEncoder().fit_encode(derive(validation.valid))
    assert reused.frame.equals(frame) and reused.vocabulary == vocabulary
    got, mask = chunk(reused, cfg.chunk, cfg.split)
    want = make_chunks(frame, size=cfg.chunk.size, stride=cfg.chunk.stride, partial=cfg.chunk.partial)
    assert np.array_equal(got.X, want.X) and got.meta.equals(want.meta)
    assert all(np.array_equal(got.codes.codes[c], want.codes.codes[c]) for c in want.codes.codes)
