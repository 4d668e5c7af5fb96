"""Transitions drawn lazily from one or several movies.

A movie is any (T, H, W) array-like (numpy array, memory map, dask or zarr array,
tifffile store ...).  Frames are read in their own dtype only when a batch needs them and
turned into float32 batch by batch, so no float copy of the data set is ever made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

__all__ = ["MovieSet", "Normalisation", "as_movie_list"]

#: Array-likes that are not numpy arrays are read into memory (in their own dtype) when
#: they are smaller than this; larger ones are read frame by frame.
IN_MEMORY_LIMIT = 1 << 30


def as_movie_list(movies, names: Sequence[str] | None = None) -> tuple[list, list[str]]:
    """Normalise the accepted inputs to a list of (T, H, W) array-likes and their names.

    Accepted: one (T, H, W) array-like, an (M, T, H, W) array, or a sequence of (T, H, W)
    array-likes.  A trailing axis of length 3 or 4 is taken for a colour channel and
    refused.
    """
    if isinstance(movies, list | tuple):
        items = list(movies)
    else:
        ndim = len(getattr(movies, "shape", ()))
        if ndim == 4 and movies.shape[-1] not in (3, 4):
            items = [movies[m] for m in range(movies.shape[0])]
        else:
            items = [movies]
    if not items:
        raise InputError("no movies given")
    if names is None:
        names = [f"movie {i}" for i in range(len(items))]
    names = [str(n) for n in names]
    for movie, name in zip(items, names, strict=True):
        shape = tuple(getattr(movie, "shape", ()))
        if not shape:
            raise InputError(f"{name}: not an array (got {type(movie).__name__})")
        if len(shape) == 4 and shape[-1] in (3, 4):
            raise InputError(
                f"{name}: shape {shape} looks like a movie with a colour/channel axis; "
                "give a single-channel (T, H, W) movie"
            )
        if len(shape) != 3:
            raise InputError(f"{name}: expected a (T, H, W) movie, got shape {shape}")
    return items, names


@dataclass(frozen=True)
class Normalisation:
    """Affine intensity normalisation ``(x − offset) / scale`` fixed at training time."""

    offset: float
    scale: float


class MovieSet:
    """Windows of k consecutive (strided, binned) frames from a set of movies.

    Parameters
    ----------
    movies : list of array-like, each (T_m, H, W)
    names : list of str
        Used in error messages (file names when the movies come from files).
    frames_per_input : int
        k, frames per window.
    stride : int
        Keep every ``stride``-th frame (the time step becomes ``stride * dt``).
    bin : int
        Sum ``bin x bin`` pixel blocks (cropping the edges to a multiple of ``bin``).
    """

    def __init__(self, movies, *, names=None, frames_per_input: int = 2, stride: int = 1,
                 bin: int = 1):
        self.movies, self.names = as_movie_list(movies, names)
        self.k = int(frames_per_input)
        self.stride = int(stride)
        self.bin = int(bin)
        if self.k < 2:
            raise InputError(f"frames_per_input must be at least 2, got {frames_per_input}")
        if self.stride < 1 or self.bin < 1:
            raise InputError("stride and bin must be positive integers")
        raw_shape = tuple(self.movies[0].shape[1:])
        for movie, name in zip(self.movies, self.names, strict=True):
            if tuple(movie.shape[1:]) != raw_shape:
                raise InputError(
                    f"{name}: frame size {tuple(movie.shape[1:])} differs from "
                    f"{self.names[0]} {raw_shape}; all movies must have the same frame size"
                )
        self.raw_frame_shape = raw_shape
        self.frame_shape = (raw_shape[0] // self.bin, raw_shape[1] // self.bin)
        if min(self.frame_shape) < 1:
            raise InputError(f"frames of {raw_shape} px are too small for binning by {self.bin}")
        self.lengths = np.array([-(-m.shape[0] // self.stride) for m in self.movies])
        for length, name in zip(self.lengths, self.names, strict=True):
            if length < self.k:
                raise InputError(
                    f"{name}: {length} frames (after stride {self.stride}) is too few for "
                    f"inputs of {self.k} frames"
                )
        self._sources = [self._source(m) for m in self.movies]

    @staticmethod
    def _source(movie):
        if isinstance(movie, np.ndarray):
            return movie
        nbytes = int(np.prod(movie.shape)) * np.dtype(getattr(movie, "dtype", np.float64)).itemsize
        if nbytes <= IN_MEMORY_LIMIT:
            return np.asarray(movie)
        return movie

    @property
    def n_windows(self) -> np.ndarray:
        """Windows per movie, shape (M,): ``T_m − k + 1``."""
        return self.lengths - self.k + 1

    def frames(self, m: int, index: np.ndarray) -> np.ndarray:
        """Frames ``index`` (after stride) of movie ``m``, binned, in float32, (n, H', W')."""
        raw = index * self.stride
        src = self._sources[m]
        if isinstance(src, np.ndarray):
            out = src[raw]
        else:
            out = np.stack([np.asarray(src[int(i)]) for i in raw.ravel()]).reshape(
                raw.shape + self.raw_frame_shape)
        out = out.astype(np.float32, copy=False)
        if self.bin > 1:
            b = self.bin
            h, w = self.frame_shape
            out = out[..., : h * b, : w * b].reshape(out.shape[:-2] + (h, b, w, b))
            out = out.sum(axis=(-3, -1))
        return out

    def windows(self, m: int, starts: np.ndarray) -> np.ndarray:
        """Raw windows of movie ``m`` starting at ``starts``, shape (n, k, H', W'), float32."""
        index = np.asarray(starts)[:, None] + np.arange(self.k)
        return self.frames(m, index)

    def normalisation(self, rng: np.random.Generator, n_frames: int = 2000) -> Normalisation:
        """Offset and scale from a sample of frames; refuse NaN and constant movies."""
        per_movie = max(2, n_frames // len(self.movies))
        means, sq = [], []
        for m, name in enumerate(self.names):
            idx = np.unique(rng.integers(0, self.lengths[m], size=min(per_movie, self.lengths[m])))
            sample = self.frames(m, idx)
            if not np.all(np.isfinite(sample)):
                raise InputError(f"{name}: contains NaN or infinite pixel values")
            if float(sample.max()) == float(sample.min()):
                sample = self.frames(m, np.arange(self.lengths[m]))
                if float(sample.max()) == float(sample.min()):
                    raise InputError(f"{name}: the movie is constant; there is nothing to learn")
            means.append(sample.mean())
            sq.append(np.mean(sample.astype(np.float64) ** 2))
        mean = float(np.mean(means))
        std = float(np.sqrt(max(np.mean(sq) - mean**2, 0.0)))
        return Normalisation(offset=mean, scale=std if std > 0 else 1.0)

    def check_finite(self, chunk: int = 256) -> None:
        """Scan float movies for NaN/inf (integer movies cannot hold them)."""
        for m, name in enumerate(self.names):
            if np.issubdtype(np.dtype(getattr(self.movies[m], "dtype", np.float64)), np.integer):
                continue
            for start in range(0, int(self.lengths[m]), chunk):
                idx = np.arange(start, min(start + chunk, int(self.lengths[m])))
                if not np.all(np.isfinite(self.frames(m, idx))):
                    raise InputError(f"{name}: contains NaN or infinite pixel values")
