"""Decision thresholds on autoencoder reconstruction errors (thesis 3.3.2, Appendix A).

Every threshold is a pure function of the training reconstruction errors, shape
`(n_windows,)`, except M1, which retrains an autoencoder through a `fit_score` callable.
A window is an anomaly when its error is strictly greater than the threshold.

- `m1`: Fernández-Saúco et al.'s iterative retrain-and-split search (Appendix A.1).
- `m2`: the largest training error (Appendix A.2).
- `m3`: an edge of the training-error histogram, by default the left edge of the last
  bin (Appendix A.3; the thesis's recommendation).
- `quantile`: the `1 - contamination` quantile of the training errors.
- `pot`: peaks-over-threshold (SPOT, Siffer et al. 2017), a generalised-Pareto fit to the
  upper tail, extrapolated to a small risk `q`.
- `budget`: a false-alarm budget. An exponential tail is fitted to the bulk of the training
  errors (between their median and 80th percentile) and cut where it leaves `alarm_rate` of
  normal windows above; the top fifth of the training windows, where any anomalies of the
  training days lie, does not shape it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

# The thresholds by name, once: the configuration's fields and the command line read these.
ThresholdName = Literal["M1", "M2", "M3", "quantile", "pot", "budget"]
THRESHOLDS: tuple[str, ...] = get_args(ThresholdName)

FitScore = Callable[[np.ndarray, np.ndarray], np.ndarray]

log = logging.getLogger(__name__)


def _as_errors(errors: ArrayLike, name: str = "errors") -> NDArray[np.float64]:
    """Validate reconstruction errors: a non-empty, finite, 1-D array, as float64."""
    arr = np.asarray(errors, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, shape (n_windows,); got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _check_open_unit(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {value!r}")


# --------------------------------------------------------------------------- M1


def m1(
    chunks: ArrayLike,
    fit_score: FitScore,
    *,
    split: float = 0.5,
    step_fraction: float = 0.01,
    max_rounds: int = 20,
    seed: int = 0,
) -> float | None:
    """Method 1: the iterative threshold search of Fernández-Saúco et al. (Appendix A.1).

    `chunks` of shape `(n_chunks, ...)` (e.g. `(n_chunks, window, n_features)`) is split
    at random (seeded) into a train part and a test part holding a `split` fraction of the
    chunks (at least one in each). Each round calls `fit_score(train, test)`, which must
    retrain an autoencoder on `train` and return the reconstruction errors of `test`, shape
    `(len(test),)`. With `st` the minimum error of the first round and, each round,
    `si = step_fraction * (max(errors) - min(errors))`, the test chunks with
    `errors > st + si` are the anomalies (the thesis compares with `st + si`, not `st`):

    - every test chunk is an anomaly: return `0.5 * (st + min(errors))`;
    - none is, with a non-empty test set: no threshold was found, return None (the
      thesis's "na"; its code returns -1);
    - otherwise move the anomalies into train, keep the rest as test, `st += si`, repeat.

    Returns None as well, rather than looping forever, when `max_rounds` rounds (calls of
    `fit_score`) pass without terminating, or when the test set becomes empty.
    """
    data = np.asarray(chunks)
    if data.ndim < 1 or data.shape[0] < 2:
        raise ValueError("m1 needs at least 2 chunks to split into train and test")
    _check_open_unit(split, "split")
    if not (np.isfinite(step_fraction) and step_fraction >= 0.0):
        raise ValueError(f"step_fraction must be finite and >= 0, got {step_fraction!r}")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds!r}")

    n = data.shape[0]
    n_test = int(np.clip(round(split * n), 1, n - 1))
    order = np.random.default_rng(seed).permutation(n)
    test, train = data[order[:n_test]], data[order[n_test:]]

    st: float | None = None
    for _ in range(max_rounds):
        if test.shape[0] == 0:
            return None
        errors = _as_errors(fit_score(train, test), name="fit_score(train, test)")
        if errors.shape[0] != test.shape[0]:
            raise ValueError(
                f"fit_score returned {errors.shape[0]} errors for {test.shape[0]} test chunks"
            )
        lo, hi = float(errors.min()), float(errors.max())
        if st is None:
            st = lo
        si = step_fraction * (hi - lo)
        is_anomaly = errors > st + si
        n_anomalies = int(is_anomaly.sum())
        if n_anomalies == test.shape[0]:
            return 0.5 * (st + lo)
        if n_anomalies == 0:
            return None
        train = np.concatenate((train, test[is_anomaly]))
        test = test[~is_anomaly]
        st += si
    return None


# ------------------------------------------------------------------ M2, M3, quantile


def m2(errors: ArrayLike) -> float:
    """Method 2: the largest training reconstruction error (Appendix A.2)."""
    return float(_as_errors(errors).max())


def m3(errors: ArrayLike, bins: int | str = 10, index: int = -2) -> float:
    """Method 3: `np.histogram(errors, bins=bins)[1][index]` (Appendix A.3).

    The default, bins=10 and index=-2, is the left edge of the last bin. `bins` takes
    anything `np.histogram` does (an int or a rule name such as "auto"). When all errors
    are equal numpy widens the range to `value ± 0.5`, so the default lies above them.

    Errors a hair apart (equal but for their last digits) are binned as equal errors are, over
    their range widened by 0.5 either side: numpy refuses to cut so narrow a range into
    finite-sized bins ("too many bins for data range"), which failed the training, and a
    threshold that fell from above such errors to among them as they part by a digit would
    tell nothing about them.
    """
    arr = _as_errors(errors)
    try:
        edges = np.histogram_bin_edges(arr, bins=bins)
    except ValueError:  # a range too narrow for the bins; a `bins` numpy refuses fails again here
        lo, hi = float(arr.min()), float(arr.max())
        edges = np.histogram_bin_edges(np.full(arr.size, lo), bins=bins, range=(lo - 0.5, hi + 0.5))
    if not -edges.size <= index < edges.size:
        raise ValueError(f"index {index} is out of range for {edges.size} histogram edges")
    return float(edges[index])


def quantile(errors: ArrayLike, contamination: float = 0.01) -> float:
    """The `1 - contamination` quantile of the training errors (linear interpolation).

    contamination=0 gives the maximum, i.e. M2.
    """
    if not 0.0 <= contamination < 1.0:
        raise ValueError(f"contamination must lie in [0, 1), got {contamination!r}")
    return float(np.quantile(_as_errors(errors), 1.0 - contamination))


# The default false-alarm rate of `budget`: 40 per 10,000 normal windows, under a vendor's limit
# of 50. The tail is estimated from one vendor's training days, so the rate it delivers on later
# days scatters around the one it aims at (over twelve simulated vendors of one profile, the same
# aim of 50 gave 0 to 164 per vendor at 21 days, 51 on average); aiming below the limit leaves
# that scatter room. Measured in the labelled evaluation (README, "Choosing the defaults").
BUDGET_ALARM_RATE = 0.004


def budget(errors: ArrayLike, alarm_rate: float = BUDGET_ALARM_RATE, lo: float = 0.5, hi: float = 0.8) -> float:
    """The error a normal window exceeds with probability `alarm_rate`, from the bulk of the errors.

    With `a`, `b` the `lo` and `hi` quantiles of the training errors, the tail above `a` is
    taken as exponential, `P(e > a + x) = (1 - lo) * exp(-x / beta)`, with `beta` set so that it
    passes through `b`: `beta = (b - a) / log((1 - lo) / (1 - hi))`. The threshold is where that
    tail falls to `alarm_rate`:

        a + beta * log((1 - lo) / alarm_rate)

    Only the errors up to the `hi` quantile shape it, so anomalies in the training windows (up
    to `1 - hi` of them) raise it only by shifting those quantiles a little (a more cautious
    threshold), unlike `quantile`, M2 or `pot`, which read the top of the training errors.
    The default `alarm_rate` (:data:`BUDGET_ALARM_RATE`, 0.004) is 40 false alarms per 10,000
    normal windows when the tail is exponential. A lighter tail (bounded errors) gives fewer; a
    heavier one more.
    When `a == b` (most errors equal) the spread above `b` is used instead, and the maximum
    error when every error is equal (nothing lies above it then).
    """
    arr = _as_errors(errors)
    _check_open_unit(alarm_rate, "alarm_rate")
    if not 0.0 < lo < hi < 1.0:
        raise ValueError(f"need 0 < lo < hi < 1, got lo={lo!r}, hi={hi!r}")
    if alarm_rate >= 1.0 - hi:
        raise ValueError(f"alarm_rate {alarm_rate!r} must be below 1 - hi = {1.0 - hi:g}: the tail is fitted below it")
    a, b = (float(v) for v in np.quantile(arr, [lo, hi]))
    if b > a:
        beta = (b - a) / np.log((1.0 - lo) / (1.0 - hi))
        return float(a + beta * np.log((1.0 - lo) / alarm_rate))
    above = arr[arr > b]
    share = above.size / arr.size
    if share <= alarm_rate:  # nothing, or fewer than the budget, above the tie
        return float(arr.max())
    # the errors above the tie: an exponential tail from b with their median excess
    beta = float(np.median(above - b)) / np.log(2.0)
    return float(b + beta * np.log(share / alarm_rate))


# ------------------------------------------------------------------------- POT

_MIN_PEAKS = 10


def _gpd_loglik(y: NDArray[np.float64], gamma: float, sigma: float) -> float:
    """Log-likelihood of excesses `y` under a generalised Pareto (shape gamma, scale sigma)."""
    if sigma <= 0.0:
        return -np.inf
    if gamma == 0.0:
        return float(-y.size * np.log(sigma) - y.sum() / sigma)
    if gamma == -1.0:  # uniform on (0, sigma): the density term vanishes
        return float(-y.size * np.log(sigma)) if np.all(y <= sigma) else -np.inf
    z = gamma * y / sigma
    if np.any(z <= -1.0):
        return -np.inf
    return float(-y.size * np.log(sigma) - (1.0 + 1.0 / gamma) * np.log1p(z).sum())


def _grimshaw_w(theta: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    """Grimshaw's profile equation w(theta) = u(theta) v(theta) - 1 for every theta."""
    out = np.empty(theta.shape, dtype=np.float64)
    block = max(1, 2**21 // max(y.size, 1))  # bound the (block, n_peaks) temporaries
    for start in range(0, theta.size, block):
        th = theta[start : start + block, None] * y[None, :]
        u = np.mean(1.0 / (1.0 + th), axis=1)
        v = 1.0 + np.mean(np.log1p(th), axis=1)
        out[start : start + block] = u * v - 1.0
    return out


def _bisect(y: NDArray[np.float64], a: float, b: float, fa: float, iters: int = 80) -> float:
    for _ in range(iters):
        mid = 0.5 * (a + b)
        fm = float(_grimshaw_w(np.array([mid]), y)[0])
        if fm == 0.0:
            return mid
        if (fm > 0.0) == (fa > 0.0):
            a, fa = mid, fm
        else:
            b = mid
    return 0.5 * (a + b)


def _fit_gpd(excesses: NDArray[np.float64]) -> tuple[float, float]:
    """Maximum-likelihood generalised-Pareto fit by Grimshaw's method; returns (gamma, sigma).

    The excesses are scaled to mean 1 so the search grids do not depend on their units.
    With theta = gamma / sigma the likelihood equations reduce to one equation in theta,
    whose roots lie in (-1 / max(y), 0) and (0, 2 (1 - min(y)) / min(y)^2). Roots are
    bracketed on a grid and bisected; every root, plus the exponential fit (gamma = 0) and
    the uniform fit (gamma = -1, sigma = max(y)), is a candidate and the one of highest
    likelihood wins, so spurious roots near 0 are harmless.
    """
    scale = float(excesses.mean())
    y = excesses / scale
    y_min, y_max = float(y.min()), float(y.max())

    left = -(1.0 / y_max) * np.unique(
        np.concatenate(
            (
                np.geomspace(1e-7, 0.5, 120),
                np.linspace(1e-3, 1.0 - 1e-3, 200),
                1.0 - np.geomspace(1e-10, 0.5, 120),
            )
        )
    )
    right_end = max(2.0 * (1.0 - y_min) / y_min**2, 1e-4)
    right = np.geomspace(1e-7, right_end, 400)

    # exponential (sigma = mean = 1) and, for bounded tails where the likelihood has no
    # interior maximum (gamma <= -1), the uniform limit on (0, max(y))
    candidates: list[tuple[float, float]] = [(0.0, 1.0), (-1.0, y_max)]
    for grid in (np.sort(left), right):
        w = _grimshaw_w(grid, y)
        for i in np.flatnonzero(np.sign(w[:-1]) * np.sign(w[1:]) < 0):
            theta = _bisect(y, float(grid[i]), float(grid[i + 1]), float(w[i]))
            gamma = float(np.mean(np.log1p(theta * y)))
            if gamma != 0.0 and np.isfinite(gamma):
                candidates.append((gamma, gamma / theta))
    gamma, sigma = max(candidates, key=lambda gs: _gpd_loglik(y, *gs))
    return gamma, sigma * scale


def pot(
    errors: ArrayLike,
    q: float = 1e-3,
    init_quantile: float = 0.98,
    *,
    min_peaks: int = _MIN_PEAKS,
) -> float:
    """Peaks-over-threshold threshold of SPOT (Siffer et al. 2017), batch form.

    With `t` the `init_quantile` quantile of the n errors and the N_t peaks `errors > t`,
    fit a generalised Pareto distribution (shape gamma, scale sigma) to the excesses
    `errors - t` by maximum likelihood (Grimshaw's method, numpy only) and return

        z_q = t + sigma / gamma * ((q n / N_t) ** (-gamma) - 1)      (gamma != 0)
        z_q = t - sigma * log(q n / N_t)                              (gamma == 0)

    an estimate of the error exceeded with probability `q`.

    Fallback: with fewer than `min_peaks` peaks (small samples, ties at the top, all errors
    equal) or peaks that are all equal, the tail cannot be fitted and the maximum error
    (M2) is returned; so is it if the extrapolation is not finite.
    """
    arr = _as_errors(errors)
    _check_open_unit(q, "q")
    _check_open_unit(init_quantile, "init_quantile")
    if min_peaks < 1:
        raise ValueError(f"min_peaks must be >= 1, got {min_peaks!r}")

    t = float(np.quantile(arr, init_quantile))
    excesses = arr[arr > t] - t
    if excesses.size < min_peaks or np.ptp(excesses) == 0.0:
        return float(arr.max())
    gamma, sigma = _fit_gpd(excesses)
    ratio = q * arr.size / excesses.size
    if gamma == 0.0:
        z = t - sigma * np.log(ratio)
    else:
        z = t + sigma / gamma * (ratio ** (-gamma) - 1.0)
    return float(z) if np.isfinite(z) else float(arr.max())


# -------------------------------------------------------------------- registry


# the thresholds computed from training errors alone (M1 retrains: :func:`m1`)
FROM_ERRORS: dict[str, Callable[..., float]] = {"M2": m2, "M3": m3, "quantile": quantile, "pot": pot, "budget": budget}


def threshold_function(name: str) -> Callable[..., float | None]:
    """The function of the threshold called ``name`` (one of THRESHOLDS): :func:`m1` or one of
    :data:`FROM_ERRORS`; its keyword arguments are the threshold's settings."""
    if name == "M1":
        return m1
    if name not in FROM_ERRORS:
        raise ValueError(f"unknown threshold {name!r}; expected one of {THRESHOLDS}")
    return FROM_ERRORS[name]


def threshold_from_errors(name: str, errors: ArrayLike, **params: object) -> float | None:
    """Compute the threshold called `name` (one of THRESHOLDS) from training errors.

    `params` go to the function (e.g. `bins` for M3, `contamination` for quantile, `q` for
    pot, `alarm_rate` for budget). M1 retrains an autoencoder, so it cannot work from errors alone: call `m1`.
    """
    if name == "M1":
        raise ValueError(
            "M1 retrains the autoencoder and cannot be computed from errors alone; "
            "call licanom.detectors.thresholds.m1(chunks, fit_score) instead"
        )
    return threshold_function(name)(errors, **params)


def decide(
    name: str,
    X: ArrayLike,
    errors: ArrayLike,
    fit_score: FitScore,
    params: dict[str, object] | None = None,
    *,
    max_rounds: int = 20,
    seed: int = 0,
) -> tuple[float, str]:
    """A detector's threshold and the method that gave it, from its training ``X`` and errors.

    Any name but M1 works from ``errors`` alone; M1 refits through ``fit_score`` and, when it
    finds none (the thesis's "na"), falls back to M3 and says so in the method name.
    """
    params = params or {}
    if name != "M1":
        value = threshold_from_errors(name, errors, **params)
        assert value is not None
        return float(value), name
    found = m1(X, fit_score, max_rounds=max_rounds, seed=seed, **params)  # type: ignore[arg-type]
    if found is None:
        log.warning("M1 found no threshold (thesis: 'na'); using M3 instead")
        return float(m3(errors)), "M3 (M1 found none)"
    return float(found), "M1"


@dataclass(frozen=True)
class Thresholds:
    """Every threshold for one model; `m1` is None when M1 found none ("na") or was skipped."""

    m1: float | None
    m2: float
    m3: float
    quantile: float
    pot: float
    budget: float

    @classmethod
    def from_errors(cls, errors: ArrayLike, m1: float | None = None) -> Thresholds:
        """Compute M2, M3, quantile, pot and budget with their defaults; M1 is passed in."""
        arr = _as_errors(errors)
        return cls(m1=m1, m2=m2(arr), m3=m3(arr), quantile=quantile(arr), pot=pot(arr), budget=budget(arr))

    def as_dict(self) -> dict[str, float | None]:
        """Keyed by the names in THRESHOLDS."""
        values = asdict(self)
        return {name: values[name.lower()] for name in THRESHOLDS}
