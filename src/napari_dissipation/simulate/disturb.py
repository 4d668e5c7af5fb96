"""Non-stationary disturbances of the microscope, added while rendering.

Real movies carry an arrow of time that is not dissipation in the sample: fluorophores
bleach, the illumination drifts, the stage creeps.  These functions give, frame by frame,
what :func:`~napari_dissipation.simulate.render.render_spots` applies when the
:class:`~napari_dissipation.simulate.render.RenderOptions` ask for it (all off by default):

* **bleaching** (``bleach``, a time constant in seconds): every spot's brightness is
  ``exp(-t / bleach)`` at time ``t = frame * dt`` (before shot noise, so the photon count
  falls too); the constant ``background`` does not bleach.
* **illumination drift** (``illumination_drift``, a fraction of the spot peak): an uneven
  background (a linear tilt from 0.5x at the top-left corner to 1.5x at the bottom-right,
  mean 1) that rises linearly from 0 at the first frame to ``illumination_drift`` times the
  spot peak at the last.
* **stage drift** (``stage_drift``, output pixels per second, at ``stage_drift_angle``
  degrees from the column axis towards the row axis): the whole scene translates rigidly
  at constant velocity, by ``stage_drift * (t - t_mid)``, so it sits at its rest position
  in the middle of the movie.

They change the frames only: the sampled motion, and so the exact EP of every transition
(``truth.step_ep``, ``truth.ep_rate``), are identical with and without them for the same
seed.  Each movie starts afresh at t = 0.
"""

from __future__ import annotations

import numpy as np

__all__ = ["brightness", "stage_offsets", "illumination", "is_disturbed"]


def is_disturbed(options) -> bool:
    """True when ``options`` (a ``RenderOptions``) asks for any disturbance."""
    return bool(options.bleach is not None or options.illumination_drift
                or options.stage_drift)


def brightness(frames: np.ndarray, dt: float, bleach: float | None) -> np.ndarray:
    """Spot brightness factor of each frame, (n,), float32: ``exp(-frame dt / bleach)``.

    Parameters
    ----------
    frames : ndarray of int, shape (n,)
        Frame indices (0 = first frame of the movie).
    dt : float
        Seconds per frame.
    bleach : float or None
        Bleaching time constant, seconds; None for no bleaching (all ones).
    """
    frames = np.asarray(frames, dtype=np.float64)
    if bleach is None:
        return np.ones(frames.shape, np.float32)
    return np.exp(-frames * dt / bleach).astype(np.float32)


def stage_offsets(frames: np.ndarray, n_frames: int, dt: float, velocity: float,
                  angle: float, binning: int = 1) -> np.ndarray:
    """Rigid displacement of the scene at each frame, (n, 2) (row, column), unbinned px.

    Parameters
    ----------
    frames : ndarray of int, shape (n,)
    n_frames : int
        Frames in the movie (the displacement is zero at its middle, ``(n_frames - 1) / 2``).
    dt : float
        Seconds per frame.
    velocity : float
        Drift speed in output (binned) pixels per second.
    angle : float
        Direction, degrees from the column (x) axis towards the row (y) axis.
    binning : int
        Output pixels per unbinned pixel along each axis (the speed is in output pixels).
    """
    t = (np.asarray(frames, dtype=np.float64) - (n_frames - 1) / 2.0) * dt
    a = np.deg2rad(angle)
    direction = np.array([np.sin(a), np.cos(a)]) * velocity * binning
    return t[:, None] * direction


def illumination(frames: np.ndarray, n_frames: int, shape: tuple[int, int],
                 amplitude: float) -> np.ndarray:
    """Added background of each frame in units of the spot peak, (n, H, W), float32.

    A tilt from 0.5 (top-left) to 1.5 (bottom-right) times the level, which rises linearly
    from 0 at the first frame to ``amplitude`` at the last.
    """
    H, W = shape
    rows = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, W, dtype=np.float32)[None, :]
    tilt = 0.5 + 0.5 * (rows + cols)
    level = amplitude * np.asarray(frames, dtype=np.float32) / max(n_frames - 1, 1)
    return level[:, None, None] * tilt[None]
