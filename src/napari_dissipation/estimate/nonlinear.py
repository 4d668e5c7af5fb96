"""A polynomial read-out: the force of a non-linear system, fitted concavely.

For an overdamped system the exact EP of a short transition is, to leading order, a
Stratonovich product of the force at the mid-point state and the displacement,
``ΔS ≈ Σ_i Δx_i F_i(x̄) / T_i``: bilinear (the linear branch's form, ``dz · (W z + b)``)
only when the force is linear.  With a force cubic in the state (the anharmonic chain's
quartic springs) the read-out needs the displacement along each pattern times a cubic
polynomial of the state.  This module fits, on top of a whole-frame bilinear fit with m
patterns, the polynomial branch of :class:`~.model.EPNet`:

    ΔS_θ = dz · (W z + b) + Σ_o Σ_{p<q} dz_{o,p} Σ_μ c_{o,p,μ} μ(ū)

with ū the window's mean state along the first q = min(POLY_COORDS, m) patterns (the
leading principal components: few, so that the parameter count stays small) and μ the
monomials of degree 2 up to the candidate's degree.  ΔS_θ stays linear in (W, b, c), so
the NEEP objective stays concave and Newton's method fits it in seconds; the branch only
multiplies the odd coordinates, so ΔS_θ stays exactly antisymmetric and split over pixels.

The degree is chosen on held-out windows: a richer fit replaces the simpler one only when
its held-out objective is better by :data:`~.candidates.OBJECTIVE_SE` standard errors of
the paired difference between held-out units, and only when the data give every
parameter :data:`~.candidates.WINDOWS_PER_PARAM` training windows.  The pattern counts'
second clause (a held-out mean EP a few per cent higher, :func:`~.candidates._preferred`)
is not used: at long windows, where a fit has few windows per parameter, it took
polynomial fits whose held-out rate was above the exact one (anharmonic chain, k4 = 1,
dt = 2.5 ms, four-frame windows: 10.3 against an exact 8.5 k_B/s).  The price: when a
transition's EP is small against its spread, the objective barely tells a cubic read-out
from a bilinear one (the chain's exact positions at dt = 5 ms: -0.980 against -0.975 for
per-transition R² 0.93 against 0.76) and the branch stays off.  The fits work
on the same (possibly time-profile, :mod:`.temporal`) coordinates as the bilinear ones,
and :func:`polynomial_coefficients` writes a fit back into the model's full layout.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .candidates import (
    OBJECTIVE_SE,
    _contributions,
    _features,
    _in_se,
    newton_fit,
)
from .model import POLY_COORDS, EPNet, monomial_exponents

__all__ = ["POLY_COORD_COUNTS", "POLY_DEGREES", "add_polynomial", "even_weights", "poly_features",
           "polynomial_coefficients", "n_poly_params", "set_polynomial", "with_polynomial"]

#: Degrees tried, in order, for each count of leading coordinates the branch reads (at
#: most POLY_COORDS, the model's); each fit must beat the best before it (bilinear or not).
POLY_DEGREES = (2, 3)
POLY_COORD_COUNTS = (2, POLY_COORDS)


def even_weights(basis: np.ndarray | None, n_even: int) -> torch.Tensor:
    """Weights (c,) that turn c even channels (or their time profiles) into the mean state.

    The mean state of a window is ``Σ_j e_j / (2 n_even)`` over its n_even even channels
    (:meth:`~.model.EPNet._monomials`).  On time profiles B (n_even, q) whose span holds the
    constant profile, ``Σ_j e_j = (Bᵀ 1) · (Bᵀ e)`` exactly.
    """
    w = np.ones(n_even) if basis is None else basis.sum(axis=0)
    return torch.as_tensor(w / (2 * n_even), dtype=torch.float32)


def _exponents(q: int, degree: int) -> np.ndarray:
    """Exponents (n, q) of the monomials of degree 2..degree in q variables."""
    return monomial_exponents(q, degree)


def n_poly_params(n_odd_channels: int, q: int, degree: int) -> int:
    """Parameters of the polynomial branch on q coordinates and up to ``degree``."""
    return n_odd_channels * q * len(_exponents(q, degree))


def poly_features(z: torch.Tensor, dz: torch.Tensor, idx: np.ndarray, degree: int,
                  weights: torch.Tensor) -> torch.Tensor:
    """Features of the polynomial branch: ``dz_{o,p} · μ(ū)``, layout (o, p, μ) row-major.

    Parameters
    ----------
    z, dz : Tensor, shape (N, c_even, n) and (N, c_odd, n)
        Even and odd coordinates (or their time profiles) of N windows on n patterns.
    idx : ndarray of int, shape (q,)
        The patterns the branch reads (the first q of a fit's block).
    degree : int
    weights : Tensor, shape (c_even,)
        :func:`even_weights` of the channels.

    Returns
    -------
    Tensor, shape (N, c_odd · q · n_monomials)
    """
    exps = torch.as_tensor(_exponents(len(idx), degree), device=z.device)
    u = torch.einsum("nck,c->nk", z[:, :, idx], weights.to(z.dtype).to(z.device))
    mono = torch.prod(u[:, None, :] ** exps, dim=2)
    return (dz[:, :, idx, None] * mono[:, None, None, :]).flatten(1)


def _fit(coords: tuple, block: np.ndarray, q: int, degree: int, weights: torch.Tensor,
         max_values: int | None) -> dict:
    """Newton fit of the bilinear read-out on ``block`` plus the polynomial branch.

    As :func:`~.candidates._fit` (held-out objective, mean EP, significance, θ and the
    held-out EP of each window); θ is the bilinear part's then the branch's.
    """
    z_fit, dz_fit, z_ev, dz_ev = coords

    def features(z, dz):
        return torch.cat([_features(z[:, :, block], dz[:, :, block]),
                          poly_features(z, dz, block[:q], degree, weights)], dim=1)

    n_params = (dz_fit.shape[1] * len(block) * (z_fit.shape[1] * len(block) + 1)
                + n_poly_params(dz_fit.shape[1], q, degree))
    return newton_fit(features, (z_fit, dz_fit, z_ev, dz_ev), n_params, max_values)


def _better(new: dict, old: dict, units: np.ndarray) -> bool:
    """Whether ``new`` beats ``old`` on the held-out objective by OBJECTIVE_SE standard
    errors of the paired difference between held-out units (and is significant)."""
    if not new["significant"]:
        return False
    gain = _contributions(new["ep"]) - _contributions(old["ep"])
    return float(gain.mean()) > 0 and _in_se(gain, units) > OBJECTIVE_SE


def add_polynomial(base: dict, coords: tuple, block: np.ndarray, units: np.ndarray,
                   weights: torch.Tensor, most_params: int, tried: list, label: dict,
                   max_values: int | None = None) -> tuple[dict, dict | None]:
    """The bilinear fit ``base``, or a fit with the polynomial branch that beats it.

    The branch reads the first q patterns of the block, q in :data:`POLY_COORD_COUNTS`
    (the leading two first; four only once two have won), with each degree of
    :data:`POLY_DEGREES`.

    Parameters
    ----------
    base : dict
        A bilinear fit on ``block`` (:func:`~.candidates._fit`), significant.
    coords : tuple of Tensor
        (z_fit, dz_fit, z_ev, dz_ev): training and held-out coordinates, (N, c, n).
    block : ndarray of int
        The base fit's patterns (indices into the coordinates' last axis), in order.
    units : ndarray of int
        Independent held-out unit of each held-out window.
    weights : Tensor
        :func:`even_weights` of the even channels.
    most_params : int
        Most parameters a fit may have (all of it, bilinear part included).
    tried, label
        Each fit is recorded in ``tried`` as ``label`` plus its figures.
    max_values : int, optional
        Caps windows x parameters of a fit (every n-th training window).

    Returns
    -------
    fit : dict
        ``base`` or the preferred polynomial fit (θ: the bilinear part, then the branch's).
    spec : dict or None
        ``{"n_coords": q, "degree": d, "n_linear": P_bilinear}`` of the polynomial fit.
    """
    n_linear = len(base["theta"])
    best, spec = base, None
    counts = sorted({min(c, len(block)) for c in POLY_COORD_COUNTS})
    for q, degree in [(q, d) for q in counts for d in POLY_DEGREES]:
        # More coordinates only once fewer have won: each mixes in more noise, and a fit
        # that already loses on the leading ones rarely wins on more (seconds saved).
        if (q > counts[0] and spec is None
                or n_linear + n_poly_params(coords[1].shape[1], q, degree) > most_params):
            continue
        t0 = time.perf_counter()
        res = _fit(coords, block, q, degree, weights, max_values)
        tried.append(dict(label, n_patterns=len(block), poly_degree=degree, poly_coords=q,
                          val_objective=res["val_objective"], val_mean_ep=res["val_mean_ep"],
                          significant=res["significant"],
                          seconds=round(time.perf_counter() - t0, 2)))
        # A degree that loses does not end the ladder: a symmetric potential's force is
        # odd in the state (no quadratic terms), so degree 3 can win where 2 does not.
        if _better(res, best, units):
            best, spec = res, {"n_coords": q, "degree": degree, "n_linear": n_linear}
    return best, spec


def polynomial_coefficients(theta: torch.Tensor, spec: dict, odd_basis: np.ndarray | None,
                            n_odd: int, n_poly: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted branch θ (c_odd · q · n_μ) in the model's layout: coefficients and mask.

    ``odd_basis`` (n_odd, c_odd) are the time profiles the odd channels were projected on
    (None: none); ``n_poly`` the model's :attr:`~.model.EPNet.n_poly`.  The fitted
    monomials are a subset of the model's (fewer variables, lower degree), matched by
    their exponents.  Returns two arrays of shape (n_odd · n_poly, n_monomials).
    """
    q, degree = spec["n_coords"], spec["degree"]
    fitted = _exponents(q, degree)
    model_exps = monomial_exponents(n_poly)
    where = {tuple(e): i for i, e in enumerate(model_exps)}
    cols = [where[tuple(np.pad(e, (0, n_poly - q)))] for e in fitted]
    bo = np.eye(n_odd) if odd_basis is None else np.asarray(odd_basis)
    c = theta.double().cpu().numpy().reshape(bo.shape[1], q, len(fitted))
    full = np.einsum("oa,apm->opm", bo, c)
    coef = np.zeros((n_odd, n_poly, len(model_exps)))
    mask = np.zeros_like(coef)
    coef[:, :q][:, :, cols] = full
    mask[:, :q][:, :, cols] = 1.0
    return coef.reshape(n_odd * n_poly, -1), mask.reshape(n_odd * n_poly, -1)


def with_polynomial(best: dict, coords: tuple, units: np.ndarray, even: np.ndarray | None,
                    odd: np.ndarray | None, n_even: int, most_params: int, tried: list,
                    max_values: int | None = None) -> dict:
    """A whole-frame winner of the warm start, with the polynomial branch when it wins.

    ``best`` is the chosen bilinear fit (its ``block``: the patterns' indices into the
    coordinates ``coords``, whose channels are projected on the time profiles ``even`` and
    ``odd``).  Returns it with ``theta`` the bilinear part only (as before) and ``poly``
    the branch to write into the model (:func:`set_polynomial`; None when it lost), its
    held-out figures those of the kept fit.
    """
    fit, spec = add_polynomial(best, coords, best["block"], units, even_weights(even, n_even),
                               most_params, tried,
                               {"family": "whole", "smoothing": best["smoothing"]}, max_values)
    if spec is None:
        return dict(best, poly=None)
    theta = fit["theta"]
    return dict(best, theta=theta[:spec["n_linear"]], ep=fit["ep"],
                val_objective=fit["val_objective"], val_mean_ep=fit["val_mean_ep"],
                poly={"theta": theta[spec["n_linear"]:], "spec": spec, "odd_basis": odd})


def set_polynomial(model: EPNet, poly: dict | None) -> None:
    """Write a fitted branch (:func:`with_polynomial`'s ``poly``) into ``model``; None
    switches the branch off."""
    if poly is None:
        model.set_polynomial(None, None)
        return
    model.set_polynomial(*polynomial_coefficients(poly["theta"], poly["spec"],
                                                  poly["odd_basis"], model.n_odd, model.n_poly))
