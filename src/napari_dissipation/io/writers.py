"""Writing movies, maps, tables and JSON, each atomically.

Every writer produces its output under a hidden temporary name beside the target and
renames it into place only on success, so an interrupted or failed run leaves nothing
half-written and never touches an earlier result.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["write_movie", "write_json", "write_stochastic_ep_csv", "write_maps_tiff",
           "atomic_output"]


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
    """Write ``obj`` as indented JSON, atomically (numpy scalars, arrays and paths allowed)."""
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
