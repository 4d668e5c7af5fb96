"""``napari-dissipation map RUN MOVIE --out MAPS.tif``: dissipation maps of a movie.

Writes MAPS.tif, a float32 stack (T − 1, H, W) whose plane t is the map of transition
t -> t+1 in k_B per pixel, and MAPS.mean.tif, the time-averaged map as an EP-rate density
in k_B per second per pixel.  Both appear only when complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from ._common import add_selection_arguments, read_movies
from .fit import MODEL_FILE


def register(subparsers) -> None:
    """Add the ``map`` subcommand."""
    p = subparsers.add_parser(
        "map", help="dissipation maps of a movie from a trained run",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run folder written by `fit` (or a model.pt file)")
    p.add_argument("movie", metavar="MOVIE", help="movie: TIFF, OME-TIFF, ImageJ, .npy or Zarr")
    p.add_argument("--out", required=True, metavar="MAPS.tif", help="per-transition maps TIFF")
    p.add_argument("--dt", type=float, default=None,
                   help="seconds per frame for the averaged map (default: the run's)")
    p.add_argument("--mean-only", action="store_true",
                   help="write only the averaged map (streams; for long movies)")
    add_selection_arguments(p)
    p.set_defaults(func=run)


def mean_path(out: Path) -> Path:
    """MAPS.tif -> MAPS.mean.tif"""
    return out.with_name(out.stem + ".mean" + (out.suffix or ".tif"))


def run(args) -> int:
    from ..estimate import load_model
    from ..io import write_maps_tiff

    run_path = Path(args.run)
    model = run_path / MODEL_FILE if run_path.is_dir() else run_path
    if not run_path.exists():
        raise InputError(f"{run_path}: no such run folder")
    trained = load_model(model)
    movies = read_movies([args.movie], args)
    if len(movies) != 1:
        raise InputError(f"{args.movie}: holds {len(movies)} movies; `map` takes one")
    (movie,) = movies
    dt = args.dt if args.dt is not None else (trained.dt or movie.dt)
    if dt is None or dt <= 0:
        raise InputError(f"{args.movie}: no usable frame interval", option="dt")
    out = Path(args.out)
    density = trained.ep_rate_density(movie.data, dt=dt, name=str(movie.path))
    meta = {"unit": "k_B/s per pixel", "source": str(movie.path), "run": str(run_path)}
    maps = None
    if not args.mean_only:
        maps = trained.dissipation_map(movie.data, name=str(movie.path))
    write_maps_tiff(mean_path(out), density, dt=dt, metadata=meta)
    if maps is not None:
        write_maps_tiff(out, maps, dt=dt,
                        metadata={"unit": "k_B per pixel per transition",
                                  "source": str(movie.path), "run": str(run_path)})
    print(f"EP rate of the averaged map {density.sum():.4g} k_B/s; wrote "
          f"{'' if args.mean_only else str(out) + ' and '}{mean_path(out)}")
    return 0
