"""Averaging the best few read-outs across blur scales on the l1000 movies (an experiment,
not what the estimator does).

The warm start keeps one (blur, pattern count) read-out, chosen on 20 validation movies,
and on l1000 that choice is below what those movies resolve (``l1000_cv.py``,
``l1000_ceiling.py``).  Here every candidate of the estimator's grid (blur
:data:`~napari_dissipation.estimate.warmstart.SMOOTHINGS`, 2 to 10 patterns) is fitted on
the first 55 movies of a draw and ranked by its NEEP objective on the next 20 (the
estimator's shares, not its exact movies); then the equal-weight average of the top n
read-outs' ΔS (different blurs are different pattern sets) is measured by per-transition
R² (squared correlation) against the exact EP of ten independent test sets (seeds
draw + 1000 to draw + 1009), pooled.  The average of antisymmetric read-outs is
antisymmetric and splits over pixels like each of them; the NEEP objective is concave in
ΔS, so the average's objective is at least the mean of its members'::

    python benchmarks/l1000_ensemble.py --draws 0 11 1 2 3
    python benchmarks/l1000_ensemble.py --blurs 4 8 12 --counts 2 3 4 5 6 8 10 \
        --tops 3 4 5 --tag _b4_8_12

``slots_top<n>`` keeps the best n that fit in the estimator's 16 whole-frame pattern slots
together (the members a model can hold).  Writes
``benchmarks/results/estimator/l1000_ensemble<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from l1000_ceiling import CHAIN, _fit, _r2
from l1000_patterns import RIDGE, coordinates
from napari_dissipation import simulate
from napari_dissipation.estimate.candidates import SIGNIFICANCE, _in_se
from napari_dissipation.estimate.model import linear_branch_features, principal_patterns
from napari_dissipation.estimate.objective import neep_objective
from napari_dissipation.estimate.warmstart import SMOOTHINGS

OUT = Path(__file__).parent / "results" / "estimator" / "l1000_ensemble.json"
COUNTS = (2, 3, 4, 5, 6, 8, 10)
N_TRAIN, N_VAL = 55, 20
#: The estimator's whole-frame pattern slots (its default ``n_patterns``).
SLOTS = 16


def _read_outs(draw: int, n_sets: int, blurs=SMOOTHINGS,
               counts=COUNTS) -> tuple[list, np.ndarray]:
    """Every candidate's validation objective and pooled test ΔS, and the exact test EP."""
    sim = simulate.bead_spring(n_movies=N_TRAIN + N_VAL, seed=draw, **CHAIN)
    movies = np.asarray(sim.movies, dtype=np.float64)
    train, val = movies[:N_TRAIN], movies[N_TRAIN:]
    tests = [simulate.bead_spring(n_movies=20, seed=draw + 1000 + s, **CHAIN)
             for s in range(n_sets)]
    held = [np.asarray(t.movies, dtype=np.float64) for t in tests]
    exact = np.concatenate([t.truth.step_ep.ravel() for t in tests])
    pick = np.random.default_rng(0).choice(N_TRAIN * CHAIN["n_frames"], 2000, replace=False)
    frames = train.reshape(-1, *train.shape[2:])[pick]
    rows = []
    for blur in blurs:
        patterns, mean = principal_patterns(frames, max(counts), blur)
        z, dz = coordinates(train, patterns, mean)
        zv, dzv = coordinates(val, patterns, mean)
        zt = [coordinates(h, patterns, mean) for h in held]
        for m in counts:
            theta = _fit(z[:, :m], dz[:, :m], RIDGE)
            ev = linear_branch_features(zv[:, :m], dzv[:, :m]).double() @ theta
            test = np.concatenate([(linear_branch_features(a[:, :m], b[:, :m]).double()
                                    @ theta).numpy() for a, b in zt])
            rows.append({"blur": blur, "patterns": m, "val_objective": float(neep_objective(ev)),
                         "significant": _in_se(ev) > SIGNIFICANCE, "test_ep": test})
    return rows, exact


def _figures(ep: np.ndarray, exact: np.ndarray) -> dict:
    return {"r2": _r2(ep, exact), "rate": float(ep.mean() / CHAIN["dt"])}


def one_draw(draw: int, n_sets: int, tops=(1, 3, 5), blurs=SMOOTHINGS,
             counts=COUNTS) -> dict:
    rows, exact = _read_outs(draw, n_sets, blurs, counts)
    ranked = sorted((r for r in rows if r["significant"]), key=lambda r: -r["val_objective"])
    out = {"draw": draw, "test_exact_rate": float(exact.mean() / CHAIN["dt"]),
           "ranking": [[r["blur"], r["patterns"], r["val_objective"],
                        _figures(r["test_ep"], exact)["r2"]] for r in ranked[:8]]}
    for n in tops:
        out[f"top{n}"] = dict(_figures(np.mean([r["test_ep"] for r in ranked[:n]], axis=0),
                                       exact),
                              members=[[r["blur"], r["patterns"]] for r in ranked[:n]])
    for n in tops:  # as the model holds them: at most SLOTS patterns in all
        kept, used = [], 0
        for r in ranked:
            if len(kept) < n and used + r["patterns"] <= SLOTS:
                kept.append(r)
                used += r["patterns"]
        out[f"slots_top{n}"] = dict(_figures(np.mean([r["test_ep"] for r in kept], axis=0),
                                             exact),
                                    members=[[r["blur"], r["patterns"]] for r in kept])
    fixed = next((r for r in rows if r["blur"] == 8.0 and r["patterns"] == 4), None)
    if fixed is not None:
        out["fixed_8px_4"] = _figures(fixed["test_ep"], exact)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=int, nargs="+", default=[0, 11, 1, 2, 3])
    p.add_argument("--test-sets", type=int, default=10)
    p.add_argument("--blurs", type=float, nargs="+", default=list(SMOOTHINGS))
    p.add_argument("--counts", type=int, nargs="+", default=list(COUNTS))
    p.add_argument("--tops", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--tag", default="", help="added to the result file's name")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load = list(os.getloadavg())
    results = []
    for d in args.draws:
        row = one_draw(d, args.test_sets, tuple(args.tops), args.blurs, args.counts)
        results.append(row)
        keys = [f"{p}top{n}" for p in ("", "slots_") for n in args.tops]
        keys += ["fixed_8px_4"] * ("fixed_8px_4" in row)
        print(f"draw {d}: " + ", ".join(
            f"{k} R² {row[k]['r2']:.4f} rate {row[k]['rate']:.3f}" for k in keys)
            + f" (test exact {row['test_exact_rate']:.3f})", flush=True)
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=Path(__file__).parent).stdout.strip()
    out = OUT.with_name(f"{OUT.stem}{args.tag}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"draws": results, "load": load, "git": git,
                               "command": "python benchmarks/l1000_ensemble.py "
                                          + " ".join(sys.argv[1:])}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
