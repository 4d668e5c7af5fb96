"""The filament network with the defaults: rate and map on movies the fit never saw.

Issue 15's protocol: ``simulate.filament_network(n_movies=40, n_frames=2000, dt=DT,
seed=31)``, an :class:`~napari_dissipation.EPEstimator` with its defaults (``seed=0``, a
time budget, ``threads``) fitted on the first 32 movies, and measured on the other 8:

* the rate over all windows of the 8 test movies, with a 95% interval from the 8 movies
  as independent units (``stats.bootstrap_rate_ci``), against the same transitions' exact
  EP (``truth.step_ep``) and the exact continuous-time rate (target: within 15% of the
  same transitions);
* the map: the EP-rate density (``ep_rate_density``) averaged over the 8 test movies
  against the exact map (``truth.map``), Pearson r of both blurred by half a lattice
  spacing (as ``bench_maps.py``), and unblurred (target: r >= 0.9).

One JSON file per dt in ``benchmarks/results/filament/``, with the machine's load::

    python benchmarks/bench_filament.py --dt 0.01 --max-seconds 300
    python benchmarks/bench_filament.py --dt 0.02 --max-seconds 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from napari_dissipation import EPEstimator, simulate
from napari_dissipation.estimate.stats import bootstrap_rate_ci

RESULTS = Path(__file__).resolve().parent / "results" / "filament"
N_MOVIES, N_FRAMES, N_TRAIN, SEED = 40, 2000, 32, 31


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def run(dt: float, max_seconds: float, threads: int, seed: int = 0, k=None) -> dict:
    load_start = os.getloadavg()
    sim = simulate.filament_network(n_movies=N_MOVIES, n_frames=N_FRAMES, dt=dt, seed=SEED)
    train, test = sim.movies[:N_TRAIN], sim.movies[N_TRAIN:]
    est = EPEstimator(seed=seed, threads=threads, max_seconds=max_seconds,
                      **({} if k is None else {"frames_per_input": k}))
    t0 = time.perf_counter()
    fit = est.fit(train, dt=dt)
    fit_seconds = time.perf_counter() - t0
    model = est.model_
    windows = [np.asarray(model.window_ep(m)) for m in test]
    rate, ci, info = bootstrap_rate_ci(windows, model.rate_scale(dt),
                                       rng=np.random.default_rng(0),
                                       window_seconds=model.stride * dt)
    same = float(np.mean(sim.truth.step_ep[N_TRAIN:]) / dt)
    density = np.mean([model.ep_rate_density(m, dt=dt) for m in test], axis=0)
    truth = sim.truth
    spacing_px = truth.info["spacing"] * sim.render.pixels_per_unit / sim.render.binning
    sigma = 0.5 * spacing_px
    return {
        "dt": dt, "movies": f"{N_MOVIES} x {N_FRAMES} frames, {N_TRAIN} to train, "
                            f"{N_MOVIES - N_TRAIN} to measure", "seed": SEED,
        "frame_shape": list(np.shape(train[0])[1:]), "max_seconds": max_seconds,
        "threads": threads, "estimator_seed": seed, "fit_seconds": fit_seconds,
        "ep_rate": float(rate), "ep_rate_ci": [float(c) for c in ci], "ci_info": info,
        "same_transitions_rate": same, "exact_rate": float(truth.ep_rate),
        "bias_vs_same": float(rate / same - 1), "bias_vs_exact": float(rate / truth.ep_rate - 1),
        "same_in_ci": bool(ci[0] <= same <= ci[1]),
        "exact_in_ci": bool(ci[0] <= truth.ep_rate <= ci[1]),
        "fit_rate": fit.ep_rate, "fit_rate_ci": list(fit.ep_rate_ci),
        "map_integral": float(density.sum()),
        "map_r_blurred": pearson(gaussian_filter(density, sigma, mode="constant"),
                                 gaussian_filter(truth.map, sigma, mode="constant")),
        "map_r_unblurred": pearson(density, truth.map), "blur_sigma_px": float(sigma),
        "frames_per_input": fit.frames_per_input, "model_stage": fit.model_stage,
        "stop_reason": fit.stop_reason, "lower_bound_reasons": fit.lower_bound_reasons,
        "rate_by_window": fit.rate_by_window,
        "warnings": fit.warnings, "warm_start": fit.history[0].get("warm_start"),
        "load_start": list(load_start), "load_end": list(os.getloadavg()),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent).stdout.strip(),
        "command": f"python benchmarks/bench_filament.py --dt {dt} --max-seconds "
                   f"{max_seconds:g} --threads {threads} --estimator-seed {seed}"
                   + ("" if k is None else f" -k {k}"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dt", type=float, default=0.02)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--estimator-seed", type=int, default=0,
                        help="the estimator's seed (its split and draws; the movies keep theirs)")
    parser.add_argument("-k", "--frames-per-input", type=int, default=None,
                        help="frames per input set by hand (default: chosen from the data)")
    args = parser.parse_args()
    k = args.frames_per_input
    res = run(args.dt, args.max_seconds, args.threads, args.estimator_seed, k)
    RESULTS.mkdir(parents=True, exist_ok=True)
    tag = (f"_eseed{args.estimator_seed}" if args.estimator_seed else "") + \
        ("" if k is None else f"_k{k}")
    path = RESULTS / f"dt{args.dt:g}{tag}.json"
    path.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("ep_rate", "ep_rate_ci", "same_transitions_rate",
                                          "bias_vs_same", "map_r_blurred", "map_r_unblurred",
                                          "fit_seconds", "frames_per_input", "model_stage")},
                     indent=1))


if __name__ == "__main__":
    main()
