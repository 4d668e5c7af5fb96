"""A 2-D network of elastic filaments with a few driven cross-links (the paper's second system).

Nodes (cross-links) sit on a perturbed triangular lattice; neighbouring nodes are joined by
filament segments, some removed at random so that the mesh looks like a network.  Each
segment is a spring of stiffness ``stiffness`` along its length and ``transverse *
stiffness`` across it (the restoring force of a pre-tensioned, slightly stiff filament);
every node is weakly tethered to the background (``tether``), which removes the zero modes
of translation and rotation.  Linearised about the rest shape, the overdamped dynamics

    gamma du = -K u dt + sqrt(2 gamma T_node) dW

is a :class:`LinearDiffusion` in ``2 n_nodes`` dimensions (x and y of every node), so its EP
is exact.  Every node is in a bath at ``t_bath`` except ``n_driven`` driven nodes at the
higher effective temperature ``t_driven`` (as active motors would do); with all
temperatures equal the network is in equilibrium and produces no entropy.

Movies show the filaments as blurred lines between the nodes' current positions, the
cross-links optionally brighter.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ._build import simulate_and_render
from ._types import SimulatedMovies
from .linear import LinearDiffusion
from .render import RenderOptions, render_options

__all__ = ["filament_network", "FilamentNetwork", "build_network"]


class FilamentNetwork:
    """Geometry and mechanics of a filament network (no dynamics).

    Attributes
    ----------
    rest : ndarray, shape (n_nodes, 2)
        Rest positions (x, y) in length units.
    bonds : ndarray, shape (n_bonds, 2), int
        Node pairs joined by a filament segment.
    stiffness_matrix : ndarray, shape (2 n_nodes, 2 n_nodes)
        ``K`` of the linearised elastic energy ``u^T K u / 2``; dofs ordered
        (x_0, y_0, x_1, y_1, ...).
    driven : ndarray of int
        Indices of the driven nodes.
    temperatures : ndarray, shape (n_nodes,)
        Bath temperature of each node.
    """

    def __init__(self, rest, bonds, stiffness_matrix, driven, temperatures):
        self.rest = rest
        self.bonds = bonds
        self.stiffness_matrix = stiffness_matrix
        self.driven = driven
        self.temperatures = temperatures

    @property
    def n_nodes(self) -> int:
        return self.rest.shape[0]

    def model(self, gamma: float = 1.0) -> LinearDiffusion:
        """The linearised dynamics: ``A = -K / gamma``, ``D = diag(T) / gamma`` per dof."""
        D = np.diag(np.repeat(self.temperatures, 2) / gamma)
        return LinearDiffusion(-self.stiffness_matrix / gamma, D)


def build_network(*, n_side: int = 6, spacing: float = 9.0, jitter: float = 0.15,
                  bond_fraction: float = 0.85, stiffness: float = 10.0,
                  transverse: float = 0.1, tether: float = 0.05, t_bath: float = 1.0,
                  t_driven: float = 5.0, n_driven: int = 2, driven_nodes=None,
                  network_seed: int = 0) -> FilamentNetwork:
    """Build the network's geometry and stiffness matrix (see :func:`filament_network`)."""
    if int(n_side) != n_side or n_side < 2:
        raise InputError(f"n_side must be an integer >= 2, got {n_side}")
    for name, value in (("spacing", spacing), ("stiffness", stiffness), ("t_bath", t_bath),
                        ("t_driven", t_driven), ("tether", tether)):
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"{name} must be positive, got {value}")
    if not 0 <= transverse <= 1:
        raise InputError(f"transverse must be in [0, 1] (a fraction of stiffness), got "
                         f"{transverse}")
    if not 0 < bond_fraction <= 1:
        raise InputError(f"bond_fraction must be in (0, 1], got {bond_fraction}")
    if not 0 <= jitter < 0.3:
        raise InputError(f"jitter must be in [0, 0.3) (a fraction of spacing), got {jitter}")
    rng = np.random.default_rng(network_seed)
    n_cols = int(n_side)
    n_rows = int(np.ceil(n_cols * 2 / np.sqrt(3)))
    row_h = spacing * np.sqrt(3) / 2
    index = np.arange(n_rows * n_cols).reshape(n_rows, n_cols)
    r, c = np.divmod(np.arange(n_rows * n_cols), n_cols)
    rest = np.stack([(c + 0.5 * (r % 2)) * spacing, r * row_h], axis=1)
    rest += rng.uniform(-jitter, jitter, rest.shape) * spacing
    rest -= rest.mean(axis=0)

    bonds = []
    for i in range(n_rows):
        for j in range(n_cols):
            if j + 1 < n_cols:
                bonds.append((index[i, j], index[i, j + 1]))
            if i + 1 < n_rows:
                # Odd rows are shifted right: their upper neighbours are j and j + 1.
                for jj in ((j - 1, j) if i % 2 == 0 else (j, j + 1)):
                    if 0 <= jj < n_cols:
                        bonds.append((index[i, j], index[i + 1, jj]))
    bonds = np.array(bonds)
    keep = rng.random(len(bonds)) < bond_fraction
    bonds = bonds[keep]

    n = rest.shape[0]
    K = np.zeros((2 * n, 2 * n))
    for a, b in bonds:
        e = rest[b] - rest[a]
        e /= np.linalg.norm(e)
        block = stiffness * ((1 - transverse) * np.outer(e, e) + transverse * np.eye(2))
        ia, ib = slice(2 * a, 2 * a + 2), slice(2 * b, 2 * b + 2)
        K[ia, ia] += block
        K[ib, ib] += block
        K[ia, ib] -= block
        K[ib, ia] -= block
    K += tether * stiffness * np.eye(2 * n)

    interior = [int(index[i, j]) for i in range(1, n_rows - 1) for j in range(1, n_cols - 1)]
    if driven_nodes is None:
        driven = _spread_sites(rest, interior or list(range(n)), int(n_driven))
    else:
        driven = np.unique(np.asarray(driven_nodes, dtype=int))
        if driven.size and (driven.min() < 0 or driven.max() >= n):
            raise InputError(f"driven_nodes must be node indices in [0, {n}), got "
                             f"{driven.tolist()}")
    temps = np.full(n, float(t_bath))
    temps[driven] = float(t_driven)
    return FilamentNetwork(rest, bonds, K, driven, temps)


def _spread_sites(rest: np.ndarray, candidates: list[int], n_sites: int) -> np.ndarray:
    """``n_sites`` candidate nodes spread around the network's centre (deterministic)."""
    if n_sites < 0 or n_sites > len(candidates):
        raise InputError(f"number of driven sites must be in [0, {len(candidates)}], got "
                         f"{n_sites}")
    if n_sites == 0:
        return np.zeros(0, dtype=int)
    radius = 0.55 * np.abs(rest).max(axis=0).min() * (n_sites > 1)
    angles = np.pi / 4 + 2 * np.pi * np.arange(n_sites) / n_sites
    targets = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    chosen: list[int] = []
    for t in targets:
        free = [i for i in candidates if i not in chosen]
        chosen.append(free[int(np.argmin(np.linalg.norm(rest[free] - t, axis=1)))])
    return np.array(sorted(chosen))


def filament_network(
    *,
    n_movies: int = 10,
    n_frames: int = 1000,
    dt: float = 0.01,
    seed=0,
    n_side: int = 6,
    spacing: float = 9.0,
    jitter: float = 0.15,
    bond_fraction: float = 0.85,
    stiffness: float = 10.0,
    transverse: float = 0.1,
    tether: float = 0.05,
    gamma: float = 10.0,
    t_bath: float = 1.0,
    t_driven: float = 5.0,
    n_driven: int = 2,
    driven_nodes=None,
    network_seed: int = 0,
    frame_size: int = 64,
    line_brightness: float = 0.3,
    node_brightness: float = 0.3,
    render: RenderOptions | None = None,
    **render_kwargs,
) -> SimulatedMovies:
    """Fluorescence movies of an elastic filament network with driven sites, exact EP.

    Parameters
    ----------
    n_movies, n_frames : int
        Number of independent stationary movies and frames per movie (>= 2).
    dt : float
        Time between frames (seconds).
    seed : int
        Seeds the motion and the camera noise; the network itself is ``network_seed``'s.
    n_side : int
        Nodes per row; rows are added until the lattice is about square (6 -> 6 x 7 nodes).
    spacing : float
        Lattice spacing (length units; 9 px with the default 1 px per unit).
    jitter : float
        Random displacement of the rest positions, as a fraction of ``spacing``.
    bond_fraction : float
        Fraction of the lattice's segments kept.
    stiffness : float
        Spring constant of a segment along its length (energy / length^2).  With the
        defaults (and ``gamma``) a node fluctuates by about 0.5 px (a driven one by 0.85 px),
        some 5% of the spacing, where the linearised elasticity holds; the EP rate and
        the relaxation times depend only on ``stiffness / gamma``.
    transverse : float
        Stiffness across a segment, as a fraction of ``stiffness``.
    tether : float
        Tether of every node to the background, as a fraction of ``stiffness``.
    gamma : float
        Friction coefficient of a node (the relaxation rate scales as stiffness / gamma).
    t_bath, t_driven : float
        Bath temperature and the driven nodes' effective temperature (k_B = 1).
    n_driven : int
        Number of driven sites (single nodes), placed symmetrically about the centre.
    driven_nodes : sequence of int, optional
        Explicit driven node indices (overrides ``n_driven``).
    network_seed : int
        Seed of the geometry (jitter, removed segments).
    frame_size : int
        Side of the square frame in unbinned pixels; the network is centred in it.
    line_brightness, node_brightness : float
        Filament line and cross-link spot brightness, as fractions of the spot peak.
    render : RenderOptions, optional
    **render_kwargs
        Overrides of :class:`RenderOptions` fields (noise, binning, bit depth, ...).

    Returns
    -------
    SimulatedMovies
        ``truth.node_ep_rate`` (n_nodes,) and ``truth.map`` (H, W): each node's rate spread
        by the PSF around its rest position; ``truth.info`` holds the network
        (``node_rest_pixels``, ``bonds``, ``driven_nodes``, ``temperatures``).

    Examples
    --------
    >>> sim = filament_network(n_movies=1, n_frames=50)
    >>> sim.movies.shape
    (1, 50, 64, 64)
    """
    if not gamma > 0:
        raise InputError(f"gamma must be positive, got {gamma}")
    net = build_network(n_side=n_side, spacing=spacing, jitter=jitter,
                        bond_fraction=bond_fraction, stiffness=stiffness,
                        transverse=transverse, tether=tether, t_bath=t_bath,
                        t_driven=t_driven, n_driven=n_driven, driven_nodes=driven_nodes,
                        network_seed=network_seed)
    model = net.model(gamma)
    opts = render_options(render, **render_kwargs)
    ppu = opts.pixels_per_unit
    size = int(frame_size)
    centre = (size - 1) / 2.0
    rest_px = net.rest[:, ::-1] * ppu + centre  # (row, col) = (y, x)
    if rest_px.min() < 2 * opts.psf_sigma or rest_px.max() > size - 1 - 2 * opts.psf_sigma:
        raise InputError(f"the network ({np.ptp(rest_px, axis=0).max():.0f} px across) does "
                         f"not fit a {size} px frame; lower spacing or n_side")

    n = net.n_nodes
    interp, amplitudes = _filament_spots(net, rest_px, opts.psf_sigma, line_brightness,
                                         node_brightness)

    def spot_centres(u):  # (T, 2n) -> (T, S, 2)
        nodes = rest_px + u.reshape(u.shape[0], n, 2)[..., ::-1] * ppu
        return np.einsum("sn,tnd->tsd", interp, nodes)

    def node_rates(dof):
        return dof.reshape(n, 2).sum(axis=1)

    info = {
        "n_nodes": n,
        "node_rest_pixels": rest_px.tolist(),
        "bonds": net.bonds.tolist(),
        "driven_nodes": net.driven.tolist(),
        "temperatures": net.temperatures.tolist(),
        "t_bath": float(t_bath), "t_driven": float(t_driven), "stiffness": float(stiffness),
        "transverse": float(transverse), "tether": float(tether), "gamma": float(gamma),
        "spacing": float(spacing), "network_seed": int(network_seed),
    }
    sim = simulate_and_render(
        system="filament_network", model=model, n_movies=n_movies, n_frames=n_frames, dt=dt,
        seed=seed, options=opts, frame_shape=(size, size), spot_centres=spot_centres,
        amplitudes=amplitudes.astype(np.float32), rest_pixels=rest_px, map_points=rest_px,
        map_weights_from_dof=node_rates,
        regions=[{"name": "filament network", "rows": slice(0, size), "cols": slice(0, size),
                  "dofs": np.arange(2 * n)}],
        info=info, node_ep_rate_from_dof=node_rates,
    )
    return sim


def _filament_spots(net, rest_px: np.ndarray, sigma: float, line_brightness: float,
                    node_brightness: float) -> tuple[np.ndarray, np.ndarray]:
    """Spots that draw the filaments (and the cross-links) of ``net``.

    Returns ``interp`` (S, n_nodes), each spot's position as a mix of its segment's two
    node positions, and ``amplitudes`` (S,).  Spots lie every 1.25 psf_sigma or less along
    each segment: a sum of Gaussians so spaced is a line smooth to 1e-5.
    """
    n = net.n_nodes
    rows_interp, amps = [], []
    for a, b in net.bonds:
        length_px = np.linalg.norm(rest_px[b] - rest_px[a])
        k = max(2, int(np.ceil(length_px / (1.25 * sigma))))
        f = (np.arange(k) + 0.5) / k
        w = np.zeros((k, n))
        w[:, a] = 1 - f
        w[:, b] = f
        rows_interp.append(w)
        amps.append(np.full(k, line_brightness * (length_px / k) / (np.sqrt(2 * np.pi) * sigma)))
    if node_brightness > 0:
        rows_interp.append(np.eye(n))
        amps.append(np.full(n, node_brightness))
    return np.concatenate(rows_interp), np.concatenate(amps)
