"""The local (tile) family of the warm start: pattern slots, fits of tiles one after the
other, and a field of particles at equilibrium, against the simulators' exact truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dissipation import simulate

DT = 0.01


def test_local_pattern_slots_grow_with_the_frame_and_leave_small_frames_alone():
    from napari_dissipation.estimate.config import EstimatorConfig
    from napari_dissipation.estimate.tiles import (
        MAX_LOCAL_SLOTS,
        TILE_SLOTS_PER_TILE,
        local_pattern_slots,
    )
    from napari_dissipation.estimate.trained import build_network

    assert local_pattern_slots((20, 40)) == 0
    assert local_pattern_slots((47, 200)) == 0
    assert local_pattern_slots((72, 72)) == 9 * TILE_SLOTS_PER_TILE  # 3 x 3 tiles of 24 px
    assert local_pattern_slots((48, 96)) == 8 * TILE_SLOTS_PER_TILE  # 2 x 4 tiles of 24 px
    assert local_pattern_slots((512, 512)) == MAX_LOCAL_SLOTS
    config = EstimatorConfig(frames_per_input=2, n_patterns=16)
    small = build_network(config, (20, 40))
    assert small.n_patterns == 16 and small.local_slots == 0
    field = build_network(config, (72, 72))
    assert field.n_patterns == 16 + 9 * TILE_SLOTS_PER_TILE
    assert field.local_slots == 9 * TILE_SLOTS_PER_TILE


def test_a_model_file_from_before_the_local_slots_still_loads(tmp_path):
    from napari_dissipation.estimate.config import EstimatorConfig
    from napari_dissipation.estimate.data import Normalisation
    from napari_dissipation.estimate.trained import TrainedModel, build_network, load_model

    config = EstimatorConfig(frames_per_input=2, channels=0, n_patterns=3, hidden=4)
    old = build_network(config, (48, 48), n_local=0)  # as files before the slots were
    with torch.no_grad():
        old.patterns.normal_()
    model = TrainedModel(old, norm=Normalisation(0.0, 1.0), frame_shape=(48, 48),
                         raw_frame_shape=(48, 48), dt=DT, config=config)
    loaded = load_model(model.save(tmp_path / "old.pt"))
    assert loaded.network.n_patterns == 3
    torch.testing.assert_close(loaded.network.patterns, old.patterns)


def _particle_coordinates(sim, particles, movies):
    """Even (sum) and odd (difference) coordinates of two-frame windows, (N, 1, 2 n)."""
    cols = np.concatenate([[2 * i, 2 * i + 1] for i in particles])
    x = sim.positions[movies][..., cols]  # (M, T, 2 n)
    z = torch.as_tensor((x[:, 1:] + x[:, :-1]).reshape(-1, len(cols)), dtype=torch.float32)
    dz = torch.as_tensor((x[:, 1:] - x[:, :-1]).reshape(-1, len(cols)), dtype=torch.float32)
    ep = sim.truth.step_ep[movies].reshape(-1)
    return z[:, None], dz[:, None], ep


def test_tiles_fitted_one_after_another_match_the_joint_fit_and_the_exact_ep():
    """Independent particles add their EP: a fit of each particle's block on what the ones
    before it leave (the tile family's fit, cost linear in the number of blocks) equals the
    joint block-diagonal Newton fit, and on exact positions (a bilinear read-out is exact
    in form for these linear particles) both give the held-out transitions' exact EP."""
    from napari_dissipation.estimate.candidates import _fit
    from napari_dissipation.estimate.tiles import _boosted_fit

    sim = simulate.particle_field(n_gyrators=2, n_rotors=1, n_equilibrium=1, n_movies=12,
                                  n_frames=2000, dt=DT, seed=4, cell=16)
    fit_m, ev_m = np.arange(8), np.arange(8, 12)
    z, dz, _ = _particle_coordinates(sim, range(4), fit_m)
    z_ev, dz_ev, exact = _particle_coordinates(sim, range(4), ev_m)
    coords = (z, dz, z_ev, dz_ev)
    blocks = [np.array([2 * i, 2 * i + 1]) for i in range(4)]
    boosted = _boosted_fit(coords, blocks)
    joint = _fit(*coords, blocks)
    assert boosted["significant"]
    assert boosted["val_mean_ep"] == pytest.approx(joint["val_mean_ep"], rel=0.01)
    assert boosted["val_mean_ep"] == pytest.approx(exact.mean(), rel=0.05)
    # per transition too: the fitted EP is the exact one up to the fit's noise
    r = np.corrcoef(boosted["ep"].numpy(), exact)[0, 1]
    assert r > 0.97
    # the equilibrium particle's block (the last) carries next to nothing
    last = boosted["theta"][-6:]
    z4, dz4 = z_ev[:, :, blocks[3]], dz_ev[:, :, blocks[3]]
    from napari_dissipation.estimate.candidates import _features
    ep4 = _features(z4, dz4).double() @ last
    assert abs(float(ep4.mean())) < 0.05 * exact.mean()


@pytest.mark.slow
def test_an_equilibrium_field_gives_an_interval_containing_zero():
    """Nine beads at one temperature each, no torque (48 x 48 px: the tile family runs)."""
    from napari_dissipation import EPEstimator

    specs = [{"k": (1.5, 4.5), "angle": a, "temperatures": (t, t)}
             for a, t in zip((0, 45, -30, 60, 10, 80, -45, 20, 30),
                             (1, 3, 10, 2, 5, 1, 3, 10, 2), strict=True)]
    sim = simulate.particle_field(specs, n_movies=8, n_frames=800, dt=DT, seed=2, cell=16)
    assert sim.truth.ep_rate == pytest.approx(0.0, abs=1e-12)
    torch.set_num_threads(1)
    est = EPEstimator(seed=0, threads=1, max_seconds=30, frames_per_input=2)
    fit = est.fit(sim.movies, dt=DT)
    lo, hi = fit.ep_rate_ci
    assert lo <= 0.0 <= hi


def test_the_time_budget_cuts_the_warm_start_short():
    """A budget already spent: one pattern count per blur scale at most, no tile stage,
    and the rate said to be a lower bound for it."""
    from napari_dissipation import EPEstimator
    from napari_dissipation.estimate.warmstart import SMOOTHINGS

    sim = simulate.particle_field(n_gyrators=2, n_equilibrium=2, n_cols=2, cell=24,
                                  n_movies=4, n_frames=400, dt=DT, seed=3)
    assert min(sim.movies.shape[-2:]) >= 48  # frames the tile family runs on
    fit = EPEstimator(seed=0, threads=1, max_seconds=0.001, frames_per_input=2).fit(
        sim.movies, dt=DT)
    warm = fit.history[0]["warm_start"]
    assert warm["cut_short"]
    assert [t for t in warm["tried"] if t["family"].startswith("tiles")] == []
    whole = [t["smoothing"] for t in warm["tried"] if t["family"] == "whole"]
    assert 1 <= len(whole) == len(set(whole)) <= len(SMOOTHINGS)
    assert any("cut short" in r for r in fit.lower_bound_reasons)
