"""``napari-dissipation simulate ...``: files, truth.json, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_dissipation.cli import main
from napari_dissipation.io import read_movie


def test_bead_spring_writes_movies_and_truth(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "bead-spring", "--beads", "2", "--t-cold", "1", "--t-hot", "10",
               "--movies", "3", "--frames", "50", "--dt", "0.02", "--seed", "4",
               "--read-noise", "0.1", "--bit-depth", "16", "--out", str(out)])
    assert rc == 0
    assert "2.025" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "movie_000.tif", "movie_001.tif", "movie_002.tif", "step_ep.npy", "truth.json",
        "truth_map.tif"]
    movie = read_movie(out / "movie_001.tif")
    assert movie.data.shape == (50, 20, 40) and movie.data.dtype == np.uint16
    assert movie.dt == 0.02 and movie.pixel_size == 1.0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["ep_rate"] == pytest.approx(2.025)
    assert sum(truth["dof_ep_rate"]) == pytest.approx(2.025)
    assert truth["render"]["read_noise"] == 0.1 and truth["dt"] == 0.02
    step_ep = np.load(out / truth["step_ep_file"])
    assert step_ep.shape == (3, 49) == tuple(truth["step_ep_shape"])
    assert np.array(truth["map"]).shape == (20, 40)


def test_mosaic_and_binning(tmp_path):
    out = tmp_path / "mosaic"
    assert main(["simulate", "mosaic", "--chain", "hot:2:1,10", "--chain", "eq:3:1,1,1",
                 "--movies", "1", "--frames", "10", "--bin", "2", "--out", str(out)]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert [r["name"] for r in truth["regions"]] == ["hot", "eq"]
    assert truth["regions"][1]["cols"] == [20, 50]
    assert read_movie(out / "movie_000.tif").data.shape == (10, 10, 50)


@pytest.mark.parametrize("bad", [["--frames", "1"], ["--dt", "0"], ["--dt", "-0.1"],
                                 ["--movies", "0"], ["--t-cold", "-1"], ["--bin", "3"],
                                 ["--beads", "3", "--temperatures", "1,2"]])
def test_bad_options_exit_2_and_write_nothing(tmp_path, capsys, bad):
    out = tmp_path / "sim"
    assert main(["simulate", "bead-spring", "--movies", "1", "--frames", "10",
                 "--out", str(out), *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-dissipation: error:") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_never_touched(tmp_path, capsys):
    out = tmp_path / "sim"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["simulate", "bead-spring", "--movies", "1", "--frames", "10",
                 "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_filament_network(tmp_path):
    out = tmp_path / "net"
    assert main(["simulate", "filament-network", "--movies", "1", "--frames", "10",
                 "--nodes", "4", "--driven", "1", "--t-driven", "8", "--photons", "100",
                 "--out", str(out)]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["system"] == "filament_network" and len(truth["driven_nodes"]) == 1
    assert sum(truth["node_ep_rate"]) == pytest.approx(truth["ep_rate"])
    assert read_movie(out / "movie_000.tif").data.shape == (10, 64, 64)
