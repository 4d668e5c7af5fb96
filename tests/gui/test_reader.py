"""The napari reader: dt and pixel size from the file reach the layer's scale and metadata."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import tifffile

from napari_dissipation.gui.reader import get_reader

DT, PX = 0.1, 0.108
KEYS = {"dt", "dt_source", "pixel_size", "pixel_unit", "path", "sha256"}


def _imagej(path, shape=(12, 16, 24)):
    """A 16-bit ImageJ TIFF with a frame interval (0.1 s) and pixel size (0.108 µm)."""
    data = np.random.default_rng(3).integers(0, 4000, shape, dtype=np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / PX, 1 / PX),
                     metadata={"axes": "TYX", "finterval": DT, "unit": "um"})
    return path, data


def _check_layer(data, kwargs, path, frames):
    assert np.asarray(data).shape == frames.shape
    np.testing.assert_array_equal(np.asarray(data[3]), frames[3])
    assert kwargs["scale"] == pytest.approx((DT, PX, PX))
    assert kwargs["units"] == ("s", "µm", "µm")
    meta = kwargs["metadata"]
    assert KEYS <= set(meta)
    assert meta["dt"] == pytest.approx(DT) and meta["dt_source"] == "ImageJ finterval"
    assert meta["pixel_size"] == pytest.approx(PX) and meta["pixel_unit"] == "µm"
    assert meta["path"] == str(path)
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_reader_function_gives_scale_units_and_metadata(tmp_path):
    path, frames = _imagej(tmp_path / "movie.tif")
    reader = get_reader(str(path))
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image" and kwargs["name"] == "movie.tif"
    _check_layer(data, kwargs, path, frames)
    assert get_reader([str(path)]) is not None  # napari may pass a list of one


def test_reader_without_metadata_and_files_it_leaves_to_others(tmp_path):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((5, 8, 8), np.uint8))
    [(_, kwargs, _)] = get_reader(str(plain))(str(plain))
    assert kwargs["scale"] == (1.0, 1.0, 1.0) and kwargs["units"] == ("pixel",) * 3
    assert kwargs["metadata"]["dt"] is None and kwargs["metadata"]["dt_source"] == "none"
    channels = tmp_path / "c.ome.tif"  # needs a channel choice: napari's reader shows it
    tifffile.imwrite(channels, np.zeros((6, 2, 8, 8), np.uint16), ome=True,
                     metadata={"axes": "TCYX"})
    assert get_reader(str(channels)) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(plain), str(plain)]) is None


def test_several_movies_in_one_file_are_one_layer_with_a_movie_axis(tmp_path):
    data = np.random.default_rng(1).integers(0, 99, (3, 10, 8, 8), dtype=np.uint8)
    path = tmp_path / "set.tif"
    tifffile.imwrite(path, data)  # no axis names: (M, T, H, W)
    [(layer, kwargs, _)] = get_reader(str(path))(str(path))
    assert layer.shape == data.shape and kwargs["axis_labels"][0] == "movie"
    np.testing.assert_array_equal(np.asarray(layer), data)
    assert kwargs["metadata"]["movies"] == 3


def test_viewer_open_with_the_plugin(make_napari_viewer_proxy, tmp_path):
    path, frames = _imagej(tmp_path / "movie.tif")
    viewer = make_napari_viewer_proxy()
    [layer] = viewer.open(path, plugin="napari-dissipation")
    assert tuple(layer.scale) == pytest.approx((DT, PX, PX))
    assert [str(u) for u in layer.units] == ["second", "micrometer", "micrometer"]
    assert layer.metadata["dt"] == pytest.approx(DT)
    assert layer.metadata["dt_source"] == "ImageJ finterval"


def test_file_open_offers_our_reader_and_remembers_it(make_napari_viewer, tmp_path,
                                                      monkeypatch):
    """File > Open on a .tif: napari asks which reader (ours listed first); once the
    choice is remembered, later opens use ours without asking."""
    from napari._qt.dialogs import qt_reader_dialog
    from napari.settings import get_settings

    path, frames = _imagej(tmp_path / "movie.tif")
    settings = get_settings().plugins
    monkeypatch.setattr(settings, "extension2reader", {})
    offered = []

    def choose(dialog):
        offered.append([b.text() for b in dialog.reader_btn_group.buttons()])
        return "Dissipation maps", True  # the user ticks "Remember this choice"

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "get_user_choices", choose)
    viewer = make_napari_viewer()
    viewer.window._qt_viewer._qt_open([str(path)], stack=False)
    assert offered == [["Dissipation maps", "napari builtins"]]
    assert settings.extension2reader == {"*.tif": "napari-dissipation"}
    viewer.layers.clear()
    viewer.window._qt_viewer._qt_open([str(path)], stack=False)  # no dialog this time
    assert len(offered) == 1
    layer = viewer.layers[-1]
    assert layer.source.reader_plugin == "napari-dissipation"
    assert tuple(layer.scale) == pytest.approx((DT, PX, PX))
