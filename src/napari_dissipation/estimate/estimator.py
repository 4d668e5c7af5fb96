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
from . import distributed
from .config import EstimatorConfig
from .data import MovieSet, Normalisation
from .stats import bootstrap_rate_ci, per_transition, split_windows, widen_interval
from .train import CHECKPOINT_FORMAT, Progress, train, window_ep

__all__ = ["EPEstimator", "FitResult", "load_estimator", "MODEL_FORMAT"]

MODEL_FORMAT = "napari-dissipation-model/1"
#: Choices of :class:`EPEstimator`'s ``precision``.
PRECISIONS = ("auto", "float32", "bfloat16")


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
    precision : {"auto", "float32", "bfloat16"}
        Arithmetic of the training forward pass.  ``"auto"``: bfloat16 autocast on CUDA,
        float32 on the CPU; ``"bfloat16"`` has no effect on the CPU.  The NEEP objective,
        the evaluations, the refit and every output are computed in float32 or better.
    **options
        Any field of :class:`EstimatorConfig` (all keyword-only, all with defaults),
        e.g. ``seed=0, frames_per_input=2, max_seconds=600``.

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
    """

    def __init__(self, *, precision: str = "auto", **options):
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got "
                             f"{precision!r}")
        self.precision = precision
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

    def _mixed_precision(self, device) -> bool:
        return device.type == "cuda" and self.precision in ("auto", "bfloat16")

    def _fingerprint(self, data: MovieSet, dt: float, extra) -> dict:
        """What a checkpoint must match: options (not threads/device), dt, the movies."""
        options = {k: v for k, v in self.config.to_dict().items()
                   if k not in ("threads", "device")}
        facts = {"options": options, "precision": self.precision, "dt": dt,
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

        dt = _check_dt(dt)
        cfg = self.config
        self._stop.clear()
        t_start = time.perf_counter()
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        ctx, device = distributed.setup(self._device())
        data = MovieSet(movies, names=names, frames_per_input=cfg.frames_per_input,
                        stride=cfg.stride, bin=cfg.bin)
        data.check_finite()
        rng = np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        norm = data.normalisation(rng)
        split = split_windows(data.n_windows, cfg.frames_per_input,
                              validation_fraction=cfg.validation_fraction, rng=rng)
        model = _build_model(cfg, data.frame_shape)
        model = model.to(device)
        saver = state = None
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            facts = self._fingerprint(data, dt, fingerprint)
            if ctx.is_main:
                saver = _CheckpointWriter(checkpoint, facts)
            if resume:
                state = _load_checkpoint(checkpoint, facts) if ctx.is_main else None
                if ctx.active:
                    state = ctx.broadcast_object(state)
        elif resume:
            raise InputError("resume needs a checkpoint file")
        outcome = yield from train(model, data, split, norm, cfg, rate_scale=self._rate_scale(dt),
                                   device=device, stop=self._stop, rng=rng, ctx=ctx,
                                   checkpoint=saver, resume=state,
                                   mixed_precision=self._mixed_precision(device))
        self.model, self.norm, self.dt = model.eval(), norm, dt
        self.frame_shape, self.raw_frame_shape = data.frame_shape, data.raw_frame_shape

        if ctx.active:  # each rank computes a share of every movie's windows
            eps = []
            for m, n in enumerate(data.n_windows):
                part, mine = np.zeros(n), ctx.part(n)
                part[mine] = window_ep(model, data, m, np.arange(n)[mine], norm, device)
                eps.append(ctx.sum_parts(part, device))
        else:
            eps = [window_ep(model, data, m, np.arange(n), norm, device)
                   for m, n in enumerate(data.n_windows)]
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
        d = {"options": dict(self.config.to_dict(), precision=self.precision)}
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
        state = dict(blob["state_dict"])
        if "linear_mask" not in state and "g_linear.weight" in state:  # saved before local patterns
            state["linear_mask"] = torch.ones_like(state["g_linear.weight"])
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise InputError(f"{path}: weights do not match the stored configuration ({exc})") from None
    est.model = model.to(est._device()).eval()
    est.norm = Normalisation(**cfg["normalisation"])
    est.frame_shape = tuple(cfg["frame_shape"])
    est.raw_frame_shape = tuple(cfg["raw_frame_shape"])
    est.dt = cfg.get("dt")
    return est


class _CheckpointWriter:
    """Writes each checkpoint to ``path`` atomically (temporary file, then rename)."""

    def __init__(self, path: Path, fingerprint: dict):
        self.path = path
        self.fingerprint = json.dumps(fingerprint)

    def __call__(self, state: dict) -> None:
        import torch

        from ..io import atomic_output

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(self.path) as tmp:
            torch.save(dict(state, fingerprint=self.fingerprint), tmp)


def _load_checkpoint(path: Path, fingerprint: dict) -> dict:
    """A checkpoint written by :class:`_CheckpointWriter`, checked against ``fingerprint``."""
    import torch

    if not path.is_file():
        raise InputError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        meta = json.loads(state["meta"])
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("not a napari-dissipation checkpoint")
        saved = json.loads(state["fingerprint"])
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: unreadable checkpoint ({reason[:120]})") from None
    if saved != fingerprint:
        diff = _first_difference(saved, fingerprint)
        raise InputError(f"{path}: the checkpoint was made with other inputs or options "
                         f"({diff}); start a new run instead of resuming")
    return state


def _first_difference(old, new, where: str = "") -> str:
    """``key: old -> new`` for the first place two JSON-like values differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key),
                                         f"{where}.{key}" if where else str(key))
    text = f"{old!r} -> {new!r}"
    return f"{where}: {text[:160]}" if where else text[:160]


def _build_model(cfg: EstimatorConfig, frame_shape):
    from .model import EPNet

    return EPNet(frames_per_input=cfg.frames_per_input, frame_shape=frame_shape,
                 channels=cfg.channels, max_pools=cfg.max_pools, n_modes=cfg.n_modes,
                 hidden=cfg.hidden)


def _check_dt(dt) -> float:
    try:
        value = float(dt)
    except (TypeError, ValueError):
        raise InputError(f"dt must be a number of seconds per frame, got {dt!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"dt must be a positive number of seconds per frame, got {dt!r}")
    return value
