"""Microscope disturbances in the renderer: exact in form, off by default, truth unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_dissipation import simulate
from napari_dissipation.cli import main
from napari_dissipation.errors import InputError
from napari_dissipation.simulate import RenderOptions, render_spots

DT = 0.01
NOISY = dict(n_beads=2, n_movies=2, n_frames=300, dt=DT, photons=100.0, read_noise=0.1)


def test_truth_and_motion_identical_with_and_without_disturbances():
    plain = simulate.bead_spring(seed=4, **NOISY)
    moved = simulate.bead_spring(seed=4, bleach=2.0, illumination_drift=0.3, stage_drift=1.0,
                                 **NOISY)
    np.testing.assert_array_equal(plain.positions, moved.positions)
    np.testing.assert_array_equal(plain.truth.step_ep, moved.truth.step_ep)
    assert plain.truth.ep_rate == moved.truth.ep_rate
    assert not np.array_equal(plain.movies, moved.movies)
    assert moved.to_dict()["render"]["bleach"] == 2.0


def test_off_by_default_gives_the_same_frames():
    opts = RenderOptions(photons=50.0, read_noise=0.1)
    assert opts.bleach is None and opts.illumination_drift == 0 and opts.stage_drift == 0
    c = np.full((30, 1, 2), 10.0)
    np.testing.assert_array_equal(render_spots(c, (20, 20), opts, rng=1),
                                  render_spots(c, (20, 20), opts, rng=1, dt=DT))


def test_bleaching_is_exponential_in_seconds():
    opts = RenderOptions(bit_depth=16, bleach=0.5)
    frames = render_spots(np.full((101, 1, 2), 15.0), (31, 31), opts, dt=DT).astype(float)
    sums = frames.sum(axis=(1, 2))
    # 16-bit rounding: better than 1e-3 of the brightness at these levels
    np.testing.assert_allclose(sums / sums[0], np.exp(-np.arange(101) * DT / 0.5), rtol=1e-3)


@pytest.mark.parametrize("binning", [1, 2])
def test_stage_drift_moves_the_centroid_at_the_given_speed(binning):
    speed, angle, n = 5.0, 30.0, 51  # 5 output px/s -> 2.5 px over 0.5 s
    opts = RenderOptions(bit_depth=16, stage_drift=speed, stage_drift_angle=angle,
                         binning=binning, psf_sigma=2.0)
    frames = render_spots(np.full((n, 1, 2), 31.5), (64, 64), opts, dt=DT).astype(float)
    rows, cols = np.indices(frames.shape[1:])
    mass = frames.sum(axis=(1, 2))
    centroid = np.stack([(frames * rows).sum(axis=(1, 2)) / mass,
                         (frames * cols).sum(axis=(1, 2)) / mass], axis=1)
    moved = centroid[-1] - centroid[0]
    want = speed * (n - 1) * DT * np.array([np.sin(np.deg2rad(angle)), np.cos(np.deg2rad(angle))])
    np.testing.assert_allclose(moved, want, atol=0.02)
    # centred on the rest position in the middle of the movie
    np.testing.assert_allclose(centroid[n // 2], (31.5 + 0.5) / binning - 0.5, atol=0.02)


def test_illumination_drift_is_a_rising_tilt():
    opts = RenderOptions(bit_depth=16, illumination_drift=0.2)
    frames = render_spots(np.full((11, 1, 2), -100.0), (20, 20), opts, dt=DT).astype(float)
    peak = opts.peak_value
    assert frames[0].max() == 0
    np.testing.assert_allclose(frames[-1].mean(), 0.2 * peak, rtol=1e-3)
    np.testing.assert_allclose([frames[-1, 0, 0], frames[-1, -1, -1]],
                               [0.1 * peak, 0.3 * peak], rtol=1e-3)
    np.testing.assert_allclose(frames[5].mean(), 0.1 * peak, rtol=1e-3)


def test_disturbances_need_dt_and_sensible_values():
    with pytest.raises(ValueError, match="dt"):
        render_spots(np.zeros((3, 1, 2)), (8, 8), RenderOptions(bleach=1.0))
    for bad in ({"bleach": 0.0}, {"bleach": -1.0}, {"illumination_drift": -0.1},
                {"stage_drift": float("nan")}):
        with pytest.raises(InputError):
            RenderOptions(**bad)


def test_cli_flags(tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["simulate", "bead-spring", "--movies", "1", "--frames", "50", "--bleach",
                 "3", "--illumination-drift", "0.1", "--stage-drift", "0.5", "--out",
                 str(out)]) == 0
    render = json.loads((out / "truth.json").read_text())["render"]
    assert (render["bleach"], render["illumination_drift"], render["stage_drift"]) == \
        (3.0, 0.1, 0.5)
