"""Bodies of the widget's background jobs: train, estimate, export.

Plain functions and generators on arrays, models and paths; none touches a widget or a
layer, so napari's ``create_worker`` runs them in a thread and the widget moves their
results to the screen in the worker's ``yielded`` / ``returned`` handlers on the GUI
thread.  They import neither Qt nor napari.

superqt's ``GeneratorWorker`` takes a ``RuntimeError`` raised by a generator for a deleted
Qt object: it only warns, and emits neither ``errored`` nor ``finished``.  torch reports
most failures as ``RuntimeError``, so every job wraps an unexpected exception in
:class:`JobError` (the original, with its traceback, in ``JobError.original``).
:class:`~napari_dissipation.errors.InputError` passes unwrapped: it is the user's to fix.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = [
    "MAX_MAP_BYTES", "JobError", "TrainOutcome", "EstimateOutcome", "MapsOutcome",
    "maps_fit", "check_model_fits", "preload", "train", "estimate", "maps", "export_trace",
    "export_maps", "export_record",
]

#: Largest per-transition map stack (float32 bytes) a job hands to the widget; beyond it
#: only the time-averaged map (computed in a stream by the engine) is kept.
MAX_MAP_BYTES = 1 << 30
#: Nice value of a job's thread (Linux): the viewer stays smooth on a busy CPU.
WORKER_NICE = 5


class JobError(Exception):
    """Carries an unexpected exception out of a worker (see the module docstring)."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


@dataclass
class TrainOutcome:
    """What :func:`train` returns: the fit, the trained model and the movie's EP trace.

    The maps are left to :func:`maps`, run after the rate is on screen.
    """

    fit: object  # FitResult
    model: object  # TrainedModel
    ep: np.ndarray  # (T-1,) stochastic EP, k_B
    window_chosen: bool = False  # k chosen from the data (frames_per_input "auto")


@dataclass
class EstimateOutcome:
    """What :func:`estimate` returns for one movie: trace, rate and its interval."""

    ep: np.ndarray  # (T-1,) stochastic EP, k_B
    ep_rate: float  # k_B/s, over all windows of the movie
    ep_rate_ci: tuple | None  # 95% interval from time blocks of the movie, k_B/s
    frames_per_input: int | None = None  # the model's k


@dataclass
class MapsOutcome:
    """What :func:`maps` returns.

    Attributes
    ----------
    maps : ndarray, shape (T-1, H, W), or None
        Per-transition maps, k_B per pixel; None over :data:`MAX_MAP_BYTES`.
    density : ndarray, shape (H, W)
        Time-averaged map, k_B/s per pixel.
    limits : (float, float)
        Symmetric contrast limits of the whole stack (of ``density`` without maps).
    frame_limits : ndarray, shape (T-1,), or None
        Symmetric limit of each transition's map alone (contrast "this frame").
    """

    maps: np.ndarray | None
    density: np.ndarray
    limits: tuple
    frame_limits: np.ndarray | None


def maps_fit(movie_shape) -> bool:
    """Whether the (T-1, H, W) float32 maps of a movie fit in :data:`MAX_MAP_BYTES`."""
    t, h, w = movie_shape[-3:]
    return 4 * max(t - 1, 0) * h * w <= MAX_MAP_BYTES


def lower_thread_priority(nice: int | None = None) -> None:
    """Make the calling (worker) thread yield the CPU to the viewer first (Linux only).

    On Linux a thread is a task with its own nice value, inherited by the threads it
    starts (torch's CPU pool): the GUI thread then wins whenever both want one core.
    """
    if not sys.platform.startswith("linux"):
        return
    nice = WORKER_NICE if nice is None else nice
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    except (AttributeError, OSError):
        pass


def preload() -> None:
    """Import what a first job would, at low priority (run in a thread as the widget opens).

    The first optimiser PyTorch builds imports its compiler machinery (``torch._dynamo``,
    about a second) and the first interval ``scipy.stats``; inside a training run those
    imports, much of them holding the GIL, paused the viewer for up to half a second.
    Imports are safe from two threads: the job waits for a module being imported.
    """
    lower_thread_priority()
    try:
        import scipy.ndimage  # noqa: F401 (the stationarity check's)
        import scipy.stats  # noqa: F401 (the intervals' Student t, half a second)
        import torch._dynamo  # noqa: F401 (what torch.optim imports on first use)

        from ..estimate import EPEstimator  # noqa: F401
    except Exception:  # noqa: BLE001 (a job that needs them reports the problem itself)
        pass


def _wrapped(function):
    """Run ``function`` at low priority; unexpected exceptions become :class:`JobError`."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        lower_thread_priority()
        try:
            return function(*args, **kwargs)
        except (InputError, JobError):
            raise
        except Exception as exc:
            raise JobError(exc) from exc

    return run


def check_model_fits(model, movie, *, dt: float, name: str) -> str | None:
    """Refuse a movie the model cannot read; return a warning for a different dt.

    Raises
    ------
    InputError
        When the movie's frames differ in size from the model's (or the model refuses it).

    Returns
    -------
    str or None
        A warning when ``dt`` differs from the training movies' dt, else None.
    """
    frame = tuple(np.shape(movie)[-2:])
    trained = tuple(getattr(model, "raw_frame_shape", None) or model.frame_shape)
    if frame != trained:
        raise InputError(f"its frames are {frame[0]} x {frame[1]} pixels, the estimator was "
                         f"trained on {trained[0]} x {trained[1]}")
    model.check_movie(movie, name=name)
    if model.dt is not None and not np.isclose(float(model.dt), dt, rtol=1e-3):
        return (f"'{name}' has dt = {dt:g} s but the estimator was trained at "
                f"dt = {float(model.dt):g} s; the EP of a transition depends on the frame "
                "interval, so these numbers may be off.")
    return None


def train(est, movie, *, dt: float, name: str):
    """Train ``est`` on one (T, H, W) movie and give its EP trace (no maps: see :func:`maps`).

    Yields each training ``Progress`` record; returns a :class:`TrainOutcome` (the model
    with the best weights).  ``est.request_stop()`` from another thread ends training at
    its next step.
    """
    lower_thread_priority()
    try:
        chosen = str(est.config.frames_per_input).strip().lower() == "auto"
        fit = yield from est.fit_iter(movie, dt=dt, names=[name])
        return TrainOutcome(fit=fit, model=est.model_, ep=np.asarray(fit.stochastic_ep[0]),
                            window_chosen=chosen)
    except (InputError, JobError):
        raise
    except Exception as exc:
        raise JobError(exc) from exc


@_wrapped
def estimate(model, movie, *, dt: float, name: str) -> EstimateOutcome:
    """EP trace, rate and its interval (time blocks) of one (T, H, W) movie, no maps."""
    from ..estimate.stats import per_transition

    # One pass of the network (and of the movie's correction) serves the trace and the rate:
    # each window's shares of its transitions add up to its ΔS.
    k = int(model.frames_per_input)
    shares = np.asarray(model.transition_ep(movie, name=name))
    rate, ci = model.rate_ci_of_windows(shares.sum(axis=1), dt=dt)
    return EstimateOutcome(ep=per_transition(shares), ep_rate=float(rate),
                           ep_rate_ci=tuple(float(c) for c in ci), frames_per_input=k)


def maps(model, movie, *, dt: float, name: str):
    """Per-transition maps and the time-averaged map of one movie, in one pass.

    A generator: it yields the fraction done after each batch of windows (the worker can
    be quit there, and the viewer gets the GIL back), and returns a :class:`MapsOutcome`.
    The contrast limits are computed here too, off the GUI thread.
    """
    from ..estimate.stats import TransitionMean
    from .layers import symmetric_limits

    lower_thread_priority()
    try:
        spans = int(model.frames_per_input) - 1
        n_windows = max(int(np.shape(movie)[0]) - spans, 1)
        keep = maps_fit(np.shape(movie))
        # The per-transition stack needs each window's map split over its transitions
        # (k − 1 maps a window): summed into the stack as they come, never all kept.
        stack = TransitionMean(n_windows + spans - 1)
        total, n = None, 0
        for start, chunk in model.iter_window_maps(movie, name=name, transitions=keep):
            s = chunk.sum(axis=(0, 1) if keep else 0, dtype=np.float64)
            total = s if total is None else total + s
            n += len(chunk)
            if keep:
                stack.add(start, np.asarray(chunk, dtype=np.float32))
            yield min((start + len(chunk)) / n_windows, 1.0)
        density = (total / n / model.rate_scale(dt)).astype(np.float32)
        if not keep:
            return MapsOutcome(None, density, symmetric_limits(density), None)
        stack = stack.result()
        frame_limits = _frame_limits(stack)
        return MapsOutcome(stack, density, symmetric_limits(stack), frame_limits)
    except (InputError, JobError):
        raise
    except Exception as exc:
        raise JobError(exc) from exc


def _frame_limits(stack: np.ndarray) -> np.ndarray:
    """99th percentile of |map| of each transition (its max, or 1, where that is 0)."""
    a = np.abs(stack.reshape(len(stack), -1))
    c = np.percentile(a, 99.0, axis=1)
    c = np.where(c > 0, c, a.max(axis=1))
    return np.where(c > 0, c, 1.0).astype(np.float64)


@_wrapped
def export_trace(result, path) -> Path:
    """Write a result's EP trace (columns movie, frame, ep) with the engine's CSV writer."""
    from ..io import write_stochastic_ep_csv

    return Path(write_stochastic_ep_csv(path, [result.ep]))


@_wrapped
def export_maps(result, path) -> Path:
    """Write a result's per-transition maps (T-1, H, W) as a float32 TIFF (engine writer)."""
    from ..io import write_maps_tiff

    if result.maps is None:
        raise InputError("per-transition maps were not kept for this movie (too large); "
                         "use the command line: napari-dissipation map")
    meta = {"source_layer": result.layer_name, "units": "k_B per transition per pixel",
            "alignment": "index t holds transition t -> t+1", "ep_rate": result.ep_rate,
            "ep_rate_ci": None if result.ep_rate_ci is None else list(result.ep_rate_ci)}
    return Path(write_maps_tiff(path, result.maps, dt=result.dt, metadata=meta))


@_wrapped
def export_record(result, path) -> Path:
    """Write a result's reproducibility record (``result.record``: the arguments of
    :func:`napari_dissipation.record.run_record`) as JSON; input files are hashed here,
    off the GUI thread, unless the reader already put their hash in the layer."""
    from ..record import run_record, write_record

    if not result.record:
        raise InputError("this result has no run record (it was not made by Train or "
                         "Estimate in this widget)")
    return Path(write_record(path, run_record(**result.record)))
