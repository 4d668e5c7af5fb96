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
    "MAX_MAP_BYTES", "MAPPING", "JobError", "TrainOutcome", "EstimateOutcome", "maps_fit",
    "check_model_fits", "train", "estimate", "export_trace", "export_maps",
]

#: Largest per-transition map stack (float32 bytes) a job hands to the widget; beyond it
#: only the time-averaged map (computed in a stream by the engine) is kept.
MAX_MAP_BYTES = 1 << 30
#: Nice value of a job's thread (Linux): the viewer stays smooth on a busy CPU.
WORKER_NICE = 5
#: What :func:`train` yields once training is over and the maps are being computed.
MAPPING = "computing maps"


class JobError(Exception):
    """Carries an unexpected exception out of a worker (see the module docstring)."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


@dataclass
class TrainOutcome:
    """What :func:`train` returns: the fit, the trained model and its outputs on the movie."""

    fit: object  # FitResult
    model: object  # TrainedModel
    ep: np.ndarray  # (T-1,) stochastic EP, k_B
    maps: np.ndarray | None  # (T-1, H, W), None when over MAX_MAP_BYTES
    density: np.ndarray  # (H, W), k_B/s per pixel
    window_chosen: bool = False  # k chosen from the data (frames_per_input "auto")


@dataclass
class EstimateOutcome:
    """What :func:`estimate` returns for one movie."""

    ep: np.ndarray
    ep_rate: float
    maps: np.ndarray | None
    density: np.ndarray
    frames_per_input: int | None = None  # the model's k


def maps_fit(movie_shape) -> bool:
    """Whether the (T-1, H, W) float32 maps of a movie fit in :data:`MAX_MAP_BYTES`."""
    t, h, w = movie_shape[-3:]
    return 4 * max(t - 1, 0) * h * w <= MAX_MAP_BYTES


def lower_thread_priority(nice: int = WORKER_NICE) -> None:
    """Make the calling (worker) thread yield the CPU to the viewer first (Linux only).

    On Linux a thread is a task with its own nice value, inherited by the threads it
    starts (torch's CPU pool): the GUI thread then wins whenever both want one core.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    except (AttributeError, OSError):
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


def _maps_and_density(model, movie, *, dt: float, name: str):
    maps = model.dissipation_map(movie, name=name) if maps_fit(np.shape(movie)) else None
    density = model.ep_rate_density(movie, dt=dt, name=name)
    return (None if maps is None else np.asarray(maps)), np.asarray(density)


def train(est, movie, *, dt: float, name: str):
    """Train ``est`` on one (T, H, W) movie, then compute its trace and maps.

    Yields each training ``Progress`` record, then :data:`MAPPING` once training is over;
    returns a :class:`TrainOutcome` (the model with the best weights).  ``est.request_stop()``
    from another thread ends training at its next step.
    """
    lower_thread_priority()
    try:
        chosen = str(est.config.frames_per_input).strip().lower() == "auto"
        fit = yield from est.fit_iter(movie, dt=dt, names=[name])
        yield MAPPING
        model = est.model_
        maps, density = _maps_and_density(model, movie, dt=dt, name=name)
        return TrainOutcome(fit=fit, model=model, ep=np.asarray(fit.stochastic_ep[0]),
                            maps=maps, density=density, window_chosen=chosen)
    except (InputError, JobError):
        raise
    except Exception as exc:
        raise JobError(exc) from exc


@_wrapped
def estimate(model, movie, *, dt: float, name: str) -> EstimateOutcome:
    """EP trace, rate and maps of one (T, H, W) movie with a trained model."""
    ep = np.asarray(model.stochastic_ep(movie, name=name))
    rate = float(model.ep_rate(movie, dt=dt, name=name))
    maps, density = _maps_and_density(model, movie, dt=dt, name=name)
    k = getattr(model, "frames_per_input", None)
    return EstimateOutcome(ep=ep, ep_rate=rate, maps=maps, density=density,
                           frames_per_input=None if k is None else int(k))


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
