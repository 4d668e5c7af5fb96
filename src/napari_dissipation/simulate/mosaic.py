"""Mosaic: independent bead-spring chains side by side in one frame.

Each chain keeps its own region of the frame (its ``cell x cell N`` strip), so the truth
is known region by region: the joint model is block-diagonal, the total EP rate is the
sum of the regions' rates and every transition's EP is the sum of the regions' EPs.  The
default puts a driven 2-bead chain (Tc = 1, Th = 10) on the left and an equilibrium 2-bead
chain (T = 1, 1) on the right: all the dissipation is in the left half.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.linalg

from ..errors import InputError
from ._build import simulate_and_render
from ._types import SimulatedMovies
from .bead_spring import bead_spring_model, chain_layout, chain_temperatures
from .linear import LinearDiffusion
from .render import RenderOptions, render_options

__all__ = ["mosaic", "DEFAULT_CHAINS"]

DEFAULT_CHAINS: tuple[dict, ...] = (
    {"name": "driven", "n_beads": 2, "t_cold": 1.0, "t_hot": 10.0},
    {"name": "equilibrium", "n_beads": 2, "t_cold": 1.0, "t_hot": 1.0},
)
_CHAIN_KEYS = {"name", "n_beads", "t_cold", "t_hot", "temperatures", "k", "gamma"}


def mosaic(
    chains: Sequence[Mapping] | None = None,
    *,
    n_movies: int = 10,
    n_frames: int = 1000,
    dt: float = 0.01,
    seed=0,
    k: float = 1.0,
    gamma: float = 1.0,
    cell: int = 20,
    render: RenderOptions | None = None,
    **render_kwargs,
) -> SimulatedMovies:
    """Movies of independent chains placed left to right, with the truth of each region.

    Parameters
    ----------
    chains : sequence of mapping, optional
        One entry per chain with keys ``name``, ``n_beads`` (default 2), ``t_cold``,
        ``t_hot`` (default 1, 10) or ``temperatures``, and optionally its own ``k`` and
        ``gamma``.  Default: :data:`DEFAULT_CHAINS` (driven left, equilibrium right).
    n_movies, n_frames, dt, seed, k, gamma, cell, render, **render_kwargs
        As for :func:`bead_spring`.

    Returns
    -------
    SimulatedMovies
        Frames ``cell x (cell * total beads)``; ``truth.regions`` lists each chain's pixel
        slices (``rows``, ``cols``, ``mask``), exact ``ep_rate`` and ``step_ep`` (M, T-1);
        ``truth.ep_rate`` and ``truth.step_ep`` are the sums over the regions.
    """
    chains = [dict(c) for c in (DEFAULT_CHAINS if chains is None else chains)]
    if not chains:
        raise InputError("a mosaic needs at least one chain")
    if int(cell) != cell or cell < 4:
        raise InputError(f"cell must be an integer >= 4 pixels, got {cell}")
    cell = int(cell)
    opts = render_options(render, **render_kwargs)
    models, rests, regions, temps_all, records = [], [], [], [], []
    n_dof = n_col = 0
    for i, spec in enumerate(chains):
        unknown = set(spec) - _CHAIN_KEYS
        if unknown:
            raise InputError(f"chain {i}: unknown key(s) {', '.join(sorted(unknown))}")
        n = spec.get("n_beads", 2)
        if int(n) != n or n < 1:
            raise InputError(f"chain {i}: number of beads must be a positive integer, got {n}")
        n = int(n)
        temps = chain_temperatures(n, spec.get("t_cold", 1.0), spec.get("t_hot", 10.0),
                                   spec.get("temperatures"))
        ck, cg = spec.get("k", k), spec.get("gamma", gamma)
        models.append(bead_spring_model(temps, k=ck, gamma=cg))
        rest = chain_layout(n, cell)
        rest[:, 1] += n_col
        rests.append(rest)
        name = str(spec.get("name", f"chain {i}"))
        regions.append({"name": name, "rows": slice(0, cell),
                        "cols": slice(n_col, n_col + cell * n),
                        "dofs": np.arange(n_dof, n_dof + n)})
        records.append({"name": name, "n_beads": n, "temperatures": temps.tolist(),
                        "k": float(ck), "gamma": float(cg)})
        temps_all.extend(temps.tolist())
        n_dof += n
        n_col += cell * n
    model = LinearDiffusion(scipy.linalg.block_diag(*[m.drift for m in models]),
                            scipy.linalg.block_diag(*[m.diffusion for m in models]))
    rest = np.concatenate(rests)
    ppu = opts.pixels_per_unit

    def spot_centres(x):  # every bead moves along the column axis
        c = np.broadcast_to(rest, (x.shape[0], n_dof, 2)).copy()
        c[..., 1] += x * ppu
        return c

    return simulate_and_render(
        system="mosaic", model=model, n_movies=n_movies, n_frames=n_frames, dt=dt,
        seed=seed, options=opts, frame_shape=(cell, n_col), spot_centres=spot_centres,
        amplitudes=None, rest_pixels=rest, map_points=rest, map_weights_from_dof=lambda r: r,
        regions=regions,
        info={"chains": records, "temperatures": temps_all},
    )
