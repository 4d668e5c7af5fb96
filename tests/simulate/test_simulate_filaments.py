"""Filament network: exact truth consistency, equilibrium, rendering."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dissipation import InputError, simulate
from napari_dissipation.simulate import build_network


@pytest.fixture(scope="module")
def network_sim():
    return simulate.filament_network(n_movies=2, n_frames=150, seed=0)


def test_truth_is_consistent(network_sim):
    sim = network_sim
    truth = sim.truth
    n = truth.info["n_nodes"]
    assert sim.movies.shape == (2, 150, 64, 64) and sim.movies.dtype == np.uint8
    assert sim.positions.shape == (2, 150, 2 * n)
    assert truth.step_ep.shape == (2, 149)
    assert truth.dof_ep_rate.shape == (2 * n,) and truth.node_ep_rate.shape == (n,)
    assert truth.node_ep_rate.sum() == pytest.approx(truth.ep_rate, rel=1e-10)
    assert truth.dof_ep_rate.sum() == pytest.approx(truth.ep_rate, rel=1e-10)
    assert truth.map.shape == (64, 64)
    assert truth.map.sum() == pytest.approx(truth.ep_rate, rel=1e-10)
    assert 1.0 <= truth.ep_rate <= 10.0  # the documented default range (k_B/s)
    assert 0 < truth.discrete_ep_rate < truth.ep_rate


def test_dissipation_sits_at_the_driven_sites(network_sim):
    truth = network_sim.truth
    driven = truth.info["driven_nodes"]
    assert len(driven) == 2
    rest = np.array(truth.info["node_rest_pixels"])
    spacing = truth.info["spacing"]
    near = np.min(np.linalg.norm(rest[:, None] - rest[driven][None], axis=2), axis=1)
    # The driven nodes and their nearest neighbours carry most of the rate.
    assert truth.node_ep_rate[near < 1.5 * spacing].sum() > 0.9 * truth.ep_rate
    assert set(np.argsort(truth.node_ep_rate)[-6:]) & set(driven)


def test_displacements_are_below_a_pixel(network_sim):
    C = network_sim.model.stationary_covariance()
    std = np.sqrt(np.diag(C))
    assert 0.3 < np.median(std) < 0.7
    assert std.max() < 0.1 * network_sim.truth.info["spacing"]  # linearisation sensible
    assert (network_sim.movies == 255).mean() < 1e-3  # hardly any clipping


def test_equal_temperatures_give_zero():
    sim = simulate.filament_network(n_movies=1, n_frames=20, t_driven=1.0, t_bath=1.0)
    assert abs(sim.truth.ep_rate) < 1e-10
    assert np.abs(sim.truth.node_ep_rate).max() < 1e-10
    assert np.abs(sim.truth.step_ep).max() < 1e-8


def test_sampled_step_ep_matches_analytic_mean():
    model = build_network(n_side=3, spacing=8.0).model()
    dt = 0.05
    x = model.sample(200, 100, dt, rng=5)
    per_traj = model.step_ep(x, dt).mean(1)
    se = per_traj.std(ddof=1) / np.sqrt(per_traj.size)
    assert abs(per_traj.mean() - model.step_ep_mean(dt)) < 4 * se


def test_seeds_and_options():
    a = simulate.filament_network(n_movies=1, n_frames=10, seed=3, read_noise=0.2)
    b = simulate.filament_network(n_movies=1, n_frames=10, seed=3, read_noise=0.2)
    np.testing.assert_array_equal(a.movies, b.movies)
    c = simulate.filament_network(n_movies=1, n_frames=10, n_side=4, n_driven=1,
                                  binning=2, bit_depth=16, node_brightness=0.0)
    assert c.movies.shape == (1, 10, 32, 32) and c.movies.dtype == np.uint16
    assert len(c.truth.info["driven_nodes"]) == 1
    assert c.truth.map.shape == (32, 32)
    assert c.truth.map.sum() == pytest.approx(c.truth.ep_rate, rel=1e-10)
    d = simulate.filament_network(n_movies=1, n_frames=10, driven_nodes=[0, 5, 9])
    assert d.truth.info["driven_nodes"] == [0, 5, 9]


@pytest.mark.parametrize("bad", [dict(n_side=1), dict(stiffness=0), dict(n_driven=99),
                                 dict(spacing=30.0), dict(driven_nodes=[1000]),
                                 dict(n_frames=1)])
def test_bad_options(bad):
    with pytest.raises(InputError):
        simulate.filament_network(**(dict(n_movies=1, n_frames=5) | bad))
