"""Small test files shared by the io tests: OME-TIFF movies, hyperstacks, multi-series."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import tifffile


def _tcyx(rng, t=12, c=3, h=16, w=20):
    return rng.integers(0, 4000, (t, c, h, w), dtype=np.uint16)


def _write_ome(path, data, *, compression=None, **meta):
    tifffile.imwrite(path, data, ome=True, compression=compression,
                     metadata={"axes": "TCYX", **meta})
    return path


def _hyperstack(rng, path, shape=(6, 3, 2, 8, 8)):
    """An ImageJ TZCYX hyperstack with several z-planes and channels."""
    tifffile.imwrite(path, rng.integers(0, 99, shape, dtype=np.uint8), imagej=True,
                     metadata={"axes": "TZCYX"})
    return path


def _positions(rng, path, n=2, frames=None):
    """An OME-TIFF holding ``n`` series (stage positions) of (6, 8, 8) movies, or ``frames``."""
    with tifffile.TiffWriter(path, ome=True) as tw:
        for i in range(n):
            data = frames[i] if frames is not None else rng.integers(0, 99, (6, 8, 8),
                                                                      dtype=np.uint16)
            tw.write(data, metadata={"axes": "TYX"})
    return path


@pytest.fixture
def files():
    """Writers of the test files, with a fixed-seed generator (``files.rng``)."""
    rng = np.random.default_rng(7)
    return SimpleNamespace(
        rng=rng, tcyx=lambda **kw: _tcyx(rng, **kw), write_ome=_write_ome,
        hyperstack=lambda path, **kw: _hyperstack(rng, path, **kw),
        positions=lambda path, **kw: _positions(rng, path, **kw))
