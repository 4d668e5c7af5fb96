"""Several movies in one array: (M, T, H, W) files are M independent movies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_dissipation.errors import InputError
from napari_dissipation.io import describe_inputs, read_movie, read_movies

RNG = np.random.default_rng(11)


def _set(m=3, t=10, h=6, w=8):
    return RNG.integers(0, 999, (m, t, h, w), dtype=np.uint16)


@pytest.mark.parametrize("layout", ["MTHW", "MT1HW", "M1THW"])
def test_npy_of_several_movies(tmp_path, layout):
    data = _set()
    stored = {"MTHW": data, "MT1HW": data[:, :, None], "M1THW": data[:, None]}[layout]
    np.save(tmp_path / "set.npy", stored)
    movies = read_movies([tmp_path / "set.npy"])
    assert len(movies) == 3 and [m.movie for m in movies] == [0, 1, 2]
    for m, expected in zip(movies, data, strict=True):
        np.testing.assert_array_equal(m.data, expected)
        assert isinstance(m.data, np.memmap) and m.n_movies == 3
    assert movies[2].name.endswith("set.npy[2]")
    assert describe_inputs(movies) == [
        "set.npy: 3 movies of 10 frames of 6 x 8 px (M, T, H, W; axes "
        f"{movies[0].axes}), used as 3 independent movies"]
    assert describe_inputs(read_movies([tmp_path / "set.npy"], roi=(0, 4, 0, 4)))[0].startswith(
        "set.npy: 3 movies of 10 frames of 4 x 4 px")
    with pytest.raises(InputError, match=r"holds 3 movies .*choose one \(0-2\)") as info:
        read_movie(tmp_path / "set.npy")
    assert info.value.option == "movie"
    np.testing.assert_array_equal(read_movie(tmp_path / "set.npy", movie=1).data, data[1])


def test_tiff_of_several_movies_plain_and_named(tmp_path):
    data = _set()
    tifffile.imwrite(tmp_path / "plain.tif", data)  # axes QQYX: the rule gives MTYX
    tifffile.imwrite(tmp_path / "named.tif", data, metadata={"axes": "MTYX"})
    tifffile.imwrite(tmp_path / "packed.tif", data, compression="zlib")  # frame by frame
    for name in ("plain.tif", "named.tif", "packed.tif"):
        movies = read_movies([tmp_path / name])
        assert len(movies) == 3, name
        np.testing.assert_array_equal(movies[1].data, data[1])
    one = read_movies([tmp_path / "plain.tif", tmp_path / "named.tif"])
    assert len(one) == 6  # files and their movies, in order


def test_axes_option_tells_channels_from_movies(tmp_path):
    data = RNG.integers(0, 99, (20, 2, 6, 8), dtype=np.uint8)  # (T, C, H, W)
    np.save(tmp_path / "tc.npy", data)
    with pytest.raises(InputError, match=r"20 movies of 2 frames .* or one movie with "
                       r"channels") as info:
        read_movies([tmp_path / "tc.npy"])
    assert info.value.option == "axes"
    [movie] = read_movies([tmp_path / "tc.npy"], axes="TCYX", channel=1)
    np.testing.assert_array_equal(movie.data, data[:, 1])
    # the user's letters may leave out axes of length 1
    np.save(tmp_path / "t1.npy", data[:, :1, None])
    [movie] = read_movies([tmp_path / "t1.npy"], axes="TYX")
    assert movie.data.shape == (20, 6, 8)
    # a named file: the user's axes override the file's names
    tifffile.imwrite(tmp_path / "ij.tif", _set()[:, :, None], imagej=True)  # read as TZYX
    assert len(read_movies([tmp_path / "ij.tif"], axes="MTYX")) == 3
    with pytest.raises(InputError, match=r"axes 'MTX'") as info:
        read_movies([tmp_path / "tc.npy"], axes="MTX")
    assert info.value.option == "axes"
    with pytest.raises(InputError, match=r"expected \(T, H, W\) or \(M, T, H, W\)"):
        np.save(tmp_path / "five.npy", np.zeros((2, 3, 6, 5, 5), np.uint8))
        read_movies([tmp_path / "five.npy"])


def test_zarr_without_names_of_several_movies(tmp_path):
    zarr = pytest.importorskip("zarr")
    data = _set()
    arr = zarr.create_array(str(tmp_path / "set.zarr"), shape=data.shape, dtype="uint16")
    arr[:] = data
    movies = read_movies([tmp_path / "set.zarr"])
    assert len(movies) == 3
    np.testing.assert_array_equal(movies[2].data, data[2])


def test_fit_says_how_many_movies_and_warns_of_a_glued_one(tmp_path, capsys):
    from napari_dissipation import simulate
    from napari_dissipation.cli import main

    long = simulate.bead_spring(n_beads=5, n_movies=3, n_frames=200, dt=0.01, seed=2).movies
    short = simulate.bead_spring(n_beads=5, n_movies=2, n_frames=100, dt=0.01, seed=9).movies
    data = np.concatenate([long, np.concatenate(short, axis=0)[None]])  # movie 3: glued
    np.save(tmp_path / "set.npy", data[:, :, None])  # (M, T, 1, H, W)
    argv = ["fit", str(tmp_path / "set.npy"), "--out", str(tmp_path / "run"), "--dt", "0.01",
            "--max-iterations", "2", "--eval-every", "2", "--threads", "1", "--channels",
            "0", "--frames-per-input", "2", "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("note: set.npy: 4 movies of 200 frames of 20 x 100 px (M, T, H, W; axes MTQYX), "
            "used as 4 independent movies") in err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "set.npy[3]: the image jumps between frames 99 -> 100" \
        in warnings[0]
    rows = (tmp_path / "run" / "stochastic_ep.csv").read_text().splitlines()
    assert rows[1].startswith("set.npy[0],0,") and rows[-1].startswith("set.npy[3],198,")
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["inputs"][0]["movies"] == 4 and warnings[0][9:] in record["checks"]["warnings"]
