"""Result types shared by the simulators: movies plus their exact truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .linear import LinearDiffusion
from .render import RenderOptions

__all__ = ["Region", "Truth", "SimulatedMovies"]


@dataclass
class Region:
    """A rectangle of the frame holding one independent system, with its exact truth.

    Attributes
    ----------
    name : str
    rows, cols : slice
        The region's pixels in the (binned) output frame: ``frame[rows, cols]``.
    ep_rate : float
        Exact EP rate of the system in the region (k_B per unit time).
    dofs : ndarray of int
        Indices of the region's degrees of freedom in ``positions[..., :]``.
    step_ep : ndarray, shape (M, T-1), optional
        Exact EP of each transition of this region's system (k_B).
    """

    name: str
    rows: slice
    cols: slice
    ep_rate: float
    dofs: np.ndarray
    frame_shape: tuple[int, int]
    step_ep: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """Boolean (H, W) mask of the region."""
        m = np.zeros(self.frame_shape, dtype=bool)
        m[self.rows, self.cols] = True
        return m

    @property
    def slices(self) -> tuple[slice, slice]:
        return self.rows, self.cols

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "rows": [self.rows.start, self.rows.stop],
            "cols": [self.cols.start, self.cols.stop],
            "ep_rate": float(self.ep_rate),
            "dofs": [int(i) for i in self.dofs],
        }


@dataclass
class Truth:
    """Exact entropy production of a simulated data set.

    Attributes
    ----------
    ep_rate : float
        Exact continuous-time steady-state EP rate (k_B per unit time).
    step_ep : ndarray, shape (M, T-1)
        Exact EP of every transition t -> t+1 of every movie (k_B); its mean / dt is the
        discrete-time rate ``step_ep_mean / dt``, slightly below ``ep_rate`` for finite dt.
    step_ep_mean : float
        Analytic stationary mean of ``step_ep`` (k_B per transition).
    dof_ep_rate : ndarray, shape (n,)
        EP rate carried by each degree of freedom (k_B per unit time); sums to ``ep_rate``.
    regions : list of Region
        One per independent system (a single region covering the frame except for mosaics).
    map : ndarray, shape (H, W)
        True EP-rate density on the output pixel grid (k_B per unit time per pixel): each
        degree of freedom's (or node's) rate spread by the normalised PSF around its rest
        position.  Sums to ``ep_rate``.
    node_ep_rate : ndarray, shape (n_nodes,), optional
        Per-node rate (filament network: the sum of a node's x and y rates).
    info : dict
        System parameters (temperatures, stiffness, ...), JSON-friendly.
    """

    ep_rate: float
    step_ep: np.ndarray
    step_ep_mean: float
    dof_ep_rate: np.ndarray
    regions: list[Region]
    map: np.ndarray
    node_ep_rate: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def discrete_ep_rate(self) -> float:
        """``step_ep_mean / dt``: the rate the transitions sampled every dt carry."""
        return self.step_ep_mean / self.info["dt"]

    def to_dict(self, *, include_step_ep: bool = False, include_map: bool = True) -> dict:
        """JSON-friendly summary (what ``truth.json`` holds)."""
        d = {
            "ep_rate": float(self.ep_rate),
            "ep_rate_units": "k_B per unit time (seconds)",
            "step_ep_mean": float(self.step_ep_mean),
            "discrete_ep_rate": float(self.discrete_ep_rate),
            "dof_ep_rate": [float(v) for v in self.dof_ep_rate],
            "regions": [r.to_dict() for r in self.regions],
            "sampled_mean_step_ep": float(np.mean(self.step_ep)) if self.step_ep.size else None,
        }
        if self.node_ep_rate is not None:
            d["node_ep_rate"] = [float(v) for v in self.node_ep_rate]
        d.update(self.info)
        if include_map:
            d["map"] = np.asarray(self.map, dtype=np.float64).tolist()
            d["map_units"] = "k_B per unit time per pixel"
        if include_step_ep:
            d["step_ep"] = np.asarray(self.step_ep).tolist()
        return d


@dataclass
class SimulatedMovies:
    """Simulated movies with exact truth.

    Attributes
    ----------
    movies : ndarray, shape (M, T, H, W), uint8 or uint16
    dt : float
        Seconds (time units) per frame.
    pixel_size : float
        Length units per (output) pixel.
    positions : ndarray, shape (M, T, n)
        The underlying coordinates (length units, displacement from rest).
    model : LinearDiffusion
    truth : Truth
    render : RenderOptions
    system : str
        ``"bead_spring"``, ``"mosaic"`` or ``"filament_network"``.
    rest_pixels : ndarray, shape (S, 2)
        Rest positions (row, column) of the rendered points in output pixels.
    """

    movies: np.ndarray
    dt: float
    pixel_size: float
    positions: np.ndarray
    model: LinearDiffusion
    truth: Truth
    render: RenderOptions
    system: str
    rest_pixels: np.ndarray | None = None

    @property
    def n_movies(self) -> int:
        return self.movies.shape[0]

    @property
    def n_frames(self) -> int:
        return self.movies.shape[1]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return tuple(self.movies.shape[2:])

    def to_dict(self) -> dict:
        """Truth plus how the movies were made (JSON-friendly)."""
        d = self.truth.to_dict()
        d.update({
            "system": self.system,
            "dt": float(self.dt),
            "pixel_size": float(self.pixel_size),
            "n_movies": int(self.n_movies),
            "n_frames": int(self.n_frames),
            "frame_shape": [int(s) for s in self.frame_shape],
            "render": self.render.to_dict(),
        })
        return d

    def __repr__(self) -> str:
        M, T, H, W = self.movies.shape
        return (f"SimulatedMovies({self.system}: {M} movies x {T} frames of {H}x{W} px, "
                f"dt={self.dt}, ep_rate={self.truth.ep_rate:.4g} k_B/unit time)")
