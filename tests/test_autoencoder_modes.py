"""The two input modes of the autoencoders: the thesis's 8 columns and the rows mode."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
import torch

from licanom.data.chunk import make_chunks
from licanom.data.columns import FEATURES, ROW_GROUPS, ROW_REQUEST_FEATURES
from licanom.config import Config, EncodeConfig
from licanom.data.context_vector import ENCODER_ROW_COLUMNS
from licanom.data.derive import derive
from licanom.data.encode import (
    ROW_FEATURE_COLUMNS,
    ROW_FEATURES,
    ROW_SCALED,
    RowsEncoder,
    Vocabulary,
    get_encoder,
    input_mode,
)
from licanom.evaluation.labels import windows_holding
from licanom.detectors.autoencoders.detector import ROW_SCALE_FLOOR, AutoencoderDetector
from licanom.detectors.autoencoders.nets import NETS, build_net, count_parameters
from licanom.data.pipeline import prepare
from licanom.sim import simulate
from licanom.data.states import MethodGroup
from licanom.data.validate import validate_log
from tests.conftest import make_raw_log

N_ROWS_MODE = len(ROW_FEATURES)

# Trainable parameters per mode at chunk size 100 (docs/autoencoders.md). The thesis's column is
# Appendix B's; the rows mode changes only the first layer's inputs and the output layer.
PARAMS: dict[str, tuple[int, int]] = {
    "LSTM_AE": (17_032, 22_184),
    "LSTM_AE_Small": (10_636, 15_788),
    "LSTM_AE_Deep": (17_864, 23_016),
    "LSTM_AE_Deep2": (18_088, 23_240),
    "TCN_AE": (29_204, 38_836),
    "TCN_AE2": (30_281, 39_913),
    "TCN_AE_Small": (29_339, 38_971),
    "TCN_AE_Small2": (29_468, 39_100),
}


def test_row_features_are_the_request_features_and_the_context_counts():
    assert ROW_FEATURES == (*ROW_REQUEST_FEATURES, *ENCODER_ROW_COLUMNS)  # the twelve counts saved models read
    assert N_ROWS_MODE == 40
    assert ROW_GROUPS == tuple(g.name.lower() for g in MethodGroup)
    assert set(ROW_SCALED) <= set(ROW_FEATURES)
    assert input_mode("rows") == "rows" and input_mode("thesis") == input_mode("frequency") == "thesis"


@pytest.mark.parametrize("name", list(NETS))
def test_both_modes_shapes_and_parameter_counts(name: str) -> None:
    thesis = build_net(name, chunk_size=100, n_features=len(FEATURES))
    rows = build_net(name, chunk_size=100, n_features=N_ROWS_MODE)
    assert (count_parameters(thesis), count_parameters(rows)) == PARAMS[name]
    # the layer structure is the same: the same layers, differing only where the input width enters
    shapes_t = {n: tuple(p.shape) for n, p in thesis.named_parameters()}
    shapes_r = {n: tuple(p.shape) for n, p in rows.named_parameters()}
    assert shapes_t.keys() == shapes_r.keys()
    changed = {n for n in shapes_t if shapes_t[n] != shapes_r[n]}
    assert changed, "the input width must reach the first and the output layer"
    for n in changed:
        assert any(a == 8 and b == N_ROWS_MODE for a, b in zip(shapes_t[n], shapes_r[n], strict=True)), n
    # the delta is the first layer's input weights and the output layer (weights + bias)
    first = 4 * 32 if thesis.family == "lstm" else 100 * 2
    out = (32 if thesis.family == "lstm" else 100) + 1
    assert PARAMS[name][1] - PARAMS[name][0] == (first + out) * (N_ROWS_MODE - 8)
    x = torch.zeros(2, 100, N_ROWS_MODE)
    assert rows(x).shape == x.shape
    assert tuple(rows.encode(x).shape[1:]) == tuple(thesis.bottleneck)


def _session_log(n_keys: int) -> pl.DataFrame:
    """Each key makes the same session (an activation, then validations a minute apart and
    one failure) from its own machine and address, one key a day at the same hour."""
    start = datetime(2025, 5, 1, 9, tzinfo=UTC)
    pattern = [(0, 2011), (60, 1010), (120, 1010), (180, 1021), (240, 1010), (300, 6010)]
    rows = []
    for k in range(n_keys):
        for i, (sec, state) in enumerate(pattern):
            rows.append({
                "Id": 100 * k + i, "ProductId": 7, "Key": f"KEY-{(k * 7919) % 1000:04d}",
                "IP": f"8.8.8.{k + 1}", "Time": start + timedelta(days=k, seconds=sec),
                "State": state, "MachineCode": f"MC-{(k * 104729) % 9973}",
            })
    return pl.DataFrame(rows, schema_overrides={"Time": pl.Datetime("us", "UTC")})


def test_no_identity_enters_the_rows_mode():
    """The same behaviour gives the same features, whichever key, machine or address shows it:
    an identity entering as a number (an index, a hash, a code of its text) breaks this."""
    derived = derive(validate_log(_session_log(6)).valid)
    assert derived["country"].n_unique() == 1
    enc = RowsEncoder()
    X = enc.encode(derived, enc.fit(derived)).select(ROW_FEATURE_COLUMNS).to_numpy()
    sessions = X.reshape(6, 6, N_ROWS_MODE)
    for k in range(2, 6):  # the first session has no previous request: its first gap is a fill
        np.testing.assert_array_equal(sessions[k], sessions[1], err_msg=f"session {k}")
    assert sessions[1, 0, ROW_FEATURES.index("new_key")] == 1.0
    assert sessions[1, 1:, ROW_FEATURES.index("new_key")].sum() == 0.0
    # and no column of the thesis's categorical codes is an input of the mode
    assert not {"ip", "key", "product", "machine_code", "country", "action"} & set(ROW_FEATURES)


def test_rows_state_carries_over_to_the_next_night(tmp_path):
    log = validate_log(make_raw_log(800)).valid
    cfg = Config(encode=EncodeConfig(encoder="rows")).encode
    enc = get_encoder(cfg.encoder)
    train, night = derive(log.head(600)), derive(log.tail(200))
    vocab = enc.fit(train)
    vocab.save(tmp_path / "vocabulary.json")
    again = Vocabulary.load(tmp_path / "vocabulary.json")
    assert again.digest() == vocab.digest() and again.rows == vocab.rows
    frame = enc.encode(night, again)
    key = night["Key"][0]
    last = train.filter(pl.col("Key") == key)["Time"].max()
    assert last is not None, "the raw log reuses its 40 keys"
    first = frame.row(0, named=True)
    assert first["r_new_key"] == 0.0  # known from training
    gap = (night["Time"][0] - last).total_seconds()
    assert first["r_log_key_gap"] == pytest.approx(np.log1p(gap), rel=1e-5)
    # a key no one had before is new on its first request only
    fresh = night.with_columns(pl.when(pl.col("Key") == key).then(pl.lit("NEW")).otherwise(pl.col("Key")).alias("Key"))
    flags = enc.encode(fresh, again).filter(pl.col("Key") == "NEW")["r_new_key"].to_list()
    assert flags[0] == 1.0 and sum(flags) == 1.0


def test_a_state_from_later_rows_does_not_change_what_is_new():
    """Held-out evaluation fits the state on other blocks of the log: what lies after a row is
    never known at that row, so the flags are those of a state fitted on the log itself."""
    derived = derive(validate_log(make_raw_log(600)).valid)
    enc = RowsEncoder()
    own = enc.encode(derived, enc.fit(derived))
    later = enc.encode(derived, enc.fit(derived.tail(300)))
    flags = [c for c in ROW_FEATURE_COLUMNS if c.startswith("r_new_")]
    assert own.select(flags).equals(later.select(flags))
    assert own["r_log_gap"][1:].equals(later["r_log_gap"][1:])  # the first row's is the training median


def test_rows_chunks_are_the_encoded_rows():
    prepared = prepare(make_raw_log(1050), Config(encode=EncodeConfig(encoder="rows")))
    chunks = prepared.chunks
    assert chunks.X.shape == (10, 100, N_ROWS_MODE) and chunks.X.dtype == np.float32
    rows = prepared.encoded.frame.select(ROW_FEATURE_COLUMNS).to_numpy()
    np.testing.assert_array_equal(chunks.X[4], rows[400:500])
    overlap = make_chunks(prepared.encoded.frame, size=100, stride=50)
    np.testing.assert_array_equal(overlap.X[3], rows[150:250])
    assert set(chunks.meta.columns) >= {"distinct_key", "distinct_ip"}


def _fitted(inputs: str, X: np.ndarray, **kw) -> AutoencoderDetector:
    return AutoencoderDetector(model="TCN_AE", inputs=inputs, epochs=1, batch_size=8, threads=1,
                               progress_bar=False, **kw).fit(X)


def test_detector_errors_scores_and_persistence(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((24, 32, N_ROWS_MODE), dtype=np.float32)
    X[:, :, ROW_FEATURES.index("key_requests_hour")] *= 8.0
    det = _fitted("rows", X, top_k=3)
    assert det.score_method == "max-z" and det.features == ROW_FEATURES
    scaled = [ROW_FEATURES.index(c) for c in ROW_SCALED]
    rows = X.reshape(-1, N_ROWS_MODE)[:, scaled]
    np.testing.assert_allclose(det.center_[scaled], np.median(rows, axis=0), rtol=1e-5)
    q25, q75 = np.percentile(rows, [25, 75], axis=0)  # the IQR, at least one log unit
    np.testing.assert_allclose(det.scale_[scaled], np.maximum(q75 - q25, ROW_SCALE_FLOOR), rtol=1e-5)
    assert det.scale_[ROW_FEATURES.index("key_requests_hour")] > ROW_SCALE_FLOOR  # 8 x uniform: IQR 4
    other = [i for i in range(N_ROWS_MODE) if i not in scaled]
    assert (det.center_[other] == 0).all() and (det.scale_[other] == 1).all()
    e = det.errors(X)
    assert e.rows.shape == (24, 32) and e.columns.shape == e.top_columns.shape == (24, N_ROWS_MODE)
    mean, worst = e.rows.mean(axis=1), np.sort(e.rows, axis=1)[:, -3:].mean(axis=1)
    # max-z: the larger of the mean and the top rows' error, each standardised with the training chunks'
    for part, center, scale in ((mean, det.score_center_[0], det.score_scale_[0]),
                                (worst, det.score_center_[1], det.score_scale_[1])):
        np.testing.assert_allclose(center, np.median(part), rtol=1e-5)
        np.testing.assert_allclose(scale, np.subtract(*np.percentile(part, [75, 25])), rtol=1e-5)
    z = np.maximum((mean - det.score_center_[0]) / det.score_scale_[0], (worst - det.score_center_[1]) / det.score_scale_[1])
    np.testing.assert_allclose(e.score, z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(e.columns.mean(axis=1), e.rows.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(det.decision_function(X), e.score)
    np.testing.assert_allclose(det.decision_scores_, e.score, rtol=1e-6, atol=1e-9)
    det.save(tmp_path / "det.pt")
    back = AutoencoderDetector.load(tmp_path / "det.pt")
    assert (back.inputs, back.score, back.top_k) == ("rows", "auto", 3)
    np.testing.assert_allclose(back.decision_function(X), e.score, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(back.encode(X), det.encode(X), rtol=1e-6)
    with pytest.raises(ValueError, match="has 40 columns, X has 8"):
        _fitted("rows", X[:, :, :8])


def test_the_earlier_sum_score_stays_available_and_old_files_keep_it(tmp_path):
    """score="mean+topk" is the sum of the two; a rows-mode file saved before "max-z" became the
    rows mode's "auto" (no standardisation in it) loads with the score it was fitted with."""
    X = np.random.default_rng(2).random((16, 32, N_ROWS_MODE), dtype=np.float32)
    det = _fitted("rows", X, top_k=3, score="mean+topk")
    e = det.errors(X)
    assert det.score_center_ is None
    np.testing.assert_allclose(e.score, e.rows.mean(axis=1) + np.sort(e.rows, axis=1)[:, -3:].mean(axis=1), rtol=1e-6)
    det.score = "auto"  # as a file saved before "max-z" existed reads
    det.save(tmp_path / "old.pt")
    back = AutoencoderDetector.load(tmp_path / "old.pt")
    assert back.score_method == "mean+topk"
    np.testing.assert_allclose(back.decision_function(X), e.score, rtol=1e-6)


def test_thesis_mode_is_unchanged():
    """The thesis's mode: no scaling, the chunk score is the mean of the column errors."""
    X = np.random.default_rng(1).random((16, 16, 8), dtype=np.float32)
    det = _fitted("thesis", X)
    assert det.center_ is None and det.score_method == "mean"
    cols = det.feature_errors(X)
    with torch.inference_mode():
        xb = torch.from_numpy(X)
        expect = (det.net_(xb) - xb).abs().mean(dim=1).double().numpy()
    np.testing.assert_allclose(cols, expect)
    np.testing.assert_allclose(det.decision_function(X), expect.mean(axis=1))


def _plant(log: pl.DataFrame, key_rank: int, at: timedelta, n: int, spacing: float, state: int) -> tuple[pl.DataFrame, pl.Series]:
    """``n`` requests with ``state`` every ``spacing`` s from one of the log's keys (by number of
    requests), its machine code and address, starting ``at`` after the log's first request."""
    key = log.group_by("Key").len().sort("len", "Key", descending=True)["Key"][key_rank]
    own = log.filter(pl.col("Key") == key).row(0, named=True)
    t0 = log["Time"].min() + at
    rows = pl.DataFrame({
        "Id": np.arange(n, dtype=np.int64) + log["Id"].max() + 1,
        "ProductId": [own["ProductId"]] * n, "Key": [key] * n, "IP": [own["IP"]] * n,
        "Time": [t0 + timedelta(seconds=spacing * i) for i in range(n)],
        "State": [state] * n, "MachineCode": [own["MachineCode"]] * n,
    }, schema_overrides={"Time": pl.Datetime("us", "UTC")})
    return pl.concat([log, rows], how="diagonal_relaxed").sort("Time", "Id"), rows["Id"]


def test_planted_runaway_client_and_failure_loop_score_in_the_top_percent():
    """A week of a usage-based vendor (no simulated anomalies) with a client sending 300
    successful requests a second apart and another retrying a failing activation 200 times:
    in the rows mode, after 3 epochs of the smallest net trained on that same log, the best
    chunk of each scores above 99% of the chunks holding no planted request."""
    log = simulate("usage-based", seed=1, days=7, anomaly_rate=0.0).log
    log, runaway = _plant(log, 5, timedelta(days=5, hours=14), 300, 1.0, 8010)
    log, loop = _plant(log, 20, timedelta(days=3, hours=10), 200, 3.0, 2023)
    prepared = prepare(log, Config(encode=EncodeConfig(encoder="rows")))
    X = prepared.chunks.X
    assert len(X) >= 200
    det = AutoencoderDetector(model="LSTM_AE_Small", inputs="rows", epochs=3, batch_size=32, threads=1,
                              progress_bar=False).fit(X)
    scores = det.decision_function(X)
    starts = prepared.chunks.meta["start_row"].to_numpy()
    ids = prepared.encoded.frame["Id"]
    holds = {name: windows_holding(ids.is_in(planted.implode()).to_numpy(), starts, prepared.chunks.size)
             for name, planted in (("runaway", runaway), ("loop", loop))}
    normal = ~(holds["runaway"] | holds["loop"])
    bar = np.quantile(scores[normal], 0.99)
    for name, hold in holds.items():
        assert scores[hold].max() > bar, f"the {name}'s best chunk is not in the top 1%"


def test_rows_state_advanced_by_a_scored_night_is_the_state_of_all_rows_so_far():
    """A night's values, pairs and last requests carried into the next night's encoding: the
    same new-flags and key gaps as a state fitted on the training rows and that night together."""
    derived = derive(validate_log(make_raw_log(1200, seed=4)).valid)
    train, night1, night2 = derived.slice(0, 500), derived.slice(500, 300), derived.slice(800, 400)
    enc = RowsEncoder()
    trained = enc.fit(train)
    advanced = trained.rows.advanced(enc.fit(night1).rows)
    both = enc.fit(pl.concat([train, night1])).rows
    assert {e: set(v) for e, v in advanced.first_seen.items()} == {e: set(v) for e, v in both.first_seen.items()}
    assert {e: set(v) for e, v in advanced.pairs.items()} == {e: set(v) for e, v in both.pairs.items()}
    assert dict(advanced.key_last) == dict(both.key_last) and advanced.gap_fill == trained.rows.gap_fill
    cols = [c for c in ROW_FEATURE_COLUMNS if c.startswith("r_new_")] + ["r_log_key_gap"]
    carried = enc.encode(night2, replace(trained, rows=advanced)).select(cols)
    assert carried.equals(enc.encode(night2, replace(trained, rows=both)).select(cols))
    stale = enc.encode(night2, trained).select(cols)
    assert stale["r_new_machine_to_key"].sum() > carried["r_new_machine_to_key"].sum()


def test_a_next_event_model_on_rows_chunks_is_a_clear_error():
    """DeepLog on chunks reads the thesis's success and action columns, which rows chunks lack."""
    from licanom.config import SequenceConfig
    from licanom.detectors import build

    with pytest.raises(ValueError, match="encode.encoder: thesis"):
        build("DeepLog", encode=EncodeConfig(encoder="rows"), sequence=SequenceConfig(mode="chunks"))
    assert build("DeepLog", encode=EncodeConfig(encoder="rows"), sequence=SequenceConfig(mode="key")) is not None
    assert build("DeepLog", encode=EncodeConfig(encoder="thesis")) is not None
