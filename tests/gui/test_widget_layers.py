"""The widget's layout helpers, without napari or a display."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_dissipation.gui.layers import (
    DISSIPATION_COLORMAP,
    MovieSelection,
    dt_from_layer,
    format_rate,
    layer_problem,
    rate_density_layer,
    simulation_truth,
    symmetric_limits,
    time_axis_choices,
    transition_map_layer,
)


@pytest.mark.parametrize("module", ["layers", "session", "jobs", "sample_data"])
def test_qt_free_parts_do_not_import_napari_qt_or_torch(module):
    code = (f"import sys, napari_dissipation.gui.{module}; "
            "print(sorted(m for m in ('napari', 'qtpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("shape", "rgb", "multiscale", "words"),
    [
        ((16, 16), False, False, "2-D image"),
        ((5, 16, 16, 3), True, False, "RGB"),
        ((5, 16, 16), False, True, "multiscale"),
        ((5, 1, 16), False, False, "2x2"),
        ((2, 16, 16), False, False, "fewer than 3 frames"),
    ],
)
def test_layer_problems_are_named(shape, rgb, multiscale, words):
    msg = layer_problem("x", shape, rgb=rgb, multiscale=multiscale)
    assert msg is not None and words in msg and "'x'" in msg


def test_usable_layers_have_no_problem():
    assert layer_problem("m", (50, 8, 8)) is None
    assert layer_problem("m", (2, 50, 8, 8)) is None
    assert time_axis_choices((2, 50, 8, 8)) == [0, 1]
    assert time_axis_choices((50, 8, 8)) == [0]


def test_dt_prefers_metadata_then_scale():
    assert dt_from_layer({"dt": 0.02}, (0.5, 1, 1), 0) == (0.02, "layer metadata")
    assert dt_from_layer({}, (0.5, 1, 1), 0) == (0.5, "layer scale")
    assert dt_from_layer({"dt": "bad"}, (1.0, 1, 1), 0) == (None, "")
    assert dt_from_layer(None, (3, 0.1, 1, 1), 1) == (0.1, "layer scale")
    assert dt_from_layer({"dt": -1}, (1, 1, 1), 0) == (None, "")
    # the plugin's reader: dt from the file, and says which field
    read = {"dt": 0.1, "dt_source": "ImageJ finterval", "path": "/d/m.tif"}
    assert dt_from_layer(read, (0.1, 1, 1), 0) == (0.1, "file metadata (ImageJ finterval)")
    assert dt_from_layer({"dt": 0.1, "path": "/d/m.tif"}, (1, 1, 1), 0) == (0.1,
                                                                           "file metadata")
    # a time scale of 1 with unit seconds is a dt; without a unit it is napari's default
    assert dt_from_layer({}, (1.0, 1, 1), 0, ("second", "um", "um")) == (1.0, "layer scale")
    assert dt_from_layer({}, (1.0, 1, 1), 0, ("pixel", "pixel", "pixel")) == (None, "")


def test_selection_cuts_and_restores_axes():
    data = np.arange(3 * 7 * 4 * 5).reshape(3, 7, 4, 5)
    sel = MovieSelection(ndim=4, time_axis=1, fixed={0: 2})
    np.testing.assert_array_equal(sel.movie(data), data[2])
    maps = np.zeros((6, 4, 5))
    assert sel.expand(maps).shape == (1, 6, 4, 5)
    np.testing.assert_allclose(sel.translate_for((0.5, 0.1, 1, 1), (1, 0, 0, 0)), (2, 0, 0, 0))
    assert "axis 0 at index 2" in sel.describe_fixed()
    with pytest.raises(ValueError):
        MovieSelection(ndim=4, time_axis=1)
    with pytest.raises(ValueError):
        MovieSelection(ndim=3, time_axis=1)


def test_symmetric_limits():
    values = np.linspace(-3, 1, 1001)
    lo, hi = symmetric_limits(values, percentile=100)
    assert (lo, hi) == (-3.0, 3.0)
    assert symmetric_limits(np.zeros(10)) == (-1.0, 1.0)
    big = np.random.default_rng(0).normal(size=5_000_000).astype(np.float32)
    lo, hi = symmetric_limits(big, max_samples=100_000)
    assert hi == pytest.approx(2.576, abs=0.05) and lo == -hi


def test_map_layers_line_up_with_the_movie():
    sel = MovieSelection(ndim=3, time_axis=0)
    maps = np.random.default_rng(0).normal(size=(9, 4, 5)).astype(np.float32)
    data, kw, kind = transition_map_layer(maps, selection=sel, scale=(0.1, 2, 2),
                                          translate=(1, 0, 0), name="m",
                                          metadata={"ep_rate": np.float64(1.5)})
    assert kind == "image" and data.shape == (9, 4, 5)
    assert kw["scale"] == (0.1, 2, 2) and kw["translate"] == (1, 0, 0)
    assert kw["contrast_limits"][0] == -kw["contrast_limits"][1]
    assert kw["colormap"] is DISSIPATION_COLORMAP
    assert kw["metadata"]["dissipation"]["ep_rate"] == 1.5
    assert isinstance(kw["metadata"]["dissipation"]["ep_rate"], float)
    assert kw["metadata"]["dissipation"]["kind"] == "transition_map"

    data, kw, _ = rate_density_layer(maps[0], selection=sel, n_frames=10, scale=(0.1, 2, 2),
                                     translate=(1, 0, 0), name="d")
    assert data.shape == (4, 5) and kw["scale"] == (2, 2) and kw["translate"] == (0, 0)

    sel4 = MovieSelection(ndim=4, time_axis=1, fixed={0: 3})
    data, kw, _ = rate_density_layer(maps[0], selection=sel4, n_frames=10,
                                     scale=(1, 0.1, 2, 2), translate=(0, 0, 0, 0), name="d")
    assert data.shape == (1, 10, 4, 5) and kw["translate"] == (3, 0, 0, 0)
    data, kw, _ = transition_map_layer(maps, selection=sel4, scale=(1, 0.1, 2, 2),
                                       translate=(0, 0, 0, 0), name="m")
    assert data.shape == (1, 9, 4, 5) and kw["translate"] == (3, 0, 0, 0)


def test_colormap_is_blue_transparent_red():
    colors = DISSIPATION_COLORMAP["colors"]
    assert colors[0][2] > colors[0][0]  # low end blue
    assert colors[-1][0] > colors[-1][2]  # high end red
    assert colors[1][3] == 0 and colors[2][3] == 0  # transparent at zero


def test_format_rate():
    assert format_rate(2.0312, (1.9, 2.15)) == "EP rate = 2.03 k_B/s (95% CI 1.90\u20132.15)"
    assert format_rate(203.4, (190, 215)) == "EP rate = 203 k_B/s (95% CI 190\u2013215)"
    assert format_rate(5.2) == "EP rate = 5.2 k_B/s"
    assert format_rate(-0.5, (-3.0, 1.5)) == "EP rate = -0.5 k_B/s (95% CI -3.0 to 1.5)"
    assert format_rate(None) == "EP rate: not available"
    assert (format_rate(1.93, (1.6, 2.3), lower_bound=True)
            == "EP rate \u2265 1.93 k_B/s (lower bound; 95% CI 1.60\u20132.30)")
    assert format_rate(5.2, lower_bound=True) == "EP rate \u2265 5.2 k_B/s (lower bound)"


def test_simulation_truth_only_from_the_simulators_entry():
    meta = {"truth": {"step_ep": [0.1, 0.2, 0.3], "ep_rate": 2.0}, "ep_rate": 2.0}
    steps, rate = simulation_truth(meta, 3)
    np.testing.assert_allclose(steps, [0.1, 0.2, 0.3])
    assert rate == 2.0
    assert simulation_truth(meta, 4)[0] is None  # another movie length: not this movie's
    assert simulation_truth({"ep_rate": 2.0}, 3) == (None, None)
    assert simulation_truth(None, 3) == (None, None)
