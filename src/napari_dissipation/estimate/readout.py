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

__all__ = ["maximise_neep", "readout_sd", "refit_readout"]

#: Rows of the feature matrix handled at once.
CHUNK = 8192
#: Largest number of read-out parameters refitted (a Newton step costs N P² operations).
MAX_PARAMS = 1500


def _objective(features: torch.Tensor, theta: torch.Tensor, theta0: torch.Tensor,
               ridge: float) -> float:
    ep = _matvec(features, theta)
    return float(neep_objective(ep)) - 0.5 * ridge * float(torch.sum((theta - theta0) ** 2))


def _matvec(features: torch.Tensor, theta: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    return torch.cat([features[a: a + chunk].double() @ theta
                      for a in range(0, len(features), chunk)])


@torch.no_grad()
def maximise_neep(features: torch.Tensor, theta0: torch.Tensor, *, lam: float = 0.0,
                  max_steps: int = 20,
                  start: torch.Tensor | None = None) -> tuple[torch.Tensor, float, float, int]:
    """Newton's method for θ maximising <F θ − exp(−F θ)> − lam |θ − θ_0|² / 2.

    Parameters
    ----------
    features : Tensor, shape (N, P)
        F, one row per window (float32 is enough: sums are accumulated in float64, a
        chunk of rows at a time, to bound memory).
    theta0 : Tensor, shape (P,)
        Starting point and centre of the penalty.
    lam : float
        Penalty strength (absolute).
    max_steps : int
    start : Tensor, shape (P,), optional
        Where the steps start (default θ_0), e.g. a nearby problem's optimum: with a
        penalty the optimum is unique, and a start near it saves steps.

    Returns
    -------
    theta : Tensor, shape (P,), float64
    before, after : float
        Penalised objective at θ_0 and at θ.
    steps : int
    """
    theta0 = theta0.double()
    n = len(features)
    before = _objective(features, theta0, theta0, lam)
    theta = theta0.clone() if start is None else start.double().clone()
    current = before if start is None else _objective(features, theta, theta0, lam)
    if current < before:  # a start worse than θ_0 is no help
        theta, current = theta0.clone(), before
    eye = torch.eye(len(theta), dtype=torch.float64)
    steps = 0
    for _ in range(max_steps):
        steps += 1
        grad = -lam * (theta - theta0)
        hess = lam * eye
        for a in range(0, n, CHUNK):
            f32 = features[a: a + CHUNK]
            f = f32.double()
            w = safe_exp_neg(f @ theta)
            grad += (f * (1.0 + w)[:, None]).sum(dim=0) / n
            # The curvature only steers the step (the line search and the float64
            # gradient decide where it ends): single precision, half the time of a step.
            hess += ((f32 * w.float()[:, None]).T @ f32).double() / n
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
    return theta, before, current, steps


@torch.no_grad()
def refit_readout(model, features: torch.Tensor, *, ridge: float = 1e-3,
                  columns: torch.Tensor | None = None, max_steps: int = 20) -> dict:
    """Maximise the NEEP objective over the read-out parameters by Newton's method.

    Parameters
    ----------
    model : EPNet
        Updated in place.
    features : Tensor, shape (N, P)
        ``model.readout_features`` of training windows, restricted to ``columns``.
    ridge : float
        Penalty ``ridge · <ΔS²> · |θ − θ_0|² / 2`` on the distance from the current
        parameters θ_0: it keeps the step well posed and limits fitting of noise.
    columns : Tensor of int, optional
        The read-out parameters refitted (default: all); the others keep their values.
    max_steps : int

    Returns
    -------
    dict
        ``before``/``after`` objective on the given windows, the number of steps and the
        absolute penalty ``lam``; ``skipped`` (a reason) when there were too many
        parameters to refit.
    """
    theta = model.readout_params().double()
    columns = torch.arange(len(theta)) if columns is None else columns
    theta0 = theta[columns]
    scale = float(torch.mean(_matvec(features, theta0) ** 2).clamp_min(1e-8))
    if len(columns) > MAX_PARAMS:
        return {"before": None, "after": None, "steps": 0, "lam": ridge * scale,
                "skipped": f"{len(columns)} read-out parameters (more than {MAX_PARAMS})"}
    theta[columns], before, after, steps = maximise_neep(features, theta0, lam=ridge * scale,
                                                         max_steps=max_steps)
    model.set_readout_params(theta)
    return {"before": before, "after": after, "steps": steps, "lam": ridge * scale}


@torch.no_grad()
def readout_sd(features: torch.Tensor, units: np.ndarray, theta: torch.Tensor, lam: float,
               direction: torch.Tensor, blocks: list | None = None) -> float:
    """Standard deviation of ``direction · θ̂`` from the training noise of the read-out θ̂.

    θ̂ maximises the NEEP objective over training windows, so it carries their sampling
    noise: a training set whose transitions happen to produce less entropy than usual
    gives a read-out that is too small, and every held-out rate inherits that.  The
    covariance of θ̂ is the sandwich ``H⁻¹ (Σ_u g_u g_uᵀ / N²) H⁻¹`` of the objective's
    curvature H and the gradient sums g_u of independent units u (movies or long time
    blocks, so that correlated neighbouring windows are never counted as independent).

    Parameters
    ----------
    features : Tensor, shape (N, P)
        Read-out features of the training windows θ̂ was fitted on.
    units : ndarray of int, shape (N,)
        Independent unit of each window.
    theta : Tensor, shape (P,)
        The fitted read-out.
    lam : float
        Penalty strength of the fit (absolute).
    direction : Tensor, shape (P,)
        Mean read-out features of the held-out windows: ``direction · θ`` is their mean EP
        per window.
    blocks : list of ndarray of int, optional
        For a read-out that is the equal average of read-outs fitted one by one
        (:func:`~napari_dissipation.estimate.warmstart._blend`): the columns of each.  Each
        carries the noise of its own fit, and the average the average of their noises; one
        sandwich over all columns would instead describe a joint fit, whose curvature is
        nearly singular when the members' patterns span nearly the same frames.

    Returns
    -------
    float
        Standard deviation of the held-out mean EP per window, k_B.
    """
    theta, direction = theta.double(), direction.double()
    n = len(features)
    labels = np.unique(units, return_inverse=True)[1]
    n_units = int(labels.max()) + 1 if n else 0
    if n_units < 2:
        return 0.0
    lab = torch.as_tensor(labels)
    if blocks is None:
        blocks = [np.arange(features.shape[1])]
    # Each unit's share of the held-out mean's deviation, over the members.
    share = torch.zeros(n_units, dtype=torch.float64)
    for cols in blocks:
        cols = torch.as_tensor(cols)
        share += _unit_shares(features[:, cols], lab, n_units, len(blocks) * theta[cols], lam,
                              direction[cols]) / len(blocks)
    return float(torch.sqrt(share @ share / n**2 * n_units / (n_units - 1)))


def _unit_shares(features: torch.Tensor, lab: torch.Tensor, n_units: int, theta: torch.Tensor,
                 lam: float, direction: torch.Tensor) -> torch.Tensor:
    """``c · (g_u − n_u ḡ)`` for each unit u, with ``c = H⁻¹ direction``: the sandwich's
    terms (:func:`readout_sd`) of one fit with parameters ``theta``, (n_units,)."""
    used = torch.nonzero(features.abs().amax(dim=0) > 0).flatten()
    if len(used) == 0:
        return torch.zeros(n_units, dtype=torch.float64)
    n, p = len(features), len(used)
    hess = lam * torch.eye(p, dtype=torch.float64)
    sums = torch.zeros(n_units, p, dtype=torch.float64)
    for a in range(0, n, CHUNK):
        f = features[a: a + CHUNK][:, used].double()
        w = safe_exp_neg(f @ theta[used])
        hess += (f * w[:, None]).T @ f / n
        sums.index_add_(0, lab[a: a + CHUNK], f * (1.0 + w)[:, None])
    counts = torch.bincount(lab, minlength=n_units).double()
    centred = sums - counts[:, None] * (sums.sum(dim=0) / n)
    c = torch.linalg.lstsq(hess, direction[used, None]).solution[:, 0]
    return centred @ c
