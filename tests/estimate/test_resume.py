"""Kill -9 during training, then ``fit --resume``: the run completes and agrees.

Also: earlier outputs are never touched, and every refusal is one line with exit code 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_dissipation import simulate
from napari_dissipation.io import write_movie

FIT = ["--dt", "0.01", "--batch-size", "64", "--max-iterations", "800", "--eval-every", "50",
       "--threads", "1", "--seed", "0", "--quiet"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    return env


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "napari_dissipation", *args],
                          capture_output=True, text=True, timeout=timeout, env=_env())


def _tree_hash(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def movie_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("movies")
    sim = simulate.bead_spring(n_beads=2, n_movies=6, n_frames=1000, dt=0.01, seed=5)
    return [str(write_movie(folder / f"m{i}.tif", m, dt=sim.dt)) for i, m in enumerate(sim.movies)]


@pytest.mark.slow
def test_kill_then_resume_completes_and_agrees(movie_files, tmp_path):
    runs = tmp_path / "runs"
    # An earlier, unrelated run folder (and one whose name looks like a checkpoint folder).
    earlier = runs / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text('{"ep_rate": 1.0}\n')
    (earlier / "model.pt").write_bytes(os.urandom(4096))
    before = _tree_hash(runs)

    ref = runs / "ref"
    t_ref = time.monotonic()
    proc = _cli("fit", *movie_files, "--out", str(ref), *FIT)
    assert proc.returncode == 0, proc.stderr
    # The first checkpoint comes after the scan and the warm start: on a loaded machine
    # that takes as long as a good part of the whole reference run did.
    wait = max(90.0, 1.5 * (time.monotonic() - t_ref))
    out = runs / "new"
    checkpoint = runs / "new.partial" / "checkpoint.pt"
    cmd = [sys.executable, "-m", "napari_dissipation", "fit", *movie_files, "--out", str(out),
           *FIT]
    victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=_env())
    try:
        deadline = time.monotonic() + wait
        while not checkpoint.exists():
            assert victim.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, f"no checkpoint within {wait:.0f} s"
            time.sleep(0.05)
        delay = np.random.default_rng().uniform(0.0, 1.5)  # a random moment of training
        print(f"\nkilled {delay:.2f} s after the first checkpoint")
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.wait()
    if victim.returncode == 0:
        pytest.skip("the run finished before it could be killed (machine too fast)")
    assert victim.returncode == -signal.SIGKILL
    assert not out.exists() and checkpoint.exists()

    # Without --resume the checkpoint is not silently thrown away.
    proc = _cli("fit", *movie_files, "--out", str(out), *FIT)
    assert proc.returncode == 2 and "--resume" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # Other options than the checkpoint's are refused.
    proc = _cli("fit", *movie_files, "--out", str(out), *FIT, "--batch-size", "32", "--resume")
    assert proc.returncode == 2 and "batch_size" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

    proc = _cli("fit", *movie_files, "--out", str(out), *FIT, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert not checkpoint.parent.exists()
    s_ref = json.loads((ref / "summary.json").read_text())
    s_new = json.loads((out / "summary.json").read_text())
    lo, hi = s_ref["ep_rate_ci"]
    assert lo <= s_new["ep_rate"] <= hi, (s_ref["ep_rate"], s_ref["ep_rate_ci"], s_new["ep_rate"])
    assert s_new["iterations"] == s_ref["iterations"]
    print(f"uninterrupted: {s_ref['ep_rate']!r} {s_ref['ep_rate_ci']}; resumed: "
          f"{s_new['ep_rate']!r} {s_new['ep_rate_ci']}")
    # One process, no time budget: the continuation is exact.
    assert s_new["ep_rate"] == pytest.approx(s_ref["ep_rate"], rel=1e-6)
    rows = (out / "stochastic_ep.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 * 999
    after = _tree_hash(runs)
    assert {k: v for k, v in after.items() if k.startswith("earlier")} == before


def test_resume_refusals(movie_files, tmp_path):
    out = tmp_path / "run"
    proc = _cli("fit", *movie_files, "--out", str(out), *FIT, "--resume")
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # A folder named like a checkpoint folder but holding something else is left alone.
    other = tmp_path / "run.partial"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    proc = _cli("fit", *movie_files, "--out", str(out), *FIT)
    assert proc.returncode == 2 and "not a checkpoint folder" in proc.stderr
    assert (other / "notes.txt").read_text() == "mine" and not out.exists()


def test_requested_gpu_absent_is_one_line(movie_files, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    proc = _cli("fit", movie_files[0], "--out", str(tmp_path / "run"), *FIT, "--device", "cuda")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(
        "napari-dissipation: error: device 'cuda' requested but no CUDA GPU is available")
    assert "--device" in line  # the CLI names the flag that chooses it
    assert not (tmp_path / "run").exists()
