"""Reading and writing movies and results (tifffile first).

Movies are read lazily (memory-mapped when the file allows it) so that the estimator
never holds a float copy of the whole data set.  Every writer produces its output under
a temporary name and renames it into place, so an interrupted or failed run leaves
nothing half-written and never touches an earlier result.

Modules, one per concern:

- :mod:`.movie`: :class:`MovieFile` and the frame-on-demand :class:`LazyMovie`
- :mod:`.paths`: folders and globs to files; the region of interest (ROI)
- :mod:`.axes`: which axis is time, which channel, z-plane and series to keep
- :mod:`.units`: time and length units of file metadata
- :mod:`.raw`: uncompressed pixel data, memory-mapped or read with ``pread``
- :mod:`.tiff`: TIFF, OME-TIFF and ImageJ files and their metadata
- :mod:`.zarr`: Zarr arrays and OME-Zarr groups
- :mod:`.read`: :func:`read_movie` and :func:`read_movies`, for any kind of file; a file
  may hold several movies (M, T, H, W), which :func:`read_movies` opens as a data set
- :mod:`.glued`: warnings for a movie that looks like several movies glued together
- :mod:`.writers`: movies, maps, tables and JSON, written atomically

Errors in the input are :class:`~napari_dissipation.errors.InputError` with a message
that names no command-line flag; ``option`` says which choice ("channel", "z",
"series", "roi", "axes", "movie") would fix it.
"""

from __future__ import annotations

from .movie import LazyMovie, MovieFile
from .paths import MOVIE_SUFFIXES, TIFF_SUFFIXES, crop, expand_movie_paths, parse_roi
from .raw import MAP_LIMIT
from .read import describe_inputs, read_movie, read_movies
from .writers import (
    atomic_output,
    write_json,
    write_maps_tiff,
    write_movie,
    write_stochastic_ep_csv,
)

__all__ = [
    "MovieFile",
    "LazyMovie",
    "read_movie",
    "read_movies",
    "describe_inputs",
    "expand_movie_paths",
    "parse_roi",
    "crop",
    "write_movie",
    "write_json",
    "write_stochastic_ep_csv",
    "write_maps_tiff",
    "atomic_output",
    "TIFF_SUFFIXES",
    "MOVIE_SUFFIXES",
    "MAP_LIMIT",
]
