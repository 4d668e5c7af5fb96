"""``EPEstimator``: fit on movies, then stochastic EP, rates and maps of any movie."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .config import EstimatorConfig
from .data import MovieSet, Normalisation
from .stats import bootstrap_rate_ci, per_transition, split_windows
from .train import Progress, train, window_ep

__all__ = ["EPEstimator", "FitResult", "load_estimator", "MODEL_FORMAT"]

MODEL_FORMAT = "napari-dissipation-model/1"


@dataclass
class FitResult:
    """Outcome of :meth:`EPEstimator.fit`.

    Attributes
    ----------
    ep_rate : float
        EP rate on held-out data, k_B per second.
    ep_rate_ci : (float, float)
        95% bootstrap interval of ``ep_rate`` over independent held-out units.
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
        """False when no trained network beat ΔS ≡ 0 on the held-out data.

        The rate is then exactly 0 with a zero-width interval, which means "nothing was
        learnt that generalises" (too little data, too much noise, too short a budget),
        not "certainly no entropy production".
        """
        return self.best_iteration > 0

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
        Any field of :class:`EstimatorConfig` (all keyword-only, all with defaults),
        e.g. ``seed=0, frames_per_input=2, max_seconds=600``.

    Examples
    --------
    >>> est = EPEstimator(seed=0, max_seconds=60)          # doctest: +SKIP
    >>> fit = est.fit(sim.movies, dt=sim.dt)                # doctest: +SKIP
    >>> fit.ep_rate, fit.ep_rate_ci                         # doctest: +SKIP
    """

    def __init__(self, **options):
        self.config = EstimatorConfig(**options)
        self.model = None
        self.norm: Normalisation | None = None
        self.frame_shape: tuple[int, int] | None = None
        self.raw_frame_shape: tuple[int, int] | None = None
        self.dt: float | None = None
        self.result_: FitResult | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ properties
    @property
    def frames_per_input(self) -> int:
        return self.config.frames_per_input

    @property
    def is_fitted(self) -> bool:
        return self.model is not None

    def _device(self):
        import torch

        want = self.config.device
        if want == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {want!r} requested but no CUDA GPU is available")
        return torch.device(want)

    def _rate_scale(self, dt: float) -> float:
        return (self.config.frames_per_input - 1) * self.config.stride * dt

    # ------------------------------------------------------------------ training
    def request_stop(self) -> None:
        """Ask a running fit to stop at its next step (thread-safe); best weights are kept."""
        self._stop.set()

    def fit_iter(self, movies, *, dt: float, names=None) -> Generator[Progress, None, FitResult]:
        """Train on ``movies``, yielding :class:`Progress` records; return a :class:`FitResult`.

        Parameters
        ----------
        movies : array-like (T, H, W), array (M, T, H, W) or list of (T, H, W) array-likes
            Movies of one system, same frame size; integer or float pixels.
        dt : float
            Seconds per frame.
        names : list of str, optional
            Names used in error messages (file names).
        """
        import torch

        dt = _check_dt(dt)
        cfg = self.config
        self._stop.clear()
        t_start = time.perf_counter()
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        device = self._device()
        data = MovieSet(movies, names=names, frames_per_input=cfg.frames_per_input,
                        stride=cfg.stride, bin=cfg.bin)
        data.check_finite()
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        norm = data.normalisation(rng)
        split = split_windows(data.n_windows, cfg.frames_per_input,
                              validation_fraction=cfg.validation_fraction, rng=rng)
        model = _build_model(cfg, data.frame_shape)
        model.init_from_frames(_sample_frames(data, split, norm, rng))
        model = model.to(device)
        outcome = yield from train(model, data, split, norm, cfg, rate_scale=self._rate_scale(dt),
                                   device=device, stop=self._stop, rng=rng)
        self.model, self.norm, self.dt = model.eval(), norm, dt
        self.frame_shape, self.raw_frame_shape = data.frame_shape, data.raw_frame_shape

        eps = [window_ep(model, data, m, np.arange(n), norm, device)
               for m, n in enumerate(data.n_windows)]
        held = [eps[m][s] for m, s in split.held_out]
        rate, ci, info = bootstrap_rate_ci(held, self._rate_scale(dt),
                                           rng=np.random.default_rng(cfg.seed + 1))
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
            progress: Callable[[Progress], object] | None = None) -> FitResult:
        """Train to the end of the budget (or early stopping) and return the result.

        ``progress``, if given, is called with every :class:`Progress` record.
        """
        gen = self.fit_iter(movies, dt=dt, names=names)
        while True:
            try:
                record = next(gen)
            except StopIteration as stop:
                return stop.value
            if progress is not None:
                progress(record)

    # ------------------------------------------------------------------ inference
    def _movie_set(self, movie, name="movie") -> MovieSet:
        if not self.is_fitted:
            raise InputError("the estimator is not trained: call fit() or load_estimator() first")
        data = MovieSet([movie], names=[name], frames_per_input=self.config.frames_per_input,
                        stride=self.config.stride, bin=self.config.bin)
        if data.raw_frame_shape != self.raw_frame_shape:
            raise InputError(
                f"{name}: frame size {data.raw_frame_shape} differs from the "
                f"{self.raw_frame_shape} the estimator was trained on"
            )
        return data

    def window_ep(self, movie, *, name: str = "movie") -> np.ndarray:
        """ΔS_θ of every window of k frames of one (T, H, W) movie, (T − k + 1,), k_B."""
        data = self._movie_set(movie, name)
        device = next(self.model.parameters()).device
        return window_ep(self.model, data, 0, np.arange(data.n_windows[0]), self.norm, device)

    def stochastic_ep(self, movie, *, name: str = "movie") -> np.ndarray:
        """Stochastic EP of each transition t -> t+1 of a (T, H, W) movie, shape (T − 1,), k_B.

        With k > 2 frames per input, each transition gets the mean share ``ΔS / (k − 1)``
        of the windows that contain it.
        """
        return per_transition(self.window_ep(movie, name=name), self.config.frames_per_input)

    def ep_rate(self, movie, *, dt: float | None = None, name: str = "movie") -> float:
        """Mean EP rate of one movie, k_B per second (no interval; see ``fit``)."""
        dt = _check_dt(self.dt if dt is None else dt)
        return float(np.mean(self.window_ep(movie, name=name)) / self._rate_scale(dt))

    def dissipation_map(self, movie, *, name: str = "movie") -> np.ndarray:
        """Per-transition dissipation maps, shape (T − 1, H, W), k_B per pixel.

        Each map sums over pixels to :meth:`stochastic_ep` (float tolerance).
        """
        from ..maps import dissipation_map

        return dissipation_map(self, movie, name=name)

    def ep_rate_density(self, movie, *, dt: float | None = None, name: str = "movie") -> np.ndarray:
        """Time-averaged map as an EP-rate density, shape (H, W), k_B per second per pixel."""
        from ..maps import ep_rate_density

        return ep_rate_density(self, movie, dt=dt, name=name)

    # ------------------------------------------------------------------ persistence
    def config_dict(self) -> dict:
        """Options plus what was learnt about the data (frame size, normalisation, dt)."""
        d = {"options": self.config.to_dict()}
        if self.is_fitted:
            d.update(frame_shape=list(self.frame_shape), raw_frame_shape=list(self.raw_frame_shape),
                     normalisation={"offset": self.norm.offset, "scale": self.norm.scale},
                     dt=self.dt)
        return d

    def save(self, path) -> Path:
        """Save weights and config to one file, loadable without executing pickled code."""
        import torch

        from ..io import atomic_output

        if not self.is_fitted:
            raise InputError("the estimator is not trained; nothing to save")
        path = Path(path)
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        with atomic_output(path) as tmp:
            torch.save({"format": MODEL_FORMAT, "config": json.dumps(self.config_dict()),
                        "state_dict": state}, tmp)
        return path


def load_estimator(path, *, device: str = "auto") -> EPEstimator:
    """Load an estimator saved with :meth:`EPEstimator.save`.

    The file is read with ``torch.load(weights_only=True)``: tensors and plain
    containers only, no pickled code is executed.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
            raise ValueError("not a napari-dissipation model")
        cfg = json.loads(blob["config"])
    except Exception as exc:
        # torch's own message suggests weights_only=False, exactly what must not be done.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a napari-dissipation model file ({reason[:120]})") from None
    options = dict(cfg["options"], device=device)
    est = EPEstimator(**options)
    model = _build_model(est.config, tuple(cfg["frame_shape"]))
    try:
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"{path}: weights do not match the stored configuration ({exc})") from None
    est.model = model.to(est._device()).eval()
    est.norm = Normalisation(**cfg["normalisation"])
    est.frame_shape = tuple(cfg["frame_shape"])
    est.raw_frame_shape = tuple(cfg["raw_frame_shape"])
    est.dt = cfg.get("dt")
    return est


def _build_model(cfg: EstimatorConfig, frame_shape):
    from .model import EPNet

    return EPNet(frames_per_input=cfg.frames_per_input, frame_shape=frame_shape,
                 channels=cfg.channels, max_pools=cfg.max_pools, n_modes=cfg.n_modes,
                 hidden=cfg.hidden)


def _sample_frames(data: MovieSet, split, norm: Normalisation, rng: np.random.Generator,
                   n: int = 2000) -> np.ndarray:
    """Up to ``n`` normalised frames from the training windows, (n, H, W)."""
    per = max(1, n // len(split.train))
    frames = []
    for m, starts in split.train:
        pick = np.unique(rng.choice(starts, size=min(per, len(starts)), replace=False))
        frames.append(data.frames(m, pick))
    return (np.concatenate(frames) - norm.offset) / norm.scale


def _check_dt(dt) -> float:
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise InputError(f"dt must be a number of seconds per frame, got {dt!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"dt must be a positive number of seconds per frame, got {dt!r}")
    return value
