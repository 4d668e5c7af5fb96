"""Reading movies: TIFF / OME-TIFF / ImageJ / Zarr lazily, metadata, choices, bad inputs."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import tifffile

from napari_dissipation.cli import main
from napari_dissipation.errors import InputError
from napari_dissipation.io import (
    LazyMovie,
    expand_movie_paths,
    parse_roi,
    read_movie,
    read_movies,
    write_movie,
)

RNG = np.random.default_rng(7)


def _tcyx(t=12, c=3, h=16, w=20):
    return RNG.integers(0, 4000, (t, c, h, w), dtype=np.uint16)


def _write_ome(path, data, *, compression=None, **meta):
    tifffile.imwrite(path, data, ome=True, compression=compression,
                     metadata={"axes": "TCYX", **meta})
    return path


# ------------------------------------------------------------------------- formats

def test_ome_tiff_time_increment_pixel_size_and_channel(tmp_path):
    data = _tcyx()
    path = _write_ome(tmp_path / "movie.ome.tif", data, TimeIncrement=50,
                      TimeIncrementUnit="ms", PhysicalSizeX=130, PhysicalSizeXUnit="nm")
    with pytest.raises(InputError, match=r"movie\.ome\.tif: 3 channels; choose with "
                       r"--channel N \(0-2\)"):
        read_movie(path)
    movie = read_movie(path, channel=2)
    assert isinstance(movie.data, np.memmap)  # uncompressed and contiguous: mapped
    assert movie.data.shape == (12, 16, 20)
    np.testing.assert_array_equal(movie.data, data[:, 2])
    assert movie.dt == pytest.approx(0.05) and movie.dt_origin == "OME TimeIncrement"
    assert movie.pixel_size == pytest.approx(0.13) and movie.pixel_unit == "µm"
    assert movie.selection == {"series": None, "channel": 2, "z": None, "roi": None}
    with pytest.raises(InputError, match=r"--channel 3 is out of range; the file has 3 "
                       r"channels \(0-2\)"):
        read_movie(path, channel=3)


def test_ome_plane_delta_t(tmp_path):
    path = tmp_path / "dt.ome.tif"
    tifffile.imwrite(path, _tcyx(c=1)[:, 0], ome=True, metadata={
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
    with pytest.raises(InputError, match=r"hyper\.tif: 3 channels and 5 z-planes; choose with "
                       r"--channel N \(0-2\) and --z N \(0-4\)"):
        read_movie(path)
    with pytest.raises(InputError, match=r"5 z-planes; choose with --z N \(0-4\)$"):
        read_movie(path, channel=1)
    movie = read_movie(path, channel=1, z=4)
    np.testing.assert_array_equal(movie.data, data[:, 4, 1])
    assert movie.dt == pytest.approx(0.1) and movie.dt_origin == "ImageJ finterval"
    assert movie.pixel_size == pytest.approx(0.25) and movie.axes == "TZCYX"


def test_compressed_file_is_read_frame_by_frame(tmp_path, monkeypatch):
    data = _tcyx(t=20, c=2)
    path = _write_ome(tmp_path / "zlib.ome.tif", data, compression="zlib", TimeIncrement=0.5)

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


def test_roi_crops_lazily(tmp_path):
    data = _tcyx(c=1)[:, 0]
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, data)
    packed = tmp_path / "packed.tif"
    tifffile.imwrite(packed, data, compression="zlib")
    assert parse_roi("2:10,5:") == (2, 10, 5, -1)
    for path, kind in ((plain, np.memmap), (packed, LazyMovie)):
        movie = read_movie(path, roi=(2, 10, 5, 17))
        assert isinstance(movie.data, kind) and movie.data.shape == (12, 8, 12)
        np.testing.assert_array_equal(movie.data, data[:, 2:10, 5:17])
        assert movie.selection["roi"] == (2, 10, 5, 17)
        assert read_movie(path, roi="2:10,5:").selection["roi"] == (2, 10, 5, 20)
    with pytest.raises(InputError, match=r"ROI 0:40,0:5 is empty or outside the 16 x 20"):
        read_movie(plain, roi=(0, 40, 0, 5))
    with pytest.raises(InputError, match=r"--roi must look like Y0:Y1,X0:X1"):
        parse_roi("10-20")


def test_series_rgb_and_single_images(tmp_path):
    a, b = _tcyx(c=1)[:, 0], _tcyx(c=1)[:, 0]
    multi = tmp_path / "positions.ome.tif"
    with tifffile.TiffWriter(multi, ome=True) as tw:
        tw.write(a, metadata={"axes": "TYX"})
        tw.write(b, metadata={"axes": "TYX"})
    with pytest.raises(InputError, match=r"2 series \(positions\).*--series N \(0-1\)"):
        read_movie(multi)
    np.testing.assert_array_equal(read_movie(multi, series=1).data, b)
    rgb_movie = tmp_path / "rgb_movie.tif"
    rgb = RNG.integers(0, 255, (6, 8, 9, 3), dtype=np.uint8)
    tifffile.imwrite(rgb_movie, rgb, photometric="rgb")
    with pytest.raises(InputError, match=r"3 colour samples; choose with --channel"):
        read_movie(rgb_movie)
    np.testing.assert_array_equal(read_movie(rgb_movie, channel=2).data, rgb[..., 2])
    with pytest.raises(InputError, match=r"--z 1 given but the file has only one z"):
        read_movie(rgb_movie, channel=0, z=1)


def test_folder_and_glob_of_tiffs(tmp_path):
    folder = tmp_path / "movies"
    folder.mkdir()
    for name in ("b.tif", "a.tif", "c.tiff"):
        write_movie(folder / name, _tcyx(c=1)[:, 0], dt=0.02)
    (folder / ".a.tif.123.tmp").write_bytes(b"half written")
    (folder / "notes.txt").write_text("not a movie")
    movies = read_movies([folder])
    assert [m.path.name for m in movies] == ["a.tif", "b.tif", "c.tiff"]
    assert all(m.dt == 0.02 for m in movies)
    assert [p.name for p in expand_movie_paths([str(folder / "*.tif")])] == ["a.tif", "b.tif"]
    write_movie(folder / "d.tif", np.zeros((5, 16, 21), np.uint16))
    with pytest.raises(InputError, match=r"d\.tif: frames of 16 x 21 px differ from "
                       r".*a\.tif \(16 x 20 px\)"):
        read_movies([folder])
    assert len(read_movies([folder], roi=(0, 16, 0, 20))) == 4  # same size after cropping
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: folder holds no TIFF movies"):
        read_movies([tmp_path / "empty"])


def test_zarr_array_and_ome_zarr(tmp_path):
    zarr = pytest.importorskip("zarr")
    data = _tcyx(t=7, c=2, h=12, w=10)
    plain = zarr.create_array(str(tmp_path / "plain.zarr"), shape=(7, 12, 10),
                              chunks=(1, 12, 10), dtype="uint16")
    plain[:] = data[:, 0]
    movie = read_movie(tmp_path / "plain.zarr")
    assert isinstance(movie.data, LazyMovie)
    np.testing.assert_array_equal(movie.data, data[:, 0])
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    group.create_array("0", shape=data.shape, chunks=(1, 1, 12, 10), dtype="uint16")[:] = data
    axes = [{"name": "t", "type": "time", "unit": "millisecond"}, {"name": "c", "type": "channel"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]
    scale = [{"type": "scale", "scale": [40.0, 1.0, 0.2, 0.2]}]
    group.attrs["multiscales"] = [
        {"axes": axes, "datasets": [{"path": "0", "coordinateTransformations": scale}]}]
    with pytest.raises(InputError, match=r"2 channels; choose with --channel N \(0-1\)"):
        read_movie(tmp_path / "ome.zarr")
    movie = read_movie(tmp_path / "ome.zarr", channel=1, roi=(1, 5, 2, 8))
    np.testing.assert_array_equal(movie.data, data[:, 1, 1:5, 2:8])
    assert movie.dt == pytest.approx(0.04) and movie.pixel_size == pytest.approx(0.2)
    assert [m.path.name for m in read_movies([tmp_path / "ome.zarr"], channel=0)] == ["ome.zarr"]


# ---------------------------------------------------------------- command line matrix

FIT = ["--max-iterations", "20", "--batch-size", "32", "--threads", "1", "-q"]


def _bad_inputs(tmp_path, case):
    movie = RNG.integers(0, 4000, (30, 12, 12), dtype=np.uint16)
    if case == "missing":
        return [tmp_path / "nowhere.tif"], "nowhere.tif: no such file"
    if case == "truncated":
        path = tmp_path / "cut.tif"
        write_movie(path, movie, dt=0.1)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return [path], "cut.tif: truncated or corrupt TIFF"
    if case == "truncated-compressed":
        path = tmp_path / "cutz.ome.tif"
        tifffile.imwrite(path, movie, ome=True, compression="zlib", metadata={"axes": "TYX"})
        path.write_bytes(path.read_bytes()[:-300])
        return [path], "cutz.ome.tif: truncated or corrupt TIFF"
    if case == "corrupt":
        path = tmp_path / "noise.tif"
        path.write_bytes(RNG.bytes(20000))
        return [path], "noise.tif: cannot read as TIFF"
    if case == "channels":
        path = _write_ome(tmp_path / "two.ome.tif", _tcyx(t=30, c=2), TimeIncrement=0.1)
        return [path], "two.ome.tif: 2 channels; choose with --channel N (0-1)"
    if case == "mismatched-folder":
        folder = tmp_path / "set"
        folder.mkdir()
        write_movie(folder / "m1.tif", movie, dt=0.1)
        write_movie(folder / "m2.tif", movie[:, :, :10], dt=0.1)
        return [folder], "m2.tif: frames of 12 x 10 px differ from"
    if case == "image-2d":
        path = tmp_path / "still.tif"
        tifffile.imwrite(path, movie[0])
        return [path], "still.tif: a single 2-D image (12, 12), not a movie"
    if case == "rgb":
        path = tmp_path / "photo.tif"
        tifffile.imwrite(path, RNG.integers(0, 255, (12, 12, 3), dtype=np.uint8),
                         photometric="rgb")
        return [path], "photo.tif: a single RGB colour image"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "truncated", "truncated-compressed", "corrupt",
                                  "channels", "mismatched-folder", "image-2d", "rgb"])
def test_bad_files_one_line_exit_2_nothing_written(tmp_path, capsys, case):
    inputs, message = _bad_inputs(tmp_path, case)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "run"
    rc = main(["fit", *map(str, inputs), "--dt", "0.1", "--out", str(out), *FIT])
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("napari-dissipation: error: ") and message in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


def test_fit_metadata_dt_then_flag_wins_with_a_note(tmp_path, capsys):
    data = _tcyx(t=40, c=2, h=12, w=12)
    path = _write_ome(tmp_path / "cells.ome.tif", data, compression="zlib",
                      TimeIncrement=0.05, TimeIncrementUnit="s")
    assert main(["fit", str(path), "--channel", "1", "--roi", "0:12,2:10",
                 "--out", str(tmp_path / "meta"), *FIT]) == 0
    summary = json.loads((tmp_path / "meta" / "summary.json").read_text())
    assert summary["dt"] == 0.05 and summary["dt_source"] == "file metadata"
    assert summary["selection"] == {"series": None, "channel": 1, "z": None,
                                    "roi": [0, 12, 2, 10]}
    capsys.readouterr()
    assert main(["fit", str(path), "--channel", "1", "--dt", "0.2",
                 "--out", str(tmp_path / "flag"), *FIT]) == 0
    err = capsys.readouterr().err
    assert "note: --dt 0.2 overrides dt [0.05] from the file metadata" in err
    summary = json.loads((tmp_path / "flag" / "summary.json").read_text())
    assert summary["dt"] == 0.2 and summary["dt_source"] == "command line"
    # map reads the same channel and region
    maps = tmp_path / "maps.tif"
    assert main(["map", str(tmp_path / "meta"), str(path), "--channel", "1",
                 "--roi", "0:12,2:10", "--mean-only", "--out", str(maps)]) == 0
    assert tifffile.imread(tmp_path / "maps.mean.tif").shape == (12, 8)
