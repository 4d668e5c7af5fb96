"""Dissipation maps: where in the frame the estimated entropy production arises.

The estimator's output is ``ΔS_θ = Σ_p o[p] · Φ[p]``, a force field dotted with the change
of intensity, so the share of pixel p, ``o[p] · Φ[p]``, sums over the frame to ΔS_θ
exactly.  Maps are on the pixel grid of the (binned) frames the estimator reads; with
``bin > 1`` each map pixel is spread evenly over the ``bin x bin`` movie pixels it stands
for, which keeps the sum.
"""

from __future__ import annotations

import numpy as np

from .estimate.stats import per_transition
from .estimate.train import batch_tensor

__all__ = ["dissipation_map", "ep_rate_density", "iter_window_maps"]


def iter_window_maps(est, movie, *, name: str = "movie", batch: int = 512):
    """Yield (start, maps) for consecutive batches of windows of one movie.

    ``maps`` has shape (n, H, W): the share of each pixel of the movie in ΔS_θ of the
    windows ``start ... start + n − 1``, k_B.
    """
    import torch

    data = est._movie_set(movie, name)
    model = est.model.eval()
    device = next(model.parameters()).device
    n_windows = int(data.n_windows[0])
    with torch.no_grad():
        for a in range(0, n_windows, batch):
            starts = np.arange(a, min(a + batch, n_windows))
            x = batch_tensor(data, np.zeros(len(starts), dtype=int), starts, est.norm, device)
            maps = model.pixel_contributions(x).cpu().numpy()
            yield a, _to_movie_grid(maps, est.config.bin, data.raw_frame_shape)


def _to_movie_grid(maps: np.ndarray, b: int, raw_shape: tuple[int, int]) -> np.ndarray:
    if b == 1:
        return maps
    spread = np.repeat(np.repeat(maps, b, axis=-2), b, axis=-1) / (b * b)
    out = np.zeros(maps.shape[:-2] + tuple(raw_shape), dtype=maps.dtype)
    out[..., : spread.shape[-2], : spread.shape[-1]] = spread
    return out


def dissipation_map(est, movie, *, name: str = "movie") -> np.ndarray:
    """Per-transition dissipation maps of a (T, H, W) movie, shape (T − 1, H, W), k_B.

    Map t belongs to the transition t -> t+1 and sums over pixels to
    ``est.stochastic_ep(movie)[t]``.  With k > 2 frames per input a transition gets the
    mean share ``map / (k − 1)`` of the windows that contain it.
    """
    chunks = [maps for _, maps in iter_window_maps(est, movie, name=name)]
    window_maps = np.concatenate(chunks).astype(np.float32, copy=False)
    return per_transition(window_maps, est.config.frames_per_input)


def ep_rate_density(est, movie, *, dt: float | None = None, name: str = "movie") -> np.ndarray:
    """Time-averaged dissipation map as an EP-rate density, shape (H, W), k_B/s per pixel.

    Streams over the movie (only one batch of maps in memory).  The sum over a region is
    that region's EP rate; the sum over the frame is the movie's EP rate.
    """
    from .estimate.estimator import _check_dt

    dt = _check_dt(est.dt if dt is None else dt)
    total = None
    n = 0
    for _, maps in iter_window_maps(est, movie, name=name):
        s = maps.sum(axis=0, dtype=np.float64)
        total = s if total is None else total + s
        n += len(maps)
    return total / n / est._rate_scale(dt)

