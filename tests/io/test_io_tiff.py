"""TIFF, OME-TIFF and ImageJ files: metadata, lazy reading, series and colour images."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tifffile

from napari_dissipation.errors import InputError
from napari_dissipation.io import LazyMovie, read_movie, write_movie

RNG = np.random.default_rng(7)


def test_ome_tiff_time_increment_pixel_size_and_channel(tmp_path, files):
    data = files.tcyx()
    path = files.write_ome(tmp_path / "movie.ome.tif", data, TimeIncrement=50,
                      TimeIncrementUnit="ms", PhysicalSizeX=130, PhysicalSizeXUnit="nm")
    with pytest.raises(InputError, match=r"movie\.ome\.tif: 3 channels \(0-2\); choose one$"):
        read_movie(path)
    movie = read_movie(path, channel=2)
    assert isinstance(movie.data, np.memmap)  # uncompressed and contiguous: mapped
    assert movie.data.shape == (12, 16, 20)
    np.testing.assert_array_equal(movie.data, data[:, 2])
    assert movie.dt == pytest.approx(0.05) and movie.dt_origin == "OME TimeIncrement"
    assert movie.pixel_size == pytest.approx(0.13) and movie.pixel_unit == "µm"
    assert movie.selection == {"series": None, "channel": 2, "z": None, "roi": None}
    with pytest.raises(InputError, match=r"channel 3 is out of range: the file has "
                       r"channels 0-2$"):
        read_movie(path, channel=3)


def test_ome_plane_delta_t(tmp_path, files):
    path = tmp_path / "dt.ome.tif"
    tifffile.imwrite(path, files.tcyx(c=1)[:, 0], ome=True, metadata={
        "axes": "TYX", "Plane": {"DeltaT": [0.0, 0.2, 0.4, 0.6, 0.8] + [1.0 + 0.2 * i
                                                                         for i in range(7)],
                                 "DeltaTUnit": ["s"] * 12}})
    movie = read_movie(path)
    assert movie.dt == pytest.approx(0.2) and movie.dt_origin == "OME Plane DeltaT"


def test_imagej_hyperstack_finterval_channel_and_z(tmp_path):
    data = RNG.integers(0, 255, (8, 5, 3, 10, 12), dtype=np.uint8)  # TZCYX
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "TZCYX", "finterval": 0.1, "unit": "um"})
    with pytest.raises(InputError, match=r"hyper\.tif: 3 channels \(0-2\) and 5 z-planes "
                       r"\(0-4\); choose one of each$") as info:
        read_movie(path)
    assert info.value.option == ("channel", "z")
    with pytest.raises(InputError, match=r"5 z-planes \(0-4\); choose one$") as info:
        read_movie(path, channel=1)
    assert info.value.option == "z"
    movie = read_movie(path, channel=1, z=4)
    np.testing.assert_array_equal(movie.data, data[:, 4, 1])
    assert movie.dt == pytest.approx(0.1) and movie.dt_origin == "ImageJ finterval"
    assert movie.pixel_size == pytest.approx(0.25) and movie.axes == "TZCYX"


def test_own_description_gives_dt_and_pixel_size(tmp_path, files):
    path = write_movie(tmp_path / "sim.tif", files.tcyx(c=1)[:, 0], dt=0.02, pixel_size=0.5)
    movie = read_movie(path)
    assert movie.dt == 0.02 and movie.dt_origin == "napari-dissipation description"
    assert movie.pixel_size == 0.5 and movie.pixel_unit is None


def test_compressed_file_is_read_frame_by_frame(tmp_path, monkeypatch, files):
    data = files.tcyx(t=20, c=2)
    path = files.write_ome(tmp_path / "zlib.ome.tif", data, compression="zlib", TimeIncrement=0.5)

    def whole_file(*args, **kwargs):
        raise AssertionError("the whole series was read")

    monkeypatch.setattr(tifffile, "imread", whole_file)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", whole_file)
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", whole_file)
    pages_read = []
    page_asarray = tifffile.TiffPage.asarray

    def counting(self, *args, **kwargs):
        pages_read.append(self.index)
        return page_asarray(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "asarray", counting)
    movie = read_movie(path, channel=1)
    assert isinstance(movie.data, LazyMovie) and not pages_read
    assert movie.data.shape == (20, 16, 20) and movie.data.dtype == np.uint16
    np.testing.assert_array_equal(movie.data[7], data[7, 1])
    assert len(pages_read) == 1  # one TIFF page for one frame
    np.testing.assert_array_equal(movie.data[[3, 9], 2:5, ::3], data[[3, 9], 1, 2:5, ::3])
    np.testing.assert_array_equal(movie.data[-1], data[-1, 1])
    assert movie.dt == 0.5
    # Worker processes get a copy that reopens the file.
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(movie.data))[4], data[4, 1])


def test_large_uncompressed_data_are_read_with_pread(tmp_path, monkeypatch, files):
    from napari_dissipation.io import raw

    data = files.tcyx(c=2)
    path = files.write_ome(tmp_path / "big.ome.tif", data)
    monkeypatch.setattr(raw, "MAP_LIMIT", 100)  # bytes: every movie here is "large"
    movie = read_movie(path, channel=1)
    assert isinstance(movie.data, LazyMovie)
    np.testing.assert_array_equal(movie.data, data[:, 1])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(movie.data))[5], data[5, 1])


def test_series_rgb_and_single_images(tmp_path, files):
    a, b = files.tcyx(c=1)[:, 0], files.tcyx(c=1)[:, 0]
    multi = files.positions(tmp_path / "positions.ome.tif", frames=[a, b])
    with pytest.raises(InputError, match=r"2 series \(positions 0-1\) \[0: TYX .*\]; "
                       r"choose one$") as info:
        read_movie(multi)
    assert info.value.option == "series"
    with pytest.raises(InputError, match=r"series 2 is out of range: the file has series 0-1"):
        read_movie(multi, series=2)
    np.testing.assert_array_equal(read_movie(multi, series=1).data, b)
    rgb_movie = tmp_path / "rgb_movie.tif"
    rgb = RNG.integers(0, 255, (6, 8, 9, 3), dtype=np.uint8)
    tifffile.imwrite(rgb_movie, rgb, photometric="rgb")
    with pytest.raises(InputError, match=r"3 colour samples \(0-2\); choose one$") as info:
        read_movie(rgb_movie)
    assert info.value.option == "channel"
    np.testing.assert_array_equal(read_movie(rgb_movie, channel=2).data, rgb[..., 2])
    with pytest.raises(InputError, match=r"z-plane 1 chosen but the file has only one "
                       r"z-plane$"):
        read_movie(rgb_movie, channel=0, z=1)
    still = tmp_path / "still.tif"
    tifffile.imwrite(still, a[0])
    with pytest.raises(InputError, match=r"a single 2-D image \(16, 20\), not a movie"):
        read_movie(still)


def test_truncated_file_is_refused_when_opened(tmp_path, files):
    path = write_movie(tmp_path / "cut.tif", files.tcyx(c=1)[:, 0], dt=0.1)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=r"cut\.tif: truncated or corrupt TIFF") as info:
        read_movie(path)
    assert info.value.option is None
