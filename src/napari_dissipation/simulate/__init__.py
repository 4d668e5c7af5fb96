"""Simulated Brownian movies whose entropy production is known exactly.

* :class:`LinearDiffusion` -- the exact core: ``dx = A x dt + sqrt(2D) dW`` sampled with its
  exact transition kernel, stationary covariance, EP rate (total and per degree of freedom)
  and the EP of every sampled transition.
* :func:`bead_spring` -- the paper's bead-spring chain (any N, any temperature profile).
* :func:`mosaic` -- independent chains side by side, with the truth of each region.
* :func:`filament_network` -- a 2-D elastic filament network with a few driven nodes.
* :func:`anharmonic_chain` -- a chain with quartic springs; EP from the heat to each bath.
* :func:`particle_field` -- many independent particles (gyrators, rotors, equilibrium beads).
* :func:`render_spots` / :class:`RenderOptions` -- positions to noisy 8/16-bit frames.

All simulators return :class:`SimulatedMovies`: ``.movies`` (M, T, H, W), ``.dt``,
``.pixel_size``, ``.positions``, ``.model`` and ``.truth`` (``ep_rate``, ``step_ep``,
``dof_ep_rate``, ``regions``, ``map``).  Entropy in k_B, rates in k_B per second (k_B = 1).
"""

from ._types import Region, SimulatedMovies, Truth
from .anharmonic import AnharmonicChain, anharmonic_chain
from .bead_spring import bead_spring, bead_spring_model, chain_temperatures
from .filaments import FilamentNetwork, build_network, filament_network
from .linear import LinearDiffusion
from .mosaic import mosaic
from .particles import particle_field, particle_model
from .render import RenderOptions, psf_density, render_spots, spot_profiles

__all__ = [
    "LinearDiffusion",
    "bead_spring",
    "bead_spring_model",
    "chain_temperatures",
    "mosaic",
    "filament_network",
    "FilamentNetwork",
    "build_network",
    "anharmonic_chain",
    "AnharmonicChain",
    "particle_field",
    "particle_model",
    "RenderOptions",
    "render_spots",
    "spot_profiles",
    "psf_density",
    "SimulatedMovies",
    "Truth",
    "Region",
]
