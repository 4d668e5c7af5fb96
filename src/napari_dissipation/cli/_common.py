"""Pieces shared by the subcommands: reading movies, choosing dt, a progress line, and
the one-line error message with the flag that fixes it."""

from __future__ import annotations

import re
import sys
import time

from ..errors import InputError
from ..io import MovieFile
from ..io import read_movies as _read_movies
from ..options import option as _option

#: What to read from each file, and dt: the flag (with its value's form) for each name
#: that :class:`InputError` uses as ``option``.  Estimator options take their flag from
#: :mod:`napari_dissipation.options`.
SELECTION_FLAGS = {
    "channel": "--channel N",
    "z": "--z N",
    "series": "--series N",
    "roi": "--roi Y0:Y1,X0:X1",
    "axes": "--axes LETTERS",
    "dt": "--dt SECONDS",
}


def flag_for(name: str) -> str | None:
    """The command-line flag that sets option ``name``; None when there is none."""
    if name in SELECTION_FLAGS:
        return SELECTION_FLAGS[name]
    try:
        o = _option(name)
    except KeyError:
        return None
    return o.cli_flag if o.choices else f"{o.cli_flag} {o.cli_metavar}"


def error_message(exc: InputError) -> str:
    """``exc``'s message with the flags of its options appended, e.g. ``... (--series N)``.

    Library messages say what is wrong in words; the command line adds how to change it.
    A flag the message already names is not repeated.
    """
    text = str(exc)
    flags = []
    for name in exc.options:
        flag = flag_for(name)
        if flag and not re.search(re.escape(flag.split()[0]) + r"(?![\w-])", text):
            flags.append(flag)
    return f"{text} ({', '.join(flags)})" if flags else text


def read_movies(paths, args=None) -> list[MovieFile]:
    """Open every movie lazily; the first bad file ends the command with its message.

    Folders and globs of TIFFs are expanded; ``args`` (the parsed command line) supplies
    ``--channel``, ``--z``, ``--series`` and ``--roi`` when the subcommand has them.
    """
    pick = {k: getattr(args, k, None) for k in ("channel", "z", "series", "roi", "axes")}
    return _read_movies(paths, **pick)


def add_selection_arguments(parser) -> None:
    """Add ``--channel``, ``--z``, ``--series`` and ``--roi`` (what to read from each file)."""
    g = parser.add_argument_group("what to read from each file")
    g.add_argument("--channel", type=int, default=None, metavar="N",
                   help="channel (or colour sample) of multi-channel files")
    g.add_argument("--z", type=int, default=None, metavar="N", help="z-plane of 3-D movies")
    g.add_argument("--series", "--position", type=int, default=None, metavar="N",
                   help="series (OME image, stage position) of files holding several")
    g.add_argument("--roi", default=None, metavar="Y0:Y1,X0:X1",
                   help="crop every frame to rows Y0:Y1 and columns X0:X1 before use")
    g.add_argument("--axes", default=None, metavar="LETTERS",
                   help="the file's axes, overriding its own names: T time, M independent "
                   "movies, C channel, Z z-plane, Y X the frame, e.g. MTYX or TCYX. Without "
                   "names (.npy, plain TIFF) axes of length 1 are ignored and the rest is "
                   "(T, H, W) or (M, T, H, W): M movies of T frames")


def choose_dt(flag: float | None, movies: list[MovieFile]) -> tuple[float, str]:
    """dt from the flag or, failing that, from the files' metadata.

    Returns (dt, source).  The flag wins over metadata; a disagreement is reported on
    stderr.  Files whose metadata disagree with each other are refused without a flag.
    """
    found = {m.dt for m in movies if m.dt is not None}
    if flag is not None:
        if flag <= 0:
            raise InputError(f"dt must be a positive number of seconds per frame, got {flag}",
                             option="dt")
        if found and any(abs(d - flag) > 1e-9 * max(abs(flag), 1.0) for d in found):
            print(f"note: --dt {flag} overrides dt {sorted(found)} from the file metadata",
                  file=sys.stderr)
        return float(flag), "command line"
    if not found:
        raise InputError(f"{movies[0].path}: no frame interval in the file; give dt in seconds "
                         "per frame", option="dt")
    if len(found) > 1:
        raise InputError(f"the movies' metadata disagree on dt ({sorted(found)}); give dt",
                         option="dt")
    return float(found.pop()), "file metadata"


class ProgressLine:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, *, enabled: bool = True, every_seconds: float = 0.5):
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.every = every_seconds if self.tty else 10.0
        self._last = -1e9

    def __call__(self, p) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.every and not p.evaluated:
            return
        self._last = now
        width = 24
        filled = int(round(width * p.fraction))
        bar = "#" * filled + "-" * (width - filled)
        rate = "  rate --" if p.ep_rate is None else f"  rate {p.ep_rate:.4g} k_B/s"
        val = "" if p.val_objective is None else f"  val {p.val_objective:.4f}"
        line = (f"[{bar}] {100 * p.fraction:5.1f}%  it {p.iteration}  {p.seconds:.0f}s"
                f"  train {p.train_objective:.4f}{val}{rate}")
        if self.tty:
            sys.stderr.write("\r" + line[:150])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
