"""Severity and decisions (licanom.detectors.decision) on constructed score sets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from licanom.data.context_vector import CONTEXT_COLUMNS
from licanom.detectors.context import ContextDetector
from licanom.detectors.decision import (
    DECISIONS, DEFAULT_MIN_SEVERITY, FAR_FACTOR, STAND_OUT_FLOOR, STAND_OUT_GAP, Calibration, SeverityDecision,
    decide, normal_bulk, stands_out,
)


def _normal(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(3.0, 2.0, n)  # a sum-of-surprisals-like bulk


def test_half_contaminated_training_keeps_the_normal_bulk():
    clean = _normal(2000)
    flood = np.random.default_rng(1).normal(40.0, 5.0, 2000)  # half the training chunks: one storm
    cal_clean = Calibration.fit(clean)
    cal = Calibration.fit(np.concatenate([clean, flood]))
    # the bulk's anchors move by a fraction, not by the flood's distance
    assert cal.median < cal_clean.median * 1.6
    assert cal.q90 < cal_clean.q90 * 1.6
    # the next flood still reaches the default decision; the normal bulk mostly does not
    assert (cal.severity(np.random.default_rng(2).normal(40.0, 5.0, 500)) >= DEFAULT_MIN_SEVERITY).mean() > 0.9
    assert (cal.severity(_normal(5000, seed=3)) >= DEFAULT_MIN_SEVERITY).mean() < 0.01


def test_a_single_extreme_training_score_changes_nothing_but_the_far_rule():
    clean = _normal(1000)
    cal = Calibration.fit(clean)
    spiked = Calibration.fit(np.concatenate([clean, [1e6]]))
    assert spiked.median == pytest.approx(cal.median, rel=0.01)
    assert spiked.beta == pytest.approx(cal.beta, rel=0.05)
    assert spiked.max_score == 1e6


def test_a_given_tail_scale_replaces_the_fitted_one_and_nothing_else():
    scores = np.concatenate([_normal(1000), np.random.default_rng(1).normal(40.0, 5.0, 400)])
    fitted = Calibration.fit(scores)
    given = Calibration.fit(scores, scale=3.5)
    assert given.beta == 3.5 and fitted.beta != pytest.approx(3.5)
    assert (given.median, given.q90, given.max_score, given.n_bulk) == (
        fitted.median, fitted.q90, fitted.max_score, fitted.n_bulk)
    # the same exponential tail, with the given scale: ln 10 nats more is one decade more
    sev = given.severity(np.array([given.median + 20.0, given.median + 20.0 + np.log(10.0) * 3.5]))
    assert sev[1] - sev[0] == pytest.approx(100.0 / 7.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="scale"):
            Calibration.fit(scores, scale=bad)


def test_far_beyond_is_measured_from_the_bulk_not_from_zero():
    # a sum of many surprisals sits well above zero: one signal far out must not need twice the total
    cal = Calibration(median=15.0, q90=19.0, beta=3.75, max_score=30.0, n=400, n_bulk=360)
    assert cal.far_score == 45.0
    assert cal.severity(np.array([44.9, 45.0]))[1] == 100.0 and cal.severity(np.array([44.9]))[0] < 100.0
    assert cal.score_at(100.0) < 45.0 and cal.severity(np.array([cal.score_at(100.0)]))[0] < 100.0
    assert Calibration(median=1.0, q90=1.0, beta=1.0, max_score=1.0, n=5, n_bulk=5).far_score is None


def test_far_beyond_training_is_always_top_severity():
    # a wide tail would call 2.5x the training maximum ordinary; the far-beyond rule does not
    cal = Calibration(median=1.0, q90=50.0, beta=500.0, max_score=10.0, n=100, n_bulk=90)
    assert cal.severity(np.array([9.0]))[0] < 10
    assert cal.severity(np.array([FAR_FACTOR * 10.0]))[0] == 100.0


def test_ties_give_a_finite_monotone_severity():
    cal = Calibration.fit(np.full(200, 3.0))
    sev = cal.severity(np.array([0.0, 3.0, 3.5, 4.0, 10.0]))
    assert np.isfinite(sev).all() and (np.diff(sev) >= 0).all()
    assert sev[0] == 0.0 and sev[1] < 5 and sev[-1] == 100.0


def test_severity_range_and_inverse():
    cal = Calibration.fit(_normal(500))
    s = np.linspace(-5, 200, 50)
    sev = cal.severity(s)
    assert ((sev >= 0) & (sev <= 100)).all() and (np.diff(sev) >= 0).all()
    for level in (10.0, 50.0, 60.0, 90.0):
        assert cal.severity(np.array([cal.score_at(level) * (1 + 1e-9)]))[0] >= level - 1e-6


def test_normal_bulk_sets_a_storm_aside():
    scores = np.concatenate([_normal(700), np.full(300, 80.0)])
    keep = normal_bulk(scores)
    assert not keep[700:].any() and keep[:700].mean() > 0.8


def test_decide_by_name():
    scores = _normal(400)
    value, method = decide("severity", None, scores, None, {"min_severity": 70})
    assert method.startswith("severity >= 70, or >= 40") and value == pytest.approx(Calibration.fit(scores).score_at(70))
    assert decide("severity", None, scores, None, {"stand_out_gap": None})[1] == "severity >= 55"
    assert decide("M2", None, scores, None)[0] == pytest.approx(scores.max())
    with pytest.raises(ValueError, match="unknown decision"):
        decide("M9", None, scores, None)
    with pytest.raises(ValueError, match="min_severity"):
        decide("severity", None, scores, None, {"alarm_rate": 0.1})
    assert DECISIONS[0] == "severity"


def test_a_chunk_stands_out_from_its_night_only_far_above_the_rest_of_it():
    quiet = [10.0] * 39
    sev = np.array([*quiet, 45.0, *quiet, 39.0, *[50.0] * 40, *[10.0] * 19, 38.0, np.nan])
    night = np.array([0] * 40 + [1] * 40 + [2] * 40 + [3] * 21)
    got = stands_out(sev, night)
    assert got[39] and not got[79]           # 35 above a quiet night; 39 is below the floor
    assert not got[80:120].any()             # a night of equals: nothing stands out
    assert got[139] and not got[120:139].any() and not got[140]  # a small night: its median and floor 35
    assert got.sum() == 2
    assert not stands_out(sev, night, gap=40.0)[:120].any() and stands_out(sev, night, floor=35.0)[:120].sum() == 2
    assert not stands_out(sev, night, small_gap=30.0)[120:].any()
    assert stands_out(np.array([]), np.array([])).shape == (0,)
    with pytest.raises(ValueError, match="one length"):
        stands_out(sev, night[:-1])


def test_a_small_night_is_judged_against_the_median_of_its_other_chunks():
    from licanom.detectors.decision import SMALL_NIGHT_CHUNKS, SMALL_NIGHT_FLOOR, SMALL_NIGHT_GAP

    # a night of two chunks: 45 stands out from the other's 5 (the median of both, 25, would hide it)
    assert stands_out(np.array([45.0, 5.0]), np.zeros(2)).tolist() == [True, False]
    assert not stands_out(np.array([45.0, 30.0]), np.zeros(2)).any()  # 15 above the other
    assert not stands_out(np.array([90.0]), np.zeros(1)).any()        # one chunk: nothing to stand out from
    assert stands_out(np.array([45.0, np.nan, 5.0]), np.zeros(3)).tolist() == [True, False, False]

    # five chunks: the 90th percentile lies near the largest, so the rule reads the median there
    sev = np.array([10.0, 10.0, 11.0, 9.0, SMALL_NIGHT_FLOOR])
    assert stands_out(sev, np.zeros(5)).tolist() == [False] * 4 + [True]
    assert not stands_out(sev - 1.0, np.zeros(5)).any()             # below the small night's floor
    busy = np.array([30.0, 30.0, 30.0, 10.0, SMALL_NIGHT_FLOOR + 1])  # its median 30: not far enough above
    assert not stands_out(busy, np.zeros(5)).any()
    assert SMALL_NIGHT_GAP > STAND_OUT_GAP and SMALL_NIGHT_FLOOR < STAND_OUT_FLOOR
    # from SMALL_NIGHT_CHUNKS chunks on, the 90th percentile, floor and gap of every night
    n = SMALL_NIGHT_CHUNKS
    big = np.r_[np.full(n - 1, 10.0), SMALL_NIGHT_FLOOR]
    assert not stands_out(big, np.zeros(n)).any() and stands_out(big[1:], np.zeros(n - 1))[-1]


def test_a_small_night_is_completed_with_the_latest_training_chunks():
    from licanom.detectors.decision import SMALL_NIGHT_CHUNKS

    latest = np.full(40, 5.0)
    # a night of one chunk: nothing to stand out from alone, 40 above the vendor's latest chunks
    assert not stands_out(np.array([45.0]), np.zeros(1)).any()
    assert stands_out(np.array([45.0]), np.zeros(1), recent=latest).tolist() == [True]
    # a vendor whose latest chunks were as severe: nothing stands out
    assert not stands_out(np.array([45.0]), np.zeros(1), recent=np.full(40, 30.0)).any()
    # a chunk must stand out from the night's other chunks as well: a night its storm fills (or a
    # weekend night whose chunks all read higher than the weekdays' latest) is not flagged by the rule
    storm = np.array([45.0, 46.0, 44.0])
    assert not stands_out(storm, np.zeros(3)).any() and not stands_out(storm, np.zeros(3), recent=latest).any()
    # a quiet night's other chunk, but latest chunks as severe as the chunk: not flagged (it was, on its
    # other chunk alone)
    pair = np.array([45.0, 5.0])
    assert stands_out(pair, np.zeros(2)).tolist() == [True, False]
    assert not stands_out(pair, np.zeros(2), recent=np.full(40, 40.0)).any()
    # the reference holds SMALL_NIGHT_CHUNKS - 1 values: the night's other chunks and the *last* of the
    # latest (older ones do not count)
    n = SMALL_NIGHT_CHUNKS
    assert stands_out(pair, np.zeros(2), recent=np.r_[np.full(60, 45.0), np.full(n - 2, 5.0)]).tolist() == [True, False]
    assert not stands_out(pair, np.zeros(2), recent=np.r_[np.full(60, 5.0), np.full(n - 2, 45.0)]).any()
    # nights of SMALL_NIGHT_CHUNKS chunks or more read their own 90th percentile, as before
    big = np.r_[np.full(SMALL_NIGHT_CHUNKS - 4, 10.0), np.full(4, 45.0)]  # its 90th percentile 45
    assert not stands_out(big, np.zeros(big.size), recent=latest).any()
    assert not stands_out(np.array([45.0, np.nan]), np.zeros(2), recent=[np.nan])[1]


def test_each_chunks_reference_is_the_median_of_the_others_and_the_latest():
    from licanom.detectors.decision import _median_without_each

    rng = np.random.default_rng(3)
    for _ in range(500):
        m, p = int(rng.integers(1, 30)), int(rng.integers(0, 30))
        if m + p < 2:
            continue
        night = rng.integers(0, 6, m) * 10.0 if rng.random() < 0.5 else rng.normal(20, 15, m)  # ties, or none
        prior = rng.integers(0, 6, p) * 10.0 if rng.random() < 0.5 else rng.normal(5, 5, p)
        naive = [np.median(np.r_[np.delete(night, i), prior]) for i in range(m)]
        np.testing.assert_allclose(_median_without_each(night, prior), naive)


def test_a_baseline_saved_before_its_calibration_kept_its_latest_chunks_takes_them_from_its_scores(tmp_path):
    import pickle

    from licanom.detectors.baselines import SklearnDetector
    from licanom.detectors.decision import RECENT_KEPT

    X = np.random.default_rng(4).normal(size=(150, 6))
    det = SklearnDetector("IForest_summary").fit(X)
    assert det.calibration_.recent == tuple(det.decision_scores_[-RECENT_KEPT:])
    path = det.save(tmp_path / "old.pkl")
    with path.open("rb") as f:
        payload = pickle.load(f)
    payload["detector"]._set_calibration(replace(det.calibration_, recent=()))  # as a file of the release before
    with path.open("wb") as f:
        pickle.dump(payload, f)
    again = SklearnDetector.load(path)
    assert again.calibration_ == det.calibration_


def test_a_night_of_nan_severities_only_is_not_judged():
    assert not stands_out(np.array([np.nan, np.nan]), np.zeros(2), small_night=0).any()
    assert not stands_out(np.array([np.nan]), np.zeros(1), recent=[5.0]).any()


def test_a_calibration_keeps_its_latest_scores_in_order():
    from licanom.detectors.decision import RECENT_KEPT

    scores = np.arange(300, dtype=np.float64)
    cal = Calibration.fit(scores)
    assert cal.recent == tuple(scores[-RECENT_KEPT:]) and len(cal.recent) == RECENT_KEPT
    assert Calibration.fit(scores[:5]).recent == tuple(scores[:5])
    assert Calibration.from_dict(cal.as_dict()) == cal
    old = {k: v for k, v in cal.as_dict().items() if k != "recent"}  # saved before it kept them
    assert Calibration.from_dict(old).recent == () and Calibration.from_dict(old).median == cal.median
    assert np.allclose(cal.recent_severity(), cal.severity(scores[-RECENT_KEPT:]))
    assert replace(cal, recent=()).recent_severity().shape == (0,)


def test_the_severity_decision_flags_what_stands_out_from_its_night():
    rng = np.random.default_rng(0)
    det = ContextDetector().fit(np.abs(rng.normal(1.0, 0.3, (400, len(CONTEXT_COLUMNS)))))
    cal = det.calibration_
    scores = np.r_[np.full(30, cal.median), cal.score_at(45.0)]   # one chunk at severity 45
    nights = np.zeros(31, dtype=np.int64)
    assert det.severity_of(scores)[-1] == pytest.approx(45.0) and det.threshold_ > scores[-1]
    assert det.flags(scores, nights).tolist() == [False] * 30 + [True]
    assert not det.flags(scores).any()                        # no nights: the threshold alone, as predict
    # each chunk its own night: judged against the latest training chunks, where 45 stands out
    assert det.flags(scores, np.arange(31)).tolist() == [False] * 30 + [True]
    assert not det.night_rule().stands_out(det.severity_of(scores), np.arange(31)).any()  # without them: nothing
    det.threshold_params = (("stand_out_gap", None),)
    assert not det.flags(scores, nights).any()                # the rule switched off
    m2 = ContextDetector(threshold="M2").fit(np.abs(rng.normal(1.0, 0.3, (400, len(CONTEXT_COLUMNS)))))
    assert m2.night_rule() is None                            # only the severity decision has it


def test_the_severity_decisions_settings_are_checked():
    assert SeverityDecision.from_params({}) == SeverityDecision(DEFAULT_MIN_SEVERITY, STAND_OUT_FLOOR, STAND_OUT_GAP)
    assert SeverityDecision.from_params({"min_severity": 70, "stand_out_gap": None}).stand_out_gap is None
    # a small night's settings are the vendor's too: 0 chunks judges every night by its 90th percentile
    sev, night = np.array([10.0, 10.0, 11.0, 9.0, 40.0]), np.zeros(5)
    assert SeverityDecision.from_params({}).stands_out(sev, night)[-1]
    assert not SeverityDecision.from_params({"small_night_chunks": 0}).stands_out(sev, night).any()
    assert not SeverityDecision.from_params({"small_night_floor": 60}).stands_out(sev, night).any()
    assert not SeverityDecision.from_params({"stand_out_gap": None}).stands_out(sev, night).any()
    assert "under 30 chunks" in SeverityDecision().describe()
    assert "median" not in SeverityDecision(small_night_chunks=0).describe()
    with pytest.raises(ValueError, match="whole number"):
        SeverityDecision.from_params({"small_night_chunks": 2.5})
    for params, match in (({"alarm_rate": 0.1}, "stand_out_gap"), ({"min_severity": "high"}, "must be a number"),
                          ({"stand_out_floor": 0}, r"\(0, 100\]"), ({"min_severity": None}, "must be a number")):
        with pytest.raises(ValueError, match=match):
            SeverityDecision.from_params(params)


def test_context_model_never_stays_silent_on_a_frame_far_beyond_training():
    rng = np.random.default_rng(0)
    train = np.abs(rng.normal(1.0, 0.3, (400, len(CONTEXT_COLUMNS))))
    det = ContextDetector().fit(train)
    night = np.abs(rng.normal(1.0, 0.3, (50, len(CONTEXT_COLUMNS))))
    night[7, CONTEXT_COLUMNS.index("ip_keys_hour")] = 9.0  # thousands of keys from one address
    sev = det.severity(night)
    assert sev[7] == 100.0 and det.predict(night)[7] == 1
    assert (np.delete(sev, 7) < 100).all()


FAILURE_LOOP = ("failure_share", "machine_failures_hour", "ip_failures_hour")  # what a failure storm raises


def test_context_model_is_robust_to_a_storm_in_its_training_days():
    rng = np.random.default_rng(4)
    d = len(CONTEXT_COLUMNS)
    cols = [CONTEXT_COLUMNS.index(c) for c in FAILURE_LOOP]
    normal = np.abs(rng.normal(1.0, 0.3, (600, d)))
    storm = np.abs(rng.normal(1.0, 0.3, (60, d)))  # a tenth of the training chunks
    storm[:, cols] = rng.normal(4.0, 0.3, (60, len(cols)))
    det = ContextDetector().fit(np.concatenate([normal, storm]))
    assert not det.reference_[600:].any(), "the storm must not shape the reference"
    next_storm = np.abs(rng.normal(1.0, 0.3, (20, d)))
    next_storm[:, cols] = 4.0
    assert det.predict(next_storm).mean() > 0.9
    assert det.predict(np.abs(rng.normal(1.0, 0.3, (2000, d)))).mean() < 0.01


def test_the_chunk_results_of_a_run_decide_with_the_night_rule():
    """`licanom detect`'s chunks (chunk_results) carry the detector's decision, not the threshold alone."""
    from licanom.config import Config
    from licanom.data.pipeline import prepare
    from licanom.ops.detect import ModelOutcome, chunk_nights, chunk_results
    from tests.conftest import make_raw_log

    prepared = prepare(make_raw_log(800), Config(vendor="acme"))
    meta = prepared.chunk_table()
    n = meta.height
    assert n >= 6 and len(set(chunk_nights(meta).tolist())) == 1  # one night of chunks
    rng = np.random.default_rng(0)
    det = ContextDetector().fit(np.abs(rng.normal(1.0, 0.3, (400, len(CONTEXT_COLUMNS)))))
    scores = np.full(n, det.calibration_.median)
    scores[2] = det.calibration_.score_at(50.0)  # below the threshold, far above the rest of its night
    chunks = chunk_results(prepared, ModelOutcome(detector=det, scores=scores, feature_errors=None, row={}))
    assert chunks["is_anomaly"].to_list() == [i == 2 for i in range(n)]
    assert chunks["score"][2] < chunks["threshold"][2]


@pytest.mark.parametrize(("section", "name", "params", "message"), [
    ("context", "severity", {"min_severity": 150}, r"min_severity must lie in \(0, 100\]"),
    ("context", "severity", {"min_severerity": 70}, r"takes min_severity, .*got \['min_severerity'\]"),
    ("context", "budget", {"alarm_rate": 5}, r"alarm_rate must lie in \(0, 1\)"),
    ("context", "M3", {"bins": "twenty"}, r"'twenty' is not a valid estimator"),
    ("context", "M3", {"min_severity": 70}, r"the M3 decision takes bins, index, got \['min_severity'\]"),
    ("detect", "M1", {"split": 2}, r"split must lie in \(0, 1\)"),
    ("detect", "M2", {"q": 0.1}, r"the M2 decision takes no settings"),
    ("context", "severity", {"min_severity": "70"}, r"threshold_params\.min_severity\s+Value error, must be a number, got '70' \(quoted"),
    ("detect", "severity", {"stand_out_floor": "40"}, r"threshold_params\.stand_out_floor\s+Value error, must be a number, got '40'"),
    ("context", "quantile", {"contamination": "0.01"}, r"threshold_params\.contamination\s+Value error, must be a number, got '0.01'"),
])
def test_a_decisions_settings_are_checked_as_the_configuration_is_read(section, name, params, message):
    """Not after extract, validate and a training, with a TypeError and exit 1."""
    from licanom.config import load_config

    with pytest.raises(ValueError, match=message):
        load_config("demo", overrides={section: {"threshold": name, "threshold_params": params}})
    ok = {"severity": {"min_severity": 70, "stand_out_gap": None}, "budget": {"alarm_rate": 0.01},
          "M3": {"bins": 20}, "M1": {"split": 0.3}, "M2": {}, "quantile": {"contamination": 0.01}}[name]
    assert load_config("demo", overrides={section: {"threshold": name, "threshold_params": ok}})


def test_a_detector_calibrated_on_few_chunks_says_so() -> None:
    from licanom.detectors.decision import SMALL_CALIBRATION

    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(40, len(CONTEXT_COLUMNS))))
    few = ContextDetector().fit(X[: SMALL_CALIBRATION - 1])
    assert f"calibrated on {SMALL_CALIBRATION - 1} training chunks" in (few.calibration_caution() or "")
    assert ContextDetector().fit(X[:SMALL_CALIBRATION]).calibration_caution() is None
