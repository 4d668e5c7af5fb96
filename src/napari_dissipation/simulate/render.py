"""Rendering point-like emitters to fluorescence frames.

Every emitter is a Gaussian spot (point-spread function of standard deviation
``psf_sigma`` pixels) sampled at the pixel centres with the variance ``psf_sigma^2 + 1/12``
of that PSF integrated over square pixels; a spot's intensity centroid sits on the emitter
(to 1e-9 px for psf_sigma >= 1, far from the frame's edges).  Spots are separable (row
profile x column profile), so a frame is one batched matrix product.

The camera model, in order: clean image (spots + ``background``) at the full resolution
-> Poisson shot noise (``photons`` per spot peak) -> ``binning`` (mean over
``binning x binning`` blocks) -> additive Gaussian read noise (``read_noise`` times the spot
peak) -> rounding and clipping to 8 or 16 bits.  Optional disturbances of the microscope
(bleaching, illumination drift, stage drift; :mod:`.disturb`) enter the clean image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from ..errors import InputError
from .disturb import brightness, illumination, is_disturbed, stage_offsets

__all__ = ["RenderOptions", "render_spots", "spot_profiles", "psf_density"]


@dataclass(frozen=True)
class RenderOptions:
    """How positions become frames.

    Attributes
    ----------
    psf_sigma : float
        Standard deviation of the Gaussian point-spread function, in (unbinned) pixels.
        1.5 px by default: spots about 3 px wide at half maximum (3.5 px FWHM), like the
        blobs in the paper's movies.
    pixels_per_unit : float
        Pixels per unit of simulated length (unbinned).  The pixel size of the output is
        ``binning / pixels_per_unit`` length units.
    background : float
        Constant background, as a fraction of the spot peak (0 by default).
    peak : float or None
        Output value of an isolated spot centred on a pixel, at that pixel (before noise).
        ``None``: 200 for 8 bits, 50000 for 16 bits, leaving head-room for overlapping
        spots and noise.
    bit_depth : int
        8 (uint8) or 16 (uint16).  Values are rounded and clipped to the type's range.
    photons : float or None
        Expected photon count at a spot's peak pixel; ``None`` for no shot noise.
    read_noise : float
        Standard deviation of additive Gaussian read noise, as a fraction of the spot peak
        (0.1, 0.3, 1.0 for 10, 30, 100 %).  Applied after binning.
    binning : int
        Integer binning factor: output pixels are the mean of ``binning x binning`` blocks.
    bleach : float or None
        Bleaching time constant, seconds: spot brightness ``exp(-t / bleach)``; None: off.
    illumination_drift : float
        Uneven background rising linearly over the movie to this fraction of the spot peak
        (0: off).
    stage_drift : float
        Speed of a rigid drift of the whole scene, output pixels per second (0: off).
    stage_drift_angle : float
        Direction of the stage drift, degrees from the column axis towards the row axis.
    """

    psf_sigma: float = 1.5
    pixels_per_unit: float = 1.0
    background: float = 0.0
    peak: float | None = None
    bit_depth: int = 8
    photons: float | None = None
    read_noise: float = 0.0
    binning: int = 1
    bleach: float | None = None
    illumination_drift: float = 0.0
    stage_drift: float = 0.0
    stage_drift_angle: float = 30.0

    def __post_init__(self):
        if not self.psf_sigma > 0:
            raise InputError(f"psf_sigma must be positive (pixels), got {self.psf_sigma}")
        if not self.pixels_per_unit > 0:
            raise InputError(f"pixels_per_unit must be positive, got {self.pixels_per_unit}")
        if self.bit_depth not in (8, 16):
            raise InputError(f"bit_depth must be 8 or 16, got {self.bit_depth}")
        if self.peak is not None and not 0 < self.peak <= self.max_value:
            raise InputError(f"peak must be in (0, {self.max_value}], got {self.peak}")
        if self.background < 0:
            raise InputError(f"background must be >= 0, got {self.background}")
        if self.photons is not None and not self.photons > 0:
            raise InputError(f"photons must be positive, got {self.photons}")
        if self.read_noise < 0:
            raise InputError(f"read_noise must be >= 0, got {self.read_noise}")
        if int(self.binning) != self.binning or self.binning < 1:
            raise InputError(f"binning must be a positive integer, got {self.binning}")
        if self.bleach is not None and not (np.isfinite(self.bleach) and self.bleach > 0):
            raise InputError(f"bleach must be a positive time constant in seconds, "
                             f"got {self.bleach}")
        if not (np.isfinite(self.illumination_drift) and self.illumination_drift >= 0):
            raise InputError(f"illumination_drift must be >= 0 (a fraction of the spot "
                             f"peak), got {self.illumination_drift}")
        if not (np.isfinite(self.stage_drift) and np.isfinite(self.stage_drift_angle)):
            raise InputError("stage_drift (pixels per second) and stage_drift_angle "
                             "(degrees) must be finite numbers")

    @property
    def max_value(self) -> int:
        """Largest value of the output type (255 or 65535)."""
        return 2**self.bit_depth - 1

    @property
    def peak_value(self) -> float:
        """The spot peak in output units."""
        if self.peak is not None:
            return float(self.peak)
        return 200.0 if self.bit_depth == 8 else 50000.0

    @property
    def dtype(self) -> type:
        return np.uint8 if self.bit_depth == 8 else np.uint16

    @property
    def pixel_size(self) -> float:
        """Length units per output pixel."""
        return self.binning / self.pixels_per_unit

    def replace(self, **changes) -> RenderOptions:
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak"] = self.peak_value
        d["pixel_size"] = self.pixel_size
        return d


def render_options(options: RenderOptions | None = None, **kwargs) -> RenderOptions:
    """Combine a :class:`RenderOptions` with keyword overrides (unknown names raise)."""
    base = options if options is not None else RenderOptions()
    unknown = set(kwargs) - set(RenderOptions.__dataclass_fields__)
    if unknown:
        raise InputError(f"unknown render option(s): {', '.join(sorted(unknown))}")
    return base.replace(**kwargs) if kwargs else base


def spot_profiles(centres, n_pixels: int, sigma: float, dtype=np.float32) -> np.ndarray:
    """1-D Gaussian spot profiles on the pixel grid, peak-normalised.

    Parameters
    ----------
    centres : ndarray, shape (...)
        Spot centres in pixel coordinates (pixel ``j`` covers ``[j - 0.5, j + 0.5)``).
    n_pixels : int
    sigma : float
        Standard deviation in pixels.
    dtype : numpy dtype
        Precision of the computation and the result (float32 for rendering).

    Returns
    -------
    ndarray, shape (..., n_pixels)
        ``exp(-(j - c)^2 / (2 s^2))`` at pixel centres ``j`` with ``s^2 = sigma^2 + 1/12``,
        the variance of the PSF integrated over a pixel (exp is vectorised, erf is not:
        this is 10x faster than integrating).  A spot's 2-D value is the product of its
        row and column profiles.
    """
    centres_px = np.arange(n_pixels, dtype=dtype)
    c = np.asarray(centres, dtype=dtype)[..., None]
    d = (centres_px - c) * dtype(1 / np.sqrt(sigma**2 + 1 / 12))
    d *= d
    d *= dtype(-0.5)
    return np.exp(d, out=d)


def psf_density(centres, weights, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Spread ``weights`` over a pixel grid with a normalised Gaussian, summing exactly.

    Parameters
    ----------
    centres : array_like, shape (S, 2)
        (row, column) positions in pixel coordinates.
    weights : array_like, shape (S,)
        Amount carried by each point (e.g. an EP rate).
    shape : (H, W)
    sigma : float
        Standard deviation in pixels.

    Returns
    -------
    ndarray, shape (H, W), float64
        Each point's weight spread by the spot profile and renormalised over
        the frame, so the map sums to ``sum(weights)``.
    """
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    H, W = shape
    rows = spot_profiles(centres[:, 0], H, sigma, np.float64)
    cols = spot_profiles(centres[:, 1], W, sigma, np.float64)
    norm = rows.sum(1) * cols.sum(1)
    return np.einsum("s,sh,sw->hw", weights / norm, rows, cols)


def render_spots(centres, shape: tuple[int, int], options: RenderOptions | None = None, *,
                 amplitudes=None, rng=None, chunk: int = 2048, out=None,
                 dt: float | None = None) -> np.ndarray:
    """Render spots to frames with the camera model of :class:`RenderOptions`.

    Parameters
    ----------
    centres : array_like, shape (T, S, 2)
        (row, column) of each of ``S`` spots in each of ``T`` frames, in unbinned pixels.
    shape : (H, W)
        Unbinned frame size in pixels; must be divisible by ``options.binning``.
    options : RenderOptions, optional
    amplitudes : array_like, shape (S,), optional
        Brightness of each spot relative to the peak (1 by default).
    rng : numpy.random.Generator or int or None
        For the shot and read noise.
    chunk : int
        Frames rendered at a time (bounds the float32 working memory).
    out : ndarray, shape (T, H // binning, W // binning), optional
        Output array to fill.
    dt : float, optional
        Seconds per frame; needed only by the disturbances (bleaching, drifts), which
        treat ``centres[0]`` as the movie's first frame.

    Returns
    -------
    ndarray, shape (T, H // binning, W // binning), uint8 or uint16
    """
    opts = options if options is not None else RenderOptions()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    centres = np.asarray(centres)
    if centres.ndim != 3 or centres.shape[-1] != 2:
        raise ValueError(f"centres must have shape (T, S, 2), got {centres.shape}")
    T, S, _ = centres.shape
    H, W = shape
    b = int(opts.binning)
    if H % b or W % b:
        raise ValueError(f"frame size {H}x{W} is not divisible by binning {b}")
    amp = np.ones(S, np.float32) if amplitudes is None else np.asarray(amplitudes, np.float32)
    if amp.shape != (S,):
        raise ValueError(f"amplitudes must have shape ({S},), got {amp.shape}")
    disturbed = is_disturbed(opts)
    if disturbed and not (dt is not None and dt > 0):
        raise ValueError("bleaching and drifts need dt, the seconds per frame")
    if out is None:
        out = np.empty((T, H // b, W // b), dtype=opts.dtype)
    peak = opts.peak_value
    for start in range(0, T, chunk):
        stop = min(start + chunk, T)
        c = centres[start:stop]
        frames = np.arange(start, stop)
        if opts.stage_drift:
            c = c + stage_offsets(frames, T, dt, opts.stage_drift, opts.stage_drift_angle,
                                  b)[:, None, :]
        rows = spot_profiles(c[..., 0], H, opts.psf_sigma) * amp[:, None]  # (t, S, H)
        if opts.bleach is not None:
            rows *= brightness(frames, dt, opts.bleach)[:, None, None]
        cols = spot_profiles(c[..., 1], W, opts.psf_sigma)  # (t, S, W)
        # (t, H, W) in units of the peak.  matmul is fastest for a few spots; with many,
        # its multi-threaded BLAS stalls on a busy machine where einsum's loop stays steady.
        if S <= 16:
            img = np.matmul(rows.transpose(0, 2, 1), cols)
        else:
            img = np.einsum("tsh,tsw->thw", rows, cols)
        if opts.background:
            img += np.float32(opts.background)
        if opts.illumination_drift:
            img += illumination(frames, T, (H, W), opts.illumination_drift)
        if opts.photons is not None:
            scale = np.float32(opts.photons)
            img = rng.poisson(img * scale).astype(np.float32) / scale
        if b > 1:
            img = img.reshape(stop - start, H // b, b, W // b, b).mean(axis=(2, 4))
        img *= np.float32(peak)
        if opts.read_noise:
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(
                opts.read_noise * peak)
        np.rint(img, out=img)
        np.clip(img, 0, opts.max_value, out=img)
        out[start:stop] = img
    return out
