"""What produced a run: a reproducibility record, written beside every result.

:func:`run_record` collects the package's and its dependencies' versions, Python and the
platform, every estimator option, the seeds, each input file with a SHA-256 hash of its
content, dt and where it came from, the checks' outcomes (warnings) and, from the command
line, the command itself.  :func:`write_record` writes it atomically as JSON;
:func:`read_record` and :func:`verify_inputs` are what ``napari-dissipation rerun`` uses to
run it again on the same, unchanged files.

Importing this module imports neither torch nor napari: versions are read from the
installed packages' metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from .errors import InputError
from .io import write_json

__all__ = ["RECORD_FILE", "FORMAT", "file_sha256", "run_record", "write_record", "read_record",
           "verify_inputs", "versions"]

#: The record's file name in a run folder.
RECORD_FILE = "record.json"
#: Format of the record (raised when its layout changes incompatibly).
FORMAT = 1
#: Bytes read at a time when hashing.
_CHUNK = 1 << 20
#: Packages whose versions are recorded when installed.
_PACKAGES = ("napari-dissipation", "numpy", "torch", "tifffile", "zarr", "napari", "scipy")
#: (path, size, mtime, inode) -> hash: a file opened in napari is not hashed again.
_HASHES: dict = {}


def file_sha256(path) -> str:
    """SHA-256 of a file's content (read in 1 MiB chunks), or of a folder's files.

    A folder (a Zarr store) hashes every file under it in sorted order, each as its
    relative path and its content, so a renamed chunk changes the hash too.  Hashes are
    remembered for files that have not changed since (same size, time stamp and inode).
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if not path.is_dir() and key in _HASHES:
        return _HASHES[key]
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    digest = h.hexdigest()
    if not path.is_dir():
        _HASHES[key] = digest
    return digest


def versions() -> dict:
    """Installed versions of this package and its main dependencies (None: not installed)."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    if out["napari-dissipation"] is None:  # run from a source tree without installing
        from . import __version__
        out["napari-dissipation"] = __version__
    return out


def run_record(options: dict, inputs, dt: float | None, dt_source: str, checks=None,
               seeds=None, *, command=None, selection: dict | None = None,
               result: dict | None = None) -> dict:
    """Everything needed to run a fit again and to know what produced its result.

    Parameters
    ----------
    options : dict
        The estimator's options by name; those left out are recorded with their defaults.
    inputs : list
        The movies: :class:`~napari_dissipation.io.MovieFile` objects, file paths, or
        dicts with at least ``"path"`` (and ``"sha256"`` when it is known already, e.g.
        from the napari layer's metadata).  Several movies of one file (an (M, T, H, W)
        array) give one entry with ``"movies"`` = M.
    dt : float or None
        Seconds per frame used.
    dt_source : str
        Where dt came from: ``"file metadata"``, ``"command line"``, ``"user"``,
        ``"default"``, ...
    checks : list of str or dict, optional
        The checks' outcomes: their warnings (plain sentences), or a dict holding at
        least ``"warnings"`` (e.g. a stationarity report's ``to_dict()``).
    seeds : int or dict, optional
        Seeds used; by default the estimator's ``seed`` option.
    command : list of str, optional
        The command line (program name and arguments), when run from it.
    selection : dict, optional
        What was read from each file: ``channel``, ``z``, ``series``, ``roi``, ``axes``.
    result : dict, optional
        A few numbers of the result (rate, interval) to compare a re-run with.

    Returns
    -------
    dict
        JSON-serialisable: ``format``, ``created`` (UTC, ISO 8601), ``versions``,
        ``python``, ``platform``, ``options``, ``seeds``, ``inputs`` (``path``, ``name``,
        ``bytes``, ``sha256``, ``movies``, ``frames``, ``dt_origin``), ``selection``,
        ``dt``, ``dt_source``, ``checks``, ``command``, ``cwd``, ``result``.
    """
    from .options import defaults

    full = {**defaults(), **dict(options or {})}
    if seeds is None:
        seeds = {"seed": full.get("seed")}
    elif not isinstance(seeds, dict):
        seeds = {"seed": seeds}
    if checks is None:
        checks = {"warnings": []}
    elif not isinstance(checks, dict):
        checks = {"warnings": [str(w) for w in checks]}
    else:
        checks = {"warnings": [], **checks}
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(),
        "python": sys.version.split()[0],
        "platform": {"system": platform.platform(), "machine": platform.machine(),
                     "implementation": platform.python_implementation()},
        "options": full,
        "seeds": seeds,
        "inputs": _inputs(inputs),
        "selection": dict(selection or {}),
        "dt": None if dt is None else float(dt),
        "dt_source": dt_source,
        "checks": checks,
        "command": None if command is None else [str(a) for a in command],
        "cwd": os.getcwd(),
        "result": dict(result or {}),
    }


def write_record(path, record: dict) -> Path:
    """Write ``record`` as indented JSON, atomically (nothing half-written)."""
    return write_json(path, record)


def read_record(path) -> dict:
    """A record written by :func:`write_record`; :class:`InputError` when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a run record ({type(exc).__name__}: {exc})") from None
    if not isinstance(record, dict) or "inputs" not in record or "options" not in record:
        raise InputError(f"{path}: not a run record (no inputs or options)")
    if record.get("format", FORMAT) > FORMAT:
        raise InputError(f"{path}: a record of format {record['format']}, newer than this "
                         f"version understands ({FORMAT}); update napari-dissipation")
    return record


def verify_inputs(record: dict) -> list[Path]:
    """The recorded input files, each checked to exist and to hash as recorded.

    Raises
    ------
    InputError
        One line naming the first file that is missing or whose content has changed.
    """
    paths = []
    for entry in record["inputs"]:
        path = Path(entry["path"])
        if not path.exists():
            raise InputError(f"{path}: input of the recorded run is missing")
        if entry.get("sha256") and file_sha256(path) != entry["sha256"]:
            raise InputError(f"{path}: changed since the recorded run (its SHA-256 differs "
                             "from the record's); the run cannot be repeated on it")
        paths.append(path)
    return paths


def _inputs(inputs) -> list[dict]:
    """One entry per file, in order; several movies of one file share it."""
    out: dict[str, dict] = {}
    for item in inputs or []:
        if isinstance(item, dict):
            entry = dict(item)
            path = Path(entry["path"])
        elif isinstance(item, str | os.PathLike):
            path, entry = Path(item), {}
        else:  # a MovieFile
            path = Path(item.path)
            entry = {"dt_origin": item.dt_origin, "axes": item.axes,
                     "frames": [int(item.data.shape[0])], "movies": 1}
        key = str(path.resolve()) if path.exists() else str(path)
        if key in out:
            out[key]["movies"] = out[key].get("movies", 1) + 1
            out[key]["frames"] = out[key].get("frames", []) + entry.get("frames", [])
            continue
        entry["path"] = key
        entry["name"] = path.name
        if path.exists():
            entry.setdefault("bytes", path.stat().st_size if path.is_file() else None)
            entry.setdefault("sha256", file_sha256(path))
        else:
            entry.setdefault("sha256", None)
        out[key] = entry
    for entry in out.values():  # the frames of each movie, once per file when all equal
        frames = entry.get("frames")
        if frames and len(set(frames)) == 1 and len(frames) > 1:
            entry["frames"] = frames[:1]
    return list(out.values())
