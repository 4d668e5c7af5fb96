"""How much of the filament network's EP a bilinear read-out of tile patterns can reach.

The movie is linearised about the network's rest shape: each frame is regressed on the
exact node displacements (R² about 0.96 with the defaults; the rest is the renderer's
non-linearity).  The coordinates of a tile's principal patterns (as the warm start
computes them, blurred 1.5 px) are then linear combinations of the state plus a residual,
and :meth:`LinearDiffusion.window_irreversibility` gives the most EP any estimator of
two-frame windows of those coordinates can find, with the residual as independent
noise (a lower bound) and without it (an upper bound).  Printed as shares of the mean
step EP, for tiles centred on the driven nodes and shifted from them, by pattern count.

    python benchmarks/attainable_tiles.py
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_dissipation import simulate
from napari_dissipation.estimate.model import principal_patterns


def linearised_movie(sim):
    """Frames as ``mean + J u + residual``: J (n_dof, H·W) and the residuals (T, H·W)."""
    frames = sim.movies.astype(np.float64).reshape(-1, sim.movies[0, 0].size)
    u = sim.positions.reshape(-1, sim.positions.shape[-1])
    u = u - u.mean(axis=0)
    centred = frames - frames.mean(axis=0)
    jac, *_ = np.linalg.lstsq(u, centred, rcond=None)
    residual = centred - u @ jac
    return jac, residual, 1 - residual.var() / centred.var()


def tile_observation(frames, jac, residual, tiles, m):
    """Observation matrix (d, n_dof) and residual covariance (d, d) of m patterns per tile."""
    h, w = frames.shape[1:]
    rows = []
    for r, c, side in tiles:
        p, _ = principal_patterns(frames[:, r: r + side, c: c + side], m, 1.5)
        full = np.zeros((m, h, w))
        full[:, r: r + side, c: c + side] = p
        rows.append(full.reshape(m, -1))
    patterns = np.concatenate(rows)
    return patterns @ jac.T, np.atleast_2d(np.cov((residual @ patterns.T).T))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--movies", type=int, default=4)
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--dt", type=float, default=0.02)
    p.add_argument("--side", type=int, default=24)
    p.add_argument("--counts", default="8,12,16,20,24,32")
    p.add_argument("--shifts", default="0,3,6,9", help="row shifts off the driven nodes, px")
    args = p.parse_args(argv)
    sim = simulate.filament_network(n_movies=args.movies, n_frames=args.frames, dt=args.dt)
    jac, residual, r2 = linearised_movie(sim)
    model, step = sim.model, sim.model.step_ep_mean(args.dt)
    nodes = np.asarray(sim.truth.info["node_rest_pixels"])[sim.truth.info["driven_nodes"]]
    frames = sim.movies[0].astype(np.float64)
    size = frames.shape[1]
    print(f"frames regressed on the state: R² = {r2:.3f}; mean step EP {step:.4f} k_B")
    print("| row shift (px) | patterns per tile | share, residual as noise | share, no residual |")
    print("|---|---|---|---|")
    for shift in map(int, args.shifts.split(",")):
        tiles = [(int(np.clip(round(y - (args.side - 1) / 2) - shift, 0, size - args.side)),
                  int(np.clip(round(x - (args.side - 1) / 2), 0, size - args.side)), args.side)
                 for y, x in nodes]
        for m in map(int, args.counts.split(",")):
            obs, cov = tile_observation(frames, jac, residual, tiles, m)
            noisy = model.window_irreversibility(2, args.dt, observed=obs, noise_cov=cov)
            # Patterns past the state's rank are exact combinations of the others: a
            # vanishing noise keeps the window covariance invertible.
            clean = model.window_irreversibility(2, args.dt, observed=obs,
                                                 noise_cov=1e-9 * np.eye(len(obs)))
            print(f"| {shift} | {m} | {noisy / step:.3f} | {clean / step:.3f} |", flush=True)


if __name__ == "__main__":
    main()
