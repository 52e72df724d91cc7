"""Thresholds on reconstruction errors: known arrays, M1 on scripted retraining, failures."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from licanom.detectors.thresholds import (
    BUDGET_ALARM_RATE,
    THRESHOLDS,
    budget,
    Thresholds,
    m1,
    m2,
    m3,
    pot,
    quantile,
    threshold_from_errors,
)

ERRORS = np.array([0.1, 0.4, 0.2, 0.9, 0.3, 0.5, 0.25, 0.15, 0.35, 0.05])


# ------------------------------------------------------------------ M2, M3, quantile


def test_m2_is_max() -> None:
    assert m2(ERRORS) == pytest.approx(0.9)
    assert isinstance(m2(ERRORS), float)


def test_m3_default_is_left_edge_of_last_bin() -> None:
    assert m3(ERRORS) == pytest.approx(np.histogram(ERRORS)[1][-2])
    # range 0.05..0.9 in 10 bins: the last bin starts at 0.9 - 0.085
    assert m3(ERRORS) == pytest.approx(0.815)


@pytest.mark.parametrize(("bins", "index"), [(5, -2), (20, -3), ("auto", -2), (4, 0)])
def test_m3_honours_bins_and_index(bins: int | str, index: int) -> None:
    assert m3(ERRORS, bins=bins, index=index) == pytest.approx(
        np.histogram(ERRORS, bins=bins)[1][index]
    )


def test_m3_index_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        m3(ERRORS, bins=3, index=4)


def test_m3_all_equal_errors_follows_numpy() -> None:
    assert m3(np.full(5, 2.0)) == pytest.approx(2.4)  # numpy widens the range to 2 +- 0.5


HAIR_APART = np.array([1.0, 1.0 + 1e-15, 1.0 + 2e-15] * 5)  # equal but for their last digits


@pytest.mark.parametrize(("errors", "bins"), [(HAIR_APART, 10), (np.array([1.0, np.nextafter(1.0, 2.0)] * 50), "auto")])
def test_m3_errors_a_hair_apart_are_binned_as_equal(errors: np.ndarray, bins: int | str) -> None:
    with pytest.raises(ValueError, match="Too many bins"):  # what failed a training
        np.histogram(errors, bins=bins)
    assert m3(errors, bins=bins) == pytest.approx(m3(np.full(errors.size, 1.0), bins=bins))


def test_m3_default_lies_above_errors_a_hair_apart() -> None:
    assert m3(HAIR_APART) == pytest.approx(1.4)  # as for equal errors: (1 +- 0.5) in 10 bins


def test_quantile() -> None:
    errors = np.arange(101, dtype=float)
    assert quantile(errors) == pytest.approx(99.0)
    assert quantile(errors, contamination=0.1) == pytest.approx(90.0)
    assert quantile(errors, contamination=0.0) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="contamination"):
        quantile(errors, contamination=1.0)


# ------------------------------------------------------------------------- POT


def test_pot_exponential_tail_matches_true_quantile() -> None:
    errors = np.random.default_rng(0).exponential(size=20_000)
    for q in (1e-3, 1e-4):
        z = pot(errors, q=q)
        assert z > np.quantile(errors, 0.98)
        assert z == pytest.approx(-math.log(q), rel=0.1)


def test_pot_above_max_when_risk_below_one_over_n() -> None:
    errors = np.random.default_rng(1).exponential(size=5_000)
    assert pot(errors, q=1e-6) >= errors.max()


def test_pot_heavy_and_bounded_tails() -> None:
    rng = np.random.default_rng(2)
    # Pareto with tail index 3 (gamma = 1/3): P(X > x) = x^-3, x >= 1
    pareto = rng.pareto(3.0, size=50_000) + 1.0
    assert pot(pareto, q=1e-3) == pytest.approx(1e-3 ** (-1 / 3), rel=0.15)
    # uniform(0, 1): bounded tail (gamma = -1), the threshold stays below the endpoint
    uniform = rng.uniform(size=20_000)
    assert pot(uniform, q=1e-3) == pytest.approx(1 - 1e-3, abs=0.01)


def test_pot_scale_equivariant() -> None:
    errors = np.random.default_rng(3).exponential(size=5_000)
    assert pot(errors * 1e-4) == pytest.approx(pot(errors) * 1e-4, rel=1e-6)


def test_pot_fallbacks_to_max() -> None:
    assert pot(np.full(1_000, 0.3)) == pytest.approx(0.3)  # all equal: no peaks
    small = np.random.default_rng(4).exponential(size=50)  # one peak over the 0.98 quantile
    assert pot(small) == pytest.approx(small.max())
    point_mass = np.r_[np.full(5_000, 0.01), np.full(30, 2.0)]  # every peak equal
    assert pot(point_mass) == pytest.approx(2.0)


@pytest.mark.parametrize(
    "kwargs", [{"q": 0.0}, {"q": 1.0}, {"init_quantile": 1.0}, {"min_peaks": 0}]
)
def test_pot_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        pot(ERRORS, **kwargs)


# ------------------------------------------------------------------- validation


@pytest.mark.parametrize("func", [m2, m3, quantile, pot])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.array([]), "empty"),
        (np.array([0.1, np.nan]), "finite"),
        (np.array([0.1, np.inf]), "finite"),
        (np.ones((3, 2)), "1-D"),
    ],
)
def test_errors_are_validated(
    func: Callable[[np.ndarray], float], bad: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        func(bad)


# --------------------------------------------------------------------- registry


def test_registry_dispatches_by_name() -> None:
    assert THRESHOLDS == ("M1", "M2", "M3", "quantile", "pot", "budget")
    assert threshold_from_errors("M2", ERRORS) == m2(ERRORS)
    assert threshold_from_errors("M3", ERRORS, bins=5) == m3(ERRORS, bins=5)
    assert threshold_from_errors("quantile", ERRORS, contamination=0.2) == quantile(ERRORS, 0.2)
    assert threshold_from_errors("pot", ERRORS) == pot(ERRORS)
    assert threshold_from_errors("budget", ERRORS, alarm_rate=0.01) == budget(ERRORS, 0.01)


def test_registry_m1_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="m1"):
        threshold_from_errors("M1", ERRORS)
    with pytest.raises(ValueError, match="unknown threshold"):
        threshold_from_errors("M4", ERRORS)


def test_thresholds_dataclass() -> None:
    t = Thresholds.from_errors(ERRORS)
    assert t.m1 is None
    assert t.as_dict() == {
        "M1": None,
        "M2": m2(ERRORS),
        "M3": m3(ERRORS),
        "quantile": quantile(ERRORS),
        "pot": pot(ERRORS),
        "budget": budget(ERRORS),
    }
    with pytest.raises(AttributeError):
        t.m2 = 0.0  # type: ignore[misc]


# --------------------------------------------------------------------------- M1


class ScriptedFit:
    """A fake `fit_score`: round k returns `script[k]` and records what it was given."""

    def __init__(self, *script: list[float]) -> None:
        self.script = [np.asarray(s, dtype=float) for s in script]
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        self.calls.append((train.copy(), test.copy()))
        return self.script[len(self.calls) - 1]


def chunks(n: int) -> np.ndarray:
    """n chunks of shape (window=3, n_features=2), chunk i filled with i."""
    return np.repeat(np.arange(n, dtype=float), 6).reshape(n, 3, 2)


def ids(batch: np.ndarray) -> list[int]:
    return sorted(int(c[0, 0]) for c in batch)


def test_m1_none_found_returns_none() -> None:
    fit = ScriptedFit([1.0, 1.0])  # si = 0: nothing is above st + si
    assert m1(chunks(4), fit) is None
    assert len(fit.calls) == 1


def test_m1_none_found_after_one_move() -> None:
    fit = ScriptedFit([0.0, 1.0], [0.0])  # round 2: 0 > st + si = 0.01 is false
    assert m1(chunks(4), fit) is None
    assert len(fit.calls) == 2


def test_m1_all_anomalies_returns_midpoint() -> None:
    # round 1: st = 1, si = 0.01, the 2.0 chunk moves to train; round 2: st = 1.01, si = 0,
    # 5.0 > 1.01 so every test chunk is an anomaly: 0.5 * (1.01 + 5.0)
    fit = ScriptedFit([1.0, 2.0], [5.0])
    assert m1(chunks(4), fit) == pytest.approx(3.005)
    assert [len(train) for train, _ in fit.calls] == [2, 3]


def test_m1_multi_round_moves_anomalies_to_train() -> None:
    fit = ScriptedFit([0.0, 0.05, 0.08, 10.0], [0.0, 0.5, 1.0], [3.0])
    # st: 0 -> 0.1 (si = 0.1) -> 0.11 (si = 0.01); round 3 all anomalies
    assert m1(chunks(8), fit) == pytest.approx(0.5 * (0.11 + 3.0))
    (train1, test1), (train2, test2), (train3, test3) = fit.calls
    assert len(test1) == 4
    assert sorted(ids(train1) + ids(test1)) == list(range(8))
    assert ids(train2) == sorted(ids(train1) + [int(test1[3, 0, 0])])
    assert ids(test2) == sorted(int(test1[i, 0, 0]) for i in range(3))
    assert ids(train3) == sorted(ids(train2) + [int(test2[1, 0, 0]), int(test2[2, 0, 0])])
    assert ids(test3) == [int(test2[0, 0, 0])]
    assert test3.shape[1:] == (3, 2)


def test_m1_max_rounds_exhausted_returns_none() -> None:
    fit = ScriptedFit([0.0, 0.05, 0.08, 10.0], [0.0, 0.5, 1.0], [3.0])
    assert m1(chunks(8), fit, max_rounds=2) is None
    assert len(fit.calls) == 2


def test_m1_step_fraction_and_split() -> None:
    # step_fraction 0.5: si = 0.5 in round 1, so only the 1.0 chunk is an anomaly
    fit = ScriptedFit([0.0, 0.2, 1.0], [0.0, 0.0])
    assert m1(chunks(10), fit, split=0.3, step_fraction=0.5) is None
    assert [len(test) for _, test in fit.calls] == [3, 2]


def test_m1_split_is_seeded() -> None:
    tests = []
    for seed in (0, 0, 1):
        fit = ScriptedFit([1.0] * 5)
        m1(chunks(10), fit, seed=seed)
        tests.append(ids(fit.calls[0][1]))
    assert tests[0] == tests[1]
    assert tests[0] != tests[2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": 0.0}, "split"),
        ({"split": 1.0}, "split"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"step_fraction": -0.1}, "step_fraction"),
    ],
)
def test_m1_rejects_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        m1(chunks(4), ScriptedFit([1.0, 2.0]), **kwargs)


def test_m1_rejects_too_few_chunks_and_bad_scores() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        m1(chunks(1), ScriptedFit([1.0]))
    with pytest.raises(ValueError, match="errors for 2 test chunks"):
        m1(chunks(4), ScriptedFit([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="finite"):
        m1(chunks(4), ScriptedFit([1.0, np.nan]))


# ----------------------------------------------------------------------- budget


def test_budget_on_an_exponential_tail_is_its_quantile() -> None:
    errors = 0.3 + np.random.default_rng(0).exponential(0.1, 200_000)
    for rate in (0.01, 0.005, 0.001):
        exact = 0.3 + 0.1 * np.log(1 / rate)  # the (1 - rate) quantile of this law
        assert budget(errors, alarm_rate=rate) == pytest.approx(exact, rel=0.02)


def test_budget_ignores_anomalies_in_the_training_errors() -> None:
    rng = np.random.default_rng(1)
    clean = rng.exponential(1.0, 5_000)
    dirty = np.concatenate([clean, 50 + rng.exponential(10.0, 500)])  # 9% anomalous windows
    # they shift the bulk's quantiles a little (a more cautious threshold) ...
    assert budget(clean) < budget(dirty) < 1.5 * budget(clean)
    assert quantile(dirty, 0.005) > 5 * quantile(clean, 0.005)  # ... the top quantile moves with them
    rate = (clean > budget(clean)).mean()  # about the default's 0.4%
    assert BUDGET_ALARM_RATE / 2 < rate < 2 * BUDGET_ALARM_RATE
    assert 0.0 < (clean > budget(dirty)).mean() < BUDGET_ALARM_RATE


def test_budget_with_ties_and_bad_parameters() -> None:
    assert budget(np.full(50, 0.2)) == 0.2  # nothing above the tie: the maximum
    tied = np.r_[np.zeros(90), np.linspace(1.0, 2.0, 10)]  # the 50% and 80% quantiles are equal
    # the tail above the tie is fitted to the 10% above it
    assert 1.0 < budget(tied, alarm_rate=0.05) < 2.0 < budget(tied, alarm_rate=0.01)
    for kwargs, message in (({"alarm_rate": 0.0}, "alarm_rate"), ({"alarm_rate": 0.3}, "below 1 - hi"),
                            ({"lo": 0.9, "hi": 0.8}, "lo < hi")):
        with pytest.raises(ValueError, match=message):
            budget(ERRORS, **kwargs)
