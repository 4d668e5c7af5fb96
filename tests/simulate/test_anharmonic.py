"""Anharmonic (quartic) chain: the truth against independent exact results, and zeros.

Measured (defaults k = 1, k4 = 3, Tc = 1, Th = 10, dt = 0.01 s): the grid rate with
k4 = 0 is within 7e-5 of the linear chain's 2.025 k_B/s; the Richardson-extrapolated grid
rate moves by 8e-4 from (65, 129) to (129, 257) points; halving the substep moves the mean
rate by about 0.5-1% at n_sub = 10-20 and a transition's EP by about 0.04 k_B rms (its
scatter is about 0.64 k_B).  The tolerances below leave room above those figures.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_dissipation import InputError, simulate
from napari_dissipation.cli import main
from napari_dissipation.simulate import AnharmonicChain, bead_spring_model
from napari_dissipation.simulate.anharmonic import substep_error

DT = 0.01


def gaussian_rate(x: np.ndarray, dt: float) -> float:
    """EP rate of the best linear (Gaussian) model of pairs of frames: what it can carry."""
    n = x.shape[-1]
    a, b = x[:, :-1].reshape(-1, n), x[:, 1:].reshape(-1, n)
    c0 = 0.5 * (a.T @ a + b.T @ b) / len(a)
    c1 = b.T @ a / len(a)
    fwd = np.block([[c0, c1.T], [c1, c0]])
    rev = np.block([[c0, c1], [c1.T, c0]])
    return 0.5 * (np.trace(np.linalg.solve(rev, fwd)) - 2 * n) / dt


def test_linear_limit_matches_bead_spring():
    sim = simulate.anharmonic_chain(k4=0.0, n_movies=16, n_frames=400, n_sub=10, seed=1)
    linear = bead_spring_model([1.0, 10.0])
    assert sim.truth.ep_rate == pytest.approx(2.025, rel=2e-4)
    np.testing.assert_allclose(sim.truth.dof_ep_rate, linear.ep_rate_per_dof(), rtol=3e-3)
    # Per transition: the path's EP (heat + system term) against the exact kernel EP of
    # the same frames (what a two-frame estimator sees); measured R^2 0.98 at dt = 0.01.
    kernel = linear.step_ep(sim.positions, DT)
    resid = sim.truth.step_ep - kernel
    assert 1 - resid.var() / kernel.var() > 0.95


def test_equal_temperatures_give_zero():
    sim = simulate.anharmonic_chain(t_cold=4.0, t_hot=4.0, n_movies=4, n_frames=200,
                                    n_sub=8, seed=2)
    chain = sim.model
    assert abs(sim.truth.ep_rate) < 1e-10
    assert np.abs(sim.truth.dof_ep_rate).max() < 1e-10
    assert np.abs(sim.truth.step_ep).max() < 1e-9
    # The heat alone is not zero per transition: it is the boundary term -dU / T.
    dU = chain.energy(sim.positions[:, 1:]) - chain.energy(sim.positions[:, :-1])
    assert np.abs(sim.truth.step_ep_medium).max() > 0.1
    np.testing.assert_allclose(sim.truth.step_ep_medium, -dU / 4.0, atol=1e-9)
    assert np.abs(sim.truth.map).max() < 1e-10


def test_equilibrium_law_is_boltzmann():
    chain = AnharmonicChain([2.0, 2.0], k=1.0, k4=3.0)
    law = chain.stationary_law(65)
    mesh = np.stack(np.meshgrid(law.axis, law.axis, indexing="ij"), axis=-1)
    boltzmann = np.exp(-chain.energy(mesh) / 2.0)
    boltzmann /= boltzmann.sum() * law.h**2
    np.testing.assert_allclose(law.density, boltzmann, rtol=1e-6, atol=1e-12)
    assert abs(law.ep_rate) < 1e-12


def test_heat_balances_energy_exactly():
    chain = AnharmonicChain([1.0, 10.0], k4=3.0)
    rng = np.random.default_rng(0)
    x, heat = chain.integrate(chain.stationary_law().sample(8, rng), 50, DT, 6, rng)
    dU = chain.energy(x[:, 1:]) - chain.energy(x[:, :-1])
    np.testing.assert_allclose(heat.sum(-1), -dU, atol=1e-11)
    assert heat.shape == (8, 49, 2) and x.shape == (8, 50, 2)


def test_quartic_truth_converges_and_is_not_linear():
    chain = AnharmonicChain([1.0, 10.0], k=1.0, k4=3.0)
    fine, coarse = chain.stationary_law(257), chain.stationary_law(129)
    half = chain.stationary_law(65)
    rich_fine = (4 * fine.ep_rate - coarse.ep_rate) / 3
    rich_coarse = (4 * coarse.ep_rate - half.ep_rate) / 3
    assert rich_fine == pytest.approx(rich_coarse, rel=2e-3)  # measured 8e-4
    assert rich_fine == pytest.approx(14.288, rel=1e-3)
    assert rich_fine > 5 * 2.025  # far from the linear chain's rate
    err = substep_error(chain, n_sub=10, n_paths=32, n_frames=201, seed=0)
    assert err["rate"] == pytest.approx(err["rate_fine"], rel=0.03)
    assert err["rms_step_difference"] < 0.15 * err["step_sd"]


def test_sampled_rate_matches_grid_rate_and_linear_model_misses_it():
    sim = simulate.anharmonic_chain(n_movies=48, n_frames=600, n_sub=20, seed=5)
    per_movie = sim.truth.step_ep.mean(axis=1) / DT
    se = per_movie.std(ddof=1) / np.sqrt(per_movie.size)
    assert abs(per_movie.mean() - sim.truth.ep_rate) < 4 * se + 0.01 * sim.truth.ep_rate
    # The EP is not bilinear: a Gaussian model of the same frames carries ~65% of it.
    assert gaussian_rate(sim.positions, DT) < 0.8 * sim.truth.ep_rate


def test_shapes_dtypes_and_seed():
    kw = dict(n_movies=2, n_frames=30, n_sub=4, n_grid=65)
    a = simulate.anharmonic_chain(seed=3, **kw)
    b = simulate.anharmonic_chain(seed=3, **kw)
    c = simulate.anharmonic_chain(seed=4, **kw)
    assert a.movies.shape == (2, 30, 20, 40) and a.movies.dtype == np.uint8
    assert a.truth.step_ep.shape == (2, 29) == a.truth.step_ep_medium.shape
    np.testing.assert_array_equal(a.movies, b.movies)
    np.testing.assert_array_equal(a.truth.step_ep, b.truth.step_ep)
    assert not np.array_equal(a.truth.step_ep, c.truth.step_ep)
    assert a.truth.map.sum() == pytest.approx(a.truth.ep_rate)
    assert a.pixel_size == 0.5 and a.system == "anharmonic_chain"
    noisy = simulate.anharmonic_chain(seed=3, bit_depth=16, binning=2, read_noise=0.1,
                                      photons=100.0, **kw)
    assert noisy.movies.shape == (2, 30, 10, 20) and noisy.movies.dtype == np.uint16
    np.testing.assert_array_equal(noisy.positions, a.positions)  # same motion
    json.dumps(a.to_dict())


@pytest.mark.parametrize("kwargs", [{"n_beads": 3}, {"n_sub": 0}, {"k4": -1.0},
                                    {"t_hot": -1.0}, {"n_frames": 1}])
def test_bad_input(kwargs):
    with pytest.raises(InputError):
        simulate.anharmonic_chain(**{"n_movies": 1, "n_frames": 5, "n_sub": 2, **kwargs})


def test_cli_writes_movies_and_truth(tmp_path):
    out = tmp_path / "chain"
    assert main(["simulate", "anharmonic-chain", "--movies", "2", "--frames", "20",
                 "--substeps", "4", "--quartic", "1", "--out", str(out)]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["system"] == "anharmonic_chain" and truth["k4"] == 1.0
    assert truth["ep_rate"] == pytest.approx(8.50, rel=2e-3)
    assert np.load(out / "step_ep.npy").shape == (2, 19)
    assert (out / "movie_001.tif").exists()
