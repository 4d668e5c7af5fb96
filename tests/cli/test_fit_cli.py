"""``fit``: the rate-by-window table, the lower-bound line and what summary.json says."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from napari_dissipation import simulate
from napari_dissipation.io import write_movie

FIT = ["--dt", "0.01", "--max-iterations", "20", "--eval-every", "10", "--threads", "1",
       "--channels", "0", "--quiet"]


def _fit(*args):
    return subprocess.run([sys.executable, "-m", "napari_dissipation", "fit", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def noisy_files(tmp_path_factory):
    """2-bead chain at 30% read noise: two-frame windows carry about 28% of the EP."""
    folder = tmp_path_factory.mktemp("noisy")
    sim = simulate.bead_spring(n_beads=2, n_movies=8, n_frames=2500, dt=0.01, seed=21,
                               read_noise=0.3)
    return [str(write_movie(folder / f"m{i}.tif", m, dt=sim.dt))
            for i, m in enumerate(sim.movies)]


def test_auto_window_length_is_reported(noisy_files, tmp_path):
    proc = _fit(*noisy_files, "--out", str(tmp_path / "run"), *FIT)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    k = summary["frames_per_input"]
    assert k > 2 and "rate by window length" in proc.stdout
    assert f"*{k:3d}" in proc.stdout  # the chosen k is marked in the table
    ks = [e["k"] for e in summary["rate_by_window"]]
    assert ks[:3] == [2, 3, 4] and k in ks
    for e in summary["rate_by_window"]:
        assert e["ci"][0] <= e["rate"] <= e["ci"][1]
    assert isinstance(summary["lower_bound"], bool)
    assert summary["lower_bound"] == bool(summary["lower_bound_reasons"])


def test_forcing_two_frames_on_noisy_movies_says_lower_bound(noisy_files, tmp_path):
    proc = _fit(*noisy_files, "--out", str(tmp_path / "run"), *FIT, "-k", "2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["frames_per_input"] == 2 and summary["lower_bound"] is True
    assert "EP rate ≥" in proc.stdout and "lower bound:" in proc.stdout
    assert "chosen by the --frames-per-input option" in proc.stdout


def test_a_bad_window_length_is_one_line(noisy_files, tmp_path):
    proc = _fit(*noisy_files, "--out", str(tmp_path / "run"), *FIT, "-k", "one")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "napari-dissipation: error: frames_per_input must be a whole number or 'auto', got "
        "'one' (--frames-per-input K)"]


def test_the_window_table_says_which_window_took_no_part():
    from types import SimpleNamespace

    from napari_dissipation.cli.fit import window_table

    curve = [{"k": 2, "rate": 1.0, "ci": [0.8, 1.2]},
             {"k": 3, "rate": 1.4, "ci": [1.0, 1.8], "generalises": False}]
    text = window_table(SimpleNamespace(rate_by_window=curve, frames_per_input=2),
                        chosen_by="data").splitlines()
    assert text[2].startswith("  *  2") and "not used" not in text[2]
    assert "not used: its fit did worse on held-out windows than none" in text[3]
