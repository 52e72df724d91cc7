"""The rows encoder's state carried from night to night (licanom.ops.scoring_state, licanom.ops.nightly).

A rows-mode autoencoder judges each request against a :class:`licanom.data.encode.RowsState`: is
its key, machine code, address or country new, how long since the key's previous request. The
vendor's state keeps the rows state of the nights scored with the champion's version, committed
with the watermark, so a key first seen on one night is not new on the next and its gap counts
from its last scored request; a new model version starts from its own training rows.

Small: LSTM_AE_Small in the rows mode, 1 epoch on 600 rows, chunks of 20, nights of ~100 rows.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

import numpy as np
import polars as pl
import pytest

from licanom.config import ChunkConfig, EncodeConfig
from licanom.data.derive import derive
from licanom.data.columns import ERROR_COLUMNS
from licanom.data.encode import ROW_FEATURES, RowsEncoder, RowsState
from licanom.data.validate import validate_log
from licanom.ops.bundle import ModelBundle, reads_rows, rows_seen, with_rows_state
from licanom.ops.scoring_state import (
    ROWS_FILE,
    NightsRows,
    StateCorruptError,
    advance,
    empty_tail,
    load_state,
    start_after,
    state_dir,
)
from tests.night_harness import CHUNK, make_bundle, new_vendor, rows, tracker_for

NEW_KEY, NEW_MACHINE, NEW_IP = "KNEW-00001", "mcNEW", "9.9.9.9"


def _plant(frame: pl.DataFrame, at: list[int], ip: str = NEW_IP) -> pl.DataFrame:
    """The rows at positions ``at`` made requests of the new key, from its new machine and address."""
    hit = pl.int_range(pl.len()).is_in(at)
    return frame.with_columns(
        pl.when(hit).then(pl.lit(NEW_KEY)).otherwise(pl.col("Key")).alias("Key"),
        pl.when(hit).then(pl.lit(NEW_MACHINE)).otherwise(pl.col("MachineCode")).alias("MachineCode"),
        pl.when(hit).then(pl.lit(ip)).otherwise(pl.col("IP")).alias("IP"),
    )


# night 1: Ids 1600-1709, the new key at 1610, 1640, 1670 (scored) and 1705 (in the 10-row tail)
NIGHT1 = _plant(rows(1600, 110, seed=3), [10, 40, 70, 105])
# night 2: Ids 1710-1809, the new key at 1715 and 1760, from another new address
NIGHT2 = _plant(rows(1710, 100, seed=4), [5, 50], ip="9.9.9.10")


def _time(frame: pl.DataFrame, id_: int) -> datetime:
    return datetime.fromisoformat(frame.filter(pl.col("Id") == str(id_))["Time"][0])


def _sets(state: RowsState | None) -> tuple[dict, dict, dict] | None:  # type: ignore[type-arg]
    """A rows state as sets (its tuples' order is not part of it)."""
    if state is None:
        return None
    return ({e: set(v) for e, v in state.first_seen.items() if v}, {e: set(v) for e, v in state.pairs.items() if v},
            dict(state.key_last))


@pytest.fixture(scope="module")
def rows_bundle() -> ModelBundle:
    """A rows-mode autoencoder trained (1 epoch) on Ids 1000-1599."""
    from licanom.data.chunk import make_chunks
    from licanom.detectors.autoencoders.detector import AutoencoderDetector

    derived = derive(validate_log(rows(1000, 600)).valid)
    encoder = RowsEncoder()
    vocabulary = encoder.fit(derived)
    chunks = make_chunks(encoder.encode(derived, vocabulary), size=CHUNK, stride=CHUNK)
    det = AutoencoderDetector(model="LSTM_AE_Small", inputs="rows", epochs=1, batch_size=8, threads=1,
                              progress_bar=False).fit(chunks.X)
    return ModelBundle(vendor="acme", detector=det, vocabulary=vocabulary, chunk=ChunkConfig(size=CHUNK, stride=CHUNK),
                       encode=EncodeConfig(encoder="rows"), product_ids=(3, 7))


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    """One MLflow store for the module (creating one costs seconds); each test its own vendor."""
    return tracker_for(tmp_path_factory.mktemp("mlflow"))


def _night(v, tracker, version: str = "1", since: int | None = None):  # type: ignore[no-untyped-def]
    """One night through the library's steps (as licanom.ops.nightly.score_night), the Night returned."""
    from licanom.ops import nightly
    from licanom.ops.scoring_state import vendor_lock

    cfg = v.config()
    with vendor_lock(v.out, v.name):
        night = nightly.open_night(v.out, v.name, tracker, since, champion=(ModelBundle.load(v.model_dir), version))
        night = nightly.score_rows(nightly.read_night(night, cfg.source), cfg.validate_.max_bad_fraction)
        return nightly.publish(tracker, nightly.log(tracker, nightly.stage_night(night)))


def _new_key_rows(night) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    return night.windows.encoded.filter(pl.col("Key") == NEW_KEY).select(
        pl.col("Id").cast(pl.Int64), "r_new_key", "r_new_machine", "r_new_ip", "r_new_machine_to_key",
        "r_new_ip_to_key", "r_log_key_gap")


def _scored_state(frame: pl.DataFrame, n_scored: int) -> RowsState:
    """The rows state of a night's first ``n_scored`` rows (what its windows scored)."""
    return RowsEncoder().state(derive(validate_log(frame).valid).head(n_scored))


@pytest.fixture
def vendor(tmp_path, rows_bundle):
    v = new_vendor(tmp_path, "acme", rows_bundle)
    v.start(1599)
    return v


def test_a_key_first_seen_on_one_night_is_not_new_the_next_and_its_gap_counts_from_it(vendor, tracker) -> None:
    vendor.append(NIGHT1)
    first = _night(vendor, tracker)
    assert first.chunks.height == 5 and first.windows.tail.height == 10
    # chunks.parquet of a rows-mode model: the thesis's 8 error_* columns empty, top_feature a rows column
    chunks = pl.read_parquet(first.result.out_dir / "chunks.parquet")
    assert all(chunks[c].null_count() == 5 for c in ERROR_COLUMNS)
    assert set(chunks["top_feature"]) <= set(ROW_FEATURES)
    # one forward pass gives the detector's own score and most unusual column
    det, inputs = first.model.detector, first.windows.chunks.X
    assert np.allclose(first.chunks["score"].to_numpy(), det.decision_function(inputs))
    assert first.chunks["top_feature"].to_list() == det.top_columns(inputs).tolist()
    seen = _new_key_rows(first)
    assert seen["Id"].to_list() == [1610, 1640, 1670, 1705]  # encoded all; 1705 is in the tail, not a window
    assert seen["r_new_key"].to_list() == [1.0, 0.0, 0.0, 0.0] and seen["r_new_machine"].to_list() == [1.0, 0, 0, 0]
    st = load_state(vendor.out, "acme")
    # the rows the windows scored, not the tail (the next night scores and counts it)
    assert st.watermark == 1709 and st.rows is not None and st.model_version == "1"
    assert _sets(st.rows.after) == _sets(_scored_state(NIGHT1, 100))
    assert st.rows.before is None and st.rows.last_from == 1599  # the first night: the training rows before it
    assert (state_dir(vendor.out, "acme") / f"g-{st.generation:08d}" / ROWS_FILE).exists()

    vendor.append(NIGHT2)
    second = _night(vendor, tracker)
    carried = _new_key_rows(second)
    assert carried["Id"].to_list() == [1705, 1715, 1760]  # the carried tail row first
    for flag in ("r_new_key", "r_new_machine", "r_new_machine_to_key"):
        assert carried[flag].sum() == 0.0, flag
    assert carried["r_new_ip"].to_list() == [0.0, 1.0, 0.0]  # night 2's address is new, once
    assert carried["r_new_ip_to_key"].to_list() == [0.0, 1.0, 0.0]
    # the tail row's gap from the key's last scored night-1 request, the next from the tail row
    gaps = [(_time(NIGHT1, 1705) - _time(NIGHT1, 1670)).total_seconds(),
            (_time(NIGHT2, 1715) - _time(NIGHT1, 1705)).total_seconds()]
    np.testing.assert_allclose(carried["r_log_key_gap"][:2].to_numpy(), np.log1p(gaps), rtol=1e-5)

    # against the training rows' state alone (what the flow did before) the same rows say "new"
    stale = RowsEncoder().encode(second.windows.model_rows, ModelBundle.load(vendor.model_dir).vocabulary)
    stale = stale.filter(pl.col("Key") == NEW_KEY)
    assert stale["r_new_key"][0] == 1.0 and stale["r_log_key_gap"][0] != pytest.approx(carried["r_log_key_gap"][0])

    after = load_state(vendor.out, "acme")
    both = pl.concat([NIGHT1, NIGHT2])
    assert _sets(after.rows.after) == _sets(_scored_state(both, 200))  # Ids 1600-1799; 1800-1809 carried
    assert dict(after.rows.after.key_last)[NEW_KEY] == int(_time(NIGHT2, 1760).timestamp() * 1e6)
    assert after.rows.before == st.rows.after and after.rows.last_from == 1709


def test_a_rerun_night_leaves_the_same_rows_state_and_is_judged_as_it_was(vendor, tracker, rows_bundle) -> None:
    vendor.append(NIGHT1)
    first = _night(vendor, tracker)
    once = load_state(vendor.out, "acme")
    again = _night(vendor, tracker)  # nothing new after the watermark
    assert again.result.rows_read == 0
    assert load_state(vendor.out, "acme").rows == once.rows
    rerun = _night(vendor, tracker, since=1599)  # the same night scored again on purpose
    assert rerun.result.rows_read == 110 and rerun.chunks.height == 5
    now = load_state(vendor.out, "acme")
    assert now.watermark == once.watermark and now.rows == once.rows and now.generation > once.generation
    # judged against the state before it (here the training rows'), not one that holds its own rows
    assert rerun.model.vocabulary.rows == rows_bundle.vocabulary.rows
    features = [c for c in first.windows.encoded.columns if c.startswith("r_")]
    assert rerun.windows.encoded.select(features).equals(first.windows.encoded.select(features))
    assert rerun.chunks.drop("score").equals(first.chunks.drop("score"))
    # a night after it is judged against the state holding night 1 again
    vendor.append(NIGHT2)
    second = _night(vendor, tracker)
    assert second.model.vocabulary.rows == rows_bundle.vocabulary.rows.advanced(once.rows.after)


def test_a_night_killed_before_its_commit_and_rerun_counts_its_rows_once(vendor, tracker, monkeypatch) -> None:
    from licanom.ops import scoring_state

    vendor.append(NIGHT1)
    real = scoring_state.crash_point

    class Killed(BaseException):
        pass

    def dies(name: str) -> None:
        if name == "commit:state-tmp":  # the generation written, state.json not yet replaced
            raise Killed(name)
        real(name)

    monkeypatch.setattr(scoring_state, "crash_point", dies)
    with pytest.raises(Killed):
        _night(vendor, tracker)
    assert load_state(vendor.out, "acme").rows is None and load_state(vendor.out, "acme").watermark == 1599
    monkeypatch.setattr(scoring_state, "crash_point", real)
    rerun = _night(vendor, tracker)
    assert rerun.result.rows_read == 110
    st = load_state(vendor.out, "acme")
    assert st.watermark == 1709 and _sets(st.rows.after) == _sets(_scored_state(NIGHT1, 100))


def test_a_new_champion_version_starts_from_its_training_rows(vendor, tracker, rows_bundle) -> None:
    vendor.append(NIGHT1)
    _night(vendor, tracker, version="1")
    vendor.append(NIGHT2)
    second = _night(vendor, tracker, version="2")
    assert second.model.vocabulary.rows == rows_bundle.vocabulary.rows  # nothing of version 1's nights
    fresh = _new_key_rows(second)
    assert fresh["Id"].to_list() == [1705, 1715, 1760] and fresh["r_new_key"].to_list() == [1.0, 0.0, 0.0]
    st = load_state(vendor.out, "acme")
    assert st.model_version == "2" and st.rows_by("1") is None
    # only version 2's night (its rows 1700-1799): the new key first seen at 1705, not 1610
    assert _sets(st.rows.after) == _sets(_scored_state(pl.concat([NIGHT1, NIGHT2]).slice(100, 100), 100))
    assert dict(st.rows.after.first_seen["Key"])[NEW_KEY] == int(_time(NIGHT1, 1705).timestamp() * 1e6)
    assert st.rows.before is None


def test_a_context_champion_keeps_no_rows_state(tmp_path, tracker) -> None:
    """A context model trained with the rows encoder (the default) has a rows vocabulary, but its
    inputs are not the rows features: nothing to carry, nothing stored."""
    base = make_bundle()
    derived = derive(validate_log(rows(1000, 600)).valid)
    context = replace(base, vocabulary=RowsEncoder().fit(derived), encode=EncodeConfig(encoder="rows"))
    assert not reads_rows(context) and with_rows_state(context, _scored_state(NIGHT1, 100)) is context
    v = new_vendor(tmp_path, "acme", context)
    v.start(1599)
    v.append(NIGHT1)
    night = _night(v, tracker)
    assert night.chunks.height == 5 and rows_seen(night.model, night.windows) is None
    st = load_state(v.out, "acme")
    assert st.rows is None and st.seen is not None
    assert not list(state_dir(v.out, "acme").glob(f"g-*/{ROWS_FILE}"))


def test_the_rows_state_file_round_trips_and_a_damaged_one_names_its_file(tmp_path) -> None:
    state = _scored_state(NIGHT1, 100)
    start_after(tmp_path, "acme", 1599)
    advance(tmp_path, "acme", 1709, empty_tail(), "1", rows=state)
    loaded = load_state(tmp_path, "acme")
    assert loaded.rows == NightsRows(after=RowsState.from_dict(state.to_dict()), before=None, last_from=1599)
    # a later night of the same version advances it; a night without a window keeps it
    later = _scored_state(NIGHT2, 100)
    advance(tmp_path, "acme", 1809, empty_tail(), "1", rows=later)
    advance(tmp_path, "acme", 1815, empty_tail(), "1")
    kept = load_state(tmp_path, "acme")
    assert _sets(kept.rows.after) == _sets(state.advanced(later)) and kept.rows.last_from == 1709
    assert _sets(kept.rows.before) == _sets(state)
    # which state judges which rows: the next night's, the last night's again, one inside it
    assert kept.rows_judging("1") is kept.rows.after and kept.rows_judging("1", 1709) is kept.rows.before
    assert kept.rows_judging("1", 1600) is kept.rows.before and kept.rows_judging("1", 1810) is kept.rows.after
    assert kept.rows_judging("2") is None
    # one of another version starts afresh
    advance(tmp_path, "acme", 1900, empty_tail(), "2", rows=later)
    fresh = load_state(tmp_path, "acme").rows
    assert _sets(fresh.after) == _sets(later) and fresh.before is None and fresh.last_from == 1815

    path = next(state_dir(tmp_path, "acme").glob(f"g-*/{ROWS_FILE}"))
    good = json.loads(path.read_text())
    for damage in (b"\x00\xffnot json", path.read_bytes()[:30], json.dumps({"first_seen": 3}).encode(),
                   json.dumps({**good, "after": {**good["after"], "key_last": 3}}).encode(),
                   json.dumps({**good, "last_from": "x"}).encode()):
        path.write_bytes(damage)
        with pytest.raises(StateCorruptError) as err:
            load_state(tmp_path, "acme")
        text = str(err.value)
        assert str(path) in text and "backup" in text and "\n" not in text
