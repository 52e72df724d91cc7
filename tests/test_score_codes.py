"""Scoring raw rows computes the entities' codes once and shares them (licanom.data.codes), counts
the context a block of rows at a time, and does not encode rows for a model that reads no
feature: none of it changes a value.

The blocked steps are checked with a block of a few dozen rows (so that a log of a few thousand
rows crosses many blocks and hours) against the plain expressions of tests/test_context_codes.py.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import licanom.data.context_vector as cv
from licanom.data.chunk import make_chunks
from licanom.data.codes import ENTITY_TEXTS, TextCodes
from licanom.data.context_vector import KeyHistory, chunk_context, row_context
from licanom.data.derive import derive, derive_coded
from licanom.data.validate import validate_log
from licanom.sim import simulate
from tests.test_context_codes import reference_row_context, reference_top_share


@pytest.fixture(scope="module")
def raw() -> pl.DataFrame:
    return validate_log(simulate("mixed", seed=5, days=6).log).valid


@pytest.fixture(scope="module")
def derived(raw) -> pl.DataFrame:
    return derive(raw)


def _same_partition(text: pl.Series, codes: np.ndarray) -> bool:
    """Equal codes for equal texts, and only then."""
    frame = pl.DataFrame({"t": text.cast(pl.String).fill_null(""), "c": codes})
    return (frame.group_by("t").agg(pl.col("c").n_unique())["c"].max() == 1
            and frame.group_by("c").agg(pl.col("t").n_unique())["t"].max() == 1)


def test_derive_coded_is_derive_with_the_codes_of_its_texts(raw, derived):
    got, codes = derive_coded(raw)
    assert_frame_equal(got, derived)
    for column in ENTITY_TEXTS:
        assert _same_partition(derived[column], codes.codes[column]), column


def test_text_codes_look_up_texts(derived):
    codes = TextCodes.of(derived)
    key = derived["Key"][7]
    found = codes.lookup(derived, "Key", pl.Series([key, "no such key"]))
    assert found[0] == codes.codes["Key"][7] and found[1] == -1
    with pytest.raises(ValueError, match="rows"):
        TextCodes.from_codes(3, {"Key": np.zeros(2, dtype=np.uint32)})


def test_the_blocked_steps_give_the_reference_counts(derived, monkeypatch):
    monkeypatch.setattr(cv, "_BLOCK", 37)  # many blocks, cut inside hours and across them
    history = KeyHistory.from_rows(derived.head(800))
    assert_frame_equal(row_context(derived, history), reference_row_context(derived, history))
    size = 20
    for starts in (np.arange(0, derived.height - size + 1, size), np.arange(40, derived.height - size + 1, size),
                   np.arange(0, derived.height - size + 1, 7)):
        got = chunk_context(derived, starts, size, history)
        rows = reference_row_context(derived, history).to_numpy()
        np.testing.assert_allclose(got[:, 3:], np.stack([rows[s : s + size].max(axis=0) for s in starts]),
                                   rtol=1e-12, atol=0)  # log1p: numpy and polars may differ in the last bit
        np.testing.assert_array_equal(got[:, 2], reference_top_share(derived, starts, size))


def test_shared_codes_change_no_summary_and_no_context(raw, derived):
    _, codes = derive_coded(raw)
    plain = make_chunks(derived, size=20, windows=False)
    shared = make_chunks(derived, size=20, windows=False, codes=codes)
    assert_frame_equal(plain.meta, shared.meta)
    assert shared.codes is not None and all(shared.codes.codes[c] is codes.codes[c] for c in ENTITY_TEXTS)
    starts = plain.meta["start_row"].to_numpy()
    history = KeyHistory.from_rows(derived.head(800))
    np.testing.assert_array_equal(chunk_context(derived, starts, 20, history, shared.codes),
                                  chunk_context(derived, starts, 20, history))
    # codes of another frame's height are not taken for this one's
    other = TextCodes.of(derived.head(100))
    np.testing.assert_array_equal(chunk_context(derived, starts, 20, history, other),
                                  chunk_context(derived, starts, 20, history))


def test_a_context_model_scores_the_same_rows_without_encoding_them():
    """The rows encoder's features are not computed for a model that never reads them, and the
    chunks are those of the thesis's encoding."""
    from licanom.data.encode import ROW_FEATURE_COLUMNS, RowsEncoder
    from licanom.ops.bundle import make_windows, score_windows
    from tests.night_harness import make_bundle, rows

    bundle = make_bundle()
    train = derive(validate_log(rows(1000, 600)).valid)
    rows_mode = replace(bundle, vocabulary=RowsEncoder().fit(train),
                        encode=bundle.encode.model_copy(update={"encoder": RowsEncoder.name}))
    night = validate_log(rows(1600, 200, seed=3)).valid
    windows = make_windows(rows_mode, night)
    assert windows.encoded is not None and not set(ROW_FEATURE_COLUMNS) & set(windows.encoded.columns)
    assert_frame_equal(score_windows(rows_mode, windows), score_windows(bundle, make_windows(bundle, night)))
