"""The correction of bleaching and drift applied before training and at inference.

:func:`correct_movie` is deterministic and works on one movie at a time, so inference
applies exactly the transform training saw; it corrects only what the movie's own check
(:mod:`.stationarity`) flags: a clear rigid drift is undone (sub-pixel); a smooth background
plane is subtracted and each frame divided by the smooth trend of its intensity level.  The
frame-to-frame motion, where the EP is, is left alone; nothing undoes bleaching that fades
spots into the noise.  :func:`prepare_movies` is the estimator's step: check, correct, and
say what was done.
"""

from __future__ import annotations

import numpy as np

from .stationarity import (
    CHUNK,
    _block_images,
    _block_of,
    _drift,
    _frames,
    _movie_numbers,
    _n_blocks,
    _plane_coefs,
    _report,
    all_movie_numbers,
    check_movies,
)

__all__ = ["correct_movie", "prepare_movies"]


def _through_blocks(values: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Per-frame values from per-block values (nb, ...): a cubic in time fitted through the
    block centres (smooth: the noise of single blocks is not followed)."""
    T, nb = len(block), len(values)
    centres = np.array([np.mean(np.flatnonzero(block == i)) for i in range(nb)]) / T
    flat = values.reshape(nb, -1)
    coef = np.polyfit(centres, flat, min(3, nb - 2))
    t = np.arange(T) / T
    return np.stack([np.polyval(c, t) for c in coef.T], axis=1).reshape((T,) + values.shape[1:])


def correct_movie(movie) -> np.ndarray:
    """Remove slow intensity and background trends and a clear rigid drift from a movie.

    Deterministic and per movie: the same movie always gets the same transform, at
    training and at inference.

    Parameters
    ----------
    movie : array-like, shape (T, H, W)
        Any dtype.

    Returns
    -------
    ndarray, shape (T, H, W), float32, or the input movie
        First the frames are shifted back (cubic spline, sub-pixel) along the drift where
        :func:`check_movies` would call the drift clear (measured twice: the second pass
        measures what the first left).  Then the movie is cut into ``BLOCKS`` blocks of
        consecutive frames; from each block's mean image come a background plane (fitted
        to the pixels not brighter than it, see ``_plane_coefs``) and the mean level above
        it (inside a margin of a tenth of the frame), carried to every frame by a cubic in
        time fitted through the block centres (for the level, through its logarithm).
        Each frame minus its background is divided by its level (rescaled to the movie's
        median level).  Only what the movie's own check flags is corrected (the
        photometric steps for an intensity or background trend, the registration for a
        drift): a movie with nothing flagged, or shorter than ``4 * MIN_BLOCK_FRAMES``
        frames, comes back unchanged (the same object), so that a clean movie gives
        exactly the rate it gives unchecked.
    """
    return _corrected(movie, _movie_numbers(movie, ""))


def _corrected(movie, numbers: dict | None):
    """:func:`correct_movie` given the movie's own :func:`_movie_numbers`."""
    flags = set(numbers["flags"]) if numbers is not None else set()
    if not flags & {"intensity", "background", "drift"}:
        return movie
    T = int(movie.shape[0])
    x = np.empty(movie.shape, np.float32)
    for a in range(0, T, CHUNK):
        x[a:a + CHUNK] = _frames(movie, a, min(a + CHUNK, T))
    nb = _n_blocks(T)
    block = _block_of(T, nb)
    if "drift" in flags:
        x = _register(x, block, nb)
    if flags & {"intensity", "background"}:
        _remove_trends(x, block, nb)
    return x


def _register(x: np.ndarray, block: np.ndarray, nb: int) -> np.ndarray:
    """``x`` shifted back along its drift where it is clear (else ``x`` itself).

    A second pass measures what the first left; the frames are interpolated once, along
    the sum (cubic spline, edges filled with the nearest pixels).
    """
    from scipy import ndimage

    drift = np.zeros((len(x), 2))
    out = x
    for _ in range(2):
        more, _ = _drift(out, _block_images(out, block, nb), block)
        if not np.any(more):
            break
        drift += more
        out = np.empty_like(x)
        for t in range(len(x)):
            out[t] = ndimage.shift(x[t], -drift[t], order=3, mode="nearest")
    return out


def _remove_trends(x: np.ndarray, block: np.ndarray, nb: int) -> None:
    """Subtract the smooth background and divide by the smooth level, in place."""
    T, H, W = x.shape
    images = _block_images(x, block, nb)
    coef, basis = _plane_coefs(images)
    # The level inside a margin: registration fills the edges by repeating pixels.
    core = (slice(None), slice(H // 10, H - H // 10), slice(W // 10, W - W // 10))
    level = (images - np.einsum("np,phw->nhw", coef, basis))[core].mean(axis=(1, 2))
    coef = _through_blocks(coef, block).astype(np.float32)
    basis = basis.astype(np.float32)
    for a in range(0, T, CHUNK):
        x[a:a + CHUNK] -= np.einsum("np,phw->nhw", coef[a:a + CHUNK], basis)
    if level.min() > 0:
        # In logarithms: bleaching is exponential.
        level = np.exp(_through_blocks(np.log(level), block))
        x *= (np.median(level) / level).astype(np.float32)[:, None, None]


# ---------------------------------------------------------------------- estimator's step
_CORRECTED = {"intensity": "corrected (each frame rescaled to the smooth intensity trend)",
              "background": "corrected (smooth background trend subtracted)",
              "drift": "corrected (frames registered along the fitted drift)",
              "activity": "not correctable: the rate averages over the change"}


def prepare_movies(movies, dt: float, names, *, correct: bool) -> tuple[list, list[str]]:
    """Check every movie and, when ``correct``, correct it: what the estimator trains on.

    Returns
    -------
    movies : list of array-like
        With ``correct``, each movie corrected for what its check flagged (float32), or
        the input movie itself when nothing was; else the input movies unchanged.
    warnings : list of str
        What the check found in the raw movies, each saying whether it was corrected, and
        what a second check still finds in the corrected ones.
    """
    from .data import as_movie_list

    items, names = as_movie_list(movies, names)
    numbers = all_movie_numbers(items, names)
    found = _report(numbers, dt)
    if not correct:
        return items, [f"{f.sentence[:-1]}; not corrected (nonstationarity=check): the rate "
                       f"may include it." for f in found.findings]
    fixed = [_corrected(m, r) for m, r in zip(items, numbers, strict=True)]
    warnings = [f"{f.sentence[:-1]}; {_CORRECTED[f.kind]}." for f in found.findings]
    changed = [i for i, (m, f) in enumerate(zip(items, fixed, strict=True)) if f is not m]
    # The second check leaves out the edges, which registration fills by repeating pixels.
    after = check_movies([fixed[i][:, fixed[i].shape[1] // 10:-(fixed[i].shape[1] // 10) or None,
                                   fixed[i].shape[2] // 10:-(fixed[i].shape[2] // 10) or None]
                          for i in changed], dt, [names[i] for i in changed]) if changed else None
    warnings += [f"After the correction: {f.sentence[:-1]}; the rate may include it."
                 for f in (after.findings if after else []) if f.kind != "activity"
                 or "activity" not in [g.kind for g in found.findings]]
    return fixed, warnings
