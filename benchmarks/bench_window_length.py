"""Honest rates on noisy movies (issue 14): the window length chosen from the data.

Every case is a bead-spring chain with exact truth, fitted with the estimator's defaults
(``frames_per_input="auto"``) on one thread.  One JSON file per case is written to
``benchmarks/results/window_length/``; existing files are skipped::

    python benchmarks/bench_window_length.py shot100 read10 read30 hot3
    python benchmarks/bench_window_length.py coverage-clean coverage-noisy   # 20 sets each
    python benchmarks/bench_window_length.py table

Each result holds the rate and its interval, the exact rate, the mean exact EP rate of the
very transitions the rate is measured on (the test units), the window length chosen, the
rate-by-window curve, the lower-bound reasons, and the exact attainable share of the
chosen window length: the most an estimator reading k-frame windows of these movies can
recover on average (``LinearDiffusion.window_irreversibility`` with the localisation noise
of one spot, see ``robustness.spot_localisation_sd``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench_estimator import parse_options
from napari_dissipation import EPEstimator, simulate

OUT = Path(__file__).parent / "results" / "window_length"
DT = 0.01

CASES = {
    "shot100": dict(n_movies=20, n_frames=5000, seed=31, render=dict(photons=100.0)),
    "read10": dict(n_movies=20, n_frames=5000, seed=32, render=dict(read_noise=0.1)),
    "read30": dict(n_movies=20, n_frames=5000, seed=33, render=dict(read_noise=0.3)),
    "hot3": dict(n_beads=3, temperatures=(1.0, 8.0, 1.0), n_movies=30, n_frames=5000,
                 seed=34, render=dict(photons=3000.0)),
}
for _i in range(20):
    CASES[f"coverage_clean_{_i}"] = dict(n_movies=20, n_frames=1000, seed=200 + _i, render={})
    CASES[f"coverage_noisy_{_i}"] = dict(n_movies=20, n_frames=1000, seed=300 + _i,
                                         render=dict(photons=100.0))
GROUPS = {"coverage-clean": [f"coverage_clean_{i}" for i in range(20)],
          "coverage-noisy": [f"coverage_noisy_{i}" for i in range(20)]}


def attainable_share(model, k: int, render: dict) -> float:
    """Share of the mean exact step EP that k-frame windows of the movie can carry."""
    from robustness import spot_localisation_sd

    kl = model.window_irreversibility(k, DT, noise_sd=spot_localisation_sd(render))
    return float(kl / ((k - 1) * model.step_ep_mean(DT)))


def run_case(name: str, *, threads: int = 1, options: dict | None = None) -> dict:
    spec = dict(CASES[name])
    render = spec.pop("render")
    t0 = time.perf_counter()
    sim = simulate.bead_spring(t_cold=1.0, t_hot=10.0, dt=DT,
                               **{"n_beads": 2, **spec}, **render)
    t_sim = time.perf_counter() - t0
    est = EPEstimator(seed=0, threads=threads, **(options or {}))
    t1 = time.perf_counter()
    fit = est.fit(sim.movies, dt=sim.dt)
    seconds = time.perf_counter() - t1
    same = np.concatenate([sim.truth.step_ep[m][a:b] for m, a, b in fit.held_out])
    same_rate = float(same.mean() / DT)
    lo, hi = fit.ep_rate_ci
    k = fit.frames_per_input
    return {
        "case": name, "spec": {**spec, "render": render}, "exact_rate": sim.truth.ep_rate,
        "ep_rate": fit.ep_rate, "ep_rate_ci": [lo, hi], "same_transitions_rate": same_rate,
        "bias_vs_same": fit.ep_rate / same_rate - 1, "vs_exact": fit.ep_rate / sim.truth.ep_rate,
        "exact_in_ci": bool(lo <= sim.truth.ep_rate <= hi),
        "frames_per_input": k, "attainable_share": attainable_share(sim.model, k, render),
        "attainable_share_k2": attainable_share(sim.model, 2, render),
        "lower_bound": fit.lower_bound, "lower_bound_reasons": fit.lower_bound_reasons,
        "rate_by_window": fit.rate_by_window, "fit_seconds": seconds,
        "simulate_seconds": t_sim, "iterations": fit.iterations,
        "best_iteration": fit.best_iteration, "stop_reason": fit.stop_reason,
        "threads": threads, "options": options or {}, "model_stage": fit.model_stage,
        "ci_info": fit.ci_info,
        "commit": _commit(),
    }


def _commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=root, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], capture_output=True,
                               text=True, cwd=root).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table() -> str:
    rows = ["| case | rate (95% CI), k_B/s | exact | vs same transitions | exact in CI | k | "
            "attainable share at k (at k=2) | lower bound | fit time |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name in CASES:
        path = OUT / f"{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        lo, hi = r["ep_rate_ci"]
        rows.append(
            f"| {name} | {r['ep_rate']:.3f} ({lo:.3f} to {hi:.3f}) | {r['exact_rate']:.4g} | "
            f"{r['bias_vs_same']:+.1%} | {'yes' if r['exact_in_ci'] else '**no**'} | "
            f"{r['frames_per_input']} | {r['attainable_share']:.2f} "
            f"({r['attainable_share_k2']:.2f}) | {'yes' if r['lower_bound'] else 'no'} | "
            f"{r['fit_seconds']:.0f} s |")
    for group, names in GROUPS.items():
        done = [json.loads((OUT / f"{n}.json").read_text()) for n in names
                if (OUT / f"{n}.json").exists()]
        if done:
            inside = sum(r["exact_in_ci"] for r in done)
            flagged = sum(r["lower_bound"] for r in done if not r["exact_in_ci"])
            rows.append(f"\n{group}: exact rate inside the interval in {inside} of {len(done)}"
                        f" data sets; of the misses, {flagged} flagged as a lower bound; "
                        f"mean rate / exact {np.mean([r['vs_exact'] for r in done]):.3f}; "
                        f"k chosen: {sorted(r['frames_per_input'] for r in done)}")
    return "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", help="case names, group names, or 'table'")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--force", action="store_true")
    p.add_argument("--option", action="append", default=[], metavar="NAME=JSON",
                   help="an estimator option (not a default: the result records it)")
    args = p.parse_args(argv)
    if args.cases == ["table"]:
        print(table())
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    names = [n for c in args.cases for n in GROUPS.get(c, [c])]
    for name in names:
        path = OUT / f"{name}.json"
        if path.exists() and not args.force:
            continue
        r = run_case(name, threads=args.threads, options=parse_options(args.option))
        path.write_text(json.dumps(r, indent=1, default=float))
        print(f"{name}: {r['ep_rate']:.3f} {r['ep_rate_ci']} exact {r['exact_rate']:.3f} "
              f"same {r['same_transitions_rate']:.3f} k={r['frames_per_input']} "
              f"lower_bound={r['lower_bound']} {r['fit_seconds']:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
