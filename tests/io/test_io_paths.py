"""Folders and globs of movies, and the region of interest (ROI)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_dissipation.errors import InputError
from napari_dissipation.io import (
    LazyMovie,
    crop,
    expand_movie_paths,
    parse_roi,
    read_movie,
    read_movies,
    write_movie,
)

RNG = np.random.default_rng(11)


def _movie(t=12, h=16, w=20):
    return RNG.integers(0, 4000, (t, h, w), dtype=np.uint16)


def test_roi_crops_lazily(tmp_path):
    data = _movie()
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
    with pytest.raises(InputError, match=r"ROI 0:40,0:5 is empty or outside the 16 x 20") as info:
        read_movie(plain, roi=(0, 40, 0, 5))
    assert info.value.option == "roi"
    with pytest.raises(InputError, match=r"the ROI must look like Y0:Y1,X0:X1") as info:
        parse_roi("10-20")
    assert info.value.option == "roi"


def test_crop_of_an_array_and_of_any_array_like():
    data = _movie(t=5)
    np.testing.assert_array_equal(crop(data, (1, -1, 0, 4)), data[:, 1:, :4])

    class Frames:  # an array-like that only supports indexing by frame
        shape, dtype = data.shape, data.dtype

        def __getitem__(self, t):
            return data[t]

    lazy = crop(Frames(), (3, 9, 2, -1), name="frames")
    assert isinstance(lazy, LazyMovie) and lazy.shape == (5, 6, 18)
    np.testing.assert_array_equal(lazy[2], data[2, 3:9, 2:])
    np.testing.assert_array_equal(crop(lazy, (1, 3, 0, 2))[4], data[4, 4:6, 2:4])


def test_folder_and_glob_of_tiffs(tmp_path):
    folder = tmp_path / "movies"
    folder.mkdir()
    for name in ("b.tif", "a.tif", "c.tiff"):
        write_movie(folder / name, _movie(), dt=0.02)
    (folder / ".a.tif.123.tmp").write_bytes(b"half written")
    (folder / "notes.txt").write_text("not a movie")
    movies = read_movies([folder])
    assert [m.path.name for m in movies] == ["a.tif", "b.tif", "c.tiff"]
    assert all(m.dt == 0.02 for m in movies)
    assert [p.name for p in expand_movie_paths([str(folder / "*.tif")])] == ["a.tif", "b.tif"]
    write_movie(folder / "d.tif", np.zeros((5, 16, 21), np.uint16))
    with pytest.raises(InputError, match=r"d\.tif: frames of 16 x 21 px differ from "
                       r".*a\.tif \(16 x 20 px\)") as info:
        read_movies([folder])
    assert info.value.option == "roi"
    assert len(read_movies([folder], roi=(0, 16, 0, 20))) == 4  # same size after cropping
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: folder holds no TIFF movies"):
        read_movies([tmp_path / "empty"])
    with pytest.raises(InputError, match=r"no file matches this pattern"):
        expand_movie_paths([str(tmp_path / "none*.tif")])


def test_npy_is_mapped(tmp_path):
    data = _movie()
    np.save(tmp_path / "m.npy", data)
    movie = read_movie(tmp_path / "m.npy")
    assert isinstance(movie.data, np.memmap) and movie.axes == "TYX"
    np.testing.assert_array_equal(movie.data, data)
    with pytest.raises(InputError, match=r"channel 1 chosen but the file has only one channel"):
        read_movie(tmp_path / "m.npy", channel=1)
