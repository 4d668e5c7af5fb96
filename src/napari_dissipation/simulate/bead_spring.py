"""Bead-spring chain: N beads between two walls, each bead in its own heat bath.

Bead ``i`` (displacement ``x_i`` from rest, along the image's x axis) is joined to its
neighbours, and the end beads to the walls, by springs of stiffness ``k``; every bead has
friction ``gamma`` and sits in a bath at temperature ``T_i`` (k_B = 1):

    gamma dx_i = -k (2 x_i - x_{i-1} - x_{i+1}) dt + sqrt(2 gamma T_i) dW_i,  x_0 = x_{N+1} = 0.

Unequal temperatures drive a heat current along the chain and the EP rate is positive;
equal temperatures give equilibrium and zero EP.  This is the paper's first test system
(Bae, Kim & Jeong 2022, after Li, Horowitz, Gingrich & Fakhri, Nat. Commun. 2019).  Frames
follow the paper's movies: each bead has its own ``cell x cell`` square (20 x 20 px), side by
side along x, the bead moving along x around the square's centre.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._build import check_temperatures, simulate_and_render
from ._types import SimulatedMovies
from .linear import LinearDiffusion
from .render import RenderOptions, render_options

__all__ = ["bead_spring", "bead_spring_model", "chain_temperatures", "chain_layout"]


def chain_temperatures(n_beads: int, t_cold: float = 1.0, t_hot: float = 10.0,
                       temperatures=None) -> np.ndarray:
    """Bath temperatures (n_beads,): linear from ``t_cold`` (bead 1) to ``t_hot`` (bead N).

    ``temperatures`` (one per bead) overrides the linear profile.
    """
    if temperatures is not None:
        temps = check_temperatures(temperatures)
        if temps.size != n_beads:
            raise InputError(f"{temps.size} temperatures given for {n_beads} beads")
        return temps
    if n_beads == 1:
        return check_temperatures([t_cold])
    return check_temperatures(np.linspace(t_cold, t_hot, n_beads))


def bead_spring_model(temperatures, *, k: float = 1.0, gamma: float = 1.0) -> LinearDiffusion:
    """The chain as a :class:`LinearDiffusion` (one degree of freedom per bead).

    Parameters
    ----------
    temperatures : array_like, shape (N,)
        Bath temperature of each bead (energy units, k_B = 1).
    k : float
        Spring constant (energy / length^2).
    gamma : float
        Friction coefficient (energy time / length^2).
    """
    temps = check_temperatures(temperatures)
    if not (np.isfinite(k) and np.isfinite(gamma) and k > 0 and gamma > 0):
        raise InputError(f"k and gamma must be positive, got k={k}, gamma={gamma}")
    n = temps.size
    lap = 2.0 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    return LinearDiffusion(-(k / gamma) * lap, np.diag(temps / gamma))


def chain_layout(n_beads: int, cell: int = 20) -> np.ndarray:
    """Rest positions (N, 2) of the beads, (row, column) in unbinned pixels.

    Bead ``i`` sits at the centre of the square ``[0, cell) x [cell i, cell (i + 1))``.
    """
    centre = (cell - 1) / 2.0
    return np.stack([np.full(n_beads, centre), cell * np.arange(n_beads) + centre], axis=1)


def bead_spring(
    n_beads: int = 2,
    t_cold: float = 1.0,
    t_hot: float = 10.0,
    temperatures=None,
    *,
    n_movies: int = 10,
    n_frames: int = 1000,
    dt: float = 0.01,
    seed=0,
    k: float = 1.0,
    gamma: float = 1.0,
    cell: int = 20,
    render: RenderOptions | None = None,
    **render_kwargs,
) -> SimulatedMovies:
    """Movies of a bead-spring chain with exact entropy production.

    Parameters
    ----------
    n_beads : int
        Number of beads N.  Frames are ``cell x (cell N)`` pixels (before binning).
    t_cold, t_hot : float
        End temperatures of the default linear profile (bead 1 cold, bead N hot).
    temperatures : sequence of float, optional
        One temperature per bead; overrides ``t_cold``/``t_hot``.
    n_movies, n_frames : int
        Number of independent stationary movies and frames per movie (>= 2).
    dt : float
        Time between frames (seconds).
    seed : int or numpy.random.SeedSequence
        Seeds the motion and the camera noise (separate streams).
    k, gamma : float
        Spring constant and friction (k = gamma = 1: relaxation times of order 1 s).
    cell : int
        Side of each bead's square, in unbinned pixels.
    render : RenderOptions, optional
    **render_kwargs
        Overrides of :class:`RenderOptions` fields (``psf_sigma``, ``pixels_per_unit``,
        ``background``, ``peak``, ``bit_depth``, ``photons``, ``read_noise``, ``binning``).

    Returns
    -------
    SimulatedMovies
        ``.movies`` (M, T, H, W); ``.truth.ep_rate`` (k_B/s), ``.truth.step_ep``
        (M, T-1), ``.truth.dof_ep_rate`` (N,), ``.truth.map`` (H, W), one region.

    Examples
    --------
    >>> sim = bead_spring(n_movies=2, n_frames=100, seed=0)
    >>> sim.movies.shape, round(sim.truth.ep_rate, 3)
    ((2, 100, 20, 40), 2.025)
    """
    if int(n_beads) != n_beads or n_beads < 1:
        raise InputError(f"number of beads must be a positive integer, got {n_beads}")
    n_beads = int(n_beads)
    if int(cell) != cell or cell < 4:
        raise InputError(f"cell must be an integer >= 4 pixels, got {cell}")
    cell = int(cell)
    temps = chain_temperatures(n_beads, t_cold, t_hot, temperatures)
    model = bead_spring_model(temps, k=k, gamma=gamma)
    opts = render_options(render, **render_kwargs)
    rest = chain_layout(n_beads, cell)
    ppu = opts.pixels_per_unit

    def spot_centres(x):  # (T, N) -> (T, N, 2): beads move along the column axis
        c = np.broadcast_to(rest, (x.shape[0], n_beads, 2)).copy()
        c[..., 1] += x * ppu
        return c

    frame = (cell, cell * n_beads)
    return simulate_and_render(
        system="bead_spring", model=model, n_movies=n_movies, n_frames=n_frames, dt=dt,
        seed=seed, options=opts, frame_shape=frame, spot_centres=spot_centres,
        amplitudes=None, rest_pixels=rest, map_points=rest, map_weights_from_dof=lambda r: r,
        regions=[{"name": f"{n_beads}-bead chain", "rows": slice(0, frame[0]),
                  "cols": slice(0, frame[1]), "dofs": np.arange(n_beads)}],
        info={"n_beads": n_beads, "temperatures": temps.tolist(), "k": float(k),
              "gamma": float(gamma)},
    )
