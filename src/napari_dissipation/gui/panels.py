"""The widget's panels, built with magicgui: the movie, the run and the results.

Each panel holds its magicgui widgets as public attributes (what the tests and scripts
use) and a ``native`` Qt group box to place.  Panels show things and report what the user
picked; they start nothing (the widget connects their buttons).
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton, create_widget
from napari.layers import Image, Shapes
from psygnal import Signal
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog, QGroupBox, QSizePolicy, QVBoxLayout

from ..errors import InputError
from .layers import (
    MovieSelection,
    dt_from_layer,
    layer_problem,
    roi_from_shapes,
    time_axis_choices,
)
from .options_form import NumberEdit, Rows
from .plots import TrainingPlot

__all__ = ["MoviePanel", "RunPanel", "ResultsPanel", "form", "group_box"]

PROBLEM_STYLE = "color: #e05d44"
NOTE_STYLE = "color: #e8a33d"
MODEL_FILTER = "napari-dissipation model (*.pt);;All files (*)"
#: File dialogs: kind -> (title, suggested name, filter, whether it saves).
DIALOGS = {
    "load": ("Load estimator", "", MODEL_FILTER, False),
    "save": ("Save estimator", "estimator.pt", MODEL_FILTER, True),
    "trace": ("Export EP trace", "stochastic_ep.csv", "CSV (*.csv);;All files (*)", True),
    "maps": ("Export dissipation maps", "maps.tif", "TIFF (*.tif *.tiff);;All files (*)",
             True),
    "record": ("Save run record", "record.json", "JSON (*.json);;All files (*)", True),
}
NO_MODEL = "No estimator yet: train one or load a saved one."
MAP_LEGEND = ("Map layers: red = positive EP, blue = negative. Colour bars on the canvas: "
              "'EP density' in k_B/s per pixel (time average; top right), 'EP per "
              "transition' in k_B per pixel (hidden at first; bottom right).")


def form(*widgets, layout: str = "horizontal", labels: bool = False, **kwargs) -> Container:
    """A magicgui Container without margins (a row of buttons, by default)."""
    box = Container(widgets=widgets, layout=layout, labels=labels, **kwargs)
    box.margins = (0, 0, 0, 0)
    return box


def group_box(title: str, *widgets) -> QGroupBox:
    """A titled box holding magicgui widgets (their ``native``) or Qt widgets, stacked."""
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    for w in widgets:
        layout.addWidget(getattr(w, "native", w))
    return box


def _label(value: str = "") -> Label:
    """A magicgui Label that takes the room its layout gives it (magicgui fixes its size)."""
    label = Label(value=value)
    label.native.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
    return label


def _wrapping_label(value: str = "", *, bold: bool = False) -> Label:
    label = _label(value)
    label.native.setWordWrap(True)
    if bold:
        font = label.native.font()
        font.setBold(True)
        label.native.setFont(font)
    return label


class MoviePanel:
    """Which image layer is the movie, which of its axes is time, and its dt.

    The layer picker is magicgui's combo box for a ``napari.layers.Image`` parameter,
    listing the viewer's image layers except the result layers this plugin adds.

    Attributes
    ----------
    layer : magicgui ComboBox
        Its value is the picked layer (None when the viewer has no image layer).
    time_axis : magicgui ComboBox
        Shown only for layers with more than one candidate time axis.
    dt : NumberEdit
        Seconds per frame (from the layer's metadata or scale, or typed in).
    dt_source : Label
        Where dt came from.
    status : Label
        The movie's size, or why the layer cannot be used.

    Events
    ------
    changed()
        The picked layer, time axis or dt changed.
    """

    changed = Signal()

    def __init__(self, viewer):
        self.viewer = viewer
        self.layer = create_widget(annotation=Image, name="layer", label="Layer", options={
            "tooltip": "An image layer with a time axis: (T, Y, X) or more axes"})
        self.layer.choices = self._layer_choices
        self.time_axis = ComboBox(name="time_axis", label="Time axis", choices=[],
                                  tooltip="Which axis of the layer is time (Y, X are the "
                                  "last two)")
        # No minimum in the editor: a typed "-1" must reach dt_seconds() and be refused
        # in words (a validator would silently drop the sign and give 1).
        self.dt = NumberEdit(name="dt", placeholder="seconds per frame",
                             tooltip="Frame interval in seconds; sets the unit of the EP "
                             "rate (k_B/s)")
        self.dt_source = _label()
        self.dt_source.native.setStyleSheet("color: gray")
        dt_row = form(self.dt, self.dt_source, layout="horizontal", labels=False,
                      name="dt_row", label="dt (s/frame)")
        self.region = ComboBox(name="region", label="Region", choices=self._region_choices,
                               tooltip="Train on the box around the first shape of a Shapes "
                               "layer (draw a rectangle over the movie), or the whole frame")
        self.status = _wrapping_label()
        self.form = Rows([self.layer, self.time_axis, dt_row, self.region])
        self.native = group_box("Movie", self.form, self.status)
        self._current: Image | None = None
        self._watched: list = []

        self.layer.changed.connect(self._set_layer)
        self.time_axis.changed.connect(self._on_time_axis)
        self.region.changed.connect(self._on_time_axis)
        self.dt.native.textEdited.connect(self._on_dt_edited)
        for event in self._viewer_events():
            event.connect(self.refresh)
        viewer.dims.events.current_step.connect(self._on_current_step)
        self.refresh()

    # ------------------------------------------------------------------ layers
    def _viewer_events(self):
        events = self.viewer.layers.events
        return (events.inserted, events.removed, events.moved)

    def movie_layers(self) -> list[Image]:
        """Image layers that may be movies (not the result layers of this plugin)."""
        return [layer for layer in self.viewer.layers
                if isinstance(layer, Image) and "dissipation" not in layer.metadata]

    def _layer_choices(self, _widget=None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.movie_layers()]

    def _region_choices(self, _widget=None) -> list[tuple[str, object]]:
        shapes = [layer for layer in self.viewer.layers if isinstance(layer, Shapes)]
        return [("whole frame", "")] + [(layer.name, layer) for layer in shapes]

    def refresh(self, event=None) -> None:
        """List the viewer's layers again; keep the picked one, else pick the newest usable."""
        layers = self.movie_layers()
        for layer in self._watched:
            layer.events.name.disconnect(self.refresh)
        self._watched = list(layers)
        for layer in layers:
            layer.events.name.connect(self.refresh)
        current = self._current if self._current in layers else None
        if current is None and layers:
            usable = [lay for lay in layers if self.problem(lay) is None]
            current = (usable or layers)[-1]
        with self.region.changed.blocked():
            self.region.reset_choices()
        with self.layer.changed.blocked():
            self.layer.reset_choices()
            if current is not None:
                self.layer.value = current
        if current is not self._current or event is None:
            self._set_layer(current)
        else:
            self.update_status()

    def select(self, layer: Image) -> None:
        """Pick ``layer`` as the movie (what choosing it in the list does)."""
        self.layer.value = layer

    @property
    def movie_layer(self) -> Image | None:
        """The picked layer."""
        return self._current

    def _set_layer(self, layer: Image | None) -> None:
        self._current = layer
        choices = []
        if layer is not None and self.problem(layer) is None:
            shape = layer.data.shape
            choices = [(f"axis {a} ({shape[a]} steps)", a) for a in time_axis_choices(shape)]
        with self.time_axis.changed.blocked():
            self.time_axis.choices = choices
        self.form.set_row_visible("time_axis", len(choices) > 1)
        self._update_dt()
        self.update_status()
        self.changed.emit()

    @staticmethod
    def problem(layer: Image | None) -> str | None:
        """Why ``layer`` cannot be the movie, or None."""
        if layer is None:
            return "no image layer: open a movie (T, Y, X) or a sample (File > Open Sample)"
        return layer_problem(layer.name, layer.data.shape, rgb=bool(layer.rgb),
                             multiscale=bool(layer.multiscale))

    # ------------------------------------------------------------------ time axis, dt
    @property
    def time_axis_index(self) -> int:
        """Time axis of the picked layer (0 for a 3-D movie)."""
        value = self.time_axis.value
        return 0 if value is None else int(value)

    def set_time_axis(self, axis: int) -> None:
        """Choose the time axis of a layer with more than three axes."""
        self.time_axis.value = int(axis)

    def _on_time_axis(self, _value=None) -> None:
        self._update_dt()
        self.update_status()
        self.changed.emit()

    def selection(self, layer: Image | None = None) -> MovieSelection:
        """Time axis from the panel; every other leading axis at the viewer's position."""
        layer = self._current if layer is None else layer
        ndim = layer.ndim
        t_axis = self.time_axis_index
        fixed = {}
        if ndim > 3:
            position = layer.world_to_data(self.viewer.dims.point)
            for axis in range(ndim - 2):
                if axis != t_axis:
                    n = layer.data.shape[axis]
                    fixed[axis] = int(np.clip(np.rint(position[axis]), 0, n - 1))
        return MovieSelection(ndim=ndim, time_axis=t_axis, fixed=fixed,
                              roi=roi_from_shapes(self._region_layer(), layer))

    def _region_layer(self) -> Shapes | None:
        value = self.region.value
        return value if isinstance(value, Shapes) else None

    def _update_dt(self) -> None:
        layer = self._current
        if layer is None or self.problem(layer) is not None:
            self.dt_source.value = ""
            return
        dt, source = dt_from_layer(layer.metadata, layer.scale, self.time_axis_index,
                                   getattr(layer, "units", None))
        self.dt.value = dt
        self._show_dt_source(f"from {source}" if dt is not None else "enter it")

    def _show_dt_source(self, text: str, problem: bool = False) -> None:
        self.dt_source.value = text
        self.dt_source.native.setStyleSheet(PROBLEM_STYLE if problem else "color: gray")
        self.dt_source.tooltip = text

    def _on_dt_edited(self, _text: str) -> None:
        try:
            self.dt_seconds()
        except InputError as exc:
            self._show_dt_source(str(exc).split(":")[0], problem=True)
        else:
            self._show_dt_source("set by you")
        self.changed.emit()

    def dt_seconds(self) -> float:
        """Seconds per frame from the dt field.

        Raises
        ------
        InputError
            When the field is empty or not a positive number.
        """
        value = self.dt.value
        if value is None:
            raise InputError("dt (s/frame) is not set: enter the movie's frame interval in "
                             "seconds")
        if not isinstance(value, float | int) or not np.isfinite(value) or value <= 0:
            raise InputError(f"dt (s/frame) must be a positive number of seconds, not "
                             f"'{self.dt.native.text().strip()}': enter the movie's frame "
                             "interval")
        return float(value)

    def update_status(self) -> None:
        """Say what the movie is, or why the layer cannot be used."""
        layer = self._current
        problem = self.problem(layer)
        if problem is not None:
            self.status.value = problem
            self.status.native.setStyleSheet(PROBLEM_STYLE)
            return
        shape = layer.data.shape
        sel = self.selection(layer)
        text = f"{shape[sel.time_axis]} frames of {shape[-2]} x {shape[-1]} pixels"
        if sel.fixed:
            text += "; " + sel.describe_fixed()
        if sel.roi is not None:
            y0, y1, x0, x1 = sel.roi
            text += f"; region {y1 - y0} x {x1 - x0} px ({sel.roi_flag} on the command line)"
        self.status.value = text
        self.status.native.setStyleSheet("")

    def _on_current_step(self, event=None) -> None:
        layer = self._current
        if layer is not None and layer.ndim > 3 and self.problem(layer) is None:
            self.update_status()

    # ------------------------------------------------------------------ housekeeping
    def set_enabled(self, enabled: bool) -> None:
        for w in (self.layer, self.time_axis, self.dt, self.region):
            w.enabled = enabled

    def close(self) -> None:
        """Disconnect from the viewer and its layers."""
        for event in self._viewer_events():
            event.disconnect(self.refresh)
        self.viewer.dims.events.current_step.disconnect(self._on_current_step)
        for layer in self._watched:
            layer.events.name.disconnect(self.refresh)
        self._watched = []


class RunPanel:
    """Train / Stop / Estimate, the progress bar, status and result lines, training plot.

    Attributes
    ----------
    train_button, stop_button, estimate_button, maps_button : magicgui PushButton
    progress : magicgui ProgressBar
        0 to 1000; a busy indicator while no fraction is known.
    status, result : magicgui Label
    note : magicgui Label
        Under the result: why the rate is a lower bound (hidden when it is not one).
    training_plot : TrainingPlot
    """

    def __init__(self):
        self.train_button = PushButton(text="Train", tooltip="Train a new estimator on the "
                                       "movie, then map it")
        self.stop_button = PushButton(text="Stop", tooltip="End training now; the best "
                                      "weights so far are kept")
        self.estimate_button = PushButton(text="Estimate", tooltip="Apply the current "
                                          "(trained or loaded) estimator to the movie, "
                                          "without training: rate over all its "
                                          "transitions, interval from time blocks")
        self.maps_button = PushButton(text="Maps", tooltip="Compute the dissipation maps "
                                      "of the result (they follow the rate on their own; "
                                      "this is for maps that were stopped)")
        buttons = form(self.train_button, self.stop_button, self.estimate_button,
                       self.maps_button, layout="horizontal", labels=False)
        self.progress = ProgressBar(min=0, max=1000, value=0)
        self.progress.native.setTextVisible(True)
        self.status = _wrapping_label()
        self.result = _wrapping_label(bold=True)
        self.result.native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note = _wrapping_label()
        self.note.native.setStyleSheet(NOTE_STYLE)
        self.note.native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.visible = False
        self.training_plot = TrainingPlot()
        self.native = group_box("Run", buttons, self.progress, self.status, self.result,
                                self.note, self.training_plot)

    def set_busy(self, text: str | None = None) -> None:
        """Show a busy indicator (no fraction known) and, optionally, a status line."""
        self.progress.native.setRange(0, 0)
        if text is not None:
            self.status.value = text

    def set_fraction(self, fraction: float) -> None:
        self.progress.native.setRange(0, 1000)
        self.progress.value = int(round(1000 * min(max(fraction, 0.0), 1.0)))

    def start_training(self, layer_name: str) -> None:
        """Clear the last result; busy (no fraction) until the first progress record."""
        self.training_plot.reset()
        self.show_result("")
        self.set_busy(f"Training on '{layer_name}': first the rate for a rising window "
                      "length\u2026")

    def show_result(self, text: str, note: str = "") -> None:
        """The result's lines (bold) and, below, a note such as why it is a lower bound."""
        self.result.value = text
        self.note.value = note
        self.note.visible = bool(note)

    def show_progress(self, record, *, stopping: bool) -> None:
        """One training ``Progress`` record: bar, status line (unless stopping) and plot."""
        fraction = getattr(record, "fraction", None)
        if fraction is None:
            fraction = record.iteration / max(record.max_iterations, 1)
        self.set_fraction(fraction)
        text = f"Iteration {record.iteration} / {record.max_iterations}, {record.seconds:.0f} s"
        if record.ep_rate is not None:
            text += f"; running EP rate {record.ep_rate:.3g} k_B/s (validation)"
        if not stopping:
            self.status.value = text
        self.training_plot.add_progress(record)

    def finish(self, succeeded: bool) -> None:
        self.set_fraction(1.0 if succeeded else 0.0)


class ResultsPanel:
    """The current estimator (load, save) and the result's files (export).

    Attributes
    ----------
    model_label : magicgui Label
    contrast : magicgui ComboBox
        Contrast of the per-transition map: ``"movie"`` (one range) or ``"frame"``.
    legend : magicgui Label
        What the map layers' colours and colour bars mean, with units.
    load_button, save_button, export_trace_button, export_maps_button : PushButton
    record_button : PushButton
        Saves the result's reproducibility record.
    """

    def __init__(self):
        self.contrast = ComboBox(name="contrast", label="Map contrast", value="movie",
                                 choices=[("whole movie", "movie"), ("this frame", "frame")],
                                 tooltip="Colour range of the per-transition map: one for "
                                 "the whole movie, or each transition's own (faint "
                                 "transitions become visible; compare colours within a "
                                 "frame only)")
        self.legend = _wrapping_label(MAP_LEGEND)
        self.legend.native.setStyleSheet("color: gray")
        self.model_label = _wrapping_label(NO_MODEL)
        self.load_button = PushButton(text="Load estimator\u2026")
        self.save_button = PushButton(text="Save estimator\u2026")
        self.export_trace_button = PushButton(text="Export trace CSV\u2026")
        self.export_maps_button = PushButton(text="Export maps TIFF\u2026")
        self.record_button = PushButton(text="Save run record\u2026", tooltip="What "
                                        "produced this result (versions, options, seed, "
                                        "input file and its SHA-256, dt and its source, "
                                        "checks) as JSON; napari-dissipation rerun reads it")
        rows = [form(*row, layout="horizontal", labels=False)
                for row in ([self.load_button, self.save_button],
                            [self.export_trace_button, self.export_maps_button],
                            [self.record_button])]
        self.native = group_box("Estimator and results", self.model_label, *rows,
                                Rows([self.contrast]), self.legend)

    @staticmethod
    def ask_path(kind: str, *, parent=None, prefix: str = "") -> str:
        """Ask the user for a file (``kind`` is a key of :data:`DIALOGS`); '' if cancelled.

        ``prefix`` goes before the suggested name of an export (e.g. the layer's name).
        """
        title, name, file_filter, save = DIALOGS[kind]
        if not save:
            return QFileDialog.getOpenFileName(parent, title, name, file_filter)[0]
        if kind in ("trace", "maps", "record"):
            name = prefix + name
        return QFileDialog.getSaveFileName(parent, title, name, file_filter)[0]

    def show_model(self, model) -> None:
        """Describe the current model (frame size, frames per input, dt)."""
        if model is None:
            self.model_label.value = NO_MODEL
            return
        h, w = getattr(model, "raw_frame_shape", None) or model.frame_shape
        dt = f"dt = {float(model.dt):g} s" if model.dt is not None else "dt unknown"
        self.model_label.value = (f"Estimator: {h} x {w} pixel frames, "
                                  f"k = {model.frames_per_input}, {dt}.")
