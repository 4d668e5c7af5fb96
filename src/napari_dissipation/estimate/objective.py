"""The NEEP objective and its overflow-safe exponential."""

from __future__ import annotations

import torch

__all__ = ["ZERO_EP_OBJECTIVE", "neep_objective", "safe_exp_neg"]

#: The objective of ΔS ≡ 0 (0 − e⁰): a fit whose held-out objective is not above it does
#: worse on held-out windows than claiming no entropy production at all.
ZERO_EP_OBJECTIVE = -1.0
#: Beyond ``-EXP_CUTOFF`` the exponential is continued linearly (value and slope match).
EXP_CUTOFF = 30.0


def safe_exp_neg(ep: torch.Tensor, cutoff: float = EXP_CUTOFF) -> torch.Tensor:
    """``exp(-ep)`` that cannot overflow.

    For ``ep >= -cutoff`` this is the exponential itself; below, it is continued by its
    tangent at ``-cutoff``, so value and gradient stay finite (about ``1e13`` at most
    for float32) however negative a badly initialised network makes ``ep``.

    Parameters
    ----------
    ep : Tensor, any shape
        Entropy production in k_B.
    cutoff : float
        Where the linear continuation starts (k_B).
    """
    clipped = torch.clamp(ep, min=-cutoff)
    base = torch.exp(-clipped)
    return base * (1.0 + (clipped - ep))


def neep_objective(ep: torch.Tensor) -> torch.Tensor:
    """The NEEP objective ``<ΔS − exp(−ΔS)>`` to be maximised.

    At the maximum, ΔS equals the stochastic entropy production of each transition
    (Kim et al., PRL 125, 140604, 2020), and the objective reaches ``<ΔS> − 1`` because
    ``<exp(−ΔS)> = 1`` (the integral fluctuation theorem): −1 in equilibrium.

    Parameters
    ----------
    ep : Tensor, shape (B,)
        Antisymmetric network output for a batch of transitions, k_B.

    Returns
    -------
    Tensor, scalar
    """
    return (ep - safe_exp_neg(ep)).mean()
