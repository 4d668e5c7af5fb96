"""Dissipation maps against the exact truth: 2-bead chain, mosaic, filament network.

For each system: simulate training movies (seed 0) and independent test movies (seed 1;
``--data-seed D`` makes them 2D and 2D + 1),
fit an :class:`~napari_dissipation.EPEstimator`, average the EP-rate density
(``est.ep_rate_density``) over the test movies and compare it with the simulator's exact
truth; save a figure (averaged map beside the true map) under ``docs/images/``.

Measures printed (and written as JSON with ``--json``):

* all systems: the map's integral (the test movies' EP rate) against the exact
  continuous-time rate and the test movies' own mean exact step EP / dt;
* 2-bead chain: the integral over each bead's 20 x 20 cell against the bead's exact rate;
* mosaic: each region's integral against its exact rate, and the share of the map's
  integral (and of its positive part) in the driven region;
* filament network: the Pearson correlation of the averaged map with the true map
  (``truth.map``), both blurred by the same Gaussian (``--blur`` lattice spacings, default
  0.5), and the share of the positive part of the map within ``--radius`` lattice spacings
  (default 1.5) of a driven node, beside the same share of the true map and the share of
  the frame's area.

Examples
--------
::

    python benchmarks/bench_maps.py --system chain --seconds 180
    python benchmarks/bench_maps.py --system mosaic --seconds 180
    python benchmarks/bench_maps.py --system filament --seconds 300 --options n_patterns=64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from napari_dissipation import EPEstimator, simulate

HERE = Path(__file__).resolve().parent
IMAGES = HERE.parent / "docs" / "images"

DEFAULTS = {  # movies, frames, test movies
    "chain": (40, 1000, 10),
    "mosaic": (40, 1000, 10),
    "filament": (80, 1000, 10),
}


def parse_options(text: str) -> dict:
    """``"n_patterns=64,channels=8"`` -> ``{"n_patterns": 64, "channels": 8}``."""
    out = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def simulate_system(system: str, n_movies: int, n_frames: int, seed: int):
    """Simulated movies with truth for one of the three systems."""
    if system == "chain":
        return simulate.bead_spring(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=n_movies,
                                    n_frames=n_frames, dt=0.01, seed=seed)
    if system == "mosaic":
        return simulate.mosaic(n_movies=n_movies, n_frames=n_frames, dt=0.01, seed=seed)
    if system == "filament":
        # dt = 0.02 s: 0.11 k_B of EP per transition, and the discrete-time rate is still
        # 96% of the continuous one.
        return simulate.filament_network(n_movies=n_movies, n_frames=n_frames, dt=0.02,
                                         seed=seed)
    raise ValueError(system)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def near_driven_mask(sim, radius: float) -> np.ndarray:
    """Pixels within ``radius`` lattice spacings of a driven node's rest position."""
    info = sim.truth.info
    h, w = sim.truth.map.shape
    nodes = np.asarray(info["node_rest_pixels"])[np.asarray(info["driven_nodes"], dtype=int)]
    spacing_px = info["spacing"] * sim.render.pixels_per_unit / sim.render.binning
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), dtype=bool)
    for r, c in nodes:
        mask |= (yy - r) ** 2 + (xx - c) ** 2 <= (radius * spacing_px) ** 2
    return mask


def measure(system: str, sim, test, density: np.ndarray, args) -> dict:
    """Compare the averaged map ``density`` (k_B/s per pixel) with the truth."""
    truth = test.truth
    out = {
        "map_integral": float(density.sum()),
        "exact_rate": float(truth.ep_rate),
        "test_sampled_rate": float(np.mean(truth.step_ep) / test.dt),
        "discrete_rate": float(truth.discrete_ep_rate),
    }
    out["rel_error_vs_exact"] = out["map_integral"] / out["exact_rate"] - 1
    if system == "chain":
        h, w = density.shape
        cells = [slice(0, w // 2), slice(w // 2, w)]
        out["beads"] = [
            {"map": float(density[:, c].sum()), "exact": float(truth.dof_ep_rate[i]),
             "true_map": float(truth.map[:, c].sum())}
            for i, c in enumerate(cells)
        ]
    if system == "mosaic":
        pos = np.clip(density, 0, None)
        regions = []
        for reg in truth.regions:
            regions.append({"name": reg.name, "map": float(density[reg.mask].sum()),
                            "exact": float(reg.ep_rate),
                            "positive_share": float(pos[reg.mask].sum() / pos.sum()),
                            "share": float(density[reg.mask].sum() / density.sum())})
        out["regions"] = regions
        driven, eq = regions[0], regions[1]
        out["driven_share"] = driven["share"]
        out["driven_rel_error"] = driven["map"] / driven["exact"] - 1
        out["equilibrium_over_driven_exact"] = eq["map"] / driven["exact"]
    if system == "filament":
        spacing_px = truth.info["spacing"] * test.render.pixels_per_unit / test.render.binning
        sigma = args.blur * spacing_px
        blurred = gaussian_filter(density, sigma, mode="constant")
        true_blurred = gaussian_filter(truth.map, sigma, mode="constant")
        out["blur_sigma_px"] = float(sigma)
        out["r_blurred"] = pearson(blurred, true_blurred)
        out["r_blurred_vs_unblurred_truth"] = pearson(blurred, truth.map)
        out["r_unblurred"] = pearson(density, truth.map)
        near = near_driven_mask(test, args.radius)
        pos = np.clip(density, 0, None)
        out["radius_spacings"] = args.radius
        out["positive_share_near_driven"] = float(pos[near].sum() / pos.sum())
        out["share_near_driven"] = float(density[near].sum() / density.sum())
        out["true_share_near_driven"] = float(truth.map[near].sum() / truth.map.sum())
        out["area_share_near_driven"] = float(near.mean())
    return out


def figure(system: str, test, density: np.ndarray, res: dict, path: Path, args) -> None:
    """Averaged map beside the true map (and, for the network, both blurred)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    truth = test.truth
    panels = [("estimated, test-movie mean", density),
              ("exact (truth.map)", truth.map)]
    if system == "filament":
        sigma = res["blur_sigma_px"]
        panels += [(f"estimated, blurred ({sigma:.1f} px)",
                    gaussian_filter(density, sigma, mode="constant")),
                   (f"exact, blurred ({sigma:.1f} px)",
                    gaussian_filter(truth.map, sigma, mode="constant"))]
    n = len(panels)
    h, w = density.shape
    wide = w / h > 1.5
    if wide:
        fig, axes = plt.subplots(n, 1, figsize=(7, 1.0 + n * 7 * h / w + 0.6 * n))
    else:
        fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 4.0))
    axes = np.atleast_1d(axes)
    for ax, (title, img) in zip(axes, panels, strict=True):
        vmax = float(np.abs(img).max()) or 1.0
        im = ax.imshow(img, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{title}\nsum {img.sum():.3f} k_B/s", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8, label="k_B/s per px")
        if system == "mosaic":
            for reg in truth.regions:
                r, c = reg.rows, reg.cols
                ax.add_patch(Rectangle((c.start - 0.5, r.start - 0.5), c.stop - c.start,
                                       r.stop - r.start, fill=False, ec="k", lw=1, ls="--"))
                ax.text(c.start + 1, r.start + 2, reg.name, fontsize=7)
        if system == "filament":
            info = truth.info
            nodes = np.asarray(info["node_rest_pixels"])
            ax.plot(nodes[:, 1], nodes[:, 0], "k.", ms=2)
            d = nodes[np.asarray(info["driven_nodes"], dtype=int)]
            ax.plot(d[:, 1], d[:, 0], "o", mfc="none", mec="k", ms=9)
    fig.suptitle(f"{system}: map integral {res['map_integral']:.3f} k_B/s, exact rate "
                 f"{res['exact_rate']:.3f} k_B/s", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _warm_summary(fit) -> dict:
    """What the warm start chose (family, tiles, pattern count) and its held-out rate."""
    warm = fit.history[0].get("warm_start", {}) if fit.history else {}
    out = {k: warm.get(k) for k in ("family", "smoothing", "n_patterns", "tiles", "seconds")}
    out["rate"] = fit.history[0].get("ep_rate") if fit.history else None
    return out


def run(system: str, args) -> dict:
    n_movies, n_frames, n_test = DEFAULTS[system]
    n_movies = args.movies or n_movies
    n_frames = args.frames or n_frames
    n_test = args.test_movies or n_test
    t0 = time.perf_counter()
    sim = simulate_system(system, n_movies, n_frames, seed=2 * args.data_seed)
    test = simulate_system(system, n_test, n_frames, seed=2 * args.data_seed + 1)
    t_sim = time.perf_counter() - t0
    options = dict(seed=args.seed, threads=args.threads, max_seconds=args.seconds)
    options.update(parse_options(args.options))
    est = EPEstimator(**options)
    fit = est.fit(sim.movies, dt=sim.dt)
    t1 = time.perf_counter()
    per_movie = np.array([est.ep_rate_density(m, dt=test.dt) for m in test.movies])
    density = per_movie.mean(axis=0)
    t_map = time.perf_counter() - t1
    res = measure(system, sim, test, density, args)
    # scatter between test movies: standard error of the map integral (independent movies)
    integrals = per_movie.sum(axis=(1, 2))
    res["map_integral_se"] = float(integrals.std(ddof=1) / np.sqrt(len(integrals)))
    res["exact_test_rate_se"] = float(
        np.std(test.truth.step_ep.mean(axis=1), ddof=1) / np.sqrt(n_test) / test.dt)
    res.update(system=system, options={k: v for k, v in options.items()}, data_seed=args.data_seed,
               train=f"{n_movies} x {n_frames} frames", test=f"{n_test} x {n_frames} frames",
               fit_rate=fit.ep_rate, fit_ci=list(fit.ep_rate_ci), fit_seconds=fit.seconds,
               iterations=fit.iterations, best_iteration=fit.best_iteration,
               stop_reason=fit.stop_reason, warm_start=_warm_summary(fit),
               history=[{k: h.get(k) for k in ("iteration", "val_objective", "ep_rate")}
                        for h in fit.history],
               simulate_seconds=t_sim, map_seconds=t_map,
               load_average=os.getloadavg(), machine=platform.processor() or platform.machine(),
               cpus=os.cpu_count())
    name = {"chain": "maps_bead_spring.png", "mosaic": "maps_mosaic.png",
            "filament": "maps_filament_network.png"}[system]
    if not args.no_figure:
        figure(system, test, density, res, Path(args.image_dir) / name, args)
        res["figure"] = str(Path(args.image_dir) / name)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", choices=["chain", "mosaic", "filament", "all"], default="all")
    p.add_argument("--movies", type=int, default=None, help="training movies")
    p.add_argument("--frames", type=int, default=None, help="frames per movie")
    p.add_argument("--test-movies", type=int, default=None)
    p.add_argument("--seconds", type=float, default=180.0, help="training budget per system")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="the estimator's seed (its split)")
    p.add_argument("--data-seed", type=int, default=0,
                   help="movies: training seed 2D, test seed 2D + 1")
    p.add_argument("--options", default="", help="estimator options, e.g. n_patterns=64,channels=8")
    p.add_argument("--blur", type=float, default=0.5, help="blur sigma, lattice spacings")
    p.add_argument("--radius", type=float, default=1.5,
                   help="'near a driven node' radius, lattice spacings")
    p.add_argument("--image-dir", default=str(IMAGES))
    p.add_argument("--no-figure", action="store_true")
    p.add_argument("--json", default=None, help="append the results to this JSON-lines file")
    args = p.parse_args(argv)
    systems = ["chain", "mosaic", "filament"] if args.system == "all" else [args.system]
    for system in systems:
        res = run(system, args)
        text = json.dumps(res, default=float)
        print(text, flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
