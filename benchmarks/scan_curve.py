"""The window-length scan alone, against the exact EP of the very test transitions.

For one case of ``bench_window_length.py`` (optionally with more movies), run
:func:`~napari_dissipation.estimate.window_length.scan_window_lengths` with the estimator's
split (validation 0.2, test 0.25, seed 0, one thread) and print, for each window length k,
the validation mean rate, the validation lower bound (held-out NEEP objective + 1 per
transition), the test mean rate and its interval, beside the mean exact EP of the test
transitions (which does not depend on k). Writes
``benchmarks/results/window_length/scan_CASE_mM.json`` (``..._all.json`` with ``--all``).

Examples
--------
::

    python benchmarks/scan_curve.py coverage_noisy_19
    python benchmarks/scan_curve.py coverage_noisy_19 --movies 100
    python benchmarks/scan_curve.py read10 --all
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from bench_window_length import CASES, DT, OUT, _commit
from napari_dissipation import simulate
from napari_dissipation.estimate import window_length
from napari_dissipation.estimate.data import MovieSet
from napari_dissipation.estimate.stats import split_units
from napari_dissipation.estimate.window_length import scan_window_lengths
from napari_dissipation.options import defaults


def run(name: str, movies: int | None = None, patterns: int | None = None) -> dict:
    spec = dict(CASES[name])
    render = spec.pop("render")
    if movies:
        spec["n_movies"] = movies
    sim = simulate.bead_spring(t_cold=1.0, t_hot=10.0, dt=DT, **{"n_beads": 2, **spec},
                               **render)
    torch.set_num_threads(1)
    data = MovieSet(sim.movies, frames_per_input=2)
    rng = np.random.default_rng(0)
    norm = data.normalisation(rng)
    opts = defaults()  # the estimator's own split and pattern count
    split = split_units(data.lengths, validation_fraction=opts["validation_fraction"],
                        test_fraction=opts["test_fraction"], rng=rng)
    t0 = time.perf_counter()
    scan = scan_window_lengths(data, split, norm, window_seconds=DT,
                               device=torch.device("cpu"), seed=0,
                               n_patterns=patterns or opts["n_patterns"],
                               rng=np.random.default_rng([0, 0xC0DE]))
    same = np.concatenate([sim.truth.step_ep[m][a:b] for m, a, b in split.test])
    return {"case": name, "n_movies": spec["n_movies"], "exact_rate": sim.truth.ep_rate,
            "same_transitions_rate": float(same.mean() / DT), "chosen": scan.chosen,
            "still_rising": scan.still_rising, "curve": scan.curve,
            "seconds": time.perf_counter() - t0, "commit": _commit()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=sorted(CASES))
    p.add_argument("--movies", type=int, default=None, help="movies (default: the case's)")
    p.add_argument("--patterns", type=int, default=None,
                   help="most whole-frame patterns (default: the estimator's)")
    p.add_argument("--all", action="store_true",
                   help="try every window length (no stop after the rate stops rising)")
    args = p.parse_args(argv)
    if args.all:
        window_length.PATIENCE = len(window_length.LADDER)
    res = run(args.case, args.movies, args.patterns)
    OUT.mkdir(parents=True, exist_ok=True)
    name = (f"scan_{args.case}_m{res['n_movies']}{'_all' if args.all else ''}"
            f"{f'_p{args.patterns}' if args.patterns else ''}.json")
    (OUT / name).write_text(json.dumps(res, indent=2))
    print(f"{args.case}, {res['n_movies']} movies: exact {res['exact_rate']:.3f}, test "
          f"transitions {res['same_transitions_rate']:.3f} k_B/s; chosen k = {res['chosen']}")
    print("k  validation mean  validation bound  test mean (95% CI)")
    for e in res["curve"]:
        print(f"{e['k']:<3}{e['validation_rate']:>15.3f}{e['validation_bound']:>18.3f}"
              f"   {e['rate']:.3f} ({e['ci'][0]:.2f} to {e['ci'][1]:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
