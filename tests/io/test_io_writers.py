"""Writers: TIFF movies and maps, JSON, the stochastic-EP table; all atomic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_dissipation.errors import InputError
from napari_dissipation.io import (
    atomic_output,
    write_json,
    write_maps_tiff,
    write_movie,
    write_stochastic_ep_csv,
)


def test_movie_maps_json_and_csv(tmp_path):
    movie = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    path = write_movie(tmp_path / "m.tif", movie, dt=0.1, metadata={"seed": 1})
    np.testing.assert_array_equal(tifffile.imread(path), movie)
    with tifffile.TiffFile(path) as tif:
        assert json.loads(tif.pages[0].description) == {"seed": 1, "dt": 0.1}
    maps = write_maps_tiff(tmp_path / "maps.tif", np.ones((4, 5)), dt=0.1)
    assert tifffile.imread(maps).dtype == np.float32
    write_json(tmp_path / "s.json", {"a": np.float64(1.5), "b": np.arange(2), "p": Path("x")})
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 1.5, "b": [0, 1], "p": "x"}
    write_stochastic_ep_csv(tmp_path / "ep.csv", [np.array([0.5, -1.0]), np.array([2.0])],
                            movie_names=["a.tif", "b.tif"])
    assert (tmp_path / "ep.csv").read_text().splitlines() == [
        "movie,frame,ep", "a.tif,0,0.5", "a.tif,1,-1", "b.tif,0,2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ep.csv", "m.tif", "maps.tif", "s.json"]  # no temporary files left


def test_atomic_output_keeps_earlier_results(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("earlier")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with pytest.raises(InputError, match="already exists"):
        with atomic_output(target, overwrite=False):
            pass
    with atomic_output(tmp_path / "run", directory=True) as folder:
        (folder / "a.txt").write_text("a")
    assert (tmp_path / "run" / "a.txt").read_text() == "a"
