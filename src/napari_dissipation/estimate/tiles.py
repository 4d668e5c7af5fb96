"""The local family of the warm start: square tiles of the frame, each with its own patterns.

Whole-frame patterns mix every part of the frame.  When the EP sits at a few sites of a
large frame with many moving parts (a filament network driven at two cross-links, a field
of view with many particles), the few whole-frame patterns a fit can afford all but miss
it.  Frames at least :data:`TILE_MIN_FRAME` pixels across therefore also get a *local*
family: overlapping square tiles, each with its own principal patterns.

1. Scan: a small fit on every tile (for each blur of :data:`TILE_SMOOTHINGS`), with no more
   patterns than the data carry for a few tiles together.
2. Selection: in the scan's order, a tile that does not overlap a kept one by half joins
   when, fitted on what the kept tiles leave (:func:`_offset_fit`), it raises the held-out
   objective by :data:`TILE_GAIN_SE` standard errors between held-out units.  The number
   kept is not fixed: at most as many tiles as fit side by side (it grows with the frame's
   area), as many as the network's local pattern slots (:func:`local_pattern_slots`) and
   the training windows (WINDOWS_PER_PARAM) allow.
3. Centring: each kept tile moves to the peak of its held-out EP over nearby positions.
4. One pattern count for all kept tiles (as many as :data:`KEPT_TILE_WINDOWS_PER_PARAM`
   allows), chosen on held-out windows, with the tiles fitted
   one after the other, each on what the ones before it leave (:func:`_boosted_fit`): the
   read-out is block-diagonal (patterns coupled only within a tile), and its cost grows
   with the number of tiles, not with its square as one joint Newton fit's does.

:func:`~.warmstart.warm_start` uses the local family's fit when it is preferred to the
whole-frame one.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch

from .candidates import (
    RIDGE,
    SIGNIFICANCE,
    WINDOWS_PER_PARAM,
    _contributions,
    _coordinates,
    _features,
    _fit,
    _in_se,
    _n_params,
    count_limit,
    ladder_of,
    never,
    padded_theta,
)
from .model import principal_patterns
from .objective import ZERO_EP_OBJECTIVE, neep_objective, safe_exp_neg

__all__ = ["tile_grid", "local_pattern_slots", "TILE_MIN_FRAME"]

#: Local patterns: frames at least this many pixels on each side get them; tiles are
#: TILE_MIN_SIZE pixels (or a quarter of the frame's longer side) and start every quarter
#: of a tile.
TILE_MIN_FRAME = 48
TILE_MIN_SIZE = 24
#: Blurs of the tiles' principal patterns tried, pixels: little blur resolves a spot's
#: motion with many patterns; more makes the first few patterns nearly linear in its
#: position when the data carry only a few per tile (one 2000-frame movie of 16 particles
#: in 64 px cells: the four driven particles' tiles with two patterns each are not
#: significant together at 1.5 px, and are at 4 px).  The scan and the selection run for
#: each (the first only when the data carry TILE_SCAN_PATTERNS); the kept set with the
#: better held-out objective goes on.
TILE_SMOOTHINGS = (1.5, 4.0)
#: Patterns per tile in the scan (fewer when the scan windows cannot carry them), and the
#: counts tried for the kept tiles.  Steps of 4 near the top: there the training windows
#: bind, and each count's rate gains only a few per cent on the one before, so a coarse
#: step stops the ladder where a finer one goes on (the filament network at dt 0.01 s
#: stopped at 20 patterns per tile, -17% against the same transitions; 28 read -8%:
#: docs/benchmarks.md).
TILE_SCAN_PATTERNS = 8
TILE_PATTERN_COUNTS = (2, 3, 4, 6, 8, 12, 16, 20, 24, 28, 32)
#: Tiles whose joint fit the scan's pattern count must leave room for.
TILE_SCAN_SET = 4
#: Training windows of the scan and of the kept tiles' fits (at most; the fits also read
#: at most TILE_FIT_PIXELS pixels).
TILE_SCAN_WINDOWS = 50_000
TILE_FIT_WINDOWS = 100_000
TILE_FIT_PIXELS = 2_000_000_000
#: Most tiles kept (None: as many as fit side by side in the frame, so the number grows
#: with its area), and most parameters of their joint fit.
MAX_TILES = None
MAX_TILE_PARAMS = 2200
#: Pattern slots of the network for local patterns: this many per tile that fits side by
#: side, at most MAX_LOCAL_SLOTS (each slot is a frame-sized pattern the network projects
#: on; 96 slots of 512 x 512 px hold 100 MB).  With the whole-frame slots, two kept tiles
#: of a 64 px frame (4 side by side) can take 28 patterns each.
TILE_SLOTS_PER_TILE = 10
MAX_LOCAL_SLOTS = 96
#: Training windows per parameter the kept tiles' pattern count needs at least (the scan,
#: the selection and the number of tiles keep WINDOWS_PER_PARAM).  Fewer than for the
#: whole-frame family: a fit whose held-out objective is worse than ΔS ≡ 0's cannot win on
#: its mean (``candidates._preferred``), which is the inflation the cap guards against.
#: On the filament network (two 24 px tiles, 36,000 training windows) 30 stopped the
#: tiles at 20 patterns while the held-out EP still rose (docs/benchmarks.md, issue 15).
KEPT_TILE_WINDOWS_PER_PARAM = 20
#: Most windows x parameters of one centring fit (Newton's steps cost N P²).
TILE_CENTRE_VALUES = 5_000_000
#: Standard errors by which a tile must improve the held-out objective to be kept.
TILE_GAIN_SE = 2.0
#: Kept tiles are moved by up to TILE_SHIFT px to where a fit with TILE_REFINE_PATTERNS
#: patterns does best.
TILE_SHIFT = 6
TILE_REFINE_PATTERNS = 12


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


def local_pattern_slots(frame_shape: tuple[int, int]) -> int:
    """Pattern slots the network holds for local patterns beyond its whole-frame ones.

    0 for frames too small for tiles; else TILE_SLOTS_PER_TILE for each tile that fits
    side by side in the frame (the most tiles the local family keeps), at most
    MAX_LOCAL_SLOTS.  A function of the frame's shape alone, so that a saved model is
    rebuilt with the same number.
    """
    tiles = tile_grid(frame_shape)
    return min(MAX_LOCAL_SLOTS, TILE_SLOTS_PER_TILE * _max_tiles(frame_shape)) if tiles else 0


def _max_tiles(frame_shape: tuple[int, int]) -> int:
    """Most tiles kept: as many as fit side by side (grows with the frame's area)."""
    tiles = tile_grid(frame_shape)
    if not tiles:
        return 0
    side = tiles[0][2]
    return max(1, (frame_shape[0] // side) * (frame_shape[1] // side))


def _most_patterns(model, n_windows: int, cap: int) -> int:
    """Most patterns (at most ``cap``) of a one-tile fit that ``n_windows`` training
    windows carry at WINDOWS_PER_PARAM per parameter; 0 when not even one."""
    return max([m for m in range(1, cap + 1)
                if _n_params(model, m) * WINDOWS_PER_PARAM <= n_windows], default=0)


def _offset_fit(f_fit: torch.Tensor, off_fit: torch.Tensor, max_steps: int = 20,
                start: torch.Tensor | None = None) -> torch.Tensor:
    """θ maximising ``<s − exp(−s)> − lam |θ|² / 2`` with ``s = off + F θ`` (concave).

    ``f_fit`` (N, P) are one tile's features, ``off_fit`` (N,) the ΔS the tiles kept so far
    give each window: a tile is fitted on what they leave (as in boosting), so the cost
    of adding a tile does not grow with the number kept.  Newton's method with
    backtracking from ``start`` (P,) when it beats θ = 0 (the same optimum, fewer steps),
    else from 0; lam as in :func:`~.candidates._fit`.  Returns θ (P,), float64.
    """
    f32 = f_fit.float()
    f = f_fit.double()
    off = off_fit.double()
    n, p = f.shape
    lam = RIDGE * float(torch.mean(f ** 2))

    def value(th):
        s = off + f @ th
        return float(torch.mean(s - safe_exp_neg(s))) - 0.5 * lam * float(th @ th)

    theta = torch.zeros(p, dtype=torch.float64)
    current = value(theta)
    if start is not None and value(start.double()) > current:
        theta = start.double()
        current = value(theta)
    eye = torch.eye(p, dtype=torch.float64)
    for _ in range(max_steps):
        w = safe_exp_neg(off + f @ theta)
        grad = f.T @ (1.0 + w) / n - lam * theta
        # The curvature only steers the step (the float64 gradient and the line search
        # decide where it ends): single precision, as in readout.maximise_neep.
        hess = ((f32 * w.float()[:, None]).T @ f32).double() / n + lam * eye
        step = torch.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-4 and value(theta + t * step) < current:
            t *= 0.5
        if t <= 1e-4:
            break
        theta = theta + t * step
        new = value(theta)
        if new - current < 1e-10:
            break
        current = new
    return theta


def _scan_tiles(tiles, coords, units, m0: int) -> tuple[list, list]:
    """Each tile's own fit on m0 patterns: the candidates for the selection, best first
    (the significant ones, then the others whose held-out objective beats ΔS ≡ 0's -1: with
    little data a driven particle can miss significance alone and add to a set that has
    it), as (significant, held-out objective, tile index); and the record of the scan."""
    z_fit, dz_fit, z_ev, dz_ev = coords
    scores = []
    for i in range(len(tiles)):
        res = _fit(z_fit, dz_fit, z_ev, dz_ev, [np.arange(i * m0, (i + 1) * m0)])
        if res["val_objective"] > ZERO_EP_OBJECTIVE:
            scores.append((bool(res["significant"]), res["val_objective"], i))
    scores.sort(reverse=True)
    tried = [{"family": "tiles-scan", "n_tiles": len(tiles), "patterns": m0,
              "significant_tiles": sum(s for s, _, _ in scores), "candidates": len(scores),
              "scores": [[*map(int, tiles[i][:2]), round(v, 5)] for s, v, i in scores if s]}]
    return scores, tried


def _select_tiles(tiles, scores, coords, units, m0: int, most: int) -> list:
    """Forward selection, in the scan's order (:func:`_scan_tiles`).

    A tile joins if it overlaps every kept one by less than half its side in some
    direction and, fitted on what the kept tiles leave (:func:`_offset_fit`), it raises
    the held-out objective by TILE_GAIN_SE standard errors of the paired difference
    between held-out units (a tile beside a kept one often shares its EP).  At most
    ``most`` tiles.  Returns them and the held-out ΔS of each window under their fits.
    """
    z_fit, dz_fit, z_ev, dz_ev = coords
    kept = []
    cur_fit = torch.zeros(len(z_fit), dtype=torch.float64)
    cur_ev = torch.zeros(len(z_ev), dtype=torch.float64)
    for *_, i in scores:
        r, c, side = tiles[i]
        if any(abs(r - rk) < side // 2 and abs(c - ck) < side // 2 for rk, ck, _ in kept):
            continue
        b = np.arange(i * m0, (i + 1) * m0)
        f_fit = _features(z_fit[:, :, b], dz_fit[:, :, b])
        theta = _offset_fit(f_fit, cur_fit)
        trial_ev = cur_ev + _features(z_ev[:, :, b], dz_ev[:, :, b]).double() @ theta
        gain = _contributions(trial_ev) - _contributions(cur_ev)
        if kept and _in_se(gain, units) <= TILE_GAIN_SE:
            continue
        kept.append(tiles[i])
        cur_fit += f_fit.double() @ theta
        cur_ev = trial_ev
        if len(kept) == most:
            break
    return kept, cur_ev


def _tile_family(model, data, scan, fit, ev, units, norm, device, frames,
                 slots: int | None = None, halt=never,
                 subsampled: bool = False) -> tuple[dict | None, list]:
    """Best local candidate: the significant tiles of a scan, then their pattern count.

    ``scan`` and ``fit`` are the training windows (movie index, start) of the scan and of
    the kept tiles' fits, ``ev`` the held-out ones; ``slots`` the patterns the model can
    hold (default: all of its patterns); ``subsampled``: the ``fit`` windows are a part of
    the training windows (for ``capped_by``).  Once ``halt()`` is true, no stage
    starts that is not needed for a candidate: no family when it is true at the start, no
    second blur, no centring, no further pattern count.
    """
    tiles = tile_grid(data.frame_shape)
    slots = model.n_patterns if slots is None else slots
    most = min(MAX_TILE_PARAMS, len(fit[1]) // WINDOWS_PER_PARAM)
    most_kept = min(MAX_TILE_PARAMS, len(fit[1]) // KEPT_TILE_WINDOWS_PER_PARAM)
    # Scan and centring with no more patterns per tile than TILE_SCAN_SET tiles' joint fit
    # can afford: with little data, fits of many patterns per tile are mostly noise (one
    # 2000-frame movie: 2 patterns find a driven particle that 5 miss).
    per_tile = most // TILE_SCAN_SET * WINDOWS_PER_PARAM
    m0 = _most_patterns(model, min(len(scan[1]), per_tile), TILE_SCAN_PATTERNS)
    m_refine = _most_patterns(model, min(len(scan[1]), per_tile), TILE_REFINE_PATTERNS)
    if not tiles or m0 < 2 or slots < TILE_PATTERN_COUNTS[0] or halt():
        return None, []
    h, w = data.frame_shape

    def coordinates(chosen, m, *windows, blur):
        """Each tile's m patterns, and the coordinates (z, dz) of each set of windows."""
        pats = []
        for r, c, side in chosen:
            p, _ = principal_patterns(frames[:, r: r + side, c: c + side], m, blur)
            pats.append(torch.as_tensor(p, dtype=torch.float32, device=device))
        project = _on_tiles(chosen, pats)
        return pats, [_coordinates(model, data, *w, norm, device, project, m * len(chosen))
                      for w in windows]

    n_max = min(MAX_TILES or _max_tiles(data.frame_shape), slots // TILE_PATTERN_COUNTS[0],
                most // max(1, _n_params(model, TILE_PATTERN_COUNTS[0])))
    tried, sets = [], []
    # The larger blurs only when the data carry fewer scan patterns than TILE_SCAN_PATTERNS
    # (with many, the least blur resolves the motion; a second blur doubled the scan's
    # cost on the 72 x 72 field for no gain: -1.9% and -0.2% against the same transitions).
    for blur in TILE_SMOOTHINGS if m0 < TILE_SCAN_PATTERNS else TILE_SMOOTHINGS[:1]:
        if sets and halt():
            break
        t0 = time.perf_counter()
        _, ((z_fit, dz_fit), (z_ev, dz_ev)) = coordinates(tiles, m0, scan, ev, blur=blur)
        coords = (z_fit, dz_fit, z_ev, dz_ev)
        scores, record = _scan_tiles(tiles, coords, units, m0)
        kept, ep = _select_tiles(tiles, scores, coords, units, m0, max(1, n_max))
        del z_fit, dz_fit, z_ev, dz_ev, coords
        tried += [dict(r, smoothing=blur) for r in record]
        tried.append({"family": "tiles-selected", "smoothing": blur,
                      "tiles": [list(map(int, t)) for t in kept],
                      "val_objective": float(neep_objective(ep)),
                      "seconds": round(time.perf_counter() - t0, 2)})
        if kept:
            sets.append((float(neep_objective(ep)), blur, kept))
    if not sets:
        return None, tried
    _, blur, kept = max(sets)
    coordinates = functools.partial(coordinates, blur=blur)
    t0 = time.perf_counter()
    if not halt():
        kept = _centre_tiles(kept, data.frame_shape, coordinates, scan, ev, max(m_refine, 2))
        tried.append({"family": "tiles-centred", "tiles": [list(map(int, t)) for t in kept],
                      "seconds": round(time.perf_counter() - t0, 2)})

    # One pattern count for all kept tiles, chosen on held-out windows.
    n_t = len(kept)
    counts = [m for m in TILE_PATTERN_COUNTS
              if m * n_t <= slots and n_t * _n_params(model, m) <= most_kept]
    if not counts:
        return None, tried
    m_top = max(counts)
    pats, ((z_fit, dz_fit), (z_ev, dz_ev)) = coordinates(kept, m_top, fit, ev)
    m, best = _count_ladder(counts, m_top, n_t, (z_fit, dz_fit, z_ev, dz_ev), units, tried,
                            halt)
    if best is None:
        return None, tried
    full = np.zeros((n_t * m, h, w))
    for t, (r, c, side) in enumerate(kept):
        full[t * m: (t + 1) * m, r: r + side, c: c + side] = pats[t][:m].cpu().numpy()
    return dict(best, family="tiles", smoothing=blur, n_patterns=n_t * m,
                patterns=full, groups=np.repeat(np.arange(n_t), m),
                tiles=[list(map(int, t)) for t in kept],
                capped_by=_limit(model, m_top, n_t, slots, most_kept, subsampled)
                if best.get("capped_at") else None), tried


def _limit(model, m_top: int, n_t: int, slots: int, most: int, subsampled: bool) -> str:
    """What keeps the kept tiles' next pattern count after ``m_top`` out
    (:func:`~.candidates.count_limit`); ``most``: the parameters the training windows
    afford."""
    nxt = next((c for c in TILE_PATTERN_COUNTS if c > m_top), None)
    return count_limit(nxt is not None and nxt * n_t > slots,
                       None if nxt is None else n_t * _n_params(model, nxt), most,
                       MAX_TILE_PARAMS, subsampled)


def _boosted_fit(coords: tuple, blocks: list, starts: list | None = None) -> dict:
    """A fit of blocks one after the other, each on what the ones before it leave.

    As :func:`~.candidates._fit` returns (held-out objective and mean EP, significance,
    θ in the blocks' order, held-out EP per window), but at a cost of N p² per block of
    p parameters instead of N (Σ p)² for the joint fit: the cost grows with the number
    of tiles, not with its square.  Independent particles in separate tiles add their
    EP, so the blocks hardly interact.  ``starts``: where each block's Newton steps start
    (:func:`_offset_fit`); the fit also returns each block's θ (``thetas``).
    """
    z_fit, dz_fit, z_ev, dz_ev = coords
    cur_fit = torch.zeros(len(z_fit), dtype=torch.float64)
    ep = torch.zeros(len(z_ev), dtype=torch.float64)
    thetas = []
    for i, b in enumerate(blocks):
        f_fit = _features(z_fit[:, :, b], dz_fit[:, :, b])
        theta = _offset_fit(f_fit, cur_fit, start=None if starts is None else starts[i])
        cur_fit += f_fit.double() @ theta
        ep += _features(z_ev[:, :, b], dz_ev[:, :, b]).double() @ theta
        thetas.append(theta)
    return {"val_objective": float(neep_objective(ep)), "val_mean_ep": float(ep.mean()),
            "significant": _in_se(ep) > SIGNIFICANCE, "theta": torch.cat(thetas), "ep": ep,
            "thetas": thetas}


def _count_ladder(counts: list, m_top: int, n_t: int, coords: tuple, units,
                  tried: list, halt=never) -> tuple[int | None, dict | None]:
    """The pattern count of all kept tiles: :func:`_boosted_fit` for rising counts, the
    best by :func:`~.candidates._preferred` (:func:`~.candidates.ladder_of`)."""
    z_fit, dz_fit = coords[:2]
    last = {}

    def fit_of(m):
        # Each count starts from the last count's optimum, padded: fewer Newton steps.
        starts = None if not last else [
            padded_theta(th, dz_fit.shape[1], z_fit.shape[1], last["m"], m)
            for th in last["thetas"]]
        res = _boosted_fit(coords, [np.arange(t * m_top, t * m_top + m) for t in range(n_t)],
                           starts)
        last.update(m=m, thetas=res["thetas"])
        return res

    return ladder_of(counts, fit_of, units, {"family": "tiles", "n_tiles": n_t}, tried, halt)


def _centre_tiles(kept: list, frame_shape, coordinates, scan, ev, m: int) -> list:
    """Move each kept tile to the peak of its held-out EP over nearby positions.

    The scan's few patterns favour tiles that hold part of a site (fewer moving parts for
    8 patterns to read) over tiles centred on it; with more patterns (TILE_REFINE_PATTERNS)
    the centred tile wins.  Each tile is fitted at shifts of up to TILE_SHIFT px in each
    direction (a 5 x 5 grid), and moved to the peak of a quadratic surface fitted to those
    fits' held-out mean EP: single positions 3 px apart differ by more through noise than
    the surface does near its peak, so the best single one wanders further from the
    driven site than the surface's peak (docs/estimator.md).  Tiles that end up
    overlapping a better one by more than half are dropped.  ``m`` patterns per tile
    (TILE_REFINE_PATTERNS, or fewer when the scan windows cannot carry them); each fit
    reads at most TILE_CENTRE_VALUES windows x parameters.
    """
    h, w = frame_shape
    shifts = np.arange(-TILE_SHIFT, TILE_SHIFT + 1, max(1, TILE_SHIFT // 2))
    candidates = []
    for r, c, side in kept:
        near = {(min(max(r + dr, 0), h - side), min(max(c + dc, 0), w - side), side)
                for dr in shifts for dc in shifts}
        candidates.append(sorted(near))
    out = []
    for group in candidates:  # one tile's positions at a time: memory stays bounded
        _, ((z_fit, dz_fit), (z_ev, dz_ev)) = coordinates(group, m, scan, ev)
        ep = np.array([_fit(z_fit, dz_fit, z_ev, dz_ev, [np.arange(j * m, (j + 1) * m)],
                            TILE_CENTRE_VALUES)["val_mean_ep"] for j in range(len(group))])
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
