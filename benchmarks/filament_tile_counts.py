"""The kept tiles' pattern count on the filament network, read on movies the fit never saw.

Fits the estimator with its defaults on ``bench_filament.py``'s 32 training movies and,
when its tile family reaches the count ladder, refits that ladder on the same kept tiles
(each moved to other sides about its centre) and at other blurs, for every count up to
32.  Each fit is read on the validation windows (as the estimator does) and on every
window of the benchmark's 8 test movies, against their same transitions' exact EP.  The
averages of the fits each ladder keeps are printed too.

    python benchmarks/filament_tile_counts.py --dt 0.01 --blurs 1.5 2.5 4 6 --sides 24
    python benchmarks/filament_tile_counts.py --dt 0.01 --blurs 1.5 --sides 24 20 16 12

The estimator's stages are wrapped, not changed: the kept model is the estimator's own.
"""

from __future__ import annotations

import argparse
import inspect
import itertools

import numpy as np
import torch

from napari_dissipation import EPEstimator, simulate
from napari_dissipation.estimate import tiles
from napari_dissipation.estimate.candidates import _features
from napari_dissipation.estimate.data import MovieSet
from napari_dissipation.estimate.objective import neep_objective

COUNTS = (2, 3, 4, 6, 8, 12, 16, 20, 24, 28, 32)


def _test_ep(coords, blocks, thetas) -> torch.Tensor:
    """ΔS of every test window under the blocks' θ."""
    z, dz = coords
    return sum(_features(z[:, :, b], dz[:, :, b]).double() @ th
               for b, th in zip(blocks, thetas, strict=True))


def refits(seen: dict, test: list, units, blurs, sides, dt: float, same: float) -> dict:
    """Each (blur, side)'s ladder on the kept tiles' centres; prints one row per count.

    ``seen`` holds what the estimator's stages saw: its ``coordinates`` function, the
    ``kept`` tiles, the ``windows`` it projected, and the unwrapped ``ladder`` and
    ``project`` (:func:`~.tiles._count_ladder`, :func:`~.candidates._coordinates`)."""
    closure = inspect.getclosurevars(seen["coordinates"].func).nonlocals
    model, data, norm, device = (closure[k] for k in ("model", "data", "norm", "device"))
    fit_w, ev_w = seen["windows"][-2:]
    test_data = MovieSet(test, frames_per_input=data.k)
    n_win = len(test[0]) - data.k + 1
    te = (np.repeat(np.arange(len(test)), n_win), np.tile(np.arange(n_win), len(test)))
    h, w = data.frame_shape
    m_top, kept = max(COUNTS), {}
    for blur, side in itertools.product(blurs, sides):
        chosen = [(int(min(max(round(r + s / 2 - side / 2), 0), h - side)),
                   int(min(max(round(c + s / 2 - side / 2), 0), w - side)), side)
                  for r, c, s in seen["kept"]]
        # The estimator's own patterns and coordinates of these tiles at this blur; the
        # test movies are not in its data, so they are projected here.
        pats, (fit_c, ev_c) = seen["coordinates"].func(chosen, m_top, fit_w, ev_w, blur=blur)
        test_c = seen["project"](model, test_data, *te, norm, device,
                                 tiles._on_tiles(chosen, pats), m_top * len(chosen))
        coords = (*fit_c, *ev_c)
        m_kept, _ = seen["ladder"](list(COUNTS), m_top, len(chosen), coords, units, [])
        print(f"blur {blur} px, side {side} px: the ladder keeps {m_kept}")
        for m in COUNTS:
            blocks = [np.arange(t * m_top, t * m_top + m) for t in range(len(chosen))]
            res = tiles._boosted_fit(coords, blocks)
            ep = _test_ep(test_c, blocks, res["thetas"])
            if m == m_kept:
                kept[(blur, side)] = (res["ep"], ep)
            rate = float(ep.mean())
            print(f"  {m:2d} patterns: validation objective {res['val_objective']:.4f}, rate "
                  f"{res['val_mean_ep'] / dt:.3f}; test rate {rate / dt:.3f} "
                  f"({rate / same - 1:+.1%}), objective {float(neep_objective(ep)):.4f}")
    for k in range(2, len(kept) + 1):
        for combo in itertools.combinations(kept, k):
            ev = torch.stack([kept[c][0] for c in combo]).mean(dim=0)
            ep = torch.stack([kept[c][1] for c in combo]).mean(dim=0)
            print(f"average of {combo}: validation objective {float(neep_objective(ev)):.4f}; "
                  f"test rate {float(ep.mean()) / same - 1:+.1%}")
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dt", type=float, default=0.01)
    parser.add_argument("--blurs", type=float, nargs="+", default=[1.5])
    parser.add_argument("--sides", type=int, nargs="+", default=[24])
    parser.add_argument("--estimator-seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sim = simulate.filament_network(n_movies=40, n_frames=2000, dt=args.dt, seed=31)
    train, test = sim.movies[:32], sim.movies[32:]
    same = float(np.mean(sim.truth.step_ep[32:]))
    centre, ladder, coordinates = tiles._centre_tiles, tiles._count_ladder, tiles._coordinates
    seen = {"windows": [], "ladder": ladder, "project": coordinates}

    def centre_seen(kept, shape, coords, *rest):
        seen["coordinates"] = coords
        seen["kept"] = centre(kept, shape, coords, *rest)
        return seen["kept"]

    def coordinates_seen(model, data, movie_idx, starts, *rest, **kw):
        seen["windows"].append((movie_idx, starts))
        return coordinates(model, data, movie_idx, starts, *rest, **kw)

    def ladder_seen(counts, m_top, n_t, coords, units, tried, halt=tiles.never):
        out = ladder(counts, m_top, n_t, coords, units, tried, halt)
        refits(seen, test, units, args.blurs, args.sides, args.dt, same)
        return out

    tiles._centre_tiles, tiles._count_ladder = centre_seen, ladder_seen
    tiles._coordinates = coordinates_seen
    try:
        EPEstimator(seed=args.estimator_seed, threads=1).fit(train, dt=args.dt)
    finally:
        tiles._centre_tiles, tiles._count_ladder, tiles._coordinates = centre, ladder, coordinates
    print(f"same transitions of the test movies: {same / args.dt:.3f} k_B/s")


if __name__ == "__main__":
    main()
