"""Non-stationarity: checks for bleaching and drift, and the correction applied before training.

Bleaching, drifting illumination and stage drift give a movie an arrow of time that is not
dissipation in the sample; a network trained on such a movie reads it as entropy
production (often far more than the sample's).  :func:`check_movies` looks for them in each
movie; :func:`~.correction.correct_movie` removes what is safe to remove.

What is checked, per movie: trends over the movie in the mean intensity (more than 5%),
in the background (the dimmest pixels; more than 5% of the contrast) and in the image's
position (registration against the mean image; more than 0.5 pixel), and frame-to-frame
change differing by more than 25% between the two halves.  A trend counts only when it is
clear (:func:`_trend`): the sample's own slow motion also makes trends, and a movie only a
few of its correlation times long cannot tell them from a drift.  The thresholds were
calibrated on stationary series and on bead-spring movies with shot and read noise, which
raise no warning (tests/estimate/test_stationarity.py).

What is corrected, and how, is in :mod:`.correction`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_limits

__all__ = ["StationarityReport", "check_movies", "image_shift"]

#: Blocks a movie is cut into for trends and block-mean images (fewer for short movies).
BLOCKS = 20
#: Fewest frames per block; movies shorter than 4 blocks are neither checked nor corrected.
MIN_BLOCK_FRAMES = 10
#: A trend is clear when its span exceeds this many standard errors (times
#: ``1 + 10 / n_independent``) and the series holds at least ``MIN_INDEPENDENT``
#: independent stretches (movie length / autocorrelation time): calibrated on simulated
#: stationary series (AR(1), 400-5000 samples, correlation times 1-400 samples, 300 each:
#: no false trend at 5.0; at 4.0 about 0.3% per series).
CLEAR = 5.0
MIN_INDEPENDENT = 50
#: Or clear when its span exceeds this many times the residuals' standard deviation:
#: quadratic trends through random walks (200-5000 steps) reach at most about 21.
SMOOTH = 40.0
INTENSITY_CHANGE = 0.05
BACKGROUND_CHANGE = 0.05
BACKGROUND_PERCENTILE = 5.0
DRIFT_PX = 0.5
ACTIVITY_CHANGE = 0.25
MEASURED = 500  # frames registered to measure a drift (evenly spread over the movie)
#: Frames larger than this on a side are registered 2 x 2 binned, and beyond twice it on
#: their central part (a stage drift moves the whole frame): a drift of half a pixel is
#: still measured to a few hundredths of one, at a fraction of the cost (500 frames of
#: 512 x 512 px: 72 s at full size; docs/benchmarks.md, frame size).
REGISTER_SIDE = 256
CHUNK = 256  # frames read at a time (bounds the float32 working memory)


@dataclass
class Finding:
    """One kind of non-stationarity seen in some movies."""

    kind: str  # "intensity", "background", "drift", "activity"
    sentence: str
    movies: list[str]


@dataclass
class StationarityReport:
    """Outcome of :func:`check_movies`.

    Attributes
    ----------
    movies : list of dict
        Per movie: ``name``, ``intensity_change`` (fraction, end vs start),
        ``background_change`` (fraction of the contrast), ``drift_px`` ((rows, columns)
        displacement over the movie, pixels; 0 on an axis without a clear trend),
        ``activity_change`` (second half vs first, fraction) and the ``flags`` raised.
    findings : list of Finding
    """

    movies: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Plain sentences, one per kind of non-stationarity found."""
        return [f.sentence for f in self.findings]

    @property
    def ok(self) -> bool:
        """True when no movie showed any sign of non-stationarity."""
        return not self.findings

    def to_dict(self) -> dict:
        return {"ok": self.ok, "warnings": self.warnings, "movies": self.movies}


# ---------------------------------------------------------------------- reading
def _frames(movie, a: int, b: int) -> np.ndarray:
    if isinstance(movie, np.ndarray):
        return movie[a:b].astype(np.float32, copy=False)
    return np.stack([np.asarray(movie[i]) for i in range(a, b)]).astype(np.float32)


def _n_blocks(n_frames: int) -> int:
    return int(min(BLOCKS, n_frames // MIN_BLOCK_FRAMES))


def _block_of(n_frames: int, nb: int) -> np.ndarray:
    return (np.arange(n_frames) * nb) // n_frames


def _block_images(movie, block: np.ndarray, nb: int) -> np.ndarray:
    """Mean image of each block of frames, (nb, H, W), float64."""
    bounds = np.searchsorted(block, np.arange(nb + 1))
    images = np.zeros((nb,) + tuple(movie.shape[1:]))
    for i in range(nb):  # blocks are contiguous
        for a in range(bounds[i], bounds[i + 1], CHUNK):
            images[i] += _frames(movie, a, min(a + CHUNK, bounds[i + 1])).sum(axis=0)
    return images / np.diff(bounds)[:, None, None]


def _frame_stats(movie) -> dict:
    """Per-frame mean, background (low percentile) and frame-to-frame change."""
    T = int(movie.shape[0])
    means, low = np.empty(T), np.empty(T)
    change = np.empty(max(T - 1, 0))
    prev = None
    for a in range(0, T, CHUNK):
        x = _frames(movie, a, min(a + CHUNK, T))
        flat = x.reshape(len(x), -1)
        means[a:a + len(x)] = flat.mean(axis=1)
        low[a:a + len(x)] = np.percentile(flat, BACKGROUND_PERCENTILE, axis=1)
        both = x if prev is None else np.concatenate([prev, x])
        d = np.diff(both, axis=0).reshape(len(both) - 1, -1)
        first = a - (prev is not None)
        change[first:first + len(d)] = np.mean(d * d, axis=1)
        prev = x[-1:]
    return {"mean": means, "low": low, "change": change}


# ---------------------------------------------------------------------- trends
@dataclass
class _Trend:
    start: float
    end: float
    span: float
    clear: bool
    coef: np.ndarray


def _trend(values: np.ndarray, min_independent: float = MIN_INDEPENDENT) -> _Trend:
    """Quadratic trend of a per-frame series over the movie, and whether it is clear.

    Clear: its span exceeds ``CLEAR * (1 + 10 / n)`` standard errors of a linear trend
    fitted to a stationary series with the residuals' scatter and autocorrelation time,
    and ``n``, the number of independent stretches, is at least ``min_independent``; or
    its span exceeds ``SMOOTH`` times the residuals' standard deviation.
    The sample's own slow motion makes large random trends: a movie only a few of its
    correlation times long cannot tell them from a drift (and the correlation time of a
    detrended series is underestimated, hence the extra factor).  ``coef`` is the
    quadratic in the movie's fractional time ``t / (T - 1)``.
    """
    T = len(values)
    t = np.linspace(0.0, 1.0, T)
    coef = np.polyfit(t, values, 2)
    resid = values - np.polyval(coef, t)
    curve = np.polyval(coef, np.linspace(0.0, 1.0, 64))
    span = float(curve.max() - curve.min())
    tau = _correlation_time(resid)
    n = T / tau
    sd = float(np.std(resid))
    se = sd * np.sqrt(12.0 / n)
    clear = (n >= min_independent and span > CLEAR * (1 + 10 / n) * se) or span > SMOOTH * sd
    return _Trend(start=float(curve[0]), end=float(curve[-1]), span=span, clear=bool(clear),
                  coef=coef)


def _correlation_time(x: np.ndarray) -> float:
    """Integrated autocorrelation time of a series, in samples (>= 1): one plus twice the
    autocorrelations summed up to their first negative value."""
    x = x - x.mean()
    n = len(x)
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    if acf[0] <= 0:
        return 1.0
    rho = acf / acf[0]
    stop = np.flatnonzero(rho < 0)
    stop = int(stop[0]) if stop.size else n
    return float(np.clip(1.0 + 2.0 * rho[1:stop].sum(), 1.0, n))


# ---------------------------------------------------------------------- background
def _plane_basis(H: int, W: int) -> np.ndarray:
    """(3, H, W): constant, row and column coordinates (centred, in frame heights/widths)."""
    rows, cols = np.meshgrid((np.arange(H) - (H - 1) / 2) / H, (np.arange(W) - (W - 1) / 2) / W,
                             indexing="ij")
    return np.stack([np.ones((H, W)), rows, cols])


def _plane_coefs(x: np.ndarray, iterations: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Background plane under each image: (n, H, W) -> coefficients (n, 3) and the basis
    (3, H, W).

    A least-squares plane refitted to the pixels less than one robust standard deviation
    above it, a few times: bright objects drop out and the plane settles on the background
    (at most about 4096 pixels per image are used).
    """
    n, H, W = x.shape
    basis = _plane_basis(H, W)
    step = max(1, (H * W) // 4096)
    B = basis.reshape(3, -1)[:, ::step]
    y = x.reshape(n, -1)[:, ::step].astype(np.float64)
    keep = np.ones_like(y)
    tiny = 1e-6 * (np.abs(y).max(axis=1) + 1)
    # A[n] = Σ_p keep[n, p] b_p b_pᵀ as one product with the 9 pixelwise products b_i b_j
    # (a three-operand einsum took most of the time of a drift check).
    outer = (B[:, None, :] * B[None, :, :]).reshape(9, -1).T
    for _ in range(iterations):
        A = (keep @ outer).reshape(n, 3, 3) + 1e-9 * np.eye(3)
        coef = np.linalg.solve(A, ((keep * y) @ B.T)[..., None])[..., 0]
        resid = y - coef @ B
        # mean absolute deviation of the kept pixels, as a Gaussian standard deviation
        spread = 1.2533 * (keep * np.abs(resid)).sum(axis=1) / np.maximum(keep.sum(axis=1), 1)
        keep = (resid <= (spread + tiny)[:, None]).astype(np.float64)
    return coef, basis


# ---------------------------------------------------------------------- registration
def _flatten(images: np.ndarray, window: bool = True) -> np.ndarray:
    """Images (n, H, W) with their tilted background removed, zero mean, unit variance,
    under a window tapering the edges (no edge jump for the Fourier transform)."""
    coef, basis = _plane_coefs(images)
    img = images - np.einsum("np,phw->nhw", coef, basis)
    img = img - img.mean(axis=(1, 2), keepdims=True)
    img /= img.std(axis=(1, 2), keepdims=True) + 1e-12
    return img * _window(*img.shape[1:]) if window else img


def _window(H: int, W: int) -> np.ndarray:
    """Tukey window: a quarter of each axis tapered."""
    return np.outer(_tukey(H, 0.25), _tukey(W, 0.25))


def _tukey(n: int, alpha: float) -> np.ndarray:
    """``scipy.signal.windows.tukey(n, alpha)`` (symmetric), without importing scipy.signal
    (a third of a second, holding the GIL, in the middle of a run started from napari)."""
    if n <= 1:
        return np.ones(n)
    x = np.arange(n) / (n - 1)
    w = np.ones(n)
    edge = x < alpha / 2
    w[edge] = 0.5 * (1 + np.cos(np.pi * (2 * x[edge] / alpha - 1)))
    w[::-1][edge] = w[edge]
    return w


def image_shift(images: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(row, column) displacement of each image relative to ``reference``, pixels.

    Parameters
    ----------
    images : ndarray, shape (n, H, W) or (H, W)
    reference : ndarray, shape (H, W)

    Returns
    -------
    ndarray, shape (n, 2) or (2,)
        ``image(x) ≈ reference(x − d)`` gives ``d``.  First the peak of a cross-correlation
        with its spectrum half-whitened (sharper than plain correlation, less
        noise-sensitive than phase correlation; only shifts up to a quarter of the frame
        along each axis are considered, since a scene of alike objects, beads in a row,
        matches itself at their spacing too); then two Gauss-Newton steps fitting
        ``a * reference(x - d) + c`` to the image under a window (the correlation peak
        alone is pulled towards zero and towards whole pixels).
    """
    single = np.ndim(images) == 2
    imgs = _flatten(np.asarray(images, dtype=np.float64).reshape((-1,) + np.shape(reference)),
                    window=False)
    ref = _flatten(np.asarray(reference, dtype=np.float64)[None], window=False)[0]
    out = _refine(imgs, ref, _correlation_peak(imgs, ref))
    return out[0] if single else out


def _refine(imgs: np.ndarray, ref: np.ndarray, shift: np.ndarray,
            steps: int = 2) -> np.ndarray:
    """Gauss-Newton refinement of shifts (n, 2) of ``imgs`` (n, H, W) against ``ref``."""
    from scipy import fft  # several times faster than numpy's on real input

    H, W = ref.shape
    # Half spectra of the real images: half the work of full ones.
    spectrum = fft.rfft2(ref)
    ky = 2j * np.pi * np.fft.fftfreq(H)[None, :, None]
    kx = 2j * np.pi * np.fft.rfftfreq(W)[None, None, :]
    w = torch.from_numpy(_window(H, W).ravel())
    y = torch.from_numpy(imgs.reshape(len(imgs), -1))
    d = shift.copy()
    for _ in range(steps):
        # The phase ramp is separable: two small exponentials instead of one per pixel.
        moved = spectrum * np.exp(-ky * d[:, 0, None, None]) * np.exp(-kx * d[:, 1, None, None])
        cols = [fft.irfft2(moved, s=(H, W)), np.ones_like(imgs),
                -fft.irfft2(moved * ky, s=(H, W)), -fft.irfft2(moved * kx, s=(H, W))]
        X = torch.from_numpy(np.stack([c.reshape(len(imgs), -1) for c in cols], axis=1))
        Xw = X * w  # (n, 4, P); the products in torch: numpy's batched ones are slow
        A = (Xw @ X.transpose(1, 2)).numpy() + 1e-9 * np.eye(4)
        coef = np.linalg.solve(A, (Xw @ y[..., None]).numpy())[..., 0]
        gain = np.where(np.abs(coef[:, 0]) > 1e-6, coef[:, 0], 1e-6)
        d += np.clip(coef[:, 2:] / gain[:, None], -1.0, 1.0)
    return d


def _correlation_peak(imgs: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Shifts (n, 2) at the peak of the half-whitened cross-correlation (sub-pixel)."""
    from scipy import fft

    w = _window(*ref.shape)
    cross = fft.fft2(imgs * w) * np.conj(fft.fft2(ref * w))[None]
    cross /= np.sqrt(np.abs(cross)) + 1e-12
    cc = np.real(fft.ifft2(cross))
    n, H, W = cc.shape
    # The windows overlap less at larger lags: divide by their overlap, or the peak is
    # pulled towards zero shift.
    window = np.fft.fft2(_window(H, W))
    overlap = np.real(np.fft.ifft2(window * np.conj(window)))
    cc /= np.maximum(overlap / overlap[0, 0], 0.25)
    lags = [(np.arange(k) + k // 2) % k - k // 2 for k in (H, W)]
    far = (np.abs(lags[0])[:, None] > max(1, H // 4)) | \
        (np.abs(lags[1])[None, :] > max(1, W // 4))
    flat = np.where(far, -np.inf, cc).reshape(n, -1).argmax(axis=1)
    pr, pc = np.unravel_index(flat, (H, W))
    k = np.arange(n)
    out = np.empty((n, 2))
    for axis, p in enumerate((pr, pc)):
        def at(step, axis=axis):
            return cc[k, (pr + step) % H, pc] if axis == 0 else cc[k, pr, (pc + step) % W]

        below, top, above = at(-1), at(0), at(1)
        # A Gaussian through the three points (a parabola through their logarithms) locks
        # far less onto whole pixels than a parabola through the values.
        positive = (below > 0) & (top > 0) & (above > 0)
        floor = 1e-12 * np.abs(top) + 1e-300
        below, top, above = (np.where(positive, np.log(np.maximum(v, floor)), v)
                             for v in (below, top, above))
        denom = below - 2 * top + above
        curved = denom < 0
        sub = np.where(curved, 0.5 * (below - above) / np.where(curved, denom, 1.0), 0.0)
        out[:, axis] = lags[axis][p] + np.clip(sub, -0.5, 0.5)
    return out


def _drift(movie, images: np.ndarray, block: np.ndarray) -> tuple[np.ndarray, list[_Trend]]:
    """Per-frame shift trends of a movie and the drift to undo, (T, 2) pixels.

    Frames (at most ``MEASURED``, evenly spread) are registered against the movie's mean
    image, itself aligned on a first pass over the block means; the drift is the quadratic
    trend of those shifts on each axis whose trend is clear and larger than ``DRIFT_PX``
    (zero on the others).  Large frames are registered binned (``REGISTER_SIDE``).
    """
    from scipy import ndimage

    T = len(block)
    f = 2 if max(images.shape[1:]) > REGISTER_SIDE else 1
    images = _for_registration(images, f)
    shifts = image_shift(images, images.mean(axis=0))
    reference = np.mean([ndimage.shift(img, -(s - np.median(shifts, axis=0)), order=1,
                                       mode="nearest")
                         for img, s in zip(images, shifts, strict=True)], axis=0)
    # At most MEASURED frames, evenly spread: a trend over the movie needs no more.
    index = np.unique(np.linspace(0, T - 1, min(T, MEASURED)).round().astype(int))
    per_frame = f * np.concatenate([image_shift(_for_registration(
        np.stack([_frames(movie, i, i + 1)[0] for i in index[a:a + CHUNK]]), f), reference)
        for a in range(0, len(index), CHUNK)])
    trends = [_trend(per_frame[:, axis]) for axis in range(2)]
    drift = np.zeros((T, 2))
    t = np.arange(T) / max(T - 1, 1)
    for axis, tr in enumerate(trends):
        if tr.clear and tr.span > DRIFT_PX:
            drift[:, axis] = np.polyval(tr.coef, t)
    return drift, trends


def _for_registration(images: np.ndarray, f: int) -> np.ndarray:
    """Images (n, H, W) as registered: with f = 2, their central part of at most
    2 REGISTER_SIDE pixels on a side in sums of 2 x 2 pixels (rows and columns beyond a
    whole block dropped)."""
    if f <= 1:
        return images
    n, h, w = images.shape
    r0, c0 = max(0, (h - 2 * REGISTER_SIDE) // 2), max(0, (w - 2 * REGISTER_SIDE) // 2)
    h, w = min(h, 2 * REGISTER_SIDE) // f * f, min(w, 2 * REGISTER_SIDE) // f * f
    part = images[:, r0: r0 + h, c0: c0 + w]
    return part.reshape(n, h // f, f, w // f, f).sum(axis=(2, 4))


def all_movie_numbers(movies: list, names: list) -> list:
    """:func:`_movie_numbers` of each movie, as many movies at a time as torch has threads.

    Its matrices are small (a few hundred frames of one movie), and numpy's BLAS threads
    only wait on each other there: one BLAS thread per movie, and the movies side by side
    (the FFTs and products release the GIL) checked the 100 movies of 1000 frames of
    20 x 40 px in 7 s on two cores, against 13 s one after the other (docs/benchmarks.md).
    """
    workers = max(1, min(torch.get_num_threads(), len(movies)))
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(_movie_numbers, movies, names))


def _movie_numbers(movie, name: str) -> dict | None:
    T = int(movie.shape[0])
    nb = _n_blocks(T)
    if nb < 4:
        return None
    st = _frame_stats(movie)
    block = _block_of(T, nb)
    level = _trend(st["mean"])
    images = _block_images(movie, block, nb)
    # Block means: the background of single frames would move with their noise level.
    low, high = np.percentile(images.reshape(nb, -1), [BACKGROUND_PERCENTILE, 99.5], axis=1)
    bg = _trend(low, min_independent=5)
    contrast = float(np.median(high - low))
    drift, shift = _drift(movie, images, block)
    moving = drift.any(axis=0)
    signal = np.maximum(st["mean"] - st["low"], 1e-12)
    act = st["change"] / (0.5 * (signal[1:] + signal[:-1])) ** 2
    half = (T - 1) // 2
    first, second = np.mean(act[:half]), np.mean(act[half:])
    se = np.std(act) * np.sqrt(4.0 * _correlation_time(act) / len(act))
    numbers = {
        "name": name,
        # relative to the start, or to the contrast where the mean is near zero (movies
        # with their background removed)
        "intensity_change": (level.end - level.start) / max(level.start, 0.25 * contrast)
        if max(level.start, contrast) > 0 else 0.0,
        "background_change": (bg.end - bg.start) / contrast if contrast > 0 else 0.0,
        "drift_px": [tr.end - tr.start if m else 0.0
                     for tr, m in zip(shift, moving, strict=True)],
        "activity_change": float(second / first - 1.0) if first > 0 else 0.0,
        "flags": [],
    }
    if level.clear and abs(numbers["intensity_change"]) > INTENSITY_CHANGE:
        numbers["flags"].append("intensity")
    if bg.clear and abs(numbers["background_change"]) > BACKGROUND_CHANGE:
        numbers["flags"].append("background")
    if any(moving):
        numbers["flags"].append("drift")
    if abs(numbers["activity_change"]) > ACTIVITY_CHANGE and \
            abs(second - first) > CLEAR * se:
        numbers["flags"].append("activity")
    return numbers


def _range(values, fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if np.isclose(lo, hi, rtol=0.05) else f"{fmt(lo)} to {fmt(hi)}"


def _sentence(kind: str, rows: list[dict]) -> str:
    pct = lambda v: f"{abs(v) * 100:.0f}%"  # noqa: E731
    if kind == "intensity":
        vals = [r["intensity_change"] for r in rows]
        way = "falls" if np.median(vals) < 0 else "rises"
        return (f"Mean intensity {way} by {_range([abs(v) for v in vals], pct)} over the "
                f"movie ({'bleaching' if way == 'falls' else 'changing illumination'}?)")
    if kind == "background":
        vals = [r["background_change"] for r in rows]
        way = "falls" if np.median(vals) < 0 else "rises"
        return (f"The background (dimmest pixels) {way} by "
                f"{_range([abs(v) for v in vals], pct)} of the image's contrast over the "
                f"movie (drifting or uneven illumination?)")
    if kind == "drift":
        vals = [float(np.hypot(*r["drift_px"])) for r in rows]
        return (f"The image drifts by {_range(vals, lambda v: f'{v:.1f}')} pixels over the "
                f"movie (stage or sample drift?)")
    vals = [r["activity_change"] for r in rows]
    way = "smaller" if np.median(vals) < 0 else "larger"
    return (f"Frame-to-frame change is {_range([abs(v) for v in vals], pct)} {way} in the "
            f"second half of the movie than in the first (the motion, the noise or the "
            f"signal changes with time)")


def check_movies(movies, dt: float, names=None) -> StationarityReport:
    """Look for bleaching, illumination drift, stage drift and changing activity.

    Parameters
    ----------
    movies : list of (T, H, W) array-likes, or an (M, T, H, W) array
    dt : float
        Seconds per frame (kept for the report; the thresholds are per movie length).
    names : list of str, optional
        Movie names for the sentences (file names).

    Returns
    -------
    StationarityReport
        ``.ok`` is True when nothing was found; ``.warnings`` are plain sentences such as
        "Mean intensity falls by 38% over the movie (bleaching?) in 20 of 20 movies".
        Movies shorter than ``4 * MIN_BLOCK_FRAMES`` frames are not checked.
    """
    from .data import as_movie_list

    items, names = as_movie_list(movies, names)
    return _report(all_movie_numbers(items, names), dt)


def _report(numbers: list, dt: float) -> StationarityReport:
    """The report of :func:`_movie_numbers` of every movie (None: too short to check)."""
    rows = [r for r in numbers if r is not None]
    findings = []
    for kind in ("intensity", "background", "drift", "activity"):
        hit = [r for r in rows if kind in r["flags"]]
        if not hit:
            continue
        where = f"{hit[0]['name']}: " if len(numbers) == 1 else ""
        tail = "" if len(numbers) == 1 else f" in {len(hit)} of {len(numbers)} movies"
        findings.append(Finding(kind, f"{where}{_sentence(kind, hit)}{tail}.",
                                [r["name"] for r in hit]))
    for r in rows:
        r["dt"] = float(dt)
    return StationarityReport(movies=rows, findings=findings)
