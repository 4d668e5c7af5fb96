"""How many frames one input should span: the held-out rate for a rising window length.

Camera noise and optics hide part of the motion, and two-frame windows then carry only
part of the entropy production; longer windows carry more (for linear systems the exact
share is :meth:`~napari_dissipation.simulate.linear.LinearDiffusion.window_irreversibility`).
The scan measures the rate for k = 2, 3, 4, 6, 8, ... frames per window with the warm
start's concave fit (seconds per k, no network training):

1. whole-frame principal patterns of blurred frames, with the blur and the pattern count
   the warm start chooses on the validation units for two-frame windows (or for 4 or 8
   frames when two show nothing significant);
2. each frame's pattern coordinates, computed once; the even and odd coordinates of a
   window of any k are sums and differences of its frames' coordinates;
3. for each k, a Newton fit of the bilinear read-out on training windows (the pattern
   count capped so that every parameter has enough windows; windows of more than eight
   frames on a few time profiles, :mod:`.temporal`), compared on validation units, and
   measured, with a bootstrap interval, on the test units.

The shortest k beyond which the validation rate stops rising by more than its error is
kept (:func:`choose_window_length`).  The test units take no part in the choice: the curve
reported on them is a result, not an input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .candidates import _ladder, never
from .data import MovieSet, Normalisation
from .model import EPNet, linear_branch_features
from .objective import ZERO_EP_OBJECTIVE
from .stats import Split, bootstrap_rate_ci, flat_windows
from .temporal import n_readout_params, project, temporal_basis
from .warmstart import (
    PATTERN_COUNTS,
    SAMPLE_FRAMES,
    SAMPLE_PIXELS,
    SCAN_SMOOTHINGS,
    WINDOWS_PER_PARAM,
    _in_se,
    _whole_family,
    whole_frame_bases,
)

__all__ = ["WindowScan", "scan_window_lengths", "choose_window_length", "LADDER"]

#: Window lengths tried, in frames.  Not beyond 16: on longer windows the mean of ΔS of the
#: fit on time profiles reads more than the windows can carry (read noise 10% and 30%,
#: 24 and 32 frames: 11 to 22% above the exact attainable share; docs/benchmarks.md).
LADDER = (2, 3, 4, 6, 8, 12, 16)
#: Window lengths on which the patterns are chosen, the first with a significant fit.
REFERENCE_LENGTHS = (2, 4, 8)
#: A longer window is preferred when its validation rate is higher by this many standard
#: errors of the paired difference between validation units, and by RATE_GAIN.
GAIN_SE = 2.0
RATE_GAIN = 0.03
#: Windows of a unit: a k is tried only when each validation and test unit holds at least
#: this many windows of it.
MIN_UNIT_WINDOWS = 20
#: Validation units are cut into about this many blocks for the standard errors.
MIN_UNITS = 20
#: Most training windows of one fit, and most feature values (windows x parameters): a
#: Newton step costs windows x parameters², and the scan makes a few fits per k.
FIT_WINDOWS = 100_000
FIT_VALUES = 12_000_000
#: Most parameters of one fit (with FIT_VALUES, at least WINDOWS_PER_PARAM windows each).
MAX_PARAMS = 600
#: Window lengths in a row that beat no shorter one, tried before the scan stops.
PATIENCE = 2
#: Frames of coordinates computed at once.
CHUNK = 1024


@dataclass
class WindowScan:
    """Outcome of :func:`scan_window_lengths`.

    Attributes
    ----------
    curve : list of dict
        One entry per k tried: ``k``, ``rate`` and ``ci`` (k_B/s, on the test units),
        ``validation_rate`` (k_B/s), ``validation_bound`` (k_B/s: the held-out NEEP
        objective + 1 per transition, a lower bound of the EP the windows carry, where the
        mean of ΔS need not be one), ``n_patterns`` (0: no significant fit); the last entry
        has ``generalises`` false when its bound was below 0 (a held-out objective worse
        than ΔS ≡ 0's): that k took no part in the choice and the scan stopped there.
    chosen : int
        The window length kept.
    still_rising : bool
        Whether the validation rate still rose significantly at the longest k tried (the
        longest the data allow, or the ladder's end).
    smoothing : float
        Blur of the patterns, pixels.
    seconds : float
    """

    curve: list = field(default_factory=list)
    chosen: int = 2
    still_rising: bool = False
    smoothing: float = 0.0
    seconds: float = 0.0


def _frame_coordinates(data: MovieSet, ranges: list, patterns: np.ndarray, mean: np.ndarray,
                       norm: Normalisation) -> list[np.ndarray]:
    """Coordinates (frames, n) of every frame of each range, about the mean frame."""
    flat = torch.as_tensor(patterns.reshape(len(patterns), -1).T, dtype=torch.float32)
    mean_t = torch.as_tensor(mean.ravel(), dtype=torch.float32)
    out = []
    for m, a, b in ranges:
        coords = np.empty((b - a, len(patterns)), dtype=np.float32)
        for s in range(a, b, CHUNK):
            idx = np.arange(s, min(s + CHUNK, b))
            x = torch.from_numpy(data.frames(m, idx)).flatten(1)
            coords[s - a: s - a + len(idx)] = (((x - norm.offset) / norm.scale - mean_t)
                                               @ flat).numpy()
        out.append(coords)
    return out


def _window_coordinates(coords: list[np.ndarray], k: int, pick=None, even=None,
                        odd=None) -> tuple:
    """Even and odd coordinates (N, n_even, n), (N, n_odd, n) of all windows of k frames,
    and the range each comes from; ``pick`` selects windows by their overall index.
    ``even`` and ``odd``, when given, are time profiles (:mod:`.temporal`) the channels
    are projected on."""
    idx = [(r, s) for r, c in enumerate(coords) for s in range(len(c) - k + 1)]
    idx = np.array(idx, dtype=int).reshape(-1, 2)
    if pick is not None:
        idx = idx[pick]
    n_even, n_odd = (k + 1) // 2, k // 2
    n = coords[0].shape[1] if coords else 0
    z = np.empty((len(idx), n_even, n), dtype=np.float32)
    dz = np.empty((len(idx), n_odd, n), dtype=np.float32)
    for r in np.unique(idx[:, 0]):
        sel = np.flatnonzero(idx[:, 0] == r)
        x = coords[r][idx[sel, 1][:, None] + np.arange(k)]  # (N_r, k, n)
        z[sel] = x[:, :n_even] + x[:, ::-1][:, :n_even]
        dz[sel] = x[:, ::-1][:, :n_odd] - x[:, :n_odd]
    z, dz = torch.from_numpy(z), torch.from_numpy(dz)
    return project(z, even), project(dz, odd), idx[:, 0]


def _n_windows(coords: list[np.ndarray], k: int) -> int:
    return sum(max(len(c) - k + 1, 0) for c in coords)


def _blocks(range_of: np.ndarray, n_ranges: int) -> np.ndarray:
    """Unit of each window: its range, cut into blocks when there are few ranges."""
    per = max(1, -(-MIN_UNITS // max(n_ranges, 1)))
    out = np.empty(len(range_of), dtype=int)
    for r in range(n_ranges):
        sel = np.flatnonzero(range_of == r)
        out[sel] = r * per + (np.arange(len(sel)) * per) // max(len(sel), 1)
    return out


def _reference(data: MovieSet, split: Split, norm, device, seed: int, n_patterns: int,
               k: int, halt=never, bases: tuple | None = None):
    """Patterns chosen for windows of k frames (whole-frame family): (patterns, mean, blur),
    or None when no fit is significant; and the (mean frame, principal patterns at each
    blur) it chose from, which ``bases`` gives when a shorter reference computed them
    already (a pattern's cost grows with the frame's area: seconds per blur on 64 x 64
    frames).  ``halt`` as for the warm start's whole-frame family (a user's Stop)."""
    rng = np.random.default_rng([seed, 0x5CA1])
    model = EPNet(frames_per_input=k, frame_shape=data.frame_shape, channels=0,
                  n_patterns=n_patterns).to(device)
    data = MovieSet(data.movies, names=data.names, frames_per_input=k, stride=data.stride,
                    bin=data.bin)
    train, val = split.windows("train", k), split.windows("validation", k)
    if not train or not val:  # too few frames for windows of k in some part
        return None, bases
    tm, ts, _ = flat_windows(train)
    pick = np.sort(rng.choice(len(ts), size=min(FIT_WINDOWS, len(ts)), replace=False))
    if bases is None:
        n_frames = max(100, min(SAMPLE_FRAMES,
                                SAMPLE_PIXELS // int(np.prod(data.frame_shape))))
        fp = np.sort(rng.choice(len(ts), size=min(n_frames, len(ts)), replace=False))
        frames = np.concatenate([(data.frames(int(m), ts[fp][tm[fp] == m]) - norm.offset)
                                 / norm.scale for m in np.unique(tm[fp])])
        bases = (frames.mean(axis=0),
                 whole_frame_bases(frames, model.whole_frame_slots, SCAN_SMOOTHINGS))
    mean, patterns = bases
    model.set_patterns(np.zeros(model.patterns.shape), mean)
    val_m, val_s, units = flat_windows(val)
    best, _ = _whole_family(model, data, (tm[pick], ts[pick]), (val_m, val_s), units, norm,
                            device, patterns, SCAN_SMOOTHINGS, polynomial=False, halt=halt)
    if best is None:
        return None, bases
    return (best["patterns"], mean, best["smoothing"]), bases


def scan_window_lengths(data: MovieSet, split: Split, norm: Normalisation, *,
                        window_seconds: float, device, seed: int, n_patterns: int,
                        max_k: int | None = None, max_seconds: float | None = None,
                        rng: np.random.Generator | None = None, stop=None) -> WindowScan:
    """Validation and test rates for a rising window length k (see the module's notes).

    Parameters
    ----------
    data : MovieSet
        The movies (any k; frames are read one by one).
    split : Split
        Training, validation and test frame ranges.
    norm : Normalisation
    window_seconds : float
        Seconds per transition, ``stride · dt``.
    device : torch.device
    seed : int
    n_patterns : int
        Most whole-frame patterns.
    max_k : int, optional
        Longest window tried (all of :data:`LADDER` that the data allow by default).
    max_seconds : float, optional
        Time after which no longer window is tried.
    rng : numpy Generator, optional
        Draws the training windows of each fit and the bootstrap.
    stop : threading.Event, optional
        When set, no further window length is tried (a user's Stop).
    """
    t0 = time.perf_counter()
    rng = rng or np.random.default_rng(seed)
    scan = WindowScan()
    # The patterns are chosen on the shortest window whose fit is significant: with much
    # noise, two frames may show nothing that longer windows show.
    bases = None
    for k_ref in REFERENCE_LENGTHS:
        if k_ref > int(np.min(data.lengths)):
            break
        ref, bases = _reference(data, split, norm, device, seed, n_patterns, k_ref,
                                halt=never if stop is None else stop.is_set, bases=bases)
        if ref is not None or (max_seconds is not None
                               and time.perf_counter() - t0 > max_seconds) \
                or (stop is not None and stop.is_set()):
            break
    if ref is None:  # nothing significant for any window: nothing to compare
        scan.seconds = time.perf_counter() - t0
        return scan
    patterns, mean, scan.smoothing = ref
    coords = {part: _frame_coordinates(data, getattr(split, part), patterns, mean, norm)
              for part in ("train", "validation", "test")}
    val_rates, since, n_needed = {}, 0, 1
    for k in LADDER:
        if max_k is not None and k > max_k:
            break
        if val_rates and ((max_seconds is not None and time.perf_counter() - t0 > max_seconds)
                          or (stop is not None and stop.is_set())):
            break
        if min((len(c) - k + 1 for part in ("validation", "test") for c in coords[part]),
               default=0) < MIN_UNIT_WINDOWS:
            break
        t_k = time.perf_counter()
        entry, rates = _one_length(coords, k, len(patterns), n_needed, window_seconds, rng)
        if entry is None:
            break
        entry["seconds"] = round(time.perf_counter() - t_k, 2)
        if entry["validation_bound"] < 0 and val_rates:
            # Its held-out objective is below ΔS ≡ 0's: the fit does not generalise (too
            # many parameters for the windows), and its mean ΔS is not a rate.  Longer
            # windows have more parameters still (hot middle bead, 30 x 5000 frames: the
            # 6-frame fit's mean read +8% over its transitions' exact EP, and the final fit
            # at 6 frames -8.5%; docs/benchmarks.md).
            scan.curve.append(dict(entry, generalises=False))
            break
        n_needed = entry["n_patterns"] or n_needed
        scan.curve.append(entry)
        val_rates[k] = rates
        # Past the peak (noise no longer hides EP that a longer window recovers), longer
        # windows only cost time.
        since = 0 if choose_window_length(val_rates)[0] == k else since + 1
        if since >= PATIENCE:
            break
    scan.chosen, scan.still_rising = choose_window_length(val_rates)
    scan.seconds = time.perf_counter() - t0
    return scan


def _one_length(coords: dict, k: int, n_max: int, n_needed: int, window_seconds: float,
                rng: np.random.Generator) -> tuple[dict | None, np.ndarray | None]:
    """Fit and measure windows of k frames; returns the curve's entry and the validation
    rate of each validation unit (k_B/s), or (None, None) when the data cannot afford the
    ``n_needed`` patterns a shorter window used: with fewer, a longer window would lose
    what a shorter one reads, and the curve would fall for want of parameters, not of EP.
    At most ``n_max`` patterns (the reference's count: a longer window reads the same
    motion)."""
    n_train = _n_windows(coords["train"], k)
    even, odd = temporal_basis(k, (k + 1) // 2), temporal_basis(k, k // 2)

    def n_params(c):
        return n_readout_params(k, c)

    def affordable(c):
        n_fit = min(n_train, FIT_WINDOWS, FIT_VALUES // n_params(c))
        return n_params(c) <= min(MAX_PARAMS, n_fit // WINDOWS_PER_PARAM)

    counts = [c for c in PATTERN_COUNTS if c < n_max] + [n_max]
    counts = [c for c in counts if affordable(c)]
    if not counts or counts[-1] < n_needed:
        return None, None
    n_fit = min(n_train, FIT_WINDOWS, FIT_VALUES // n_params(counts[-1]))
    pick = np.sort(rng.choice(n_train, size=n_fit, replace=False))
    z_fit, dz_fit, _ = _window_coordinates(coords["train"], k, pick, even, odd)
    z_val, dz_val, val_range = _window_coordinates(coords["validation"], k, None, even, odd)
    units = _blocks(val_range, len(coords["validation"]))
    m, best = _ladder(counts, lambda c: [np.arange(c)], (z_fit, dz_fit, z_val, dz_val),
                      units, {"k": k}, [])
    # No polynomial branch here: chosen by noise at one k of a noisy linear system, it moved
    # the choice of k (clean 2-bead movies at 100 photons: k = 6 and -26% with it, k = 24 and
    # +14% without, the committed benchmarks' behaviour; bench_stationarity, seed 0).
    scale = (k - 1) * window_seconds
    z_test, dz_test, test_range = _window_coordinates(coords["test"], k, None, even, odd)
    if best is None:
        val_ep = np.zeros(len(units))
        test_ep = np.zeros(len(test_range))
    else:
        val_ep = best["ep"].numpy()
        test_ep = (linear_branch_features(z_test[:, :, :m].flatten(1),
                                          dz_test[:, :, :m].flatten(1)).double()
                   @ best["theta"]).numpy()
    test_units = [test_ep[test_range == r] for r in range(len(coords["test"]))]
    rate, ci, _ = bootstrap_rate_ci(test_units, scale, rng=rng, window_seconds=window_seconds)
    per_unit = np.array([val_ep[units == u].mean() for u in np.unique(units)]) / scale
    # The held-out objective + 1 bounds the EP of the windows from below, as the mean of
    # ΔS does not: where the mean rises with k and the bound does not, the rise is the
    # fit's, not the EP's (docs/benchmarks.md, issue 14).  ΔS ≡ 0 has objective −1.
    objective = ZERO_EP_OBJECTIVE if best is None else best["val_objective"]
    entry = {"k": k, "rate": rate, "ci": list(ci), "validation_rate": float(per_unit.mean()),
             "validation_bound": (objective - ZERO_EP_OBJECTIVE) / scale, "n_patterns": int(m or 0)}
    return entry, per_unit


def choose_window_length(val_rates: dict[int, np.ndarray]) -> tuple[int, bool]:
    """The shortest k that no longer k beats clearly, and whether the rate still rises.

    ``val_rates[k]`` is the rate (k_B/s) of each validation unit for windows of k frames
    (the same units for every k).  A longer k' beats k when its mean rate is higher by
    :data:`GAIN_SE` standard errors of the paired difference between units and by
    :data:`RATE_GAIN` of the rate at k.  The rate "still rises" when the chosen k is the
    longest tried and it beats the one before it.
    """
    ks = sorted(val_rates)
    if not ks:
        return 2, False

    def beats(k2, k1):
        d = torch.from_numpy(val_rates[k2] - val_rates[k1])
        gain = float(d.mean())
        return gain > RATE_GAIN * abs(float(val_rates[k1].mean())) and _in_se(d) > GAIN_SE

    for i, k in enumerate(ks):
        if not any(beats(k2, k) for k2 in ks[i + 1:]):
            rising = i == len(ks) - 1 and i > 0 and beats(k, ks[i - 1])
            return k, rising
    return ks[-1], False  # pragma: no cover (the last k is always chosen at the latest)

