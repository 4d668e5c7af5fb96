"""Reading and writing movies and results (tifffile first).

Movies are read lazily (memory-mapped when the file allows it) so that the estimator
never holds a float copy of the whole data set.  Every writer produces its output under
a temporary name and renames it into place, so an interrupted or failed run leaves
nothing half-written and never touches an earlier result.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = [
    "MovieFile",
    "LazyMovie",
    "read_movie",
    "read_movies",
    "expand_movie_paths",
    "parse_roi",
    "crop",
    "write_movie",
    "write_json",
    "write_stochastic_ep_csv",
    "write_maps_tiff",
    "atomic_output",
]


#: File name endings read as TIFF.
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
#: File name endings that a folder or glob of movies is expanded to.
MOVIE_SUFFIXES = TIFF_SUFFIXES + (".npy",)

_AXIS_WORDS = {"C": ("channel", "channels"), "S": ("colour sample", "colour samples"),
               "Z": ("z-plane", "z-planes"), "series": ("series", "series")}
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3,
               "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3, "microsecond": 1e-6,
               "microseconds": 1e-6, "nanosecond": 1e-9, "nanoseconds": 1e-9, "µs": 1e-6,
               "us": 1e-6, "\u03bcs": 1e-6, "ns": 1e-9,
               "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hour": 3600.0,
               "hours": 3600.0}
_LENGTH_UNITS_UM = {"µm": 1.0, "\u03bcm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0,
                    "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "nanometer": 1e-3,
                    "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6,
                    "meter": 1e6, "å": 1e-4, "angstrom": 1e-4, "pm": 1e-6}


class MovieFile:
    """A movie on disk with its metadata.

    Attributes
    ----------
    path : Path
        The file (or Zarr folder).
    data : array-like, shape (T, H, W)
        Frames: a read-only memory map, or a :class:`LazyMovie` that reads frames on
        demand; never the whole file read into memory.
    dt : float or None
        Seconds per frame from the file's metadata, if it has any.
    pixel_size : float or None
        Physical length of a pixel from the file's metadata, if it has any (micrometres
        when ``pixel_unit`` is ``"µm"``; the simulator's length unit for our own files).
    pixel_unit : str or None
        Unit of ``pixel_size``.
    dt_origin : str or None
        Where ``dt`` came from, e.g. ``"OME TimeIncrement"`` or ``"ImageJ finterval"``.
    selection : dict
        What was picked from the file: ``series``, ``channel``, ``z`` and ``roi``
        (None where nothing was picked).
    axes : str or None
        The axes of the file's series before selection (tifffile letters, e.g. ``"TCZYX"``).
    """

    def __init__(self, path, data, dt=None, pixel_size=None, *, pixel_unit=None,
                 dt_origin=None, selection=None, axes=None):
        self.path = Path(path)
        self.data = data
        self.dt = dt
        self.pixel_size = pixel_size
        self.pixel_unit = pixel_unit
        self.dt_origin = dt_origin
        self.selection = dict(selection or {})
        self.axes = axes


class LazyMovie:
    """A (T, H, W) array-like that reads whole frames only when they are indexed.

    Indexing takes an int, slice, integer array or boolean mask along time, optionally
    followed by spatial indices; it returns numpy arrays.  ``np.asarray`` reads
    everything (the estimator does that only for small movies).  Instances pickle by
    file name, so worker processes reopen the file themselves.

    Parameters
    ----------
    read_frame : callable
        ``read_frame(t)`` returns the full frame ``t`` as a 2-D numpy array; picklable.
    n_frames : int
    frame_shape : tuple of int
        (H, W) of the full frames.
    dtype : numpy dtype
    roi : tuple of int, optional
        (y0, y1, x0, x1) crop applied to every frame.
    name : str
        Used in error messages.
    """

    def __init__(self, read_frame, n_frames, frame_shape, dtype, *, roi=None, name=""):
        self._read = read_frame
        self._n = int(n_frames)
        self._full = tuple(int(s) for s in frame_shape)
        self.dtype = np.dtype(dtype)
        self.roi = None if roi is None else tuple(int(v) for v in roi)
        self.name = name
        y0, y1, x0, x1 = self.roi or (0, self._full[0], 0, self._full[1])
        self.shape = (self._n, y1 - y0, x1 - x0)

    ndim = 3

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"LazyMovie({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def cropped(self, roi) -> LazyMovie:
        """A lazy view of the (y0, y1, x0, x1) region of this movie's frames."""
        y0, y1, x0, x1 = roi
        oy, _, ox, _ = self.roi or (0, 0, 0, 0)
        return LazyMovie(self._read, self._n, self._full, self.dtype,
                         roi=(oy + y0, oy + y1, ox + x0, ox + x1), name=self.name)

    def _frame(self, t: int) -> np.ndarray:
        try:
            frame = np.asarray(self._read(int(t)))
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{self.name}: cannot read frame {t} ({type(exc).__name__}: "
                             f"{exc})") from None
        if self.roi is not None:
            y0, y1, x0, x1 = self.roi
            frame = frame[y0:y1, x0:x1]
        return frame

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (4 - len(key)) + key[i + 1:]
        if len(key) > 3:
            raise IndexError(f"too many indices for a (T, H, W) movie: {len(key)}")
        tkey, rest = key[0], key[1:]
        if isinstance(tkey, int | np.integer):
            t = int(tkey) + (self._n if tkey < 0 else 0)
            if not 0 <= t < self._n:
                raise IndexError(f"frame {tkey} out of range for {self._n} frames")
            return self._frame(t)[rest]
        index = np.arange(self._n)[tkey]
        out = np.empty((len(index),) + self.shape[1:], self.dtype)
        for j, t in enumerate(index.ravel()):
            out[j] = self._frame(t)
        out = out.reshape(index.shape + self.shape[1:])
        return out[(Ellipsis,) + rest] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)


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
        ``(y0, y1, x0, x1)`` crop of every frame (or the text ``"Y0:Y1,X0:X1"``).

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
    """
    path = Path(path)
    if isinstance(roi, str):
        roi = parse_roi(roi)
    for flag, value in (("channel", channel), ("z", z), ("series", series)):
        if value is not None and (not isinstance(value, int | np.integer) or value < 0):
            raise InputError(f"--{flag} must be a non-negative integer, got {value!r}")
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir() or path.suffix.lower() == ".zarr":
        if not _is_zarr(path):
            raise InputError(f"{path}: is a folder but not a Zarr array or group; a folder of "
                             "TIFF movies is read as several movies (give it to `fit`)")
        movie = _read_zarr(path, channel=channel, z=z, series=series)
    elif path.suffix.lower() == ".npy":
        try:
            data = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise InputError(f"{path}: cannot read as .npy ({exc})") from None
        if data.ndim == 3 and data.flags.c_contiguous:
            data = _mapped_or_read(path, data.dtype, data.offset, data.shape,
                                   (slice(None),) * 3)
        movie = MovieFile(path, data, axes="TYX" if data.ndim == 3 else None)
        _check_movie_shape(path, data.shape)
        _refuse_unused(path, {"channel": channel, "z": z, "series": series}, {})
    else:
        movie = _read_tiff(path, channel=channel, z=z, series=series)
    if roi is not None:
        roi = _resolve_roi(movie.data.shape, roi, name=str(path))
        movie.data = crop(movie.data, roi, name=str(path))
        movie.selection["roi"] = roi
    movie.selection.setdefault("roi", None)
    return movie


def parse_roi(text: str) -> tuple[int, int, int, int]:
    """``"Y0:Y1,X0:X1"`` -> (y0, y1, x0, x1); an end left out is the frame's edge (-1)."""
    parts = str(text).replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        bounds = []
        for part in parts:
            lo, hi = part.split(":")
            bounds += [int(lo) if lo else 0, int(hi) if hi else -1]
    except ValueError:
        raise InputError(f"--roi must look like Y0:Y1,X0:X1 (pixels, e.g. 0:128,64:192), "
                         f"got {text!r}") from None
    return tuple(bounds)


def crop(data, roi, *, name: str = "movie"):
    """A lazy view of the (y0, y1, x0, x1) region of every frame of a (T, H, W) array-like.

    An end of -1 means the frame's edge.  Refused (InputError) when the region is empty or
    outside the frames.
    """
    _, h, w = data.shape
    y0, y1, x0, x1 = _resolve_roi(data.shape, roi, name=name)
    if isinstance(data, LazyMovie):
        return data.cropped((y0, y1, x0, x1))
    if isinstance(data, np.ndarray):
        return data[:, y0:y1, x0:x1]
    source = data
    return LazyMovie(lambda t: source[t], data.shape[0], (h, w), getattr(data, "dtype", float),
                     roi=(y0, y1, x0, x1), name=name)


def _resolve_roi(shape, roi, *, name) -> tuple[int, int, int, int]:
    _, h, w = shape
    y0, y1, x0, x1 = (int(v) for v in roi)
    y1 = h if y1 == -1 else y1
    x1 = w if x1 == -1 else x1
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        raise InputError(f"{name}: ROI {y0}:{y1},{x0}:{x1} is empty or outside the "
                         f"{h} x {w} frames (rows 0:{h}, columns 0:{w})")
    return y0, y1, x0, x1


def expand_movie_paths(paths) -> list[Path]:
    """Files, folders of TIFFs and globs -> the list of movies, in sorted order per argument.

    A folder that is a Zarr store is one movie; any other folder stands for the TIFF (and
    ``.npy``) files directly inside it, hidden files left out.  An argument that does not
    exist but holds ``*``, ``?`` or ``[`` is a glob pattern.
    """
    import glob

    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir() and not _is_zarr(path) and path.suffix.lower() != ".zarr":
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


def read_movies(paths, *, channel: int | None = None, z: int | None = None,
                series: int | None = None, roi=None) -> list[MovieFile]:
    """Open several movies lazily as one data set of independent movies.

    Folders and globs are expanded (:func:`expand_movie_paths`); every movie gets the
    same selection (see :func:`read_movie`); all must have the same frame size (after
    the ROI), else the first mismatch is refused naming both files.
    """
    movies = [read_movie(p, channel=channel, z=z, series=series, roi=roi)
              for p in expand_movie_paths(paths)]
    for m in movies[1:]:
        if tuple(m.data.shape[1:]) != tuple(movies[0].data.shape[1:]):
            raise InputError(
                f"{m.path}: frames of {_hw(m.data.shape)} px differ from "
                f"{movies[0].path} ({_hw(movies[0].data.shape)} px); the movies of one data "
                "set must have the same frame size (crop them with --roi)")
    return movies


def _hw(shape) -> str:
    return f"{shape[1]} x {shape[2]}"


def _check_movie_shape(path, shape, axes=None) -> None:
    if len(shape) == 2:
        raise InputError(f"{path}: a single 2-D image {tuple(shape)}, not a movie; expected "
                         "a stack of frames (T, H, W)")
    if len(shape) != 3:
        what = f"axes {axes!r}, " if axes else ""
        raise InputError(
            f"{path}: expected a single-channel movie of shape (T, H, W), got {what}shape "
            f"{tuple(shape)}"
        )


def _refuse_unused(path, given: dict, held: dict) -> None:
    """Refuse a --channel/--z/--series choice > 0 on a file that does not have that axis."""
    for flag, value in given.items():
        if value is not None and flag not in held and value > 0:
            raise InputError(f"{path}: --{flag} {value} given but the file has only one "
                             f"{'channel' if flag == 'channel' else flag}")


# ------------------------------------------------------------------------- axes and choice

def _plan(path, axes: str, shape, *, channel, z, n_series: int = 1, series=None):
    """Decide which axis is time and which index of every other axis to use.

    Returns ``(index, t_axis, selection)``: ``index`` has one entry per axis (an int for a
    fixed axis, ``slice(None)`` for T, Y and X) and the kept axes are, in order, T, Y, X.
    """
    axes = axes.upper()
    shape = tuple(int(s) for s in shape)
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{path}: axes {axes!r} have no Y and X; cannot find the frames")
    big = {a: n for a, n in zip(axes, shape, strict=True) if n > 1 and a not in "YX"}
    selection = {"series": series if n_series > 1 else None, "channel": None, "z": None}
    chan_axis = "C" if "C" in big else ("S" if "S" in big else None)
    if "C" in big and "S" in big:
        raise InputError(f"{path}: {big['C']} channels of {big['S']}-sample colour images "
                         "are not supported; save one channel per plane")
    if "T" in big:
        t_axis = "T"
    else:
        stack = [a for a in big if a not in "CSZ"]
        if len(stack) == 1 and stack[0] in "IQ":
            t_axis = stack[0]
        elif not stack and not big:
            raise InputError(f"{path}: a single 2-D image {shape}, not a movie; expected a "
                             "stack of frames (T, H, W)")
        elif not stack and set(big) <= set("CS") and "S" in big and big["S"] in (3, 4):
            raise InputError(f"{path}: a single {'RGBA' if big['S'] == 4 else 'RGB'} colour "
                             f"image {shape}, not a movie; expected a stack of frames (T, H, W)")
        elif not stack:
            raise InputError(f"{path}: axes {axes!r} {shape} hold no time axis (a single "
                             "image or a z-stack, not a movie); if the planes are time points, "
                             "re-save the file with them as frames (ImageJ: Image > Properties)")
        else:
            raise InputError(f"{path}: axes {axes!r} {shape}: cannot tell which axis is time")
    other = [a for a in big if a not in (t_axis, "Z") and a != chan_axis]
    if other:
        names = ", ".join(f"{a!r} of {big[a]}" for a in other)
        raise InputError(f"{path}: axes {axes!r} {shape} also hold {names}; only time, "
                         "channel, z and series are understood")
    missing, flags = [], []
    choices = {"channel": (chan_axis, channel), "z": ("Z" if "Z" in big else None, z)}
    if n_series > 1:
        choices = {"series": ("series", series), **choices}
    for flag, (axis, value) in choices.items():
        if axis is None:
            continue
        n = n_series if axis == "series" else big[axis]
        if value is None:
            word = _AXIS_WORDS[axis][1]
            missing.append(f"{n} {word}")
            flags.append(f"--{flag} N (0-{n - 1})")
        elif value >= n:
            word = _AXIS_WORDS[axis][1]
            raise InputError(f"{path}: --{flag} {value} is out of range; the file has {n} "
                             f"{word} (0-{n - 1})")
        else:
            selection[flag] = int(value)
    if missing:
        raise InputError(f"{path}: {' and '.join(missing)}; choose with {' and '.join(flags)}")
    _refuse_unused(path, {"channel": channel, "z": z, "series": series},
                   {k for k, (a, _) in choices.items() if a is not None})
    index = []
    for a in axes:
        if a in (t_axis, "Y", "X"):
            index.append(slice(None))
        elif a == chan_axis:
            index.append(selection["channel"])
        elif a == "Z" and "Z" in big:
            index.append(selection["z"])
        else:
            index.append(0)
    kept = [a for a, i in zip(axes, index, strict=True) if isinstance(i, slice)]
    if kept != [t_axis, "Y", "X"]:
        raise InputError(f"{path}: axes {axes!r}: time, Y and X are not in that order")
    if shape[axes.index(t_axis)] < 2:
        raise InputError(f"{path}: a single frame, not a movie")
    return index, t_axis, selection


# ------------------------------------------------------------------------------- TIFF

class _TiffPlanes:
    """Picklable frame reader over the pages of one TIFF series (files kept open, LRU)."""

    _open: dict = {}
    _lock = None
    max_open = 32

    def __init__(self, path, series: int, pages, inner_index, inner_shape):
        self.path = str(path)
        self.series = int(series)
        self.pages = np.asarray(pages, dtype=np.int64)
        self.inner_index = tuple(inner_index)
        self.inner_shape = tuple(inner_shape)

    @classmethod
    def _handle(cls, path, tif=None):
        """The open TiffFile of ``path`` and its lock; ``tif``, if given, is adopted."""
        import threading

        import tifffile

        if cls._lock is None:
            cls._lock = threading.Lock()
        st = os.stat(path)  # a file replaced since it was opened is opened afresh
        key = (os.getpid(), os.path.abspath(path), st.st_ino, st.st_mtime_ns, st.st_size)
        with cls._lock:
            entry = cls._open.pop(key, None)
            if entry is not None and tif is not None:
                tif.close()
            elif entry is None:
                if tif is None:  # opened afresh (another process, or closed): check it again
                    with _tifffile_log() as log:
                        tif = tifffile.TiffFile(path)
                        len(tif.pages)
                    _refuse_corrupt(path, log)
                entry = (tif, threading.Lock())
            cls._open[key] = entry  # most recently used last
            while len(cls._open) > cls.max_open:
                old_key = next(iter(cls._open))
                old = cls._open.pop(old_key)
                if old_key[0] == os.getpid():
                    old[0].close()
            return entry

    def __call__(self, t: int) -> np.ndarray:
        tif, lock = self._handle(self.path)
        with lock:
            page = tif.series[self.series][int(self.pages[t])]
            if page is None:
                raise InputError(f"{self.path}: plane {int(self.pages[t])} of the series is "
                                 "missing (truncated or corrupt file)")
            plane = page.asarray(maxworkers=1)
        return plane.reshape(self.inner_shape)[self.inner_index]


#: Uncompressed pixel data larger than this are read frame by frame with ``os.pread``
#: instead of being memory-mapped: pages of a mapped file that have been read count in the
#: process's resident memory until the kernel needs them back, so a pass over a movie of
#: many GB would show that many GB resident.
MAP_LIMIT = 1 << 30


def _mapped_or_read(path, dtype, offset: int, shape, index):
    """A read-only memory map of contiguous pixel data, or a :class:`LazyMovie` over it.

    ``index`` picks the (T, H, W) movie out of the stored ``shape``: one slice along time
    and the frame axes, integers elsewhere.
    """
    dtype = np.dtype(dtype)
    mm = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    view = mm[index]
    if view.nbytes <= MAP_LIMIT:
        return view
    t_axis = next(i for i, ix in enumerate(index) if isinstance(ix, slice))
    reader = _RawPlanes(str(path), dtype.str, int(offset), tuple(int(n) for n in shape),
                        index, t_axis)
    return LazyMovie(reader, view.shape[0], view.shape[1:], dtype, name=str(path))


class _RawPlanes:
    """Reads frame ``t`` of uncompressed, contiguous pixel data with one ``os.pread``.

    Picklable: the file is opened afresh in each process.
    """

    def __init__(self, path: str, dtype: str, offset: int, shape, index, t_axis: int):
        self.path, self.dtype, self.offset = path, np.dtype(dtype), offset
        self.shape, self.index, self.t_axis = shape, index, t_axis
        self._fd = self._pid = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_fd"] = state["_pid"] = None
        return state

    def __call__(self, t: int) -> np.ndarray:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        key = list(self.index)
        key[self.t_axis] = int(t)
        # The axes from the first one still sliced onwards form one contiguous block.
        q = next(i for i, ix in enumerate(key) if isinstance(ix, slice))
        block = self.shape[q:]
        n = int(np.prod(block)) * self.dtype.itemsize
        start = int(np.ravel_multi_index(key[:q], self.shape[:q])) * n if q else 0
        raw = os.pread(self._fd, n, self.offset + start)
        if len(raw) != n:
            raise InputError(f"{self.path}: truncated or corrupt file (frame {t} ends past "
                             "the end of the file)")
        return np.frombuffer(raw, dtype=self.dtype).reshape(block)[tuple(key[q:])]

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass


@contextlib.contextmanager
def _tifffile_log():
    """Collect tifffile's logged warnings instead of printing them; yields the list."""
    import logging

    log = logging.getLogger("tifffile")
    messages: list[str] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage().splitlines()[0])
    old_propagate = log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.propagate = old_propagate


def _read_tiff(path: Path, *, channel, z, series) -> MovieFile:
    import tifffile

    size = path.stat().st_size
    try:
        with _tifffile_log() as log, contextlib.ExitStack() as stack:
            tif = tifffile.TiffFile(path)
            stack.callback(tif.close)
            all_series = [s for s in tif.series if s.shape]
            if not all_series:
                _refuse_corrupt(path, log)
                raise InputError(f"{path}: a TIFF file without images")
            n_series = len(all_series)
            if n_series > 1 and series is None:
                held = "; ".join(f"{i}: {s.axes} {tuple(s.shape)}"
                                 for i, s in enumerate(all_series[:6]))
                raise InputError(f"{path}: {n_series} series (positions) [{held}]; choose "
                                 f"with --series N (0-{n_series - 1})")
            s_index = series if n_series > 1 else 0
            if s_index >= n_series:
                raise InputError(f"{path}: --series {series} is out of range; the file has "
                                 f"{n_series} series (0-{n_series - 1})")
            ser = all_series[s_index]
            for k in range(len(ser)):  # parse every plane's IFD: finds truncated files
                ser[k]
            _refuse_corrupt(path, log)
            index, t_axis, selection = _plan(path, ser.axes, ser.shape, channel=channel, z=z,
                                             n_series=n_series, series=series)
            if n_series == 1:
                _refuse_unused(path, {"series": series}, {})
            dt, pixel_size, pixel_unit, origin = _tiff_metadata(tif, ser, s_index, selection)
            data = _tiff_data(path, tif, ser, tif.series.index(ser), index, size, log)
            _refuse_corrupt(path, log)
            if isinstance(data, LazyMovie):  # keep the parsed file open for the frame reads
                stack.pop_all()
                _TiffPlanes._handle(str(path), tif)
    except InputError:
        raise
    except Exception as exc:
        what = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        raise InputError(f"{path}: cannot read as TIFF ({what})") from None
    return MovieFile(path, data, dt=dt, pixel_size=pixel_size, pixel_unit=pixel_unit,
                     dt_origin=origin, selection=selection, axes=ser.axes)


_CORRUPT_SIGNS = ("invalid page offset", "invalid value offset", "corrupt", "truncat")


def _refuse_corrupt(path, log) -> None:
    """Refuse a file for which tifffile logged signs of truncation or corruption."""
    for message in log:
        if any(sign in message.lower() for sign in _CORRUPT_SIGNS):
            detail = re.sub(r"<[^>]*>\s*", "", message)
            raise InputError(f"{path}: truncated or corrupt TIFF ({detail})")


def _tiff_data(path, tif, ser, s_index, index, size, log):
    shape = tuple(ser.shape)
    axes = ser.axes
    truncated = f"{path}: truncated or corrupt TIFF"
    kf = ser.keyframe
    if ser.dataoffset is not None and kf.is_memmappable:
        dtype = np.dtype(tif.byteorder + ser.dtype.char)
        need = ser.dataoffset + int(np.prod(shape)) * dtype.itemsize
        if need > size:
            raise InputError(f"{truncated}: the pixel data need {need} bytes, the file has "
                             f"{size}")
        return _mapped_or_read(path, dtype, ser.dataoffset, shape, tuple(index))
    # Pixel data compressed or scattered: read page by page on demand.
    n_pages = len(ser)
    lead = 0
    while lead <= len(shape) and int(np.prod(shape[:lead])) != n_pages:
        lead += 1
    if lead > len(shape) or any(a not in "YXS" for a, n in zip(axes[lead:], shape[lead:],
                                                               strict=True) if n > 1):
        raise InputError(f"{path}: cannot map the planes of axes {axes!r} {shape} to "
                         f"{n_pages} TIFF pages; the file may be truncated or corrupt")
    for k in range(n_pages):
        page = ser[k]
        if page is None:
            extra = f" ({log[0]})" if log else ""
            raise InputError(f"{truncated}: plane {k} of {n_pages} is missing{extra}")
        ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=True)]
        if ends and max(ends) > size:
            raise InputError(f"{truncated}: plane {k} of {n_pages} ends past the end of the "
                             f"file ({max(ends)} > {size} bytes)")
    t_axis = next(i for i, ix in enumerate(index) if isinstance(ix, slice))
    if t_axis >= lead:
        raise InputError(f"{path}: the time axis of {axes!r} lies within one TIFF page")
    n_frames = shape[t_axis]
    lead_index = [np.arange(n_frames) if i == t_axis else np.full(n_frames, index[i])
                  for i in range(lead)]
    pages = np.ravel_multi_index(lead_index, shape[:lead]) if lead else np.zeros(1, int)
    inner_shape = shape[lead:]
    inner_index = tuple(index[lead:])
    hw = tuple(n for a, n in zip(axes, shape, strict=True) if a in "YX")
    reader = _TiffPlanes(path, s_index, pages, inner_index, inner_shape)
    return LazyMovie(reader, n_frames, hw, ser.dtype, name=str(path))


def _unit_factor(unit, table, default):
    if unit is None or unit == "":
        return default
    key = str(unit).strip()
    return table.get(key, table.get(key.lower()))


def _tiff_metadata(tif, ser, s_index, selection):
    """(dt, pixel_size, pixel_unit, dt_origin) from OME, ImageJ or our own JSON description."""
    dt = pixel_size = pixel_unit = origin = None
    if tif.is_ome and tif.ome_metadata:
        with contextlib.suppress(Exception):
            dt, origin, pixel_size, pixel_unit = _ome_metadata(
                tif.ome_metadata, s_index, selection)
    ij = tif.imagej_metadata or {}
    if dt is None and ij.get("finterval"):
        factor = _unit_factor(ij.get("tunit"), _TIME_UNITS, 1.0) or 1.0
        dt, origin = float(ij["finterval"]) * factor, "ImageJ finterval"
    if pixel_size is None and tif.is_imagej:
        with contextlib.suppress(Exception):
            xres = ser.keyframe.tags["XResolution"].value
            unit = ij.get("unit")
            factor = _unit_factor(str(unit).replace("\\u00B5", "µ"), _LENGTH_UNITS_UM, None)
            if xres[0] > 0 and factor is not None:
                pixel_size, pixel_unit = xres[1] / xres[0] * factor, "µm"
    desc = tif.pages[0].description if len(tif.pages) else ""
    if desc.startswith("{"):
        with contextlib.suppress(ValueError, AttributeError):
            meta = json.loads(desc)
            if meta.get("dt") is not None:
                dt, origin = float(meta["dt"]), "napari-dissipation description"
            if meta.get("pixel_size") is not None:
                pixel_size, pixel_unit = float(meta["pixel_size"]), None
    return (None if dt is None else float(dt), None if pixel_size is None else float(pixel_size),
            pixel_unit, origin)


def _ome_metadata(xml: str, s_index: int, selection):
    """dt from TimeIncrement or Plane DeltaT, and PhysicalSizeX in µm, from OME-XML."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    images = [e for e in root if e.tag.endswith("}Image") or e.tag == "Image"]
    image = images[min(s_index, len(images) - 1)]
    pixels = next(e for e in image if e.tag.endswith("Pixels"))
    dt = origin = pixel_size = pixel_unit = None
    if pixels.get("TimeIncrement"):
        factor = _unit_factor(pixels.get("TimeIncrementUnit"), _TIME_UNITS, 1.0)
        if factor is not None:
            dt, origin = float(pixels.get("TimeIncrement")) * factor, "OME TimeIncrement"
    if dt is None:
        c, zz = selection.get("channel") or 0, selection.get("z") or 0
        times = []
        for plane in (e for e in pixels if e.tag.endswith("Plane")):
            if (plane.get("DeltaT") is not None and int(plane.get("TheC", 0)) == c
                    and int(plane.get("TheZ", 0)) == zz):
                factor = _unit_factor(plane.get("DeltaTUnit"), _TIME_UNITS, 1.0)
                if factor is not None:
                    times.append((int(plane.get("TheT", 0)), float(plane.get("DeltaT")) * factor))
        if len(times) > 1:
            steps = np.diff([t for _, t in sorted(times)])
            if len(steps) and np.all(steps > 0):
                dt, origin = float(np.median(steps)), "OME Plane DeltaT"
    if pixels.get("PhysicalSizeX"):
        factor = _unit_factor(pixels.get("PhysicalSizeXUnit"), _LENGTH_UNITS_UM, 1.0)
        if factor is not None:
            pixel_size, pixel_unit = float(pixels.get("PhysicalSizeX")) * factor, "µm"
    return dt, origin, pixel_size, pixel_unit


# ------------------------------------------------------------------------------- Zarr

def _is_zarr(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists()
                                 for f in ("zarr.json", ".zarray", ".zgroup", ".zattrs"))


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


def _read_zarr(path: Path, *, channel, z, series) -> MovieFile:
    try:
        import zarr
    except ImportError:
        raise InputError(f"{path}: reading Zarr needs the zarr package "
                         "(pip install zarr)") from None
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:
        raise InputError(f"{path}: cannot open as Zarr ({type(exc).__name__}: {exc})") from None
    dt = pixel_size = pixel_unit = origin = None
    array_path = ""
    axes = None
    if isinstance(node, zarr.Array):
        arr = node
        names = (getattr(getattr(arr, "metadata", None), "dimension_names", None)
                 or arr.attrs.get("_ARRAY_DIMENSIONS"))
        if names and all(names):
            axes = "".join(str(n)[0].upper() for n in names)
    else:
        attrs = dict(node.attrs)
        multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
        if multiscales:
            ms = multiscales[0]
            level0 = ms["datasets"][0]
            array_path = level0["path"]
            arr = node[array_path]
            ax = ms.get("axes") or []
            axes = "".join((a["name"] if isinstance(a, dict) else str(a))[0].upper() for a in ax)
            units = [a.get("unit") if isinstance(a, dict) else None for a in ax]
            scale = next((tr.get("scale") for tr in level0.get("coordinateTransformations", [])
                          if tr.get("type") == "scale"), None)
            if scale and axes and len(scale) == len(axes):
                if "T" in axes:
                    i = axes.index("T")
                    factor = _unit_factor(units[i], _TIME_UNITS, None)
                    if factor is not None and units[i] is not None:
                        dt, origin = float(scale[i]) * factor, "OME-Zarr scale"
                if "X" in axes:
                    i = axes.index("X")
                    factor = _unit_factor(units[i], _LENGTH_UNITS_UM, None)
                    if factor is not None:
                        pixel_size, pixel_unit = float(scale[i]) * factor, "µm"
        else:
            arrays = sorted(name for name, _ in node.arrays())
            if len(arrays) != 1:
                raise InputError(f"{path}: a Zarr group with {len(arrays)} arrays "
                                 f"({', '.join(arrays[:6])}) and no OME multiscales; give the "
                                 "array's folder instead")
            array_path = arrays[0]
            arr = node[array_path]
    shape = tuple(arr.shape)
    if axes is None or len(axes) != len(shape):
        if len(shape) == 2:
            _check_movie_shape(path, shape)
        if len(shape) != 3:
            raise InputError(f"{path}: a Zarr array of shape {shape} without axis names; "
                             "expected (T, H, W)")
        axes = "TYX"
    index, _, selection = _plan(path, axes, shape, channel=channel, z=z)
    _refuse_unused(path, {"series": series}, {})
    t_axis = next(i for i, ix in enumerate(index) if isinstance(ix, slice))
    hw = tuple(n for a, n in zip(axes, shape, strict=True) if a in "YX")
    reader = _ZarrPlanes(path, array_path, index, t_axis)
    data = LazyMovie(reader, shape[t_axis], hw, arr.dtype, name=str(path))
    return MovieFile(path, data, dt=dt, pixel_size=pixel_size, pixel_unit=pixel_unit,
                     dt_origin=origin, selection=selection, axes=axes)


def write_movie(path, movie, *, dt: float | None = None, pixel_size: float | None = None,
                metadata: dict | None = None) -> Path:
    """Write a (T, H, W) movie as a TIFF with dt and pixel size in its metadata.

    The description holds a JSON object (``dt`` in seconds per frame, ``pixel_size``
    in the simulation's length unit per pixel, plus ``metadata``); ImageJ readers see
    the frames as a time series.  Written atomically.
    """
    import tifffile

    meta = dict(metadata or {})
    if dt is not None:
        meta["dt"] = float(dt)
    if pixel_size is not None:
        meta["pixel_size"] = float(pixel_size)
    path = Path(path)
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(movie), description=json.dumps(meta),
                         metadata=None, photometric="minisblack")
    return path


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    return path


def write_stochastic_ep_csv(path, stochastic_ep, *, movie_names=None) -> Path:
    """Write per-transition EP as CSV with columns ``movie,frame,ep``, atomically.

    Parameters
    ----------
    path : str or Path
    stochastic_ep : list of ndarray
        One (T_m − 1,) array per movie, k_B; row ``frame = t`` is the transition t -> t+1.
    movie_names : list of str, optional
        Written in the ``movie`` column instead of the movie's index.
    """
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        fh.write("movie,frame,ep\n")
        for m, ep in enumerate(stochastic_ep):
            label = m if movie_names is None else movie_names[m]
            for t, value in enumerate(np.asarray(ep, dtype=np.float64)):
                fh.write(f"{label},{t},{value:.9g}\n")
    return path


def write_maps_tiff(path, maps, *, dt: float | None = None, metadata: dict | None = None) -> Path:
    """Write dissipation maps (T − 1, H, W) or an averaged map (H, W) as a float32 TIFF."""
    return write_movie(path, np.asarray(maps, dtype=np.float32), dt=dt, metadata=metadata)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def atomic_output(path, *, directory: bool = False, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    Parameters
    ----------
    path : str or Path
        The final file or folder.
    directory : bool
        Yield a fresh temporary folder instead of a file name.
    overwrite : bool
        If False and ``path`` exists, raise :class:`InputError` before anything is
        written (earlier runs are kept intact).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(
            f"{path}: already exists; choose another output (earlier results are kept)"
        )
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp create private files; give the result the usual permissions.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, (0o777 if directory else 0o666) & ~umask)
    try:
        yield tmp
        if directory:
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
