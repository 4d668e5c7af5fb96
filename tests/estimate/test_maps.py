"""Dissipation maps: exact split of ΔS_θ over pixels, movie grid, CLI, and where EP lies.

Exactness is checked with random weights (every parameter and buffer of a fitted network
replaced by random values), where nothing cancels by luck.  The learning tests are small
(a few thousand transitions, a fixed number of training steps, threads=1, marked ``slow``)
and their tolerances loose, but each proves the property it names: the driven half of a
mosaic dominates the map, the driven sites of a filament network stand out.  Full-size
figures are in ``benchmarks/bench_maps.py`` and ``docs/maps.md``.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_dissipation import EPEstimator, simulate
from napari_dissipation.cli import main as cli_main

TINY = dict(threads=1, seed=0, max_iterations=2, eval_every=1, eval_windows=64)


def _randomise(est: EPEstimator, seed: int) -> EPEstimator:
    """Perturb every parameter and buffer of the fitted network with random values."""
    net = est.model_.network
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
        net.patterns.add_(torch.randn(net.patterns.shape, generator=gen) * 0.05)
        net.mean_frame.add_(torch.randn(net.mean_frame.shape, generator=gen) * 0.1)
    return est


def _assert_sums(maps_sum: np.ndarray, target: np.ndarray, rel: float = 1e-4) -> None:
    """``maps_sum`` equals ``target`` within ``rel`` of target's scale (float32 network)."""
    target = np.asarray(target, dtype=np.float64)
    scale = np.abs(target).max()
    assert scale > 1e-3, "random weights should give a ΔS_θ far from zero"
    np.testing.assert_allclose(maps_sum, target, rtol=rel, atol=rel * scale)


@pytest.fixture(scope="module")
def random_estimators(bead_spring_small):
    """Estimators (k = 2 and 3, bin 1 and 2) with random weights, fitted on 20 x 40 movies."""
    movies = bead_spring_small.movies[:, :120]
    out = {}
    for k, b in ((2, 1), (3, 1), (2, 2)):
        est = EPEstimator(frames_per_input=k, bin=b, **TINY)
        est.fit(movies, dt=bead_spring_small.dt)
        out[k, b] = _randomise(est, seed=10 * k + b)
    return out


@pytest.mark.parametrize("k", [2, 3])
def test_maps_sum_to_stochastic_ep_and_rate(random_estimators, bead_spring_small, k):
    est = random_estimators[k, 1]
    model = est.model_
    movie = bead_spring_small.movies[3, :90]
    # window maps: the share of each pixel sums to ΔS_θ of the window
    window_maps = np.concatenate([m for _, m in model.iter_window_maps(movie, batch=16)])
    assert window_maps.shape == (90 - k + 1, 20, 40)
    _assert_sums(window_maps.sum(axis=(1, 2)), model.window_ep(movie))
    # per-transition maps sum to the stochastic EP of each transition; the estimator's
    # methods pass through to its trained model
    maps = est.dissipation_map(movie)
    assert maps.shape == (89, 20, 40) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps, model.dissipation_map(movie))
    _assert_sums(maps.sum(axis=(1, 2), dtype=np.float64), est.stochastic_ep(movie))
    # the averaged map is an EP-rate density: it sums to the movie's rate (k_B/s)
    density = est.ep_rate_density(movie)
    assert density.shape == (20, 40)
    np.testing.assert_allclose(density, model.ep_rate_density(movie, dt=bead_spring_small.dt))
    rate = est.ep_rate(movie)
    assert abs(density.sum() - rate) <= 1e-4 * max(abs(rate), np.abs(density).sum())
    # and the average of the per-transition maps over time, per second, is that density
    # (k = 2: one window per transition)
    if k == 2:
        np.testing.assert_allclose(maps.mean(axis=0, dtype=np.float64) / bead_spring_small.dt,
                                   density, rtol=1e-4, atol=1e-4 * np.abs(density).max())


def test_binned_maps_are_on_the_movie_grid_and_keep_the_sum(random_estimators,
                                                            bead_spring_small):
    est = random_estimators[2, 2]
    movie = bead_spring_small.movies[3, :60]
    maps = est.dissipation_map(movie)
    assert maps.shape == (59, 20, 40)  # the movie's grid, not the 10 x 20 binned one
    _assert_sums(maps.sum(axis=(1, 2), dtype=np.float64), est.stochastic_ep(movie))
    # each binned cell's share is spread evenly over its 2 x 2 pixels
    cells = maps.reshape(59, 10, 2, 20, 2)
    np.testing.assert_allclose(cells, np.broadcast_to(cells[:, :, :1, :, :1], cells.shape),
                               rtol=1e-6, atol=1e-9)
    density = est.ep_rate_density(movie)
    assert density.shape == (20, 40)
    assert density.sum() == pytest.approx(est.ep_rate(movie), rel=1e-4, abs=1e-6)


def test_binned_map_with_a_leftover_row_and_column(bead_spring_small):
    movie = bead_spring_small.movies[:, :80, :19, :39]  # bin 2 drops the last row and column
    est = EPEstimator(bin=2, **TINY)
    est.fit(movie, dt=0.01)
    _randomise(est, seed=5)
    maps = est.dissipation_map(movie[0])
    assert maps.shape == (79, 19, 39)
    assert np.all(maps[:, 18, :] == 0) and np.all(maps[:, :, 38] == 0)
    _assert_sums(maps.sum(axis=(1, 2), dtype=np.float64), est.stochastic_ep(movie[0]))


def test_cli_map_writes_stack_and_mean(random_estimators, bead_spring_small, tmp_path):
    est = random_estimators[2, 1]
    model = est.save(tmp_path / "model.pt")
    movie = np.ascontiguousarray(bead_spring_small.movies[2, :50])
    np.save(tmp_path / "movie.npy", movie)
    out = tmp_path / "maps.tif"
    assert cli_main(["map", str(model), str(tmp_path / "movie.npy"), "--out", str(out)]) == 0
    maps = tifffile.imread(out)
    mean = tifffile.imread(tmp_path / "maps.mean.tif")
    assert maps.shape == (49, 20, 40) and maps.dtype == np.float32
    assert mean.shape == (20, 40) and mean.dtype == np.float32
    _assert_sums(maps.sum(axis=(1, 2), dtype=np.float64), est.stochastic_ep(movie))
    assert mean.sum(dtype=np.float64) == pytest.approx(est.ep_rate(movie), rel=1e-4, abs=1e-5)


# ---------------------------------------------------------------- where the EP lies
@pytest.mark.slow
def test_mosaic_driven_region_dominates_the_map():
    """Driven 2-bead chain beside an equilibrium one: the map's EP lies in the driven half.

    12,000 transitions (a held-out movie of 3,000 frames is what it takes for the warm
    start's fit to count as significant) and 400 steps, measured on an independent movie.
    So short a training may underestimate the rate, so the test asks mainly where the EP
    lies: >= 80% of the map's positive part in the driven region, a clearly
    positive driven integral and an equilibrium integral below a quarter of it.  The
    full-size figures (>= 90% and each region within 15%) are in docs/maps.md.
    """
    sim = simulate.mosaic(n_movies=4, n_frames=3000, seed=0)
    test = simulate.mosaic(n_movies=1, n_frames=3000, seed=1)
    est = EPEstimator(threads=1, seed=0, max_iterations=400, eval_every=100)
    est.fit(sim.movies, dt=sim.dt)
    density = est.ep_rate_density(test.movies[0])
    driven, equilibrium = test.truth.regions
    positive = np.clip(density, 0, None)
    assert positive[driven.mask].sum() >= 0.8 * positive.sum()
    driven_rate = density[driven.mask].sum()
    assert driven_rate > 0.1 * driven.ep_rate
    assert abs(density[equilibrium.mask].sum()) < 0.25 * driven_rate


_SMALL_NETWORK = dict(n_side=4, n_driven=1, frame_size=48, dt=0.02)


def _network_fit(n_movies=16, **kwargs):
    """A 20-node network (one driven node) on 48 x 48 px frames: 16 x 1500 training
    frames, 100 steps after the warm start; the map averaged over 4 independent movies."""
    sim = simulate.filament_network(n_movies=n_movies, n_frames=1500, seed=0,
                                    **_SMALL_NETWORK, **kwargs)
    test = simulate.filament_network(n_movies=4, n_frames=1500, seed=1,
                                     **_SMALL_NETWORK, **kwargs)
    est = EPEstimator(threads=1, seed=0, n_patterns=32, max_iterations=100, eval_every=50)
    fit = est.fit(sim.movies, dt=sim.dt)
    density = np.mean([est.ep_rate_density(m, dt=test.dt) for m in test.movies], axis=0)
    return fit, density, test


@pytest.mark.slow
def test_filament_network_map_finds_the_driven_site():
    """The local patterns of the warm start find the driven cross-link: the map's integral
    is within 20% of the test movies' exact EP rate, the map blurred by half a lattice
    spacing correlates with the equally blurred true map at r >= 0.7, and >= 70% of its
    positive part lies within 1.5 spacings of the driven node (a quarter of the frame).
    Measured here: +0.6%, r = 0.98, 93%.  Full size (2 driven sites, 64 x 64 px):
    benchmarks/bench_maps.py and docs/maps.md."""
    from scipy.ndimage import gaussian_filter

    fit, density, test = _network_fit()
    assert fit.learnt
    exact = test.truth.step_ep.mean() / test.dt
    assert density.sum() == pytest.approx(exact, rel=0.2)
    spacing = test.truth.info["spacing"]
    blurred = [gaussian_filter(m, 0.5 * spacing).ravel() for m in (density, test.truth.map)]
    assert np.corrcoef(*blurred)[0, 1] >= 0.7
    (row, col), = np.asarray(test.truth.info["node_rest_pixels"])[
        test.truth.info["driven_nodes"]]
    yy, xx = np.mgrid[: density.shape[0], : density.shape[1]]
    near = (yy - row) ** 2 + (xx - col) ** 2 <= (1.5 * spacing) ** 2
    positive = np.clip(density, 0, None)
    assert positive[near].sum() >= 0.7 * positive.sum()


@pytest.mark.slow
def test_filament_network_without_driving_gives_zero():
    """The same network with every node at the bath temperature: the map integrates to
    less than 10% of the driven network's rate (exact: 0).  Half the training movies."""
    fit, density, test = _network_fit(n_movies=8, t_driven=1.0)
    assert test.truth.ep_rate == pytest.approx(0.0, abs=1e-10)
    assert abs(density.sum()) < 0.3
