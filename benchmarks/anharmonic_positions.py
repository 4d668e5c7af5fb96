"""What a perfect tracker reads on the anharmonic chain: NEEP fits on the exact positions.

No images: the read-out is ``ΔS = Σ_i Δx_i · P_i(x̄)`` with P_i polynomials of the mid-point
state up to a degree (1: bilinear, the linear system's form; 3 holds the quartic springs'
force exactly), fitted by Newton's method on the NEEP objective on training movies and
measured on independent test movies against the same transitions' exact EP.  It separates
what two frames of the chain carry (the positions are Markov: longer windows add nothing)
from what the images lose, and it shows how much the fitted read-out's scale scatters with
the training draw: a NEEP fit's rate has a relative scatter of about sqrt(8 / Σ), Σ the
training movies' EP in k_B (to second order the objective is ``2 θ·μ − θᵀSθ / 2`` with μ
the features' mean, whose sampling noise carries into the rate).

    python benchmarks/anharmonic_positions.py --k4 3 --dt 0.01
    python benchmarks/anharmonic_positions.py --k4 1 --dt 0.0025 --movies 32 128 --draws 4
    python benchmarks/anharmonic_positions.py --k4 1 --dt 0.001 --frames 10000 --movies 128

One JSON file per command in ``benchmarks/results/nonlinear/positions_*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_dissipation import simulate
from napari_dissipation.estimate.model import monomial_exponents
from napari_dissipation.estimate.readout import maximise_neep

OUT = Path(__file__).parent / "results" / "nonlinear"
TEST_SEED, TEST_MOVIES = 999, 16


def features(x: np.ndarray, degree: int) -> torch.Tensor:
    """Δx_i times the monomials of the mid-point state up to ``degree``, (N, 2 · n_mono)."""
    mid = torch.as_tensor((x[:, :-1] + x[:, 1:]) / 2).reshape(-1, x.shape[-1])
    dx = torch.as_tensor(x[:, 1:] - x[:, :-1]).reshape(-1, x.shape[-1])
    mono = [torch.ones(len(mid), 1, dtype=torch.float64), mid]
    if degree > 1:
        exps = torch.as_tensor(monomial_exponents(x.shape[-1], degree))
        mono.append(torch.prod(mid[:, None, :] ** exps, dim=2))
    return (dx[:, :, None] * torch.cat(mono, dim=1)[:, None, :]).flatten(1)


def fit_and_measure(train, test, degree: int) -> dict:
    f = features(train.positions, degree)
    scale = f.std(dim=0) + 1e-300
    theta, *_ = maximise_neep(f / scale, torch.zeros(f.shape[1], dtype=torch.float64),
                              max_steps=100)
    ep = (features(test.positions, degree) / scale @ theta).numpy()
    exact = test.truth.step_ep.ravel()
    ls = torch.linalg.lstsq(f / scale, torch.as_tensor(train.truth.step_ep.ravel())[:, None])
    ls_ep = (features(test.positions, degree) / scale @ ls.solution[:, 0]).numpy()
    return {"degree": degree, "params": int(f.shape[1]),
            "rate": float(ep.mean() / test.dt),
            "vs_same": float(ep.mean() / exact.mean() - 1),
            "r2": float(np.corrcoef(ep, exact)[0, 1] ** 2),
            "least_squares_r2": float(1 - np.var(exact - ls_ep) / np.var(exact))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k4", type=float, required=True)
    p.add_argument("--dt", type=float, required=True)
    p.add_argument("--frames", type=int, default=4000)
    p.add_argument("--movies", type=int, nargs="+", default=[32])
    p.add_argument("--draws", type=int, default=1, help="training draws (seeds 0, 1, ...)")
    p.add_argument("--degrees", type=int, nargs="+", default=[1, 3, 5, 7])
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    physics = dict(n_beads=2, t_cold=1.0, t_hot=10.0, k=1.0, k4=args.k4, dt=args.dt,
                   n_frames=args.frames)
    t0 = time.perf_counter()
    test = simulate.anharmonic_chain(n_movies=TEST_MOVIES, seed=TEST_SEED, **physics)
    record = {"physics": physics, "test": {"movies": TEST_MOVIES, "seed": TEST_SEED,
                                           "exact_rate_of_its_transitions":
                                           float(test.truth.step_ep.mean() / args.dt)},
              "exact_rate": float(test.truth.ep_rate), "fits": []}
    for n_movies in args.movies:
        for seed in range(args.draws):
            train = simulate.anharmonic_chain(n_movies=n_movies, seed=seed, **physics)
            for degree in args.degrees:
                row = {"movies": n_movies, "seed": seed,
                       "training_ep": float(train.truth.step_ep.sum()),
                       **fit_and_measure(train, test, degree)}
                record["fits"].append(row)
                print(f"{n_movies} movies, draw {seed}, degree {degree}: rate {row['rate']:.3f}"
                      f" ({row['vs_same']:+.1%} against the same transitions), R² "
                      f"{row['r2']:.3f}, least squares {row['least_squares_r2']:.3f}",
                      flush=True)
    record["seconds"] = time.perf_counter() - t0
    record["load"] = list(os.getloadavg())
    OUT.mkdir(parents=True, exist_ok=True)
    name = f"positions_k4_{args.k4:g}_dt{args.dt:g}_frames{args.frames}.json"
    (OUT / name).write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
