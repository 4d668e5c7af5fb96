"""Is a long movie really several movies glued together?

A data set saved as one long stack of frames is sometimes several recordings (or several
simulated trajectories) concatenated.  A transition across such a join is not a physical
one, and to the estimator it looks like a large, irreversible event.  At a join the
frame-to-frame change jumps far beyond the movie's usual change, so :func:`find_joins`
looks for transitions whose change stands out from all the others by a wide margin, and
:func:`glued_warnings` says so in plain sentences.  Torch-free; one pass over the frames,
read in blocks and binned to a small grid of pixels (at most 128 MB kept).
"""

from __future__ import annotations

import numpy as np

__all__ = ["WINDOWS", "THRESHOLD", "reduced_frames", "window_changes", "find_joins",
           "glued_warnings"]

#: At most this many numbers (frames x binned pixels) are kept of a movie: 128 MB.
MAX_VALUES = 1 << 25
#: Binned pixels per frame kept at most, and at least (very long movies).
_MAX_PIXELS, _MIN_PIXELS = 16384, 256
#: Frames read at a time.
_BLOCK = 256
#: Window lengths (frames) whose means before and after a transition are compared: one
#: frame finds sharp jumps, several average camera noise away.
WINDOWS = (1, 8)
#: The usual spread of changes: this quantile less the median (a join's window of 2k - 1
#: raised changes stays below 10% of the transitions unless joins are very many).
_QUANTILE = 0.9
#: A join: a change above the median this many times the usual spread.
THRESHOLD = 10.0
#: Fewer transitions than this give no reliable "usual change": no check.
_MIN_TRANSITIONS = 50
#: At most this many joins are listed by frame in a warning.
_LISTED = 8


def reduced_frames(movie) -> np.ndarray:
    """The movie's frames binned to a small grid: (T, P) float32, P at most 16384.

    Bins of b x b pixels (b the smallest that keeps P and T x P within bounds) average
    camera noise away while keeping the picture; read ``_BLOCK`` frames at a time.
    """
    n, h, w = (int(s) for s in movie.shape)
    target = int(min(_MAX_PIXELS, max(_MIN_PIXELS, MAX_VALUES // max(n, 1))))
    b = max(1, int(np.ceil(np.sqrt(h * w / target))))
    hb, wb = max(h // b, 1), max(w // b, 1)
    out = np.empty((n, hb * wb), np.float32)
    for start in range(0, n, _BLOCK):
        block = np.asarray(movie[start:start + _BLOCK], dtype=np.float32)
        if b > 1:
            block = block[:, :hb * b, :wb * b].reshape(len(block), hb, b, wb, b).mean((2, 4))
        out[start:start + len(block)] = block.reshape(len(block), -1)
    return out


def window_changes(frames: np.ndarray, k: int) -> np.ndarray:
    """Mean square difference between the k frames after and the k frames up to each t.

    Parameters
    ----------
    frames : ndarray, shape (T, P)
        From :func:`reduced_frames`.
    k : int
        Window length, frames.

    Returns
    -------
    ndarray, shape (T - 1,)
        Entry t compares frames t+1..t+k with t-k+1..t (intensity squared); NaN where a
        window would leave the movie.
    """
    n = len(frames)
    out = np.full(max(n - 1, 0), np.nan)
    if n < 2 * k:
        return out
    before = np.zeros((n - 2 * k + 1, frames.shape[1]), np.float64)
    after = np.zeros_like(before)
    for j in range(k):
        before += frames[j:n - 2 * k + 1 + j]
        after += frames[k + j:n - k + 1 + j]
    diff = (after - before) / k
    out[k - 1:n - k] = np.mean(diff * diff, axis=1)
    return out


def find_joins(movie, *, threshold: float = THRESHOLD) -> tuple[list[int], float]:
    """Transitions whose change stands far out from the movie's usual frame-to-frame change.

    For each window length in :data:`WINDOWS`, the change at each transition less the
    median change is divided by the 90th percentile of the changes less the median: a
    join is a transition where this score exceeds ``threshold`` and is the largest within
    the window around it.

    Parameters
    ----------
    movie : array-like, shape (T, H, W)
        Frames (a numpy array, memory map or :class:`~napari_dissipation.io.LazyMovie`).
    threshold : float
        Score above which a transition is a join.

    Returns
    -------
    joins : list of int
        ``t`` for each transition t -> t + 1 that looks like a join, in order.
    score : float
        The largest score (0 when there are too few transitions to tell).
    """
    if movie.shape[0] - 1 < _MIN_TRANSITIONS:
        return [], 0.0
    frames = reduced_frames(movie)
    joins: set[int] = set()
    best = 0.0
    for k in WINDOWS:
        change = window_changes(frames, k)
        median, top = np.nanquantile(change, [0.5, _QUANTILE])
        if not np.isfinite(top):
            continue
        # Camera noise adds the same floor to every change: measure above the median.
        spread = top - median
        excess = np.nan_to_num(change - median, nan=0.0)
        score = excess / spread if spread > 0 else np.where(excess > 0, np.inf, 0.0)
        best = max(best, float(score.max()))
        for t in np.flatnonzero(score > threshold):
            lo, hi = max(t - k + 1, 0), t + k
            if score[t] >= score[lo:hi].max():
                joins.add(int(t))
    return sorted(joins), best


def glued_warnings(movie, *, name: str = "movie") -> list[str]:
    """Plain sentences (none for an ordinary movie) when ``movie`` looks glued together.

    Parameters
    ----------
    movie : array-like, shape (T, H, W)
    name : str
        The movie's name (its file), which each sentence starts with.

    Returns
    -------
    list of str
        One sentence naming the frames where the movie jumps, or an empty list.
    """
    joins, score = find_joins(movie)
    if not joins:
        return []
    where = ", ".join(f"{t} -> {t + 1}" for t in joins[:_LISTED])
    more = f" and {len(joins) - _LISTED} more" if len(joins) > _LISTED else ""
    size = "" if not np.isfinite(score) else f"{score:.0f} times "
    return [f"{name}: the image jumps between frames {where}{more}, {size}beyond the movie's "
            "usual frame-to-frame changes; it looks like several movies glued together. A "
            "transition across a join is not a physical one: give the pieces as separate "
            "movies (split at these frames)"]
