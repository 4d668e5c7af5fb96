"""Time the paper's full 2-bead data set: 100 movies x 10,000 frames of 20 x 40 px, rendered.

Run::

    python benchmarks/bench_simulate.py [--movies 100] [--frames 10000] [--repeats 3]
    python benchmarks/bench_simulate.py --system filament_network --movies 20 --frames 2000

Prints the wall time of ``simulate.bead_spring`` (sampling with the exact kernel, the exact
EP of every transition and rendering to 8-bit frames), the load of the machine and a check
of the result (exact rate, the mean of the exact per-transition EP / dt).
"""

from __future__ import annotations

import argparse
import os
import platform
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=("bead_spring", "filament_network"),
                        default="bead_spring")
    parser.add_argument("--movies", type=int, default=100)
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--read-noise", type=float, default=0.0,
                        help="also time the camera noise (fraction of the spot peak)")
    args = parser.parse_args()

    from napari_dissipation import simulate

    make = getattr(simulate, args.system)  # defaults: 2-bead chain Tc = 1, Th = 10
    make(n_movies=2, n_frames=100, seed=0)  # warm-up (imports, caches)
    times = []
    for r in range(args.repeats):
        start = time.perf_counter()
        sim = make(n_movies=args.movies, n_frames=args.frames, dt=0.01, seed=r,
                   read_noise=args.read_noise)
        times.append(time.perf_counter() - start)
    print(f"{args.system}: {args.movies} movies x {args.frames} frames of "
          f"{sim.movies.shape[2]}x{sim.movies.shape[3]} px ({sim.movies.nbytes / 1e6:.0f} MB "
          f"{sim.movies.dtype}), read noise {args.read_noise}")
    print(f"wall time: best {min(times):.2f} s, all {', '.join(f'{t:.2f}' for t in times)} s")
    print(f"exact EP rate {sim.truth.ep_rate:.4f} k_B/s; mean exact step EP / dt "
          f"{sim.truth.step_ep.mean() / sim.dt:.4f} (analytic {sim.truth.discrete_ep_rate:.4f})")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} (1 min)" if load else "")


if __name__ == "__main__":
    main()
