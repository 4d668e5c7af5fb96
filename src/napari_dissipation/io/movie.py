"""What reading a movie gives: :class:`MovieFile` and the frame-on-demand :class:`LazyMovie`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["MovieFile", "LazyMovie"]


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
        The axes of the file's series before selection (tifffile letters, e.g. ``"TCZYX"``;
        ``"MTYX"`` for a file holding several movies).
    movie : int or None
        Which movie of a file holding several (an M axis): 0, 1, ...; None otherwise.
    n_movies : int
        How many movies the file holds (1 for an ordinary movie).
    """

    def __init__(self, path, data, dt=None, pixel_size=None, *, pixel_unit=None,
                 dt_origin=None, selection=None, axes=None, movie=None, n_movies=1):
        self.path = Path(path)
        self.data = data
        self.dt = dt
        self.pixel_size = pixel_size
        self.pixel_unit = pixel_unit
        self.dt_origin = dt_origin
        self.selection = dict(selection or {})
        self.axes = axes
        self.movie = movie
        self.n_movies = int(n_movies)

    @property
    def name(self) -> str:
        """The file, with ``[i]`` appended for movie i of a file holding several."""
        return str(self.path) if self.movie is None else f"{self.path}[{self.movie}]"

    def __repr__(self) -> str:
        shape = getattr(self.data, "shape", None)
        return f"MovieFile({self.name!r}, shape={shape}, dt={self.dt})"

    def copy_with(self, data, movie=None, n_movies=1) -> MovieFile:
        """The same file and metadata with other frames (one movie of several)."""
        return MovieFile(self.path, data, self.dt, self.pixel_size, pixel_unit=self.pixel_unit,
                         dt_origin=self.dt_origin, selection=self.selection, axes=self.axes,
                         movie=movie, n_movies=n_movies)


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
        (H, W) of the full frames, pixels.
    dtype : numpy dtype
    roi : tuple of int, optional
        (y0, y1, x0, x1) crop applied to every frame, pixels.
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
