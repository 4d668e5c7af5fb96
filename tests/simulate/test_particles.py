"""Field of independent particles: closed-form rates, per-particle truth, zeros, layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_dissipation import InputError, simulate
from napari_dissipation.cli import main
from napari_dissipation.simulate import particle_model

DT = 0.01


def gyrator_rate(kxx, kyy, kxy, tx, ty, gamma=1.0):
    """Brownian gyrator's EP rate (Filliger & Reimann 2007), k_B per unit time."""
    return kxy**2 * (tx - ty) ** 2 / (gamma * tx * ty * (kxx + kyy))


def test_models_match_closed_forms():
    # 45 degrees, k = (1.5, 4.5): kxx = kyy = 3, kxy = -1.5.
    assert particle_model(k=(1.5, 4.5), angle=45, temperatures=(1, 10)).ep_rate() == \
        pytest.approx(gyrator_rate(3, 3, -1.5, 1, 10), rel=1e-10)
    assert gyrator_rate(3, 3, -1.5, 1, 10) == pytest.approx(3.0375)
    # Rotor in an isotropic trap: 2 torque^2 / (k gamma), whatever the temperature.
    for temp in (1.0, 3.0):
        rotor = particle_model(k=(1.5, 1.5), angle=0, temperatures=(temp, temp), torque=1.5)
        assert rotor.ep_rate() == pytest.approx(2 * 1.5**2 / 1.5, rel=1e-10)


@pytest.mark.parametrize("spec", [
    {"temperatures": (3.0, 3.0)},                 # one temperature, tilted trap
    {"angle": 0.0, "temperatures": (1.0, 10.0)},  # two temperatures, aligned trap
    {"angle": 90.0, "temperatures": (10.0, 1.0)},
])
def test_no_driving_gives_zero(spec):
    model = particle_model(**spec)
    assert abs(model.ep_rate()) < 1e-12
    x = model.sample(4, 100, DT, 0)
    assert np.abs(model.step_ep(x, DT)).max() < 1e-9


def test_default_field_truth():
    sim = simulate.particle_field(n_movies=24, n_frames=400, seed=0)
    truth = sim.truth
    assert sim.movies.shape == (24, 400, 96, 96) and sim.movies.dtype == np.uint8
    assert len(truth.regions) == 9 == truth.node_ep_rate.size
    assert truth.info["driven_particles"] == [0, 1, 2, 3]
    np.testing.assert_allclose(truth.node_ep_rate, [3.0375] * 3 + [3.0] + [0.0] * 5,
                               atol=1e-10)
    assert truth.ep_rate == pytest.approx(3 * 3.0375 + 3.0, rel=1e-12)
    assert sum(r.ep_rate for r in truth.regions) == pytest.approx(truth.ep_rate)
    np.testing.assert_allclose(truth.step_ep, sum(r.step_ep for r in truth.regions),
                               atol=1e-12)
    for region in truth.regions[4:]:  # equilibrium beads: every transition's EP is 0
        assert np.abs(region.step_ep).max() < 1e-9
    # The sampled mean of the exact EP agrees with the discrete-time rate.
    per_movie = truth.step_ep.mean(axis=1) / DT
    se = per_movie.std(ddof=1) / np.sqrt(per_movie.size)
    assert abs(per_movie.mean() - truth.discrete_ep_rate) < 4 * se
    # The true map: sums to the rate, all of it in the driven particles' cells.
    assert truth.map.sum() == pytest.approx(truth.ep_rate)
    driven = np.zeros(truth.map.shape, bool)
    for region in truth.regions[:4]:
        driven |= region.mask
    assert truth.map[driven].sum() / truth.map.sum() > 0.999
    masks = np.array([r.mask for r in truth.regions])
    assert masks.sum(axis=0).max() == 1 and masks.sum() == 96 * 96


def test_spots_are_where_the_particles_are():
    sim = simulate.particle_field(n_movies=1, n_frames=5, seed=1, layout_seed=None)
    rest = np.array(sim.truth.info["particle_rest_pixels"])
    frame = sim.movies[0, 3].astype(float)
    for i, region in enumerate(sim.truth.regions):
        cell = frame[region.rows, region.cols]
        r, c = np.unravel_index(np.argmax(cell), cell.shape)
        x, y = sim.positions[0, 3, 2 * i: 2 * i + 2]
        expected = rest[i] + (y, x)
        assert abs(r + region.rows.start - expected[0]) <= 1.0
        assert abs(c + region.cols.start - expected[1]) <= 1.0
    # layout_seed=None keeps the order row by row.
    assert sim.truth.regions[1].cols.start == 32 and sim.truth.regions[3].rows.start == 32


def test_all_equilibrium_field_gives_zero():
    sim = simulate.particle_field(n_gyrators=0, n_rotors=0, n_equilibrium=7, n_movies=2,
                                  n_frames=50, cell=16, seed=0)
    assert sim.movies.shape == (2, 50, 48, 48)
    assert abs(sim.truth.ep_rate) < 1e-12
    assert np.abs(sim.truth.step_ep).max() < 1e-9
    assert np.abs(sim.truth.map).max() < 1e-12


def test_seed_custom_particles_and_render_options():
    kw = dict(n_movies=2, n_frames=20, cell=16)
    a = simulate.particle_field(seed=7, **kw)
    b = simulate.particle_field(seed=7, **kw)
    np.testing.assert_array_equal(a.movies, b.movies)
    np.testing.assert_array_equal(a.truth.step_ep, b.truth.step_ep)
    specs = [{"name": "g", "k": (1.0, 4.0), "angle": 45, "temperatures": (1, 10)},
             {"name": "e"}]
    c = simulate.particle_field(specs, layout_seed=None, bit_depth=16, binning=2,
                                photons=100.0, read_noise=0.1, **kw)
    assert c.movies.shape == (2, 20, 8, 16) and c.movies.dtype == np.uint16
    assert c.truth.regions[0].ep_rate == pytest.approx(3.645)  # 1.5^2 * 81 / (10 * 5)
    assert c.truth.regions[1].ep_rate == pytest.approx(3.0375)  # the defaults: a gyrator
    assert c.truth.regions[0].cols == slice(0, 8) and c.truth.regions[1].cols == slice(8, 16)
    json.dumps(c.to_dict())


@pytest.mark.parametrize("kwargs", [
    {"particles": [{"k": (1.0, -1.0)}]}, {"particles": [{"colour": 1}]}, {"particles": []},
    {"cell": 4}, {"n_gyrators": -1}, {"particles": [{"temperatures": (1.0,)}]},
])
def test_bad_input(kwargs):
    with pytest.raises(InputError):
        simulate.particle_field(**{"n_movies": 1, "n_frames": 5, **kwargs})


def test_cli_writes_movies_and_truth(tmp_path):
    out = tmp_path / "field"
    assert main(["simulate", "particle-field", "--movies", "2", "--frames", "10",
                 "--gyrators", "2", "--rotors", "0", "--equilibrium", "2", "--cell", "16",
                 "--out", str(out)]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["system"] == "particle_field" and truth["frame_shape"] == [32, 32]
    assert truth["ep_rate"] == pytest.approx(2 * 3.0375)
    assert len(truth["regions"]) == 4 and truth["driven_particles"] == [0, 1]
    assert np.load(out / "step_ep.npy").shape == (2, 9)
