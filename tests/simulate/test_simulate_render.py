"""Rendering positions to frames: spot placement, camera noise, binning, bit depth."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dissipation.simulate import RenderOptions, psf_density, render_spots


def centroid(frame):
    frame = frame.astype(np.float64)
    r, c = np.mgrid[: frame.shape[0], : frame.shape[1]]
    return (frame * r).sum() / frame.sum(), (frame * c).sum() / frame.sum()


def test_spot_centroid_within_a_tenth_of_a_pixel(rng):
    centres = rng.uniform(10, 22, size=(50, 1, 2))
    for bits in (8, 16):
        frames = render_spots(centres, (32, 32), RenderOptions(bit_depth=bits))
        assert frames.dtype == (np.uint8 if bits == 8 else np.uint16)
        for f, c in zip(frames, centres[:, 0], strict=True):
            np.testing.assert_allclose(centroid(f), c, atol=0.1)


def test_peak_and_background_levels():
    opts = RenderOptions(psf_sigma=2.0, background=0.1, peak=100.0)
    frame = render_spots(np.array([[[15.0, 15.0]]]), (31, 31), opts)[0]
    assert frame[0, 0] == 10  # background is a fraction of the peak
    assert frame[15, 15] == 110  # a spot centred on a pixel: peak + background there
    assert frame[15, 16] < 110 and frame[15, 16] == frame[15, 14] == frame[16, 15]


def test_binning_keeps_centroid_on_the_binned_grid(rng):
    c = rng.uniform(12, 20, size=(10, 1, 2))
    frames = render_spots(c, (32, 32), RenderOptions(binning=2, bit_depth=16, psf_sigma=2.0))
    assert frames.shape == (10, 16, 16)
    for f, ci in zip(frames, c[:, 0], strict=True):
        np.testing.assert_allclose(centroid(f), (ci + 0.5) / 2 - 0.5, atol=0.1)
    assert RenderOptions(binning=2, pixels_per_unit=1.0).pixel_size == 2.0


def test_read_noise_is_a_fraction_of_the_peak():
    opts = RenderOptions(background=0.5, read_noise=0.1, bit_depth=16, peak=10000.0)
    frames = render_spots(np.full((20, 1, 2), -50.0), (32, 32), opts, rng=0)
    assert frames.mean() == pytest.approx(5000, abs=30)  # 4 standard errors
    assert frames.std() == pytest.approx(1000, rel=0.05)


def test_shot_noise_is_poisson():
    photons = 20.0
    opts = RenderOptions(background=1.0, photons=photons, bit_depth=16, peak=1000.0)
    frames = render_spots(np.full((20, 1, 2), -50.0), (32, 32), opts, rng=1).astype(float)
    counts = frames / 1000 * photons  # back to photons
    assert counts.mean() == pytest.approx(photons, rel=0.02)
    assert counts.var() == pytest.approx(photons, rel=0.1)


def test_noise_is_seeded():
    opts = RenderOptions(photons=30.0, read_noise=0.3)
    c = np.full((5, 1, 2), 8.0)
    a = render_spots(c, (16, 16), opts, rng=3)
    np.testing.assert_array_equal(a, render_spots(c, (16, 16), opts, rng=3))
    assert not np.array_equal(a, render_spots(c, (16, 16), opts, rng=4))


def test_clipping_to_bit_depth():
    frames = render_spots(np.full((1, 3, 2), 8.0), (16, 16), RenderOptions(peak=250.0))
    assert frames.max() == 255


def test_chunks_do_not_change_the_result(rng):
    c = rng.uniform(4, 12, size=(37, 2, 2))
    opts = RenderOptions(bit_depth=16)
    np.testing.assert_array_equal(render_spots(c, (16, 16), opts, chunk=5),
                                  render_spots(c, (16, 16), opts))


def test_psf_density_sums_to_weights():
    m = psf_density([[2.0, 3.0], [10.0, 10.0]], [1.5, 0.5], (16, 20), 1.5)
    assert m.shape == (16, 20)
    assert m.sum() == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("bad", [dict(psf_sigma=0), dict(bit_depth=12), dict(binning=0),
                                 dict(read_noise=-1), dict(photons=0), dict(peak=300)])
def test_bad_render_options(bad):
    with pytest.raises(ValueError):
        RenderOptions(**bad)
