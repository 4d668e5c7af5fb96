"""``EPEstimator``: the options and the training; fitting returns a :class:`FitResult` and
leaves a :class:`~.trained.TrainedModel` (inference only) in ``est.model_``."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..options import validate
from . import distributed
from .config import EstimatorConfig
from .correction import prepare_movies
from .data import MovieSet
from .result import FitResult
from .state import read_checkpoint
from .stats import bootstrap_rate_ci, per_transition, split_units, widen_interval
from .train import Progress, train
from .trained import TrainedModel, build_network, check_dt, resolve_device
from .window_length import WindowScan, scan_window_lengths
from .windows import transition_ep, window_ep

__all__ = ["EPEstimator", "FitResult"]

#: Fewest windows each part of the split must hold: with fewer no rate, let alone an
#: interval, can be measured apart from the choices.
MIN_WINDOWS = {"train": 50, "validation": 10, "test": 10}
#: Share of a time budget (``max_seconds``) the window-length scan may use.
SCAN_BUDGET = 0.25
#: Training "still improving" when stopped: the kept weights are from one of this many last
#: evaluations.
STILL_IMPROVING_EVALS = 2


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
    def frames_per_input(self) -> int | str:
        """k as chosen by the last fit, or as configured ("auto") before fitting."""
        return self.config.frames_per_input if self.model_ is None else \
            self.model_.frames_per_input

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

    def _rate_scale(self, dt: float, k: int) -> float:
        return (k - 1) * self.config.stride * dt

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
        data = MovieSet(movies, names=names, frames_per_input=2, stride=cfg.stride,
                        bin=cfg.bin)
        data.check_finite()
        # Bleaching and drifts are an arrow of time that is not EP: check, correct, warn.
        movies, warnings = prepare_movies(data.movies, dt, data.names,
                                          correct=cfg.nonstationarity == "correct")
        data = MovieSet(movies, names=data.names, frames_per_input=2, stride=cfg.stride,
                        bin=cfg.bin)
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        norm = data.normalisation(rng)
        split = split_units(data.lengths, validation_fraction=cfg.validation_fraction,
                            test_fraction=cfg.test_fraction, rng=rng)
        _check_enough(split, 2 if cfg.frames_per_input == "auto" else cfg.frames_per_input,
                      data)
        scan = self._scan(data, split, norm, dt, device, ctx)
        k = scan.chosen if cfg.frames_per_input == "auto" else int(cfg.frames_per_input)
        cfg_k = dataclasses.replace(cfg, frames_per_input=k)
        data = MovieSet(data.movies, names=data.names, frames_per_input=k, stride=cfg.stride,
                        bin=cfg.bin)
        network = build_network(cfg_k, data.frame_shape).to(device)
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
        outcome = yield from train(network, data, split, norm, cfg_k,
                                   rate_scale=self._rate_scale(dt, k), device=device,
                                   stop=self._stop, rng=rng, ctx=ctx,
                                   checkpoint=checkpoint if ctx.is_main else None,
                                   fingerprint=facts, resume=state,
                                   mixed_precision=self._mixed_precision(device),
                                   preferred_smoothing=scan.smoothing if scan.curve else None,
                                   spent=time.perf_counter() - t_start)
        self.model_ = TrainedModel(network, norm=norm, frame_shape=data.frame_shape,
                                   raw_frame_shape=data.raw_frame_shape, dt=dt, config=cfg_k)
        eps = _all_window_ep(network, data, norm, device, ctx)
        test = split.windows("test", k)
        rate, ci, info = bootstrap_rate_ci([eps[m][s] for m, s in test],
                                           self._rate_scale(dt, k),
                                           rng=np.random.default_rng(cfg.seed + 1),
                                           window_seconds=cfg.stride * dt)
        # The bootstrap covers the sampling of the test windows; the read-out's training
        # noise is independent of it and is added to the interval.
        info["held_out_ci"] = list(ci)
        info["readout_sd"] = outcome.readout_sd / self._rate_scale(dt, k)
        ci = widen_interval(rate, ci, info["readout_sd"])
        self.result_ = FitResult(
            ep_rate=rate, ep_rate_ci=ci, dt=dt,
            n_transitions=int(np.sum(data.lengths - 1)),
            n_held_out=int(sum(len(s) for _, s in test)), held_out_by=split.by,
            held_out=[(int(m), int(s[0]), int(s[-1]) + k - 1) for m, s in test],
            stochastic_ep=_stochastic_ep(network, data, norm, device, ctx, eps),
            history=outcome.history, seconds=time.perf_counter() - t_start,
            iterations=outcome.iterations, best_iteration=outcome.best_iteration,
            stop_reason=outcome.stop_reason, ci_info=info, config=self.config_dict(),
            frames_per_input=k, rate_by_window=scan.curve,
            lower_bound_reasons=_lower_bound_reasons(scan, k, cfg, outcome),
            warnings=warnings,
        )
        return self.result_

    def _scan(self, data: MovieSet, split, norm, dt: float, device, ctx) -> WindowScan:
        """The rate for a rising window length (rank 0; the others get its outcome)."""
        cfg = self.config
        scan = None
        if ctx.is_main:
            budget = None if cfg.max_seconds is None else SCAN_BUDGET * cfg.max_seconds
            scan = scan_window_lengths(data, split, norm, window_seconds=cfg.stride * dt,
                                       device=device, seed=cfg.seed, n_patterns=cfg.n_patterns,
                                       max_seconds=budget, stop=self._stop,
                                       rng=np.random.default_rng([cfg.seed, 0xC0DE]))
        if ctx.active:
            scan = ctx.broadcast_object(scan)
        return scan

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


def _stochastic_ep(network, data: MovieSet, norm, device, ctx,
                   eps: list[np.ndarray]) -> list[np.ndarray]:
    """EP of every transition of every movie (:func:`~.stats.per_transition`); ``eps`` is
    the windows' ΔS, which is all it takes for two-frame windows."""
    if data.k == 2:
        return list(eps)
    return [per_transition(shares) for shares in _all_window_ep(network, data, norm, device,
                                                                 ctx, split=True)]


def _all_window_ep(network, data: MovieSet, norm, device, ctx, *,
                   split: bool = False) -> list[np.ndarray]:
    """ΔS of every window of every movie, (n,) each, or with ``split`` its shares of the
    window's transitions, (n, k − 1); under torchrun each rank computes a part."""
    of = transition_ep if split else window_ep
    if not ctx.active:
        return [of(network, data, m, np.arange(n), norm, device)
                for m, n in enumerate(data.n_windows)]
    eps = []
    for m, n in enumerate(data.n_windows):
        mine = ctx.part(n)
        part = np.zeros((n, data.k - 1) if split else n)
        part[mine] = of(network, data, m, np.arange(n)[mine], norm, device)
        eps.append(ctx.sum_parts(part, device))
    return eps


def _check_enough(split, k: int, data: MovieSet) -> None:
    """Refuse data too short to train, choose and measure on separate windows of k frames."""
    counts = {part: sum(len(s) for _, s in split.windows(part, k))
              for part in ("train", "validation", "test")}
    if all(counts[p] >= n for p, n in MIN_WINDOWS.items()):
        return
    have = ", ".join(f"{counts[p]} {p}" for p in MIN_WINDOWS)
    need = ", ".join(f"{n} {p}" for p, n in MIN_WINDOWS.items())
    frames = int(np.sum(data.lengths))
    raise InputError(f"{data.names[0] if len(data.names) == 1 else 'the movies'}: "
                     f"{frames} frames in all are too few to train, choose and measure on "
                     f"separate stretches of movie: windows of {k} frames give {have} "
                     f"(at least {need} are needed); a few hundred frames is a minimum")


def _higher_beyond(scan: WindowScan, used: list) -> bool:
    """Whether the window length that ended the scan (its fit did not generalise) read a
    higher validation rate than the chosen one."""
    chosen = next((e for e in used if e["k"] == scan.chosen), None)
    return chosen is not None and scan.curve[-1]["validation_rate"] > chosen["validation_rate"]


def _lower_bound_reasons(scan: WindowScan, k: int, cfg, outcome) -> list[str]:
    """Signs in this fit that the rate is below the true EP rate, in words."""
    reasons = []
    used = [e for e in scan.curve if e.get("generalises") is not False]
    longest = used[-1]["k"] if used else None
    if scan.curve and k < scan.chosen:
        reasons.append(f"windows of {scan.chosen} frames gave a higher rate than the "
                       f"{k} frames used")
    elif scan.still_rising:
        beyond = " (a longer one's fit did not generalise)" if len(used) < len(scan.curve) else ""
        reasons.append(f"the rate still rose with the window length at the longest window "
                       f"tried ({longest} frames){beyond}")
    elif len(used) < len(scan.curve) and _higher_beyond(scan, used):
        # Longer windows may carry more EP than the data can fit (an anharmonic chain: 2
        # frames -23% with the exact rate outside the interval; docs/benchmarks.md).
        reasons.append(f"windows of {scan.curve[-1]['k']} frames read a higher rate, but "
                       f"their fit did not generalise: longer windows may carry more EP "
                       f"than these data can fit")
    warm = outcome.history[0].get("warm_start", {}) if outcome.history else {}
    if warm.get("capped_at") and warm.get("capped_by") in ("data", "slots"):
        # The read-out wanted more patterns than the data afford (the filament network at
        # dt 0.01 s: 20 of at most 24 per tile kept, -17% against the same transitions
        # with neither rate inside the interval; docs/benchmarks.md).
        tiles = len(warm.get("tiles") or [])
        kept = warm["n_patterns"] // tiles if tiles else warm["n_patterns"]
        remedy = ("more frames would let it take more" if warm["capped_by"] == "data"
                  else "a larger n_patterns would let it take more")
        reasons.append(f"the starting fit's pattern count still improved at the most it "
                       f"may take ({kept} kept of at most {warm['capped_at']}"
                       f"{' per tile' if tiles else ''}), so the read-out likely resolves "
                       f"less of the motion than the movie holds, and {remedy}")
    if warm.get("cut_short"):
        reasons.append("the search for the starting fit was cut short (by Stop or the time "
                       "budget) before every candidate was tried")
    recent = outcome.iterations - STILL_IMPROVING_EVALS * cfg.eval_every
    if outcome.stop_reason in ("iterations", "seconds") and outcome.best_iteration > 0 \
            and outcome.best_iteration >= recent:
        reasons.append("training was stopped by its budget while the held-out objective "
                       "was still improving")
    return reasons
