"""Choosing l1000's blur and pattern count by 5-fold cross-validation (an experiment, not
what the estimator does).

The estimator compares its candidate read-outs on 20 validation movies, which cannot tell
4 patterns from 6 on l1000 (``l1000_patterns.py``).  Here the 75 movies the estimator trains
and chooses on (the first 75 of the draw) are cut into 5 folds; each candidate (blur, pattern
count) is fitted on four folds and scored on the fifth by the NEEP objective, so every movie
scores every candidate once.  Each candidate is also fitted on the first 55 movies (the
estimator's training part) and measured by per-transition R² on 20 independent movies
(seed 1000 + the draw)::

    python benchmarks/l1000_cv.py
    python benchmarks/l1000_cv.py --draw 2    # another draw: simulator seeds 2 and 1002

Prints one line per candidate, then each one's distance from the best in standard errors
of the paired difference between movies.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from napari_dissipation import simulate
from napari_dissipation.estimate.model import linear_branch_features, principal_patterns
from napari_dissipation.estimate.objective import safe_exp_neg
from napari_dissipation.estimate.readout import maximise_neep

RIDGE = 1e-4  # the warm start's penalty, relative to the mean squared feature
N_CHOOSE, N_TRAIN, FOLDS = 75, 55, 5


def coordinates(movies: np.ndarray, patterns: np.ndarray, mean: np.ndarray):
    c = np.einsum("mthw,phw->mtp", movies - mean, patterns)
    return torch.as_tensor(c[:, :-1] + c[:, 1:]), torch.as_tensor(c[:, 1:] - c[:, :-1])


def fit(z: torch.Tensor, dz: torch.Tensor, m: int) -> torch.Tensor:
    f = linear_branch_features(z[:, :, :m].reshape(-1, m), dz[:, :, :m].reshape(-1, m))
    theta, *_ = maximise_neep(f, torch.zeros(f.shape[1], dtype=torch.float64),
                              lam=RIDGE * float((f ** 2).mean()))
    return theta


def ep_of(z: torch.Tensor, dz: torch.Tensor, m: int, theta: torch.Tensor) -> torch.Tensor:
    return linear_branch_features(z[:, :, :m].reshape(-1, m), dz[:, :, :m].reshape(-1, m)) @ theta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draw", type=int, default=0, help="the simulator's seed")
    draw = parser.parse_args().draw
    torch.set_num_threads(1)
    sim = simulate.bead_spring(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=100, n_frames=1000,
                               dt=0.01, seed=draw)
    test = simulate.bead_spring(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=20, n_frames=1000,
                                dt=0.01, seed=1000 + draw)
    movies = np.asarray(sim.movies[:N_CHOOSE], dtype=np.float64)
    held = np.asarray(test.movies, dtype=np.float64)
    exact = test.truth.step_ep.ravel()
    pick = np.random.default_rng(0).choice(N_CHOOSE * 1000, 2000, replace=False)
    frames = movies.reshape(-1, *movies.shape[2:])[pick]
    fold = np.arange(N_CHOOSE) % FOLDS
    scores = {}
    for blur in (8.0, 4.0, 2.0):
        patterns, mean = principal_patterns(frames, 10, blur)
        z, dz = coordinates(movies, patterns, mean)
        z_test, dz_test = coordinates(held, patterns, mean)
        for m in (3, 4, 5, 6, 8, 10):
            per_movie = np.zeros(N_CHOOSE)
            for f in range(FOLDS):
                ep = ep_of(z[fold == f], dz[fold == f], m, fit(z[fold != f], dz[fold != f], m))
                per_movie[fold == f] = (ep - safe_exp_neg(ep)).numpy().reshape(
                    int(np.sum(fold == f)), -1).mean(axis=1)
            scores[blur, m] = per_movie
            ep = ep_of(z_test, dz_test, m, fit(z[:N_TRAIN], dz[:N_TRAIN], m)).numpy()
            r2 = np.corrcoef(ep, exact)[0, 1] ** 2
            print(f"blur {blur:g} px, {m} patterns: cross-validated objective "
                  f"{per_movie.mean():.5f}, R² on the test movies {r2:.4f}", flush=True)
    best = max(scores, key=lambda key: scores[key].mean())
    print(f"best: blur {best[0]:g} px, {best[1]} patterns")
    for key, per_movie in scores.items():
        d = scores[best] - per_movie
        se = d.std(ddof=1) / np.sqrt(len(d))
        print(f"blur {key[0]:g} px, {key[1]} patterns: {d.mean() / se if se else 0:.2f} "
              "standard errors below the best")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
