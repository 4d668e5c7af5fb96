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

Whole-frame patterns mix every part of the frame.  When the EP sits at a few sites of a
large frame with many moving parts (a filament network driven at two cross-links), the few
whole-frame patterns a fit can afford all but miss it.  Frames at least
:data:`TILE_MIN_FRAME` pixels across therefore also get a *local* family: overlapping
square tiles, each with its own principal patterns.  A small fit on every tile finds the
tiles whose held-out EP is significant, the best few that do not overlap much and each
add to the held-out objective are kept and moved to where a fit with more patterns does
best, and one fit, coupling patterns only within a tile (a block-diagonal linear map), sets
how many of them and how many patterns each.  The local family's fit is used when it is
preferred to the whole-frame one.

Stochastic training then starts from the chosen fit (the hidden branch and the
convolutional part learn what is not bilinear), and that fit is the first candidate for
the kept weights; ΔS ≡ 0 stays the starting point when no fit beats it on held-out data.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .model import EPNet, linear_branch_features, principal_patterns
from .objective import neep_objective, safe_exp_neg
from .readout import maximise_neep
from .stats import flat_windows
from .temporal import expand_theta, n_readout_params, project, temporal_basis
from .windows import batch_tensor

__all__ = ["warm_start", "SMOOTHINGS", "PATTERN_COUNTS"]

#: Blur scales tried, in (binned) pixels.
SMOOTHINGS = (0.0, 2.0, 4.0, 8.0)
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
#: Penalty of the fits, relative to the mean squared feature.
RIDGE = 1e-4
#: Largest number of parameters of a candidate fit.
MAX_PARAMS = 600
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
#: Local patterns: frames at least this many pixels on each side get them; tiles are
#: TILE_MIN_SIZE pixels (or a quarter of the frame's longer side) and start every quarter
#: of a tile.
TILE_MIN_FRAME = 48
TILE_MIN_SIZE = 24
#: Blur of the tiles' principal patterns, pixels.
TILE_SMOOTHING = 1.5
#: Patterns per tile in the scan, and the counts tried for the kept tiles.
TILE_SCAN_PATTERNS = 8
TILE_PATTERN_COUNTS = (8, 12, 16, 20, 24, 32)
#: Training windows of the scan and of the kept tiles' fits (at most; the fits also read
#: at most TILE_FIT_PIXELS pixels).
TILE_SCAN_WINDOWS = 50_000
TILE_FIT_WINDOWS = 100_000
TILE_FIT_PIXELS = 2_000_000_000
#: Most tiles kept, and most parameters of their joint fit.
MAX_TILES = 4
MAX_TILE_PARAMS = 2200
#: Standard errors by which a tile must improve the held-out objective to be kept.
TILE_GAIN_SE = 2.0
#: Kept tiles are moved by up to TILE_SHIFT px to where a fit with TILE_REFINE_PATTERNS
#: patterns does best.
TILE_SHIFT = 6
TILE_REFINE_PATTERNS = 12


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


def _whole_frame(patterns: torch.Tensor):
    """Projection on whole-frame patterns (n, H, W)."""
    flat = patterns.flatten(1).T
    return lambda t: t.flatten(2) @ flat


def _on_tiles(tiles: list, patterns: list):
    """Projection on tile patterns: ``patterns[i]`` (m_i, s, s) on ``tiles[i]`` (r0, c0, s)."""
    flats = [p.flatten(1).T for p in patterns]

    def project(t):
        return torch.cat([t[..., r: r + s, c: c + s].flatten(2) @ f
                          for (r, c, s), f in zip(tiles, flats, strict=True)], dim=2)
    return project


def tile_grid(frame_shape: tuple[int, int]) -> list[tuple[int, int, int]]:
    """Overlapping square tiles (row, column, side) covering a frame; [] for small frames."""
    h, w = frame_shape
    if min(h, w) < TILE_MIN_FRAME:
        return []
    side = min(max(TILE_MIN_SIZE, -(-max(h, w) // 4)), h, w)
    step = max(1, side // 4)

    def starts(n):
        out = list(range(0, n - side + 1, step))
        return out if out[-1] == n - side else out + [n - side]
    return [(r, c, side) for r in starts(h) for c in starts(w)]


def _mean_square(f: torch.Tensor, chunk: int = 8192) -> float:
    """Mean of f² over all entries, in chunks of rows (no full-size copy)."""
    total = sum(float(torch.sum(f[a: a + chunk].double() ** 2)) for a in range(0, len(f), chunk))
    return total / max(f.numel(), 1)


def _features(z: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """Linear-branch features of coordinates (N, n_even, m) and (N, n_odd, m)."""
    return linear_branch_features(z.flatten(1), dz.flatten(1))


def _fit(z_fit, dz_fit, z_ev, dz_ev, blocks: list, max_values: int | None = None) -> dict:
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
    rows = slice(None, None, 1 if max_values is None
                 else max(1, -(-len(z_fit) * n_params // max_values)))

    f_fit = features(z_fit[rows], dz_fit[rows])
    lam = RIDGE * _mean_square(f_fit)
    theta, *_ = maximise_neep(f_fit, torch.zeros(f_fit.shape[1], dtype=torch.float64), lam=lam)
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


def _whole_family(model, data, fit, ev, units, norm, device, frames,
                  smoothings=SMOOTHINGS) -> tuple[dict, list]:
    """Best whole-frame candidate over blur scales and pattern counts, and all tried."""
    k_max = model.n_patterns
    patterns = [principal_patterns(frames, k_max, s)[0] for s in smoothings]
    stack = torch.as_tensor(np.concatenate(patterns), dtype=torch.float32, device=device)
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
    counts = [c for c in counts if _n_params(model, c) <= most] or counts[:1]
    tried, winners = [], []
    for i, s in enumerate(smoothings):
        m, res = _ladder(counts, lambda m, i=i: [np.arange(i * k_max, i * k_max + m)],
                         (z_fit, dz_fit, z_ev, dz_ev), units,
                         {"family": "whole", "smoothing": s}, tried, NEWTON_VALUES)
        if res is not None:
            winners.append(dict(res, family="whole", smoothing=s, n_patterns=m,
                                patterns=patterns[i][:m], groups=None, tiles=[]))
    best = _simplest_near_best(winners, units) if winners else None
    if best is not None:
        best["theta"] = expand_theta(best["theta"], [np.arange(best["n_patterns"])], even, odd,
                                     model.n_even, model.n_odd)
    return best, tried


def _simplest_near_best(fits: list, units: np.ndarray) -> dict:
    """The fit with the fewest patterns among those whose held-out objective is within
    OBJECTIVE_SE standard errors (paired, between units) of the best one's."""
    top = max(fits, key=lambda f: f["val_objective"])
    near = [f for f in fits if f is top or _in_se(
        _contributions(top["ep"]) - _contributions(f["ep"]), units) <= OBJECTIVE_SE]
    return min(near, key=lambda f: (f["n_patterns"], -f["val_objective"]))


def _ladder(counts: list, blocks_for, coords: tuple, units: np.ndarray, label: dict,
            tried: list, max_values: int | None = None) -> tuple[int | None, dict | None]:
    """Fits for increasing pattern counts, the best by :func:`_preferred`.

    ``blocks_for(m)`` gives the blocks of :func:`_fit` for count m on the coordinates
    ``coords`` (z_fit, dz_fit, z_ev, dz_ev); ``units`` is the independent held-out unit
    (movie or time block) of each held-out window.  Each fit is recorded in ``tried``
    (``label`` plus its count and held-out figures).  Stops after PATIENCE counts in a
    row that are neither preferred nor the best held-out objective so far.
    ``max_values`` as for :func:`_fit`.

    Returns the chosen count and fit, or (None, None).
    """
    best_m = best = None
    best_here, since = -np.inf, 0
    for m in counts:
        t0 = time.perf_counter()
        res = _fit(*coords, blocks_for(m), max_values)
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
    return best_m, best


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
    transitions' accuracy.  The measurements behind both are in docs/estimator.md.
    """
    if new is None or not new["significant"]:
        return False
    if old is None:
        return True
    gain = _contributions(new["ep"]) - _contributions(old["ep"])
    if float(gain.mean()) > 0 and _in_se(gain, units) > OBJECTIVE_SE:
        return True
    return (new["val_mean_ep"] > (1 + RATE_GAIN) * old["val_mean_ep"]
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


def _tile_family(model, data, scan, fit, ev, units, norm, device,
                 frames) -> tuple[dict | None, list]:
    """Best local candidate: the significant tiles of a scan, then their pattern count.

    ``scan`` and ``fit`` are the training windows (movie index, start) of the scan and of
    the kept tiles' fits, ``ev`` the held-out ones.
    """
    tiles = tile_grid(data.frame_shape)
    if not tiles or model.n_patterns < TILE_PATTERN_COUNTS[0]:
        return None, []
    h, w = data.frame_shape

    def coordinates(chosen, m, *windows):
        """Each tile's m patterns, and the coordinates (z, dz) of each set of windows."""
        pats = []
        for r, c, side in chosen:
            p, _ = principal_patterns(frames[:, r: r + side, c: c + side], m, TILE_SMOOTHING)
            pats.append(torch.as_tensor(p, dtype=torch.float32, device=device))
        project = _on_tiles(chosen, pats)
        return pats, [_coordinates(model, data, *w, norm, device, project, m * len(chosen))
                      for w in windows]

    m0 = TILE_SCAN_PATTERNS
    _, ((z_fit, dz_fit), (z_ev, dz_ev)) = coordinates(tiles, m0, scan, ev)
    scores = []
    for i in range(len(tiles)):
        res = _fit(z_fit, dz_fit, z_ev, dz_ev, [np.arange(i * m0, (i + 1) * m0)])
        if res["significant"] and res["val_objective"] > -1.0:
            scores.append((res["val_objective"], i))
    tried = [{"family": "tiles-scan", "n_tiles": len(tiles), "significant_tiles": len(scores),
              "scores": [[*map(int, tiles[i][:2]), round(v, 5)] for v, i in sorted(scores)]}]
    # Forward selection, best scan score first: a tile joins if it overlaps every kept
    # one by less than half its side in some direction and the joint fit with it beats the
    # fit without it on held-out windows by TILE_GAIN_SE standard errors of the paired
    # per-window difference (a tile beside a kept one often shares its EP).
    kept, chosen, current = [], [], None
    for _, i in sorted(scores, reverse=True):
        r, c, side = tiles[i]
        if any(abs(r - rk) < side // 2 and abs(c - ck) < side // 2 for rk, ck, _ in kept):
            continue
        trial = _fit(z_fit, dz_fit, z_ev, dz_ev,
                     [np.arange(j * m0, (j + 1) * m0) for j in chosen + [i]])
        if current is not None and _in_se(_contributions(trial["ep"])
                                          - _contributions(current["ep"])) <= TILE_GAIN_SE:
            continue
        kept.append(tiles[i])
        chosen.append(i)
        current = trial
        if len(kept) == MAX_TILES:
            break
    tried.append({"family": "tiles-selected", "tiles": [list(map(int, t)) for t in kept]})
    del z_fit, dz_fit, z_ev, dz_ev
    if not kept:
        return None, tried
    kept = _centre_tiles(kept, data.frame_shape, coordinates, scan, ev)
    tried.append({"family": "tiles-centred", "tiles": [list(map(int, t)) for t in kept]})

    # The count of kept tiles (best first) and of patterns per tile: chosen together on
    # held-out windows, since more tiles leave fewer patterns (and parameters) to each.
    m_top = max(TILE_PATTERN_COUNTS)
    most = min(MAX_TILE_PARAMS, len(fit[1]) // WINDOWS_PER_PARAM)
    pats, ((z_fit, dz_fit), (z_ev, dz_ev)) = coordinates(kept, m_top, fit, ev)
    best = None
    for n_t in range(1, len(kept) + 1):
        counts = [m for m in TILE_PATTERN_COUNTS
                  if m * n_t <= model.n_patterns and n_t * _n_params(model, m) <= most]
        m, res = _ladder(counts,
                         lambda m, n_t=n_t: [np.arange(t * m_top, t * m_top + m)
                                             for t in range(n_t)],
                         (z_fit, dz_fit, z_ev, dz_ev), units,
                         {"family": "tiles", "n_tiles": n_t}, tried)
        if _preferred(res, best, units):
            full = np.zeros((n_t * m, h, w))
            for t, (r, c, side) in enumerate(kept[:n_t]):
                full[t * m: (t + 1) * m, r: r + side, c: c + side] = pats[t][:m].cpu().numpy()
            best = dict(res, family="tiles", smoothing=TILE_SMOOTHING, n_patterns=n_t * m,
                        patterns=full, groups=np.repeat(np.arange(n_t), m),
                        tiles=[list(map(int, t)) for t in kept[:n_t]])
    return best, tried


def _centre_tiles(kept: list, frame_shape, coordinates, scan, ev) -> list:
    """Move each kept tile to the peak of its held-out EP over nearby positions.

    The scan's few patterns favour tiles that hold part of a site (fewer moving parts for
    8 patterns to read) over tiles centred on it; with more patterns (TILE_REFINE_PATTERNS)
    the centred tile wins.  Each tile is fitted at shifts of up to TILE_SHIFT px in each
    direction (a 5 x 5 grid), and moved to the peak of a quadratic surface fitted to those
    fits' held-out mean EP: single positions 3 px apart differ by more through noise than
    the surface does near its peak, so the best single one wanders further from the
    driven site than the surface's peak (docs/estimator.md).  Tiles that end up
    overlapping a better one by more than half are dropped.
    """
    h, w = frame_shape
    m = TILE_REFINE_PATTERNS
    shifts = np.arange(-TILE_SHIFT, TILE_SHIFT + 1, max(1, TILE_SHIFT // 2))
    candidates = []
    for r, c, side in kept:
        near = {(min(max(r + dr, 0), h - side), min(max(c + dc, 0), w - side), side)
                for dr in shifts for dc in shifts}
        candidates.append(sorted(near))
    flat = [t for group in candidates for t in group]
    _, ((z_fit, dz_fit), (z_ev, dz_ev)) = coordinates(flat, m, scan, ev)
    out, i = [], 0
    for group in candidates:
        ep = np.array([_fit(z_fit, dz_fit, z_ev, dz_ev,
                            [np.arange((i + j) * m, (i + j + 1) * m)])["val_mean_ep"]
                       for j in range(len(group))])
        i += len(group)
        pos = np.array([t[:2] for t in group], dtype=float)
        r, c = _quadratic_peak(pos, ep)
        side = group[0][2]
        tile = (int(round(r)), int(round(c)), side)  # inside the frame, as the candidates
        if all(abs(tile[0] - rk) >= side // 2 or abs(tile[1] - ck) >= side // 2
               for rk, ck, _ in out):
            out.append(tile)
    return out


def _quadratic_peak(pos: np.ndarray, value: np.ndarray) -> tuple[float, float]:
    """Peak of a quadratic surface fitted to ``value`` at positions ``pos`` (n, 2).

    Kept within the positions' bounding box; the best position itself when the fitted
    surface has no maximum or there are too few positions to fit one.
    """
    best = pos[int(np.argmax(value))]
    if len(pos) < 9:
        return float(best[0]), float(best[1])
    centre = pos.mean(axis=0)
    r, c = (pos - centre).T
    design = np.column_stack([np.ones_like(r), r, c, r * r, c * c, r * c])
    coef, *_ = np.linalg.lstsq(design, value, rcond=None)
    hess = np.array([[2 * coef[3], coef[5]], [coef[5], 2 * coef[4]]])
    if not np.all(np.linalg.eigvalsh(hess) < 0):
        return float(best[0]), float(best[1])
    peak = centre + np.linalg.solve(hess, -coef[1:3])
    peak = np.clip(peak, pos.min(axis=0), pos.max(axis=0))
    return float(peak[0]), float(peak[1])


@torch.no_grad()
def warm_start(model: EPNet, data, train_m: np.ndarray, train_s: np.ndarray, eval_units: list,
               norm, device, seed: int, smoothings=SMOOTHINGS) -> dict:
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
    smoothings : tuple of float
        Blur scales of the whole-frame patterns tried (pixels); the window-length scan
        passes the one it chose for two-frame windows.

    Returns
    -------
    dict
        The chosen ``family`` ("whole", "tiles" or "none"), ``smoothing`` (pixels),
        ``n_patterns`` and ``tiles`` ([row, column, side] of each kept tile), its held-out
        objective and EP per window (``val_objective``, ``val_mean_ep``; ΔS ≡ 0 has
        objective −1), and every candidate tried.
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
    whole, tried = _whole_family(model, data, windows(n_fit), ev, units, norm, device, frames,
                                 smoothings)
    local, tried_local = _tile_family(model, data, windows(TILE_SCAN_WINDOWS),
                                      windows(n_tile_fit), ev, units, norm, device, frames)
    best = local if _preferred(local, whole, units) else whole
    if best is None:
        model.set_patterns(principal_patterns(frames, model.n_patterns, SMOOTHINGS[0])[0], mean)
        return {"family": "none", "smoothing": SMOOTHINGS[0], "n_patterns": 0, "tiles": [],
                "val_objective": -1.0, "val_mean_ep": 0.0, "tried": tried + tried_local}

    n = best["n_patterns"]
    padded = np.zeros(model.patterns.shape)
    padded[:n] = best["patterns"]
    model.set_patterns(padded, mean)
    groups = None
    if best["groups"] is not None:
        groups = np.full(model.n_patterns, -1)
        groups[:n] = best["groups"]
    model.set_pattern_groups(groups)
    block_of = [np.arange(n)] if groups is None else [
        np.flatnonzero(groups == g) for g in np.unique(best["groups"])]
    _set_linear_branch(model, best["theta"], block_of)
    return {"family": best["family"], "smoothing": best["smoothing"], "n_patterns": n,
            "tiles": best["tiles"], "val_objective": best["val_objective"],
            "val_mean_ep": best["val_mean_ep"], "tried": tried + tried_local}


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
