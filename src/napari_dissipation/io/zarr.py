"""Zarr arrays and OME-Zarr groups (folders), read frame by frame.

The ``zarr`` package is optional and imported only when a Zarr store is opened.  (This
module's name does not hide the package: imports are absolute, so ``import zarr`` here
is the package.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .axes import MOVIE_AXIS, movie_indices, plan, refuse_unused, resolve_axes
from .movie import LazyMovie, MovieFile
from .units import LENGTH_UNITS_UM, TIME_UNITS, unit_factor

__all__ = ["read_zarr"]


def read_zarr(path: Path, *, channel, z, series, axes=None) -> list[MovieFile]:
    """Open a Zarr array or OME-Zarr group lazily: one movie, or several for an M axis.

    See :func:`napari_dissipation.io.read_movies`.  Axis names come from ``axes``, else
    the array's dimension names (Zarr 3), ``_ARRAY_DIMENSIONS`` (xarray's convention) or
    the OME multiscales; without names the rule of :mod:`.axes` applies ((T, H, W) or
    (M, T, H, W)).  dt and pixel size come from the OME scale of the first resolution level.
    """
    try:
        import zarr
    except ImportError:
        raise InputError(f"{path}: reading Zarr needs the zarr package "
                         "(pip install zarr)") from None
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path}: cannot open as Zarr ({type(exc).__name__}: {exc})") from None
    meta = {"dt": None, "dt_origin": None, "pixel_size": None, "pixel_unit": None}
    if isinstance(node, zarr.Array):
        arr, array_path = node, ""
        names = (getattr(getattr(arr, "metadata", None), "dimension_names", None)
                 or arr.attrs.get("_ARRAY_DIMENSIONS"))
        file_axes = "".join(str(n)[0].upper() for n in names) if names and all(names) else None
    else:
        arr, array_path, file_axes = _group_array(path, node, meta)
    shape = tuple(arr.shape)
    if file_axes is not None and len(file_axes) != len(shape):
        file_axes = None
    letters = resolve_axes(path, file_axes, shape, axes)
    index, _, selection = plan(path, letters, shape, channel=channel, z=z)
    refuse_unused(path, {"series": series}, {})
    hw = tuple(n for a, n in zip(letters, shape, strict=True) if a in "YX")
    indices = movie_indices(letters, shape, index)
    several = MOVIE_AXIS in letters
    out = []
    for m, ix in enumerate(indices):
        t_axis = next(i for i, v in enumerate(ix) if isinstance(v, slice))
        reader = _ZarrPlanes(path, array_path, ix, t_axis)
        data = LazyMovie(reader, shape[t_axis], hw, arr.dtype, name=str(path))
        out.append(MovieFile(path, data, selection=selection, axes=letters,
                             movie=m if several else None, n_movies=len(indices), **meta))
    return out


def _group_array(path, node, meta: dict):
    """(array, its path in the group, axes or None) of a group; fills ``meta`` from OME.

    An OME-Zarr group gives its first resolution level; any other group must hold exactly
    one array.
    """
    attrs = dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        arrays = sorted(name for name, _ in node.arrays())
        if len(arrays) != 1:
            raise InputError(f"{path}: a Zarr group with {len(arrays)} arrays "
                             f"({', '.join(arrays[:6])}) and no OME multiscales; give the "
                             "array's folder instead")
        return node[arrays[0]], arrays[0], None
    ms = multiscales[0]
    level0 = ms["datasets"][0]
    array_path = level0["path"]
    ax = ms.get("axes") or []
    axes = "".join((a["name"] if isinstance(a, dict) else str(a))[0].upper() for a in ax)
    units = [a.get("unit") if isinstance(a, dict) else None for a in ax]
    scale = next((tr.get("scale") for tr in level0.get("coordinateTransformations", [])
                  if tr.get("type") == "scale"), None)
    if scale and axes and len(scale) == len(axes):
        if "T" in axes:
            i = axes.index("T")
            factor = unit_factor(units[i], TIME_UNITS, None)
            if factor is not None and units[i] is not None:
                meta["dt"], meta["dt_origin"] = float(scale[i]) * factor, "OME-Zarr scale"
        if "X" in axes:
            i = axes.index("X")
            factor = unit_factor(units[i], LENGTH_UNITS_UM, None)
            if factor is not None:
                meta["pixel_size"], meta["pixel_unit"] = float(scale[i]) * factor, "µm"
    return node[array_path], array_path, axes


class _ZarrPlanes:
    """Picklable frame reader over a Zarr array (reopened in each process)."""

    def __init__(self, path, array_path, index, t_axis):
        self.path = str(path)
        self.array_path = array_path
        self.index = list(index)
        self.t_axis = t_axis
        self._arr = None
        self._pid = None

    def __getstate__(self):
        return {**self.__dict__, "_arr": None, "_pid": None}

    def __call__(self, t: int) -> np.ndarray:
        if self._arr is None or self._pid != os.getpid():
            self._arr = _open_zarr_array(self.path, self.array_path)
            self._pid = os.getpid()
        index = list(self.index)
        index[self.t_axis] = int(t)
        return np.asarray(self._arr[tuple(index)])


def _open_zarr_array(path, array_path):
    import zarr

    node = zarr.open(store=str(path), mode="r")
    return node[array_path] if array_path else node
