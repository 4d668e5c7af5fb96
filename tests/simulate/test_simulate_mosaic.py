"""Mosaic of independent chains: truth region by region."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dissipation import InputError, simulate


def test_default_mosaic_driven_left_equilibrium_right():
    sim = simulate.mosaic(n_movies=2, n_frames=200, seed=0)
    assert sim.movies.shape == (2, 200, 20, 80)
    driven, equilibrium = sim.truth.regions
    assert (driven.name, equilibrium.name) == ("driven", "equilibrium")
    assert driven.ep_rate == pytest.approx(2.025, rel=1e-12)
    assert abs(equilibrium.ep_rate) < 1e-12
    assert sim.truth.ep_rate == pytest.approx(driven.ep_rate + equilibrium.ep_rate)
    np.testing.assert_allclose(driven.step_ep + equilibrium.step_ep, sim.truth.step_ep,
                               atol=1e-12)
    assert np.abs(equilibrium.step_ep).max() < 1e-10
    assert driven.cols == slice(0, 40) and equilibrium.cols == slice(40, 80)
    assert driven.mask[:, :40].all() and not driven.mask[:, 40:].any()
    # The true map puts the rate in the driven region.
    assert sim.truth.map[driven.mask].sum() == pytest.approx(driven.ep_rate, rel=1e-6)
    assert sim.truth.map.sum() == pytest.approx(sim.truth.ep_rate, rel=1e-10)


def test_mosaic_region_rates_match_separate_chains():
    chains = [{"name": "a", "n_beads": 3, "t_cold": 1.0, "t_hot": 5.0},
              {"name": "b", "n_beads": 2, "temperatures": [4.0, 1.0], "k": 2.0}]
    sim = simulate.mosaic(chains, n_movies=1, n_frames=20, seed=1, binning=2)
    a, b = sim.truth.regions
    assert a.ep_rate == pytest.approx(
        simulate.bead_spring_model([1.0, 3.0, 5.0]).ep_rate(), rel=1e-12)
    assert b.ep_rate == pytest.approx(
        simulate.bead_spring_model([4.0, 1.0], k=2.0).ep_rate(), rel=1e-12)
    assert sim.movies.shape == (1, 20, 10, 50)  # binned by 2
    assert a.cols == slice(0, 30) and b.cols == slice(30, 50) and a.rows == slice(0, 10)
    assert sim.pixel_size == 2.0
    np.testing.assert_allclose(sim.truth.dof_ep_rate[b.dofs].sum(), b.ep_rate, rtol=1e-10)


def test_mosaic_rejects_bad_chains():
    with pytest.raises(InputError):
        simulate.mosaic([], n_movies=1, n_frames=5)
    with pytest.raises(InputError):
        simulate.mosaic([{"n_beads": 2, "colour": "red"}], n_movies=1, n_frames=5)
