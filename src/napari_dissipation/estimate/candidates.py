"""Candidate fits of the bilinear read-out on pattern coordinates, and the rules that
compare them on held-out windows.

The coordinates of a set of windows on some patterns (whole-frame or local) are computed
once (:func:`_coordinates`); a candidate is a Newton fit of the NEEP objective over blocks of
them (:func:`_fit`: patterns are coupled only within a block).  A candidate counts only if
its held-out mean EP is several standard errors above zero; it is preferred to another with
a better held-out objective, or with a held-out mean EP that is higher by a few per cent and
several standard errors between held-out units (:func:`_preferred`).  A fit never has fewer
than :data:`WINDOWS_PER_PARAM` training windows per parameter.  Used by the whole-frame
family (:mod:`.warmstart`) and the local one (:mod:`.tiles`).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .model import EPNet, linear_branch_features
from .objective import ZERO_EP_OBJECTIVE, neep_objective, safe_exp_neg
from .readout import maximise_neep
from .temporal import n_readout_params
from .windows import batch_tensor

#: Penalty of the fits, relative to the mean squared feature.
RIDGE = 1e-4
#: Standard errors by which a candidate's held-out mean EP must exceed 0.
SIGNIFICANCE = 3.0
#: Counts in a row that gain nothing, tried before giving up on a blur scale.
PATIENCE = 2
#: A fit with a worse held-out objective is still preferred when it raises the held-out
#: mean EP by this fraction and by GAIN_SE standard errors (between held-out units).
RATE_GAIN = 0.05
GAIN_SE = 2.0
#: A fit replaces another on the held-out objective only when it is better by this many
#: standard errors of the paired difference between held-out units; across blur scales
#: the fewest patterns within it of the best fit are kept (the "one standard error" rule):
#: with 20 validation movies, near-equal candidates differ by noise, and a noisy pick cost
#: per-transition R² (0.907 against 0.971 on the 2-bead benchmark, benchmarks/README.md).
OBJECTIVE_SE = 1.0
#: Training windows per parameter a fit needs at least: with fewer, the fitted read-out
#: grows large in the directions of the noise (as maximum-likelihood fits with many
#: parameters do), and its EP with it.
WINDOWS_PER_PARAM = 30


def never() -> bool:
    """The default ``halt`` of the candidate searches: nothing interrupts them."""
    return False


def _windows(data, movie_idx, starts, norm, device, chunk=2048):
    for a in range(0, len(starts), chunk):
        yield batch_tensor(data, movie_idx[a: a + chunk], starts[a: a + chunk], norm, device)


@torch.no_grad()
def _coordinates(model: EPNet, data, movie_idx, starts, norm, device, project, n: int,
                 chunk: int = 2048):
    """Even and odd pattern coordinates, (N, n_even, n) and (N, n_odd, n), float32.

    ``project`` maps channels (B, C, H, W) to their n coordinates (B, C, n).  It is linear,
    so each frame is projected once (about the mean frame) and a window's even and odd
    coordinates are sums and differences of its frames': the cost does not grow with the
    window length.  The outputs are allocated once and filled: many small kept tensors
    between large freed batches fragment the heap, which then holds on to their memory.
    """
    k = model.frames_per_input
    z = torch.empty(len(starts), model.n_even, n)
    dz = torch.empty(len(starts), model.n_odd, n)
    for m in np.unique(movie_idx):
        sel = np.flatnonzero(movie_idx == m)
        index = starts[sel][:, None] + np.arange(k)
        needed = np.unique(index)
        coords = torch.empty(len(needed), n)
        for a in range(0, len(needed), chunk):
            x = torch.from_numpy(data.frames(int(m), needed[a: a + chunk])).to(device)
            x = (x - norm.offset) / norm.scale - model.mean_frame
            coords[a: a + len(x)] = project(x[:, None])[:, 0].cpu()
        w = coords[np.searchsorted(needed, index)]  # (N_m, k, n)
        z[sel] = w[:, :model.n_even] + w.flip(1)[:, :model.n_even]
        dz[sel] = w.flip(1)[:, :model.n_odd] - w[:, :model.n_odd]
    return z, dz


def _mean_square(f: torch.Tensor, chunk: int = 8192) -> float:
    """Mean of f² over all entries, in chunks of rows (no full-size copy)."""
    total = sum(float(torch.sum(f[a: a + chunk].double() ** 2)) for a in range(0, len(f), chunk))
    return total / max(f.numel(), 1)


def _features(z: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """Linear-branch features of coordinates (N, n_even, m) and (N, n_odd, m)."""
    return linear_branch_features(z.flatten(1), dz.flatten(1))


def _fit(z_fit, dz_fit, z_ev, dz_ev, blocks: list, max_values: int | None = None,
         start: torch.Tensor | None = None) -> dict:
    """Newton fit of a linear branch whose blocks couple only the patterns within them.

    ``blocks`` are index arrays into the coordinates' last axis; ``max_values``, if given,
    caps windows x parameters of the fit (Newton's steps cost N P²) by taking every
    n-th training window.  Returns the held-out
    objective and mean EP per window, whether that mean is significant, and θ (the blocks'
    parameters, one after the other, in the layout of :func:`linear_branch_features`).
    """
    def features(z, dz):
        return torch.cat([_features(z[:, :, b], dz[:, :, b]) for b in blocks], dim=1)

    n_params = sum(dz_fit.shape[1] * len(b) * (z_fit.shape[1] * len(b) + 1) for b in blocks)
    return newton_fit(features, (z_fit, dz_fit, z_ev, dz_ev), n_params, max_values, start)


def padded_theta(theta: torch.Tensor, q_odd: int, q_even: int, m_old: int,
                 m_new: int) -> torch.Tensor:
    """A one-block θ of ``m_old`` patterns as θ of ``m_new`` >= m_old (the same read-out:
    zeros for the added patterns), in the layout of :func:`_fit`."""
    n_w = q_odd * m_old * q_even * m_old
    w = torch.zeros(q_odd, m_new, q_even, m_new, dtype=theta.dtype)
    w[:, :m_old, :, :m_old] = theta[:n_w].view(q_odd, m_old, q_even, m_old)
    b = torch.zeros(q_odd, m_new, dtype=theta.dtype)
    b[:, :m_old] = theta[n_w:].view(q_odd, m_old)
    return torch.cat([w.reshape(-1), b.reshape(-1)])


def newton_fit(features, coords: tuple, n_params: int, max_values: int | None,
               start: torch.Tensor | None = None) -> dict:
    """Newton fit of the read-out on ``features(z, dz)`` (rows: windows), penalised by
    RIDGE, and its held-out figures.

    ``coords`` are (z_fit, dz_fit, z_ev, dz_ev); with ``max_values``, every n-th training
    window is taken so that windows x ``n_params`` stays under it (Newton's steps cost
    N P²).  Returns the held-out objective and mean EP per window, whether that mean is
    significant, θ and the held-out windows' EP.  ``start``: where Newton's steps start
    (:func:`~.readout.maximise_neep`).
    """
    z_fit, dz_fit, z_ev, dz_ev = coords
    step = 1 if max_values is None else max(1, -(-len(z_fit) * n_params // max_values))
    f_fit = features(z_fit[::step], dz_fit[::step])
    lam = RIDGE * _mean_square(f_fit)
    theta, *_ = maximise_neep(f_fit, torch.zeros(f_fit.shape[1], dtype=torch.float64), lam=lam,
                              start=start)
    del f_fit
    ep = features(z_ev, dz_ev).double() @ theta
    # Picking the best of many fits would often "find" EP in noise: a candidate counts
    # only if its held-out mean EP is SIGNIFICANCE standard errors above 0.
    return {"val_objective": float(neep_objective(ep)), "val_mean_ep": float(ep.mean()),
            "significant": _in_se(ep) > SIGNIFICANCE, "theta": theta, "ep": ep}


def _contributions(ep: torch.Tensor) -> torch.Tensor:
    """Each window's term of the NEEP objective, ``ΔS − exp(−ΔS)``."""
    return ep - safe_exp_neg(ep)


def _n_params(model: EPNet, m: int) -> int:
    """Parameters of a whole-frame fit with m patterns (long windows: on time profiles)."""
    return n_readout_params(model.frames_per_input, m)


def _simplest_near_best(fits: list, units: np.ndarray) -> dict:
    """The fit with the fewest patterns among those whose held-out objective is within
    OBJECTIVE_SE standard errors (paired, between units) of the best one's."""
    top = max(fits, key=lambda f: f["val_objective"])
    near = [f for f in fits if f is top or _in_se(
        _contributions(top["ep"]) - _contributions(f["ep"]), units) <= OBJECTIVE_SE]
    return min(near, key=lambda f: (f["n_patterns"], -f["val_objective"]))


def _ladder(counts: list, blocks_for, coords: tuple, units: np.ndarray, label: dict,
            tried: list, max_values: int | None = None,
            halt=never) -> tuple[int | None, dict | None]:
    """Fits for increasing pattern counts, the best by :func:`_preferred`.

    ``blocks_for(m)`` gives the blocks of :func:`_fit` for count m on the coordinates
    ``coords`` (z_fit, dz_fit, z_ev, dz_ev); ``max_values`` as for :func:`_fit`; the rest
    as for :func:`ladder_of`.  Returns the chosen count and fit, or (None, None).
    """
    return ladder_of(counts, lambda m: _fit(*coords, blocks_for(m), max_values), units,
                     label, tried, halt)


def ladder_of(counts: list, fit_of, units: np.ndarray, label: dict,
              tried: list, halt=never) -> tuple[int | None, dict | None]:
    """The fits ``fit_of(m)`` for increasing counts m, the best by :func:`_preferred`.

    ``units`` is the independent held-out unit (movie or time block) of each held-out
    window.  Each fit is recorded in ``tried`` (``label`` plus its count and held-out
    figures).  Stops after PATIENCE counts in a row that are neither preferred nor the
    best held-out objective so far, or when ``halt()`` is true after the first count.
    Returns the chosen count and fit, or (None, None).  When the counts ran out while the
    ladder still gained (no such stop), the fit has ``capped_at``, the last count: a cap
    ended the ladder (what cap: :func:`count_limit`), not the data's lack of signal.
    """
    best_m = best = None
    best_here, since = -np.inf, 0
    for i, m in enumerate(counts):
        if i and halt():
            break
        t0 = time.perf_counter()
        res = fit_of(m)
        tried.append(dict(label, n_patterns=m, val_objective=res["val_objective"],
                          val_mean_ep=res["val_mean_ep"], significant=res["significant"],
                          seconds=round(time.perf_counter() - t0, 2)))
        # A rising objective keeps the ladder going before any fit is significant.
        progress = res["val_objective"] > best_here
        best_here = max(best_here, res["val_objective"])
        if _preferred(res, best, units):
            best_m, best, progress = m, res, True
        since = 0 if progress else since + 1
        if since >= PATIENCE:
            break
    else:
        if best is not None and len(counts) > PATIENCE:
            best = dict(best, capped_at=int(counts[-1]))
    return best_m, best


def count_limit(over_slots: bool, next_params: int | None, most: int, size_cap: int,
                subsampled: bool) -> str:
    """What kept the next pattern count out of a ladder: ``"slots"`` (the model's
    ``n_patterns``), ``"data"`` (the training windows per parameter, all of them used) or
    ``"size"`` (a fit's size limit ``size_cap``, the end of the counts tried, or training
    windows left out for speed).

    ``over_slots``: the next count would overflow the slots; ``next_params``: its
    parameters (None: there is no next count); ``most``: the parameters the fit's windows
    afford.  The slots count only when the windows afford the next count: otherwise more
    slots would not let the ladder go on.  Only the first two say that the movie holds more
    than the read-out could take: with more frames (or slots) the ladder would go on.  The
    size limit says nothing of the data: it binds on every long window (on the 40
    window-length coverage sets it capped 9 fits of 6 frames or more, with rates from -11%
    to +28% against the same transitions; docs/benchmarks.md).
    """
    if over_slots and next_params is not None and next_params <= most:
        return "slots"
    if next_params is None or subsampled or next_params > size_cap:
        return "size"
    return "data"


def _preferred(new: dict | None, old: dict | None, units: np.ndarray) -> bool:
    """Whether fit ``new`` replaces ``old`` (either may be None: no significant fit).

    Only significant fits count.  ``new`` wins with a held-out objective better by
    OBJECTIVE_SE standard errors of the paired difference between units, or with a
    held-out mean EP higher by RATE_GAIN of the old one and by GAIN_SE standard errors of
    the paired difference between held-out units.  The objective alone stops too soon for
    the rate: each added parameter leaves noise in every window's ΔS, which
    ``exp(−ΔS)`` penalises while the mean of ΔS, the rate, stays unbiased, so the
    objective's choice leaves the rate biased low by the patterns left out.  The mean
    alone keeps adding patterns for gains of a few per cent that cost the single
    transitions' accuracy.  The measurements behind both are in docs/estimator.md.  A fit
    whose held-out objective is no better than ΔS ≡ 0's (−1) does not generalise, and its
    higher mean is the noise of its parameters, not EP (the window-length scan's rule,
    :mod:`.window_length`): it cannot win on the mean.
    """
    if new is None or not new["significant"]:
        return False
    if old is None:
        return True
    gain = _contributions(new["ep"]) - _contributions(old["ep"])
    if float(gain.mean()) > 0 and _in_se(gain, units) > OBJECTIVE_SE:
        return True
    return (new["val_objective"] > ZERO_EP_OBJECTIVE
            and new["val_mean_ep"] > (1 + RATE_GAIN) * old["val_mean_ep"]
            and _in_se(new["ep"] - old["ep"], units) > GAIN_SE)


def _in_se(values: torch.Tensor, units: np.ndarray | None = None) -> float:
    """Mean of per-window values (a paired difference, say) in standard errors.

    The error is measured between independent ``units`` (the unit of each window) when
    given, else between windows.
    """
    d = values.double().cpu().numpy()
    if units is not None:
        n = np.bincount(units)
        per_unit = np.bincount(units, weights=d)[n > 0] / n[n > 0]
        if len(per_unit) >= 2:
            return float(d.mean() / (per_unit.std(ddof=1) / len(per_unit) ** 0.5 + 1e-300))
    return float(d.mean() / (d.std(ddof=1) / len(d) ** 0.5 + 1e-300))
