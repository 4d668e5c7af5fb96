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
    """

    ndim: int
    time_axis: int
    fixed: Mapping[int, int] = field(default_factory=dict)

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
        return tuple(self.fixed.get(a, slice(None)) for a in range(self.ndim))

    def movie(self, data):
        """The (T, H, W) movie as a view (lazy for dask or memory-mapped data)."""
        if self.ndim == 3:
            return data
        return data[self.slices]

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
        return out


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


def dt_from_layer(metadata: Mapping | None, scale: Sequence[float],
                  time_axis: int) -> tuple[float | None, str]:
    """Frame interval of a layer and where it comes from.

    ``metadata["dt"]`` wins; otherwise the layer's scale along the time axis when it is
    not 1 (napari's default); otherwise unknown.

    Returns
    -------
    dt : float or None
        Seconds per frame, or None when the layer says nothing.
    source : str
        ``"layer metadata"``, ``"layer scale"`` or ``""``.
    """
    value = (metadata or {}).get("dt")
    try:
        value = None if value is None else float(value)
    except (TypeError, ValueError):
        value = None
    if value is not None and np.isfinite(value) and value > 0:
        return value, "layer metadata"
    if 0 <= time_axis < len(scale):
        s = float(scale[time_axis])
        if np.isfinite(s) and s > 0 and not np.isclose(s, 1.0, rtol=0, atol=1e-12):
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


def transition_map_layer(maps: np.ndarray, *, selection: MovieSelection,
                         scale: Sequence[float], translate: Sequence[float], name: str,
                         metadata: Mapping | None = None) -> tuple:
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
    kwargs = {
        "name": name,
        "scale": tuple(float(s) for s in scale),
        "translate": tuple(float(t) for t in selection.translate_for(scale, translate)),
        "colormap": DISSIPATION_COLORMAP,
        "contrast_limits": symmetric_limits(maps),
        "blending": MAP_BLENDING,
        "opacity": MAP_OPACITY,
        "interpolation2d": "nearest",
        "metadata": {"dissipation": _jsonable(meta)},
    }
    return selection.expand(maps), kwargs, "image"


def rate_density_layer(density: np.ndarray, *, selection: MovieSelection, n_frames: int,
                       scale: Sequence[float], translate: Sequence[float], name: str,
                       metadata: Mapping | None = None, visible: bool = False) -> tuple:
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
    visible : bool
        Whether the layer starts visible (it covers the per-transition overlay).
    """
    density = np.asarray(density)
    if density.ndim != 2:
        raise ValueError(f"rate density must be (H, W), got shape {density.shape}")
    meta = {"kind": "rate_density", "units": "k_B per second per pixel", **(metadata or {})}
    common = {
        "name": name,
        "colormap": DISSIPATION_COLORMAP,
        "contrast_limits": symmetric_limits(density),
        "blending": MAP_BLENDING,
        "opacity": MAP_OPACITY,
        "interpolation2d": "nearest",
        "visible": visible,
        "metadata": {"dissipation": _jsonable(meta)},
    }
    if selection.ndim == 3:
        common["scale"] = tuple(float(s) for s in scale[-2:])
        common["translate"] = tuple(float(t) for t in translate[-2:])
        return density, common, "image"
    stack = np.broadcast_to(density, (int(n_frames), *density.shape))
    common["scale"] = tuple(float(s) for s in scale)
    common["translate"] = tuple(float(t) for t in selection.translate_for(scale, translate))
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
