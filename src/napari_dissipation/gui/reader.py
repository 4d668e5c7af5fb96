"""napari reader for TIFF, OME-TIFF, ImageJ and (OME-)Zarr movies, with dt and pixel size.

The same code the command line uses (:func:`napari_dissipation.io.read_movies`) opens
the file lazily; the layer gets the frame interval and pixel size from its metadata:
``scale=(dt, px, px)`` and ``units=("s", "µm", "µm")`` for what the file states (1 and
"pixel" for what it does not), and ``metadata`` holding ``dt``, ``dt_source``,
``pixel_size``, ``pixel_unit``, ``path`` and ``sha256`` (what the widget reads, and what
a run's record needs).  A file holding several movies (an (M, T, H, W) array) gives one
layer of shape (M, T, H, W) whose first axis is the movie.  A file this reader cannot open
without a choice (several channels, z-planes or series) is left to napari's other
readers: :func:`get_reader` returns None for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import TIFF_SUFFIXES, read_movies
from ..io.paths import is_zarr
from ..record import file_sha256

__all__ = ["get_reader", "layer_data"]

#: The layer's dt_source when the file states no frame interval.
NO_DT = "none"


def get_reader(path):
    """npe2 reader hook: a function giving the layer, or None when this reader can't help.

    Parameters
    ----------
    path : str or list of str
        One TIFF (``.tif``, ``.tiff``, OME-TIFF, ImageJ) or a Zarr folder; a list of one.

    Returns
    -------
    callable or None
        ``reader(path) -> [(data, kwargs, "image")]``; None for other files, for lists of
        several files and for files that need a channel, z-plane or series choice.
    """
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if not (p.suffix.lower() in TIFF_SUFFIXES or p.suffix.lower() == ".zarr" or is_zarr(p)):
        return None
    try:  # opened here once: the file's pages are parsed only once
        movies = read_movies([p])
    except InputError:
        return None
    return lambda _path: layer_data(movies)


def layer_data(movies) -> list[tuple]:
    """The image layer of the movies of one file, with scale, units and metadata.

    Parameters
    ----------
    movies : list of MovieFile
        From :func:`napari_dissipation.io.read_movies` on one file: one movie, or the
        movies of a file holding several.

    Returns
    -------
    list of (data, kwargs, "image")
        ``data`` is (T, H, W), or (M, T, H, W) for several movies; lazy (never the whole
        file read into memory).
    """
    first = movies[0]
    dt, px = first.dt, first.pixel_size
    known_px = px is not None and first.pixel_unit is not None
    scale = [dt if dt else 1.0, px if known_px else 1.0, px if known_px else 1.0]
    units = ["s" if dt else "pixel"] + [first.pixel_unit if known_px else "pixel"] * 2
    labels = ["t", "y", "x"]
    metadata = {"dt": dt, "dt_source": first.dt_origin if dt else NO_DT,
                "pixel_size": px, "pixel_unit": first.pixel_unit, "path": str(first.path),
                "sha256": file_sha256(first.path), "axes": first.axes,
                "selection": dict(first.selection), "movies": len(movies)}
    if len(movies) == 1:
        data = _lazy(first.data)
    else:
        import dask.array as da

        data = da.stack([_lazy(m.data) for m in movies])
        scale, units, labels = [1.0, *scale], ["dimensionless", *units], ["movie", *labels]
    kwargs = {"name": first.path.name, "scale": tuple(scale), "units": tuple(units),
              "axis_labels": tuple(labels), "metadata": metadata}
    return [(data, kwargs, "image")]


def _lazy(data):
    """A memory map as it is; a frame-on-demand movie as a dask array of one-frame chunks."""
    if isinstance(data, np.ndarray):
        return data
    import dask.array as da

    return da.from_array(data, chunks=(1, *data.shape[1:]), asarray=True, fancy=False,
                         name=False)
