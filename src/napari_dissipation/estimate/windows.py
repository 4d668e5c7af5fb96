"""Windows of frames as tensors, and ΔS of many windows without gradients.

Shared by training, the warm start and the trained model's inference.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import MovieSet, Normalisation
from .model import EPNet

__all__ = ["batch_tensor", "infer_batch", "window_ep", "transition_ep", "INFER_BATCH",
           "INFER_PIXELS"]

#: Most windows evaluated at once without gradients.
INFER_BATCH = 2048
#: Most pixels (windows x frames x pixels per frame) of one batch evaluated without
#: gradients: the convolutional features of a batch take about 40 bytes per input pixel,
#: so large frames get smaller batches (peak memory stays near 200 MB).
INFER_PIXELS = 1 << 22


def batch_tensor(data: MovieSet, movie_idx: np.ndarray, starts: np.ndarray,
                 norm: Normalisation, device) -> torch.Tensor:
    """Windows (movie_idx[i], starts[i]) as a normalised float32 tensor (B, k, H, W)."""
    out = np.empty((len(starts), data.k) + data.frame_shape, dtype=np.float32)
    for m in np.unique(movie_idx):
        sel = np.flatnonzero(movie_idx == m)
        out[sel] = data.windows(int(m), starts[sel])
    x = torch.from_numpy(out).to(device)
    return (x - norm.offset) / norm.scale


def infer_batch(data: MovieSet) -> int:
    """Windows per batch evaluated without gradients: :data:`INFER_BATCH` for small frames,
    fewer for large ones (at most :data:`INFER_PIXELS` input pixels)."""
    per_window = data.k * int(np.prod(data.frame_shape))
    return int(max(1, min(INFER_BATCH, INFER_PIXELS // per_window)))


def window_ep(model: EPNet, data: MovieSet, m: int, starts: np.ndarray, norm: Normalisation,
              device, batch: int | None = None) -> np.ndarray:
    """ΔS of the windows ``starts`` of movie ``m``, shape (len(starts),), k_B."""
    return _infer(model, model, data, m, starts, norm, device, batch, ())


def transition_ep(model: EPNet, data: MovieSet, m: int, starts: np.ndarray, norm: Normalisation,
                  device, batch: int | None = None) -> np.ndarray:
    """ΔS of the windows ``starts`` of movie ``m`` split over their transitions
    (:meth:`~.model.EPNet.transition_contributions`), shape (len(starts), k − 1), k_B."""
    return _infer(model, model.transition_contributions, data, m, starts, norm, device, batch,
                  (data.k - 1,))


@torch.no_grad()
def _infer(model: EPNet, of, data: MovieSet, m: int, starts: np.ndarray, norm: Normalisation,
           device, batch: int | None, shape: tuple) -> np.ndarray:
    """``of(x)`` of the windows ``starts`` of movie ``m`` in batches, (len(starts), *shape)."""
    model.eval()
    batch = batch or infer_batch(data)
    out = np.empty((len(starts),) + shape, dtype=np.float64)
    for a in range(0, len(starts), batch):
        s = starts[a: a + batch]
        x = batch_tensor(data, np.full(len(s), m), s, norm, device)
        out[a: a + len(s)] = of(x).double().cpu().numpy()
    return out
