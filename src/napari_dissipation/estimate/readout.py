"""Newton refit of the network's linear read-out on the NEEP objective.

Stochastic gradients of NEEP are noisy because the mean EP of a transition is small
against its spread; the overall scale of ΔS_θ is the slowest direction to converge, and a
scale that is still short of its optimum shows as an underestimated rate.  ΔS_θ is linear
in the read-out parameters θ (``EPNet.readout_features``), the objective is concave in
them, and Newton's method with a backtracking line search reaches their optimum on the
training windows in a few steps.
"""

from __future__ import annotations

import numpy as np
import torch

from .objective import neep_objective, safe_exp_neg

__all__ = ["refit_readout"]

#: Rows of the feature matrix handled at once.
CHUNK = 8192


def _objective(features: torch.Tensor, theta: torch.Tensor, theta0: torch.Tensor,
               ridge: float) -> float:
    ep = _matvec(features, theta)
    return float(neep_objective(ep)) - 0.5 * ridge * float(torch.sum((theta - theta0) ** 2))


def _matvec(features: torch.Tensor, theta: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    return torch.cat([features[a: a + chunk].double() @ theta
                      for a in range(0, len(features), chunk)])


@torch.no_grad()
def refit_readout(model, features: torch.Tensor, *, ridge: float = 1e-3,
                  max_steps: int = 20) -> dict:
    """Maximise the NEEP objective over the read-out parameters by Newton's method.

    Parameters
    ----------
    model : EPNet
        Updated in place.
    features : Tensor, shape (N, P)
        ``model.readout_features`` of training windows (float32 is enough: sums are
        accumulated in float64, a chunk of rows at a time, to bound memory).
    ridge : float
        Penalty ``ridge · <ΔS²> · |θ − θ_0|² / 2`` on the distance from the current
        parameters θ_0: it keeps the step well posed and limits fitting of noise.
    max_steps : int

    Returns
    -------
    dict
        ``before``/``after`` objective on the given windows and the number of steps.
    """
    theta0 = model.readout_params().double()
    theta = theta0.clone()
    n = len(features)
    scale = float(torch.mean(_matvec(features, theta0) ** 2).clamp_min(1e-8))
    lam = ridge * scale
    current = before = _objective(features, theta, theta0, lam)
    eye = torch.eye(len(theta), dtype=torch.float64)
    steps = 0
    for _ in range(max_steps):
        steps += 1
        grad = -lam * (theta - theta0)
        hess = lam * eye
        for a in range(0, n, CHUNK):
            f = features[a: a + CHUNK].double()
            w = safe_exp_neg(f @ theta)
            grad += (f * (1.0 + w)[:, None]).sum(dim=0) / n
            hess += (f * w[:, None]).T @ f / n
        try:
            step = torch.linalg.solve(hess, grad)
        except RuntimeError:
            break
        t = 1.0
        while t > 1e-4:
            trial = theta + t * step
            value = _objective(features, trial, theta0, lam)
            if np.isfinite(value) and value >= current:
                break
            t *= 0.5
        else:
            break
        gain = value - current
        theta, current = trial, value
        if gain < 1e-10:
            break
    model.set_readout_params(theta)
    return {"before": before, "after": current, "steps": steps}
