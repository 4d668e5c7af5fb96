"""Zarr arrays and OME-Zarr groups."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dissipation.errors import InputError
from napari_dissipation.io import LazyMovie, read_movie, read_movies

RNG = np.random.default_rng(5)


def test_zarr_array_and_ome_zarr(tmp_path):
    zarr = pytest.importorskip("zarr")
    data = RNG.integers(0, 4000, (7, 2, 12, 10), dtype=np.uint16)
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
    with pytest.raises(InputError, match=r"2 channels \(0-1\); choose one$") as info:
        read_movie(tmp_path / "ome.zarr")
    assert info.value.option == "channel"
    movie = read_movie(tmp_path / "ome.zarr", channel=1, roi=(1, 5, 2, 8))
    np.testing.assert_array_equal(movie.data, data[:, 1, 1:5, 2:8])
    assert movie.dt == pytest.approx(0.04) and movie.pixel_size == pytest.approx(0.2)
    assert movie.dt_origin == "OME-Zarr scale" and movie.pixel_unit == "µm"
    assert [m.path.name for m in read_movies([tmp_path / "ome.zarr"], channel=0)] == ["ome.zarr"]
    with pytest.raises(InputError, match=r"series 1 chosen but the file has only one series"):
        read_movie(tmp_path / "plain.zarr", series=1)


def test_group_without_multiscales_needs_one_array(tmp_path):
    zarr = pytest.importorskip("zarr")
    group = zarr.open_group(str(tmp_path / "two.zarr"), mode="w")
    for name in ("a", "b"):
        group.create_array(name, shape=(4, 6, 6), dtype="uint8")
    with pytest.raises(InputError, match=r"a Zarr group with 2 arrays \(a, b\)"):
        read_movie(tmp_path / "two.zarr")
    (tmp_path / "plainfolder").mkdir()
    with pytest.raises(InputError, match=r"is a folder but not a Zarr array or group"):
        read_movie(tmp_path / "plainfolder")
