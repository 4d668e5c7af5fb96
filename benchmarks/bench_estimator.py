"""Accuracy, honesty and speed of the estimator against exact truth (issue 3).

Each case writes one JSON file to ``benchmarks/results/estimator/`` and skips cases whose
file exists, so the whole set can be run in pieces::

    python benchmarks/bench_estimator.py l1000          # M=100, L=1000, 10 min budget
    python benchmarks/bench_estimator.py l1000 --draw 11 --tag _draw11  # another draw
    python benchmarks/bench_estimator.py l10000         # M=100, L=10000
    python benchmarks/bench_estimator.py five-beads     # 5-bead chain, exact 0.6298
    python benchmarks/bench_estimator.py equilibrium    # Tc = Th
    python benchmarks/bench_estimator.py coverage       # 10 independent small data sets
    python benchmarks/bench_estimator.py throughput     # vs the published recipe, + profile

Rates are compared two ways: with the mean exact EP of the very transitions the rate was
measured on (the estimator's bias) and with the exact rate (is it inside the interval?).
R^2 is between the estimated and exact EP of each transition of 20 independent test
movies that took no part in training or validation.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from napari_dissipation import EPEstimator, simulate

OUT = Path(__file__).parent / "results" / "estimator"


def _held_out_exact(sim, result) -> float:
    """Mean exact EP rate of the held-out transitions the estimator's rate is measured on."""
    exact = np.concatenate([sim.truth.step_ep[m][a:b] for m, a, b in result.held_out])
    return float(exact.mean() / sim.dt)


def run_case(name: str, *, n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=100, n_frames=1000,
             seed=0, max_seconds=570.0, max_iterations=10**7, threads=2, test_movies=20,
             draw=None, **options) -> dict:
    """Fit one simulated data set with the estimator's ``seed``; ``draw``, when given, is
    the simulator's seed instead (another draw of the same system; the test movies' seed is
    it + 1000)."""
    sim_seed = seed if draw is None else draw
    t0 = time.perf_counter()
    sim = simulate.bead_spring(n_beads=n_beads, t_cold=t_cold, t_hot=t_hot, n_movies=n_movies,
                               n_frames=n_frames, dt=0.01, seed=sim_seed)
    t_sim = time.perf_counter() - t0
    est = EPEstimator(seed=seed, max_seconds=max_seconds, max_iterations=max_iterations,
                      threads=threads, **options)
    t1 = time.perf_counter()
    result = est.fit(sim.movies, dt=sim.dt)
    t_fit = time.perf_counter() - t1
    held_exact = _held_out_exact(sim, result)
    out = {
        "case": name, "n_beads": n_beads, "t_cold": t_cold, "t_hot": t_hot,
        "n_movies": n_movies, "n_frames": n_frames, "seed": seed, "draw": sim_seed,
        "options": options,
        "threads": threads, "exact_rate": sim.truth.ep_rate,
        "ep_rate": result.ep_rate, "ep_rate_ci": list(result.ep_rate_ci),
        "held_out_exact_mean": held_exact,
        "bias_vs_same_transitions": result.ep_rate / held_exact - 1 if held_exact else None,
        "exact_in_ci": result.ep_rate_ci[0] <= sim.truth.ep_rate <= result.ep_rate_ci[1],
        "fit_seconds": t_fit, "simulate_seconds": t_sim, "iterations": result.iterations,
        "stop_reason": result.stop_reason, "ci": result.ci_info,
        "frames_per_input": result.frames_per_input, "model_stage": result.model_stage,
        "lower_bound_reasons": result.lower_bound_reasons,
        "rate_by_window": result.rate_by_window,
        "warm_start": {k: v for k, v in result.history[0].get("warm_start", {}).items()
                       if k != "tried"},
    }
    if test_movies:
        test = simulate.bead_spring(n_beads=n_beads, t_cold=t_cold, t_hot=t_hot,
                                    n_movies=test_movies, n_frames=1000, dt=0.01,
                                    seed=sim_seed + 1000)
        pred = np.stack([est.stochastic_ep(m) for m in test.movies])
        exact = test.truth.step_ep
        out["test_r2"] = float(np.corrcoef(pred.ravel(), exact.ravel())[0, 1] ** 2)
        out["test_rate"] = float(pred.mean() / test.dt)
        out["test_exact_mean"] = float(exact.mean() / test.dt)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def throughput(threads: int = 2, seconds: float = 20.0) -> dict:
    """Training transitions per second: ours against a plain reference, same batch size.

    The reference follows the published CNEEP recipe for the 2-bead movies: a 5x5
    convolution to 32 channels, ReLU and 2x2 max-pooling, a block of two 3x3 convolutions
    to 64 channels, the network run on the input and on its time reversal, the difference
    as ΔS, and a plain Adam step on the NEEP objective; data sampled the same way.
    """
    import torch
    from torch import nn

    from napari_dissipation.estimate.data import MovieSet
    from napari_dissipation.estimate.objective import neep_objective
    from napari_dissipation.estimate.windows import batch_tensor

    torch.set_num_threads(threads)
    sim = simulate.bead_spring(n_movies=20, n_frames=1000, seed=0)
    data = MovieSet(sim.movies)
    norm = data.normalisation(np.random.default_rng(0))

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.h = nn.Sequential(
                nn.Conv2d(2, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1))

        def forward(self, x):
            return (self.h(x) - self.h(torch.flip(x, dims=[1]))).squeeze(1)

    def rate(model, batch=256):
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        rng = np.random.default_rng(0)
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            m = rng.integers(0, 20, batch)
            s = rng.integers(0, 999, batch)
            x = batch_tensor(data, m, s, norm, "cpu")
            loss = -neep_objective(model(x))
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += batch
        return n / (time.perf_counter() - t0)

    from napari_dissipation.estimate.model import EPNet

    results = {}
    for label, network in (("ours (default)", EPNet(frames_per_input=2, frame_shape=(20, 40))),
                           ("ours, global part only",
                            EPNet(frames_per_input=2, frame_shape=(20, 40), channels=0)),
                           ("reference (published recipe)", Reference())):
        results[label] = rate(network)
    ref = results["reference (published recipe)"]
    profile = _profile(threads)
    return {"case": "throughput", "threads": threads, "batch_size": 256,
            "transitions_per_second": results,
            "ratio_to_reference": {k: v / ref for k, v in results.items()},
            "profile_top": profile}


def _profile(threads: int) -> list:
    """Where a training step of the default estimator spends its time (torch profiler)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(threads)
    sim = simulate.bead_spring(n_movies=20, n_frames=500, seed=0)
    est = EPEstimator(seed=0, max_iterations=400, eval_every=1000, threads=threads)
    gen = est.fit_iter(sim.movies, dt=sim.dt)
    for _ in range(5):
        next(gen)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            next(gen)
    rows = []
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]:
        rows.append({"op": e.key, "share": e.self_cpu_time_total / total})
    return rows


CASES = {
    "l1000": lambda a, **o: run_case("l1000", max_seconds=a.seconds or 540, threads=a.threads,
                                     draw=a.draw, **o),
    "l10000": lambda a, **o: run_case("l10000", n_frames=10000, max_seconds=a.seconds or 1500,
                                      threads=a.threads, **o),
    "five-beads": lambda a, **o: run_case("five-beads", n_beads=5, n_frames=3000,
                                          max_seconds=a.seconds or 540, threads=a.threads, **o),
    "equilibrium": lambda a, **o: run_case("equilibrium", t_cold=3.0, t_hot=3.0,
                                           max_seconds=a.seconds or 300, threads=a.threads, **o),
}


def table(tag: str = "") -> str:
    """The results (files with ``tag``) as markdown rows: one per case, then one per
    coverage data set."""
    head = ("| case | rate (95% CI), k_B/s | exact | bias vs same transitions | exact in CI "
            "| test R² | fit time | steps (stop) | warm start (blur, patterns) |\n"
            "|---|---|---|---|---|---|---|---|---|")
    rows = [head]
    names = [f"{c}{tag}" for c in CASES] + [f"coverage{tag}_{i}" for i in range(10)]
    for name in names:
        path = OUT / f"{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        lo, hi = r["ep_rate_ci"]
        bias = r.get("bias_vs_same_transitions")
        bias = "—" if bias is None or abs(r["held_out_exact_mean"]) < 1e-9 else f"{bias:+.1%}"
        warm = r.get("warm_start") or {}
        r2 = r.get("test_r2")
        rows.append(
            f"| {name} | {r['ep_rate']:.3f} ({lo:.3f} to {hi:.3f}) | {r['exact_rate']:.4g} | "
            f"{bias} | {'yes' if r['exact_in_ci'] else '**no**'} | "
            f"{'—' if r2 is None or r2 != r2 else f'{r2:.3f}'} | {r['fit_seconds']:.0f} s | "
            f"{r['iterations']} ({r['stop_reason']}) | "
            f"{_warm_cell(warm)} |")
    return "\n".join(rows)


def _warm_cell(warm: dict) -> str:
    """The warm start's blur and pattern count, or each averaged read-out's."""
    if warm.get("blend"):
        return "average of " + ", ".join(f"{b:g} px {m}" for b, m in warm["blend"])
    return f"{warm.get('smoothing', '—')} px, {warm.get('n_patterns', '—')}"


def parse_options(pairs: list[str]) -> dict:
    """``NAME=JSON`` pairs as estimator options."""
    return {k: json.loads(v) for k, v in (p.split("=", 1) for p in pairs)}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=[*CASES, "coverage", "throughput", "table"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=None, help="fit budget override")
    parser.add_argument("--force", action="store_true", help="run even if the result exists")
    parser.add_argument("--channels", type=int, default=None,
                        help="width of the convolutional part (0: global part only)")
    parser.add_argument("--draw", type=int, default=None,
                        help="l1000: the simulator's seed (another draw of the same set)")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=JSON",
                        help="an estimator option, e.g. nonstationarity='\"check\"'")
    args = parser.parse_args()
    extra = {} if args.channels is None else {"channels": args.channels}
    extra.update(parse_options(args.option))
    OUT.mkdir(parents=True, exist_ok=True)
    if args.case == "table":
        print(table(args.tag))
        return
    if args.case == "coverage":
        for i in range(10):
            path = OUT / f"coverage{args.tag}_{i}.json"
            if path.exists() and not args.force:
                continue
            res = run_case(f"coverage_{i}", n_movies=20, n_frames=1000, seed=100 + i,
                           max_seconds=args.seconds or 60, threads=args.threads,
                           test_movies=0, **extra)
            path.write_text(json.dumps(res, indent=2))
            print(json.dumps(res))
        files = [OUT / f"coverage{args.tag}_{i}.json" for i in range(10)]
        hits = [json.loads(f.read_text())["exact_in_ci"] for f in files if f.exists()]
        print(f"coverage: exact rate inside the 95% interval in {sum(hits)} of {len(hits)}")
        return
    path = OUT / f"{args.case}{args.tag}.json"
    if path.exists() and not args.force:
        print(path.read_text())
        return
    if args.case == "throughput":
        res = throughput(args.threads)
    else:
        res = CASES[args.case](args, **extra)
    path.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
