"""Peak memory of ``napari-dissipation fit`` on a 16-bit OME-TIFF larger than 8 GB.

The movie is made by the simulator in pieces (2-bead chain, 64 x 128 px frames, 16-bit)
and appended frame by frame to one uncompressed BigTIFF/OME series with ``TimeIncrement``
in its metadata, so the fit takes dt from the file.  Then ``/usr/bin/time -v`` runs the fit
and the script records its maximum resident set size (kB), wall time and the summary::

    python benchmarks/bench_bigfile.py --dir /work/big            # write, fit, delete
    python benchmarks/bench_bigfile.py --dir /work/big --keep     # keep the movie
    python benchmarks/bench_bigfile.py --dir /work/big --write-only

Result: ``benchmarks/results/bigfile/bigfile.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "bigfile"
DT = 0.01
CELL = 64
CHUNK = 10_000


def write_movie(path: Path, n_frames: int, seed: int = 0) -> dict:
    """Write ``n_frames`` simulated 16-bit frames, (n_frames, 64, 128), as one OME series.

    Each chunk of :data:`CHUNK` frames is an independent stationary stretch of the chain
    (its own seed), so about one transition in 10,000 is a jump between stretches.
    """
    import tifffile

    from napari_dissipation import simulate

    shape = (n_frames, CELL, 2 * CELL)
    rate = []

    def frames():
        for i, a in enumerate(range(0, n_frames, CHUNK)):
            n = min(CHUNK, n_frames - a)
            sim = simulate.bead_spring(n_beads=2, n_movies=1, n_frames=max(n, 2), dt=DT,
                                       seed=seed + i, cell=CELL, pixels_per_unit=CELL / 20,
                                       bit_depth=16)
            rate.append(sim.truth.ep_rate)
            yield from sim.movies[0, :n]

    tmp = path.with_name(path.name + ".part")
    t0 = time.perf_counter()
    with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
        tif.write(frames(), shape=shape, dtype=np.uint16, photometric="minisblack",
                  metadata={"axes": "TYX", "TimeIncrement": DT, "TimeIncrementUnit": "s"})
    os.replace(tmp, path)
    return {"file": str(path), "bytes": path.stat().st_size, "frames": n_frames,
            "frame_shape": list(shape[1:]), "dtype": "uint16", "dt": DT,
            "exact_ep_rate": float(rate[0]), "write_seconds": time.perf_counter() - t0}


def run_fit(movie: Path, out: Path, max_seconds: float, threads: int) -> dict:
    """Run the fit under ``/usr/bin/time -v``; return peak RSS, wall time and the summary."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "napari_dissipation", "fit", str(movie),
           "--out", str(out), "--max-seconds", str(max_seconds), "--threads", str(threads),
           "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"fit failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    elapsed = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", proc.stderr).group(1)
    summary = json.loads((out / "summary.json").read_text())
    n_rows = sum(1 for _ in open(out / "stochastic_ep.csv")) - 1
    return {"command": " ".join(cmd[2:]), "max_rss_kb": rss, "max_rss_gb": rss / 1e6,
            "wall_seconds": wall, "time_elapsed": elapsed, "stdout": proc.stdout.strip(),
            "ep_rate": summary["ep_rate"], "ep_rate_ci": summary["ep_rate_ci"],
            "dt": summary["dt"], "dt_source": summary.get("dt_source"),
            "iterations": summary["iterations"], "n_transitions": summary["n_transitions"],
            "stochastic_ep_rows": n_rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, required=True, help="folder for the movie and the run")
    p.add_argument("--frames", type=int, default=500_000,
                   help="frames (64 x 128 px, 16 KiB each): 500,000 make 8.2 GB")
    p.add_argument("--max-seconds", type=float, default=60.0, help="training budget")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the movie afterwards")
    p.add_argument("--write-only", action="store_true")
    args = p.parse_args(argv)

    args.dir.mkdir(parents=True, exist_ok=True)
    movie = args.dir / "big.ome.tif"
    info_file = args.dir / "big.json"
    if movie.exists() and info_file.exists():
        info = json.loads(info_file.read_text())
    else:
        info = write_movie(movie, args.frames)
        info_file.write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    if args.write_only:
        return 0
    out = args.dir / "run"
    if out.exists():
        shutil.rmtree(out)
    fit = run_fit(movie, out, args.max_seconds, args.threads)
    load = os.getloadavg()
    result = {"movie": info, "fit": fit, "load_average": load, "cpus": os.cpu_count(),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bigfile.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if not args.keep:
        movie.unlink()
        info_file.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
