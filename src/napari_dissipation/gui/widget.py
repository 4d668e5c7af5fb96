"""The napari dock widget: train or load an estimator on a movie layer, show the results.

All numbers come from the engine (:mod:`napari_dissipation.estimate`); this module only
moves them between the viewer, a background thread and the screen:

* training runs ``EPEstimator.fit_iter`` in a napari ``GeneratorWorker``; its progress
  records drive the progress bar and the live plot on the GUI thread, and Stop asks the
  estimator to stop at its next step (the best weights are kept);
* results become two image layers over the movie (per-transition maps aligned with the
  time slider, and the time-averaged map) and a docked EP-trace plot whose marker
  follows the viewer's current frame.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import (
    ErrorNotification,
    notification_manager,
    show_error,
    show_info,
    show_warning,
)
from qtpy.QtCore import QLocale, Qt
from qtpy.QtGui import QDoubleValidator
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from ._layers import (
    MovieSelection,
    dt_from_layer,
    format_rate,
    layer_problem,
    rate_density_layer,
    simulation_truth,
    time_axis_choices,
    transition_map_layer,
)
from ._trace_plot import DARK, LIGHT, EPTracePlot, TrainingPlot
from .errors import InputError
from .estimate.config import EstimatorConfig

__all__ = ["DissipationWidget"]

logger = logging.getLogger(__name__)

#: Options shown on the first screen; every other EstimatorConfig field is "Advanced".
FIRST_SCREEN = ("frames_per_input", "max_iterations", "max_seconds", "seed", "device")
#: Labels (with units) for Advanced options; other EstimatorConfig fields use their name.
LABELS = {
    "channels": "network channels",
    "max_pools": "down-samplings (max)",
    "batch_size": "batch size (windows)",
    "patience": "patience (evaluations)",
    "eval_every": "evaluate every (steps)",
    "eval_windows": "evaluation windows",
    "validation_fraction": "held-out fraction",
    "stride": "stride (frames)",
    "bin": "bin (pixels)",
    "threads": "CPU threads",
}
#: Why training ended, in words (FitResult.stop_reason -> text).
STOP_REASONS = {
    "iterations": "iteration budget reached",
    "seconds": "time budget reached",
    "early stopping": "early stopping: validation stopped improving",
    "stopped": "stopped by you",
}
#: The widget's own default budget: one click on Train gives a result in two minutes.
DEFAULT_MAX_SECONDS = 120.0
#: Largest per-transition map stack (float32 bytes) the widget keeps in memory; beyond
#: it only the time-averaged map (computed in a stream by the engine) is shown.
MAX_MAP_BYTES = 1 << 30
#: Nice value of the worker thread (Linux): the viewer stays smooth on a busy CPU.
WORKER_NICE = 5
MODEL_FILTER = "napari-dissipation model (*.pt);;All files (*)"


def default_threads() -> int:
    """torch CPU threads for training: leave one core to the viewer, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def _config_docs() -> dict[str, str]:
    """One-line descriptions of the EstimatorConfig fields, from its docstring."""
    docs: dict[str, str] = {}
    names: list[str] = []
    for line in (EstimatorConfig.__doc__ or "").splitlines():
        head = re.match(r"^    (\w[\w, ]*) : ", line)
        if head:
            names = [n.strip() for n in head.group(1).split(",")]
            continue
        if names and line.startswith("        "):
            for n in names:
                docs[n] = (docs.get(n, "") + " " + line.strip()).strip()
    return docs


@dataclass
class _Outputs:
    """What one training or estimation run produced for one movie layer."""

    layer_name: str
    selection: MovieSelection
    scale: tuple
    translate: tuple
    n_frames: int
    dt: float
    ep: np.ndarray
    maps: np.ndarray | None  # None when too large to hold (see MAX_MAP_BYTES)
    density: np.ndarray
    ep_rate: float
    ep_rate_ci: tuple | None
    how: str  # "trained" or "estimated"
    summary: dict | None = None
    layer: object = None  # the movie layer itself (followed even when renamed)


def maps_fit(movie_shape) -> bool:
    """Whether the (T-1, H, W) float32 maps of a movie fit in :data:`MAX_MAP_BYTES`."""
    t, h, w = movie_shape[-3:]
    return 4 * max(t - 1, 0) * h * w <= MAX_MAP_BYTES


def _lower_thread_priority(nice: int = WORKER_NICE) -> None:
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


class _JobError(Exception):
    """Carries an exception out of a worker.

    superqt's GeneratorWorker takes a ``RuntimeError`` from the generator for a deleted
    Qt object: it only warns, and emits neither ``errored`` nor ``finished``.  torch
    reports most failures as ``RuntimeError``, so the jobs wrap every unexpected
    exception in this type; the widget unwraps it (``original``, with its traceback).
    """

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


def _train_job(est, movie, dt, name):
    """Worker body: train, then compute the trace and maps with the best weights."""
    try:
        _lower_thread_priority()
        gen = est.fit_iter(movie, dt=dt, names=[name])
        while True:
            try:
                record = next(gen)
            except StopIteration as stop:
                fit = stop.value
                break
            yield record
        yield "computing maps"
        maps = est.dissipation_map(movie, name=name) if maps_fit(np.shape(movie)) else None
        density = est.ep_rate_density(movie, dt=dt, name=name)
        return fit, np.asarray(fit.stochastic_ep[0]), maps, density
    except InputError:
        raise
    except Exception as exc:
        raise _JobError(exc) from exc


def _estimate_job(est, movie, dt, name):
    """Worker body: EP trace, rate and maps of a movie with an already trained estimator."""
    try:
        _lower_thread_priority()
        ep = est.stochastic_ep(movie, name=name)
        rate = est.ep_rate(movie, dt=dt, name=name)
        maps = est.dissipation_map(movie, name=name) if maps_fit(np.shape(movie)) else None
        density = est.ep_rate_density(movie, dt=dt, name=name)
        return np.asarray(ep), float(rate), maps, density
    except InputError:
        raise
    except Exception as exc:
        raise _JobError(exc) from exc


class DissipationWidget(QWidget):
    """Train or load an entropy-production estimator and map a movie layer's dissipation.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose image layers are offered as movies.
    """

    def __init__(self, napari_viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.estimator = None
        self.outputs: _Outputs | None = None
        self.worker = None
        self._movie_layer: Image | None = None
        self._connected_layers: list = []
        self.map_layer: Image | None = None
        self.density_layer: Image | None = None
        self._pending = None  # (estimator, layer, selection, dt) of the running job
        self._what = ""
        self._stop_requested = False
        self._succeeded = False

        self.trace_plot = EPTracePlot(self, on_frame_clicked=self.go_to_frame)
        self.trace_plot.hide()
        self.trace_dock = None

        # Everything sits in a scroll area so that the dock fits small screens.
        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(self._build_movie_box())
        layout.addWidget(self._build_training_box())
        layout.addWidget(self._build_run_box())
        layout.addWidget(self._build_estimator_box())
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

        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self.viewer.layers.events.moved.connect(self._refresh_layers)
        self.viewer.dims.events.current_step.connect(self._on_current_step)
        self.viewer.events.theme.connect(self._apply_theme)
        self._apply_theme()
        self._refresh_layers()
        self._update_buttons()

    # ------------------------------------------------------------------ building
    def _build_movie_box(self) -> QGroupBox:
        box = QGroupBox("Movie")
        form = QFormLayout(box)
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("An image layer with a time axis: (T, Y, X) or more axes")
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        form.addRow("Layer", self.layer_combo)

        self.time_axis_combo = QComboBox()
        self.time_axis_combo.setToolTip("Which axis of the layer is time (Y, X are the last two)")
        self.time_axis_combo.currentIndexChanged.connect(self._on_time_axis_changed)
        self.time_axis_label = QLabel("Time axis")
        form.addRow(self.time_axis_label, self.time_axis_combo)

        self.dt_edit = QLineEdit()
        self.dt_edit.setValidator(_float_validator(self.dt_edit, bottom=0.0))
        self.dt_edit.setPlaceholderText("seconds per frame")
        self.dt_edit.setToolTip("Frame interval in seconds; sets the unit of the EP rate (k_B/s)")
        self.dt_edit.textEdited.connect(self._on_dt_edited)
        self.dt_source = QLabel("")
        self.dt_source.setStyleSheet("color: gray")
        row = QHBoxLayout()
        row.addWidget(self.dt_edit, 1)
        row.addWidget(self.dt_source)
        form.addRow("dt (s/frame)", row)

        self.layer_status = QLabel("")
        self.layer_status.setWordWrap(True)
        form.addRow(self.layer_status)
        return box

    def _build_training_box(self) -> QGroupBox:
        defaults = EstimatorConfig()
        box = QGroupBox("Training")
        form = QFormLayout(box)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(2, 16)
        self.k_spin.setValue(defaults.frames_per_input)
        self.k_spin.setToolTip("Consecutive frames per network input (k); k > 2 helps when the "
                               "movie does not show every degree of freedom")
        form.addRow("Frames per input (k)", self.k_spin)

        self.iter_spin = QSpinBox()
        self.iter_spin.setRange(10, 10_000_000)
        self.iter_spin.setSingleStep(1000)
        self.iter_spin.setValue(defaults.max_iterations)
        self.seconds_spin = QDoubleSpinBox()
        self.seconds_spin.setRange(0.0, 1e7)
        self.seconds_spin.setDecimals(0)
        self.seconds_spin.setSingleStep(30)
        self.seconds_spin.setSuffix(" s")
        self.seconds_spin.setSpecialValueText("no limit")
        self.seconds_spin.setValue(DEFAULT_MAX_SECONDS)
        self.seconds_spin.setToolTip("Wall-clock budget; training also ends by early stopping")
        self.iter_spin.setToolTip("Step budget; training ends at whichever budget comes first")
        form.addRow("Max iterations", self.iter_spin)
        form.addRow("Max time", self.seconds_spin)

        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setValue(defaults.seed)
        form.addRow("Seed", self.seed_spin)

        self.device_combo = QComboBox()
        for label, value in _devices():
            self.device_combo.addItem(label, value)
        form.addRow("Device", self.device_combo)

        self.advanced = QCollapsible("Advanced")
        adv = QWidget()
        adv_form = QFormLayout(adv)
        adv_form.setContentsMargins(0, 0, 0, 0)
        self.advanced_fields: dict[str, QWidget] = {}
        docs = _config_docs()
        for f in dataclasses.fields(EstimatorConfig):
            if f.name in FIRST_SCREEN:
                continue
            editor = _editor_for(f.name, getattr(defaults, f.name), str(f.type))
            editor.setToolTip(docs.get(f.name, ""))
            self.advanced_fields[f.name] = editor
            adv_form.addRow(LABELS.get(f.name, f.name.replace("_", " ")), editor)
        self.advanced.addWidget(adv)
        form.addRow(self.advanced)
        return box

    def _build_run_box(self) -> QGroupBox:
        box = QGroupBox("Run")
        layout = QVBoxLayout(box)
        row = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip("Train a new estimator on the movie, then map it")
        self.train_button.clicked.connect(self.train)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("End training now; the best weights so far are kept")
        self.stop_button.clicked.connect(self.stop)
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.setToolTip(
            "Apply the current (trained or loaded) estimator to the movie, without training")
        self.estimate_button.clicked.connect(self.estimate)
        for b in (self.train_button, self.stop_button, self.estimate_button):
            row.addWidget(b)
        layout.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        layout.addWidget(self.progress_bar)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self.result_label.font()
        font.setBold(True)
        self.result_label.setFont(font)
        layout.addWidget(self.result_label)
        self.training_plot = TrainingPlot()
        layout.addWidget(self.training_plot)
        return box

    def _build_estimator_box(self) -> QGroupBox:
        box = QGroupBox("Estimator and results")
        layout = QVBoxLayout(box)
        self.estimator_label = QLabel("No estimator yet: train one or load a saved one.")
        self.estimator_label.setWordWrap(True)
        layout.addWidget(self.estimator_label)
        row = QHBoxLayout()
        self.load_button = QPushButton("Load estimator\u2026")
        self.load_button.clicked.connect(self._load_dialog)
        self.save_button = QPushButton("Save estimator\u2026")
        self.save_button.clicked.connect(self._save_dialog)
        row.addWidget(self.load_button)
        row.addWidget(self.save_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        self.export_trace_button = QPushButton("Export trace CSV\u2026")
        self.export_trace_button.clicked.connect(self._export_trace_dialog)
        self.export_maps_button = QPushButton("Export maps TIFF\u2026")
        self.export_maps_button.clicked.connect(self._export_maps_dialog)
        row.addWidget(self.export_trace_button)
        row.addWidget(self.export_maps_button)
        layout.addLayout(row)
        return box

    # ------------------------------------------------------------------ layer picking
    def _movie_layers(self) -> list[Image]:
        return [layer for layer in self.viewer.layers
                if isinstance(layer, Image) and "dissipation" not in layer.metadata]

    def _refresh_layers(self, event=None) -> None:
        layers = self._movie_layers()
        for layer in self._connected_layers:
            layer.events.name.disconnect(self._refresh_layers)
        self._connected_layers = list(layers)
        for layer in layers:
            layer.events.name.connect(self._refresh_layers)
        current = self._movie_layer if self._movie_layer in layers else None
        if current is None and layers:
            usable = [lay for lay in layers if self._problem(lay) is None]
            current = (usable or layers)[-1]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        for layer in layers:
            self.layer_combo.addItem(layer.name)
        self.layer_combo.setCurrentIndex(layers.index(current) if current is not None else -1)
        self.layer_combo.blockSignals(False)
        if current is not self._movie_layer or event is None:
            self._set_movie_layer(current)
        else:
            self._update_layer_status()

    def _on_layer_changed(self, index: int) -> None:
        layers = self._movie_layers()
        self._set_movie_layer(layers[index] if 0 <= index < len(layers) else None)

    def select_layer(self, layer: Image) -> None:
        """Pick ``layer`` as the movie (what choosing it in the list does)."""
        self.layer_combo.setCurrentIndex(self._movie_layers().index(layer))

    @property
    def movie_layer(self) -> Image | None:
        """The image layer currently picked as the movie."""
        return self._movie_layer

    def _set_movie_layer(self, layer: Image | None) -> None:
        self._movie_layer = layer
        self.time_axis_combo.blockSignals(True)
        self.time_axis_combo.clear()
        if layer is not None and self._problem(layer) is None:
            for axis in time_axis_choices(layer.data.shape):
                self.time_axis_combo.addItem(f"axis {axis} ({layer.data.shape[axis]} steps)", axis)
            self.time_axis_combo.setCurrentIndex(0)
        self.time_axis_combo.blockSignals(False)
        many = self.time_axis_combo.count() > 1
        self.time_axis_combo.setVisible(many)
        self.time_axis_label.setVisible(many)
        self._update_dt_from_layer()
        self._update_layer_status()
        self._update_buttons()

    def _on_time_axis_changed(self, index: int) -> None:
        self._update_dt_from_layer()
        self._update_layer_status()

    @property
    def time_axis(self) -> int:
        """Time axis of the picked layer (0 for a 3-D movie)."""
        data = self.time_axis_combo.currentData()
        return 0 if data is None else int(data)

    def set_time_axis(self, axis: int) -> None:
        """Choose the time axis of a layer with more than three axes."""
        self.time_axis_combo.setCurrentIndex(self.time_axis_combo.findData(int(axis)))

    @staticmethod
    def _problem(layer: Image | None) -> str | None:
        if layer is None:
            return "no image layer: open a movie (T, Y, X) or a sample (File > Open Sample)"
        return layer_problem(layer.name, layer.data.shape, rgb=bool(layer.rgb),
                             multiscale=bool(layer.multiscale))

    def _selection(self, layer: Image) -> MovieSelection:
        """Time axis from the widget; every other leading axis at the viewer's position."""
        ndim = layer.ndim
        t_axis = self.time_axis
        fixed = {}
        if ndim > 3:
            position = layer.world_to_data(self.viewer.dims.point)
            for axis in range(ndim - 2):
                if axis != t_axis:
                    n = layer.data.shape[axis]
                    fixed[axis] = int(np.clip(np.rint(position[axis]), 0, n - 1))
        return MovieSelection(ndim=ndim, time_axis=t_axis, fixed=fixed)

    def _update_layer_status(self) -> None:
        layer = self._movie_layer
        problem = self._problem(layer)
        if problem is not None:
            self.layer_status.setText(problem)
            self.layer_status.setStyleSheet("color: #e05d44")
            return
        shape = layer.data.shape
        sel = self._selection(layer)
        text = f"{shape[sel.time_axis]} frames of {shape[-2]} x {shape[-1]} pixels"
        if sel.fixed:
            text += "; " + sel.describe_fixed()
        self.layer_status.setText(text)
        self.layer_status.setStyleSheet("")

    def _update_dt_from_layer(self) -> None:
        layer = self._movie_layer
        if layer is None or self._problem(layer) is not None:
            self.dt_source.setText("")
            return
        dt, source = dt_from_layer(layer.metadata, layer.scale, self.time_axis)
        if dt is not None:
            self.dt_edit.setText(f"{dt:.9g}")
            self.dt_source.setText(f"from {source}")
        else:
            self.dt_edit.setText("")
            self.dt_source.setText("enter it")

    def _on_dt_edited(self, text: str) -> None:
        self.dt_source.setText("set by you")

    def dt(self) -> float:
        """Seconds per frame from the dt field.

        Raises
        ------
        InputError
            When the field is empty or not a positive number.
        """
        text = self.dt_edit.text().strip()
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or value <= 0:
            raise InputError("dt (s/frame) is not set: enter the movie's frame interval in seconds")
        return value

    # ------------------------------------------------------------------ options
    def options(self) -> dict:
        """Keyword options for :class:`EPEstimator` from the first screen and Advanced."""
        opts = {
            "frames_per_input": self.k_spin.value(),
            "max_iterations": self.iter_spin.value(),
            "max_seconds": self.seconds_spin.value() or None,
            "seed": self.seed_spin.value(),
            "device": self.device_combo.currentData(),
        }
        for name, editor in self.advanced_fields.items():
            opts[name] = _editor_value(editor)
        return opts

    def set_options(self, **options) -> None:
        """Set widget fields by EstimatorConfig name (handy in scripts and tests)."""
        simple = {"frames_per_input": self.k_spin, "max_iterations": self.iter_spin,
                  "seed": self.seed_spin}
        for name, value in options.items():
            if name in simple:
                simple[name].setValue(int(value))
            elif name == "max_seconds":
                self.seconds_spin.setValue(0.0 if value is None else float(value))
            elif name == "device":
                self.device_combo.setCurrentIndex(self.device_combo.findData(value))
            elif name in self.advanced_fields:
                _set_editor_value(self.advanced_fields[name], value)
            else:
                raise KeyError(f"unknown option {name!r}")

    # ------------------------------------------------------------------ running
    @property
    def busy(self) -> bool:
        """True while a training or estimation worker runs."""
        return self.worker is not None

    def _prepare(self, action: str):
        """Check the picked layer and dt; return (layer, selection, movie, dt) or None."""
        layer = self._movie_layer
        problem = self._problem(layer)
        if problem is not None:
            show_error(f"Cannot {action}: {problem}.")
            return None
        try:
            dt = self.dt()
        except InputError as exc:
            show_error(f"Cannot {action}: {exc}.")
            return None
        sel = self._selection(layer)
        return layer, sel, sel.movie(layer.data), dt

    def train(self) -> None:
        """Train a new estimator on the picked layer in a background thread."""
        if self.busy:
            return
        prepared = self._prepare("train")
        if prepared is None:
            return
        layer, sel, movie, dt = prepared
        from .estimate import EPEstimator

        try:
            est = EPEstimator(**self.options())
        except InputError as exc:
            show_error(f"Cannot train: {exc}")
            return
        self.training_plot.reset()
        self.result_label.setText("")
        self.progress_bar.setValue(0)
        self.status_label.setText(f"Training on '{layer.name}'\u2026")
        self._pending = (est, layer, sel, dt)
        worker = create_worker(_train_job, est, movie, dt, layer.name,
                               _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_train_progress)
        worker.returned.connect(self._on_train_returned)
        self._start(worker, "Training")

    def estimate(self) -> None:
        """Apply the current estimator to the picked layer (no training)."""
        if self.busy:
            return
        if self.estimator is None or not self.estimator.is_fitted:
            show_error("Cannot estimate: no estimator yet. Train one or load a saved one.")
            return
        prepared = self._prepare("estimate")
        if prepared is None:
            return
        layer, sel, movie, dt = prepared
        est = self.estimator
        frame = tuple(movie.shape[-2:])
        trained = tuple(getattr(est, "raw_frame_shape", None) or est.frame_shape)
        if frame != trained:
            show_error(f"Cannot estimate on '{layer.name}': its frames are {frame[0]} x "
                       f"{frame[1]} pixels, the estimator was trained on {trained[0]} x "
                       f"{trained[1]}.")
            return
        if est.dt is not None and not np.isclose(float(est.dt), dt, rtol=1e-3):
            show_warning(f"'{layer.name}' has dt = {dt:g} s but the estimator was trained at "
                         f"dt = {float(est.dt):g} s; the EP of a transition depends on the "
                         "frame interval, so these numbers may be off.")
        self.progress_bar.setRange(0, 0)
        self.status_label.setText(f"Estimating on '{layer.name}'\u2026")
        self._pending = (est, layer, sel, dt)
        worker = create_worker(_estimate_job, est, movie, dt, layer.name,
                               _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._on_estimate_returned)
        self._start(worker, "Estimation")

    def _start(self, worker, what: str) -> None:
        self._what = what
        self._stop_requested = False
        self._succeeded = False
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._update_buttons()
        worker.start()

    def stop(self) -> None:
        """Ask training to end at its next step; the best weights so far are kept."""
        if self.worker is None or self._what != "Training":
            return
        self._stop_requested = True
        self._pending[0].request_stop()
        self.status_label.setText("Stopping\u2026")
        self.stop_button.setEnabled(False)

    def _on_train_progress(self, record) -> None:
        if isinstance(record, str):
            self.status_label.setText(record[:1].upper() + record[1:] + "\u2026")
            self.stop_button.setEnabled(False)
            self.progress_bar.setRange(0, 0)  # busy: no progress records from here on
            self.training_plot.redraw()
            return
        fraction = getattr(record, "fraction", None)
        if fraction is None:
            fraction = record.iteration / max(record.max_iterations, 1)
        self.progress_bar.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        text = f"Iteration {record.iteration} / {record.max_iterations}, {record.seconds:.0f} s"
        if record.ep_rate is not None:
            text += f"; running EP rate {record.ep_rate:.3g} k_B/s (validation)"
        if not self._stop_requested:
            self.status_label.setText(text)
        self.training_plot.add_progress(record)

    def _on_train_returned(self, value) -> None:
        fit, ep, maps, density = value
        est, layer, sel, dt = self._pending
        self.estimator = est
        outputs = _Outputs(
            layer_name=layer.name, layer=layer, selection=sel, scale=tuple(layer.scale),
            translate=tuple(layer.translate), n_frames=int(layer.data.shape[sel.time_axis]),
            dt=dt, ep=ep, maps=None if maps is None else np.asarray(maps),
            density=np.asarray(density), ep_rate=float(fit.ep_rate),
            ep_rate_ci=tuple(map(float, fit.ep_rate_ci)), how="trained", summary=fit.summary(),
        )
        self._show_outputs(outputs)
        reason = STOP_REASONS.get(fit.stop_reason, fit.stop_reason)
        text = (f"Trained in {fit.seconds:.0f} s, {fit.iterations} iterations ({reason}); "
                "the rate is measured on held-out data.")
        if not fit.learnt:
            text += (" Nothing fitted beat zero on held-out data: 0 means nothing was learnt "
                     "(more frames may help), not that there is no entropy production.")
        self.status_label.setText(text)

    def _on_estimate_returned(self, value) -> None:
        ep, rate, maps, density = value
        est, layer, sel, dt = self._pending
        outputs = _Outputs(
            layer_name=layer.name, layer=layer, selection=sel, scale=tuple(layer.scale),
            translate=tuple(layer.translate), n_frames=int(layer.data.shape[sel.time_axis]),
            dt=dt, ep=ep, maps=None if maps is None else np.asarray(maps),
            density=np.asarray(density), ep_rate=rate, ep_rate_ci=None, how="estimated",
        )
        self._show_outputs(outputs)
        self.status_label.setText("Estimated with the current estimator (no training; the "
                                  "interval needs held-out data and comes with Train only).")

    def _on_error(self, exc: BaseException) -> None:
        what = self._what or "Run"
        if isinstance(exc, _JobError):
            exc = exc.original
        if isinstance(exc, InputError):
            show_error(f"{what} failed: {exc}")
        else:
            logger.error("%s failed:\n%s", what,
                         "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            note = ErrorNotification(exc)
            note.message = (f"{what} failed with an unexpected {type(exc).__name__}: {exc} "
                            "(see the traceback)")
            notification_manager.dispatch(note)
        self.status_label.setText(f"{what} failed: {exc}")

    def _on_finished(self) -> None:
        self.worker = None
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(1000 if self._succeeded else 0)
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.busy
        fitted = self.estimator is not None and self.estimator.is_fitted
        self.train_button.setEnabled(not busy)
        self.stop_button.setEnabled(busy and self._what == "Training")
        self.estimate_button.setEnabled(not busy and fitted)
        self.load_button.setEnabled(not busy)
        self.save_button.setEnabled(not busy and fitted)
        has_out = self.outputs is not None
        self.export_trace_button.setEnabled(has_out)
        self.export_maps_button.setEnabled(has_out and self.outputs.maps is not None)
        for w in (self.layer_combo, self.time_axis_combo, self.dt_edit, self.k_spin,
                  self.iter_spin, self.seconds_spin, self.seed_spin, self.device_combo):
            w.setEnabled(not busy)
        self._update_estimator_label()

    def _update_estimator_label(self) -> None:
        est = self.estimator
        if est is None or not est.is_fitted:
            return
        h, w = getattr(est, "raw_frame_shape", None) or est.frame_shape
        dt = f"dt = {float(est.dt):g} s" if est.dt is not None else "dt unknown"
        self.estimator_label.setText(
            f"Estimator: {h} x {w} pixel frames, k = {est.frames_per_input}, {dt}.")

    # ------------------------------------------------------------------ outputs
    def _show_outputs(self, out: _Outputs) -> None:
        self.outputs = out
        self._succeeded = True
        meta = {
            "source_layer": out.layer_name,
            "dt": out.dt,
            "ep_rate": out.ep_rate,
            "ep_rate_ci": None if out.ep_rate_ci is None else list(out.ep_rate_ci),
            "how": out.how,
            "estimator": self.estimator.config_dict() if self.estimator is not None else None,
        }
        if out.summary is not None:
            meta["fit"] = out.summary
        density_tuple = rate_density_layer(
            out.density, selection=out.selection, n_frames=out.n_frames, scale=out.scale,
            translate=out.translate, name=f"{out.layer_name} EP rate density", metadata=meta,
            visible=out.maps is None)
        self.density_layer = self._put_layer(density_tuple)
        if out.maps is not None:
            map_tuple = transition_map_layer(
                out.maps, selection=out.selection, scale=out.scale, translate=out.translate,
                name=f"{out.layer_name} EP map", metadata=meta)
            self.map_layer = self._put_layer(map_tuple)
        else:
            self.map_layer = None
            stale = f"{out.layer_name} EP map"
            if stale in self.viewer.layers:
                self.viewer.layers.remove(stale)
            gib = 4 * (out.n_frames - 1) * out.density.size / 2**30
            show_info(f"'{out.layer_name}': per-transition maps skipped (they would take "
                      f"{gib:.1f} GiB); the time-averaged map is shown. The command line "
                      "(napari-dissipation map) writes the full stack to a file.")

        rate_text = format_rate(out.ep_rate, out.ep_rate_ci)
        text = (f"{rate_text}\non '{out.layer_name}' ({out.how}; {len(out.ep)} transitions, "
                f"dt = {out.dt:g} s)")
        source = self._source_layer()
        exact_steps, exact_rate = (None, None)
        if source is not None and out.selection.ndim == 3:
            exact_steps, exact_rate = simulation_truth(source.metadata, len(out.ep))
        if exact_rate is not None:
            text += f"\nexact rate of this simulated movie: {exact_rate:.3g} k_B/s"
        self.result_label.setText(text)
        self.trace_plot.set_trace(out.ep, dt=out.dt, title=f"{out.layer_name}: {rate_text}",
                                  exact=exact_steps)
        self.trace_plot.show()
        if self.trace_dock is None:
            self.trace_dock = self.viewer.window.add_dock_widget(
                self.trace_plot, name="EP trace", area="bottom")
        else:
            self.trace_dock.show()
        self._on_current_step()
        self._update_buttons()

    def _put_layer(self, layer_tuple) -> Image:
        data, kwargs, _ = layer_tuple
        name = kwargs["name"]
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            for key in ("scale", "translate", "contrast_limits", "metadata"):
                setattr(layer, key, kwargs[key])
            return layer
        return self.viewer.add_image(data, **kwargs)

    def _source_layer(self) -> Image | None:
        if self.outputs is None:
            return None
        layer = self.outputs.layer
        if layer is not None:
            return layer if layer in self.viewer.layers else None
        name = self.outputs.layer_name
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_current_step(self, event=None) -> None:
        movie = self._movie_layer
        if movie is not None and movie.ndim > 3 and self._problem(movie) is None:
            self._update_layer_status()
        layer = self._source_layer()
        if layer is None:
            return
        t_axis = self.outputs.selection.time_axis
        position = layer.world_to_data(self.viewer.dims.point)
        self.trace_plot.set_frame(int(np.rint(position[t_axis])))

    def current_frame(self) -> int | None:
        """Frame of the result's movie that the viewer shows now (None without a result)."""
        layer = self._source_layer()
        if layer is None:
            return None
        position = layer.world_to_data(self.viewer.dims.point)
        return int(np.rint(position[self.outputs.selection.time_axis]))

    def go_to_frame(self, frame: int) -> None:
        """Move the viewer's time slider to ``frame`` of the result's movie."""
        layer = self._source_layer()
        if layer is None:
            return
        t_axis = self.outputs.selection.time_axis
        data_pos = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
        data_pos[t_axis] = frame
        world = layer.data_to_world(data_pos)
        world_axis = self.viewer.dims.ndim - layer.ndim + t_axis
        self.viewer.dims.set_point(world_axis, float(world[t_axis]))

    # ------------------------------------------------------------------ files
    def save_estimator(self, path) -> Path:
        """Save the current estimator (the engine's safe format)."""
        if self.estimator is None or not self.estimator.is_fitted:
            raise InputError("no trained estimator to save")
        path = Path(self.estimator.save(path))
        show_info(f"Estimator saved to {path}")
        return path

    def load_estimator(self, path):
        """Load an estimator saved with :meth:`save_estimator` (or the command line)."""
        from .estimate import load_estimator

        self.estimator = load_estimator(path, device=self.device_combo.currentData())
        k = self.estimator.frames_per_input
        self.k_spin.setValue(k)
        self._update_buttons()
        self.status_label.setText(f"Loaded {Path(path).name}; press Estimate to apply it.")
        return self.estimator

    def export_trace(self, path) -> Path:
        """Write the EP trace (columns movie, frame, ep) with the engine's CSV writer."""
        from .io import write_stochastic_ep_csv

        if self.outputs is None:
            raise InputError("no EP trace yet: train or estimate first")
        return Path(write_stochastic_ep_csv(path, [self.outputs.ep]))

    def export_maps(self, path) -> Path:
        """Write the per-transition maps (T-1, H, W) as a float32 TIFF (engine writer)."""
        from .io import write_maps_tiff

        if self.outputs is None:
            raise InputError("no maps yet: train or estimate first")
        if self.outputs.maps is None:
            raise InputError("per-transition maps were not kept for this movie (too large); "
                             "use the command line: napari-dissipation map")
        out = self.outputs
        meta = {"source_layer": out.layer_name, "units": "k_B per transition per pixel",
                "alignment": "index t holds transition t -> t+1", "ep_rate": out.ep_rate,
                "ep_rate_ci": None if out.ep_rate_ci is None else list(out.ep_rate_ci)}
        return Path(write_maps_tiff(path, out.maps, dt=out.dt, metadata=meta))

    def _run_file_action(self, action, path, what: str) -> bool:
        try:
            action(path)
        except InputError as exc:
            show_error(f"{what} failed: {exc}")
        except Exception as exc:  # an OS or engine error must not kill the GUI
            logger.error("%s failed", what, exc_info=exc)
            show_error(f"{what} failed: {type(exc).__name__}: {exc}")
        else:
            return True
        return False

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save estimator", "estimator.pt",
                                              MODEL_FILTER)
        if path:
            self._run_file_action(self.save_estimator, path, "Saving the estimator")

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load estimator", "", MODEL_FILTER)
        if path:
            self._run_file_action(self.load_estimator, path, "Loading the estimator")

    def _export_trace_dialog(self) -> None:
        name = f"{self.outputs.layer_name}_stochastic_ep.csv" if self.outputs else "ep.csv"
        path, _ = QFileDialog.getSaveFileName(self, "Export EP trace", name,
                                              "CSV (*.csv);;All files (*)")
        if path and self._run_file_action(self.export_trace, path, "Exporting the trace"):
            show_info(f"EP trace written to {path}")

    def _export_maps_dialog(self) -> None:
        name = f"{self.outputs.layer_name}_maps.tif" if self.outputs else "maps.tif"
        path, _ = QFileDialog.getSaveFileName(self, "Export dissipation maps", name,
                                              "TIFF (*.tif *.tiff);;All files (*)")
        if path and self._run_file_action(self.export_maps, path, "Exporting the maps"):
            show_info(f"Dissipation maps written to {path}")

    # ------------------------------------------------------------------ housekeeping
    def _apply_theme(self, event=None) -> None:
        theme = str(getattr(self.viewer, "theme", "dark"))
        colors = LIGHT if theme == "light" else DARK
        self.training_plot.set_theme(colors)
        self.trace_plot.set_theme(colors)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        if self.worker is not None and self._what == "Training":
            self._pending[0].request_stop()
        self._disconnect_viewer()
        super().closeEvent(event)

    def _disconnect_viewer(self) -> None:
        self.viewer.layers.events.inserted.disconnect(self._refresh_layers)
        self.viewer.layers.events.removed.disconnect(self._refresh_layers)
        self.viewer.layers.events.moved.disconnect(self._refresh_layers)
        self.viewer.dims.events.current_step.disconnect(self._on_current_step)
        self.viewer.events.theme.disconnect(self._apply_theme)
        for layer in self._connected_layers:
            layer.events.name.disconnect(self._refresh_layers)
        self._connected_layers = []


def _float_validator(parent: QWidget, *, bottom: float | None = None) -> QDoubleValidator:
    """Accepts numbers as Python writes them (C locale, scientific notation allowed)."""
    validator = QDoubleValidator(parent)
    validator.setLocale(QLocale.c())
    validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
    if bottom is not None:
        validator.setBottom(bottom)
    return validator


def _devices() -> list[tuple[str, str]]:
    """(label, EPEstimator device) pairs: the GPU first when torch sees one."""
    import torch

    out = []
    if torch.cuda.is_available():
        out.append((f"GPU ({torch.cuda.get_device_name(0)})", "cuda"))
    out.append(("CPU", "cpu"))
    return out


def _editor_for(name: str, default, type_hint: str) -> QWidget:
    """An input widget for one Advanced option, initialised to its default."""
    if name == "threads":
        spin = QSpinBox()
        spin.setRange(0, 256)
        spin.setSpecialValueText("torch default")
        spin.setValue(default_threads())
        return spin
    if isinstance(default, bool):
        box = QCheckBox()
        box.setChecked(default)
        return box
    if isinstance(default, int):
        spin = QSpinBox()
        spin.setRange(0, 2**31 - 1)  # the engine says which values it refuses
        spin.setValue(default)
        return spin
    if isinstance(default, float) or (default is None and "float" in type_hint):
        edit = QLineEdit("" if default is None else f"{default:g}")
        edit.setValidator(_float_validator(edit))
        edit.setProperty("kind", "float")
        return edit
    edit = QLineEdit("" if default is None else str(default))
    edit.setProperty("kind", "str")
    return edit


def _editor_value(editor: QWidget):
    if isinstance(editor, QCheckBox):
        return editor.isChecked()
    if isinstance(editor, QSpinBox):
        value = editor.value()
        return None if editor.specialValueText() and value == editor.minimum() else value
    text = editor.text().strip()
    if editor.property("kind") == "float":
        return float(text) if text else None
    return text or None


def _set_editor_value(editor: QWidget, value) -> None:
    if isinstance(editor, QCheckBox):
        editor.setChecked(bool(value))
    elif isinstance(editor, QSpinBox):
        editor.setValue(editor.minimum() if value is None else int(value))
    else:
        editor.setText("" if value is None else (f"{value:g}" if isinstance(value, float)
                                                 else str(value)))
