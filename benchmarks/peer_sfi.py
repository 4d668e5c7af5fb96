"""Tracking-free peer: PCA of the frames, then stochastic force inference (SFI) on the modes.

The method of Gnesotto, Gradziuk, Ronceray & Broedersz (Nat. Commun. 11, 5378, 2020):
project each frame on the leading principal components of the movie, treat the mode
amplitudes as an overdamped Langevin process, infer a linear force field with SFI and read
the entropy production from the inferred phase-space velocity and diffusion (Frishman &
Ronceray, Phys. Rev. X 10, 021009, 2020).  The SFI step uses the published package
(PyPI ``stochasticforceinference``, module ``SFI``, version 2.x, JAX-based):
``OverdampedLangevinInference.compute_diffusion_constant`` (noise-robust estimator when
measurement noise is detected), ``infer_force_linear`` with a linear basis in the modes, and
``compute_entropy_production``.

Number of modes: the smallest number of components whose spectrum stands above the
noise floor, found as the elbow of the explained-variance spectrum (components explaining
at least ``min_fraction`` = 2% of the frame variance), at least 2 and at most
``max_modes`` = 8.  A moving Gaussian spot needs about one mode per direction of motion
per spot at small displacements (the spot's derivative), so a 2-bead chain moving along x
gives 2 dominant modes and 2-4 weaker curvature modes; with strong noise the spectrum is
flat beyond the signal modes and the 2% rule stops there.  The linear basis has
``d (d + 1)`` coefficients for ``d`` modes, which fixes SFI's fluctuation bias
``2 N_b / tau``.

Interval: SFI's own error estimate of the EP, ``Sdot_error`` (from
``delta Delta S = sqrt(2 Delta S + (2 N_b)^2)``); the interval is ``Sdot_debiased +- 1.96
Sdot_error``.  The estimate reported is the bias-subtracted rate ``Sdot_debiased``.

Per transition: ``sigma_t = dX_t . D^{-1} v(X_mid)`` with the projected phase-space
velocity ``v`` of the same linear basis (computed here in numpy from the same moments), so
that its mean per unit time is the plug-in rate; it feeds the per-transition R^2.
"""

from __future__ import annotations

import os
import time

import numpy as np

os.environ.setdefault("XLA_FLAGS",
                      "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Re-use XLA compilations across processes (they dominate the run time of small fits).
os.environ.setdefault("SFI_JAX_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache",
                                                        "sfi_jax_cache"))

__all__ = ["pca_modes", "pca_sfi_ep"]


def pca_modes(movies, *, min_fraction: float = 0.02, max_modes: int = 8, min_modes: int = 2,
              n_sample: int = 4000, seed: int = 0):
    """Project movies on their leading principal components.

    Parameters
    ----------
    movies : ndarray (M, T, H, W)
    min_fraction : float
        Keep the components explaining at least this fraction of the frame variance.
    max_modes, min_modes : int
        Bounds on the number of modes.
    n_sample : int
        Frames used to compute the components.
    seed : int

    Returns
    -------
    modes : ndarray (M, T, d)
        Mode amplitudes.
    explained : ndarray
        Explained-variance fraction of the first ``max_modes`` components.
    """
    M, T = movies.shape[:2]
    flat = movies.reshape(M * T, -1).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.choice(M * T, size=min(n_sample, M * T), replace=False)
    mean = flat[idx].mean(axis=0)
    _, s, vt = np.linalg.svd(flat[idx] - mean, full_matrices=False)
    var = s ** 2 / np.sum(s ** 2)
    d = int(np.clip(np.sum(var >= min_fraction), min_modes, max_modes))
    modes = (flat - mean) @ vt[:d].T
    return modes.reshape(M, T, d), var[:max_modes]


def pca_sfi_ep(movies, dt: float, *, seed: int = 0, **pca_options) -> dict:
    """EP rate of movies by PCA + linear SFI.

    Parameters
    ----------
    movies : ndarray (M, T, H, W)
        Independent stationary movies of one system.
    dt : float
        Seconds per frame.
    seed : int
        Seeds the frame sample of the PCA.
    **pca_options
        Passed to :func:`pca_modes`.

    Returns
    -------
    dict
        ``estimate`` (k_B/s, bias-subtracted), ``ci`` (95%, from SFI's error estimate),
        ``plugin`` (raw rate), ``bias``, ``n_modes``, ``explained``, ``n_basis``,
        ``stochastic_ep`` ((M, T-1) per transition), ``seconds``.
    """
    import SFI
    from SFI.bases.monomials import monomials_up_to

    t0 = time.perf_counter()
    modes, explained = pca_modes(movies, seed=seed, **pca_options)
    # Scale the modes to unit variance: only a change of coordinates (EP is invariant).
    modes = modes / modes.reshape(-1, modes.shape[-1]).std(axis=0)
    M, T, d = modes.shape
    parts = [SFI.TrajectoryCollection.from_arrays(X=modes[m][:, None, :].astype(np.float32),
                                                  dt=float(dt)) for m in range(M)]
    data = parts[0].concat(parts[1:]) if M > 1 else parts[0]
    inf = SFI.OverdampedLangevinInference(data)
    inf.compute_diffusion_constant()
    inf.infer_force_linear(monomials_up_to(1, dim=d, rank="vector"))
    ep = inf.compute_entropy_production()
    est = float(ep["Sdot_debiased"])
    err = float(ep["Sdot_error"])
    D = np.asarray(inf.diffusion_average, dtype=np.float64).reshape(d, d)
    sigma = _per_transition(modes, D, float(dt))
    return dict(
        estimate=est, ci=[est - 1.96 * err, est + 1.96 * err], ci_kind="SFI Sdot_error x 1.96",
        plugin=float(ep["Sdot"]), bias=float(ep["Sdot_bias"]), n_basis=int(ep["Nb"]),
        n_modes=d, explained=explained.tolist(),
        diffusion_method=inf.metadata.get("diffusion_constant_method"),
        stochastic_ep=sigma, numpy_plugin_rate=float(sigma.mean() / dt),
        fit_seconds=time.perf_counter() - t0,
    )


def _per_transition(modes: np.ndarray, D: np.ndarray, dt: float) -> np.ndarray:
    """Stratonovich per-transition EP of the linear-basis phase-space velocity, (M, T-1).

    ``v(x) = b(x) C`` with ``b = (1, x)`` is the least-squares projection of the
    Stratonovich velocity ``dX / dt`` (basis at the midpoint) on the basis, and the EP of a
    transition is ``dX . D^{-1} v(X_mid)``, in k_B.
    """
    M, T, d = modes.shape
    dx = np.diff(modes, axis=1).reshape(-1, d)
    mid = (0.5 * (modes[:, 1:] + modes[:, :-1])).reshape(-1, d)
    b_mid = np.concatenate([np.ones((len(mid), 1)), mid], axis=1)
    x = modes[:, :-1].reshape(-1, d)
    b0 = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    C = np.linalg.solve(b0.T @ b0, b_mid.T @ dx) / dt  # (d+1, d): velocity coefficients
    v = b_mid @ C
    sigma = np.einsum("nd,de,ne->n", dx, np.linalg.inv(D), v)
    return sigma.reshape(M, T - 1)
