"""Per-transition R² of the warm start's read-out on the l1000 movies, by blur and pattern
count, against the exact EP of independent test movies.

The seed paper's rendering of the 2-bead chain (``simulate.bead_spring``, 100 movies x 1000
frames, seed 0); the first N movies train a Newton fit of the bilinear read-out on
whole-frame principal patterns of blurred frames (the estimator's warm start, without its
choices), and 20 movies of seed 1000 measure it: R², the held-out NEEP objective, the rate,
and the share of the squared error held by the worst 0.1% and 1% of transitions::

    python benchmarks/l1000_patterns.py --train 55 75 100 --blur 8 4 --patterns 4 5 6 8

Prints one line per fit and writes ``benchmarks/results/estimator/l1000_patterns.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from napari_dissipation import simulate
from napari_dissipation.estimate.model import linear_branch_features, principal_patterns
from napari_dissipation.estimate.objective import neep_objective
from napari_dissipation.estimate.readout import maximise_neep

OUT = Path(__file__).parent / "results" / "estimator" / "l1000_patterns.json"
RIDGE = 1e-4  # the warm start's penalty, relative to the mean squared feature


def coordinates(movies: np.ndarray, patterns: np.ndarray, mean: np.ndarray):
    c = np.einsum("mthw,phw->mtp", movies - mean, patterns)
    z, dz = c[:, :-1] + c[:, 1:], c[:, 1:] - c[:, :-1]
    n = len(patterns)
    return torch.as_tensor(z.reshape(-1, n)), torch.as_tensor(dz.reshape(-1, n))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, nargs="+", default=[55, 75, 100])
    p.add_argument("--blur", type=float, nargs="+", default=[8.0, 4.0])
    p.add_argument("--patterns", type=int, nargs="+", default=[4, 5, 6, 8])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sim = simulate.bead_spring(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=100, n_frames=1000,
                               dt=0.01, seed=0)
    test = simulate.bead_spring(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=20, n_frames=1000,
                                dt=0.01, seed=1000)
    exact = test.truth.step_ep
    held = np.asarray(test.movies, dtype=np.float64)
    rows = []
    for n_train in args.train:
        train = np.asarray(sim.movies[:n_train], dtype=np.float64)
        pick = np.random.default_rng(0).choice(n_train * 1000, 2000, replace=False)
        frames = train.reshape(-1, *train.shape[2:])[pick]
        for blur in args.blur:
            patterns, mean = principal_patterns(frames, max(args.patterns), blur)
            z, dz = coordinates(train, patterns, mean)
            z_test, dz_test = coordinates(held, patterns, mean)
            for m in args.patterns:
                f = linear_branch_features(z[:, :m], dz[:, :m])
                theta, *_ = maximise_neep(f, torch.zeros(f.shape[1], dtype=torch.float64),
                                          lam=RIDGE * float((f ** 2).mean()))
                ep = (linear_branch_features(z_test[:, :m], dz_test[:, :m]) @ theta).numpy()
                err = np.sort((ep - exact.ravel()) ** 2)[::-1]
                row = {"train_movies": n_train, "blur": blur, "patterns": m,
                       "params": int(f.shape[1]),
                       "r2": float(np.corrcoef(ep, exact.ravel())[0, 1] ** 2),
                       "objective": float(neep_objective(torch.as_tensor(ep))),
                       "rate": float(ep.mean() / 0.01),
                       "test_exact_rate": float(exact.mean() / 0.01),
                       "worst_0.1%_share": float(err[: len(err) // 1000].sum() / err.sum()),
                       "worst_1%_share": float(err[: len(err) // 100].sum() / err.sum())}
                rows.append(row)
                print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in row.items()), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"rows": rows, "load": list(os.getloadavg())}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
