"""Bad inputs on the command line: one line, exit 2, nothing written, the flag that fixes it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_dissipation.cli import main
from napari_dissipation.cli._common import choose_dt, error_message
from napari_dissipation.errors import InputError
from napari_dissipation.io import MovieFile, write_movie

RNG = np.random.default_rng(7)
FIT = ["--max-iterations", "20", "--batch-size", "32", "--threads", "1", "-q"]


def _bad_inputs(tmp_path, case, files):
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
        path = files.write_ome(tmp_path / "two.ome.tif", files.tcyx(t=30, c=2),
                               TimeIncrement=0.1)
        return [path], "two.ome.tif: 2 channels (0-1); choose one (--channel N)"
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
def test_bad_files_one_line_exit_2_nothing_written(tmp_path, capsys, case, files):
    inputs, message = _bad_inputs(tmp_path, case, files)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "run"
    rc = main(["fit", *map(str, inputs), "--dt", "0.1", "--out", str(out), *FIT])
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("napari-dissipation: error: ") and message in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_cli_appends_the_flag_that_fixes_it(tmp_path, capsys, files):
    hyper = files.hyperstack(tmp_path / "hyper.tif")
    multi = files.positions(tmp_path / "positions.ome.tif")
    out = ["--out", str(tmp_path / "run"), *FIT]
    line = _cli_error(capsys, ["fit", str(hyper), "--dt", "0.1", *out])
    assert line.endswith("hyper.tif: 2 channels (0-1) and 3 z-planes (0-2); choose one of "
                         "each (--channel N, --z N)")
    line = _cli_error(capsys, ["fit", str(multi), "--dt", "0.1", *out])
    assert line.endswith("; choose one (--series N)")
    line = _cli_error(capsys, ["fit", str(multi), "--series", "5", "--dt", "0.1", *out])
    assert line.endswith("series 5 is out of range: the file has series 0-1 (--series N)")
    line = _cli_error(capsys, ["fit", str(multi), "--series", "0", "--roi", "1-2", *out])
    assert "the ROI must look like Y0:Y1,X0:X1" in line
    assert line.endswith("(--roi Y0:Y1,X0:X1)")
    line = _cli_error(capsys, ["fit", str(multi), "--series", "0", "--dt", "0", *out])
    assert line.endswith("dt must be a positive number of seconds per frame, got 0.0 "
                         "(--dt SECONDS)")
    line = _cli_error(capsys, ["fit", str(multi), "--series", "0", *out])
    assert line.endswith("no frame interval in the file; give dt in seconds per frame "
                         "(--dt SECONDS)")
    assert not (tmp_path / "run").exists()


def test_error_message_flags():
    assert error_message(InputError("plain")) == "plain"
    assert error_message(InputError("x", option="z")) == "x (--z N)"
    assert error_message(InputError("x", option="frames_per_input")) == "x (--frames-per-input K)"
    assert error_message(InputError("x", option="no_such_option")) == "x"
    # a flag the message names already is not repeated
    assert error_message(InputError("give --dt", option="dt")) == "give --dt"


def test_choose_dt_names_the_option(tmp_path):
    movies = [MovieFile(tmp_path / "a.tif", None, dt=0.1),
              MovieFile(tmp_path / "b.tif", None, dt=0.2)]
    with pytest.raises(InputError, match=r"disagree on dt \(\[0\.1, 0\.2\]\); give dt$") as info:
        choose_dt(None, movies)
    assert info.value.option == "dt"
    assert choose_dt(0.3, movies) == (0.3, "command line")


def test_fit_metadata_dt_then_flag_wins_with_a_note(tmp_path, capsys, files):
    data = files.tcyx(t=300, c=2, h=12, w=12)
    path = files.write_ome(tmp_path / "cells.ome.tif", data, compression="zlib",
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
