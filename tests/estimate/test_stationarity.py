"""Non-stationarity: the check fires on bleaching and drifts and not on stationary movies;
the correction undoes known disturbances and leaves a stationary movie alone."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_dissipation import simulate
from napari_dissipation.estimate import correction as cr
from napari_dissipation.estimate import stationarity as st

DT = 0.01
#: Bead-spring movies with shot and read noise on a 16-bit camera with an offset.
SIM = dict(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=2, n_frames=1000, dt=DT,
           photons=100.0, read_noise=0.1, bit_depth=16, background=0.1)


@pytest.fixture(scope="module")
def clean():
    return simulate.bead_spring(seed=11, **SIM)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stationary_movies_raise_no_warning(seed):
    for render in ({}, {"bit_depth": 8, "background": 0.0}):
        sim = simulate.bead_spring(seed=seed, **dict(SIM, **render))
        report = st.check_movies(sim.movies, DT)
        assert report.ok, report.warnings
        assert report.warnings == [] and report.to_dict()["ok"]


def test_bleaching_fires_with_its_size():
    sim = simulate.bead_spring(seed=3, bleach=10.0, **SIM)  # 10 s over 10 s: spots at 37%
    report = st.check_movies(sim.movies, DT, ["m0.tif", "m1.tif"])
    assert [f.kind for f in report.findings][0] == "intensity"
    assert report.warnings[0].startswith("Mean intensity falls by")
    assert report.warnings[0].endswith("(bleaching?) in 2 of 2 movies.")
    # The spots (2 x 2 pi (1.5^2 + 1/12) = 29.3 peak-pixels) fall to exp(-1); the camera
    # offset (0.1 of the peak over 800 pixels) does not: the mean falls by 0.63 * 29.3/109.3.
    for row in report.movies:
        assert row["intensity_change"] == pytest.approx(-0.169, abs=0.02)


def test_single_movie_is_named():
    sim = simulate.bead_spring(seed=3, bleach=10.0, **dict(SIM, n_movies=1))
    report = st.check_movies(sim.movies[0], DT, ["cell.tif"])
    assert report.warnings[0].startswith("cell.tif: Mean intensity falls by")


def test_illumination_drift_fires_on_the_background():
    sim = simulate.bead_spring(seed=3, illumination_drift=0.2, **SIM)
    kinds = [f.kind for f in st.check_movies(sim.movies, DT).findings]
    assert "background" in kinds and "intensity" in kinds and "drift" not in kinds


@pytest.mark.parametrize("binned", [False, True])
def test_stage_drift_fires_and_is_measured(binned, monkeypatch):
    # 0.3 px/s straight down the rows: 3 px over 10 s (the beads move along the columns)
    sim = simulate.bead_spring(seed=3, stage_drift=0.3, stage_drift_angle=90.0, **SIM)
    if binned:  # as large frames are registered: 2 x 2 binned
        monkeypatch.setattr(st, "REGISTER_SIDE", max(sim.movies.shape[-2:]) // 2)
    report = st.check_movies(sim.movies, DT)
    assert [f.kind for f in report.findings] == ["drift"]
    for row in report.movies:
        assert row["drift_px"][0] == pytest.approx(3.0, abs=0.3)


def test_too_short_movies_are_left_alone():
    movie = np.random.default_rng(0).poisson(5.0, (20, 8, 8)).astype(np.uint16)
    assert st.check_movies(movie, DT).ok
    assert cr.correct_movie(movie) is movie


@pytest.mark.parametrize("shift", [(3.0, -2.0), (0.4, -1.3)])
def test_image_shift_integer_and_subpixel(shift):
    rng = np.random.default_rng(1)
    scene = ndimage.gaussian_filter(rng.standard_normal((64, 64)), 2.0)
    moved = ndimage.shift(scene, shift, order=3, mode="wrap")
    np.testing.assert_allclose(st.image_shift(moved, scene), shift, atol=0.1)


def test_correction_registers_a_known_drift():
    """A textured scene with slow noise, drifting 4 px diagonally: registered to 0.15 px."""
    rng = np.random.default_rng(2)
    scene = ndimage.gaussian_filter(rng.standard_normal((48, 48)), 2.0) * 1000 + 500
    T = 400
    drift = np.linspace(-2.0, 2.0, T)[:, None] * np.array([1.0, 0.5])
    movie = np.stack([ndimage.shift(scene, d, order=3, mode="nearest") for d in drift])
    movie += rng.normal(0, 30.0, movie.shape)
    report = st.check_movies(movie, DT)
    assert [f.kind for f in report.findings] == ["drift"]
    np.testing.assert_allclose(report.movies[0]["drift_px"], [4.0, 2.0], atol=0.3)
    out = cr.correct_movie(movie)
    core = np.array([b.mean(axis=0)[6:-6, 6:-6] for b in np.array_split(out, 10)])
    err = np.hypot(*st.image_shift(core, core[5]).T)
    assert err.max() < 0.1, err
    # the edges are filled by repeating pixels: check the rest
    assert st.check_movies(out[:, 6:-6, 6:-6], DT).ok


def test_correction_undoes_bleaching_and_illumination():
    """Without camera noise (same motion): the corrected bleached, unevenly lit movie is
    the corrected plain one to 2% of the signal, frame by frame."""
    plain = dict(SIM, photons=None, read_noise=0.0)
    a_sim = simulate.bead_spring(seed=11, **plain)
    b_sim = simulate.bead_spring(seed=11, bleach=10.0, illumination_drift=0.2, **plain)
    for m in range(2):
        # The plain movie is left as it is (nothing flagged); its flat background goes
        # with each frame's mean, and each movie has its own level: compare shapes.
        a = a_sim.movies[m].astype(np.float32)
        b = cr.correct_movie(b_sim.movies[m])
        a = a - a.mean(axis=(1, 2), keepdims=True)
        b = b - b.mean(axis=(1, 2), keepdims=True)
        a, b = a / np.sqrt(np.mean(a**2)), b / np.sqrt(np.mean(b**2))
        signal = np.sqrt(np.mean(a**2, axis=(1, 2)))
        err = np.sqrt(np.mean((b - a) ** 2, axis=(1, 2))) / signal
        assert err.max() < 0.02, err.max()
    report = st.check_movies(b_sim.movies, DT)
    assert "background" in {f.kind for f in report.findings}
    assert st.check_movies([cr.correct_movie(b_sim.movies[0])], DT).ok


def test_a_stationary_movie_is_left_exactly_as_it_is(clean):
    """Nothing flagged, nothing changed: the same object comes back, so a clean movie
    gives exactly the rate it gives with the correction off."""
    for movie in clean.movies[:2]:
        assert cr.correct_movie(movie) is movie
    given = list(clean.movies[:2])
    movies, warnings = cr.prepare_movies(given, DT, ["a.tif", "b.tif"], correct=True)
    assert warnings == [] and all(a is b for a, b in zip(movies, given, strict=True))


def test_prepare_movies_says_what_was_done():
    sim = simulate.bead_spring(seed=5, bleach=10.0, **SIM)
    movies, warnings = cr.prepare_movies(sim.movies, DT, ["a.tif", "b.tif"], correct=False)
    assert movies[0] is sim.movies[0] or np.shares_memory(movies[0], sim.movies)
    assert warnings[0].endswith("not corrected (nonstationarity=check): the rate may "
                                "include it.")
    movies, warnings = cr.prepare_movies(sim.movies, DT, ["a.tif", "b.tif"], correct=True)
    assert movies[0].dtype == np.float32
    assert "; corrected (" in warnings[0]
    assert not any(w.startswith("After the correction") for w in warnings)


def test_inference_applies_the_training_correction_and_old_models_do_not(tmp_path):
    import json

    import torch

    from napari_dissipation.estimate.config import EstimatorConfig
    from napari_dissipation.estimate.data import Normalisation
    from napari_dissipation.estimate.trained import TrainedModel, build_network, load_model

    sim = simulate.bead_spring(seed=5, bleach=5.0, **dict(SIM, n_movies=1, n_frames=200))
    movie = sim.movies[0]
    config = EstimatorConfig(frames_per_input=2, channels=0, n_patterns=2, hidden=4)
    assert config.nonstationarity == "correct"
    model = TrainedModel(build_network(config, movie.shape[1:]),
                         norm=Normalisation(0.0, 1.0), frame_shape=movie.shape[1:],
                         raw_frame_shape=movie.shape[1:], dt=DT, config=config)
    np.testing.assert_array_equal(model._windows_of(movie, "m").movies[0],
                                  cr.correct_movie(movie))
    path = model.save(tmp_path / "model.pt")
    assert load_model(path).config.nonstationarity == "correct"
    # a file written before the option existed: trained on raw movies, read them raw
    blob = torch.load(path, weights_only=True)
    cfg = json.loads(blob["config"])
    del cfg["options"]["nonstationarity"]
    blob["config"] = json.dumps(cfg)
    torch.save(blob, tmp_path / "old.pt")
    old = load_model(tmp_path / "old.pt")
    assert old.config.nonstationarity == "check"
    assert old._windows_of(movie, "m").movies[0] is movie


def test_the_tukey_window_is_scipys():
    from scipy.signal.windows import tukey

    from napari_dissipation.estimate.stationarity import _tukey

    for n in (1, 2, 3, 8, 17, 40, 256, 513):
        np.testing.assert_allclose(_tukey(n, 0.25), tukey(n, 0.25), atol=1e-12)


def test_large_frames_are_registered_binned_on_their_centre(monkeypatch):
    # 300 x 300 px registered as 100 x 100 sums of 2 x 2 px from the central 200 x 200
    monkeypatch.setattr(st, "REGISTER_SIDE", 100)
    rng = np.random.default_rng(2)
    scene = ndimage.gaussian_filter(rng.standard_normal((300, 300)), 3.0)
    drift = np.linspace(0.0, 2.5, 240)  # px along the rows
    movie = np.stack([ndimage.shift(scene, (d, 0.0), order=3, mode="wrap") for d in drift])
    movie = (movie + 0.05 * rng.standard_normal(movie.shape)).astype(np.float32)
    assert st._for_registration(movie[:3], 2).shape == (3, 100, 100)
    row = st.check_movies(movie, DT).movies[0]
    assert row["drift_px"][0] == pytest.approx(2.5, abs=0.2)
    assert row["drift_px"][1] == 0.0
