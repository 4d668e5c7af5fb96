"""Opening movies: one entry point for every kind of file, and sets of movies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .axes import check_movie_shape, refuse_unused
from .movie import MovieFile
from .paths import crop, expand_movie_paths, is_zarr, parse_roi, resolve_roi
from .raw import mapped_or_read
from .tiff import read_tiff
from .zarr import read_zarr

__all__ = ["read_movie", "read_movies"]


def read_movie(path, *, channel: int | None = None, z: int | None = None,
               series: int | None = None, roi=None) -> MovieFile:
    """Open one movie lazily, with its frame interval and pixel size when the file has them.

    Parameters
    ----------
    path : str or Path
        A TIFF, OME-TIFF or ImageJ hyperstack; a ``.npy`` array (memory-mapped); or, when
        ``zarr`` is installed, a Zarr array or OME-Zarr group (a folder).
    channel, z : int, optional
        Which channel (or colour sample) and which z-plane to use when the file holds
        several; refused when the file holds several and none is named.
    series : int, optional
        Which series (position, OME Image) to use when the file holds several.
    roi : tuple of int or str, optional
        ``(y0, y1, x0, x1)`` crop of every frame in pixels (or the text ``"Y0:Y1,X0:X1"``).

    Returns
    -------
    MovieFile
        ``data`` is a (T, H, W) read-only memory map when the pixel data are stored
        uncompressed in one block, else a :class:`LazyMovie` reading frames on demand.

    Raises
    ------
    InputError
        One line naming the file and the problem: missing, unreadable, truncated, not a
        movie (a single image, RGB without a channel choice), or several channels,
        z-planes or series without a choice (the message lists what the file holds).
        When a choice would fix it, ``option`` names it: "channel", "z", "series" or "roi".
    """
    path = Path(path)
    if isinstance(roi, str):
        roi = parse_roi(roi)
    for name, value in (("channel", channel), ("z", z), ("series", series)):
        if value is not None and (not isinstance(value, int | np.integer) or value < 0):
            raise InputError(f"{name} must be a non-negative integer, got {value!r}",
                             option=name)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir() or path.suffix.lower() == ".zarr":
        if not is_zarr(path):
            raise InputError(f"{path}: is a folder but not a Zarr array or group; a folder of "
                             "TIFF movies is several movies, not one")
        movie = read_zarr(path, channel=channel, z=z, series=series)
    elif path.suffix.lower() == ".npy":
        movie = _read_npy(path, channel=channel, z=z, series=series)
    else:
        movie = read_tiff(path, channel=channel, z=z, series=series)
    if roi is not None:
        roi = resolve_roi(movie.data.shape, roi, name=str(path))
        movie.data = crop(movie.data, roi, name=str(path))
        movie.selection["roi"] = roi
    movie.selection.setdefault("roi", None)
    return movie


def read_movies(paths, *, channel: int | None = None, z: int | None = None,
                series: int | None = None, roi=None) -> list[MovieFile]:
    """Open several movies lazily as one data set of independent movies.

    Folders and globs are expanded (:func:`expand_movie_paths`); every movie gets the
    same selection (see :func:`read_movie`); all must have the same frame size (after
    the ROI), else the first mismatch is refused naming both files (``option="roi"``).
    """
    movies = [read_movie(p, channel=channel, z=z, series=series, roi=roi)
              for p in expand_movie_paths(paths)]
    for m in movies[1:]:
        if tuple(m.data.shape[1:]) != tuple(movies[0].data.shape[1:]):
            raise InputError(
                f"{m.path}: frames of {_hw(m.data.shape)} px differ from "
                f"{movies[0].path} ({_hw(movies[0].data.shape)} px); the movies of one data "
                "set must have the same frame size; crop them to a common region",
                option="roi")
    return movies


def _read_npy(path: Path, *, channel, z, series) -> MovieFile:
    """A (T, H, W) ``.npy`` array, memory-mapped (no axes to choose from)."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: cannot read as .npy ({exc})") from None
    if data.ndim == 3 and data.flags.c_contiguous:
        data = mapped_or_read(path, data.dtype, data.offset, data.shape, (slice(None),) * 3)
    movie = MovieFile(path, data, axes="TYX" if data.ndim == 3 else None)
    check_movie_shape(path, data.shape)
    refuse_unused(path, {"channel": channel, "z": z, "series": series}, {})
    return movie


def _hw(shape) -> str:
    return f"{shape[1]} x {shape[2]}"
