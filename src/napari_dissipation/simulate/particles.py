"""A field of view with many independent particles: driven gyrators among equilibrium beads.

Each particle sits in its own square cell of the frame, in a 2-D harmonic trap of
stiffnesses ``k = (k1, k2)`` along principal axes turned by ``angle`` degrees from the
image's x axis (columns) towards y (rows), with friction ``gamma``, bath temperatures
``temperatures = (T_x, T_y)`` on x and y, and optionally a rotational (non-conservative)
force ``torque * (-y, x)``:

    gamma dr = (-K r + torque J r) dt + sqrt(2 gamma diag(T_x, T_y)) dW.

Each particle is a :class:`~.linear.LinearDiffusion` of two degrees of freedom (x, y), so its
EP is exact: transitions are sampled with the exact kernel, ``step_ep`` is the exact EP of
each transition and the rates follow from the linear theory.  A particle is driven (EP > 0)

* as a Brownian gyrator: unequal ``T_x``, ``T_y`` in a trap whose axes are turned (the
  trap couples x and y, so heat flows from the hot bath to the cold one); or
* as a rotor: a rotational force (equal temperatures);

and at equilibrium (EP = 0) with equal temperatures and no torque, or with unequal
temperatures in a trap aligned with x and y (x and y then never exchange heat: a trap
for estimators that take large or anisotropic motion for dissipation).

The default field (:data:`DEFAULT_PARTICLES`): 3 x 3 cells of 32 px (96 x 96 px), three
gyrators and one rotor of about 3 k_B/s each among five equilibrium beads (cold, hot,
aligned two-temperature, isotropic, warm), placed by ``layout_seed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.linalg

from ..errors import InputError
from ._build import check_temperatures, simulate_and_render
from ._types import SimulatedMovies
from .linear import LinearDiffusion
from .render import RenderOptions, render_options

__all__ = ["particle_field", "particle_model", "DEFAULT_PARTICLES"]

#: Driven ones first (gyrators 3.04 k_B/s each, the rotor 3.00 k_B/s), then equilibrium.
DEFAULT_PARTICLES: tuple[dict, ...] = (
    {"name": "gyrator 1", "k": (1.5, 4.5), "angle": 45.0, "temperatures": (1.0, 10.0)},
    {"name": "gyrator 2", "k": (1.5, 4.5), "angle": -45.0, "temperatures": (1.0, 10.0)},
    {"name": "gyrator 3", "k": (1.5, 4.5), "angle": 45.0, "temperatures": (10.0, 1.0)},
    {"name": "rotor", "k": (1.5, 1.5), "angle": 0.0, "temperatures": (3.0, 3.0),
     "torque": 1.5},
    {"name": "cold", "k": (1.5, 4.5), "angle": 45.0, "temperatures": (1.0, 1.0)},
    {"name": "hot", "k": (1.5, 4.5), "angle": -30.0, "temperatures": (10.0, 10.0)},
    {"name": "aligned two-temperature", "k": (1.5, 4.5), "angle": 0.0,
     "temperatures": (1.0, 10.0)},
    {"name": "isotropic", "k": (2.0, 2.0), "angle": 0.0, "temperatures": (3.0, 3.0)},
    {"name": "warm", "k": (1.5, 4.5), "angle": 60.0, "temperatures": (5.0, 5.0)},
)
_KEYS = {"name", "k", "angle", "temperatures", "torque", "gamma"}


def particle_model(*, k=(1.5, 4.5), angle: float = 45.0, temperatures=(1.0, 10.0),
                   torque: float = 0.0, gamma: float = 1.0) -> LinearDiffusion:
    """One particle in its trap as a :class:`LinearDiffusion` over (x, y).

    Parameters
    ----------
    k : (float, float)
        Trap stiffnesses along its two principal axes (energy / length^2).
    angle : float
        Direction of the first principal axis, degrees from x (columns) towards y (rows).
    temperatures : (float, float)
        Bath temperatures on x and on y (k_B = 1).
    torque : float
        Strength of the rotational force ``torque * (-y, x)`` (energy / length^2).
    gamma : float
        Friction coefficient.
    """
    k = np.asarray(k, dtype=np.float64).reshape(-1)
    if k.size != 2 or not np.all(np.isfinite(k)) or np.any(k <= 0):
        raise InputError(f"k must be two positive trap stiffnesses, got {k.tolist()}")
    temps = check_temperatures(temperatures)
    if temps.size != 2:
        raise InputError(f"temperatures must be (T_x, T_y), got {temps.tolist()}")
    if not (np.isfinite(gamma) and gamma > 0):
        raise InputError(f"gamma must be positive, got {gamma}")
    if not (np.isfinite(angle) and np.isfinite(torque)):
        raise InputError(f"angle and torque must be finite, got {angle}, {torque}")
    a = np.deg2rad(angle)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    K = R @ np.diag(k) @ R.T
    J = np.array([[0.0, -1.0], [1.0, 0.0]])
    return LinearDiffusion((-K + torque * J) / gamma, np.diag(temps) / gamma)


def _default_specs(n_gyrators: int, n_rotors: int, n_equilibrium: int) -> list[dict]:
    """The default particles in those numbers (kinds cycled when more are asked for)."""
    gyr, rot, eq = DEFAULT_PARTICLES[:3], DEFAULT_PARTICLES[3:4], DEFAULT_PARTICLES[4:]
    specs = []
    for count, pool, label in ((n_gyrators, gyr, "gyrator"), (n_rotors, rot, "rotor"),
                               (n_equilibrium, eq, None)):
        if int(count) != count or count < 0:
            raise InputError(f"particle counts must be integers >= 0, got {count}")
        for i in range(int(count)):
            spec = dict(pool[i % len(pool)])
            if label is not None:
                spec["name"] = f"{label} {i + 1}"
            elif i >= len(pool):
                spec["name"] = f"{spec['name']} {i // len(pool) + 1}"
            specs.append(spec)
    return specs


def particle_field(
    particles: Sequence[Mapping] | None = None,
    *,
    n_gyrators: int = 3,
    n_rotors: int = 1,
    n_equilibrium: int = 5,
    n_movies: int = 10,
    n_frames: int = 1000,
    dt: float = 0.01,
    seed=0,
    cell: int = 32,
    n_cols: int | None = None,
    layout_seed: int | None = 0,
    render: RenderOptions | None = None,
    **render_kwargs,
) -> SimulatedMovies:
    """Movies of independent particles in a grid of cells, with the exact truth of each.

    Parameters
    ----------
    particles : sequence of mapping, optional
        One entry per particle, with keys ``name``, ``k`` (two stiffnesses), ``angle``
        (degrees), ``temperatures`` ((T_x, T_y)), ``torque`` and ``gamma`` (see
        :func:`particle_model` for the defaults).  Default: ``n_gyrators`` gyrators,
        ``n_rotors`` rotors and ``n_equilibrium`` equilibrium beads from
        :data:`DEFAULT_PARTICLES`.
    n_gyrators, n_rotors, n_equilibrium : int
        Numbers of each kind when ``particles`` is not given (3, 1, 5: nine particles).
    n_movies, n_frames : int
        Number of independent stationary movies and frames per movie (>= 2).
    dt : float
        Time between frames (seconds).
    seed : int or numpy.random.SeedSequence
        Seeds the motion and the camera noise (separate streams).
    cell : int
        Side of each particle's square cell, unbinned pixels (32: 96 x 96 px for nine).
    n_cols : int, optional
        Cells per row (default: ``ceil(sqrt(n))``); rows are added as needed.
    layout_seed : int or None
        Which cell each particle gets (a seeded shuffle); None keeps the given order
        row by row.
    render : RenderOptions, optional
    **render_kwargs
        Overrides of :class:`RenderOptions` fields (noise, binning, bit depth, ...).

    Returns
    -------
    SimulatedMovies
        ``.movies`` (M, T, H, W); ``.truth.ep_rate`` and ``.truth.step_ep`` (M, T-1) summed
        over the particles; ``.truth.regions`` one per particle (its cell's ``rows``,
        ``cols``, ``mask``, exact ``ep_rate`` and ``step_ep``); ``.truth.node_ep_rate``
        (n_particles,); ``.truth.map`` (H, W) each particle's rate spread by the PSF
        around its trap centre; ``.positions`` (M, T, 2 n): x, y of every particle.

    Examples
    --------
    >>> sim = particle_field(n_movies=1, n_frames=20)
    >>> sim.movies.shape, round(sim.truth.ep_rate, 3)
    ((1, 20, 96, 96), 12.112)
    """
    specs = [dict(p) for p in particles] if particles is not None else \
        _default_specs(n_gyrators, n_rotors, n_equilibrium)
    if not specs:
        raise InputError("a particle field needs at least one particle")
    if int(cell) != cell or cell < 8:
        raise InputError(f"cell must be an integer >= 8 pixels, got {cell}")
    n, cell = len(specs), int(cell)
    n_cols = int(np.ceil(np.sqrt(n))) if n_cols is None else int(n_cols)
    if n_cols < 1:
        raise InputError(f"n_cols must be a positive integer, got {n_cols}")
    n_rows = -(-n // n_cols)
    order = np.arange(n) if layout_seed is None else \
        np.random.default_rng(layout_seed).permutation(n)
    models, records, rest, regions = [], [], np.empty((n, 2)), []
    for i, spec in enumerate(specs):
        unknown = set(spec) - _KEYS
        if unknown:
            raise InputError(f"particle {i}: unknown key(s) {', '.join(sorted(unknown))}")
        params = {key: spec[key] for key in _KEYS - {"name"} if key in spec}
        model = particle_model(**params)
        models.append(model)
        r, c = divmod(int(order[i]), n_cols)
        rest[i] = (cell * r + (cell - 1) / 2.0, cell * c + (cell - 1) / 2.0)
        name = str(spec.get("name", f"particle {i}"))
        regions.append({"name": name, "rows": slice(cell * r, cell * (r + 1)),
                        "cols": slice(cell * c, cell * (c + 1)),
                        "dofs": np.array([2 * i, 2 * i + 1])})
        records.append({"name": name, "cell": [r, c], **_jsonable(params),
                        "ep_rate": float(model.ep_rate()),
                        "driven": bool(model.ep_rate() > 1e-9)})
    model = LinearDiffusion(scipy.linalg.block_diag(*[m.drift for m in models]),
                            scipy.linalg.block_diag(*[m.diffusion for m in models]))
    opts = render_options(render, **render_kwargs)
    ppu = opts.pixels_per_unit

    def spot_centres(u):  # (T, 2n) x, y per particle -> (T, n, 2) row, column
        c = np.broadcast_to(rest, (u.shape[0], n, 2)).copy()
        c += u.reshape(u.shape[0], n, 2)[..., ::-1] * ppu
        return c

    def particle_rates(dof):
        return dof.reshape(n, 2).sum(axis=1)

    info = {"n_particles": n, "particles": records, "cell": cell, "grid": [n_rows, n_cols],
            "driven_particles": [i for i, r in enumerate(records) if r["driven"]],
            "particle_rest_pixels": rest.tolist()}
    return simulate_and_render(
        system="particle_field", model=model, n_movies=n_movies, n_frames=n_frames, dt=dt,
        seed=seed, options=opts, frame_shape=(cell * n_rows, cell * n_cols),
        spot_centres=spot_centres, amplitudes=None, rest_pixels=rest, map_points=rest,
        map_weights_from_dof=particle_rates, regions=regions, info=info,
        node_ep_rate_from_dof=particle_rates,
    )


def _jsonable(params: dict) -> dict:
    out = {}
    for key, value in params.items():
        arr = np.asarray(value, dtype=np.float64)
        out[key] = arr.tolist() if arr.ndim else float(arr)
    return out
