"""Anharmonic bead-spring chain: quartic springs, EP from the heat to each bath.

Beads ``i = 1..N`` (displacement ``x_i`` from rest, along the image's x axis) are joined to
their neighbours, and the end beads to the walls, by springs of energy

    u(e) = k e^2 / 2 + k4 e^4 / 4        (force k e + k4 e^3, cubic in the extension e),

and every bead has friction ``gamma`` and its own bath at temperature ``T_i`` (k_B = 1):

    gamma dx_i = F_i(x) dt + sqrt(2 gamma T_i) dW_i,   F = -grad U,  U = sum of u(bonds).

With ``k4 = 0`` this is :func:`~.bead_spring.bead_spring`; with ``k4 > 0`` the forces are
non-linear, the stationary law is not Gaussian and the EP of a transition is not a bilinear
form of its two end points.

The exact truth:

* Paths are integrated with a stochastic Heun scheme (``n_sub`` substeps per frame; for
  additive noise Heun is the Stratonovich midpoint scheme, weak order 2).
* The heat released into bath ``i`` over a substep is ``Fbar_i dx_i``, where ``Fbar`` is
  the force averaged along the straight substep (a discrete gradient: the Stratonovich
  integral along the piecewise-linear path).  The heats of a substep add up to ``-dU``
  exactly, so energy balance holds to rounding.  The medium EP of a transition is
  ``sum_i Q_i / T_i``.
* The stationary density ``p`` (one or two beads) solves the Fokker-Planck equation on a
  grid (Scharfetter-Gummel fluxes with the exact potential difference between cells, so a
  chain at one temperature gets exactly the Boltzmann law).  It gives the exact EP rate
  (``sum_i int F_i J_i / T_i``) and the system term ``ln p(x_t) - ln p(x_t+1)``:
  ``truth.step_ep`` is the total EP of each transition, medium plus system, the quantity
  whose mean / dt is the EP rate and which an estimator of ``ln P[x, y] / P[y, x]`` sees.

The truth's own errors (measured, defaults k = 1, k4 = 3, Tc = 1, Th = 10, dt = 0.01 s,
``n_sub = 40``, ``n_grid = 257``): the Richardson-extrapolated grid rate (14.288 k_B/s)
moves by 7e-5 relative from (129, 257) to (257, 513) points; with ``k4 = 0`` it matches the
linear chain's 2.025 k_B/s to 7e-5.  Halving the substep (40 -> 80, the same Brownian
paths) moves a transition's EP by 0.028 k_B rms (its scatter is 0.64 k_B) and the mean
rate of the sampled transitions by 0.26% (first order in the substep: the sampled paths'
mean EP sits about 0.3% below the exact rate).  ``truth.info["truth_error"]`` records the
grid figures; :func:`substep_error` measures the substep's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from ..errors import InputError
from ._build import (
    check_run_options,
    check_temperatures,
    output_shape,
    render_movies,
    to_output_pixels,
    true_rate_map,
)
from ._types import Region, SimulatedMovies, Truth
from .bead_spring import chain_layout, chain_temperatures
from .render import RenderOptions, render_options

__all__ = ["AnharmonicChain", "AnharmonicTruth", "anharmonic_chain", "substep_error"]

_MAX_GRID_BEADS = 2


class AnharmonicChain:
    """Physics of the quartic chain: energy, forces, Heun paths with their heat, exact law.

    Parameters
    ----------
    temperatures : array_like, shape (N,)
        Bath temperature of each bead (energy units, k_B = 1).
    k : float
        Harmonic spring constant (energy / length^2).
    k4 : float
        Quartic coefficient (energy / length^4); 0 gives the linear chain.
    gamma : float
        Friction coefficient (energy time / length^2).
    """

    def __init__(self, temperatures, *, k: float = 1.0, k4: float = 1.0, gamma: float = 1.0):
        self.temperatures = check_temperatures(temperatures)
        for name, value, low in (("k", k, 0.0), ("gamma", gamma, 0.0)):
            if not (np.isfinite(value) and value > low):
                raise InputError(f"{name} must be positive, got {value}")
        if not (np.isfinite(k4) and k4 >= 0):
            raise InputError(f"k4 (the quartic coefficient) must be >= 0, got {k4}")
        self.k, self.k4, self.gamma = float(k), float(k4), float(gamma)
        n = self.temperatures.size
        # Bond extensions e = B x: wall-bead 1, bead i - bead i+1 pairs, bead N-wall.
        B = np.zeros((n + 1, n))
        B[np.arange(n), np.arange(n)] = 1.0
        B[np.arange(1, n + 1), np.arange(n)] -= 1.0
        self.bonds = -B  # e_j = x_j - x_{j-1} with x_0 = x_{N+1} = 0
        self._law = None

    @property
    def n_dof(self) -> int:
        """Number of beads N."""
        return self.temperatures.size

    def energy(self, x) -> np.ndarray:
        """Elastic energy U (...,) of positions x (..., N)."""
        e = np.asarray(x) @ self.bonds.T
        return np.sum(0.5 * self.k * e**2 + 0.25 * self.k4 * e**4, axis=-1)

    def forces(self, x) -> np.ndarray:
        """Forces ``F = -grad U`` (..., N) on the beads."""
        e = np.asarray(x) @ self.bonds.T
        return -(self.k * e + self.k4 * e**3) @ self.bonds

    def mean_forces(self, x, y) -> np.ndarray:
        """Forces averaged along the straight segment from x to y (..., N).

        ``mean_forces(x, y) . (y - x) == U(x) - U(y)`` exactly (a discrete gradient).
        """
        e, f = np.asarray(x) @ self.bonds.T, np.asarray(y) @ self.bonds.T
        bar = 0.5 * self.k * (e + f) + 0.25 * self.k4 * (e + f) * (e * e + f * f)
        return -bar @ self.bonds

    # ------------------------------------------------------------------------- paths
    def integrate(self, x0, n_frames: int, dt: float, n_sub: int, rng=None, *,
                  noise=None) -> tuple[np.ndarray, np.ndarray]:
        """Heun paths sampled every ``dt`` and the heat into each bath per transition.

        Parameters
        ----------
        x0 : array_like, shape (M, N)
            Start positions of M independent paths.
        n_frames : int
            Points per path (the first is ``x0``).
        dt : float
            Time between points (seconds).
        n_sub : int
            Heun substeps per ``dt``.
        rng : numpy.random.Generator or int, optional
            Source of the noise (unless ``noise`` is given).
        noise : ndarray, shape (n_frames - 1, n_sub, M, N), optional
            Standard normal increments (one per substep); the same array summed in pairs
            and divided by sqrt(2) is the same Brownian path at ``n_sub / 2``.

        Returns
        -------
        x : ndarray, shape (M, n_frames, N)
        heat : ndarray, shape (M, n_frames - 1, N)
            Heat released into each bead's bath over each transition (energy units).
        """
        x = np.array(x0, dtype=np.float64, ndmin=2)
        M, N = x.shape
        n_sub = int(n_sub)
        h = float(dt) / n_sub
        c1, c2 = h / self.gamma, 0.5 * h / self.gamma
        amp = np.sqrt(2.0 * self.temperatures * h / self.gamma)
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        k, k4, B, Bt = self.k, self.k4, self.bonds, self.bonds.T.copy()
        out = np.empty((M, int(n_frames), N))
        heat = np.zeros((M, int(n_frames) - 1, N))
        out[:, 0] = x
        # Work on bond extensions e = B x: each force evaluation is one product and a cubic.
        e = x @ Bt
        f = -(e * (k + k4 * e * e)) @ B
        for t in range(1, int(n_frames)):
            z = noise[t - 1] if noise is not None else rng.standard_normal((n_sub, M, N))
            q = heat[:, t - 1]
            for s in range(n_sub):
                kick = z[s] * amp
                pred = x + f * c1 + kick
                ep = pred @ Bt
                new = x + (f - (ep * (k + k4 * ep * ep)) @ B) * c2 + kick
                en = new @ Bt
                es, e2 = e + en, e * e + en * en
                # Discrete gradient: the bond force averaged along the straight substep.
                q -= ((0.5 * k) * es + (0.25 * k4) * es * e2) @ B * (new - x)
                x, e = new, en
                f = -(e * (k + k4 * e * e)) @ B
            out[:, t] = x
        return out, heat

    def medium_ep(self, heat) -> np.ndarray:
        """Medium EP ``sum_i Q_i / T_i`` (k_B) of each transition from ``heat`` (..., N)."""
        return np.asarray(heat) @ (1.0 / self.temperatures)

    # ----------------------------------------------------------------- stationary law
    def stationary_law(self, n_grid: int = 257) -> StationaryLaw:
        """The exact stationary law on a grid (cached for the default grid)."""
        if n_grid == 257 and self._law is not None:
            return self._law
        if self.n_dof > _MAX_GRID_BEADS:
            raise InputError(f"the exact stationary law is solved for at most "
                             f"{_MAX_GRID_BEADS} beads, got {self.n_dof}", option="beads")
        law = StationaryLaw(self, n_grid)
        if n_grid == 257:
            self._law = law
        return law

    def ep_rate(self) -> float:
        """Exact steady-state EP rate (k_B per unit time), from the grid solution."""
        return self.stationary_law().ep_rate

    def extent(self) -> float:
        """Half-width of the grid: a bond at the hottest bath stretched that far is ~e^-15."""
        target = 15.0 * self.temperatures.max()
        lo, hi = 0.0, 1.0
        while 0.5 * self.k * hi**2 + 0.25 * self.k4 * hi**4 < target:
            hi *= 2.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if 0.5 * self.k * mid**2 + 0.25 * self.k4 * mid**4 < target \
                else (lo, mid)
        return hi

    def __repr__(self) -> str:
        return (f"AnharmonicChain(N={self.n_dof}, k={self.k}, k4={self.k4}, "
                f"gamma={self.gamma}, T={self.temperatures.tolist()})")


class StationaryLaw:
    """Stationary Fokker-Planck solution of an :class:`AnharmonicChain` (1 or 2 beads).

    Cells of side ``h`` on ``[-L, L]^N``; fluxes between neighbouring cells follow
    Scharfetter-Gummel with the potential difference ``-dU / T_a`` as the Peclet number,
    exact for a chain at one temperature (then ``p`` is the Boltzmann law and every flux
    vanishes).  No flux leaves the box; the box is wide enough that ``p`` at its edge is
    about e^-15 of the peak or less.

    Attributes
    ----------
    axis : ndarray, shape (n_grid,)
        Cell centres along each coordinate.
    density : ndarray, shape (n_grid,) * N
        ``p`` at the cell centres, normalised to integrate to 1.
    ep_rate : float
        ``sum_a int F_a J_a / T_a`` (k_B per unit time).
    dof_ep_rate : ndarray, shape (N,)
        ``int J_a^2 / (D_a p)`` per coordinate, scaled to sum to ``ep_rate``.
    dof_ep_rate_raw_sum : float
        Their sum before scaling (a second formula for the rate: its gap to ``ep_rate``
        measures the grid error).
    """

    def __init__(self, chain: AnharmonicChain, n_grid: int):
        self.chain = chain
        L = chain.extent()
        n, d = int(n_grid), chain.n_dof
        self.axis = np.linspace(-L, L, n)
        h = self.axis[1] - self.axis[0]
        mesh = np.stack(np.meshgrid(*([self.axis] * d), indexing="ij"), axis=-1)
        U = chain.energy(mesh)
        index = np.arange(n**d).reshape((n,) * d)
        D = chain.temperatures / chain.gamma
        rows, cols, vals, faces = [], [], [], []
        for a in range(d):
            lo = [slice(None)] * d
            hi = [slice(None)] * d
            lo[a], hi[a] = slice(0, -1), slice(1, None)
            i, j = index[tuple(lo)].ravel(), index[tuple(hi)].ravel()
            dU = (U[tuple(hi)] - U[tuple(lo)]).ravel()
            pe = -dU / chain.temperatures[a]  # mu h / D along a
            fwd, back = D[a] / h**2 * _bernoulli(-pe), D[a] / h**2 * _bernoulli(pe)
            # flux from i to j (per h): fwd p_i - back p_j
            rows += [i, i, j, j]
            cols += [i, j, i, j]
            vals += [-fwd, back, fwd, -back]
            faces.append((a, i, j, fwd, back, -dU / h))
        # The columns sum to zero (mass is conserved): one equation is redundant, so the
        # row of the lowest-energy cell is replaced by p = 1 there (normalised below).
        pin = int(np.argmin(U.ravel()))
        rows, cols, vals = (np.concatenate(v) for v in (rows, cols, vals))
        keep = rows != pin
        L_op = scipy.sparse.csc_matrix(
            (np.append(vals[keep], 1.0), (np.append(rows[keep], pin),
                                          np.append(cols[keep], pin))), shape=(n**d, n**d))
        rhs = np.zeros(n**d)
        rhs[pin] = 1.0
        p = scipy.sparse.linalg.spsolve(L_op, rhs)
        p = np.clip(p, 1e-300, None)
        p /= p.sum() * h**d
        self.h, self.density = h, p.reshape((n,) * d)
        medium, dof = 0.0, np.zeros(d)
        for a, i, j, fwd, back, force in faces:
            J = h * (fwd * p[i] - back * p[j])  # probability flux density across the face
            medium += np.sum(force * J) * h**d / chain.temperatures[a]
            dof[a] = np.sum(J**2 / (D[a] * 0.5 * (p[i] + p[j]))) * h**d
        self.ep_rate = float(medium)
        self.dof_ep_rate_raw_sum = float(dof.sum())
        total = dof.sum()
        self.dof_ep_rate = dof * (self.ep_rate / total) if total > 0 else dof
        # ln p minus the Boltzmann part at the mean temperature: smooth, and constant
        # at equilibrium, so interpolating it is exact there.
        self._t_ref = float(np.mean(chain.temperatures))
        self._residual = np.log(self.density) + U / self._t_ref
        self._spline = _interpolator(self.axis, self._residual)

    def log_density(self, x) -> np.ndarray:
        """``ln p`` (...,) at positions x (..., N) (cubic interpolation of the smooth part)."""
        x = np.clip(np.asarray(x, dtype=np.float64), self.axis[0], self.axis[-1])
        return self._spline(x) - self.chain.energy(x) / self._t_ref

    def sample(self, n: int, rng) -> np.ndarray:
        """``n`` draws (n, N) from the grid law (a cell by its mass, uniform inside)."""
        flat = self.density.ravel() / self.density.sum()
        cells = rng.choice(flat.size, size=int(n), p=flat)
        idx = np.stack(np.unravel_index(cells, self.density.shape), axis=-1)
        return self.axis[idx] + (rng.random(idx.shape) - 0.5) * self.h


def _bernoulli(z) -> np.ndarray:
    """``B(z) = z / (e^z - 1)`` with ``B(0) = 1``, stable for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    out = np.ones_like(z)
    nz = np.abs(z) > 1e-12
    out[nz] = z[nz] / np.expm1(z[nz])
    return out


def _interpolator(axis, values):
    """Cubic interpolant of a 1-D or 2-D table on ``axis``; callable on (..., d) points."""
    import scipy.interpolate

    if values.ndim == 1:
        spline = scipy.interpolate.make_interp_spline(axis, values, k=3)
        return lambda x: spline(x[..., 0])
    spline = scipy.interpolate.RectBivariateSpline(axis, axis, values, kx=3, ky=3)
    return lambda x: spline.ev(x[..., 0], x[..., 1])


@dataclass
class AnharmonicTruth(Truth):
    """:class:`~._types.Truth` plus the medium part of each transition's EP.

    Attributes
    ----------
    step_ep_medium : ndarray, shape (M, T-1), optional
        ``sum_i Q_i / T_i`` of each transition (k_B): the heat into the baths alone;
        ``step_ep`` adds the system term ``ln p(x_t) - ln p(x_t+1)``.
    """

    step_ep_medium: np.ndarray | None = None


def anharmonic_chain(
    n_beads: int = 2,
    t_cold: float = 1.0,
    t_hot: float = 10.0,
    temperatures=None,
    *,
    n_movies: int = 10,
    n_frames: int = 1000,
    dt: float = 0.01,
    seed=0,
    k: float = 1.0,
    k4: float = 3.0,
    gamma: float = 1.0,
    n_sub: int = 40,
    n_grid: int = 257,
    cell: int = 20,
    render: RenderOptions | None = None,
    **render_kwargs,
) -> SimulatedMovies:
    """Movies of a chain with quartic springs, with the exact EP of every transition.

    Parameters
    ----------
    n_beads : int
        1 or 2 beads (the exact stationary law is solved on an N-dimensional grid).
        Frames are ``cell x (cell N)`` pixels, as for :func:`~.bead_spring.bead_spring`.
    t_cold, t_hot, temperatures
        Bath temperatures, as for :func:`~.bead_spring.bead_spring`.
    n_movies, n_frames : int
        Number of independent stationary movies and frames per movie (>= 2).
    dt : float
        Time between frames (seconds).
    seed : int or numpy.random.SeedSequence
        Seeds the motion and the camera noise (separate streams).
    k, k4 : float
        Spring energy ``k e^2 / 2 + k4 e^4 / 4`` (k4 = 3: at Th = 10 the quartic force is
        several times the linear one, and a linear (Gaussian) model of the paths carries
        only about 65% of the EP).
    gamma : float
        Friction coefficient.
    n_sub : int
        Heun substeps per frame.
    n_grid : int
        Grid points per axis of the stationary law (the rate is Richardson-extrapolated
        from ``n_grid`` and about ``n_grid / 2``).
    cell : int
        Side of each bead's square, in unbinned pixels.
    render : RenderOptions, optional
    **render_kwargs
        Overrides of :class:`RenderOptions` fields.  Unless given, ``pixels_per_unit`` is
        2 (the stiffer springs move the beads about half as far as the linear chain's).

    Returns
    -------
    SimulatedMovies
        ``.movies`` (M, T, H, W); ``.model`` the :class:`AnharmonicChain`;
        ``.truth`` an :class:`AnharmonicTruth`: ``ep_rate`` (k_B/s), ``step_ep`` (M, T-1,
        total EP: heat / T plus the system term), ``step_ep_medium``, ``dof_ep_rate`` (N,),
        ``map`` (H, W); ``truth.info["truth_error"]`` the grid's error estimate.

    Examples
    --------
    >>> sim = anharmonic_chain(n_movies=2, n_frames=50, n_sub=10, seed=0)
    >>> sim.movies.shape, round(sim.truth.ep_rate, 1)
    ((2, 50, 20, 40), 14.3)
    """
    if int(n_beads) != n_beads or not 1 <= n_beads <= _MAX_GRID_BEADS:
        raise InputError(f"the anharmonic chain has 1 or 2 beads (its exact law is solved on "
                         f"a grid), got {n_beads}", option="beads")
    if int(n_sub) != n_sub or n_sub < 1:
        raise InputError(f"n_sub (Heun substeps per frame) must be a positive integer, "
                         f"got {n_sub}", option="substeps")
    if int(n_grid) != n_grid or n_grid < 33:
        raise InputError(f"n_grid must be an integer >= 33, got {n_grid}")
    if int(cell) != cell or cell < 4:
        raise InputError(f"cell must be an integer >= 4 pixels, got {cell}")
    check_run_options(n_movies, n_frames, dt)
    n_beads, cell, M, T = int(n_beads), int(cell), int(n_movies), int(n_frames)
    temps = chain_temperatures(n_beads, t_cold, t_hot, temperatures)
    chain = AnharmonicChain(temps, k=k, k4=k4, gamma=gamma)
    if render is None and "pixels_per_unit" not in render_kwargs:
        render_kwargs["pixels_per_unit"] = 2.0
    opts = render_options(render, **render_kwargs)
    law = chain.stationary_law(int(n_grid))
    coarse = chain.stationary_law(int(n_grid) // 2 + 1)
    # Scharfetter-Gummel converges as h^2: one Richardson step removes the leading error.
    ep_rate = (4.0 * law.ep_rate - coarse.ep_rate) / 3.0
    dof_rates = law.dof_ep_rate * (ep_rate / law.ep_rate) if law.ep_rate > 0 \
        else law.dof_ep_rate

    motion_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(motion_seq)
    positions, heat = chain.integrate(law.sample(M, rng), T, dt, int(n_sub), rng)
    medium = chain.medium_ep(heat)
    log_p = law.log_density(positions)
    step_ep = medium + log_p[:, :-1] - log_p[:, 1:]

    movies, true_map, rest_out, region = _render_chain(positions, dof_rates, ep_rate,
                                                       step_ep, opts, cell, noise_seq, dt)
    info = {"n_beads": n_beads, "temperatures": temps.tolist(), "k": float(k),
            "k4": float(k4), "gamma": float(gamma), "n_sub": int(n_sub),
            "n_grid": int(n_grid), "dt": float(dt),
            "step_ep_definition": "heat into each bath / its temperature (Stratonovich, "
                                  "Heun substeps) + ln p(x_t) - ln p(x_t+1)",
            "truth_error": {
                "grid_rate_richardson_correction": float(ep_rate - law.ep_rate),
                "grid_rate_second_formula_gap": float(law.dof_ep_rate_raw_sum - law.ep_rate),
                "note": "Richardson-extrapolated grid rate; the sampled paths' mean EP "
                        "differs from it by the Heun bias (see substep_error)"}}
    truth = AnharmonicTruth(
        ep_rate=float(ep_rate), step_ep=step_ep, step_ep_mean=float(ep_rate * dt),
        dof_ep_rate=dof_rates, regions=[region], map=true_map, info=info,
        step_ep_medium=medium)
    return SimulatedMovies(movies=movies, dt=float(dt), pixel_size=opts.pixel_size,
                           positions=positions, model=chain, truth=truth, render=opts,
                           system="anharmonic_chain", rest_pixels=rest_out)


def _render_chain(positions, dof_rates, ep_rate, step_ep, opts, cell, noise_seq, dt):
    """Frames, true map, rest pixels and the one region of a rendered chain."""
    n = positions.shape[2]
    rest = chain_layout(n, cell)
    frame = (cell, cell * n)
    out_shape = output_shape(frame, opts)

    def spot_centres(x):  # (T, N) -> (T, N, 2): beads move along the column axis
        c = np.broadcast_to(rest, (x.shape[0], n, 2)).copy()
        c[..., 1] += x * opts.pixels_per_unit
        return c

    movies = render_movies(positions, spot_centres, frame, opts, noise_seq, dt)
    rest_out = to_output_pixels(rest, int(opts.binning))
    true_map = true_rate_map(rest, dof_rates, out_shape, opts)
    region = Region(name=f"{n}-bead anharmonic chain", rows=slice(0, out_shape[0]),
                    cols=slice(0, out_shape[1]), ep_rate=float(ep_rate), dofs=np.arange(n),
                    frame_shape=out_shape, step_ep=step_ep)
    return movies, true_map, rest_out, region


def substep_error(chain: AnharmonicChain, *, dt: float = 0.01, n_sub: int = 40,
                  n_paths: int = 64, n_frames: int = 501, seed=0) -> dict:
    """The truth's integration error: the same Brownian paths at ``n_sub`` and ``2 n_sub``.

    Returns
    -------
    dict
        ``rate`` and ``rate_fine`` (mean total EP / dt, k_B/s), ``rms_step_difference``
        (k_B per transition), ``step_sd`` (the scatter of one transition's EP, k_B) and
        ``grid_rate`` (the extrapolated exact rate).
    """
    rng = np.random.default_rng(seed)
    law = chain.stationary_law()
    x0 = law.sample(int(n_paths), rng)
    fine = rng.standard_normal((int(n_frames) - 1, 2 * int(n_sub), int(n_paths), chain.n_dof))
    coarse = (fine[:, 0::2] + fine[:, 1::2]) / np.sqrt(2.0)
    eps = []
    for noise, ns in ((coarse, n_sub), (fine, 2 * n_sub)):
        x, heat = chain.integrate(x0, n_frames, dt, ns, noise=noise)
        lp = law.log_density(x)
        eps.append(chain.medium_ep(heat) + lp[:, :-1] - lp[:, 1:])
    half = chain.stationary_law(257 // 2 + 1)
    return {"rate": float(eps[0].mean() / dt), "rate_fine": float(eps[1].mean() / dt),
            "rms_step_difference": float(np.sqrt(np.mean((eps[0] - eps[1]) ** 2))),
            "step_sd": float(eps[1].std()),
            "grid_rate": float((4.0 * law.ep_rate - half.ep_rate) / 3.0)}
