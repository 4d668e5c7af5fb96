"""Opening movies: one entry point for every kind of file, and sets of movies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .axes import MOVIE_AXIS, movie_indices, plan, refuse_unused, resolve_axes
from .movie import MovieFile
from .paths import crop, expand_movie_paths, is_zarr, parse_roi, resolve_roi
from .raw import mapped_or_read
from .tiff import read_tiff
from .zarr import read_zarr

__all__ = ["read_movie", "read_movies", "describe_inputs"]


def read_movie(path, *, channel: int | None = None, z: int | None = None,
               series: int | None = None, roi=None, axes: str | None = None,
               movie: int | None = None) -> MovieFile:
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
    axes : str, optional
        The stored array's axes in letters, e.g. ``"MTYX"`` (M movies of T frames) or
        ``"TCYX"``, overriding the file's own names; for arrays without names the rule
        of :mod:`napari_dissipation.io.axes` applies: axes of length 1 ignored, then
        (T, H, W) or (M, T, H, W).
    movie : int, optional
        Which movie of a file holding several (an M axis); needed when it holds more
        than one (:func:`read_movies` opens them all).

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
        z-planes, series or movies without a choice (the message lists what the file
        holds).  When a choice would fix it, ``option`` names it: "channel", "z",
        "series", "roi", "axes" or "movie".
    """
    movies = _open(path, channel=channel, z=z, series=series, roi=roi, axes=axes)
    n = len(movies)
    if movie is None and n > 1:
        raise InputError(f"{path}: holds {n} movies (axes {movies[0].axes}); choose one "
                         f"(0-{n - 1}) or open them all as a data set", option="movie")
    if movie is not None and not (isinstance(movie, int | np.integer) and 0 <= movie < n):
        raise InputError(f"{path}: movie {movie!r} is out of range: the file holds "
                         f"{'movies 0-' + str(n - 1) if n > 1 else 'one movie'}",
                         option="movie")
    return movies[movie or 0]


def read_movies(paths, *, channel: int | None = None, z: int | None = None,
                series: int | None = None, roi=None, axes: str | None = None
                ) -> list[MovieFile]:
    """Open several movies lazily as one data set of independent movies.

    Folders and globs are expanded (:func:`expand_movie_paths`); every file gets the
    same selection (see :func:`read_movie`).  A file holding several movies (an M axis:
    an unnamed (M, T, H, W) array, or ``axes="MTYX"``) gives all of them, in order
    (``MovieFile.movie`` says which; :func:`describe_inputs` says so in words).  All
    movies must have the same frame size (after the ROI), else the first mismatch is
    refused naming both files (``option="roi"``).
    """
    movies = [m for p in expand_movie_paths(paths)
              for m in _open(p, channel=channel, z=z, series=series, roi=roi, axes=axes)]
    for m in movies[1:]:
        if tuple(m.data.shape[1:]) != tuple(movies[0].data.shape[1:]):
            raise InputError(
                f"{m.path}: frames of {_hw(m.data.shape)} px differ from "
                f"{movies[0].path} ({_hw(movies[0].data.shape)} px); the movies of one data "
                "set must have the same frame size; crop them to a common region",
                option="roi")
    return movies


def describe_inputs(movies) -> list[str]:
    """One sentence per file holding several movies, e.g. ``"data.npy: 100 movies of 1000
    frames (M, T, H, W), used as 100 independent movies"``; nothing for ordinary files."""
    lines, seen = [], set()
    for m in movies:
        if m.movie is None or m.path in seen:
            continue
        seen.add(m.path)
        mine = [x for x in movies if x.path == m.path]
        frames = sorted({int(x.data.shape[0]) for x in mine})
        t = str(frames[0]) if len(frames) == 1 else f"{frames[0]}-{frames[-1]}"
        order = ", ".join("M" if a == "M" else a.replace("Y", "H").replace("X", "W")
                          for a in m.axes if a in "MTYX")
        lines.append(f"{m.path.name}: {len(mine)} movies of {t} frames of "
                     f"{_hw(m.data.shape)} px ({order}; axes {m.axes}), used as "
                     f"{len(mine)} independent movies")
    return lines


def _open(path, *, channel, z, series, roi, axes) -> list[MovieFile]:
    """Every movie in one file (several for an M axis), each cropped to the ROI."""
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
        movies = read_zarr(path, channel=channel, z=z, series=series, axes=axes)
    elif path.suffix.lower() == ".npy":
        movies = _read_npy(path, channel=channel, z=z, series=series, axes=axes)
    else:
        movies = read_tiff(path, channel=channel, z=z, series=series, axes=axes)
    for movie in movies:
        if roi is not None:
            box = resolve_roi(movie.data.shape, roi, name=str(path))
            movie.data = crop(movie.data, box, name=str(path))
            movie.selection["roi"] = box
        movie.selection.setdefault("roi", None)
    return movies


def _read_npy(path: Path, *, channel, z, series, axes) -> list[MovieFile]:
    """A ``.npy`` array, memory-mapped: (T, H, W), (M, T, H, W) or named by ``axes``."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{path}: cannot read as .npy ({exc})") from None
    letters = resolve_axes(path, None, data.shape, axes)
    index, _, selection = plan(path, letters, data.shape, channel=channel, z=z)
    refuse_unused(path, {"series": series}, {})
    indices = movie_indices(letters, data.shape, index)
    several = MOVIE_AXIS in letters
    out = []
    for m, ix in enumerate(indices):
        if data.flags.c_contiguous:
            movie = mapped_or_read(path, data.dtype, data.offset, data.shape, tuple(ix))
        else:  # Fortran order: a strided view of the map
            movie = data[tuple(ix)]
        out.append(MovieFile(path, movie, axes=letters, selection=selection,
                             movie=m if several else None, n_movies=len(indices)))
    return out


def _hw(shape) -> str:
    return f"{shape[1]} x {shape[2]}"
