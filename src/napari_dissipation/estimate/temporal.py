"""A few time profiles in place of every frame pair of a long window.

A window of k frames has ``(k + 1) // 2`` even channels (the sums of frames j and k − 1 − j)
and ``k // 2`` odd ones (their differences), and a read-out bilinear in them has
``n_odd · K · (n_even · K + 1)`` parameters for K patterns: at k = 16 and K = 6 that is
2,352, more than a concave fit on a few thousand training windows can carry.  With much
camera noise the EP is nevertheless read from long windows (the rate rises with k), so the
even and odd channels of a long window are replaced by their projections on
:data:`PROFILES` smooth profiles over the pair index (low-order polynomials in the pair's
span, orthonormal).  The reduced fit is the full fit restricted to a subspace, so it is
written back into the network's full read-out exactly (:func:`expand_theta`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["PROFILES", "expand_theta", "n_readout_params", "project", "temporal_basis"]

#: Time profiles kept for the even and for the odd channels of a long window; windows of
#: up to 2 · PROFILES frames keep every channel.
PROFILES = 4


def n_readout_params(k: int, m: int) -> int:
    """Parameters of a whole-frame bilinear read-out of k-frame windows and m patterns,
    fitted on at most :data:`PROFILES` time profiles per channel family."""
    n_even, n_odd = min((k + 1) // 2, PROFILES), min(k // 2, PROFILES)
    return n_odd * m * (n_even * m + 1)


def temporal_basis(k: int, n: int, profiles: int = PROFILES) -> np.ndarray | None:
    """Orthonormal time profiles (n, q) over the n frame pairs of a k-frame window.

    Pair j joins frames j and k − 1 − j, which are ``k − 1 − 2j`` transitions apart; the
    profiles are polynomials of degree < q in that span.  Returns None (keep every pair)
    when ``n <= profiles``.
    """
    if n <= profiles:
        return None
    span = (k - 1 - 2 * np.arange(n)) / max(k - 1, 1)
    q, _ = np.linalg.qr(np.vander(span, profiles, increasing=True))
    return q


def project(x: torch.Tensor, basis: np.ndarray | None) -> torch.Tensor:
    """Channels (N, n, K) on the profiles: (N, q, K); unchanged when ``basis`` is None."""
    if basis is None:
        return x
    b = torch.as_tensor(basis, dtype=x.dtype, device=x.device)
    return torch.einsum("nik,iq->nqk", x, b)


def expand_theta(theta: torch.Tensor, blocks: list, even: np.ndarray | None,
                 odd: np.ndarray | None, n_even: int, n_odd: int) -> torch.Tensor:
    """Read-out parameters fitted on projected channels, in the full channels' layout.

    ``theta`` holds, block after block (``blocks``: pattern index arrays), the weights
    (q_odd · K_b, q_even · K_b) row-major and the bias (q_odd · K_b) of
    :func:`~napari_dissipation.estimate.model.linear_branch_features` of the projected
    channels; the result is the same function of the full (n_odd, n_even) channels.
    """
    eye_e = np.eye(n_even) if even is None else even
    eye_o = np.eye(n_odd) if odd is None else odd
    be = torch.as_tensor(eye_e, dtype=theta.dtype)
    bo = torch.as_tensor(eye_o, dtype=theta.dtype)
    qe, qo = be.shape[1], bo.shape[1]
    out, i = [], 0
    for idx in blocks:
        kb = len(idx)
        n_w = qo * kb * qe * kb
        w = theta[i: i + n_w].view(qo, kb, qe, kb)
        b = theta[i + n_w: i + n_w + qo * kb].view(qo, kb)
        out += [torch.einsum("oa,apbq,eb->opeq", bo, w, be).reshape(-1),
                (bo @ b).reshape(-1)]
        i += n_w + qo * kb
    return torch.cat(out)
