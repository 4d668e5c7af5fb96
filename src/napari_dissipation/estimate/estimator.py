"""``EPEstimator``: the options and the training; fitting returns a :class:`FitResult` and
leaves a :class:`~.trained.TrainedModel` (inference only) in ``est.model_``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..options import validate
from . import distributed
from .config import EstimatorConfig
from .data import MovieSet
from .state import read_checkpoint
from .stats import bootstrap_rate_ci, per_transition, split_windows, widen_interval
from .train import Progress, train
from .trained import TrainedModel, build_network, check_dt, resolve_device
from .windows import window_ep

__all__ = ["EPEstimator", "FitResult"]


@dataclass
class FitResult:
    """Outcome of :meth:`EPEstimator.fit`.

    Attributes
    ----------
    ep_rate : float
        EP rate on held-out data, k_B per second.
    ep_rate_ci : (float, float)
        95% interval of ``ep_rate``: a bootstrap over independent held-out units (movies
        or long time blocks), widened by the training noise of the network's read-out
        (``ci_info["readout_sd"]``, k_B/s).
    dt : float
        Seconds per frame of the input (before any stride).
    n_transitions : int
        Transitions in all input movies (after stride).
    n_held_out : int
        Held-out windows the rate is measured on.
    held_out_by : str
        ``"movies"`` or ``"time blocks"``.
    held_out : list of (int, int, int)
        The held-out units as (movie index, first window, last window + 1).
    stochastic_ep : list of ndarray
        One (T_m − 1,) array per input movie: EP of each transition, k_B.
    history : list of dict
        One entry per evaluation: iteration, seconds, train/validation objective, rate.
    seconds : float
        Wall-clock time of the whole fit.
    iterations, best_iteration : int
    stop_reason : str
        ``"iterations"``, ``"seconds"``, ``"early stopping"`` or ``"stopped"``.
    ci_info : dict
        How the interval was made (units, block length, autocorrelation time).
    config : dict
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

    @property
    def learnt(self) -> bool:
        """False when nothing fitted beat ΔS ≡ 0 on the held-out data.

        The rate is then exactly 0 with a zero-width interval, which means "nothing was
        learnt that generalises" (too little data, too much noise, too short a budget),
        not "certainly no entropy production".
        """
        return any(np.any(e != 0) for e in self.stochastic_ep)

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
            "learnt": self.learnt,
            "ci": self.ci_info,
        }


class EPEstimator:
    """Neural estimator of entropy production from movies (NEEP with a CNN).

    Parameters
    ----------
    **options
        Any option of :data:`napari_dissipation.options.OPTIONS` (all keyword-only, all
        with defaults), e.g. ``seed=0, frames_per_input=2, max_seconds=600``; the
        checked values are in ``est.config``.

    Attributes
    ----------
    config : EstimatorConfig
    model_ : TrainedModel or None
        The trained model after :meth:`fit` (inference only; save it, or use it on other
        movies).  The inference methods of the estimator pass through to it.
    result_ : FitResult or None
        The last fit's result.

    Notes
    -----
    Started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), :meth:`fit` trains
    with DistributedDataParallel (gloo on the CPU, nccl on CUDA): ``batch_size`` is the
    global batch, shared out over the ranks.  Every rank returns the same result.

    Examples
    --------
    >>> est = EPEstimator(seed=0, max_seconds=60)          # doctest: +SKIP
    >>> fit = est.fit(sim.movies, dt=sim.dt)                # doctest: +SKIP
    >>> fit.ep_rate, fit.ep_rate_ci                         # doctest: +SKIP
    >>> est.model_.dissipation_map(sim.movies[0])           # doctest: +SKIP
    """

    def __init__(self, **options):
        self.config = EstimatorConfig(**validate(options))
        self.model_: TrainedModel | None = None
        self.result_: FitResult | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ properties
    @property
    def precision(self) -> str:
        return self.config.precision

    @property
    def frames_per_input(self) -> int:
        return self.config.frames_per_input

    @property
    def is_fitted(self) -> bool:
        return self.model_ is not None

    def _mixed_precision(self, device) -> bool:
        return device.type == "cuda" and self.precision in ("auto", "bfloat16")

    def _fingerprint(self, data: MovieSet, dt: float, extra) -> dict:
        """What a checkpoint must match: options (not threads/device), dt, the movies."""
        options = {k: v for k, v in self.config.to_dict().items()
                   if k not in ("threads", "device")}
        facts = {"options": options, "dt": dt,
                 "movies": [[name, list(map(int, movie.shape)),
                             str(np.dtype(getattr(movie, "dtype", np.float64)))]
                            for name, movie in zip(data.names, data.movies, strict=True)],
                 "extra": extra or {}}
        return json.loads(json.dumps(facts, default=str))

    def _rate_scale(self, dt: float) -> float:
        return (self.config.frames_per_input - 1) * self.config.stride * dt

    # ------------------------------------------------------------------ training
    def request_stop(self) -> None:
        """Ask a running fit to stop at its next step (thread-safe); best weights are kept."""
        self._stop.set()

    def fit_iter(self, movies, *, dt: float, names=None, checkpoint=None, resume: bool = False,
                 fingerprint=None) -> Generator[Progress, None, FitResult]:
        """Train on ``movies``, yielding :class:`Progress` records; return a :class:`FitResult`.

        Parameters
        ----------
        movies : array-like (T, H, W), array (M, T, H, W) or list of (T, H, W) array-likes
            Movies of one system, same frame size; integer or float pixels.
        dt : float
            Seconds per frame.
        names : list of str, optional
            Names used in error messages (file names).
        checkpoint : str or Path, optional
            File rewritten (atomically, by rank 0) at every evaluation with the whole
            training state, so that a killed fit can continue with ``resume=True``.
        resume : bool
            Continue from ``checkpoint``; refused (:class:`InputError`) when it is missing
            or was made with other movies, dt or options.
        fingerprint : JSON-able, optional
            More facts about the inputs (file sizes, modification times, what
            was read from them) that a checkpoint must match to be resumed.
        """
        import torch

        dt = check_dt(dt)
        cfg = self.config
        self._stop.clear()
        t_start = time.perf_counter()
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        ctx, device = distributed.setup(resolve_device(cfg.device))
        data = MovieSet(movies, names=names, frames_per_input=cfg.frames_per_input,
                        stride=cfg.stride, bin=cfg.bin)
        data.check_finite()
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        norm = data.normalisation(rng)
        split = split_windows(data.n_windows, cfg.frames_per_input,
                              validation_fraction=cfg.validation_fraction, rng=rng)
        network = build_network(cfg, data.frame_shape).to(device)
        facts = state = None
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            facts = self._fingerprint(data, dt, fingerprint)
            if resume:
                state = read_checkpoint(checkpoint, fingerprint=facts) if ctx.is_main else None
                if ctx.active:
                    state = ctx.broadcast_object(state)
        elif resume:
            raise InputError("resume needs a checkpoint file")
        outcome = yield from train(network, data, split, norm, cfg,
                                   rate_scale=self._rate_scale(dt), device=device,
                                   stop=self._stop, rng=rng, ctx=ctx,
                                   checkpoint=checkpoint if ctx.is_main else None,
                                   fingerprint=facts, resume=state,
                                   mixed_precision=self._mixed_precision(device))
        self.model_ = TrainedModel(network, norm=norm, frame_shape=data.frame_shape,
                                   raw_frame_shape=data.raw_frame_shape, dt=dt, config=cfg)
        eps = _all_window_ep(network, data, norm, device, ctx)
        held = [eps[m][s] for m, s in split.held_out]
        rate, ci, info = bootstrap_rate_ci(held, self._rate_scale(dt),
                                           rng=np.random.default_rng(cfg.seed + 1))
        # The bootstrap covers the sampling of the held-out windows; the read-out's
        # training noise is independent of it and is added to the interval.
        info["held_out_ci"] = list(ci)
        info["readout_sd"] = outcome.readout_sd / self._rate_scale(dt)
        ci = widen_interval(rate, ci, info["readout_sd"])
        self.result_ = FitResult(
            ep_rate=rate, ep_rate_ci=ci, dt=dt,
            n_transitions=int(np.sum(data.lengths - 1)),
            n_held_out=int(sum(len(s) for _, s in split.held_out)),
            held_out_by=split.by,
            held_out=[(int(m), int(st[0]), int(st[-1]) + 1) for m, st in split.held_out],
            stochastic_ep=[per_transition(e, cfg.frames_per_input) for e in eps],
            history=outcome.history, seconds=time.perf_counter() - t_start,
            iterations=outcome.iterations, best_iteration=outcome.best_iteration,
            stop_reason=outcome.stop_reason, ci_info=info, config=self.config_dict(),
        )
        return self.result_

    def fit(self, movies, *, dt: float, names=None,
            progress: Callable[[Progress], object] | None = None, checkpoint=None,
            resume: bool = False, fingerprint=None) -> FitResult:
        """Train to the end of the budget (or early stopping) and return the result.

        ``progress``, if given, is called with every :class:`Progress` record;
        ``checkpoint``, ``resume`` and ``fingerprint`` as for :meth:`fit_iter`.
        """
        gen = self.fit_iter(movies, dt=dt, names=names, checkpoint=checkpoint, resume=resume,
                            fingerprint=fingerprint)
        while True:
            try:
                record = next(gen)
            except StopIteration as stop:
                return stop.value
            if progress is not None:
                progress(record)

    # ------------------------------------------------------------------ the trained model
    def _trained(self) -> TrainedModel:
        if self.model_ is None:
            raise InputError("the estimator is not trained: call fit() first")
        return self.model_

    @property
    def dt(self) -> float | None:
        """Seconds per frame of the training movies (None before fitting)."""
        return None if self.model_ is None else self.model_.dt

    @property
    def frame_shape(self):
        return None if self.model_ is None else self.model_.frame_shape

    @property
    def raw_frame_shape(self):
        return None if self.model_ is None else self.model_.raw_frame_shape

    def window_ep(self, movie, *, name: str = "movie") -> np.ndarray:
        """:meth:`TrainedModel.window_ep` of the trained model."""
        return self._trained().window_ep(movie, name=name)

    def stochastic_ep(self, movie, *, name: str = "movie") -> np.ndarray:
        """:meth:`TrainedModel.stochastic_ep` of the trained model, (T − 1,), k_B."""
        return self._trained().stochastic_ep(movie, name=name)

    def ep_rate(self, movie, *, dt: float | None = None, name: str = "movie") -> float:
        """:meth:`TrainedModel.ep_rate` of the trained model, k_B/s."""
        return self._trained().ep_rate(movie, dt=dt, name=name)

    def dissipation_map(self, movie, *, name: str = "movie") -> np.ndarray:
        """:meth:`TrainedModel.dissipation_map` of the trained model, (T − 1, H, W), k_B."""
        return self._trained().dissipation_map(movie, name=name)

    def ep_rate_density(self, movie, *, dt: float | None = None, name: str = "movie") -> np.ndarray:
        """:meth:`TrainedModel.ep_rate_density` of the trained model, (H, W), k_B/s."""
        return self._trained().ep_rate_density(movie, dt=dt, name=name)

    def config_dict(self) -> dict:
        """Options, plus what was learnt about the data once fitted."""
        if self.model_ is not None:
            return self.model_.config_dict()
        return {"options": self.config.to_dict()}

    def save(self, path) -> Path:
        """:meth:`TrainedModel.save` of the trained model."""
        if self.model_ is None:
            raise InputError("the estimator is not trained; nothing to save")
        return self.model_.save(path)


def _all_window_ep(network, data: MovieSet, norm, device, ctx) -> list[np.ndarray]:
    """ΔS of every window of every movie; under torchrun each rank computes a share."""
    if not ctx.active:
        return [window_ep(network, data, m, np.arange(n), norm, device)
                for m, n in enumerate(data.n_windows)]
    eps = []
    for m, n in enumerate(data.n_windows):
        part, mine = np.zeros(n), ctx.part(n)
        part[mine] = window_ep(network, data, m, np.arange(n)[mine], norm, device)
        eps.append(ctx.sum_parts(part, device))
    return eps
