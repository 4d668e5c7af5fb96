"""napari sample data: simulated movies with their exact entropy production.

Each function returns napari's layer-data list ``[(data, kwargs, "image")]`` with one
(T, H, W) movie; the truth is in ``kwargs["metadata"]`` (``dt`` in seconds per frame,
``ep_rate`` in k_B/s, ``truth`` with the rest).  Nothing here imports napari, and each
movie takes well under a second to make.
"""

from __future__ import annotations

import numpy as np

from .. import simulate

__all__ = ["bead_spring_2", "bead_spring_5", "filament_network", "layer_data"]

SAMPLE_SEED = 2022


def layer_data(sim, name: str, movie: int = 0) -> list[tuple]:
    """One simulated movie as napari layer data, with its exact truth in the metadata.

    Parameters
    ----------
    sim : SimulatedMovies
    name : str
        Layer name.
    movie : int
        Which of the simulated movies.
    """
    truth = sim.truth.to_dict()
    truth["step_ep"] = np.asarray(sim.truth.step_ep[movie], dtype=np.float64)
    truth["map"] = np.asarray(sim.truth.map)
    metadata = {
        "dt": float(sim.dt),
        "pixel_size": float(sim.pixel_size),
        "ep_rate": float(sim.truth.ep_rate),
        "ep_rate_units": "k_B/s",
        "source": f"napari-dissipation simulated {sim.system.replace('_', ' ')}",
        "truth": truth,
    }
    kwargs = {
        "name": name,
        "metadata": metadata,
        "scale": (1.0, sim.pixel_size, sim.pixel_size),
        "contrast_limits": (0, int(sim.movies[movie].max()) or 1),
    }
    return [(sim.movies[movie], kwargs, "image")]


def bead_spring_2() -> list[tuple]:
    """2-bead chain (Tc = 1, Th = 10), 20000 frames of 20 x 40 px, dt = 0.01 s: 2.025 k_B/s.

    200 s of movie: enough transitions for a rate within about 10% (16 MB, 8-bit).
    """
    sim = simulate.bead_spring(n_beads=2, t_cold=1.0, t_hot=10.0, n_movies=1, n_frames=20000,
                               dt=0.01, seed=SAMPLE_SEED)
    return layer_data(sim, "Bead-spring movie (2 beads)")


def bead_spring_5() -> list[tuple]:
    """5-bead chain (T linear 1 to 10), 10000 frames of 20 x 100 px, dt = 0.01 s."""
    sim = simulate.bead_spring(n_beads=5, t_cold=1.0, t_hot=10.0, n_movies=1, n_frames=10000,
                               dt=0.01, seed=SAMPLE_SEED)
    return layer_data(sim, "Bead-spring movie (5 beads)")


def filament_network() -> list[tuple]:
    """Elastic filament network with 2 driven sites, 400 frames of 64 x 64 px, dt = 0.01 s."""
    sim = simulate.filament_network(n_movies=1, n_frames=400, dt=0.01, seed=SAMPLE_SEED)
    return layer_data(sim, "Filament network movie")
