"""Matplotlib plots for the dock widget: live training curves and the EP trace.

Both are plain Qt widgets holding a ``FigureCanvasQTAgg``; they know nothing about
napari.  The widget feeds them numbers from the engine and connects the trace's frame
marker and clicks to the viewer's time slider.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

__all__ = ["TrainingPlot", "EPTracePlot", "DARK", "LIGHT", "objective_limits", "envelope"]

# (background, foreground) pairs; napari's dark and light themes.
DARK = ("#262930", "#d1d2d4")
LIGHT = ("#efebe9", "#3b3a39")

TRAIN_COLOR = "#8fb8ff"
VAL_COLOR = "#ffb347"
RATE_COLOR = "#7ddc7d"
STEP_COLOR = "#9aa0a6"
SUM_COLOR = "#ff6b5b"
MARKER_COLOR = "#ffd84d"
EXACT_COLOR = "#5fd3c6"
#: Most points a trace line is drawn with (see :func:`envelope`).
MAX_POINTS = 4000


def _style_axes(ax, bg: str, fg: str) -> None:
    ax.set_facecolor(bg)
    for spine in ax.spines.values():
        spine.set_color(fg)
    ax.tick_params(colors=fg, labelsize=8)
    ax.xaxis.label.set_color(fg)
    ax.yaxis.label.set_color(fg)
    ax.title.set_color(fg)


def objective_limits(train, val) -> tuple[float, float] | None:
    """y-range of the objective plot, robust to spikes and divergence.

    The range covers the points within three interquartile ranges of the middle half; a
    rare spike or a diverging validation objective (J reaches -1e6 and below when ΔS blows
    up) then leaves the plot instead of squashing the rest into a flat line.
    """
    values = np.concatenate([np.asarray(train, dtype=float).reshape(-1),
                             np.asarray(val, dtype=float).reshape(-1)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    q1, q3 = np.percentile(values, [25.0, 75.0])
    iqr = float(q3 - q1)
    lo = max(float(values.min()), q1 - 3.0 * iqr)
    hi = min(float(values.max()), q3 + 3.0 * iqr)
    span = max(hi - lo, 0.05)
    return float(lo - 0.1 * span), float(hi + 0.1 * span)


def envelope(t, y, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points that draw like ``(t, y)`` on a plot a few hundred
    pixels wide: the minimum and the maximum of each of ``max_points // 2`` bins, in
    time order.  A trace of 20,000 transitions then draws in a fraction of the time."""
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    n_bins = max_points // 2
    if len(y) <= max_points:
        return t, y
    edges = np.linspace(0, len(y), n_bins + 1).astype(int)
    lo = np.minimum.reduceat(y, edges[:-1])
    hi = np.maximum.reduceat(y, edges[:-1])
    first_min = np.array([np.argmin(y[a:b]) < np.argmax(y[a:b])
                          for a, b in zip(edges[:-1], edges[1:], strict=True)])
    ys = np.where(first_min[:, None], np.c_[lo, hi], np.c_[hi, lo]).reshape(-1)
    ts = np.repeat(0.5 * (t[edges[:-1]] + t[edges[1:] - 1]), 2)
    return ts, ys


class _DeferredCanvas(FigureCanvasQTAgg):
    """A canvas that redraws a moment after it was resized, not in the resize's own turn.

    A layer added to napari resizes the docks, and every plot in them then redrew in the
    same repaint as the new layer (a pause of over half a second on a loaded 2-core
    machine).  Each plot waits its own ``delay_ms`` after its last resize instead, so the
    draws come one per turn of the event loop; until then the last drawing is shown.
    """

    def __init__(self, figure: Figure, delay_ms: int):
        self._resizing = False
        super().__init__(figure)
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(int(delay_ms))
        self._redraw.timeout.connect(self.draw_idle)

    def draw_idle(self) -> None:
        if self._resizing:
            self._redraw.start()
            return
        super().draw_idle()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._resizing = True
        try:
            super().resizeEvent(event)
        finally:
            self._resizing = False


class _Canvas(QWidget):
    """A figure in a widget, themed like napari.

    Margins are fixed in pixels (``MARGINS``) and set again when the canvas is resized:
    matplotlib's constrained layout measures every label at every draw (a third of a
    second for the EP trace on a loaded 2-core machine, on the GUI thread) and warns
    when a dock is too small for it.
    """

    #: (left, right, top, bottom, vertical gap) in pixels.
    MARGINS = (64, 12, 24, 40, 10)

    def __init__(self, *, height: float, min_pixels: int, parent: QWidget | None = None,
                 redraw_delay_ms: int = 120):
        super().__init__(parent)
        self.figure = Figure(figsize=(4.0, height))
        self.canvas = _DeferredCanvas(self.figure, redraw_delay_ms)
        self.canvas.mpl_connect("resize_event", self._apply_margins)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(min_pixels)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self._bg, self._fg = DARK

    def _apply_margins(self, event=None) -> None:
        w, h = self.figure.bbox.width, self.figure.bbox.height
        if w < 1 or h < 1:
            return
        left, right, top, bottom, gap = self.MARGINS
        n_rows = max(len(self.figure.axes), 1)  # every plot here is one column
        left_f = min(left / w, 0.45)
        right_f = max(1 - right / w, left_f + 0.05)
        bottom_f = min(bottom / h, 0.45)
        top_f = max(1 - top / h, bottom_f + 0.05)
        axes_h = max((top_f - bottom_f) * h - (n_rows - 1) * gap, n_rows) / n_rows
        self.figure.subplots_adjust(left=left_f, right=right_f, bottom=bottom_f, top=top_f,
                                    hspace=gap / axes_h)

    def set_theme(self, colors: tuple[str, str]) -> None:
        """Use ``(background, foreground)`` colours and redraw."""
        self._bg, self._fg = colors
        self._restyle()
        self.canvas.draw_idle()

    def _restyle(self) -> None:
        self.figure.set_facecolor(self._bg)
        for ax in self.figure.axes:
            _style_axes(ax, self._bg, self._fg)
        for legend in [ax.get_legend() for ax in self.figure.axes]:
            if legend is not None:
                legend.get_frame().set_facecolor(self._bg)
                legend.get_frame().set_edgecolor(self._fg)
                for text in legend.get_texts():
                    text.set_color(self._fg)


class TrainingPlot(_Canvas):
    """Training and validation objective, and the running EP-rate estimate, by iteration.

    Redraws are throttled (at most every ``min_interval`` seconds): one draw costs the
    GUI thread some 50 ms, so frequent progress records must not each cause one.
    """

    def __init__(self, parent: QWidget | None = None, *, min_interval: float = 1.0):
        super().__init__(height=2.4, min_pixels=150, parent=parent)
        self.min_interval = float(min_interval)
        self._last_draw = 0.0
        self.ax_obj = self.figure.add_subplot(2, 1, 1)
        self.ax_rate = self.figure.add_subplot(2, 1, 2, sharex=self.ax_obj)
        self.reset()

    def reset(self) -> None:
        """Forget all points."""
        self.iterations: list[int] = []
        self.train: list[float] = []
        self.val_it: list[int] = []
        self.val: list[float] = []
        self.rate_it: list[int] = []
        self.rate: list[float] = []
        self.ax_obj.clear()
        self.ax_rate.clear()
        (self._train_line,) = self.ax_obj.plot([], [], color=TRAIN_COLOR, lw=1, label="train")
        (self._val_line,) = self.ax_obj.plot([], [], color=VAL_COLOR, lw=1.5, label="validation")
        (self._rate_line,) = self.ax_rate.plot([], [], color=RATE_COLOR, lw=1.5)
        self._best = self.ax_obj.axvline(np.nan, color=VAL_COLOR, lw=0.8, ls=":")
        self.ax_obj.set_ylabel("objective J", fontsize=8)
        self.ax_rate.set_ylabel("EP rate (k_B/s)", fontsize=8)
        self.ax_rate.set_xlabel("iteration", fontsize=8)
        self.ax_obj.tick_params(labelbottom=False)
        self.ax_obj.legend(loc="lower right", fontsize=7)
        self._restyle()
        self.canvas.draw_idle()

    def add_progress(self, progress, *, force: bool = False) -> None:
        """Append one ``Progress`` record (fields as in the engine) and maybe redraw."""
        it = int(progress.iteration)
        self.iterations.append(it)
        self.train.append(float(progress.train_objective))
        if progress.val_objective is not None:
            self.val_it.append(it)
            self.val.append(float(progress.val_objective))
        if progress.ep_rate is not None:
            self.rate_it.append(it)
            self.rate.append(float(progress.ep_rate))
        best = getattr(progress, "best_iteration", None)
        if best is not None:
            self._best.set_xdata([best, best])
        now = time.monotonic()
        if force or now - self._last_draw >= self.min_interval:
            self.redraw()

    def redraw(self) -> None:
        """Push the data to the lines and draw (coalesced by Qt)."""
        self._last_draw = time.monotonic()
        self._train_line.set_data(self.iterations, self.train)
        self._val_line.set_data(self.val_it, self.val)
        self._rate_line.set_data(self.rate_it, self.rate)
        for ax in (self.ax_obj, self.ax_rate):
            ax.relim()
            ax.autoscale_view()
        limits = objective_limits(self.train, self.val)
        if limits is not None:
            self.ax_obj.set_ylim(*limits)
        self.canvas.draw_idle()


class EPTracePlot(_Canvas):
    """Stochastic EP of each transition and its running sum against time.

    The transition t -> t+1 is drawn at time ``t * dt`` (the frame it starts from, as in
    the map layer).  A vertical marker shows the current frame; clicking the plot calls
    ``on_frame_clicked(frame)`` with the nearest frame.  The marker is blitted over a
    cached background, so following the time slider (e.g. while a movie plays) costs a
    fraction of a full redraw.

    Parameters
    ----------
    on_frame_clicked : callable, optional
        Called with an int frame index when the user clicks inside the axes.
    """

    def __init__(self, parent: QWidget | None = None, *,
                 on_frame_clicked: Callable[[int], None] | None = None):
        super().__init__(height=2.6, min_pixels=180, parent=parent, redraw_delay_ms=240)
        self.on_frame_clicked = on_frame_clicked
        self.ax_step = self.figure.add_subplot(2, 1, 1)
        self.ax_sum = self.figure.add_subplot(2, 1, 2, sharex=self.ax_step)
        self.ep: np.ndarray = np.zeros(0)
        self.dt = 1.0
        self.frame = 0
        self._markers = []
        self._background = None
        self.canvas.mpl_connect("button_press_event", self._on_click)
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self.set_trace(np.zeros(0), dt=1.0)

    @property
    def n_frames(self) -> int:
        """Frames of the movie the trace belongs to (transitions + 1)."""
        return len(self.ep) + 1

    def set_trace(self, ep, *, dt: float, title: str = "", exact=None) -> None:
        """Show a new trace.

        Parameters
        ----------
        ep : array-like, shape (T-1,)
            Stochastic EP of each transition, k_B.
        dt : float
            Seconds per frame.
        title : str
            Shown above the plot (e.g. the layer name and the EP rate).
        exact : array-like, shape (T-1,), optional
            Exact EP of each transition (simulated movies), drawn for comparison.
        """
        self.ep = np.asarray(ep, dtype=float).reshape(-1)
        self.dt = float(dt)
        t = np.arange(len(self.ep)) * self.dt
        for ax in (self.ax_step, self.ax_sum):
            ax.clear()
        self.exact = None if exact is None else np.asarray(exact, dtype=float).reshape(-1)
        if self.exact is not None:
            self.ax_step.plot(*envelope(t, self.exact), color=EXACT_COLOR, lw=0.6, alpha=0.8)
        self.ax_step.plot(*envelope(t, self.ep), color=STEP_COLOR, lw=0.6)
        self.ax_step.axhline(0.0, color=self._fg, lw=0.5, alpha=0.5)
        if self.exact is not None:
            self.ax_sum.plot(*envelope(t, np.cumsum(self.exact)), color=EXACT_COLOR, lw=1.2,
                             label="exact (simulation)")
        self.ax_sum.plot(*envelope(t, np.cumsum(self.ep)), color=SUM_COLOR, lw=1.2,
                         label="estimate")
        if self.exact is not None:
            self.ax_sum.legend(loc="upper left", fontsize=7)
        self.ax_step.set_ylabel("\u0394S (k_B)", fontsize=8)
        self.ax_sum.set_ylabel("\u03a3 \u0394S (k_B)", fontsize=8)
        self.ax_sum.set_xlabel("time (s)", fontsize=8)
        self.ax_step.tick_params(labelbottom=False)
        self.ax_step.set_title(title, fontsize=9)
        if len(t):
            self.ax_sum.set_xlim(0.0, max(t[-1], self.dt))
        self._markers = [ax.axvline(self.frame * self.dt, color=MARKER_COLOR, lw=1.2,
                                    animated=True)
                         for ax in (self.ax_step, self.ax_sum)]
        self._background = None
        self._restyle()
        self.canvas.draw_idle()

    def set_frame(self, frame: int) -> None:
        """Move the marker to ``frame`` (a movie frame index)."""
        self.frame = int(frame)
        x = self.frame * self.dt
        for marker in self._markers:
            marker.set_xdata([x, x])
        if self._background is None:
            self.canvas.draw_idle()
        else:
            self.canvas.restore_region(self._background)
            self._blit_markers()

    def _on_draw(self, event) -> None:
        # A full draw leaves out the (animated) markers: keep it, then draw them into the
        # same buffer.  No blit here: a pending draw may run inside the canvas's
        # paintEvent (or a grab), where a blit's repaint() is a "Recursive repaint"; the
        # draw's own update() shows the buffer.
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        for marker in self._markers:
            marker.axes.draw_artist(marker)

    def _blit_markers(self) -> None:
        for marker in self._markers:
            marker.axes.draw_artist(marker)
        self.canvas.blit(self.figure.bbox)

    def frame_at(self, x: float) -> int:
        """Nearest movie frame to time ``x`` (seconds), clipped to the movie."""
        return int(np.clip(np.rint(x / self.dt), 0, max(self.n_frames - 1, 0)))

    def marker_x(self) -> float:
        """Time (s) where the marker is drawn."""
        return float(self._markers[0].get_xdata()[0]) if self._markers else float("nan")

    def _on_click(self, event) -> None:
        if event.inaxes not in (self.ax_step, self.ax_sum) or event.xdata is None:
            return
        if event.button not in (None, 1):
            return
        frame = self.frame_at(event.xdata)
        self.set_frame(frame)
        if self.on_frame_clicked is not None:
            self.on_frame_clicked(frame)
