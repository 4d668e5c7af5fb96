"""Real frame sizes on the CPU (issue 16): one 256 x 256 (or 512 x 512) movie of 2000 frames
with 16 particles in traps (4 driven), fitted with the estimator's defaults.

    python benchmarks/bench_frame_size.py --side 256 --threads 2
    python benchmarks/bench_frame_size.py --side 512 --threads 2

Writes ``benchmarks/results/frame_size/side{SIDE}.json``: the fit's time, its evaluation
points (the history), the rate against the exact rate and the same transitions' exact EP.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from napari_dissipation import EPEstimator, simulate

OUT = Path(__file__).parent / "results" / "frame_size"


def run(side: int, *, threads: int, frames: int = 2000, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    sim = simulate.particle_field(n_gyrators=3, n_rotors=1, n_equilibrium=12, n_cols=4,
                                  cell=side // 4, n_movies=1, n_frames=frames, dt=0.01,
                                  seed=seed)
    t_sim = time.perf_counter() - t0
    load_before = os.getloadavg()
    est = EPEstimator(seed=0, threads=threads)
    t1 = time.perf_counter()
    fit = est.fit(sim.movies, dt=sim.dt)
    seconds = time.perf_counter() - t1
    same = np.concatenate([sim.truth.step_ep[m][a:b] for m, a, b in fit.held_out])
    evals = [h for h in fit.history if h["iteration"] > 0 and not h.get("readout_refit")]
    return {
        "side": side, "frames": frames, "frame_shape": list(sim.movies.shape[-2:]),
        "threads": threads, "fit_seconds": seconds, "simulate_seconds": t_sim,
        "evaluation_points": len(evals),
        "evaluation_seconds": [round(h["seconds"], 1) for h in evals],
        "iterations": fit.iterations, "stop_reason": fit.stop_reason,
        "model_stage": fit.model_stage, "frames_per_input": fit.frames_per_input,
        "ep_rate": fit.ep_rate, "ep_rate_ci": list(fit.ep_rate_ci),
        "exact_rate": sim.truth.ep_rate, "same_transitions_rate": float(same.mean() / sim.dt),
        "warnings": fit.warnings, "lower_bound_reasons": fit.lower_bound_reasons,
        "scan_seconds": fit.history[0].get("warm_start", {}).get("seconds"),
        "warm_start": {key: fit.history[0].get("warm_start", {}).get(key)
                       for key in ("family", "smoothing", "n_patterns", "tiles")},
        "driven_cells": [sim.truth.info["particles"][i]["cell"]
                         for i in sim.truth.info["driven_particles"]],
        "cell_px": side // 4,
        "load_before": load_before, "load_after": os.getloadavg(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=2000)
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    res = run(args.side, threads=args.threads, frames=args.frames)
    (OUT / f"side{args.side}.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
