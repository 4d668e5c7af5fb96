"""Training across processes: ``torchrun --nproc_per_node=2 -m napari_dissipation fit``.

Two gloo processes on the CPU, each drawing half of every global batch, must give the
same EP rate as one process with the same global batch, within the interval.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from napari_dissipation import simulate
from napari_dissipation.estimate import distributed
from napari_dissipation.io import write_movie

pytest.importorskip("torch.distributed")

FIT = ["--dt", "0.01", "--batch-size", "128", "--max-iterations", "300", "--eval-every", "100",
       "--threads", "1", "--seed", "0", "--quiet"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def movie_files(tmp_path_factory):
    """Eight 2-bead chain movies of 1000 frames as TIFF files."""
    folder = tmp_path_factory.mktemp("movies")
    sim = simulate.bead_spring(n_beads=2, n_movies=8, n_frames=1000, dt=0.01, seed=3)
    paths = []
    for i, movie in enumerate(sim.movies):
        paths.append(str(write_movie(folder / f"m{i}.tif", movie, dt=sim.dt)))
    return paths


def _fit(cmd, timeout=120):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_gloo_processes_agree_with_one(movie_files, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _fit([sys.executable, "-m", "napari_dissipation", "fit", *movie_files, "--out", str(one),
          *FIT])
    proc = _fit([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node=2", "-m", "napari_dissipation", "fit", *movie_files,
                 "--out", str(two), *FIT])
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    # Only rank 0 wrote, once, and the checkpoint folder is gone.
    assert proc.stdout.count("EP rate") == 1
    assert not (tmp_path / "two.partial").exists()
    # Both end at the same step, for the same reason: the network's probation (two
    # evaluations, 200 steps) ends on every rank, not only on rank 0, which made the start.
    assert s2["iterations"] == s1["iterations"] >= 200
    assert s2["stop_reason"] == s1["stop_reason"]
    assert s2["n_transitions"] == s1["n_transitions"] == 8 * 999
    rows = (two / "stochastic_ep.csv").read_text().splitlines()
    assert len(rows) == 1 + 8 * 999
    print(f"\n1 process: {s1['ep_rate']:.4f} {s1['ep_rate_ci']} best step {s1['best_iteration']};"
          f" 2 processes: {s2['ep_rate']:.4f} {s2['ep_rate_ci']} best step "
          f"{s2['best_iteration']}")
    lo, hi = s1["ep_rate_ci"]
    assert lo <= s2["ep_rate"] <= hi, (s1["ep_rate"], s1["ep_rate_ci"], s2["ep_rate"])
    lo, hi = s2["ep_rate_ci"]
    assert lo <= s1["ep_rate"] <= hi
    # Both learnt something (the chain dissipates ~2 k_B/s).
    assert s1["ep_rate"] > 0 and s2["ep_rate"] > 0


def test_single_process_context_does_nothing(monkeypatch):
    import torch

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx, device = distributed.setup(torch.device("cpu"))
    assert ctx is distributed.SINGLE and not ctx.active and ctx.is_main
    assert ctx.share(256) == 256
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched()


@pytest.mark.parametrize("world", [2, 3, 4])
def test_batch_shares_add_up(world):
    shares = [distributed.Context(rank=r, world_size=world).share(257) for r in range(world)]
    assert sum(shares) == 257 and max(shares) - min(shares) <= 1
    parts = [distributed.Context(rank=r, world_size=world).part(10) for r in range(world)]
    assert np.concatenate([np.arange(10)[p] for p in parts]).tolist() == list(range(10))
    streams = [distributed.Context(rank=r, world_size=world).batch_rng(0, 0).integers(1 << 30)
               for r in range(world)]
    assert len(set(streams)) == world


def test_mixed_precision_is_cuda_only_and_checked():
    import contextlib

    import torch

    from napari_dissipation import EPEstimator
    from napari_dissipation.errors import InputError
    from napari_dissipation.estimate.train import _forward_precision

    assert isinstance(_forward_precision(torch.device("cpu"), True), contextlib.nullcontext)
    est = EPEstimator(precision="bfloat16")
    assert not est._mixed_precision(torch.device("cpu"))
    assert est._mixed_precision(torch.device("cuda"))
    assert not EPEstimator(precision="float32")._mixed_precision(torch.device("cuda"))
    assert est.config_dict()["options"]["precision"] == "bfloat16"
    with pytest.raises(InputError, match="precision"):
        EPEstimator(precision="fp8")
