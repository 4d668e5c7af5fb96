"""Which files a list of arguments stands for, and which region of their frames to use."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from ..errors import InputError
from .movie import LazyMovie

__all__ = ["TIFF_SUFFIXES", "MOVIE_SUFFIXES", "expand_movie_paths", "is_zarr", "parse_roi",
           "resolve_roi", "crop"]

#: File name endings read as TIFF.
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
#: File name endings that a folder or glob of movies is expanded to.
MOVIE_SUFFIXES = TIFF_SUFFIXES + (".npy",)


def is_zarr(path: Path) -> bool:
    """Whether ``path`` is a folder holding a Zarr array or group (version 2 or 3)."""
    return path.is_dir() and any((path / f).exists()
                                 for f in ("zarr.json", ".zarray", ".zgroup", ".zattrs"))


def expand_movie_paths(paths) -> list[Path]:
    """Files, folders of TIFFs and globs -> the list of movies, in sorted order per argument.

    A folder that is a Zarr store is one movie; any other folder stands for the TIFF (and
    ``.npy``) files directly inside it, hidden files left out (half-written outputs are
    hidden).  An argument that does not exist but holds ``*``, ``?`` or ``[`` is a glob
    pattern.

    Raises
    ------
    InputError
        A folder without movies, or a pattern that matches nothing.
    """
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir() and not is_zarr(path) and path.suffix.lower() != ".zarr":
            found = sorted(f for f in path.iterdir() if f.is_file() and not
                           f.name.startswith(".") and f.name.lower().endswith(MOVIE_SUFFIXES))
            if not found:
                raise InputError(f"{path}: folder holds no TIFF movies "
                                 f"({', '.join(MOVIE_SUFFIXES)})")
            out += found
        elif not path.exists() and any(c in str(p) for c in "*?["):
            found = sorted(Path(f) for f in glob.glob(str(p)) if not Path(f).name.startswith("."))
            if not found:
                raise InputError(f"{p}: no file matches this pattern")
            for f in found:
                out += expand_movie_paths([f]) if f.is_dir() else [f]
        else:
            out.append(path)
    return out


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """``"Y0:Y1,X0:X1"`` -> (y0, y1, x0, x1) in pixels; an end left out is the frame's edge.

    A start left out is 0, an end left out is -1 (resolved to the frame's edge by
    :func:`crop`).  Refused with ``option="roi"`` when the text does not have that form.
    """
    parts = str(text).replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        bounds = []
        for part in parts:
            lo, hi = part.split(":")
            bounds += [int(lo) if lo else 0, int(hi) if hi else -1]
    except ValueError:
        raise InputError(f"the ROI must look like Y0:Y1,X0:X1 (pixels, e.g. 0:128,64:192), "
                         f"got {text!r}", option="roi") from None
    return tuple(bounds)


def resolve_roi(shape, roi, *, name) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) with ends of -1 replaced by the edges of (T, H, W) frames.

    Refused with ``option="roi"`` when the region is empty or outside the frames.
    """
    _, h, w = shape
    y0, y1, x0, x1 = (int(v) for v in roi)
    y1 = h if y1 == -1 else y1
    x1 = w if x1 == -1 else x1
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise InputError(f"{name}: ROI {y0}:{y1},{x0}:{x1} is empty or outside the "
                         f"{h} x {w} frames (rows 0:{h}, columns 0:{w})", option="roi")
    return y0, y1, x0, x1


def crop(data, roi, *, name: str = "movie"):
    """A lazy view of the (y0, y1, x0, x1) region of every frame of a (T, H, W) array-like.

    An end of -1 means the frame's edge.  A numpy array gives a view, a :class:`LazyMovie`
    a lazy crop of itself, anything else a :class:`LazyMovie` indexing it frame by frame.
    Refused (:class:`InputError`, ``option="roi"``) when the region is empty or outside
    the frames.
    """
    _, h, w = data.shape
    y0, y1, x0, x1 = resolve_roi(data.shape, roi, name=name)
    if isinstance(data, LazyMovie):
        return data.cropped((y0, y1, x0, x1))
    if isinstance(data, np.ndarray):
        return data[:, y0:y1, x0:x1]
    source = data
    return LazyMovie(lambda t: source[t], data.shape[0], (h, w), getattr(data, "dtype", float),
                     roi=(y0, y1, x0, x1), name=name)
