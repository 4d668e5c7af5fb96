"""Training throughput of 1 process against N processes (DDP, gloo) with the same global batch.

Each run trains on the same simulated 2-bead chain movies (simulated by every process
from the same seed) for a fixed number of steps, one torch thread per process, evaluating on
held-out data three times, and times the steps from the progress records (every 10 steps;
the setup, the first tenth of the steps, stretches with an evaluation and the final pass
over all frames are left out).  Transitions per second = steps x global batch / seconds::

    python benchmarks/bench_distributed.py                    # 1 process vs 2
    python benchmarks/bench_distributed.py --procs 1 2 4 --steps 1000

Result: ``benchmarks/results/distributed/distributed.json`` (throughput, ratio against
one process, EP rate and interval of each run, load average).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "distributed"


def worker(args) -> None:
    """One process of a run (started by torchrun, or alone for the plain 1-process run)."""
    from napari_dissipation import EPEstimator, simulate
    from napari_dissipation.estimate import distributed

    sim = simulate.bead_spring(n_beads=2, n_movies=args.movies, n_frames=args.frames,
                               dt=0.01, seed=0)
    est = EPEstimator(seed=0, batch_size=args.batch, max_iterations=args.steps,
                      eval_every=max(args.steps // 3, 1), threads=1, device="cpu")
    marks = []

    def progress(p):
        marks.append((p.iteration, p.seconds, p.evaluated))

    fit = est.fit(sim.movies, dt=sim.dt, progress=progress)
    ctx = distributed.current()
    distributed.shutdown()
    if not ctx.is_main:
        return
    steps = seconds = 0.0
    for (i0, t0, _), (i1, t1, evaluated) in zip(marks, marks[1:], strict=False):
        if i0 >= args.steps // 10 and not evaluated:
            steps, seconds = steps + i1 - i0, seconds + t1 - t0
    Path(args.worker).write_text(json.dumps({
        "processes": ctx.world_size, "global_batch": args.batch, "steps": fit.iterations,
        "timed_steps": steps, "timed_seconds": seconds,
        "transitions_per_second": steps * args.batch / seconds,
        "best_iteration": fit.best_iteration, "ep_rate": fit.ep_rate,
        "ep_rate_ci": list(fit.ep_rate_ci), "exact_ep_rate": sim.truth.ep_rate,
        "fit_seconds": fit.seconds}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=256, help="global batch")
    p.add_argument("--movies", type=int, default=20)
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    common = ["--steps", str(args.steps), "--batch", str(args.batch), "--movies",
              str(args.movies), "--frames", str(args.frames)]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.procs:
            out = Path(tmp) / f"{n}.json"
            launch = ([sys.executable] if n == 1 else
                      [sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={n}"])
            load_before = os.getloadavg()[0]
            t0 = time.perf_counter()
            subprocess.run(launch + [__file__, "--worker", str(out)] + common, check=True,
                           env=env)
            run = json.loads(out.read_text())
            run.update(wall_seconds=time.perf_counter() - t0, load_before=load_before,
                       load_after=os.getloadavg()[0])
            runs.append(run)
            print(json.dumps(run), flush=True)
    base = next((r for r in runs if r["processes"] == 1), runs[0])
    for r in runs:
        r["throughput_ratio"] = r["transitions_per_second"] / base["transitions_per_second"]
        lo, hi = base["ep_rate_ci"]
        r["rate_within_1proc_interval"] = bool(lo <= r["ep_rate"] <= hi)
    result = {"runs": runs, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "options": {"steps": args.steps, "global_batch": args.batch,
                          "movies": args.movies, "frames": args.frames, "threads": 1}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "distributed.json").write_text(json.dumps(result, indent=2))
    for r in runs:
        print(f"{r['processes']} process(es): {r['transitions_per_second']:.0f} transitions/s "
              f"(x{r['throughput_ratio']:.2f}), rate {r['ep_rate']:.3f} "
              f"[{r['ep_rate_ci'][0]:.3f}, {r['ep_rate_ci'][1]:.3f}] k_B/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
