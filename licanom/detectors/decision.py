"""Severity and decisions: how every detector turns its scores into 0-100 and into flags.

Every family scores chunks on its own scale (a reconstruction error, a summed surprisal, a
distance to a boundary). :class:`Calibration` maps a score to a **severity** in [0, 100] that
means the same for every family, vendor and night: how far the chunk lies in the upper tail of
the vendor's *normal bulk*, on a log scale of the tail probability
(``severity = 100 * min(1, -log10(p) / SEVERITY_DECADES)``), in the spirit of Elastic's
anomaly scores. 50 is about one normal chunk in 3,000 (p = 10^-3.5), 100 one in ten million or further.

The normal bulk is estimated so that it stays right when up to about half of the training
chunks are anomalous (floods, storms, a client retrying an expired key for days): the scores
above ``q25 + trim * (q25 - q05)`` are set aside (:func:`normal_bulk`), so that a long flood in
the training days does not widen what counts as normal; the kept scores' median and 90th percentile
anchor an exponential upper tail (the shape of a sum of surprisals, and of the autoencoders'
errors above their bulk); a detector whose score has a unit of its own gives the tail's scale
instead (``Tail_context``, in nats), and only the median is the vendor's. A score that lies
``FAR_FACTOR`` times as far above the bulk's median as the largest calibration score always gets
100: no fitted tail can hide a frame far beyond anything seen. (Measured from the median, not from
zero: a sum of seventeen surprisals has a typical level of its own, and a ratio of raw scores let one
signal thousands of times beyond its training range stay below twice the largest total. Per signal,
``Tail_context`` holds it too: :data:`licanom.detectors.context.FAR_SIGNAL_FACTOR`.)

:func:`decide` returns a detector's threshold (on its own score scale) for a decision by name:
``severity`` (the default: flag at ``min_severity``) or one of the thesis's and earlier
thresholds (:data:`licanom.detectors.thresholds.THRESHOLDS`: M1, M2, M3, quantile, pot, budget), which
stay available by name. Measured choices (the default ``min_severity``, ``trim``) come from
the development seeds of the evaluation (``docs/choosing-defaults.md``).

The ``severity`` decision also flags a chunk that **stands out from its own night**
(:func:`stands_out`): severity at least ``stand_out_floor`` and ``stand_out_gap`` or more above the
90th percentile of the severities of its night's chunks (a UTC day of one scoring pass). One level
for every vendor misses the event of a vendor whose nights lie well below it; a chunk far above
the rest of its night is unusual whatever the calibration says. In a small night (fewer than
``SMALL_NIGHT_CHUNKS`` chunks) each chunk is judged against the median of the night's *other*
chunks instead, with a floor of ``SMALL_NIGHT_FLOOR`` and a gap of ``SMALL_NIGHT_GAP``: its 90th
percentile lies close to its largest value (with four chunks or fewer the 90th percentile's rule
could flag nothing the threshold does not), and a small vendor's severities are compressed besides
(each signal's surprisal against a few hundred training chunks tops out near the log of their
number). The chunk itself stays out of the median it is judged against: in a night of two chunks
the median of both lies halfway between them, and a chunk could stand out only twice the gap
above the other. A small night's chunk must also stand out from the night's other chunks completed
with the vendor's **latest training chunks** (:attr:`Calibration.recent`, their out-of-fold scores
where the family has them) to ``SMALL_NIGHT_CHUNKS - 1`` values: a night of one chunk is judged
against what the vendor's chunks looked like lately, and a chunk of a few is not flagged for lying
above one or two quiet neighbours alone.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

from licanom.detectors import thresholds as th
from licanom.spelling import did_you_mean
log = logging.getLogger(__name__)

# The decisions by name: severity, then the thresholds of licanom.detectors.thresholds.
DecisionName = Literal["severity", "M1", "M2", "M3", "quantile", "pot", "budget"]
DECISIONS: tuple[str, ...] = get_args(DecisionName)
assert DECISIONS[1:] == th.THRESHOLDS, "the named thresholds must stay in step with licanom.detectors.thresholds"

# Severity reaches 100 at a tail probability of 10**-SEVERITY_DECADES.
SEVERITY_DECADES = 7.0
# The default decision: flag chunks at or above this severity (chosen on the development seeds).
DEFAULT_MIN_SEVERITY = 55.0
# The severity decision's night rule (chosen on the development seeds): flag as well a chunk of
# severity >= STAND_OUT_FLOOR that lies STAND_OUT_GAP or more above its night's 90th percentile.
STAND_OUT_FLOOR = 40.0
STAND_OUT_GAP = 20.0
# A night of fewer chunks than SMALL_NIGHT_CHUNKS: a chunk of severity >= SMALL_NIGHT_FLOOR that lies
# SMALL_NIGHT_GAP or more above the median of the night's other chunks, and above the median of those
# completed with the vendor's latest training chunks to SMALL_NIGHT_CHUNKS - 1 values (chosen on the
# development seeds of both generators).
SMALL_NIGHT_CHUNKS = 30
SMALL_NIGHT_FLOOR = 35.0
SMALL_NIGHT_GAP = 25.0
# Why a chunk was flagged (chunks.parquet's and anomalies.csv's flagged_by; null when it was not):
# its score above the decision's threshold (under the severity decision, severity at or above its
# level), or, under the severity decision only, the night rule (stands_out: below the level, well
# above the rest of its night).
FLAGGED_BY: tuple[str, ...] = ("threshold", "night")
# A calibration of fewer scores than this cannot tell a vendor's normal range from the few chunks it
# was fitted on: a clean vendor of this simulator trained on 2 chunks had 24 of 25 ordinary night
# chunks flagged at severity 100, on 9 chunks 4, on 20 none (docs/choosing-defaults.md, "A vendor of a
# few training chunks"). No decision was found that stops it without losing small vendors' events,
# so the model says so instead (BaseDetector.calibration_caution): in its training log, each night's
# messages, and licanom detect's summary and report. 16 is where the context models calibrate out of fold (four
# chunks per fold).
SMALL_CALIBRATION = 16
# How many of the latest calibration scores a Calibration keeps (Calibration.recent): enough to complete
# a small night's reference to small_night_chunks - 1 values for any small_night_chunks up to 100.
RECENT_KEPT = 99
# How far above the lower quartile (in units of q25 - q05) a training score may lie and still shape the bulk.
DEFAULT_TRIM = 3.5
# A score this many times the largest training score is always severity 100.
FAR_FACTOR = 2.0
_LN10 = float(np.log(10.0))


def _scores(values: ArrayLike, name: str = "scores") -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def normal_bulk(scores: ArrayLike, trim: float = DEFAULT_TRIM) -> NDArray[np.bool_]:
    """Which of ``scores`` (training scores, higher = more anomalous) shape the normal bulk.

    Keeps the scores at or below ``q25 + trim * (q25 - q05)``. Both anchors lie in the lowest
    quarter, so they stay among normal chunks until three quarters of the training chunks are
    anomalous (anomalies score high): a flood that fills half of the training days lies above the
    line and is set aside, while clean training data loses only its top decile or so. Returns a
    bool mask.
    """
    arr = _scores(scores)
    if trim <= 0:
        raise ValueError(f"trim must be positive, got {trim!r}")
    q05, q25 = np.quantile(arr, [0.05, 0.25])
    spread = max(q25 - q05, 1e-12 * max(abs(q25), 1.0))
    keep = arr <= q25 + trim * spread
    return keep if keep.sum() >= max(3, arr.size // 4) else np.ones(arr.size, dtype=bool)


@dataclass(frozen=True)
class Calibration:
    """The normal bulk of a detector's scores and the exponential upper tail fitted to it.

    ``P(score > s) = 0.5 * exp(-(s - median) / beta)`` above the bulk's median, with ``beta`` set
    so that the tail passes through the bulk's 90th percentile, or given: a detector whose score
    has a unit of its own passes its tail scale (``Tail_context``'s summed surprisal, in nats:
    :data:`licanom.detectors.context.TAIL_SCALE_NATS`); ``max_score`` is the largest
    calibration score (for the far-beyond rule, :attr:`far_score`); ``recent`` the last
    :data:`RECENT_KEPT` calibration scores in the order given (the training chunks' time order: the
    vendor's latest training chunks, which complete a small night's reference in
    :func:`stands_out`; empty where a calibration is built otherwise). Build it with :meth:`fit`.
    """

    median: float
    q90: float
    beta: float
    max_score: float
    n: int
    n_bulk: int
    recent: tuple[float, ...] = ()

    @classmethod
    def fit(cls, scores: ArrayLike, trim: float = DEFAULT_TRIM, scale: float | None = None) -> Calibration:
        """From training (or out-of-fold) scores in time order, which may hold anomalies. ``scale``:
        the tail's scale when the detector knows it (None: fitted to the bulk's median and 90th
        percentile)."""
        arr = _scores(scores)
        if scale is not None and not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be positive and finite, got {scale!r}")
        bulk = arr[normal_bulk(arr, trim)]
        q50, q90 = (float(v) for v in np.quantile(bulk, [0.5, 0.9]))
        spread = q90 - q50
        if spread <= 1e-9 * max(abs(q50), 1.0):  # a bulk of ties (to float noise): the spread of the scores
            # above it, else one unit of the scale
            above = arr[arr > q50] - q50
            spread = float(np.median(above)) if above.size else max(abs(q50) * 0.1, 1e-6)
        beta = spread / np.log(0.5 / 0.1) if scale is None else float(scale)
        return cls(median=q50, q90=q90, beta=float(beta), max_score=float(arr.max()), n=int(arr.size),
                   n_bulk=int(bulk.size), recent=tuple(float(v) for v in arr[-RECENT_KEPT:]))

    def log10_tail(self, scores: ArrayLike) -> NDArray[np.float64]:
        """``log10 P(normal score > s)`` per score (0 at and below the median)."""
        s = np.asarray(scores, dtype=np.float64)
        ln_p = np.log(0.5) - (s - self.median) / self.beta
        return np.minimum(ln_p, 0.0) / _LN10

    @property
    def far_score(self) -> float | None:
        """The score from which severity is always 100: ``FAR_FACTOR`` times as far above the
        bulk's median as the largest calibration score (None when none lies above the median)."""
        if self.max_score <= self.median:
            return None
        return self.median + FAR_FACTOR * (self.max_score - self.median)

    def severity(self, scores: ArrayLike) -> NDArray[np.float64]:
        """Severity in [0, 100] per score: ``100 * min(1, -log10 p / SEVERITY_DECADES)``, and 100
        from :attr:`far_score` on."""
        s = np.asarray(scores, dtype=np.float64)
        sev = np.clip(-self.log10_tail(s) / SEVERITY_DECADES * 100.0, 0.0, 100.0)
        far = self.far_score
        if far is not None:
            sev = np.where(s >= far, 100.0, sev)
        return np.where(np.isnan(s), np.nan, sev)

    def score_at(self, severity: float) -> float:
        """The score at which severity reaches ``severity`` (the inverse of :meth:`severity` below
        the far-beyond rule): a threshold on the detector's own scale."""
        if not 0.0 < severity <= 100.0:
            raise ValueError(f"severity must lie in (0, 100], got {severity!r}")
        log10_p = -severity / 100.0 * SEVERITY_DECADES
        value = self.median + self.beta * (np.log(0.5) - log10_p * _LN10)
        far = self.far_score
        if far is not None and value >= far:
            value = float(np.nextafter(far, -np.inf))
        return float(value)

    def recent_severity(self) -> NDArray[np.float64]:
        """The severities of :attr:`recent` (the latest training chunks), oldest first."""
        return self.severity(np.asarray(self.recent, dtype=np.float64)) if self.recent else np.empty(0)

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["recent"] = list(self.recent)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        """From :meth:`as_dict`'s values; a calibration saved before it kept ``recent`` has none."""
        return cls(**{k: values[k] for k in ("median", "q90", "beta", "max_score", "n", "n_bulk")},
                   recent=tuple(float(v) for v in values.get("recent", ())))


@dataclass(frozen=True)
class SeverityDecision:
    """The ``severity`` decision's settings (its ``threshold_params``): flag at ``min_severity``,
    and the chunks that stand out from their night (:func:`stands_out`; ``stand_out_gap`` None:
    off), a night of fewer than ``small_night_chunks`` chunks (0: none is small) each chunk against
    the median of the night's other chunks and the median of those completed with the vendor's
    latest training chunks (``small_night_chunks - 1`` values), with ``small_night_floor`` and
    ``small_night_gap``."""

    min_severity: float = DEFAULT_MIN_SEVERITY
    stand_out_floor: float = STAND_OUT_FLOOR
    stand_out_gap: float | None = STAND_OUT_GAP
    small_night_chunks: int = SMALL_NIGHT_CHUNKS
    small_night_floor: float = SMALL_NIGHT_FLOOR
    small_night_gap: float = SMALL_NIGHT_GAP

    PARAMS: ClassVar[tuple[str, ...]] = ("min_severity", "stand_out_floor", "stand_out_gap", "small_night_chunks",
                                         "small_night_floor", "small_night_gap")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> SeverityDecision:
        params = dict(params or {})
        unknown = sorted(set(params) - set(cls.PARAMS))
        if unknown:
            raise ValueError(f"the severity decision takes {', '.join(cls.PARAMS)}, got {unknown}"
                             f"{did_you_mean(unknown, cls.PARAMS)}")
        values: dict[str, float | int | None] = {}
        for name, value in params.items():
            if value is None and name == "stand_out_gap":
                values[name] = None
                continue
            try:
                if isinstance(value, bool):  # YAML's true/false are no numbers here
                    raise TypeError
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"the severity decision's {name} must be a number, got {value!r}") from None
            if name == "small_night_chunks":
                if not (number >= 0 and number == int(number)):
                    raise ValueError(f"the severity decision's small_night_chunks must be a whole number >= 0, got {value!r}")
                values[name] = int(number)
                continue
            if not 0.0 < number <= 100.0:
                raise ValueError(f"the severity decision's {name} must lie in (0, 100], got {value!r}")
            values[name] = number
        return cls(**values)  # type: ignore[arg-type]

    def describe(self) -> str:
        text = f"severity >= {self.min_severity:g}"
        if self.stand_out_gap is not None:
            text += f", or >= {self.stand_out_floor:g} and {self.stand_out_gap:g} above its night's 90th percentile"
            if self.small_night_chunks:
                text += (f" (a night under {self.small_night_chunks} chunks: >= {self.small_night_floor:g} and "
                         f"{self.small_night_gap:g} above the median of the others, alone and with the latest "
                         "training chunks)")
        return text

    def stands_out(self, severity: ArrayLike, nights: ArrayLike, recent: ArrayLike = ()) -> NDArray[np.bool_]:
        """:func:`stands_out` with these settings (nothing when the rule is off)."""
        if self.stand_out_gap is None:
            return np.zeros(np.shape(severity), dtype=bool)
        return stands_out(severity, nights, self.stand_out_floor, self.stand_out_gap, self.small_night_chunks,
                          self.small_night_floor, self.small_night_gap, recent)


def stands_out(severity: ArrayLike, nights: ArrayLike, floor: float = STAND_OUT_FLOOR,
               gap: float = STAND_OUT_GAP, small_night: int = SMALL_NIGHT_CHUNKS,
               small_floor: float = SMALL_NIGHT_FLOOR, small_gap: float = SMALL_NIGHT_GAP,
               recent: ArrayLike = ()) -> NDArray[np.bool_]:
    """Which chunks stand out from their night: severity ``>= floor`` and ``>= gap`` above the 90th
    percentile (linear interpolation) of the severities of the chunks with the same ``nights``
    value (any labels: a UTC day); in a night of fewer than ``small_night`` chunks, severity ``>=
    small_floor`` and ``>= small_gap`` above two medians: of the night's other chunks, and of those
    completed with the last of ``recent`` (the severities of the vendor's latest training chunks,
    oldest first; :meth:`Calibration.recent_severity`) to ``small_night - 1`` values. A night of
    one chunk has only the second; without ``recent`` a small night's reference is its other chunks
    alone, and a night of one chunk has none. NaN severities never stand out and do not count."""
    sev = np.asarray(severity, dtype=np.float64)
    groups = np.asarray(nights)
    if sev.ndim != 1 or groups.shape != sev.shape:
        raise ValueError(f"severity and nights must be 1-D of one length, got {sev.shape} and {groups.shape}")
    latest = np.asarray(recent, dtype=np.float64).ravel()
    latest = latest[~np.isnan(latest)]
    out = np.zeros(sev.shape, dtype=bool)
    if sev.size == 0:
        return out
    _, ids = np.unique(groups, return_inverse=True)
    order = np.argsort(ids.ravel(), kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(ids.ravel()[order])) + 1):  # one night at a time
        rows = rows[~np.isnan(sev[rows])]
        if rows.size == 0:  # a night of NaN severities only: nothing to judge
            continue
        if rows.size >= small_night:
            q90 = float(np.quantile(sev[rows], 0.9))
            out[rows] = (sev[rows] >= floor) & (sev[rows] - q90 >= gap)
        elif rows.size > 1 or (rows.size and latest.size):
            night = sev[rows]
            need = max(small_night - night.size, 0)  # the night's size - 1 others and these: small_night - 1
            prior = latest[latest.size - min(need, latest.size):]
            reference = _median_without_each(night, prior)
            if night.size > 1 and prior.size:  # and above the night's other chunks alone, as before
                reference = np.maximum(reference, _median_without_each(night, np.empty(0)))
            out[rows] = (night >= small_floor) & (night - reference >= small_gap)
    return out


def _median_without_each(night: NDArray[np.float64], prior: NDArray[np.float64]) -> NDArray[np.float64]:
    """Per value of ``night``: the median of ``night``'s other values and ``prior`` (at least one
    value in all). One sort, not one median per chunk: a log of many small nights (a small vendor's
    months in ``licanom detect``) is decided in one pass per night."""
    values = np.r_[night, prior]
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    where = np.empty(values.size, dtype=np.int64)
    where[order] = np.arange(values.size)
    left_out = where[: night.size]  # each night value's place in the sorted values
    n = values.size - 1  # the values each median is taken of
    lo, hi = np.full(night.size, (n - 1) // 2), np.full(night.size, n // 2)
    # the r-th of the values left once the one at place j is taken out is the sorted (r + (r >= j))-th
    return (ordered[lo + (lo >= left_out)] + ordered[hi + (hi >= left_out)]) / 2.0


def check_decision(name: str, params: dict[str, object] | None = None) -> None:
    """Refuse, as a configuration is read, a decision's settings that it would refuse only once a
    model is trained: an unknown name, a setting the decision does not take (``min_severity`` for
    M3), a value out of its range (``min_severity: 150``, ``alarm_rate: 5``, ``bins: twenty``), a
    number written as text (``min_severity: "70"``) or a boolean where a number is meant. One
    line, a ValueError; the checks are the decision's own (each threshold is tried once on made-up
    scores), so they cannot drift from what training does."""
    import inspect

    params = dict(params or {})
    if name not in DECISIONS:
        raise ValueError(f"unknown decision {name!r}; expected one of {', '.join(DECISIONS)}")
    if name == "severity":
        SeverityDecision.from_params(params)
        _numbers(params, ())
        return
    signature = inspect.signature(th.threshold_function(name)).parameters
    taken = [p for p in list(signature)[1:]
             if p not in ("fit_score", "max_rounds", "seed")]  # M1's: the detector's own settings
    unknown = sorted(set(params) - set(taken))
    if unknown:
        takes = f"takes {', '.join(taken)}" if taken else "takes no settings"
        raise ValueError(f"the {name} decision {takes}, got {unknown}{did_you_mean(unknown, taken)}")
    _numbers(params, tuple(p for p in taken if "str" in str(signature[p].annotation)))  # M3's bins: "auto"
    scores = np.linspace(0.0, 1.0, 200)
    try:
        if name == "M1":
            th.m1(np.zeros((4, 1)), lambda train, test: scores[: len(test)], max_rounds=1,
                  **params)  # type: ignore[arg-type]
        else:
            th.threshold_from_errors(name, scores, **params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the {name} decision's settings {params}: {str(err).splitlines()[0]}") from None


def _numbers(params: dict[str, object], texts: tuple[str, ...]) -> None:
    """Refuse a decision's setting that is not a number (besides null, which the decision judges,
    and a text where its function takes one, ``texts``): a quoted "70" read as 70 later, and YAML's
    true as 1."""
    for key, value in params.items():
        if value is None or (isinstance(value, str) and key in texts):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = " (quoted in the file: write it without quotes)" if isinstance(value, str) and _numeric(value) else ""
            raise ValueError(f"threshold_params.{key} must be a number, got {value!r}{hint}")


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def decide(
    name: str,
    X: Any,
    scores: ArrayLike,
    fit_score: th.FitScore | None,
    params: dict[str, object] | None = None,
    *,
    calibration: Calibration | None = None,
    max_rounds: int = 20,
    seed: int = 0,
) -> tuple[float, str]:
    """A detector's threshold (on its score scale) and the method that gave it.

    ``scores``: its training scores; ``calibration``: its :class:`Calibration` (built from the
    scores when not given). ``severity`` flags at ``params["min_severity"]`` (default
    :data:`DEFAULT_MIN_SEVERITY`; its other params are :class:`SeverityDecision`'s, whose night
    rule :meth:`licanom.detectors.base.BaseDetector.flags` applies); the other names are :mod:`licanom.detectors.thresholds`' (M1 refits
    through ``fit_score`` and falls back to M3 when it finds none).
    """
    params = dict(params or {})
    if name not in DECISIONS:
        raise ValueError(f"unknown decision {name!r}; expected one of {', '.join(DECISIONS)}")
    if name == "severity":
        rule = SeverityDecision.from_params(params)
        cal = calibration or Calibration.fit(scores)
        return cal.score_at(rule.min_severity), rule.describe()
    if name == "M1" and fit_score is None:
        raise ValueError("M1 retrains the detector: it needs a fit_score")
    return th.decide(name, X, scores, fit_score, params, max_rounds=max_rounds, seed=seed)  # type: ignore[arg-type]
