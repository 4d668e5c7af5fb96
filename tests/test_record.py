"""The reproducibility record: what produced a run, and ``rerun`` repeating it."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from napari_dissipation import simulate
from napari_dissipation.cli import main
from napari_dissipation.errors import InputError
from napari_dissipation.io import read_movies, write_movie
from napari_dissipation.record import (
    file_sha256,
    read_record,
    run_record,
    verify_inputs,
    write_record,
)

FIT = ["--dt", "0.01", "--max-iterations", "4", "--eval-every", "2", "--threads", "1",
       "--channels", "0", "--frames-per-input", "2", "--quiet"]


def test_record_module_imports_without_torch_or_napari():
    code = ("import sys, napari_dissipation.record as r; r.versions(); "
            "bad = {'torch', 'napari', 'qtpy'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_run_record_contents_and_atomic_write(tmp_path):
    data = np.arange(4 * 30 * 6 * 6, dtype=np.uint16).reshape(4, 30, 6, 6)
    np.save(tmp_path / "set.npy", data)
    movies = read_movies([tmp_path / "set.npy"])
    rec = run_record({"seed": 3, "max_iterations": 7}, movies, 0.05, "command line",
                     ["a warning"], command=["napari-dissipation", "fit", "set.npy"])
    assert rec["options"]["seed"] == 3 and rec["options"]["max_iterations"] == 7
    assert rec["options"]["frames_per_input"] == "auto"  # the others: their defaults
    assert rec["seeds"] == {"seed": 3}
    assert rec["versions"]["numpy"] == np.__version__ and "torch" in rec["versions"]
    assert rec["python"] and rec["platform"]["system"]
    [entry] = rec["inputs"]  # four movies of one file: one entry
    assert entry["movies"] == 4 and entry["frames"] == [30] and entry["name"] == "set.npy"
    assert entry["sha256"] == hashlib.sha256((tmp_path / "set.npy").read_bytes()).hexdigest()
    assert rec["dt"] == 0.05 and rec["dt_source"] == "command line"
    assert rec["checks"] == {"warnings": ["a warning"]}
    assert rec["command"] == ["napari-dissipation", "fit", "set.npy"]
    path = write_record(tmp_path / "run" / "record.json", rec)
    assert json.loads(path.read_text()) == rec
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["record.json"]  # no leftovers
    assert read_record(tmp_path / "run") == rec
    assert verify_inputs(rec) == [tmp_path / "set.npy"]


def test_sha256_streams_files_and_folders(tmp_path, monkeypatch):
    import napari_dissipation.record as record

    monkeypatch.setattr(record, "_CHUNK", 7)  # many chunks
    (tmp_path / "f.bin").write_bytes(bytes(range(256)) * 5)
    assert file_sha256(tmp_path / "f.bin") == hashlib.sha256(
        (tmp_path / "f.bin").read_bytes()).hexdigest()
    store = tmp_path / "m.zarr"
    (store / "0").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    (store / "0" / "c").write_bytes(b"abc")
    before = file_sha256(store)
    (store / "0" / "c").write_bytes(b"abd")
    assert file_sha256(store) != before


def test_changed_missing_or_bad_records_are_one_line(tmp_path):
    (tmp_path / "m.tif").write_bytes(b"x")
    rec = run_record({}, [tmp_path / "m.tif"], 0.1, "file metadata")
    (tmp_path / "m.tif").write_bytes(b"y")
    with pytest.raises(InputError, match=r"m.tif: changed since the recorded run"):
        verify_inputs(rec)
    (tmp_path / "m.tif").unlink()
    with pytest.raises(InputError, match=r"m.tif: input of the recorded run is missing"):
        verify_inputs(rec)
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(InputError, match=r"bad.json: not a run record"):
        read_record(tmp_path / "bad.json")


def test_fit_writes_the_record_and_rerun_repeats_it(tmp_path, capsys):
    sim = simulate.bead_spring(n_beads=2, n_movies=4, n_frames=120, dt=0.01, seed=5)
    files = [str(write_movie(tmp_path / f"m{i}.tif", m, dt=sim.dt))
             for i, m in enumerate(sim.movies)]
    assert main(["fit", *files, "--out", str(tmp_path / "run"), *FIT]) == 0
    rec = json.loads((tmp_path / "run" / "record.json").read_text())
    assert [e["name"] for e in rec["inputs"]] == [f"m{i}.tif" for i in range(4)]
    assert rec["command"][:2] == ["napari-dissipation", "fit"] and "--dt" in rec["command"]
    assert rec["options"]["max_iterations"] == 4 and rec["options"]["threads"] == 1
    assert rec["dt"] == 0.01 and rec["dt_source"] == "command line"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert rec["result"]["ep_rate"] == summary["ep_rate"]
    capsys.readouterr()
    assert main(["rerun", str(tmp_path / "run" / "record.json"), "--out",
                 str(tmp_path / "again"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "recorded run: EP rate" in out
    again = json.loads((tmp_path / "again" / "record.json").read_text())
    assert again["rerun_of"].endswith("record.json") and again["options"] == rec["options"]
    assert ((tmp_path / "again" / "stochastic_ep.csv").read_text()
            == (tmp_path / "run" / "stochastic_ep.csv").read_text())  # a CPU run repeats
    write_movie(tmp_path / "m2.tif", sim.movies[2][::-1], dt=sim.dt)  # the data changed
    assert main(["rerun", str(tmp_path / "run"), "--out", str(tmp_path / "third")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m2.tif: changed since the recorded run" in err[0]
    assert not (tmp_path / "third").exists()
