"""Layout of the widget's inputs and outputs, free of napari and Qt.

Everything here works on plain arrays, shapes, scales and dictionaries so that it can be
tested without a display: which part of an image layer is a (T, H, W) movie, where its
frame interval comes from, and how the dissipation maps are placed over the movie
(``(data, kwargs, "image")`` layer-data tuples that the widget hands to napari).

Alignment convention: the map of transition t -> t+1 is stored at index t of the map
layer's time axis, and the map layer gets the movie's scale and translate, so at the
viewer's frame t the overlay shows what happens between frame t and frame t+1.  The last
movie frame has no transition and shows no map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "DISSIPATION_COLORMAP",
    "DENSITY_NAME",
    "MAP_NAME",
    "MovieSelection",
    "layer_problem",
    "time_axis_choices",
    "dt_from_layer",
    "symmetric_limits",
    "transition_map_layer",
    "rate_density_layer",
    "format_rate",
    "simulation_truth",
]

# Blue for negative, red for positive, fully transparent at zero: with translucent
# blending the movie stays visible where nothing dissipates.
DISSIPATION_COLORMAP = {
    "name": "dissipation",
    "display_name": "dissipation (blue -, red +)",
    "colors": np.array(
        [
            [0.20, 0.45, 1.00, 1.0],
            [0.20, 0.45, 1.00, 0.0],
            [1.00, 0.22, 0.15, 0.0],
            [1.00, 0.22, 0.15, 1.0],
        ]
    ),
    "controls": np.array([0.0, 0.5, 0.5, 1.0]),
}
MAP_OPACITY = 0.8
MAP_BLENDING = "translucent"
#: Layer names: short enough for napari's layer list, with the unit of the values.
DENSITY_NAME = "EP density (k_B/s/px)"
MAP_NAME = "EP per transition (k_B/px)"
#: Where each layer's colour bar sits on the canvas (apart, when both are visible).
COLORBAR_POSITION = {"rate_density": "top_right", "transition_map": "bottom_right"}
#: Unit names that mean seconds on a layer's time axis (napari keeps pint units).
SECONDS = ("s", "second", "seconds", "sec")


@dataclass(frozen=True)
class MovieSelection:
    """Which axes of an image layer form the (T, H, W) movie.

    Parameters
    ----------
    ndim : int
        Number of axes of the layer data (>= 3).  The last two are Y and X.
    time_axis : int
        The time axis, one of the leading ``ndim - 2`` axes.
    fixed : dict of int to int
        Index used for every other leading axis (e.g. the viewer's current position).
    roi : (y0, y1, x0, x1) or None
        Region of the frame used (pixels of the layer data, ends exclusive), e.g. from a
        Shapes rectangle; None for the whole frame.
    """

    ndim: int
    time_axis: int
    fixed: Mapping[int, int] = field(default_factory=dict)
    roi: tuple[int, int, int, int] | None = None

    def __post_init__(self):
        if self.ndim < 3:
            raise ValueError(f"a movie needs at least 3 axes, got {self.ndim}")
        if not 0 <= self.time_axis < self.ndim - 2:
            raise ValueError(
                f"time axis must be one of the first {self.ndim - 2} axes, got {self.time_axis}"
            )
        others = set(range(self.ndim - 2)) - {self.time_axis}
        if set(self.fixed) != others:
            raise ValueError(
                f"an index is needed for axes {sorted(others)}, got {dict(self.fixed)}"
            )

    @property
    def slices(self) -> tuple:
        """Index tuple that cuts the (T, H, W) movie out of the layer data."""
        lead = tuple(self.fixed.get(a, slice(None)) for a in range(self.ndim - 2))
        if self.roi is None:
            return lead + (slice(None), slice(None))
        y0, y1, x0, x1 = self.roi
        return lead + (slice(y0, y1), slice(x0, x1))

    def movie(self, data):
        """The (T, H, W) movie as a view (lazy for dask or memory-mapped data)."""
        if self.ndim == 3 and self.roi is None:
            return data
        return data[self.slices]

    @property
    def roi_flag(self) -> str:
        """The region as the command line's ``--roi Y0:Y1,X0:X1`` ('' for the whole frame)."""
        if self.roi is None:
            return ""
        y0, y1, x0, x1 = self.roi
        return f"--roi {y0}:{y1},{x0}:{x1}"

    def describe_fixed(self) -> str:
        """Human-readable note on the axes that are held fixed ('' when none)."""
        if not self.fixed:
            return ""
        parts = [f"axis {a} at index {i}" for a, i in sorted(self.fixed.items())]
        return "uses " + ", ".join(parts) + " (the viewer's current position)"

    def expand(self, array: np.ndarray) -> np.ndarray:
        """Give a (T', H, W) array the layer's axes, with length 1 on the fixed axes."""
        return np.expand_dims(array, axis=tuple(sorted(self.fixed))) if self.fixed else array

    def translate_for(self, scale: Sequence[float], translate: Sequence[float]) -> np.ndarray:
        """Layer translate that puts the length-1 fixed axes where the movie was cut."""
        out = np.asarray(translate, dtype=float).copy()
        for axis, index in self.fixed.items():
            out[axis] += index * float(scale[axis])
        if self.roi is not None:  # the maps start at the region's corner
            out[-2] += self.roi[0] * float(scale[-2])
            out[-1] += self.roi[2] * float(scale[-1])
        return out


def roi_from_shapes(shapes, image) -> tuple[int, int, int, int] | None:
    """Bounding box (y0, y1, x0, x1) in ``image`` data pixels of the first shape of a
    Shapes layer (a rectangle drawn over the movie), clipped to the frame; None when the
    layer has no shape or the box misses the frame."""
    if shapes is None or len(shapes.data) == 0:
        return None
    # Y and X only (the shape may live on a time step, or have no time axis at all);
    # scale and translate, the transforms napari sets from files, not rotations.
    yx = np.asarray(shapes.data[0], dtype=float)[:, -2:]
    world = yx * np.asarray(shapes.scale[-2:]) + np.asarray(shapes.translate[-2:])
    corners = (world - np.asarray(image.translate[-2:])) / np.asarray(image.scale[-2:])
    h, w = image.data.shape[-2:]
    y0, x0 = np.floor(corners.min(axis=0)).astype(int)
    y1, x1 = np.ceil(corners.max(axis=0)).astype(int)
    y0, y1 = int(np.clip(y0, 0, h)), int(np.clip(y1, 0, h))
    x0, x1 = int(np.clip(x0, 0, w)), int(np.clip(x1, 0, w))
    if y1 - y0 < 2 or x1 - x0 < 2:
        return None
    return y0, y1, x0, x1


def layer_problem(name: str, shape: Sequence[int], *, rgb: bool = False,
                  multiscale: bool = False) -> str | None:
    """Why an image layer cannot be used as a movie, or None when it can.

    Parameters
    ----------
    name : str
        Layer name, quoted in the message.
    shape : sequence of int
        Shape of the layer data.
    rgb, multiscale : bool
        The layer's flags of the same names.

    Returns
    -------
    str or None
        One sentence for the user.
    """
    if multiscale:
        return (f"layer '{name}' is multiscale; open the full-resolution movie as a plain "
                "image layer")
    if rgb:
        return (f"layer '{name}' is RGB; the estimator needs a single-channel movie "
                "(T, Y, X): split the channels first (layer menu > Split RGB)")
    if len(shape) < 3:
        return (f"layer '{name}' is a single {len(shape)}-D image; the estimator needs a movie "
                "with a time axis (T, Y, X)")
    if min(shape[-2:]) < 2:
        return f"layer '{name}' has frames of shape {tuple(shape[-2:])}; need at least 2x2 pixels"
    if max(shape[:-2]) < 3:
        return f"layer '{name}' has fewer than 3 frames along every axis; not a movie"
    return None


def time_axis_choices(shape: Sequence[int]) -> list[int]:
    """Axes that can be the time axis: every axis but the last two (Y, X)."""
    return list(range(max(0, len(shape) - 2)))


def dt_from_layer(metadata: Mapping | None, scale: Sequence[float], time_axis: int,
                  units: Sequence | None = None) -> tuple[float | None, str]:
    """Frame interval of a layer and where it comes from.

    ``metadata["dt"]`` wins (written by the plugin's reader from the file, which also
    puts ``path`` and ``dt_source`` there; or by a script); otherwise the layer's scale
    along the time axis when its unit is seconds, or when it is not 1 (napari's
    default); otherwise unknown.

    Returns
    -------
    dt : float or None
        Seconds per frame, or None when the layer says nothing.
    source : str
        ``"file metadata (<dt_source>)"``, ``"layer metadata"``, ``"layer scale"`` or
        ``""``.
    """
    metadata = metadata or {}
    value = metadata.get("dt")
    try:
        value = None if value is None else float(value)
    except (TypeError, ValueError):
        value = None
    if value is not None and np.isfinite(value) and value > 0:
        if "path" in metadata or "dt_source" in metadata:
            detail = str(metadata.get("dt_source") or "").strip()
            return value, f"file metadata ({detail})" if detail else "file metadata"
        return value, "layer metadata"
    if 0 <= time_axis < len(scale):
        s = float(scale[time_axis])
        unit = str(units[time_axis]).strip().lower() if units and time_axis < len(units) else ""
        if np.isfinite(s) and s > 0 and (unit in SECONDS
                                         or not np.isclose(s, 1.0, rtol=0, atol=1e-12)):
            return s, "layer scale"
    return None, ""


def symmetric_limits(values, *, percentile: float = 99.0,
                     max_samples: int = 4_000_000) -> tuple[float, float]:
    """Contrast limits (-c, c) with c the given percentile of ``|values|``.

    Large arrays are subsampled with a regular stride (deterministic).  An all-zero or
    empty input gives (-1, 1) so that napari still gets an increasing range.
    """
    flat = np.asarray(values).reshape(-1)
    if flat.size > max_samples:
        flat = flat[:: int(np.ceil(flat.size / max_samples))]
    flat = np.abs(flat[np.isfinite(flat)])
    c = float(np.percentile(flat, percentile)) if flat.size else 0.0
    if not c > 0:
        c = float(flat.max()) if flat.size else 0.0
    if not c > 0:
        c = 1.0
    return (-c, c)


def _jsonable(meta: Mapping) -> dict:
    out = {}
    for key, value in meta.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def _units_kwargs(units: Sequence | None, n: int) -> dict:
    """``{"units": ...}`` for a layer of ``n`` axes: the movie's last ``n`` units."""
    if not units or len(units) < n:
        return {}
    return {"units": tuple(str(u) for u in units[len(units) - n:])}


def _common_kwargs(name: str, limits, meta: dict, visible: bool) -> dict:
    return {
        "name": name,
        "colormap": DISSIPATION_COLORMAP,
        "contrast_limits": tuple(float(c) for c in limits),
        "blending": MAP_BLENDING,
        "opacity": MAP_OPACITY,
        "interpolation2d": "nearest",
        "visible": visible,
        "metadata": {"dissipation": _jsonable(meta)},
    }


def transition_map_layer(maps: np.ndarray, *, selection: MovieSelection,
                         scale: Sequence[float], translate: Sequence[float],
                         name: str = MAP_NAME, metadata: Mapping | None = None,
                         units: Sequence | None = None, limits=None,
                         visible: bool = True) -> tuple:
    """Layer-data tuple for the per-transition dissipation maps.

    Parameters
    ----------
    maps : ndarray, shape (T-1, H, W)
        Map of transition t -> t+1 at index t (k_B per transition per pixel).
    selection : MovieSelection
        How the movie was cut out of its layer.
    scale, translate : sequence of float
        The movie layer's scale and translate (one per layer axis).
    name : str
        Layer name.
    metadata : mapping, optional
        Stored under ``metadata["dissipation"]`` with ``kind="transition_map"``.
    units : sequence of str, optional
        The movie layer's units (one per layer axis): the map is then in µm and s too.
    limits : (float, float), optional
        Contrast limits (default :func:`symmetric_limits` of ``maps``).
    visible : bool
        Whether the layer starts visible.

    Returns
    -------
    tuple
        ``(data, kwargs, "image")``; data has the movie layer's number of axes.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (T-1, H, W), got shape {maps.shape}")
    meta = {"kind": "transition_map", "units": "k_B per transition per pixel",
            "alignment": "index t holds transition t -> t+1", **(metadata or {})}
    kwargs = _common_kwargs(name, symmetric_limits(maps) if limits is None else limits,
                            meta, visible)
    kwargs["scale"] = tuple(float(s) for s in scale)
    kwargs["translate"] = tuple(float(t) for t in selection.translate_for(scale, translate))
    kwargs.update(_units_kwargs(units, selection.ndim))
    return selection.expand(maps), kwargs, "image"


def rate_density_layer(density: np.ndarray, *, selection: MovieSelection, n_frames: int,
                       scale: Sequence[float], translate: Sequence[float],
                       name: str = DENSITY_NAME, metadata: Mapping | None = None,
                       units: Sequence | None = None, visible: bool = True) -> tuple:
    """Layer-data tuple for the time-averaged map (k_B per second per pixel).

    For a 3-D movie the layer is 2-D and shows at every frame.  For a layer with more
    axes the map is broadcast (as a read-only view) along the time axis and placed at the
    fixed index of every other axis, so it lines up with the movie it came from.

    Parameters
    ----------
    density : ndarray, shape (H, W)
        Time-averaged dissipation rate per pixel, k_B/s.
    n_frames : int
        Length of the movie's time axis (used only for layers with more than 3 axes).
    units : sequence of str, optional
        The movie layer's units (one per layer axis).
    visible : bool
        Whether the layer starts visible (it is what a result shows first).
    """
    density = np.asarray(density)
    if density.ndim != 2:
        raise ValueError(f"rate density must be (H, W), got shape {density.shape}")
    meta = {"kind": "rate_density", "units": "k_B per second per pixel", **(metadata or {})}
    common = _common_kwargs(name, symmetric_limits(density), meta, visible)
    if selection.ndim == 3:
        common["scale"] = tuple(float(s) for s in scale[-2:])
        common["translate"] = tuple(float(t) for t in translate[-2:])
        common.update(_units_kwargs(units, 2))
        return density, common, "image"
    stack = np.broadcast_to(density, (int(n_frames), *density.shape))
    common["scale"] = tuple(float(s) for s in scale)
    common["translate"] = tuple(float(t) for t in selection.translate_for(scale, translate))
    common.update(_units_kwargs(units, selection.ndim))
    return selection.expand(stack), common, "image"


def simulation_truth(metadata: Mapping | None, n_transitions: int) -> tuple:
    """Exact EP that a simulated movie carries in its metadata, if any.

    The package's simulators (and its napari sample data) put ``metadata["truth"]`` on
    the movie, with ``step_ep`` (exact EP of each transition, k_B) and ``ep_rate``
    (k_B/s).  Other layers have no such entry.

    Returns
    -------
    step_ep : ndarray, shape (n_transitions,), or None
    ep_rate : float or None
    """
    truth = (metadata or {}).get("truth")
    if not isinstance(truth, Mapping):
        return None, None
    step = truth.get("step_ep")
    step = None if step is None else np.asarray(step, dtype=float).reshape(-1)
    if step is not None and len(step) != n_transitions:
        step = None
    rate = truth.get("ep_rate")
    try:
        rate = None if rate is None else float(rate)
    except (TypeError, ValueError):
        rate = None
    return step, rate


def format_rate(rate: float | None, ci: Sequence[float] | None = None, *,
                unit: str = "k_B/s", lower_bound: bool = False) -> str:
    """``"EP rate = 2.03 k_B/s (95% CI 1.90–2.15)"``.

    With an interval, the numbers get the decimals that show two significant digits of
    its width; without one, three significant digits.  A ``lower_bound`` reads
    ``"EP rate ≥ 1.90 k_B/s (lower bound; 95% CI 1.60–2.30)"``.
    """
    if rate is None or not np.isfinite(rate):
        return "EP rate: not available"
    relation, note = ("\u2265", "lower bound; ") if lower_bound else ("=", "")
    if ci is None or len(ci) != 2 or not all(np.isfinite(ci)):
        text = f"EP rate {relation} {rate:.3g} {unit}"
        return text + " (lower bound)" if lower_bound else text
    width = abs(float(ci[1]) - float(ci[0]))
    decimals = 2 if width == 0 else int(min(8, max(0, 1 - np.floor(np.log10(width)))))
    f = f".{decimals}f"
    sep = "–" if min(ci) >= 0 else " to "  # "-3.0–1.5" reads badly
    return (f"EP rate {relation} {rate:{f}} {unit} "
            f"({note}95% CI {ci[0]:{f}}{sep}{ci[1]:{f}})")
