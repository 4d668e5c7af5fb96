"""Held-out splits and intervals that respect correlations in time.

Overlapping transitions of one movie are not independent, so an interval computed as if
they were is too narrow.  Intervals here come from resampling independent units: whole
movies, or contiguous blocks of one movie that are long compared with the correlation
time of the stochastic EP series (measured from the data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Split", "split_units", "flat_windows", "integrated_autocorrelation_time",
           "bootstrap_rate_ci", "thermodynamic_interval", "per_transition",
           "TransitionMean", "training_units",
           "widen_interval"]

#: With at least this many movies, whole movies are held out; else time blocks.
MIN_MOVIES_FOR_MOVIE_SPLIT = 4
#: Fewest units of a Student-t interval: fewer units are cut into contiguous blocks.
MIN_T_UNITS = 5
#: Number of time blocks a data set of few movies is cut into (at least 3 per movie).
N_TIME_BLOCKS = 20


@dataclass
class Split:
    """Frames for training, for choosing, and for measuring, as independent units.

    Each part is a list of frame ranges ``(movie, first, end)`` (``end`` excluded) that
    share no frame with a range of another part, so that windows of any length k inside
    them keep the parts apart.

    Attributes
    ----------
    train : list of (int, int, int)
        Ranges the network and its read-outs are fitted on.
    validation : list of (int, int, int)
        Independent units every choice is made on (window length, blur, pattern count,
        tiles, kept weights, penalties).
    test : list of (int, int, int)
        Independent units the rate and its interval are measured on, and nothing else.
    by : str
        ``"movies"`` or ``"time blocks"``.
    """

    train: list
    validation: list
    test: list
    by: str

    def windows(self, part: str, k: int) -> list[tuple[int, np.ndarray]]:
        """(movie, window starts) of the windows of k frames inside each range of ``part``
        ("train", "validation" or "test"); ranges shorter than k are left out."""
        out = []
        for m, a, b in getattr(self, part):
            if b - a >= k:
                out.append((m, np.arange(a, b - k + 1)))
        return out


def flat_windows(windows: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """(movie, starts) pairs as flat arrays: the movie index, the first frame and the unit
    (position in ``windows``) of every window, each of shape (total windows,)."""
    if not windows:
        return (np.zeros(0, dtype=int),) * 3
    movie = np.concatenate([np.full(len(s), m) for m, s in windows])
    starts = np.concatenate([s for _, s in windows])
    unit = np.concatenate([np.full(len(s), u) for u, (_, s) in enumerate(windows)])
    return movie, starts, unit


def split_units(lengths, *, validation_fraction: float, test_fraction: float,
                rng: np.random.Generator) -> Split:
    """Split movies (4 or more) or contiguous time blocks (fewer) into three parts.

    Parameters
    ----------
    lengths : array of int, shape (M,)
        Frames per movie.
    validation_fraction, test_fraction : float
        Fractions of the units for choosing and for measuring; each part gets at least
        one unit and training at least one.
    rng : numpy Generator
    """
    lengths = np.asarray(lengths, dtype=int)
    n_movies = len(lengths)
    if n_movies >= MIN_MOVIES_FOR_MOVIE_SPLIT:
        units, by = [(m, 0, int(lengths[m])) for m in range(n_movies)], "movies"
    else:
        per_movie = max(3, -(-N_TIME_BLOCKS // n_movies))
        units, by = [], "time blocks"
        for m in range(n_movies):
            edges = np.linspace(0, lengths[m], per_movie + 1).astype(int)
            units += [(m, int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)
                      if b > a]
    n = len(units)
    n_val = int(np.clip(round(validation_fraction * n), 1, max(n - 2, 1)))
    n_test = int(np.clip(round(test_fraction * n), 1, max(n - n_val - 1, 1)))
    order = rng.permutation(n)
    val, test = set(order[:n_val].tolist()), set(order[n_val: n_val + n_test].tolist())
    train = _merge([u for i, u in enumerate(units) if i not in val and i not in test])
    return Split(train, [units[i] for i in sorted(val)], [units[i] for i in sorted(test)], by)


def _merge(ranges: list) -> list:
    """Join ranges of one movie that touch: a window may span two training blocks."""
    out = []
    for m, a, b in sorted(ranges):
        if out and out[-1][0] == m and out[-1][2] == a:
            out[-1] = (m, out[-1][1], b)
        else:
            out.append((m, a, b))
    return out


def integrated_autocorrelation_time(series: list[np.ndarray], max_lag: int = 1000) -> float:
    """Integrated autocorrelation time (in samples) pooled over several series.

    Uses the initial-positive-sequence rule: the sum of autocorrelations stops at the
    first lag where it turns negative.  Returns at least 1.
    """
    lags = min(max_lag, min(len(s) for s in series) - 1)
    if lags < 1:
        return 1.0
    acf = np.zeros(lags + 1)
    count = 0
    for s in series:
        x = np.asarray(s, dtype=np.float64) - np.mean(s)
        n = len(x)
        f = np.fft.rfft(x, 2 * n)
        c = np.fft.irfft(f * np.conj(f))[: lags + 1] / np.arange(n, n - lags - 1, -1)
        acf += c
        count += 1
    if acf[0] <= 0:
        return 1.0
    rho = acf / acf[0]
    tau = 1.0
    for lag in range(1, lags + 1):
        if rho[lag] <= 0:
            break
        tau += 2.0 * rho[lag]
    return max(tau, 1.0)


def bootstrap_rate_ci(units: list[np.ndarray], scale: float, *, rng: np.random.Generator,
                      n_boot: int = 2000, level: float = 0.95, min_units: int = 20,
                      window_seconds: float | None = None
                      ) -> tuple[float, tuple[float, float], dict]:
    """Rate and 95% interval from independent units.

    Parameters
    ----------
    units : list of ndarray
        Per-window EP series (k_B) of independent units (movies or time blocks).
    scale : float
        Divides the mean window EP to give a rate (``(k − 1) · stride · dt``, seconds).
    n_boot, level : int, float
        Bootstrap replicates and confidence level.
    min_units : int
        With at least this many units, a percentile bootstrap over them.  With fewer, a
        Student-t interval over the units (``t_{n−1}`` times the standard error of the
        ratio estimate between units): with a handful of units the bootstrap's
        percentiles are too narrow, and cutting the units into short blocks would
        treat slow fluctuations of the EP rate within a movie as independent.  Fewer
        than :data:`MIN_T_UNITS` units are each cut into equal contiguous blocks first.
    window_seconds : float, optional
        Seconds between the starts of consecutive windows (``stride · dt``).  When given,
        the interval is never narrower than the thermodynamic minimum
        (:func:`thermodynamic_interval`) over the units' total duration.

    Returns
    -------
    rate : float
    (lo, hi) : tuple of float
    info : dict
        ``n_units``, ``method`` ("bootstrap" or "student-t"), ``block_length`` (windows,
        when units were cut) and ``tau_int`` (windows); with ``window_seconds`` also
        ``floor_seconds`` (the units' total duration, s) and ``floor_widened``.
    """
    from scipy.stats import norm
    from scipy.stats import t as student_t

    units = [np.asarray(u, dtype=np.float64) for u in units if len(u)]
    tau = integrated_autocorrelation_time(units)
    block = None
    if len(units) < MIN_T_UNITS:
        pieces_per_unit = -(-MIN_T_UNITS // len(units))
        pieces = [p for u in units for p in np.array_split(u, min(pieces_per_unit, len(u)))]
        block = int(min(len(p) for p in pieces))
        units = pieces
    sums = np.array([u.sum() for u in units])
    counts = np.array([len(u) for u in units], dtype=np.float64)
    rate = sums.sum() / counts.sum() / scale
    alpha = (1.0 - level) / 2
    n = len(units)
    if n >= min_units:
        pick = rng.integers(0, n, size=(n_boot, n))
        boots = sums[pick].sum(axis=1) / counts[pick].sum(axis=1) / scale
        lo, hi = np.quantile(boots, [alpha, 1 - alpha])
        method = "bootstrap"
    else:
        # Ratio estimate's standard error between units (linearised).
        r = sums.sum() / counts.sum()
        resid = (sums - r * counts) / counts.mean()
        se = float(np.sqrt(np.sum(resid ** 2) / (n * (n - 1)))) / scale if n > 1 else np.inf
        half = float(student_t.ppf(1 - alpha, n - 1)) * se if n > 1 else np.inf
        lo, hi = rate - half, rate + half
        method = "student-t"
    info = {"n_units": n, "method": method, "block_length": block, "tau_int": float(tau)}
    if window_seconds is not None:
        seconds = float(counts.sum()) * float(window_seconds)
        # The same quantile as the data's interval: the floor replaces its standard error.
        quantile = (float(student_t.ppf(1 - alpha, n - 1)) if method == "student-t" and n > 1
                    else float(norm.ppf(1 - alpha)))
        floor_lo, floor_hi = thermodynamic_interval(rate, seconds, quantile)
        info["floor_seconds"] = seconds
        info["floor_widened"] = bool(floor_lo < lo or floor_hi > hi)
        lo, hi = min(lo, floor_lo), max(hi, floor_hi)
    return float(rate), (float(lo), float(hi)), info


def thermodynamic_interval(rate: float, seconds: float, quantile: float) -> tuple[float, float]:
    """The rates r whose thermodynamic scatter alone covers ``rate``.

    The entropy produced in a steady state over T seconds fluctuates at least as much as
    the thermodynamic uncertainty relation allows: its variance is at least twice its mean
    (``var Σ_T ≥ 2 ⟨Σ_T⟩``, k_B², Barato & Seifert, PRL 114, 158101, 2015; for finite T,
    Horowitz & Gingrich, PRE 96, 020103, 2017).  A rate measured over T seconds therefore
    has a standard error of at least ``sqrt(2 r / T)`` if the true rate is r, whatever the
    spread of a handful of held-out units suggests.  The set
    ``{r : |rate − r| ≤ quantile · sqrt(2 max(r, 0) / T)}`` is returned as its hull (a
    score interval, as Wilson's for a proportion): it reaches further above a low
    estimate than below it.

    Parameters
    ----------
    rate : float
        Measured rate, k_B/s.
    seconds : float
        Duration the rate was measured over, s.
    quantile : float
        Quantile of the interval's level (1.96 for 95% with many units).

    Returns
    -------
    (lo, hi) : tuple of float
        k_B/s; ``(rate, rate)`` when no positive rate is that close to ``rate``.
    """
    if not (np.isfinite(rate) and seconds > 0):
        return float(rate), float(rate)
    a = quantile * np.sqrt(2.0 / seconds)
    disc = a * a + 4.0 * rate
    if disc < 0:
        return float(rate), float(rate)
    hi = ((a + np.sqrt(disc)) / 2.0) ** 2
    lo = ((np.sqrt(disc) - a) / 2.0) ** 2 if rate > 0 else float(rate)
    return float(min(lo, rate)), float(max(hi, rate))


def per_transition(shares: np.ndarray) -> np.ndarray:
    """The EP of each transition from the shares of the windows that contain it.

    Parameters
    ----------
    shares : ndarray, shape (T − k + 1, k − 1, ...)
        Share of each window's ΔS carried by each of its k − 1 transitions, k_B
        (:meth:`~.model.EPNet.transition_contributions`), or per-pixel shares
        (T − k + 1, k − 1, H, W).  Floating input keeps its dtype; anything else becomes
        float64.

    Returns
    -------
    ndarray, shape (T − 1, ...)
        For each transition, the mean of its share over the windows that contain it
        (k − 1 of them, fewer at the ends).  For k = 2 this is ``shares[:, 0]``.
    """
    shares = np.asarray(shares)
    if shares.shape[1] == 1:
        return shares[:, 0] if np.issubdtype(shares.dtype, np.floating) \
            else shares[:, 0].astype(np.float64)
    mean = TransitionMean(len(shares) + shares.shape[1] - 1)
    mean.add(0, shares)
    return mean.result()


class TransitionMean:
    """:func:`per_transition` over windows that come in batches (maps of a long movie),
    holding one running sum per transition, never every window's shares.

    Parameters
    ----------
    capacity : int
        Transitions expected (T − 1); more are made room for as they come.
    """

    def __init__(self, capacity: int):
        self.capacity = max(int(capacity), 1)
        self.total = self.count = None
        self.end = 0

    def add(self, start: int, shares: np.ndarray) -> None:
        """Add the shares (n, k − 1, ...) of the windows ``start ... start + n − 1``."""
        shares = np.asarray(shares)
        if not np.issubdtype(shares.dtype, np.floating):
            shares = shares.astype(np.float64)
        n, spans = shares.shape[:2]
        end = start + n + spans - 1
        if self.total is None:
            size = max(self.capacity, end)
            self.total = np.zeros((size,) + shares.shape[2:], dtype=shares.dtype)
            self.count = np.zeros(size, dtype=shares.dtype)
        elif end > len(self.total):
            grow = max(end, 2 * len(self.total)) - len(self.total)
            self.total = np.concatenate([self.total, np.zeros((grow,) + self.total.shape[1:],
                                                              dtype=self.total.dtype)])
            self.count = np.concatenate([self.count, np.zeros(grow, dtype=self.count.dtype)])
        for t in range(spans):
            self.total[start + t: start + t + n] += shares[:, t]
            self.count[start + t: start + t + n] += 1
        self.end = max(self.end, end)

    def result(self) -> np.ndarray:
        """Mean share of each transition added so far, (transitions, ...)."""
        count = self.count[:self.end]
        total = self.total[:self.end]
        total /= count.reshape((-1,) + (1,) * (total.ndim - 1))
        return total


def training_units(windows: list[tuple[int, np.ndarray]], min_units: int = 20) -> np.ndarray:
    """Independent unit of every training window, in the order of ``windows``.

    ``windows`` are (movie, starts) of the training ranges (:meth:`Split.windows`).  Each
    range is a unit; with fewer than ``min_units`` ranges each one's windows are cut into
    contiguous time blocks so that there are about ``min_units`` units.

    Returns
    -------
    ndarray of int, shape (total training windows,)
    """
    per_range = max(1, int(np.ceil(min_units / max(len(windows), 1))))
    labels, next_id = [], 0
    for _, starts in windows:
        pieces = max(1, min(per_range, len(starts)))
        ids = np.repeat(np.arange(pieces), [len(c) for c in np.array_split(starts, pieces)])
        labels.append(ids + next_id)
        next_id += pieces
    return np.concatenate(labels) if labels else np.zeros(0, dtype=int)


def widen_interval(rate: float, ci: tuple[float, float], extra_sd: float,
                   level: float = 0.95) -> tuple[float, float]:
    """Add an independent error of standard deviation ``extra_sd`` to an interval.

    Each half-width h becomes ``sqrt(h² + (z · extra_sd)²)``, z the normal quantile of
    ``level``: the held-out sampling error (the bootstrap interval) and the training
    noise of the read-out (``extra_sd``) are independent, so their variances add.
    """
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 2)
    extra = (z * float(extra_sd)) ** 2
    lo, hi = ci
    return (rate - float(np.sqrt((rate - lo) ** 2 + extra)),
            rate + float(np.sqrt((hi - rate) ** 2 + extra)))
