"""Per-transition EP of long windows: each transition's share against an even spread.

A window of k frames spans k - 1 transitions.  The estimator gives each transition its own
share of the window's ΔS (its displacement times the force, ``EPNet.transition_contributions``)
and averages it over the windows that hold it.  The reference here spreads each window's
ΔS evenly over its transitions instead (what the estimator did before).  Both are compared
with the exact EP of each transition of independent test movies (R², squared correlation)
and by their mean (the rate, which the split does not change).

Cases are those of ``bench_window_length.py`` (2-bead chains with camera noise, where long
windows are chosen), fitted with the defaults on one thread, and measured on 4 test movies of
5000 frames simulated with the case's seed + 1000::

    python benchmarks/bench_transitions.py shot100 read10

One JSON file per case in ``benchmarks/results/transitions/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench_window_length import CASES, DT, _commit
from napari_dissipation import EPEstimator, simulate

OUT = Path(__file__).parent / "results" / "transitions"


def even_spread(window_ep: np.ndarray, k: int) -> np.ndarray:
    """Each transition's mean of ΔS / (k - 1) over the windows holding it, (T - 1,)."""
    n = len(window_ep)
    total, count = np.zeros(n + k - 2), np.zeros(n + k - 2)
    for t in range(k - 1):
        total[t: t + n] += window_ep / (k - 1)
        count[t: t + n] += 1
    return total / count


def r2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1] ** 2)


def run_case(name: str, threads: int) -> dict:
    spec = dict(CASES[name])
    render = spec.pop("render")
    kw = dict(t_cold=1.0, t_hot=10.0, dt=DT, n_beads=spec.pop("n_beads", 2), **render)
    sim = simulate.bead_spring(**kw, **spec)
    test = simulate.bead_spring(**kw, **{**spec, "seed": spec["seed"] + 1000, "n_movies": 4})
    est = EPEstimator(seed=0, threads=threads)
    t0 = time.perf_counter()
    fit = est.fit(sim.movies, dt=DT)
    seconds = time.perf_counter() - t0
    k = fit.frames_per_input
    exact = test.truth.step_ep
    split = np.stack([est.stochastic_ep(m) for m in test.movies])
    even = np.stack([even_spread(est.window_ep(m), k) for m in test.movies])
    return {"case": name, "k": k, "fit_seconds": seconds, "threads": threads,
            "r2_split": r2(split, exact), "r2_even": r2(even, exact),
            "rate_split": float(split.mean() / DT), "rate_even": float(even.mean() / DT),
            "test_exact_rate": float(exact.mean() / DT), "fit_rate": fit.ep_rate,
            "commit": _commit(), "load": list(os.getloadavg())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", choices=sorted(CASES))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.cases:
        r = run_case(name, args.threads)
        (OUT / f"{name}.json").write_text(json.dumps(r, indent=1))
        print(f"{name}: k={r['k']} R² split {r['r2_split']:.3f} even {r['r2_even']:.3f}; "
              f"rate {r['rate_split']:.3f} (even {r['rate_even']:.3f}), test exact "
              f"{r['test_exact_rate']:.3f}; {r['fit_seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
