"""The widget's state, free of Qt and napari: what runs, the current model, the last result.

A :class:`Session` is a small state machine.  Its state is one of :class:`State`; every
job (training, estimation, export) enters it through :meth:`Session.start`, which refuses
what the state does not allow (a second Train while one runs, Estimate without a model,
...), and leaves it through :meth:`Session.succeed`, :meth:`Session.fail` or
:meth:`Session.end`.  The widget listens to the session's events (psygnal signals) to
enable buttons and show results; the tests drive it without a display::

    IDLE --start("train")--> TRAINING --request_stop()--> STOPPING
    IDLE --start("estimate")--> ESTIMATING
    IDLE --start("maps")--> MAPPING --request_stop()--> STOPPING   (after the rate)
    IDLE --start("export")--> EXPORTING
    any busy state --succeed() / fail() / end()--> IDLE

Events are emitted on the thread that calls the method: the widget calls them only on the
GUI thread (from its worker's signals).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from psygnal import Signal

from ..errors import InputError
from .layers import MovieSelection

__all__ = ["State", "Result", "Session", "Refused", "JOBS", "STOP_REASONS", "describe_fit",
           "describe_window", "describe_lower_bound", "describe_measure", "fit_fields",
           "run_record_arguments"]


class State(StrEnum):
    """What a session is doing."""

    IDLE = "idle"
    TRAINING = "training"
    STOPPING = "stopping"  # Stop asked; training (or the maps) ends at its next step
    ESTIMATING = "estimating"  # EP trace, rate and interval with a model, no training
    MAPPING = "mapping"  # the maps of the current result, after its rate is shown
    EXPORTING = "exporting"  # writing the trace or the maps to a file

    @property
    def busy(self) -> bool:
        return self is not State.IDLE


#: The jobs a session runs: action -> (label in messages, state it enters).
JOBS = {
    "train": ("Training", State.TRAINING),
    "estimate": ("Estimation", State.ESTIMATING),
    "maps": ("Computing maps", State.MAPPING),
    "export": ("Export", State.EXPORTING),
}

#: Allowed state changes (anything else is a programming error).
TRANSITIONS = {
    State.IDLE: {State.TRAINING, State.ESTIMATING, State.MAPPING, State.EXPORTING},
    State.TRAINING: {State.STOPPING, State.IDLE},
    State.MAPPING: {State.STOPPING, State.IDLE},
    State.STOPPING: {State.IDLE},
    State.ESTIMATING: {State.IDLE},
    State.EXPORTING: {State.IDLE},
}

#: Why training ended, in words (FitResult.stop_reason -> text).
STOP_REASONS = {
    "iterations": "iteration budget reached",
    "seconds": "time budget reached",
    "early stopping": "early stopping: validation stopped improving",
    "warm start unbeaten": "the network did not beat the warm start's fit",
    "stopped": "stopped by you",
}


class Refused(InputError):
    """An action that the session's state (or what it holds) does not allow now."""


@dataclass
class Result:
    """What one training or estimation run produced for one movie layer.

    Attributes
    ----------
    layer_name : str
        Name of the movie layer when the run started.
    selection : MovieSelection
        How the (T, H, W) movie was cut out of the layer.
    scale, translate : tuple of float
        The layer's scale and translate (one per layer axis).
    n_frames : int
        Frames of the movie (T).
    dt : float
        Seconds per frame.
    ep : ndarray, shape (T-1,)
        Stochastic EP of each transition, k_B.
    maps : ndarray, shape (T-1, H, W), or None
        Per-transition maps, k_B per pixel; None before they are computed (they come
        after the rate) or when too large to hold in memory.
    density : ndarray, shape (H, W), or None
        Time-averaged map, k_B/s per pixel; None before the maps are computed.
    ep_rate : float
        EP rate, k_B/s.
    ep_rate_ci : (float, float) or None
        95% interval: on the held-out test units of a training run, on time blocks of
        the whole movie for an estimation.
    how : str
        ``"trained"`` or ``"estimated"``.
    summary : dict, optional
        ``FitResult.summary()`` of a training run.
    layer : object, optional
        The movie layer itself (followed even when renamed).
    frames_per_input : int or None
        k, frames per input window of the model that made the result.
    window_chosen : bool
        Whether k was chosen from the data (``frames_per_input="auto"``) rather than set.
    rate_by_window : list of dict
        ``FitResult.rate_by_window`` of a training run: ``k``, ``rate``, ``ci`` (k_B/s,
        on the test units), ...; empty for an estimation.
    lower_bound_reasons : list of str
        ``FitResult.lower_bound_reasons``: why the rate is likely below the true rate.
    warnings : list of str
        Plain sentences to show with the result (``FitResult.warnings``: stationarity
        checks; an estimation on the movie the estimator was trained on).
    units : tuple of str or None
        The movie layer's units (one per axis), given to the map layers.
    limits : (float, float) or None
        Contrast limits of the whole map stack (set with the maps).
    frame_limits : ndarray, shape (T-1,), or None
        Symmetric contrast limit of each transition's map alone.
    record : dict or None
        Keyword arguments of ``napari_dissipation.record.run_record`` describing what
        produced the result (options, input file, dt and its source, checks, seeds).
    """

    layer_name: str
    selection: MovieSelection
    scale: tuple
    translate: tuple
    n_frames: int
    dt: float
    ep: np.ndarray
    maps: np.ndarray | None
    density: np.ndarray | None
    ep_rate: float
    ep_rate_ci: tuple | None
    how: str
    summary: dict | None = None
    layer: object = None
    frames_per_input: int | None = None
    window_chosen: bool = False
    rate_by_window: list = field(default_factory=list)
    lower_bound_reasons: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    units: tuple | None = None
    limits: tuple | None = None
    frame_limits: np.ndarray | None = None
    record: dict | None = None

    @property
    def has_maps(self) -> bool:
        return self.maps is not None

    @property
    def has_density(self) -> bool:
        """Whether the maps were computed (the time-averaged map at least)."""
        return self.density is not None

    def set_maps(self, outcome) -> None:
        """Take the maps of a ``jobs.MapsOutcome``."""
        self.maps, self.density = outcome.maps, outcome.density
        self.limits, self.frame_limits = tuple(outcome.limits), outcome.frame_limits

    @property
    def lower_bound(self) -> bool:
        """Whether the data show that the rate is likely below the true EP rate."""
        return bool(self.lower_bound_reasons)

    @classmethod
    def of_layer(cls, layer, selection: MovieSelection, dt: float, *, ep,
                 ep_rate: float, ep_rate_ci=None, how: str, summary=None,
                 **fit) -> Result:
        """The result of a run on the movie ``selection`` cut out of image ``layer``
        (anything with ``name``, ``scale``, ``translate`` and ``data``), without maps;
        ``fit`` are the other fields (``frames_per_input``, ``rate_by_window``, ...)."""
        units = getattr(layer, "units", None)
        return cls(layer_name=layer.name, layer=layer, selection=selection,
                   scale=tuple(layer.scale), translate=tuple(layer.translate),
                   n_frames=int(layer.data.shape[selection.time_axis]), dt=dt,
                   ep=np.asarray(ep), maps=None, density=None,
                   ep_rate=float(ep_rate), ep_rate_ci=ep_rate_ci, how=how, summary=summary,
                   units=None if units is None else tuple(str(u) for u in units), **fit)


def fit_fields(fit, *, window_chosen: bool) -> dict:
    """The :class:`Result` fields that a training run's ``FitResult`` gives.

    ``window_chosen`` says whether k was chosen from the data (the estimator's
    ``frames_per_input`` was ``"auto"``).
    """
    return {
        "ep_rate": float(fit.ep_rate),
        "ep_rate_ci": tuple(float(c) for c in fit.ep_rate_ci),
        "summary": fit.summary(),
        "frames_per_input": int(fit.frames_per_input),
        "window_chosen": bool(window_chosen),
        "rate_by_window": [dict(entry) for entry in getattr(fit, "rate_by_window", ())],
        "lower_bound_reasons": [str(r) for r in getattr(fit, "lower_bound_reasons", ())],
        "warnings": [str(w) for w in getattr(fit, "warnings", ())],
    }


def describe_measure(result: Result) -> str:
    """Which transitions the rate was measured on, in words ('' when unknown)."""
    n = len(result.ep)
    if result.how == "trained":
        s = result.summary or {}
        held, by = s.get("held_out") or [], s.get("held_out_by", "units")
        n_test = sum(max(int(u[2]) - int(u[1]), 0) for u in held if len(u) == 3)
        if not held:
            return ""
        if len(held) == 1:  # "1 held-out time block", "1 held-out movie"
            by = by.removesuffix("s")
        return (f"measured on {len(held)} held-out {by} ({n_test:,} of {n:,} transitions) "
                "that took no part in training or any choice")
    return (f"measured on all {n:,} transitions of this movie; interval from "
            "time blocks of it")


def describe_window(result: Result) -> str:
    """``"k = 8 frames per input, chosen from the data"`` ('' when k is unknown)."""
    k = result.frames_per_input
    if k is None:
        return ""
    if result.how != "trained":
        how = ", as the estimator was trained"
    elif not result.window_chosen:
        how = ", as set"
    elif result.rate_by_window:
        how = ", chosen from the data"
    else:  # the scan found nothing significant at any window length
        how = "; these data could not compare window lengths"
    return f"k = {k} frames per input{how}"


def describe_lower_bound(result: Result) -> str:
    """Why the rate is a lower bound, in plain words ('' when the data show no sign)."""
    reasons = [r.strip().rstrip(".") for r in result.lower_bound_reasons if r.strip()]
    if not reasons:
        return ""
    why = "; ".join(reasons)
    return (f"Lower bound: {why[:1].lower()}{why[1:]}. The movie hides part of the motion "
            "(noise, blur, steps faster than a frame), so the true rate is likely higher.")


def describe_fit(fit) -> str:
    """One status line on how training ended (``fit`` is a ``FitResult``)."""
    reason = STOP_REASONS.get(fit.stop_reason, fit.stop_reason)
    text = (f"Trained in {fit.seconds:.0f} s, {fit.iterations} iterations ({reason}); "
            "the rate is measured on held-out data.")
    if not fit.learnt:
        text += (" Nothing fitted beat zero on held-out data: 0 means nothing was learnt "
                 "(more frames may help), not that there is no entropy production.")
    return text


def run_record_arguments(result: Result, *, options: dict, dt_source: str) -> dict:
    """Keyword arguments of ``napari_dissipation.record.run_record`` for ``result``.

    The input file and its hash come from the layer's metadata (written by the plugin's
    reader: ``path``, ``sha256``); a layer made otherwise has no file to name.
    ``dt_source`` is the widget's words ("from file metadata (...)", "set by you").
    """
    meta = getattr(result.layer, "metadata", None) or {}
    inputs = []
    if meta.get("path"):
        entry = {"path": str(meta["path"])}
        if meta.get("sha256"):
            entry["sha256"] = str(meta["sha256"])
        inputs.append(entry)
    source = dt_source.removeprefix("from ").strip()
    source = {"set by you": "user", "": "unknown"}.get(source, source)
    sel = result.selection
    return {
        "options": dict(options), "inputs": inputs, "dt": result.dt, "dt_source": source,
        "checks": [str(w) for w in result.warnings], "seeds": options.get("seed"),
        "selection": {"layer": result.layer_name, "time_axis": sel.time_axis,
                      "fixed": {str(a): int(i) for a, i in sel.fixed.items()},
                      "roi": None if sel.roi is None else list(sel.roi),
                      "run": result.how},
        "result": {"ep_rate": result.ep_rate,
                   "ep_rate_ci": None if result.ep_rate_ci is None else list(result.ep_rate_ci),
                   "measured_on": describe_measure(result),
                   "lower_bound_reasons": list(result.lower_bound_reasons)},
    }


class Session:
    """State of one dissipation widget (see the module docstring for the state diagram).

    Events
    ------
    state_changed(new: State, old: State)
    model_changed(model)
        A new current model (trained or loaded); ``None`` never.
    result_changed(result: Result)
        A new result (rate, interval, trace); its maps come later.
    maps_changed(result: Result)
        The current result's maps were computed.
    progress(record)
        A training progress record (``Progress``) while training.
    failed(job: str, error: BaseException)
        A job ended with an error (``job`` is its label, e.g. "Training").
    finished(job: str, succeeded: bool)
        A job ended, after ``failed`` or after the new model and result are set.
    """

    state_changed = Signal(object, object)
    model_changed = Signal(object)
    result_changed = Signal(object)
    maps_changed = Signal(object)
    progress = Signal(object)
    failed = Signal(str, object)
    finished = Signal(str, bool)

    def __init__(self):
        self._state = State.IDLE
        self._job: str | None = None
        self._stopper = None
        self._stop_requested = False
        self.model = None
        self.result: Result | None = None
        self.last_progress = None

    # ------------------------------------------------------------------ what is
    @property
    def state(self) -> State:
        return self._state

    @property
    def busy(self) -> bool:
        """True while a job runs (any state but IDLE)."""
        return self._state.busy

    @property
    def job(self) -> str | None:
        """Label of the running job ("Training", "Estimation", "Export") or None."""
        return None if self._job is None else JOBS[self._job][0]

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    @property
    def has_model(self) -> bool:
        return self.model is not None and getattr(self.model, "is_fitted", True)

    def why_not(self, action: str) -> str | None:
        """Why ``action`` is not allowed now, or None when it is.

        Actions: ``train``, ``stop``, ``estimate``, ``maps`` (compute the current
        result's maps), ``export``, ``export_maps``, ``load``, ``save``, ``edit`` (change
        the movie or the options).
        """
        if action == "stop":
            return (None if self._state in (State.TRAINING, State.MAPPING)
                    else "no training to stop")
        if action not in ("train", "estimate", "maps", "export", "export_maps", "load",
                          "save", "edit"):
            raise ValueError(f"unknown action {action!r}")
        if self.busy:
            return f"{self.job or 'a job'} is running"
        if action in ("estimate", "save") and not self.has_model:
            return "no estimator yet: train one or load a saved one"
        if action in ("maps", "export", "export_maps") and self.result is None:
            return "no result yet: train or estimate first"
        if action == "maps":
            if not self.has_model:
                return "no estimator to compute the maps with"
            return "the maps are computed" if self.result.has_density else None
        if action == "export_maps" and not self.result.has_density:
            return "the maps are not computed yet: press Compute maps"
        if action == "export_maps" and not self.result.has_maps:
            return ("per-transition maps were not kept for this movie (too large); use the "
                    "command line: napari-dissipation map")
        return None

    def can(self, action: str) -> bool:
        """Whether ``action`` is allowed now (see :meth:`why_not`)."""
        return self.why_not(action) is None

    # ------------------------------------------------------------------ jobs
    def start(self, action: str, *, stopper=None) -> None:
        """Enter the state of job ``action`` ("train", "estimate" or "export").

        Parameters
        ----------
        stopper : object with ``request_stop()``, optional
            What :meth:`request_stop` asks to stop (the estimator being trained).

        Raises
        ------
        Refused
            When the state or what the session holds does not allow the job.
        """
        why = self.why_not(action)
        if why is not None:
            raise Refused(why)
        self._job = action
        self._stopper = stopper
        self._stop_requested = False
        self.last_progress = None
        self._set_state(JOBS[action][1])

    def request_stop(self) -> bool:
        """Ask the running training (or map computation) to end at its next step; False
        when none runs."""
        if self._state not in (State.TRAINING, State.MAPPING):
            return False
        self._stop_requested = True
        if self._stopper is not None:
            self._stopper.request_stop()
        self._set_state(State.STOPPING)
        return True

    def report(self, record) -> None:
        """Pass on a training progress record (event ``progress``)."""
        if self._state in (State.TRAINING, State.STOPPING):
            self.last_progress = record
            self.progress.emit(record)

    def succeed(self, *, model=None, result: Result | None = None, maps=None) -> None:
        """End the running job; ``model`` and ``result`` (if given) become current;
        ``maps`` (a ``jobs.MapsOutcome``) go into the current result.

        The state is IDLE before the events ``model_changed``, ``result_changed``,
        ``maps_changed`` and ``finished`` are emitted, so a failing listener cannot leave
        the session busy.
        """
        job, was_busy = self.job, self.busy
        if model is not None:
            self.model = model
        if result is not None:
            self.result = result
        if maps is not None and self.result is not None:
            self.result.set_maps(maps)
        if was_busy:
            self._to_idle()
        if model is not None:
            self.model_changed.emit(model)
        if result is not None:
            self.result_changed.emit(result)
        if maps is not None and self.result is not None:
            self.maps_changed.emit(self.result)
        if was_busy:
            self.finished.emit(job, True)

    def fail(self, error: BaseException) -> None:
        """End the running job with ``error`` (events ``failed``, then ``finished``)."""
        if not self.busy:
            return
        job = self.job
        self._to_idle()
        self.failed.emit(job, error)
        self.finished.emit(job, False)

    def end(self) -> None:
        """The job's thread ended: back to IDLE if neither succeed nor fail did it."""
        if self.busy:
            job = self.job
            self._to_idle()
            self.finished.emit(job, False)

    # ------------------------------------------------------------------ idle changes
    def set_model(self, model) -> None:
        """Make ``model`` current (e.g. loaded from a file)."""
        if self.busy:
            raise Refused(f"cannot change the estimator while {self.job} is running")
        self.model = model
        self.model_changed.emit(model)

    def set_result(self, result: Result) -> None:
        """Make ``result`` current (e.g. computed elsewhere)."""
        if self.busy:
            raise Refused(f"cannot change the result while {self.job} is running")
        self.result = result
        self.result_changed.emit(result)

    def close(self) -> None:
        """The widget goes away: ask a running training to stop."""
        self.request_stop()

    # ------------------------------------------------------------------ internals
    def _to_idle(self) -> None:
        self._job = None
        self._stopper = None
        self._set_state(State.IDLE)

    def _set_state(self, new: State) -> None:
        old = self._state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise RuntimeError(f"session cannot go from {old.value} to {new.value}")
        self._state = new
        self.state_changed.emit(new, old)
