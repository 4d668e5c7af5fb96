"""Shared steps of the simulators: sample, render, and assemble the truth."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError
from ._types import Region, SimulatedMovies, Truth
from .linear import LinearDiffusion
from .render import RenderOptions, psf_density, render_spots


def check_run_options(n_movies, n_frames, dt) -> None:
    """Refuse run sizes that cannot give a movie with transitions."""
    if int(n_movies) != n_movies or n_movies < 1:
        raise InputError(f"number of movies must be a positive integer, got {n_movies}")
    if int(n_frames) != n_frames or n_frames < 2:
        raise InputError(f"number of frames must be an integer >= 2, got {n_frames}")
    if not (np.isfinite(dt) and dt > 0):
        raise InputError(f"dt must be a positive number of seconds per frame, got {dt}")


def check_temperatures(temps) -> np.ndarray:
    temps = np.asarray(temps, dtype=np.float64).reshape(-1)
    if temps.size == 0 or not np.all(np.isfinite(temps)) or np.any(temps <= 0):
        raise InputError(f"temperatures must be positive numbers, got {temps.tolist()}")
    return temps


def to_output_pixels(points, binning: int) -> np.ndarray:
    """Unbinned pixel coordinates -> coordinates on the binned output grid."""
    return (np.asarray(points, dtype=np.float64) + 0.5) / binning - 0.5


def output_shape(frame_shape: tuple[int, int], options: RenderOptions) -> tuple[int, int]:
    """Frame shape after binning; refuses a frame the binning does not divide."""
    H, W = frame_shape
    b = int(options.binning)
    if H % b or W % b:
        raise InputError(f"frame size {H}x{W} px is not divisible by the binning {b}",
                         option="bin")
    return H // b, W // b


def render_movies(positions: np.ndarray, spot_centres: Callable, frame_shape: tuple[int, int],
                  options: RenderOptions, noise_seq: np.random.SeedSequence, dt: float, *,
                  amplitudes: np.ndarray | None = None) -> np.ndarray:
    """Movies (M, T, H', W') of sampled positions (M, T, n): ``spot_centres`` maps one
    movie's positions to spot centres (T, S, 2) in unbinned pixels; each movie's camera
    noise has its own stream spawned from ``noise_seq``."""
    M, T = positions.shape[:2]
    movies = np.empty((M, T, *output_shape(frame_shape, options)), dtype=options.dtype)
    for m, movie_seq in enumerate(noise_seq.spawn(M)):
        render_spots(spot_centres(positions[m]), frame_shape, options, amplitudes=amplitudes,
                     rng=np.random.default_rng(movie_seq), out=movies[m], dt=dt)
    return movies


def true_rate_map(points: np.ndarray, weights: np.ndarray, out_shape: tuple[int, int],
                  options: RenderOptions) -> np.ndarray:
    """The true EP-rate map: ``weights`` (P,) spread by the PSF around the unbinned
    ``points`` (P, 2), on the binned frame."""
    b = int(options.binning)
    return psf_density(to_output_pixels(points, b), weights, out_shape, options.psf_sigma / b)


def simulate_and_render(
    *,
    system: str,
    model: LinearDiffusion,
    n_movies: int,
    n_frames: int,
    dt: float,
    seed,
    options: RenderOptions,
    frame_shape: tuple[int, int],
    spot_centres: Callable[[np.ndarray], np.ndarray],
    amplitudes: np.ndarray | None,
    rest_pixels: np.ndarray,
    map_points: np.ndarray,
    map_weights_from_dof: Callable[[np.ndarray], np.ndarray],
    regions: list[dict],
    info: dict,
    node_ep_rate_from_dof: Callable[[np.ndarray], np.ndarray] | None = None,
) -> SimulatedMovies:
    """Sample ``model``, render each movie and put the exact truth beside it.

    ``spot_centres`` maps positions (T, n) of one movie to spot centres (T, S, 2) in
    unbinned pixels.  ``map_points`` (P, 2) are the unbinned rest positions over which
    ``map_weights_from_dof(dof_rates)`` (P,) is spread to give the true map.  Each entry
    of ``regions`` has ``name``, ``rows``, ``cols`` (unbinned pixel slices) and ``dofs``.
    """
    check_run_options(n_movies, n_frames, dt)
    out_shape = output_shape(frame_shape, options)
    b = int(options.binning)
    seq = np.random.SeedSequence(seed)
    motion_seq, noise_seq = seq.spawn(2)
    positions = model.sample(int(n_movies), int(n_frames), dt, np.random.default_rng(motion_seq))
    step_ep = model.step_ep(positions, dt)
    dof_rates = model.ep_rate_per_dof()
    ep_rate = float(model.ep_rate())

    movies = render_movies(positions, spot_centres, frame_shape, options, noise_seq, dt,
                           amplitudes=amplitudes)
    true_map = true_rate_map(map_points, map_weights_from_dof(dof_rates), out_shape, options)
    region_records = []
    for r in regions:
        dofs = np.asarray(r["dofs"], dtype=int)
        if len(regions) == 1:
            rate, ep = ep_rate, step_ep
        else:  # an independent block of the model: its own exact truth
            sub = LinearDiffusion(model.drift[np.ix_(dofs, dofs)],
                                  model.diffusion[np.ix_(dofs, dofs)])
            rate, ep = float(sub.ep_rate()), sub.step_ep(positions[..., dofs], dt)
        region_records.append(Region(
            name=r["name"],
            rows=slice(r["rows"].start // b, r["rows"].stop // b),
            cols=slice(r["cols"].start // b, r["cols"].stop // b),
            ep_rate=rate,
            dofs=dofs,
            frame_shape=out_shape,
            step_ep=ep,
        ))
    info = dict(info, dt=float(dt))
    truth = Truth(
        ep_rate=ep_rate,
        step_ep=step_ep,
        step_ep_mean=model.step_ep_mean(dt),
        dof_ep_rate=dof_rates,
        regions=region_records,
        map=true_map,
        node_ep_rate=None if node_ep_rate_from_dof is None else node_ep_rate_from_dof(dof_rates),
        info=info,
    )
    return SimulatedMovies(
        movies=movies, dt=float(dt), pixel_size=options.pixel_size, positions=positions,
        model=model, truth=truth, render=options, system=system,
        rest_pixels=to_output_pixels(rest_pixels, b),
    )
