"""What a fit returns: the rate, its interval, the EP of every transition, the history."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FitResult"]


@dataclass
class FitResult:
    """Outcome of :meth:`EPEstimator.fit`.

    Attributes
    ----------
    ep_rate : float
        EP rate on the test units (held out from training and from every choice), k_B/s.
    ep_rate_ci : (float, float)
        95% interval of ``ep_rate``: a bootstrap over independent test units (movies or
        long time blocks), widened by the training noise of the network's read-out
        (``ci_info["readout_sd"]``, k_B/s).
    dt : float
        Seconds per frame of the input (before any stride).
    n_transitions : int
        Transitions in all input movies (after stride).
    n_held_out : int
        Test windows the rate is measured on.
    held_out_by : str
        ``"movies"`` or ``"time blocks"``.
    held_out : list of (int, int, int)
        The test units as (movie index, first transition, last transition + 1), after
        stride: the transitions whose EP the rate measures.
    frames_per_input : int
        k, frames per window, as chosen (or given).
    rate_by_window : list of dict
        The rate for a rising window length: ``k``, ``rate`` and ``ci`` (k_B/s, on the
        test units, from the warm start's fit for that k), ``validation_rate``,
        ``validation_bound`` (the held-out objective's lower bound, k_B/s),
        ``n_patterns``; see :mod:`~napari_dissipation.estimate.window_length`.
    lower_bound_reasons : list of str
        Why the rate is likely below the true EP rate (empty when no such sign was seen;
        any estimate from images can only miss EP, see :attr:`lower_bound`).
    stochastic_ep : list of ndarray
        One (T_m − 1,) array per input movie: EP of each transition, k_B.
    history : list of dict
        One entry per evaluation: iteration, seconds, train/validation objective, rate.
    seconds : float
        Wall-clock time of the whole fit.
    iterations, best_iteration : int
    stop_reason : str
        ``"iterations"``, ``"seconds"``, ``"early stopping"``, ``"warm start unbeaten"``
        (the network stage did not beat the warm start's fit within its probation) or
        ``"stopped"``.
    ci_info : dict
        How the interval was made (units, block length, autocorrelation time).
    config : dict
    warnings : list of str
        Non-stationarity found in the movies (bleaching, drifts), in plain sentences, each
        saying whether it was corrected; see :mod:`~.stationarity` and :mod:`~.correction`.
    """

    ep_rate: float
    ep_rate_ci: tuple[float, float]
    dt: float
    n_transitions: int
    n_held_out: int
    held_out_by: str
    held_out: list
    stochastic_ep: list
    history: list
    seconds: float
    iterations: int
    best_iteration: int
    stop_reason: str
    ci_info: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    frames_per_input: int = 2
    rate_by_window: list = field(default_factory=list)
    lower_bound_reasons: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def lower_bound(self) -> bool:
        """True when the data show that the rate is likely below the true EP rate.

        Every estimate from images is a lower bound of the true EP (motion the movie does
        not resolve, and noise, only hide EP); this flag says that this data set shows
        signs of it: the rate still rose with the window length at the longest window
        tried, a longer window than the one used gave a higher rate, the starting fit's
        pattern count still improved at the most the training windows (or
        ``n_patterns``) allow, the search for the starting fit was cut short, or training
        was cut by its budget while still improving.  :attr:`lower_bound_reasons` says which.
        """
        return bool(self.lower_bound_reasons)

    @property
    def learnt(self) -> bool:
        """False when nothing fitted beat ΔS ≡ 0 on the held-out data.

        The rate is then exactly 0 with a zero-width interval, which means "nothing was
        learnt that generalises" (too little data, too much noise, too short a budget),
        not "certainly no entropy production".
        """
        return any(np.any(e != 0) for e in self.stochastic_ep)

    @property
    def model_stage(self) -> str:
        """Which stage produced the kept model, in words.

        ``"warm start"`` (the concave fit on principal patterns; ``"warm start (average
        of n read-outs)"`` for an average of fits at several blurs), ``"network, step N"``
        (stochastic training beat it), or ``"none"`` (ΔS ≡ 0), followed by
        ``" + read-out refit"`` when the final Newton refit of the read-out was kept.
        """
        warm = self.history[0].get("warm_start") if self.history else None
        if self.best_iteration > 0:
            stage = f"network, step {self.best_iteration}"
        elif warm is not None and warm.get("family") != "none":
            stage = "warm start"
            if warm.get("blend"):
                stage += f" (average of {len(warm['blend'])} read-outs)"
        else:
            stage = "none"
        if any(h.get("readout_refit") for h in self.history):
            stage += " + read-out refit"
        return stage

    @property
    def stopped(self) -> bool:
        """True when a stop request ended training."""
        return self.stop_reason == "stopped"

    def summary(self) -> dict:
        """The JSON-ready summary written to ``summary.json``."""
        return {
            "ep_rate": self.ep_rate,
            "ep_rate_ci": list(self.ep_rate_ci),
            "ep_rate_unit": "k_B/s",
            "dt": self.dt,
            "n_transitions": self.n_transitions,
            "n_held_out": self.n_held_out,
            "held_out_by": self.held_out_by,
            "held_out": [list(u) for u in self.held_out],
            "seconds": self.seconds,
            "iterations": self.iterations,
            "best_iteration": self.best_iteration,
            "stop_reason": self.stop_reason,
            "model_stage": self.model_stage,
            "learnt": self.learnt,
            "lower_bound": self.lower_bound,
            "lower_bound_reasons": list(self.lower_bound_reasons),
            "frames_per_input": self.frames_per_input,
            "rate_by_window": self.rate_by_window,
            "warnings": list(self.warnings),
            "ci": self.ci_info,
        }
