"""Non-stationarity benchmark: bleaching, illumination drift and stage drift against truth.

The same bead-spring movies (same seed: identical motion and exact EP) are rendered plain
and with bleaching + illumination drift + stage drift, and fitted with the estimator's
defaults (one thread, a time budget):

* ``clean``          undisturbed movies, defaults (correction on): the reference rate and CI;
* ``disturbed``      the disturbed movies, defaults: must land inside ``clean``'s interval
                     and carry the check's warnings;
* ``disturbed_mild`` the same with bleaching at a 40 s time constant;
* ``disturbed_rows`` the same with the stage drift along the rows only;
* ``clean_k16``, ``disturbed_k16``: clean and disturbed with 16 frames per window (the
  window-length scan's reach under a time budget depends on the machine's load);
* ``disturbed_off``  the disturbed movies with ``nonstationarity="check"`` (no correction):
                     what the disturbances do to an uncorrected fit;
* ``clean_off``      undisturbed movies without correction (the correction's effect on a
                     stationary movie).

One JSON file per (condition, seed) in ``benchmarks/results/stationarity/``::

    python benchmarks/bench_stationarity.py -c clean -c disturbed -c disturbed_off -s 0
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "stationarity"
SIM = dict(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=20, n_frames=2000, dt=0.01,
           photons=100.0, read_noise=0.1, bit_depth=16, background=0.1)
#: Bleaching time constant 20 s (the spots end at 37% of their start brightness), a tilted
#: background rising to 20% of the spot peak, a stage drift of 0.2 px/s (4 px over 20 s).
DISTURB = dict(bleach=20.0, illumination_drift=0.2, stage_drift=0.2, stage_drift_angle=30.0)
#: The same with bleaching at a 40 s time constant (spots end at 61%): less signal lost.
MILD = dict(DISTURB, bleach=40.0)
#: The same with the stage drift along the rows only (the beads move along the columns, so
#: a drift along the rows is measurable in every movie and registered).
ROWS = dict(DISTURB, stage_drift_angle=90.0)
CONDITIONS = {
    "clean": ({}, {}),
    "disturbed": (DISTURB, {}),
    "disturbed_mild": (MILD, {}),
    "disturbed_rows": (ROWS, {}),
    # A fixed window length: under a time budget the window-length scan reaches a longer
    # k on an idle machine than on a busy one, and the rate rises with k under noise.
    "clean_k16": ({}, {"frames_per_input": 16}),
    "disturbed_k16": (DISTURB, {"frames_per_input": 16}),
    "disturbed_off": (DISTURB, {"nonstationarity": "check"}),
    "clean_off": ({}, {"nonstationarity": "check"}),
}
FIT = dict(threads=1, max_seconds=240.0)


def run(condition: str, seed: int) -> dict:
    import torch

    from napari_dissipation import EPEstimator, simulate

    torch.set_num_threads(1)
    render, options = CONDITIONS[condition]
    sim = simulate.bead_spring(seed=seed, **SIM, **render)
    est = EPEstimator(seed=seed, **FIT, **options)
    t0 = time.perf_counter()
    fit = est.fit(sim.movies, dt=sim.dt)
    seconds = time.perf_counter() - t0
    held = [sim.truth.step_ep[m, a:b] for m, a, b in fit.held_out]
    held_rate = float(np.mean(np.concatenate(held)) / sim.dt)
    return {
        "condition": condition, "seed": seed, "simulation": SIM, "disturbances": render,
        "options": dict(FIT, **options),
        "ep_rate": fit.ep_rate, "ep_rate_ci": list(fit.ep_rate_ci),
        "exact_ep_rate": sim.truth.ep_rate, "exact_discrete_rate": sim.truth.discrete_ep_rate,
        "exact_rate_held_out": held_rate,
        "exact_inside_ci": bool(fit.ep_rate_ci[0] <= held_rate <= fit.ep_rate_ci[1]),
        "warnings": fit.warnings, "frames_per_input": fit.frames_per_input,
        "stop_reason": fit.stop_reason, "iterations": fit.iterations,
        "lower_bound_reasons": fit.lower_bound_reasons, "seconds": seconds,
        "load_average": list(os.getloadavg()),
        "git": _git(),
        "command": f"python benchmarks/bench_stationarity.py -c {condition} -s {seed}",
    }


def _git() -> str:
    """The commit the code was at (with "+dirty" when the tree had changes)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--condition", action="append", choices=sorted(CONDITIONS))
    p.add_argument("-s", "--seed", action="append", type=int)
    p.add_argument("--tag", default="", help="added to the result file names")
    args = p.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for seed in args.seed or [0]:
        for condition in args.condition or list(CONDITIONS):
            path = RESULTS / f"{condition}_seed{seed}{args.tag}.json"
            if path.exists():
                print(f"{path.name}: exists, skipped")
                continue
            record = run(condition, seed)
            path.write_text(json.dumps(record, indent=1, default=float))
            lo, hi = record["ep_rate_ci"]
            print(f"{condition} seed {seed}: {record['ep_rate']:.3f} k_B/s "
                  f"(CI {lo:.3f} to {hi:.3f}); exact {record['exact_ep_rate']:.3f}, held-out "
                  f"{record['exact_rate_held_out']:.3f}; {len(record['warnings'])} warnings; "
                  f"{record['seconds']:.0f} s", flush=True)
            for w in record["warnings"]:
                print(f"  warning: {w}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
