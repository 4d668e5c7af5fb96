"""A data-driven start for the global part: blurred principal patterns and a Newton fit.

For a linear (Ornstein-Uhlenbeck) system the exact EP of a transition is bilinear in the
displacement and the mid-point state, ``ΔS = Δx · A x̄ + b · Δx``.  The global part's
linear branch has exactly that form in the pattern coordinates, ``ΔS_θ = dz · (W z + b)``,
and when the coordinates are close to linear in the system's state (principal components
of *blurred* frames, :func:`~napari_dissipation.estimate.model.principal_patterns`) it is
close to the exact EP.  The NEEP objective is concave in (W, b), so Newton's method finds
their optimum in seconds, with no stochastic gradient noise.

Which blur and how many patterns are used is chosen on held-out windows.  A candidate
counts only if its held-out mean EP is several standard errors above zero; it is
preferred to another with a better held-out objective, or with a held-out mean EP that
is higher by a few per cent and several standard errors between held-out units (the
objective alone would stop where the rate is still biased low by the patterns left out,
see :func:`_preferred`).  A fit never has fewer than :data:`WINDOWS_PER_PARAM` training
windows per parameter.

Frames at least :data:`~.tiles.TILE_MIN_FRAME` pixels across also get a *local* family
(square tiles, each with its own patterns: :mod:`.tiles`); its fit is used when it is
preferred to the whole-frame one.  The fits and the rules comparing them are in
:mod:`.candidates`; the whole-frame winner gets a polynomial branch (a force cubic in the
state, :mod:`.nonlinear`) when that beats it on held-out windows.

Stochastic training then starts from the chosen fit (the hidden branch and the
convolutional part learn what is not bilinear), and that fit is the first candidate for
the kept weights; ΔS ≡ 0 stays the starting point when no fit beats it on held-out data.
"""

from __future__ import annotations

import numpy as np
import torch

from .candidates import (
    OBJECTIVE_SE,
    SIGNIFICANCE,
    WINDOWS_PER_PARAM,
    _contributions,
    _coordinates,
    _fit,
    _n_params,
    _preferred,
    _simplest_near_best,
    _windows,
    count_limit,
    ladder_of,
    never,
    padded_theta,
)
from .candidates import _in_se as _in_se  # re-exported: window_length.py imports it here
from .model import EPNet, principal_patterns
from .nonlinear import set_polynomial, with_polynomial
from .objective import ZERO_EP_OBJECTIVE, neep_objective
from .stats import flat_windows
from .temporal import expand_theta, project, temporal_basis
from .tiles import TILE_FIT_PIXELS, TILE_FIT_WINDOWS, TILE_SCAN_WINDOWS, _tile_family, tile_grid

__all__ = ["warm_start", "SMOOTHINGS", "PATTERN_COUNTS"]

#: Blur scales tried, in (binned) pixels.
SMOOTHINGS = (0.0, 2.0, 4.0, 8.0, 12.0)
#: Those of the window-length scan's reference fit, which compares window lengths and
#: does not average: with 12 px there, the field of nine particles' scan moved from 2 to 3
#: frames, where the final fit read 37% low instead of 2% (docs/benchmarks.md).
SCAN_SMOOTHINGS = (0.0, 2.0, 4.0, 8.0)
#: Whole-frame read-outs averaged: the best by held-out objective of those chosen at each
#: blur (:func:`_blend`).
BLEND_MEMBERS = 3
#: Pattern counts tried, up to the model's ``n_patterns``.
PATTERN_COUNTS = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64)
#: Training windows the candidate fits are made on: at most this many, and at most
#: FIT_PIXELS pixels read in all (large frames), but at least MIN_FIT_WINDOWS.
FIT_WINDOWS = 200_000
#: At most about this many feature values (windows x parameters) in one whole-frame fit.
NEWTON_VALUES = 40_000_000
FIT_PIXELS = 400_000_000
MIN_FIT_WINDOWS = 10_000
#: Frames the principal patterns are computed from, and at most this many pixels in all
#: (a float64 copy of them is 64 MB).
SAMPLE_FRAMES = 2000
SAMPLE_PIXELS = 8_000_000
#: Largest number of parameters of a candidate fit.
MAX_PARAMS = 600


def _whole_frame(patterns: torch.Tensor):
    """Projection on whole-frame patterns (n, H, W)."""
    flat = patterns.flatten(1).T
    return lambda t: t.flatten(2) @ flat


def _whole_family(model, data, fit, ev, units, norm, device, bases: list,
                  smoothings=SMOOTHINGS, polynomial: bool = True,
                  preferred: float | None = None, halt=never,
                  subsampled: bool = False, blend: bool = False) -> tuple[dict, list]:
    """Best whole-frame candidate over blur scales and pattern counts, and all tried;
    with ``polynomial``, the winner's polynomial branch too (:mod:`.nonlinear`), and with
    ``blend`` (when no polynomial branch won) the average of the best few (:func:`_blend`)
    when the winner is not preferred to it.  With a
    ``preferred`` blur scale, its best candidate is kept unless another scale's is clearly
    better (:func:`_incumbent`).  When ``halt()`` turns true, no further candidate is
    tried once one is significant (the preferred scale is tried first).  ``subsampled``:
    the ``fit`` windows are a part of the training windows (for ``capped_by``).
    ``bases``: the model's whole-frame slots' worth of principal patterns at each of
    ``smoothings`` (:func:`whole_frame_bases`)."""
    # The slots beyond the configured count are for local patterns (``tiles``).
    k_max = model.whole_frame_slots
    stack = torch.as_tensor(np.concatenate(bases), dtype=torch.float32, device=device)
    z_fit, dz_fit = _coordinates(model, data, *fit, norm, device, _whole_frame(stack),
                                 len(stack))
    z_ev, dz_ev = _coordinates(model, data, *ev, norm, device, _whole_frame(stack), len(stack))
    k = model.frames_per_input
    even, odd = temporal_basis(k, model.n_even), temporal_basis(k, model.n_odd)
    z_fit, z_ev = project(z_fit, even), project(z_ev, even)
    dz_fit, dz_ev = project(dz_fit, odd), project(dz_ev, odd)

    # A Newton step costs N P² for P parameters: large k caps the pattern count.
    counts = [c for c in PATTERN_COUNTS if c < k_max] + [k_max]
    most = min(MAX_PARAMS, len(fit[1]) // WINDOWS_PER_PARAM)
    affordable = [c for c in counts if _n_params(model, c) <= most] or counts[:1]
    # What would keep a ladder that runs out of counts from going on (``capped_by``).
    beyond = next((c for c in PATTERN_COUNTS if c > k_max), k_max + 1)
    nxt = counts[len(affordable)] if len(affordable) < len(counts) else beyond
    limit = count_limit(nxt > k_max, _n_params(model, nxt), most, MAX_PARAMS, subsampled)
    counts = affordable
    tried, winners, last = [], [], {}
    coords = (z_fit, dz_fit, z_ev, dz_ev)

    def fit_of(m, i):
        # Each count starts from the last count's optimum at this blur: fewer Newton steps
        # (the optimum is the same).
        start = None if i not in last else padded_theta(
            last[i]["theta"], dz_fit.shape[1], z_fit.shape[1], last[i]["n_patterns"], m)
        res = _fit(*coords, [np.arange(i * k_max, i * k_max + m)], NEWTON_VALUES, start)
        last[i] = _member(res, smoothings[i], m, bases[i][:m], i * k_max)
        return last[i]
    for i in sorted(range(len(smoothings)), key=lambda i: smoothings[i] != preferred):
        s = smoothings[i]
        if winners and halt():
            break
        m, res = ladder_of(counts, lambda m, i=i: fit_of(m, i), units,
                           {"family": "whole", "smoothing": s}, tried, halt)
        if res is not None:
            winners.append(res)
    best = _simplest_near_best(winners, units) if winners else None
    incumbent = next((w for w in winners if w["smoothing"] == preferred), None)
    if incumbent is not None:
        best = _incumbent(best, incumbent, units)
    if best is not None and polynomial and not halt():
        best = with_polynomial(best, coords, units, even, odd, model.n_even, most, tried,
                               NEWTON_VALUES)
    if best is not None and blend and not best.get("poly") and not halt():
        best = _blend(best, winners, units, k_max, tried)
    if best is not None:
        best["theta"] = expand_theta(best["theta"], _blocks(best), even, odd,
                                     model.n_even, model.n_odd)
        best["capped_by"] = limit if best.get("capped_at") else None
    return best, tried


def _member(res: dict, smoothing: float, m: int, patterns: np.ndarray, first: int) -> dict:
    """A whole-frame fit of m patterns at one blur, as a candidate of the warm start."""
    return dict(res, family="whole", smoothing=smoothing, n_patterns=m, patterns=patterns,
                groups=None, tiles=[], block=np.arange(first, first + m))


def _blocks(fit: dict) -> list:
    """The pattern index blocks of a fit's θ, in θ's order (one per tile or blend member)."""
    if fit["groups"] is None:
        return [np.arange(fit["n_patterns"])]
    return [np.flatnonzero(fit["groups"] == g) for g in np.unique(fit["groups"])]


def _blend(best: dict, winners: list, units: np.ndarray, slots: int, tried: list) -> dict:
    """The equal average of the BLEND_MEMBERS fits of ``winners`` (the fit chosen at each
    blur) with the best held-out objectives (at most ``slots`` patterns in all), unless
    ``best`` is preferred to it (:func:`~.candidates._preferred`).

    Not the best of every fit tried: a fit of many patterns can rank first by noise and
    extrapolate badly on rare states (on l1000, 8 px with 10 patterns in the average gave
    R² 0.958 against 0.984; docs/benchmarks.md).

    Each member is a bilinear read-out on its own patterns, so the average is one read-out
    whose patterns are coupled only within a member (``groups``); the NEEP objective is
    concave in ΔS, so the average's is at least its members' mean.  Near-equal fits at
    different blurs err differently on rare states, and which of them validation ranks
    first varies with the movies drawn: the average is more accurate per transition than
    the one picked (measurements in docs/benchmarks.md).
    """
    ranked = sorted((p for p in winners if p["significant"]), key=lambda p: -p["val_objective"])
    members, used = [], 0
    for p in ranked:
        if len(members) < BLEND_MEMBERS and used + p["n_patterns"] <= slots:
            members.append(p)
            used += p["n_patterns"]
    if len(members) < 2:
        return best
    ep = torch.stack([p["ep"] for p in members]).mean(dim=0)
    mixed = dict(best, ep=ep, val_objective=float(neep_objective(ep)),
                 val_mean_ep=float(ep.mean()), significant=_in_se(ep) > SIGNIFICANCE,
                 theta=torch.cat([p["theta"] for p in members]) / len(members),
                 n_patterns=used, patterns=np.concatenate([p["patterns"] for p in members]),
                 groups=np.repeat(np.arange(len(members)), [p["n_patterns"] for p in members]),
                 smoothing=members[0]["smoothing"], poly=None,
                 blend=[[p["smoothing"], p["n_patterns"]] for p in members])
    tried.append({"family": "blend", "members": mixed["blend"], "n_patterns": used,
                  "val_objective": mixed["val_objective"], "val_mean_ep": mixed["val_mean_ep"],
                  "significant": mixed["significant"]})
    return best if _preferred(best, mixed, units) else mixed


def whole_frame_bases(frames: np.ndarray, n: int, smoothings=SMOOTHINGS) -> list:
    """The ``n`` principal patterns (n, H, W) of ``frames`` at each blur of ``smoothings``."""
    return [principal_patterns(frames, n, s)[0] for s in smoothings]


def _incumbent(best: dict, incumbent: dict, units: np.ndarray) -> dict:
    """The preferred blur's candidate ``incumbent``, unless ``best`` beats it on the
    held-out objective by OBJECTIVE_SE standard errors (paired, between units).

    The fewest-patterns rule across blur scales (:func:`_simplest_near_best`) alone flips
    between near-equal candidates with the training windows drawn, and the flips cost
    EP: on the clean stationarity movie (seed 1) it gave -46% against -3.7% with the
    scan's blur kept; on the five-bead chain 8 px is clearly better than the scan's 4 px
    and replaces it (-7.1% against -14%; docs/benchmarks.md).
    """
    gain = _contributions(best["ep"]) - _contributions(incumbent["ep"])
    clearly = float(gain.mean()) > 0 and _in_se(gain, units) > OBJECTIVE_SE
    return best if clearly else incumbent


@torch.no_grad()
def warm_start(model: EPNet, data, train_m: np.ndarray, train_s: np.ndarray, eval_units: list,
               norm, device, seed: int, preferred_smoothing: float | None = None,
               halt=never) -> dict:
    """Choose the global patterns and fit the linear branch; the model is updated in place.

    Parameters
    ----------
    model : EPNet
        Freshly built: its linear branch and read-outs are zero.
    data : MovieSet
    train_m, train_s : ndarray, shape (n,)
        Movie index and first frame of each training window.
    eval_units : list of (int, ndarray)
        Held-out windows (movie index, starts) the candidates are compared on.
    norm : Normalisation
    device : torch.device
    seed : int
        Seeds the choice of windows and frames.
    preferred_smoothing : float, optional
        The blur the window-length scan chose (pixels): kept unless another of the
        :data:`SMOOTHINGS` fits clearly better on the held-out windows (:func:`_incumbent`).
    halt : callable
        Polled between candidates: once true (a user's Stop, the time budget), the best
        candidate so far is kept and no further one is tried (``"cut_short"`` is then
        true in the result).

    Returns
    -------
    dict
        The chosen ``family`` ("whole", "tiles" or "none"), ``smoothing`` (pixels),
        ``n_patterns`` and ``tiles`` ([row, column, side] of each kept tile), its held-out
        objective and EP per window (``val_objective``, ``val_mean_ep``; ΔS ≡ 0 has
        objective −1), ``capped_at`` (the largest pattern count, per tile for tiles, when
        the chosen pattern ladder was still gaining there; else None) and ``capped_by``
        (what kept the next count out, :func:`~.candidates.count_limit`), and every
        candidate tried.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    # Each frame is projected once (:func:`_coordinates`): a window costs about two frames
    # whatever its length.
    window_pixels = 2 * int(np.prod(data.frame_shape))
    n_fit = int(np.clip(FIT_PIXELS // window_pixels, MIN_FIT_WINDOWS, FIT_WINDOWS))
    # The local fits stream their windows (only coordinates are kept), so they can afford
    # more of them: the many parameters of several tiles need them.
    n_tile_fit = int(np.clip(TILE_FIT_PIXELS // window_pixels, MIN_FIT_WINDOWS,
                             TILE_FIT_WINDOWS)) if tile_grid(data.frame_shape) else 0
    # In random order: each use takes the first windows of it.
    pick = rng.choice(len(train_s), size=min(max(n_fit, n_tile_fit), len(train_s)),
                      replace=False)
    n_frames = max(100, min(SAMPLE_FRAMES, SAMPLE_PIXELS // int(np.prod(data.frame_shape))))
    frame_pick = np.sort(rng.choice(pick, size=min(n_frames, len(pick)), replace=False))
    frames = np.concatenate([x[:, 0].cpu().numpy() for x in _windows(
        data, train_m[frame_pick], train_s[frame_pick], norm, device)])
    mean = frames.mean(axis=0)
    model.set_patterns(np.zeros(model.patterns.shape), mean)

    def windows(n):  # the first n of ``pick``, in reading order
        idx = np.sort(pick[:n])
        return train_m[idx], train_s[idx]
    ev_m, ev_s, units = flat_windows(eval_units)
    ev = (ev_m, ev_s)
    skipped = []

    def poll():  # polled only where a true answer skips a candidate
        if halt():
            skipped.append(True)
            return True
        return False

    # Also the start when no fit is kept (blur SMOOTHINGS[0]), so computed once here.
    bases = whole_frame_bases(frames, model.whole_frame_slots)
    whole, tried = _whole_family(model, data, windows(n_fit), ev, units, norm, device, bases,
                                 preferred=preferred_smoothing, halt=poll,
                                 subsampled=n_fit < len(train_s), blend=True)
    local, tried_local = _tile_family(model, data, windows(TILE_SCAN_WINDOWS),
                                      windows(n_tile_fit), ev, units, norm, device, frames,
                                      halt=poll, subsampled=n_tile_fit < len(train_s))
    cut_short = bool(skipped)
    best = local if _preferred(local, whole, units) else whole
    if best is None:
        # The whole-frame slots only: filling the local ones too gave the network stage a
        # read-out of 12,000 parameters on 256 x 256 frames, whose noise (the interval)
        # then took a minute to compute.
        start = np.zeros(model.patterns.shape)
        k_max = model.whole_frame_slots
        start[:k_max] = bases[0]
        model.set_patterns(start, mean)
        return {"family": "none", "smoothing": SMOOTHINGS[0], "n_patterns": 0, "tiles": [],
                "val_objective": ZERO_EP_OBJECTIVE, "val_mean_ep": 0.0, "cut_short": cut_short,
                "tried": tried + tried_local}

    n = best["n_patterns"]
    padded = np.zeros(model.patterns.shape)
    padded[:n] = best["patterns"]
    model.set_patterns(padded, mean)
    groups = None
    if best["groups"] is not None:
        groups = np.full(model.n_patterns, -1)
        groups[:n] = best["groups"]
    model.set_pattern_groups(groups)
    _set_linear_branch(model, best["theta"], _blocks(best))
    set_polynomial(model, best.get("poly"))
    return {"family": best["family"], "smoothing": best["smoothing"], "n_patterns": n,
            "polynomial": (best.get("poly") or {}).get("spec"), "blend": best.get("blend"),
            "tiles": best["tiles"], "val_objective": best["val_objective"],
            "val_mean_ep": best["val_mean_ep"], "cut_short": cut_short,
            "capped_at": best.get("capped_at"), "capped_by": best.get("capped_by"),
            "tried": tried + tried_local}


def _set_linear_branch(model: EPNet, theta: torch.Tensor, blocks: list) -> None:
    """Write a fit over pattern blocks (index arrays, in θ's order) into ``g_linear``."""
    k = model.n_patterns
    weight = torch.zeros_like(model.g_linear.weight)
    bias = torch.zeros_like(model.g_linear.bias)
    i = 0
    for idx in blocks:
        rows = np.array([j * k + p for j in range(model.n_odd) for p in idx])
        cols = np.array([e * k + p for e in range(model.n_even) for p in idx])
        n_w = len(rows) * len(cols)
        weight[np.ix_(rows, cols)] = theta[i: i + n_w].view(len(rows), len(cols)).to(weight.dtype)
        bias[rows] = theta[i + n_w: i + n_w + len(rows)].to(bias.dtype)
        i += n_w + len(rows)
    model.g_linear.weight.copy_(weight)
    model.g_linear.bias.copy_(bias)
