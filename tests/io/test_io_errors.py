"""InputError from io: says what is wrong in words, names the option, never a flag."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import tifffile

from napari_dissipation.errors import InputError
from napari_dissipation.io import parse_roi, read_movie, read_movies, write_movie

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("option", [None, "series", ("channel", "z")])
def test_input_error_pickles_with_its_option(option):
    exc = InputError("movie.tif: something is wrong", option=option)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is InputError and isinstance(back, ValueError)
    assert str(back) == "movie.tif: something is wrong" and back.option == option
    assert back.options == {None: (), "series": ("series",)}.get(option, option)


def _files(tmp_path, files):
    """name -> (call that fails, the option it should name)."""
    ome = tmp_path / "two.ome.tif"
    tifffile.imwrite(ome, RNG.integers(0, 99, (6, 2, 8, 8), dtype=np.uint16), ome=True,
                     metadata={"axes": "TCYX"})
    hyper = files.hyperstack(tmp_path / "hyper.tif")
    multi = files.positions(tmp_path / "positions.ome.tif", n=3)
    one = write_movie(tmp_path / "one.tif", np.zeros((6, 8, 8), np.uint16))
    other = tmp_path / "set"
    other.mkdir()
    write_movie(other / "a.tif", np.zeros((6, 8, 8), np.uint16))
    write_movie(other / "b.tif", np.zeros((6, 8, 7), np.uint16))
    return {
        "channels": (lambda: read_movie(ome), "channel"),
        "channel-range": (lambda: read_movie(ome, channel=2), "channel"),
        "channel-and-z": (lambda: read_movie(hyper), ("channel", "z")),
        "z-range": (lambda: read_movie(hyper, channel=0, z=3), "z"),
        "series": (lambda: read_movie(multi), "series"),
        "series-range": (lambda: read_movie(multi, series=3), "series"),
        "unused-z": (lambda: read_movie(one, z=1), "z"),
        "unused-series": (lambda: read_movie(one, series=2), "series"),
        "negative": (lambda: read_movie(one, channel=-1), "channel"),
        "roi-text": (lambda: parse_roi("0-8"), "roi"),
        "roi-outside": (lambda: read_movie(one, roi=(0, 9, 0, 8)), "roi"),
        "frame-sizes": (lambda: read_movies([other]), "roi"),
        "missing": (lambda: read_movie(tmp_path / "nowhere.tif"), None),
    }


def test_io_errors_carry_option_and_name_no_flag(tmp_path, files):
    for name, (call, option) in _files(tmp_path, files).items():
        with pytest.raises(InputError) as info:
            call()
        message = str(info.value)
        assert info.value.option == option, (name, message)
        assert "--" not in message and "\n" not in message, (name, message)
