"""The napari dock widget: train or load an estimator on a movie layer, show the results.

:class:`DissipationWidget` only assembles the parts and wires them together:

* the panels (:mod:`.panels`, :mod:`.options_form`) show and collect what the user picks;
* the :class:`~.session.Session` holds the state (idle, training, stopping, estimating,
  exporting), the current model and the last result, and refuses what the state does not
  allow; its events drive the buttons and the result display;
* the jobs (:mod:`.jobs`) run in napari thread workers; their progress and results come
  back to the GUI thread through the worker's signals;
* the :class:`~.results_view.ResultView` puts results into the viewer; the trace dock it
  adds lives as long as this widget (it is removed when the widget closes).
"""

from __future__ import annotations

import logging
import threading
import traceback
from pathlib import Path

from napari.qt.threading import create_worker
from napari.utils.notifications import (
    ErrorNotification,
    notification_manager,
    show_error,
    show_info,
    show_warning,
)
from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

from ..errors import InputError
from . import jobs
from .options_form import OptionsForm
from .panels import MoviePanel, ResultsPanel, RunPanel, group_box
from .plots import DARK, LIGHT
from .results_view import ResultView
from .session import (
    JOBS,
    Refused,
    Result,
    Session,
    State,
    describe_fit,
    describe_lower_bound,
    fit_fields,
    run_record_arguments,
)

__all__ = ["DissipationWidget"]

#: Milliseconds between a job's result on screen and the job that follows it (the maps).
FOLLOW_DELAY_MS = 150

logger = logging.getLogger(__name__)

#: What each file button does: (words for messages, method called with the path).
FILE_ACTIONS = {
    "load": ("Loading the estimator", "load_estimator"),
    "save": ("Saving the estimator", "save_estimator"),
    "trace": ("Exporting the trace", "export_trace"),
    "maps": ("Exporting the maps", "export_maps"),
    "record": ("Saving the run record", "save_record"),
}


class _WorkerStopper:
    """What Stop asks of a map computation: quit its worker at the next batch."""

    def __init__(self, widget):
        self.widget = widget

    def request_stop(self) -> None:
        if self.widget.worker is not None:
            self.widget.worker.quit()


class DissipationWidget(QWidget):
    """Train or load an entropy-production estimator and map a movie layer's dissipation.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose image layers are offered as movies.

    Attributes
    ----------
    session : Session
        State, current model and last result (Qt-free).
    movie_panel, options_form, run_panel, results_panel
        The parts of the widget, top to bottom (see :mod:`.panels`).
    results : ResultView
        Result layers and the EP trace dock.
    trace_plot, window_plot, training_plot
        The EP trace and, beside it, the rate by window length (docked below the viewer),
        and the live training curves.
    worker : napari worker or None
        The running job's worker.
    preload : threading.Thread
        Imports the engine in the background when the widget opens (:func:`.jobs.preload`).
    """

    def __init__(self, napari_viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = Session()
        self.worker = None
        self._context: dict = {}
        self._next = None  # what to start once the running worker has finished
        self._trained_on = None  # (layer, selection) the current model was trained on
        self._closed = False
        self.movie_panel = MoviePanel(napari_viewer)
        self.options_form = OptionsForm()
        self.run_panel = RunPanel()
        self.results_panel = ResultsPanel()
        self.results = ResultView(napari_viewer)
        self.trace_plot = self.results.trace_plot
        self.training_plot = self.run_panel.training_plot
        self._layout()
        self._connect()
        # PyTorch's optimiser machinery takes a second to import, holding the GIL: in the
        # background now, while the user picks a movie, rather than during the first run.
        self.preload = threading.Thread(target=jobs.preload, daemon=True,
                                        name="napari-dissipation preload")
        self.preload.start()
        self._apply_theme()
        self._update_controls()

    def _layout(self) -> None:
        # Everything sits in a scroll area so that the dock fits small screens.
        inner = QWidget()
        layout = QVBoxLayout(inner)
        for box in (self.movie_panel.native, group_box("Training", self.options_form.native),
                    self.run_panel.native, self.results_panel.native):
            layout.addWidget(box)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(inner)
        scroll.setMinimumWidth(inner.sizeHint().width() + 20)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    def _connect(self) -> None:
        run, res, s = self.run_panel, self.results_panel, self.session
        run.train_button.changed.connect(self.train)
        run.stop_button.changed.connect(self.stop)
        run.estimate_button.changed.connect(self.estimate)
        run.maps_button.changed.connect(self.compute_maps)
        res.contrast.changed.connect(self.results.set_contrast)
        for kind, button in (("load", res.load_button), ("save", res.save_button),
                             ("trace", res.export_trace_button),
                             ("maps", res.export_maps_button),
                             ("record", res.record_button)):
            button.changed.connect(lambda *_, kind=kind: self._file_dialog(kind))
        self.movie_panel.changed.connect(self._update_controls)
        s.state_changed.connect(self._update_controls)
        s.model_changed.connect(self._on_model)
        s.result_changed.connect(self._on_result)
        s.maps_changed.connect(self._on_maps)
        s.progress.connect(self._on_progress)
        s.failed.connect(self._on_failed)
        s.finished.connect(self._on_finished)
        self.viewer.events.theme.connect(self._apply_theme)

    # ------------------------------------------------------------------ the movie
    @property
    def movie_layer(self):
        """The image layer picked as the movie."""
        return self.movie_panel.movie_layer

    def select_layer(self, layer) -> None:
        """Pick ``layer`` as the movie (what choosing it in the list does)."""
        self.movie_panel.select(layer)

    @property
    def time_axis(self) -> int:
        """Time axis of the picked layer (0 for a 3-D movie)."""
        return self.movie_panel.time_axis_index

    def set_time_axis(self, axis: int) -> None:
        """Choose the time axis of a layer with more than three axes."""
        self.movie_panel.set_time_axis(axis)

    def dt(self) -> float:
        """Seconds per frame from the dt field (:class:`InputError` when not set)."""
        return self.movie_panel.dt_seconds()

    def selection(self):
        """How the movie is cut out of the picked layer now (a ``MovieSelection``)."""
        return self.movie_panel.selection()

    # ------------------------------------------------------------------ options
    def options(self) -> dict:
        """Keyword options for ``EPEstimator`` from the form (first screen and Advanced)."""
        return self.options_form.values()

    def set_options(self, **options) -> None:
        """Set the form's fields by option name (handy in scripts and tests)."""
        self.options_form.set_values(**options)

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """True while a job (training, estimation, export) runs."""
        return self.session.busy

    @property
    def model(self):
        """The current trained model (a ``TrainedModel``) or None."""
        return self.session.model

    @property
    def result(self) -> Result | None:
        """The last result (trace, maps, rate) or None."""
        return self.session.result

    @property
    def window_plot(self):
        """The rate by window length of the last training run (beside the trace)."""
        return self.results.window_plot

    @property
    def trace_dock(self):
        """The dock of the EP trace (None before the first result and after closing)."""
        return self.results.trace_dock

    @property
    def map_layer(self):
        return self.results.map_layer

    @property
    def density_layer(self):
        return self.results.density_layer

    def current_frame(self) -> int | None:
        """Frame of the result's movie that the viewer shows now (None without a result)."""
        return self.results.current_frame()

    def go_to_frame(self, frame: int) -> None:
        """Move the viewer's time slider to ``frame`` of the result's movie."""
        self.results.go_to_frame(frame)

    # ------------------------------------------------------------------ running
    def _prepare(self, action: str):
        """Check the picked layer and dt; return (layer, selection, movie, dt) or None."""
        layer = self.movie_panel.movie_layer
        problem = self.movie_panel.problem(layer)
        if problem is not None:
            show_error(f"Cannot {action}: {problem}.")
            return None
        try:
            dt = self.dt()
        except InputError as exc:
            show_error(f"Cannot {action}: {exc}.")
            return None
        sel = self.movie_panel.selection(layer)
        return layer, sel, sel.movie(layer.data), dt

    def train(self, *_args) -> None:
        """Train a new estimator on the picked layer in a background thread."""
        if not self.session.can("train"):
            return
        prepared = self._prepare("train")
        if prepared is None:
            return
        layer, sel, movie, dt = prepared
        from ..estimate import EPEstimator

        problem = self.options_form.check()
        if problem is not None:
            show_error(f"Cannot train: {problem}")
            return
        try:
            est = EPEstimator(**self.options())
        except InputError as exc:
            show_error(f"Cannot train: {self.options_form.explain(exc)}")
            return
        self.run_panel.start_training(layer.name)
        self._context = {"layer": layer, "selection": sel, "dt": dt, "options": self.options(),
                         "dt_source": self.movie_panel.dt_source.value}
        self._start(jobs.train, est, movie, dt=dt, name=layer.name, action="train",
                    stopper=est, on_returned=self._on_trained, on_yielded=self._on_yielded)
        self.results.warm_glyphs()

    def estimate(self, *_args) -> None:
        """Apply the current model to the picked layer (no training)."""
        why = self.session.why_not("estimate")
        if why is not None:
            if not self.session.busy:
                show_error(f"Cannot estimate: {why}.")
            return
        prepared = self._prepare("estimate")
        if prepared is None:
            return
        layer, sel, movie, dt = prepared
        try:
            warning = jobs.check_model_fits(self.session.model, movie, dt=dt, name=layer.name)
        except InputError as exc:
            show_error(f"Cannot estimate on '{layer.name}': {exc}.")
            return
        if warning:
            show_warning(warning)
        self.run_panel.set_busy(f"Estimating on '{layer.name}'\u2026")
        self._context = {"layer": layer, "selection": sel, "dt": dt,
                         "options": self.session.model.options,
                         "dt_source": self.movie_panel.dt_source.value}
        trained_on = self._trained_on
        if trained_on is not None and trained_on[0] is layer and trained_on[1] == sel:
            self._context["warnings"] = [
                "This movie includes the frames the estimator was trained on, so this rate "
                "counts them too and may be higher than Train's, which measures held-out "
                "blocks only: report Train's."]
        self._start(jobs.estimate, self.session.model, movie, dt=dt, name=layer.name,
                    action="estimate", on_returned=self._on_estimated)
        self.results.warm_glyphs()

    def stop(self, *_args) -> None:
        """Ask training to end at its next step (the best weights so far are kept), or
        the map computation to end (Compute maps starts it again)."""
        mapping = self.session.state is State.MAPPING
        if self.session.request_stop():
            self.run_panel.status.value = ("Stopping the maps\u2026" if mapping
                                           else "Stopping\u2026")

    def compute_maps(self, *_args) -> None:
        """Compute the current result's maps in the background (after its rate is shown)."""
        why = self.session.why_not("maps")
        result = self.session.result
        if why is None and (result.layer is None or result.layer not in self.viewer.layers):
            why = f"the movie layer '{result.layer_name}' is no longer in the viewer"
        if why is not None:
            if not self.session.busy:
                show_error(f"Cannot compute the maps: {why}.")
            return
        movie = result.selection.movie(result.layer.data)
        self._context["status"] = self.run_panel.status.value
        self.run_panel.set_busy("Computing maps (the rate above is final)\u2026")
        self._start(jobs.maps, self.session.model, movie, dt=result.dt,
                    name=result.layer_name, action="maps", stopper=_WorkerStopper(self),
                    on_returned=self._on_maps_returned,
                    on_yielded=self.run_panel.set_fraction)

    def _start(self, function, *args, action: str, on_returned, stopper=None,
               on_yielded=None, **kwargs):
        self.session.start(action, stopper=stopper)
        worker = create_worker(function, *args, _start_thread=False, _ignore_errors=True,
                               **kwargs)
        if on_yielded is not None:
            worker.yielded.connect(on_yielded)
        worker.returned.connect(on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(lambda: self._on_worker_finished(worker))
        self.worker = worker
        worker.start()
        return worker

    # ------------------------------------------------------------------ worker signals
    def _on_yielded(self, record) -> None:
        self.session.report(record)

    def _result(self, **kwargs) -> Result:
        c = self._context
        result = Result.of_layer(c["layer"], c["selection"], c["dt"], **kwargs)
        result.record = run_record_arguments(result, options=c.get("options", {}),
                                             dt_source=c.get("dt_source", ""))
        return result

    def _on_trained(self, out: jobs.TrainOutcome) -> None:
        fit = out.fit
        c = self._context
        result = self._result(ep=out.ep, how="trained",
                              **fit_fields(fit, window_chosen=out.window_chosen))
        self._trained_on = (c["layer"], c["selection"])
        self.run_panel.status.value = describe_fit(fit)
        self.session.succeed(model=out.model, result=result)
        self._next = self.compute_maps  # once this worker has finished

    def _on_estimated(self, out: jobs.EstimateOutcome) -> None:
        result = self._result(ep=out.ep, ep_rate=out.ep_rate, ep_rate_ci=out.ep_rate_ci,
                              how="estimated", frames_per_input=out.frames_per_input,
                              warnings=list(self._context.get("warnings", [])))
        self.run_panel.status.value = "Estimated with the current estimator (no training)."
        self.session.succeed(result=result)
        self._next = self.compute_maps

    def _on_maps_returned(self, out: jobs.MapsOutcome) -> None:
        self.run_panel.status.value = self._context.get("status", "")
        self.session.succeed(maps=out)

    def _on_exported(self, path) -> None:
        self.session.succeed()
        show_info(f"{self._context.get('what', 'File')} written to {path}")

    def _on_errored(self, exc: BaseException) -> None:
        self.session.fail(exc)

    def _on_worker_finished(self, worker) -> None:
        if worker is not self.worker:  # a late signal of a worker already replaced
            return
        self.worker = None
        self.session.end()
        follow, self._next = self._next, None
        if follow is not None and not self._closed:
            # A moment later: the result just shown paints first, then the next job starts.
            QTimer.singleShot(FOLLOW_DELAY_MS, follow)

    # ------------------------------------------------------------------ session events
    def _on_progress(self, record) -> None:
        self.run_panel.show_progress(record, stopping=self.session.stop_requested)

    def _on_model(self, model) -> None:
        self.results_panel.show_model(model)

    def _on_result(self, result: Result) -> None:
        if self._closed:  # a job that ends after the widget closed shows nothing
            return
        config = self.session.model.config_dict() if self.session.has_model else None
        notes = [describe_lower_bound(result)] + list(result.warnings)
        self.run_panel.show_result(self.results.show(result, estimator_config=config),
                                   "\n".join(n for n in notes if n))
        self._update_controls()

    def _on_maps(self, result: Result) -> None:
        if not self._closed:
            self.results.show_maps(result)
            self._update_controls()

    def _on_failed(self, job: str, exc: BaseException) -> None:
        if isinstance(exc, jobs.JobError):
            exc = exc.original
        if isinstance(exc, InputError):
            show_error(f"{job} failed: {exc}")
        else:
            logger.error("%s failed:\n%s", job,
                         "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            note = ErrorNotification(exc)
            note.message = (f"{job} failed with an unexpected {type(exc).__name__}: {exc} "
                            "(see the traceback)")
            notification_manager.dispatch(note)
        self.run_panel.status.value = f"{job} failed: {exc}"

    def _on_finished(self, job: str, succeeded: bool) -> None:
        if job != "Export":
            self.run_panel.finish(succeeded)
        if job == JOBS["maps"][0] and not succeeded and self.session.stop_requested:
            self.run_panel.status.value = ("Maps stopped; the rate stands. Press Maps to "
                                           "compute them.")

    def _update_controls(self, *_args) -> None:
        s, run, res = self.session, self.run_panel, self.results_panel
        run.train_button.enabled = s.can("train")
        run.stop_button.enabled = s.can("stop")
        run.estimate_button.enabled = s.can("estimate")
        run.maps_button.enabled = s.can("maps")
        res.load_button.enabled = s.can("load")
        res.save_button.enabled = s.can("save")
        res.export_trace_button.enabled = s.can("export")
        res.export_maps_button.enabled = s.can("export_maps")
        res.record_button.enabled = s.can("export") and bool(s.result.record)
        editable = s.can("edit")
        self.movie_panel.set_enabled(editable)
        self.options_form.set_enabled(editable)

    # ------------------------------------------------------------------ files
    def save_estimator(self, path) -> Path:
        """Save the current model (the engine's safe format); returns the file's path."""
        why = self.session.why_not("save")
        if why is not None:
            raise Refused(why)
        path = Path(self.session.model.save(path))
        show_info(f"Estimator saved to {path}")
        return path

    def load_estimator(self, path):
        """Load a model saved by :meth:`save_estimator` or ``napari-dissipation fit``."""
        from ..estimate import load_model

        why = self.session.why_not("load")
        if why is not None:
            raise Refused(why)
        device = self.options().get("device") or "auto"
        model = load_model(path, device=device)
        self.session.set_model(model)
        self._trained_on = None
        self.set_options(frames_per_input=model.frames_per_input)
        self._update_controls()
        self.run_panel.status.value = f"Loaded {Path(path).name}; press Estimate to apply it."
        return model

    def export_trace(self, path):
        """Write the EP trace (columns movie, frame, ep) in a background thread.

        Returns the worker (its ``finished`` signal says when the file is there).
        """
        return self._export(jobs.export_trace, "export", path, "EP trace")

    def export_maps(self, path):
        """Write the per-transition maps (T-1, H, W) as a float32 TIFF in a background
        thread; returns the worker.  :class:`InputError` when there are no maps."""
        return self._export(jobs.export_maps, "export_maps", path, "Dissipation maps")

    def save_record(self, path):
        """Write the result's reproducibility record (JSON) in a background thread (the
        input file is hashed there); returns the worker."""
        return self._export(jobs.export_record, "export", path, "Run record")

    def _export(self, function, action: str, path, what: str):
        why = self.session.why_not(action)
        if why is not None:
            raise Refused(why)
        self._context = {"what": what}
        return self._start(function, self.session.result, path, action="export",
                           on_returned=self._on_exported)

    def _run_file_action(self, action, path, what: str) -> bool:
        # A toast is one short line: the file's name, not its whole folder path, comes first.
        name = Path(path).name
        try:
            action(path)
        except InputError as exc:
            show_error(f"{what} failed: {str(exc).replace(str(path), name)}")
        except OSError as exc:
            show_error(f"{what} failed: {name}: {exc.strerror or exc}")
        except Exception as exc:  # an engine error must not kill the GUI
            logger.error("%s failed", what, exc_info=exc)
            show_error(f"{what} failed: {name}: {type(exc).__name__}: {exc}")
        else:
            return True
        return False

    def _file_dialog(self, kind: str) -> None:
        """Ask for a file (``kind`` is a key of :data:`FILE_ACTIONS`), then act on it."""
        result = self.session.result
        prefix = f"{result.layer_name}_" if result is not None else ""
        path = self.results_panel.ask_path(kind, parent=self, prefix=prefix)
        if path:
            what, method = FILE_ACTIONS[kind]
            self._run_file_action(getattr(self, method), path, what)

    # ------------------------------------------------------------------ housekeeping
    def _apply_theme(self, event=None) -> None:
        theme = str(getattr(self.viewer, "theme", "dark"))
        colors = LIGHT if theme == "light" else DARK
        self.run_panel.training_plot.set_theme(colors)
        self.results.set_theme(colors)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.teardown()
        super().closeEvent(event)

    def event(self, event) -> bool:
        # napari takes a widget out of its dock (the dock's close button) by setting its
        # parent to None, without closing it: tidy up then too.
        if (event.type() == QEvent.Type.ParentChange and self.parent() is None
                and getattr(self, "_docked", False)):
            self.teardown()
        elif event.type() == QEvent.Type.ParentChange and self.parent() is not None:
            self._docked = True
        return super().event(event)

    def teardown(self) -> None:
        """Stop training, disconnect from the viewer and remove the trace dock (idempotent).

        Called when the widget closes or leaves its dock.
        """
        if self._closed:
            return
        self._closed = True
        self.session.close()
        self.viewer.events.theme.disconnect(self._apply_theme)
        self.movie_panel.close()
        self.results.close()
