"""``napari-dissipation simulate {bead-spring,mosaic,filament-network,...} ... --out DIR``.

DIR/ holds ``movie_000.tif`` ... (one (T, H, W) TIFF per movie, dt and pixel size in its
metadata), ``truth.json`` (exact EP rate, per-degree-of-freedom rates, regions, the true
EP-rate map, parameters), ``step_ep.npy`` (M, T-1: the exact EP of every transition,
referenced from truth.json) and ``truth_map.tif`` (the true map as a float32 image).  The
folder appears only when complete; an existing DIR is never touched.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import InputError

SYSTEMS = ("bead-spring", "mosaic", "filament-network", "anharmonic-chain", "particle-field")


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand with one sub-subcommand per system."""
    p = subparsers.add_parser(
        "simulate", help="write simulated movies with exact entropy production",
        description="Simulate Brownian movies whose entropy production is known exactly "
        "and write one TIFF per movie with truth.json beside them.")
    sub = p.add_subparsers(dest="system", metavar="SYSTEM", required=True)

    bs = sub.add_parser("bead-spring", help="N beads between two walls, each in its own bath",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bs.add_argument("--beads", type=int, default=2, help="number of beads N")
    bs.add_argument("--t-cold", type=float, default=1.0, help="temperature of bead 1")
    bs.add_argument("--t-hot", type=float, default=10.0, help="temperature of bead N")
    bs.add_argument("--temperatures", type=_floats, default=None, metavar="T1,T2,...",
                    help="one temperature per bead (overrides --t-cold/--t-hot)")
    _add_chain_physics(bs)
    _add_common(bs, frames=5000, movies=20)
    bs.set_defaults(func=run_bead_spring)

    mo = sub.add_parser(
        "mosaic", help="independent chains side by side, with the truth of each region",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mo.add_argument("--chain", action="append", type=_chain, metavar="NAME:N:TEMPS",
                    dest="chains", default=None,
                    help="a chain, left to right (repeat): name, number of beads and either "
                    "'cold,hot' (linear profile) or N temperatures; default "
                    "driven:2:1,10 and equilibrium:2:1,1")
    _add_chain_physics(mo)
    _add_common(mo, frames=5000, movies=20)
    mo.set_defaults(func=run_mosaic)

    fn = sub.add_parser(
        "filament-network", help="an elastic filament network with a few driven sites",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fn.add_argument("--nodes", type=int, default=None, metavar="N",
                    help="nodes per side of the triangular lattice (default: the simulator's)")
    fn.add_argument("--driven", type=int, default=None,
                    help="number of driven sites (default: the simulator's, 2)")
    fn.add_argument("--t-bath", type=float, default=None, help="bath temperature")
    fn.add_argument("--t-driven", type=float, default=None,
                    help="effective temperature of the driven nodes")
    fn.add_argument("--stiffness", type=float, default=None, help="filament spring constant")
    _add_common(fn, frames=5000, movies=20)
    fn.set_defaults(func=run_filament_network)
    _register_nonlinear(sub)


def _add_chain_physics(p) -> None:
    p.add_argument("--spring", dest="k", type=float, default=1.0, metavar="K",
                   help="spring constant k of the chain (and of the traps)")
    p.add_argument("--gamma", type=float, default=1.0, help="friction coefficient")


def _add_common(p, *, frames: int, movies: int) -> None:
    p.add_argument("--movies", type=int, default=movies, help="number of movies")
    p.add_argument("--frames", type=int, default=frames, help="frames per movie (>= 2)")
    p.add_argument("--dt", type=float, default=0.01, help="seconds per frame")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    r = p.add_argument_group("rendering")
    r.add_argument("--psf-sigma", type=float, default=None,
                   help="spot (PSF) standard deviation, pixels (default 1.5)")
    r.add_argument("--pixels-per-unit", type=float, default=None,
                   help="pixels per unit length (default 1)")
    r.add_argument("--background", type=float, default=None,
                   help="background as a fraction of the spot peak (default 0)")
    r.add_argument("--peak", type=float, default=None,
                   help="spot peak value (default 200 for 8 bit, 50000 for 16 bit)")
    r.add_argument("--bit-depth", type=int, choices=(8, 16), default=None,
                   help="8 or 16 bit output (default 8)")
    r.add_argument("--photons", type=float, default=None,
                   help="photons at a spot's peak: Poisson shot noise (default: none)")
    r.add_argument("--read-noise", type=float, default=None,
                   help="Gaussian read noise std as a fraction of the spot peak, e.g. 0.1")
    r.add_argument("--bin", type=int, default=None, dest="binning",
                   help="integer binning factor (default 1)")
    d = p.add_argument_group("microscope disturbances (all off by default; the exact EP is "
                             "unchanged)")
    d.add_argument("--bleach", type=float, default=None, metavar="SECONDS",
                   help="bleaching time constant in seconds: spot brightness falls as "
                   "exp(-t / SECONDS)")
    d.add_argument("--illumination-drift", type=float, default=None, metavar="FRACTION",
                   help="an uneven (tilted) background rising linearly over each movie to "
                   "this fraction of the spot peak, e.g. 0.2")
    d.add_argument("--stage-drift", type=float, default=None, metavar="PX_PER_S",
                   help="rigid drift of the whole scene, output pixels per second")
    d.add_argument("--stage-drift-angle", type=float, default=None, metavar="DEGREES",
                   help="direction of the stage drift, degrees from the x (column) axis "
                   "towards y (default 30)")


_RENDER_FLAGS = ("psf_sigma", "pixels_per_unit", "background", "peak", "bit_depth", "photons",
                 "read_noise", "binning", "bleach", "illumination_drift", "stage_drift",
                 "stage_drift_angle")


def _render_kwargs(args) -> dict:
    return {k: getattr(args, k) for k in _RENDER_FLAGS if getattr(args, k) is not None}


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        msg = f"expected comma-separated numbers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _chain(text: str) -> dict:
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected NAME:N:TEMPS, got {text!r}")
    name, n, temps = parts
    try:
        n_beads = int(n)
    except ValueError:
        msg = f"number of beads must be an integer in {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    values = _floats(temps)
    if len(values) == n_beads:
        return {"name": name, "n_beads": n_beads, "temperatures": values}
    if len(values) == 2:
        return {"name": name, "n_beads": n_beads, "t_cold": values[0], "t_hot": values[1]}
    raise argparse.ArgumentTypeError(
        f"{text!r}: give 'cold,hot' or {n_beads} temperatures")


def _check_out(args) -> Path:
    out = Path(args.out)
    if out.exists():
        raise InputError(f"{out}: already exists; choose another --out (earlier results are kept)")
    return out


def run_bead_spring(args) -> int:
    from .. import simulate

    out = _check_out(args)
    sim = simulate.bead_spring(
        n_beads=args.beads, t_cold=args.t_cold, t_hot=args.t_hot,
        temperatures=args.temperatures, n_movies=args.movies, n_frames=args.frames,
        dt=args.dt, seed=args.seed, k=args.k, gamma=args.gamma, **_render_kwargs(args))
    return write_simulation(out, sim, command="simulate bead-spring")


def run_mosaic(args) -> int:
    from .. import simulate

    out = _check_out(args)
    sim = simulate.mosaic(
        args.chains, n_movies=args.movies, n_frames=args.frames, dt=args.dt, seed=args.seed,
        k=args.k, gamma=args.gamma, **_render_kwargs(args))
    return write_simulation(out, sim, command="simulate mosaic")


def run_filament_network(args) -> int:
    from .. import simulate

    out = _check_out(args)
    physics = {"n_side": args.nodes, "n_driven": args.driven, "t_bath": args.t_bath,
               "t_driven": args.t_driven, "stiffness": args.stiffness}
    sim = simulate.filament_network(
        n_movies=args.movies, n_frames=args.frames, dt=args.dt, seed=args.seed,
        **{k: v for k, v in physics.items() if v is not None}, **_render_kwargs(args))
    return write_simulation(out, sim, command="simulate filament-network")


def _register_nonlinear(sub) -> None:
    """The anharmonic chain and the particle field (simulate/anharmonic.py, particles.py)."""
    ac = sub.add_parser(
        "anharmonic-chain", help="1 or 2 beads joined by quartic springs (non-linear forces)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ac.add_argument("--beads", type=int, default=2, help="number of beads (1 or 2)")
    ac.add_argument("--t-cold", type=float, default=1.0, help="temperature of bead 1")
    ac.add_argument("--t-hot", type=float, default=10.0, help="temperature of bead N")
    ac.add_argument("--quartic", dest="k4", type=float, default=3.0, metavar="K4",
                    help="quartic coefficient: spring energy k e^2/2 + K4 e^4/4")
    ac.add_argument("--substeps", type=int, default=40,
                    help="Heun substeps per frame (the exact EP integrates the heat over them)")
    _add_chain_physics(ac)
    _add_common(ac, frames=5000, movies=20)
    ac.set_defaults(func=run_anharmonic_chain)

    pf = sub.add_parser(
        "particle-field", help="independent particles in cells: driven gyrators and rotors "
        "among equilibrium beads", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pf.add_argument("--gyrators", type=int, default=3, help="two-temperature beads in tilted traps")
    pf.add_argument("--rotors", type=int, default=1, help="beads driven by a rotational force")
    pf.add_argument("--equilibrium", type=int, default=5, help="beads at equilibrium")
    pf.add_argument("--cell", type=int, default=32, help="side of each particle's cell, pixels")
    pf.add_argument("--layout-seed", type=int, default=0, help="seed of the cells' shuffle")
    _add_common(pf, frames=2000, movies=20)
    pf.set_defaults(func=run_particle_field)


def run_anharmonic_chain(args) -> int:
    from .. import simulate

    out = _check_out(args)
    sim = simulate.anharmonic_chain(
        n_beads=args.beads, t_cold=args.t_cold, t_hot=args.t_hot, k4=args.k4,
        n_sub=args.substeps, n_movies=args.movies, n_frames=args.frames, dt=args.dt,
        seed=args.seed, k=args.k, gamma=args.gamma, **_render_kwargs(args))
    return write_simulation(out, sim, command="simulate anharmonic-chain")


def run_particle_field(args) -> int:
    from .. import simulate

    out = _check_out(args)
    sim = simulate.particle_field(
        n_gyrators=args.gyrators, n_rotors=args.rotors, n_equilibrium=args.equilibrium,
        cell=args.cell, layout_seed=args.layout_seed, n_movies=args.movies,
        n_frames=args.frames, dt=args.dt, seed=args.seed, **_render_kwargs(args))
    return write_simulation(out, sim, command="simulate particle-field")


def write_simulation(out, sim, *, command: str = "simulate") -> int:
    """Write ``sim`` into the new folder ``out`` atomically; print a one-line summary."""
    from ..io import atomic_output, write_json, write_maps_tiff, write_movie

    n = sim.movies.shape[0]
    width = max(3, len(str(n - 1)))
    names = [f"movie_{m:0{width}d}.tif" for m in range(n)]
    with atomic_output(out, directory=True, overwrite=False) as tmp:
        for m, name in enumerate(names):
            write_movie(tmp / name, sim.movies[m], dt=sim.dt, pixel_size=sim.pixel_size,
                        metadata={"source": f"napari-dissipation {command}", "movie": m,
                                  "ep_rate": float(sim.truth.ep_rate)})
        np.save(tmp / "step_ep.npy", np.asarray(sim.truth.step_ep, dtype=np.float64))
        write_maps_tiff(tmp / "truth_map.tif", sim.truth.map.astype(np.float32), dt=sim.dt,
                        metadata={"what": "true EP-rate density, k_B/s per pixel",
                                  "pixel_size": sim.pixel_size})
        truth = sim.to_dict()
        truth.update({
            "command": f"napari-dissipation {command}",
            "movies": names,
            "step_ep_file": "step_ep.npy",
            "step_ep_shape": list(sim.truth.step_ep.shape),
            "step_ep_units": "k_B per transition t -> t+1 (row = movie)",
            "truth_map_file": "truth_map.tif",
        })
        write_json(tmp / "truth.json", truth)
    print(f"{out}: {n} movies x {sim.movies.shape[1]} frames of {sim.movies.shape[2]}x"
          f"{sim.movies.shape[3]} px, dt {sim.dt:g} s; exact EP rate "
          f"{sim.truth.ep_rate:.6g} k_B/s")
    return 0
