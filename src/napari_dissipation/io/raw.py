"""Uncompressed pixel data stored in one block (plain TIFF, ``.npy``): mapped or pread."""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from .movie import LazyMovie

__all__ = ["MAP_LIMIT", "mapped_or_read"]

#: Uncompressed pixel data larger than this (bytes) are read frame by frame with
#: ``os.pread`` instead of being memory-mapped: pages of a mapped file that have been read
#: count in the process's resident memory until the kernel needs them back, so a pass over
#: a movie of many GB would show that many GB resident.
MAP_LIMIT = 1 << 30


def mapped_or_read(path, dtype, offset: int, shape, index):
    """A read-only memory map of contiguous pixel data, or a :class:`LazyMovie` over it.

    Parameters
    ----------
    path : str or Path
    dtype : numpy dtype
        With the file's byte order.
    offset : int
        Bytes from the start of the file to the first pixel.
    shape : tuple of int
        The stored array's shape.
    index : tuple
        Picks the (T, H, W) movie out of the stored array: one slice along time and the
        frame axes, integers elsewhere.
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
