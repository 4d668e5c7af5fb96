"""TIFF, OME-TIFF and ImageJ hyperstacks: series, planes, metadata, truncated files.

Uncompressed series stored in one block are memory-mapped (see :mod:`.raw`); anything
else is read page by page on demand from a file kept open in a small per-process cache.
tifffile's logged warnings are collected while a file is parsed, because truncation and
corruption often show only there.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .axes import MOVIE_AXIS, movie_indices, plan, refuse_unused, resolve_axes
from .movie import LazyMovie, MovieFile
from .raw import mapped_or_read
from .units import LENGTH_UNITS_UM, TIME_UNITS, unit_factor

__all__ = ["read_tiff"]

_CORRUPT_SIGNS = ("invalid page offset", "invalid value offset", "corrupt", "truncat")


def read_tiff(path: Path, *, channel, z, series, axes=None) -> list[MovieFile]:
    """Open one TIFF lazily: one movie, or several for an M axis.

    See :func:`napari_dissipation.io.read_movies`.  Every plane's IFD is parsed up front,
    so a truncated file is refused here rather than part-way through training.
    """
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
            s_index = _series_index(path, all_series, series)
            n_series = len(all_series)
            ser = all_series[s_index]
            for k in range(len(ser)):  # parse every plane's IFD: finds truncated files
                ser[k]
            _refuse_corrupt(path, log)
            letters = resolve_axes(path, ser.axes, ser.shape, axes)
            index, t_axis, selection = plan(path, letters, ser.shape, channel=channel, z=z,
                                            n_series=n_series, series=series)
            if n_series == 1:
                refuse_unused(path, {"series": series}, {})
            dt, pixel_size, pixel_unit, origin = _tiff_metadata(tif, ser, s_index, selection)
            datas = _tiff_data(path, tif, ser, tif.series.index(ser), letters,
                               movie_indices(letters, ser.shape, index), size, log)
            _refuse_corrupt(path, log)
            if any(isinstance(d, LazyMovie) for d in datas):  # keep the file open for reads
                stack.pop_all()
                _TiffPlanes._handle(str(path), tif)
    except InputError:
        raise
    except Exception as exc:
        what = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        raise InputError(f"{path}: cannot read as TIFF ({what})") from None
    several = MOVIE_AXIS in letters
    return [MovieFile(path, d, dt=dt, pixel_size=pixel_size, pixel_unit=pixel_unit,
                      dt_origin=origin, selection=selection, axes=letters,
                      movie=m if several else None, n_movies=len(datas))
            for m, d in enumerate(datas)]


def _series_index(path, all_series, series) -> int:
    """Index of the series to read; refused (``option="series"``) when it is ambiguous."""
    n_series = len(all_series)
    if n_series > 1 and series is None:
        held = "; ".join(f"{i}: {s.axes} {tuple(s.shape)}" for i, s in enumerate(all_series[:6]))
        raise InputError(f"{path}: {n_series} series (positions 0-{n_series - 1}) [{held}]; "
                         "choose one", option="series")
    s_index = series if n_series > 1 else 0
    if s_index >= n_series:
        raise InputError(f"{path}: series {series} is out of range: the file has series "
                         f"0-{n_series - 1}", option="series")
    return s_index


# --------------------------------------------------------------------------- pixel data

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


def _refuse_corrupt(path, log) -> None:
    """Refuse a file for which tifffile logged signs of truncation or corruption."""
    for message in log:
        if any(sign in message.lower() for sign in _CORRUPT_SIGNS):
            detail = re.sub(r"<[^>]*>\s*", "", message)
            raise InputError(f"{path}: truncated or corrupt TIFF ({detail})")


def _tiff_data(path, tif, ser, s_index, axes, indices, size, log) -> list:
    """One (T, H, W) movie per index: mapped when it can be, else page by page."""
    shape = tuple(ser.shape)
    if ser.dataoffset is not None and ser.keyframe.is_memmappable:
        dtype = np.dtype(tif.byteorder + ser.dtype.char)
        need = ser.dataoffset + int(np.prod(shape)) * dtype.itemsize
        if need > size:
            raise InputError(f"{path}: truncated or corrupt TIFF: the pixel data need {need} "
                             f"bytes, the file has {size}")
        return [mapped_or_read(path, dtype, ser.dataoffset, shape, tuple(ix))
                for ix in indices]
    lead = _check_pages(path, ser, axes, size, log)
    return [_paged(path, ser, s_index, axes, lead, ix) for ix in indices]


def _check_pages(path, ser, axes, size, log) -> int:
    """How many leading axes enumerate the pages; refused when a page is missing or cut."""
    shape = tuple(ser.shape)
    truncated = f"{path}: truncated or corrupt TIFF"
    n_pages = len(ser)
    # The leading axes enumerate the pages; the rest lie within one page.
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
    return lead


def _paged(path, ser, s_index, axes, lead, index) -> LazyMovie:
    """A :class:`LazyMovie` reading one TIFF page per frame (compressed or scattered data)."""
    shape = tuple(ser.shape)
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


# ----------------------------------------------------------------------------- metadata

def _tiff_metadata(tif, ser, s_index, selection):
    """(dt, pixel_size, pixel_unit, dt_origin) from OME, ImageJ or our own JSON description.

    dt in seconds per frame; pixel size in µm when the unit is known.  Later sources win:
    OME, then ImageJ where OME gave nothing, then our own description.
    """
    dt = pixel_size = pixel_unit = origin = None
    if tif.is_ome and tif.ome_metadata:
        with contextlib.suppress(Exception):
            dt, origin, pixel_size, pixel_unit = _ome_metadata(
                tif.ome_metadata, s_index, selection)
    ij = tif.imagej_metadata or {}
    if dt is None and ij.get("finterval"):
        factor = unit_factor(ij.get("tunit"), TIME_UNITS, 1.0) or 1.0
        dt, origin = float(ij["finterval"]) * factor, "ImageJ finterval"
    if pixel_size is None and tif.is_imagej:
        with contextlib.suppress(Exception):
            xres = ser.keyframe.tags["XResolution"].value
            unit = ij.get("unit")
            factor = unit_factor(str(unit).replace("\\u00B5", "µ"), LENGTH_UNITS_UM, None)
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
    """dt from TimeIncrement or Plane DeltaT (s), and PhysicalSizeX in µm, from OME-XML."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    images = [e for e in root if e.tag.endswith("}Image") or e.tag == "Image"]
    image = images[min(s_index, len(images) - 1)]
    pixels = next(e for e in image if e.tag.endswith("Pixels"))
    dt = origin = pixel_size = pixel_unit = None
    if pixels.get("TimeIncrement"):
        factor = unit_factor(pixels.get("TimeIncrementUnit"), TIME_UNITS, 1.0)
        if factor is not None:
            dt, origin = float(pixels.get("TimeIncrement")) * factor, "OME TimeIncrement"
    if dt is None:
        dt = _ome_delta_t(pixels, selection)
        origin = None if dt is None else "OME Plane DeltaT"
    if pixels.get("PhysicalSizeX"):
        factor = unit_factor(pixels.get("PhysicalSizeXUnit"), LENGTH_UNITS_UM, 1.0)
        if factor is not None:
            pixel_size, pixel_unit = float(pixels.get("PhysicalSizeX")) * factor, "µm"
    return dt, origin, pixel_size, pixel_unit


def _ome_delta_t(pixels, selection) -> float | None:
    """Median step of the chosen channel's and z-plane's Plane DeltaT, if they increase."""
    c, zz = selection.get("channel") or 0, selection.get("z") or 0
    times = []
    for plane in (e for e in pixels if e.tag.endswith("Plane")):
        if (plane.get("DeltaT") is not None and int(plane.get("TheC", 0)) == c
                and int(plane.get("TheZ", 0)) == zz):
            factor = unit_factor(plane.get("DeltaTUnit"), TIME_UNITS, 1.0)
            if factor is not None:
                times.append((int(plane.get("TheT", 0)), float(plane.get("DeltaT")) * factor))
    if len(times) > 1:
        steps = np.diff([t for _, t in sorted(times)])
        if len(steps) and np.all(steps > 0):
            return float(np.median(steps))
    return None
