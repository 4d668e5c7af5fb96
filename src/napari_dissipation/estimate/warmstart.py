"""A data-driven start for the global part: blurred principal patterns and a Newton fit.

For a linear (Ornstein-Uhlenbeck) system the exact EP of a transition is bilinear in the
displacement and the mid-point state, ``ΔS = Δx · A x̄ + b · Δx``.  The global part's
linear branch has exactly that form in the pattern coordinates, ``ΔS_θ = dz · (W z + b)``,
and when the coordinates are close to linear in the system's state (principal components
of *blurred* frames, :func:`~napari_dissipation.estimate.model.principal_patterns`) it is
close to the exact EP.  The NEEP objective is concave in (W, b), so Newton's method finds
their optimum in seconds, with no stochastic gradient noise.

Which blur and how many patterns the data support is chosen on held-out windows: a
pattern count past what the data can pin down fits noise, and the held-out objective
falls; a candidate counts only if its held-out mean EP is several standard errors above
zero.  Stochastic training then starts from the chosen fit (the hidden branch and the
convolutional part learn what is not bilinear), and that fit is the first candidate for
the kept weights; ΔS ≡ 0 stays the starting point when no fit beats it on held-out data.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import EPNet, linear_branch_features, principal_patterns
from .objective import neep_objective
from .readout import maximise_neep

__all__ = ["warm_start", "SMOOTHINGS", "PATTERN_COUNTS"]

#: Blur scales tried, in (binned) pixels.
SMOOTHINGS = (0.0, 2.0, 4.0, 8.0)
#: Pattern counts tried, up to the model's ``n_modes``.
PATTERN_COUNTS = (2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48, 64)
#: Training windows the candidate fits are made on: at most this many, and at most
#: FIT_PIXELS pixels read in all (large frames), but at least MIN_FIT_WINDOWS.
FIT_WINDOWS = 200_000
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
#: Counts past the best one tried before giving up on a blur scale.
PATIENCE = 2


def _windows(data, movie_idx, starts, norm, device, chunk=2048):
    from .train import batch_tensor

    for a in range(0, len(starts), chunk):
        yield batch_tensor(data, movie_idx[a: a + chunk], starts[a: a + chunk], norm, device)


@torch.no_grad()
def _coordinates(model: EPNet, data, movie_idx, starts, norm, device, patterns: torch.Tensor,
                 mean: torch.Tensor):
    """Even and odd pattern coordinates, (N, n_even, P) and (N, n_odd, P), float32.

    The outputs are allocated once and filled: many small kept tensors between large
    freed batches fragment the heap, which then holds on to the batches' memory.
    """
    n, k = len(starts), patterns.shape[0]
    z = torch.empty(n, model.n_even, k)
    dz = torch.empty(n, model.n_odd, k)
    flat = patterns.flatten(1).T
    a = 0
    for x in _windows(data, movie_idx, starts, norm, device):
        even, odd = model._channels(x)
        b = a + len(x)
        z[a:b] = ((even - 2.0 * mean).flatten(2) @ flat).cpu()
        dz[a:b] = (odd.flatten(2) @ flat).cpu()
        a = b
    return z, dz


def _mean_square(f: torch.Tensor, chunk: int = 8192) -> float:
    """Mean of f² over all entries, in chunks of rows (no full-size copy)."""
    total = sum(float(torch.sum(f[a: a + chunk].double() ** 2)) for a in range(0, len(f), chunk))
    return total / max(f.numel(), 1)


def _features(z: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """Linear-branch features of coordinates (N, n_even, m) and (N, n_odd, m)."""
    return linear_branch_features(z.flatten(1), dz.flatten(1))


@torch.no_grad()
def warm_start(model: EPNet, data, train_m: np.ndarray, train_s: np.ndarray, eval_units: list,
               norm, device, seed: int) -> dict:
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

    Returns
    -------
    dict
        The chosen ``smoothing`` (pixels) and ``n_patterns``, its held-out objective and
        EP per window (``val_objective``, ``val_mean_ep``; ΔS ≡ 0 has objective −1), and
        every candidate tried.
    """
    rng = np.random.default_rng([seed, 0x5EED])
    k_max = model.n_modes
    window_pixels = model.frames_per_input * int(np.prod(data.frame_shape))
    n_fit = int(np.clip(FIT_PIXELS // window_pixels, MIN_FIT_WINDOWS, FIT_WINDOWS))
    pick = np.sort(rng.choice(len(train_s), size=min(n_fit, len(train_s)), replace=False))
    n_frames = max(100, min(SAMPLE_FRAMES, SAMPLE_PIXELS // int(np.prod(data.frame_shape))))
    frame_pick = rng.choice(pick, size=min(n_frames, len(pick)), replace=False)
    frames = np.concatenate([x[:, 0].cpu().numpy() for x in _windows(
        data, train_m[frame_pick], train_s[frame_pick], norm, device)])

    patterns, mean = [], None
    for s in SMOOTHINGS:
        p, mean = principal_patterns(frames, k_max, s)
        patterns.append(p)
    stack = torch.as_tensor(np.concatenate(patterns), dtype=torch.float32, device=device)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=device)
    z_fit, dz_fit = _coordinates(model, data, train_m[pick], train_s[pick], norm, device,
                                 stack, mean_t)
    ev_m = np.concatenate([np.full(len(s), m) for m, s in eval_units])
    ev_s = np.concatenate([s for _, s in eval_units])
    z_ev, dz_ev = _coordinates(model, data, ev_m, ev_s, norm, device, stack, mean_t)

    # A Newton step costs N P² for P = n_odd m (n_even m + 1) parameters: large k caps m.
    counts = [c for c in PATTERN_COUNTS if c < k_max] + [k_max]
    counts = [c for c in counts
              if model.n_odd * c * (model.n_even * c + 1) <= MAX_PARAMS] or counts[:1]
    best = {"val_objective": -1.0, "val_mean_ep": 0.0, "smoothing": 0.0, "n_patterns": 0,
            "theta": None}
    tried = []
    for i, s in enumerate(SMOOTHINGS):
        cols = slice(i * k_max, (i + 1) * k_max)
        best_here, since = -np.inf, 0
        for m in counts:
            sub = slice(cols.start, cols.start + m)
            f_fit = _features(z_fit[:, :, sub], dz_fit[:, :, sub])
            lam = RIDGE * _mean_square(f_fit)
            theta, *_ = maximise_neep(f_fit, torch.zeros(f_fit.shape[1], dtype=torch.float64),
                                      lam=lam)
            ep = _features(z_ev[:, :, sub], dz_ev[:, :, sub]).double() @ theta
            obj = float(neep_objective(ep))
            # Picking the best of many fits would often "find" EP in noise: a candidate
            # counts only if its held-out mean EP is SIGNIFICANCE standard errors above 0.
            significant = float(ep.mean()) > SIGNIFICANCE * float(ep.std()) / len(ep) ** 0.5
            tried.append({"smoothing": s, "n_patterns": m, "val_objective": obj,
                          "significant": significant})
            if significant and obj > best["val_objective"]:
                best = {"val_objective": obj, "val_mean_ep": float(ep.mean()), "smoothing": s,
                        "n_patterns": m, "theta": theta}
            if obj > best_here:
                best_here, since = obj, 0
            else:
                since += 1
                if since >= PATIENCE:
                    break

    chosen = SMOOTHINGS.index(best["smoothing"])
    model.set_patterns(patterns[chosen], mean, n_active=best["n_patterns"] or None)
    if best["theta"] is not None:
        _set_linear_branch(model, best["theta"], best["n_patterns"])
    best.pop("theta")
    best["tried"] = tried
    return best


def _set_linear_branch(model: EPNet, theta: torch.Tensor, m: int) -> None:
    """Write the fit over the first ``m`` patterns into ``g_linear`` (zero elsewhere)."""
    k = model.n_modes
    rows = np.array([j * k + i for j in range(model.n_odd) for i in range(m)])
    cols = np.array([e * k + i for e in range(model.n_even) for i in range(m)])
    n_w = len(rows) * len(cols)
    weight = torch.zeros_like(model.g_linear.weight)
    bias = torch.zeros_like(model.g_linear.bias)
    weight[np.ix_(rows, cols)] = theta[:n_w].view(len(rows), len(cols)).to(weight.dtype)
    bias[rows] = theta[n_w:].to(bias.dtype)
    model.g_linear.weight.copy_(weight)
    model.g_linear.bias.copy_(bias)
