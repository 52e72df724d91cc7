"""The context models: ``Tail_context`` (each signal's empirical right tail, :class:`TailModel`),
``IForest_context`` and ``LOF_context``, fitted on the chunks' context vectors
(:mod:`licanom.data.context_vector`) with a robust reference and calibrated severity."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from licanom.detectors import thresholds as th
from licanom.detectors.base import BaseDetector
from licanom.detectors.decision import DECISIONS, Calibration, decide
from licanom.data.context_vector import CONTEXT_COLUMNS, CONTEXT_VERSION, CONTEXT_VERSIONS, ROW_COLUMNS
from licanom.detectors.saved import load_pickle, save_pickle

__all__ = ["CONTEXT_COLUMNS", "CONTEXT_MODELS", "ContextDetector", "TailModel"]


# The registered models that read the context vector instead of the chunks' rows.
CONTEXT_MODELS: tuple[str, ...] = ("Tail_context", "IForest_context", "LOF_context")
# 8: the context vector's version it was fitted on (licanom.data.context_vector.CONTEXT_VERSION);
# 7: the trimming's tolerances, and 6 (before them, fitted without them) still load, reading version 1
SAVE_FORMAT = 8
# The scale, in nats, of the upper tail of Tail_context's score above the vendor's normal bulk:
# one value for every vendor, where the other families fit theirs to each vendor's bulk. The score
# is a sum of log tail probabilities, so its tail has a unit of its own; fitted per vendor (the bulk's
# median to 90th percentile, a few dozen chunks on a small vendor) the scale scattered (2.3-4.1
# between the 10th and 90th percentile of 191 development vendors, median 3.4) with the noise of
# the estimate, and the noise cost events: on the development seeds 1-6 (eight worlds, nightly mode),
# one scale for all found 0.68 of events at 20 false alarms per 10,000 normal chunks where the
# fitted ones found 0.61, better on each of the four profiles and on each half of the seeds. Its
# value only sets where a severity falls (the ranking is the same for any one value); 3.75 puts the
# default decision, severity 55, at the level chosen on those seeds with the sixteen signals (3.5
# with the fifteen before ip_failed_keys_hour; docs/choosing-defaults.md).
TAIL_SCALE_NATS = 3.75
# The trimming's tolerance (Tail_context): in the rounds that decide which training chunks make the
# reference, a chunk's counts are judged TRIM_TOLERANCE lower (log1p units: with 1.0 a count
# c counts as (c + 1) / e - 1: 0 and 1 as 0, 2 as 0.1, 10 as about 3) and its shares of
# requests TRIM_SHARE_TOLERANCE lower. Without it, a behaviour that a fifth of a vendor's chunks hold (one
# failure of a machine in an hour) was missing from the lower half that the trimming starts from,
# scored as never seen, and left the reference for good: every later night's ordinary failure
# then looked like a flood. Chosen on the development seeds 1-6 of both generators (this
# simulator's eight worlds and the second generator's four; docs/choosing-defaults.md).
TRIM_TOLERANCE = 1.0
TRIM_SHARE_TOLERANCE = 0.05
# A count far beyond anything seen in training (Tail_context's far rule per signal): at least
# FAR_SIGNAL_FACTOR times the column's largest count over every training chunk (that count taken as
# at least FAR_SIGNAL_MIN_COUNT), whatever the column's fitted tail says, carries FAR_SIGNAL_NATS of
# surprisal: alone past the default decision, to severity 100 on a typical vendor. The calibration's
# rule (licanom.detectors.decision.FAR_FACTOR) judges the summed score, which a single signal far
# out does not move enough: a sum of seventeen surprisals, each extrapolated on a log scale of
# counts (docs/choosing-defaults.md, "Usage and a count far beyond training").
FAR_SIGNAL_FACTOR = 10.0
FAR_SIGNAL_MIN_COUNT = 10.0
FAR_SIGNAL_NATS = 60.0
# A share far beyond the vendor's normal training chunks (Tail_context's far rule for
# FAR_SHARE_COLUMNS): at least FAR_SHARE_GAP above the column's largest share over the chunks its
# robust reference kept (half of a chunk's requests failing beyond the most a normal training chunk
# saw: a platform outage, every request of a night failing, where the counts' rule sees nothing new to
# count) carries FAR_SIGNAL_NATS, as a count does. A share tops out at 1, so a ratio like the counts'
# cannot be used. From the reference's chunks, not every training chunk's (as the counts' rule): a
# failure loop in the training days, which the trimming sets aside, would otherwise switch the rule off
# for two thirds of vendors (on report seed 16001, 38 of 56). The out-of-fold scores that calibrate
# severity do not take it (:meth:`ContextDetector._out_of_fold`).
FAR_SHARE_GAP = 0.5
FAR_SHARE_COLUMNS: tuple[str, ...] = ("failure_share",)
# A machine failing this many requests in one clock hour is stuck in a failure loop, whatever the training
# days held (Tail_context's loop line): its ``machine_failures_hour`` (the count above the machine's own
# level) carries FAR_SIGNAL_NATS from this count on, as a count far beyond training does. The far rule
# measures from the training days' largest count, and a vendor whose training days a storm of loops
# filled (the second generator's storm level: up to 60% of the training chunks) has such counts among
# its largest, so that a new machine failing 700 times an hour at night scored as ordinary. No normal
# machine of either generator's development vendors failed more than 35 times in an hour
# (docs/choosing-defaults.md, "A failure loop's line").
LOOP_FAILURES_PER_HOUR = 100.0
LOOP_COLUMNS: tuple[str, ...] = ("machine_failures_hour",)
# A share that recurs through the training days is not far beyond them: where the training chunks at or
# beyond a share's line (the reference's largest + FAR_SHARE_GAP) lie on at least RECUR_MIN_SHARE of the
# last RECUR_DAYS UTC days of the training chunks (and on at least RECUR_MIN_DAYS of them), the line is
# drawn from every training chunk instead, as the counts' is. A job of the vendor's that fails most of
# its requests every night (a check of lapsed licences) fills a chunk or two a day, which the trimming
# sets aside as it sets a loop aside; without this, each night's would reach the top severity for as
# long as the model is used (benchmarks.recurring_failures: a usage vendor's daily job of 100 failing
# requests, its night chunk at 100 every night). The last days, not all of them: a model retrained on a
# long log meets a job begun a month ago. A loop of a few days keeps the line. Judged only where the
# chunks' days are given (ContextDetector.fit's ``days``); without them the line is the reference's.
RECUR_DAYS = 14
RECUR_MIN_SHARE = 0.5
RECUR_MIN_DAYS = 3
# A job of the vendor's that runs at one time of every day is the vendor's, not a flood: where the training
# chunks the trimming set aside that began within one JOB_HOURS-hour window of the clock lie on as many of
# the last RECUR_DAYS days as the share's rule asks (RECUR_MIN_SHARE of them, RECUR_MIN_DAYS at least), and on
# JOB_MARGIN times that many days more than the set-aside chunks of either window beside it and than chunks
# set aside at random would cover (a window that stands out of the clock: the trimming's tail covers a few
# days of any window, most days of a window that holds many chunks a day), those chunks rejoin the
# reference; judged on JOB_MIN_DAYS training days or more (on fewer, chance covers a window's few days).
# Without it the trimming sets a nightly job aside as it sets a loop aside, for every signal, and each
# night's run of the job is flagged by its key's requests, its rate or the night rule
# (benchmarks.recurring_failures). Floods at random hours (a contaminated vendor's loops, a storm) and a
# vendor's busy hours, set aside with the floods among them, cover the hours beside the window too and
# rejoin nothing. Judged only where the chunks' times of day are given.
JOB_HOURS = 2
JOB_MARGIN = 1.0
JOB_MIN_DAYS = 10
# The context columns that are shares of a chunk's requests (ROW_COLUMNS are log1p counts).
SHARE_COLUMNS: tuple[str, ...] = ("failure_share", "top_machine_share")


# ---------------------------------------------------------------------------------------------
# The detectors


@dataclass
class TailModel:
    """How surprising each column of a vector is against training vectors, one column at a time.

    The surprisal of a value ``x`` in column ``j`` is ``-log P(X_j >= x)`` in nats, with ``P``
    the training column's empirical right tail ``(#{train >= x} + 1) / (n + 1)``, extended past
    the column's ``tail_quantile`` quantile ``u`` by an exponential tail
    ``P(X_j > u) * exp(-(x - u) / beta)`` (the larger of the two surprisals is kept). ``beta`` is
    the median excess over ``u`` divided by ``log 2``, the exponential's maximum-likelihood scale
    made robust: a few anomalies in the training vectors do not widen the tail. When nothing lies
    above ``u``, the tail starts at the maximum with the column's standard deviation (1 if the
    column is constant). Only the right tail counts: every context column is a count or a share
    that is suspicious when high. A vector's score is the sum of its columns' surprisals, the
    log of the product of tail probabilities as in ECOD (Li et al., 2022), so a chunk that is
    extreme in one signal, or unusual in several at once, stands out.

    The far rule (``far_columns``: which columns are counts): a value of at least ``far_factor``
    times the column's largest training count (:attr:`seen_max_`, every training chunk's, where the
    caller sets it; else the fitted vectors' largest; at least ``far_min_count``) has a surprisal of
    at least ``far_nats``, however wide the fitted tail. Without ``far_columns`` (and in models
    saved before the rule) there is none. For ``far_share_columns`` a share at least
    ``far_share_gap`` above :attr:`seen_max_` (which :class:`ContextDetector` sets to the largest of
    the chunks its reference kept, for those columns, or of every chunk where the chunks beyond that
    line recur through the last training days) carries ``far_nats`` too.
    """

    tail_quantile: float = 0.9
    # the smallest tail scale, in the columns' units (log1p of a count): a column that is all
    # zeros in the training chunks must not make a single request look infinitely surprising
    min_scale: float = 0.1

    # the columns (bool per column) that are log1p counts and meet the far rule; None: no far rule
    far_columns: np.ndarray | None = None
    far_factor: float = FAR_SIGNAL_FACTOR
    far_min_count: float = FAR_SIGNAL_MIN_COUNT
    far_nats: float = FAR_SIGNAL_NATS
    # the columns (bool per column) that are shares under the far rule (FAR_SHARE_GAP above the largest
    # training share); None: none (and in models saved before the rule)
    far_share_columns: np.ndarray | None = None
    far_share_gap: float = FAR_SHARE_GAP
    # the columns (bool per column) that are log1p counts with a line of their own, ``loop_count``: the far
    # rule's surprisal from that count on, whatever the training chunks held; None: none (and in models
    # saved before the line)
    loop_columns: np.ndarray | None = None
    loop_count: float = LOOP_FAILURES_PER_HOUR

    # the largest training value of each column: of every training chunk for a count, of the chunks the
    # reference kept for a share of the far rule (ContextDetector._seen); the fitted vectors' when not set
    seen_max_: np.ndarray | None = field(default=None, init=False, repr=False)
    sorted_: np.ndarray | None = field(default=None, init=False, repr=False)
    u_: np.ndarray | None = field(default=None, init=False, repr=False)
    beta_: np.ndarray | None = field(default=None, init=False, repr=False)
    log_p_u_: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(self, X: np.ndarray) -> TailModel:
        if not 0.0 < self.tail_quantile < 1.0:
            raise ValueError(f"tail_quantile must lie in (0, 1), got {self.tail_quantile!r}")
        X = np.asarray(X, dtype=np.float64)
        n, d = X.shape
        self.sorted_ = np.sort(X, axis=0)
        u = np.quantile(X, self.tail_quantile, axis=0)
        beta, log_p_u = np.empty(d), np.empty(d)
        for j in range(d):
            excess = X[:, j][X[:, j] > u[j]] - u[j]
            if excess.size:
                beta[j] = max(float(np.median(excess)) / np.log(2.0), self.min_scale)
                log_p_u[j] = np.log((excess.size + 1) / (n + 1))
            else:
                u[j] = X[:, j].max()
                sd = float(X[:, j].std())
                beta[j] = max(sd, self.min_scale) if sd > 0 else 1.0
                log_p_u[j] = np.log(1.0 / (n + 1))
        self.u_, self.beta_, self.log_p_u_ = u, beta, log_p_u
        return self

    def surprisal(self, X: np.ndarray) -> np.ndarray:
        """``-log P(X_j >= x)`` per value, ``(n, d)``, in nats (0 for the most ordinary)."""
        if self.sorted_ is None or self.u_ is None or self.beta_ is None or self.log_p_u_ is None:
            raise RuntimeError("this TailModel is not fitted yet: call fit()")
        X = np.asarray(X, dtype=np.float64)
        n = len(self.sorted_)
        out = np.empty_like(X)
        for j in range(X.shape[1]):
            at_least = n - np.searchsorted(self.sorted_[:, j], X[:, j], side="left")
            empirical = -np.log((at_least + 1) / (n + 1))
            tail = -self.log_p_u_[j] + (X[:, j] - self.u_[j]) / self.beta_[j]
            out[:, j] = np.where(X[:, j] > self.u_[j], np.maximum(tail, empirical), empirical)
        far = self.far_lines()
        if far is not None:
            out = np.where(X >= far, np.maximum(out, self.far_nats), out)
        return out

    def far_lines(self) -> np.ndarray | None:
        """Per column, the value from which the far rule holds (``inf`` for the columns it does not
        cover); None without the rule."""
        if self.far_columns is None or self.sorted_ is None or not self.far_factor:
            return None
        seen = self.seen_max_ if self.seen_max_ is not None else self.sorted_[-1]
        largest = np.maximum(np.expm1(seen), self.far_min_count)
        lines = np.where(self.far_columns, np.log1p(self.far_factor * largest), np.inf)
        loops = getattr(self, "loop_columns", None)  # None in a model pickled before the line
        if loops is not None:
            lines = np.where(loops, np.minimum(lines, np.log1p(self.loop_count)), lines)
        shares = getattr(self, "far_share_columns", None)  # None in a model pickled before the rule
        if shares is not None:
            # a hair under the gap: a training share of 0.07 and a chunk's 0.57 are half a chunk apart
            line = seen + self.far_share_gap - 1e-9
            lines = np.where(shares, np.where(line <= 1.0, line, np.inf), lines)
        return lines

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's convention: higher = more normal (minus the summed surprisal)."""
        return -self.surprisal(X).sum(axis=1)


@dataclass
class ContextDetector(BaseDetector):
    """A detector on the chunks' context vectors, in the PyOD style: ``Tail_context`` (the
    summed surprisal of each signal against its training tail, :class:`TailModel`),
    ``IForest_context`` (IsolationForest) or ``LOF_context`` (LocalOutlierFactor).

    ``X`` is ``(n_chunks, len(CONTEXT_COLUMNS))`` (:func:`chunk_context`). The score is
    ``-score_samples`` (higher = more anomalous); LOF reads the vectors scaled by the training
    chunks' median and interquartile range (its distances need one scale).

    Robust to contaminated training days: training days are never clean, and a flood from one
    client can fill a third of them. The reference is first fitted on the lower half of the
    chunks by score, then ``trim_rounds`` times on the chunks whose score against the previous fit
    lies at or below ``median + trim * (median - q10)`` of all training scores, so that a flood does
    not widen what counts as normal and the next flood still stands out (chosen against plain fits
    and per-entity weighting on the development seeds: docs/choosing-defaults.md). In those rounds
    ``Tail_context`` judges each chunk with its counts lowered by :attr:`trim_tolerance` (``log1p``
    units) and its shares by :attr:`trim_share_tolerance`: a chunk leaves the reference for values
    clearly above it, not for a small count that the lower half happened not to hold (one failure
    of a machine in an hour, in a fifth of a vendor's chunks, is ordinary there however rare it is
    in the lower half). Given the chunks' times (``fit(X, days=...)``), the chunks set aside that a job
    of the vendor's fills at one time of every day rejoin the reference (:func:`_daily_job`).
    Severity (:mod:`licanom.detectors.decision`) is calibrated on
    out-of-fold scores: the training chunks cut into ``calibration_folds`` blocks in time, each
    scored by a reference fitted (robustly) on the others, which is how a night's chunks meet the
    model; ``Tail_context``'s tail above their bulk has the scale :attr:`tail_scale`
    (:data:`TAIL_SCALE_NATS`, the same for every vendor), the others' is fitted. The decision
    (``threshold``) is ``severity`` by default, or any named threshold of
    :mod:`licanom.detectors.thresholds` on the training scores (M1 refits the model on random halves).
    ``explain(X)`` says how far each column is from the training chunks: its surprisal in nats for
    ``Tail_context``, its robust z-score (median, interquartile range) for the others; ``encode``
    is that matrix (for GMM/KMeans on a "latent code").
    """

    family: ClassVar[str] = "context"
    reads: ClassVar[str] = "context"

    model: str = "Tail_context"
    threshold: str = "severity"
    threshold_params: tuple[tuple[str, Any], ...] = ()
    n_estimators: int = 200
    max_samples: int | str = "auto"
    n_neighbors: int = 20
    tail_quantile: float = 0.9
    seed: int = 0
    m1_max_rounds: int = 5
    trim: float = 2.0
    trim_rounds: int = 2
    trim_tolerance: float = TRIM_TOLERANCE              # Tail_context: counts, in log1p units
    trim_share_tolerance: float = TRIM_SHARE_TOLERANCE  # Tail_context: shares of a chunk's requests
    calibration_folds: int = 4
    tail_scale: float | None = TAIL_SCALE_NATS  # Tail_context's severity tail scale; None: fitted per vendor

    estimator_: Any = field(default=None, init=False, repr=False)
    center_: np.ndarray | None = field(default=None, init=False, repr=False)
    scale_: np.ndarray | None = field(default=None, init=False, repr=False)
    decision_scores_: np.ndarray | None = field(default=None, init=False, repr=False)
    calibration_scores_: np.ndarray | None = field(default=None, init=False, repr=False)
    reference_: np.ndarray | None = field(default=None, init=False, repr=False)  # chunks the reference kept
    threshold_: float | None = field(default=None, init=False)
    threshold_method_: str | None = field(default=None, init=False)
    labels_: np.ndarray | None = field(default=None, init=False, repr=False)
    seconds_: float = field(default=0.0, init=False)
    # the context columns the detector was fitted on: CONTEXT_COLUMNS, or the fewer of a model
    # saved before a column was added (it reads those columns of today's vectors)
    columns_: tuple[str, ...] = field(default=CONTEXT_COLUMNS, init=False, repr=False)

    def fit(self, X: np.ndarray, y: None = None, *, days: np.ndarray | None = None) -> ContextDetector:
        """Fit the reference on training vectors (robustly), calibrate severity, set the threshold.
        ``days``: when each chunk began, in days since 1970 (:meth:`licanom.data.chunk.Chunks.days`; chunks
        in time order), for a job at one time of every day (:data:`JOB_HOURS`) and the far rule's recurring
        shares (:data:`RECUR_DAYS`); None: neither is judged."""
        self.columns_ = CONTEXT_COLUMNS
        X = self._inputs(X)
        if days is not None:
            days = np.asarray(days)
            if days.shape != (len(X),):
                raise ValueError(f"days must give one day per training chunk ({len(X)}), got shape {days.shape}")
        if self.model not in CONTEXT_MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid: {', '.join(CONTEXT_MODELS)}")
        if self.threshold not in DECISIONS:
            raise ValueError(f"unknown decision {self.threshold!r}; valid: {', '.join(DECISIONS)}")
        if len(X) < 2:
            raise ValueError(f"{self.model} needs at least 2 training chunks")
        if self.trim <= 0 or self.trim_rounds < 0 or self.calibration_folds < 0:
            raise ValueError("trim must be positive, trim_rounds and calibration_folds non-negative")
        if not (self.trim_tolerance >= 0 and self.trim_share_tolerance >= 0):  # also refuses NaN
            raise ValueError("trim_tolerance and trim_share_tolerance must be non-negative")
        t0 = time.perf_counter()
        self.context_version_ = CONTEXT_VERSION  # X is today's vector (inputs_of's default)
        self.center_, self.scale_ = _robust_scale(X)
        self.estimator_, self.reference_ = self._robust_estimator(X, days)
        self._seen(self.estimator_, X, days)
        self.decision_scores_ = self._in_sample(X)
        self.calibration_scores_ = self._out_of_fold(X, days)
        self._set_calibration(Calibration.fit(self.calibration_scores_, scale=self._tail_scale()))
        self.threshold_, self.threshold_method_ = decide(
            self.threshold, X, self.calibration_scores_ if self.threshold == "severity" else self.decision_scores_,
            self._m1_fit_score, dict(self.threshold_params), calibration=self.calibration_,
            max_rounds=self.m1_max_rounds, seed=self.seed)
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int8)
        self.seconds_ = time.perf_counter() - t0
        return self

    def fit_with_days(self, X: np.ndarray, days: np.ndarray | None = None) -> ContextDetector:
        return self.fit(X, days=days)

    def _in_sample(self, X: np.ndarray) -> np.ndarray:
        """The training chunks' own scores, without the share rule and the loop line: a failure loop of
        the training days that the trimming set aside lies past the share's line (drawn from the chunks
        kept) and may reach the loop line, and its 60 nats would reach every use of these scores (a small
        vendor's calibration, which takes them where there are too few chunks for out-of-fold blocks; the
        named thresholds, M2, M3, quantile, pot)."""
        estimator = self._fitted()
        if not isinstance(estimator, TailModel):
            return self.decision_function(X)
        rules = estimator.far_share_columns, getattr(estimator, "loop_columns", None)
        estimator.far_share_columns = estimator.loop_columns = None
        try:
            return self.decision_function(X)
        finally:
            estimator.far_share_columns, estimator.loop_columns = rules

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """Today's context vectors ``(n, len(CONTEXT_COLUMNS))`` as this detector reads them: the
        columns it was fitted on, checked."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 2 and X.shape[1] == len(CONTEXT_COLUMNS) and self.columns_ != CONTEXT_COLUMNS:
            X = X[:, [CONTEXT_COLUMNS.index(c) for c in self.columns_]]
        return _check_context(X, len(self.columns_))

    def _calibrated_on(self) -> np.ndarray | None:
        """Severity is calibrated on the training chunks' out-of-fold scores, not on the training scores."""
        return self.calibration_scores_

    def _tail_scale(self) -> float | None:
        """The severity's tail scale: :attr:`tail_scale` for ``Tail_context`` (a score in nats),
        None (fitted to the vendor's bulk) for the others."""
        return self.tail_scale if self.model == "Tail_context" else None

    def _robust_estimator(self, X: np.ndarray, days: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        """The estimator fitted on the chunks that are not far above the bulk, and their mask; with the
        chunks' times (``days``), the set-aside chunks of a job that runs at one time of every day rejoin
        it (:func:`_daily_job`)."""
        keep = np.ones(len(X), dtype=bool)
        estimator = self._estimator(X)
        if self.trim_rounds and len(X) >= 8:  # start from the lower half: a storm of a third of the
            scores = self._score(estimator, X)  # chunks then stands out against it
            keep = scores <= np.median(scores)
            estimator = self._estimator(X[keep])
        judged = self._trim_view(X)
        for _ in range(self.trim_rounds):  # the estimator is always the one fitted on X[keep]
            scores = self._score(estimator, judged)
            q10, q50 = np.quantile(scores, [0.1, 0.5])
            new = scores <= q50 + self.trim * max(q50 - q10, 1e-12)
            if new.sum() < max(2, len(X) // 4) or (new == keep).all():
                break
            keep = new
            estimator = self._estimator(X[keep])
        if days is not None and len(X) >= 8:
            job = _daily_job(keep, days)
            if job.any():
                keep = keep | job
                estimator = self._estimator(X[keep])
        return estimator, keep

    @staticmethod
    def _seen(estimator: Any, X: np.ndarray, days: np.ndarray | None = None) -> None:
        """Tell a TailModel the largest value of each count column over all of ``X`` (the far rule's
        "anything seen in training"), not only over the chunks its reference kept; a share column of
        the far rule (FAR_SHARE_COLUMNS) keeps its reference's largest, unless the chunks beyond its
        line recur through the last training days (``days``, one per chunk: :func:`_recurs`), where it
        takes all of ``X``'s too."""
        if isinstance(estimator, TailModel) and len(X):
            estimator.seen_max_ = X.max(axis=0)
            if estimator.far_share_columns is not None and estimator.sorted_ is not None:
                kept = estimator.sorted_[-1]
                recurring = (np.zeros(X.shape[1], dtype=bool) if days is None
                             else _recurs(X, kept + estimator.far_share_gap - 1e-9, days))
                estimator.seen_max_ = np.where(estimator.far_share_columns & ~recurring, kept, estimator.seen_max_)

    def _trim_view(self, X: np.ndarray) -> np.ndarray:
        """The vectors as the trimming rounds judge them: for ``Tail_context``, each count column
        lowered by :attr:`trim_tolerance` and each share column by :attr:`trim_share_tolerance`
        (not below 0); the others' as they are."""
        if self.model != "Tail_context" or not (self.trim_tolerance or self.trim_share_tolerance):
            return X
        out = X.copy()
        for j, column in enumerate(self.columns_):
            step = self.trim_tolerance if column in ROW_COLUMNS else (
                self.trim_share_tolerance if column in SHARE_COLUMNS else 0.0)
            if step:
                out[:, j] = np.maximum(X[:, j] - step, 0.0)
        return out

    def _out_of_fold(self, X: np.ndarray, days: np.ndarray | None = None) -> np.ndarray:
        """Each block of ``calibration_folds`` (contiguous, in time) scored by a robust reference
        fitted on the others; the training scores themselves when there are too few chunks (fewer
        than four per block: leave-one-out there was measured and not adopted,
        docs/choosing-defaults.md)."""
        k = self.calibration_folds
        if k < 2 or len(X) < 4 * k:
            return np.asarray(self.decision_scores_, dtype=np.float64)
        out = np.empty(len(X))
        for block in np.array_split(np.arange(len(X)), k):
            rest = np.setdiff1d(np.arange(len(X)), block)
            estimator, _ = self._robust_estimator(X[rest], None if days is None else days[rest])
            self._seen(estimator, X[rest])
            if isinstance(estimator, TailModel):
                # no share rule and no loop line here: a block of failing training days would be an outage
                # against the others' reference, and its +60 nats would lift the calibration's largest score,
                # its far line and the latest chunks a small night is judged against; where loops fill three
                # quarters of the training chunks or more, the line's +60 nats would make them the bulk, and
                # every night's chunk, loops too, lay below it (the calibration is of the normal bulk; the
                # rules are for the nights)
                estimator.far_share_columns = estimator.loop_columns = None
            out[block] = self._score(estimator, X[block])
        return out

    def _estimator(self, X: np.ndarray) -> Any:
        """The fitted estimator on raw (tail, forest) or scaled (LOF) vectors."""
        if self.model == "Tail_context":
            far = np.array([c in ROW_COLUMNS for c in self.columns_])
            shares = np.array([c in FAR_SHARE_COLUMNS for c in self.columns_])
            loops = np.array([c in LOOP_COLUMNS for c in self.columns_])
            return TailModel(tail_quantile=self.tail_quantile, far_columns=far, far_share_columns=shares,
                             loop_columns=loops).fit(X)
        if self.model == "LOF_context":
            from sklearn.neighbors import LocalOutlierFactor

            if len(X) < 2:  # M1's halves of a log of two or three chunks
                raise ValueError(f"LOF_context needs at least 2 chunks to fit a reference, got {len(X)}; "
                                 "use more training rows or another decision than M1")
            k = min(self.n_neighbors, len(X) - 1)
            return LocalOutlierFactor(n_neighbors=k, novelty=True).fit(self._scaled(X))
        from sklearn.ensemble import IsolationForest

        return IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                               random_state=self.seed).fit(X)

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        assert self.center_ is not None and self.scale_ is not None
        return (X - self.center_) / self.scale_

    def _score(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        inputs = self._scaled(X) if self.model == "LOF_context" else X
        return -np.asarray(estimator.score_samples(inputs), dtype=np.float64)

    def _m1_fit_score(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return self._score(self._estimator(train), test)  # the training chunks' scaling kept

    def m1_threshold(self, X: np.ndarray) -> float | None:
        """M1 (thesis A.1) on ``X``; None for the thesis's "na"."""
        return th.m1(self._inputs(X), self._m1_fit_score, max_rounds=self.m1_max_rounds, seed=self.seed)

    def _fitted(self) -> Any:
        if self.estimator_ is None:
            raise RuntimeError("this detector is not fitted yet: call fit() or load()")
        return self.estimator_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per chunk ``(n,)``, higher = more anomalous."""
        estimator = self._fitted()
        X = self._inputs(X)
        return self._score(estimator, X) if len(X) else np.empty(0)

    def explain(self, X: np.ndarray) -> np.ndarray:
        """How unusual each column is against the training chunks, ``(n, len(CONTEXT_COLUMNS))``:
        the surprisal in nats (``Tail_context``) or the robust z-score (the others)."""
        estimator = self._fitted()
        X = self._inputs(X)
        if isinstance(estimator, TailModel):
            return estimator.surprisal(X)
        return self._scaled(X)

    def explain_columns(self) -> tuple[str, ...]:
        return self.columns_

    def encode(self, X: np.ndarray) -> np.ndarray:
        """The per-column matrix of :meth:`explain`: the code clustering reads."""
        return self.explain(X)

    # --- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to one file, atomically.

        The estimator is a scikit-learn object and is pickled (as MLflow's scikit-learn flavour
        does): load only files this project wrote, e.g. from the vendor's model registry.
        """
        self._fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": SAVE_FORMAT,
            "settings": {k: getattr(self, k) for k in ("model", "threshold", "n_estimators", "max_samples",
                                                      "n_neighbors", "tail_quantile", "seed", "m1_max_rounds",
                                                      "trim", "trim_rounds", "trim_tolerance", "trim_share_tolerance",
                                                      "calibration_folds", "tail_scale")},
            "threshold_params": [list(p) for p in self.threshold_params],
            "estimator": self.estimator_, "center": self.center_, "scale": self.scale_,
            "decision_scores": self.decision_scores_, "calibration_scores": self.calibration_scores_,
            "reference": self.reference_, "calibration": self.calibration_.as_dict(),
            "threshold": self.threshold_, "threshold_method": self.threshold_method_, "seconds": self.seconds_,
            "columns": list(self.columns_), "context_version": self.context_version_,
        }
        return save_pickle(path, payload)

    @classmethod
    def load(cls, path: str | Path) -> ContextDetector:
        payload = load_pickle(path, "context detector", {6, 7, SAVE_FORMAT})
        unknown = [c for c in payload["columns"] if c not in CONTEXT_COLUMNS]
        if unknown:
            raise ValueError(f"{path}: written for context columns {unknown} that this version does not compute "
                             f"(it has {list(CONTEXT_COLUMNS)})")
        settings = dict(payload["settings"])
        if payload["format"] == 6:  # saved before the trimming's tolerances: fitted without them
            settings.update(trim_tolerance=0.0, trim_share_tolerance=0.0)
        det = cls(**settings, threshold_params=tuple(tuple(p) for p in payload["threshold_params"]))
        det.columns_ = tuple(payload["columns"])
        # saved before format 8: fitted on version 1's vectors (a key's spread on all its rows)
        det.context_version_ = payload["context_version"] if payload["format"] >= 8 else 1
        if det.context_version_ not in CONTEXT_VERSIONS:
            raise ValueError(f"{path}: fitted on context version {det.context_version_!r}, this version computes "
                             f"{', '.join(map(str, CONTEXT_VERSIONS))}; retrain the vendor's models")
        det.estimator_ = payload["estimator"]
        det.center_, det.scale_ = payload["center"], payload["scale"]
        det.decision_scores_ = np.asarray(payload["decision_scores"], dtype=np.float64)
        det.calibration_scores_ = np.asarray(payload["calibration_scores"], dtype=np.float64)
        det.reference_ = payload["reference"]
        # a calibration saved without its latest scores takes them from calibration_scores_ (calibration_)
        det._set_calibration(Calibration.from_dict(payload["calibration"]))
        det.threshold_, det.threshold_method_ = payload["threshold"], payload["threshold_method"]
        det.labels_ = (det.decision_scores_ > det.threshold_).astype(np.int8)
        det.seconds_ = payload["seconds"]
        return det


def _recurs(X: np.ndarray, line: np.ndarray, days: np.ndarray, last: int = RECUR_DAYS,
            min_share: float = RECUR_MIN_SHARE, min_days: int = RECUR_MIN_DAYS) -> np.ndarray:
    """Per column of ``X``: whether its values at or above ``line`` lie on at least ``min_share`` of the
    ``last`` latest of ``days`` (one per row of ``X``; fewer where there are fewer) and on at least
    ``min_days`` of them."""
    days = np.floor(np.asarray(days, dtype=np.float64))  # a chunk's time, in days: its UTC day
    latest = np.unique(days)[-last:]
    recent = np.isin(days, latest)
    beyond, on = np.asarray(X, dtype=np.float64)[recent] >= line, days[recent]
    held = np.array([np.unique(on[beyond[:, j]]).size for j in range(beyond.shape[1])])
    return (held >= min_share * latest.size) & (held >= min_days)


def _daily_job(keep: np.ndarray, days: np.ndarray, last: int = RECUR_DAYS, min_share: float = RECUR_MIN_SHARE,
               min_days: int = JOB_MIN_DAYS, hours: int = JOB_HOURS, margin: float = JOB_MARGIN) -> np.ndarray:
    """Which chunks set aside (``~keep``) are a job's that runs at one time of every day: those that began
    within a window of ``hours`` hours of the clock (starting at a whole UTC hour), on any training day (a
    job judged on the last days ran before them too; a flood at that hour long before rejoins with it),
    where the set-aside chunks of the ``last`` latest days of ``days`` (each chunk's start, in days since
    1970: :meth:`licanom.data.chunk.Chunks.days`; at least ``min_days`` of them) lie on at least
    ``min_share`` of those days, and on ``margin`` times that many days more than in either window beside
    it (the ``hours`` just before and just after) and than chunks set aside at random would cover (each
    recent chunk at the share of them set aside: a window that holds many chunks a day, as a vendor whose
    traffic all lies in two hours, would be covered on most days by chance). A job is brief; a vendor's
    busy hours, whose chunks the trimming may set aside day after day with the floods among them, span
    more of the clock, and so do floods at random hours. Times that are all whole days (no time of day:
    dates, or days given as whole numbers) judge nothing."""
    t = np.asarray(days, dtype=np.float64)
    day = np.floor(t)
    hour = (t - day) * 24.0
    out = np.zeros(t.shape, dtype=bool)
    latest = np.unique(day)[-last:]
    if latest.size < min_days or not (hour > 0).any():
        return out
    in_latest = np.isin(day, latest)
    aside = ~np.asarray(keep, dtype=bool)
    recent = aside & in_latest
    if not recent.any():
        return out
    rate = recent.sum() / in_latest.sum()  # the share of the recent chunks set aside
    inside = [((hour - h) % 24.0) < hours for h in range(24)]  # the window starting at each whole hour
    cover = np.array([np.unique(day[recent & w]).size for w in inside])
    need = max(RECUR_MIN_DAYS, min_share * latest.size)
    for h in np.flatnonzero(cover >= need):
        beside = max(cover[(h - hours) % 24], cover[(h + hours) % 24])  # the windows just before and after it
        per_day = np.unique(day[in_latest & inside[h]], return_counts=True)[1]  # the window's chunks, each day
        chance = float(np.sum(1.0 - (1.0 - rate) ** per_day))  # the days set-aside-at-random chunks would cover
        if cover[h] - max(beside, chance) >= margin * need:
            out |= aside & inside[h]  # of every training day: a job seen on the last days ran before them too
    return out


def _robust_scale(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the median and the interquartile range (the standard deviation, or 1, where it is 0)."""
    q25, q50, q75 = np.percentile(X, [25, 50, 75], axis=0)
    spread = q75 - q25
    std = X.std(axis=0)
    return q50, np.where(spread > 0, spread, np.where(std > 0, std, 1.0))


def _check_context(X: np.ndarray, n_columns: int = len(CONTEXT_COLUMNS)) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != n_columns:
        raise ValueError(f"X must have shape (n_chunks, {n_columns}) (the context vector), got {X.shape}")
    if not np.isfinite(X).all():
        bad = int(np.argwhere(~np.isfinite(X))[0][0])
        raise ValueError(f"the context vector of chunk {bad} is not finite")
    return X
