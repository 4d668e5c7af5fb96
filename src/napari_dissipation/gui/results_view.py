"""A result on screen: map layers over the movie and the docked EP trace.

The map of transition t -> t+1 is shown at the movie's frame t (see :mod:`.layers`); the
trace's marker follows the viewer's frame, and a click on the trace moves the viewer.
The dock holds the trace and, beside it, the rate by window length of a training run
(:mod:`.window_plot`): the bottom dock is wide and the trace needs only part of it, while
the dock widget on the right is already a long column of controls.
"""

from __future__ import annotations

import warnings

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QWidget

from .layers import (
    COLORBAR_POSITION,
    MAP_NAME,
    format_rate,
    rate_density_layer,
    simulation_truth,
    transition_map_layer,
)
from .plots import EPTracePlot
from .session import Result, describe_measure, describe_window
from .window_plot import WindowPlot

__all__ = ["ResultView", "CONTRAST_MODES"]

TRACE_DOCK_NAME = "EP trace"
#: Characters of the colour bars' tick labels, then those vispy measures every text's line
#: height with (vispy.visuals.text).  napari renders each glyph of its canvas font
#: the first time one is drawn (a signed-distance field, tens of ms each on a CPU), so the
#: first colour bar paused the viewer for most of a second; :meth:`ResultView.warm_glyphs`
#: renders them one per turn of the event loop while a job runs.
TICK_GLYPHS = "0123456789.-+e\u2212" + "\u00c5\u00c9\u00d1\u0150jgpqy"
#: Milliseconds between the trace's first draw and the window plot's, and between the two
#: map layers (a layer's colour bar comes half-way).
STAGGER_MS = 250
#: Milliseconds between two glyphs rendered ahead of need.
GLYPH_INTERVAL_MS = 60
#: Contrast of the per-transition map: mode -> words in the widget's combo box.
CONTRAST_MODES = {"movie": "whole movie", "frame": "this frame"}


class ResultView:
    """Puts a :class:`~.session.Result` into a viewer and keeps the trace in step with it.

    Attributes
    ----------
    trace_plot : EPTracePlot
    window_plot : WindowPlot
        The rate by window length (shown for training results, hidden otherwise).
    trace_panel : QWidget
        The trace and the window plot side by side: what the dock holds.
    trace_dock : QDockWidget or None
        The dock holding the trace (added with the first result; removed by :meth:`close`).
    map_layer, density_layer : napari Image layer or None
    result : Result or None
    contrast : str
        ``"movie"`` or ``"frame"`` (see :meth:`set_contrast`).
    """

    def __init__(self, viewer):
        self.viewer = viewer
        self.result: Result | None = None
        self.map_layer: Image | None = None
        self.density_layer: Image | None = None
        self.trace_plot = EPTracePlot(on_frame_clicked=self.go_to_frame)
        self.window_plot = WindowPlot()
        self.trace_panel = QWidget()
        layout = QHBoxLayout(self.trace_panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.trace_plot, 3)
        layout.addWidget(self.window_plot, 1)
        self.window_plot.hide()
        self.trace_panel.hide()
        self.trace_dock = None
        self.contrast = "movie"
        self._meta: dict = {}
        self._closed = False
        viewer.dims.events.current_step.connect(self._on_current_step)

    # ------------------------------------------------------------------ showing
    def warm_glyphs(self) -> None:
        """Render the colour bars' glyphs ahead of need, one per turn of the event loop.

        Uses the canvas's font cache (a private part of napari): if napari changes it,
        nothing is warmed and the first colour bar only draws more slowly.
        """
        try:
            with warnings.catch_warnings():
                # napari warns on any private access from a dock widget; this one is
                # optional (see above), so the user's console stays clean.
                warnings.simplefilter("ignore", FutureWarning)
                info = self.viewer.window._qt_viewer.canvas.font_info()
            font = info.font_manager.get_font(info.face)
            missing = [c for c in TICK_GLYPHS if c not in font._glyphs]
        except Exception:  # noqa: BLE001 (an optimisation: never an error for the user)
            return

        def next_glyph():
            if self._closed or not missing:
                return
            try:
                font[missing.pop(0)]
            except Exception:  # noqa: BLE001
                return
            QTimer.singleShot(GLYPH_INTERVAL_MS, next_glyph)

        QTimer.singleShot(GLYPH_INTERVAL_MS, next_glyph)

    def show(self, result: Result, *, estimator_config: dict | None = None) -> str:
        """Show a new result's rate and trace (its maps come with :meth:`show_maps`);
        return the result's text."""
        self.result = result
        self._meta = {
            "source_layer": result.layer_name,
            "dt": result.dt,
            "ep_rate": result.ep_rate,
            "ep_rate_ci": None if result.ep_rate_ci is None else list(result.ep_rate_ci),
            "how": result.how,
            "estimator": estimator_config,
        }
        if result.summary is not None:
            self._meta["fit"] = result.summary
        rate_text = format_rate(result.ep_rate, result.ep_rate_ci,
                                lower_bound=result.lower_bound)
        lines = [rate_text] + [line for line in (describe_measure(result),
                                                 describe_window(result)) if line]
        lines.append(f"on '{result.layer_name}' ({result.how}; {len(result.ep):,} "
                     f"transitions, dt = {result.dt:g} s)")
        exact_steps, exact_rate = None, None
        source = self.source_layer()
        if source is not None and result.selection.ndim == 3:
            exact_steps, exact_rate = simulation_truth(source.metadata, len(result.ep))
        if exact_rate is not None:
            lines.append(f"exact rate of this simulated movie: {exact_rate:.3g} k_B/s")
        self.trace_plot.set_trace(result.ep, dt=result.dt,
                                  title=f"{result.layer_name}: {rate_text}", exact=exact_steps)
        self._dock_trace()
        # Each new plot is a full matplotlib draw on the GUI thread: the window curve comes
        # a moment after the trace, so the viewer repaints in between instead of pausing
        # for both (a result without a curve hides the plot at once).
        if result.rate_by_window:
            QTimer.singleShot(STAGGER_MS, lambda: self._show_window_curve(result, exact_rate))
        else:
            self._show_window_curve(result, exact_rate)
        self._on_current_step()
        return "\n".join(lines)

    def _show_window_curve(self, result: Result, exact_rate: float | None) -> None:
        """The rate by window length of a training run; hidden for an estimation."""
        if result is not self.result or self._closed:
            return
        self.window_plot.set_curve(result.rate_by_window, chosen=result.frames_per_input,
                                   chosen_from_data=result.window_chosen,
                                   reported=result.ep_rate, exact=exact_rate)
        self.window_plot.setVisible(self.window_plot.has_curve)

    def show_maps(self, result: Result) -> None:
        """Add (or update) the map layers of ``result``: the time-averaged density shown,
        the per-transition maps (when kept) added hidden, each with its colour bar."""
        if result is not self.result or not result.has_density:
            return
        self.density_layer = self._put_layer(rate_density_layer(
            result.density, selection=result.selection, n_frames=result.n_frames,
            scale=result.scale, translate=result.translate, metadata=dict(self._meta),
            units=result.units, visible=True))
        if result.maps is not None:
            # A new layer costs the GUI thread a few tenths of a second (controls, GL
            # programs): the second one comes a moment later (a zero timer fired before
            # the repaint), so the viewer redraws in between instead of pausing for both.
            QTimer.singleShot(STAGGER_MS, lambda: self._show_transition_maps(result))
            return
        self.map_layer = None
        if MAP_NAME in self.viewer.layers:
            self.viewer.layers.remove(MAP_NAME)
        gib = 4 * (result.n_frames - 1) * result.density.size / 2**30
        show_info(f"'{result.layer_name}': per-transition maps skipped (they would take "
                  f"{gib:.1f} GiB); the time-averaged map is shown. The command line "
                  "(napari-dissipation map) writes the full stack to a file.")

    def _show_transition_maps(self, result: Result) -> None:
        if result is not self.result or result.maps is None or self._closed:
            return
        self.map_layer = self._put_layer(transition_map_layer(
            result.maps, selection=result.selection, scale=result.scale,
            translate=result.translate, metadata=dict(self._meta), units=result.units,
            limits=result.limits, visible=False))
        self._apply_contrast()

    def set_contrast(self, mode: str) -> None:
        """Contrast of the per-transition map: ``"movie"`` (one range for the whole
        stack) or ``"frame"`` (each transition's own range, following the time slider)."""
        if mode not in CONTRAST_MODES:
            raise ValueError(f"contrast is one of {list(CONTRAST_MODES)}, not {mode!r}")
        self.contrast = mode
        self._apply_contrast()

    def _apply_contrast(self) -> None:
        layer, result = self.map_layer, self.result
        if layer is None or result is None or result.limits is None:
            return
        if self.contrast == "frame" and result.frame_limits is not None:
            frame = self.current_frame() or 0
            c = float(result.frame_limits[int(np.clip(frame, 0, len(result.frame_limits) - 1))])
            limits = (-c, c)
        else:
            limits = tuple(result.limits)
        if tuple(layer.contrast_limits) != limits:
            layer.contrast_limits = limits

    def _put_layer(self, layer_tuple) -> Image:
        data, kwargs, _ = layer_tuple
        name = kwargs["name"]
        old = self.viewer.layers[name] if name in self.viewer.layers else None
        if old is not None and old.ndim != np.ndim(data):
            self.viewer.layers.remove(old)  # a movie of another shape: start afresh
            old = None
        if old is not None:
            old.data = data
            for key in ("scale", "translate", "contrast_limits", "metadata", "units"):
                if key in kwargs:
                    setattr(old, key, kwargs[key])
            return old
        layer = self.viewer.add_image(data, **kwargs)
        kind = kwargs["metadata"]["dissipation"]["kind"]
        # The colour bar's GL visuals cost as much as the layer: a moment later.
        QTimer.singleShot(STAGGER_MS // 2, lambda: _show_colorbar(layer, COLORBAR_POSITION[kind]))
        return layer

    def _dock_trace(self) -> None:
        if self.trace_dock is None:
            self.trace_dock = self.viewer.window.add_dock_widget(
                self.trace_panel, name=TRACE_DOCK_NAME, area="bottom")
            # closing the dock by its button deletes it: forget it then
            self.trace_dock.destroyed.connect(self._forget_dock)
        self.trace_panel.show()
        self.trace_dock.show()

    def _forget_dock(self, *_args) -> None:
        self.trace_dock = None

    # ------------------------------------------------------------------ time
    def source_layer(self) -> Image | None:
        """The movie layer of the current result, if it is still in the viewer."""
        if self.result is None:
            return None
        layer = self.result.layer
        if layer is not None:
            return layer if layer in self.viewer.layers else None
        name = self.result.layer_name
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def current_frame(self) -> int | None:
        """Frame of the result's movie that the viewer shows now (None without a result)."""
        layer = self.source_layer()
        if layer is None:
            return None
        position = layer.world_to_data(self.viewer.dims.point)
        return int(np.rint(position[self.result.selection.time_axis]))

    def go_to_frame(self, frame: int) -> None:
        """Move the viewer's time slider to ``frame`` of the result's movie."""
        layer = self.source_layer()
        if layer is None:
            return
        t_axis = self.result.selection.time_axis
        data_pos = np.asarray(layer.world_to_data(self.viewer.dims.point), dtype=float)
        data_pos[t_axis] = frame
        world = layer.data_to_world(data_pos)
        world_axis = self.viewer.dims.ndim - layer.ndim + t_axis
        self.viewer.dims.set_point(world_axis, float(world[t_axis]))

    def _on_current_step(self, event=None) -> None:
        frame = self.current_frame()
        if frame is not None:
            self.trace_plot.set_frame(frame)
            if self.contrast == "frame":
                self._apply_contrast()

    # ------------------------------------------------------------------ housekeeping
    def set_theme(self, colors) -> None:
        self.trace_plot.set_theme(colors)
        self.window_plot.set_theme(colors)

    def close(self) -> None:
        """Disconnect from the viewer and take the trace dock out of it."""
        self._closed = True
        self.viewer.dims.events.current_step.disconnect(self._on_current_step)
        dock, self.trace_dock = self.trace_dock, None
        if dock is not None:
            try:
                self.viewer.window.remove_dock_widget(dock)
            except (LookupError, RuntimeError, AttributeError):
                pass  # the viewer is closing, or the dock is already gone


def _show_colorbar(layer: Image, position: str) -> None:
    """Show ``layer``'s colour bar (napari's canvas overlay) at ``position``."""
    layer.colorbar.position = position
    layer.colorbar.visible = True
